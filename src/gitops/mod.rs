//! The GitOps engine (DESIGN §6), in the shape of Flux's source and kustomize controllers:
//! source (Git or a directory, [`source`]) → artifact (revision and digest) → render
//! (kustomize) → server-side apply of the revision as one change set ([`apply`]: created,
//! configured or unchanged, judged against one LIST per kind and namespace, never a GET per
//! object) → inventory ([`inventory`]) → prune by inventory diff ([`prune`]: deletes by name,
//! no cluster-wide LIST) → health of what was applied and commit statuses ([`statuses`]).
//!
//! The preview of a revision (`tidemark plan`) is [`preview`].
//!
//! One engine, three callers: the `GitSource` controller (`controller::gitsource`, status on
//! the object), `tidemark reconcile` (flags or a GitSource manifest) and the deprecated
//! `source:` section of `tidemark server --config` — the last two keep their state in a
//! ConfigMap record ([`record`]).
//!
//! A manifest that is invalid is reported on the source (its `Stalled` condition names it) and
//! on its live object, if any: `Stalled=True` with reason [`INVALID_MANIFEST`]. The object keeps
//! its last applied spec; the controllers leave that condition in place until the loop lifts it
//! (the manifest is valid again).

pub mod apply;
pub mod credentials;
pub mod inventory;
pub mod preview;
pub mod prune;
pub mod reconciler;
pub mod record;
pub mod source;
pub mod statuses;

pub use apply::Report;
pub use inventory::ObjectRef;
pub use reconciler::{Pass, Reconciler};
pub use source::{Origin, Settings, Source};

/// Field manager of everything the GitOps engine applies.
pub const FIELD_MANAGER: &str = "tidemark-gitops";
/// Annotation carrying the revision an object was applied from.
pub const REVISION_ANNOTATION: &str = "tidemark.dev/revision";
/// Label naming the source an object was applied from; an object whose label names another
/// source is never pruned.
pub const SOURCE_LABEL: &str = "tidemark.dev/source";
pub use crate::report::object_status::INVALID_MANIFEST;
/// Flux's annotation asking for a reconcile now (`flux reconcile` sets it to a timestamp).
pub const REQUESTED_AT_ANNOTATION: &str = "reconcile.fluxcd.io/requestedAt";

/// Errors of the GitOps engine. Problems of single manifests are not errors: they are reported
/// in the [`Report`].
#[derive(Debug, thiserror::Error)]
pub enum GitopsError {
    /// A setting is invalid (`field: reason`).
    #[error("{field}: {message}")]
    Settings {
        /// The field at fault (`spec.interval`, `source.url`, `--url`).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Fetching, reading or rendering the source failed.
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    /// A Kubernetes request failed.
    #[error("{what}: {message}")]
    Kube {
        /// What was being done.
        what: String,
        /// The error, described.
        message: String,
        /// The error.
        #[source]
        source: kube::Error,
    },
    /// A blocking task could not finish.
    #[error("the source task stopped: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl GitopsError {
    /// A [`GitopsError::Settings`] naming `field`.
    pub fn settings(field: &str, message: impl std::fmt::Display) -> GitopsError {
        GitopsError::Settings {
            field: field.into(),
            message: message.to_string(),
        }
    }

    /// A [`GitopsError::Kube`] for `what`.
    pub fn kube(what: impl Into<String>, source: kube::Error) -> GitopsError {
        GitopsError::Kube {
            what: what.into(),
            message: crate::cluster::describe(&source),
            source,
        }
    }

    /// Whether retrying later may succeed (network, API server, fetch); `false` for settings
    /// and missing refs or paths, which need a change to the spec or the repository.
    pub fn is_transient(&self) -> bool {
        use crate::source::SourceError as S;
        match self {
            GitopsError::Settings { .. } => false,
            GitopsError::Source(S::PathOutside(_) | S::KustomizeMissing { .. }) => false,
            GitopsError::Source(_) => true,
            GitopsError::Kube { source, .. } => crate::cluster::is_transient(source),
            GitopsError::Task(_) => true,
        }
    }
}
