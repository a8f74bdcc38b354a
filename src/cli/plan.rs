//! `tidemark plan`: what a revision (a pull request's head, a directory) would do in the
//! current cluster (DESIGN §6, plan preview) — which Schedules would back up now and when they
//! run next, which Backup records have expired (and whether a ReadOnly Location blocks their
//! expiry), and for each RestorePlan the objects its restore would create, update, skip or
//! conflict with — so restores are reviewed before merge.
//!
//! The preview itself is [`crate::gitops::preview`]; this command reads the revision, runs it
//! and prints the result. Read only: the only thing written is the local Git cache of
//! `--source git`.
//!
//! Exit codes: 0; 1 when the revision cannot be planned completely — an invalid manifest, a
//! Schedule whose cron or time zone is invalid, or a RestorePlan that cannot be previewed (its
//! Location or backup is missing, its spec is invalid).

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::reconcile::{SourceArgs, read_once};
use super::{ClientArgs, OutputFormat};
use crate::cluster::{self, Target};
use crate::gitops::preview::{PlanDocument, SchedulePlan, preview};
use crate::report::text::{columns, indent};

/// Options of `tidemark plan`.
#[derive(Args, Debug)]
pub(crate) struct PlanArgs {
    #[command(flatten)]
    from: SourceArgs,
    /// Namespace of manifests that name none, and of the Backup records checked for expiry.
    #[arg(
        short = 'n',
        long,
        env = "TIDEMARK_NAMESPACE",
        default_value = "tidemark"
    )]
    namespace: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,
    #[command(flatten)]
    client: ClientArgs,
}

/// Runs `tidemark plan`.
pub(crate) async fn run(target: &Target, args: PlanArgs) -> Result<ExitCode> {
    let (revision, rendered, source) = read_once(&args.from.to_config()).await?;
    let client = cluster::connect(target).await?;
    let settings = args
        .client
        .restore_settings(&client, std::time::Duration::from_secs(120))
        .await?;
    let doc = preview(
        &client,
        revision.to_string(),
        source,
        &rendered,
        &args.namespace,
        &settings,
    )
    .await?;
    match args.output {
        OutputFormat::Json => super::output::print_value(&doc, false)?,
        OutputFormat::Yaml => super::output::print_value(&doc, true)?,
        OutputFormat::Table => print!("{}", render_table(&doc)),
    }
    Ok(if doc.incomplete() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn or_dash(s: &Option<String>) -> String {
    s.clone().unwrap_or_else(|| "-".into())
}

/// The plan as readable text: one section per kind of change.
fn render_table(doc: &PlanDocument) -> String {
    let mut o = format!("Plan of revision {} ({})\n", doc.revision, doc.source);

    o += "\nSchedules:\n";
    if doc.schedules.is_empty() {
        o += "  none in the revision\n";
    } else {
        let rows: Vec<Vec<String>> = doc
            .schedules
            .iter()
            .map(|s| {
                let action = match s.action {
                    "RunNow" => format!("backs up now: {}", or_dash(&s.backup_name)),
                    "Wait" => "waits".into(),
                    "Paused" => "paused".into(),
                    "Blocked" => format!("blocked: {}", or_dash(&s.reason)),
                    _ => format!("invalid: {}", or_dash(&s.error)),
                };
                vec![
                    format!("{}/{}", s.namespace, s.name),
                    match &s.time_zone {
                        Some(tz) => format!("{} ({tz})", s.schedule),
                        None => s.schedule.clone(),
                    },
                    or_dash(&s.last_backup),
                    or_dash(&s.next_run),
                    action,
                ]
            })
            .collect();
        o += &indent(&columns(
            &["NAME", "SCHEDULE", "LAST BACKUP", "NEXT RUN", "NOW"],
            &rows,
        ));
    }

    let retained: Vec<&SchedulePlan> = doc
        .schedules
        .iter()
        .filter(|s| !s.retention_deletes.is_empty() || !s.retention_keeps.is_empty())
        .collect();
    if !retained.is_empty() {
        o += "\nRetention (backups each Schedule keeps, and deletes now):\n";
        let mut rows = Vec::new();
        for s in retained {
            for k in &s.retention_keeps {
                rows.push(vec![
                    format!("{}/{}", s.namespace, k.name),
                    s.name.clone(),
                    format!("kept ({})", k.rules.join(", ")),
                ]);
            }
            for d in &s.retention_deletes {
                rows.push(vec![
                    format!("{}/{d}", s.namespace),
                    s.name.clone(),
                    "deleted from the store".into(),
                ]);
            }
        }
        o += &indent(&columns(&["BACKUP", "SCHEDULE", "RETENTION"], &rows));
    }

    o += "\nBackups that would expire now:\n";
    if doc.expiring.is_empty() {
        o += "  none\n";
    } else {
        let rows: Vec<Vec<String>> = doc
            .expiring
            .iter()
            .map(|b| {
                vec![
                    format!("{}/{}", b.namespace, b.name),
                    or_dash(&b.location),
                    b.expiration.clone(),
                    if b.blocked {
                        or_dash(&b.reason)
                    } else {
                        "deleted from the store".into()
                    },
                ]
            })
            .collect();
        o += &indent(&columns(&["NAME", "LOCATION", "EXPIRED", "EXPIRY"], &rows));
    }

    o += "\nRestorePlans:\n";
    if doc.restore_plans.is_empty() {
        o += "  none in the revision\n";
    }
    for p in &doc.restore_plans {
        let head = format!("  {}/{}", p.namespace, p.name);
        if p.already_ran {
            o += &format!(
                "{head}: already ran (spec {}{}); nothing to do\n",
                p.spec_hash,
                p.restore_name
                    .as_ref()
                    .map(|r| format!(", restore {r}"))
                    .unwrap_or_default()
            );
            continue;
        }
        if let Some(e) = &p.error {
            o += &format!("{head}: cannot preview: {e}\n");
            continue;
        }
        o += &format!(
            "{head}: restore of backup {} from Location {}: {} to create, {} to update, {} unchanged, {} conflicts{}\n",
            or_dash(&p.backup),
            or_dash(&p.location),
            p.create.len(),
            p.update.len(),
            p.skip,
            p.conflict.len(),
            if p.unchecked.is_empty() {
                String::new()
            } else {
                format!(", {} unchecked", p.unchecked.len())
            }
        );
        for (what, items) in [
            ("create", &p.create),
            ("update", &p.update),
            ("conflict", &p.conflict),
            ("unchecked", &p.unchecked),
        ] {
            for i in items {
                o += &format!("    {what:<9} {i}\n");
            }
        }
    }

    if !doc.invalid.is_empty() {
        o += "\nInvalid manifests:\n";
        for i in &doc.invalid {
            o += &format!(
                "  {} {}/{} ({}): {}\n",
                i.kind,
                i.namespace.as_deref().unwrap_or("?"),
                i.name.as_deref().unwrap_or("?"),
                i.origin,
                i.message
            );
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitops::preview::{ExpiringBackup, RestorePlanPreview, RetainedBackup};

    #[test]
    fn tables_align_and_sections_read() {
        let doc = PlanDocument {
            revision: "main@sha1:0123456789abcdef0123456789abcdef01234567".into(),
            source: "dir /x".into(),
            schedules: vec![SchedulePlan {
                name: "nightly".into(),
                namespace: "tidemark".into(),
                schedule: "0 2 * * *".into(),
                time_zone: None,
                action: "RunNow",
                would_run_now: true,
                backup_name: Some("nightly-20250101000000".into()),
                next_run: Some("2025-01-01T02:00:00Z".into()),
                last_backup: None,
                records: 3,
                reason: None,
                error: None,
                retention_deletes: vec!["nightly-20240101000000".into()],
                retention_keeps: vec![RetainedBackup {
                    name: "nightly-20241231000000".into(),
                    rules: vec!["keepLast", "daily"],
                }],
            }],
            expiring: vec![ExpiringBackup {
                name: "old".into(),
                namespace: "tidemark".into(),
                location: Some("dr".into()),
                phase: Some("Completed".into()),
                expiration: "2024-01-01T00:00:00Z".into(),
                blocked: true,
                reason: Some("expiry blocked: Location dr is ReadOnly".into()),
            }],
            restore_plans: vec![RestorePlanPreview {
                name: "app".into(),
                namespace: "tidemark".into(),
                backup: Some("b1".into()),
                location: Some("default".into()),
                create: vec!["configmaps app/gone".into()],
                conflict: vec!["configmaps app/settings".into()],
                skip: 2,
                ..Default::default()
            }],
            invalid: vec![],
        };
        let t = render_table(&doc);
        assert!(t.contains("backs up now: nightly-20250101000000"), "{t}");
        assert!(
            t.contains("tidemark/nightly-20241231000000  nightly   kept (keepLast, daily)"),
            "{t}"
        );
        assert!(
            t.contains("tidemark/nightly-20240101000000  nightly   deleted from the store"),
            "{t}"
        );
        assert!(t.contains("expiry blocked: Location dr is ReadOnly"), "{t}");
        assert!(
            t.contains("1 to create, 0 to update, 2 unchanged, 1 conflicts"),
            "{t}"
        );
        assert!(t.contains("    create    configmaps app/gone\n"), "{t}");
        let v = serde_json::to_value(&doc).unwrap();
        assert_eq!(v["restorePlans"][0]["alreadyRan"], false);
        assert_eq!(v["restorePlans"][0]["skip"], 2);
        assert_eq!(v["schedules"][0]["wouldRunNow"], true);
        let tbl = columns(&["A", "B"], &[vec!["long-value".into(), "x".into()]]);
        assert_eq!(tbl, "A           B\nlong-value  x\n");
    }
}
