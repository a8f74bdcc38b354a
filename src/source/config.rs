//! The `source:` section of the controller's configuration file (`tidemark server --config
//! FILE`): where the controller reads tidemark manifests from when it is not only the cluster.
//! The same settings are `tidemark reconcile`'s flags; both become a [`SourceConfig`].
//!
//! ```yaml
//! source:
//!   kind: git                      # git | dir (omit the section: the cluster is the source)
//!   url: https://github.com/acme/platform.git
//!   ref: main                      # branch, tag or full ref
//!   path: clusters/prod            # kustomization rendered, else every *.yaml below it
//!   interval: 1m                   # how often the remote head is checked
//!   prune: true                    # delete objects that left Git (only ones tidemark applied)
//!   tokenFile: /etc/tidemark/git/token          # HTTPS token (a mounted Secret key)
//!   # sshKeyFile: /etc/tidemark/git/identity    # or an SSH key
//!   # knownHostsFile: /etc/tidemark/git/known_hosts
//!   commitStatus:                  # optional: a commit status per object and revision
//!     forge: github                # github | gitlab | gitea
//!     url: https://api.github.com
//!     repository: acme/platform
//!     tokenFile: /etc/tidemark/forge/token
//! ```
//!
//! Unknown fields are errors naming the field (a typo must not silently turn a feature off).
//! Durations use Go/humantime units (`30s`, `1m`, `1h30m`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Errors reading a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid configuration (the message names the field).
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, with the field's path (e.g. `source.interval: ...`).
        message: String,
    },
}

/// The controller's configuration file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Where manifests come from besides the cluster; `None`: only the cluster (Argo CD or Flux
    /// applies the manifests).
    #[serde(default)]
    pub source: Option<SourceConfig>,
}

impl ServerConfig {
    /// Reads and validates a configuration file (YAML).
    ///
    /// # Errors
    /// [`ConfigError::Read`] when the file cannot be read, [`ConfigError::Invalid`] naming the
    /// field when it does not parse or a value is unusable.
    pub fn load(path: &Path) -> Result<ServerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        ServerConfig::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses a configuration (YAML text).
    ///
    /// # Errors
    /// A message naming the field that is unknown, missing or invalid.
    pub fn parse(text: &str) -> Result<ServerConfig, String> {
        let de = serde_yaml::Deserializer::from_str(text);
        let config: ServerConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                e.inner().to_string()
            } else {
                format!("{path}: {}", e.inner())
            }
        })?;
        if let Some(s) = &config.source {
            s.validate().map_err(|m| format!("source.{m}"))?;
        }
        Ok(config)
    }
}

/// What kind of source (`kind:` here, `--source` on the command line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A Git repository (`--url`, `--ref`, `--path`).
    Git,
    /// A local directory (`--path`), watched for changes.
    Dir,
}

/// Settings of one source (the `source:` section, or `tidemark reconcile`'s flags).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceConfig {
    /// Git or a directory.
    pub kind: SourceKind,
    /// Repository URL (Git): `https://…`, `ssh://…`, `git@host:org/repo.git`, `file:///…`.
    #[serde(default)]
    pub url: Option<String>,
    /// Branch, tag or full ref to follow (Git). Default `main`.
    #[serde(default = "default_ref", rename = "ref")]
    pub reference: String,
    /// Path inside the repository (Git, default its root) or the directory (dir).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// How often to look for a new revision. Default 1 minute.
    #[serde(default = "default_interval", deserialize_with = "duration")]
    pub interval: Duration,
    /// Delete objects that left the source (only objects this source applied). Default true.
    #[serde(default = "yes")]
    pub prune: bool,
    /// Namespace of objects whose manifest names none, and of the source's record. Default:
    /// the controller's namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// User name sent with an HTTPS token, or for SSH when the URL has none. Default `git`.
    #[serde(default = "default_username")]
    pub username: String,
    /// File holding an HTTPS token (e.g. a mounted Secret key).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// SSH private key file.
    #[serde(default)]
    pub ssh_key_file: Option<PathBuf>,
    /// known_hosts file the SSH server's key must be in.
    #[serde(default)]
    pub known_hosts_file: Option<PathBuf>,
    /// Post commit statuses to a forge.
    #[serde(default)]
    pub commit_status: Option<CommitStatusConfig>,
    /// How long to wait for applied objects to settle before leaving their commit status
    /// pending. Default 2 minutes.
    #[serde(default = "default_status_timeout", deserialize_with = "duration")]
    pub status_timeout: Duration,
    /// Cache root for clones (default `$TIDEMARK_CACHE`, else `~/.cache/tidemark`).
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Longest a Git fetch's network part (listing refs, downloading) may take before it is
    /// stopped (Flux's GitRepository `timeout`). Default 5 minutes.
    #[serde(default = "default_git_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
}

/// Where commit statuses go.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommitStatusConfig {
    /// `github`, `gitlab` or `gitea`.
    pub forge: String,
    /// The forge's API root (`https://api.github.com`, `https://gitlab.example.com/api/v4`,
    /// `https://gitea.example.com/api/v1`).
    pub url: String,
    /// `owner/repo` (GitHub, Gitea) or the GitLab project id or path.
    pub repository: String,
    /// File holding the token (default: `$TIDEMARK_FORGE_TOKEN`).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

impl SourceConfig {
    /// Checks the fields that depend on each other.
    ///
    /// # Errors
    /// `"<field>: <reason>"`.
    pub fn validate(&self) -> Result<(), String> {
        match self.kind {
            SourceKind::Git if self.url.as_deref().is_none_or(str::is_empty) => {
                return Err("url: required when kind is git".into());
            }
            SourceKind::Dir if self.path.is_none() => {
                return Err("path: required when kind is dir".into());
            }
            _ => {}
        }
        if self.interval.is_zero() {
            return Err("interval: must be more than 0s".into());
        }
        if self.token_file.is_some() && self.ssh_key_file.is_some() {
            return Err("tokenFile: give a token or an SSH key, not both".into());
        }
        if let Some(c) = &self.commit_status
            && c.forge.parse::<crate::report::status::Forge>().is_err()
        {
            return Err(format!(
                "commitStatus.forge: {:?} is not one of github, gitlab, gitea",
                c.forge
            ));
        }
        Ok(())
    }
}

fn default_ref() -> String {
    "main".into()
}
fn default_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_status_timeout() -> Duration {
    Duration::from_secs(120)
}
fn default_git_timeout() -> Duration {
    crate::source::git::FETCH_TIMEOUT
}
fn default_username() -> String {
    "git".into()
}
fn yes() -> bool {
    true
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    crate::plan::expiry::duration(&s).map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_git_source_parses_with_defaults() {
        let c = ServerConfig::parse(
            "source:\n  kind: git\n  url: https://example.com/r.git\n  path: clusters/prod\n  \
             commitStatus:\n    forge: gitea\n    url: https://gitea.example.com/api/v1\n    \
             repository: acme/r\n",
        )
        .unwrap();
        let s = c.source.unwrap();
        assert_eq!(s.kind, SourceKind::Git);
        assert_eq!(s.reference, "main");
        assert_eq!(s.interval, Duration::from_secs(60));
        assert_eq!(s.status_timeout, Duration::from_secs(120));
        assert!(s.prune);
        assert_eq!(s.username, "git");
        assert_eq!(s.path.as_deref(), Some(Path::new("clusters/prod")));
        assert_eq!(s.commit_status.unwrap().repository, "acme/r");
    }

    #[test]
    fn empty_file_means_cluster_source() {
        assert_eq!(ServerConfig::parse("{}").unwrap(), ServerConfig::default());
        assert_eq!(ServerConfig::parse("source: null").unwrap().source, None);
    }

    #[test]
    fn errors_name_the_field() {
        let e =
            ServerConfig::parse("source:\n  kind: git\n  url: u\n  intervall: 1m\n").unwrap_err();
        assert!(e.contains("source") && e.contains("intervall"), "{e}");
        let e =
            ServerConfig::parse("source:\n  kind: git\n  url: u\n  interval: soon\n").unwrap_err();
        assert!(e.starts_with("source.interval"), "{e}");
        let e = ServerConfig::parse("source:\n  kind: svn\n").unwrap_err();
        assert!(e.contains("source.kind"), "{e}");
        let e = ServerConfig::parse("source:\n  kind: git\n").unwrap_err();
        assert_eq!(e, "source.url: required when kind is git");
        let e = ServerConfig::parse("source:\n  kind: dir\n").unwrap_err();
        assert_eq!(e, "source.path: required when kind is dir");
        let e =
            ServerConfig::parse("source:\n  kind: git\n  url: u\n  interval: 0s\n").unwrap_err();
        assert_eq!(e, "source.interval: must be more than 0s");
        let e = ServerConfig::parse(
            "source:\n  kind: git\n  url: u\n  commitStatus:\n    forge: bitbucket\n    url: x\n    repository: r\n",
        )
        .unwrap_err();
        assert!(e.starts_with("source.commitStatus.forge"), "{e}");
        let e = ServerConfig::parse("sources: {}\n").unwrap_err();
        assert!(e.contains("sources"), "{e}");
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let e = ServerConfig::load(Path::new("/nonexistent/tidemark.yaml")).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }));
        assert!(e.to_string().contains("/nonexistent/tidemark.yaml"));
    }
}
