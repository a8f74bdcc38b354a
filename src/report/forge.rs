//! The forges commit statuses are posted to, and what differs between them: the repository's
//! path, the auth header, the `Accept` and version headers, the field naming the context, the
//! names of the states, the description's limit, and GitLab's answer for a state it already has.
//! The reporter that posts ([`super::status::Reporter`]) is the same for all three.
//!
//! # The three forges
//!
//! **GitHub** — "Create a commit status",
//! <https://docs.github.com/en/rest/commits/statuses#create-a-commit-status>:
//! `POST {base}/repos/{owner}/{repo}/statuses/{sha}`, base `https://api.github.com` (GitHub
//! Enterprise Server: `https://HOST/api/v3`). Headers: `Authorization: Bearer <token>`
//! (<https://docs.github.com/en/rest/authentication/authenticating-to-the-rest-api>),
//! `Accept: application/vnd.github+json`, `X-GitHub-Api-Version: 2022-11-28`
//! (<https://docs.github.com/en/rest/about-the-rest-api/api-versions>) and a `User-Agent`, which
//! the API requires. JSON body: `state` (required; `error`, `failure`, `pending` or `success`),
//! `target_url`, `description`, `context` (default `default`, case-insensitive). `201 Created` on
//! success. The description is limited to 140 characters (a longer one is refused with `422`
//! "description is too long (maximum is 140 characters)"); there is a limit of 1000 statuses per
//! sha and context — one more reason not to re-post an unchanged state. Rate limits
//! (<https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api>): a `403` or
//! `429` with `retry-after` (seconds), or with `x-ratelimit-remaining: 0` and
//! `x-ratelimit-reset` (epoch seconds), means "wait until then".
//!
//! **GitLab** — "Set the pipeline status of a commit",
//! <https://docs.gitlab.com/api/commits/#set-the-pipeline-status-of-a-commit>:
//! `POST {base}/projects/{id}/statuses/{sha}`, base `https://HOST/api/v4`, where `id` is the
//! numeric project id or the URL-encoded path of the project (`group%2Fsub%2Fproject`,
//! <https://docs.gitlab.com/api/rest/#namespaced-paths>). Header `PRIVATE-TOKEN: <token>` for
//! personal, project and group access tokens (OAuth tokens would use `Authorization: Bearer`;
//! <https://docs.gitlab.com/api/rest/authentication/>). JSON body: `state` (required; `pending`,
//! `running`, `success`, `failed`, `canceled`, and `skipped` in recent versions), `name` (alias
//! `context`; default `default`), `target_url`, `description`, and optional `ref`, `coverage`,
//! `pipeline_id`, unused here. GitLab has no `error` state: [`State::Failure`] and
//! [`State::Error`] both become `failed`. GitLab refuses to move a status to the state it is
//! already in with `400 Cannot transition status via :enqueue from :pending` — which is what a
//! restarted controller (with an empty memory of what it posted) gets for an unchanged `pending`;
//! that answer is taken as "already in that state", not as an error. GitLab documents no length
//! limit for the description; it is capped at 255 characters here. `429` comes with
//! `Retry-After` (<https://docs.gitlab.com/security/rate_limits/>).
//!
//! **Gitea** — "Create a commit status" (`repoCreateStatus` in the instance's
//! `/api/swagger`; <https://docs.gitea.com/api/1.24/#tag/repository/operation/repoCreateStatus>):
//! `POST {base}/repos/{owner}/{repo}/statuses/{sha}`, base `https://HOST/api/v1`. Header
//! `Authorization: token <token>` (<https://docs.gitea.com/development/api-usage>; the server
//! also takes `Bearer`); the token needs write access to the repository's code. JSON body
//! `CreateStatusOption`: `state` (`pending`, `success`, `error`, `failure`, and `warning` and
//! `skipped` in recent versions), `target_url`, `description`, `context`. `201 Created`. The
//! description is a `TEXT` column with no documented limit; it is capped at 255 characters here.
//! A sha the repository does not hold is answered with a `500` (Gitea 1.26), which is retried
//! like any server error before the post gives up.
//!
//! Forgejo keeps Gitea's API, so a Forgejo instance is configured as [`Forge::Gitea`].

use std::fmt;
use std::str::FromStr;

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};

use super::status::{Secret, State, StatusError};

/// The forge a repository lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Forge {
    /// github.com or GitHub Enterprise Server.
    GitHub,
    /// gitlab.com or a self-managed GitLab.
    GitLab,
    /// Gitea (and Forgejo, which keeps its API).
    Gitea,
}

impl Forge {
    /// The `Accept` header of a request.
    pub(super) fn accept(self) -> &'static str {
        match self {
            Forge::GitHub => "application/vnd.github+json",
            Forge::GitLab | Forge::Gitea => "application/json",
        }
    }

    /// Headers beside the auth and content ones: GitHub's API version.
    pub(super) fn extra_headers(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Forge::GitHub => &[("X-GitHub-Api-Version", "2022-11-28")],
            Forge::GitLab | Forge::Gitea => &[],
        }
    }

    /// The body field naming the context: GitLab documents `name` (with `context` as an alias);
    /// GitHub and Gitea use `context`.
    pub(super) fn context_field(self) -> &'static str {
        match self {
            Forge::GitLab => "name",
            Forge::GitHub | Forge::Gitea => "context",
        }
    }

    /// Whether an answer means "already in that state" rather than a failure: GitLab's `400
    /// Cannot transition status` for a state the commit already has.
    pub(super) fn already_in_state(self, status: StatusCode, message: &str) -> bool {
        self == Forge::GitLab
            && status == StatusCode::BAD_REQUEST
            && message.contains("Cannot transition status")
    }

    /// The lower-case name used in configuration: `github`, `gitlab`, `gitea`.
    pub fn as_str(self) -> &'static str {
        match self {
            Forge::GitHub => "github",
            Forge::GitLab => "gitlab",
            Forge::Gitea => "gitea",
        }
    }

    /// The longest description (in characters) posted to this forge: GitHub refuses more than
    /// 140; GitLab and Gitea document no limit, 255 keeps the line short.
    pub fn description_limit(self) -> usize {
        match self {
            Forge::GitHub => 140,
            Forge::GitLab | Forge::Gitea => 255,
        }
    }

    /// The forge's name for `state`, as sent in the `state` field.
    pub fn state_name(self, state: State) -> &'static str {
        match (self, state) {
            (_, State::Pending) => "pending",
            (_, State::Success) => "success",
            // GitLab has no `error`; `canceled` would misreport a broken object as withdrawn.
            (Forge::GitLab, State::Failure | State::Error) => "failed",
            (Forge::GitHub | Forge::Gitea, State::Failure) => "failure",
            (Forge::GitHub | Forge::Gitea, State::Error) => "error",
        }
    }
}

impl fmt::Display for Forge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Forge {
    type Err = StatusError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "github" => Ok(Forge::GitHub),
            "gitlab" => Ok(Forge::GitLab),
            "gitea" | "forgejo" => Ok(Forge::Gitea),
            other => Err(StatusError::Config(format!(
                "unknown forge {other:?} (expected github, gitlab or gitea)"
            ))),
        }
    }
}

impl Forge {
    /// The path segments naming the repository, unencoded (the URL encodes them when pushed, `/`
    /// inside a GitLab project path becoming `%2F`).
    pub(super) fn repo_segments(self, repository: &str) -> Result<Vec<String>, StatusError> {
        let repository = repository.trim().trim_matches('/');
        let bad = |why: &str| StatusError::Config(format!("repository {repository:?}: {why}"));
        let segment_ok =
            |s: &str| !s.is_empty() && s != "." && s != ".." && !s.contains(['?', '#']);
        match self {
            Forge::GitHub | Forge::Gitea => {
                let Some((owner, name)) = repository.split_once('/') else {
                    return Err(bad("expected owner/repo"));
                };
                if !segment_ok(owner) || !segment_ok(name) || name.contains('/') {
                    return Err(bad("expected owner/repo"));
                }
                Ok(vec!["repos".into(), owner.into(), name.into()])
            }
            Forge::GitLab => {
                let path = percent_encoding::percent_decode_str(repository)
                    .decode_utf8()
                    .map_err(|_| bad("not UTF-8 once URL-decoded"))?;
                let path = path.trim_matches('/');
                if path.is_empty() || !path.split('/').all(segment_ok) {
                    return Err(bad("expected a project id or a group/project path"));
                }
                Ok(vec!["projects".into(), path.to_owned()])
            }
        }
    }

    /// The forge's auth header for `token`, marked sensitive (hidden from `Debug`).
    pub(super) fn auth_header(
        self,
        token: &Secret,
    ) -> Result<(HeaderName, HeaderValue), StatusError> {
        let (name, value) = match self {
            Forge::GitHub => (AUTHORIZATION, format!("Bearer {}", token.expose())),
            Forge::GitLab => (
                HeaderName::from_static("private-token"),
                token.expose().to_owned(),
            ),
            Forge::Gitea => (AUTHORIZATION, format!("token {}", token.expose())),
        };
        let mut value = HeaderValue::from_str(&value).map_err(|_| {
            StatusError::Token("the token holds characters not allowed in an HTTP header".into())
        })?;
        value.set_sensitive(true);
        Ok((name, value))
    }
}
