//! Git sources, with libgit2 (`git2`).
//!
//! A repository is cached in `<cache root>/git/<id of the URL>/repo` (cache root:
//! `$TIDEMARK_CACHE`, else `$HOME/.cache/tidemark`) with a working tree checked out at the last
//! fetched commit. [`GitSource::fetch`] first lists the remote's refs (`git ls-remote`): when the
//! branch still points at the commit already checked out, nothing is downloaded. Otherwise the
//! ref is fetched — shallow (depth 1) over HTTPS and SSH; libgit2's local transport (`file://`
//! and plain paths) does not support shallow fetches, so local repositories are fetched in full —
//! and checked out.
//!
//! Credentials: an HTTPS token (read from a file or the environment by the caller, never given
//! as a command-line value), or an SSH private key with a `known_hosts` file (plain entries,
//! `[host]:port` and wildcards; hashed `|1|` entries are not supported). Without a
//! `known_hosts` file, libgit2's own check against `~/.ssh/known_hosts` applies. HTTPS server
//! certificates are verified by libgit2 with the system's OpenSSL trust store.

use std::fs::File;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use git2::build::CheckoutBuilder;
use git2::{
    AutotagOption, CertificateCheckStatus, Cred, CredentialType, Direction, FetchOptions, Oid,
    ProxyOptions, RemoteCallbacks, Repository,
};

use super::{Revision, SourceError, redact_url, stable_id};

/// How to authenticate to the remote.
#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
pub enum GitAuth {
    /// Public repositories and local paths.
    #[default]
    None,
    /// HTTPS with a token as the password (GitHub, GitLab, Gitea personal or deploy tokens).
    Token {
        /// User name sent with the token (`git` works for GitHub and Gitea; GitLab accepts
        /// any name with a token, `oauth2` for OAuth tokens).
        username: String,
        /// The token.
        token: String,
    },
    /// SSH with a private key.
    Ssh {
        /// User name when the URL has none (`git`).
        username: String,
        /// The private key file (OpenSSH or PEM format).
        private_key: PathBuf,
        /// Its passphrase, if it is encrypted.
        passphrase: Option<String>,
        /// A `known_hosts` file the server's host key must be in; `None`: libgit2 checks
        /// `~/.ssh/known_hosts`.
        known_hosts: Option<PathBuf>,
    },
}

impl std::fmt::Debug for GitAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GitAuth::None => f.write_str("None"),
            GitAuth::Token { username, .. } => f
                .debug_struct("Token")
                .field("username", username)
                .field("token", &"***")
                .finish(),
            GitAuth::Ssh {
                username,
                private_key,
                known_hosts,
                ..
            } => f
                .debug_struct("Ssh")
                .field("username", username)
                .field("private_key", private_key)
                .field("known_hosts", known_hosts)
                .finish(),
        }
    }
}

impl GitAuth {
    /// The credentials of the CLI's Git flags: an SSH key (its passphrase from
    /// `$TIDEMARK_GIT_SSH_PASSPHRASE`) when `ssh_key` is given; else an HTTPS token read from
    /// `token_file`, or from `$TIDEMARK_GIT_TOKEN` when no file is named; else none.
    ///
    /// # Errors
    /// [`SourceError::Auth`] when the token file cannot be read or is empty.
    pub fn from_options(
        username: &str,
        token_file: Option<&Path>,
        ssh_key: Option<&Path>,
        known_hosts: Option<&Path>,
    ) -> Result<GitAuth, SourceError> {
        if let Some(key) = ssh_key {
            return Ok(GitAuth::Ssh {
                username: username.to_string(),
                private_key: key.to_path_buf(),
                passphrase: std::env::var("TIDEMARK_GIT_SSH_PASSPHRASE").ok(),
                known_hosts: known_hosts.map(Path::to_path_buf),
            });
        }
        let token = match token_file {
            Some(f) => {
                let t = std::fs::read_to_string(f).map_err(|e| {
                    SourceError::Auth(format!("reading the token file {}: {e}", f.display()))
                })?;
                let t = t.trim().to_string();
                if t.is_empty() {
                    return Err(SourceError::Auth(format!(
                        "the token file {} is empty",
                        f.display()
                    )));
                }
                Some(t)
            }
            None => std::env::var("TIDEMARK_GIT_TOKEN")
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty()),
        };
        Ok(match token {
            Some(token) => GitAuth::Token {
                username: username.to_string(),
                token,
            },
            None => GitAuth::None,
        })
    }
}

/// What to fetch.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct GitSpec {
    /// `https://…`, `ssh://…`, `user@host:path`, `file:///…` or a local path.
    pub url: String,
    /// Branch or tag name, or a full ref (`refs/pull/1/head`); `HEAD` for the remote's default.
    /// Ignored when [`Self::semver`] is set.
    pub reference: String,
    /// A semver range (`>=1.0.0`, `~1.2`, `1.x` as the `semver` crate reads it): the highest
    /// tag (`v` prefix allowed) inside it is followed instead of `reference`.
    #[serde(default)]
    pub semver: Option<String>,
    /// A commit (full hex SHA-1) to check out instead of the ref's tip; it must be the tip or
    /// one of its ancestors.
    #[serde(default)]
    pub commit: Option<String>,
    /// Path inside the repository (`.` for the root).
    pub path: PathBuf,
    /// Credentials.
    pub auth: GitAuth,
    /// Cache root; the repository goes to `<root>/git/<id>` ([`default_cache_root`] if `None`).
    pub cache_root: Option<PathBuf>,
    /// Longest the network part of a fetch (listing the remote's refs, downloading) may take
    /// ([`FETCH_TIMEOUT`] by default); see [`GitSource::fetch`].
    pub timeout: Duration,
}

/// Default longest time of a fetch's network part (5 min).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(300);

/// The hidden `tidemark` subcommand that runs a fetch's network part
/// ([`serve_network_request`]).
pub const NETWORK_HELPER_COMMAND: &str = "git-network-helper";

/// What the network part of a fetch found: the ref followed, the commit it points at, and
/// whether objects were downloaded.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct NetworkResult {
    full_ref: String,
    commit: String,
    downloaded: bool,
}

/// The network part's answer, as the helper writes it on its stdout.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
enum NetworkAnswer {
    Done(NetworkResult),
    RefNotFound(String),
    Failed(String),
}

/// The `tidemark` binary, when this process is one: the network part of fetches then runs in a
/// child process of it, killed at the deadline. Other programs linking this library (tests)
/// fetch in process, without a deadline.
fn network_helper() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    (exe.file_stem()? == "tidemark").then_some(exe)
}

/// Runs the network part of a fetch for the [`GitSpec`] (JSON) in `input`, in the repository
/// the parent process has locked and opened; returns the answer (JSON) for stdout. This is
/// what the hidden `tidemark git-network-helper` subcommand does.
pub fn serve_network_request(input: &[u8]) -> Vec<u8> {
    let answer = match serde_json::from_slice::<GitSpec>(input) {
        Err(e) => NetworkAnswer::Failed(format!("the fetch request is not understood: {e}")),
        Ok(spec) => match GitSource::new(spec).and_then(|src| {
            let repo = src.open_repo()?;
            src.network(&repo)
        }) {
            Ok(r) => NetworkAnswer::Done(r),
            Err(SourceError::RefNotFound { reference, .. }) => {
                NetworkAnswer::RefNotFound(reference)
            }
            Err(SourceError::Git { message, .. }) => NetworkAnswer::Failed(message),
            Err(e) => NetworkAnswer::Failed(e.to_string()),
        },
    };
    serde_json::to_vec(&answer).unwrap_or_default()
}

/// `$TIDEMARK_CACHE`, else `$HOME/.cache/tidemark`, else `.tidemark-cache`.
pub fn default_cache_root() -> PathBuf {
    if let Some(c) = std::env::var_os("TIDEMARK_CACHE") {
        return PathBuf::from(c);
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".cache/tidemark"),
        None => PathBuf::from(".tidemark-cache"),
    }
}

/// The result of a fetch. Holds the cache's lock: the checkout stays as it is until dropped.
#[derive(Debug)]
pub struct Fetched {
    /// The commit, as `<ref>@sha1:<hex>`.
    pub revision: Revision,
    /// Whether it differs from the revision passed to [`GitSource::fetch`].
    pub changed: bool,
    /// Whether objects were downloaded (the remote had moved since the cached checkout).
    pub downloaded: bool,
    /// The path inside the checkout.
    pub path: PathBuf,
    /// How long the fetch took.
    pub elapsed: Duration,
    _lock: File,
}

/// A Git repository source.
#[derive(Debug)]
pub struct GitSource {
    spec: GitSpec,
    dir: PathBuf,
}

fn is_local(url: &str) -> bool {
    url.starts_with("file://")
        || url.starts_with('/')
        || url.starts_with("./")
        || url.starts_with("../")
        || (!url.contains("://") && !url.contains(':'))
}

/// Host (and port, when not 22) of an SSH URL: `ssh://[user@]host[:port]/p` or `[user@]host:p`.
fn ssh_host_port(url: &str) -> Option<(String, u16)> {
    if url.starts_with("ssh://") || url.starts_with("git+ssh://") {
        let u = url::Url::parse(url).ok()?;
        return Some((u.host_str()?.to_string(), u.port().unwrap_or(22)));
    }
    if url.contains("://") {
        return None;
    }
    let (before, _) = url.split_once(':')?;
    let host = before.rsplit('@').next()?;
    Some((host.to_string(), 22))
}

fn validate_path(path: &Path) -> Result<(), SourceError> {
    let ok = path
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if ok {
        Ok(())
    } else {
        Err(SourceError::PathOutside(path.display().to_string()))
    }
}

impl GitSource {
    /// A source for `spec`. Nothing is fetched yet.
    ///
    /// # Errors
    /// [`SourceError::PathOutside`] when `spec.path` is absolute or climbs out with `..`.
    pub fn new(spec: GitSpec) -> Result<GitSource, SourceError> {
        validate_path(&spec.path)?;
        let root = spec.cache_root.clone().unwrap_or_else(default_cache_root);
        let dir = root.join("git").join(stable_id(&[&spec.url]));
        Ok(GitSource { spec, dir })
    }

    /// The cache directory of this repository.
    pub fn cache_dir(&self) -> &Path {
        &self.dir
    }

    /// The spec.
    pub fn spec(&self) -> &GitSpec {
        &self.spec
    }

    fn err(&self, e: impl std::fmt::Display) -> SourceError {
        SourceError::Git {
            url: redact_url(&self.spec.url),
            message: e.to_string(),
        }
    }

    fn callbacks(&self) -> RemoteCallbacks<'_> {
        let mut cb = RemoteCallbacks::new();
        let mut attempts = 0u32;
        let auth = &self.spec.auth;
        cb.credentials(move |_url, username_from_url, allowed| {
            attempts += 1;
            if attempts > 4 {
                return Err(git2::Error::from_str(
                    "authentication failed: the remote rejected the credentials",
                ));
            }
            match auth {
                GitAuth::Token { username, token }
                    if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) =>
                {
                    Cred::userpass_plaintext(username, token)
                }
                GitAuth::Ssh {
                    username,
                    private_key,
                    passphrase,
                    ..
                } => {
                    let user = username_from_url.unwrap_or(username);
                    if allowed.contains(CredentialType::SSH_KEY) {
                        Cred::ssh_key(user, None, private_key, passphrase.as_deref())
                    } else if allowed.contains(CredentialType::USERNAME) {
                        Cred::username(user)
                    } else {
                        Err(git2::Error::from_str(
                            "the remote does not accept SSH keys for authentication",
                        ))
                    }
                }
                _ if allowed.contains(CredentialType::USERNAME) => {
                    Cred::username(username_from_url.unwrap_or("git"))
                }
                _ => Err(git2::Error::from_str(
                    "the remote asks for credentials: give an HTTPS token (--token-file or \
                     $TIDEMARK_GIT_TOKEN) or an SSH key (--ssh-key)",
                )),
            }
        });
        if let GitAuth::Ssh {
            known_hosts: Some(file),
            ..
        } = auth
        {
            let target = ssh_host_port(&self.spec.url);
            cb.certificate_check(move |cert, host| {
                let Some(hk) = cert.as_hostkey() else {
                    return Ok(CertificateCheckStatus::CertificatePassthrough);
                };
                let Some(raw) = hk.hostkey() else {
                    return Err(git2::Error::from_str(
                        "the SSH server's host key cannot be checked (no raw key offered)",
                    ));
                };
                let port = target
                    .as_ref()
                    .filter(|(h, _)| h == host)
                    .map(|(_, p)| *p)
                    .unwrap_or(22);
                let known = KnownHosts::read(file).map_err(|e| git2::Error::from_str(&e))?;
                known
                    .check(host, port, raw)
                    .map(|()| CertificateCheckStatus::CertificateOk)
                    .map_err(|e| git2::Error::from_str(&e))
            });
        }
        cb
    }

    /// Lists the remote's refs and returns the full name of the ref to follow and the commit
    /// (peeled) it points at, when the remote advertises it.
    fn remote_head(&self, repo: &Repository) -> Result<(String, Oid, Option<Oid>), SourceError> {
        let mut remote = repo
            .remote_anonymous(&self.spec.url)
            .map_err(|e| self.err(e))?;
        let mut proxy = ProxyOptions::new();
        proxy.auto();
        let conn = remote
            .connect_auth(Direction::Fetch, Some(self.callbacks()), Some(proxy))
            .map_err(|e| self.err(e))?;
        let heads: Vec<(String, Oid)> = conn
            .list()
            .map_err(|e| self.err(e))?
            .iter()
            .map(|h| (h.name().to_string(), h.oid()))
            .collect();
        drop(conn);
        if let Some(range) = &self.spec.semver {
            return self.highest_tag(range, &heads);
        }
        let r = &self.spec.reference;
        let candidates: Vec<String> = if r.starts_with("refs/") || r == "HEAD" {
            vec![r.clone()]
        } else {
            vec![format!("refs/heads/{r}"), format!("refs/tags/{r}")]
        };
        for c in candidates {
            if let Some((_, oid)) = heads.iter().find(|(n, _)| *n == c) {
                let peeled = heads
                    .iter()
                    .find(|(n, _)| *n == format!("{c}^{{}}"))
                    .map(|(_, o)| *o);
                return Ok((c, *oid, peeled));
            }
        }
        Err(SourceError::RefNotFound {
            url: redact_url(&self.spec.url),
            reference: r.clone(),
        })
    }

    /// The highest tag of `heads` inside the semver `range`: its full name, the advertised id
    /// and the commit it peels to.
    fn highest_tag(
        &self,
        range: &str,
        heads: &[(String, Oid)],
    ) -> Result<(String, Oid, Option<Oid>), SourceError> {
        let req = semver::VersionReq::parse(range)
            .map_err(|e| self.err(format!("ref.semver {range:?} is not a semver range: {e}")))?;
        let best = heads
            .iter()
            .filter_map(|(name, oid)| {
                let tag = name.strip_prefix("refs/tags/")?;
                if tag.ends_with("^{}") {
                    return None;
                }
                let version = semver::Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok()?;
                req.matches(&version).then_some((version, name, *oid))
            })
            .max_by(|a, b| a.0.cmp(&b.0));
        match best {
            Some((_, name, oid)) => {
                let peeled = heads
                    .iter()
                    .find(|(n, _)| *n == format!("{name}^{{}}"))
                    .map(|(_, o)| *o);
                Ok((name.clone(), oid, peeled))
            }
            None => Err(SourceError::RefNotFound {
                url: redact_url(&self.spec.url),
                reference: format!("a tag inside the semver range {range:?}"),
            }),
        }
    }

    fn open_repo(&self) -> Result<Repository, SourceError> {
        let path = self.dir.join("repo");
        if path.join(".git").exists() {
            match Repository::open(&path) {
                Ok(r) => return Ok(r),
                Err(e) => {
                    tracing::warn!(cache = %path.display(), "re-creating an unusable cache: {e}");
                    std::fs::remove_dir_all(&path).map_err(|source| SourceError::Io {
                        path: path.clone(),
                        source,
                    })?;
                }
            }
        }
        Repository::init(&path).map_err(|e| self.err(e))
    }

    /// The network part of a fetch: lists the remote's refs and, unless the checkout is already
    /// at the remote's commit, downloads it (as `refs/tidemark/fetched`).
    fn network(&self, repo: &Repository) -> Result<NetworkResult, SourceError> {
        let (full_ref, advertised, peeled) = self.remote_head(repo)?;
        let tip = peeled.unwrap_or(advertised);
        let pinned = match &self.spec.commit {
            Some(c) => Some(
                Oid::from_str(c)
                    .map_err(|e| self.err(format!("ref.commit {c:?} is not a commit id: {e}")))?,
            ),
            None => None,
        };
        let remote_commit = pinned.unwrap_or(tip);
        let current = repo.head().ok().and_then(|h| h.target());
        if current == Some(remote_commit) {
            return Ok(NetworkResult {
                full_ref,
                commit: remote_commit.to_string(),
                downloaded: false,
            });
        }
        // A pinned commit may lie below the tip: fetch the ref's whole history then.
        let shallow = !is_local(&self.spec.url) && pinned.is_none();
        let refspec = format!("+{full_ref}:refs/tidemark/fetched");
        let run = |depth: Option<i32>| {
            let mut fo = FetchOptions::new();
            fo.remote_callbacks(self.callbacks());
            let mut proxy = ProxyOptions::new();
            proxy.auto();
            fo.proxy_options(proxy);
            fo.download_tags(AutotagOption::None);
            if let Some(d) = depth {
                fo.depth(d);
            }
            let mut remote = repo.remote_anonymous(&self.spec.url)?;
            remote.fetch(&[refspec.as_str()], Some(&mut fo), None)
        };
        match run(shallow.then_some(1)) {
            Ok(()) => {}
            Err(e) if shallow && e.message().contains("shallow") => {
                tracing::info!("shallow fetch unsupported by the remote ({e}); fetching in full");
                run(None).map_err(|e| self.err(e))?;
            }
            Err(e) => return Err(self.err(e)),
        }
        let mut commit = repo
            .find_reference("refs/tidemark/fetched")
            .and_then(|r| r.peel_to_commit())
            .map_err(|e| self.err(e))?;
        if let Some(pin) = pinned {
            let on_ref = pin == commit.id()
                || repo
                    .graph_descendant_of(commit.id(), pin)
                    .map_err(|e| self.err(e))?;
            if !on_ref {
                return Err(SourceError::RefNotFound {
                    url: redact_url(&self.spec.url),
                    reference: format!("commit {pin} on {full_ref}"),
                });
            }
            commit = repo.find_commit(pin).map_err(|e| self.err(e))?;
        }
        Ok(NetworkResult {
            full_ref,
            commit: commit.id().to_string(),
            downloaded: true,
        })
    }

    /// [`GitSource::network`] in a child process (`exe git-network-helper`, the spec on its
    /// stdin), killed when it runs past the spec's timeout.
    fn network_in_child(&self, exe: &Path) -> Result<NetworkResult, SourceError> {
        let input = serde_json::to_vec(&self.spec).map_err(|e| self.err(e))?;
        let done = super::child::run(
            std::process::Command::new(exe).arg(NETWORK_HELPER_COMMAND),
            &input,
            self.spec.timeout,
        )
        .map_err(|e| self.err(format!("fetching: {e}")))?;
        match serde_json::from_slice::<NetworkAnswer>(&done.stdout) {
            Ok(NetworkAnswer::Done(r)) => Ok(r),
            Ok(NetworkAnswer::RefNotFound(reference)) => Err(SourceError::RefNotFound {
                url: redact_url(&self.spec.url),
                reference,
            }),
            Ok(NetworkAnswer::Failed(message)) => Err(self.err(message)),
            Err(_) => Err(self.err(format!(
                "the fetch helper ended with {}: {}",
                done.status,
                String::from_utf8_lossy(&done.stderr).trim()
            ))),
        }
    }

    /// Fetches the ref (unless the checkout is already at the remote's commit), checks it out,
    /// and tells whether the revision differs from `since` (the last one reconciled). Blocking.
    ///
    /// Run from the `tidemark` binary, the network part (listing refs, downloading) runs in a
    /// child process killed after the spec's `timeout`, so a stalled server never holds the
    /// cache's lock (libgit2 has no timeouts of its own but through process-wide options).
    ///
    /// # Errors
    /// [`SourceError::Git`] (network, authentication, repository), [`SourceError::RefNotFound`],
    /// [`SourceError::PathNotFound`] when `path` is absent at that commit, [`SourceError::Io`]
    /// for the cache.
    pub fn fetch(&self, since: Option<&Revision>) -> Result<Fetched, SourceError> {
        let started = Instant::now();
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SourceError::Io { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let lock_path = self.dir.join("lock");
        let lock = File::create(&lock_path).map_err(io(&lock_path))?;
        lock.lock().map_err(io(&lock_path))?;
        let repo = self.open_repo()?;
        // The network part, which a stalled server could hold forever: in a child process
        // killed at the deadline (it holds no lock: this process does).
        let net = match network_helper() {
            Some(exe) => self.network_in_child(&exe)?,
            None => self.network(&repo)?,
        };
        let full_ref = net.full_ref;
        let downloaded = net.downloaded;
        let commit = Oid::from_str(&net.commit).map_err(|e| self.err(e))?;
        let revision = Revision::commit(&full_ref, &commit.to_string());
        let changed = since.is_none_or(|s| !s.same_content(&revision));
        if changed || downloaded {
            // Force the working tree to the commit (whatever was changed in the cache by hand).
            let object = repo.find_object(commit, None).map_err(|e| self.err(e))?;
            repo.checkout_tree(
                &object,
                Some(CheckoutBuilder::new().force().remove_untracked(true)),
            )
            .map_err(|e| self.err(e))?;
            repo.set_head_detached(commit).map_err(|e| self.err(e))?;
        }
        let path = self.dir.join("repo").join(&self.spec.path);
        if !path.exists() {
            return Err(SourceError::PathNotFound {
                path: self.spec.path.display().to_string(),
                within: format!(" in {revision}"),
            });
        }
        Ok(Fetched {
            revision,
            changed,
            downloaded,
            path,
            elapsed: started.elapsed(),
            _lock: lock,
        })
    }
}

/// Entries of an OpenSSH `known_hosts` file.
#[derive(Debug, Default)]
pub struct KnownHosts {
    entries: Vec<KnownHost>,
    hashed: usize,
    source: String,
}

#[derive(Debug)]
struct KnownHost {
    patterns: Vec<String>,
    key: Vec<u8>,
    revoked: bool,
}

/// `*` and `?` wildcards of OpenSSH host patterns.
fn wildcard(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

impl KnownHosts {
    /// Parses `known_hosts` text; `source` names it in messages.
    pub fn parse(text: &str, source: &str) -> KnownHosts {
        let mut out = KnownHosts {
            source: source.to_string(),
            ..Default::default()
        };
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace().peekable();
            let mut revoked = false;
            if let Some(m) = fields.peek().filter(|f| f.starts_with('@')) {
                match *m {
                    "@revoked" => revoked = true,
                    _ => continue, // @cert-authority: certificates are not supported
                }
                fields.next();
            }
            let (Some(hosts), Some(_keytype), Some(key)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            if hosts.starts_with("|1|") {
                out.hashed += 1;
                continue;
            }
            let Ok(key) = base64::engine::general_purpose::STANDARD.decode(key) else {
                continue;
            };
            out.entries.push(KnownHost {
                patterns: hosts.split(',').map(str::to_string).collect(),
                key,
                revoked,
            });
        }
        out
    }

    /// Reads and parses a `known_hosts` file.
    ///
    /// # Errors
    /// A message when the file cannot be read.
    pub fn read(path: &Path) -> Result<KnownHosts, String> {
        std::fs::read_to_string(path)
            .map(|t| KnownHosts::parse(&t, &path.display().to_string()))
            .map_err(|e| format!("known_hosts {}: {e}", path.display()))
    }

    /// Accepts `key` (the raw host key blob) for `host`:`port` if an entry lists it.
    ///
    /// # Errors
    /// A message when the host is unknown, its key differs, or the key is revoked.
    pub fn check(&self, host: &str, port: u16, key: &[u8]) -> Result<(), String> {
        let name = if port == 22 {
            host.to_string()
        } else {
            format!("[{host}]:{port}")
        };
        let matches = |e: &KnownHost| {
            let mut hit = false;
            for p in &e.patterns {
                if let Some(neg) = p.strip_prefix('!') {
                    if wildcard(neg, &name) {
                        return false;
                    }
                } else if wildcard(p, &name) {
                    hit = true;
                }
            }
            hit
        };
        if self.entries.iter().any(|e| e.revoked && e.key == key) {
            return Err(format!(
                "the host key of {name} is revoked in {}",
                self.source
            ));
        }
        let for_host: Vec<&KnownHost> = self
            .entries
            .iter()
            .filter(|e| !e.revoked && matches(e))
            .collect();
        if for_host.iter().any(|e| e.key == key) {
            return Ok(());
        }
        if for_host.is_empty() {
            let hashed = if self.hashed > 0 {
                format!(
                    " ({} hashed entries were skipped: hashed known_hosts are not supported, \
                     use `ssh-keyscan {host}` output)",
                    self.hashed
                )
            } else {
                String::new()
            };
            Err(format!("{name} is not in {}{hashed}", self.source))
        } else {
            Err(format!(
                "the host key of {name} does not match {} (was the server's key changed, or is \
                 someone in the middle?)",
                self.source
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_and_ssh_urls() {
        assert!(is_local("file:///tmp/r"));
        assert!(is_local("/tmp/r"));
        assert!(is_local("repo"));
        assert!(!is_local("https://example.com/r.git"));
        assert!(!is_local("git@github.com:o/r.git"));
        assert_eq!(
            ssh_host_port("git@github.com:o/r.git"),
            Some(("github.com".into(), 22))
        );
        assert_eq!(
            ssh_host_port("ssh://git@gitea.local:2222/o/r.git"),
            Some(("gitea.local".into(), 2222))
        );
        assert_eq!(ssh_host_port("https://github.com/o/r"), None);
    }

    #[test]
    fn paths_stay_inside_the_repository() {
        assert!(validate_path(Path::new("clusters/prod")).is_ok());
        assert!(validate_path(Path::new(".")).is_ok());
        assert!(validate_path(Path::new("../x")).is_err());
        assert!(validate_path(Path::new("a/../../x")).is_err());
        assert!(validate_path(Path::new("/etc")).is_err());
    }

    #[test]
    fn known_hosts_entries() {
        let key = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20key-bytes-of-the-server-000000000";
        let other = b"another key";
        let b64 = |k: &[u8]| base64::engine::general_purpose::STANDARD.encode(k);
        let text = format!(
            "# comment\n\
             github.com,140.82.112.3 ssh-ed25519 {}\n\
             [gitea.local]:2222 ssh-ed25519 {}\n\
             *.corp.example,!bad.corp.example ssh-ed25519 {}\n\
             |1|abc=|def= ssh-ed25519 {}\n\
             @revoked * ssh-rsa {}\n\
             @cert-authority *.x ssh-rsa {}\n",
            b64(key),
            b64(key),
            b64(key),
            b64(key),
            b64(b"revoked"),
            b64(key)
        );
        let kh = KnownHosts::parse(&text, "kh");
        assert!(kh.check("github.com", 22, key).is_ok());
        assert!(kh.check("GitHub.com", 22, key).is_ok());
        assert!(kh.check("gitea.local", 2222, key).is_ok());
        assert!(kh.check("gitea.local", 22, key).is_err());
        assert!(kh.check("git.corp.example", 22, key).is_ok());
        let e = kh.check("bad.corp.example", 22, key).unwrap_err();
        assert!(e.contains("hashed"), "{e}");
        let e = kh.check("github.com", 22, other).unwrap_err();
        assert!(e.contains("does not match"), "{e}");
        let e = kh.check("github.com", 22, b"revoked").unwrap_err();
        assert!(e.contains("revoked"), "{e}");
    }

    /// Commits `files` (path, content; `None` deletes) on `main` of the repository at `dir`.
    pub(crate) fn commit(dir: &Path, files: &[(&str, Option<&str>)], message: &str) -> String {
        let repo = match Repository::open(dir) {
            Ok(r) => r,
            Err(_) => {
                let mut opts = git2::RepositoryInitOptions::new();
                opts.initial_head("main");
                Repository::init_opts(dir, &opts).unwrap()
            }
        };
        let mut index = repo.index().unwrap();
        for (path, content) in files {
            let full = dir.join(path);
            match content {
                Some(c) => {
                    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
                    std::fs::write(&full, c).unwrap();
                    index.add_path(Path::new(path)).unwrap();
                }
                None => {
                    std::fs::remove_file(&full).unwrap();
                    index.remove_path(Path::new(path)).unwrap();
                }
            }
        }
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .unwrap()
            .to_string()
    }

    #[test]
    fn fetch_skips_when_the_remote_has_not_moved() {
        let t = tempfile::tempdir().unwrap();
        let origin = t.path().join("origin");
        let c1 = commit(&origin, &[("p/a.yaml", Some("a: 1\n"))], "one");
        let spec = |reference: &str, path: &str| GitSpec {
            semver: None,
            commit: None,
            url: format!("file://{}", origin.display()),
            reference: reference.into(),
            path: path.into(),
            auth: GitAuth::None,
            cache_root: Some(t.path().join("cache")),
            timeout: FETCH_TIMEOUT,
        };
        let src = GitSource::new(spec("main", "p")).unwrap();
        let f = src.fetch(None).unwrap();
        assert_eq!(f.revision.to_string(), format!("main@sha1:{c1}"));
        assert!(f.changed && f.downloaded);
        assert_eq!(
            std::fs::read_to_string(f.path.join("a.yaml")).unwrap(),
            "a: 1\n"
        );
        let rev1 = f.revision.clone();
        drop(f);
        // Nothing new: nothing downloaded, and unchanged relative to the last revision.
        let f = src.fetch(Some(&rev1)).unwrap();
        assert!(!f.changed && !f.downloaded);
        drop(f);
        // Argo CD's bare SHA names the same revision.
        let bare: Revision = c1.parse().unwrap();
        assert!(!src.fetch(Some(&bare)).unwrap().changed);
        let c2 = commit(
            &origin,
            &[("p/a.yaml", Some("a: 2\n")), ("p/b.yml", Some("b: 1\n"))],
            "two",
        );
        let f = src.fetch(Some(&rev1)).unwrap();
        assert!(f.changed && f.downloaded);
        assert_eq!(f.revision.commit_id(), Some(c2.as_str()));
        assert_eq!(
            std::fs::read_to_string(f.path.join("a.yaml")).unwrap(),
            "a: 2\n"
        );
        drop(f);
        commit(&origin, &[("p/b.yml", None)], "three");
        let f = src.fetch(None).unwrap();
        assert!(
            !f.path.join("b.yml").exists(),
            "deleted files leave the checkout"
        );
        drop(f);
        let e = GitSource::new(spec("nope", "p"))
            .unwrap()
            .fetch(None)
            .unwrap_err();
        assert!(matches!(e, SourceError::RefNotFound { .. }), "{e}");
        let e = GitSource::new(spec("main", "q"))
            .unwrap()
            .fetch(None)
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("path q does not exist in main@sha1:"),
            "{e}"
        );
        assert!(GitSource::new(spec("main", "../x")).is_err());
    }

    #[test]
    fn semver_follows_the_highest_tag_and_commit_pins_an_ancestor() {
        let t = tempfile::tempdir().unwrap();
        let origin = t.path().join("origin");
        let tag = |name: &str, id: &str| {
            let repo = Repository::open(&origin).unwrap();
            let obj = repo.find_object(Oid::from_str(id).unwrap(), None).unwrap();
            let sig = git2::Signature::now("t", "t@example.com").unwrap();
            // Annotated: the remote advertises the tag and its peeled commit.
            repo.tag(name, &obj, &sig, name, false).unwrap();
        };
        let c1 = commit(&origin, &[("p/a.yaml", Some("a: 1\n"))], "one");
        tag("v1.0.0", &c1);
        let c2 = commit(&origin, &[("p/a.yaml", Some("a: 2\n"))], "two");
        tag("v1.4.0", &c2);
        let c3 = commit(&origin, &[("p/a.yaml", Some("a: 3\n"))], "three");
        tag("v2.0.0", &c3);
        tag("not-a-version", &c3);
        let spec = |semver: Option<&str>, commit: Option<&str>, cache: &str| GitSpec {
            semver: semver.map(str::to_string),
            commit: commit.map(str::to_string),
            url: format!("file://{}", origin.display()),
            reference: "main".into(),
            path: "p".into(),
            auth: GitAuth::None,
            cache_root: Some(t.path().join(cache)),
            timeout: FETCH_TIMEOUT,
        };
        let f = GitSource::new(spec(Some(">=1.0.0, <2.0.0"), None, "a"))
            .unwrap()
            .fetch(None)
            .unwrap();
        assert_eq!(f.revision.to_string(), format!("v1.4.0@sha1:{c2}"));
        assert_eq!(
            std::fs::read_to_string(f.path.join("a.yaml")).unwrap(),
            "a: 2\n"
        );
        drop(f);
        let e = GitSource::new(spec(Some(">=3"), None, "b"))
            .unwrap()
            .fetch(None)
            .unwrap_err();
        assert!(matches!(e, SourceError::RefNotFound { .. }), "{e}");
        // A commit below the branch tip is checked out; one off the branch is refused.
        let f = GitSource::new(spec(None, Some(&c1), "c"))
            .unwrap()
            .fetch(None)
            .unwrap();
        assert_eq!(f.revision.to_string(), format!("main@sha1:{c1}"));
        assert_eq!(
            std::fs::read_to_string(f.path.join("a.yaml")).unwrap(),
            "a: 1\n"
        );
        drop(f);
        let stranger = commit(&t.path().join("other"), &[("p/a.yaml", Some("x\n"))], "x");
        let e = GitSource::new(spec(None, Some(&stranger), "d"))
            .unwrap()
            .fetch(None)
            .unwrap_err();
        assert!(e.to_string().contains("git"), "{e}");
    }

    #[test]
    fn auth_debug_hides_the_token() {
        let a = GitAuth::Token {
            username: "git".into(),
            token: "ghp_secret".into(),
        };
        assert!(!format!("{a:?}").contains("ghp_secret"));
    }
}
