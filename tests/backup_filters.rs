//! Backup selection on a real cluster (issue 3): every filter and selector, each asserting the
//! exact set of fixture items in the archive; then the backup CLI verbs (describe, logs,
//! download, delete).
//!
//! Objects every namespace gets from the cluster itself (the `default` ServiceAccount, the
//! `kube-root-ca.crt` ConfigMap) and ReplicaSets made by the Deployment controller are left out
//! of the comparison; everything else in the fixture namespaces is compared exactly.

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};
use support::*;

const FIXTURE_NAMESPACES: &[&str] = &["alpha", "beta", "team-a", "team-b", "hidden", "dying"];

fn ns(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

fn cm(ns: &str, name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": ns, "labels": labels}, "data": {"k": name}})
}

async fn fixture(client: &kube::Client) {
    apply_docs(
        client,
        &[
            ns("alpha", json!({})),
            ns("beta", json!({})),
            ns("team-a", json!({})),
            ns("team-b", json!({})),
            ns("hidden", json!({"velero.io/exclude-from-backup": "true"})),
            ns("dying", json!({})),
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                   "metadata": {"name": "widgets.example.com"},
                   "spec": {"group": "example.com", "scope": "Namespaced",
                            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                            "versions": [{"name": "v1", "served": true, "storage": true,
                                          "schema": {"openAPIV3Schema": {"type": "object",
                                             "x-kubernetes-preserve-unknown-fields": true}}}]}}),
        ],
    )
    .await;
    wait_established(client, &["widgets.example.com".to_string()]).await;
    apply_docs(
        client,
        &[
            cm("alpha", "a1", json!({"app": "web"})),
            cm("alpha", "a2", json!({"app": "db"})),
            cm("alpha", "skip-me", json!({"velero.io/exclude-from-backup": "true"})),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1", "namespace": "alpha",
                   "labels": {"app": "web"}}, "stringData": {"password": "x"}}),
            json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv-alpha"},
                   "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                            "hostPath": {"path": "/tmp/pv-alpha"},
                            "claimRef": {"namespace": "alpha", "name": "data"}}}),
            json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv-unrelated"},
                   "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                            "hostPath": {"path": "/tmp/pv-unrelated"}}}),
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": "alpha"},
                   "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": "pv-alpha", "storageClassName": "",
                            "resources": {"requests": {"storage": "1Gi"}}}}),
            json!({"apiVersion": "example.com/v1", "kind": "Widget",
                   "metadata": {"name": "w1", "namespace": "alpha"}, "spec": {"size": 3}}),
            cm("beta", "b1", json!({"app": "web"})),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d1", "namespace": "beta"},
                   "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "d1"}},
                            "template": {"metadata": {"labels": {"app": "d1"}},
                                         "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
            cm("team-a", "t", json!({})),
            cm("team-b", "t", json!({})),
            cm("hidden", "h", json!({})),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "held", "namespace": "dying", "finalizers": ["example.com/hold"]}}),
        ],
    )
    .await;
    // Namespace "dying" is deleted but held Terminating by the finalizer of its ConfigMap.
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.delete("dying", &DeleteParams::default()).await.unwrap();
    for _ in 0..100 {
        let n = nss.get("dying").await.unwrap();
        if n.status.and_then(|s| s.phase).as_deref() == Some("Terminating") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// `gr ns/name` (or `gr name`) of every item in a backup's tarball, in archive order.
fn archive_items(location: &Path, backup: &str) -> Vec<String> {
    let f =
        std::fs::File::open(location.join(format!("backups/{backup}/{backup}.tar.gz"))).unwrap();
    let mut ar = tar::Archive::new(flate2::read::MultiGzDecoder::new(f));
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        let p = e.path().unwrap().display().to_string();
        let parts: Vec<&str> = p.split('/').collect();
        match parts.as_slice() {
            ["resources", gr, "namespaces", ns, file] => {
                out.push(format!("{gr} {ns}/{}", file.trim_end_matches(".json")))
            }
            ["resources", gr, "cluster", file] => {
                out.push(format!("{gr} {}", file.trim_end_matches(".json")))
            }
            _ => {}
        }
    }
    out
}

/// The fixture's part of a backup (see the module doc for what is left out).
fn fixture_items(location: &Path, backup: &str) -> BTreeSet<String> {
    archive_items(location, backup)
        .into_iter()
        .filter(|i| {
            let (gr, rest) = i.split_once(' ').unwrap();
            let in_fixture_ns = rest
                .split_once('/')
                .is_some_and(|(ns, _)| FIXTURE_NAMESPACES.contains(&ns));
            let cluster_fixture = matches!(
                (gr, rest),
                ("namespaces", n) if FIXTURE_NAMESPACES.contains(&n)
            ) || rest == "pv-alpha"
                || rest == "pv-unrelated"
                || rest == "widgets.example.com";
            (in_fixture_ns || cluster_fixture)
                && !rest.ends_with("/default")
                && !rest.ends_with("/kube-root-ca.crt")
                && gr != "replicasets.apps"
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

const ALPHA: &[&str] = &[
    "configmaps alpha/a1",
    "configmaps alpha/a2",
    "secrets alpha/s1",
    "persistentvolumeclaims alpha/data",
    "widgets.example.com alpha/w1",
    "namespaces alpha",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_filter_selects_exactly_what_it_should() {
    let cluster = Cluster::up(&unique("filters")).await;
    fixture(&cluster.client).await;
    let dir = tempfile::tempdir().unwrap();
    let loc = format!("file://{}", dir.path().display());
    let kc = cluster.kubeconfig.to_str().unwrap().to_string();
    let env = [("KUBECONFIG", kc.as_str())];
    let backup = |name: &str, extra: &[&str]| {
        let mut args = vec!["backup", "create", name, "--location", &loc];
        args.extend_from_slice(extra);
        let out = tidemark(&args, &env);
        assert!(out.status.success(), "{name}: {}", show(&out));
        fixture_items(dir.path(), name)
    };

    // The whole cluster: excluded namespace and labelled/terminating objects are left out;
    // cluster-scoped objects all come along, nodes and events never.
    let mut full = set(ALPHA);
    full.extend(set(&[
        "persistentvolumes pv-alpha",
        "persistentvolumes pv-unrelated",
        "customresourcedefinitions.apiextensions.k8s.io widgets.example.com",
        "configmaps beta/b1",
        "deployments.apps beta/d1",
        "namespaces beta",
        "configmaps team-a/t",
        "namespaces team-a",
        "configmaps team-b/t",
        "namespaces team-b",
    ]));
    assert_eq!(backup("full", &[]), full);
    let all = archive_items(dir.path(), "full");
    assert!(
        all.iter()
            .any(|i| i.starts_with("clusterroles.rbac.authorization.k8s.io "))
    );
    assert!(
        !all.iter()
            .any(|i| i.starts_with("events") || i.starts_with("nodes ")),
        "{all:?}"
    );

    // Events on request (`--include-events`, as Velero backs them up), of the included
    // namespaces only, under both APIs; a restore never creates them.
    apply_docs(
        &cluster.client,
        &[json!({"apiVersion": "v1", "kind": "Event",
                 "metadata": {"name": "d1.forensics", "namespace": "beta"},
                 "involvedObject": {"kind": "Deployment", "namespace": "beta", "name": "d1"},
                 "reason": "Checked", "message": "kept for forensics", "type": "Normal"})],
    )
    .await;
    backup(
        "with-events",
        &["--include-events", "--include-namespaces", "beta"],
    );
    let with_events = archive_items(dir.path(), "with-events");
    for wanted in [
        "events beta/d1.forensics",
        "events.events.k8s.io beta/d1.forensics",
    ] {
        assert!(
            with_events.iter().any(|i| i == wanted),
            "{wanted} missing: {with_events:?}"
        );
    }
    assert!(
        !with_events
            .iter()
            .any(|i| i.starts_with("events") && !i.contains(" beta/")),
        "events of other namespaces: {with_events:?}"
    );
    let out = tidemark(
        &[
            "restore",
            "create",
            "events-back",
            "--from-backup",
            "with-events",
            "--namespace-mappings",
            "beta:beta-events",
            "--location",
            &loc,
        ],
        &env,
    );
    assert!(out.status.success(), "restore: {}", show(&out));
    let restored_cms: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "beta-events");
    assert!(
        restored_cms.get_opt("b1").await.unwrap().is_some(),
        "the restore ran"
    );
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(cluster.client.clone(), "beta-events");
    assert!(
        events.get_opt("d1.forensics").await.unwrap().is_none(),
        "an Event was restored"
    );

    // One namespace, auto cluster resources: its PV and CRD come along, nothing else.
    let mut alpha = set(ALPHA);
    alpha.insert("persistentvolumes pv-alpha".into());
    alpha.insert("customresourcedefinitions.apiextensions.k8s.io widgets.example.com".into());
    assert_eq!(
        backup("ns-alpha", &["--include-namespaces", "alpha"]),
        alpha
    );
    assert!(
        !archive_items(dir.path(), "ns-alpha")
            .iter()
            .any(|i| i.starts_with("clusterroles"))
    );

    // Globs with an exclusion.
    assert_eq!(
        backup(
            "teams",
            &[
                "--include-namespaces",
                "team-*",
                "--exclude-namespaces",
                "team-b"
            ]
        ),
        set(&["configmaps team-a/t", "namespaces team-a"])
    );

    // A label selector over all namespaces: matching objects and their namespaces.
    assert_eq!(
        backup("web", &["--selector", "app=web"]),
        set(&[
            "configmaps alpha/a1",
            "secrets alpha/s1",
            "configmaps beta/b1",
            "namespaces alpha",
            "namespaces beta"
        ])
    );

    // Or-selectors.
    assert_eq!(
        backup(
            "web-or-db",
            &[
                "--include-namespaces",
                "alpha,beta",
                "--or-selector",
                "app=db or app=web"
            ]
        ),
        set(&[
            "configmaps alpha/a1",
            "configmaps alpha/a2",
            "secrets alpha/s1",
            "configmaps beta/b1",
            "namespaces alpha",
            "namespaces beta"
        ])
    );

    // Resource include: only config maps (namespace objects are a resource like any other).
    assert_eq!(
        backup(
            "cms",
            &[
                "--include-namespaces",
                "alpha,beta",
                "--include-resources",
                "cm"
            ]
        ),
        set(&[
            "configmaps alpha/a1",
            "configmaps alpha/a2",
            "configmaps beta/b1"
        ])
    );
    // Resource exclude.
    let mut no_secrets = alpha.clone();
    no_secrets.remove("secrets alpha/s1");
    assert_eq!(
        backup(
            "no-secrets",
            &[
                "--include-namespaces",
                "alpha",
                "--exclude-resources",
                "secrets"
            ]
        ),
        no_secrets
    );

    // Cluster resources off / on.
    assert_eq!(
        backup(
            "no-cluster",
            &[
                "--include-namespaces",
                "alpha",
                "--include-cluster-resources=false"
            ]
        ),
        set(ALPHA)
    );
    let mut with_cluster = alpha.clone();
    with_cluster.insert("persistentvolumes pv-unrelated".into());
    assert_eq!(
        backup(
            "with-cluster",
            &[
                "--include-namespaces",
                "alpha",
                "--include-cluster-resources=true"
            ]
        ),
        with_cluster
    );
    assert!(
        archive_items(dir.path(), "with-cluster")
            .iter()
            .any(|i| i.starts_with("clusterroles"))
    );

    // Scoped filters.
    assert_eq!(
        backup(
            "scoped",
            &[
                "--include-namespaces",
                "alpha",
                "--include-namespace-scoped-resources",
                "configmaps",
                "--include-cluster-scoped-resources",
                "customresourcedefinitions",
            ]
        ),
        set(&[
            "configmaps alpha/a1",
            "configmaps alpha/a2",
            "customresourcedefinitions.apiextensions.k8s.io widgets.example.com",
            "namespaces alpha"
        ])
    );
    assert_eq!(
        backup(
            "scoped-no-cluster",
            &[
                "--include-namespaces",
                "alpha",
                "--exclude-cluster-scoped-resources",
                "*"
            ]
        ),
        set(ALPHA)
    );
    let out = tidemark(
        &[
            "backup",
            "create",
            "mixed",
            "--location",
            &loc,
            "--include-resources",
            "pods",
            "--include-cluster-scoped-resources",
            "storageclasses",
        ],
        &env,
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot be used together"),
        "{}",
        show(&out)
    );
    let out = tidemark(
        &[
            "backup",
            "create",
            "both",
            "--location",
            &loc,
            "--selector",
            "a=b",
            "--or-selector",
            "c=d",
        ],
        &env,
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));

    // Ordered resources: named objects first, in the given order.
    backup(
        "ordered",
        &[
            "--include-namespaces",
            "alpha",
            "--include-resources",
            "configmaps",
            "--ordered-resources",
            "configmaps=alpha/a2,alpha/skip-me,alpha/a1",
        ],
    );
    let order: Vec<String> = archive_items(dir.path(), "ordered")
        .into_iter()
        .filter(|i| i.starts_with("configmaps alpha/a"))
        .collect();
    assert_eq!(
        &order[..2],
        &["configmaps alpha/a2", "configmaps alpha/a1"],
        "{order:?}"
    );

    // describe, logs, download, delete.
    let out = tidemark(
        &[
            "backup",
            "describe",
            "ns-alpha",
            "--details",
            "--location",
            &loc,
        ],
        &env,
    );
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("Phase:  Completed"), "{text}");
    assert!(text.contains("Included:  alpha"), "{text}");
    assert!(
        text.contains("v1/ConfigMap:") && text.contains("- alpha/a1"),
        "{text}"
    );
    assert!(text.contains("sha256"), "{text}");
    let out = tidemark(&["backup", "logs", "ns-alpha", "--location", &loc], &env);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("level=info"),
        "{}",
        show(&out)
    );
    let dl = dir.path().join("dl.tar.gz");
    let out = tidemark(
        &[
            "backup",
            "download",
            "ns-alpha",
            "-o",
            dl.to_str().unwrap(),
            "--location",
            &loc,
        ],
        &env,
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        std::fs::read(&dl).unwrap(),
        std::fs::read(dir.path().join("backups/ns-alpha/ns-alpha.tar.gz")).unwrap()
    );
    let out = tidemark(
        &[
            "backup",
            "download",
            "ns-alpha",
            "-o",
            dl.to_str().unwrap(),
            "--location",
            &loc,
        ],
        &env,
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "download must not overwrite without --force"
    );

    let ro = format!("{loc}?accessMode=ReadOnly");
    let out = tidemark(
        &["backup", "delete", "teams", "--confirm", "--location", &ro],
        &env,
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(dir.path().join("backups/teams/velero-backup.json").exists());
    let out = tidemark(&["backup", "delete", "teams", "--location", &loc], &env);
    assert_eq!(
        out.status.code(),
        Some(1),
        "delete without --confirm must refuse: {}",
        show(&out)
    );
    assert!(dir.path().join("backups/teams/velero-backup.json").exists());
    let out = tidemark(
        &["backup", "delete", "teams", "--confirm", "--location", &loc],
        &env,
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(!dir.path().join("backups/teams").exists());
    let out = tidemark(&["backup", "get", "-o", "json", "--location", &loc], &env);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["metadata"]["name"].as_str().unwrap())
        .collect();
    assert!(
        !names.contains(&"teams") && names.contains(&"web"),
        "{names:?}"
    );

    // Let the held namespace go.
    let cms: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "dying");
    let _ = cms
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await;
}
