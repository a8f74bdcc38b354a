//! A `GitSource`'s credentials, read from the Secrets it names (Flux's keys): HTTPS
//! `username`/`password`, SSH `identity`/`known_hosts`/`password`, and the forge `token` of
//! `spec.commitStatus.secretRef`. SSH material is written to private files (mode 0600, in a
//! 0700 directory per GitSource) because libgit2 reads keys from files; tokens stay in memory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::{Client, ResourceExt};

use super::GitopsError;
use super::source::GitCredentials;
use crate::api::gitsource::GitSource;

async fn secret_data(
    client: &Client,
    namespace: &str,
    name: &str,
    field: &str,
) -> Result<BTreeMap<String, String>, GitopsError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = api
        .get_opt(name)
        .await
        .map_err(|e| GitopsError::kube(format!("reading Secret {namespace}/{name}"), e))?
        .ok_or_else(|| {
            GitopsError::settings(field, format!("Secret {namespace}/{name} does not exist"))
        })?;
    let mut out = BTreeMap::new();
    for (k, v) in secret.data.unwrap_or_default() {
        let text = String::from_utf8(v.0).map_err(|_| {
            GitopsError::settings(field, format!("key {k} of Secret {name} is not UTF-8"))
        })?;
        out.insert(k, text);
    }
    for (k, v) in secret.string_data.unwrap_or_default() {
        out.insert(k, v);
    }
    Ok(out)
}

fn write_private(dir: &Path, name: &str, content: &str) -> Result<PathBuf, GitopsError> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let io = |e: std::io::Error| {
        GitopsError::Source(crate::source::SourceError::Io {
            path: dir.join(name),
            source: e,
        })
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    let path = dir.join(name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(io)?;
    f.write_all(content.as_bytes()).map_err(io)?;
    Ok(path)
}

/// Reads the credentials of `gs`: its `spec.secretRef` (Git) and `spec.commitStatus.secretRef`
/// (forge token, key `token`); SSH files go under `<cache_root>/credentials/<uid>/`.
///
/// # Errors
/// [`GitopsError::Settings`] naming the field when a Secret or a key is missing,
/// [`GitopsError::Kube`] when a Secret cannot be read.
pub async fn read(
    client: &Client,
    gs: &GitSource,
    cache_root: &Path,
) -> Result<(GitCredentials, Option<String>), GitopsError> {
    let ns = gs.namespace().unwrap_or_default();
    let mut creds = GitCredentials::default();
    if let Some(r) = &gs.spec.secret_ref {
        let data = secret_data(client, &ns, &r.name, "spec.secretRef").await?;
        creds.username = data.get("username").map(|u| u.trim().to_string());
        creds.password = data.get("password").map(|p| p.trim().to_string());
        if let Some(key) = data.get("identity") {
            let dir = cache_root
                .join("credentials")
                .join(gs.uid().unwrap_or_else(|| gs.name_any()));
            creds.identity_file = Some(write_private(&dir, "identity", key)?);
            if let Some(kh) = data.get("known_hosts") {
                creds.known_hosts_file = Some(write_private(&dir, "known_hosts", kh)?);
            }
        } else if creds.password.is_none() {
            return Err(GitopsError::settings(
                "spec.secretRef",
                format!(
                    "Secret {} has neither `password` (HTTPS token) nor `identity` (SSH key)",
                    r.name
                ),
            ));
        }
    }
    let token = match &gs.spec.commit_status {
        Some(c) => {
            let data = secret_data(
                client,
                &ns,
                &c.secret_ref.name,
                "spec.commitStatus.secretRef",
            )
            .await?;
            Some(
                data.get("token")
                    .map(|t| t.trim().to_string())
                    .ok_or_else(|| {
                        GitopsError::settings(
                            "spec.commitStatus.secretRef",
                            format!("Secret {} has no key `token`", c.secret_ref.name),
                        )
                    })?,
            )
        }
        None => None,
    };
    Ok((creds, token))
}
