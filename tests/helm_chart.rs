//! The Helm chart `charts/tidemark` (issue 19), driven by the real Helm CLI: v4.3.2, built from
//! the Go module proxy by `scripts/testenv build` (pinned in `tests/testenv/go/helm`;
//! `$TIDEMARK_HELM` points elsewhere).
//!
//! - The chart's CRDs are `crds/tidemark.dev.yaml` byte for byte, and its Argo CD values file
//!   holds the Lua health checks of `kustomize/argocd/health` (`TIDEMARK_BLESS=1` rewrites both).
//! - `helm lint --strict` passes with default and with full values.
//! - With default values, `helm template` renders the objects of `kustomize/install.yaml` one
//!   for one (kinds, names, namespaces, RBAC rules, the whole Deployment spec), apart from
//!   Helm's labels; `deployNodeAgent=true` adds exactly `kustomize/node-agent`'s objects,
//!   `rbac.restore=false` renders `overlays/backup-only`, and values written like
//!   `overlays/production` render that overlay.
//! - Values (Locations, schedules, policies, node agent, ServiceMonitor) render what they say,
//!   values the chart cannot honour fail the render with a message, and a real kube-apiserver
//!   accepts every rendered object (`kubectl apply --server-side --dry-run=server`, after the
//!   CRDs and namespaces were created for real). The ServiceMonitor is checked against the
//!   Prometheus operator's own CRD, taken offline from the shared corpus
//!   (`../shared/corpus/crds/monitoring.coreos.com_servicemonitors.yaml`, operator 0.93.0).
//! - `helm install` into a test cluster, the controller Ready and a Location from values
//!   Available against MinIO; `helm upgrade` with changed values (a second Location, other
//!   resources, a paused schedule, no node agent) changes the cluster accordingly; `helm
//!   uninstall` removes the release's objects and keeps the CRDs and the namespace.
//!
//! The test cluster has no node, so no Pod can run: the Deployment is stood in for by `tidemark
//! server` run as a local process with the installed Deployment's own arguments, authenticated
//! as the chart's ServiceAccount (a TokenRequest token), so that what is exercised is the
//! chart's RBAC, not an administrator's.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use serde_json::{Value, json};
use support::*;

const CHART: &str = "charts/tidemark";
/// Release name and namespace of the README's install command: object names equal
/// kustomize/base's.
const RELEASE: &str = "tidemark";

/// Labels Helm charts conventionally add (kustomize/base has none of them).
const HELM_LABELS: [&str; 4] = [
    "helm.sh/chart",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
];

/// The Argo CD kinds, in the order of kustomize/argocd/argocd-cm-patch.yaml.
const ARGOCD_KINDS: [&str; 7] = [
    "Location",
    "BackupPolicy",
    "Schedule",
    "RestorePlan",
    "Backup",
    "Restore",
    "GitSource",
];

// ---------------------------------------------------------------------------------------------
// Running helm and kubectl
// ---------------------------------------------------------------------------------------------

/// Runs `cmd` with `args`, feeding `stdin`.
fn run(cmd: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", cmd.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait for the process")
}

/// Helm's own configuration, cache and data directories, in Cargo's scratch directory for
/// integration tests: nothing of the user's Helm setup is read or written.
fn helm_home() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("helm-home")
}

/// `helm ARGS`, run from the repository root (clusters are named with `--kubeconfig`).
fn helm(args: &[&str]) -> Output {
    let home = helm_home();
    Command::new(testenv_helm())
        .current_dir(repo())
        .args(args)
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env_remove("KUBECONFIG")
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", testenv_helm().display()))
}

/// `helm ARGS`, which must succeed; its stdout.
fn helm_ok(args: &[&str]) -> String {
    let out = helm(args);
    assert!(out.status.success(), "helm {args:?}: {}", show(&out));
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The YAML documents of `yaml` that are objects.
fn docs(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .filter_map(|d| {
            let v: Value = serde::Deserialize::deserialize(d).ok()?;
            (v.is_object() && v.get("kind").is_some()).then_some(v)
        })
        .collect()
}

fn to_yaml<'a>(objs: impl IntoIterator<Item = &'a Value>) -> String {
    objs.into_iter()
        .map(|o| format!("---\n{}", serde_yaml::to_string(o).unwrap()))
        .collect()
}

/// A values file holding `values`.
fn values_file(dir: &Path, name: &str, values: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_yaml::to_string(values).unwrap()).unwrap();
    path
}

/// `helm template RELEASE charts/tidemark --namespace NS --include-crds [-f FILE]... [ARGS]`.
fn template(namespace: &str, files: &[&Path], extra: &[&str]) -> Vec<Value> {
    let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let mut args = vec![
        "template",
        RELEASE,
        CHART,
        "--namespace",
        namespace,
        "--include-crds",
    ];
    for f in &files {
        args.extend(["-f", f.as_str()]);
    }
    args.extend_from_slice(extra);
    docs(&helm_ok(&args))
}

/// `kubectl kustomize DIR`.
fn kustomize(dir: &str) -> Vec<Value> {
    let out = run(
        &testenv_kubectl(),
        &["kustomize", repo().join(dir).to_str().unwrap()],
        "",
    );
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        show(&out)
    );
    docs(&String::from_utf8(out.stdout).unwrap())
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| {
            panic!(
                "no {kind}/{name} among {:?}",
                objs.iter().map(key).collect::<Vec<_>>()
            )
        })
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Comparing objects
// ---------------------------------------------------------------------------------------------

/// kind, namespace and name.
fn key(o: &Value) -> String {
    format!(
        "{}/{}/{}",
        o["kind"].as_str().unwrap_or("?"),
        o["metadata"]["namespace"].as_str().unwrap_or(""),
        o["metadata"]["name"].as_str().unwrap_or("?")
    )
}

fn strip_helm_labels(labels: Option<&mut Value>) {
    if let Some(map) = labels.and_then(Value::as_object_mut) {
        for l in HELM_LABELS {
            map.remove(l);
        }
    }
}

/// An object with what Helm adds by convention taken away: its labels (also in selectors and
/// pod templates) and the Namespace's `helm.sh/resource-policy: keep`. CRDs lose their labels
/// altogether: Helm installs `crds/` as files, untemplated, so they cannot carry the
/// `part-of` label kustomize adds (their content is compared byte for byte in
/// `chart_copies_are_in_step`).
fn normalise(o: &Value) -> Value {
    let mut o = o.clone();
    let kind = o["kind"].as_str().unwrap_or_default().to_string();
    strip_helm_labels(o.pointer_mut("/metadata/labels"));
    strip_helm_labels(o.pointer_mut("/spec/selector/matchLabels"));
    strip_helm_labels(o.pointer_mut("/spec/template/metadata/labels"));
    if kind == "Service" {
        strip_helm_labels(o.pointer_mut("/spec/selector"));
    }
    let meta = o["metadata"].as_object_mut().unwrap();
    if kind == "CustomResourceDefinition" {
        meta.remove("labels");
    }
    if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
        a.remove("helm.sh/resource-policy");
    }
    for field in ["labels", "annotations"] {
        if meta
            .get(field)
            .and_then(Value::as_object)
            .is_some_and(|m| m.is_empty())
        {
            meta.remove(field);
        }
    }
    o
}

/// Paths (JSON pointers) where `a` and `b` differ.
fn diff_paths(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let p = format!("{path}/{k}");
                diff_paths(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    &p,
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                diff_paths(u, v, &format!("{path}/{i}"), out);
            }
        }
        // YAML's `0` and `0.0` (kustomize and Helm print the CRDs' `minimum: 0.0` differently)
        // are one number to the API server.
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => {}
        _ if a != b => out.push(format!("{path}: {a} != {b}")),
        _ => {}
    }
}

/// Asserts that `chart` and `expected` hold the same objects (by kind, namespace and name),
/// equal once normalised; the message lists every difference.
fn assert_same_objects(what: &str, chart: &[Value], expected: &[Value]) {
    let index = |objs: &[Value]| -> BTreeMap<String, Value> {
        let mut m = BTreeMap::new();
        for o in objs {
            assert!(
                m.insert(key(o), normalise(o)).is_none(),
                "{what}: {} twice",
                key(o)
            );
        }
        m
    };
    let (chart, expected) = (index(chart), index(expected));
    let mut problems = Vec::new();
    for (k, want) in &expected {
        match chart.get(k) {
            None => problems.push(format!("missing from the chart: {k}")),
            Some(got) => {
                let mut paths = Vec::new();
                diff_paths(got, want, "", &mut paths);
                if !paths.is_empty() {
                    problems.push(format!(
                        "{k} differs (chart != kustomize):\n  {}",
                        paths.join("\n  ")
                    ));
                }
            }
        }
    }
    for k in chart.keys().filter(|k| !expected.contains_key(*k)) {
        problems.push(format!("only in the chart: {k}"));
    }
    assert!(problems.is_empty(), "{what}:\n{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Files kept in step
// ---------------------------------------------------------------------------------------------

/// The chart's Argo CD values, generated from the health checks.
fn argo_cd_values() -> String {
    let mut out = String::from(
        "# Generated from kustomize/argocd/health/*/health.lua by tests/helm_chart.rs\n\
         # (TIDEMARK_BLESS=1 cargo test --test helm_chart); do not edit by hand.\n\
         #\n\
         # tidemark's Argo CD health checks as values of the argo-cd Helm chart (argo/argo-cd),\n\
         # which writes configs.cm into the argocd-cm ConfigMap:\n\
         #   helm upgrade argocd argo/argo-cd -n argocd --reuse-values -f argo-cd-values.yaml\n\
         # (Argo CD installed otherwise: kustomize/argocd/argocd-cm-patch.yaml holds the same.)\n\
         configs:\n\
         \x20 cm:\n",
    );
    for kind in ARGOCD_KINDS {
        let path = repo().join(format!(
            "kustomize/argocd/health/tidemark.dev_{kind}/health.lua"
        ));
        let script = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        out.push_str(&format!(
            "    resource.customizations.health.tidemark.dev_{kind}: |\n"
        ));
        for line in script.lines() {
            if !line.is_empty() {
                out.push_str("      ");
                out.push_str(line);
            }
            out.push('\n');
        }
    }
    out
}

/// `path` must hold `expected`; with `TIDEMARK_BLESS` set it is rewritten first.
fn assert_file(path: &Path, expected: &str) {
    if std::env::var_os("TIDEMARK_BLESS").is_some() {
        std::fs::write(path, expected).unwrap();
    }
    let on_disk = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        on_disk == expected,
        "{} is stale: run `TIDEMARK_BLESS=1 cargo test --test helm_chart`",
        path.display()
    );
}

#[test]
fn chart_copies_are_in_step() {
    // The CRDs: Helm installs charts/tidemark/crds/ before the templates; it must be the
    // generated file itself.
    let crds = std::fs::read_to_string(repo().join("crds/tidemark.dev.yaml")).unwrap();
    assert_file(&repo().join(CHART).join("crds/tidemark.dev.yaml"), &crds);

    // The Argo CD values: each key holds its script byte for byte.
    let path = repo().join(CHART).join("argocd/argo-cd-values.yaml");
    assert_file(&path, &argo_cd_values());
    let values: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let cm = values["configs"]["cm"].as_object().unwrap();
    assert_eq!(cm.len(), ARGOCD_KINDS.len());
    for kind in ARGOCD_KINDS {
        let script = std::fs::read_to_string(repo().join(format!(
            "kustomize/argocd/health/tidemark.dev_{kind}/health.lua"
        )))
        .unwrap();
        assert_eq!(
            cm[&format!("resource.customizations.health.tidemark.dev_{kind}")],
            script.as_str(),
            "{kind}"
        );
    }

    // The chart installs the crate's release, in the image kustomize/base names.
    let chart: Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo().join(CHART).join("Chart.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
    let deploy = find(
        &docs(&std::fs::read_to_string(repo().join("kustomize/install.yaml")).unwrap()),
        "Deployment",
        "tidemark",
    )
    .clone();
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("ghcr.io/tidemark/tidemark:{}", env!("CARGO_PKG_VERSION"))
    );
}

// ---------------------------------------------------------------------------------------------
// Lint and render
// ---------------------------------------------------------------------------------------------

/// Values touching every template: credentials, two Locations (one written with Velero's
/// spellings), schedules (inline Velero-style template, policy, disabled), a policy, the node
/// agent, the ServiceMonitor, a PodDisruptionBudget, server flags.
fn full_values() -> Value {
    json!({
        "replicaCount": 2,
        "podDisruptionBudget": {"enabled": true},
        "serviceAccount": {"server": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/t"}}},
        "credentials": {
            "secretContents": {"cloud": "[default]\naws_access_key_id=dry\naws_secret_access_key=dry-run-secret\n"},
            "extraEnvVars": {"AWS_ACCESS_KEY_ID": "dry", "AWS_SECRET_ACCESS_KEY": "dry-run-secret"}
        },
        "repository": {"password": "dry-run-password"},
        "configuration": {
            "backupStorageLocation": [
                {"name": "primary", "provider": "aws", "bucket": "backups", "prefix": "cluster-a",
                 "default": true, "validationFrequency": "30s",
                 "config": {"region": "us-east-1", "s3Url": "http://minio.example:9000", "s3ForcePathStyle": true}},
                {"name": "archive", "provider": "filesystem", "bucket": "/srv/archive",
                 "accessMode": "ReadOnly", "credential": {"name": "other", "key": "creds"},
                 "labels": {"tier": "cold"}}
            ],
            "backupSyncPeriod": "2m",
            "logLevel": "debug",
            "clientQPS": 50,
            "clientBurst": 100,
            "defaultVolumesToFsBackup": true,
            "extraArgs": ["--concurrency=8"],
            "extraEnvVars": {"RUST_BACKTRACE": 1}
        },
        "extraArgs": ["--max-concurrency=64"],
        "schedules": {
            "nightly": {
                "schedule": "0 2 * * *", "timeZone": "Europe/Paris", "skipImmediately": true,
                "labels": {"team": "ops"},
                "template": {"ttl": "240h", "storageLocation": "primary", "includedNamespaces": ["app"],
                             "snapshotVolumes": false, "defaultVolumesToFsBackup": true}
            },
            "weekly": {"schedule": "@every 168h", "policy": "everything", "paused": true},
            "retired": {"disabled": true, "schedule": "0 0 * * *", "policy": "everything"}
        },
        "backupPolicies": {
            "everything": {"template": {"excludedNamespaces": ["kube-node-lease"], "ttl": "720h"}}
        },
        "deployNodeAgent": true,
        "metrics": {"serviceMonitor": {"enabled": true, "additionalLabels": {"release": "prometheus"}}}
    })
}

#[test]
fn helm_lint_passes_with_default_and_full_values() {
    let dir = tempfile::tempdir().unwrap();
    let full = values_file(dir.path(), "full.yaml", &full_values());
    helm_ok(&["lint", "--strict", CHART]);
    helm_ok(&[
        "lint",
        "--strict",
        CHART,
        "--namespace",
        "backups",
        "-f",
        full.to_str().unwrap(),
    ]);
}

#[test]
fn default_values_render_the_kustomize_install() {
    let install = docs(&std::fs::read_to_string(repo().join("kustomize/install.yaml")).unwrap());
    let chart = template(RELEASE, &[], &[]);
    assert_same_objects("default values vs kustomize/install.yaml", &chart, &install);
    // Helm's labels are there, and only they were normalised away.
    let deploy = find(&chart, "Deployment", "tidemark");
    assert_eq!(
        deploy["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "Helm"
    );
    assert_eq!(
        deploy["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"],
        RELEASE
    );

    // The node agent: kustomize/node-agent's objects, added to the same.
    let agent = kustomize("kustomize/node-agent");
    let chart = template(RELEASE, &[], &["--set", "deployNodeAgent=true"]);
    let both: Vec<Value> = install.iter().chain(&agent).cloned().collect();
    assert_same_objects(
        "deployNodeAgent=true vs kustomize/node-agent",
        &chart,
        &both,
    );

    // Backups only: the restore grant goes, as in overlays/backup-only.
    let chart = template(RELEASE, &[], &["--set", "rbac.restore=false"]);
    assert_same_objects(
        "rbac.restore=false vs overlays/backup-only",
        &chart,
        &kustomize("kustomize/overlays/backup-only"),
    );

    // The production overlay, written as values.
    let dir = tempfile::tempdir().unwrap();
    let spread = |key: &str, when: &str| {
        json!({"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": when,
               "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "tidemark",
                                                 "app.kubernetes.io/component": "controller"}}})
    };
    let production = values_file(
        dir.path(),
        "production.yaml",
        &json!({
            "replicaCount": 2,
            "topologySpreadConstraints": [
                spread("kubernetes.io/hostname", "DoNotSchedule"),
                spread("topology.kubernetes.io/zone", "ScheduleAnyway")
            ],
            // `cpu: null` deletes the default CPU limit, as the overlay's patch does.
            "resources": {"requests": {"cpu": "250m", "memory": "512Mi"},
                          "limits": {"cpu": null, "memory": "2Gi"}},
            "podDisruptionBudget": {"enabled": true},
            "serviceAccount": {"server": {"annotations": {
                "eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/tidemark-backups",
                "eks.amazonaws.com/sts-regional-endpoints": "true"}}},
            "credentials": {"useSecret": false},
            "configuration": {"backupStorageLocation": [{
                "name": "production", "provider": "aws", "bucket": "example-corp-tidemark-backups",
                "prefix": "cluster-prod-eu-1", "config": {"region": "eu-west-1"},
                "accessMode": "ReadWrite", "default": true,
                "syncPeriod": "5m", "validationFrequency": "1m"}]},
            "backupPolicies": {"nightly": {"template": {
                "excludedNamespaces": ["kube-node-lease"], "storageLocation": "production",
                "ttl": "720h"}}},
            "schedules": {"nightly": {"schedule": "0 2 * * *", "timeZone": "Etc/UTC",
                                      "policy": "nightly", "paused": false,
                                      "skipImmediately": true}}
        }),
    );
    assert_same_objects(
        "production values vs overlays/production",
        &template(RELEASE, &[&production], &[]),
        &kustomize("kustomize/overlays/production"),
    );
}

#[test]
fn values_render_what_they_say() {
    let ns = "backups";
    let dir = tempfile::tempdir().unwrap();
    let full = values_file(dir.path(), "full.yaml", &full_values());
    let objs = template(ns, &[&full], &[]);

    // Release name "tidemark" in another namespace: the names stay, the namespaces follow
    // (the node agent's is derived from the release namespace).
    let agent_ns = "backups-node-agent";
    for o in &objs {
        let kind = o["kind"].as_str().unwrap();
        let namespace = &o["metadata"]["namespace"];
        if [
            "Namespace",
            "CustomResourceDefinition",
            "ClusterRole",
            "ClusterRoleBinding",
        ]
        .contains(&kind)
        {
            assert!(namespace.is_null(), "{}", key(o));
        } else {
            assert!(namespace == ns || namespace == agent_ns, "{}", key(o));
        }
        for s in o["subjects"].as_array().into_iter().flatten() {
            assert!(
                s["namespace"] == ns || s["namespace"] == agent_ns,
                "{}: {s}",
                key(o)
            );
        }
    }
    for kind in ["DaemonSet", "ServiceAccount"] {
        assert_eq!(
            find(&objs, kind, "tidemark-node-agent")["metadata"]["namespace"],
            agent_ns
        );
    }
    for kind in ["Role", "RoleBinding"] {
        assert_eq!(
            find(&objs, kind, "tidemark-node-agent")["metadata"]["namespace"],
            ns,
            "the node agent's {kind} is where the records are"
        );
    }

    // Credentials: the Secret (key cloud), referred to by the Location without its own.
    let secret = find(&objs, "Secret", "tidemark-credentials");
    assert!(secret["data"]["cloud"].is_string());
    let primary = &find(&objs, "Location", "primary")["spec"];
    assert_eq!(
        primary,
        &json!({"provider": "s3", "bucket": "backups", "prefix": "cluster-a",
                "config": {"region": "us-east-1", "s3Url": "http://minio.example:9000",
                           "s3ForcePathStyle": "true"},
                "credential": {"name": "tidemark-credentials", "key": "cloud"},
                "accessMode": "ReadWrite", "default": true,
                "syncPeriod": "2m", "validationPeriod": "30s"})
    );
    let archive = find(&objs, "Location", "archive");
    assert_eq!(archive["metadata"]["labels"]["tier"], "cold");
    assert_eq!(
        archive["spec"],
        json!({"provider": "filesystem", "bucket": "/srv/archive",
               "credential": {"name": "other", "key": "creds"},
               "accessMode": "ReadOnly", "default": false, "syncPeriod": "2m"})
    );

    // Schedules: Velero's template spellings translated; disabled ones left out.
    let nightly = find(&objs, "Schedule", "nightly");
    assert_eq!(nightly["metadata"]["labels"]["team"], "ops");
    assert_eq!(
        nightly["spec"],
        json!({"schedule": "0 2 * * *", "timeZone": "Europe/Paris", "skipImmediately": true,
               "template": {"ttl": "240h", "location": "primary", "includedNamespaces": ["app"],
                            "volumes": {"snapshotVolumes": false, "defaultVolumesToFsBackup": true}}})
    );
    assert_eq!(
        find(&objs, "Schedule", "weekly")["spec"],
        json!({"schedule": "@every 168h", "policy": "everything", "paused": true})
    );
    assert!(
        !objs.iter().any(|o| o["metadata"]["name"] == "retired"),
        "a disabled schedule is rendered"
    );
    assert_eq!(
        find(&objs, "BackupPolicy", "everything")["spec"],
        json!({"template": {"excludedNamespaces": ["kube-node-lease"], "ttl": "720h"}})
    );

    // The controller's flags and environment.
    let deploy = find(&objs, "Deployment", "tidemark");
    assert_eq!(deploy["spec"]["replicas"], 2);
    let c = &deploy["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        strs(&c["args"]),
        [
            "server",
            "--namespace=$(POD_NAMESPACE)",
            "--leader-elect",
            "--log-format=json",
            "--log-level=debug",
            "--client-qps=50",
            "--client-burst=100",
            "--default-volumes-to-fs-backup",
            "--concurrency=8",
            "--max-concurrency=64"
        ]
    );
    assert!(
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == &json!({"name": "RUST_BACKTRACE", "value": "1"}))
    );
    let sa = find(&objs, "ServiceAccount", "tidemark");
    assert!(sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].is_string());
    assert_eq!(
        find(&objs, "PodDisruptionBudget", "tidemark")["spec"]["maxUnavailable"],
        1
    );

    // The ServiceMonitor scrapes the metrics Service: its selector picks that Service's labels
    // (and the Service selects the controller's pods), in the release namespace, on the port
    // named in the Service.
    let sm = find(&objs, "ServiceMonitor", "tidemark");
    assert_eq!(sm["metadata"]["labels"]["release"], "prometheus");
    let service = find(&objs, "Service", "tidemark-metrics");
    let selector = sm["spec"]["selector"]["matchLabels"].as_object().unwrap();
    assert!(!selector.is_empty());
    for (k, v) in selector {
        assert_eq!(&service["metadata"]["labels"][k], v, "Service label {k}");
    }
    let pod_labels = &deploy["spec"]["template"]["metadata"]["labels"];
    for (k, v) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&pod_labels[k], v, "pod label {k}");
    }
    assert_eq!(strs(&sm["spec"]["namespaceSelector"]["matchNames"]), [ns]);
    let endpoint = &sm["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], service["spec"]["ports"][0]["name"]);
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(endpoint["interval"], "30s");

    // The node agent: in its own namespace, reading records in the release namespace, with the
    // repository password and its credentials in Secrets beside it.
    let ds = find(&objs, "DaemonSet", "tidemark-node-agent");
    assert!(
        strs(&ds["spec"]["template"]["spec"]["containers"][0]["args"])
            .contains(&"--namespace=backups")
    );
    let agent_secrets: Vec<&str> = objs
        .iter()
        .filter(|o| o["kind"] == "Secret" && o["metadata"]["namespace"] == agent_ns)
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        agent_secrets,
        [
            "tidemark-repo-credentials",
            "tidemark-node-agent-credentials"
        ]
    );
    assert!(
        find(&objs, "Secret", "tidemark-repo-credentials")["data"]["repository-password"]
            .is_string()
    );

    // Values the chart cannot honour stop the render with a message naming them.
    for (set, message) in [
        (
            "configuration.backupStorageLocation[0].bucket=b,configuration.backupStorageLocation[0].provider=gcp",
            "provider \"gcp\" is not supported",
        ),
        (
            "configuration.backupStorageLocation[0].name=x",
            "\"x\": bucket is required",
        ),
        ("schedules.s.policy=p", "schedules.s: schedule"),
        (
            "schedules.s.schedule=@daily",
            "schedules.s: set exactly one of policy and template",
        ),
    ] {
        let out = helm(&["template", RELEASE, CHART, "--set", set]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(message),
            "--set {set}: expected a failure saying {message:?}: {}",
            show(&out)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// A real API server
// ---------------------------------------------------------------------------------------------

/// `kubectl --kubeconfig KUBECONFIG ARGS` with `stdin`.
/// `repository.existingSecret`: the controller mounts key `repository-password` of the user's
/// Secret (the encryption Secret, say) alone, at the path `TIDEMARK_REPO_PASSWORD_FILE` names;
/// no `-repo-credentials` Secret is rendered beside it, only the node agent's copy in its own
/// namespace.
#[test]
fn the_repository_password_can_come_from_the_encryption_secret() {
    let objs = template(
        "backups",
        &[],
        &[
            "--set",
            "repository.existingSecret=backup-key,repository.password=pw,deployNodeAgent=true",
        ],
    );
    let deploy = find(&objs, "Deployment", "tidemark");
    let pod = &deploy["spec"]["template"]["spec"];
    let vol = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "repo-credentials")
        .unwrap();
    assert_eq!(vol["secret"]["secretName"], "backup-key");
    assert_eq!(
        vol["secret"]["items"],
        json!([{"key": "repository-password", "path": "repository-password"}])
    );
    let c = &pod["containers"][0];
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "repo-credentials")
        .unwrap();
    let file = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "TIDEMARK_REPO_PASSWORD_FILE")
        .unwrap();
    assert_eq!(
        file["value"].as_str().unwrap(),
        format!(
            "{}/repository-password",
            mount["mountPath"].as_str().unwrap()
        )
    );
    let repo_secrets: Vec<&Value> = objs
        .iter()
        .filter(|o| o["kind"] == "Secret" && o["metadata"]["name"] == "tidemark-repo-credentials")
        .collect();
    assert_eq!(repo_secrets.len(), 1, "{repo_secrets:?}");
    assert_eq!(
        repo_secrets[0]["metadata"]["namespace"],
        "backups-node-agent"
    );
    // Without it, the chart's own Secret, mounted whole.
    let objs = template(
        "backups",
        &[],
        &["--set", "repository.password=pw,deployNodeAgent=true"],
    );
    let deploy = serde_json::to_string(find(&objs, "Deployment", "tidemark")).unwrap();
    assert!(deploy.contains("\"secretName\":\"tidemark-repo-credentials\""));
    assert!(!deploy.contains("\"items\""));
}

fn kubectl(kubeconfig: &Path, args: &[&str], stdin: &str) -> Output {
    let mut all = vec!["--kubeconfig", kubeconfig.to_str().unwrap()];
    all.extend_from_slice(args);
    run(&testenv_kubectl(), &all, stdin)
}

/// The Prometheus operator's ServiceMonitor CRD, from the shared corpus.
fn servicemonitor_crd() -> Value {
    let path = corpus_dir().join("crds/monitoring.coreos.com_servicemonitors.yaml");
    assert!(
        path.is_file(),
        "{} is missing: the ServiceMonitor CRD comes from the shared corpus",
        path.display()
    );
    let mut crds = yaml_docs(&path);
    assert_eq!(crds.len(), 1, "{}", path.display());
    crds.pop().unwrap()
}

/// Applies the chart's CRDs and the ServiceMonitor CRD for real and waits until they are
/// Established.
async fn install_all_crds(cluster: &Cluster) {
    let mut crds = yaml_docs(&repo().join(CHART).join("crds/tidemark.dev.yaml"));
    crds.push(servicemonitor_crd());
    let names: Vec<String> = crds
        .iter()
        .map(|c| c["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    let out = kubectl(
        &cluster.kubeconfig,
        &["apply", "--server-side", "-f", "-"],
        &to_yaml(&crds),
    );
    assert!(out.status.success(), "apply CRDs: {}", show(&out));
    wait_established(&cluster.client, &names).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_chart_is_accepted_by_a_real_api_server() {
    let cluster = Cluster::up(&unique("helm-dry")).await;
    install_all_crds(&cluster).await;

    let ns = "tidemark-dry";
    let dir = tempfile::tempdir().unwrap();
    let full = values_file(dir.path(), "full.yaml", &full_values());
    for (what, objs) in [
        ("default values", template(ns, &[], &[])),
        ("full values", template(ns, &[&full], &[])),
    ] {
        let kinds: Vec<&str> = objs.iter().filter_map(|o| o["kind"].as_str()).collect();
        if what == "full values" {
            for kind in [
                "Location",
                "Schedule",
                "BackupPolicy",
                "ServiceMonitor",
                "DaemonSet",
                "PodDisruptionBudget",
                "Secret",
            ] {
                assert!(kinds.contains(&kind), "{what}: no {kind}");
            }
        }
        // The CRDs are in already; the namespaces for real, with their Pod Security labels, so
        // that the pods below are checked against "restricted" (controller) and "privileged"
        // (node agent).
        let namespaces: Vec<&Value> = objs.iter().filter(|o| o["kind"] == "Namespace").collect();
        let out = kubectl(
            &cluster.kubeconfig,
            &["apply", "--server-side", "-f", "-"],
            &to_yaml(namespaces),
        );
        assert!(out.status.success(), "{what}: namespaces: {}", show(&out));
        let rest: Vec<&Value> = objs
            .iter()
            .filter(|o| o["kind"] != "Namespace" && o["kind"] != "CustomResourceDefinition")
            .collect();
        let out = kubectl(
            &cluster.kubeconfig,
            &[
                "apply",
                "--server-side",
                "--dry-run=server",
                "--field-manager=tidemark-helm-test",
                "-f",
                "-",
            ],
            &to_yaml(rest.iter().copied()),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !stderr.contains("Warning"),
            "{what}: {}",
            show(&out)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            stdout
                .lines()
                .filter(|l| l.contains("(server dry run)"))
                .count(),
            rest.len(),
            "{what}: every object accepted:\n{stdout}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Install, upgrade, uninstall
// ---------------------------------------------------------------------------------------------

/// `kind/name` in `namespace` (cluster-scoped when `None`) as JSON, `None` when absent.
async fn get(
    client: &kube::Client,
    (group, version, kind, plural): (&str, &str, &str, &str),
    namespace: Option<&str>,
    name: &str,
) -> Option<Value> {
    let ar = ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: if group.is_empty() {
            version.into()
        } else {
            format!("{group}/{version}")
        },
        kind: kind.into(),
        plural: plural.into(),
    };
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    api.get_opt(name)
        .await
        .unwrap_or_else(|e| panic!("get {kind}/{name}: {e}"))
        .map(|o| serde_json::to_value(o).unwrap())
}

type Gvk = (&'static str, &'static str, &'static str, &'static str);
const NAMESPACE: Gvk = ("", "v1", "Namespace", "namespaces");
const SECRET: Gvk = ("", "v1", "Secret", "secrets");
const SERVICE: Gvk = ("", "v1", "Service", "services");
const SERVICE_ACCOUNT: Gvk = ("", "v1", "ServiceAccount", "serviceaccounts");
const DEPLOYMENT: Gvk = ("apps", "v1", "Deployment", "deployments");
const DAEMONSET: Gvk = ("apps", "v1", "DaemonSet", "daemonsets");
const ROLE: Gvk = ("rbac.authorization.k8s.io", "v1", "Role", "roles");
const ROLE_BINDING: Gvk = (
    "rbac.authorization.k8s.io",
    "v1",
    "RoleBinding",
    "rolebindings",
);
const CLUSTER_ROLE: Gvk = (
    "rbac.authorization.k8s.io",
    "v1",
    "ClusterRole",
    "clusterroles",
);
const CLUSTER_ROLE_BINDING: Gvk = (
    "rbac.authorization.k8s.io",
    "v1",
    "ClusterRoleBinding",
    "clusterrolebindings",
);
const CRD: Gvk = (
    "apiextensions.k8s.io",
    "v1",
    "CustomResourceDefinition",
    "customresourcedefinitions",
);
const LOCATION: Gvk = ("tidemark.dev", "v1alpha1", "Location", "locations");
const SCHEDULE: Gvk = ("tidemark.dev", "v1alpha1", "Schedule", "schedules");
const SERVICE_MONITOR: Gvk = (
    "monitoring.coreos.com",
    "v1",
    "ServiceMonitor",
    "servicemonitors",
);

/// The Location's phase is Available and its Ready condition True.
fn available(location: &Value) -> bool {
    location["status"]["phase"] == "Available"
        && location["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_upgrade_and_uninstall_on_a_real_cluster() {
    let cluster = Cluster::up(&unique("helm")).await;
    let minio = Minio::up(&unique("helm-minio"));
    let client = cluster.client.clone();
    let kubeconfig = cluster.kubeconfig.to_str().unwrap().to_string();
    let ns = RELEASE;
    // A cluster with the Prometheus operator's CRDs, so the ServiceMonitor can be installed.
    let sm_crd = servicemonitor_crd();
    let out = kubectl(
        &cluster.kubeconfig,
        &["apply", "--server-side", "-f", "-"],
        &to_yaml([&sm_crd]),
    );
    assert!(out.status.success(), "ServiceMonitor CRD: {}", show(&out));
    wait_established(&client, &["servicemonitors.monitoring.coreos.com".into()]).await;

    // Values as a Velero user writes them: MinIO's keys as the `cloud` credentials file, a
    // Location with provider aws, a schedule with an inline template.
    let dir = tempfile::tempdir().unwrap();
    let location = |name: &str, prefix: &str, mode: &str| {
        json!({"name": name, "provider": "aws", "bucket": minio.bucket(), "prefix": prefix,
               "default": mode == "ReadWrite", "accessMode": mode,
               "config": {"region": minio.env["AWS_REGION"], "s3Url": minio.env["AWS_ENDPOINT_URL"],
                          "s3ForcePathStyle": true},
               "syncPeriod": "3s", "validationFrequency": "3s"})
    };
    let mut values = json!({
        "credentials": {"secretContents": {"cloud": minio.credentials_file()}},
        "repository": {"password": "helm-test-password"},
        "configuration": {"backupStorageLocation": [location("default", "helm", "ReadWrite")],
                          // Server flags from values, which the stand-in below runs with.
                          "clientQPS": 50, "clientBurst": 100,
                          "defaultVolumesToFsBackup": true, "extraArgs": ["--concurrency=8"]},
        "extraArgs": ["--max-concurrency=64"],
        "schedules": {"nightly": {"schedule": "0 2 * * *", "skipImmediately": true,
                                  "template": {"ttl": "72h", "storageLocation": "default",
                                               "includedNamespaces": ["default"]}}},
        "deployNodeAgent": true,
        "metrics": {"serviceMonitor": {"enabled": true}}
    });
    let install_values = values_file(dir.path(), "install.yaml", &values);

    helm_ok(&[
        "install",
        RELEASE,
        CHART,
        "--kubeconfig",
        &kubeconfig,
        "--namespace",
        ns,
        "--create-namespace",
        "-f",
        install_values.to_str().unwrap(),
    ]);

    // What Helm created: the namespace took the Pod Security labels, the CRDs are there, and
    // the objects from values.
    let namespace = get(&client, NAMESPACE, None, ns).await.expect("namespace");
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    for crd in [
        "locations.tidemark.dev",
        "schedules.tidemark.dev",
        "backups.tidemark.dev",
    ] {
        assert!(get(&client, CRD, None, crd).await.is_some(), "CRD {crd}");
    }
    let schedule = get(&client, SCHEDULE, Some(ns), "nightly")
        .await
        .expect("Schedule");
    assert_eq!(schedule["spec"]["template"]["location"], "default");
    assert!(
        get(&client, SECRET, Some(ns), "tidemark-credentials")
            .await
            .is_some()
    );
    assert!(
        get(
            &client,
            DAEMONSET,
            Some("tidemark-node-agent"),
            "tidemark-node-agent"
        )
        .await
        .is_some()
    );
    assert!(
        get(&client, SERVICE_MONITOR, Some(ns), "tidemark")
            .await
            .is_some()
    );
    let deployment = get(&client, DEPLOYMENT, Some(ns), "tidemark")
        .await
        .expect("Deployment");

    // The stand-in for the Deployment's pod: `tidemark server` with the Deployment's own
    // arguments (the namespace is set by Server::start, as POD_NAMESPACE would be), as the
    // chart's ServiceAccount.
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<String> = strs(&container["args"])
        .into_iter()
        .filter(|a| *a != "server" && !a.starts_with("--namespace="))
        .map(str::to_string)
        .collect();
    let sa_name = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .unwrap();
    let sa_kubeconfig = dir.path().join("service-account.kubeconfig");
    service_account_kubeconfig(&client, &cluster.kubeconfig, ns, sa_name, &sa_kubeconfig).await;
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = Server::start(&sa_kubeconfig, ns, &arg_refs);
    let health_port = server.health_port;
    wait_for(
        "the controller Ready (/readyz)",
        Duration::from_secs(60),
        || {
            let exited = server.child.try_wait().unwrap();
            assert!(
                exited.is_none(),
                "tidemark server exited ({exited:?}):\n{}",
                server.log()
            );
            async move {
                let res = reqwest::get(format!("http://127.0.0.1:{health_port}/readyz"))
                    .await
                    .ok()?;
                res.status().is_success().then_some(())
            }
        },
    )
    .await;
    wait_for(
        "Location default Available",
        Duration::from_secs(60),
        || async {
            let l = get(&client, LOCATION, Some(ns), "default").await?;
            available(&l).then_some(())
        },
    )
    .await;

    // Upgrade: a second Location (read-only), more memory, the schedule paused, the node agent
    // gone.
    values["configuration"]["backupStorageLocation"]
        .as_array_mut()
        .unwrap()
        .push(location("replica", "helm-replica", "ReadOnly"));
    values["resources"] = json!({"requests": {"memory": "256Mi"}, "limits": {"memory": "1Gi"}});
    values["schedules"]["nightly"]["paused"] = json!(true);
    values["deployNodeAgent"] = json!(false);
    let upgrade_values = values_file(dir.path(), "upgrade.yaml", &values);
    helm_ok(&[
        "upgrade",
        RELEASE,
        CHART,
        "--kubeconfig",
        &kubeconfig,
        "--namespace",
        ns,
        "-f",
        upgrade_values.to_str().unwrap(),
    ]);
    let deployment = get(&client, DEPLOYMENT, Some(ns), "tidemark")
        .await
        .expect("Deployment");
    let resources = &deployment["spec"]["template"]["spec"]["containers"][0]["resources"];
    assert_eq!(
        resources["requests"],
        json!({"cpu": "100m", "memory": "256Mi"})
    );
    assert_eq!(resources["limits"], json!({"cpu": "1", "memory": "1Gi"}));
    let schedule = get(&client, SCHEDULE, Some(ns), "nightly")
        .await
        .expect("Schedule");
    assert_eq!(schedule["spec"]["paused"], true);
    wait_for(
        "Location replica Available (the running controller picked it up)",
        Duration::from_secs(60),
        || async {
            let l = get(&client, LOCATION, Some(ns), "replica").await?;
            assert_eq!(l["spec"]["accessMode"], "ReadOnly");
            available(&l).then_some(())
        },
    )
    .await;
    wait_for(
        "the node agent removed",
        Duration::from_secs(30),
        || async {
            get(
                &client,
                DAEMONSET,
                Some("tidemark-node-agent"),
                "tidemark-node-agent",
            )
            .await
            .is_none()
            .then_some(())
        },
    )
    .await;
    let history = helm_ok(&[
        "history",
        RELEASE,
        "--kubeconfig",
        &kubeconfig,
        "--namespace",
        ns,
        "-o",
        "json",
    ]);
    let history: Value = serde_json::from_str(&history).unwrap();
    assert_eq!(history.as_array().unwrap().len(), 2, "{history}");
    assert_eq!(history[1]["status"], "deployed");
    // The controller ran under the chart's RBAC throughout without being refused anything.
    let log = server.log();
    assert!(
        !log.contains("forbidden") && !log.contains("Forbidden"),
        "the chart's RBAC refused the controller something:\n{log}"
    );
    server.kill();

    // Uninstall: the release's objects go; the CRDs and the namespace stay (resource policy
    // keep), as Helm keeps CRDs.
    helm_ok(&[
        "uninstall",
        RELEASE,
        "--kubeconfig",
        &kubeconfig,
        "--namespace",
        ns,
        "--wait",
    ]);
    let gone: Vec<(Gvk, Option<&str>, &str)> = vec![
        (DEPLOYMENT, Some(ns), "tidemark"),
        (SERVICE, Some(ns), "tidemark-metrics"),
        (SERVICE_ACCOUNT, Some(ns), "tidemark"),
        (ROLE, Some(ns), "tidemark-controller"),
        (ROLE_BINDING, Some(ns), "tidemark-controller"),
        (CLUSTER_ROLE, None, "tidemark-backup"),
        (CLUSTER_ROLE_BINDING, None, "tidemark-backup"),
        (CLUSTER_ROLE, None, "tidemark-restore"),
        (CLUSTER_ROLE_BINDING, None, "tidemark-restore"),
        (SECRET, Some(ns), "tidemark-credentials"),
        (SECRET, Some(ns), "tidemark-repo-credentials"),
        (LOCATION, Some(ns), "default"),
        (LOCATION, Some(ns), "replica"),
        (SCHEDULE, Some(ns), "nightly"),
        (SERVICE_MONITOR, Some(ns), "tidemark"),
    ];
    wait_for(
        "the release's objects deleted",
        Duration::from_secs(60),
        || async {
            for (gvk, namespace, name) in &gone {
                if get(&client, *gvk, *namespace, name).await.is_some() {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    for crd in yaml_docs(&repo().join(CHART).join("crds/tidemark.dev.yaml")) {
        let name = crd["metadata"]["name"].as_str().unwrap();
        assert!(
            get(&client, CRD, None, name).await.is_some(),
            "CRD {name} kept"
        );
    }
    let namespace = get(&client, NAMESPACE, None, ns)
        .await
        .expect("namespace kept");
    assert_eq!(namespace["status"]["phase"], "Active");
    let list = helm_ok(&[
        "list",
        "--kubeconfig",
        &kubeconfig,
        "--namespace",
        ns,
        "-o",
        "json",
    ]);
    assert_eq!(serde_json::from_str::<Value>(&list).unwrap(), json!([]));
}
