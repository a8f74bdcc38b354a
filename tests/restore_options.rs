//! Restore options and rules on two real clusters (issue 4): namespace mapping with RoleBinding
//! subjects and PV claimRefs, Service node ports, skipped finished pods, existing-resource
//! policies, dry-run previews, status restore, selectors, `--restore-volumes=false`,
//! `--from-schedule`, restore describe/logs/delete, and hostile archives refused before any
//! write.

mod support;

use std::io::Write;

use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolume, PersistentVolumeClaim, Pod, Service, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use support::*;

fn widgets() -> ApiResource {
    ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    }
}

async fn fixture(client: &kube::Client) {
    apply_docs(
        client,
        &[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "src"}}),
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                   "metadata": {"name": "widgets.example.com"},
                   "spec": {"group": "example.com", "scope": "Namespaced",
                            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                            "versions": [{"name": "v1", "served": true, "storage": true,
                                          "subresources": {"status": {}},
                                          "schema": {"openAPIV3Schema": {"type": "object",
                                             "x-kubernetes-preserve-unknown-fields": true}}}]}}),
        ],
    )
    .await;
    wait_established(client, &["widgets.example.com".to_string()]).await;
    apply_docs(
        client,
        &[
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "app", "namespace": "src"}}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                   "metadata": {"name": "app-view", "namespace": "src"},
                   "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": "src"}],
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "src",
                   "labels": {"app": "x"}}, "data": {"mode": "blue"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other", "namespace": "src",
                   "labels": {"app": "y"}}, "data": {"k": "v"}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "src"},
                   "spec": {"type": "NodePort", "selector": {"app": "web"},
                            "ports": [{"port": 80, "nodePort": 30555}]}}),
            json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv-src"},
                   "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                            "persistentVolumeReclaimPolicy": "Retain",
                            "hostPath": {"path": "/tmp/pv-src"},
                            "claimRef": {"namespace": "src", "name": "data"}}}),
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": "src"},
                   "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": "pv-src", "storageClassName": "",
                            "resources": {"requests": {"storage": "1Gi"}}}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "done", "namespace": "src"},
                   "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}),
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1", "namespace": "src"},
                   "spec": {"size": 3}}),
        ],
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "src");
    pods.patch_status(
        "done",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Succeeded"}})),
    )
    .await
    .unwrap();
    let w: Api<DynamicObject> = Api::namespaced_with(client.clone(), "src", &widgets());
    w.patch_status(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"ready": true, "observed": 3}})),
    )
    .await
    .unwrap();
}

fn out_text(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_options_and_rules() {
    let a = Cluster::up(&unique("ro-a")).await;
    let b = Cluster::up(&unique("ro-b")).await;
    fixture(&a.client).await;
    let dir = tempfile::tempdir().unwrap();
    let loc = format!("file://{}", dir.path().display());
    let ka = a.kubeconfig.to_str().unwrap().to_string();
    let kb = b.kubeconfig.to_str().unwrap().to_string();
    let env_a = [("KUBECONFIG", ka.as_str())];
    let env_b = [("KUBECONFIG", kb.as_str())];
    let run_b = |args: &[&str]| {
        let mut all = vec!["restore", "create"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--location", &loc]);
        tidemark(&all, &env_b)
    };

    let out = tidemark(
        &[
            "backup",
            "create",
            "src",
            "--include-namespaces",
            "src",
            "--location",
            &loc,
        ],
        &env_a,
    );
    assert!(out.status.success(), "{}", show(&out));

    // Into a mapped namespace: RoleBinding subjects and the PV claimRef follow the mapping.
    let out = run_b(&[
        "m1",
        "--from-backup",
        "src",
        "--namespace-mappings",
        "src:dst",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let text = out_text(&out);
    assert!(
        text.contains("pods done: skipped: pod has finished"),
        "{text}"
    );
    let rb: Api<RoleBinding> = Api::namespaced(b.client.clone(), "dst");
    let rb = rb.get("app-view").await.unwrap();
    assert_eq!(rb.subjects.unwrap()[0].namespace.as_deref(), Some("dst"));
    assert_eq!(
        rb.metadata.labels.as_ref().unwrap()["velero.io/restore-name"],
        "m1"
    );
    assert_eq!(
        rb.metadata.labels.as_ref().unwrap()["velero.io/backup-name"],
        "src"
    );
    let pv: Api<PersistentVolume> = Api::all(b.client.clone());
    let pv = pv.get("pv-src").await.unwrap();
    let claim = pv.spec.unwrap().claim_ref.unwrap();
    assert_eq!(claim.namespace.as_deref(), Some("dst"));
    let pvc: Api<PersistentVolumeClaim> = Api::namespaced(b.client.clone(), "dst");
    let data = pvc.get("data").await.unwrap();
    assert_eq!(data.spec.unwrap().volume_name.as_deref(), Some("pv-src"));
    // The source's claim uid is dropped; the target's binder may have bound it to the new PVC.
    assert!(
        claim.uid.is_none() || claim.uid == data.metadata.uid,
        "stale claimRef uid"
    );
    let sas: Api<ServiceAccount> = Api::namespaced(b.client.clone(), "dst");
    assert!(sas.get_opt("app").await.unwrap().is_some());
    let pods: Api<Pod> = Api::namespaced(b.client.clone(), "dst");
    assert!(
        pods.get_opt("done").await.unwrap().is_none(),
        "finished pod restored"
    );
    let svcs: Api<Service> = Api::namespaced(b.client.clone(), "dst");
    let svc = svcs.get("web").await.unwrap().spec.unwrap();
    assert_ne!(
        svc.ports.unwrap()[0].node_port,
        Some(30555),
        "nodePort kept without --preserve-nodeports"
    );
    // Status is not restored by default.
    let w: Api<DynamicObject> = Api::namespaced_with(b.client.clone(), "dst", &widgets());
    assert!(w.get("w1").await.unwrap().data.get("status").is_none());

    // Restoring over its own result creates nothing.
    let out = run_b(&[
        "m1-again",
        "--from-backup",
        "src",
        "--namespace-mappings",
        "src:dst",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        out_text(&out).contains(" 0 created, 0 updated"),
        "{}",
        show(&out)
    );

    // Existing objects: `none` warns and leaves them; dry-run previews; `update` patches.
    let cms: Api<ConfigMap> = Api::namespaced(b.client.clone(), "dst");
    cms.patch(
        "settings",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"mode": "red"}})),
    )
    .await
    .unwrap();
    cms.delete("other", &Default::default()).await.unwrap();
    let out = run_b(&[
        "dry",
        "--from-backup",
        "src",
        "--namespace-mappings",
        "src:dst",
        "--dry-run",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let preview: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        preview["create"],
        json!(["configmaps dst/other"]),
        "{preview}"
    );
    assert_eq!(
        preview["conflict"],
        json!(["configmaps dst/settings"]),
        "{preview}"
    );
    assert_eq!(preview["update"], json!([]));
    assert!(
        cms.get_opt("other").await.unwrap().is_none(),
        "dry run wrote"
    );
    assert!(
        !dir.path().join("restores/dry").exists(),
        "dry run wrote to the store"
    );
    let out = run_b(&[
        "none",
        "--from-backup",
        "src",
        "--namespace-mappings",
        "src:dst",
        "--include-resources",
        "configmaps",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        out_text(&out).contains("configmaps settings: already exists and differs"),
        "{}",
        show(&out)
    );
    assert_eq!(
        cms.get("settings").await.unwrap().data.unwrap()["mode"],
        "red"
    );
    assert!(cms.get_opt("other").await.unwrap().is_some());
    let out = run_b(&[
        "upd",
        "--from-backup",
        "src",
        "--namespace-mappings",
        "src:dst",
        "--existing-resource-policy",
        "update",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(out_text(&out).contains(" 1 updated"), "{}", show(&out));
    assert_eq!(
        cms.get("settings").await.unwrap().data.unwrap()["mode"],
        "blue"
    );

    // Node ports kept when asked; status restored when asked; selectors.
    let out = run_b(&[
        "keep",
        "--from-backup",
        "src",
        "--namespace-mappings",
        "src:keep",
        "--preserve-nodeports",
        "--restore-volumes=false",
        "--status-include-resources",
        "widgets.example.com",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let svcs: Api<Service> = Api::namespaced(b.client.clone(), "keep");
    assert_eq!(
        svcs.get("web").await.unwrap().spec.unwrap().ports.unwrap()[0].node_port,
        Some(30555)
    );
    let w: Api<DynamicObject> = Api::namespaced_with(b.client.clone(), "keep", &widgets());
    assert_eq!(
        w.get("w1").await.unwrap().data["status"],
        json!({"ready": true, "observed": 3})
    );
    let pvc: Api<PersistentVolumeClaim> = Api::namespaced(b.client.clone(), "keep");
    assert!(
        pvc.get("data")
            .await
            .unwrap()
            .spec
            .unwrap()
            .volume_name
            .is_none()
    );
    assert!(
        out_text(&out).contains("persistentvolumes pv-src: skipped: --restore-volumes=false"),
        "{}",
        show(&out)
    );

    let out = run_b(&[
        "sel",
        "--from-backup",
        "src",
        "--namespace-mappings",
        "src:sel",
        "--selector",
        "app=x",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let cms: Api<ConfigMap> = Api::namespaced(b.client.clone(), "sel");
    assert!(cms.get_opt("settings").await.unwrap().is_some());
    assert!(cms.get_opt("other").await.unwrap().is_none());
    let sas: Api<ServiceAccount> = Api::namespaced(b.client.clone(), "sel");
    assert!(sas.get_opt("app").await.unwrap().is_none());
    let out = run_b(&[
        "orsel",
        "--from-backup",
        "src",
        "--namespace-mappings",
        "src:orsel",
        "--or-selector",
        "app=x or app=y",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let cms: Api<ConfigMap> = Api::namespaced(b.client.clone(), "orsel");
    assert!(
        cms.get_opt("settings").await.unwrap().is_some()
            && cms.get_opt("other").await.unwrap().is_some()
    );

    // Resource modifiers, from a local file and from a ConfigMap in the target cluster.
    let mods = dir.path().join("mods.yaml");
    std::fs::write(
        &mods,
        "version: v1\nresourceModifierRules:\n- conditions:\n    groupResource: configmaps\n    resourceNameRegex: \"^settings$\"\n    namespaces: [src]\n  patches:\n  - operation: replace\n    path: /data/mode\n    value: green\n- conditions:\n    groupResource: deployments.apps\n  mergePatches:\n  - patchData: |\n      {\"spec\": {\"replicas\": 0}}\n",
    )
    .unwrap();
    let out = run_b(&[
        "mod1",
        "--from-backup",
        "src",
        "--namespace-mappings",
        "src:mod1",
        "--resource-modifier-file",
        mods.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let cms: Api<ConfigMap> = Api::namespaced(b.client.clone(), "mod1");
    assert_eq!(
        cms.get("settings").await.unwrap().data.unwrap()["mode"],
        "green"
    );
    assert_eq!(cms.get("other").await.unwrap().data.unwrap()["k"], "v");
    apply_docs(
        &b.client,
        &[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tidemark"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "mods", "namespace": "tidemark"},
                   "data": {"rules.yaml": std::fs::read_to_string(&mods).unwrap().replace("green", "purple")}}),
        ],
    )
    .await;
    let out = run_b(&[
        "mod2",
        "--from-backup",
        "src",
        "--namespace-mappings",
        "src:mod2",
        "--resource-modifier-configmap",
        "mods",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let cms: Api<ConfigMap> = Api::namespaced(b.client.clone(), "mod2");
    assert_eq!(
        cms.get("settings").await.unwrap().data.unwrap()["mode"],
        "purple"
    );
    std::fs::write(&mods, "version: v2\nresourceModifierRules: []\n").unwrap();
    let out = run_b(&[
        "mod3",
        "--from-backup",
        "src",
        "--resource-modifier-file",
        mods.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--resource-modifier-file"),
        "{}",
        show(&out)
    );

    // --from-schedule picks the newest Completed backup labelled with the schedule.
    for name in ["nightly-1", "nightly-2"] {
        let out = tidemark(
            &[
                "backup",
                "create",
                name,
                "--include-namespaces",
                "src",
                "--labels",
                "velero.io/schedule-name=nightly",
                "--location",
                &loc,
            ],
            &env_a,
        );
        assert!(out.status.success(), "{}", show(&out));
    }
    let out = run_b(&[
        "sched",
        "--from-schedule",
        "nightly",
        "--namespace-mappings",
        "src:sched",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let rec: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rec["spec"]["backupName"], "nightly-2");
    let out = run_b(&["nosched", "--from-schedule", "weekly"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));

    // describe / logs / delete.
    let out = tidemark(
        &["restore", "describe", "m1", "--details", "--location", &loc],
        &env_b,
    );
    assert!(out.status.success(), "{}", show(&out));
    let text = out_text(&out);
    assert!(
        text.contains("Phase:  Completed") && text.contains("src=dst"),
        "{text}"
    );
    assert!(
        text.contains("pod has finished") && text.contains("- dst/settings"),
        "{text}"
    );
    let out = tidemark(&["restore", "logs", "m1", "--location", &loc], &env_b);
    assert!(out_text(&out).contains("level=info"), "{}", show(&out));
    let out = tidemark(&["restore", "delete", "m1", "--location", &loc], &env_b);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let out = tidemark(
        &["restore", "delete", "m1", "--confirm", "--location", &loc],
        &env_b,
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(!dir.path().join("restores/m1").exists());
    assert!(
        cms.get_opt("settings").await.unwrap().is_some(),
        "restore delete removed objects"
    );

    // Hostile archives are refused before anything is written.
    let hostile = |name: &str, entries: &[(&str, &[u8])]| {
        let d = dir.path().join(format!("backups/{name}"));
        std::fs::create_dir_all(&d).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        for (path, data) in entries {
            let mut h = tar::Header::new_old();
            h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_size(data.len() as u64);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_cksum();
            gz.write_all(h.as_bytes()).unwrap();
            gz.write_all(data).unwrap();
            gz.write_all(&vec![0u8; (512 - data.len() % 512) % 512])
                .unwrap();
        }
        gz.write_all(&[0u8; 1024]).unwrap();
        std::fs::write(d.join(format!("{name}.tar.gz")), gz.finish().unwrap()).unwrap();
        let record = json!({"apiVersion": "velero.io/v1", "kind": "Backup", "metadata": {"name": name, "namespace": "velero"},
                            "spec": {}, "status": {"phase": "Completed", "formatVersion": "1.1.0", "version": 1}});
        std::fs::write(d.join("velero-backup.json"), record.to_string()).unwrap();
    };
    let good_cm = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"planted","namespace":"hostile"}}"#;
    hostile(
        "traversal",
        &[
            ("metadata/version", b"1.1.0\n"),
            (
                "resources/configmaps/namespaces/hostile/planted.json",
                good_cm,
            ),
            ("resources/../../../tmp/evil.json", b"{}"),
        ],
    );
    let big = vec![b' '; 70 << 20];
    hostile(
        "oversized",
        &[
            ("metadata/version", b"1.1.0\n"),
            (
                "resources/configmaps/namespaces/hostile/planted.json",
                good_cm,
            ),
            ("resources/configmaps/namespaces/hostile/huge.json", &big),
        ],
    );
    let cms: Api<ConfigMap> = Api::namespaced(b.client.clone(), "hostile");
    for name in ["traversal", "oversized"] {
        let out = run_b(&["h", "--from-backup", name]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", show(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("archive rejected"),
            "{}",
            show(&out)
        );
        assert!(
            cms.get_opt("planted").await.unwrap().is_none(),
            "{name}: object created from a hostile archive"
        );
    }
    // A wrong checksum: a valid tidemark backup whose recorded sha256 does not match.
    let meta = dir.path().join("backups/src/tidemark-backup.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    m["archiveSha256"] = json!("0".repeat(64));
    std::fs::write(&meta, m.to_string()).unwrap();
    let out = run_b(&[
        "sum",
        "--from-backup",
        "src",
        "--namespace-mappings",
        "src:checksum",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("checksum mismatch"),
        "{}",
        show(&out)
    );
    let cms: Api<ConfigMap> = Api::namespaced(b.client.clone(), "checksum");
    assert!(cms.get_opt("settings").await.unwrap().is_none());
}
