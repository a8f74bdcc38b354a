//! `tidemark backup verify NAME`: a restore drill in direct mode ([`crate::restore::verify`]),
//! in the current cluster or, with `--into-kubeconfig`, in another one.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;

use super::{ClientArgs, LocationArgs, open_store, parse_duration};
use crate::cluster::{self, Target};
use crate::restore::{self, verify};

/// Options of `backup verify`.
#[derive(Args, Debug)]
pub(crate) struct VerifyArgs {
    /// The backup to prove.
    name: String,
    /// Prefix of the scratch namespaces the drill restores into (`shop` → `drill-shop`). May
    /// be empty (`""`: the backup's own namespace names) only with --into-kubeconfig.
    #[arg(long, default_value = "drill-")]
    namespace_prefix: String,
    /// Run the drill in the cluster this kubeconfig file describes (e.g. a disaster-recovery
    /// cluster) instead of the current one: the restore, the comparison and the deletion of
    /// the scratch namespaces all happen there, with its credentials. The current cluster
    /// (--kubeconfig) is then not contacted at all.
    #[arg(long, value_name = "PATH")]
    into_kubeconfig: Option<PathBuf>,
    /// Context of --into-kubeconfig to use (default: its current context).
    #[arg(long, value_name = "CONTEXT", requires = "into_kubeconfig")]
    into_context: Option<String>,
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
    let separate_cluster = args.into_kubeconfig.is_some();
    verify::check_namespace_prefix(&args.namespace_prefix, separate_cluster)
        .context("--namespace-prefix")?;
    let store = open_store(&args.location).await?;
    // The drill's cluster: the one given for it, else the current one.
    let client = match &args.into_kubeconfig {
        Some(path) => {
            let drill = Target {
                kubeconfig: Some(path.clone()),
                context: args.into_context.clone(),
            };
            cluster::connect(&drill)
                .await
                .context("--into-kubeconfig")?
        }
        None => cluster::connect(target).await?,
    };
    let settings = args
        .client
        .restore_settings(&client, args.wait_timeout)
        .await?;
    let req = verify::VerifyRequest {
        backup: args.name.clone(),
        // Milliseconds: drills of one backup started within a second (into two clusters,
        // say) must not share a restore record.
        restore_name: format!(
            "{}-verify-{}",
            crate::plan::fit_name(&args.name, 38),
            chrono::Utc::now().format("%Y%m%d%H%M%S%3f")
        ),
        record_namespace: "tidemark".into(),
        namespace_prefix: args.namespace_prefix.clone(),
        keep: args.keep,
        separate_cluster,
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
    if let Some(path) = &args.into_kubeconfig {
        println!("The drill ran in the cluster of {}.", path.display());
    }
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
