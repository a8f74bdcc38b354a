//! Installing and removing tidemark in a cluster, as `velero install` / `velero uninstall` do:
//! [`render`] turns [`InstallOptions`] into objects (pure), [`apply`] applies them with
//! server-side apply under the [`INSTALL_MANAGER`] field manager, [`wait_ready`] waits until a
//! controller runs and the default Location is Available, [`uninstall`] deletes what an
//! installation can have created. The CLI (`cli/install.rs`) only parses flags into
//! [`InstallOptions`] and prints.

mod render;

pub use render::{
    CREDENTIALS_KEY, CREDENTIALS_SECRET, DEFAULT_LOCATION, INSTALL_YAML, InstallOptions,
    LocationOptions, MANAGED_BY, NODE_AGENT_CREDENTIALS, NODE_AGENT_YAML, REPO_PASSWORD_KEY,
    REPO_SECRET, Resources, everything, render,
};

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::{Discovery, Scope};
use serde_json::Value;

use crate::api::tidemark::Location;

/// Field manager of `tidemark install`.
pub const INSTALL_MANAGER: &str = "tidemark-install";

/// How often [`wait_ready`] and [`wait_gone`] look again.
const POLL: Duration = Duration::from_secs(1);

/// Errors of installing and uninstalling.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// An option the installation cannot be rendered with (names the flag).
    #[error("{0}")]
    Invalid(String),
    /// The embedded manifests do not parse (a build defect; tests keep them valid).
    #[error("embedded manifests: {0}")]
    Embedded(String),
    /// A request to the API server failed.
    #[error("{what}: {source}")]
    Kube {
        /// What was being done (`applying Deployment tidemark`).
        what: String,
        /// The client error.
        source: kube::Error,
    },
    /// The cluster does not serve an object's kind.
    #[error("{0} is not served by this cluster")]
    NotServed(String),
    /// [`wait_ready`] or [`wait_gone`] gave up; the message says what was still missing.
    #[error("gave up after {waited:?}: {missing}")]
    Timeout {
        /// How long it waited.
        waited: Duration,
        /// What was not there yet.
        missing: String,
    },
}

fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> InstallError {
    let what = what.into();
    move |source| InstallError::Kube { what, source }
}

/// `Kind/name` of a rendered object.
pub fn describe(v: &Value) -> String {
    format!(
        "{}/{}",
        v["kind"].as_str().unwrap_or("?"),
        v["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// What [`apply`] did with one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Created or brought to the rendered state (server-side apply).
    Applied,
    /// Left as it was: an existing repository password Secret (changing it would lock the
    /// node agent out of the repositories written with the old one).
    Kept,
}

/// The restic repositories' password already stored in `namespace`'s or the node agent
/// namespace's [`REPO_SECRET`], so that a second install reuses it.
///
/// # Errors
/// [`InstallError::Kube`] when the Secrets cannot be read (other than not found).
pub async fn existing_repo_password(
    client: &kube::Client,
    o: &InstallOptions,
) -> Result<Option<String>, InstallError> {
    for ns in [o.namespace.clone(), o.node_agent_namespace()] {
        let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let found = api
            .get_opt(REPO_SECRET)
            .await
            .map_err(kube_err(format!("reading Secret {ns}/{REPO_SECRET}")))?;
        if let Some(pw) = found
            .and_then(|s| s.data)
            .and_then(|d| d.get(REPO_PASSWORD_KEY).cloned())
            .and_then(|b| String::from_utf8(b.0).ok())
        {
            return Ok(Some(pw));
        }
    }
    Ok(None)
}

/// The restic repositories' password from key [`REPO_PASSWORD_KEY`] of `o.repo_password_secret`
/// (`--repo-password-secret`: a Secret the user manages in `o.namespace`, e.g. the one a
/// Location's `spec.encryption` names), for the node agent's copy. `None` when no such Secret
/// is named.
///
/// # Errors
/// [`InstallError::Invalid`] naming the flag when the Secret or its key is missing or not text,
/// or when the node agent's [`REPO_SECRET`] already holds a different password (the
/// repositories written with that one would be locked out); [`InstallError::Kube`] when a Secret
/// cannot be read.
pub async fn repo_password_from_secret(
    client: &kube::Client,
    o: &InstallOptions,
) -> Result<Option<String>, InstallError> {
    let Some(name) = &o.repo_password_secret else {
        return Ok(None);
    };
    let invalid = |m: String| InstallError::Invalid(format!("--repo-password-secret: {m}"));
    let api: Api<Secret> = Api::namespaced(client.clone(), &o.namespace);
    let secret = api
        .get_opt(name)
        .await
        .map_err(kube_err(format!("reading Secret {}/{name}", o.namespace)))?
        .ok_or_else(|| {
            invalid(format!(
                "Secret {name} not found in namespace {}",
                o.namespace
            ))
        })?;
    let password = secret
        .data
        .and_then(|d| d.get(REPO_PASSWORD_KEY).cloned())
        .ok_or_else(|| {
            invalid(format!(
                "Secret {}/{name} has no key {REPO_PASSWORD_KEY}",
                o.namespace
            ))
        })
        .and_then(|b| {
            String::from_utf8(b.0).map_err(|_| {
                invalid(format!(
                    "Secret {}/{name} key {REPO_PASSWORD_KEY} is not text",
                    o.namespace
                ))
            })
        })?;
    if o.node_agent {
        let agent_ns = o.node_agent_namespace();
        let api: Api<Secret> = Api::namespaced(client.clone(), &agent_ns);
        let copy = api
            .get_opt(REPO_SECRET)
            .await
            .map_err(kube_err(format!("reading Secret {agent_ns}/{REPO_SECRET}")))?
            .and_then(|s| s.data)
            .and_then(|d| d.get(REPO_PASSWORD_KEY).cloned());
        if let Some(copy) = copy
            && copy.0 != password.as_bytes()
        {
            return Err(invalid(format!(
                "the node agent's Secret {agent_ns}/{REPO_SECRET} holds another password than \
                 Secret {}/{name}: the repositories written with it would be locked out; put \
                 that password under key {REPO_PASSWORD_KEY} of {name}, or delete \
                 {agent_ns}/{REPO_SECRET} if no repository was written with it",
                o.namespace
            )));
        }
    }
    Ok(Some(password))
}

/// A new random repository password: 32 bytes from the OS, hex (64 characters).
///
/// # Errors
/// [`InstallError::Invalid`] if the OS has no randomness to give.
pub fn new_repo_password() -> Result<String, InstallError> {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf)
        .map_err(|e| InstallError::Invalid(format!("no randomness for a password: {e}")))?;
    Ok(hex::encode(buf))
}

async fn api_for(
    client: &kube::Client,
    discovery: &Discovery,
    v: &Value,
) -> Result<Api<DynamicObject>, InstallError> {
    let tm = kube::core::TypeMeta {
        api_version: v["apiVersion"].as_str().unwrap_or_default().into(),
        kind: v["kind"].as_str().unwrap_or_default().into(),
    };
    let (ar, caps) = discovery
        .resolve_typemeta(&tm)
        .ok_or_else(|| InstallError::NotServed(format!("{}/{}", tm.api_version, tm.kind)))?;
    Ok(match (caps.scope, v["metadata"]["namespace"].as_str()) {
        (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &ar),
        _ => Api::all_with(client.clone(), &ar),
    })
}

/// How long [`apply`] waits for the kinds of the CRDs it applied to be served (60 s): an API
/// server establishes a CRD and adds it to discovery within seconds.
pub const CRDS_SERVED_WITHIN: Duration = Duration::from_secs(60);

/// The API of every object in `docs`, in order, once discovery serves all their kinds. When `wait`
/// (CRDs were just applied), discovery is run again with exponential backoff (100 ms to 2 s,
/// [`CRDS_SERVED_WITHIN`] in all) while a kind is missing; otherwise once.
///
/// # Errors
/// [`InstallError::NotServed`] naming the first kind still missing, or [`InstallError::Kube`]
/// when discovery fails.
async fn apis_served(
    client: &kube::Client,
    docs: &[&Value],
    wait: bool,
) -> Result<Vec<Api<DynamicObject>>, InstallError> {
    use backon::{ExponentialBuilder, Retryable};
    let attempt = || async {
        let discovery = Discovery::new(client.clone())
            .run_aggregated()
            .await
            .map_err(kube_err("discovering the cluster's APIs"))?;
        let mut apis = Vec::with_capacity(docs.len());
        for d in docs {
            apis.push(api_for(client, &discovery, d).await?);
        }
        Ok(apis)
    };
    if !wait {
        return attempt().await;
    }
    attempt
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(100))
                .with_max_delay(Duration::from_secs(2))
                .with_total_delay(Some(CRDS_SERVED_WITHIN))
                .without_max_times(),
        )
        .when(|e| matches!(e, InstallError::NotServed(_)))
        .await
}

/// Applies rendered objects in order (CRDs and namespaces first, then the rest once discovery
/// serves their kinds, waiting up to [`CRDS_SERVED_WITHIN`] after applying CRDs), calling `done`
/// after each. Repository password Secrets are created only when absent.
///
/// # Errors
/// The first failure ([`InstallError::Kube`] naming the object, [`InstallError::NotServed`]);
/// the objects before it stay applied, and applying again converges.
pub async fn apply(
    client: &kube::Client,
    docs: &[Value],
    mut done: impl FnMut(&Value, Applied),
) -> Result<(), InstallError> {
    let pp = PatchParams::apply(INSTALL_MANAGER).force();
    let (first, rest): (Vec<&Value>, Vec<&Value>) = docs
        .iter()
        .partition(|d| d["kind"] == "CustomResourceDefinition" || d["kind"] == "Namespace");
    // The CRDs applied here are served a moment later (once established, and once the API
    // server's discovery has them): until then the objects of their kinds wait for discovery.
    let mut applied_crds = false;
    for group in [first, rest] {
        if group.is_empty() {
            continue;
        }
        let apis = apis_served(client, &group, applied_crds).await?;
        applied_crds |= group
            .iter()
            .any(|d| d["kind"] == "CustomResourceDefinition");
        for (d, api) in group.into_iter().zip(apis) {
            let name = d["metadata"]["name"].as_str().unwrap_or_default();
            let what = format!("applying {}", describe(d));
            if d["kind"] == "Secret" && name == REPO_SECRET {
                let obj: DynamicObject = serde_json::from_value(d.clone())
                    .map_err(|e| InstallError::Embedded(e.to_string()))?;
                match api.create(&PostParams::default(), &obj).await {
                    Ok(_) => done(d, Applied::Applied),
                    Err(kube::Error::Api(s)) if s.code == 409 => done(d, Applied::Kept),
                    Err(e) => return Err(kube_err(what)(e)),
                }
                continue;
            }
            api.patch(name, &pp, &Patch::Apply(d))
                .await
                .map_err(kube_err(what))?;
            done(d, Applied::Applied);
        }
    }
    Ok(())
}

/// What [`wait_ready`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// How the controller was seen running: `Deployment tidemark available` or `Lease
    /// tidemark-controller held by <identity>`.
    pub controller: String,
    /// The default Location's phase, when the installation made one.
    pub location: Option<String>,
}

async fn controller_running(
    client: &kube::Client,
    namespace: &str,
) -> Result<Option<String>, InstallError> {
    let deps: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let dep = deps
        .get_opt("tidemark")
        .await
        .map_err(kube_err(format!("reading Deployment {namespace}/tidemark")))?;
    let available = dep
        .and_then(|d| d.status)
        .and_then(|s| s.available_replicas)
        .unwrap_or(0);
    if available > 0 {
        return Ok(Some(format!(
            "Deployment tidemark has {available} available replica(s)"
        )));
    }
    // A controller running outside the Deployment (a workstation's `tidemark server
    // --leader-elect`, or the Deployment's pod before its readiness probe passed) holds the
    // Lease and renews it; a renewal within two lease durations means it is alive.
    let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let lease = leases
        .get_opt(crate::controller::LEASE_NAME)
        .await
        .map_err(kube_err("reading the controller's Lease"))?;
    let Some(spec) = lease.and_then(|l| l.spec) else {
        return Ok(None);
    };
    let fresh = spec.renew_time.as_ref().is_some_and(|t| {
        let age = k8s_openapi::jiff::Timestamp::now().duration_since(t.0);
        let limit = i64::from(spec.lease_duration_seconds.unwrap_or(15)) * 2;
        age.as_secs() <= limit
    });
    Ok(fresh.then(|| {
        format!(
            "Lease {} held by {}",
            crate::controller::LEASE_NAME,
            spec.holder_identity.as_deref().unwrap_or("?")
        )
    }))
}

async fn location_phase(
    client: &kube::Client,
    namespace: &str,
) -> Result<(Option<String>, Option<String>), InstallError> {
    let api: Api<Location> = Api::namespaced(client.clone(), namespace);
    let loc = api
        .get_opt(DEFAULT_LOCATION)
        .await
        .map_err(kube_err(format!(
            "reading Location {namespace}/{DEFAULT_LOCATION}"
        )))?;
    let Some(loc) = loc else {
        return Ok((None, None));
    };
    let generation = loc.metadata.generation;
    let status = loc.status.unwrap_or_default();
    if status.observed_generation < generation {
        return Ok((None, None));
    }
    Ok((status.phase, status.message))
}

/// Waits (up to `timeout`) until a controller runs in the installation's namespace — its
/// Deployment has an available replica, or a controller renews the leader Lease — the node
/// agent DaemonSet (if installed) has every scheduled pod ready, and the default Location (if
/// installed) reports `Available` for its current generation. `progress` gets a line whenever
/// what is missing changes.
///
/// # Errors
/// [`InstallError::Timeout`] naming what was still missing (with the Location's message when
/// it is `Unavailable`); [`InstallError::Kube`] when the objects cannot be read.
pub async fn wait_ready(
    client: &kube::Client,
    o: &InstallOptions,
    timeout: Duration,
    mut progress: impl FnMut(&str),
) -> Result<Readiness, InstallError> {
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let mut missing = Vec::new();
        let controller = controller_running(client, &o.namespace).await?;
        if controller.is_none() {
            missing.push("no controller running (Deployment tidemark not available)".to_string());
        }
        if o.node_agent {
            let ds: Api<DaemonSet> = Api::namespaced(client.clone(), &o.node_agent_namespace());
            let status = ds
                .get_opt("tidemark-node-agent")
                .await
                .map_err(kube_err("reading the node agent DaemonSet"))?
                .and_then(|d| d.status);
            match status {
                Some(s) if s.number_ready >= s.desired_number_scheduled => {}
                Some(s) => missing.push(format!(
                    "node agent: {} of {} pods ready",
                    s.number_ready, s.desired_number_scheduled
                )),
                None => missing.push("node agent: no status yet".into()),
            }
        }
        let mut location = None;
        if o.location.is_some() {
            let (phase, message) = location_phase(client, &o.namespace).await?;
            match phase.as_deref() {
                Some("Available") => location = phase,
                Some(p) => missing.push(format!(
                    "Location {DEFAULT_LOCATION} is {p}{}",
                    message.map(|m| format!(": {m}")).unwrap_or_default()
                )),
                None => missing.push(format!("Location {DEFAULT_LOCATION} not validated yet")),
            }
        }
        if missing.is_empty() {
            return Ok(Readiness {
                controller: controller.unwrap_or_default(),
                location,
            });
        }
        let now = missing.join("; ");
        if now != last {
            progress(&now);
            last = now.clone();
        }
        if started.elapsed() >= timeout {
            return Err(InstallError::Timeout {
                waited: timeout,
                missing: now,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Deletes `docs` in order, skipping what is absent or no longer served; appends what was
/// deleted (`Kind/name`) to `deleted`.
async fn delete_each(
    client: &kube::Client,
    discovery: &Discovery,
    docs: &[&Value],
    deleted: &mut Vec<String>,
) -> Result<(), InstallError> {
    for d in docs {
        // A kind no longer served (its CRD already gone) has nothing left to delete.
        let Ok(api) = api_for(client, discovery, d).await else {
            continue;
        };
        let name = d["metadata"]["name"].as_str().unwrap_or_default();
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => deleted.push(describe(d)),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(kube_err(format!("deleting {}", describe(d)))(e)),
        }
    }
    Ok(())
}

/// How long [`uninstall`] waits for the installation's namespaces to go before it deletes the
/// CRDs: 2 minutes.
pub const CRD_DELETE_AFTER: Duration = Duration::from_secs(120);

/// Deletes every object an installation in `namespace` can have made (see [`everything`]),
/// in reverse apply order, skipping what is absent — the CRDs last, after waiting (up to
/// [`CRD_DELETE_AFTER`]) for the namespaces to be gone; with `keep_crds`, the CRDs (and so every
/// tidemark object) stay. Backups in object storage are never touched. Returns what was
/// deleted (`Kind/name`).
///
/// # Errors
/// [`InstallError::Kube`] naming the object whose deletion failed (other than not found).
pub async fn uninstall(
    client: &kube::Client,
    namespace: &str,
    keep_crds: bool,
) -> Result<Vec<String>, InstallError> {
    let discovery = Discovery::new(client.clone())
        .run_aggregated()
        .await
        .map_err(kube_err("discovering the cluster's APIs"))?;
    let mut deleted = Vec::new();
    let all = everything(namespace)?;
    let (crds, rest): (Vec<&Value>, Vec<&Value>) = all
        .iter()
        .rev()
        .partition(|d| d["kind"] == "CustomResourceDefinition");
    delete_each(client, &discovery, &rest, &mut deleted).await?;
    if !keep_crds {
        // The CRDs last, once the namespaces are gone: the namespace controller and the CRDs'
        // instance clean-up then never work on the same objects at once (which, on a busy API
        // server, left CRDs terminating for minutes). The wait is bounded: a namespace that
        // does not terminate in time does not keep the CRDs.
        if let Err(e) = wait_gone(client, namespace, CRD_DELETE_AFTER).await {
            tracing::warn!("deleting the CRDs anyway: {e}");
        }
        delete_each(client, &discovery, &crds, &mut deleted).await?;
    }
    Ok(deleted)
}

/// Waits (up to `timeout`) until the installation's namespaces are gone (their finalization
/// deletes everything in them).
///
/// # Errors
/// [`InstallError::Timeout`] naming the namespaces still there.
pub async fn wait_gone(
    client: &kube::Client,
    namespace: &str,
    timeout: Duration,
) -> Result<(), InstallError> {
    let started = Instant::now();
    let api: Api<Namespace> = Api::all(client.clone());
    let names = [namespace.to_string(), format!("{namespace}-node-agent")];
    loop {
        let mut left = Vec::new();
        for n in &names {
            if api
                .get_opt(n)
                .await
                .map_err(kube_err(format!("reading Namespace {n}")))?
                .is_some()
            {
                left.push(n.clone());
            }
        }
        if left.is_empty() {
            return Ok(());
        }
        if started.elapsed() >= timeout {
            return Err(InstallError::Timeout {
                waited: timeout,
                missing: format!("namespaces still terminating: {}", left.join(", ")),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}
