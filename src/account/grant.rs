//! The IO half of tenancy, for the controllers that act in AWS: read the
//! AwsAccount an object names and its namespace's labels (from the cache), then apply the pure
//! checks of [`crate::account::tenancy`]. No AWS call is made here.

use std::collections::BTreeMap;

use crate::account::cache::TenancyCache;
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
    cache: &TenancyCache,
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
    let Some(account) = cache.account(account_name).await? else {
        return Ok(Err(tenancy::account_not_found(account_name)));
    };
    let labels = cache.labels(namespace).await?;
    Ok(tenancy::authorize(&account, &labels, namespace, region, service_role))
}

/// [`grant_for`] for many (account, region) placements of one object, with
/// one read of the namespace and one of each AwsAccount named: a
/// StackDeployment of a hundred targets asks once per reconcile, not a
/// hundred times. Each refusal is returned with its placement's index.
pub async fn grants_for(
    cache: &TenancyCache,
    allow_operator_credentials: bool,
    namespace: &str,
    placements: &[(Option<&str>, &str)],
) -> Result<Vec<Result<Grant, Refusal>>, kube::Error> {
    let mut labels: Option<BTreeMap<String, String>> = None;
    let mut accounts: BTreeMap<&str, Option<AwsAccount>> = BTreeMap::new();
    let mut grants = Vec::with_capacity(placements.len());
    for (account_ref, region) in placements {
        let Some(account_name) = account_ref else {
            grants.push(tenancy::operator_grant(
                allow_operator_credentials,
                namespace,
                region,
                None,
            ));
            continue;
        };
        if !accounts.contains_key(account_name) {
            let found = cache.account(account_name).await?;
            accounts.insert(account_name, found);
        }
        let Some(Some(account)) = accounts.get(account_name) else {
            grants.push(Err(tenancy::account_not_found(account_name)));
            continue;
        };
        if labels.is_none() {
            labels = Some(cache.labels(namespace).await?);
        }
        let labels = labels.as_ref().expect("read above");
        grants.push(tenancy::authorize(account, labels, namespace, region, None));
    }
    Ok(grants)
}
