//! Where a GitOps pass reads from, and how often: [`Settings`] built from a `GitSource`, from
//! `tidemark reconcile`'s flags or from the deprecated `source:` section of the server's
//! configuration file (one dialect: the same durations and defaults), and the [`Source`] that
//! fetches and renders a revision.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::api::gitsource::GitSource as GitSourceObject;
use crate::report::status::{Forge, ForgeConfig, Secret, token_from};
use crate::source::config::{SourceConfig, SourceKind};
use crate::source::{
    DirSource, GitAuth, GitSource, GitSpec, Rendered, Revision, redact_url, render, stable_id,
};

use super::GitopsError;

/// Default interval between checks of the remote (1 min).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Default wait for applied objects to settle before their commit status is left pending
/// (2 min).
pub const DEFAULT_STATUS_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the manifests are.
#[derive(Clone, Debug)]
pub enum Origin {
    /// A Git repository.
    Git(Box<GitSpec>),
    /// A local directory, watched for changes.
    Dir(PathBuf),
}

/// Everything a GitOps pass needs to know about its source.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where the manifests are.
    pub origin: Origin,
    /// Namespace of objects whose manifest names none.
    pub namespace: String,
    /// The source's id: the value of [`super::SOURCE_LABEL`] on what it applies (≤ 63
    /// characters).
    pub id: String,
    /// Whether objects that left the source are deleted.
    pub prune: bool,
    /// How often the remote is checked.
    pub interval: Duration,
    /// Where commit statuses go, if anywhere.
    pub forge: Option<ForgeConfig>,
    /// How long statuses wait for applied objects to settle.
    pub status_timeout: Duration,
}

/// Git credentials read from a GitSource's Secret (Flux's keys).
#[derive(Clone, Default)]
pub struct GitCredentials {
    /// `username` (default `git`).
    pub username: Option<String>,
    /// `password`: an HTTPS token, or the passphrase of `identity`.
    pub password: Option<String>,
    /// `identity`: an SSH private key, already written to a private file.
    pub identity_file: Option<PathBuf>,
    /// `known_hosts`, already written to a private file.
    pub known_hosts_file: Option<PathBuf>,
}

fn parse_duration(
    field: &str,
    value: Option<&str>,
    default: Duration,
) -> Result<Duration, GitopsError> {
    match value {
        None => Ok(default),
        Some(v) => {
            let d = crate::plan::expiry::duration(v)
                .map_err(|e| GitopsError::settings(field, format!("{v:?}: {e}")))?;
            if d.is_zero() {
                return Err(GitopsError::settings(field, "must be more than 0s"));
            }
            Ok(d)
        }
    }
}

impl Settings {
    /// The `spec.interval` of a `GitSource` ([`DEFAULT_INTERVAL`] when unset).
    ///
    /// # Errors
    /// [`GitopsError::Settings`] naming `spec.interval` when it is not a duration above 0s.
    pub fn interval_of(gs: &GitSourceObject) -> Result<Duration, GitopsError> {
        parse_duration(
            "spec.interval",
            gs.spec.interval.as_deref(),
            DEFAULT_INTERVAL,
        )
    }

    /// The source id of a `GitSource` object: derived from its namespace and name, so changing
    /// its URL or path keeps what it applied.
    pub fn id_of(gs: &GitSourceObject) -> String {
        use kube::ResourceExt;
        stable_id(&[
            "gitsource",
            &gs.namespace().unwrap_or_default(),
            &gs.name_any(),
        ])
    }

    /// The settings of the `source:` section (or `tidemark reconcile`'s flags, translated into
    /// it); `namespace` is used when the section names none. Token files are read here.
    ///
    /// # Errors
    /// [`GitopsError::Settings`] naming the field (`source.url: required when kind is git`),
    /// unreadable token files.
    pub fn from_config(cfg: &SourceConfig, namespace: &str) -> Result<Settings, GitopsError> {
        cfg.validate().map_err(|e| {
            let (field, message) = e.split_once(": ").unwrap_or(("source", e.as_str()));
            GitopsError::settings(&format!("source.{field}"), message)
        })?;
        let namespace = cfg
            .namespace
            .clone()
            .unwrap_or_else(|| namespace.to_string());
        let origin = match cfg.kind {
            SourceKind::Git => {
                let url = cfg.url.clone().ok_or_else(|| {
                    GitopsError::settings("source.url", "required for a git source")
                })?;
                let auth = GitAuth::from_options(
                    &cfg.username,
                    cfg.token_file.as_deref(),
                    cfg.ssh_key_file.as_deref(),
                    cfg.known_hosts_file.as_deref(),
                )?;
                Origin::Git(Box::new(GitSpec {
                    url,
                    reference: cfg.reference.clone(),
                    semver: None,
                    commit: None,
                    path: cfg.path.clone().unwrap_or_else(|| PathBuf::from(".")),
                    auth,
                    cache_root: cfg.cache_dir.clone(),
                    timeout: cfg.timeout,
                }))
            }
            SourceKind::Dir => Origin::Dir(cfg.path.clone().ok_or_else(|| {
                GitopsError::settings("source.path", "required for a dir source")
            })?),
        };
        let forge = match &cfg.commit_status {
            None => None,
            Some(c) => Some(ForgeConfig {
                forge: c
                    .forge
                    .parse::<Forge>()
                    .map_err(|e| GitopsError::settings("source.commitStatus.forge", e))?,
                base_url: c.url.clone(),
                repository: c.repository.clone(),
                token: token_from(c.token_file.as_deref(), Some("TIDEMARK_FORGE_TOKEN"))
                    .map_err(|e| GitopsError::settings("source.commitStatus.tokenFile", e))?,
            }),
        };
        let id = match &origin {
            Origin::Git(s) => stable_id(&[
                "git",
                &s.url,
                &s.reference,
                &s.path.to_string_lossy(),
                &namespace,
            ]),
            Origin::Dir(p) => stable_id(&["dir", &p.to_string_lossy(), &namespace]),
        };
        Ok(Settings {
            origin,
            namespace,
            id,
            prune: cfg.prune,
            interval: cfg.interval,
            forge,
            status_timeout: cfg.status_timeout,
        })
    }

    /// The settings of a `GitSource` object, with the credentials its Secrets hold
    /// (`forge_token`: the `token` key of `spec.commitStatus.secretRef`). The id is derived
    /// from the object's namespace and name, so renaming the URL keeps what was applied.
    ///
    /// # Errors
    /// [`GitopsError::Settings`] naming the `spec.` field.
    pub fn from_git_source(
        gs: &GitSourceObject,
        credentials: GitCredentials,
        forge_token: Option<String>,
        cache_root: Option<PathBuf>,
    ) -> Result<Settings, GitopsError> {
        use kube::ResourceExt;
        let spec = &gs.spec;
        let own_ns = gs.namespace().unwrap_or_default();
        let namespace = spec
            .target_namespace
            .clone()
            .unwrap_or_else(|| own_ns.clone());
        if spec.url.is_empty() {
            return Err(GitopsError::settings("spec.url", "must not be empty"));
        }
        let r = spec.reference.clone().unwrap_or_default();
        let set = [&r.branch, &r.tag, &r.semver, &r.name]
            .iter()
            .filter(|x| x.is_some())
            .count();
        if set > 1 {
            return Err(GitopsError::settings(
                "spec.ref",
                "give at most one of branch, tag, semver and name",
            ));
        }
        if r.commit.is_some() && (r.tag.is_some() || r.semver.is_some() || r.name.is_some()) {
            return Err(GitopsError::settings(
                "spec.ref.commit",
                "combines with branch only",
            ));
        }
        if let Some(range) = &r.semver {
            semver::VersionReq::parse(range)
                .map_err(|e| GitopsError::settings("spec.ref.semver", format!("{range:?}: {e}")))?;
        }
        if let Some(c) = &r.commit
            && (c.len() != 40 || !c.chars().all(|ch| ch.is_ascii_hexdigit()))
        {
            return Err(GitopsError::settings(
                "spec.ref.commit",
                format!("{c:?} is not a full commit id (40 hex digits)"),
            ));
        }
        let reference = if let Some(b) = &r.branch {
            b.clone()
        } else if let Some(t) = &r.tag {
            format!("refs/tags/{t}")
        } else if let Some(n) = &r.name {
            n.clone()
        } else if r.commit.is_some() {
            "HEAD".into()
        } else {
            "main".into()
        };
        let path = PathBuf::from(spec.path.as_deref().unwrap_or("."));
        let auth = match (&credentials.identity_file, &credentials.password) {
            (Some(key), passphrase) => GitAuth::Ssh {
                username: credentials.username.clone().unwrap_or_else(|| "git".into()),
                private_key: key.clone(),
                passphrase: passphrase.clone(),
                known_hosts: credentials.known_hosts_file.clone(),
            },
            (None, Some(token)) => GitAuth::Token {
                username: credentials.username.clone().unwrap_or_else(|| "git".into()),
                token: token.clone(),
            },
            (None, None) => GitAuth::None,
        };
        let origin = Origin::Git(Box::new(GitSpec {
            url: spec.url.clone(),
            reference,
            semver: r.semver.clone(),
            commit: r.commit.clone(),
            path,
            auth,
            cache_root,
            timeout: parse_duration(
                "spec.timeout",
                spec.timeout.as_deref(),
                crate::source::git::FETCH_TIMEOUT,
            )?,
        }));
        let (forge, status_timeout) = match &spec.commit_status {
            None => (None, DEFAULT_STATUS_TIMEOUT),
            Some(c) => {
                let token = forge_token.ok_or_else(|| {
                    GitopsError::settings(
                        "spec.commitStatus.secretRef",
                        format!("Secret {} has no key `token`", c.secret_ref.name),
                    )
                })?;
                (
                    Some(ForgeConfig {
                        forge: c
                            .forge
                            .parse::<Forge>()
                            .map_err(|e| GitopsError::settings("spec.commitStatus.forge", e))?,
                        base_url: c.url.clone(),
                        repository: c.repository.clone(),
                        token: Secret::new(token.trim()),
                    }),
                    parse_duration(
                        "spec.commitStatus.timeout",
                        c.timeout.as_deref(),
                        DEFAULT_STATUS_TIMEOUT,
                    )?,
                )
            }
        };
        Ok(Settings {
            origin,
            id: Settings::id_of(gs),
            namespace,
            prune: spec.prune,
            interval: Settings::interval_of(gs)?,
            forge,
            status_timeout,
        })
    }
}

/// A source ready to be polled.
#[derive(Clone)]
pub enum Source {
    /// A Git repository (its clone cached on disk, shared by every poll).
    Git(Arc<GitSource>),
    /// A local directory.
    Dir(DirSource),
}

/// What one poll found.
pub struct Polled {
    /// The current revision.
    pub revision: Revision,
    /// Its rendered documents, unless it is the revision polled `since`.
    pub rendered: Option<Rendered>,
    /// How long the poll took.
    pub took: Duration,
}

impl Source {
    /// The source of `origin`.
    ///
    /// # Errors
    /// [`GitopsError::Source`]: the cache or directory is unusable.
    pub fn new(origin: &Origin) -> Result<Source, GitopsError> {
        Ok(match origin {
            Origin::Git(spec) => Source::Git(Arc::new(GitSource::new(spec.as_ref().clone())?)),
            Origin::Dir(path) => Source::Dir(DirSource::new(path.clone())?),
        })
    }

    /// One line naming the source (credentials removed from URLs).
    pub fn describe(&self) -> String {
        match self {
            Source::Git(g) => {
                let s = g.spec();
                let reference = match (&s.semver, &s.commit) {
                    (Some(range), _) => format!("semver {range}"),
                    (None, Some(c)) => format!("{} at {c}", s.reference),
                    (None, None) => s.reference.clone(),
                };
                format!(
                    "git {} {reference} {}",
                    redact_url(&s.url),
                    s.path.display()
                )
            }
            Source::Dir(d) => format!("dir {}", d.path().display()),
        }
    }

    /// The current revision and, unless it is `since` (and not `force`d), its rendered
    /// content. Git work runs on the blocking pool.
    ///
    /// # Errors
    /// [`GitopsError::Source`]: fetch, checkout, read or render failures.
    pub async fn poll(&self, since: Option<&Revision>, force: bool) -> Result<Polled, GitopsError> {
        let since = if force { None } else { since.cloned() };
        let started = Instant::now();
        let source = self.clone();
        tokio::task::spawn_blocking(move || -> Result<Polled, GitopsError> {
            match source {
                Source::Git(g) => {
                    let fetched = g.fetch(since.as_ref())?;
                    if !fetched.changed {
                        return Ok(Polled {
                            revision: fetched.revision,
                            rendered: None,
                            took: started.elapsed(),
                        });
                    }
                    // Rendered while the fetch holds the cache's lock.
                    let rendered = render(&fetched.path)?;
                    Ok(Polled {
                        revision: fetched.revision,
                        rendered: Some(rendered),
                        took: started.elapsed(),
                    })
                }
                Source::Dir(d) => {
                    let (revision, rendered) = d.read()?;
                    let unchanged = since.as_ref().is_some_and(|s| s.same_content(&revision));
                    Ok(Polled {
                        revision,
                        rendered: (!unchanged).then_some(rendered),
                        took: started.elapsed(),
                    })
                }
            }
        })
        .await?
    }
}

/// `sha256:<hex>` of rendered documents (the artifact's digest).
pub fn digest(rendered: &Rendered) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for d in &rendered.documents {
        h.update(d.text.as_bytes());
        h.update(b"\n---\n");
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped(path: &str) -> Vec<GitSourceObject> {
        let text =
            std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        serde_yaml::Deserializer::from_str(&text)
            .map(|d| {
                let mut gs: GitSourceObject = serde::Deserialize::deserialize(d).unwrap();
                gs.metadata
                    .namespace
                    .get_or_insert_with(|| "tidemark".into());
                gs
            })
            .collect()
    }

    fn https() -> GitCredentials {
        GitCredentials {
            password: Some("t0ken".into()),
            ..Default::default()
        }
    }

    #[test]
    fn shipped_gitsources_make_settings() {
        let overlay = shipped("kustomize/overlays/git-source/gitsource.yaml");
        let s =
            Settings::from_git_source(&overlay[0], https(), Some("f0rge".into()), None).unwrap();
        let Origin::Git(spec) = &s.origin else {
            panic!("{s:?}")
        };
        assert_eq!(spec.reference, "main");
        assert!(matches!(spec.auth, GitAuth::Token { .. }));
        assert_eq!(s.namespace, "tidemark");
        assert_eq!(s.interval, Duration::from_secs(60));
        assert!(s.forge.is_some() && s.prune);
        assert_eq!(s.id, Settings::id_of(&overlay[0]));
        // The forge token is required once commit statuses are asked for.
        let e = Settings::from_git_source(&overlay[0], https(), None, None).unwrap_err();
        assert!(
            e.to_string().starts_with("spec.commitStatus.secretRef"),
            "{e}"
        );

        let examples = shipped("examples/gitops/gitsource/gitsource.yaml");
        let prod =
            Settings::from_git_source(&examples[0], https(), Some("x".into()), None).unwrap();
        let Origin::Git(spec) = &prod.origin else {
            panic!()
        };
        assert_eq!(spec.semver.as_deref(), Some(">=1.0.0, <2.0.0"));
        let ssh = GitCredentials {
            identity_file: Some("/k/identity".into()),
            known_hosts_file: Some("/k/known_hosts".into()),
            ..Default::default()
        };
        let staging = Settings::from_git_source(&examples[1], ssh, None, None).unwrap();
        let Origin::Git(spec) = &staging.origin else {
            panic!()
        };
        assert!(matches!(
            &spec.auth,
            GitAuth::Ssh {
                known_hosts: Some(_),
                ..
            }
        ));
        assert_eq!(spec.timeout, Duration::from_secs(120));
    }

    #[test]
    fn refs_and_durations_are_checked_naming_the_field() {
        let mut gs = shipped("kustomize/overlays/git-source/gitsource.yaml").remove(0);
        gs.spec.commit_status = None;
        let field = |gs: &GitSourceObject| match Settings::from_git_source(gs, https(), None, None)
        {
            Err(GitopsError::Settings { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        let mut g = gs.clone();
        g.spec.reference.as_mut().unwrap().tag = Some("v1".into());
        assert_eq!(field(&g), "spec.ref");
        let mut g = gs.clone();
        g.spec.reference = Some(crate::api::gitsource::GitSourceRef {
            semver: Some("not a range".into()),
            ..Default::default()
        });
        assert_eq!(field(&g), "spec.ref.semver");
        let mut g = gs.clone();
        g.spec.reference.as_mut().unwrap().commit = Some("abc".into());
        assert_eq!(field(&g), "spec.ref.commit");
        let mut g = gs.clone();
        g.spec.interval = Some("often".into());
        assert_eq!(field(&g), "spec.interval");
        let mut g = gs.clone();
        g.spec.timeout = Some("0s".into());
        assert_eq!(field(&g), "spec.timeout");
        // A tag, a full ref, a commit on the default branch.
        let reference = |r: crate::api::gitsource::GitSourceRef| {
            let mut g = gs.clone();
            g.spec.reference = Some(r);
            match Settings::from_git_source(&g, https(), None, None)
                .unwrap()
                .origin
            {
                Origin::Git(s) => (s.reference.clone(), s.commit.clone()),
                Origin::Dir(_) => unreachable!(),
            }
        };
        use crate::api::gitsource::GitSourceRef as R;
        assert_eq!(
            reference(R {
                tag: Some("v1.2.0".into()),
                ..Default::default()
            })
            .0,
            "refs/tags/v1.2.0"
        );
        assert_eq!(
            reference(R {
                name: Some("refs/pull/4/head".into()),
                ..Default::default()
            })
            .0,
            "refs/pull/4/head"
        );
        let c = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            reference(R {
                commit: Some(c.into()),
                ..Default::default()
            }),
            ("HEAD".to_string(), Some(c.to_string()))
        );
    }
}
