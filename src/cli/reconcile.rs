//! `tidemark reconcile`: converges the cluster on the tidemark manifests of a Git repository or
//! a local directory (DESIGN §6), given by flags or by a `GitSource` manifest (`--file`). The
//! engine is [`crate::gitops`] — the one the controller runs for GitSource objects; this
//! command keeps its state (last revision, inventory) in the ConfigMap
//! `tidemark-gitops-<source id>` and prints what each revision did. `--once` exits 1 when a
//! manifest is invalid or a request failed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;

use super::parse_duration;
use crate::api::gitsource::GitSource as GitSourceObject;
use crate::cluster::{self, Target};
use crate::gitops::source::{GitCredentials, Settings};
use crate::gitops::{Pass, Reconciler, reconciler::Standalone};
use crate::source::config::{CommitStatusConfig, SourceConfig, SourceKind};
use crate::source::{Rendered, Revision};

/// Where manifests come from: the flags `tidemark reconcile` and `tidemark plan` share.
#[derive(Args, Debug)]
pub(crate) struct SourceArgs {
    /// Where the manifests come from.
    #[arg(long, value_enum, default_value_t = SourceKind::Git)]
    source: SourceKind,
    /// Repository URL (`--source git`): `https://…`, `ssh://…`, `git@host:org/repo.git`,
    /// `file:///…`.
    #[arg(long, required_if_eq("source", "git"))]
    url: Option<String>,
    /// Branch, tag, or full ref (`refs/pull/1/head`).
    #[arg(long = "ref", default_value = "main", value_name = "REF")]
    reference: String,
    /// Path inside the repository (default: its root), or the directory (`--source dir`). A
    /// kustomization there is rendered with `kustomize build` (or `kubectl kustomize`);
    /// otherwise every *.yaml/*.yml below it is read.
    #[arg(long, required_if_eq("source", "dir"))]
    path: Option<PathBuf>,
    /// User name sent with an HTTPS token, or for SSH when the URL has none.
    #[arg(long, env = "TIDEMARK_GIT_USERNAME", default_value = "git")]
    username: String,
    /// File holding an HTTPS token (e.g. a mounted Secret key). Default: $TIDEMARK_GIT_TOKEN.
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// SSH private key file (passphrase, if any, from $TIDEMARK_GIT_SSH_PASSPHRASE).
    #[arg(long, value_name = "PATH")]
    ssh_key: Option<PathBuf>,
    /// known_hosts file the SSH server's key must be in (default: libgit2 checks
    /// ~/.ssh/known_hosts).
    #[arg(long, value_name = "PATH")]
    known_hosts: Option<PathBuf>,
    /// Cache root: repositories are kept in <DIR>/git/<id of the URL> (default:
    /// $TIDEMARK_CACHE, else ~/.cache/tidemark).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Longest a Git fetch (listing the remote's refs, downloading) may take; a stalled server
    /// is then given up on, and the next interval tries again.
    #[arg(long, default_value = "5m", value_parser = super::parse_duration)]
    git_timeout: Duration,
}

impl SourceArgs {
    /// The flags as source settings (the other settings at their defaults).
    pub(crate) fn to_config(&self) -> SourceConfig {
        SourceConfig {
            kind: self.source,
            url: self.url.clone(),
            reference: self.reference.clone(),
            path: self.path.clone(),
            interval: Duration::from_secs(60),
            prune: true,
            namespace: None,
            username: self.username.clone(),
            token_file: self.token_file.clone(),
            ssh_key_file: self.ssh_key.clone(),
            known_hosts_file: self.known_hosts.clone(),
            commit_status: None,
            status_timeout: Duration::from_secs(120),
            cache_dir: self.cache_dir.clone(),
            timeout: self.git_timeout,
        }
    }
}

/// Reads a source's current revision once (fetched or read, and rendered), whether or not it
/// was seen before: the revision, its documents and a description of the source.
///
/// # Errors
/// Invalid settings, credentials, or the source's fetch/render error.
pub(crate) async fn read_once(cfg: &SourceConfig) -> Result<(Revision, Rendered, String)> {
    let settings = Settings::from_config(cfg, "default")?;
    let source = crate::gitops::Source::new(&settings.origin)?;
    let polled = source.poll(None, true).await?;
    let rendered = polled.rendered.context("the source returned no content")?;
    Ok((polled.revision, rendered, source.describe()))
}

/// Options of `tidemark reconcile`.
#[derive(Args, Debug)]
pub(crate) struct ReconcileArgs {
    #[command(flatten)]
    from: SourceArgs,
    /// A `GitSource` manifest (YAML) to reconcile instead of the source flags: its url, ref,
    /// path, prune, targetNamespace, and the Secrets it names (read from its namespace).
    #[arg(short = 'f', long, value_name = "FILE", conflicts_with_all = ["url", "forge"])]
    file: Option<PathBuf>,
    /// How often to look for a new revision.
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    interval: Duration,
    /// Reconcile the current revision once and exit (1 if a manifest is invalid or a request
    /// failed).
    #[arg(long)]
    once: bool,
    /// Reconcile even when the revision was reconciled already.
    #[arg(long)]
    force: bool,
    /// Never delete objects that left the source.
    #[arg(long)]
    no_prune: bool,
    /// Namespace of objects whose manifest names none, and of the source's record.
    #[arg(
        short = 'n',
        long,
        env = "TIDEMARK_NAMESPACE",
        default_value = "tidemark"
    )]
    namespace: String,
    /// Post a commit status per object and revision to this forge (`github`, `gitlab`, `gitea`).
    #[arg(long, value_name = "FORGE", requires_all = ["forge_url", "forge_repository"])]
    forge: Option<String>,
    /// The forge's API root (`https://api.github.com`, `https://gitlab.example.com/api/v4`,
    /// `https://gitea.example.com/api/v1`).
    #[arg(long, value_name = "URL")]
    forge_url: Option<String>,
    /// `owner/repo` (GitHub, Gitea) or the GitLab project id or path.
    #[arg(long, value_name = "REPO")]
    forge_repository: Option<String>,
    /// File holding the forge token (default: $TIDEMARK_FORGE_TOKEN).
    #[arg(long, value_name = "PATH")]
    forge_token_file: Option<PathBuf>,
    /// How long to wait for applied objects to become Ready (or Stalled) before leaving their
    /// commit status pending.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    status_timeout: Duration,
}

impl ReconcileArgs {
    /// The flags as the controller's `source:` settings (one code path for both).
    fn to_config(&self) -> SourceConfig {
        SourceConfig {
            interval: self.interval,
            prune: !self.no_prune,
            namespace: Some(self.namespace.clone()),
            commit_status: match (&self.forge, &self.forge_url, &self.forge_repository) {
                (Some(forge), Some(url), Some(repository)) => Some(CommitStatusConfig {
                    forge: forge.clone(),
                    url: url.clone(),
                    repository: repository.clone(),
                    token_file: self.forge_token_file.clone(),
                }),
                _ => None,
            },
            status_timeout: self.status_timeout,
            ..self.from.to_config()
        }
    }
}

/// The settings of a `GitSource` manifest file, with its Secrets read from the cluster.
async fn settings_of_file(
    client: &kube::Client,
    path: &std::path::Path,
    namespace: &str,
    cache_dir: Option<PathBuf>,
) -> Result<Settings> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut gs: GitSourceObject = serde_yaml::from_str(&text)
        .with_context(|| format!("{}: not a GitSource manifest", path.display()))?;
    if gs.metadata.namespace.is_none() {
        gs.metadata.namespace = Some(namespace.to_string());
    }
    let cache_root = cache_dir
        .clone()
        .unwrap_or_else(crate::source::git::default_cache_root);
    let (creds, token): (GitCredentials, Option<String>) =
        crate::gitops::credentials::read(client, &gs, &cache_root).await?;
    Settings::from_git_source(&gs, creds, token, cache_dir)
        .with_context(|| format!("{}", path.display()))
}

/// Prints what a pass did.
fn print_pass(pass: &Pass, previous_invalid: usize) {
    match pass {
        Pass::Unchanged { revision, took } => println!(
            "revision {revision}: unchanged (already reconciled{}), skipped in {took:.1?}",
            if previous_invalid > 0 {
                format!("; {previous_invalid} invalid manifest(s)")
            } else {
                String::new()
            }
        ),
        Pass::Applied {
            report,
            took,
            renderer,
            ..
        } => {
            if let Some(r) = renderer {
                tracing::info!(renderer = %r, "rendered the kustomization");
            }
            println!(
                "revision {}: {} in {took:.1?}",
                report.revision,
                report.summary()
            );
            for (what, list) in [
                ("created", &report.created),
                ("configured", &report.configured),
                ("unchanged", &report.unchanged),
                ("pruned", &report.pruned),
            ] {
                for o in list {
                    println!("  {what:<10} {o}");
                }
            }
            for (i, stalled) in &report.invalid {
                println!(
                    "  {:<10} {i}{}",
                    "invalid",
                    if *stalled {
                        " (the object keeps its last applied spec; marked Stalled)"
                    } else {
                        ""
                    }
                );
            }
            for f in &report.failed {
                println!("  {:<10} {f}", "failed");
            }
            if let Some(why) = &report.prune_skipped {
                println!("  pruning skipped: {why}");
            }
        }
    }
}

/// Whether a pass left nothing to fix: every manifest valid, every request through.
fn pass_ok(pass: &Pass, previous_invalid: usize) -> bool {
    match pass {
        Pass::Unchanged { .. } => previous_invalid == 0,
        Pass::Applied { report, .. } => report.clean(),
    }
}

/// Runs `tidemark reconcile`.
pub(crate) async fn run(target: &Target, args: ReconcileArgs) -> Result<ExitCode> {
    let client = cluster::connect(target).await?;
    let mut settings = match &args.file {
        Some(path) => {
            settings_of_file(&client, path, &args.namespace, args.from.cache_dir.clone()).await?
        }
        None => Settings::from_config(&args.to_config(), &args.namespace)?,
    };
    if args.file.is_some() {
        settings.interval = args.interval;
        if args.no_prune {
            settings.prune = false;
        }
    }
    let reconcile = Standalone::new(settings, args.force)?;
    if args.once {
        let (pass, previous_invalid) = reconcile.pass(&client).await?;
        print_pass(&pass, previous_invalid);
        return Ok(if pass_ok(&pass, previous_invalid) {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    let r: &Reconciler = reconcile.reconciler();
    println!(
        "reconciling {} into namespace {} every {} (source id {})",
        r.describe(),
        r.settings().namespace,
        humantime::format_duration(r.settings().interval),
        r.settings().id
    );
    reconcile
        .run(
            &client,
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
            |outcome| match outcome {
                Ok((pass, invalid)) => print_pass(pass, *invalid),
                Err(e) => {
                    tracing::error!("reconciling: {e}");
                    eprintln!("error: {e}");
                }
            },
        )
        .await?;
    Ok(ExitCode::SUCCESS)
}

/// The deprecated `source:` section of `tidemark server --config`, translated into the GitOps
/// engine's settings: the loop the leader runs beside the controllers.
///
/// # Errors
/// Invalid settings, unreadable token files.
pub(crate) fn server_source(cfg: &SourceConfig, namespace: &str) -> Result<Standalone> {
    tracing::warn!(
        "the `source:` section of the configuration file is deprecated: declare a GitSource \
         (kubectl explain gitsource.spec) instead; it keeps working for now"
    );
    Ok(Standalone::new(
        Settings::from_config(cfg, namespace)?,
        false,
    )?)
}

/// Runs a server's deprecated source loop until the process stops.
pub(crate) async fn run_server_source(source: Standalone, client: kube::Client) {
    let outcome = source
        .run(&client, std::future::pending(), |outcome| match outcome {
            Ok((Pass::Applied { report, .. }, _)) => tracing::info!(
                revision = %report.revision,
                "{}{}",
                report.summary(),
                if report.clean() { String::new() } else { format!(": {}", report.problems()) }
            ),
            Ok((Pass::Unchanged { .. }, _)) => {}
            Err(e) => tracing::error!("reconciling the configured source: {e}"),
        })
        .await;
    if let Err(e) = outcome {
        tracing::error!("the source loop stopped: {e}");
    }
}
