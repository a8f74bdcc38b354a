//! Sources of desired state (DESIGN §6): a Git repository ([`git`]), a local directory
//! ([`dir`]), rendered into documents ([`kustomize`]) and parsed into tidemark manifests
//! ([`manifests`]).
//!
//! A source produces a [`Revision`] — Flux's `<branch>@sha1:<40 hex>` for Git, `sha256:<hex>`
//! (a digest of the rendered documents) for a directory — and the documents found at that
//! revision. `tidemark reconcile` applies them; the controller then reconciles what was applied.

mod child;
pub mod config;
pub mod dir;
pub mod git;
pub mod kustomize;
pub mod manifests;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use sha2::{Digest, Sha256};

pub use dir::{DirSource, DirWatcher};
pub use git::{Fetched, GitAuth, GitSource, GitSpec};
pub use kustomize::{Document, Rendered, render};
pub use manifests::{InvalidManifest, Kind, Manifest};

/// Errors of a source: fetching, checking out, reading or rendering. Problems of single
/// manifests are not errors of the source: they are [`InvalidManifest`]s.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A Git operation failed.
    #[error("git {url}: {message}")]
    Git {
        /// The repository (credentials removed).
        url: String,
        /// What failed.
        message: String,
    },
    /// The remote has no such branch, tag or ref.
    #[error("git {url}: no branch, tag or ref {reference:?} on the remote")]
    RefNotFound {
        /// The repository (credentials removed).
        url: String,
        /// The ref asked for.
        reference: String,
    },
    /// Credentials or host keys could not be used.
    #[error("{0}")]
    Auth(String),
    /// The path does not exist at this revision.
    #[error("path {path} does not exist{within}")]
    PathNotFound {
        /// The path asked for.
        path: String,
        /// ` in <revision>` or empty.
        within: String,
    },
    /// The path is not a relative path inside the repository.
    #[error("path {0:?} must be relative and stay inside the repository (no `..`)")]
    PathOutside(String),
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The path holds a kustomization but no renderer is installed.
    #[error(
        "{path} holds a kustomization, but neither `kustomize` nor `kubectl` is on PATH to render \
         it: install one of them (kubectl ≥ 1.14 includes `kubectl kustomize`)"
    )]
    KustomizeMissing {
        /// The kustomization directory.
        path: PathBuf,
    },
    /// Rendering the kustomization failed.
    #[error("`{command}` failed: {stderr}")]
    Kustomize {
        /// The command run.
        command: String,
        /// What it printed on stderr (trimmed).
        stderr: String,
    },
    /// Watching a directory failed.
    #[error("watching {path}: {message}")]
    Watch {
        /// The directory.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// The revision of a source.
///
/// Parses Flux's `<ref>@sha1:<40 hex>` (and `<ref>@sha256:<64 hex>`), `sha1:<hex>`, Argo CD's
/// bare commit SHA (40 or 64 hex), and `sha256:<64 hex>` digests; hex is normalised to lower
/// case. Displays in Flux's form: `main@sha1:<hex>`, `sha1:<hex>` for a commit without a ref,
/// `sha256:<hex>` for a digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Revision {
    /// A Git commit, with the branch, tag or ref it was fetched from when known.
    Commit {
        /// Branch or tag name (`main`, `v1.2.0`) or full ref (`refs/pull/1/head`).
        reference: Option<String>,
        /// The commit id: 40 hex (SHA-1) or 64 hex (SHA-256 repositories).
        id: String,
    },
    /// A digest of content without commits (a directory source): 64 hex of SHA-256.
    Digest(String),
}

impl Revision {
    /// A commit revision fetched from `reference` (`refs/heads/` and `refs/tags/` are dropped).
    pub fn commit(reference: &str, id: &str) -> Revision {
        let short = reference
            .strip_prefix("refs/heads/")
            .or_else(|| reference.strip_prefix("refs/tags/"))
            .unwrap_or(reference);
        Revision::Commit {
            reference: (!short.is_empty()).then(|| short.to_string()),
            id: id.to_ascii_lowercase(),
        }
    }

    /// The SHA-256 digest revision of `bytes`.
    pub fn digest_of(bytes: &[u8]) -> Revision {
        Revision::Digest(hex::encode(Sha256::digest(bytes)))
    }

    /// The commit id, for commit revisions.
    pub fn commit_id(&self) -> Option<&str> {
        match self {
            Revision::Commit { id, .. } => Some(id),
            Revision::Digest(_) => None,
        }
    }

    /// Whether both name the same content: the same commit (whatever ref or form, so Argo CD's
    /// bare SHA matches Flux's `main@sha1:`) or the same digest.
    pub fn same_content(&self, other: &Revision) -> bool {
        match (self, other) {
            (Revision::Commit { id: a, .. }, Revision::Commit { id: b, .. }) => a == b,
            (Revision::Digest(a), Revision::Digest(b)) => a == b,
            _ => false,
        }
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `sha1:<40 hex>` or `sha256:<64 hex>` → the hex.
fn algo_hex(s: &str) -> Option<&str> {
    if let Some(h) = s.strip_prefix("sha1:") {
        is_hex(h, 40).then_some(h)
    } else if let Some(h) = s.strip_prefix("sha256:") {
        is_hex(h, 64).then_some(h)
    } else {
        None
    }
}

impl FromStr for Revision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "{s:?} is not a revision (expected <ref>@sha1:<40 hex>, sha1:<40 hex>, a bare commit \
                 SHA, or sha256:<64 hex>)"
            )
        };
        let s = s.trim();
        if let Some((reference, rest)) = s.rsplit_once('@') {
            let id = algo_hex(rest).ok_or_else(bad)?;
            if reference.is_empty() || reference.chars().any(char::is_whitespace) {
                return Err(bad());
            }
            return Ok(Revision::Commit {
                reference: Some(reference.to_string()),
                id: id.to_ascii_lowercase(),
            });
        }
        if let Some(h) = s.strip_prefix("sha1:") {
            return is_hex(h, 40)
                .then(|| Revision::Commit {
                    reference: None,
                    id: h.to_ascii_lowercase(),
                })
                .ok_or_else(bad);
        }
        if let Some(h) = s.strip_prefix("sha256:") {
            return is_hex(h, 64)
                .then(|| Revision::Digest(h.to_ascii_lowercase()))
                .ok_or_else(bad);
        }
        if is_hex(s, 40) || is_hex(s, 64) {
            return Ok(Revision::Commit {
                reference: None,
                id: s.to_ascii_lowercase(),
            });
        }
        Err(bad())
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Revision::Commit { reference, id } => {
                let algo = if id.len() == 64 { "sha256" } else { "sha1" };
                match reference {
                    Some(r) => write!(f, "{r}@{algo}:{id}"),
                    None => write!(f, "{algo}:{id}"),
                }
            }
            Revision::Digest(h) => write!(f, "sha256:{h}"),
        }
    }
}

/// A short stable identifier (20 hex of SHA-256) of `parts`, usable as a label value: the
/// identity of a source (`tidemark.dev/source`) or the name of its cache directory.
pub fn stable_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    hex::encode(&h.finalize()[..10])
}

/// `url` with any password or token in its user-info replaced by `***` (for messages).
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn flux_revisions_parse_and_display() {
        let r: Revision = format!("main@sha1:{SHA}").parse().unwrap();
        assert_eq!(
            r,
            Revision::Commit {
                reference: Some("main".into()),
                id: SHA.into()
            }
        );
        assert_eq!(r.to_string(), format!("main@sha1:{SHA}"));
        // Refs with slashes and '@' keep everything before the last '@'.
        let r: Revision = format!("refs/pull/1/head@sha1:{SHA}").parse().unwrap();
        assert_eq!(r.to_string(), format!("refs/pull/1/head@sha1:{SHA}"));
        let r: Revision = format!("feature@x@sha1:{SHA}").parse().unwrap();
        assert_eq!(r.commit_id(), Some(SHA));
        // Upper-case hex is normalised.
        let r: Revision = format!("v1.0@sha1:{}", SHA.to_uppercase()).parse().unwrap();
        assert_eq!(r.to_string(), format!("v1.0@sha1:{SHA}"));
        let r: Revision = format!("sha1:{SHA}").parse().unwrap();
        assert_eq!(r.to_string(), format!("sha1:{SHA}"));
        let long = "a".repeat(64);
        let r: Revision = format!("main@sha256:{long}").parse().unwrap();
        assert_eq!(r.to_string(), format!("main@sha256:{long}"));
    }

    #[test]
    fn argo_bare_sha_is_accepted_and_matches_flux_form() {
        let argo: Revision = SHA.parse().unwrap();
        assert_eq!(argo.commit_id(), Some(SHA));
        let flux: Revision = format!("main@sha1:{SHA}").parse().unwrap();
        assert!(argo.same_content(&flux));
        assert_ne!(argo, flux);
        assert_eq!(argo.to_string(), format!("sha1:{SHA}"));
    }

    #[test]
    fn digests_and_rejections() {
        let d = Revision::digest_of(b"abc");
        let s = d.to_string();
        assert!(s.starts_with("sha256:") && s.len() == 7 + 64, "{s}");
        assert_eq!(s.parse::<Revision>().unwrap(), d);
        assert!(!d.same_content(&SHA.parse().unwrap()));
        for bad in [
            "",
            "main",
            "main@",
            "@sha1:0123",
            &format!("@sha1:{SHA}"),
            &format!("main@md5:{SHA}"),
            &format!("main@sha1:{SHA}00"),
            &SHA[..39],
            "g123456789abcdef0123456789abcdef01234567",
            "sha256:abc",
        ] {
            assert!(bad.parse::<Revision>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn revision_of_refs() {
        assert_eq!(
            Revision::commit("refs/heads/main", SHA).to_string(),
            format!("main@sha1:{SHA}")
        );
        assert_eq!(
            Revision::commit("refs/tags/v1", SHA).to_string(),
            format!("v1@sha1:{SHA}")
        );
    }

    #[test]
    fn ids_are_stable_label_values() {
        let a = stable_id(&["git", "https://x/y", "main", "p"]);
        assert_eq!(a.len(), 20);
        assert_eq!(a, stable_id(&["git", "https://x/y", "main", "p"]));
        assert_ne!(a, stable_id(&["git", "https://x/y", "mainp", ""]));
        assert_eq!(
            redact_url("https://user:secret@example.com/r.git"),
            "https://user:***@example.com/r.git"
        );
        assert_eq!(redact_url("git@host:o/r.git"), "git@host:o/r.git");
    }
}
