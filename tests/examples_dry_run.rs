//! Every example and policy in the repository is valid for a real API server: each kustomize
//! directory under `examples/` and `policies/` is rendered with `kubectl kustomize`, every plain
//! manifest is read, and each object is applied with a server-side dry run (tidemark's CRDs
//! installed). Argo CD and Flux objects (their CRDs are not in the test cluster) are checked for
//! pointing at paths that exist in this repository.

mod support;

use std::path::{Path, PathBuf};

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::{Discovery, Scope};
use serde_json::{Value, json};
use support::*;

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// (source, documents) for every kustomization directory and every manifest outside one.
fn sources() -> Vec<(String, Vec<Value>)> {
    let mut files = Vec::new();
    walk(&repo().join("examples"), &mut files);
    walk(&repo().join("policies"), &mut files);
    let kust_dirs: Vec<PathBuf> = files
        .iter()
        .filter(|f| f.file_name().unwrap() == "kustomization.yaml")
        .map(|f| f.parent().unwrap().to_path_buf())
        .collect();
    let mut out = Vec::new();
    for d in &kust_dirs {
        let r = std::process::Command::new(testenv_kubectl())
            .args(["kustomize", d.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            r.status.success(),
            "kubectl kustomize {}: {}",
            d.display(),
            String::from_utf8_lossy(&r.stderr)
        );
        let docs: Vec<Value> =
            serde_yaml::Deserializer::from_str(&String::from_utf8_lossy(&r.stdout))
                .filter_map(|d| serde::Deserialize::deserialize(d).ok())
                .filter(|v: &Value| v.is_object())
                .collect();
        out.push((d.display().to_string(), docs));
    }
    for f in files.iter().filter(|f| {
        matches!(f.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
            && f.file_name().unwrap() != "kustomization.yaml"
            && !kust_dirs.iter().any(|d| f.starts_with(d))
    }) {
        out.push((f.display().to_string(), yaml_docs(f)));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_and_policy_passes_a_server_side_dry_run() {
    let cluster = Cluster::up(&unique("examples")).await;
    let c = cluster.client.clone();
    install_crds(&c).await;
    apply_docs(
        &c,
        &[json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tidemark"}})],
    )
    .await;
    let discovery = Discovery::new(c.clone()).run_aggregated().await.unwrap();
    let mut checked = 0;
    for (source, docs) in sources() {
        assert!(!docs.is_empty(), "{source}: no documents");
        for d in docs {
            let api_version = d["apiVersion"].as_str().unwrap_or_default();
            if api_version.contains("argoproj.io") || api_version.contains("fluxcd.io") {
                let path = d
                    .pointer("/spec/source/path")
                    .or_else(|| d.pointer("/spec/path"));
                if let Some(p) = path.and_then(Value::as_str) {
                    assert!(
                        repo().join(p.trim_start_matches("./")).is_dir(),
                        "{source}: path {p} does not exist"
                    );
                }
                continue;
            }
            let obj: DynamicObject = serde_json::from_value(d.clone()).unwrap();
            let tm = obj.types.clone().unwrap();
            let (ar, caps) = discovery
                .resolve_typemeta(&tm)
                .unwrap_or_else(|| panic!("{source}: {}/{} not served", tm.api_version, tm.kind));
            let mut body = d.clone();
            let api: Api<DynamicObject> = match caps.scope {
                Scope::Namespaced => {
                    let ns = obj
                        .metadata
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "tidemark".into());
                    body["metadata"]["namespace"] = json!(ns);
                    // Namespaces named by the examples must exist for a dry run.
                    apply_docs(&c, &[json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})]).await;
                    Api::namespaced_with(c.clone(), &ns, &ar)
                }
                Scope::Cluster => Api::all_with(c.clone(), &ar),
            };
            let mut pp = PatchParams::apply("examples").force().dry_run();
            pp.field_validation = Some(kube::api::ValidationDirective::Strict);
            api.patch(
                obj.metadata.name.as_deref().unwrap(),
                &pp,
                &Patch::Apply(&body),
            )
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{source}: {} {}: {e}",
                    tm.kind,
                    obj.metadata.name.as_deref().unwrap()
                )
            });
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} objects checked");
}
