//! Controller-mode commands: `tidemark schedule ...` and `tidemark location ...` manage the
//! Schedule and Location objects an installed controller (`tidemark server`) reconciles, like
//! `velero schedule` and `velero backup-location`; `backup create --controller` creates a Backup
//! record and `--wait` follows it.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::{OutputFormat, output, parse_kv};
use crate::api::tidemark::{
    AccessMode, Backup, BackupSpec, BackupSpecTemplate, Location, LocationSpec, Provider, Schedule,
    ScheduleSpec, SecretKeyRef,
};
use crate::cluster::{self, Target};

/// The namespace of the controller's objects.
#[derive(Args, Debug, Clone)]
pub(crate) struct NamespaceArg {
    /// Namespace of the tidemark controller and its objects.
    #[arg(
        short = 'n',
        long = "namespace",
        env = "TIDEMARK_NAMESPACE",
        default_value = "tidemark"
    )]
    namespace: String,
}

/// `tidemark schedule ...`
#[derive(Subcommand, Debug)]
pub(crate) enum ScheduleCommand {
    /// Create a Schedule.
    Create(Box<ScheduleCreate>),
    /// List Schedules.
    Get(ObjGet),
    /// Show a Schedule's spec and status.
    Describe(ObjNames),
    /// Delete Schedules (their backups stay).
    Delete(ObjDelete),
    /// Pause Schedules: no backups start until unpaused.
    Pause(ObjNames),
    /// Unpause Schedules.
    Unpause(ObjNames),
}

/// `tidemark location ...`
#[derive(Subcommand, Debug)]
pub(crate) enum LocationCommand {
    /// Create a Location.
    Create(Box<LocationCreate>),
    /// List Locations with their phase.
    Get(ObjGet),
    /// Change a Location (default flag, credential, access mode).
    Set(Box<LocationSet>),
    /// Delete Locations (the data in the store stays).
    Delete(ObjDelete),
}

/// Names of objects.
#[derive(Args, Debug)]
pub(crate) struct ObjNames {
    /// Names.
    #[arg(required = true)]
    names: Vec<String>,
    #[command(flatten)]
    ns: NamespaceArg,
}

/// Listing options.
#[derive(Args, Debug)]
pub(crate) struct ObjGet {
    /// Only these names.
    names: Vec<String>,
    #[command(flatten)]
    ns: NamespaceArg,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,
}

/// Deletion options.
#[derive(Args, Debug)]
pub(crate) struct ObjDelete {
    /// Names.
    #[arg(required = true)]
    names: Vec<String>,
    /// Confirm the deletion (required).
    #[arg(long)]
    confirm: bool,
    #[command(flatten)]
    ns: NamespaceArg,
}

/// Options of `schedule create` (Velero's `--schedule` plus the backup template flags).
#[derive(Args, Debug)]
pub(crate) struct ScheduleCreate {
    /// Schedule name.
    name: String,
    /// Cron expression (`0 2 * * *`, `@daily`, `@every 6h`).
    #[arg(long)]
    schedule: String,
    /// IANA time zone of the expression (default UTC).
    #[arg(long)]
    time_zone: Option<String>,
    /// Use this BackupPolicy instead of the template flags below.
    #[arg(long, conflicts_with_all = ["include_namespaces", "exclude_namespaces", "selector", "ttl"])]
    policy: Option<String>,
    /// Namespaces to include.
    #[arg(long, value_delimiter = ',')]
    include_namespaces: Vec<String>,
    /// Namespaces to exclude.
    #[arg(long, value_delimiter = ',')]
    exclude_namespaces: Vec<String>,
    /// Label selector (`app=web`).
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// Backup TTL (`720h`).
    #[arg(long)]
    ttl: Option<String>,
    /// Location name (default: the default Location).
    #[arg(long)]
    location: Option<String>,
    /// Do not back up right away.
    #[arg(long)]
    skip_immediately: bool,
    /// Create the schedule paused.
    #[arg(long)]
    paused: bool,
    /// Owner references from backups to the schedule.
    #[arg(long)]
    use_owner_references_in_backup: bool,
    #[command(flatten)]
    ns: NamespaceArg,
}

/// Options of `location create`.
#[derive(Args, Debug)]
#[command(
    after_help = "Config keys (Velero's, per provider; unknown keys are refused):
  s3     region, s3Url, s3ForcePathStyle, insecureSkipTLSVerify, profile
  azure  storageAccount (required), storageAccountKeyEnvVar, useAAD, storageAccountURI,
         activeDirectoryAuthorityURI, blockSizeInBytes, resourceGroup, subscriptionId
  gcp    storeEndpoint, universeDomain, serviceAccount

The --credential Secret key holds the provider's credentials file in Velero's format:
  s3     an AWS shared-credentials file ([default] aws_access_key_id=..., aws_secret_access_key=...)
  azure  KEY=VALUE lines: AZURE_STORAGE_ACCOUNT_ACCESS_KEY=... (the name storageAccountKeyEnvVar
         gives), or with useAAD=true AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET;
         AZURE_CLOUD_NAME for another cloud
  gcp    a service-account key (JSON)

Examples:
  tidemark location create default --provider azure --bucket velero --config \\
    storageAccount=mybackups,storageAccountKeyEnvVar=AZURE_STORAGE_ACCOUNT_ACCESS_KEY \\
    --credential cloud-credentials=cloud --default
  tidemark location create gcs --provider gcp --bucket my-backups --prefix cluster-a \\
    --credential cloud-credentials=cloud"
)]
pub(crate) struct LocationCreate {
    /// Location name.
    name: String,
    /// `s3` (also `aws`), `azure`, `gcp` or `filesystem`.
    #[arg(long, default_value = "s3")]
    provider: String,
    /// Bucket (S3, GCS), blob container (Azure) or absolute directory (filesystem).
    #[arg(long)]
    bucket: String,
    /// Prefix inside the bucket.
    #[arg(long)]
    prefix: Option<String>,
    /// Provider config, Velero's keys (`region=us-east-1,s3Url=http://minio:9000`;
    /// `storageAccount=NAME,storageAccountKeyEnvVar=VAR`; `storeEndpoint=URL`).
    #[arg(long, value_delimiter = ',', value_parser = parse_kv)]
    config: Vec<(String, String)>,
    /// Credential Secret key in the namespace: `SECRET=KEY` (Velero's `--credential`); the
    /// value is the provider's credentials file, as for Velero.
    #[arg(long, value_parser = parse_kv)]
    credential: Option<(String, String)>,
    /// `ReadWrite` or `ReadOnly`.
    #[arg(long, default_value = "ReadWrite")]
    access_mode: String,
    /// Make it the default location.
    #[arg(long)]
    default: bool,
    #[command(flatten)]
    ns: NamespaceArg,
}

/// Options of `location set`.
#[derive(Args, Debug)]
pub(crate) struct LocationSet {
    /// Location name.
    name: String,
    /// Make it (or stop it being) the default location.
    #[arg(long)]
    default: Option<bool>,
    /// Credential Secret key: `SECRET=KEY`.
    #[arg(long, value_parser = parse_kv)]
    credential: Option<(String, String)>,
    /// `ReadWrite` or `ReadOnly`.
    #[arg(long)]
    access_mode: Option<String>,
    #[command(flatten)]
    ns: NamespaceArg,
}

fn access(s: &str) -> Result<AccessMode> {
    match s {
        "ReadWrite" => Ok(AccessMode::ReadWrite),
        "ReadOnly" => Ok(AccessMode::ReadOnly),
        other => bail!("--access-mode: {other:?} is not ReadWrite or ReadOnly"),
    }
}

fn print_objects<K: serde::Serialize>(
    items: &[K],
    fmt: OutputFormat,
    table: impl Fn(&[K]) -> String,
) -> Result<()> {
    match fmt {
        OutputFormat::Table => print!("{}", table(items)),
        f => output::print_list(items, f == OutputFormat::Yaml)?,
    }
    Ok(())
}

fn cond(v: &serde_json::Value, t: &str) -> String {
    v.pointer("/status/conditions")
        .and_then(|c| c.as_array())
        .and_then(|c| c.iter().find(|c| c["type"] == t))
        .map(|c| {
            format!(
                "{} ({})",
                c["status"].as_str().unwrap_or(""),
                c["reason"].as_str().unwrap_or("")
            )
        })
        .unwrap_or_else(|| "-".into())
}

async fn listed<K>(api: &Api<K>, names: &[String]) -> Result<Vec<K>>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug + kube::Resource,
{
    if names.is_empty() {
        Ok(api.list(&ListParams::default()).await?.items)
    } else {
        let mut out = Vec::new();
        for n in names {
            out.push(api.get(n).await.with_context(|| n.to_string())?);
        }
        Ok(out)
    }
}

/// Runs a `schedule` subcommand.
pub(crate) async fn schedule(target: &Target, cmd: ScheduleCommand) -> Result<ExitCode> {
    let client = cluster::connect(target).await?;
    match cmd {
        ScheduleCommand::Create(a) => {
            let template = if a.policy.is_some() {
                None
            } else {
                let label_selector = match &a.selector {
                    Some(s) => Some(crate::cluster::selector::parse(s)?),
                    None => None,
                };
                Some(BackupSpecTemplate {
                    included_namespaces: a.include_namespaces.clone(),
                    excluded_namespaces: a.exclude_namespaces.clone(),
                    label_selector,
                    ttl: a.ttl.clone(),
                    location: a.location.clone(),
                    ..Default::default()
                })
            };
            crate::plan::schedule::CronSchedule::parse(&a.schedule, a.time_zone.as_deref())?;
            let mut s = Schedule::new(
                &a.name,
                ScheduleSpec {
                    schedule: a.schedule.clone(),
                    time_zone: a.time_zone.clone(),
                    policy: a.policy.clone(),
                    template,
                    paused: a.paused,
                    skip_immediately: a.skip_immediately,
                    use_owner_references_in_backup: a.use_owner_references_in_backup,
                    retention: None,
                    verify: None,
                },
            );
            s.metadata.namespace = Some(a.ns.namespace.clone());
            let api: Api<Schedule> = Api::namespaced(client, &a.ns.namespace);
            api.create(&PostParams::default(), &s)
                .await
                .with_context(|| format!("creating Schedule {}", a.name))?;
            println!("Schedule {:?} created.", a.name);
        }
        ScheduleCommand::Get(a) => {
            let api: Api<Schedule> = Api::namespaced(client, &a.ns.namespace);
            let items = listed(&api, &a.names).await?;
            print_objects(&items, a.output, |items| {
                let mut o = "NAME   STATUS   SCHEDULE   LAST BACKUP   NEXT RUN   PAUSED   READY\n"
                    .to_string();
                for s in items {
                    let v = serde_json::to_value(s).unwrap_or_default();
                    let st = s.status.clone().unwrap_or_default();
                    o += &format!(
                        "{}   {}   {}   {}   {}   {}   {}\n",
                        s.name_any(),
                        st.phase.unwrap_or_default(),
                        s.spec.schedule,
                        st.last_backup.unwrap_or_else(|| "n/a".into()),
                        st.next_run.unwrap_or_else(|| "n/a".into()),
                        s.spec.paused,
                        cond(&v, "Ready")
                    );
                }
                o
            })?;
        }
        ScheduleCommand::Describe(a) => {
            let api: Api<Schedule> = Api::namespaced(client, &a.ns.namespace);
            for n in &a.names {
                let s = api.get(n).await.with_context(|| format!("Schedule {n}"))?;
                output::print_value(&s, true)?;
            }
        }
        ScheduleCommand::Delete(a) => {
            if !a.confirm {
                bail!(
                    "this would delete Schedule(s) {}; add --confirm to proceed",
                    a.names.join(", ")
                );
            }
            let api: Api<Schedule> = Api::namespaced(client, &a.ns.namespace);
            for n in &a.names {
                api.delete(n, &DeleteParams::default())
                    .await
                    .with_context(|| format!("Schedule {n}"))?;
                println!("Schedule {n:?} deleted.");
            }
        }
        ScheduleCommand::Pause(a) => set_paused(client, &a, true).await?,
        ScheduleCommand::Unpause(a) => set_paused(client, &a, false).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn set_paused(client: Client, a: &ObjNames, pause: bool) -> Result<()> {
    let api: Api<Schedule> = Api::namespaced(client, &a.ns.namespace);
    for n in &a.names {
        api.patch(
            n,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": pause}})),
        )
        .await
        .with_context(|| format!("Schedule {n}"))?;
        println!(
            "Schedule {n:?} {}.",
            if pause { "paused" } else { "unpaused" }
        );
    }
    Ok(())
}

/// Runs a `location` subcommand.
pub(crate) async fn location(target: &Target, cmd: LocationCommand) -> Result<ExitCode> {
    let client = cluster::connect(target).await?;
    match cmd {
        LocationCommand::Create(a) => {
            let provider = match a.provider.as_str() {
                "s3" | "aws" | "velero.io/aws" => Provider::S3,
                "azure" | "velero.io/azure" => Provider::Azure,
                "gcp" | "velero.io/gcp" => Provider::Gcp,
                "filesystem" => Provider::Filesystem,
                other => bail!("--provider: {other:?} is not s3, azure, gcp or filesystem"),
            };
            let config = a.config.iter().cloned().collect::<BTreeMap<_, _>>();
            // Refuse what the controller would refuse (unknown keys, bad values) before
            // creating anything.
            if provider != Provider::Filesystem {
                let mut store_config = config.clone();
                if provider == Provider::S3 {
                    store_config.remove("profile");
                }
                crate::store::LocationUrl::new(
                    provider.into(),
                    &a.bucket,
                    a.prefix.as_deref().unwrap_or(""),
                    store_config,
                    crate::store::AccessMode::ReadWrite,
                )
                .check_config()
                .context("--config")?;
            }
            let mut l = Location::new(
                &a.name,
                LocationSpec {
                    provider,
                    bucket: a.bucket.clone(),
                    prefix: a.prefix.clone(),
                    config,
                    credential: a
                        .credential
                        .clone()
                        .map(|(name, key)| SecretKeyRef { name, key }),
                    access_mode: access(&a.access_mode)?,
                    default: a.default,
                    ..Default::default()
                },
            );
            l.metadata.namespace = Some(a.ns.namespace.clone());
            let api: Api<Location> = Api::namespaced(client, &a.ns.namespace);
            api.create(&PostParams::default(), &l)
                .await
                .with_context(|| format!("creating Location {}", a.name))?;
            println!("Location {:?} created.", a.name);
        }
        LocationCommand::Get(a) => {
            let api: Api<Location> = Api::namespaced(client, &a.ns.namespace);
            let items = listed(&api, &a.names).await?;
            print_objects(&items, a.output, |items| {
                let mut o = "NAME   PROVIDER   BUCKET/PREFIX   PHASE   LAST VALIDATED   ACCESS MODE   DEFAULT\n".to_string();
                for l in items {
                    let st = l.status.clone().unwrap_or_default();
                    o += &format!(
                        "{}   {:?}   {}/{}   {}   {}   {:?}   {}\n",
                        l.name_any(),
                        l.spec.provider,
                        l.spec.bucket,
                        l.spec.prefix.clone().unwrap_or_default(),
                        st.phase.unwrap_or_else(|| "Unknown".into()),
                        st.last_validation_time.unwrap_or_else(|| "n/a".into()),
                        l.spec.access_mode,
                        l.spec.default
                    );
                }
                o
            })?;
        }
        LocationCommand::Set(a) => {
            let mut spec = serde_json::Map::new();
            if let Some(d) = a.default {
                spec.insert("default".into(), json!(d));
            }
            if let Some((name, key)) = &a.credential {
                spec.insert("credential".into(), json!({"name": name, "key": key}));
            }
            if let Some(m) = &a.access_mode {
                access(m)?;
                spec.insert("accessMode".into(), json!(m));
            }
            if spec.is_empty() {
                bail!("nothing to set: give --default, --credential or --access-mode");
            }
            let api: Api<Location> = Api::namespaced(client, &a.ns.namespace);
            api.patch(
                &a.name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": spec})),
            )
            .await
            .with_context(|| format!("Location {}", a.name))?;
            println!("Location {:?} updated.", a.name);
        }
        LocationCommand::Delete(a) => {
            if !a.confirm {
                bail!(
                    "this would delete Location(s) {}; add --confirm to proceed (the store's data stays)",
                    a.names.join(", ")
                );
            }
            let api: Api<Location> = Api::namespaced(client, &a.ns.namespace);
            for n in &a.names {
                api.delete(n, &DeleteParams::default())
                    .await
                    .with_context(|| format!("Location {n}"))?;
                println!("Location {n:?} deleted.");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Creates a Backup record for the controller and, with `wait`, follows it to a final phase.
///
/// # Errors
/// Kubernetes errors; a timeout while waiting.
pub(crate) async fn create_backup_record(
    client: Client,
    namespace: &str,
    name: &str,
    template: BackupSpecTemplate,
    labels: BTreeMap<String, String>,
    wait: bool,
) -> Result<ExitCode> {
    let api: Api<Backup> = Api::namespaced(client, namespace);
    let mut b = Backup::new(
        name,
        BackupSpec {
            template,
            policy: None,
            schedule: None,
            verify: None,
        },
    );
    b.metadata.namespace = Some(namespace.into());
    if !labels.is_empty() {
        b.metadata.labels = Some(labels);
    }
    api.create(&PostParams::default(), &b)
        .await
        .with_context(|| format!("creating Backup {name} in {namespace}"))?;
    println!("Backup request {name:?} submitted to the controller in namespace {namespace}.");
    if !wait {
        println!("Run `kubectl -n {namespace} get backups.tidemark.dev {name}` to follow it.");
        return Ok(ExitCode::SUCCESS);
    }
    let start = Instant::now();
    loop {
        let b = api.get(name).await?;
        let st = b.status.clone().unwrap_or_default();
        match st.phase.as_deref() {
            Some("Completed") => {
                println!(
                    "Backup {name:?} Completed: {} items.",
                    st.items_backed_up.unwrap_or(0)
                );
                return Ok(ExitCode::SUCCESS);
            }
            Some("PartiallyFailed") => {
                println!(
                    "Backup {name:?} PartiallyFailed: {} errors.",
                    st.errors.unwrap_or(0)
                );
                return Ok(ExitCode::from(2));
            }
            Some(p @ ("Failed" | "FailedValidation")) => {
                bail!(
                    "backup {name:?} {p}: {}",
                    st.failure_reason.unwrap_or_default()
                );
            }
            _ => {}
        }
        if start.elapsed() > Duration::from_secs(6 * 3600) {
            bail!("gave up waiting for backup {name:?} after 6h");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
