//! The install manifests under `kustomize/` (base and every overlay): each renders with
//! kustomize (the one built into the pinned kubectl of `scripts/testenv`), keeps the RBAC and
//! pod hardening promised in its comments, and is accepted by a real kube-apiserver
//! (`kubectl apply --server-side --dry-run=server`) after the CRDs and the namespace have been
//! created for real: a dry run of a custom resource needs its CRD Established, and a dry run of
//! a namespaced object needs its namespace to exist.

mod support;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use support::*;

/// Every kustomization a user may apply.
const INSTALLS: [&str; 5] = [
    "kustomize/base",
    "kustomize/overlays/local-minio",
    "kustomize/overlays/production",
    "kustomize/overlays/backup-only",
    "kustomize/overlays/git-source",
];

/// Runs kubectl with `args`, feeding `stdin`.
fn run_kubectl(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(testenv_kubectl())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .expect("write kubectl stdin");
    child.wait_with_output().expect("wait for kubectl")
}

/// `kubectl kustomize DIR`.
fn render(dir: &str) -> String {
    let path = repo().join(dir);
    let out = run_kubectl(&["kustomize", path.to_str().unwrap()], "");
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        show(&out)
    );
    String::from_utf8(out.stdout).expect("utf-8 manifests")
}

fn docs(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .filter_map(|d| {
            let v: Value = serde::Deserialize::deserialize(d).ok()?;
            v.is_object().then_some(v)
        })
        .collect()
}

fn to_yaml(objs: &[&Value]) -> String {
    objs.iter()
        .map(|o| format!("---\n{}", serde_yaml::to_string(o).unwrap()))
        .collect()
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

const CLUSTER_SCOPED: [&str; 4] = [
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
];

#[test]
fn every_install_keeps_rbac_least_privilege_and_the_pod_hardened() {
    for dir in INSTALLS {
        let objs = docs(&render(dir));
        let kinds: Vec<&str> = objs.iter().filter_map(|o| o["kind"].as_str()).collect();
        assert_eq!(
            kinds
                .iter()
                .filter(|k| **k == "CustomResourceDefinition")
                .count(),
            9,
            "{dir}: the nine tidemark.dev CRDs"
        );

        for o in &objs {
            let kind = o["kind"].as_str().unwrap();
            let name = o["metadata"]["name"].as_str().unwrap();
            // Everything namespaced lands in tidemark.
            if !CLUSTER_SCOPED.contains(&kind) {
                assert_eq!(
                    o["metadata"]["namespace"], "tidemark",
                    "{dir}: {kind}/{name} namespace"
                );
            }
            // No privilege-escalation verbs anywhere, and no "*" verb.
            for rule in o["rules"].as_array().into_iter().flatten() {
                for verb in strs(&rule["verbs"]) {
                    assert!(
                        !["escalate", "bind", "impersonate", "*"].contains(&verb),
                        "{dir}: {kind}/{name} grants {verb}"
                    );
                }
            }
            // Every binding is to tidemark's own account, and only to it.
            if kind.ends_with("Binding") {
                let subjects = o["subjects"].as_array().unwrap();
                assert_eq!(subjects.len(), 1, "{dir}: {kind}/{name} subjects");
                assert_eq!(subjects[0]["kind"], "ServiceAccount");
                assert_eq!(subjects[0]["name"], "tidemark");
                assert_eq!(subjects[0]["namespace"], "tidemark");
            }
        }

        // Backup: read-only, everything; writes only to CSI snapshot objects (it takes
        // VolumeSnapshots, retains their contents and removes them, deletes storage
        // snapshots through contents).
        let backup = find(&objs, "ClusterRole", "tidemark-backup").expect("tidemark-backup");
        for rule in backup["rules"].as_array().unwrap() {
            if strs(&rule["apiGroups"]) == ["snapshot.storage.k8s.io"] {
                assert_eq!(
                    strs(&rule["resources"]),
                    ["volumesnapshots", "volumesnapshotcontents"],
                    "{dir}"
                );
                assert_eq!(strs(&rule["verbs"]), ["create", "patch", "delete"], "{dir}");
            } else {
                assert_eq!(strs(&rule["verbs"]), ["get", "list", "watch"], "{dir}");
            }
        }
        assert!(find(&objs, "ClusterRoleBinding", "tidemark-backup").is_some());

        // Hooks: exec into pods, nothing else.
        let hooks = find(&objs, "ClusterRole", "tidemark-hooks").expect("tidemark-hooks");
        let mut granted: Vec<(Vec<&str>, Vec<&str>)> = hooks["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (strs(&r["resources"]), strs(&r["verbs"])))
            .collect();
        granted.sort();
        assert_eq!(
            granted,
            [
                (vec!["pods"], vec!["get"]),
                (vec!["pods/exec"], vec!["create", "get"])
            ],
            "{dir}"
        );

        // Restore: writes, never deletes; absent from backup-only.
        let restore = find(&objs, "ClusterRole", "tidemark-restore");
        let restore_binding = find(&objs, "ClusterRoleBinding", "tidemark-restore");
        if dir.ends_with("backup-only") {
            assert!(
                restore.is_none() && restore_binding.is_none(),
                "{dir} keeps the restore grant"
            );
        } else {
            let restore = restore.expect("tidemark-restore");
            assert!(restore_binding.is_some(), "{dir}: restore binding");
            for rule in restore["rules"].as_array().unwrap() {
                let verbs = strs(&rule["verbs"]);
                assert!(
                    !verbs.contains(&"delete") && !verbs.contains(&"deletecollection"),
                    "{dir}: the restore role deletes"
                );
            }
        }

        // The controller's own Role: namespaced, no wildcards.
        let role = find(&objs, "Role", "tidemark-controller").expect("tidemark-controller");
        for rule in role["rules"].as_array().unwrap() {
            assert!(
                !strs(&rule["apiGroups"]).contains(&"*"),
                "{dir}: Role apiGroups *"
            );
            assert!(
                !strs(&rule["resources"]).contains(&"*"),
                "{dir}: Role resources *"
            );
        }
        let secrets_rule = role["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| strs(&r["resources"]).contains(&"secrets"))
            .expect("secrets rule");
        assert_eq!(strs(&secrets_rule["verbs"]), ["get", "list", "watch"]);

        // The Deployment.
        let deploy = find(&objs, "Deployment", "tidemark").expect("Deployment tidemark");
        let pod = &deploy["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], "tidemark");
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        let containers = pod["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1);
        let c = &containers[0];
        assert_eq!(c["image"], "ghcr.io/tidemark/tidemark:0.1.0");
        assert_eq!(
            strs(&c["args"]),
            [
                "server",
                "--namespace=$(POD_NAMESPACE)",
                "--leader-elect",
                "--log-format=json"
            ]
        );
        let env = c["env"].as_array().unwrap();
        assert!(env.iter().any(|e| e["name"] == "POD_NAMESPACE"
            && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"));
        let sc = &c["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{dir}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{dir}");
        assert_eq!(strs(&sc["capabilities"]["drop"]), ["ALL"], "{dir}");
        let ports: Vec<(i64, &str)> = c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["containerPort"].as_i64().unwrap(),
                    p["name"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(ports, [(8085, "metrics"), (8086, "health")]);
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
        for k in ["requests", "limits"] {
            assert!(c["resources"][k]["memory"].is_string(), "{dir}: memory {k}");
        }
        assert!(
            c["resources"]["requests"]["cpu"].is_string(),
            "{dir}: cpu request"
        );
        let tmp = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == "/tmp")
            .expect("/tmp mount");
        let vol = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == tmp["name"])
            .expect("/tmp volume");
        assert!(vol["emptyDir"].is_object(), "{dir}: /tmp is an emptyDir");

        let metrics = find(&objs, "Service", "tidemark-metrics").expect("metrics Service");
        assert_eq!(metrics["spec"]["ports"][0]["port"], 8085);

        // Overlay specifics.
        match dir.rsplit('/').next().unwrap() {
            "local-minio" => {
                let loc = find(&objs, "Location", "local-minio").expect("Location");
                assert_eq!(loc["spec"]["default"], true);
                assert_eq!(loc["spec"]["config"]["s3ForcePathStyle"], "true");
                assert_eq!(loc["spec"]["config"]["region"], "us-east-1");
                assert_eq!(
                    loc["spec"]["config"]["s3Url"],
                    "http://minio.tidemark.svc:9000"
                );
                assert_eq!(loc["spec"]["bucket"], "tidemark");
                // The Location follows the generated Secret's hashed name.
                let secret_name = loc["spec"]["credential"]["name"].as_str().unwrap();
                assert!(secret_name.starts_with("tidemark-minio-credentials-"));
                let secret = find(&objs, "Secret", secret_name).expect("credential Secret");
                let key = loc["spec"]["credential"]["key"].as_str().unwrap();
                assert!(secret["data"][key].is_string(), "Secret has key {key}");
            }
            "production" => {
                assert_eq!(deploy["spec"]["replicas"], 2);
                let sa = find(&objs, "ServiceAccount", "tidemark").unwrap();
                assert!(
                    sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
                        .as_str()
                        .is_some_and(|a| a.starts_with("arn:aws:iam::")),
                    "IRSA annotation"
                );
                let loc = find(&objs, "Location", "production").expect("Location");
                assert!(loc["spec"]["config"]["region"].is_string());
                assert_eq!(loc["spec"]["default"], true);
                let policy = find(&objs, "BackupPolicy", "nightly").expect("BackupPolicy");
                assert_eq!(policy["spec"]["template"]["ttl"], "720h");
                assert_eq!(policy["spec"]["template"]["location"], "production");
                let sched = find(&objs, "Schedule", "nightly").expect("Schedule");
                assert_eq!(sched["spec"]["policy"], "nightly");
                assert!(sched["spec"]["schedule"].is_string());
            }
            _ => {
                assert_eq!(deploy["spec"]["replicas"], 1, "{dir}");
            }
        }
    }
}

#[test]
fn node_agent_is_least_privilege_and_outside_the_restricted_namespace() {
    let objs = docs(&render("kustomize/node-agent"));
    let ns = find(&objs, "Namespace", "tidemark-node-agent").expect("its Namespace");
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "privileged"
    );
    for o in &objs {
        let kind = o["kind"].as_str().unwrap();
        for rule in o["rules"].as_array().into_iter().flatten() {
            for verb in strs(&rule["verbs"]) {
                assert!(
                    !["escalate", "bind", "impersonate", "*", "create", "delete"].contains(&verb),
                    "{kind} grants {verb}"
                );
            }
            assert!(!strs(&rule["resources"]).contains(&"*"));
            assert!(!strs(&rule["resources"]).contains(&"secrets"));
        }
        if kind.ends_with("Binding") {
            let subjects = o["subjects"].as_array().unwrap();
            assert_eq!(subjects.len(), 1);
            assert_eq!(subjects[0]["name"], "tidemark-node-agent");
            assert_eq!(subjects[0]["namespace"], "tidemark-node-agent");
        }
    }
    // Records are read in tidemark; only pods and claims cluster-wide, read-only.
    let role = find(&objs, "Role", "tidemark-node-agent").unwrap();
    assert_eq!(role["metadata"]["namespace"], "tidemark");
    let cr = find(&objs, "ClusterRole", "tidemark-node-agent").unwrap();
    for rule in cr["rules"].as_array().unwrap() {
        assert_eq!(strs(&rule["verbs"]), ["get"]);
    }
    let ds = find(&objs, "DaemonSet", "tidemark-node-agent").expect("DaemonSet");
    assert_eq!(ds["metadata"]["namespace"], "tidemark-node-agent");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "tidemark-node-agent");
    let c = &pod["containers"][0];
    assert!(strs(&c["args"]).contains(&"--namespace=tidemark"));
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(strs(&sc["capabilities"]["drop"]), ["ALL"]);
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "kubelet-pods")
        .expect("kubelet pods mount");
    assert_eq!(mount["mountPropagation"], "HostToContainer");
    let vol = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "kubelet-pods")
        .unwrap();
    assert_eq!(vol["hostPath"]["path"], "/var/lib/kubelet/pods");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_install_is_accepted_by_a_real_api_server() {
    let cluster = Cluster::up(&unique("install")).await;
    let kubeconfig = cluster.kubeconfig.to_str().unwrap().to_string();
    let k = |args: &[&str], stdin: &str| {
        let mut all = vec!["--kubeconfig", kubeconfig.as_str()];
        all.extend_from_slice(args);
        run_kubectl(&all, stdin)
    };

    // The CRDs for real, then wait until they are Established.
    let crds = repo().join("crds");
    let out = k(
        &["apply", "--server-side", "-k", crds.to_str().unwrap()],
        "",
    );
    assert!(out.status.success(), "apply crds: {}", show(&out));
    let crd_names: Vec<String> = docs(&render("crds"))
        .iter()
        .map(|c| c["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(crd_names.len(), 9);
    wait_established(&cluster.client, &crd_names).await;

    // The namespace for real (with its Pod Security labels, so the dry runs below are
    // checked against the "restricted" profile).
    let base = docs(&render("kustomize/base"));
    let ns = find(&base, "Namespace", "tidemark").expect("Namespace");
    let out = k(&["apply", "--server-side", "-f", "-"], &to_yaml(&[ns]));
    assert!(out.status.success(), "apply namespace: {}", show(&out));

    // The restricted profile is enforced there: a bare pod is refused, so the Deployment
    // passing below means something.
    let bare = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "bare", "namespace": "tidemark"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    });
    let out = k(
        &["apply", "--server-side", "--dry-run=server", "-f", "-"],
        &to_yaml(&[&bare]),
    );
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("PodSecurity"),
        "a bare pod should violate the restricted profile: {}",
        show(&out)
    );

    let mut failures = Vec::new();
    for dir in INSTALLS {
        let out = k(
            &[
                "apply",
                "--server-side",
                "--dry-run=server",
                "--field-manager=tidemark-install-test",
                "-f",
                "-",
            ],
            &render(dir),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            failures.push(format!("{dir}: {}", show(&out)));
        } else if stderr.contains("Warning") {
            // e.g. "would violate PodSecurity", deprecated APIs.
            failures.push(format!("{dir}: accepted with warnings: {stderr}"));
        } else {
            eprintln!(
                "{dir}: accepted:\n{}",
                String::from_utf8_lossy(&out.stdout).trim_end()
            );
        }
    }

    // The node agent: its namespace for real, then the rest (DaemonSet, RBAC) as a dry run.
    let agent = docs(&render("kustomize/node-agent"));
    let agent_ns = find(&agent, "Namespace", "tidemark-node-agent").unwrap();
    let out = k(
        &["apply", "--server-side", "-f", "-"],
        &to_yaml(&[agent_ns]),
    );
    assert!(out.status.success(), "apply namespace: {}", show(&out));
    let rest: Vec<&Value> = agent.iter().filter(|o| o["kind"] != "Namespace").collect();
    let out = k(
        &["apply", "--server-side", "--dry-run=server", "-f", "-"],
        &to_yaml(&rest),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || stderr.contains("Warning") {
        failures.push(format!("kustomize/node-agent: {}", show(&out)));
    }

    // The Argo CD health checks' test inputs are valid objects too (their spec; status is a
    // subresource a dry-run apply ignores).
    let health = repo().join("kustomize/argocd/health");
    let mut inputs = Vec::new();
    for kind_dir in std::fs::read_dir(&health).unwrap() {
        for f in std::fs::read_dir(kind_dir.unwrap().path().join("testdata")).unwrap() {
            let path = f.unwrap().path();
            let mut obj = docs(&std::fs::read_to_string(&path).unwrap())
                .pop()
                .unwrap_or_else(|| panic!("{}: no object", path.display()));
            let m = obj.as_object_mut().unwrap();
            m.remove("status");
            let meta = m["metadata"].as_object_mut().unwrap();
            meta.retain(|k, _| k == "name" || k == "namespace");
            // One object per kind and name in a single apply: make names unique.
            let stem = path.file_stem().unwrap().to_string_lossy().to_string();
            let name = format!("{}-{stem}", meta["name"].as_str().unwrap());
            meta.insert("name".into(), Value::String(name));
            inputs.push(obj);
        }
    }
    let refs: Vec<&Value> = inputs.iter().collect();
    let out = k(
        &["apply", "--server-side", "--dry-run=server", "-f", "-"],
        &to_yaml(&refs),
    );
    if !out.status.success() {
        failures.push(format!("argocd health testdata: {}", show(&out)));
    }

    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
