//! Commit statuses on the forge (DESIGN.md §6, "Commit statuses").
//!
//! After each reconcile of a revision the controller posts one status per object to the forge the
//! revision came from, with a context such as `tidemark/<kind>/<name>`, a state and a one-line
//! description. [`Reporter::post`] remembers what it last posted for each `(sha, context)` and does
//! not post an unchanged state again, retries transient failures (5xx, 429, network errors) with
//! exponential backoff and the forge's `Retry-After`, and keeps the token out of every log line,
//! `Debug` output and error message ([`Secret`]).
//!
//! Requests are made one after the other, never concurrently: GitHub asks integrations to make
//! mutating requests for one token serially to stay clear of its secondary rate limits
//! (<https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api>).
//! Redirects are not followed, so a token sent in a custom header (GitLab's `PRIVATE-TOKEN`) can
//! never be replayed to another host.
//!
//! What differs between GitHub, GitLab and Gitea (paths, headers, state names, limits) is in
//! [`super::forge`], with the sources of each forge's API.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use url::Url;

pub use super::forge::Forge;

/// A credential (a forge token). Its `Debug` and `Display` print `[redacted]`; the value is only
/// reachable through [`Secret::expose`], which this module calls to build the auth header.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The credential itself; never log or format it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The state of one object at one revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Being reconciled.
    Pending,
    /// Reconciled.
    Success,
    /// The object failed (invalid, refused, its run failed).
    Failure,
    /// tidemark could not tell (an internal or infrastructure error).
    Error,
}

/// One status to post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    /// The commit: 40 hex digits (64 for a SHA-256 repository).
    pub sha: String,
    /// What the status is about, e.g. `tidemark/Schedule/nightly`.
    pub context: String,
    /// The state.
    pub state: State,
    /// One line; folded onto one line and cut to the forge's limit before posting.
    pub description: String,
    /// A link shown next to the status.
    pub target_url: Option<String>,
}

/// Where and as whom to post.
#[derive(Debug, Clone)]
pub struct ForgeConfig {
    /// The forge.
    pub forge: Forge,
    /// The API root: `https://api.github.com`, `https://gitlab.example.com/api/v4`,
    /// `https://gitea.example.com/api/v1`.
    pub base_url: String,
    /// `owner/repo` (GitHub, Gitea); for GitLab the numeric project id or the project path, plain
    /// (`group/sub/project`) or URL-encoded (`group%2Fsub%2Fproject`).
    pub repository: String,
    /// The token (from a file, a Secret or the environment: see [`token_from`]).
    pub token: Secret,
}

/// How [`Reporter::post`] retries a status that hit a transient failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per status, the first included (at least 1).
    pub attempts: usize,
    /// The first backoff delay; each later one doubles, with jitter.
    pub min_delay: Duration,
    /// The longest backoff delay.
    pub max_delay: Duration,
    /// The longest `Retry-After` (or rate-limit reset) waited for; a forge asking for more makes
    /// the post fail now rather than block the reconcile.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

/// Why posting commit statuses failed. Messages never contain the token.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The forge configuration is unusable.
    #[error("commit status configuration: {0}")]
    Config(String),
    /// The token could not be read.
    #[error("forge token: {0}")]
    Token(String),
    /// An update is malformed (bad sha, empty context...).
    #[error("commit status {context:?}: {reason}")]
    Invalid {
        /// The update's context.
        context: String,
        /// What is wrong.
        reason: String,
    },
    /// The forge refused the status (4xx other than rate limiting); not retried.
    #[error("commit status {context:?} on {sha}: the forge refused it: HTTP {status}: {message}")]
    Rejected {
        /// The update's context.
        context: String,
        /// The commit.
        sha: String,
        /// The HTTP status.
        status: u16,
        /// The forge's message.
        message: String,
    },
    /// Transient failures (5xx, 429, network) outlasted the retries.
    #[error("commit status {context:?} on {sha}: gave up after {attempts} attempt(s): {reason}")]
    GaveUp {
        /// The update's context.
        context: String,
        /// The commit.
        sha: String,
        /// Attempts made.
        attempts: usize,
        /// The last failure.
        reason: String,
    },
}

/// How many commits [`Reporter`] remembers posted states for (oldest forgotten first).
const REMEMBERED_SHAS: usize = 256;
/// The longest context accepted (GitLab keeps the name in a 255-character column).
const MAX_CONTEXT: usize = 255;
/// The forge message kept in an error.
const MAX_MESSAGE: usize = 300;

/// What was last posted for one `(sha, context)`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Posted {
    state: State,
    description: String,
    target_url: Option<String>,
}

/// The memory of posted states, bounded to the most recent [`REMEMBERED_SHAS`] commits.
#[derive(Debug, Default)]
struct Memory {
    by_sha: HashMap<String, HashMap<String, Posted>>,
    order: VecDeque<String>,
}

impl Memory {
    fn get(&self, sha: &str, context: &str) -> Option<&Posted> {
        self.by_sha.get(sha)?.get(context)
    }

    fn remember(&mut self, sha: &str, context: &str, posted: Posted) {
        if !self.by_sha.contains_key(sha) {
            self.order.push_back(sha.to_owned());
            while self.order.len() > REMEMBERED_SHAS {
                if let Some(old) = self.order.pop_front() {
                    self.by_sha.remove(&old);
                }
            }
        }
        self.by_sha
            .entry(sha.to_owned())
            .or_default()
            .insert(context.to_owned(), posted);
    }
}

/// An update checked and normalized for one forge.
struct Prepared {
    sha: String,
    context: String,
    posted: Posted,
    url: Url,
    body: Bytes,
}

/// How one POST ended, when it did not fail.
enum Sent {
    /// The forge created the status.
    Created,
    /// The forge already had this state (GitLab's refused same-state transition).
    AlreadySet,
}

/// One failed attempt.
#[derive(Debug)]
struct AttemptError {
    retryable: bool,
    status: Option<u16>,
    retry_after: Option<Duration>,
    message: String,
}

/// Posts commit statuses to one repository on one forge.
pub struct Reporter {
    forge: Forge,
    base: Url,
    /// Path segments between the base and `statuses/{sha}`, unencoded.
    repo_segments: Vec<String>,
    token: Secret,
    auth: (HeaderName, HeaderValue),
    client: reqwest::Client,
    retry: RetryPolicy,
    memory: Mutex<Memory>,
}

impl fmt::Debug for Reporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reporter")
            .field("forge", &self.forge)
            .field("base", &self.base.as_str())
            .field("repository", &self.repo_segments)
            .field("token", &self.token)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Reporter {
    /// Checks the configuration and builds the HTTP client (rustls, 30 s timeout, no redirects).
    pub fn new(cfg: ForgeConfig) -> Result<Self, StatusError> {
        let ForgeConfig {
            forge,
            base_url,
            repository,
            token,
        } = cfg;
        let base = parse_base(&base_url)?;
        let repo_segments = forge.repo_segments(&repository)?;
        let auth = forge.auth_header(&token)?;
        if base.scheme() == "http" && !is_loopback(&base) {
            tracing::warn!(
                forge = %forge,
                base = %base,
                "the forge is reached over plain http: its token crosses the network unencrypted"
            );
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("tidemark/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| StatusError::Config(format!("HTTP client: {}", error_chain(&e))))?;
        Ok(Reporter {
            forge,
            base,
            repo_segments,
            token,
            auth,
            client,
            retry: RetryPolicy::default(),
            memory: Mutex::new(Memory::default()),
        })
    }

    /// Replaces the retry policy ([`RetryPolicy::default`]: 5 attempts, 0.5 s doubling to 30 s,
    /// `Retry-After` honoured up to 2 minutes).
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = RetryPolicy {
            attempts: policy.attempts.max(1),
            ..policy
        };
        self
    }

    /// The forge posted to.
    pub fn forge(&self) -> Forge {
        self.forge
    }

    /// The URL a status for `sha` is posted to.
    pub fn status_url(&self, sha: &str) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments
                .pop_if_empty()
                .extend(&self.repo_segments)
                .push("statuses")
                .push(sha);
        }
        url
    }

    /// Posts each update unless the same `(sha, context)` already has the same state and
    /// description (and link): an unchanged state is not posted again. Updates are checked
    /// first (none is posted if one is malformed), then posted in order, one at a time; 5xx,
    /// 429 and network errors are retried with exponential backoff, honouring `Retry-After`.
    /// The first status that still fails ends the call with an error naming its context;
    /// those posted before it are remembered, so the next call carries on from there.
    /// Returns how many statuses were posted.
    pub async fn post(&self, updates: &[StatusUpdate]) -> Result<usize, StatusError> {
        let prepared = updates
            .iter()
            .map(|u| self.prepare(u))
            .collect::<Result<Vec<_>, _>>()?;
        let mut count = 0;
        for p in &prepared {
            if self.lock().get(&p.sha, &p.context) == Some(&p.posted) {
                tracing::trace!(context = %p.context, sha = %p.sha, "commit status unchanged");
                continue;
            }
            match self.send(p).await? {
                Sent::Created => count += 1,
                Sent::AlreadySet => tracing::debug!(
                    context = %p.context,
                    sha = %p.sha,
                    "the forge already has this commit status"
                ),
            }
            self.lock().remember(&p.sha, &p.context, p.posted.clone());
        }
        Ok(count)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        // The memory is a cache: a panic elsewhere while holding it leaves it usable.
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks and normalizes `u`, and renders its request body.
    fn prepare(&self, u: &StatusUpdate) -> Result<Prepared, StatusError> {
        let invalid = |reason: String| StatusError::Invalid {
            context: u.context.clone(),
            reason,
        };
        let sha = u.sha.trim().to_ascii_lowercase();
        if !matches!(sha.len(), 40 | 64) || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(format!(
                "commit {:?} is not a full sha (40 or 64 hex digits)",
                u.sha
            )));
        }
        let context = u.context.trim().to_owned();
        if context.is_empty() {
            return Err(invalid("the context is empty".into()));
        }
        if context.chars().any(char::is_control) {
            return Err(invalid("the context contains control characters".into()));
        }
        if context.chars().count() > MAX_CONTEXT {
            return Err(invalid(format!(
                "the context is longer than {MAX_CONTEXT} characters"
            )));
        }
        let target_url = match u.target_url.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(link) => {
                let parsed =
                    Url::parse(link).map_err(|e| invalid(format!("target_url {link:?}: {e}")))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(invalid(format!("target_url {link:?} is not http(s)")));
                }
                Some(link.to_owned())
            }
        };
        let description = one_line(&u.description, self.forge.description_limit());
        let state = self.forge.state_name(u.state);
        let mut body = serde_json::Map::new();
        body.insert("state".into(), state.into());
        // GitLab documents `name` (with `context` as an alias); GitHub and Gitea use `context`.
        body.insert(self.forge.context_field().into(), context.clone().into());
        if !description.is_empty() {
            body.insert("description".into(), description.clone().into());
        }
        if let Some(link) = &target_url {
            body.insert("target_url".into(), link.clone().into());
        }
        let body = serde_json::to_vec(&body).map_err(|e| invalid(e.to_string()))?;
        Ok(Prepared {
            url: self.status_url(&sha),
            sha,
            context,
            posted: Posted {
                state: u.state,
                description,
                target_url,
            },
            body: Bytes::from(body),
        })
    }

    /// Posts one status, retrying transient failures.
    async fn send(&self, p: &Prepared) -> Result<Sent, StatusError> {
        let attempts = AtomicUsize::new(0);
        let policy = self.retry;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(policy.min_delay)
            .with_max_delay(policy.max_delay.max(policy.min_delay))
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(policy.attempts.saturating_sub(1));
        let result = (|| async {
            attempts.fetch_add(1, Ordering::Relaxed);
            self.attempt(p).await
        })
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|e: &AttemptError| e.retryable)
        .adjust(|e: &AttemptError, next: Option<Duration>| {
            // `None` means the attempts are used up; a Retry-After does not add any.
            let next = next?;
            match e.retry_after {
                Some(wait) if wait > policy.max_retry_after => None,
                Some(wait) => Some(wait),
                None => Some(next),
            }
        })
        .notify(|e: &AttemptError, wait: Duration| {
            tracing::warn!(
                context = %p.context,
                sha = %p.sha,
                wait = ?wait,
                error = %e.message,
                "posting a commit status failed; retrying"
            );
        })
        .await;
        result.map_err(|e| {
            let attempts = attempts.load(Ordering::Relaxed);
            match (e.retryable, e.status) {
                (false, Some(status)) => StatusError::Rejected {
                    context: p.context.clone(),
                    sha: p.sha.clone(),
                    status,
                    message: e.message,
                },
                _ => StatusError::GaveUp {
                    context: p.context.clone(),
                    sha: p.sha.clone(),
                    attempts,
                    reason: e.message,
                },
            }
        })
    }

    /// One POST.
    async fn attempt(&self, p: &Prepared) -> Result<Sent, AttemptError> {
        let mut request = self
            .client
            .post(p.url.clone())
            .header(ACCEPT, self.forge.accept())
            .header(CONTENT_TYPE, "application/json")
            .header(self.auth.0.clone(), self.auth.1.clone())
            .body(p.body.clone());
        for (name, value) in self.forge.extra_headers() {
            request = request.header(*name, *value);
        }
        tracing::debug!(
            forge = %self.forge,
            context = %p.context,
            sha = %p.sha,
            state = ?p.posted.state,
            "posting commit status"
        );
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                return Err(AttemptError {
                    retryable: !e.is_builder(),
                    status: None,
                    retry_after: None,
                    message: self.scrub(error_chain(&e)),
                });
            }
        };
        let status = response.status();
        if status.is_success() {
            return Ok(Sent::Created);
        }
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let message = self.scrub(forge_message(&text, status));
        if self.forge.already_in_state(status, &message) {
            return Ok(Sent::AlreadySet);
        }
        let wait = retry_after(&headers, SystemTime::now());
        let rate_limited = status == StatusCode::TOO_MANY_REQUESTS
            || (status == StatusCode::FORBIDDEN && wait.is_some());
        let retryable =
            rate_limited || status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT;
        let message = match wait {
            Some(wait) if retryable => format!(
                "HTTP {}: {message} (retry after {}s)",
                status.as_u16(),
                wait.as_secs()
            ),
            _ if retryable => format!("HTTP {}: {message}", status.as_u16()),
            _ => message,
        };
        Err(AttemptError {
            retryable,
            status: Some(status.as_u16()),
            retry_after: if retryable { wait } else { None },
            message,
        })
    }

    /// Replaces the token wherever it appears in `text` (it never should; belt and braces).
    fn scrub(&self, text: String) -> String {
        let token = self.token.expose();
        if !token.is_empty() && text.contains(token) {
            text.replace(token, "[redacted]")
        } else {
            text
        }
    }
}

/// Reads a token from `file` (a mounted Secret key, say) or, without a file, from the
/// environment variable `env`. Surrounding whitespace (a trailing newline) is dropped. Tokens
/// come only from files, Secrets or the environment, never from command-line flags, where they
/// would show in `ps` and shell history.
pub fn token_from(file: Option<&Path>, env: Option<&str>) -> Result<Secret, StatusError> {
    let (value, origin) = match (file, env) {
        (Some(path), _) => {
            let bytes = std::fs::read(path).map_err(|e| {
                StatusError::Token(format!("reading token file {}: {e}", path.display()))
            })?;
            let value = String::from_utf8(bytes).map_err(|_| {
                StatusError::Token(format!("token file {} is not UTF-8", path.display()))
            })?;
            (value, format!("token file {}", path.display()))
        }
        (None, Some(name)) => {
            let value = std::env::var(name).map_err(|e| match e {
                std::env::VarError::NotPresent => {
                    StatusError::Token(format!("environment variable {name} is not set"))
                }
                std::env::VarError::NotUnicode(_) => {
                    StatusError::Token(format!("environment variable {name} is not UTF-8"))
                }
            })?;
            (value, format!("environment variable {name}"))
        }
        (None, None) => {
            return Err(StatusError::Token(
                "no token file or environment variable given".into(),
            ));
        }
    };
    let token = value.trim();
    if token.is_empty() {
        return Err(StatusError::Token(format!("{origin} is empty")));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(StatusError::Token(format!(
            "{origin} holds more than one word (expected a single token)"
        )));
    }
    Ok(Secret::new(token))
}

/// Parses the API root.
fn parse_base(base_url: &str) -> Result<Url, StatusError> {
    let base = Url::parse(base_url.trim())
        .map_err(|e| StatusError::Config(format!("base URL {base_url:?}: {e}")))?;
    if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
        return Err(StatusError::Config(format!(
            "base URL {base_url:?} is not an http(s) URL"
        )));
    }
    if base.query().is_some() || base.fragment().is_some() {
        return Err(StatusError::Config(format!(
            "base URL {base_url:?} must not carry a query or fragment"
        )));
    }
    if !base.username().is_empty() || base.password().is_some() {
        return Err(StatusError::Config(
            "base URL must not carry credentials (give the token separately)".into(),
        ));
    }
    Ok(base)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Folds `text` onto one line (whitespace runs become one space, control characters go) and cuts
/// it to `limit` characters, ending a cut line with `…`.
pub fn one_line(text: &str, limit: usize) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let line = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= limit {
        return line;
    }
    let mut cut: String = line.chars().take(limit.saturating_sub(1)).collect();
    cut.truncate(cut.trim_end().len());
    if limit > 0 {
        cut.push('…');
    }
    cut
}

/// How long the forge asks to wait: `Retry-After` (seconds or an HTTP date), or, with
/// `x-ratelimit-remaining: 0` (GitHub) / `ratelimit-remaining: 0` (GitLab), until the reset time.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(value) = get("retry-after") {
        if let Ok(secs) = value.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        if let Ok(at) = chrono::DateTime::parse_from_rfc2822(value) {
            let at = SystemTime::from(at);
            return Some(at.duration_since(now).unwrap_or_default());
        }
    }
    for prefix in ["x-ratelimit", "ratelimit"] {
        if get(&format!("{prefix}-remaining")) == Some("0")
            && let Some(reset) = get(&format!("{prefix}-reset")).and_then(|v| v.parse().ok())
        {
            let at = SystemTime::UNIX_EPOCH + Duration::from_secs(reset);
            return Some(at.duration_since(now).unwrap_or_default());
        }
    }
    None
}

/// The message in a forge's error body (`message`, GitHub's `errors[].message`, `error`), or
/// the body itself, on one line and cut short.
fn forge_message(body: &str, status: StatusCode) -> String {
    let mut parts = Vec::new();
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(body) {
        for key in ["message", "error"] {
            match map.get(key) {
                Some(serde_json::Value::String(s)) => parts.push(s.clone()),
                Some(serde_json::Value::Null) | None => {}
                Some(other) => parts.push(other.to_string()),
            }
        }
        if let Some(serde_json::Value::Array(errors)) = map.get("errors") {
            for e in errors {
                match e.get("message").and_then(|m| m.as_str()) {
                    Some(m) => parts.push(m.to_owned()),
                    None => parts.push(e.to_string()),
                }
            }
        }
    }
    if parts.is_empty() && !body.trim().is_empty() {
        parts.push(body.to_owned());
    }
    if parts.is_empty() {
        parts.push(status.canonical_reason().unwrap_or("no message").to_owned());
    }
    one_line(&parts.join(": "), MAX_MESSAGE)
}

/// An error and its sources, joined with `: ` (reqwest's own message says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    fn reporter(forge: Forge, base: &str, repository: &str) -> Reporter {
        Reporter::new(ForgeConfig {
            forge,
            base_url: base.into(),
            repository: repository.into(),
            token: Secret::new("tok-SECRET-123"),
        })
        .unwrap()
    }

    #[test]
    fn secret_is_redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{s:?}"), "[redacted]");
        let cfg = ForgeConfig {
            forge: Forge::GitHub,
            base_url: "https://api.github.com".into(),
            repository: "o/r".into(),
            token: s,
        };
        assert!(!format!("{cfg:?}").contains("hunter2"));
        let r = Reporter::new(cfg).unwrap();
        assert!(!format!("{r:?}").contains("hunter2"));
        assert!(!format!("{:?}", r.auth).contains("hunter2"));
    }

    #[test]
    fn states_per_forge() {
        use State::*;
        let names = |f: Forge| [Pending, Success, Failure, Error].map(|s| f.state_name(s));
        assert_eq!(
            names(Forge::GitHub),
            ["pending", "success", "failure", "error"]
        );
        assert_eq!(
            names(Forge::Gitea),
            ["pending", "success", "failure", "error"]
        );
        assert_eq!(
            names(Forge::GitLab),
            ["pending", "success", "failed", "failed"]
        );
    }

    #[test]
    fn forge_names_parse() {
        assert_eq!("GitHub".parse::<Forge>().unwrap(), Forge::GitHub);
        assert_eq!("gitlab".parse::<Forge>().unwrap(), Forge::GitLab);
        assert_eq!("forgejo".parse::<Forge>().unwrap(), Forge::Gitea);
        assert!("bitbucket".parse::<Forge>().is_err());
    }

    #[test]
    fn urls_per_forge() {
        let gh = reporter(Forge::GitHub, "https://api.github.com", "octo/hello");
        assert_eq!(
            gh.status_url(SHA).as_str(),
            format!("https://api.github.com/repos/octo/hello/statuses/{SHA}")
        );
        let ghes = reporter(Forge::GitHub, "https://ghe.example.com/api/v3/", "o/r");
        assert_eq!(
            ghes.status_url(SHA).as_str(),
            format!("https://ghe.example.com/api/v3/repos/o/r/statuses/{SHA}")
        );
        let gitea = reporter(Forge::Gitea, "https://gitea.example.com/api/v1", "o/r.x");
        assert_eq!(
            gitea.status_url(SHA).as_str(),
            format!("https://gitea.example.com/api/v1/repos/o/r.x/statuses/{SHA}")
        );
        let expected =
            format!("https://gitlab.example.com/api/v4/projects/group%2Fsub%2Fproj/statuses/{SHA}");
        for repo in ["group/sub/proj", "group%2Fsub%2Fproj", "group%2fsub%2fproj"] {
            let gl = reporter(Forge::GitLab, "https://gitlab.example.com/api/v4", repo);
            assert_eq!(gl.status_url(SHA).as_str(), expected, "{repo}");
        }
        let gl = reporter(Forge::GitLab, "https://gitlab.example.com/api/v4", "42");
        assert_eq!(
            gl.status_url(SHA).as_str(),
            format!("https://gitlab.example.com/api/v4/projects/42/statuses/{SHA}")
        );
    }

    #[test]
    fn bad_configs_are_refused() {
        let cfg = |forge, base: &str, repo: &str, token: &str| ForgeConfig {
            forge,
            base_url: base.into(),
            repository: repo.into(),
            token: Secret::new(token),
        };
        for c in [
            cfg(Forge::GitHub, "https://api.github.com", "justone", "t"),
            cfg(Forge::GitHub, "https://api.github.com", "a/b/c", "t"),
            cfg(Forge::Gitea, "https://g/api/v1", "a/..", "t"),
            cfg(Forge::GitLab, "https://g/api/v4", "a//b", "t"),
            cfg(Forge::GitLab, "ftp://g/api/v4", "1", "t"),
            cfg(Forge::GitLab, "https://user:pw@g/api/v4", "1", "t"),
            cfg(Forge::GitLab, "not a url", "1", "t"),
            cfg(Forge::GitHub, "https://api.github.com", "o/r", "bad\ntoken"),
        ] {
            let err = Reporter::new(c).unwrap_err();
            assert!(!err.to_string().contains("bad\ntoken"));
        }
    }

    #[test]
    fn descriptions_are_one_short_line() {
        assert_eq!(one_line("  a\n\tb  \r\n c\u{7}d ", 140), "a b c d");
        let long = "x".repeat(200);
        let cut = one_line(&long, 140);
        assert_eq!(cut.chars().count(), 140);
        assert!(cut.ends_with('…'));
        // Counted in characters, not bytes.
        let wide = "é".repeat(150);
        assert_eq!(one_line(&wide, 140).chars().count(), 140);
        assert_eq!(one_line(&"é".repeat(140), 140), "é".repeat(140));
        // A cut at a space does not leave it before the ellipsis.
        let spaced = format!("{} tail", "y".repeat(138));
        assert_eq!(one_line(&spaced, 140), format!("{}…", "y".repeat(138)));
    }

    #[test]
    fn updates_are_validated() {
        let r = reporter(Forge::GitHub, "https://api.github.com", "o/r");
        let update = |sha: &str, context: &str| StatusUpdate {
            sha: sha.into(),
            context: context.into(),
            state: State::Pending,
            description: String::new(),
            target_url: None,
        };
        assert!(r.prepare(&update(SHA, "tidemark/Schedule/a")).is_ok());
        assert!(r.prepare(&update(&SHA.to_uppercase(), "c")).is_ok());
        assert!(r.prepare(&update(&"a".repeat(64), "c")).is_ok());
        for (sha, context) in [
            ("abc", "c"),
            (&"g".repeat(40) as &str, "c"),
            (SHA, ""),
            (SHA, "a\nb"),
            (SHA, &"c".repeat(256)),
        ] {
            let err = r.prepare(&update(sha, context)).err().unwrap();
            assert!(matches!(err, StatusError::Invalid { .. }), "{err}");
        }
        let mut bad_link = update(SHA, "c");
        bad_link.target_url = Some("javascript:alert(1)".into());
        assert!(r.prepare(&bad_link).is_err());
    }

    #[test]
    fn bodies_use_each_forges_field_names() {
        let update = StatusUpdate {
            sha: SHA.into(),
            context: "tidemark/Backup/b".into(),
            state: State::Error,
            description: "boom".into(),
            target_url: Some("https://ui.example.com/b".into()),
        };
        let body = |r: &Reporter| -> serde_json::Value {
            serde_json::from_slice(&r.prepare(&update).unwrap().body).unwrap()
        };
        let gh = body(&reporter(Forge::GitHub, "https://api.github.com", "o/r"));
        assert_eq!(
            gh,
            serde_json::json!({"state": "error", "context": "tidemark/Backup/b",
                "description": "boom", "target_url": "https://ui.example.com/b"})
        );
        let gl = body(&reporter(Forge::GitLab, "https://g/api/v4", "1"));
        assert_eq!(
            gl,
            serde_json::json!({"state": "failed", "name": "tidemark/Backup/b",
                "description": "boom", "target_url": "https://ui.example.com/b"})
        );
        let gt = body(&reporter(Forge::Gitea, "https://g/api/v1", "o/r"));
        assert_eq!(gt["state"], "error");
        assert_eq!(gt["context"], "tidemark/Backup/b");
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_400);
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_str(v).unwrap());
            }
            h
        };
        assert_eq!(
            retry_after(&headers(&[("retry-after", "7")]), now),
            Some(Duration::from_secs(7))
        );
        // 2015-10-21T07:28:00Z is 1445412480: 80 s after `now`.
        assert_eq!(
            retry_after(
                &headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]),
                now
            ),
            Some(Duration::from_secs(80))
        );
        assert_eq!(
            retry_after(
                &headers(&[
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", "1445412430")
                ]),
                now
            ),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after(
                &headers(&[
                    ("x-ratelimit-remaining", "12"),
                    ("x-ratelimit-reset", "1445412430")
                ]),
                now
            ),
            None
        );
        assert_eq!(retry_after(&headers(&[]), now), None);
    }

    #[test]
    fn forge_messages() {
        let gh = r#"{"message":"Validation Failed","errors":[{"resource":"Status","code":"custom","field":"description","message":"description is too long (maximum is 140 characters)"}]}"#;
        assert_eq!(
            forge_message(gh, StatusCode::UNPROCESSABLE_ENTITY),
            "Validation Failed: description is too long (maximum is 140 characters)"
        );
        assert_eq!(
            forge_message(
                r#"{"message":"404 Project Not Found"}"#,
                StatusCode::NOT_FOUND
            ),
            "404 Project Not Found"
        );
        assert_eq!(forge_message("", StatusCode::BAD_GATEWAY), "Bad Gateway");
        assert_eq!(
            forge_message("<html>\n oops</html>", StatusCode::BAD_GATEWAY),
            "<html> oops</html>"
        );
    }

    #[test]
    fn tokens_come_from_files_or_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "glpat-abc123\n").unwrap();
        assert_eq!(
            token_from(Some(&path), Some("IGNORED_WHEN_A_FILE_IS_GIVEN"))
                .unwrap()
                .expose(),
            "glpat-abc123"
        );
        std::fs::write(&path, "  \n").unwrap();
        assert!(matches!(
            token_from(Some(&path), None),
            Err(StatusError::Token(_))
        ));
        std::fs::write(&path, "two words").unwrap();
        let err = token_from(Some(&path), None).unwrap_err().to_string();
        assert!(!err.contains("two words"), "{err}");
        assert!(token_from(Some(&dir.path().join("missing")), None).is_err());
        // An env var that every test environment has; its value is never printed.
        if let Ok(name) = std::env::var("CARGO_PKG_NAME") {
            assert_eq!(
                token_from(None, Some("CARGO_PKG_NAME")).unwrap().expose(),
                name
            );
        }
        let err = token_from(None, Some("TIDEMARK_NO_SUCH_TOKEN_VAR")).unwrap_err();
        assert!(err.to_string().contains("TIDEMARK_NO_SUCH_TOKEN_VAR"));
        assert!(token_from(None, None).is_err());
    }

    #[test]
    fn memory_is_bounded() {
        let mut m = Memory::default();
        let posted = Posted {
            state: State::Success,
            description: String::new(),
            target_url: None,
        };
        for i in 0..(REMEMBERED_SHAS + 10) {
            m.remember(&format!("{i:040x}"), "c", posted.clone());
            m.remember(&format!("{i:040x}"), "d", posted.clone());
        }
        assert_eq!(m.by_sha.len(), REMEMBERED_SHAS);
        assert!(m.get(&format!("{:040x}", 0), "c").is_none());
        assert!(
            m.get(&format!("{:040x}", REMEMBERED_SHAS + 9), "d")
                .is_some()
        );
    }
}
