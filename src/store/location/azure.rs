//! Azure Blob Storage locations (`azure://container/prefix?storageAccount=...`): Velero's
//! `velero.io/azure` config keys read into settings, and the object_store client built from them
//! and the credentials file.

use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::azure::MicrosoftAzureBuilder;

use super::credentials::parse_env_file;
use super::{LocationUrl, Secrets, StoreError, env_nonempty, go_bool, retry_config};

/// The Azure config keys tidemark reads (Velero's `velero.io/azure` BackupStorageLocation keys).
const AZURE_KEYS: &str = "storageAccount, storageAccountKeyEnvVar, useAAD, storageAccountURI, \
                          activeDirectoryAuthorityURI, blockSizeInBytes, resourceGroup, \
                          subscriptionId";
/// Smallest and largest `blockSizeInBytes` (1 MiB, 100 MiB: Velero's default). Up to
/// [`super::PART_CONCURRENCY`] blocks are held in memory at once.
pub const AZURE_BLOCK_SIZE_RANGE: std::ops::RangeInclusive<usize> = (1 << 20)..=(100 << 20);

/// An Azure location's settings, from its config keys.
pub(super) struct AzureSettings {
    pub(super) account: String,
    pub(super) key_env_var: Option<String>,
    pub(super) use_aad: bool,
    pub(super) endpoint: Option<String>,
    pub(super) authority: Option<String>,
}

impl LocationUrl {
    /// Reads the Azure config keys.
    pub(super) fn azure_settings(&self) -> Result<AzureSettings, StoreError> {
        let mut s = AzureSettings {
            account: String::new(),
            key_env_var: None,
            use_aad: false,
            endpoint: None,
            authority: None,
        };
        for (k, v) in &self.config {
            let v = v.trim();
            match k.as_str() {
                "storageAccount" => {
                    let ok = (3..=24).contains(&v.len())
                        && v.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
                    if !ok {
                        return Err(self.invalid(format!(
                            "storageAccount {v:?}: a storage account name is 3-24 lowercase \
                             letters and digits"
                        )));
                    }
                    s.account = v.to_string();
                }
                "storageAccountKeyEnvVar" => {
                    if v.is_empty() {
                        return Err(self.invalid("storageAccountKeyEnvVar is empty"));
                    }
                    s.key_env_var = Some(v.to_string());
                }
                "useAAD" => {
                    s.use_aad = go_bool(v).ok_or_else(|| {
                        self.invalid(format!("useAAD {v:?} is not a boolean (true or false)"))
                    })?;
                }
                "storageAccountURI" => {
                    let uri = if v.contains("://") {
                        v.to_string()
                    } else {
                        format!("https://{v}")
                    };
                    let parsed = url::Url::parse(&uri)
                        .map_err(|e| self.invalid(format!("storageAccountURI {v:?}: {e}")))?;
                    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                        return Err(
                            self.invalid(format!("storageAccountURI {v:?}: not an http(s) URL"))
                        );
                    }
                    s.endpoint = Some(uri.trim_end_matches('/').to_string());
                }
                "activeDirectoryAuthorityURI" => {
                    if !(v.starts_with("https://") || v.starts_with("http://")) {
                        return Err(self.invalid(format!(
                            "activeDirectoryAuthorityURI {v:?}: needs an http(s):// scheme"
                        )));
                    }
                    s.authority = Some(v.to_string());
                }
                "blockSizeInBytes" => {
                    let ok = v
                        .parse::<usize>()
                        .is_ok_and(|n| AZURE_BLOCK_SIZE_RANGE.contains(&n));
                    if !ok {
                        return Err(self.invalid(format!(
                            "blockSizeInBytes {v:?}: a number of bytes from {} (1 MiB) to {} \
                             (100 MiB)",
                            AZURE_BLOCK_SIZE_RANGE.start(),
                            AZURE_BLOCK_SIZE_RANGE.end()
                        )));
                    }
                }
                // Velero reads these to fetch the account key or the account's endpoint from
                // Azure Resource Manager; tidemark reads neither from there (see build_azure).
                "resourceGroup" => {
                    let ok = !v.is_empty()
                        && v.chars().count() <= 90
                        && !v.ends_with('.')
                        && v.chars()
                            .all(|c| c.is_alphanumeric() || "_-.()".contains(c));
                    if !ok {
                        return Err(self.invalid(format!(
                            "resourceGroup {v:?}: not an Azure resource group name"
                        )));
                    }
                }
                "subscriptionId" => {
                    if !is_guid(v) {
                        return Err(self.invalid(format!(
                            "subscriptionId {v:?}: not a subscription id (a GUID)"
                        )));
                    }
                }
                "apiVersion" => {
                    return Err(self.invalid(
                        "config key \"apiVersion\" is not supported: tidemark's Azure client \
                         sends its own storage API version",
                    ));
                }
                other => {
                    return Err(self.invalid(format!(
                        "unknown config key {other:?} (known: {AZURE_KEYS})"
                    )));
                }
            }
        }
        if s.account.is_empty() {
            return Err(self.invalid("storageAccount is required for Azure locations"));
        }
        Ok(s)
    }

    pub(super) fn build_azure(
        &self,
        secrets: Option<&Secrets>,
    ) -> Result<Arc<dyn ObjectStore>, StoreError> {
        let s = self.azure_settings()?;
        let creds = match secrets.and_then(|s| s.azure_credentials.clone()) {
            Some(c) => c,
            None => azure_env_credentials().map_err(|e| self.invalid(e))?,
        };
        let get = |k: &str| creds.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        // The cloud: the blob endpoint's domain and the Active Directory authority.
        let cloud = get("AZURE_CLOUD_NAME")
            .unwrap_or_default()
            .to_ascii_uppercase();
        let (suffix, default_authority) = match cloud.as_str() {
            "" | "AZURECLOUD" | "AZUREPUBLICCLOUD" => (
                Some("blob.core.windows.net"),
                Some("https://login.microsoftonline.com"),
            ),
            "AZURECHINACLOUD" => (
                Some("blob.core.chinacloudapi.cn"),
                Some("https://login.chinacloudapi.cn"),
            ),
            "AZUREUSGOVERNMENT" | "AZUREUSGOVERNMENTCLOUD" => (
                Some("blob.core.usgovcloudapi.net"),
                Some("https://login.microsoftonline.us"),
            ),
            _ => (None, None),
        };
        let endpoint = match (&s.endpoint, suffix) {
            (Some(e), _) => e.clone(),
            (None, Some(suffix)) => format!("https://{}.{suffix}", s.account),
            (None, None) => {
                return Err(self.invalid(format!(
                    "AZURE_CLOUD_NAME {:?} is not one of AzurePublicCloud, AzureChinaCloud, \
                     AzureUSGovernmentCloud: for another cloud set storageAccountURI (and \
                     activeDirectoryAuthorityURI with useAAD); tidemark does not read cloud \
                     settings from Azure Resource Manager",
                    get("AZURE_CLOUD_NAME").unwrap_or_default()
                )));
            }
        };
        let mut b = MicrosoftAzureBuilder::new()
            .with_account(&s.account)
            .with_container_name(&self.bucket)
            .with_endpoint(endpoint.clone());
        if let Some(var) = &s.key_env_var {
            // Velero's first way: the storage account key, from the credentials.
            let key = get(var).ok_or_else(|| {
                self.invalid(format!(
                    "storageAccountKeyEnvVar is {var:?}, but the credentials have no {var}"
                ))
            })?;
            b = b.with_access_key(key).with_credential_type("access_key");
        } else if s.use_aad {
            // Velero's second way: an Azure AD token for the account's data plane.
            let authority = s
                .authority
                .clone()
                .or_else(|| default_authority.map(str::to_string));
            let authority = match authority {
                Some(a) => a,
                None => {
                    return Err(self.invalid(
                        "useAAD in a cloud other than AzurePublicCloud, AzureChinaCloud or \
                         AzureUSGovernmentCloud needs activeDirectoryAuthorityURI",
                    ));
                }
            };
            if let Some(secret) = get("AZURE_CLIENT_SECRET") {
                let (Some(tenant), Some(client)) = (get("AZURE_TENANT_ID"), get("AZURE_CLIENT_ID"))
                else {
                    return Err(self.invalid(
                        "AZURE_CLIENT_SECRET needs AZURE_TENANT_ID and AZURE_CLIENT_ID in the \
                         credentials",
                    ));
                };
                b = b
                    .with_client_id(client)
                    .with_client_secret(secret)
                    .with_tenant_id(tenant)
                    .with_authority_host(authority)
                    .with_credential_type("client_secret");
            } else if get("AZURE_CLIENT_CERTIFICATE").is_some()
                || get("AZURE_CLIENT_CERTIFICATE_PATH").is_some()
            {
                return Err(self.invalid(
                    "client certificate credentials (AZURE_CLIENT_CERTIFICATE, \
                     AZURE_CLIENT_CERTIFICATE_PATH) are not supported: use AZURE_CLIENT_SECRET, \
                     workload identity, managed identity or storageAccountKeyEnvVar",
                ));
            } else if get("AZURE_USERNAME").is_some() {
                return Err(self.invalid(
                    "username/password credentials (AZURE_USERNAME) are not supported: use \
                     AZURE_CLIENT_SECRET, workload identity, managed identity or \
                     storageAccountKeyEnvVar",
                ));
            } else if let Some(token_file) = env_nonempty("AZURE_FEDERATED_TOKEN_FILE") {
                // Workload identity: the webhook sets these in the pod's environment.
                let client = env_nonempty("AZURE_CLIENT_ID")
                    .or_else(|| get("AZURE_CLIENT_ID").map(str::to_string));
                let tenant = env_nonempty("AZURE_TENANT_ID")
                    .or_else(|| get("AZURE_TENANT_ID").map(str::to_string));
                let (Some(client), Some(tenant)) = (client, tenant) else {
                    return Err(self.invalid(
                        "workload identity (AZURE_FEDERATED_TOKEN_FILE) needs AZURE_CLIENT_ID \
                         and AZURE_TENANT_ID",
                    ));
                };
                let authority = s
                    .authority
                    .clone()
                    .or_else(|| env_nonempty("AZURE_AUTHORITY_HOST"))
                    .unwrap_or(authority);
                b = b
                    .with_client_id(client)
                    .with_tenant_id(tenant)
                    .with_federated_token_file(token_file)
                    .with_authority_host(authority)
                    .with_credential_type("workload_identity");
            } else {
                // Managed identity, optionally a user-assigned one by client id.
                if let Some(client) = get("AZURE_CLIENT_ID") {
                    b = b.with_client_id(client);
                }
                b = b.with_credential_type("managed_identity");
            }
        } else {
            return Err(self.invalid(
                "give storageAccountKeyEnvVar (the credentials variable holding the storage \
                 account key) or useAAD=true: Velero's third way, fetching the account key \
                 through Azure Resource Manager with resourceGroup and subscriptionId, is not \
                 supported",
            ));
        }
        let opts = self.options(Some(&endpoint), secrets)?;
        b = b.with_client_options(opts).with_retry(retry_config());
        let store = b
            .build()
            .map_err(|e| self.invalid(crate::store::sanitize(&e.to_string())))?;
        Ok(Arc::new(store))
    }
}

/// A GUID, `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in hex digits.
fn is_guid(v: &str) -> bool {
    let groups: Vec<&str> = v.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Azure credentials in direct mode: the file `$AZURE_CREDENTIALS_FILE` names (Velero's
/// variable), else the process environment read as that file.
fn azure_env_credentials() -> Result<BTreeMap<String, String>, String> {
    match std::env::var_os("AZURE_CREDENTIALS_FILE") {
        Some(path) if !path.is_empty() => {
            let shown = std::path::Path::new(&path).display().to_string();
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("AZURE_CREDENTIALS_FILE {shown}: {e}"))?;
            parse_env_file(&text).map_err(|e| format!("AZURE_CREDENTIALS_FILE {shown}: {e}"))
        }
        _ => Ok(std::env::vars().collect()),
    }
}
