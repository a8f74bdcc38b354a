//! The command line: `tidemark backup|restore create|get` in direct mode (the CLI process runs
//! the engines against the current kubeconfig; nothing needs to be installed in the cluster).
//!
//! Verbs and flags follow `velero`'s. Exit codes: 0 success; 1 error (nothing or not everything
//! was done); 2 the run finished `PartiallyFailed`.

mod agent;
mod backup;
mod config;
mod install;
mod objects;
mod output;
mod plan;
mod progress;
mod reconcile;
mod recover;
mod restore;
mod snapshot_class;
mod verify;

use backup::BackupCommand;
use objects::{LocationCommand, ScheduleCommand};
use restore::RestoreCommand;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cluster::Target;
use crate::store::{LocationUrl, Store};

/// The `--help` heading of the options every command takes.
const GLOBAL: &str = "Global options";

/// Backup, restore and migration for Kubernetes, with Velero-compatible buckets.
#[derive(Parser, Debug)]
#[command(name = "tidemark", version, about, long_about = None)]
pub struct Cli {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(
        long,
        global = true,
        env = "KUBECONFIG",
        value_name = "PATH",
        help_heading = GLOBAL
    )]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use.
    #[arg(long, global = true, help_heading = GLOBAL)]
    context: Option<String>,
    /// Log level filter (`error`, `warn`, `info`, `debug`, or a tracing filter). Per-object
    /// warnings of a run are printed in its summary; `info` also streams the run log.
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL,
        env = "TIDEMARK_LOG",
        default_value = "warn,tidemark::report=error"
    )]
    log_level: String,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, help_heading = GLOBAL)]
    log_format: LogFormat,
    /// Colours in log output: `auto` (on a terminal, unless NO_COLOR is set), `always`, `never`.
    #[arg(long, global = true, value_enum, default_value_t = ColorMode::Auto, help_heading = GLOBAL)]
    color: ColorMode,
    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// When log lines carry ANSI colours.
#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
enum ColorMode {
    /// On a terminal, unless `NO_COLOR` is set (<https://no-color.org>).
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

impl ColorMode {
    fn enabled(self) -> bool {
        match self {
            ColorMode::Always => true,
            ColorMode::Never => false,
            ColorMode::Auto => {
                std::io::stderr().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Work with backups.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Work with restores.
    #[command(subcommand)]
    Restore(RestoreCommand),
    /// Manage Schedules reconciled by an installed controller.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Manage Locations reconciled by an installed controller (also `backup-location`, as in
    /// velero).
    #[command(subcommand, visible_alias = "backup-location")]
    Location(LocationCommand),
    /// The VolumeSnapshotClass CSI snapshots are taken with, per driver (also
    /// `snapshot-location`, Velero's verb: CSI snapshots need no location of their own).
    #[command(subcommand, visible_alias = "snapshot-location")]
    SnapshotClass(snapshot_class::SnapshotClassCommand),
    /// Install the controller, its CRDs and RBAC into the cluster (or print them with --dry-run).
    Install(Box<install::InstallArgs>),
    /// Remove the controller (backups in object storage are kept).
    Uninstall(install::UninstallArgs),
    /// Apply tidemark manifests from a Git repository, a directory or a GitSource manifest (`-f`),
    /// and prune what a previous revision applied and this one dropped (by inventory).
    Reconcile(Box<reconcile::ReconcileArgs>),
    /// Show what a revision (or a directory) would do: backups to run or expire, and each
    /// RestorePlan's create/update/skip/conflict preview.
    Plan(Box<plan::PlanArgs>),
    /// Run the in-cluster reconciler (controllers for every tidemark kind) against the current
    /// kubeconfig or the in-cluster service account.
    Server(Box<ServerArgs>),
    /// Print tidemark's CustomResourceDefinitions (YAML), e.g. `tidemark crds | kubectl apply -f -`.
    Crds,
    /// Run the node agent (DaemonSet): back up and restore pod volumes of this node.
    NodeAgent(Box<agent::NodeAgentArgs>),
    /// Wait until the node agent has restored the given volume directories (the
    /// `tidemark-restore-wait` init container of restored pods).
    RestoreWait(agent::RestoreWaitArgs),
    /// Maintain the restic repositories of pod volume data.
    #[command(subcommand)]
    Repo(agent::RepoCommand),
    /// Clean up what interrupted backups left in a location: the storage snapshots they
    /// retained (through their intent records), then their folders; complete backups are never
    /// touched.
    Recover(recover::RecoverArgs),
    /// Print a shell completion script, like `velero completion`: `source <(tidemark completion
    /// bash)`, or save it where the shell loads completions from.
    Completion(CompletionArgs),
    /// Per-user defaults of the command line, like `velero client config`: `tidemark client
    /// config set namespace=backup-system output=json`.
    #[command(subcommand)]
    Client(config::ClientCommand),
    /// Print the version.
    Version,
    /// Internal: the network part of a Git fetch, run by tidemark itself in a child process it
    /// kills at the fetch's deadline (the request on stdin, the answer on stdout).
    #[command(name = "git-network-helper", hide = true)]
    GitNetworkHelper,
}

impl Command {
    /// Whether the command only reads and prints (see the SIGPIPE note in [`main`]).
    fn only_prints(&self) -> bool {
        match self {
            Command::Backup(b) => matches!(
                b,
                BackupCommand::Get(_) | BackupCommand::Describe(_) | BackupCommand::Logs(_)
            ),
            Command::Restore(r) => matches!(
                r,
                RestoreCommand::Get(_) | RestoreCommand::Describe(_) | RestoreCommand::Logs(_)
            ),
            Command::Schedule(s) => {
                matches!(s, ScheduleCommand::Get(_) | ScheduleCommand::Describe(_))
            }
            Command::Location(l) => matches!(l, LocationCommand::Get(_)),
            Command::Install(i) => i.dry_run,
            Command::Crds | Command::Completion(_) | Command::Version => true,
            _ => false,
        }
    }
}

/// Options of `tidemark completion`.
#[derive(Args, Debug)]
pub(crate) struct CompletionArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// Options of `tidemark server`.
#[derive(Args, Debug)]
pub(crate) struct ServerArgs {
    /// Namespace watched for tidemark objects and where records are kept.
    #[arg(long, env = "POD_NAMESPACE", default_value = "tidemark")]
    namespace: String,
    /// Address of the Prometheus `/metrics` endpoint.
    #[arg(long, default_value = "0.0.0.0:8085")]
    metrics_address: std::net::SocketAddr,
    /// Address of `/healthz` and `/readyz`.
    #[arg(long, default_value = "0.0.0.0:8086")]
    health_address: std::net::SocketAddr,
    /// Take the `tidemark-controller` Lease before reconciling (several replicas).
    #[arg(long)]
    leader_elect: bool,
    /// Identity in the Lease (default: the pod name from $POD_NAME, else the host name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Configuration file (YAML). Its `source:` section (deprecated: declare a GitSource
    /// instead, `kubectl explain gitsource.spec`) makes the controller read tidemark manifests
    /// from a Git repository or a directory as `tidemark reconcile` does.
    #[arg(long, env = "TIDEMARK_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Back up every pod volume by file system (node agent) unless a Backup's template sets
    /// `volumes.defaultVolumesToFsBackup` itself, as Velero's server flag does.
    #[arg(long)]
    default_volumes_to_fs_backup: bool,
    #[command(flatten)]
    client: ClientArgs,
}

/// Where backups live.
#[derive(Args, Debug, Clone)]
pub(crate) struct LocationArgs {
    /// Location URL: `file:///dir`, `s3://bucket/prefix` (S3 endpoint, region and credentials
    /// from the standard AWS_* variables), `azure://container/prefix?storageAccount=NAME&...`
    /// (credentials from $AZURE_CREDENTIALS_FILE or the environment) or `gs://bucket/prefix`
    /// (a service-account key from $GOOGLE_APPLICATION_CREDENTIALS); add
    /// `?accessMode=ReadOnly` for a read-only location. Default: a directory under the user's
    /// data dir.
    #[arg(long, env = "TIDEMARK_LOCATION", value_name = "URL")]
    location: Option<String>,
    /// Provider config overriding the URL's query, Velero's `--config` keys (S3: `region`,
    /// `s3Url`, `s3ForcePathStyle`, `insecureSkipTLSVerify`; Azure: `storageAccount`,
    /// `storageAccountKeyEnvVar`, `useAAD`, ...; GCS: `storeEndpoint`, ...), repeatable.
    #[arg(long = "location-config", value_name = "KEY=VALUE", value_parser = parse_kv)]
    location_config: Vec<(String, String)>,
    /// age identity file (`age-keygen` output): backups written are encrypted to its public
    /// keys, encrypted backups read are decrypted with it. Velero cannot read encrypted
    /// backups.
    #[arg(long, env = "TIDEMARK_ENCRYPTION_KEY_FILE", value_name = "FILE")]
    encryption_key_file: Option<PathBuf>,
    /// File holding an encryption passphrase instead of a key (age's scrypt).
    #[arg(
        long,
        env = "TIDEMARK_ENCRYPTION_PASSPHRASE_FILE",
        value_name = "FILE",
        conflicts_with_all = ["encryption_key_file", "encryption_recipient"]
    )]
    encryption_passphrase_file: Option<PathBuf>,
    /// Also encrypt to this age public key (`age1...`; repeatable): key rotation, escrow.
    #[arg(long, value_name = "AGE1...")]
    encryption_recipient: Vec<String>,
    /// Lock every backup written with S3 Object Lock in this mode (`governance` or
    /// `compliance`) until it expires (its `--ttl`): nobody can delete or replace it before.
    /// The S3 bucket must have been created with Object Lock enabled.
    #[arg(long, env = "TIDEMARK_OBJECT_LOCK", value_name = "MODE", value_parser = parse_lock_mode)]
    object_lock: Option<crate::store::LockMode>,
}

/// An Object Lock mode flag: `governance` or `compliance` (any case).
fn parse_lock_mode(s: &str) -> Result<crate::store::LockMode, String> {
    crate::store::LockMode::parse(s)
        .ok_or_else(|| format!("{s:?}: Object Lock mode is governance or compliance"))
}

/// The client-side request budget.
#[derive(Args, Debug, Clone)]
pub(crate) struct ClientArgs {
    /// Cap on requests per second to the API server. Default: no cap when the API server has
    /// API Priority and Fairness (it answers 429 when busy; tidemark backs off and retries),
    /// else 100.
    #[arg(long, value_name = "QPS")]
    client_qps: Option<f32>,
    /// Burst above --client-qps (default: twice the QPS; 200 without APF).
    #[arg(long, value_name = "N")]
    client_burst: Option<u32>,
    /// Resources listed at once (backup); objects created at once to start with (restore: then
    /// adapted to the API server's capacity, up to --max-concurrency).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// The most objects a restore creates at once (equal to --concurrency: a fixed number).
    #[arg(long, default_value_t = crate::restore::pacing::DEFAULT_MAX_IN_FLIGHT)]
    max_concurrency: usize,
}

impl ClientArgs {
    /// The run's request budget: the cap asked for, else none where the server has APF (the
    /// run's log says which).
    async fn budget(&self, client: &kube::Client) -> Result<crate::cluster::Budget> {
        Ok(crate::cluster::Budget::choose(client, self.client_qps, self.client_burst).await?)
    }

    /// A restore's settings from these options; `wait_timeout` for terminating namespaces and
    /// CRDs.
    async fn restore_settings(
        &self,
        client: &kube::Client,
        wait_timeout: Duration,
    ) -> Result<crate::restore::Settings> {
        Ok(crate::restore::Settings {
            concurrency: self.concurrency.max(1),
            max_concurrency: self.max_concurrency.max(1),
            budget: self.budget(client).await?,
            wait_timeout,
            pod_volumes: crate::volumes::podvolume::PodVolumeSettings::from_env(),
        })
    }
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum OutputFormat {
    Table,
    Json,
    Yaml,
}

#[derive(Args, Debug)]
pub(crate) struct GetArgs {
    /// Only these names.
    names: Vec<String>,
    #[command(flatten)]
    location: LocationArgs,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    if k.trim().is_empty() {
        return Err(format!("{s:?} has an empty key"));
    }
    Ok((k.trim().to_string(), v.trim().to_string()))
}

/// A duration flag: the same dialect as manifests ([`crate::plan::expiry::duration`]).
fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::plan::expiry::duration(s).map_err(|e| format!("{s:?}: {e}"))
}

/// The embedded default location: `<data dir>/tidemark/location` (e.g.
/// `~/.local/share/tidemark/location`), or `$TIDEMARK_HOME/location`.
pub fn default_location_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("TIDEMARK_HOME") {
        return PathBuf::from(home).join("location");
    }
    directories::ProjectDirs::from("dev", "tidemark", "tidemark")
        .map(|d| d.data_dir().join("location"))
        .unwrap_or_else(|| PathBuf::from(".tidemark/location"))
}

async fn open_store(args: &LocationArgs) -> Result<Store> {
    let config: BTreeMap<String, String> = args.location_config.iter().cloned().collect();
    let (url, default) = match &args.location {
        Some(u) => (u.parse::<LocationUrl>()?, false),
        None => (LocationUrl::filesystem(&default_location_dir()), true),
    };
    let mut url = url.with_config(&config);
    if args.object_lock.is_some() {
        if url.provider() != crate::store::Provider::S3 {
            anyhow::bail!("--object-lock needs an s3:// location (S3 Object Lock)");
        }
        url = url.with_object_lock_checksums();
    }
    let mut store = Store::open(&url, default)?;
    if let Some(mode) = args.object_lock {
        store = store.with_object_lock(mode);
    }
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))
    };
    let keys = match (&args.encryption_key_file, &args.encryption_passphrase_file) {
        (Some(f), _) => Some(crate::store::Encryption::from_identities(
            &read(f)?,
            &args.encryption_recipient,
        )?),
        (None, Some(f)) => Some(crate::store::Encryption::from_passphrase(&read(f)?)?),
        (None, None) if !args.encryption_recipient.is_empty() => Some(
            crate::store::Encryption::from_identities("", &args.encryption_recipient)?,
        ),
        (None, None) => None,
    };
    Ok(match keys {
        Some(k) => store.with_encryption(std::sync::Arc::new(k)),
        None => store,
    })
}

/// Reads and decompresses a small gzip side file of a location (logs, results, resource
/// lists), capped at [`crate::report::SIDE_FILE_LIMIT`].
async fn gunzip(store: &Store, path: &object_store::path::Path) -> Result<Vec<u8>> {
    use anyhow::Context;
    let bytes = store.get(path).await?;
    crate::report::gunzip(&bytes).with_context(|| format!("{path}: not a gzip file"))
}

fn init_tracing(level: &str, format: LogFormat, color: ColorMode) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // By default colours only on a terminal: log files and collectors get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(color.enabled())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Worker threads of the command's runtime: [`workers_for`] the CPUs this process may use
/// (`std::thread::available_parallelism`, which honours a cgroup CPU quota).
/// tokio's own `TOKIO_WORKER_THREADS` still overrides it (see [`main`]).
fn worker_threads() -> usize {
    workers_for(std::thread::available_parallelism().ok().map(|n| n.get()))
}

/// One worker thread fewer than `cpus`, at least one (one when `cpus` is unknown).
///
/// The CPU-heavy stages run on threads of their own beside the workers: a backup's archive writer
/// (tar, `backup::pipeline`) and its gzip threads (`archive`), a restore's archive reading, a
/// file-system backup's chunking; the workers only move requests and split pages. Leaving those
/// threads a CPU keeps the workers from contending with them and with each other: on the 2-CPU
/// benchmark machine, with the API server on the same CPUs, one worker instead of tokio's default
/// of two made a 100,000-object backup about 10% faster (best of 5: 5.65 s → 4.96 s) and 0.7
/// CPU-s cheaper, and a restore's CPU per object 10–30% lower
/// (`cargo bench --bench backup_restore -- --objects 10000,100000`).
fn workers_for(cpus: Option<usize>) -> usize {
    cpus.map_or(1, |n| n.saturating_sub(1)).max(1)
}

/// Entry point of the binary: parses arguments, runs, maps the outcome to an exit code.
pub fn main() -> ExitCode {
    // The client config file's values are the flags' defaults (flags and their environment
    // variables still win).
    let client_config = match config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(1);
        }
    };
    let cmd = config::with_defaults(<Cli as clap::CommandFactory>::command(), &client_config);
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&cmd.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // Commands that only read and print (`tidemark backup get | head`, `install --dry-run |
    // less`) end quietly when the reader goes away, as other command-line tools do, instead of
    // panicking on a failed print. Every command that writes to a cluster or a location keeps
    // Rust's default (SIGPIPE ignored, a write error instead): a connection reset by a store or
    // an API server while it writes must be an error it handles, never a signal that kills it
    // half way (tests/faults.rs).
    if cli.command.only_prints() {
        sigpipe::reset();
    }
    init_tracing(&cli.log_level, cli.log_format, cli.color);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        builder.worker_threads(worker_threads());
    }
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let target = Target {
        kubeconfig: cli.kubeconfig.clone(),
        context: cli.context.clone(),
    };
    match cli.command {
        Command::Install(args) => install::install(&target, *args).await,
        Command::Uninstall(args) => install::uninstall(&target, args).await,
        Command::Recover(args) => recover::run(&target, args).await,
        Command::Reconcile(args) => reconcile::run(&target, *args).await,
        Command::Plan(args) => plan::run(&target, *args).await,
        Command::Schedule(cmd) => objects::schedule(&target, cmd).await,
        Command::Location(cmd) => objects::location(&target, cmd).await,
        Command::SnapshotClass(cmd) => snapshot_class::run(&target, cmd).await,
        Command::Server(args) => {
            let server_config = match &args.config {
                Some(path) => crate::source::config::ServerConfig::load(path)?,
                None => crate::source::config::ServerConfig::default(),
            };
            let source = match &server_config.source {
                Some(cfg) => Some(reconcile::server_source(cfg, &args.namespace)?),
                None => None,
            };
            let client = crate::cluster::connect(&target).await?;
            let identity = args.identity.clone().unwrap_or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .map(|h| h.trim().to_string())
                    .unwrap_or_else(|_| format!("tidemark-{}", std::process::id()))
            });
            let alongside = {
                let client = client.clone();
                async move {
                    match source {
                        Some(l) => reconcile::run_server_source(l, client).await,
                        None => std::future::pending().await,
                    }
                }
            };
            crate::controller::run_with(
                client,
                crate::controller::Config {
                    namespace: args.namespace,
                    metrics_address: args.metrics_address,
                    health_address: args.health_address,
                    leader_elect: args.leader_elect,
                    identity,
                    qps: args.client.client_qps,
                    burst: args.client.client_burst,
                    concurrency: args.client.concurrency,
                    max_concurrency: args.client.max_concurrency,
                    default_volumes_to_fs_backup: args.default_volumes_to_fs_backup,
                },
                alongside,
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Completion(args) => {
            clap_complete::generate(
                args.shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "tidemark",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Crds => {
            print!("{}", crate::api::tidemark::crds_yaml()?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Client(cmd) => config::run(cmd),
        Command::Version => {
            println!("tidemark {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::GitNetworkHelper => {
            use std::io::{Read, Write};
            let mut input = Vec::new();
            std::io::stdin().read_to_end(&mut input)?;
            let answer = tokio::task::spawn_blocking(move || {
                crate::source::git::serve_network_request(&input)
            })
            .await?;
            std::io::stdout().write_all(&answer)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::NodeAgent(args) => agent::node_agent(&target, *args).await,
        Command::RestoreWait(args) => agent::restore_wait(args).await,
        Command::Repo(cmd) => agent::repo(cmd).await,
        Command::Backup(cmd) => backup::run(&target, cmd).await,
        Command::Restore(cmd) => restore::run(&target, cmd).await,
    }
}

fn phase_code(phase: &str) -> ExitCode {
    match phase {
        "Completed" => ExitCode::SUCCESS,
        "PartiallyFailed" => ExitCode::from(2),
        _ => ExitCode::from(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn runtime_leaves_one_cpu_to_the_archive_thread() {
        assert_eq!(workers_for(None), 1);
        assert_eq!(workers_for(Some(1)), 1);
        assert_eq!(workers_for(Some(2)), 1);
        assert_eq!(workers_for(Some(8)), 7);
    }

    #[test]
    fn help_sets_global_options_apart_and_velero_verbs_parse() {
        let mut cmd = Cli::command();
        // Global options reach subcommands when the command is built.
        cmd.build();
        let backup = cmd.find_subcommand_mut("backup").unwrap();
        let help = backup
            .find_subcommand_mut("get")
            .unwrap()
            .render_help()
            .to_string();
        let (own, global) = help.split_once("Global options:").expect(&help);
        assert!(
            own.contains("--location") && !own.contains("--kubeconfig"),
            "{help}"
        );
        assert!(
            global.contains("--kubeconfig") && global.contains("--log-level"),
            "{help}"
        );
        assert!(Cli::try_parse_from(["tidemark", "backup-location", "get"]).is_ok());
    }

    #[test]
    fn client_budget_flags_are_optional_and_concurrency_bounded() {
        let parse = |extra: &[&str]| {
            let mut args = vec!["tidemark", "restore", "create", "--from-backup", "b"];
            args.extend_from_slice(extra);
            let cli = Cli::try_parse_from(args).unwrap();
            let Command::Restore(restore::RestoreCommand::Create(r)) = cli.command else {
                panic!("wrong command")
            };
            r.client.clone()
        };
        let defaults = parse(&[]);
        assert_eq!(
            defaults.client_qps, None,
            "no cap unless asked (APF decides)"
        );
        assert_eq!(defaults.client_burst, None);
        assert_eq!(defaults.concurrency, 16);
        assert_eq!(
            defaults.max_concurrency,
            crate::restore::pacing::DEFAULT_MAX_IN_FLIGHT
        );
        let capped = parse(&["--client-qps", "50", "--max-concurrency", "8"]);
        assert_eq!(capped.client_qps, Some(50.0));
        assert_eq!(capped.client_burst, None);
        assert_eq!(capped.max_concurrency, 8);
    }

    #[test]
    fn velero_style_flags_parse() {
        let cli = Cli::try_parse_from([
            "tidemark",
            "backup",
            "create",
            "b1",
            "--include-namespaces",
            "a,b",
            "--exclude-namespaces",
            "c",
            "--selector",
            "app=web",
            "--ttl",
            "72h",
            "--location",
            "file:///tmp/x",
        ])
        .unwrap();
        let Command::Backup(BackupCommand::Create(b)) = cli.command else {
            panic!("wrong command")
        };
        assert_eq!(b.include_namespaces, vec!["a", "b"]);
        assert_eq!(b.ttl, Duration::from_secs(72 * 3600));
        assert!(
            Cli::try_parse_from(["tidemark", "backup", "create", "b", "--ttl", "soon"]).is_err()
        );
        assert!(Cli::try_parse_from(["tidemark", "restore", "create"]).is_err());
        assert!(
            Cli::try_parse_from([
                "tidemark",
                "restore",
                "create",
                "--from-backup",
                "b",
                "--namespace-mappings",
                "a:b"
            ])
            .is_ok()
        );
    }
}
