//! Velero's hooks on running pods (issue 14), on the real test node (`scripts/testenv node up`:
//! kubelet, containerd, runc): backup pre and post exec hooks from pod annotations run in the
//! app's container through the API server and the kubelet — the pre hook's marker file lands in
//! the file-system backup of the volume — and restore init and exec hooks run in the restored
//! pod: the init container runs before the app, the exec hook once the app is up, after the
//! data is back. Failure modes as Velero defines them: `Fail` (exit code or timeout) fails the
//! pod's item and the backup ends `PartiallyFailed`; `Continue` goes on with a warning.

mod support;

use std::path::Path;
use std::time::Duration;

use kube::api::Api;
use serde_json::{Value, json};
use support::*;

fn pod(ns: &str, name: &str, image: &str, annotations: Value, with_volume: bool) -> Value {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations},
        "spec": {"terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "app", "image": image, "imagePullPolicy": "Never",
                                 "command": ["sh", "-c",
                                   "[ -s /data/app.txt ] || echo app-data > /data/app.txt; exec sleep 86400"]}]}});
    if with_volume {
        p["spec"]["containers"][0]["volumeMounts"] =
            json!([{"name": "data", "mountPath": "/data"}]);
        p["spec"]["volumes"] = json!([{"name": "data", "emptyDir": {}}]);
    } else {
        p["spec"]["containers"][0]["command"] = json!(["sleep", "86400"]);
    }
    p
}

/// The backup's or restore's Velero record, as `tidemark <kind> get NAME -o json` prints it.
fn record(kind: &str, name: &str, loc: &str, env: &[(&str, &str)]) -> Value {
    let out = tidemark(&[kind, "get", name, "--location", loc, "-o", "json"], env);
    assert!(out.status.success(), "{}", show(&out));
    let list: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
    list["items"][0].clone()
}

/// Names of the pods in a backup's tarball.
fn pods_in_archive(folder: &Path, backup: &str) -> Vec<String> {
    let f = std::fs::File::open(folder.join(format!("{backup}.tar.gz"))).unwrap();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut out: Vec<String> = ar
        .entries()
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let p = e.path().ok()?.display().to_string();
            let rest = p.strip_prefix("resources/pods/namespaces/")?;
            let (_, file) = rest.split_once('/')?;
            let (_, name) = file.rsplit_once('/').unwrap_or(("", file));
            name.strip_suffix(".json").map(str::to_string)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_and_restore_hooks_run_in_running_pods() {
    let a = Cluster::up(&unique("hooks-a")).await;
    let node = Node::up(&a);
    let c = a.client.clone();
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("location")).unwrap();
    let loc = format!("file://{}", work.path().join("location").display());
    let password_file = work.path().join("repository-password");
    std::fs::write(&password_file, "hooks test password\n").unwrap();
    let agent_kc = node_agent_kubeconfig(&a, work.path()).await;
    let agent = NodeAgent::start(&agent_kc, &node, &password_file, &[]);
    let annotations = json!({
        "backup.velero.io/backup-volumes": "data",
        "pre.hook.backup.velero.io/container": "app",
        "pre.hook.backup.velero.io/command":
            r#"["/bin/sh", "-c", "echo flushed-before-backup > /data/pre-hook.txt && echo pre hook ran"]"#,
        "pre.hook.backup.velero.io/on-error": "Fail",
        "pre.hook.backup.velero.io/timeout": "20s",
        "post.hook.backup.velero.io/command": r#"["/bin/sh", "-c", "echo post hook ran"]"#,
        "init.hook.restore.velero.io/container-image": node.image_busybox,
        "init.hook.restore.velero.io/container-name": "restore-init",
        "init.hook.restore.velero.io/command": r#"["/bin/sh", "-c", "echo init hook ran"]"#,
        "post.hook.restore.velero.io/container": "app",
        "post.hook.restore.velero.io/command":
            r#"["/bin/sh", "-c", "cat /data/pre-hook.txt > /data/exec-hook.txt"]"#,
        "post.hook.restore.velero.io/wait-for-ready": "true",
        "post.hook.restore.velero.io/exec-timeout": "30s",
        "post.hook.restore.velero.io/wait-timeout": "2m",
    });
    apply_docs(
        &c,
        &[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
            pod("shop", "db-0", &node.image_busybox, annotations, true),
        ],
    )
    .await;
    wait_pod_ready(&c, "shop", "db-0", Duration::from_secs(60)).await;
    let env = [
        ("KUBECONFIG", a.kubeconfig.to_str().unwrap()),
        (
            "TIDEMARK_REPO_PASSWORD_FILE",
            password_file.to_str().unwrap(),
        ),
        (
            "TIDEMARK_RESTORE_HELPER_IMAGE",
            node.image_tidemark.as_str(),
        ),
    ];

    // Backup: the pre hook writes its marker before the volume is copied; the post hook after.
    let out = tidemark(
        &[
            "backup",
            "create",
            "hb1",
            "--include-namespaces",
            "shop",
            "--location",
            &loc,
        ],
        &env,
    );
    assert!(
        out.status.success(),
        "{}\nagent:\n{}",
        show(&out),
        agent.log()
    );
    let text = show(&out);
    assert!(text.contains("Completed"), "{text}");
    let rec = record("backup", "hb1", &loc, &env);
    assert_eq!(rec["status"]["hookStatus"]["hooksAttempted"], 2, "{rec:#}");
    assert_eq!(
        rec["status"]["hookStatus"]
            .get("hooksFailed")
            .and_then(Value::as_i64)
            .unwrap_or(0),
        0,
        "{rec:#}"
    );
    let out = tidemark(
        &["backup", "describe", "hb1", "--location", &loc, "--details"],
        &env,
    );
    let described = show(&out);
    assert!(
        out.status.success() && described.contains("HooksAttempted:  2"),
        "{described}"
    );
    // One row per hook: phase, pod, container, result.
    let rows: Vec<&str> = described
        .lines()
        .map(str::trim)
        .filter(|l| (l.starts_with("pre ") || l.starts_with("post ")) && l.contains("shop/db-0"))
        .collect();
    assert_eq!(rows.len(), 2, "{described}");
    assert!(
        rows.iter()
            .any(|r| r.starts_with("pre") && r.contains("app") && r.contains("Succeeded")),
        "{described}"
    );
    assert!(
        rows.iter()
            .any(|r| r.starts_with("post") && r.contains("Succeeded")),
        "{described}"
    );
    let folder = work.path().join("location/backups/hb1");
    assert!(
        folder.join("tidemark-hooks.json.gz").is_file(),
        "the hook outcomes file"
    );

    // The incident, then the restore: init container, data, then the exec hook in the app.
    kubectl(
        &a.kubeconfig,
        &[
            "delete",
            "namespace",
            "shop",
            "--wait=true",
            "--timeout=120s",
        ],
    );
    let out = tidemark(
        &[
            "restore",
            "create",
            "hr1",
            "--from-backup",
            "hb1",
            "--location",
            &loc,
        ],
        &env,
    );
    assert!(
        out.status.success(),
        "{}\nagent:\n{}",
        show(&out),
        agent.log()
    );
    let pod = wait_pod_ready(&c, "shop", "db-0", Duration::from_secs(120)).await;
    let inits = pod.spec.as_ref().unwrap().init_containers.clone().unwrap();
    let names: Vec<&str> = inits.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        ["tidemark-restore-wait", "restore-init"],
        "{inits:?}"
    );
    let statuses = pod
        .status
        .as_ref()
        .unwrap()
        .init_container_statuses
        .clone()
        .unwrap();
    for s in &statuses {
        let t = s.state.as_ref().and_then(|st| st.terminated.as_ref());
        assert_eq!(t.map(|t| t.exit_code), Some(0), "{statuses:?}");
    }
    let init_log = kubectl(
        &a.kubeconfig,
        &["logs", "-n", "shop", "db-0", "-c", "restore-init"],
    );
    assert_eq!(init_log.trim(), "init hook ran");
    // The pre hook's marker came back with the data; the exec hook copied it once the app ran.
    assert_eq!(
        pod_exec(
            &a.kubeconfig,
            "shop",
            "db-0",
            "app",
            "cat /data/pre-hook.txt /data/exec-hook.txt"
        ),
        "flushed-before-backup\nflushed-before-backup\n"
    );
    let rec = record("restore", "hr1", &loc, &env);
    assert_eq!(rec["status"]["hookStatus"]["hooksAttempted"], 1, "{rec:#}");
    drop(agent);
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_hooks_end_the_pod_item_as_velero_does() {
    let a = Cluster::up(&unique("hooks-f")).await;
    let node = Node::up(&a);
    let c = a.client.clone();
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("location")).unwrap();
    let loc = format!("file://{}", work.path().join("location").display());
    let bb = node.image_busybox.as_str();
    let hook = |cmd: &str, on_error: &str, timeout: &str| {
        json!({"pre.hook.backup.velero.io/command": format!(r#"["/bin/sh", "-c", "{cmd}"]"#),
               "pre.hook.backup.velero.io/on-error": on_error,
               "pre.hook.backup.velero.io/timeout": timeout})
    };
    apply_docs(
        &c,
        &[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "hk"}}),
            pod(
                "hk",
                "fail-0",
                bb,
                hook("echo failing >&2; exit 3", "Fail", "20s"),
                false,
            ),
            pod("hk", "slow-0", bb, hook("sleep 30", "Fail", "2s"), false),
            pod("hk", "cont-0", bb, hook("exit 4", "Continue", "20s"), false),
            pod("hk", "fine-0", bb, hook("true", "Fail", "20s"), false),
        ],
    )
    .await;
    for p in ["fail-0", "slow-0", "cont-0", "fine-0"] {
        wait_pod_ready(&c, "hk", p, Duration::from_secs(60)).await;
    }
    let env = [("KUBECONFIG", a.kubeconfig.to_str().unwrap())];
    let started = std::time::Instant::now();
    let out = tidemark(
        &[
            "backup",
            "create",
            "hf1",
            "--include-namespaces",
            "hk",
            "--location",
            &loc,
        ],
        &env,
    );
    let text = show(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "PartiallyFailed exits 2: {text}"
    );
    assert!(text.contains("PartiallyFailed"), "{text}");
    // The timeout was enforced (the hook sleeps 30 s).
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "{:?}",
        started.elapsed()
    );
    let rec = record("backup", "hf1", &loc, &env);
    assert_eq!(rec["status"]["hookStatus"]["hooksAttempted"], 4, "{rec:#}");
    assert_eq!(rec["status"]["hookStatus"]["hooksFailed"], 3, "{rec:#}");
    assert_eq!(rec["status"]["errors"], 2, "{rec:#}");
    // Fail: the pod's item is not backed up; Continue: it is, with a warning.
    let pods = pods_in_archive(&work.path().join("location/backups/hf1"), "hf1");
    assert_eq!(pods, ["cont-0", "fine-0"], "{pods:?}");
    let out = tidemark(&["backup", "logs", "hf1", "--location", &loc], &env);
    let logs = show(&out);
    assert!(logs.contains("fail-0") && logs.contains("exit"), "{logs}");
    assert!(
        logs.contains("slow-0") && logs.contains("timed out"),
        "{logs}"
    );
    drop(node);
}

/// The controller runs a Backup's spec hooks (Velero's `hooks.resources[]` in the Backup's
/// template, selected by namespace and label) under the shipped ServiceAccount's token: the
/// `tidemark-hooks` ClusterRole is what lets it exec into the pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn controller_runs_spec_hooks_under_the_shipped_service_account() {
    let a = Cluster::up(&unique("hooks-c")).await;
    let node = Node::up(&a);
    let c = a.client.clone();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("location");
    std::fs::create_dir_all(&dir).unwrap();
    apply_shipped_rbac(&c).await;
    let mut app = pod("web", "web-0", &node.image_busybox, json!({}), true);
    app["metadata"]["labels"] = json!({"app": "web"});
    apply_docs(
        &c,
        &[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "web"}}),
            app,
            json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Location",
                   "metadata": {"name": "local", "namespace": "tidemark"},
                   "spec": {"provider": "filesystem", "bucket": dir.display().to_string(),
                            "default": true, "accessMode": "ReadWrite"}}),
        ],
    )
    .await;
    wait_pod_ready(&c, "web", "web-0", Duration::from_secs(60)).await;
    let sa_kc = work.path().join("tidemark.kubeconfig");
    service_account_kubeconfig(&c, &a.kubeconfig, "tidemark", "tidemark", &sa_kc).await;
    let server = Server::start(&sa_kc, "tidemark", &[]);
    apply_docs(
        &c,
        &[json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Backup",
                 "metadata": {"name": "spec-hooks", "namespace": "tidemark"},
                 "spec": {"template": {"includedNamespaces": ["web"],
                     "hooks": {"resources": [{
                         "name": "freeze",
                         "includedNamespaces": ["web"],
                         "labelSelector": {"matchLabels": {"app": "web"}},
                         "pre": [{"exec": {"container": "app", "onError": "Fail", "timeout": "20s",
                                           "command": ["/bin/sh", "-c", "echo frozen > /data/frozen.txt"]}}],
                         "post": [{"exec": {"container": "app",
                                            "command": ["/bin/sh", "-c", "rm /data/frozen.txt"]}}]}]}}}})],
    )
    .await;
    let backups: Api<tidemark::api::tidemark::Backup> = Api::namespaced(c.clone(), "tidemark");
    let status = wait_for(
        "backup spec-hooks done",
        Duration::from_secs(120),
        || async {
            let b = serde_json::to_value(backups.get("spec-hooks").await.ok()?).ok()?;
            matches!(
                b["status"]["phase"].as_str(),
                Some("Completed" | "PartiallyFailed" | "Failed")
            )
            .then(|| b["status"].clone())
        },
    )
    .await;
    assert_eq!(status["phase"], "Completed", "{status:#}\n{}", server.log());
    assert_eq!(status["hookStatus"]["hooksAttempted"], 2, "{status:#}");
    assert!(!server.log().contains("forbidden"), "{}", server.log());
    // Both ran in the container: the pre hook wrote the file, the post hook removed it.
    assert_eq!(
        pod_exec(&a.kubeconfig, "web", "web-0", "app", "ls /data"),
        "app.txt\n"
    );
    drop(server);
    drop(node);
}
