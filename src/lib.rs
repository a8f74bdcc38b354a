//! tidemark: backup, restore and migration for Kubernetes, with Velero-compatible buckets.
//!
//! The library holds the engines; `src/main.rs` only calls [`cli::main`]. Modules:
//!
//! - [`api`]: the `velero.io/v1` record shapes written to and read from buckets.
//! - [`cluster`]: connecting, the QPS budget, discovery, label selectors.
//! - [`backup`]: the backup engine (filters, listing, streaming archive pipeline).
//! - [`archive`]: the Velero-compatible tar.gz format, written and validated.
//! - [`restore`]: the restore engine (plan, ordering, transforms, apply).
//! - [`store`]: locations, the bucket layout, streaming uploads, the read-only guard.
//! - [`report`]: object status (conditions, server-side apply), results, run logs, commit
//!   statuses.
//! - [`source`]: Git and directory sources, kustomize rendering, manifest parsing.
//! - [`gitops`]: the GitOps engine (change-set apply, inventory, prune, commit statuses,
//!   previews) behind GitSource, `tidemark reconcile` and `tidemark plan`.
//! - [`controller`]: the in-cluster reconciler (`tidemark server`).
//! - [`plan`]: the pure planner (schedules, sync, expiry, restore plans, GitSource status).
//! - [`volumes`]: persistent volume data (method selection, CSI snapshots, file-system backup).
//! - [`hooks`]: Velero's backup and restore hooks (exec hooks in pods, restore init containers).
//! - [`install`]: installing and removing the controller (`tidemark install`/`uninstall`).
//! - [`cli`]: the command line.

pub mod api;
pub mod archive;
pub mod backup;
pub mod cli;
pub mod cluster;
pub mod controller;
pub mod gitops;
pub mod hooks;
pub mod install;
pub mod plan;
pub mod report;
pub mod restore;
pub mod source;
pub mod store;
pub mod volumes;
