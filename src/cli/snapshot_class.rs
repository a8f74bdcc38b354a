//! `tidemark snapshot-class get|select` (also `snapshot-location`, Velero's verb): the
//! VolumeSnapshotClass each CSI driver's snapshots are taken with ([`crate::volumes::snapshot_class`]).

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::json;

use super::{OutputFormat, output};
use crate::cluster::{self, Target};
use crate::volumes::snapshot_class::{self, DriverProblem};

/// `tidemark snapshot-class ...`.
#[derive(Subcommand, Debug)]
pub(crate) enum SnapshotClassCommand {
    /// List the cluster's VolumeSnapshotClasses and which one backups use for each CSI driver
    /// (the one labelled `velero.io/csi-volumesnapshot-class=true`).
    Get(GetArgs),
    /// Make a class the one backups use for its driver (labels it, unlabels the driver's
    /// others).
    Select(SelectArgs),
}

/// Options of `snapshot-class get`.
#[derive(Args, Debug)]
pub(crate) struct GetArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,
}

/// Options of `snapshot-class select`.
#[derive(Args, Debug)]
pub(crate) struct SelectArgs {
    /// The VolumeSnapshotClass.
    name: String,
}

/// Runs `tidemark snapshot-class ...`.
pub(crate) async fn run(target: &Target, cmd: SnapshotClassCommand) -> Result<ExitCode> {
    let client = cluster::connect(target).await?;
    match cmd {
        SnapshotClassCommand::Get(args) => {
            let rows = snapshot_class::list(&client).await?;
            let problems = snapshot_class::problems(&rows);
            match args.output {
                OutputFormat::Table => {
                    let table: Vec<Vec<String>> = rows
                        .iter()
                        .map(|r| {
                            vec![
                                r.name.clone(),
                                r.driver.clone(),
                                r.deletion_policy.clone(),
                                if r.selected { "yes" } else { "no" }.into(),
                            ]
                        })
                        .collect();
                    print!(
                        "{}",
                        crate::report::text::aligned(
                            &["NAME", "DRIVER", "DELETION POLICY", "USED BY BACKUPS"],
                            &table,
                            3
                        )
                    );
                    for (driver, p) in &problems {
                        match p {
                            DriverProblem::NoneSelected => println!(
                                "warning: no class selected for driver {driver}: CSI snapshots of its volumes fail (tidemark snapshot-class select NAME)"
                            ),
                            DriverProblem::Ambiguous(names) => println!(
                                "warning: several classes selected for driver {driver} ({}): CSI snapshots of its volumes fail until one is left",
                                names.join(", ")
                            ),
                        }
                    }
                }
                f => {
                    let items: Vec<serde_json::Value> = rows
                        .iter()
                        .map(|r| {
                            json!({
                                "name": r.name,
                                "driver": r.driver,
                                "deletionPolicy": r.deletion_policy,
                                "selected": r.selected,
                            })
                        })
                        .collect();
                    output::print_list(&items, f == OutputFormat::Yaml)?;
                }
            }
        }
        SnapshotClassCommand::Select(args) => {
            let changed = snapshot_class::select(&client, &args.name).await?;
            if changed.is_empty() {
                println!(
                    "VolumeSnapshotClass {} is already the one selected for its driver.",
                    args.name
                );
            }
            for line in changed {
                println!("{line}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
