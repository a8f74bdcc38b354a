//! `tidemark install` / `tidemark uninstall`: Velero's install flags parsed into
//! [`InstallOptions`], the objects rendered, printed (`--dry-run -o yaml|json`) or applied, and
//! waited for (`--wait`). What the flags mean and what gets created is [`crate::install`]'s.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

use super::{parse_duration, parse_kv};
use crate::api::tidemark::Provider;
use crate::cluster::{self, Target};
use crate::install::{self, Applied, InstallOptions, LocationOptions, Resources};

/// Output format of `install --dry-run`.
#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum ManifestFormat {
    /// YAML documents separated by `---`.
    Yaml,
    /// A `v1` `List` holding the objects.
    Json,
}

/// A Velero map flag (`--backup-location-config region=minio,s3ForcePathStyle="true"`): one
/// `KEY=VALUE` per comma-separated part, surrounding quotes removed from values.
fn parse_map_entry(s: &str) -> Result<(String, String), String> {
    let (k, v) = parse_kv(s)?;
    let v = v
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .map(str::to_string)
        .unwrap_or(v);
    Ok((k, v))
}

/// Options of `tidemark install` (the flags of `velero install`, same names and meanings).
#[derive(Args, Debug)]
pub(crate) struct InstallArgs {
    /// Namespace for the controller, its records and Secrets.
    #[arg(short = 'n', long, default_value = "tidemark")]
    namespace: String,
    /// Controller and node agent image (default: the release image in the manifests).
    #[arg(long)]
    image: Option<String>,
    /// Object-store provider of the default Location: `aws` (any S3-compatible store, as
    /// Velero's AWS plugin; also `s3`), `azure` (Azure Blob Storage, as Velero's Azure
    /// plugin), `gcp` (Google Cloud Storage, as Velero's GCP plugin) or `filesystem` (a
    /// directory on the controller).
    #[arg(long, value_name = "NAME")]
    provider: Option<String>,
    /// Bucket of the default Location (filesystem: an absolute directory).
    #[arg(long)]
    bucket: Option<String>,
    /// Prefix inside the bucket under which backups are stored.
    #[arg(long)]
    prefix: Option<String>,
    /// The default Location's provider config, Velero's keys
    /// (`region=minio,s3ForcePathStyle="true",s3Url=http://minio:9000`); repeatable.
    #[arg(
        long,
        value_name = "KEY=VALUE,...",
        value_delimiter = ',',
        value_parser = parse_map_entry
    )]
    backup_location_config: Vec<(String, String)>,
    /// PEM file of the certificate authority the store's TLS certificate is checked against.
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// Credentials file for the store, in Velero's format for the provider (aws: a
    /// shared-credentials file with `[default]` `aws_access_key_id`/`aws_secret_access_key`;
    /// azure: `KEY=VALUE` lines such as `AZURE_STORAGE_ACCOUNT_ACCESS_KEY=...` or
    /// `AZURE_TENANT_ID`/`AZURE_CLIENT_ID`/`AZURE_CLIENT_SECRET`; gcp: a service-account key
    /// JSON), stored in Secret `cloud-credentials`, key `cloud`, as Velero does.
    #[arg(long, value_name = "FILE", conflicts_with = "no_secret")]
    secret_file: Option<PathBuf>,
    /// Create no credentials Secret: the store is reached with the pod's own identity (IRSA,
    /// workload identity; see --sa-annotations).
    #[arg(long)]
    no_secret: bool,
    /// Create no default Location (add Locations later with `tidemark location create`).
    #[arg(long, conflicts_with_all = ["provider", "bucket", "prefix", "backup_location_config"])]
    no_default_backup_location: bool,
    /// Deploy the node agent DaemonSet (file-system backup of pod volumes), with a generated
    /// restic repository password unless one is already stored (or --repo-password-secret).
    #[arg(long)]
    use_node_agent: bool,
    /// Take the restic repositories' password from key `repository-password` of this Secret,
    /// which you manage in the controller's namespace: e.g. the Secret a Location's
    /// `spec.encryption` names, so one Secret holds both the age key and the restic password.
    /// The controller mounts that key alone (no `tidemark-repo-credentials` is created beside
    /// it); the node agent, in a namespace of its own, gets a copy of the password in its
    /// `tidemark-repo-credentials`, made from this Secret at install time.
    #[arg(long, value_name = "NAME")]
    repo_password_secret: Option<String>,
    /// Back up every pod volume by file system unless a backup says otherwise (the server's
    /// --default-volumes-to-fs-backup).
    #[arg(long)]
    default_volumes_to_fs_backup: bool,
    /// CPU request of the controller (Velero's --velero-pod-cpu-request).
    #[arg(
        long,
        visible_alias = "velero-pod-cpu-request",
        value_name = "QUANTITY"
    )]
    pod_cpu_request: Option<String>,
    /// Memory request of the controller (Velero's --velero-pod-mem-request).
    #[arg(
        long,
        visible_alias = "velero-pod-mem-request",
        value_name = "QUANTITY"
    )]
    pod_mem_request: Option<String>,
    /// CPU limit of the controller (Velero's --velero-pod-cpu-limit).
    #[arg(long, visible_alias = "velero-pod-cpu-limit", value_name = "QUANTITY")]
    pod_cpu_limit: Option<String>,
    /// Memory limit of the controller (Velero's --velero-pod-mem-limit).
    #[arg(long, visible_alias = "velero-pod-mem-limit", value_name = "QUANTITY")]
    pod_mem_limit: Option<String>,
    /// CPU request of the node agent.
    #[arg(long, value_name = "QUANTITY")]
    node_agent_pod_cpu_request: Option<String>,
    /// Memory request of the node agent.
    #[arg(long, value_name = "QUANTITY")]
    node_agent_pod_mem_request: Option<String>,
    /// CPU limit of the node agent.
    #[arg(long, value_name = "QUANTITY")]
    node_agent_pod_cpu_limit: Option<String>,
    /// Memory limit of the node agent.
    #[arg(long, value_name = "QUANTITY")]
    node_agent_pod_mem_limit: Option<String>,
    /// Annotations of the controller's ServiceAccount (`KEY=VALUE,...`).
    #[arg(long, value_name = "KEY=VALUE,...", value_delimiter = ',', value_parser = parse_map_entry)]
    sa_annotations: Vec<(String, String)>,
    /// Annotations of the controller's and node agent's pods.
    #[arg(long, value_name = "KEY=VALUE,...", value_delimiter = ',', value_parser = parse_map_entry)]
    pod_annotations: Vec<(String, String)>,
    /// Labels of the controller's and node agent's pods.
    #[arg(long, value_name = "KEY=VALUE,...", value_delimiter = ',', value_parser = parse_map_entry)]
    pod_labels: Vec<(String, String)>,
    /// Labels of every installed object.
    #[arg(long, value_name = "KEY=VALUE,...", value_delimiter = ',', value_parser = parse_map_entry)]
    labels: Vec<(String, String)>,
    /// Annotations of every installed object.
    #[arg(long, value_name = "KEY=VALUE,...", value_delimiter = ',', value_parser = parse_map_entry)]
    annotations: Vec<(String, String)>,
    /// Velero's plugin images: tidemark's providers are built in, so none are needed; given
    /// ones are reported and not installed.
    #[arg(long, value_name = "IMAGE,...", value_delimiter = ',')]
    plugins: Vec<String>,
    /// Wait until a controller runs, the node agent is ready and the default Location is
    /// Available.
    #[arg(long)]
    wait: bool,
    /// How long --wait waits (same duration syntax as everywhere: `5m`, `90s`).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    wait_timeout: Duration,
    /// Print the objects instead of applying them.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Format of --dry-run's output.
    #[arg(short, long, value_enum, default_value_t = ManifestFormat::Yaml, requires = "dry_run")]
    output: ManifestFormat,
}

/// Options of `tidemark uninstall`.
#[derive(Args, Debug)]
pub(crate) struct UninstallArgs {
    /// Namespace of the installation.
    #[arg(short = 'n', long, default_value = "tidemark")]
    namespace: String,
    /// Keep the CustomResourceDefinitions (and so every tidemark object and record).
    #[arg(long)]
    keep_crds: bool,
    /// Confirm (required). Backups in object storage are never touched.
    #[arg(long)]
    confirm: bool,
    /// Wait until the installation's namespaces are gone (without --keep-crds, uninstall
    /// waits for them anyway, up to 2 minutes, before it deletes the CRDs).
    #[arg(long)]
    wait: bool,
    /// How long --wait waits.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    wait_timeout: Duration,
}

fn provider(name: &str) -> Result<Provider> {
    Ok(match name {
        "aws" | "velero.io/aws" | "s3" => Provider::S3,
        "azure" | "velero.io/azure" => Provider::Azure,
        "gcp" | "velero.io/gcp" => Provider::Gcp,
        "filesystem" => Provider::Filesystem,
        other => bail!(
            "--provider {other:?} is not supported: tidemark stores backups in S3-compatible stores (--provider aws), Azure Blob Storage (--provider azure), Google Cloud Storage (--provider gcp) or a directory (--provider filesystem)"
        ),
    })
}

fn quantities(
    cpu_req: &Option<String>,
    mem_req: &Option<String>,
    cpu_lim: &Option<String>,
    mem_lim: &Option<String>,
) -> Resources {
    Resources {
        cpu_request: cpu_req.clone(),
        memory_request: mem_req.clone(),
        cpu_limit: cpu_lim.clone(),
        memory_limit: mem_lim.clone(),
    }
}

fn map(pairs: &[(String, String)]) -> BTreeMap<String, String> {
    pairs.iter().cloned().collect()
}

/// The install options the flags ask for (files read, Velero's flag rules checked).
fn options(args: &InstallArgs) -> Result<InstallOptions> {
    let mut o = InstallOptions::base(&args.namespace);
    o.image = args.image.clone();
    if !args.no_default_backup_location {
        match (&args.provider, &args.bucket) {
            (Some(p), Some(bucket)) => {
                let ca_cert = match &args.cacert {
                    Some(path) => Some(
                        std::fs::read_to_string(path)
                            .with_context(|| format!("--cacert {}", path.display()))?,
                    ),
                    None => None,
                };
                o.location = Some(LocationOptions {
                    provider: provider(p)?,
                    bucket: bucket.clone(),
                    prefix: args.prefix.clone(),
                    config: map(&args.backup_location_config),
                    ca_cert,
                });
            }
            // No store named: the controller alone; Locations come later (`tidemark location
            // create`, or manifests from Git).
            (None, None) if args.backup_location_config.is_empty() && args.prefix.is_none() => {}
            (None, _) => {
                bail!("--provider is required with --bucket, --prefix or --backup-location-config")
            }
            (Some(_), None) => bail!("--bucket is required with --provider"),
        }
    }
    match (&args.secret_file, args.no_secret) {
        (Some(path), _) => {
            o.credentials_file = Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("--secret-file {}", path.display()))?,
            );
        }
        (None, true) => {}
        (None, false)
            if o.location
                .as_ref()
                .is_some_and(|l| l.provider != Provider::Filesystem) =>
        {
            bail!(
                "one of --secret-file or --no-secret is required (--no-secret: the store is reached with the pod's identity)"
            )
        }
        (None, false) => {}
    }
    o.node_agent = args.use_node_agent;
    o.repo_password_secret = args.repo_password_secret.clone();
    o.default_volumes_to_fs_backup = args.default_volumes_to_fs_backup;
    o.controller_resources = quantities(
        &args.pod_cpu_request,
        &args.pod_mem_request,
        &args.pod_cpu_limit,
        &args.pod_mem_limit,
    );
    o.node_agent_resources = quantities(
        &args.node_agent_pod_cpu_request,
        &args.node_agent_pod_mem_request,
        &args.node_agent_pod_cpu_limit,
        &args.node_agent_pod_mem_limit,
    );
    o.sa_annotations = map(&args.sa_annotations);
    o.pod_annotations = map(&args.pod_annotations);
    o.pod_labels = map(&args.pod_labels);
    o.labels = map(&args.labels);
    o.annotations = map(&args.annotations);
    Ok(o)
}

/// Runs `tidemark install`.
pub(crate) async fn install(target: &Target, args: InstallArgs) -> Result<ExitCode> {
    let mut o = options(&args)?;
    if !args.plugins.is_empty() {
        eprintln!(
            "note: --plugins {} not installed: tidemark's object-store providers are built in",
            args.plugins.join(",")
        );
    }
    if args.dry_run {
        if o.node_agent && o.repo_password_secret.is_none() {
            o.repo_password = Some(install::new_repo_password()?);
        }
        if let (true, Some(name)) = (o.node_agent, &o.repo_password_secret) {
            eprintln!(
                "note: the node agent's Secret {}/{} (its copy of the password in Secret {}/{name}) \
                 is made at install time and not printed",
                o.node_agent_namespace(),
                install::REPO_SECRET,
                o.namespace
            );
        }
        let docs = install::render(&o)?;
        match args.output {
            ManifestFormat::Yaml => {
                for d in &docs {
                    println!("---");
                    print!("{}", serde_yaml::to_string(d)?);
                }
            }
            ManifestFormat::Json => {
                let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": docs});
                println!("{}", serde_json::to_string_pretty(&list)?);
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Render once before connecting: a bad flag fails before anything is applied.
    install::render(&o)?;
    let client = cluster::connect(target).await?;
    if let Some(pw) = install::repo_password_from_secret(&client, &o).await? {
        o.repo_password = Some(pw);
    } else if o.node_agent {
        o.repo_password = Some(match install::existing_repo_password(&client, &o).await? {
            Some(pw) => pw,
            None => install::new_repo_password()?,
        });
    }
    let docs = install::render(&o)?;
    install::apply(&client, &docs, |d, what| match what {
        Applied::Applied => println!("{} applied", install::describe(d)),
        Applied::Kept => println!("{} kept (already present)", install::describe(d)),
    })
    .await?;
    println!("tidemark installed in namespace {}.", o.namespace);
    if args.wait {
        println!("Waiting for the controller to be ready...");
        let ready = install::wait_ready(&client, &o, args.wait_timeout, |missing| {
            println!("  waiting: {missing}")
        })
        .await?;
        println!("Controller ready: {}.", ready.controller);
        if let Some(phase) = ready.location {
            println!("Location {} is {phase}.", install::DEFAULT_LOCATION);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `tidemark uninstall`.
pub(crate) async fn uninstall(target: &Target, args: UninstallArgs) -> Result<ExitCode> {
    if !args.confirm {
        bail!(
            "this removes the tidemark controller from namespace {}{}; add --confirm (backups in object storage are kept)",
            args.namespace,
            if args.keep_crds {
                ""
            } else {
                " and its CRDs with every tidemark object"
            }
        );
    }
    let client = cluster::connect(target).await?;
    for d in install::uninstall(&client, &args.namespace, args.keep_crds).await? {
        println!("{d} deleted");
    }
    if args.wait {
        install::wait_gone(&client, &args.namespace, args.wait_timeout).await?;
    }
    println!("tidemark uninstalled from namespace {}.", args.namespace);
    Ok(ExitCode::SUCCESS)
}
