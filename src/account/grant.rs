//! The IO half of tenancy, for the controllers that act in AWS: read the
//! AwsAccount an object names and its namespace's labels, then apply the pure
//! checks of [`crate::account::tenancy`]. No AWS call is made here.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::{Client, ResourceExt};

use crate::account::tenancy::{self, Grant, Refusal};
use crate::api::AwsAccount;

/// What an object in `namespace` may do in AWS in `region`, passing
/// `service_role`, through the AwsAccount `account_ref` (or, without one, the
/// operator's own credentials if `allow_operator_credentials`).
///
/// `Ok(Err(refusal))`: the object must not act; show the refusal (Stalled,
/// or waiting when `refusal.transient`) and make no AWS call.
/// `Err(_)`: the Kubernetes API failed; retry.
pub async fn grant_for(
    client: &Client,
    allow_operator_credentials: bool,
    namespace: &str,
    account_ref: Option<&str>,
    region: &str,
    service_role: Option<&str>,
) -> Result<Result<Grant, Refusal>, kube::Error> {
    let Some(account_name) = account_ref else {
        return Ok(tenancy::operator_grant(
            allow_operator_credentials,
            namespace,
            region,
            service_role,
        ));
    };
    let accounts: Api<AwsAccount> = Api::all(client.clone());
    let Some(account) = accounts.get_opt(account_name).await? else {
        return Ok(Err(tenancy::account_not_found(account_name)));
    };
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let labels: BTreeMap<String, String> = namespaces
        .get_opt(namespace)
        .await?
        .map(|ns| ns.labels().clone())
        .unwrap_or_default();
    Ok(tenancy::authorize(&account, &labels, namespace, region, service_role))
}
