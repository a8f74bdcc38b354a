//! Commit statuses of a revision (DESIGN §6): one per manifest, context
//! `tidemark/<Kind>/<name>` — invalid ones fail at once; applied ones go pending, then success
//! or failure as their kstatus settles (Current → success, Failed → failure), up to a timeout.

use std::time::{Duration, Instant};

use kube::Client;
use kube::api::{Api, DynamicObject};
use serde_json::Value;

use crate::report::status::{Reporter, State, StatusUpdate};
use crate::source::{InvalidManifest, Manifest};

/// One line describing an object's health for its commit status, and the state.
pub fn status_of(obj: &Value) -> Option<(State, String)> {
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
///
/// Failures to post are logged (a forge outage never fails the pass).
pub async fn post_statuses(
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
