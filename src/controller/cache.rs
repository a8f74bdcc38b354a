//! Reflector caches of what several controllers observe on every reconcile: the Backup records
//! and the Locations of the controller's namespace, each kept by one watch (kube-runtime's
//! `reflector`) instead of a LIST per reconcile. A cache that has not finished its first
//! listing (the watch is still failing: RBAC, an unreachable API server) answers `None`, and
//! the caller asks the API server as before, so a cache never hides an object for long and
//! never stops a controller.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

use crate::api::tidemark::{Backup, Location};
use crate::api::velero::SCHEDULE_NAME_LABEL;

/// The caches, cheap to clone.
#[derive(Clone)]
pub struct Caches {
    namespace: String,
    backups: Store<Backup>,
    locations: Store<Location>,
    backups_ready: Arc<AtomicBool>,
    locations_ready: Arc<AtomicBool>,
}

/// Keeps `store` filled from a watch of `api` until the process ends; sets `ready` once the
/// first listing is in.
fn drive<K>(
    api: Api<K>,
    ready: Arc<AtomicBool>,
) -> (Store<K>, impl std::future::Future<Output = ()>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let run = async move {
        reflector::reflector(writer, watcher(api, watcher::Config::default()))
            .default_backoff()
            .for_each(|event| {
                match event {
                    // The reflector has applied the first listing to the store by now.
                    Ok(watcher::Event::InitDone) => ready.store(true, Ordering::Release),
                    Ok(_) => {}
                    Err(e) => tracing::debug!("cache watch: {e}"),
                }
                futures::future::ready(())
            })
            .await;
    };
    (reader, run)
}

impl Caches {
    /// Caches of `namespace`, and the future that keeps them filled (run it for as long as the
    /// controllers run).
    pub fn start(
        client: &Client,
        namespace: &str,
    ) -> (Caches, impl std::future::Future<Output = ()>) {
        let backups_ready = Arc::new(AtomicBool::new(false));
        let locations_ready = Arc::new(AtomicBool::new(false));
        let (backups, run_backups) = drive::<Backup>(
            Api::namespaced(client.clone(), namespace),
            backups_ready.clone(),
        );
        let (locations, run_locations) = drive::<Location>(
            Api::namespaced(client.clone(), namespace),
            locations_ready.clone(),
        );
        let caches = Caches {
            namespace: namespace.to_string(),
            backups,
            locations,
            backups_ready,
            locations_ready,
        };
        (caches, async move {
            futures::join!(run_backups, run_locations);
        })
    }

    /// Every Backup record of the namespace; `None` until the cache is filled.
    pub fn backups(&self) -> Option<Vec<Backup>> {
        self.backups_ready.load(Ordering::Acquire).then(|| {
            self.backups
                .state()
                .iter()
                .map(|b| b.as_ref().clone())
                .collect()
        })
    }

    /// The Backup records of Schedule `name` (label `velero.io/schedule-name`); `None` until
    /// the cache is filled.
    pub fn backups_of_schedule(&self, name: &str) -> Option<Vec<Backup>> {
        self.backups_ready.load(Ordering::Acquire).then(|| {
            self.backups
                .state_filter(|b| {
                    b.labels().get(SCHEDULE_NAME_LABEL).map(String::as_str) == Some(name)
                })
                .iter()
                .map(|b| b.as_ref().clone())
                .collect()
        })
    }

    /// The Location `name`, when the cache holds it (a miss may be a Location created a moment
    /// ago: ask the API server then).
    pub fn location(&self, name: &str) -> Option<Location> {
        if !self.locations_ready.load(Ordering::Acquire) {
            return None;
        }
        self.locations
            .get(&ObjectRef::new(name).within(&self.namespace))
            .map(|l| l.as_ref().clone())
    }

    /// Every Location of the namespace; `None` until the cache is filled.
    pub fn locations(&self) -> Option<Vec<Location>> {
        self.locations_ready.load(Ordering::Acquire).then(|| {
            self.locations
                .state()
                .iter()
                .map(|l| l.as_ref().clone())
                .collect()
        })
    }
}
