//! `tidemark backup verify NAME`: a restore drill in direct mode ([`crate::restore::verify`]).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use super::{ClientArgs, LocationArgs, open_store, parse_duration};
use crate::cluster::{self, Target};
use crate::restore::{self, verify};

/// Options of `backup verify`.
#[derive(Args, Debug)]
pub(crate) struct VerifyArgs {
    /// The backup to prove.
    name: String,
    /// Prefix of the scratch namespaces the drill restores into (`shop` → `drill-shop`).
    #[arg(long, default_value = "drill-")]
    namespace_prefix: String,
    /// Leave the scratch namespaces in place for inspection.
    #[arg(long)]
    keep: bool,
    /// How long to wait for terminating namespaces and CRDs.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    wait_timeout: Duration,
    #[command(flatten)]
    location: LocationArgs,
    #[command(flatten)]
    client: ClientArgs,
}

/// Runs `tidemark backup verify`: exit 0 when every object came back equal, 2 when some did not
/// (they are listed), 1 when the drill could not run.
pub(crate) async fn run(target: &Target, args: VerifyArgs) -> Result<ExitCode> {
    let store = open_store(&args.location).await?;
    let client = cluster::connect(target).await?;
    let settings = args
        .client
        .restore_settings(&client, args.wait_timeout)
        .await?;
    let req = verify::VerifyRequest {
        backup: args.name.clone(),
        restore_name: format!(
            "{}-verify-{}",
            crate::plan::fit_name(&args.name, 40),
            chrono::Utc::now().format("%Y%m%d%H%M%S")
        ),
        record_namespace: "tidemark".into(),
        namespace_prefix: args.namespace_prefix.clone(),
        keep: args.keep,
    };
    let counters = Arc::new(restore::Counters::default());
    let v = verify::verify(&client, &store, &req, &settings, &counters).await?;
    let verdict = if v.verified() {
        "verified"
    } else {
        "NOT verified"
    };
    println!(
        "Backup {:?} {verdict}: {} (drill restore {} {}, scratch namespaces {}{})",
        args.name,
        v.summary(),
        req.restore_name,
        v.restore_phase,
        v.scratch_namespaces.join(", "),
        if args.keep {
            ", kept"
        } else if v.cleaned_up {
            ", deleted"
        } else {
            ", not all deleted"
        }
    );
    for (what, list) in [
        ("Missing", &v.missing),
        ("Different", &v.different),
        ("Unchecked", &v.unchecked),
    ] {
        if !list.is_empty() {
            println!("{what}:");
            for o in list {
                println!("  {o}");
            }
        }
    }
    Ok(if v.verified() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
