//! Google Cloud Storage locations (`gs://bucket/prefix`): Velero's `velero.io/gcp` config keys
//! and the client built from them and a service-account key.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::gcp::GoogleCloudStorageBuilder;

use super::credentials::check_service_account_key;
use super::{LocationUrl, Secrets, StoreError, env_nonempty, retry_config};

/// Google Cloud Storage's endpoint.
const GCS_BASE_URL: &str = "https://storage.googleapis.com";

/// The GCS config keys tidemark reads (Velero's `velero.io/gcp` keys).
const GCP_KEYS: &str = "storeEndpoint, universeDomain, serviceAccount";

/// A GCS location's settings, from its config keys.
pub(super) struct GcpSettings {
    pub(super) base_url: Option<String>,
}

/// Where a GCS client gets its credentials.
enum GcpCredentials {
    /// A service-account key (JSON).
    Key(String),
    /// A user's application-default credentials file (`gcloud auth application-default
    /// login`), direct mode only.
    AuthorizedUserFile(String),
    /// The well-known application-default file, else the metadata server.
    Default,
}

impl LocationUrl {
    /// Reads the GCS config keys.
    pub(super) fn gcp_settings(&self) -> Result<GcpSettings, StoreError> {
        let mut base_url = None;
        let mut universe = None;
        for (k, v) in &self.config {
            let v = v.trim();
            match k.as_str() {
                "storeEndpoint" => {
                    let parsed = url::Url::parse(v)
                        .map_err(|e| self.invalid(format!("storeEndpoint {v:?}: {e}")))?;
                    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                        return Err(
                            self.invalid(format!("storeEndpoint {v:?}: not an http(s) URL"))
                        );
                    }
                    // Go's client takes the JSON API's root (`.../storage/v1/`); the client
                    // here wants the host's root.
                    let root = v.trim_end_matches('/');
                    let root = root.strip_suffix("/storage/v1").unwrap_or(root);
                    base_url = Some(root.trim_end_matches('/').to_string());
                }
                "universeDomain" => {
                    let ok = !v.is_empty()
                        && v.split('.').all(|l| {
                            !l.is_empty()
                                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                        });
                    if !ok {
                        return Err(
                            self.invalid(format!("universeDomain {v:?}: not a domain name"))
                        );
                    }
                    universe = Some(format!("https://storage.{v}"));
                }
                // Velero signs download URLs as this account under Workload Identity; tidemark
                // downloads through its own client and signs no URLs.
                "serviceAccount" => {
                    if !v.contains('@') {
                        return Err(self.invalid(format!(
                            "serviceAccount {v:?}: not a service account's email address"
                        )));
                    }
                }
                "kmsKeyName" => {
                    return Err(self.invalid(
                        "config key \"kmsKeyName\" is not supported: tidemark's GCS client cannot \
                         name a KMS key per object; set the key as the bucket's default \
                         encryption key, which GCS applies to every object written",
                    ));
                }
                other => {
                    return Err(
                        self.invalid(format!("unknown config key {other:?} (known: {GCP_KEYS})"))
                    );
                }
            }
        }
        Ok(GcpSettings {
            base_url: base_url.or(universe),
        })
    }

    pub(super) fn build_gcp(
        &self,
        secrets: Option<&Secrets>,
    ) -> Result<Arc<dyn ObjectStore>, StoreError> {
        let s = self.gcp_settings()?;
        let creds = match secrets.and_then(|s| s.gcp_service_account_key.clone()) {
            Some(key) => GcpCredentials::Key(key),
            None => gcp_env_credentials().map_err(|e| self.invalid(e))?,
        };
        let mut b = GoogleCloudStorageBuilder::new().with_bucket_name(&self.bucket);
        b = match creds {
            GcpCredentials::Key(key) => {
                check_service_account_key(&key).map_err(|e| self.invalid(e))?;
                b.with_service_account_key(key)
            }
            GcpCredentials::AuthorizedUserFile(path) => b.with_application_credentials(path),
            GcpCredentials::Default => b,
        };
        if let Some(url) = &s.base_url {
            b = b.with_base_url(url);
        }
        let opts = self.options(s.base_url.as_deref(), secrets)?;
        let http = object_store::client::HttpConnector::connect(
            &object_store::client::ReqwestConnector::default(),
            &opts,
        )
        .map_err(|e| self.invalid(crate::store::sanitize(&e.to_string())))?;
        b = b.with_client_options(opts).with_retry(retry_config());
        let store = b
            .build()
            .map_err(|e| self.invalid(crate::store::sanitize(&e.to_string())))?;
        let base_url = s.base_url.as_deref().unwrap_or(GCS_BASE_URL);
        Ok(Arc::new(crate::store::gcs::Gcs::new(
            store,
            http,
            base_url,
            &self.bucket,
        )))
    }
}

/// GCS credentials in direct mode: `$GOOGLE_SERVICE_ACCOUNT_KEY` (the key's JSON), else the file
/// `$GOOGLE_APPLICATION_CREDENTIALS` names (a service-account key, or a user's
/// application-default credentials), else the defaults.
fn gcp_env_credentials() -> Result<GcpCredentials, String> {
    if let Some(key) = env_nonempty("GOOGLE_SERVICE_ACCOUNT_KEY") {
        check_service_account_key(&key).map_err(|e| format!("GOOGLE_SERVICE_ACCOUNT_KEY: {e}"))?;
        return Ok(GcpCredentials::Key(key));
    }
    if let Some(path) = env_nonempty("GOOGLE_APPLICATION_CREDENTIALS") {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("GOOGLE_APPLICATION_CREDENTIALS {path}: {e}"))?;
        let kind = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string));
        if kind.as_deref() == Some("authorized_user") {
            return Ok(GcpCredentials::AuthorizedUserFile(path));
        }
        check_service_account_key(&text)
            .map_err(|e| format!("GOOGLE_APPLICATION_CREDENTIALS {path}: {e}"))?;
        return Ok(GcpCredentials::Key(text));
    }
    Ok(GcpCredentials::Default)
}
