//! Live `status.progress` of running Backup and Restore records.
//!
//! While the controller runs an engine, a [`ProgressWriter`] samples the engine's counters every
//! [`PROGRESS_INTERVAL`] and, when they changed since the last write, writes them with
//! server-side apply of `status.progress` alone, under [`PROGRESS_FIELD_MANAGER`]. At most one
//! small status write per running record every 5 s, none while nothing moves.
//!
//! Why a field manager of its own: server-side apply treats an apply as the complete intent of
//! its manager, so an apply of only `status.progress` under [`FIELD_MANAGER`](super::FIELD_MANAGER)
//! would release, and so delete, the phase, timestamps and conditions that the same manager
//! applied with [`apply_status`](super::apply_status). Under its own manager the progress writes
//! leave those alone, and `apply_status` leaves the progress alone. The final status write of a
//! run carries the final progress as well (both managers then own the same values), after the
//! writer has stopped, so no late sample can overwrite it.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::api::tidemark::{BackupProgress, RestoreProgress};
use crate::{backup, restore};

/// How often a running record's `status.progress` is written (when it changed).
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);

/// The field manager of the `status.progress` writes made while a run is under way.
pub const PROGRESS_FIELD_MANAGER: &str = "tidemark-controller-progress";

fn count(a: &AtomicU64) -> i64 {
    i64::try_from(a.load(Ordering::Relaxed)).unwrap_or(i64::MAX)
}

/// The progress of a running backup: items written so far, which are also all the items known
/// so far (the backup streams; its total is exact only at the end, see [`BackupProgress`]).
pub fn backup_progress(p: &backup::Progress) -> BackupProgress {
    let items = count(&p.items);
    BackupProgress {
        total_items: items,
        items_backed_up: items,
    }
}

/// The progress of a finished backup of `items` items.
pub fn backup_final_progress(items: u64) -> BackupProgress {
    let items = i64::try_from(items).unwrap_or(i64::MAX);
    BackupProgress {
        total_items: items,
        items_backed_up: items,
    }
}

/// The progress of a restore: the items of its plan (0 until it is planned) and those
/// processed so far ([`restore::Counters::processed`]).
pub fn restore_progress(c: &restore::Counters) -> RestoreProgress {
    RestoreProgress {
        total_items: count(&c.total),
        items_restored: i64::try_from(c.processed()).unwrap_or(i64::MAX),
    }
}

/// The server-side apply body that sets `status.progress` of a `K` to `progress`, and nothing
/// else.
pub fn progress_patch<K, P>(progress: &P) -> serde_json::Value
where
    K: Resource<DynamicType = ()>,
    P: Serialize,
{
    serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": {"progress": progress},
    })
}

/// A task writing a running record's `status.progress`; [`ProgressWriter::stop`] ends it.
#[derive(Debug)]
pub struct ProgressWriter {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl ProgressWriter {
    /// Starts writing `sample()` as `status.progress` of the `K` named `name` every `every`
    /// (the first time `every` after now), each time only if it differs from what was last
    /// written. The state at start counts as written (nothing has moved yet). A failed write
    /// is logged and retried at the next tick; it never fails the run.
    pub fn start<K, P, F>(api: Api<K>, name: String, every: Duration, sample: F) -> Self
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
        P: Serialize + PartialEq + Send + 'static,
        F: Fn() -> P + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let (api, name) = (&api, name.as_str());
            let params = PatchParams::apply(PROGRESS_FIELD_MANAGER).force();
            let params = &params;
            drive(every, stopped, sample, |p: &P| {
                let body = progress_patch::<K, P>(p);
                async move {
                    api.patch_status(name, params, &Patch::Apply(&body))
                        .await
                        .inspect_err(
                            |e| tracing::debug!(record = %name, "progress not written: {e}"),
                        )
                        .is_ok()
                }
            })
            .await;
        });
        Self { stop, task }
    }

    /// Stops the task after writing the counters once more if they changed, and waits for it:
    /// once this returns no progress write is in flight.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.task.await {
            tracing::warn!("progress writer ended abnormally: {e}");
        }
    }
}

/// The writer's loop: every `every` (first after `every`), `write(sample())` when the sample
/// differs from the last one written (`write` returns whether it was); on `stopped` (sent or
/// dropped), one last such write, then return.
async fn drive<P, S, W, Fut>(
    every: Duration,
    mut stopped: oneshot::Receiver<()>,
    sample: S,
    mut write: W,
) where
    P: PartialEq,
    S: Fn() -> P,
    W: FnMut(&P) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut written = sample();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = &mut stopped => break,
            _ = tick.tick() => {}
        }
        let now = sample();
        if now != written && write(&now).await {
            written = now;
        }
    }
    // The counters as the run left them (the last tick may be up to `every` old).
    let now = sample();
    if now != written {
        write(&now).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::tidemark::{Backup, Restore};

    #[test]
    fn backup_progress_counts_items_listed_so_far_as_the_total() {
        let p = backup::Progress::default();
        p.items.store(1234, Ordering::Relaxed);
        p.resources_done.store(3, Ordering::Relaxed);
        assert_eq!(
            backup_progress(&p),
            BackupProgress {
                total_items: 1234,
                items_backed_up: 1234
            }
        );
        assert_eq!(backup_final_progress(1240).total_items, 1240);
        assert_eq!(backup_final_progress(u64::MAX).items_backed_up, i64::MAX);
    }

    #[test]
    fn restore_progress_counts_every_processed_item_up_to_the_total() {
        let c = restore::Counters::default();
        assert_eq!(restore_progress(&c), RestoreProgress::default());
        c.total.store(100, Ordering::Relaxed);
        c.created.store(40, Ordering::Relaxed);
        c.updated.store(5, Ordering::Relaxed);
        c.skipped.store(3, Ordering::Relaxed);
        c.failed.store(2, Ordering::Relaxed);
        assert_eq!(
            restore_progress(&c),
            RestoreProgress {
                total_items: 100,
                items_restored: 50
            }
        );
        // A pod volume failure after its pod was created counts twice: never above the total.
        c.created.store(96, Ordering::Relaxed);
        c.failed.store(3, Ordering::Relaxed);
        assert_eq!(restore_progress(&c).items_restored, 100);
    }

    /// Polls `cond` every millisecond for up to 10 s.
    async fn until(what: &str, cond: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[tokio::test]
    async fn writes_changes_only_retries_failures_and_writes_the_last_state_on_stop() {
        use std::sync::atomic::AtomicBool;
        use std::sync::{Arc, Mutex};
        let value = Arc::new(AtomicU64::new(0));
        let samples = Arc::new(AtomicU64::new(0));
        let fail_next = Arc::new(AtomicBool::new(false));
        let writes: Arc<Mutex<Vec<(u64, bool)>>> = Arc::default();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn({
            let (value, samples, fail_next, writes) = (
                value.clone(),
                samples.clone(),
                fail_next.clone(),
                writes.clone(),
            );
            async move {
                drive(
                    Duration::from_millis(5),
                    stopped,
                    move || {
                        samples.fetch_add(1, Ordering::SeqCst);
                        value.load(Ordering::SeqCst)
                    },
                    move |v: &u64| {
                        let ok = !fail_next.swap(false, Ordering::SeqCst);
                        writes.lock().unwrap().push((*v, ok));
                        async move { ok }
                    },
                )
                .await;
            }
        });
        let sampled = |n: u64| {
            let samples = samples.clone();
            move || samples.load(Ordering::SeqCst) >= n
        };
        let written = |n: usize| {
            let writes = writes.clone();
            move || writes.lock().unwrap().len() >= n
        };
        // Nothing moved: ticks pass without writes.
        until("3 ticks", sampled(4)).await;
        assert!(writes.lock().unwrap().is_empty());
        // A change is written once, not again while it stays.
        value.store(5, Ordering::SeqCst);
        until("the first write", written(1)).await;
        let s = samples.load(Ordering::SeqCst);
        until("3 more ticks", sampled(s + 3)).await;
        assert_eq!(*writes.lock().unwrap(), [(5, true)]);
        // A failed write is tried again at the next tick.
        fail_next.store(true, Ordering::SeqCst);
        value.store(6, Ordering::SeqCst);
        until("the retried write", written(3)).await;
        assert_eq!(*writes.lock().unwrap(), [(5, true), (6, false), (6, true)]);
        // Stopping writes the last state (once, whether or not a tick saw it first).
        value.store(7, Ordering::SeqCst);
        stop.send(()).unwrap();
        task.await.unwrap();
        let w = writes.lock().unwrap().clone();
        assert_eq!(&w[..3], [(5, true), (6, false), (6, true)]);
        assert_eq!(&w[3..], [(7, true)]);
    }

    #[tokio::test]
    async fn a_dropped_writer_ends_its_task() {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(drive(
            Duration::from_secs(3600),
            stopped,
            || 1u8,
            |_: &u8| async { true },
        ));
        drop(stop);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the task ends")
            .unwrap();
    }

    #[test]
    fn the_patch_sets_status_progress_only_with_velero_field_names() {
        let b = progress_patch::<Backup, _>(&BackupProgress {
            total_items: 7,
            items_backed_up: 7,
        });
        assert_eq!(
            b,
            serde_json::json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Backup",
                "status": {"progress": {"totalItems": 7, "itemsBackedUp": 7}}})
        );
        let r = progress_patch::<Restore, _>(&RestoreProgress {
            total_items: 9,
            items_restored: 4,
        });
        assert_eq!(
            r,
            serde_json::json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Restore",
                "status": {"progress": {"totalItems": 9, "itemsRestored": 4}}})
        );
    }
}
