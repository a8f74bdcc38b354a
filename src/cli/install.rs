//! `tidemark install` / `tidemark uninstall`: apply (or print) the same manifests as
//! `kubectl apply -k kustomize/base` — the CRDs, namespace, ServiceAccount, least-privilege RBAC,
//! the controller Deployment and its metrics Service — rendered into `kustomize/install.yaml`
//! (kept current by a test) and embedded in the binary.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::discovery::{Discovery, Scope};
use serde_json::Value;

use crate::cluster::{self, Target};

/// The rendered base installation.
pub const INSTALL_YAML: &str = include_str!("../../kustomize/install.yaml");
/// Field manager of `tidemark install`.
pub const INSTALL_MANAGER: &str = "tidemark-install";

/// Options of `tidemark install`.
#[derive(Args, Debug)]
pub(crate) struct InstallArgs {
    /// Namespace for the controller and its objects.
    #[arg(short = 'n', long, default_value = "tidemark")]
    namespace: String,
    /// Controller image (default: the release image in the manifests).
    #[arg(long)]
    image: Option<String>,
    /// Print the manifests (YAML) instead of applying them.
    #[arg(long)]
    dry_run: bool,
}

/// Options of `tidemark uninstall`.
#[derive(Args, Debug)]
pub(crate) struct UninstallArgs {
    /// Namespace of the installation.
    #[arg(short = 'n', long, default_value = "tidemark")]
    namespace: String,
    /// Keep the CustomResourceDefinitions (and so every tidemark object and record).
    #[arg(long)]
    keep_crds: bool,
    /// Confirm (required). Backups in object storage are never touched.
    #[arg(long)]
    confirm: bool,
}

/// The installation's objects for `namespace` and `image`, in apply order.
///
/// # Errors
/// Never in practice (the embedded YAML is checked by tests).
pub fn manifests(namespace: &str, image: Option<&str>) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(INSTALL_YAML) {
        let mut v: Value = serde::Deserialize::deserialize(doc).context("embedded install.yaml")?;
        if !v.is_object() {
            continue;
        }
        if v["kind"] == "Namespace" {
            v["metadata"]["name"] = Value::String(namespace.into());
        }
        if v.pointer("/metadata/namespace").is_some() {
            v["metadata"]["namespace"] = Value::String(namespace.into());
        }
        if let Some(subjects) = v.get_mut("subjects").and_then(Value::as_array_mut) {
            for s in subjects {
                if s.get("namespace").is_some() {
                    s["namespace"] = Value::String(namespace.into());
                }
            }
        }
        if let (Some(img), "Deployment") = (image, v["kind"].as_str().unwrap_or_default())
            && let Some(cs) = v
                .pointer_mut("/spec/template/spec/containers")
                .and_then(Value::as_array_mut)
        {
            for c in cs {
                c["image"] = Value::String(img.into());
            }
        }
        out.push(v);
    }
    Ok(out)
}

async fn api_for(
    client: &kube::Client,
    discovery: &Discovery,
    v: &Value,
) -> Result<(Api<DynamicObject>, String)> {
    let obj: DynamicObject = serde_json::from_value(v.clone())?;
    let tm = obj
        .types
        .clone()
        .context("object without apiVersion/kind")?;
    let (ar, caps) = discovery.resolve_typemeta(&tm).with_context(|| {
        format!(
            "{}/{} is not served by this cluster",
            tm.api_version, tm.kind
        )
    })?;
    let name = obj.metadata.name.clone().unwrap_or_default();
    let api = match (caps.scope, &obj.metadata.namespace) {
        (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &ar),
        _ => Api::all_with(client.clone(), &ar),
    };
    Ok((api, name))
}

/// Runs `tidemark install`.
pub(crate) async fn install(target: &Target, args: InstallArgs) -> Result<ExitCode> {
    let docs = manifests(&args.namespace, args.image.as_deref())?;
    if args.dry_run {
        for d in &docs {
            println!("---");
            print!("{}", serde_yaml::to_string(d)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let client = cluster::connect(target).await?;
    let pp = PatchParams::apply(INSTALL_MANAGER).force();
    // CRDs and the namespace first; then discovery knows everything else.
    let (first, rest): (Vec<&Value>, Vec<&Value>) = docs
        .iter()
        .partition(|d| d["kind"] == "CustomResourceDefinition" || d["kind"] == "Namespace");
    for group in [first, rest] {
        let discovery = Discovery::new(client.clone()).run_aggregated().await?;
        for d in group {
            let (api, name) = api_for(&client, &discovery, d).await?;
            api.patch(&name, &pp, &Patch::Apply(d))
                .await
                .with_context(|| {
                    format!("applying {} {name}", d["kind"].as_str().unwrap_or("?"))
                })?;
            println!("{}/{name} applied", d["kind"].as_str().unwrap_or("?"));
        }
    }
    println!("tidemark installed in namespace {}.", args.namespace);
    Ok(ExitCode::SUCCESS)
}

/// Runs `tidemark uninstall`.
pub(crate) async fn uninstall(target: &Target, args: UninstallArgs) -> Result<ExitCode> {
    if !args.confirm {
        bail!(
            "this removes the tidemark controller from namespace {}{}; add --confirm (backups in object storage are kept)",
            args.namespace,
            if args.keep_crds {
                ""
            } else {
                " and its CRDs with every tidemark object"
            }
        );
    }
    let client = cluster::connect(target).await?;
    let discovery = Discovery::new(client.clone()).run_aggregated().await?;
    let docs = manifests(&args.namespace, None)?;
    for d in docs.iter().rev() {
        if args.keep_crds && d["kind"] == "CustomResourceDefinition" {
            continue;
        }
        let Ok((api, name)) = api_for(&client, &discovery, d).await else {
            continue;
        };
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => println!("{}/{name} deleted", d["kind"].as_str().unwrap_or("?")),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e).with_context(|| format!("deleting {name}")),
        }
    }
    println!("tidemark uninstalled from namespace {}.", args.namespace);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_and_image_are_rewritten_everywhere() {
        let docs = manifests("backup-system", Some("registry.local/tidemark:dev")).unwrap();
        let text = serde_json::to_string(&docs).unwrap();
        assert!(!text.contains("\"namespace\":\"tidemark\""), "{text}");
        let ns = docs.iter().find(|d| d["kind"] == "Namespace").unwrap();
        assert_eq!(ns["metadata"]["name"], "backup-system");
        let dep = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
        assert_eq!(
            dep["spec"]["template"]["spec"]["containers"][0]["image"],
            "registry.local/tidemark:dev"
        );
        assert_eq!(
            docs.iter()
                .filter(|d| d["kind"] == "CustomResourceDefinition")
                .count(),
            8
        );
    }
}
