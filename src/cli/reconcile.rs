//! `tidemark reconcile`: reads tidemark manifests from a Git repository or a local directory and
//! converges the cluster on them (DESIGN §6). The controller (`tidemark server`, run separately)
//! then reconciles what was applied.
//!
//! For each new revision: every valid Location, BackupPolicy, Schedule and RestorePlan is applied
//! with server-side apply (field manager [`FIELD_MANAGER`], strict field validation) into its own
//! namespace or `--namespace`, annotated with the revision ([`REVISION_ANNOTATION`]) and labelled
//! with the source's id ([`SOURCE_LABEL`]); objects carrying that label that the revision no
//! longer holds are deleted (objects without the label are never touched); invalid manifests are
//! reported, and an object that exists already but whose manifest became invalid keeps its last
//! applied spec, is marked `Stalled` (reason `InvalidManifest`) and annotated
//! ([`INVALID_ANNOTATION`]); both are lifted once its manifest is valid again. Documents whose
//! kind and name cannot be read at all stop pruning for that revision (they could name anything).
//!
//! The last revision reconciled is recorded in the ConfigMap `tidemark-gitops-<source id>` in
//! `--namespace`: a revision already reconciled is skipped (nothing is fetched when the remote
//! head has not moved), so `--once` can run from cron or CI. `--once` exits 1 when a manifest is
//! invalid or a request failed.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use clap::Args;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::parse_duration;
use crate::api::conditions::Health;
use crate::api::tidemark::{BackupPolicy, Location, RestorePlan, Schedule};
use crate::cluster::{self, Target};
use crate::controller::apply_status;
use crate::report::status::{Forge, ForgeConfig, Reporter, State, StatusUpdate, token_from};
use crate::source::config::{CommitStatusConfig, SourceConfig, SourceKind};
use crate::source::{
    DirSource, GitAuth, GitSource, GitSpec, InvalidManifest, Kind, Manifest, Rendered, Revision,
    manifests, redact_url, render, stable_id,
};

/// Field manager of everything `tidemark reconcile` applies.
pub const FIELD_MANAGER: &str = "tidemark-gitops";
/// Annotation carrying the revision an object was applied from.
pub const REVISION_ANNOTATION: &str = "tidemark.dev/revision";
/// Label naming the source an object was applied from (only such objects are ever pruned).
pub const SOURCE_LABEL: &str = "tidemark.dev/source";
/// Condition reason of an object whose manifest in the source is invalid.
pub const INVALID_MANIFEST: &str = "InvalidManifest";
/// Annotation set on an existing object while its manifest in the source is invalid (the
/// message, naming the field). Unlike the `Stalled` condition it survives the controller's next
/// status write, so the controller can keep reporting the object `Stalled` while it is present.
pub const INVALID_ANNOTATION: &str = crate::controller::INVALID_MANIFEST_ANNOTATION;

/// Where manifests come from: the flags `tidemark reconcile` and `tidemark plan` share.
#[derive(Args, Debug)]
pub(crate) struct SourceArgs {
    /// Where the manifests come from.
    #[arg(long, value_enum, default_value_t = SourceKind::Git)]
    source: SourceKind,
    /// Repository URL (`--source git`): `https://…`, `ssh://…`, `git@host:org/repo.git`,
    /// `file:///…`.
    #[arg(long, required_if_eq("source", "git"))]
    url: Option<String>,
    /// Branch, tag, or full ref (`refs/pull/1/head`).
    #[arg(long = "ref", default_value = "main", value_name = "REF")]
    reference: String,
    /// Path inside the repository (default: its root), or the directory (`--source dir`). A
    /// kustomization there is rendered with `kustomize build` (or `kubectl kustomize`);
    /// otherwise every *.yaml/*.yml below it is read.
    #[arg(long, required_if_eq("source", "dir"))]
    path: Option<PathBuf>,
    /// User name sent with an HTTPS token, or for SSH when the URL has none.
    #[arg(long, env = "TIDEMARK_GIT_USERNAME", default_value = "git")]
    username: String,
    /// File holding an HTTPS token (e.g. a mounted Secret key). Default: $TIDEMARK_GIT_TOKEN.
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// SSH private key file (passphrase, if any, from $TIDEMARK_GIT_SSH_PASSPHRASE).
    #[arg(long, value_name = "PATH")]
    ssh_key: Option<PathBuf>,
    /// known_hosts file the SSH server's key must be in (default: libgit2 checks
    /// ~/.ssh/known_hosts).
    #[arg(long, value_name = "PATH")]
    known_hosts: Option<PathBuf>,
    /// Cache root: repositories are kept in <DIR>/git/<id of the URL> (default:
    /// $TIDEMARK_CACHE, else ~/.cache/tidemark).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Longest a Git fetch (listing the remote's refs, downloading) may take; a stalled server
    /// is then given up on, and the next interval tries again.
    #[arg(long, default_value = "5m", value_parser = super::parse_duration)]
    git_timeout: Duration,
}

impl SourceArgs {
    /// The flags as source settings (the other settings at their defaults).
    pub(crate) fn to_config(&self) -> SourceConfig {
        SourceConfig {
            kind: self.source,
            url: self.url.clone(),
            reference: self.reference.clone(),
            path: self.path.clone(),
            interval: Duration::from_secs(60),
            prune: true,
            namespace: None,
            username: self.username.clone(),
            token_file: self.token_file.clone(),
            ssh_key_file: self.ssh_key.clone(),
            known_hosts_file: self.known_hosts.clone(),
            commit_status: None,
            status_timeout: Duration::from_secs(120),
            cache_dir: self.cache_dir.clone(),
            timeout: self.git_timeout,
        }
    }
}

/// Reads a source's current revision once (fetched or read, and rendered), whether or not it
/// was seen before: the revision, its documents and a description of the source.
///
/// # Errors
/// Invalid settings, credentials, or the source's fetch/render error.
pub(crate) async fn read_once(cfg: &SourceConfig) -> Result<(Revision, Rendered, String)> {
    cfg.validate().map_err(|e| anyhow::anyhow!("source.{e}"))?;
    let source = source_of(cfg)?;
    let (revision, rendered, _) = source.poll(None, true).await?;
    let rendered = rendered.context("the source returned no content")?;
    Ok((revision, rendered, source.describe()))
}

/// Options of `tidemark reconcile`.
#[derive(Args, Debug)]
pub(crate) struct ReconcileArgs {
    #[command(flatten)]
    from: SourceArgs,
    /// How often to look for a new revision.
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    interval: Duration,
    /// Reconcile the current revision once and exit (1 if a manifest is invalid or a request
    /// failed).
    #[arg(long)]
    once: bool,
    /// Reconcile even when the revision was reconciled already.
    #[arg(long)]
    force: bool,
    /// Never delete objects that left the source.
    #[arg(long)]
    no_prune: bool,
    /// Namespace of objects whose manifest names none, and of the source's record.
    #[arg(
        short = 'n',
        long,
        env = "TIDEMARK_NAMESPACE",
        default_value = "tidemark"
    )]
    namespace: String,
    /// Post a commit status per object and revision to this forge (`github`, `gitlab`, `gitea`).
    #[arg(long, value_name = "FORGE", requires_all = ["forge_url", "forge_repository"])]
    forge: Option<String>,
    /// The forge's API root (`https://api.github.com`, `https://gitlab.example.com/api/v4`,
    /// `https://gitea.example.com/api/v1`).
    #[arg(long, value_name = "URL")]
    forge_url: Option<String>,
    /// `owner/repo` (GitHub, Gitea) or the GitLab project id or path.
    #[arg(long, value_name = "REPO")]
    forge_repository: Option<String>,
    /// File holding the forge token (default: $TIDEMARK_FORGE_TOKEN).
    #[arg(long, value_name = "PATH")]
    forge_token_file: Option<PathBuf>,
    /// How long to wait for applied objects to become Ready (or Stalled) before leaving their
    /// commit status pending.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    status_timeout: Duration,
}

impl ReconcileArgs {
    /// The flags as the controller's `source:` settings (one code path for both).
    fn to_config(&self) -> SourceConfig {
        SourceConfig {
            interval: self.interval,
            prune: !self.no_prune,
            namespace: Some(self.namespace.clone()),
            commit_status: match (&self.forge, &self.forge_url, &self.forge_repository) {
                (Some(forge), Some(url), Some(repository)) => Some(CommitStatusConfig {
                    forge: forge.clone(),
                    url: url.clone(),
                    repository: repository.clone(),
                    token_file: self.forge_token_file.clone(),
                }),
                _ => None,
            },
            status_timeout: self.status_timeout,
            ..self.from.to_config()
        }
    }
}

/// A source as configured.
enum Source {
    Git(Arc<GitSource>),
    Dir(DirSource),
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::Git(g) => {
                let s = g.spec();
                format!(
                    "git {} {} {}",
                    redact_url(&s.url),
                    s.reference,
                    s.path.display()
                )
            }
            Source::Dir(d) => format!("dir {}", d.path().display()),
        }
    }

    /// The source's id, which labels what it applied: one per source and target namespace.
    fn id(&self, namespace: &str) -> String {
        match self {
            Source::Git(g) => {
                let s = g.spec();
                stable_id(&[
                    "git",
                    &s.url,
                    &s.reference,
                    &s.path.to_string_lossy(),
                    namespace,
                ])
            }
            Source::Dir(d) => stable_id(&["dir", &d.path().to_string_lossy(), namespace]),
        }
    }

    /// The current revision and, unless it is `since` (and not forced), its rendered content.
    async fn poll(
        &self,
        since: Option<&Revision>,
        force: bool,
    ) -> Result<(Revision, Option<Rendered>, Duration)> {
        let since = if force { None } else { since.cloned() };
        let started = Instant::now();
        match self {
            Source::Git(g) => {
                let g = g.clone();
                tokio::task::spawn_blocking(move || {
                    let fetched = g.fetch(since.as_ref())?;
                    if !fetched.changed {
                        return Ok((fetched.revision, None, started.elapsed()));
                    }
                    // Rendered while the fetch holds the cache's lock.
                    let rendered = render(&fetched.path)?;
                    Ok((fetched.revision, Some(rendered), started.elapsed()))
                })
                .await?
            }
            Source::Dir(d) => {
                let d = d.clone();
                tokio::task::spawn_blocking(move || {
                    let (rev, rendered) = d.read()?;
                    let unchanged = since.as_ref().is_some_and(|s| s.same_content(&rev));
                    Ok((rev, (!unchanged).then_some(rendered), started.elapsed()))
                })
                .await?
            }
        }
    }
}

fn source_of(cfg: &SourceConfig) -> Result<Source> {
    Ok(match cfg.kind {
        SourceKind::Git => {
            let url = cfg
                .url
                .clone()
                .context("a URL is required for a git source (--url, source.url)")?;
            let auth = GitAuth::from_options(
                &cfg.username,
                cfg.token_file.as_deref(),
                cfg.ssh_key_file.as_deref(),
                cfg.known_hosts_file.as_deref(),
            )?;
            Source::Git(Arc::new(GitSource::new(GitSpec {
                url,
                reference: cfg.reference.clone(),
                path: cfg.path.clone().unwrap_or_else(|| PathBuf::from(".")),
                auth,
                cache_root: cfg.cache_dir.clone(),
                timeout: cfg.timeout,
            })?))
        }
        SourceKind::Dir => {
            let path = cfg
                .path
                .clone()
                .context("a path is required for a dir source (--path, source.path)")?;
            Source::Dir(DirSource::new(path)?)
        }
    })
}

fn reporter_of(cfg: &SourceConfig) -> Result<Option<Reporter>> {
    let Some(c) = &cfg.commit_status else {
        return Ok(None);
    };
    let forge: Forge = c
        .forge
        .parse()
        .map_err(|e| anyhow::anyhow!("commit status forge: {e}"))?;
    let token = token_from(c.token_file.as_deref(), Some("TIDEMARK_FORGE_TOKEN"))?;
    Ok(Some(Reporter::new(ForgeConfig {
        forge,
        base_url: c.url.clone(),
        repository: c.repository.clone(),
        token,
    })?))
}

/// The record of the last revision reconciled from a source into a cluster.
#[derive(Clone, Debug)]
struct Record {
    revision: Revision,
    invalid: usize,
}

fn record_name(id: &str) -> String {
    format!("tidemark-gitops-{id}")
}

async fn read_record(client: &Client, namespace: &str, id: &str) -> Result<Option<Record>> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let Some(cm) = api
        .get_opt(&record_name(id))
        .await
        .with_context(|| format!("reading the source record in namespace {namespace}"))?
    else {
        return Ok(None);
    };
    let data = cm.data.unwrap_or_default();
    let Some(revision) = data.get("revision").and_then(|r| r.parse().ok()) else {
        return Ok(None);
    };
    Ok(Some(Record {
        revision,
        invalid: data
            .get("invalid")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
    }))
}

async fn write_record(
    client: &Client,
    namespace: &str,
    id: &str,
    source: &str,
    report: &Report,
) -> Result<(), kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let name = record_name(id);
    let body = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {SOURCE_LABEL: id, "app.kubernetes.io/managed-by": "tidemark"},
        },
        "data": {
            "source": source,
            "revision": report.revision.to_string(),
            "reconciledAt": crate::controller::now_rfc3339(),
            "applied": report.applied().to_string(),
            "pruned": report.pruned.len().to_string(),
            "invalid": report.invalid.len().to_string(),
        },
    });
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map(|_| ())
}

/// What one revision did.
#[derive(Debug)]
struct Report {
    revision: Revision,
    created: Vec<String>,
    configured: Vec<String>,
    unchanged: Vec<String>,
    pruned: Vec<String>,
    /// `(invalid manifest, whether the live object was marked Stalled)`.
    invalid: Vec<(InvalidManifest, bool)>,
    failed: Vec<String>,
    prune_skipped: Option<String>,
}

impl Report {
    fn new(revision: Revision) -> Report {
        Report {
            revision,
            created: Vec::new(),
            configured: Vec::new(),
            unchanged: Vec::new(),
            pruned: Vec::new(),
            invalid: Vec::new(),
            failed: Vec::new(),
            prune_skipped: None,
        }
    }

    fn applied(&self) -> usize {
        self.created.len() + self.configured.len() + self.unchanged.len()
    }

    fn print(&self, took: Duration) {
        println!(
            "revision {}: applied {} (created {}, configured {}, unchanged {}), pruned {}, invalid {}{} in {:.1?}",
            self.revision,
            self.applied(),
            self.created.len(),
            self.configured.len(),
            self.unchanged.len(),
            self.pruned.len(),
            self.invalid.len(),
            if self.failed.is_empty() {
                String::new()
            } else {
                format!(", failed {}", self.failed.len())
            },
            took
        );
        for (what, list) in [
            ("created", &self.created),
            ("configured", &self.configured),
            ("unchanged", &self.unchanged),
            ("pruned", &self.pruned),
        ] {
            for o in list {
                println!("  {what:<10} {o}");
            }
        }
        for (i, stalled) in &self.invalid {
            println!(
                "  {:<10} {i}{}",
                "invalid",
                if *stalled {
                    " (the object keeps its last applied spec; marked Stalled)"
                } else {
                    ""
                }
            );
        }
        for f in &self.failed {
            println!("  {:<10} {f}", "failed");
        }
        if let Some(why) = &self.prune_skipped {
            println!("  pruning skipped: {why}");
        }
    }
}

/// Whether an apply error is the manifest's fault: schema or CEL rule violations (422), strict
/// decoding errors (400), and fields the schema does not declare (the API server answers those
/// with a 500 "failed to create typed patch object" for server-side apply).
fn is_invalid(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => {
            s.code == 422
                || (s.code == 400 && s.reason == "BadRequest")
                || s.message.contains("field not declared in schema")
                || s.message.contains("failed to create typed patch object")
        }
        _ => false,
    }
}

/// Spec, labels and annotations (without the revision annotation): what "configured" compares.
fn user_content(obj: &DynamicObject) -> Value {
    let mut ann = obj.annotations().clone();
    ann.remove(REVISION_ANNOTATION);
    json!({"spec": obj.data.get("spec"), "labels": obj.labels(), "annotations": ann})
}

async fn apply_one(
    client: &Client,
    m: &Manifest,
    id: &str,
    revision: &Revision,
) -> Result<(&'static str, DynamicObject), kube::Error> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &m.namespace, &m.kind.api_resource());
    let before = api.get_opt(&m.name).await?;
    let mut body = m.object.clone();
    let meta = &mut body["metadata"];
    if !meta["labels"].is_object() {
        meta["labels"] = json!({});
    }
    meta["labels"][SOURCE_LABEL] = json!(id);
    if !meta["annotations"].is_object() {
        meta["annotations"] = json!({});
    }
    meta["annotations"][REVISION_ANNOTATION] = json!(revision.to_string());
    let after = api
        .patch(
            &m.name,
            &PatchParams::apply(FIELD_MANAGER)
                .force()
                .validation_strict(),
            &Patch::Apply(&body),
        )
        .await?;
    let outcome = match before {
        None => "created",
        Some(b) if user_content(&b) != user_content(&after) => "configured",
        Some(_) => "unchanged",
    };
    Ok((outcome, after))
}

/// Whether the object carries the `Stalled` condition this command sets for invalid manifests.
fn stalled_by_invalid_manifest(obj: &DynamicObject) -> bool {
    obj.data
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c["type"] == "Stalled" && c["status"] == "True" && c["reason"] == INVALID_MANIFEST
            })
        })
}

/// Folds `health` into an existing object's conditions; `false` when it does not exist. The
/// status fields the controller wrote are kept.
async fn set_health_typed<K>(
    client: &Client,
    namespace: &str,
    name: &str,
    health: &Health,
) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let Some(obj) = api.get_opt(name).await? else {
        return Ok(false);
    };
    let mut status = serde_json::to_value(&obj)
        .ok()
        .and_then(|v| v.get("status").cloned())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    let existing: Vec<Condition> = status
        .get("conditions")
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default();
    if let Some(s) = status.as_object_mut() {
        s.remove("conditions");
        s.remove("observedGeneration");
    }
    apply_status(&api, &obj, &existing, status, health).await?;
    Ok(true)
}

async fn set_health(
    client: &Client,
    kind: Kind,
    namespace: &str,
    name: &str,
    health: &Health,
) -> Result<bool, kube::Error> {
    match kind {
        Kind::Location => set_health_typed::<Location>(client, namespace, name, health).await,
        Kind::BackupPolicy => {
            set_health_typed::<BackupPolicy>(client, namespace, name, health).await
        }
        Kind::Schedule => set_health_typed::<Schedule>(client, namespace, name, health).await,
        Kind::RestorePlan => set_health_typed::<RestorePlan>(client, namespace, name, health).await,
    }
}

/// Marks the existing object of an invalid manifest `Stalled` (reason `InvalidManifest`);
/// `false` when there is no such object.
async fn stall(
    client: &Client,
    invalid: &InvalidManifest,
    revision: &Revision,
) -> Result<bool, kube::Error> {
    let Some((kind, namespace, name)) = invalid.identity() else {
        return Ok(false);
    };
    let message = format!(
        "the manifest at {revision} ({}) is invalid and was not applied: {}",
        invalid.origin, invalid.message
    );
    // The annotation first: it survives the controller rewriting the status.
    match annotate_invalid(client, kind, namespace, name, Some(&message)).await {
        Err(e) if cluster::is_not_found(&e) => return Ok(false),
        r => r?,
    }
    let health = Health::Stalled {
        reason: INVALID_MANIFEST.into(),
        message,
    };
    set_health(client, kind, namespace, name, &health).await
}

/// Sets (or, with `None`, removes) the [`INVALID_ANNOTATION`] of an existing object, with a
/// merge patch (never creates the object).
async fn annotate_invalid(
    client: &Client,
    kind: Kind,
    namespace: &str,
    name: &str,
    message: Option<&str>,
) -> Result<(), kube::Error> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &kind.api_resource());
    let value = message.map(|m| {
        // Annotations are limited in size; the condition carries the message too.
        let mut m = m.to_string();
        if m.len() > 4096 {
            let mut cut = 4096;
            while !m.is_char_boundary(cut) {
                cut -= 1;
            }
            m.truncate(cut);
        }
        m
    });
    let pp = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    api.patch(
        name,
        &pp,
        &Patch::Merge(json!({"metadata": {"annotations": {INVALID_ANNOTATION: value}}})),
    )
    .await
    .map(|_| ())
}

/// Deletes objects labelled with `id` that are not in `keep`.
async fn prune(
    client: &Client,
    id: &str,
    keep: &BTreeSet<(Kind, String, String)>,
    namespaces: &BTreeSet<String>,
    report: &mut Report,
) {
    let lp = ListParams::default().labels(&format!("{SOURCE_LABEL}={id}"));
    // Dependents first: plans and schedules before the policies and locations they name.
    for kind in Kind::ALL.into_iter().rev() {
        let ar = kind.api_resource();
        let found: Vec<DynamicObject> = match Api::<DynamicObject>::all_with(client.clone(), &ar)
            .list(&lp)
            .await
        {
            Ok(l) => l.items,
            // Without cluster-wide list rights, look in the namespaces this source uses.
            Err(kube::Error::Api(s)) if s.code == 403 => {
                let mut items = Vec::new();
                for ns in namespaces {
                    match Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ar)
                        .list(&lp)
                        .await
                    {
                        Ok(l) => items.extend(l.items),
                        Err(e) => report.failed.push(format!(
                            "listing {kind}s in {ns} to prune: {}",
                            cluster::describe(&e)
                        )),
                    }
                }
                items
            }
            Err(e) => {
                report.failed.push(format!(
                    "listing {kind}s to prune: {}",
                    cluster::describe(&e)
                ));
                continue;
            }
        };
        for obj in found {
            let ns = obj.namespace().unwrap_or_default();
            let name = obj.name_any();
            if keep.contains(&(kind, ns.clone(), name.clone()))
                || obj.metadata.deletion_timestamp.is_some()
            {
                continue;
            }
            let what = format!("{kind} {ns}/{name}");
            match Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &ar)
                .delete(&name, &DeleteParams::default())
                .await
            {
                Ok(_) => report.pruned.push(what),
                Err(e) if cluster::is_not_found(&e) => {}
                Err(e) => report
                    .failed
                    .push(format!("pruning {what}: {}", cluster::describe(&e))),
            }
        }
    }
}

/// Applies one revision's content.
async fn reconcile_revision(
    client: &Client,
    loop_: &Loop,
    id: &str,
    revision: Revision,
    rendered: &Rendered,
) -> Report {
    let mut report = Report::new(revision);
    let parsed = manifests::parse(&rendered.documents, &loop_.namespace);
    let (mut valid, mut invalid): (Vec<Manifest>, Vec<InvalidManifest>) = (Vec::new(), Vec::new());
    for p in parsed {
        match p {
            Ok(m) => valid.push(m),
            Err(i) => invalid.push(i),
        }
    }
    valid.sort_by(|a, b| (a.kind, &a.namespace, &a.name).cmp(&(b.kind, &b.namespace, &b.name)));
    // What the revision holds, valid or not: never pruned.
    let mut keep: BTreeSet<(Kind, String, String)> = BTreeSet::new();
    let mut namespaces: BTreeSet<String> = BTreeSet::from([loop_.namespace.clone()]);
    for m in &valid {
        keep.insert((m.kind, m.namespace.clone(), m.name.clone()));
        namespaces.insert(m.namespace.clone());
    }
    let mut unidentified = Vec::new();
    for i in &invalid {
        match i.identity() {
            Some((k, ns, n)) => {
                keep.insert((k, ns.to_string(), n.to_string()));
            }
            None => unidentified.push(i.origin.clone()),
        }
    }
    for m in &valid {
        match apply_one(client, m, id, &report.revision).await {
            Ok((outcome, after)) => {
                match outcome {
                    "created" => report.created.push(m.describe()),
                    "configured" => report.configured.push(m.describe()),
                    _ => report.unchanged.push(m.describe()),
                }
                // The manifest is valid again: lift the stall this command set; the controller
                // reports the object's health from here.
                if after.annotations().contains_key(INVALID_ANNOTATION)
                    && let Err(e) =
                        annotate_invalid(client, m.kind, &m.namespace, &m.name, None).await
                {
                    report.failed.push(format!(
                        "removing the {INVALID_ANNOTATION} annotation of {}: {}",
                        m.describe(),
                        cluster::describe(&e)
                    ));
                }
                if stalled_by_invalid_manifest(&after) {
                    let health = Health::Reconciling {
                        reason: "ManifestApplied".into(),
                        message: format!(
                            "the manifest at {} is valid and was applied",
                            report.revision
                        ),
                    };
                    if let Err(e) = set_health(client, m.kind, &m.namespace, &m.name, &health).await
                    {
                        report.failed.push(format!(
                            "clearing the InvalidManifest condition of {}: {}",
                            m.describe(),
                            cluster::describe(&e)
                        ));
                    }
                }
            }
            Err(e) if is_invalid(&e) => invalid.push(InvalidManifest {
                kind: m.kind.to_string(),
                name: Some(m.name.clone()),
                namespace: Some(m.namespace.clone()),
                origin: m.origin.clone(),
                message: match &e {
                    kube::Error::Api(s) => s.message.clone(),
                    other => other.to_string(),
                },
            }),
            Err(e) => report.failed.push(format!(
                "applying {}: {}",
                m.describe(),
                cluster::describe(&e)
            )),
        }
    }
    for i in invalid {
        let stalled = match stall(client, &i, &report.revision).await {
            Ok(s) => s,
            Err(e) => {
                report.failed.push(format!(
                    "marking {} Stalled: {}",
                    i.describe(),
                    cluster::describe(&e)
                ));
                false
            }
        };
        report.invalid.push((i, stalled));
    }
    if !loop_.config.prune {
        report.prune_skipped = Some("pruning is off (--no-prune, source.prune: false)".into());
    } else if !unidentified.is_empty() {
        report.prune_skipped = Some(format!(
            "documents whose kind and name cannot be read ({}) could name any object",
            unidentified.join(", ")
        ));
    } else {
        prune(client, id, &keep, &namespaces, &mut report).await;
    }
    report
}

/// A configured reconcile loop: the source, its settings and where statuses go.
pub(crate) struct Loop {
    config: SourceConfig,
    namespace: String,
    source: Source,
    id: String,
    reporter: Option<Reporter>,
    force: bool,
}

impl Loop {
    /// Sets up a loop from settings; `namespace` is used when the settings name none.
    ///
    /// # Errors
    /// Invalid settings, unreadable credentials or token files.
    pub(crate) fn new(config: SourceConfig, namespace: &str, force: bool) -> Result<Loop> {
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("source.{e}"))?;
        let namespace = config
            .namespace
            .clone()
            .unwrap_or_else(|| namespace.to_string());
        let source = source_of(&config)?;
        let reporter = reporter_of(&config)?;
        let id = source.id(&namespace);
        Ok(Loop {
            config,
            namespace,
            source,
            id,
            reporter,
            force,
        })
    }

    /// One pass: poll the source and reconcile a new revision. Returns whether everything was
    /// valid and applied.
    ///
    /// # Errors
    /// The source could not be fetched or rendered, or the record could not be read.
    pub(crate) async fn pass(&self, client: &Client) -> Result<bool> {
        let started = Instant::now();
        let record = read_record(client, &self.namespace, &self.id).await?;
        let since = record.as_ref().map(|r| r.revision.clone());
        let (revision, rendered, fetch_time) = self.source.poll(since.as_ref(), self.force).await?;
        let Some(rendered) = rendered else {
            let invalid = record.map(|r| r.invalid).unwrap_or(0);
            println!(
                "revision {revision}: unchanged (already reconciled{}), skipped in {fetch_time:.1?}",
                if invalid > 0 {
                    format!("; {invalid} invalid manifest(s)")
                } else {
                    String::new()
                }
            );
            return Ok(invalid == 0);
        };
        if let Some(r) = &rendered.renderer {
            tracing::info!(renderer = %r, "rendered the kustomization");
        }
        let report = reconcile_revision(client, self, &self.id, revision, &rendered).await;
        if report.failed.is_empty() {
            // Record the revision only when every request went through, so failures are retried.
            if let Err(e) = write_record(
                client,
                &self.namespace,
                &self.id,
                &self.source.describe(),
                &report,
            )
            .await
            {
                tracing::warn!("recording the revision failed: {}", cluster::describe(&e));
            }
        }
        report.print(started.elapsed());
        if let Some(reporter) = &self.reporter
            && let Some(sha) = report.revision.commit_id()
        {
            let parsed = manifests::parse(&rendered.documents, &self.namespace);
            post_statuses(client, reporter, sha, &parsed, self.config.status_timeout).await;
        }
        Ok(report.failed.is_empty() && report.invalid.is_empty())
    }

    /// Runs passes every `interval` (and on each change of a directory source) until `stop`
    /// completes. A failed pass is logged and retried at the next interval.
    ///
    /// # Errors
    /// The directory watcher could not be started.
    pub(crate) async fn run(
        &self,
        client: &Client,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<()> {
        tracing::info!(
            source = %self.source.describe(),
            namespace = %self.namespace,
            id = %self.id,
            interval = %humantime::format_duration(self.config.interval),
            "reconciling a source"
        );
        let mut watcher = match &self.source {
            Source::Dir(d) => Some(d.watch(Duration::from_millis(500))?),
            Source::Git(_) => None,
        };
        tokio::pin!(stop);
        loop {
            if let Err(e) = self.pass(client).await {
                tracing::error!("reconciling {}: {e:#}", self.source.describe());
                eprintln!("error: {e:#}");
            }
            let changed = async {
                match watcher.as_mut() {
                    Some(w) => match w.changed().await {
                        Some(Err(e)) => tracing::warn!("{e}"),
                        Some(Ok(paths)) => tracing::debug!(?paths, "changed"),
                        None => std::future::pending().await,
                    },
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(self.config.interval) => {}
                _ = changed => {}
                _ = &mut stop => return Ok(()),
            }
        }
    }
}

/// One line describing an object's health for its commit status, and the state.
fn status_of(obj: &Value) -> Option<(State, String)> {
    use crate::api::conditions::{KStatus, kstatus};
    let ready = obj
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default()
        .to_string();
    let kind = obj["kind"].as_str().unwrap_or_default();
    let message = match (kind, obj.pointer("/status/preview")) {
        ("RestorePlan", Some(p)) => format!(
            "restore plan: {} to create, {} to update, {} unchanged, {} conflicts",
            p["create"], p["update"], p["skip"], p["conflict"]
        ),
        _ => ready,
    };
    match kstatus(obj) {
        KStatus::Current => Some((State::Success, message)),
        KStatus::Failed => Some((State::Failure, message)),
        KStatus::InProgress => None,
    }
}

/// Posts one commit status per object of the revision: invalid ones fail at once; applied ones
/// go pending, then success or failure as their health settles (up to `timeout`).
async fn post_statuses(
    client: &Client,
    reporter: &Reporter,
    sha: &str,
    parsed: &[std::result::Result<Manifest, InvalidManifest>],
    timeout: Duration,
) {
    let context = |kind: &str, name: &str| format!("tidemark/{kind}/{name}");
    let mut updates = Vec::new();
    let mut pending: Vec<&Manifest> = Vec::new();
    for p in parsed {
        match p {
            Ok(m) => {
                updates.push(StatusUpdate {
                    sha: sha.into(),
                    context: context(m.kind.as_str(), &m.name),
                    state: State::Pending,
                    description: "applied; waiting for the controller".into(),
                    target_url: None,
                });
                pending.push(m);
            }
            Err(i) => updates.push(StatusUpdate {
                sha: sha.into(),
                context: context(&i.kind, i.name.as_deref().unwrap_or("unknown")),
                state: State::Failure,
                description: format!("invalid manifest: {}", i.message),
                target_url: None,
            }),
        }
    }
    if let Err(e) = reporter.post(&updates).await {
        tracing::warn!("commit statuses not posted: {e}");
        return;
    }
    let deadline = Instant::now() + timeout;
    while !pending.is_empty() {
        let mut settled = Vec::new();
        let mut still = Vec::new();
        for m in pending {
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &m.namespace, &m.kind.api_resource());
            let state = match api.get_opt(&m.name).await {
                Ok(Some(o)) => {
                    let mut v = serde_json::to_value(&o).unwrap_or_default();
                    v["kind"] = Value::String(m.kind.as_str().into());
                    status_of(&v)
                }
                _ => None,
            };
            match state {
                Some((state, description)) => settled.push(StatusUpdate {
                    sha: sha.into(),
                    context: context(m.kind.as_str(), &m.name),
                    state,
                    description,
                    target_url: None,
                }),
                None => still.push(m),
            }
        }
        if !settled.is_empty()
            && let Err(e) = reporter.post(&settled).await
        {
            tracing::warn!("commit statuses not posted: {e}");
        }
        pending = still;
        if pending.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Runs `tidemark reconcile`.
pub(crate) async fn run(target: &Target, args: ReconcileArgs) -> Result<ExitCode> {
    let reconcile = Loop::new(args.to_config(), &args.namespace, args.force)?;
    let client = cluster::connect(target).await?;
    if args.once {
        let ok = reconcile.pass(&client).await?;
        return Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    println!(
        "reconciling {} into namespace {} every {} (source id {})",
        reconcile.source.describe(),
        reconcile.namespace,
        humantime::format_duration(args.interval),
        reconcile.id
    );
    reconcile
        .run(&client, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16, reason: &str, message: &str) -> kube::Error {
        let mut s: kube::core::Status = serde_json::from_value(json!({})).unwrap();
        s.code = code;
        s.reason = reason.into();
        s.message = message.into();
        kube::Error::Api(Box::new(s))
    }

    #[test]
    fn manifest_errors_are_told_from_request_errors() {
        assert!(is_invalid(&api_error(
            422,
            "Invalid",
            "spec: Invalid value"
        )));
        assert!(is_invalid(&api_error(
            400,
            "BadRequest",
            "strict decoding error"
        )));
        assert!(is_invalid(&api_error(
            500,
            "",
            "failed to create typed patch object (ns/x; Kind=BackupPolicy): .metadata.labelz: \
             field not declared in schema"
        )));
        assert!(!is_invalid(&api_error(
            500,
            "InternalError",
            "etcdserver: timeout"
        )));
        assert!(!is_invalid(&api_error(403, "Forbidden", "no")));
        assert!(!is_invalid(&api_error(
            404,
            "NotFound",
            "namespaces \"x\" not found"
        )));
    }

    #[test]
    fn labels_and_names_fit() {
        let id = stable_id(&["git", "https://example.com/r.git", "main", ".", "tidemark"]);
        assert!(id.len() <= 63);
        assert!(record_name(&id).len() <= 63);
    }
}
