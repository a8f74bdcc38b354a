//! Commit statuses (DESIGN.md §6) against stand-ins for GitHub, GitLab and Gitea.
//!
//! Each test starts a local HTTP server on 127.0.0.1 that plays one forge: it checks every
//! request against that forge's documented contract (method, path with the sha — and, for
//! GitLab, the URL-encoded project path —, auth header format, content type, JSON field names
//! and allowed values), answers as the forge does (GitHub's 422 for a description over 140
//! characters, GitLab's 400 for a same-state transition), can be told to fail the next requests
//! (500, 429 with `Retry-After`, GitHub's 403 with an exhausted rate limit), and records what it
//! accepted. The contracts are in src/report/status.rs, with their documentation links.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State as Extract};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use serde_json::{Value, json};
use tidemark::report::status::{
    Forge, ForgeConfig, Reporter, RetryPolicy, Secret, State, StatusError, StatusUpdate,
};

const TOKEN: &str = "tmk-test-token-Zq9xW4";
const SHA: &str = "6dcb09b5b57875f334f61aebed695e2e4193db5e";
const SHA2: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c";

/// A failure the fake forge answers with instead of handling the next request.
#[derive(Debug, Clone)]
enum Scripted {
    /// This HTTP status, with a forge-like JSON message.
    Status(u16),
    /// 429 with `Retry-After: <secs>`.
    TooMany(u64),
    /// GitHub's primary rate limit: 403, `x-ratelimit-remaining: 0`, reset in `<secs>`.
    RateLimitReset(u64),
}

/// A status the fake forge accepted.
#[derive(Debug, Clone, PartialEq)]
struct Accepted {
    sha: String,
    context: String,
    state: String,
    description: Option<String>,
    target_url: Option<String>,
}

#[derive(Debug, Default)]
struct Log {
    /// Every request's arrival, in order.
    arrivals: Vec<Instant>,
    /// Statuses created (2xx).
    accepted: Vec<Accepted>,
    /// Contract breaches seen.
    violations: Vec<String>,
    /// Failures to answer with, in order.
    script: VecDeque<Scripted>,
    /// The current state per (sha, context).
    current: HashMap<(String, String), String>,
}

/// A fake forge.
struct Fake {
    forge: Forge,
    /// The path prefix before the status path proper (`/api/v4`, `/api/v1`, nothing).
    prefix: &'static str,
    /// The repository part of the path as it must appear on the wire (raw, still encoded).
    wire_repo: String,
    /// The base URL to configure.
    base: String,
    log: Mutex<Log>,
}

impl Fake {
    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap()
    }
}

/// Starts a fake `forge` for `repository`, whose path must appear as `wire_repo` on the wire.
/// Returns it with the base URL to configure.
async fn start(forge: Forge, wire_repo: &str) -> (Arc<Fake>, String) {
    let prefix = match forge {
        Forge::GitHub => "",
        Forge::GitLab => "/api/v4",
        Forge::Gitea => "/api/v1",
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = Arc::new(Fake {
        forge,
        prefix,
        wire_repo: wire_repo.to_owned(),
        base: format!("http://{addr}{prefix}"),
        log: Mutex::default(),
    });
    let app = Router::new().fallback(handle).with_state(fake.clone());
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let base = fake.base.clone();
    (fake, base)
}

fn reply(status: u16, body: Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Checks one request against the forge's contract. `Err((status, message))` is what the forge
/// answers to a breach; the breach is also logged as a violation.
fn check(
    fake: &Fake,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(String, Accepted), (u16, String)> {
    let forge = fake.forge;
    if method != Method::POST {
        return Err((405, format!("method {method} (expected POST)")));
    }
    if query.is_some() {
        return Err((
            400,
            format!("query string {query:?}: fields belong in the JSON body"),
        ));
    }
    // Path: {prefix}/repos/{owner}/{repo}/statuses/{sha} or {prefix}/projects/{id}/statuses/{sha}.
    let collection = match forge {
        Forge::GitHub | Forge::Gitea => "repos",
        Forge::GitLab => "projects",
    };
    let expected_head = format!("{}/{collection}/{}/statuses/", fake.prefix, fake.wire_repo);
    let Some(sha) = path.strip_prefix(&expected_head) else {
        return Err((404, format!("path {path} (expected {expected_head}<sha>)")));
    };
    if sha.len() != 40 || !sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err((404, format!("sha {sha:?} is not 40 lower-case hex digits")));
    }
    // Authentication.
    let auth_ok = match forge {
        Forge::GitHub => header(headers, "authorization") == Some(&format!("Bearer {TOKEN}")),
        Forge::GitLab => {
            header(headers, "private-token") == Some(TOKEN)
                || header(headers, "authorization") == Some(&format!("Bearer {TOKEN}"))
        }
        Forge::Gitea => header(headers, "authorization") == Some(&format!("token {TOKEN}")),
    };
    if !auth_ok {
        // Echo what was presented, so the test can check the reporter scrubs it.
        let presented = header(headers, "authorization")
            .or(header(headers, "private-token"))
            .unwrap_or("nothing");
        return Err((
            401,
            format!("401 Unauthorized: bad credentials {presented}"),
        ));
    }
    if forge == Forge::GitHub {
        if header(headers, "accept") != Some("application/vnd.github+json") {
            return Err((415, format!("accept {:?}", header(headers, "accept"))));
        }
        if header(headers, "x-github-api-version") != Some("2022-11-28") {
            return Err((400, "missing X-GitHub-Api-Version: 2022-11-28".into()));
        }
        if header(headers, "user-agent").is_none_or(str::is_empty) {
            return Err((403, "requests must carry a User-Agent".into()));
        }
    }
    if !header(headers, "content-type").is_some_and(|c| c.starts_with("application/json")) {
        return Err((
            415,
            format!("content-type {:?}", header(headers, "content-type")),
        ));
    }
    // Body.
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return Err((400, "body is not a JSON object".into()));
    };
    let (allowed_fields, states): (&[&str], &[&str]) = match forge {
        Forge::GitHub => (
            &["state", "target_url", "description", "context"],
            &["error", "failure", "pending", "success"],
        ),
        Forge::GitLab => (
            &[
                "state",
                "ref",
                "name",
                "context",
                "target_url",
                "description",
                "coverage",
                "pipeline_id",
            ],
            &[
                "pending", "running", "success", "failed", "canceled", "skipped",
            ],
        ),
        Forge::Gitea => (
            &["state", "target_url", "description", "context"],
            &[
                "pending", "success", "error", "failure", "warning", "skipped",
            ],
        ),
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !allowed_fields.contains(&k.as_str()))
    {
        return Err((400, format!("unknown field {unknown:?}")));
    }
    let text = |key: &str| -> Result<Option<String>, (u16, String)> {
        match fields.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err((400, format!("{key} is not a string: {other}"))),
        }
    };
    let Some(state) = text("state")? else {
        return Err((400, "state is missing".into()));
    };
    if !states.contains(&state.as_str()) {
        return Err((400, format!("state {state:?} is not one of {states:?}")));
    }
    let context = match forge {
        Forge::GitLab => text("name")?.or(text("context")?),
        Forge::GitHub | Forge::Gitea => text("context")?,
    };
    let Some(context) = context else {
        return Err((
            400,
            "no context: the status would land on \"default\"".into(),
        ));
    };
    let description = text("description")?;
    if let Some(d) = &description {
        if forge == Forge::GitHub && d.chars().count() > 140 {
            return Err((
                422,
                "Validation Failed: description is too long (maximum is 140 characters)".into(),
            ));
        }
        if d.contains(['\n', '\r']) {
            return Err((400, "description is not one line".into()));
        }
    }
    let target_url = text("target_url")?;
    Ok((
        sha.to_owned(),
        Accepted {
            sha: sha.to_owned(),
            context,
            state,
            description,
            target_url,
        },
    ))
}

async fn handle(Extract(fake): Extract<Arc<Fake>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let mut log = fake.log();
    log.arrivals.push(Instant::now());
    let checked = check(
        &fake,
        &parts.method,
        parts.uri.path(),
        parts.uri.query(),
        &parts.headers,
        &body,
    );
    let accepted = match checked {
        Ok((_, accepted)) => accepted,
        Err((status, message)) => {
            log.violations
                .push(format!("{} {}: {message}", parts.method, parts.uri));
            return reply(status, json!({ "message": message }));
        }
    };
    if let Some(failure) = log.script.pop_front() {
        return match failure {
            Scripted::Status(code) => reply(
                code,
                json!({ "message": format!("{code} scripted failure") }),
            ),
            Scripted::TooMany(secs) => {
                let mut r = reply(429, json!({ "message": "429 Too Many Requests" }));
                r.headers_mut().insert("retry-after", secs.into());
                r
            }
            Scripted::RateLimitReset(secs) => {
                let reset = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_secs()
                    + secs;
                let mut r = reply(403, json!({ "message": "API rate limit exceeded" }));
                r.headers_mut().insert("x-ratelimit-remaining", 0.into());
                r.headers_mut().insert("x-ratelimit-reset", reset.into());
                r
            }
        };
    }
    let key = (accepted.sha.clone(), accepted.context.clone());
    // GitLab's state machine refuses a same-state transition of a running status.
    if fake.forge == Forge::GitLab
        && log.current.get(&key) == Some(&accepted.state)
        && matches!(accepted.state.as_str(), "pending" | "running")
    {
        let event = if accepted.state == "pending" {
            "enqueue"
        } else {
            "run"
        };
        let message = format!(
            "Cannot transition status via :{event} from :{} (Reason(s): Status cannot transition via \"{event}\")",
            accepted.state
        );
        return reply(400, json!({ "message": message }));
    }
    log.current.insert(key, accepted.state.clone());
    log.accepted.push(accepted.clone());
    let id = log.accepted.len();
    let body = match fake.forge {
        Forge::GitLab => json!({
            "id": id, "sha": accepted.sha, "status": accepted.state, "name": accepted.context,
            "description": accepted.description, "target_url": accepted.target_url,
        }),
        Forge::GitHub | Forge::Gitea => json!({
            "id": id, "state": accepted.state, "context": accepted.context,
            "description": accepted.description, "target_url": accepted.target_url,
        }),
    };
    reply(201, body)
}

/// Fast retries: 4 attempts, 10 ms doubling to 50 ms, Retry-After honoured up to 5 s.
fn fast() -> RetryPolicy {
    RetryPolicy {
        attempts: 4,
        min_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(5),
    }
}

fn reporter_with(forge: Forge, base: &str, repository: &str, token: &str) -> Reporter {
    Reporter::new(ForgeConfig {
        forge,
        base_url: base.to_owned(),
        repository: repository.to_owned(),
        token: Secret::new(token),
    })
    .unwrap()
    .with_retry(fast())
}

/// A fake `forge` and a reporter for it, with the usual repository for that forge.
async fn setup(forge: Forge) -> (Arc<Fake>, Reporter) {
    let (repository, wire) = match forge {
        Forge::GitHub | Forge::Gitea => ("octo/hello-world", "octo/hello-world"),
        Forge::GitLab => ("platform/infra/clusters", "platform%2Finfra%2Fclusters"),
    };
    let (fake, base) = start(forge, wire).await;
    let reporter = reporter_with(forge, &base, repository, TOKEN);
    (fake, reporter)
}

fn update(sha: &str, context: &str, state: State, description: &str) -> StatusUpdate {
    StatusUpdate {
        sha: sha.to_owned(),
        context: context.to_owned(),
        state,
        description: description.to_owned(),
        target_url: Some("https://tidemark.example.com/ui/objects".to_owned()),
    }
}

fn assert_no_violations(fake: &Fake) {
    let log = fake.log();
    assert!(
        log.violations.is_empty(),
        "{:?} contract violations: {:#?}",
        fake.forge,
        log.violations
    );
}

fn assert_no_token(err: &StatusError) {
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains(TOKEN), "the token leaked: {text}");
    }
}

fn failed(forge: Forge) -> &'static str {
    match forge {
        Forge::GitLab => "failed",
        Forge::GitHub | Forge::Gitea => "failure",
    }
}

/// One POST per (sha, context) per state; an unchanged state is not re-posted; a change is.
async fn posts_each_state_once(forge: Forge) {
    let (fake, reporter) = setup(forge).await;
    let a = "tidemark/Schedule/nightly";
    let b = "tidemark/RestorePlan/drill";
    let first = [
        update(SHA, a, State::Pending, "reconciling"),
        update(SHA, b, State::Pending, "reconciling"),
        update(SHA2, a, State::Pending, "reconciling"),
    ];
    assert_eq!(reporter.post(&first).await.unwrap(), 3);
    // The same states again: nothing goes out.
    assert_eq!(reporter.post(&first).await.unwrap(), 0);
    assert_eq!(fake.log().arrivals.len(), 3);
    // A (pending → success) changes; b is unchanged; SHA2's a fails.
    let second = [
        update(SHA, a, State::Success, "next backup 02:00 UTC"),
        update(SHA, b, State::Pending, "reconciling"),
        update(SHA2, a, State::Failure, "spec.schedule: invalid cron"),
    ];
    assert_eq!(reporter.post(&second).await.unwrap(), 2);
    assert_eq!(reporter.post(&second).await.unwrap(), 0);
    // Same state, new description: that is a change worth posting.
    let third = [update(SHA, a, State::Success, "next backup 03:00 UTC")];
    assert_eq!(reporter.post(&third).await.unwrap(), 1);

    let log = fake.log();
    let seen: Vec<(&str, &str, &str)> = log
        .accepted
        .iter()
        .map(|s| (s.sha.as_str(), s.context.as_str(), s.state.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (SHA, a, "pending"),
            (SHA, b, "pending"),
            (SHA2, a, "pending"),
            (SHA, a, "success"),
            (SHA2, a, failed(forge)),
            (SHA, a, "success"),
        ]
    );
    assert_eq!(
        log.accepted[0].target_url.as_deref(),
        Some("https://tidemark.example.com/ui/objects")
    );
    assert_eq!(
        log.accepted[4].description.as_deref(),
        Some("spec.schedule: invalid cron")
    );
    assert_eq!(log.arrivals.len(), 6, "one request per accepted status");
    drop(log);
    assert_no_violations(&fake);
}

/// 500 then 201: retried, and counted once.
async fn retries_a_server_error(forge: Forge) {
    let (fake, reporter) = setup(forge).await;
    fake.log()
        .script
        .extend([Scripted::Status(500), Scripted::Status(502)]);
    let n = reporter
        .post(&[update(SHA, "tidemark/Backup/b1", State::Success, "done")])
        .await
        .unwrap();
    assert_eq!(n, 1);
    let log = fake.log();
    assert_eq!(
        log.arrivals.len(),
        3,
        "two failures, then the post that worked"
    );
    assert_eq!(log.accepted.len(), 1);
    drop(log);
    assert_no_violations(&fake);
}

/// 429 with `Retry-After: 1`: the reporter waits at least that long (its own backoff is 10 ms).
async fn waits_for_retry_after(forge: Forge) {
    let (fake, reporter) = setup(forge).await;
    fake.log().script.push_back(Scripted::TooMany(1));
    let n = reporter
        .post(&[update(SHA, "tidemark/Backup/b1", State::Pending, "running")])
        .await
        .unwrap();
    assert_eq!(n, 1);
    let log = fake.log();
    assert_eq!(log.arrivals.len(), 2);
    let waited = log.arrivals[1] - log.arrivals[0];
    assert!(
        waited >= Duration::from_millis(990),
        "retried after {waited:?}"
    );
    assert!(waited < Duration::from_secs(4), "retried after {waited:?}");
    drop(log);
    assert_no_violations(&fake);
}

/// A forge that keeps failing: an error naming the context, after the configured attempts,
/// without the token.
async fn gives_up_naming_the_context(forge: Forge) {
    let (fake, reporter) = setup(forge).await;
    fake.log()
        .script
        .extend(std::iter::repeat_n(Scripted::Status(500), 10));
    let context = "tidemark/Schedule/hourly";
    let err = reporter
        .post(&[
            update(SHA, "tidemark/Schedule/first", State::Success, "ok"),
            update(SHA, context, State::Success, "ok"),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StatusError::GaveUp { attempts: 4, .. }),
        "{err:?}"
    );
    // The first update ran into the failures; it is the one named.
    assert!(err.to_string().contains("tidemark/Schedule/first"), "{err}");
    assert!(err.to_string().contains("500"), "{err}");
    assert_no_token(&err);
    assert_eq!(fake.log().arrivals.len(), 4);
    // The forge recovers: the next call posts both.
    fake.log().script.clear();
    let n = reporter
        .post(&[
            update(SHA, "tidemark/Schedule/first", State::Success, "ok"),
            update(SHA, context, State::Success, "ok"),
        ])
        .await
        .unwrap();
    assert_eq!(n, 2);
    // Now only the second keeps failing: the error names it, and the first is not re-posted.
    fake.log()
        .script
        .extend(std::iter::repeat_n(Scripted::Status(503), 10));
    let err = reporter
        .post(&[
            update(SHA, "tidemark/Schedule/first", State::Success, "ok"),
            update(SHA, context, State::Failure, "run failed"),
        ])
        .await
        .unwrap_err();
    assert!(err.to_string().contains(context), "{err}");
    assert!(
        !err.to_string().contains("tidemark/Schedule/first"),
        "{err}"
    );
    assert_no_token(&err);
    assert_no_violations(&fake);
}

/// A refused status (401 here, with the forge echoing the credentials) is not retried, and the
/// error carries no token even then.
async fn refused_is_not_retried_and_scrubbed(forge: Forge) {
    let (fake, _) = setup(forge).await;
    let base = fake.base.clone();
    let wrong = format!("{TOKEN}-revoked");
    let repository = match forge {
        Forge::GitLab => "platform/infra/clusters",
        _ => "octo/hello-world",
    };
    let reporter = reporter_with(forge, &base, repository, &wrong);
    let err = reporter
        .post(&[update(SHA, "tidemark/Backup/b1", State::Success, "ok")])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StatusError::Rejected { status: 401, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("tidemark/Backup/b1"), "{err}");
    assert!(err.to_string().contains("[redacted]"), "{err}");
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains(&wrong), "the token leaked: {text}");
    }
    let log = fake.log();
    assert_eq!(log.arrivals.len(), 1, "a 401 is not retried");
    assert_eq!(log.violations.len(), 1);
}

/// A long, multi-line description is posted as one line within the forge's limit.
async fn truncates_descriptions(forge: Forge) {
    let (fake, reporter) = setup(forge).await;
    let long = format!(
        "restore plan drill:\n{}\n\tend",
        "42 objects to create, 3 to update; ".repeat(12)
    );
    assert!(long.chars().count() > 400);
    let n = reporter
        .post(&[update(
            SHA,
            "tidemark/RestorePlan/drill",
            State::Pending,
            &long,
        )])
        .await
        .unwrap();
    assert_eq!(n, 1);
    let posted = fake.log().accepted[0].description.clone().unwrap();
    let limit = match forge {
        Forge::GitHub => 140,
        Forge::GitLab | Forge::Gitea => 255,
    };
    // Cut to the limit (one less when the cut falls on a space, which is dropped), ending in
    // an ellipsis, and otherwise the original folded onto one line.
    let count = posted.chars().count();
    assert!(count == limit || count == limit - 1, "{count}: {posted}");
    let folded = long.split_whitespace().collect::<Vec<_>>().join(" ");
    let kept = posted.strip_suffix('…').expect(&posted);
    assert!(folded.starts_with(kept), "{posted}");
    assert!(!posted.contains(['\n', '\t']), "{posted}");
    // The same long description again is recognized as unchanged.
    let n = reporter
        .post(&[update(
            SHA,
            "tidemark/RestorePlan/drill",
            State::Pending,
            &long,
        )])
        .await
        .unwrap();
    assert_eq!(n, 0);
    assert_no_violations(&fake);
}

/// Network errors (nothing listening) are retried, then reported naming the context.
async fn network_errors_are_retried(forge: Forge) {
    // Bind, note the port, close: connections are refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let base = match forge {
        Forge::GitHub => format!("http://127.0.0.1:{port}"),
        Forge::GitLab => format!("http://127.0.0.1:{port}/api/v4"),
        Forge::Gitea => format!("http://127.0.0.1:{port}/api/v1"),
    };
    let repository = if forge == Forge::GitLab { "7" } else { "o/r" };
    let reporter = reporter_with(forge, &base, repository, TOKEN);
    let err = reporter
        .post(&[update(
            SHA,
            "tidemark/Location/primary",
            State::Error,
            "unreachable",
        )])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StatusError::GaveUp { attempts: 4, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("tidemark/Location/primary"),
        "{err}"
    );
    assert_no_token(&err);
}

/// A malformed update stops the batch before anything is posted.
async fn invalid_updates_post_nothing(forge: Forge) {
    let (fake, reporter) = setup(forge).await;
    let err = reporter
        .post(&[
            update(SHA, "tidemark/Backup/ok", State::Success, "ok"),
            update("HEAD", "tidemark/Backup/bad", State::Success, "ok"),
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, StatusError::Invalid { .. }), "{err:?}");
    assert!(err.to_string().contains("tidemark/Backup/bad"), "{err}");
    assert!(fake.log().arrivals.is_empty());
}

macro_rules! forge_tests {
    ($module:ident, $forge:expr) => {
        mod $module {
            use super::*;

            #[tokio::test]
            async fn posts_each_state_once() {
                super::posts_each_state_once($forge).await;
            }

            #[tokio::test]
            async fn retries_a_server_error() {
                super::retries_a_server_error($forge).await;
            }

            #[tokio::test]
            async fn waits_for_retry_after() {
                super::waits_for_retry_after($forge).await;
            }

            #[tokio::test]
            async fn gives_up_naming_the_context() {
                super::gives_up_naming_the_context($forge).await;
            }

            #[tokio::test]
            async fn refused_is_not_retried_and_scrubbed() {
                super::refused_is_not_retried_and_scrubbed($forge).await;
            }

            #[tokio::test]
            async fn truncates_descriptions() {
                super::truncates_descriptions($forge).await;
            }

            #[tokio::test]
            async fn network_errors_are_retried() {
                super::network_errors_are_retried($forge).await;
            }

            #[tokio::test]
            async fn invalid_updates_post_nothing() {
                super::invalid_updates_post_nothing($forge).await;
            }
        }
    };
}

forge_tests!(github, Forge::GitHub);
forge_tests!(gitlab, Forge::GitLab);
forge_tests!(gitea, Forge::Gitea);

/// GitHub's primary rate limit: 403 with `x-ratelimit-remaining: 0` waits until the reset.
#[tokio::test]
async fn github_rate_limit_reset_is_waited_for() {
    let (fake, reporter) = setup(Forge::GitHub).await;
    fake.log().script.push_back(Scripted::RateLimitReset(2));
    let n = reporter
        .post(&[update(SHA, "tidemark/Backup/b1", State::Success, "ok")])
        .await
        .unwrap();
    assert_eq!(n, 1);
    let log = fake.log();
    assert_eq!(log.arrivals.len(), 2);
    // The reset is in whole seconds, two ahead: between 1 s and 2 s away.
    let waited = log.arrivals[1] - log.arrivals[0];
    assert!(
        waited >= Duration::from_millis(100),
        "retried after {waited:?}"
    );
    assert!(waited < Duration::from_secs(4), "retried after {waited:?}");
    drop(log);
    assert_no_violations(&fake);
}

/// A Retry-After beyond the policy's limit fails now rather than blocking the reconcile.
#[tokio::test]
async fn overlong_retry_after_fails_fast() {
    let (fake, reporter) = setup(Forge::Gitea).await;
    fake.log().script.push_back(Scripted::TooMany(3600));
    let started = Instant::now();
    let err = reporter
        .post(&[update(SHA, "tidemark/Backup/b1", State::Success, "ok")])
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(err.to_string().contains("tidemark/Backup/b1"), "{err}");
    assert!(err.to_string().contains("3600"), "{err}");
    assert_eq!(fake.log().arrivals.len(), 1);
}

/// After a restart (an empty memory), GitLab refuses an unchanged `pending` with "Cannot
/// transition status": that means "already pending", not an error.
#[tokio::test]
async fn gitlab_same_state_after_restart_is_not_an_error() {
    let (fake, base) = start(Forge::GitLab, "platform%2Finfra%2Fclusters").await;
    let first = reporter_with(Forge::GitLab, &base, "platform/infra/clusters", TOKEN);
    let pending = [update(
        SHA,
        "tidemark/Schedule/nightly",
        State::Pending,
        "reconciling",
    )];
    assert_eq!(first.post(&pending).await.unwrap(), 1);
    // A new process: same pending status again.
    let restarted = reporter_with(Forge::GitLab, &base, "platform%2Finfra%2Fclusters", TOKEN);
    assert_eq!(restarted.post(&pending).await.unwrap(), 0);
    assert_eq!(restarted.post(&pending).await.unwrap(), 0);
    assert_eq!(
        fake.log().arrivals.len(),
        2,
        "the refusal is remembered as the state"
    );
    let done = [update(
        SHA,
        "tidemark/Schedule/nightly",
        State::Success,
        "ok",
    )];
    assert_eq!(restarted.post(&done).await.unwrap(), 1);
    assert_eq!(fake.log().accepted.len(), 2);
    assert_no_violations(&fake);
}

/// GitLab by numeric project id.
#[tokio::test]
async fn gitlab_numeric_project_id() {
    let (fake, base) = start(Forge::GitLab, "4242").await;
    let reporter = reporter_with(Forge::GitLab, &base, "4242", TOKEN);
    let n = reporter
        .post(&[update(
            SHA,
            "tidemark/Backup/b1",
            State::Error,
            "store unreachable",
        )])
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(fake.log().accepted[0].state, "failed");
    assert_no_violations(&fake);
}

/// Nothing that formats a configuration, a reporter or an error shows the token.
#[test]
fn debug_output_hides_the_token() {
    let cfg = ForgeConfig {
        forge: Forge::GitLab,
        base_url: "https://gitlab.example.com/api/v4".into(),
        repository: "1".into(),
        token: Secret::new(TOKEN),
    };
    assert!(!format!("{cfg:?}").contains(TOKEN));
    let reporter = Reporter::new(cfg).unwrap();
    assert!(!format!("{reporter:?}").contains(TOKEN));
    assert!(format!("{reporter:?}").contains("[redacted]"));
}
