//! Rendering for the CLI: Velero-style tables, JSON/YAML, human sizes and durations.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::api::velero::{Backup, Restore, STORAGE_LOCATION_LABEL};
use crate::report::text::{self, bytes};

/// Prints one value as pretty JSON or YAML.
///
/// # Errors
/// Serialization errors.
pub fn print_value<T: Serialize>(v: &T, yaml: bool) -> anyhow::Result<()> {
    if yaml {
        print!("{}", serde_yaml::to_string(v)?);
    } else {
        println!("{}", serde_json::to_string_pretty(v)?);
    }
    Ok(())
}

/// Prints records as a `v1` List (JSON) or a YAML document stream.
///
/// # Errors
/// Serialization errors.
pub fn print_list<T: Serialize>(items: &[T], yaml: bool) -> anyhow::Result<()> {
    if yaml {
        for i in items {
            println!("---");
            print!("{}", serde_yaml::to_string(i)?);
        }
    } else {
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
        println!("{}", serde_json::to_string_pretty(&list)?);
    }
    Ok(())
}

pub use crate::report::text::duration;

/// The `velero ... get` tables: columns three spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    text::aligned(header, rows, 3)
}

fn ts(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S %z").to_string())
        .unwrap_or_else(|| "<nil>".into())
}

/// Time left until `exp`, Velero style (`29d`, `5h`, `expired`).
pub fn expires(exp: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    let Some(exp) = exp else { return "n/a".into() };
    let left = exp - now;
    if left.num_seconds() <= 0 {
        "expired".into()
    } else if left.num_days() >= 1 {
        format!("{}d", left.num_days())
    } else if left.num_hours() >= 1 {
        format!("{}h", left.num_hours())
    } else {
        format!("{}m", left.num_minutes().max(1))
    }
}

fn selector(sel: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>) -> String {
    let Some(s) = sel else { return "<none>".into() };
    let mut parts: Vec<String> = s
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in s.match_expressions.iter().flatten() {
        parts.push(format!(
            "{} {} ({})",
            e.key,
            e.operator,
            e.values.clone().unwrap_or_default().join(",")
        ));
    }
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

/// The `backup get` table (Velero's columns).
pub fn backup_table(backups: &[Backup], now: DateTime<Utc>) -> String {
    let rows: Vec<Vec<String>> = backups
        .iter()
        .map(|b| {
            vec![
                b.name().to_string(),
                b.phase().to_string(),
                b.status.errors.unwrap_or(0).to_string(),
                b.status.warnings.unwrap_or(0).to_string(),
                ts(b.status.start_timestamp),
                expires(b.status.expiration, now),
                b.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(STORAGE_LOCATION_LABEL).cloned())
                    .or_else(|| b.spec.storage_location.clone())
                    .unwrap_or_default(),
                selector(&b.spec.label_selector),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "STATUS",
            "ERRORS",
            "WARNINGS",
            "CREATED",
            "EXPIRES",
            "STORAGE LOCATION",
            "SELECTOR",
        ],
        &rows,
    )
}

fn list_or(v: &[String], empty: &str) -> String {
    if v.is_empty() {
        empty.to_string()
    } else {
        v.join(", ")
    }
}

fn map_or_none(m: Option<&std::collections::BTreeMap<String, String>>) -> String {
    match m {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
        _ => "<none>".into(),
    }
}

/// `backup describe`, laid out like `velero backup describe`.
pub fn describe_backup(
    b: &Backup,
    meta: Option<&crate::api::velero::TidemarkBackupMeta>,
    results: &crate::report::Results,
    resource_list: Option<&std::collections::BTreeMap<String, Vec<String>>>,
) -> String {
    let s = &b.spec;
    let st = &b.status;
    let mut o = String::new();
    o += &format!("Name:         {}\n", b.name());
    o += &format!(
        "Namespace:    {}\n",
        b.metadata.namespace.clone().unwrap_or_default()
    );
    o += &format!(
        "Labels:       {}\n",
        map_or_none(b.metadata.labels.as_ref())
    );
    o += &format!(
        "Annotations:  {}\n\n",
        map_or_none(b.metadata.annotations.as_ref())
    );
    o += &format!("Phase:  {}\n\n", b.phase());
    let annotations = b.metadata.annotations.clone().unwrap_or_default();
    if let Some(kind) = annotations.get(crate::backup::ENCRYPTION_ANNOTATION) {
        o += &format!(
            "Encryption:  {kind}, to {} (Velero cannot read this backup; `age -d` decrypts its files)\n\n",
            annotations
                .get(crate::backup::ENCRYPTION_RECIPIENTS_ANNOTATION)
                .map(String::as_str)
                .unwrap_or("<unknown>")
        );
    }
    if let Some(mode) = annotations.get(crate::backup::OBJECT_LOCK_ANNOTATION) {
        o += &format!(
            "Object Lock:  {mode}, retained until {} (no file of it can be deleted before)\n\n",
            annotations
                .get(crate::backup::RETAIN_UNTIL_ANNOTATION)
                .map(String::as_str)
                .unwrap_or("<unknown>")
        );
    }
    o += &format!(
        "Namespaces:\n  Included:  {}\n  Excluded:  {}\n\n",
        list_or(&s.included_namespaces, "*"),
        list_or(&s.excluded_namespaces, "<none>")
    );
    let scoped = !(s.included_cluster_scoped_resources.is_empty()
        && s.excluded_cluster_scoped_resources.is_empty()
        && s.included_namespace_scoped_resources.is_empty()
        && s.excluded_namespace_scoped_resources.is_empty());
    if scoped {
        o += &format!(
            "Resources:\n  Included cluster-scoped:    {}\n  Excluded cluster-scoped:    {}\n  \
             Included namespace-scoped:  {}\n  Excluded namespace-scoped:  {}\n\n",
            list_or(&s.included_cluster_scoped_resources, "<none>"),
            list_or(&s.excluded_cluster_scoped_resources, "<none>"),
            list_or(&s.included_namespace_scoped_resources, "*"),
            list_or(&s.excluded_namespace_scoped_resources, "<none>")
        );
    } else {
        o += &format!(
            "Resources:\n  Included:        {}\n  Excluded:        {}\n  Cluster-scoped:  {}\n\n",
            list_or(&s.included_resources, "*"),
            list_or(&s.excluded_resources, "<none>"),
            match s.include_cluster_resources {
                Some(true) => "included",
                Some(false) => "excluded",
                None => "auto",
            }
        );
    }
    o += &format!("Label selector:  {}\n", selector(&s.label_selector));
    let ors: Vec<String> = s
        .or_label_selectors
        .iter()
        .map(|l| selector(&Some(l.clone())))
        .collect();
    o += &format!(
        "Or label selector:  {}\n\n",
        if ors.is_empty() {
            "<none>".into()
        } else {
            ors.join(" or ")
        }
    );
    o += &format!(
        "Storage Location:  {}\n\n",
        s.storage_location.clone().unwrap_or_default()
    );
    o += &format!("TTL:  {}\n\n", s.ttl.clone().unwrap_or_default());
    o += &spec_hooks(s.extra.get("hooks"));
    if !s.ordered_resources.is_empty() {
        o += "Ordered resources:\n";
        for (k, v) in &s.ordered_resources {
            o += &format!("  {k}: {v}\n");
        }
        o += "\n";
    }
    o += &format!(
        "Backup Format Version:  {}\n\n",
        st.format_version
            .clone()
            .unwrap_or_else(|| "<unknown>".into())
    );
    o += &format!("Started:    {}\n", ts(st.start_timestamp));
    o += &format!("Completed:  {}\n\n", ts(st.completion_timestamp));
    o += &format!("Expiration:  {}\n\n", ts(st.expiration));
    if let Some(p) = &st.progress {
        o += &format!("Total items to be backed up:  {}\n", p.total_items);
        o += &format!("Items backed up:              {}\n\n", p.items_backed_up);
    }
    o += &hook_counters(st.extra.get("hookStatus"));
    if let Some(m) = meta {
        o += &format!(
            "Archive:  {} ({} bytes), sha256 {}\n\n",
            bytes(m.archive_bytes),
            m.archive_bytes,
            m.archive_sha256
        );
    }
    if let Some(list) = resource_list {
        o += "Resource List:\n";
        for (k, items) in list {
            o += &format!("  {k}:\n");
            for i in items {
                o += &format!("    - {i}\n");
            }
        }
        o += "\n";
    } else {
        o += "Resource List:  <use --details to list>\n\n";
    }
    o += &results.render();
    o
}

/// `restore create --dry-run`: the counts, then each object to create, update or in conflict.
pub fn preview(name: &str, backup: &str, p: &crate::restore::Preview) -> String {
    let mut o = format!(
        "Restore {name:?} from backup {backup:?} (dry run): {}\n",
        p.summary()
    );
    for (title, items) in [
        ("Would create", &p.create),
        ("Would update", &p.update),
        ("Conflicts (exist and differ; left unchanged)", &p.conflict),
        ("Could not check", &p.errors),
    ] {
        if !items.is_empty() {
            o += &format!("{title}:\n");
            for i in items {
                o += &format!("  {i}\n");
            }
        }
    }
    o
}

/// The backup spec's hooks, as `velero backup describe` lists them (`Hooks:  <none>` without).
fn spec_hooks(hooks: Option<&serde_json::Value>) -> String {
    let h: crate::hooks::BackupHooks = hooks
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    if h.is_empty() {
        return "Hooks:  <none>\n\n".into();
    }
    let mut o = String::from("Hooks:\n  Resources:\n");
    for r in &h.resources {
        o += &format!("    {}:\n", r.name);
        o += &format!(
            "      Namespaces:  included {}, excluded {}\n",
            list_or(&r.included_namespaces, "*"),
            list_or(&r.excluded_namespaces, "<none>")
        );
        o += &format!(
            "      Resources:   included {}, excluded {}\n",
            list_or(&r.included_resources, "*"),
            list_or(&r.excluded_resources, "<none>")
        );
        o += &format!("      Label selector:  {}\n", selector(&r.label_selector));
        for (title, list) in [("Pre", &r.pre), ("Post", &r.post)] {
            for e in list.iter().filter_map(|h| h.exec.as_ref()) {
                o += &format!(
                    "      {title} Exec Hook:\n        Container:  {}\n        Command:    {}\n        \
                     On Error:   {}\n        Timeout:    {}\n",
                    e.container.as_deref().unwrap_or("<first container>"),
                    e.command.join(" "),
                    e.on_error.unwrap_or_default().as_str(),
                    e.timeout.as_deref().unwrap_or("30s")
                );
            }
        }
    }
    o + "\n"
}

/// Velero's `HooksAttempted`/`HooksFailed` lines of `describe`, from a record's
/// `status.hookStatus` (zeros when absent).
fn hook_counters(hook_status: Option<&serde_json::Value>) -> String {
    let h = crate::hooks::HookStatus::from_json(hook_status);
    format!(
        "HooksAttempted:  {}\nHooksFailed:     {}\n\n",
        h.hooks_attempted, h.hooks_failed
    )
}

/// `restore describe`, laid out like `velero restore describe`.
pub fn describe_restore(
    r: &Restore,
    results: &crate::report::Results,
    resource_list: Option<&std::collections::BTreeMap<String, Vec<String>>>,
) -> String {
    let s = &r.spec;
    let st = &r.status;
    let mut o = String::new();
    o += &format!(
        "Name:         {}\n",
        r.metadata.name.clone().unwrap_or_default()
    );
    o += &format!(
        "Namespace:    {}\n\n",
        r.metadata.namespace.clone().unwrap_or_default()
    );
    o += &format!("Phase:  {}\n\n", st.phase.clone().unwrap_or_default());
    if let Some(p) = &st.progress {
        o += &format!(
            "Total items to be restored:  {}\nItems restored:              {}\n\n",
            p.total_items, p.items_restored
        );
    }
    o += &hook_counters(st.extra.get("hookStatus"));
    o += &format!(
        "Started:    {}\nCompleted:  {}\n\n",
        ts(st.start_timestamp),
        ts(st.completion_timestamp)
    );
    o += &format!("Backup:  {}\n\n", s.backup_name);
    o += &format!(
        "Namespaces:\n  Included:  {}\n  Excluded:  {}\n\n",
        list_or(&s.included_namespaces, "all namespaces found in the backup"),
        list_or(&s.excluded_namespaces, "<none>")
    );
    o += &format!(
        "Resources:\n  Included:        {}\n  Excluded:        {}\n\n",
        list_or(&s.included_resources, "*"),
        list_or(&s.excluded_resources, "<none>")
    );
    let mappings: Vec<String> = s
        .namespace_mapping
        .iter()
        .map(|(a, b)| format!("{a}={b}"))
        .collect();
    o += &format!("Namespace mappings:  {}\n\n", list_or(&mappings, "<none>"));
    o += &format!("Label selector:  {}\n\n", selector(&s.label_selector));
    o += &format!(
        "Existing Resource Policy:  {}\n\n",
        s.existing_resource_policy
            .clone()
            .unwrap_or_else(|| "<none>".into())
    );
    o += &results.render();
    if let Some(list) = resource_list {
        o += "\nResource List:\n";
        for (k, items) in list {
            o += &format!("  {k}:\n");
            for i in items {
                o += &format!("    - {i}\n");
            }
        }
    }
    o
}

/// The `restore get` table (Velero's columns).
pub fn restore_table(restores: &[Restore]) -> String {
    let rows: Vec<Vec<String>> = restores
        .iter()
        .map(|r| {
            vec![
                r.metadata.name.clone().unwrap_or_default(),
                r.spec.backup_name.clone(),
                r.status.phase.clone().unwrap_or_default(),
                ts(r.status.start_timestamp),
                ts(r.status.completion_timestamp),
                r.status.errors.to_string(),
                r.status.warnings.to_string(),
                selector(&r.spec.label_selector),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "BACKUP",
            "STATUS",
            "STARTED",
            "COMPLETED",
            "ERRORS",
            "WARNINGS",
            "SELECTOR",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_expiry() {
        assert_eq!(duration(Duration::from_millis(1234)), "1.2s");
        assert_eq!(duration(Duration::from_secs(184)), "3m04s");
        let now = Utc::now();
        assert_eq!(
            expires(
                Some(now + chrono::Duration::days(29) + chrono::Duration::hours(1)),
                now
            ),
            "29d"
        );
        assert_eq!(
            expires(Some(now - chrono::Duration::hours(1)), now),
            "expired"
        );
    }

    #[test]
    fn describe_shows_spec_status_and_details() {
        let mut b = Backup::new("nightly", "tidemark");
        b.status.phase = Some("PartiallyFailed".into());
        b.spec.included_namespaces = vec!["web".into()];
        b.spec.ttl = Some("720h0m0s".into());
        let mut r = crate::report::Results::default();
        r.errors.add(Some("web"), "listing pods: forbidden");
        let list = [("v1/ConfigMap".to_string(), vec!["web/a".to_string()])].into();
        let d = describe_backup(&b, None, &r, Some(&list));
        assert!(d.contains("Phase:  PartiallyFailed"), "{d}");
        assert!(d.contains("Included:  web"), "{d}");
        assert!(d.contains("Cluster-scoped:  auto"), "{d}");
        assert!(d.contains("TTL:  720h0m0s"), "{d}");
        assert!(d.contains("    - web/a"), "{d}");
        assert!(d.contains("listing pods: forbidden"), "{d}");
    }

    #[test]
    fn backup_table_has_velero_columns() {
        let mut b = Backup::new("nightly", "tidemark");
        b.status.phase = Some("Completed".into());
        b.spec.storage_location = Some("default".into());
        let t = backup_table(&[b], Utc::now());
        let mut lines = t.lines();
        let header = lines.next().unwrap();
        assert!(header.starts_with("NAME"));
        assert!(header.contains("STORAGE LOCATION"));
        let row = lines.next().unwrap();
        assert!(row.starts_with("nightly"));
        assert!(row.contains("Completed"));
    }
}
