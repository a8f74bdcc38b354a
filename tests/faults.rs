//! Faults, injected between tidemark and the real components (issue 15): a TCP fault proxy in
//! front of the API server and in front of MinIO adds latency, resets connections, answers new
//! MinIO connections with `503 Slow Down` and refuses every connection for a few seconds (a
//! stopped MinIO, a restarting API server); and a kill test that SIGKILLs direct-mode backups and
//! restores at random instants.
//!
//! The proxy is this file's [`FaultProxy`], about a hundred lines over tokio: a stand-in for
//! toxiproxy, which would need its own server, client and API calls to do the same four things.
//! The faults are what a socket sees, so TLS to the API server stays end to end.
//!
//! What must hold, whatever the faults: a backup is either complete (its archive's sha256 is
//! the one its record names, every object is in it) or absent / `Failed`; what was stored before
//! is untouched; a restore that stopped is finished by a re-run; after `tidemark recover`, no
//! partial folder and no unfinished multipart upload is left; the next run completes.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::{Value, json};
use sha2::Digest;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bulk ConfigMaps beside the corpus: 10,000 of 1 KiB of random base64, so the archive
/// (about 7.5 MB) is a multipart upload of two parts.
const BULK: usize = 10_000;

/// Which faults a [`FaultProxy`] injects now, and how many it injected.
#[derive(Default)]
struct Faults {
    /// Delay before forwarding each chunk, milliseconds.
    latency_ms: AtomicU64,
    /// Per chunk forwarded, the chance in 10,000 that the connection is reset instead.
    reset_in_10k: AtomicU32,
    /// Per new connection, the chance in 100 that it is answered `503 Slow Down` (HTTP only).
    slow_down_in_100: AtomicU32,
    /// Every new connection is reset (a stopped upstream).
    stopped: AtomicBool,
    /// Counters of what was injected.
    resets: AtomicU64,
    slow_downs: AtomicU64,
    refused: AtomicU64,
    connections: AtomicU64,
}

/// A TCP proxy to `upstream` injecting [`Faults`].
struct FaultProxy {
    addr: SocketAddr,
    faults: Arc<Faults>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let faults = Arc::new(Faults::default());
        let f = faults.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let f = f.clone();
                tokio::spawn(async move { serve(client, upstream, f).await });
            }
        });
        FaultProxy { addr, faults, task }
    }

    fn set(&self, latency_ms: u64, reset_in_10k: u32, slow_down_in_100: u32) {
        self.faults.latency_ms.store(latency_ms, Ordering::SeqCst);
        self.faults
            .reset_in_10k
            .store(reset_in_10k, Ordering::SeqCst);
        self.faults
            .slow_down_in_100
            .store(slow_down_in_100, Ordering::SeqCst);
    }

    fn stop_upstream(&self, stopped: bool) {
        self.faults.stopped.store(stopped, Ordering::SeqCst);
    }

    fn counts(&self) -> [u64; 4] {
        let f = &self.faults;
        [
            f.connections.load(Ordering::SeqCst),
            f.resets.load(Ordering::SeqCst),
            f.slow_downs.load(Ordering::SeqCst),
            f.refused.load(Ordering::SeqCst),
        ]
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn chance(in_n: u32, n: u32) -> bool {
    in_n > 0 && rand_u32() % n < in_n
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    getrandom(&mut b);
    u32::from_le_bytes(b)
}

fn getrandom(buf: &mut [u8]) {
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .expect("/dev/urandom");
}

/// Resets a connection (RST, not FIN: what a crashed peer or a dropped NAT entry looks like).
fn reset(s: TcpStream) {
    // Deprecated because a non-zero linger blocks the dropping thread; a zero one closes at once.
    #[allow(deprecated)]
    let _ = s.set_linger(Some(Duration::ZERO));
    drop(s);
}

async fn serve(client: TcpStream, upstream: SocketAddr, f: Arc<Faults>) {
    f.connections.fetch_add(1, Ordering::SeqCst);
    if f.stopped.load(Ordering::SeqCst) {
        f.refused.fetch_add(1, Ordering::SeqCst);
        return reset(client);
    }
    let mut client = client;
    if chance(f.slow_down_in_100.load(Ordering::SeqCst), 100) {
        f.slow_downs.fetch_add(1, Ordering::SeqCst);
        // Read the request head first, as a server would, then answer as S3 does when busy.
        let mut buf = [0u8; 4096];
        let _ = tokio::time::timeout(Duration::from_secs(2), client.read(&mut buf)).await;
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code>\
                    <Message>Please reduce your request rate.</Message></Error>";
        let _ = client
            .write_all(
                format!(
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
            .await;
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return reset(client);
    };
    let reset_now = {
        let (mut cr, mut cw) = client.split();
        let (mut sr, mut sw) = server.split();
        let up = async {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match cr.read(&mut buf).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => n,
                };
                if !pump(&f, &mut sw, &buf[..n]).await {
                    return true;
                }
            }
        };
        let down = async {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match sr.read(&mut buf).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => n,
                };
                if !pump(&f, &mut cw, &buf[..n]).await {
                    return true;
                }
            }
        };
        // Either direction ending ends the connection.
        tokio::select! {
            r = up => r,
            r = down => r,
        }
    };
    if reset_now {
        reset(client);
        reset(server);
    }
}

/// Forwards one chunk after the latency, or (by chance) refuses to: the caller then drops the
/// connection.
async fn pump(f: &Faults, w: &mut tokio::net::tcp::WriteHalf<'_>, chunk: &[u8]) -> bool {
    let latency = f.latency_ms.load(Ordering::SeqCst);
    // The injected latency itself (a fault), not a wait before an assertion.
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    if chance(f.reset_in_10k.load(Ordering::SeqCst), 10_000) {
        f.resets.fetch_add(1, Ordering::SeqCst);
        return false;
    }
    w.write_all(chunk).await.is_ok()
}

/// The `host:port` of a URL like `https://127.0.0.1:6443`.
fn url_addr(url: &str) -> SocketAddr {
    let rest = url.split("://").nth(1).unwrap();
    rest.trim_end_matches('/').parse().unwrap()
}

/// A copy of `kubeconfig` whose server is the proxy (the certificate's IP SAN 127.0.0.1 still
/// matches: only the port differs).
fn proxied_kubeconfig(
    kubeconfig: &std::path::Path,
    dir: &std::path::Path,
    proxy: SocketAddr,
) -> String {
    let text = std::fs::read_to_string(kubeconfig).unwrap();
    let server = kube_server(kubeconfig);
    let out = dir.join(format!("kubeconfig-{}", proxy.port()));
    std::fs::write(&out, text.replace(&server, &format!("https://{proxy}"))).unwrap();
    out.to_str().unwrap().to_string()
}

fn kube_server(kubeconfig: &std::path::Path) -> String {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    kc.clusters[0]
        .cluster
        .as_ref()
        .unwrap()
        .server
        .clone()
        .unwrap()
}

async fn create_bulk(client: &kube::Client) {
    apply_docs(
        client,
        &[json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bulk"}})],
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "bulk");
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut i = 0;
    while i < BULK {
        let batch: Vec<usize> = (i..(i + 200).min(BULK)).collect();
        futures::future::join_all(batch.iter().map(|n| {
            let cms = cms.clone();
            let mut raw = vec![0u8; 1024];
            getrandom(&mut raw);
            let payload: String = raw
                .iter()
                .map(|b| alphabet[usize::from(*b) % 64] as char)
                .collect();
            async move {
                let mut cm = ConfigMap::default();
                cm.metadata.name = Some(format!("cm-{n:05}"));
                cm.data = Some([("payload".to_string(), payload)].into());
                cms.create(&PostParams::default(), &cm).await.unwrap();
            }
        }))
        .await;
        i += 200;
    }
}

/// The archive paths of the objects that must be in a complete backup: the corpus as the
/// cluster accepted it, and the bulk ConfigMaps.
fn expected_paths(accepted: &[Accepted]) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = accepted
        .iter()
        .map(|a| {
            let r = if a.resource.group.is_empty() {
                a.resource.plural.clone()
            } else {
                format!("{}.{}", a.resource.plural, a.resource.group)
            };
            match &a.namespace {
                Some(ns) => format!("resources/{r}/namespaces/{ns}/{}.json", a.name),
                None => format!("resources/{r}/cluster/{}.json", a.name),
            }
        })
        .collect();
    out.extend((0..BULK).map(|n| format!("resources/configmaps/namespaces/bulk/cm-{n:05}.json")));
    out
}

/// What one backup left in the store.
#[derive(Debug, PartialEq, Eq)]
enum Stored {
    /// No `velero-backup.json`.
    Absent,
    /// A record with this phase, its archive matching its sha256 and holding every object.
    Complete(String),
    /// A record whose phase is `Failed` (nothing is promised of its files).
    Failed,
    /// `PartiallyFailed`, its archive matching its sha256, and every resource of which objects
    /// are missing named in its results' errors (never silently incomplete).
    Partial(BTreeSet<String>),
}

/// Checks a backup's folder: absent, `Failed`, or complete. Panics on anything else (a record
/// over an incomplete or altered archive): the invariant of this suite.
async fn stored(
    s3: &impl ObjectStore,
    prefix: &str,
    name: &str,
    want: &BTreeSet<String>,
) -> Stored {
    let dir = format!("{prefix}/backups/{name}");
    let record = match s3
        .get(&StorePath::from(format!("{dir}/velero-backup.json")))
        .await
    {
        Ok(r) => r.bytes().await.unwrap(),
        Err(object_store::Error::NotFound { .. }) => return Stored::Absent,
        Err(e) => panic!("{name}: {e}"),
    };
    let record: Value = serde_json::from_slice(&record).unwrap();
    let phase = record["status"]["phase"].as_str().unwrap_or("").to_string();
    if phase == "Failed" {
        return Stored::Failed;
    }
    let meta: Value = serde_json::from_slice(
        &s3.get(&StorePath::from(format!("{dir}/tidemark-backup.json")))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    let archive = s3
        .get(&StorePath::from(format!("{dir}/{name}.tar.gz")))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        hex(&sha2::Sha256::digest(&archive)),
        meta["archiveSha256"].as_str().unwrap(),
        "{name}: the archive is not the one its record names"
    );
    let mut tar = tar::Archive::new(flate2::read::MultiGzDecoder::new(&archive[..]));
    let have: BTreeSet<String> = tar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    let missing: Vec<&String> = want.difference(&have).collect();
    if missing.is_empty() {
        return Stored::Complete(phase);
    }
    assert_eq!(
        phase,
        "PartiallyFailed",
        "{name} ({phase}) lacks objects: {:?}",
        &missing[..missing.len().min(10)]
    );
    // Each resource with missing objects is named by an error of the results.
    let results = s3
        .get(&StorePath::from(format!("{dir}/{name}-results.gz")))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&results[..])
        .read_to_string(&mut text)
        .unwrap();
    let resources: BTreeSet<String> = missing
        .iter()
        .filter_map(|p| p.split('/').nth(1).map(str::to_string))
        .collect();
    for r in &resources {
        assert!(
            text.contains(&format!("listing {r}")),
            "{name}: objects of {r} are missing but no error names it: {text}"
        );
    }
    Stored::Partial(resources)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every object under `prefix/backups/<name>/` with its sha256.
async fn folder_sums(s3: &impl ObjectStore, prefix: &str, name: &str) -> BTreeMap<String, String> {
    use futures::TryStreamExt;
    let dir = StorePath::from(format!("{prefix}/backups/{name}"));
    let metas: Vec<_> = s3.list(Some(&dir)).try_collect().await.unwrap();
    let mut out = BTreeMap::new();
    for m in metas {
        let b = s3.get(&m.location).await.unwrap().bytes().await.unwrap();
        out.insert(m.location.to_string(), hex(&sha2::Sha256::digest(&b)));
    }
    out
}

async fn bulk_count(client: &kube::Client) -> usize {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "bulk");
    let mut n = 0;
    let mut lp = ListParams::default().limit(500);
    loop {
        let page = cms.list(&lp).await.unwrap();
        // Not the namespace's own kube-root-ca.crt.
        n += page
            .items
            .iter()
            .filter(|c| {
                c.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with("cm-"))
            })
            .count();
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => return n,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_and_restores_through_faults_are_complete_or_absent() {
    let a = Cluster::up(&unique("fault-a")).await;
    let b = Cluster::up(&unique("fault-b")).await;
    let minio = Minio::up(&unique("fault"));
    let (accepted, _) = load_corpus(&a.client).await;
    create_bulk(&a.client).await;
    let want = expected_paths(&accepted);
    let s3 = minio.object_store();
    let dir = tempfile::tempdir().unwrap();
    let url = minio.url("faults");

    // Stored before any fault: must come out untouched.
    let ka = a.kubeconfig.to_str().unwrap().to_string();
    let out = tidemark(
        &["backup", "create", "before", "--location", &url],
        &minio.env_with(&ka),
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        stored(&s3, "faults", "before", &want).await,
        Stored::Complete("Completed".into())
    );
    let before = folder_sums(&s3, "faults", "before").await;

    let api_a = FaultProxy::start(url_addr(&kube_server(&a.kubeconfig))).await;
    let api_b = FaultProxy::start(url_addr(&kube_server(&b.kubeconfig))).await;
    let store = FaultProxy::start(url_addr(&minio.env["AWS_ENDPOINT_URL"])).await;
    let (pka, pkb) = (
        proxied_kubeconfig(&a.kubeconfig, dir.path(), api_a.addr),
        proxied_kubeconfig(&b.kubeconfig, dir.path(), api_b.addr),
    );
    let endpoint = format!("http://{}", store.addr);
    let env = |kc: &str| -> Vec<(String, String)> {
        minio
            .env
            .iter()
            .map(|(k, v)| {
                let v = if k == "AWS_ENDPOINT_URL" {
                    endpoint.clone()
                } else {
                    v.clone()
                };
                (k.clone(), v)
            })
            .chain([("KUBECONFIG".to_string(), kc.to_string())])
            .collect()
    };
    let run = |args: Vec<String>, env: Vec<(String, String)>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            tidemark(&args, &env)
        })
    };

    // Three plans of faults, each for one backup and one restore: (what, latency per chunk in
    // ms, store resets per 10,000 chunks, % of new store connections answered 503, the store
    // down while the run meets it). The API server's connections get the same latency and a tenth of the
    // resets: its LIST pages of CRDs are hundreds of chunks each, and a reset every hundred
    // chunks would let none through, to any client.
    let plans: [(&str, u64, u32, u32, bool); 3] = [
        (
            "latency 5 ms, resets, 503 on 10% of store connections",
            5,
            20,
            10,
            false,
        ),
        (
            "more resets, 503 on 30% of store connections",
            0,
            100,
            30,
            false,
        ),
        (
            "the store down during the run (3 connections refused), resets",
            1,
            50,
            5,
            true,
        ),
    ];
    let mut table = Vec::new();
    for (i, (what, latency, resets, slow, stop)) in plans.iter().enumerate() {
        for p in [&api_a, &api_b] {
            p.set(*latency, *resets / 10, 0);
        }
        store.set(*latency, *resets, *slow);
        let name = format!("faulty-{i}");
        let t0 = Instant::now();
        let job = run(
            ["backup", "create", &name, "--location", &url]
                .map(String::from)
                .to_vec(),
            env(&pka),
        );
        if *stop {
            // The store goes down once the run has reached it, and comes back once the run has
            // met the outage (three refused connections) or ended.
            let [conns, ..] = store.counts();
            wait_for(
                "the backup reaching the store",
                Duration::from_secs(60),
                || async { (store.counts()[0] > conns || job.is_finished()).then_some(()) },
            )
            .await;
            let [.., refused] = store.counts();
            store.stop_upstream(true);
            wait_for(
                "the backup meeting the outage",
                Duration::from_secs(60),
                || async { (store.counts()[3] >= refused + 3 || job.is_finished()).then_some(()) },
            )
            .await;
            store.stop_upstream(false);
        }
        let out = job.await.unwrap();
        let took = t0.elapsed();
        let outcome = stored(&s3, "faults", &name, &want).await;
        println!(
            "backup {name} [{what}]: exit {:?} in {took:.1?}, stored {outcome:?}",
            out.status.code()
        );
        if !out.status.success() {
            println!("{}", show(&out));
        }
        match out.status.code() {
            Some(0) => assert_eq!(
                outcome,
                Stored::Complete("Completed".into()),
                "{}",
                show(&out)
            ),
            // PartiallyFailed: what is missing is named (checked by `stored`).
            Some(2) => assert!(matches!(outcome, Stored::Partial(_)), "{outcome:?}"),
            _ => assert!(
                matches!(outcome, Stored::Absent | Stored::Failed),
                "a failed run left {outcome:?}: {}",
                show(&out)
            ),
        }
        // A restore of the baseline into the second cluster under the same faults; whatever it
        // did, a re-run without faults finishes it.
        let restore = format!("back-{i}");
        let rout = run(
            [
                "restore",
                "create",
                &restore,
                "--from-backup",
                "before",
                "--location",
                &url,
                "--include-namespaces",
                "bulk",
            ]
            .map(String::from)
            .to_vec(),
            env(&pkb),
        )
        .await
        .unwrap();
        println!("restore {restore} [{what}]: exit {:?}", rout.status.code());
        if !rout.status.success() {
            let text = show(&rout);
            println!("{}", &text[text.len().saturating_sub(1500)..]);
        }
        table.push((
            what.to_string(),
            out.status.code(),
            format!("{outcome:?}"),
            rout.status.code(),
            store.counts(),
            api_a.counts(),
        ));
    }
    for p in [&api_a, &api_b, &store] {
        p.set(0, 0, 0);
    }
    // The re-runs complete.
    let kb = b.kubeconfig.to_str().unwrap().to_string();
    let out = tidemark(
        &[
            "restore",
            "create",
            "after",
            "--from-backup",
            "before",
            "--location",
            &url,
            "--include-namespaces",
            "bulk",
        ],
        &minio.env_with(&kb),
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(bulk_count(&b.client).await, BULK);
    let out = tidemark(
        &["backup", "create", "after", "--location", &url],
        &minio.env_with(&ka),
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        stored(&s3, "faults", "after", &want).await,
        Stored::Complete("Completed".into())
    );
    // Nothing stored before is gone or changed.
    assert_eq!(folder_sums(&s3, "faults", "before").await, before);
    // The table for the closing note.
    println!(
        "| faults | backup exit | stored | restore exit | store conns/resets/503s/refused | API conns/resets |"
    );
    for (what, code, outcome, rcode, s, k) in &table {
        println!(
            "| {what} | {code:?} | {outcome} | {rcode:?} | {}/{}/{}/{} | {}/{} |",
            s[0], s[1], s[2], s[3], k[0], k[1]
        );
    }
    let injected: u64 = table
        .iter()
        .map(|t| t.4[1] + t.4[2] + t.4[3] + t.5[1])
        .sum();
    assert!(injected > 0, "no fault was injected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backups_and_restores_leave_nothing_half_done() {
    let a = Cluster::up(&unique("kill-a")).await;
    let b = Cluster::up(&unique("kill-b")).await;
    let minio = Minio::up(&unique("kill"));
    let (accepted, _) = load_corpus(&a.client).await;
    create_bulk(&a.client).await;
    let want = expected_paths(&accepted);
    let s3 = minio.object_store();
    let url = minio.url("kill");
    let (ka, kb) = (
        a.kubeconfig.to_str().unwrap().to_string(),
        b.kubeconfig.to_str().unwrap().to_string(),
    );
    let (env_a, env_b) = (minio.env_with(&ka), minio.env_with(&kb));
    // How long an uninterrupted backup and restore take: kills are spread over that.
    let t0 = Instant::now();
    let out = tidemark(&["backup", "create", "whole", "--location", &url], &env_a);
    assert!(out.status.success(), "{}", show(&out));
    let backup_time = t0.elapsed();
    let before = folder_sums(&s3, "kill", "whole").await;
    let t0 = Instant::now();
    let out = tidemark(
        &[
            "restore",
            "create",
            "timing",
            "--from-backup",
            "whole",
            "--location",
            &url,
            "--include-namespaces",
            "bulk",
        ],
        &env_b,
    );
    assert!(out.status.success(), "{}", show(&out));
    let restore_time = t0.elapsed();
    let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(b.client.clone());
    ns.delete("bulk", &Default::default()).await.unwrap();

    let runs = std::env::var("TIDEMARK_KILL_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(50usize);
    let mut seeds = vec![0u32; runs];
    for s in &mut seeds {
        *s = rand_u32();
    }
    println!("kill seeds: {seeds:?} (backup {backup_time:.1?}, restore {restore_time:.1?})");
    let mut rows = Vec::new();
    let mut restores_killed = 0;
    for (i, seed) in seeds.iter().enumerate() {
        // Four in five runs kill a backup, one in five a restore.
        let is_restore = i % 5 == 4;
        let span = if is_restore {
            restore_time
        } else {
            backup_time
        };
        let at = span.mul_f64(f64::from(seed % 1000) / 1000.0);
        let name = format!("k{i:02}");
        let args: Vec<String> = if is_restore {
            [
                "restore",
                "create",
                &name,
                "--from-backup",
                "whole",
                "--location",
                &url,
                "--include-namespaces",
                "bulk",
            ]
            .map(String::from)
            .to_vec()
        } else {
            ["backup", "create", &name, "--location", &url]
                .map(String::from)
                .to_vec()
        };
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .args(&args)
            .envs(if is_restore {
                env_b.clone()
            } else {
                env_a.clone()
            })
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(at).await;
        let finished_first = child.try_wait().unwrap().is_some();
        let _ = child.kill();
        child.wait().unwrap();
        if is_restore {
            restores_killed += 1;
            rows.push((i, "restore", at, finished_first, String::from("-")));
            continue;
        }
        // The restart: recover what the killed run left, then check.
        let out = tidemark(
            &["recover", "--location", &url, "--older-than", "0s"],
            &env_a,
        );
        assert!(
            out.status.success(),
            "run {i} (seed {seed}): {}",
            show(&out)
        );
        let outcome = stored(&s3, "kill", &name, &want).await;
        assert!(
            matches!(
                outcome,
                Stored::Absent | Stored::Complete(_) | Stored::Failed
            ),
            "run {i} (seed {seed}): {outcome:?}"
        );
        // No partial folder, no unfinished upload of its archive (MinIO lists by exact key).
        let pending = s3_pending(&minio, &format!("kill/backups/{name}/{name}.tar.gz")).await;
        assert_eq!(pending, 0, "run {i} (seed {seed}): unfinished uploads left");
        if outcome == Stored::Absent {
            use futures::TryStreamExt;
            let left: Vec<_> = s3
                .list(Some(&StorePath::from(format!("kill/backups/{name}"))))
                .try_collect()
                .await
                .unwrap();
            assert!(
                left.is_empty(),
                "run {i} (seed {seed}): partial folder left: {left:?}"
            );
        }
        rows.push((i, "backup", at, finished_first, format!("{outcome:?}")));
    }
    // The next runs complete: a restore finishes what the killed ones started, a backup is whole.
    let out = tidemark(
        &[
            "restore",
            "create",
            "final",
            "--from-backup",
            "whole",
            "--location",
            &url,
            "--include-namespaces",
            "bulk",
        ],
        &env_b,
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(bulk_count(&b.client).await, BULK);
    let out = tidemark(&["backup", "create", "final", "--location", &url], &env_a);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        stored(&s3, "kill", "final", &want).await,
        Stored::Complete("Completed".into())
    );
    assert_eq!(folder_sums(&s3, "kill", "whole").await, before);
    println!("| run | killed | at | had finished | stored after recover |");
    for (i, what, at, done, outcome) in &rows {
        println!("| {i} | {what} | {at:.2?} | {done} | {outcome} |");
    }
    println!(
        "{} runs: {} backups, {restores_killed} restores killed",
        rows.len(),
        rows.len() - restores_killed
    );
}

/// Unfinished multipart uploads of `key` in MinIO's bucket.
async fn s3_pending(minio: &Minio, key: &str) -> usize {
    let store = minio.tidemark_store(minio.bucket(), "");
    store
        .s3_api()
        .unwrap()
        .list_pending_uploads(key)
        .await
        .unwrap()
        .len()
}

/// The controller killed (SIGKILL) at a random instant of a Backup's run, then started again:
/// its start-up recovery marks the interrupted Backup `Failed` and removes what the run left
/// (unfinished uploads included), or the run had not begun and now completes; either way the
/// store holds a complete backup or nothing of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_controllers_leave_nothing_half_done() {
    use tidemark::api::tidemark::Backup;
    const NS: &str = "tidemark";
    let a = Cluster::up(&unique("kill-ctl")).await;
    let minio = Minio::up(&unique("kill-ctl"));
    let (accepted, _) = load_corpus(&a.client).await;
    create_bulk(&a.client).await;
    let want = expected_paths(&accepted);
    let s3 = minio.object_store();
    install_crds(&a.client).await;
    apply_docs(
        &a.client,
        &[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-credentials", "namespace": NS},
                   "stringData": {"cloud": minio.credentials_file()}}),
            json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Location", "metadata": {"name": "default", "namespace": NS},
                   "spec": {"provider": "s3", "bucket": minio.bucket(), "prefix": "ctl", "default": true,
                            "config": {"region": minio.env["AWS_REGION"], "s3Url": minio.env["AWS_ENDPOINT_URL"], "s3ForcePathStyle": "true"},
                            "credential": {"name": "s3-credentials", "key": "cloud"},
                            "syncPeriod": "0", "validationPeriod": "1m"}}),
        ],
    )
    .await;
    let backups: Api<Backup> = Api::namespaced(a.client.clone(), NS);
    let runs = std::env::var("TIDEMARK_CONTROLLER_KILL_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10usize);
    let mut rows = Vec::new();
    for i in 0..runs {
        let seed = rand_u32();
        let name = format!("c{i:02}");
        let server = Server::start(&a.kubeconfig, NS, &[]);
        apply_docs(
            &a.client,
            &[
                json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Backup",
                     "metadata": {"name": name, "namespace": NS}, "spec": {"template": {}}}),
            ],
        )
        .await;
        // Spread over the controller's start and the backup's run (about 2 s together).
        let at = Duration::from_millis(u64::from(seed % 2500));
        tokio::time::sleep(at).await;
        drop(server);
        let server = Server::start(&a.kubeconfig, NS, &[]);
        let phase = wait_for(
            "the Backup ended after the restart",
            Duration::from_secs(120),
            || async {
                let b = backups.get(&name).await.ok()?;
                let p = b.status?.phase?;
                matches!(p.as_str(), "Completed" | "PartiallyFailed" | "Failed").then_some(p)
            },
        )
        .await;
        drop(server);
        let outcome = stored(&s3, "ctl", &name, &want).await;
        match phase.as_str() {
            "Completed" => assert_eq!(
                outcome,
                Stored::Complete("Completed".into()),
                "run {i} (seed {seed})"
            ),
            "Failed" => {
                assert!(
                    matches!(outcome, Stored::Absent | Stored::Failed),
                    "run {i} (seed {seed}): {outcome:?}"
                );
                use futures::TryStreamExt;
                let left: Vec<_> = s3
                    .list(Some(&StorePath::from(format!("ctl/backups/{name}"))))
                    .try_collect()
                    .await
                    .unwrap();
                assert!(
                    outcome == Stored::Failed || left.is_empty(),
                    "run {i} (seed {seed}): partial folder left: {left:?}"
                );
            }
            other => panic!("run {i} (seed {seed}): {other} ({outcome:?})"),
        }
        let pending = s3_pending(&minio, &format!("ctl/backups/{name}/{name}.tar.gz")).await;
        assert_eq!(pending, 0, "run {i} (seed {seed}): unfinished uploads left");
        rows.push((i, seed, at, phase, format!("{outcome:?}")));
    }
    println!("| run | seed | killed at | phase after restart | stored |");
    for (i, seed, at, phase, outcome) in &rows {
        println!("| {i} | {seed} | {at:.2?} | {phase} | {outcome} |");
    }
}
