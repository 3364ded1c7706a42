//! Status writes shared by every controller: server-side apply of the status
//! subresource under the controller's own field manager, skipped when only
//! condition timestamps would change (a controller that rewrites its own
//! status for nothing wakes itself and its watchers for nothing).

use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::metrics::{Metrics, OutcomeLabels};

/// True when `after` differs from `before` in more than condition
/// `lastTransitionTime`s.
pub fn changed<S: Serialize>(before: &S, after: &S) -> bool {
    let strip = |status: &S| {
        let mut value = serde_json::to_value(status).unwrap_or(Value::Null);
        if let Some(conditions) = value.get_mut("conditions").and_then(Value::as_array_mut) {
            for condition in conditions {
                if let Some(c) = condition.as_object_mut() {
                    c.remove("lastTransitionTime");
                }
            }
        }
        value
    };
    strip(before) != strip(after)
}

/// Writes `after` unless nothing but timestamps changed; counts the
/// outcomes (written, skipped, conflict).
///
/// The write is conditional on `resource_version`, the version the decision
/// was made from (and is updated to the version written): a decision made
/// from a stale cache gets 409 Conflict instead of overwriting newer status,
/// such as an intent recorded by the reconcile before it.
pub async fn write<K, S>(
    api: &Api<K>,
    metrics: &Metrics,
    field_manager: &str,
    name: &str,
    resource_version: &mut Option<String>,
    before: &S,
    after: &S,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let kind = super::reconciler::kind_of::<K>();
    if !changed(before, after) {
        metrics
            .status_writes
            .get_or_create(&OutcomeLabels {
                kind,
                outcome: "skipped",
            })
            .inc();
        return Ok(());
    }
    let body = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"name": name, "resourceVersion": resource_version},
        "status": after,
    });
    let written = match api
        .patch_status(name, &PatchParams::apply(field_manager).force(), &Patch::Apply(&body))
        .await
    {
        Ok(written) => written,
        Err(error) => {
            if matches!(&error, kube::Error::Api(status) if status.code == 409) {
                metrics
                    .status_writes
                    .get_or_create(&OutcomeLabels {
                        kind,
                        outcome: "conflict",
                    })
                    .inc();
            }
            return Err(error);
        }
    };
    *resource_version = written.meta().resource_version.clone();
    metrics
        .status_writes
        .get_or_create(&OutcomeLabels {
            kind,
            outcome: "written",
        })
        .inc();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::StackStatus;
    use crate::runtime::conditions::{self, ConditionUpdate, READY, Truth};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    #[test]
    fn only_timestamps_is_no_change() {
        let mut before = StackStatus::default();
        let update = ConditionUpdate::new(READY, Truth::True, "Succeeded", "ok");
        conditions::set(&mut before.conditions, update, 1, Timestamp::UNIX_EPOCH);
        let mut after = before.clone();
        after.conditions[0].last_transition_time = Time(Timestamp::from_second(100).unwrap());
        assert!(!changed(&before, &after));
        after.stack_status = Some("UPDATE_COMPLETE".into());
        assert!(changed(&before, &after));
    }
}
