//! Resolving Locations for every controller: finding a Location by name (or the default one)
//! and opening its store with the credentials and encryption keys from its Secrets. The
//! Location controller (`location.rs`) and the Backup, Restore, Schedule, BackupPolicy and
//! RestorePlan controllers all go through here; no controller reaches into another for it.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use super::Context;
use crate::api::tidemark::{AccessMode as CrdAccess, Location, Provider as CrdProvider};
use crate::store::{AccessMode, LocationUrl, Secrets, Store};

/// Why a Location cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LocationProblem {
    /// No Location of that name (or no default one).
    #[error("{0}")]
    NotFound(String),
    /// The Location's spec or credentials are unusable (terminal until changed).
    #[error("{field}: {message}")]
    Invalid {
        /// The field at fault (`spec.credential`).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A Kubernetes request failed.
    #[error("{0}")]
    Kube(#[from] kube::Error),
}

/// Opens the store of a Location, with credentials from its Secret.
///
/// # Errors
/// [`LocationProblem::Invalid`] naming the field at fault.
pub async fn store_for(ctx: &Context, loc: &Location) -> Result<Store, LocationProblem> {
    store_for_in(&ctx.client, &ctx.namespace, loc).await
}

/// `store_for` without a controller [`Context`]: the credentials Secret is read from
/// `namespace` with `client`. Reads only; opening a store writes nothing to it.
///
/// # Errors
/// [`LocationProblem::Invalid`] naming the field at fault.
pub async fn store_for_in(
    client: &kube::Client,
    namespace: &str,
    loc: &Location,
) -> Result<Store, LocationProblem> {
    let s = &loc.spec;
    let mode = match s.access_mode {
        CrdAccess::ReadWrite => AccessMode::ReadWrite,
        CrdAccess::ReadOnly => AccessMode::ReadOnly,
    };
    let prefix = s.prefix.clone().unwrap_or_default();
    // S3's `profile` picks the credentials file's section; it is not a store setting.
    let mut config = s.config.clone();
    let profile = match s.provider {
        CrdProvider::S3 => config.remove("profile"),
        _ => None,
    };
    if s.provider == CrdProvider::Filesystem && !std::path::Path::new(&s.bucket).is_absolute() {
        return Err(LocationProblem::Invalid {
            field: "spec.bucket".into(),
            message: format!(
                "{:?} must be an absolute directory for provider filesystem",
                s.bucket
            ),
        });
    }
    let mut url = LocationUrl::new(s.provider.into(), &s.bucket, &prefix, config, mode);
    if s.object_lock.is_some() {
        url = url.with_object_lock_checksums();
    }
    let mut secrets = Secrets::default();
    if let Some(cred) = &s.credential {
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let secret = api
            .get_opt(&cred.name)
            .await?
            .ok_or_else(|| LocationProblem::Invalid {
                field: "spec.credential".into(),
                message: format!("Secret {} not found in namespace {namespace}", cred.name),
            })?;
        let raw = secret
            .data
            .as_ref()
            .and_then(|d| d.get(&cred.key))
            .map(|b| String::from_utf8_lossy(&b.0).to_string())
            .ok_or_else(|| LocationProblem::Invalid {
                field: "spec.credential.key".into(),
                message: format!("Secret {} has no key {:?}", cred.name, cred.key),
            })?;
        secrets = Secrets::from_credentials_file(s.provider.into(), &raw, profile.as_deref())
            .map_err(|m| LocationProblem::Invalid {
                field: "spec.credential".into(),
                message: format!("Secret {}/{}: {m}", cred.name, cred.key),
            })?;
    }
    secrets.ca_cert_pem = s.ca_cert.clone();
    let store = Store::open_with(&url, &secrets).map_err(|e| LocationProblem::Invalid {
        field: "spec".into(),
        message: e.to_string(),
    })?;
    let store = match &s.object_lock {
        Some(_) if s.provider != crate::api::tidemark::Provider::S3 => {
            return Err(LocationProblem::Invalid {
                field: "spec.objectLock".into(),
                message: "S3 Object Lock needs an S3 location (provider S3)".into(),
            });
        }
        Some(lock) => store.with_object_lock(lock.mode.into()),
        None => store,
    };
    match &s.encryption {
        Some(enc) => Ok(store.with_encryption(encryption_keys(client, namespace, enc).await?)),
        None => Ok(store),
    }
}

/// The keys of a Location's `spec.encryption`, from its Secret (`identity` or `passphrase`).
///
/// # Errors
/// [`LocationProblem::Invalid`] naming `spec.encryption...` for a missing Secret or key, or
/// keys age does not accept (never the key material itself).
async fn encryption_keys(
    client: &kube::Client,
    namespace: &str,
    enc: &crate::api::tidemark::LocationEncryption,
) -> Result<std::sync::Arc<crate::store::Encryption>, LocationProblem> {
    let invalid = |field: &str, message: String| LocationProblem::Invalid {
        field: format!("spec.encryption.{field}"),
        message,
    };
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = api.get_opt(&enc.secret_name).await?.ok_or_else(|| {
        invalid(
            "secretName",
            format!(
                "Secret {} not found in namespace {namespace}",
                enc.secret_name
            ),
        )
    })?;
    let value = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| String::from_utf8_lossy(&b.0).to_string())
    };
    let keys = match (value("identity"), value("passphrase")) {
        (Some(ids), None) => crate::store::Encryption::from_identities(&ids, &enc.recipients),
        (None, Some(p)) if enc.recipients.is_empty() => {
            crate::store::Encryption::from_passphrase(&p)
        }
        (None, Some(_)) => {
            return Err(invalid(
                "recipients",
                "age cannot encrypt to recipients and a passphrase at once".into(),
            ));
        }
        (Some(_), Some(_)) => {
            return Err(invalid(
                "secretName",
                format!(
                    "Secret {} has both identity and passphrase: keep one",
                    enc.secret_name
                ),
            ));
        }
        (None, None) => {
            return Err(invalid(
                "secretName",
                format!(
                    "Secret {} has neither an identity nor a passphrase key",
                    enc.secret_name
                ),
            ));
        }
    };
    keys.map(std::sync::Arc::new)
        .map_err(|e| invalid("secretName", format!("Secret {}: {e}", enc.secret_name)))
}

/// Finds a Location by name, or the default one (`spec.default: true`; the first by name when
/// several are).
///
/// # Errors
/// [`LocationProblem::NotFound`].
pub async fn find(ctx: &Context, name: Option<&str>) -> Result<Location, LocationProblem> {
    let api: Api<Location> = ctx.api();
    if let Some(n) = name
        && let Some(cached) = ctx.caches.location(n)
    {
        return Ok(cached);
    }
    match name {
        Some(n) => api.get_opt(n).await?.ok_or_else(|| {
            LocationProblem::NotFound(format!(
                "Location {n:?} not found in namespace {}",
                ctx.namespace
            ))
        }),
        None => {
            let listed = match ctx.caches.locations() {
                Some(cached) if cached.iter().any(|l| l.spec.default) => cached,
                // Not filled yet, or no default in it (one may have been set a moment ago).
                _ => api.list(&ListParams::default()).await?.items,
            };
            let mut all: Vec<Location> = listed.into_iter().filter(|l| l.spec.default).collect();
            all.sort_by_key(|l| l.name_any());
            all.into_iter().next().ok_or_else(|| {
                LocationProblem::NotFound(format!(
                    "no default Location in namespace {} (set spec.default: true on one)",
                    ctx.namespace
                ))
            })
        }
    }
}

/// Opens a Location by name or the default one.
///
/// # Errors
/// [`LocationProblem`].
pub async fn open(ctx: &Context, name: Option<&str>) -> Result<(Location, Store), LocationProblem> {
    let loc = find(ctx, name).await?;
    let store = store_for(ctx, &loc).await?;
    Ok((loc, store))
}
