//! Engine requests from the templates of tidemark's kinds, shared by the controllers that run
//! or preview backups and restores (Backup, Schedule, BackupPolicy; Restore, RestorePlan) and
//! by `tidemark plan`: every error names the field at fault (`spec.template.<field>`).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;

use super::Context;
use crate::api::tidemark::{BackupSpecTemplate, RestoreSpecTemplate};
use crate::backup::BackupRequest;
use crate::cluster::selector::LabelMatcher;
use crate::restore::{self, ExistingPolicy, RestoreRequest};
use crate::store::Store;

/// Builds an engine request from a template; errors name the field at fault.
///
/// # Errors
/// A `spec.template.<field>: <reason>` message.
pub fn backup_request(
    name: &str,
    namespace: &str,
    t: &BackupSpecTemplate,
    location: &str,
) -> Result<BackupRequest, String> {
    let mut req = BackupRequest::new(name);
    req.record_namespace = namespace.into();
    req.location_name = location.into();
    req.include_namespaces = t.included_namespaces.clone();
    req.exclude_namespaces = t.excluded_namespaces.clone();
    req.include_resources = t.included_resources.clone();
    req.exclude_resources = t.excluded_resources.clone();
    req.include_cluster_resources = t.include_cluster_resources;
    req.include_events = t.include_events.unwrap_or(false);
    req.include_cluster_scoped = t.included_cluster_scoped_resources.clone();
    req.exclude_cluster_scoped = t.excluded_cluster_scoped_resources.clone();
    req.include_namespace_scoped = t.included_namespace_scoped_resources.clone();
    req.exclude_namespace_scoped = t.excluded_namespace_scoped_resources.clone();
    req.ordered_resources = t.ordered_resources.clone();
    if let Some(ls) = &t.label_selector {
        let m = LabelMatcher::new(ls).map_err(|e| format!("spec.template.labelSelector: {e}"))?;
        req.selector = Some(m.to_query());
    }
    for (i, ls) in t.or_label_selectors.iter().enumerate() {
        let m = LabelMatcher::new(ls)
            .map_err(|e| format!("spec.template.orLabelSelectors[{i}]: {e}"))?;
        req.or_selectors.push(m.to_query());
    }
    if let Some(ttl) = &t.ttl {
        req.ttl = crate::plan::expiry::parse_duration("spec.template.ttl", ttl)
            .map_err(|e| e.to_string())?;
    }
    if let Some(v) = &t.volumes {
        crate::volumes::apply_template(&mut req, v)?;
    }
    if let Some(h) = &t.hooks {
        h.validate("spec.template.hooks")
            .map_err(|e| e.to_string())?;
        req.hooks = h.clone();
    }
    req.filter().map_err(|e| format!("spec.template: {e}"))?;
    Ok(req)
}

/// Builds an engine request from a template (the backup resolved already); errors name the
/// field at fault.
///
/// # Errors
/// A `spec.template.<field>: <reason>` message.
pub async fn restore_request(
    ctx: &Context,
    name: &str,
    backup: &str,
    t: &RestoreSpecTemplate,
    labels: BTreeMap<String, String>,
) -> Result<RestoreRequest, String> {
    restore_request_in(&ctx.client, &ctx.namespace, name, backup, t, labels).await
}

/// `restore_request` without a controller [`Context`]: the `resourceModifier`
/// ConfigMap is read from `namespace` (the records' namespace) with `client`. Reads only.
///
/// # Errors
/// A `spec.template.<field>: <reason>` message.
pub async fn restore_request_in(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    backup: &str,
    t: &RestoreSpecTemplate,
    labels: BTreeMap<String, String>,
) -> Result<RestoreRequest, String> {
    let selector = match &t.label_selector {
        Some(ls) => Some(
            LabelMatcher::new(ls)
                .map_err(|e| format!("spec.template.labelSelector: {e}"))?
                .to_query(),
        ),
        None => None,
    };
    let mut or_selectors = Vec::new();
    for (i, ls) in t.or_label_selectors.iter().enumerate() {
        or_selectors.push(
            LabelMatcher::new(ls)
                .map_err(|e| format!("spec.template.orLabelSelectors[{i}]: {e}"))?
                .to_query(),
        );
    }
    let existing_policy = match t.existing_resource_policy.as_deref() {
        None | Some("none") => ExistingPolicy::None,
        Some("update") => ExistingPolicy::Update,
        Some(other) => {
            return Err(format!(
                "spec.template.existingResourcePolicy: {other:?} is not none or update"
            ));
        }
    };
    let modifiers = match &t.resource_modifier {
        None => None,
        Some(cm) => {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
            let found = api
                .get_opt(cm)
                .await
                .map_err(|e| format!("spec.template.resourceModifier: {e}"))?
                .ok_or_else(|| {
                    format!(
                        "spec.template.resourceModifier: ConfigMap {cm} not found in {namespace}"
                    )
                })?;
            Some(Arc::new(
                restore::modifiers::ResourceModifiers::from_config_map_data(
                    &found.data.unwrap_or_default(),
                )
                .map_err(|e| format!("spec.template.resourceModifier: ConfigMap {cm}: {e}"))?,
            ))
        }
    };
    for (src, dst) in &t.namespace_mapping {
        restore::parse_mappings(&format!("{src}:{dst}"))
            .map_err(|e| format!("spec.template.namespaceMapping: {e}"))?;
    }
    let hooks = t.hooks.clone().unwrap_or_default();
    hooks
        .validate("spec.template.hooks")
        .map_err(|e| e.to_string())?;
    Ok(RestoreRequest {
        name: name.into(),
        record_namespace: namespace.to_string(),
        backup: backup.into(),
        include_namespaces: t.included_namespaces.clone(),
        exclude_namespaces: t.excluded_namespaces.clone(),
        include_resources: t.included_resources.clone(),
        exclude_resources: t.excluded_resources.clone(),
        include_cluster_resources: t.include_cluster_resources,
        namespace_mappings: t.namespace_mapping.clone(),
        selector,
        or_selectors,
        existing_policy,
        preserve_node_ports: t.preserve_node_ports.unwrap_or(false),
        restore_pvs: t.restore_p_vs,
        status_include: t
            .restore_status
            .clone()
            .unwrap_or_default()
            .included_resources,
        status_exclude: t
            .restore_status
            .clone()
            .unwrap_or_default()
            .excluded_resources,
        modifiers,
        labels,
        hooks,
        no_hooks: false,
    })
}

/// Resolves which backup a template restores (a name, or the latest of a schedule).
///
/// # Errors
/// A message naming the field.
pub async fn resolve_backup(store: &Store, t: &RestoreSpecTemplate) -> Result<String, String> {
    match (&t.backup_name, &t.schedule_name) {
        (Some(b), None) => Ok(b.clone()),
        (None, Some(s)) => restore::latest_of_schedule(store, s, false)
            .await
            .map_err(|e| format!("spec.template.scheduleName: {e}")),
        _ => Err("spec.template: exactly one of backupName and scheduleName must be set".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn template_hooks_reach_the_request_and_errors_name_the_field() {
        let t: BackupSpecTemplate = serde_json::from_value(json!({
            "hooks": {"resources": [{"name": "freeze",
                "pre": [{"exec": {"command": ["/bin/sync"], "onError": "Fail"}}]}]}
        }))
        .unwrap();
        let req = backup_request("b", "tidemark", &t, "default").unwrap();
        assert_eq!(req.hooks.resources[0].name, "freeze");
        assert_eq!(
            req.record().unwrap().spec.extra["hooks"]["resources"][0]["pre"][0]["exec"]["command"],
            json!(["/bin/sync"])
        );
        let bad: BackupSpecTemplate = serde_json::from_value(json!({
            "hooks": {"resources": [{"name": "freeze",
                "pre": [{"exec": {"command": ["/bin/sync"], "timeout": "a while"}}]}]}
        }))
        .unwrap();
        let e = backup_request("b", "tidemark", &bad, "default").unwrap_err();
        assert!(
            e.starts_with("spec.template.hooks.resources[0].pre[0].exec.timeout: "),
            "{e}"
        );
    }
}
