//! `tidemark recover`: cleans up what interrupted backups left in a location (argument parsing
//! and printing; the sweep is [`crate::backup::recover`], the same clean-up the controller runs
//! at start-up).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use super::{LocationArgs, open_store, parse_duration};
use crate::backup::recover::{Cleanup, sweep};
use crate::cluster::{self, Target};

/// Options of `tidemark recover`.
#[derive(Args, Debug)]
pub(crate) struct RecoverArgs {
    /// Leave alone a partial backup whose newest file is younger than this (it may belong to a
    /// run still going on, in another process). Same duration dialect as `--ttl`.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    older_than: Duration,
    /// Only print what would be removed.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    location: LocationArgs,
}

/// Runs `tidemark recover`: exit 0 when everything found was cleaned up (or is recent), 1 when
/// something had to be kept.
pub(crate) async fn run(target: &Target, args: RecoverArgs) -> Result<ExitCode> {
    let store = open_store(&args.location).await?;
    store.check().await?;
    // The cluster is needed only to delete storage snapshots; without one, a backup that has
    // some is kept (and says so).
    let client = match cluster::connect(target).await {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::info!("no cluster connection ({e}): partial backups with snapshots are kept");
            None
        }
    };
    let report = sweep(client.as_ref(), &store, args.older_than, args.dry_run).await?;
    if report.is_empty() {
        println!("No interrupted backups in {}.", store.url());
        return Ok(ExitCode::SUCCESS);
    }
    let mut kept = false;
    for (name, what) in &report {
        match what {
            Cleanup::Removed { snapshots } => {
                println!("{name}: removed ({snapshots} storage snapshot(s) deleted)");
            }
            Cleanup::WouldRemove => println!("{name}: would be removed (--dry-run)"),
            Cleanup::Recent => println!(
                "{name}: left alone: written to less than {} ago (--older-than)",
                humantime::format_duration(args.older_than)
            ),
            Cleanup::Kept(why) => {
                kept = true;
                println!("{name}: kept: {why}");
            }
        }
    }
    Ok(if kept {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
