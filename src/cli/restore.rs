//! `tidemark restore create|get|describe|logs|delete` (direct mode), after `velero restore`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};

use super::{
    ClientArgs, GetArgs, LocationArgs, OutputFormat, gunzip, open_store, output, parse_duration,
    phase_code, progress,
};
use crate::api::velero::Restore;
use crate::cluster::{self, Target};
use crate::report::Results;
use crate::restore::{self, ExistingPolicy, RestoreRequest};
use crate::store::{Store, layout};

/// `tidemark restore ...`
#[derive(Subcommand, Debug)]
pub(crate) enum RestoreCommand {
    /// Restore a backup into the cluster.
    Create(Box<RestoreCreate>),
    /// List the restores recorded in a location.
    Get(GetArgs),
    /// Show a restore's details: spec, phase, counters, warnings and errors per namespace.
    Describe(DescribeArgs),
    /// Print a restore's log.
    Logs(NameArgs),
    /// Delete restore records (and their logs and results) from the location; restored objects
    /// stay in the cluster.
    Delete(DeleteArgs),
}

/// Options of `restore create`.
#[derive(Args, Debug)]
pub(crate) struct RestoreCreate {
    /// Restore name (default `<backup>-<timestamp>`).
    name: Option<String>,
    /// The backup to restore.
    #[arg(long, value_name = "BACKUP", required_unless_present = "from_schedule")]
    from_backup: Option<String>,
    /// Restore the latest Completed backup made by this schedule.
    #[arg(long, value_name = "SCHEDULE", conflicts_with = "from_backup")]
    from_schedule: Option<String>,
    /// With --from-schedule, a PartiallyFailed backup may be the latest one.
    #[arg(long, requires = "from_schedule")]
    allow_partially_failed: bool,
    /// Namespaces to restore (globs, source names; default all).
    #[arg(long, value_delimiter = ',')]
    include_namespaces: Vec<String>,
    /// Namespaces not to restore.
    #[arg(long, value_delimiter = ',')]
    exclude_namespaces: Vec<String>,
    /// Resources to restore (default all).
    #[arg(long, value_delimiter = ',')]
    include_resources: Vec<String>,
    /// Resources not to restore.
    #[arg(long, value_delimiter = ',')]
    exclude_resources: Vec<String>,
    /// Restore cluster-scoped resources: true, false, or unset for auto.
    #[arg(long)]
    include_cluster_resources: Option<bool>,
    /// Restore into other namespaces: `src1:dst1,src2:dst2`.
    #[arg(long, default_value = "")]
    namespace_mappings: String,
    /// Only restore objects matching this label selector.
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// Restore objects matching any of these selectors, separated by ` or `. Not with --selector.
    #[arg(long)]
    or_selector: Option<String>,
    /// What to do with objects that already exist: `none` (warn when they differ) or `update`.
    #[arg(long, value_enum, default_value_t = ExistingArg::None)]
    existing_resource_policy: ExistingArg,
    /// Keep Services' nodePorts.
    #[arg(long)]
    preserve_nodeports: bool,
    /// Restore PersistentVolumes (`false`: skip them; PVCs are provisioned anew by the target).
    #[arg(long)]
    restore_volumes: Option<bool>,
    /// Resources whose status is restored too (`*` for all).
    #[arg(long, value_delimiter = ',')]
    status_include_resources: Vec<String>,
    /// Resources whose status is never restored.
    #[arg(long, value_delimiter = ',')]
    status_exclude_resources: Vec<String>,
    /// Resource modifiers from a ConfigMap in the target cluster (`NAME` in namespace `tidemark`,
    /// or `NAMESPACE/NAME`), in Velero's format (one data key holding `version: v1` and
    /// `resourceModifierRules`).
    #[arg(
        long,
        value_name = "CONFIGMAP",
        conflicts_with = "resource_modifier_file"
    )]
    resource_modifier_configmap: Option<String>,
    /// Resource modifiers from a local YAML file (same format).
    #[arg(long, value_name = "PATH")]
    resource_modifier_file: Option<std::path::PathBuf>,
    /// Show what would be created, updated, skipped or in conflict, without writing anything.
    #[arg(long)]
    dry_run: bool,
    /// How long to wait for CRDs to become Established and namespaces to finish terminating.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    wait_timeout: Duration,
    #[command(flatten)]
    pub(super) client: ClientArgs,
    #[command(flatten)]
    location: LocationArgs,
    /// Print the Restore record (json or yaml) instead of a summary after running (with
    /// --dry-run: the preview).
    #[arg(short, long, value_enum)]
    output: Option<OutputFormat>,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum ExistingArg {
    None,
    Update,
}

/// A restore name and its location.
#[derive(Args, Debug)]
pub(crate) struct NameArgs {
    /// Restore name.
    name: String,
    #[command(flatten)]
    location: LocationArgs,
}

/// Options of `restore describe`.
#[derive(Args, Debug)]
pub(crate) struct DescribeArgs {
    /// Restore names (default: all).
    names: Vec<String>,
    /// Also list every restored object (the resource list).
    #[arg(long)]
    details: bool,
    #[command(flatten)]
    location: LocationArgs,
}

/// Options of `restore delete`.
#[derive(Args, Debug)]
pub(crate) struct DeleteArgs {
    /// Restore names.
    names: Vec<String>,
    /// Delete every restore record in the location.
    #[arg(long)]
    all: bool,
    /// Confirm the deletion (required).
    #[arg(long)]
    confirm: bool,
    #[command(flatten)]
    location: LocationArgs,
}

/// Runs a `restore` subcommand.
pub(crate) async fn run(target: &Target, cmd: RestoreCommand) -> Result<ExitCode> {
    match cmd {
        RestoreCommand::Create(args) => create(target, *args).await,
        RestoreCommand::Get(args) => get(args).await,
        RestoreCommand::Describe(args) => describe(args).await,
        RestoreCommand::Logs(args) => logs(args).await,
        RestoreCommand::Delete(args) => delete(args).await,
    }
}

async fn create(target: &Target, args: RestoreCreate) -> Result<ExitCode> {
    let store = open_store(&args.location).await?;
    let backup = match (&args.from_backup, &args.from_schedule) {
        (Some(b), _) => b.clone(),
        (None, Some(s)) => {
            restore::latest_of_schedule(&store, s, args.allow_partially_failed).await?
        }
        (None, None) => bail!("give --from-backup or --from-schedule"),
    };
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("{backup}-{}", chrono::Utc::now().format("%Y%m%d%H%M%S")));
    let req = RestoreRequest {
        name: name.clone(),
        record_namespace: "tidemark".into(),
        backup: backup.clone(),
        include_namespaces: args.include_namespaces.clone(),
        exclude_namespaces: args.exclude_namespaces.clone(),
        include_resources: args.include_resources.clone(),
        exclude_resources: args.exclude_resources.clone(),
        include_cluster_resources: args.include_cluster_resources,
        namespace_mappings: restore::parse_mappings(&args.namespace_mappings)?,
        selector: args.selector.clone(),
        or_selectors: args
            .or_selector
            .as_deref()
            .map(|s| {
                s.split(" or ")
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        existing_policy: match args.existing_resource_policy {
            ExistingArg::None => ExistingPolicy::None,
            ExistingArg::Update => ExistingPolicy::Update,
        },
        preserve_node_ports: args.preserve_nodeports,
        restore_pvs: args.restore_volumes,
        status_include: args.status_include_resources.clone(),
        status_exclude: args.status_exclude_resources.clone(),
        modifiers: None,
        labels: Default::default(),
        hooks: Default::default(),
        no_hooks: false,
    };
    let mut req = req;
    let client = cluster::connect(target).await?;
    req.modifiers = load_modifiers(&client, &args).await?.map(Arc::new);
    let settings = args
        .client
        .restore_settings(&client, args.wait_timeout)
        .await?;
    if args.dry_run {
        let p = restore::dry_run(&client, &store, &req, &settings)
            .await
            .with_context(|| format!("restore {name:?} (dry run) failed"))?;
        match args.output {
            Some(OutputFormat::Json) => output::print_value(&p, false)?,
            Some(OutputFormat::Yaml) => output::print_value(&p, true)?,
            _ => print!("{}", output::preview(&name, &backup, &p)),
        }
        return Ok(if p.errors.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        });
    }
    let counters = Arc::new(restore::Counters::default());
    let live = progress::restore(counters.clone(), args.output.is_none());
    let outcome = restore::run(&client, &store, &req, &settings, &counters).await;
    progress::finish(live);
    let outcome = outcome.with_context(|| format!("restore {name:?} failed"))?;
    let phase = outcome
        .record
        .status
        .phase
        .clone()
        .unwrap_or_else(|| "Failed".into());
    if let Some(fmt) = args.output {
        output::print_value(&outcome.record, fmt == OutputFormat::Yaml)?;
    } else {
        println!(
            "Restore {name:?} {phase} in {}: {} created, {} updated, {} skipped, {} failed, {} warnings, {} errors",
            output::duration(outcome.duration),
            outcome.created,
            outcome.updated,
            outcome.skipped,
            outcome.failed,
            outcome.results.warnings.len(),
            outcome.results.errors.len(),
        );
        if !outcome.hooks.is_empty() {
            let h = crate::hooks::HookStatus::of(&outcome.hooks);
            println!(
                "Hooks: {} attempted, {} failed (`tidemark restore describe {name}` lists them)",
                h.hooks_attempted, h.hooks_failed
            );
        }
        if !outcome.results.errors.is_empty() || !outcome.results.warnings.is_empty() {
            print!("{}", outcome.results.render());
        }
    }
    Ok(phase_code(&phase))
}

/// Reads the resource modifiers named by the options, if any.
async fn load_modifiers(
    client: &kube::Client,
    args: &RestoreCreate,
) -> Result<Option<restore::modifiers::ResourceModifiers>> {
    use restore::modifiers::ResourceModifiers;
    if let Some(path) = &args.resource_modifier_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--resource-modifier-file {}", path.display()))?;
        let m = ResourceModifiers::parse(&text)
            .with_context(|| format!("--resource-modifier-file {}", path.display()))?;
        return Ok(Some(m));
    }
    let Some(spec) = &args.resource_modifier_configmap else {
        return Ok(None);
    };
    let (ns, name) = spec.split_once('/').unwrap_or(("tidemark", spec));
    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(client.clone(), ns);
    let cm = api
        .get_opt(name)
        .await
        .with_context(|| format!("--resource-modifier-configmap {ns}/{name}"))?
        .with_context(|| {
            format!("--resource-modifier-configmap: ConfigMap {ns}/{name} not found")
        })?;
    let m = ResourceModifiers::from_config_map_data(&cm.data.unwrap_or_default())
        .with_context(|| format!("--resource-modifier-configmap {ns}/{name}"))?;
    Ok(Some(m))
}

async fn read_record(store: &Store, name: &str) -> Result<Restore> {
    let path = store
        .layout()
        .restore_file(name, layout::RESTORE_RECORD_FILE);
    let bytes = store
        .get(&path)
        .await
        .with_context(|| format!("restore {name:?}"))?;
    serde_json::from_slice(&bytes).with_context(|| format!("restore {name:?}: unreadable record"))
}

async fn records(store: &Store, names: &[String]) -> Result<Vec<Restore>> {
    let names = if names.is_empty() {
        store.list_restores().await?
    } else {
        names.to_vec()
    };
    let mut out = Vec::new();
    for n in &names {
        out.push(read_record(store, n).await?);
    }
    Ok(out)
}

async fn get(args: GetArgs) -> Result<ExitCode> {
    let store = open_store(&args.location).await?;
    store.check().await?;
    let records = records(&store, &args.names).await?;
    match args.output {
        OutputFormat::Table => print!("{}", output::restore_table(&records)),
        f => output::print_list(&records, f == OutputFormat::Yaml)?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn describe(args: DescribeArgs) -> Result<ExitCode> {
    let store = open_store(&args.location).await?;
    store.check().await?;
    let l = store.layout();
    for r in records(&store, &args.names).await? {
        let name = r.metadata.name.clone().unwrap_or_default();
        let results: Results = match gunzip(&store, &l.restore_results(&name)).await {
            Ok(raw) => serde_json::from_slice(&raw).unwrap_or_default(),
            Err(_) => Results::default(),
        };
        let list = if args.details {
            let raw = gunzip(&store, &l.restore_resource_list(&name)).await?;
            Some(serde_json::from_slice(&raw).context("resource list")?)
        } else {
            None
        };
        print!("{}", output::describe_restore(&r, &results, list.as_ref()));
        // Each hook's outcome, when the restore ran hooks (`tidemark-hooks.json.gz`).
        match crate::hooks::outcome::read_restore(&store, &name).await {
            Ok(h) if h.is_empty() => {}
            Ok(h) => print!("\n{}", crate::hooks::outcome::render(&h)),
            Err(e) => println!("\nHooks:  <error: {e}>"),
        }
        if args.details {
            print!(
                "\n{}",
                crate::volumes::report::describe_restore(&store, &name).await
            );
        }
        println!();
    }
    Ok(ExitCode::SUCCESS)
}

async fn logs(args: NameArgs) -> Result<ExitCode> {
    let store = open_store(&args.location).await?;
    read_record(&store, &args.name).await?;
    let raw = gunzip(&store, &store.layout().restore_logs(&args.name)).await?;
    print!("{}", String::from_utf8_lossy(&raw));
    Ok(ExitCode::SUCCESS)
}

async fn delete(args: DeleteArgs) -> Result<ExitCode> {
    if args.names.is_empty() != args.all {
        bail!("give restore names or --all (one of them)");
    }
    let store = open_store(&args.location).await?;
    store.check().await?;
    let targets = records(&store, &args.names).await?;
    let names: Vec<String> = targets
        .iter()
        .filter_map(|r| r.metadata.name.clone())
        .collect();
    if names.is_empty() {
        println!("No restores to delete.");
        return Ok(ExitCode::SUCCESS);
    }
    if !args.confirm {
        bail!(
            "this would delete {} restore record(s) from {}: {}; add --confirm to proceed",
            names.len(),
            store.url(),
            names.join(", ")
        );
    }
    for n in &names {
        let removed = store.delete_folder(&store.layout().restore_dir(n)).await?;
        println!("Restore {n:?} deleted ({removed} objects removed).");
    }
    Ok(ExitCode::SUCCESS)
}
