//! Backup and restore throughput of tidemark against the API server's own limits.
//!
//! A benchmark, not a timed test: it prints figures, it asserts only that each run did what it
//! should (every object backed up and restored). Run it with
//!
//! ```text
//! cargo bench --bench backup_restore -- --objects 10000
//! cargo bench --bench backup_restore -- --objects 1000,10000 --skip-serial
//! cargo bench --bench backup_restore -- --objects 2000 --keep     # leave the clusters running
//! cargo bench --bench backup_restore -- --objects 100000 --backup-only --keep  # (a)-(c), keep A
//! cargo bench --bench backup_restore -- --objects 100000 --backup-only \
//!     --reuse-cluster ~/.cache/tidemark/testenv/run/bench-a-<pid>/kubeconfig  # again, on kept A
//! ```
//!
//! (`cargo bench` passes `--bench` to the binary; without it, e.g. under
//! `cargo test --all-targets`, the benchmark does nothing. Pass `--bench` yourself when running
//! the built binary directly.)
//!
//! For each object count N, with real components only (`scripts/testenv`: kube-apiserver + etcd +
//! kube-controller-manager, and MinIO), it:
//!
//! 1. starts a fresh cluster A, stops its kube-controller-manager (so that only the benchmark
//!    talks to that API server: the deployment controller would write the seeded Deployments'
//!    statuses at 20 QPS for many minutes, in the background of (a) and (b) but not equally),
//!    and seeds it with N objects spread over max(10, N/100)
//!    namespaces: 30% ConfigMaps, 20% Secrets, 20% Deployments, 10% Services and 20% custom
//!    resources of a small CRD (`widgets.bench.tidemark.dev`). ConfigMaps, Secrets and Widgets
//!    carry 2-4 KB of pseudo-random data each. Deployments have `replicas: 0` and
//!    `paused: true` (no ReplicaSet and no Pod in any case, so the cluster holds exactly what
//!    was seeded). Services are headless (`clusterIP: None`) and have
//!    no selector: the test cluster's service CIDR (10.0.0.0/24) has ~250 addresses, and without
//!    a selector no Endpoints/EndpointSlices are generated. Seeding runs 64 creates at once
//!    (`--seed-concurrency`) and is timed;
//! 2. measures (a) plain paginated LISTs (`limit=500`), cluster-wide, of the same resources the
//!    backup lists: every served resource type a default backup takes (discovered with
//!    tidemark's own discovery and resource filter, ~55 types, the seeded ones among them),
//!    one page chain per type, up to 16 types at once (tidemark's default concurrency), the
//!    client only receiving the bytes and skimming the `continue` token, best of `--repeat`
//!    (default 3) passes:
//!    the API server's list limit; as a diagnostic, (a') the same LISTs decoding every item into
//!    a kube-rs `DynamicObject` (the client-side cost any kube-rs lister pays); (b) `tidemark
//!    backup create` of the whole cluster into MinIO with a client budget high enough (`--qps`,
//!    default 1000, burst 2x) not to be the limit, best of `--repeat` runs like (a), each run
//!    right after a pass of (a) so that both meet the same cluster state (the earlier runs under
//!    other names); and (c) the peak RSS (the largest of the runs) and CPU time of tidemark.
//!    Before each pass of (a), (a') and (b) one object of each seeded type is annotated, as in
//!    a live cluster where these types keep changing, so that the API server serves every page
//!    from its watch cache (`--no-touch` explains the other state). Around (a) and (b) it reads
//!    the CPU time of the API server and of MinIO (`/proc/<pid>/stat`) and the API server's
//!    LIST requests to etcd (`/metrics`): on a machine with few cores, where the API server,
//!    MinIO and tidemark share them, that is where the time goes;
//! 3. starts an empty cluster B and measures (d) `tidemark restore create` of that backup with
//!    no flags but `--location` (tidemark's defaults: no client-side cap where the server has
//!    API Priority and Fairness, creates in flight adapted to the server); B is stopped, a
//!    fresh empty cluster C started, and there it measures (e) plain parallel creates of the same objects (CRD, namespaces, then all objects, 32 at
//!    once, no client-side rate limit): the API server's create limit; and, unless
//!    `--skip-serial`, (f) serial creates, one object at a time at 100 QPS (Velero's approach),
//!    of the first `--serial-sample` (default 2000) namespaces+objects into other namespaces,
//!    extrapolated linearly to the whole set (the output says when it was).
//!
//! Between (b) and (d) it downloads the backup's tarball (`tidemark backup download`) and
//! compresses its tar stream again as Velero's writer does (Go's `compress/gzip` at its default
//! level 6, `tests/support/velero_tar_reader.go -gzip-size`): the archive column compares the
//! two sizes. tidemark's CPU seconds per 1,000 objects, backed up and restored, are its own cost, whatever
//! the API server's speed.
//!
//! It prints a Markdown table (`N | seed | list (a) | backup (b) | b/a | peak RSS | archive /
//! Velero's gzip -6 | backup CPU per 1,000 | create-limit (e) | restore (d) | d/e | restore CPU
//! per 1,000 | serial (f) | f/d`), a details table (a', CPU seconds
//! of tidemark, the API server and MinIO, the etcd LISTs, the restore's peak RSS, the load
//! average: the machine may be shared), and one JSON line per N
//! (`BENCH_JSON {...}`). Everything is torn down at the end, also on a panic or Ctrl-C
//! (drop guards), unless `--keep`. tidemark's stderr (run at `TIDEMARK_LOG=info` unless set) and
//! stdout are kept under `target/tmp/backup_restore/` for each run.
//!
//! The tidemark binary is the one Cargo builds for this benchmark (`CARGO_BIN_EXE_tidemark`,
//! which Cargo sets for benches as for integration tests; `cargo bench` builds it in release
//! mode). Peak RSS comes from `getrusage(RUSAGE_CHILDREN)` in a tiny wrapper process (this
//! binary re-executed with `__rss-wrap`) whose only child is tidemark, so it is exact and not
//! mixed with other children.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::ByteString;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};

use support::{Cluster, Minio};
use tidemark::cluster::Budget;

/// Command line (after `cargo bench --bench backup_restore --`).
#[derive(Parser, Debug)]
#[command(name = "backup_restore", about = "tidemark backup/restore benchmark")]
struct Opts {
    /// Object counts to run, repeatable or comma-separated.
    #[arg(long = "objects", value_delimiter = ',', default_value = "10000")]
    objects: Vec<usize>,
    /// Client QPS given to tidemark (burst: twice as much).
    #[arg(long, default_value_t = 1000.0)]
    qps: f32,
    /// Leave the clusters and MinIO running (their export lines are printed).
    #[arg(long)]
    keep: bool,
    /// Skip the serial (Velero-style) create measurement (f).
    #[arg(long)]
    skip_serial: bool,
    /// Passes of (a) and (a') and runs of (b), alternating (a) and (b); the best of each counts.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Measure the backup side only ((a), (a'), (b), (c)); skip the restore, the create limit
    /// and the serial creates (d)-(f). With `--keep`, cluster A stays up for profiling.
    #[arg(long)]
    backup_only: bool,
    /// Measure (a)-(c) on this running cluster A (the `KUBECONFIG` a `--backup-only --keep` run
    /// printed, holding that run's workload of N) instead of starting and seeding one; it is
    /// checked to hold every seeded object and left running. Takes a single `--objects` value.
    #[arg(long, value_name = "KUBECONFIG")]
    reuse_cluster: Option<PathBuf>,
    /// Do not write to the seeded types before each pass of (a), (a') and (b). By default one
    /// object of each seeded type is annotated first, as in a live cluster where these types
    /// keep changing: the API server's watch cache then holds a recent snapshot of each and
    /// serves every page of a paginated LIST from memory. Without the writes, a type unchanged
    /// since the API server's last etcd compaction (every 5 minutes) has its continuation pages
    /// read from etcd instead (about twice the API server's CPU); measure that state with this
    /// flag on a cluster left idle for 10 minutes (`--reuse-cluster`).
    #[arg(long)]
    no_touch: bool,
    /// Namespaces+objects created serially in (f) before extrapolating (0: all).
    #[arg(long, default_value_t = 2000)]
    serial_sample: usize,
    /// QPS of the serial creates (f).
    #[arg(long, default_value_t = 100.0)]
    serial_qps: f32,
    /// Creates in flight while seeding cluster A.
    #[arg(long, default_value_t = 64)]
    seed_concurrency: usize,
    /// Creates in flight for the create limit (e) (the restore (d) runs with tidemark's defaults).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Resource types listed at once in (a) (tidemark's default `--concurrency`).
    #[arg(long, default_value_t = 16)]
    list_concurrency: usize,
    /// Set by `cargo bench`; without it the benchmark does nothing (see the module docs).
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(RSS_WRAP) {
        return rss_wrap(&args[2..]);
    }
    let opts = Opts::parse();
    if !opts.bench {
        eprintln!(
            "backup_restore: not run without --bench (use `cargo bench --bench backup_restore`)"
        );
        return ExitCode::SUCCESS;
    }
    if opts.reuse_cluster.is_some() && (opts.objects.len() != 1 || !opts.backup_only) {
        eprintln!("backup_restore: --reuse-cluster takes one --objects value and --backup-only");
        return ExitCode::FAILURE;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let outcome = rt.block_on(async {
        tokio::select! {
            r = run(&opts) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    });
    // Dropping the future above stopped every instance (unless --keep).
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("backup_restore: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The workload
// ---------------------------------------------------------------------------------------------

/// Label put on every seeded object (and namespace), used to count them.
const WORKLOAD_LABEL: &str = "bench.tidemark.dev/workload";
const CRD_GROUP: &str = "bench.tidemark.dev";
const CRD_NAME: &str = "widgets.bench.tidemark.dev";

/// The kinds seeded, in the order of `Kind::of`'s ten slots.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    ConfigMap,
    Secret,
    Deployment,
    Service,
    Widget,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::ConfigMap,
        Kind::Secret,
        Kind::Deployment,
        Kind::Service,
        Kind::Widget,
    ];

    /// The mix: 3/10 ConfigMaps, 2/10 Secrets, 2/10 Deployments, 1/10 Services, 2/10 Widgets.
    fn of(i: usize) -> Kind {
        match i % 10 {
            0..=2 => Kind::ConfigMap,
            3 | 4 => Kind::Secret,
            5 | 6 => Kind::Deployment,
            7 => Kind::Service,
            _ => Kind::Widget,
        }
    }

    fn api_resource(self) -> ApiResource {
        let (group, version, kind, plural) = match self {
            Kind::ConfigMap => ("", "v1", "ConfigMap", "configmaps"),
            Kind::Secret => ("", "v1", "Secret", "secrets"),
            Kind::Deployment => ("apps", "v1", "Deployment", "deployments"),
            Kind::Service => ("", "v1", "Service", "services"),
            Kind::Widget => (CRD_GROUP, "v1alpha1", "Widget", "widgets"),
        };
        ar(group, version, kind, plural)
    }

    fn short(self) -> &'static str {
        match self {
            Kind::ConfigMap => "cm",
            Kind::Secret => "secret",
            Kind::Deployment => "deploy",
            Kind::Service => "svc",
            Kind::Widget => "widget",
        }
    }
}

fn ar(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: if group.is_empty() {
            version.into()
        } else {
            format!("{group}/{version}")
        },
        kind: kind.into(),
        plural: plural.into(),
    }
}

fn namespace_ar() -> ApiResource {
    ar("", "v1", "Namespace", "namespaces")
}

/// N objects over `namespaces` namespaces; objects are generated on demand (deterministically),
/// so even large N costs no memory up front.
#[derive(Clone, Debug)]
struct Workload {
    objects: usize,
    namespaces: usize,
}

/// One object to create: its resource, namespace (`None`: cluster-scoped) and body.
struct Item {
    ar: ApiResource,
    namespace: Option<String>,
    body: Value,
}

impl Workload {
    fn new(objects: usize) -> Self {
        Self {
            objects,
            namespaces: (objects / 100).max(10),
        }
    }

    fn namespace_name(prefix: &str, j: usize) -> String {
        format!("{prefix}-{j:04}")
    }

    /// How many objects of `kind` the workload has.
    fn count(&self, kind: Kind) -> usize {
        (0..10).filter(|s| Kind::of(*s) == kind).count() * (self.objects / 10)
            + (0..self.objects % 10)
                .filter(|s| Kind::of(*s) == kind)
                .count()
    }

    fn namespace_item(prefix: &str, j: usize) -> Item {
        Item {
            ar: namespace_ar(),
            namespace: None,
            body: json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": Self::namespace_name(prefix, j), "labels": {WORKLOAD_LABEL: "1"}},
            }),
        }
    }

    /// Object `i` in the namespaces named `<prefix>-NNNN`.
    fn object(&self, prefix: &str, i: usize) -> Item {
        let kind = Kind::of(i);
        let ns = Self::namespace_name(prefix, i % self.namespaces);
        let name = format!("{}-{i:07}", kind.short());
        let mut rng = SplitMix(i as u64 ^ 0x7469_6465_6d61_726b);
        // 2-4 KB of payload, in chunks like real configuration keys.
        let payload = 2048 + (rng.next() % 2048) as usize;
        let labels =
            json!({WORKLOAD_LABEL: "1", "app": format!("app-{}", i % 50), "tier": "bench"});
        let metadata = json!({"name": name, "namespace": ns, "labels": labels,
            "annotations": {"bench.tidemark.dev/index": i.to_string()}});
        let body = match kind {
            Kind::ConfigMap => {
                let data: BTreeMap<String, String> = chunks(payload)
                    .map(|(k, len)| (format!("key-{k}.conf"), rng.hex(len)))
                    .collect();
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data})
            }
            Kind::Secret => {
                // Base64 inflates by 4/3: draw 3/4 of the payload as raw bytes.
                let data: BTreeMap<String, ByteString> = chunks(payload * 3 / 4)
                    .map(|(k, len)| (format!("key-{k}"), ByteString(rng.bytes(len))))
                    .collect();
                json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                    "metadata": metadata, "data": data})
            }
            Kind::Deployment => {
                let app = format!("d{i}");
                let env: Vec<Value> = (0..8)
                    .map(|k| json!({"name": format!("SETTING_{k}"), "value": rng.hex(24)}))
                    .collect();
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata,
                "spec": {
                    "replicas": 0, "paused": true,
                    "selector": {"matchLabels": {"bench-app": app}},
                    "template": {
                        "metadata": {"labels": {"bench-app": app}},
                        "spec": {"containers": [{
                            "name": "main", "image": "registry.k8s.io/pause:3.10",
                            "ports": [{"containerPort": 8080}],
                            "env": env,
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                        }]},
                    },
                }})
            }
            Kind::Service => json!({"apiVersion": "v1", "kind": "Service", "metadata": metadata,
                "spec": {"clusterIP": "None",
                    "ports": [{"name": "http", "port": 80, "targetPort": 8080},
                              {"name": "https", "port": 443, "targetPort": 8443}]}}),
            Kind::Widget => {
                let color = ["red", "green", "blue"][i % 3];
                json!({"apiVersion": format!("{CRD_GROUP}/v1alpha1"), "kind": "Widget",
                    "metadata": metadata,
                    "spec": {"size": i % 7, "color": color, "blob": rng.hex(payload)}})
            }
        };
        Item {
            ar: kind.api_resource(),
            namespace: Some(ns),
            body,
        }
    }

    /// Every namespace and then every object, in creation order (namespaces `<prefix>-NNNN`).
    fn items<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = Item> + 'a {
        (0..self.namespaces)
            .map(move |j| Self::namespace_item(prefix, j))
            .chain((0..self.objects).map(move |i| self.object(prefix, i)))
    }
}

/// Splits `total` bytes into keys of at most 512 bytes: `(index, length)`.
fn chunks(total: usize) -> impl Iterator<Item = (usize, usize)> {
    let n = total.div_ceil(512);
    (0..n).map(move |k| (k, (total - k * 512).min(512)))
}

/// A tiny deterministic generator (SplitMix64), so runs are reproducible.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }

    fn hex(&mut self, len: usize) -> String {
        let mut s = hex::encode(self.bytes(len.div_ceil(2)));
        s.truncate(len);
        s
    }
}

fn crd_item() -> Item {
    Item {
        ar: ar(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
        ),
        namespace: None,
        body: json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": CRD_NAME, "labels": {WORKLOAD_LABEL: "1"}},
            "spec": {
                "group": CRD_GROUP, "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                    "listKind": "WidgetList"},
                "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}],
            },
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Creating and listing with plain requests
// ---------------------------------------------------------------------------------------------

/// The result of a batch of creates.
#[derive(Debug, Default)]
struct Created {
    ok: u64,
    existed: u64,
    retries: u64,
    errors: Vec<String>,
}

/// Creates one object with a raw POST (the response body is received and dropped), retrying
/// throttling and transient server errors a few times.
async fn create_one(client: &Client, item: &Item) -> (Result<bool, String>, u64) {
    let url = DynamicObject::url_path(&item.ar, item.namespace.as_deref());
    let body = serde_json::to_vec(&item.body).expect("json");
    let mut retries = 0;
    loop {
        let req = kube::core::Request::new(&url)
            .create(&PostParams::default(), body.clone())
            .expect("request");
        match client.request_text(req).await {
            Ok(_) => return (Ok(true), retries),
            Err(kube::Error::Api(s)) if s.code == 409 => return (Ok(false), retries),
            Err(e) => {
                let transient = match &e {
                    kube::Error::Api(s) => s.code == 429 || s.code >= 500,
                    _ => true,
                };
                if !transient || retries >= 5 {
                    let name = item.body["metadata"]["name"].as_str().unwrap_or("?");
                    return (Err(format!("{} {name}: {e}", item.ar.kind)), retries);
                }
                retries += 1;
                tokio::time::sleep(Duration::from_millis(100 * retries)).await;
            }
        }
    }
}

/// Creates `items` with `concurrency` requests in flight, each waiting for `budget` if given.
async fn create_all(
    client: &Client,
    items: impl Iterator<Item = Item>,
    concurrency: usize,
    budget: Option<&Budget>,
) -> Created {
    let mut out = Created::default();
    let mut results = futures::stream::iter(items.map(|item| async move {
        if let Some(b) = budget {
            b.acquire().await;
        }
        create_one(client, &item).await
    }))
    .buffer_unordered(concurrency.max(1));
    while let Some((r, retries)) = results.next().await {
        out.retries += retries;
        match r {
            Ok(true) => out.ok += 1,
            Ok(false) => out.existed += 1,
            Err(e) => out.errors.push(e),
        }
    }
    out
}

/// Creates the CRD (if missing) and waits until it is Established.
async fn ensure_crd(client: &Client) -> Result<()> {
    let r = create_all(client, std::iter::once(crd_item()), 1, None).await;
    ensure!(r.errors.is_empty(), "creating the CRD: {:?}", r.errors);
    support::wait_established(client, &[CRD_NAME.to_string()]).await;
    Ok(())
}

/// Creates the whole workload (CRD, namespaces, objects) with `concurrency` creates in flight;
/// fails on any error.
async fn create_workload(client: &Client, w: &Workload, concurrency: usize) -> Result<Created> {
    ensure_crd(client).await?;
    let mut total = create_all(
        client,
        (0..w.namespaces).map(|j| Workload::namespace_item("bench", j)),
        concurrency,
        None,
    )
    .await;
    let objects = create_all(
        client,
        (0..w.objects).map(|i| w.object("bench", i)),
        concurrency,
        None,
    )
    .await;
    total.ok += objects.ok + 1;
    total.existed += objects.existed;
    total.retries += objects.retries;
    total.errors.extend(objects.errors);
    ensure!(
        total.errors.is_empty(),
        "{} creates failed, first: {}",
        total.errors.len(),
        total.errors[0]
    );
    Ok(total)
}

/// Only what a LIST response needs to be paged through and counted.
#[derive(Deserialize)]
struct ListSkim {
    #[serde(default)]
    items: Vec<IgnoredAny>,
    #[serde(default)]
    metadata: ListMetaSkim,
}

#[derive(Deserialize, Default)]
struct ListMetaSkim {
    #[serde(rename = "continue", default)]
    continue_: Option<String>,
}

/// What one type's LIST returned.
#[derive(Debug, Clone)]
struct Listed {
    kind: String,
    items: u64,
    bytes: u64,
    pages: u64,
}

/// How much of each LIST response the client decodes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Decode {
    /// Only skim the `continue` token (and count the items): the server's limit.
    Skim,
    /// Decode every item into a `DynamicObject`, as `Api::list` does (a diagnostic: the client
    /// cost every kube-rs based lister pays).
    Objects,
}

/// Lists every type cluster-wide with raw paginated requests (`limit=500`), page chains of up to
/// `concurrency` types at once; returns the wall time and per-type counts.
async fn list_all(
    client: &Client,
    types: &[ApiResource],
    concurrency: usize,
    label_selector: Option<&str>,
    decode: Decode,
) -> Result<(Duration, Vec<Listed>)> {
    let started = Instant::now();
    let listed: Vec<Result<Listed>> = futures::stream::iter(types.iter().map(|ar| async move {
        let url = DynamicObject::url_path(ar, None);
        let mut out = Listed {
            kind: ar.kind.clone(),
            items: 0,
            bytes: 0,
            pages: 0,
        };
        let mut token: Option<String> = None;
        loop {
            let mut lp = ListParams::default().limit(500);
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            if let Some(s) = label_selector {
                lp = lp.labels(s);
            }
            let req = kube::core::Request::new(&url).list(&lp)?;
            let text = client
                .request_text(req)
                .await
                .with_context(|| format!("listing {}", ar.plural))?;
            let skim: ListSkim = serde_json::from_str(&text)?;
            if decode == Decode::Objects {
                let list: kube::core::ObjectList<DynamicObject> = serde_json::from_str(&text)?;
                std::hint::black_box(list);
            }
            out.items += skim.items.len() as u64;
            out.bytes += text.len() as u64;
            out.pages += 1;
            token = skim.metadata.continue_.filter(|t| !t.is_empty());
            if token.is_none() {
                return Ok(out);
            }
        }
    }))
    .buffer_unordered(concurrency.max(1))
    .collect()
    .await;
    let listed = listed.into_iter().collect::<Result<Vec<_>>>()?;
    Ok((started.elapsed(), listed))
}

/// Every resource type a default `tidemark backup create` lists (tidemark's discovery and
/// resource filter: listable and creatable, not nodes, events or backup records).
async fn backed_up_types(client: &Client) -> Result<Vec<ApiResource>> {
    let budget = Budget::new(1000.0, 2000)?;
    let discovered = tidemark::cluster::discover(client, &budget).await?;
    let filter = tidemark::backup::BackupFilter::default();
    let types: Vec<ApiResource> = discovered
        .resources
        .iter()
        .filter(|r| filter.plan(r) != tidemark::backup::ResourcePlan::Skip)
        .map(|r| r.api_resource())
        .collect();
    ensure!(
        seeded_types().iter().all(|s| types
            .iter()
            .any(|t| t.plural == s.plural && t.group == s.group)),
        "discovery misses a seeded type"
    );
    Ok(types)
}

/// The seeded resource types (namespaces and the CRD's Widgets included).
fn seeded_types() -> Vec<ApiResource> {
    let mut t = vec![namespace_ar()];
    t.extend(Kind::ALL.iter().map(|k| k.api_resource()));
    t
}

/// Checks that the cluster holds every seeded namespace and object (by the workload label).
async fn verify_workload(client: &Client, w: &Workload, what: &str) -> Result<()> {
    let selector = format!("{WORKLOAD_LABEL}=1");
    let (_, listed) = list_all(client, &seeded_types(), 8, Some(&selector), Decode::Skim).await?;
    let mut problems = Vec::new();
    for l in &listed {
        let expected = match Kind::ALL.iter().find(|k| k.api_resource().kind == l.kind) {
            Some(k) => w.count(*k),
            None => w.namespaces,
        } as u64;
        if l.items != expected {
            problems.push(format!("{}: {} of {expected}", l.kind, l.items));
        }
    }
    ensure!(
        problems.is_empty(),
        "{what}: missing objects: {}",
        problems.join(", ")
    );
    Ok(())
}

/// Stops the kube-controller-manager of `c` (the pid file `scripts/testenv` keeps beside the
/// kubeconfig), so that nothing but the benchmark talks to its API server: with thousands of
/// Deployments the deployment controller would otherwise write their statuses at 20 QPS for many
/// minutes, in the background of (a) and (b) alike but not equally. `scripts/testenv down` skips
/// a component that is no longer running.
fn stop_controller_manager(c: &Cluster) -> Result<()> {
    let dir = c.kubeconfig.parent().context("cluster run directory")?;
    let pid = read_pid(&dir.join("pids/kube-controller-manager.pid"))?;
    // Each testenv daemon leads its own process group.
    let status = std::process::Command::new("kill")
        .args(["-TERM", "--", &format!("-{pid}")])
        .status()?;
    ensure!(
        status.success(),
        "could not stop the controller manager ({pid})"
    );
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while proc.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// The writes before each pass (see `--no-touch`): none when `off`.
struct Touch<'a> {
    client: &'a Client,
    w: &'a Workload,
    off: bool,
    /// Writes so far: each one sets a new value, so each is a change.
    count: usize,
}

impl Touch<'_> {
    /// Annotates the first seeded object of each seeded type (`bench.tidemark.dev/touched`), so
    /// that each type has changed recently.
    async fn before_pass(&mut self) -> Result<()> {
        if self.off {
            return Ok(());
        }
        self.count += 1;
        touch_seeded_types(self.client, self.w, self.count).await
    }
}

/// Annotates the first seeded object of each seeded type with `value`.
async fn touch_seeded_types(client: &Client, w: &Workload, value: usize) -> Result<()> {
    for kind in Kind::ALL {
        let i = (0..10)
            .find(|&i| Kind::of(i) == kind)
            .context("every kind has a slot")?;
        let item = w.object("bench", i);
        let ns = item
            .namespace
            .as_deref()
            .context("seeded objects are namespaced")?;
        let name = item.body["metadata"]["name"]
            .as_str()
            .context("seeded object name")?
            .to_string();
        let api: kube::Api<DynamicObject> =
            kube::Api::namespaced_with(client.clone(), ns, &item.ar);
        let patch =
            json!({"metadata": {"annotations": {"bench.tidemark.dev/touched": value.to_string()}}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("annotating {} {ns}/{name}", item.ar.plural))?;
    }
    Ok(())
}

/// LIST requests the API server has sent to etcd so far (the sum of
/// `apiserver_storage_list_total` on its `/metrics`); 0 if unreadable. A paginated LIST served
/// from the watch cache still costs one (the first page's consistency check); each page the
/// cache could not serve costs one more.
async fn etcd_lists(client: &Client) -> u64 {
    let Ok(req) = http::Request::get("/metrics").body(Vec::new()) else {
        return 0;
    };
    let Ok(text) = client.request_text(req).await else {
        return 0;
    };
    text.lines()
        .filter(|l| l.starts_with("apiserver_storage_list_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The processes whose CPU time is read around (a) and (b): cluster A's API server and MinIO.
struct Daemons {
    apiserver: Option<u32>,
    minio: Option<u32>,
}

/// What the API server and MinIO have spent: CPU seconds (user + system; 0 for a process that
/// could not be read) and the API server's LIST requests to etcd ([`etcd_lists`]).
#[derive(Clone, Copy, Debug, Default)]
struct Usage {
    apiserver_cpu_s: f64,
    minio_cpu_s: f64,
    etcd_lists: u64,
}

impl Usage {
    /// What was spent since `before` (seconds rounded to hundredths).
    fn since(self, before: Usage) -> Usage {
        let r = |s: f64| (s * 100.0).round() / 100.0;
        Usage {
            apiserver_cpu_s: r(self.apiserver_cpu_s - before.apiserver_cpu_s),
            minio_cpu_s: r(self.minio_cpu_s - before.minio_cpu_s),
            etcd_lists: self.etcd_lists.saturating_sub(before.etcd_lists),
        }
    }
}

impl Daemons {
    /// Reads the pids `scripts/testenv` recorded for cluster `a` and MinIO `minio` (both under
    /// the same run directory).
    fn of(a: &Cluster, minio: &Minio) -> Daemons {
        let dir = a.kubeconfig.parent();
        Daemons {
            apiserver: dir.and_then(|d| read_pid(&d.join("pids/kube-apiserver.pid")).ok()),
            minio: dir.and_then(Path::parent).and_then(|run| {
                read_pid(&run.join("_minio").join(&minio.name).join("pids/minio.pid")).ok()
            }),
        }
    }

    /// What they have spent so far (`client` reaches the API server's `/metrics`).
    async fn usage(&self, client: &Client) -> Usage {
        Usage {
            apiserver_cpu_s: self.apiserver.map_or(0.0, process_cpu_s),
            minio_cpu_s: self.minio.map_or(0.0, process_cpu_s),
            etcd_lists: etcd_lists(client).await,
        }
    }
}

/// The pid in a `scripts/testenv` pid file.
fn read_pid(file: &Path) -> Result<u32> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    text.trim()
        .parse()
        .with_context(|| format!("{}: bad pid {text:?}", file.display()))
}

/// User + system CPU seconds of process `pid` (`/proc/<pid>/stat` fields 14 and 15, in clock
/// ticks of 1/100 s, Linux's `USER_HZ` on every architecture tidemark builds for); 0 if unreadable.
fn process_cpu_s(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name, which is in parentheses and may contain spaces.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so fields 14 and 15 are at 11 and 12.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// `/proc/loadavg`'s first three fields (the machine may be shared: context for the figures).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Running tidemark
// ---------------------------------------------------------------------------------------------

const RSS_WRAP: &str = "__rss-wrap";

/// `__rss-wrap <rss-file> <program> <args...>`: runs the program, then writes the peak RSS of
/// its only child (KiB) and its user and system CPU seconds, from `getrusage(RUSAGE_CHILDREN)`,
/// to `<rss-file>` (`<kib> <user> <sys>`); exits with the child's code.
fn rss_wrap(args: &[String]) -> ExitCode {
    let [rss_file, program, rest @ ..] = args else {
        eprintln!("usage: {RSS_WRAP} RSS_FILE PROGRAM [ARGS...]");
        return ExitCode::from(125);
    };
    let status = match std::process::Command::new(program).args(rest).status() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{RSS_WRAP}: cannot run {program}: {e}");
            return ExitCode::from(126);
        }
    };
    use nix::sys::resource::{UsageWho, getrusage};
    let line = match getrusage(UsageWho::RUSAGE_CHILDREN) {
        Ok(u) => {
            let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
            format!(
                "{} {:.3} {:.3}",
                u.max_rss(),
                secs(u.user_time()),
                secs(u.system_time())
            )
        }
        Err(e) => format!("-1 0 0 {e}"),
    };
    let _ = std::fs::write(rss_file, line);
    ExitCode::from(status.code().unwrap_or(128).clamp(0, 255) as u8)
}

/// One run of the tidemark binary.
struct TidemarkRun {
    elapsed: Duration,
    peak_rss_kib: u64,
    /// User + system CPU seconds.
    cpu_s: f64,
    stdout: String,
}

/// Runs `tidemark <args>` with `env`, under the RSS wrapper; stdout and stderr are kept in
/// `<logs>/<label>.{out,err}`. Fails unless it exits 0.
async fn tidemark(
    args: &[&str],
    env: &BTreeMap<String, String>,
    logs: &Path,
    label: &str,
) -> Result<TidemarkRun> {
    std::fs::create_dir_all(logs)?;
    let rss_file = logs.join(format!("{label}.rss"));
    let err_file = logs.join(format!("{label}.err"));
    let exe = std::env::current_exe()?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg(RSS_WRAP)
        .arg(&rss_file)
        .arg(env!("CARGO_BIN_EXE_tidemark"))
        .args(args)
        .envs(env)
        .stdin(std::process::Stdio::null())
        .stderr(std::fs::File::create(&err_file)?);
    if std::env::var_os("TIDEMARK_LOG").is_none() {
        cmd.env("TIDEMARK_LOG", "info");
    }
    let started = Instant::now();
    // (`output()` would pipe stderr too: spawn, so that it goes to the file.)
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running tidemark")?;
    let out = child.wait_with_output().await?;
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    std::fs::write(logs.join(format!("{label}.out")), &stdout)?;
    if !out.status.success() {
        bail!(
            "tidemark {args:?} exited with {:?}; stdout:\n{}\nstderr: {}",
            out.status.code(),
            first_lines(&stdout, 20),
            err_file.display()
        );
    }
    let usage = std::fs::read_to_string(&rss_file)?;
    let fields: Vec<f64> = usage
        .split_whitespace()
        .take(3)
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    ensure!(
        fields.len() == 3 && fields[0] > 0.0,
        "no resource usage: {usage:?}"
    );
    Ok(TidemarkRun {
        elapsed,
        peak_rss_kib: fields[0] as u64,
        cpu_s: fields[1] + fields[2],
        stdout,
    })
}

/// `0.41s, 0.38s (best 0.38s)`.
fn show_times(times: &[Duration]) -> String {
    let all: Vec<String> = times
        .iter()
        .map(|t| format!("{:.2}s", t.as_secs_f64()))
        .collect();
    let best = times.iter().copied().min().unwrap_or_default();
    format!(
        "{} (best {:.2}s, median {:.2}s)",
        all.join(", "),
        best.as_secs_f64(),
        median(times).as_secs_f64()
    )
}

/// The median of `times` (the mean of the middle two for an even count); zero when empty.
fn median(times: &[Duration]) -> Duration {
    let mut t = times.to_vec();
    t.sort();
    match t.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => t[n / 2],
        n => (t[n / 2 - 1] + t[n / 2]) / 2,
    }
}

fn first_lines(s: &str, n: usize) -> String {
    s.lines().take(n).collect::<Vec<_>>().join("\n")
}

// ---------------------------------------------------------------------------------------------
// The benchmark
// ---------------------------------------------------------------------------------------------

/// Keeps an instance (cluster or MinIO, stopped when dropped) unless `--keep`.
fn keep_or_drop<T>(instance: T, keep: bool, describe: impl FnOnce(&T) -> String) {
    if keep {
        eprintln!("kept: {}", describe(&instance));
        std::mem::forget(instance);
    } else {
        drop(instance);
    }
}

fn describe_cluster(c: &Cluster) -> String {
    format!(
        "cluster {}: export KUBECONFIG={}",
        c.name,
        c.kubeconfig.display()
    )
}

/// Every figure of one N.
#[derive(Debug, Default, serde::Serialize)]
struct Row {
    n: usize,
    namespaces: usize,
    seed_s: f64,
    seed_retries: u64,
    list_s: f64,
    list_items: u64,
    list_mb: f64,
    /// The same LISTs with every item decoded into a `DynamicObject` (diagnostic).
    list_decode_s: f64,
    backup_s: f64,
    backup_over_list: f64,
    /// The same ratio of the medians of the `--repeat` runs (the table's ratio is of the bests).
    backup_over_list_median: f64,
    backup_peak_rss_mb: f64,
    backup_cpu_s: f64,
    /// CPU seconds the API server spent during the best (a) and the best (b), and MinIO's during
    /// that (b): with tidemark's own, where the machine's cores went.
    apiserver_cpu_list_s: f64,
    apiserver_cpu_backup_s: f64,
    minio_cpu_backup_s: f64,
    /// LIST requests the API server sent to etcd during the best (a) and the best (b): about one
    /// per resource type when the watch cache serves the pages, one per page more when it does
    /// not (see `--no-touch` and [`etcd_lists`]).
    list_etcd_lists: u64,
    backup_etcd_lists: u64,
    backup_summary: String,
    /// Bytes of the backup's tarball as tidemark wrote it, of the tar stream inside it, and of
    /// that tar stream compressed as Velero writes it (Go's gzip at its default level 6).
    archive_bytes: u64,
    archive_tar_bytes: u64,
    archive_velero_gzip_bytes: u64,
    /// tidemark's CPU seconds (user + system) per 1,000 objects backed up and restored: its own
    /// cost, whatever the API server's speed.
    backup_cpu_s_per_1000: f64,
    restore_cpu_s_per_1000: f64,
    create_limit_s: f64,
    restore_s: f64,
    restore_over_create: f64,
    restore_peak_rss_mb: f64,
    restore_cpu_s: f64,
    restore_summary: String,
    /// The restore's log line on its creates in flight and the throttling it met.
    restore_pacing: String,
    serial_s: Option<f64>,
    serial_sample: Option<usize>,
    serial_extrapolated: bool,
    serial_over_restore: Option<f64>,
    /// `/proc/loadavg` (1, 5, 15 min) when this N started and ended.
    loadavg_start: String,
    loadavg_end: String,
}

async fn run(opts: &Opts) -> Result<()> {
    let pid = std::process::id();
    let logs_root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("backup_restore");
    eprintln!(
        "backup_restore: N = {:?}; tidemark = {}; logs under {}",
        opts.objects,
        env!("CARGO_BIN_EXE_tidemark"),
        logs_root.display()
    );
    let minio = Minio::up(&format!("bench-minio-{pid}"));
    let mut rows = Vec::new();
    for &n in &opts.objects {
        let row = run_one(n, opts, &minio, pid, &logs_root.join(n.to_string())).await?;
        print_row(&row);
        rows.push(row);
    }
    keep_or_drop(minio, opts.keep, |m| {
        format!("MinIO {}: {:?}", m.name, m.env)
    });
    println!();
    println!("{}", table(&rows));
    println!("{}", details(&rows));
    for r in &rows {
        println!("BENCH_JSON {}", serde_json::to_string(r)?);
    }
    Ok(())
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 100.0).round() / 100.0
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        (a / b * 100.0).round() / 100.0
    } else {
        f64::NAN
    }
}

fn step(n: usize, msg: &str) {
    eprintln!("[N={n}] {msg}");
}

async fn run_one(n: usize, opts: &Opts, minio: &Minio, pid: u32, logs: &Path) -> Result<Row> {
    let w = Workload::new(n);
    assert_eq!(Kind::ALL.iter().map(|k| w.count(*k)).sum::<usize>(), n);
    let mut row = Row {
        n,
        namespaces: w.namespaces,
        loadavg_start: loadavg(),
        ..Row::default()
    };
    let qps = opts.qps.to_string();
    let burst = ((opts.qps * 2.0).ceil() as u32).max(1).to_string();
    let backup = format!("bench-{n}");
    let location = minio.url(&format!("bench-{pid}"));

    // 1. Cluster A, seeded (or a kept one that was).
    let a = if let Some(kubeconfig) = &opts.reuse_cluster {
        let a = Cluster::attach(kubeconfig).await;
        step(n, &format!("reusing cluster A {}", a.name));
        verify_workload(&a.client, &w, "the reused cluster A").await?;
        a
    } else {
        step(n, "starting cluster A");
        let a = Cluster::up(&format!("bench-a-{pid}")).await;
        stop_controller_manager(&a)?;
        step(
            n,
            &format!("seeding {n} objects in {} namespaces", w.namespaces),
        );
        let started = Instant::now();
        let seeded = create_workload(&a.client, &w, opts.seed_concurrency).await?;
        row.seed_s = secs(started.elapsed());
        row.seed_retries = seeded.retries;
        verify_workload(&a.client, &w, "cluster A after seeding").await?;
        step(
            n,
            &format!(
                "seeded in {:.1}s ({} created, {} retries)",
                row.seed_s, seeded.ok, seeded.retries,
            ),
        );
        a
    };

    // 2a'. The diagnostic: LISTs decoding every item (best of `--repeat`).
    let types = backed_up_types(&a.client).await?;
    let c = opts.list_concurrency;
    let repeat = opts.repeat.max(1);
    let mut touch = Touch {
        client: &a.client,
        w: &w,
        off: opts.no_touch,
        count: 0,
    };
    let mut decode_times = Vec::new();
    for _ in 0..repeat {
        touch.before_pass().await?;
        decode_times.push(
            list_all(&a.client, &types, c, None, Decode::Objects)
                .await?
                .0,
        );
    }
    row.list_decode_s = secs(decode_times.iter().copied().min().unwrap_or_default());
    step(
        n,
        &format!(
            "list+decode (a', diagnostic): {}",
            show_times(&decode_times)
        ),
    );

    // 2a/b/c. Plain LISTs and tidemark backups, alternating, `--repeat` times each, best of
    // each: a drift in the cluster's or the machine's state affects both alike. The last backup
    // is the one restored below.
    let mut env_a = minio.env.clone();
    env_a.insert("KUBECONFIG".into(), a.kubeconfig.display().to_string());
    let daemons = Daemons::of(&a, minio);
    let mut list_times = Vec::new();
    let mut list_usage = Vec::new();
    let mut listed = Vec::new();
    let mut runs = Vec::new();
    let mut backup_usage = Vec::new();
    for i in 0..repeat {
        touch.before_pass().await?;
        let before = daemons.usage(&a.client).await;
        let (took, pass) = list_all(&a.client, &types, c, None, Decode::Skim).await?;
        list_usage.push(daemons.usage(&a.client).await.since(before));
        list_times.push(took);
        listed = pass;
        touch.before_pass().await?;
        let before = daemons.usage(&a.client).await;
        let name = if i + 1 == repeat {
            backup.clone()
        } else {
            format!("{backup}-{i}")
        };
        let run = tidemark(
            &[
                "backup",
                "create",
                &name,
                "--location",
                &location,
                "--client-qps",
                &qps,
                "--client-burst",
                &burst,
            ],
            &env_a,
            logs,
            "backup",
        )
        .await?;
        ensure!(
            run.stdout.contains("Completed"),
            "backup did not complete:\n{}",
            run.stdout
        );
        backup_usage.push(daemons.usage(&a.client).await.since(before));
        runs.push(run);
    }
    // The best pass of (a) and the best run of (b) (each the first of equals).
    let best_list = (0..repeat).min_by_key(|&i| list_times[i]).unwrap_or(0);
    let best_backup = (0..repeat).min_by_key(|&i| runs[i].elapsed).unwrap_or(0);
    row.list_s = secs(list_times[best_list]);
    row.apiserver_cpu_list_s = list_usage[best_list].apiserver_cpu_s;
    row.list_etcd_lists = list_usage[best_list].etcd_lists;
    row.apiserver_cpu_backup_s = backup_usage[best_backup].apiserver_cpu_s;
    row.minio_cpu_backup_s = backup_usage[best_backup].minio_cpu_s;
    row.backup_etcd_lists = backup_usage[best_backup].etcd_lists;
    row.list_items = listed.iter().map(|l| l.items).sum();
    row.list_mb =
        ((listed.iter().map(|l| l.bytes).sum::<u64>() as f64 / 1e6) * 10.0).round() / 10.0;
    step(
        n,
        &format!(
            "list (a): {} for {} items, {:.1} MB, {} pages (API server CPU {:.2}s, {} etcd LISTs)",
            show_times(&list_times),
            row.list_items,
            row.list_mb,
            listed.iter().map(|l| l.pages).sum::<u64>(),
            row.apiserver_cpu_list_s,
            row.list_etcd_lists
        ),
    );
    let backup_times: Vec<Duration> = runs.iter().map(|r| r.elapsed).collect();
    let peak_rss_kib = runs.iter().map(|r| r.peak_rss_kib).max().unwrap_or(0);
    let run = runs.swap_remove(best_backup);
    row.backup_s = secs(run.elapsed);
    row.backup_over_list = ratio(row.backup_s, row.list_s);
    row.backup_over_list_median = ratio(secs(median(&backup_times)), secs(median(&list_times)));
    row.backup_peak_rss_mb = (peak_rss_kib as f64 / 1024.0).round();
    row.backup_cpu_s = (run.cpu_s * 100.0).round() / 100.0;
    row.backup_summary = first_lines(&run.stdout, 1);
    step(
        n,
        &format!(
            "backup (b): {}, peak RSS {} MB, {:.2}s CPU (API server {:.2}s, {} etcd LISTs; MinIO {:.2}s): {}",
            show_times(&backup_times),
            row.backup_peak_rss_mb,
            row.backup_cpu_s,
            row.apiserver_cpu_backup_s,
            row.backup_etcd_lists,
            row.minio_cpu_backup_s,
            row.backup_summary
        ),
    );
    row.backup_cpu_s_per_1000 = per_1000(row.backup_cpu_s, n);
    archive_sizes(&mut row, &backup, &location, &env_a, logs).await?;
    step(
        n,
        &format!(
            "archive: {} bytes ({} bytes of tar; Velero's gzip -6 of the same tar: {} bytes, \
             tidemark/Velero {:.3}); backup CPU {:.3}s per 1,000 objects",
            row.archive_bytes,
            row.archive_tar_bytes,
            row.archive_velero_gzip_bytes,
            ratio(
                row.archive_bytes as f64,
                row.archive_velero_gzip_bytes as f64
            ),
            row.backup_cpu_s_per_1000
        ),
    );
    keep_or_drop(
        a,
        opts.keep || opts.reuse_cluster.is_some(),
        describe_cluster,
    );
    if opts.backup_only {
        row.loadavg_end = loadavg();
        return Ok(row);
    }

    // 3d. tidemark restore into an empty cluster B, with no flags but the location: the
    // defaults (no client-side cap where the server has APF, adaptive creates in flight).
    step(n, "starting cluster B");
    let b = Cluster::up(&format!("bench-b-{pid}")).await;
    let mut env_b = minio.env.clone();
    env_b.insert("KUBECONFIG".into(), b.kubeconfig.display().to_string());
    let run = tidemark(
        &[
            "restore",
            "create",
            &format!("{backup}-restore"),
            "--from-backup",
            &backup,
            "--location",
            &location,
        ],
        &env_b,
        logs,
        "restore",
    )
    .await?;
    row.restore_s = secs(run.elapsed);
    row.restore_peak_rss_mb = (run.peak_rss_kib as f64 / 1024.0).round();
    row.restore_cpu_s = (run.cpu_s * 100.0).round() / 100.0;
    row.restore_cpu_s_per_1000 = per_1000(row.restore_cpu_s, n);
    row.restore_summary = first_lines(&run.stdout, 1);
    row.restore_pacing = pacing_line(&logs.join("restore.err"));
    step(
        n,
        &format!(
            "restore (d): {:.2}s, peak RSS {} MB, {:.2}s CPU: {}",
            row.restore_s, row.restore_peak_rss_mb, row.restore_cpu_s, row.restore_summary
        ),
    );
    verify_workload(&b.client, &w, "cluster B after the restore").await?;
    keep_or_drop(b, opts.keep, describe_cluster);

    // 3e. Plain parallel creates into an empty cluster C.
    step(n, "starting cluster C");
    let c = Cluster::up(&format!("bench-c-{pid}")).await;
    let started = Instant::now();
    create_workload(&c.client, &w, opts.concurrency).await?;
    row.create_limit_s = secs(started.elapsed());
    row.restore_over_create = ratio(row.restore_s, row.create_limit_s);
    step(n, &format!("create limit (e): {:.2}s", row.create_limit_s));
    verify_workload(&c.client, &w, "cluster C after the creates").await?;

    // 3f. Serial creates at 100 QPS, into other namespaces of C.
    if !opts.skip_serial {
        let total = w.namespaces + w.objects;
        let sample = if opts.serial_sample == 0 {
            total
        } else {
            opts.serial_sample.min(total)
        };
        let budget = Budget::new(opts.serial_qps, 1)?;
        let started = Instant::now();
        let r = create_all(&c.client, w.items("serial").take(sample), 1, Some(&budget)).await;
        ensure!(
            r.errors.is_empty(),
            "serial creates failed: {}",
            r.errors[0]
        );
        let measured = started.elapsed().as_secs_f64();
        let serial = measured * total as f64 / sample as f64;
        row.serial_s = Some((serial * 100.0).round() / 100.0);
        row.serial_sample = Some(sample);
        row.serial_extrapolated = sample < total;
        row.serial_over_restore = Some(ratio(serial, row.restore_s));
        step(
            n,
            &format!(
                "serial (f): {sample} creates in {measured:.2}s{}",
                if sample < total {
                    format!(", {serial:.1}s extrapolated to {total}")
                } else {
                    String::new()
                }
            ),
        );
    }
    keep_or_drop(c, opts.keep, describe_cluster);
    row.loadavg_end = loadavg();
    Ok(row)
}

/// CPU seconds per 1,000 of `n` objects, to three decimals.
fn per_1000(cpu_s: f64, n: usize) -> f64 {
    if n == 0 {
        return 0.0;
    }
    (cpu_s * 1000.0 / n as f64 * 1000.0).round() / 1000.0
}

/// Downloads the backup's tarball (`tidemark backup download`) and measures it against the same
/// tar stream compressed as Velero writes it (`tests/support/velero_tar_reader.go -gzip-size`:
/// Go's `compress/gzip` at its default level, run with the test environment's Go toolchain).
async fn archive_sizes(
    row: &mut Row,
    backup: &str,
    location: &str,
    env: &BTreeMap<String, String>,
    logs: &Path,
) -> Result<()> {
    let file = logs.join(format!("{backup}.tar.gz"));
    let _ = std::fs::remove_file(&file);
    let path = file.display().to_string();
    tidemark(
        &[
            "backup",
            "download",
            backup,
            "--output",
            &path,
            "--location",
            location,
        ],
        env,
        logs,
        "download",
    )
    .await?;
    row.archive_bytes = std::fs::metadata(&file)?.len();
    let out = tokio::process::Command::new(support::testenv_go())
        .arg("run")
        .arg(support::repo().join("tests/support/velero_tar_reader.go"))
        .arg("-gzip-size")
        .arg(&file)
        .env("GOTOOLCHAIN", "local")
        .output()
        .await
        .context("running velero_tar_reader.go -gzip-size")?;
    ensure!(
        out.status.success(),
        "velero_tar_reader.go -gzip-size: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.split_whitespace().map(str::parse::<u64>);
    match (fields.next(), fields.next()) {
        (Some(Ok(tar)), Some(Ok(gz))) => {
            row.archive_tar_bytes = tar;
            row.archive_velero_gzip_bytes = gz;
        }
        _ => bail!("velero_tar_reader.go -gzip-size printed {text:?}"),
    }
    std::fs::remove_file(&file)?;
    Ok(())
}

/// The restore log's `Creates in flight: ...` line (peak and final limit, throttled requests),
/// from tidemark's stderr; empty when absent.
fn pacing_line(stderr: &Path) -> String {
    std::fs::read_to_string(stderr)
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.find("Creates in flight")
                .map(|i| l[i..].trim().to_string())
        })
        .unwrap_or_default()
}

fn print_row(r: &Row) {
    eprintln!(
        "[N={}] done: {}",
        r.n,
        serde_json::to_string(r).unwrap_or_default()
    );
}

fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| N | seed | list (a) | backup (b) | b/a | peak RSS | archive / Velero's gzip -6 | backup CPU per 1,000 | create-limit (e) | restore (d), no flags | d/e | restore CPU per 1,000 | serial (f) | f/d |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let serial = match r.serial_s {
            Some(f) if r.serial_extrapolated => format!("{f:.1}s*"),
            Some(f) => format!("{f:.1}s"),
            None => "skipped".into(),
        };
        let f_over_d = r
            .serial_over_restore
            .map_or("-".into(), |x| format!("{x:.1}x"));
        let restore = if r.restore_s > 0.0 {
            format!(
                "{:.2}s | {:.2}s | {:.2}x | {:.3}s",
                r.create_limit_s, r.restore_s, r.restore_over_create, r.restore_cpu_s_per_1000
            )
        } else {
            "skipped | skipped | - | -".into()
        };
        let archive = format!(
            "{} / {} ({:.3}x)",
            r.archive_bytes,
            r.archive_velero_gzip_bytes,
            ratio(r.archive_bytes as f64, r.archive_velero_gzip_bytes as f64)
        );
        s.push_str(&format!(
            "| {} | {:.1}s | {:.2}s | {:.2}s | {:.2}x | {} MB | {archive} | {:.3}s | {restore} | {serial} | {f_over_d} |\n",
            r.n, r.seed_s, r.list_s, r.backup_s, r.backup_over_list, r.backup_peak_rss_mb,
            r.backup_cpu_s_per_1000,
        ));
    }
    if rows.iter().any(|r| r.serial_extrapolated) {
        s.push_str("\n\\* serial time extrapolated linearly from the first `serial_sample` creates (see the JSON).\n");
    }
    s
}

fn details(rows: &[Row]) -> String {
    let mut s = String::from(
        "| N | namespaces | listed items / MB | list+decode (a') | b/a of medians | backup CPU | API server CPU in (a) / (b) | API server's etcd LISTs in (a) / (b) | MinIO CPU in (b) | restore CPU | restore peak RSS | load avg start / end | backup | restore | restore pacing |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} / {:.1} | {:.2}s | {:.2}x | {:.2}s | {:.2}s / {:.2}s | {} / {} | {:.2}s | {:.2}s | {} MB | {} / {} | {} | {} | {} |\n",
            r.n,
            r.namespaces,
            r.list_items,
            r.list_mb,
            r.list_decode_s,
            r.backup_over_list_median,
            r.backup_cpu_s,
            r.apiserver_cpu_list_s,
            r.apiserver_cpu_backup_s,
            r.list_etcd_lists,
            r.backup_etcd_lists,
            r.minio_cpu_backup_s,
            r.restore_cpu_s,
            r.restore_peak_rss_mb,
            r.loadavg_start,
            r.loadavg_end,
            r.backup_summary.replace('|', "/"),
            r.restore_summary.replace('|', "/"),
            r.restore_pacing.replace('|', "/"),
        ));
    }
    s
}
