//! `tidemark backup create|get|describe|logs|download|delete` (direct mode), after `velero backup`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::{
    ClientArgs, GetArgs, LocationArgs, OutputFormat, gunzip, open_store, output, parse_duration,
    parse_kv, phase_code, progress,
};
use crate::api::velero::Backup;
use crate::backup::{self, BackupRequest, filter};
use crate::cluster::selector::{LabelMatcher, parse as parse_selector};
use crate::cluster::{self, Target};
use crate::report::{Results, text};
use crate::restore;
use crate::store::{Store, layout};

/// `tidemark backup ...`
#[derive(Subcommand, Debug)]
pub(crate) enum BackupCommand {
    /// Back up the cluster's resources into a location.
    Create(Box<BackupCreate>),
    /// List the backups a location holds.
    Get(GetArgs),
    /// Show a backup's details: spec, phase, times, counters, warnings and errors.
    Describe(DescribeArgs),
    /// Print a backup's log.
    Logs(NameArgs),
    /// Download a backup's tarball to a file.
    Download(DownloadArgs),
    /// Delete backups from the location (and the restores made from them).
    Delete(DeleteArgs),
    /// Prove a backup restores: restore it into scratch namespaces (`drill-<ns>`) of this
    /// cluster or of another one (--into-kubeconfig), compare every object with the archive,
    /// report, delete the scratch namespaces.
    Verify(Box<super::verify::VerifyArgs>),
}

/// Options of `backup create`.
#[derive(Args, Debug)]
pub(crate) struct BackupCreate {
    /// Backup name.
    name: String,
    /// Namespaces to include (globs; default all).
    #[arg(long, value_delimiter = ',')]
    pub(crate) include_namespaces: Vec<String>,
    /// Namespaces to exclude (globs).
    #[arg(long, value_delimiter = ',')]
    exclude_namespaces: Vec<String>,
    /// Resources to include (`deployments`, `deploy`, `deployments.apps`; default all).
    #[arg(long, value_delimiter = ',')]
    include_resources: Vec<String>,
    /// Resources to exclude.
    #[arg(long, value_delimiter = ',')]
    exclude_resources: Vec<String>,
    /// Include cluster-scoped resources: true, false, or unset for auto (all when every
    /// namespace is included, else only those related to included objects).
    #[arg(long)]
    include_cluster_resources: Option<bool>,
    /// Also back up the included namespaces' Events, as Velero does, for forensics (they are
    /// never restored).
    #[arg(long)]
    include_events: bool,
    /// Cluster-scoped resources to include (`*` for all). Not with the three options above.
    #[arg(long, value_delimiter = ',')]
    include_cluster_scoped_resources: Vec<String>,
    /// Cluster-scoped resources to exclude (`*` for all).
    #[arg(long, value_delimiter = ',')]
    exclude_cluster_scoped_resources: Vec<String>,
    /// Namespace-scoped resources to include (`*` for all).
    #[arg(long, value_delimiter = ',')]
    include_namespace_scoped_resources: Vec<String>,
    /// Namespace-scoped resources to exclude (`*` for all).
    #[arg(long, value_delimiter = ',')]
    exclude_namespace_scoped_resources: Vec<String>,
    /// Only back up objects matching this label selector (`app=web,tier!=db`).
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// Back up objects matching any of these selectors, separated by ` or `
    /// (`app=web or tier in (db)`). Not with --selector.
    #[arg(long)]
    or_selector: Option<String>,
    /// Objects backed up first, in order: `pods=ns1/pod1,ns1/pod2;persistentvolumes=pv4,pv8`.
    #[arg(long)]
    ordered_resources: Option<String>,
    /// How long before the backup can be garbage-collected (`720h`, `30d`, `90m`).
    #[arg(long, default_value = "720h", value_parser = parse_duration)]
    pub(crate) ttl: Duration,
    /// Labels for the backup record (`k=v,k2=v2`).
    #[arg(long, value_delimiter = ',', value_parser = parse_kv)]
    labels: Vec<(String, String)>,
    /// Annotations for the backup record (`k=v,k2=v2`).
    #[arg(long, value_delimiter = ',', value_parser = parse_kv)]
    annotations: Vec<(String, String)>,
    /// Take CSI snapshots of persistent volume claims (default true; false: only where a
    /// volume policy says `snapshot`).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    snapshot_volumes: Option<bool>,
    /// Copy every pod volume by file system (node agent) unless the pod opts it out with
    /// `backup.velero.io/backup-volumes-excludes`.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    default_volumes_to_fs_backup: Option<bool>,
    /// How long to wait for each CSI VolumeSnapshot to become ready (`10m`).
    #[arg(long, value_parser = parse_duration)]
    csi_snapshot_timeout: Option<Duration>,
    /// ConfigMap holding Velero volume policies (`version: v1`, `volumePolicies: [...]`):
    /// `name` (in the `tidemark` namespace, where records live) or `namespace/name`.
    #[arg(long)]
    resource_policies_configmap: Option<String>,
    /// Objects per LIST page (server-side pagination).
    #[arg(long, default_value_t = 500)]
    page_size: u32,
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    location: LocationArgs,
    /// Print the Backup record that would be created (json or yaml) and exit without running.
    #[arg(short, long, value_enum)]
    output: Option<OutputFormat>,
    /// Hand the backup to the installed controller (create a Backup record in --namespace)
    /// instead of running it in this process.
    #[arg(long)]
    controller: bool,
    /// With --controller: wait until the backup finishes and report its phase.
    #[arg(long, requires = "controller")]
    wait: bool,
    /// With --controller: the controller's namespace.
    #[arg(
        short = 'n',
        long,
        env = "TIDEMARK_NAMESPACE",
        default_value = "tidemark"
    )]
    namespace: String,
}

/// A backup name and its location.
#[derive(Args, Debug)]
pub(crate) struct NameArgs {
    /// Backup name.
    name: String,
    #[command(flatten)]
    location: LocationArgs,
}

/// Options of `backup describe`.
#[derive(Args, Debug)]
pub(crate) struct DescribeArgs {
    /// Backup names (default: all).
    names: Vec<String>,
    /// Also list every backed-up object (the resource list).
    #[arg(long)]
    details: bool,
    #[command(flatten)]
    location: LocationArgs,
}

/// Options of `backup download`.
#[derive(Args, Debug)]
pub(crate) struct DownloadArgs {
    /// Backup name.
    name: String,
    /// Output file (default `<name>-data.tar.gz`, like velero).
    #[arg(short, long)]
    output: Option<std::path::PathBuf>,
    /// Overwrite the output file if it exists.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    location: LocationArgs,
}

/// Options of `backup delete`.
#[derive(Args, Debug)]
pub(crate) struct DeleteArgs {
    /// Backup names.
    names: Vec<String>,
    /// Delete every backup in the location.
    #[arg(long)]
    all: bool,
    /// Delete the backups whose labels match this selector.
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// Confirm the deletion (required: nothing is deleted without it).
    #[arg(long)]
    confirm: bool,
    #[command(flatten)]
    location: LocationArgs,
}

/// Runs a `backup` subcommand.
pub(crate) async fn run(target: &Target, cmd: BackupCommand) -> Result<ExitCode> {
    match cmd {
        BackupCommand::Create(args) => create(target, *args).await,
        BackupCommand::Get(args) => get(args).await,
        BackupCommand::Describe(args) => describe(args).await,
        BackupCommand::Logs(args) => logs(args).await,
        BackupCommand::Download(args) => download(args).await,
        BackupCommand::Delete(args) => delete(target, args).await,
        BackupCommand::Verify(args) => super::verify::run(target, *args).await,
    }
}

fn request(args: &BackupCreate) -> Result<BackupRequest> {
    let mut req = BackupRequest::new(&args.name);
    req.include_namespaces = args.include_namespaces.clone();
    req.exclude_namespaces = args.exclude_namespaces.clone();
    req.include_resources = args.include_resources.clone();
    req.exclude_resources = args.exclude_resources.clone();
    req.include_cluster_resources = args.include_cluster_resources;
    req.include_events = args.include_events;
    req.include_cluster_scoped = args.include_cluster_scoped_resources.clone();
    req.exclude_cluster_scoped = args.exclude_cluster_scoped_resources.clone();
    req.include_namespace_scoped = args.include_namespace_scoped_resources.clone();
    req.exclude_namespace_scoped = args.exclude_namespace_scoped_resources.clone();
    req.selector = args.selector.clone();
    req.or_selectors = args
        .or_selector
        .as_deref()
        .map(|s| {
            s.split(" or ")
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if let Some(o) = &args.ordered_resources {
        req.ordered_resources = filter::parse_ordered_resources(o)?;
    }
    req.ttl = args.ttl;
    req.labels = args.labels.iter().cloned().collect();
    req.annotations = args.annotations.iter().cloned().collect();
    req.volumes.snapshot_volumes = args.snapshot_volumes;
    req.volumes.default_volumes_to_fs_backup = args.default_volumes_to_fs_backup.unwrap_or(false);
    if let Some(t) = args.csi_snapshot_timeout {
        req.volumes.csi_snapshot_timeout = t;
    }
    req.resource_policy_configmap = args.resource_policies_configmap.clone();
    // Validate every option before anything runs.
    req.filter()?;
    Ok(req)
}

async fn create(target: &Target, args: BackupCreate) -> Result<ExitCode> {
    let req = request(&args)?;
    if let Some(fmt) = args.output {
        output::print_value(&req.record()?, fmt == OutputFormat::Yaml)?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.controller {
        let r = req.record()?;
        let s = r.spec;
        let template = crate::api::tidemark::BackupSpecTemplate {
            included_namespaces: args.include_namespaces.clone(),
            excluded_namespaces: s.excluded_namespaces,
            included_resources: s.included_resources,
            excluded_resources: s.excluded_resources,
            include_cluster_resources: s.include_cluster_resources,
            included_cluster_scoped_resources: s.included_cluster_scoped_resources,
            excluded_cluster_scoped_resources: s.excluded_cluster_scoped_resources,
            included_namespace_scoped_resources: s.included_namespace_scoped_resources,
            excluded_namespace_scoped_resources: s.excluded_namespace_scoped_resources,
            label_selector: s.label_selector,
            or_label_selectors: s.or_label_selectors,
            ordered_resources: s.ordered_resources,
            location: args.location.location.clone(),
            ttl: s.ttl,
            volumes: crate::volumes::template_of(&req),
            include_events: args.include_events.then_some(true),
            hooks: (!req.hooks.is_empty()).then(|| req.hooks.clone()),
        };
        let client = cluster::connect(target).await?;
        return super::objects::create_backup_record(
            client,
            &args.namespace,
            &args.name,
            template,
            req.labels.clone(),
            args.wait,
        )
        .await;
    }
    let store = open_store(&args.location).await?;
    let client = cluster::connect(target).await?;
    let settings = backup::Settings {
        page_size: args.page_size.max(1),
        concurrency: args.client.concurrency.max(1),
        budget: args.client.budget(&client).await?,
    };
    let progress = Arc::new(backup::Progress::default());
    let live = progress::backup(progress.clone(), true);
    let outcome = backup::run(&client, &store, &req, &settings, &progress).await;
    progress::finish(live);
    let outcome = outcome.with_context(|| format!("backup {:?} failed", args.name))?;
    let phase = outcome.record.phase().to_string();
    println!(
        "Backup {:?} {phase} in {}: {} items, {} warnings, {} errors, {} compressed, location {}",
        args.name,
        output::duration(outcome.duration),
        outcome.meta.items,
        outcome.results.warnings.len(),
        outcome.results.errors.len(),
        text::bytes(outcome.meta.archive_bytes),
        store.url()
    );
    if !outcome.hooks.is_empty() {
        let h = crate::hooks::HookStatus::of(&outcome.hooks);
        println!(
            "Hooks: {} attempted, {} failed (`tidemark backup describe {}` lists them)",
            h.hooks_attempted, h.hooks_failed, args.name
        );
    }
    if !outcome.results.errors.is_empty() || !outcome.results.warnings.is_empty() {
        print!("{}", outcome.results.render());
    }
    Ok(phase_code(&phase))
}

async fn records(store: &Store, names: &[String]) -> Result<Vec<Backup>> {
    let listed;
    let names = if names.is_empty() {
        listed = store.list_backups().await?;
        &listed[..]
    } else {
        names
    };
    let mut out = Vec::new();
    for n in names {
        out.push(restore::read_backup(store, n).await?);
    }
    Ok(out)
}

async fn get(args: GetArgs) -> Result<ExitCode> {
    let store = open_store(&args.location).await?;
    store.check().await?;
    let records = records(&store, &args.names).await?;
    match args.output {
        OutputFormat::Table => print!("{}", output::backup_table(&records, chrono::Utc::now())),
        f => output::print_list(&records, f == OutputFormat::Yaml)?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn describe(args: DescribeArgs) -> Result<ExitCode> {
    let store = open_store(&args.location).await?;
    store.check().await?;
    let l = store.layout();
    for b in records(&store, &args.names).await? {
        let name = b.name().to_string();
        let results: Results = match gunzip(&store, &l.backup_results(&name)).await {
            Ok(r) => serde_json::from_slice(&r).unwrap_or_default(),
            Err(_) => Results::default(),
        };
        let meta = store
            .get(&l.backup_file(&name, layout::TIDEMARK_BACKUP_FILE))
            .await
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let resource_list = if args.details {
            let raw = gunzip(&store, &l.backup_resource_list(&name)).await?;
            Some(serde_json::from_slice(&raw).context("resource list")?)
        } else {
            None
        };
        print!(
            "{}",
            output::describe_backup(&b, meta.as_ref(), &results, resource_list.as_ref())
        );
        // Each hook's outcome, when the backup ran hooks (`tidemark-hooks.json.gz`).
        match crate::hooks::outcome::read_backup(&store, &name).await {
            Ok(h) if h.is_empty() => {}
            Ok(h) => print!("\n{}", crate::hooks::outcome::render(&h)),
            Err(e) => println!("\nHooks:  <error: {e}>"),
        }
        if args.details {
            match crate::volumes::report::describe_backup(&store, &name).await {
                Ok(v) => print!("\n{v}"),
                Err(e) => println!("\nVolumes:  <error: {e}>"),
            }
        }
        println!();
    }
    Ok(ExitCode::SUCCESS)
}

async fn logs(args: NameArgs) -> Result<ExitCode> {
    let store = open_store(&args.location).await?;
    restore::read_backup(&store, &args.name).await?;
    let raw = gunzip(&store, &store.layout().backup_logs(&args.name)).await?;
    print!("{}", String::from_utf8_lossy(&raw));
    Ok(ExitCode::SUCCESS)
}

async fn download(args: DownloadArgs) -> Result<ExitCode> {
    let store = open_store(&args.location).await?;
    restore::read_backup(&store, &args.name).await?;
    let path = args
        .output
        .clone()
        .unwrap_or_else(|| format!("{}-data.tar.gz", args.name).into());
    if path.exists() && !args.force {
        bail!(
            "{} already exists; use --force to overwrite it",
            path.display()
        );
    }
    let mut stream = store
        .get_stream(&store.layout().backup_archive(&args.name))
        .await?;
    let tmp = path.with_extension("partial");
    let mut file = tokio::fs::File::create(&tmp)
        .await
        .with_context(|| format!("creating {}", tmp.display()))?;
    let mut written = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        written += chunk.len() as u64;
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    drop(file);
    tokio::fs::rename(&tmp, &path).await?;
    println!(
        "Backup {} has been successfully downloaded to {} ({})",
        args.name,
        path.display(),
        text::bytes(written)
    );
    Ok(ExitCode::SUCCESS)
}

async fn delete(target: &Target, args: DeleteArgs) -> Result<ExitCode> {
    let selected = [!args.names.is_empty(), args.all, args.selector.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if selected != 1 {
        bail!("give backup names, --all, or --selector (exactly one of them)");
    }
    let store = open_store(&args.location).await?;
    store.check().await?;
    // Named backups without a record are leftovers of an interrupted run: removable too.
    let mut incomplete = Vec::new();
    let mut targets = Vec::new();
    if args.names.is_empty() {
        targets = records(&store, &[]).await?;
    } else {
        for n in &args.names {
            match restore::read_backup(&store, n).await {
                Ok(b) => targets.push(b),
                Err(restore::RestoreError::BackupNotFound { .. })
                    if store.folder_exists(&store.layout().backup_dir(n)).await? =>
                {
                    incomplete.push(n.clone())
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    if !incomplete.is_empty() {
        if !args.confirm {
            bail!(
                "incomplete backup(s) {} (no velero-backup.json) would be removed; add --confirm",
                incomplete.join(", ")
            );
        }
        for n in &incomplete {
            let removed = store.delete_folder(&store.layout().backup_dir(n)).await?;
            println!("Incomplete backup {n:?} removed ({removed} objects).");
        }
        if targets.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
    }
    if let Some(sel) = &args.selector {
        let m = LabelMatcher::new(&parse_selector(sel)?)?;
        targets.retain(|b| m.matches(&b.metadata.labels.clone().unwrap_or_default()));
    }
    if targets.is_empty() {
        println!("No backups to delete.");
        return Ok(ExitCode::SUCCESS);
    }
    if !args.confirm {
        let names: Vec<&str> = targets.iter().map(|b| b.name()).collect();
        bail!(
            "this would delete {} backup(s) from {}: {}; add --confirm to proceed",
            names.len(),
            store.url(),
            names.join(", ")
        );
    }
    if store.is_read_only() {
        bail!("location {} is read-only: nothing was deleted", store.url());
    }
    let mut client: Option<kube::Client> = None;
    let mut kept = 0;
    let pod_volumes = crate::volumes::podvolume::PodVolumeSettings::from_env();
    for b in &targets {
        let name = b.name();
        // A cluster connection only for a backup with CSI snapshots to delete.
        if crate::volumes::csi::has_snapshots(&store, name).await && client.is_none() {
            client = cluster::connect(target).await.ok();
        }
        match crate::backup::delete::delete_backup(client.as_ref(), &store, name, "", &pod_volumes)
            .await
        {
            Ok(d) => {
                if d.csi_snapshots > 0 {
                    println!(
                        "Backup {name:?}: {} CSI snapshot(s) deleted.",
                        d.csi_snapshots
                    );
                }
                if d.restic_snapshots > 0 {
                    println!(
                        "Backup {name:?}: {} restic snapshot(s) forgotten.",
                        d.restic_snapshots
                    );
                }
                for w in &d.warnings {
                    eprintln!("warning: backup {name:?}: {w}");
                }
                println!("Backup {name:?} deleted ({} objects removed).", d.objects);
            }
            Err(
                e @ (crate::backup::delete::DeleteError::Retained { .. }
                | crate::backup::delete::DeleteError::CsiSnapshots { .. }),
            ) => {
                eprintln!("error: {e}");
                kept += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    if kept > 0 {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
