//! `tidemark install` / `uninstall` on a real cluster, and the embedded manifests kept equal to
//! `kubectl kustomize kustomize/base`.

mod support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_applies_the_base_and_uninstall_removes_it() {
    let cluster = Cluster::up(&unique("install")).await;
    // The embedded manifests are the rendered base.
    let rendered = std::process::Command::new(testenv_kubectl())
        .args(["kustomize", repo().join("kustomize/base").to_str().unwrap()])
        .output()
        .expect("kubectl kustomize");
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let on_disk = std::fs::read_to_string(repo().join("kustomize/install.yaml")).unwrap();
    assert!(
        String::from_utf8_lossy(&rendered.stdout) == on_disk,
        "kustomize/install.yaml is stale: run `kubectl kustomize kustomize/base > kustomize/install.yaml`"
    );
    let agent = std::process::Command::new(testenv_kubectl())
        .args([
            "kustomize",
            repo().join("kustomize/node-agent").to_str().unwrap(),
        ])
        .output()
        .expect("kubectl kustomize");
    assert!(
        agent.status.success(),
        "{}",
        String::from_utf8_lossy(&agent.stderr)
    );
    let on_disk =
        std::fs::read_to_string(repo().join("kustomize/install-node-agent.yaml")).unwrap();
    assert!(
        String::from_utf8_lossy(&agent.stdout) == on_disk,
        "kustomize/install-node-agent.yaml is stale: run `kubectl kustomize kustomize/node-agent > kustomize/install-node-agent.yaml`"
    );

    let kc = cluster.kubeconfig.to_str().unwrap().to_string();
    let env = [("KUBECONFIG", kc.as_str())];
    let out = tidemark(
        &["install", "--namespace", "backup-system", "--dry-run"],
        &env,
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("namespace: backup-system"));
    let out = tidemark(
        &[
            "install",
            "--namespace",
            "backup-system",
            "--image",
            "registry.local/tidemark:test",
        ],
        &env,
    );
    assert!(out.status.success(), "{}", show(&out));
    let deps: Api<Deployment> = Api::namespaced(cluster.client.clone(), "backup-system");
    let d = deps.get("tidemark").await.unwrap();
    assert_eq!(
        d.spec.unwrap().template.spec.unwrap().containers[0]
            .image
            .as_deref(),
        Some("registry.local/tidemark:test")
    );
    let crbs: Api<ClusterRoleBinding> = Api::all(cluster.client.clone());
    let bound: Vec<_> = crbs
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|b| {
            b.subjects
                .iter()
                .flatten()
                .any(|s| s.namespace.as_deref() == Some("backup-system"))
        })
        .collect();
    assert!(
        !bound.is_empty(),
        "cluster role bindings must point at the chosen namespace"
    );
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client.clone());
    assert!(
        crds.get_opt("schedules.tidemark.dev")
            .await
            .unwrap()
            .is_some()
    );
    // Installing again is idempotent (server-side apply).
    let out = tidemark(
        &[
            "install",
            "--namespace",
            "backup-system",
            "--image",
            "registry.local/tidemark:test",
        ],
        &env,
    );
    assert!(out.status.success(), "{}", show(&out));

    let out = tidemark(&["uninstall", "--namespace", "backup-system"], &env);
    assert_eq!(
        out.status.code(),
        Some(1),
        "uninstall without --confirm must refuse"
    );
    let out = tidemark(
        &["uninstall", "--namespace", "backup-system", "--confirm"],
        &env,
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(deps.get_opt("tidemark").await.unwrap().is_none());
    // The API server removes a CRD only after its finalizer has deleted every instance, and
    // the namespace controller is deleting the namespace at the same time: on a busy machine
    // that takes a while.
    // The CRD's watch events, not polling: returns on its deletion.
    if let Some(crd) = crds.get_opt("schedules.tidemark.dev").await.unwrap() {
        let uid = crd.metadata.uid.clone().unwrap_or_default();
        let gone = kube::runtime::wait::await_condition(
            crds.clone(),
            "schedules.tidemark.dev",
            kube::runtime::wait::conditions::is_deleted(&uid),
        );
        if tokio::time::timeout(std::time::Duration::from_secs(120), gone)
            .await
            .is_err()
        {
            let crd = crds.get_opt("schedules.tidemark.dev").await.ok().flatten();
            panic!(
                "CRD schedules.tidemark.dev still there after 120 s: {}",
                serde_json::to_string_pretty(&crd.map(|c| (
                    c.metadata.finalizers,
                    c.metadata.deletion_timestamp,
                    c.status
                )))
                .unwrap()
            );
        }
    }
}

/// Every field of `want` is in `live` with the same value (objects recursively, lists element
/// by element); the API server's defaults and status in `live` are ignored. Returns the paths
/// that differ.
fn subset_diff(want: &serde_json::Value, live: &serde_json::Value, path: &str) -> Vec<String> {
    use serde_json::Value;
    match (want, live) {
        (Value::Object(w), Value::Object(l)) => w
            .iter()
            .flat_map(|(k, v)| match l.get(k) {
                Some(lv) => subset_diff(v, lv, &format!("{path}.{k}")),
                None => vec![format!("{path}.{k}: missing")],
            })
            .collect(),
        (Value::Array(w), Value::Array(l)) if w.len() == l.len() => w
            .iter()
            .zip(l)
            .enumerate()
            .flat_map(|(i, (w, l))| subset_diff(w, l, &format!("{path}[{i}]")))
            .collect(),
        _ if want == live => vec![],
        _ => vec![format!("{path}: {want} != {live}")],
    }
}

/// `tidemark install` with Velero's flags against a real API server and MinIO: `--dry-run -o
/// yaml` prints exactly what is then applied; `--wait` waits for a controller and the Location;
/// the controller — a local `tidemark server` process standing in for the Deployment (the test
/// cluster has no node to run its pod), started with the Deployment's own arguments and
/// authenticated as the installed ServiceAccount — validates the Location from the installed
/// Secret and runs a backup into MinIO that records `--default-volumes-to-fs-backup`;
/// `uninstall --wait` removes everything, the bucket keeps the backup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_with_velero_flags_runs_a_backup_and_uninstall_is_symmetric() {
    use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
    use serde_json::Value;

    let cluster = Cluster::up(&unique("instflags")).await;
    let minio = Minio::up(&unique("instflags"));
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("credentials-velero");
    std::fs::write(&secret_file, minio.credentials_file()).unwrap();
    let prefix = unique("installed");
    let kc = cluster.kubeconfig.to_str().unwrap().to_string();
    let env = [("KUBECONFIG", kc.as_str())];
    let ns = "velero-like";
    let config = format!(
        "region={},s3ForcePathStyle=\"true\",s3Url={}",
        minio.env["AWS_REGION"], minio.env["AWS_ENDPOINT_URL"]
    );
    let flags: Vec<&str> = vec![
        "install",
        "--namespace",
        ns,
        "--provider",
        "aws",
        "--plugins",
        "velero/velero-plugin-for-aws:v1.13.0",
        "--bucket",
        minio.bucket(),
        "--prefix",
        &prefix,
        "--backup-location-config",
        &config,
        "--secret-file",
        secret_file.to_str().unwrap(),
        "--use-node-agent",
        "--default-volumes-to-fs-backup",
        "--velero-pod-cpu-request",
        "200m",
        "--velero-pod-mem-limit",
        "768Mi",
        "--node-agent-pod-mem-limit",
        "2Gi",
        "--sa-annotations",
        "example.com/role=backup",
        "--labels",
        "team=platform",
    ];

    // Velero's rules: an S3 location needs credentials or --no-secret.
    let out = tidemark(
        &[
            "install",
            "--namespace",
            ns,
            "--provider",
            "aws",
            "--bucket",
            "b",
            "--dry-run",
        ],
        &env,
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        show(&out).contains("--secret-file or --no-secret"),
        "{}",
        show(&out)
    );
    // A provider tidemark has no store for is refused by name, and so is a known provider's
    // missing config key (Azure's storageAccount).
    let out = tidemark(
        &[
            "install",
            "--provider",
            "alibabacloud",
            "--bucket",
            "b",
            "--no-secret",
            "--dry-run",
        ],
        &env,
    );
    assert!(
        show(&out).contains("--provider \"alibabacloud\" is not supported"),
        "{}",
        show(&out)
    );
    let out = tidemark(
        &[
            "install",
            "--provider",
            "azure",
            "--bucket",
            "b",
            "--no-secret",
            "--dry-run",
        ],
        &env,
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(show(&out).contains("storageAccount"), "{}", show(&out));

    let mut dry = flags.clone();
    dry.extend(["--dry-run", "-o", "yaml"]);
    let out = tidemark(&dry, &env);
    assert!(out.status.success(), "{}", show(&out));
    assert!(show(&out).contains("--plugins velero/velero-plugin-for-aws:v1.13.0 not installed"));
    let printed: Vec<Value> = serde_yaml::Deserializer::from_slice(&out.stdout)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| v.is_object())
        .collect();
    let kinds: Vec<String> = printed
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    for want in [
        "Location/default",
        "Secret/cloud-credentials",
        "Secret/tidemark-node-agent-credentials",
        "DaemonSet/tidemark-node-agent",
        "Deployment/tidemark",
        "Namespace/velero-like-node-agent",
    ] {
        assert!(kinds.iter().any(|k| k == want), "{want} not in {kinds:?}");
    }

    // install --wait: waits until a controller runs and the Location is Available.
    let mut wait = flags.clone();
    wait.extend(["--wait", "--wait-timeout", "3m"]);
    let mut installer = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(&wait)
        .env("KUBECONFIG", &kc)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The installer's output line by line, as it comes: the controller is started only once
    // the installer says it waits for one.
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    let stdout = installer.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            all.push_str(&line);
            all.push('\n');
            let _ = lines_tx.send(line);
        }
        all
    });
    let waiting = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match lines_rx.recv_timeout(left) {
                Ok(l) if l.contains("waiting: no controller running") => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    })
    .await
    .unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(cluster.client.clone(), ns);
    wait_for(
        "the installed ServiceAccount",
        std::time::Duration::from_secs(60),
        || async { sas.get_opt("tidemark").await.ok().flatten() },
    )
    .await;
    let deps: Api<Deployment> = Api::namespaced(cluster.client.clone(), ns);
    let dep = wait_for(
        "the installed Deployment",
        std::time::Duration::from_secs(60),
        || async { deps.get_opt("tidemark").await.ok().flatten() },
    )
    .await;
    let container = dep.spec.unwrap().template.spec.unwrap().containers[0].clone();
    let args: Vec<String> = container
        .args
        .unwrap()
        .iter()
        .map(|a| a.replace("$(POD_NAMESPACE)", ns))
        .collect();
    assert_eq!(args[0], "server");
    assert!(
        args.contains(&"--default-volumes-to-fs-backup".to_string()),
        "{args:?}"
    );
    let sa_kc = dir.path().join("controller.kubeconfig");
    service_account_kubeconfig(&cluster.client, &cluster.kubeconfig, ns, "tidemark", &sa_kc).await;
    // `Server::start` passes --namespace itself; the rest are the Deployment's arguments.
    let extra: Vec<&str> = args[1..]
        .iter()
        .filter(|a| !a.starts_with("--namespace") && !a.starts_with("--log-format"))
        .map(String::as_str)
        .chain(["--identity", "stand-in"])
        .collect();
    let server = Server::start(&sa_kc, ns, &extra);
    let done = tokio::task::spawn_blocking(move || installer.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let said = format!("{}{}", reader.join().unwrap(), show(&done));
    assert!(
        done.status.success(),
        "{said}\nserver log:\n{}",
        server.log()
    );
    assert!(
        waiting,
        "the installer never said it waits for a controller: {said}"
    );
    assert!(
        said.contains("Controller ready: Lease tidemark-controller held by stand-in"),
        "{said}"
    );
    assert!(said.contains("Location default is Available."), "{said}");

    // What --dry-run printed is what was applied (the generated repository password aside).
    let discovery = kube::discovery::Discovery::new(cluster.client.clone())
        .run_aggregated()
        .await
        .unwrap();
    for d in &printed {
        let tm = kube::core::TypeMeta {
            api_version: d["apiVersion"].as_str().unwrap().into(),
            kind: d["kind"].as_str().unwrap().into(),
        };
        let (ar, caps) = discovery.resolve_typemeta(&tm).expect("served");
        let api: Api<kube::api::DynamicObject> =
            match (caps.scope, d["metadata"]["namespace"].as_str()) {
                (kube::discovery::Scope::Namespaced, Some(n)) => {
                    Api::namespaced_with(cluster.client.clone(), n, &ar)
                }
                _ => Api::all_with(cluster.client.clone(), &ar),
            };
        let live = api
            .get(d["metadata"]["name"].as_str().unwrap())
            .await
            .unwrap();
        let live = serde_json::to_value(&live).unwrap();
        let mut want = d.clone();
        if want["metadata"]["name"] == "tidemark-repo-credentials" {
            want.as_object_mut().unwrap().remove("data");
        }
        let diff = subset_diff(
            &want,
            &live,
            &format!("{}/{}", tm.kind, want["metadata"]["name"]),
        );
        assert!(
            diff.is_empty(),
            "dry run differs from the cluster: {diff:#?}"
        );
    }
    // Both namespaces hold the same repository password; installing again keeps it.
    let password = |n: &'static str| {
        let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), n);
        async move {
            secrets
                .get("tidemark-repo-credentials")
                .await
                .unwrap()
                .data
                .unwrap()["repository-password"]
                .0
                .clone()
        }
    };
    let first = password("velero-like").await;
    assert_eq!(first.len(), 64);
    assert_eq!(password("velero-like-node-agent").await, first);
    let out = tidemark(&flags, &env);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        show(&out).contains("Secret/tidemark-repo-credentials kept"),
        "{}",
        show(&out)
    );
    assert_eq!(password("velero-like").await, first);

    // The installed controller backs up into the installed Location, with the server default.
    let backup = serde_json::json!({
        "apiVersion": "tidemark.dev/v1alpha1", "kind": "Backup",
        "metadata": {"name": "after-install", "namespace": ns},
        "spec": {"template": {"includedNamespaces": ["default"]}},
    });
    apply_docs(&cluster.client, &[backup]).await;
    let location = minio.url(&prefix);
    let mut store_env = minio.env_with(&kc);
    store_env.push(("TIDEMARK_LOCATION", location.as_str()));
    let record: Value = wait_for(
        "the backup's record in the bucket",
        std::time::Duration::from_secs(90),
        || {
            let store_env = store_env.clone();
            async move {
                let out = tidemark(
                    &["backup", "get", "after-install", "-o", "json"],
                    &store_env,
                );
                if !out.status.success() {
                    return None;
                }
                let v: Value = serde_json::from_slice(&out.stdout).ok()?;
                let b = v.get("items").and_then(|i| i.get(0)).cloned().unwrap_or(v);
                (b["status"]["phase"] == "Completed").then_some(b)
            }
        },
    )
    .await;
    assert_eq!(
        record["spec"]["defaultVolumesToFsBackup"], true,
        "{record:#}"
    );
    drop(server);

    let out = tidemark(
        &["uninstall", "--namespace", ns, "--confirm", "--wait"],
        &env,
    );
    assert!(out.status.success(), "{}", show(&out));
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    for n in ["velero-like", "velero-like-node-agent"] {
        assert!(
            namespaces.get_opt(n).await.unwrap().is_none(),
            "{n} left behind"
        );
    }
    let crbs: Api<ClusterRoleBinding> = Api::all(cluster.client.clone());
    assert!(crbs.get_opt("tidemark-node-agent").await.unwrap().is_none());
    // The bucket keeps the backup.
    let out = tidemark(&["backup", "get", "after-install"], &store_env);
    assert!(out.status.success(), "{}", show(&out));
}

/// One Secret for the age passphrase of a Location's `spec.encryption` and the restic
/// repositories' password (`repository-password`): `install --repo-password-secret` mounts that
/// key alone into the controller (accepted by the API server as rendered), gives the node agent
/// a copy in its own namespace and creates no `tidemark-repo-credentials` beside the user's
/// Secret; a missing key, or a node agent copy holding another password, is refused before
/// anything is applied; and the controller opens the Location encrypted with that same Secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repository_password_comes_from_the_encryption_secret() {
    use k8s_openapi::api::core::v1::Secret;
    use serde_json::json;
    use std::time::Duration;

    let cluster = Cluster::up(&unique("install-pw")).await;
    let kc = cluster.kubeconfig.to_str().unwrap().to_string();
    let env = [("KUBECONFIG", kc.as_str())];
    let ns = "vault-system";
    let key_secret = |password: Option<&str>| {
        let mut data = json!({"passphrase": "correct horse battery staple"});
        if let Some(p) = password {
            data["repository-password"] = json!(p);
        }
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "backup-key", "namespace": ns}, "stringData": data})
    };
    apply_docs(
        &cluster.client,
        &[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            key_secret(None),
        ],
    )
    .await;
    let flags = [
        "install",
        "--namespace",
        ns,
        "--use-node-agent",
        "--repo-password-secret",
        "backup-key",
    ];
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), ns);

    // The Secret has no repository-password yet: refused, nothing applied.
    let out = tidemark(&flags, &env);
    let said = show(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(
            "--repo-password-secret: Secret vault-system/backup-key has no key repository-password"
        ),
        "{said}"
    );
    assert!(deployments.get_opt("tidemark").await.unwrap().is_none());

    // With it: the controller mounts that key of that Secret, the node agent gets a copy.
    let mut secrets = vec![key_secret(Some("restic-from-backup-key"))];
    apply_docs(&cluster.client, &secrets).await;
    let out = tidemark(&flags, &env);
    assert!(out.status.success(), "{}", show(&out));
    let d = deployments.get("tidemark").await.unwrap();
    let vol = d
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "repo-credentials")
        .unwrap()
        .secret
        .unwrap();
    assert_eq!(vol.secret_name.as_deref(), Some("backup-key"));
    let items = vol.items.unwrap();
    assert_eq!(
        (items[0].key.as_str(), items[0].path.as_str(), items.len()),
        ("repository-password", "repository-password", 1)
    );
    let in_ns: Api<Secret> = Api::namespaced(cluster.client.clone(), ns);
    assert!(
        in_ns
            .get_opt("tidemark-repo-credentials")
            .await
            .unwrap()
            .is_none()
    );
    let agent: Api<Secret> = Api::namespaced(cluster.client.clone(), "vault-system-node-agent");
    let copy = agent.get("tidemark-repo-credentials").await.unwrap();
    assert_eq!(
        copy.data.unwrap()["repository-password"].0,
        b"restic-from-backup-key"
    );

    // The encryption Secret now says another password than the node agent's repositories
    // were written with: refused.
    secrets[0] = key_secret(Some("another"));
    apply_docs(&cluster.client, &secrets).await;
    let out = tidemark(&flags, &env);
    let said = show(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("holds another password"), "{said}");
    apply_docs(
        &cluster.client,
        &[key_secret(Some("restic-from-backup-key"))],
    )
    .await;

    // The same Secret still serves the Location's encryption (its extra key is ignored there).
    let store = tempfile::tempdir().unwrap();
    apply_docs(
        &cluster.client,
        &[
            json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Location",
                 "metadata": {"name": "vault", "namespace": ns},
                 "spec": {"provider": "filesystem", "bucket": store.path().to_str().unwrap(),
                          "encryption": {"secretName": "backup-key"}, "validationPeriod": "2s"}}),
        ],
    )
    .await;
    let server = Server::start(&cluster.kubeconfig, ns, &[]);
    let locations: Api<tidemark::api::tidemark::Location> =
        Api::namespaced(cluster.client.clone(), ns);
    wait_for(
        "Location vault Available",
        Duration::from_secs(60),
        || async {
            let l = locations.get("vault").await.ok()?;
            (l.status?.phase.as_deref() == Some("Available")).then_some(())
        },
    )
    .await;
    drop(server);
}
