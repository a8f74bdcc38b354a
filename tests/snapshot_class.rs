//! `tidemark snapshot-class get|select` (Velero's `snapshot-location` verb) against a real API
//! server serving the external-snapshotter's CRDs (from the shared corpus): which
//! VolumeSnapshotClass backups use per CSI driver, and selecting another one.

mod support;

use serde_json::{Value, json};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_classes_are_listed_and_selected_per_driver() {
    let cluster = Cluster::up(&unique("snapclass")).await;
    let docs =
        yaml_docs(&corpus_dir().join("crds/snapshot.storage.k8s.io_volumesnapshotclasses.yaml"));
    let names: Vec<String> = docs
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    apply_docs(&cluster.client, &docs).await;
    wait_established(&cluster.client, &names).await;
    let class = |name: &str, driver: &str, selected: bool| {
        let mut c = json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
                           "metadata": {"name": name}, "driver": driver, "deletionPolicy": "Retain"});
        if selected {
            c["metadata"]["labels"] = json!({"velero.io/csi-volumesnapshot-class": "true"});
        }
        c
    };
    apply_docs(
        &cluster.client,
        &[
            class("fast", "a.csi.example.com", true),
            class("cheap", "a.csi.example.com", false),
            class("only", "b.csi.example.com", false),
        ],
    )
    .await;
    let kc = cluster.kubeconfig.to_str().unwrap().to_string();
    let env = [("KUBECONFIG", kc.as_str())];

    let out = tidemark(&["snapshot-location", "get"], &env);
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let row = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row {name} in:\n{text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(row("fast"), ["fast", "a.csi.example.com", "Retain", "yes"]);
    assert_eq!(row("cheap"), ["cheap", "a.csi.example.com", "Retain", "no"]);
    assert!(
        text.contains("warning: no class selected for driver b.csi.example.com"),
        "{text}"
    );

    let out = tidemark(&["snapshot-class", "select", "cheap"], &env);
    assert!(out.status.success(), "{}", show(&out));
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains("fast no longer selected"), "{said}");
    assert!(
        said.contains("cheap selected for driver a.csi.example.com"),
        "{said}"
    );
    let out = tidemark(&["snapshot-class", "select", "cheap"], &env);
    assert!(String::from_utf8_lossy(&out.stdout).contains("already the one selected"));

    let out = tidemark(&["snapshot-class", "get", "-o", "json"], &env);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let selected: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["selected"] == true)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(selected, ["cheap"]);
    // The label is what backups read (volumes::csi::choose_class).
    let labelled = std::process::Command::new(testenv_kubectl())
        .args([
            "--kubeconfig",
            &kc,
            "get",
            "volumesnapshotclasses",
            "-l",
            "velero.io/csi-volumesnapshot-class=true",
            "-o",
            "name",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&labelled.stdout).trim(),
        "volumesnapshotclass.snapshot.storage.k8s.io/cheap"
    );

    let out = tidemark(&["snapshot-class", "select", "missing"], &env);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        show(&out).contains("VolumeSnapshotClass missing: not found"),
        "{}",
        show(&out)
    );
}
