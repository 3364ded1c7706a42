//! What a grant reads (AwsAccounts, namespace labels) as the Stack
//! controller's watches last saw them, so a reconcile's grant costs no API
//! request: at 1,000 Stacks polled every few seconds, two GETs each were
//! most of the API server's work. The watches that fill it are the ones
//! that wake the Stacks, and they fill it before they wake anyone, so a
//! relabelled namespace is read relabelled. Not seen (not synced yet, or
//! no watch running, as in tests and a namespace outside a namespaced
//! operator's watch): read from the API server.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::{Client, ResourceExt};

use crate::api::AwsAccount;

#[derive(Clone)]
pub struct TenancyCache {
    client: Client,
    accounts: Store<AwsAccount>,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    writers: Arc<Mutex<Option<TenancyWriters>>>,
}

/// The writing ends, taken once by the watches that fill the cache.
pub struct TenancyWriters {
    pub accounts: Writer<AwsAccount>,
    pub namespaces: Writer<PartialObjectMeta<Namespace>>,
}

impl TenancyWriters {
    /// Writers of stores nobody reads: for watches whose cache another
    /// set of watches already fills.
    pub fn unread() -> Self {
        Self {
            accounts: reflector::store().1,
            namespaces: reflector::store().1,
        }
    }
}

impl TenancyCache {
    pub fn new(client: Client) -> Self {
        let (accounts, account_writer) = reflector::store();
        let (namespaces, namespace_writer) = reflector::store();
        Self {
            client,
            accounts,
            namespaces,
            writers: Arc::new(Mutex::new(Some(TenancyWriters {
                accounts: account_writer,
                namespaces: namespace_writer,
            }))),
        }
    }

    /// The writers, for the one set of watches that fills the cache; `None`
    /// once taken.
    pub fn take_writers(&self) -> Option<TenancyWriters> {
        self.writers.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    pub async fn account(&self, name: &str) -> Result<Option<AwsAccount>, kube::Error> {
        if let Some(account) = self.accounts.get(&ObjectRef::new(name)) {
            return Ok(Some((*account).clone()));
        }
        Api::<AwsAccount>::all(self.client.clone()).get_opt(name).await
    }

    /// The namespace's labels (none when it does not exist).
    pub async fn labels(&self, namespace: &str) -> Result<BTreeMap<String, String>, kube::Error> {
        if let Some(seen) = self.namespaces.get(&ObjectRef::new(namespace)) {
            return Ok(seen.labels().clone());
        }
        let found = Api::<Namespace>::all(self.client.clone()).get_opt(namespace).await?;
        Ok(found.map(|ns| ns.labels().clone()).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::watcher::Event;

    /// A client for an address where nothing listens: a read that reaches
    /// it fails, so an answer proves the cache served it.
    fn unreachable_client() -> Client {
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("uri"));
        Client::try_from(config).expect("client")
    }

    #[tokio::test]
    async fn what_the_watches_saw_is_served_without_a_request_and_a_miss_asks_the_api_server() {
        let cache = TenancyCache::new(unreachable_client());
        let mut writers = cache.take_writers().expect("writers");
        assert!(cache.take_writers().is_none(), "one set of watches fills it");
        let mut namespace = PartialObjectMeta::<Namespace>::default();
        namespace.metadata.name = Some("team-a".into());
        namespace.metadata.labels = Some(BTreeMap::from([("granted".into(), "yes".into())]));
        writers.namespaces.apply_watcher_event(&Event::Apply(namespace.clone()));
        let account = AwsAccount::new("sandbox", Default::default());
        writers.accounts.apply_watcher_event(&Event::Apply(account));

        let labels = cache.labels("team-a").await.expect("served from the cache");
        assert_eq!(labels.get("granted").map(String::as_str), Some("yes"));
        let found = cache.account("sandbox").await.expect("served from the cache");
        assert_eq!(found.map(|a| a.name_any()).as_deref(), Some("sandbox"));

        // Relabelled: the next grant reads the new labels.
        namespace.metadata.labels = Some(BTreeMap::new());
        writers.namespaces.apply_watcher_event(&Event::Apply(namespace));
        assert!(cache.labels("team-a").await.expect("cached").is_empty());

        // Not seen: the API server is asked (here it cannot answer).
        assert!(cache.labels("team-b").await.is_err());
        assert!(cache.account("other").await.is_err());
    }
}
