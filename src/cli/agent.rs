//! `tidemark node-agent` (the DaemonSet's process), `tidemark restore-wait` (the init container
//! of restored pods) and `tidemark repo prune` (maintenance of the restic repositories).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use super::{LocationArgs, open_store, parse_duration};
use crate::cluster::Target;
use crate::volumes::agent::{AgentConfig, DONE_MARKER_DIR};
use crate::volumes::fs::RepoPassword;

/// Options of `tidemark node-agent`.
#[derive(Args, Debug)]
pub(crate) struct NodeAgentArgs {
    /// This node's name (from the downward API in the DaemonSet).
    #[arg(long, env = "NODE_NAME")]
    node_name: String,
    /// The kubelet's root directory as mounted in the agent.
    #[arg(long, default_value = "/var/lib/kubelet")]
    kubelet_root: PathBuf,
    /// Namespace of the PodVolumeBackup/PodVolumeRestore records.
    #[arg(long, env = "POD_NAMESPACE", default_value = "tidemark")]
    namespace: String,
    /// File holding the restic repositories' password (a mounted Secret key).
    #[arg(long, env = "TIDEMARK_REPO_PASSWORD_FILE")]
    repo_password_file: PathBuf,
    /// How long a restore waits for the new pod's volume directory to appear.
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    dir_timeout: Duration,
    /// How often progress is written to the records.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    progress_interval: Duration,
}

/// Runs the node agent until killed.
pub(crate) async fn node_agent(target: &Target, args: NodeAgentArgs) -> Result<ExitCode> {
    let password = RepoPassword::from_file(&args.repo_password_file)?;
    let client = crate::cluster::connect(target).await?;
    crate::volumes::agent::run(
        client,
        AgentConfig {
            node_name: args.node_name,
            kubelet_root: args.kubelet_root,
            namespace: args.namespace,
            password,
            dir_timeout: args.dir_timeout,
            progress_interval: args.progress_interval,
        },
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// Options of `tidemark restore-wait`.
#[derive(Args, Debug)]
pub(crate) struct RestoreWaitArgs {
    /// The done marker's name (the restore's name).
    #[arg(long)]
    marker: String,
    /// How often to look.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    interval: Duration,
    /// The volume directories to wait for.
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
}

/// Waits until every directory holds `.tidemark/<marker>`, then removes the markers (best
/// effort) and exits 0.
pub(crate) async fn restore_wait(args: RestoreWaitArgs) -> Result<ExitCode> {
    let markers: Vec<PathBuf> = args
        .dirs
        .iter()
        .map(|d| d.join(DONE_MARKER_DIR).join(&args.marker))
        .collect();
    loop {
        let missing: Vec<_> = markers.iter().filter(|m| !m.exists()).collect();
        if missing.is_empty() {
            break;
        }
        tracing::info!("waiting for {} volume(s) to be restored", missing.len());
        tokio::time::sleep(args.interval).await;
    }
    for m in &markers {
        let _ = std::fs::remove_file(m);
        if let Some(dir) = m.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
    eprintln!("all volumes restored");
    Ok(ExitCode::SUCCESS)
}

/// `tidemark repo ...`: the restic repositories of a location.
#[derive(Subcommand, Debug)]
pub(crate) enum RepoCommand {
    /// Prune every namespace repository of the location: free the data no snapshot references
    /// (run after expiry, e.g. weekly).
    Prune(RepoArgs),
}

/// Options of `tidemark repo prune`.
#[derive(Args, Debug)]
pub(crate) struct RepoArgs {
    #[command(flatten)]
    location: LocationArgs,
    /// File holding the restic repositories' password.
    #[arg(long, env = "TIDEMARK_REPO_PASSWORD_FILE")]
    repo_password_file: PathBuf,
}

/// Runs a `repo` subcommand.
pub(crate) async fn repo(cmd: RepoCommand) -> Result<ExitCode> {
    match cmd {
        RepoCommand::Prune(args) => {
            let store = open_store(&args.location).await?;
            let password = RepoPassword::from_file(&args.repo_password_file)?;
            let pruned = crate::volumes::podvolume::prune_all(&store, &password)
                .await
                .context("prune")?;
            println!("pruned {} repositories: {}", pruned.len(), pruned.join(" "));
            Ok(ExitCode::SUCCESS)
        }
    }
}
