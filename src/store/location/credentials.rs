//! Credentials of a location, read from a Secret or a file in each provider's Velero format:
//! an AWS shared-credentials file, Azure's env-style `KEY=VALUE` file, a GCS service-account key.

use std::collections::BTreeMap;

use super::Provider;

/// Credentials and trust for a location, read from a Secret or a file (never from a URL).
///
/// Each provider's credentials file is Velero's: an AWS shared-credentials file for S3
/// ([`Secrets::from_aws_credentials_file`]), an env-style `KEY=VALUE` file for Azure
/// ([`Secrets::from_azure_credentials_file`]), a service-account key (JSON) for GCS
/// ([`Secrets::from_gcp_credentials_file`]).
#[derive(Clone, Default)]
pub struct Secrets {
    /// S3 access key id and secret access key.
    pub aws_credentials: Option<(String, String)>,
    /// Azure: the variables of the credentials file (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
    /// `AZURE_CLIENT_SECRET`, `AZURE_CLOUD_NAME`, the storage account key under the name that
    /// the `storageAccountKeyEnvVar` config key gives, ...).
    pub azure_credentials: Option<BTreeMap<String, String>>,
    /// GCS: a service-account key, the JSON document Google issues (`"type":
    /// "service_account"`).
    pub gcp_service_account_key: Option<String>,
    /// PEM bundle to trust for the store's TLS certificate.
    pub ca_cert_pem: Option<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field(
                "aws_credentials",
                &self.aws_credentials.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "azure_credentials",
                &self
                    .azure_credentials
                    .as_ref()
                    .map(|m| m.keys().cloned().collect::<Vec<_>>()),
            )
            .field(
                "gcp_service_account_key",
                &self.gcp_service_account_key.as_ref().map(|_| "[redacted]"),
            )
            .field("ca_cert_pem", &self.ca_cert_pem.is_some())
            .finish()
    }
}

impl Secrets {
    /// Reads `provider`'s credentials file in Velero's format (`profile` picks the section of
    /// an AWS file).
    ///
    /// # Errors
    /// A message naming what is missing or malformed (never a value); the filesystem provider
    /// takes no credentials.
    pub fn from_credentials_file(
        provider: Provider,
        text: &str,
        profile: Option<&str>,
    ) -> Result<Self, String> {
        match provider {
            Provider::S3 => Self::from_aws_credentials_file(text, profile),
            Provider::Azure => Self::from_azure_credentials_file(text),
            Provider::Gcp => Self::from_gcp_credentials_file(text),
            Provider::Filesystem => Err("the filesystem provider takes no credentials".into()),
        }
    }

    /// Reads an AWS shared-credentials file (`[default]` with `aws_access_key_id` and
    /// `aws_secret_access_key`, Velero's `credentials-velero` format); `profile` defaults to
    /// `default`.
    ///
    /// # Errors
    /// A message naming the missing key (never the values).
    pub fn from_aws_credentials_file(text: &str, profile: Option<&str>) -> Result<Self, String> {
        let want = profile.unwrap_or("default");
        let mut section = String::new();
        let (mut id, mut key) = (None, None);
        for line in text.lines().map(str::trim) {
            if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
                continue;
            }
            if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = s.trim().trim_start_matches("profile ").to_string();
                continue;
            }
            if section != want {
                continue;
            }
            if let Some((k, v)) = line.split_once('=') {
                match k.trim() {
                    "aws_access_key_id" => id = Some(v.trim().to_string()),
                    "aws_secret_access_key" => key = Some(v.trim().to_string()),
                    _ => {}
                }
            }
        }
        match (id, key) {
            (Some(id), Some(key)) => Ok(Self {
                aws_credentials: Some((id, key)),
                ..Self::default()
            }),
            _ => Err(format!(
                "profile [{want}] needs aws_access_key_id and aws_secret_access_key"
            )),
        }
    }

    /// Reads Velero's Azure credentials file: `KEY=VALUE` lines as godotenv reads them
    /// (`#` comments, an optional `export `, values optionally in single or double quotes).
    /// Which variables are used depends on the location's config: see [`LocationUrl`](crate::store::LocationUrl)'s Azure
    /// keys.
    ///
    /// # Errors
    /// The number of a line that is not `KEY=VALUE` (never its content).
    pub fn from_azure_credentials_file(text: &str) -> Result<Self, String> {
        Ok(Self {
            azure_credentials: Some(parse_env_file(text)?),
            ..Self::default()
        })
    }

    /// Reads Velero's GCP credentials file: a service-account key as Google issues it (JSON
    /// with `"type": "service_account"`, `client_email`, `private_key_id`, `private_key`).
    ///
    /// # Errors
    /// Not JSON, another credential type (Workload Identity Federation's `external_account`,
    /// a user's `authorized_user`), or a missing field, named.
    pub fn from_gcp_credentials_file(text: &str) -> Result<Self, String> {
        check_service_account_key(text)?;
        Ok(Self {
            gcp_service_account_key: Some(text.to_string()),
            ..Self::default()
        })
    }

    /// The credentials as environment variables, the form in which a process that opens the
    /// location from its URL alone (the node agent) reads them: `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY` for S3, every variable of the Azure file as it is, and
    /// `GOOGLE_SERVICE_ACCOUNT_KEY` (the JSON key) for GCS.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some((id, key)) = &self.aws_credentials {
            out.push(("AWS_ACCESS_KEY_ID".to_string(), id.clone()));
            out.push(("AWS_SECRET_ACCESS_KEY".to_string(), key.clone()));
        }
        if let Some(vars) = &self.azure_credentials {
            out.extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        if let Some(key) = &self.gcp_service_account_key {
            out.push(("GOOGLE_SERVICE_ACCOUNT_KEY".to_string(), key.clone()));
        }
        out
    }
}

/// Parses an env-style file as godotenv does for Velero's Azure credentials: blank lines and
/// `#` comments skipped, `export ` allowed, `KEY=VALUE` with the value trimmed, unquoted values
/// cut at ` #`, single-quoted values taken as they are, double-quoted ones with `\n`, `\"` and
/// `\\` escapes.
pub(super) fn parse_env_file(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(line);
        let bad = || format!("line {}: expected KEY=VALUE", i + 1);
        let (k, v) = line.split_once('=').ok_or_else(bad)?;
        let k = k.trim();
        let key_ok = k
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if !key_ok {
            return Err(bad());
        }
        let v = v.trim();
        let value = if let Some(inner) = v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
            inner.to_string()
        } else if let Some(inner) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
            let mut s = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    match chars.next() {
                        Some('n') => s.push('\n'),
                        Some('r') => s.push('\r'),
                        Some(other) => s.push(other),
                        None => s.push('\\'),
                    }
                } else {
                    s.push(c);
                }
            }
            s
        } else {
            v.split(" #").next().unwrap_or_default().trim().to_string()
        };
        out.insert(k.to_string(), value);
    }
    Ok(out)
}

/// Checks a GCS service-account key (JSON) for what the client needs.
pub(super) fn check_service_account_key(text: &str) -> Result<(), String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not a service-account key (JSON): {e}"))?;
    match v.get("type").and_then(|t| t.as_str()) {
        Some("service_account") | None => {}
        Some("external_account") => {
            return Err(
                "credentials of type external_account (Workload Identity Federation) \
                        are not supported: give a service-account key, or no credential to use \
                        the metadata server (GKE Workload Identity)"
                    .into(),
            );
        }
        Some(other) => {
            return Err(format!(
                "credentials of type {other:?} are not supported: give a service-account key \
                 (\"type\": \"service_account\")"
            ));
        }
    }
    for field in ["client_email", "private_key_id", "private_key"] {
        if !v.get(field).is_some_and(|f| f.is_string()) {
            return Err(format!("the service-account key has no {field}"));
        }
    }
    Ok(())
}
