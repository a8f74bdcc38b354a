//! The `GitSource` kind (`tidemark.dev/v1alpha1`): a Git repository whose tidemark manifests
//! (Location, BackupPolicy, Schedule, RestorePlan) the controller applies and keeps applied —
//! tidemark's counterpart of a Flux `GitRepository` plus `Kustomization` pair (DESIGN §6).
//!
//! The spec follows Flux's field names where they mean the same (`url`, `ref.branch`,
//! `ref.tag`, `ref.semver`, `ref.commit`, `ref.name`, `interval`, `timeout`, `path`, `prune`,
//! `suspend`, `secretRef` with the keys `username`/`password` or `identity`/`known_hosts`,
//! `targetNamespace`); the status carries Flux's `artifact.revision` (`main@sha1:<commit>`),
//! `inventory.entries` (`<namespace>_<name>_<group>_<kind>` ids with their version),
//! `lastAppliedRevision`, `lastAttemptedRevision`, `lastHandledReconcileAt` (the
//! `reconcile.fluxcd.io/requestedAt` annotation handled last) and kstatus conditions. The
//! engine is [`crate::gitops`].

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Git repository of tidemark manifests that the controller applies (server-side apply,
/// field manager `tidemark-gitops`), prunes by inventory and reports on.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "tidemark.dev",
    version = "v1alpha1",
    kind = "GitSource",
    namespaced,
    status = "GitSourceStatus",
    shortname = "gitsrc",
    category = "tidemark",
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".spec.url"}"#,
    printcolumn = r#"{"name":"Revision","type":"string","jsonPath":".status.lastAppliedRevision"}"#,
    printcolumn = r#"{"name":"Suspended","type":"boolean","jsonPath":".spec.suspend"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct GitSourceSpec {
    /// Repository URL: `https://…`, `ssh://…`, `git@host:org/repo.git`, `file:///…`.
    #[x_kube(validation = Rule::new("self != ''").message("url must not be empty"))]
    pub url: String,
    /// What to follow; default the branch `main`.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<GitSourceRef>,
    /// Directory inside the repository (default its root). A kustomization there is rendered
    /// with `kustomize build`; otherwise every `*.yaml`/`*.yml` below it is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// How often the remote is checked for a new revision (Go duration, `1m`). Default `1m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Longest a fetch's network part may take (Go duration). Default `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Delete the objects a previous revision applied that this one no longer holds (by the
    /// inventory: nothing else is ever deleted). Default `true`.
    #[serde(default = "yes")]
    pub prune: bool,
    /// Stop reconciling (the applied objects stay as they are).
    #[serde(default)]
    pub suspend: bool,
    /// Namespace of the objects whose manifest names none. Default: this GitSource's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_namespace: Option<String>,
    /// A Secret in this GitSource's namespace with the Git credentials, Flux's keys: HTTPS
    /// `username` (default `git`) and `password` (a token); or SSH `identity` (private key),
    /// `known_hosts`, `password` (the key's passphrase, if any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// Post one commit status per applied object and revision to a forge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_status: Option<CommitStatusSpec>,
}

fn yes() -> bool {
    true
}

/// The name of an object in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LocalObjectReference {
    /// Its name.
    pub name: String,
}

/// What a [`GitSource`] follows (Flux's `GitRepositoryRef`): one of `branch`, `tag`, `semver`,
/// `name`; `commit` pins a commit, alone (on the remote's default branch) or with `branch`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "[has(self.branch), has(self.tag), has(self.semver), has(self.name)].filter(x, x).size() <= 1"
).message("give at most one of branch, tag, semver and name"))]
#[x_kube(validation = Rule::new(
    "!has(self.commit) || !(has(self.tag) || has(self.semver) || has(self.name))"
).message("commit combines with branch only"))]
pub struct GitSourceRef {
    /// A branch (`main`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// A tag (`v1.2.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// A semver range (`>=1.0.0 <2.0.0`, `~1.2`): the highest tag inside it is followed (tags
    /// with a leading `v` count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semver: Option<String>,
    /// A full ref (`refs/pull/42/head`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A commit (full SHA-1) on `branch` (default: the remote's default branch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// Where a [`GitSource`] posts commit statuses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommitStatusSpec {
    /// `github`, `gitlab` or `gitea`.
    #[x_kube(validation = Rule::new(
        "self == 'github' || self == 'gitlab' || self == 'gitea'"
    ).message("forge must be one of github, gitlab, gitea"))]
    pub forge: String,
    /// The forge's API root (`https://api.github.com`, `https://gitlab.example.com/api/v4`,
    /// `https://gitea.example.com/api/v1`).
    pub url: String,
    /// `owner/repo` (GitHub, Gitea) or the GitLab project id or path.
    pub repository: String,
    /// A Secret in the GitSource's namespace whose key `token` holds the forge token.
    pub secret_ref: LocalObjectReference,
    /// How long to wait for applied objects to become Ready (or Stalled) before leaving their
    /// commit status pending (Go duration). Default `2m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// What a [`GitSource`] last fetched (Flux's `Artifact`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// `<ref>@sha1:<commit>` (`main@sha1:0f3c…`, `refs/tags/v1.2.0@sha1:…`).
    pub revision: String,
    /// `sha256:<hex>` of the rendered manifests (what was applied, byte for byte).
    pub digest: String,
    /// When this artifact was first seen (RFC 3339).
    pub last_update_time: String,
}

/// One object a [`GitSource`] applied (Flux's `ResourceRef`).
#[derive(
    Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub struct InventoryEntry {
    /// `<namespace>_<name>_<group>_<kind>`.
    pub id: String,
    /// The API version it was applied as (`v1alpha1`).
    pub v: String,
}

/// The objects a [`GitSource`] applied with its last revision: what the next one prunes from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Inventory {
    /// Sorted by id.
    #[serde(default)]
    pub entries: Vec<InventoryEntry>,
}

/// Observed state of a [`GitSource`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitSourceStatus {
    /// The revision fetched last, and its digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<Artifact>,
    /// The objects applied from [`Self::last_applied_revision`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<Inventory>,
    /// The last revision applied whole (every manifest valid, every request through).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_revision: Option<String>,
    /// The last revision tried, applied whole or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempted_revision: Option<String>,
    /// The value of the `reconcile.fluxcd.io/requestedAt` annotation handled last (`flux
    /// reconcile`-style "now, please").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
