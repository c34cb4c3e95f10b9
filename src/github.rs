//! GitHub, as a GitHub App (docs/github.md): the App JWT, installation tokens narrowed to
//! one repository, the repository's default branch, and pull requests.
//!
//! The same client serves the CLI (token minting as a preflight, the blueprint read
//! through the contents API, `doctor`), a cloud run's credential sidecar (which mints
//! the run's token inside the task, from the App key ECS injects into it alone, so no
//! token ever travels through RunTask) and, with a hand-made one-container task
//! definition, the minion. The API base is configurable for GitHub
//! Enterprise (`https://HOST/api/v3`). Tokens never appear in errors or logs.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::Fail;

const API_VERSION: &str = "2022-11-28";

#[derive(Clone)]
pub struct GitHub {
    http: reqwest::Client,
    pub api_url: String,
}

/// A minted installation token. Debug never shows the token.
#[derive(Clone, Deserialize)]
pub struct InstallationToken {
    pub token: String,
    pub expires_at: String,
}

impl std::fmt::Debug for InstallationToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstallationToken")
            .field("token", &"[REDACTED]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[derive(Debug, Serialize)]
struct Claims {
    iat: i64,
    exp: i64,
    iss: String,
}

/// A GitHub App JWT (RS256): issued 60 s in the past against clock drift, valid 9 minutes.
pub fn app_jwt(app_id: &str, private_key_pem: &str) -> anyhow::Result<String> {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_key_pem.as_bytes()).map_err(|e| {
        Fail::new(format!("the GitHub App private key is not a valid RSA PEM key: {e}"))
            .with_hint("store the .pem file GitHub generated for the app: `lackey secret put github_app_key --from-file app.private-key.pem`")
    })?;
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        iat: now - 60,
        exp: now + 540,
        iss: app_id.to_string(),
    };
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )?)
}

/// Split `owner/repo`.
pub fn split_repo(full: &str) -> anyhow::Result<(&str, &str)> {
    full.split_once('/')
        .filter(|(o, r)| !o.is_empty() && !r.is_empty() && !r.contains('/'))
        .ok_or_else(|| Fail::new(format!("`{full}` is not OWNER/REPO")).into())
}

impl GitHub {
    pub fn new(api_url: &str) -> GitHub {
        GitHub {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .connect_timeout(Duration::from_secs(10))
                .build()
                .expect("build HTTP client"),
            api_url: api_url.trim_end_matches('/').to_string(),
        }
    }

    fn request(&self, method: reqwest::Method, path: &str, auth: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.api_url))
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", API_VERSION)
            .header("User-Agent", concat!("lackey/", env!("CARGO_PKG_VERSION")))
            .header("Authorization", format!("Bearer {auth}"))
    }

    /// Send with retries for 5xx and rate limits (bounded waits), returning status and body.
    async fn send(
        &self,
        make: impl Fn() -> reqwest::RequestBuilder,
        what: &str,
    ) -> anyhow::Result<(u16, serde_json::Value, reqwest::header::HeaderMap)> {
        let mut attempt = 0u32;
        loop {
            let resp = make().send().await;
            let resp = match resp {
                Ok(r) => r,
                Err(e) if attempt < 3 => {
                    tracing::debug!("GitHub request failed ({e}); retrying");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(attempt))).await;
                    continue;
                }
                Err(e) => {
                    return Err(Fail::new(format!(
                        "cannot reach GitHub at {} to {what}: {}",
                        self.api_url,
                        e.without_url()
                    ))
                    .with_hint("check the network and LACKEY_GITHUB_API_URL ([github] api_url)")
                    .into())
                }
            };
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
            let rate_limited = (status == 403 || status == 429)
                && (headers.get("retry-after").is_some()
                    || headers
                        .get("x-ratelimit-remaining")
                        .and_then(|v| v.to_str().ok())
                        == Some("0"));
            if (status >= 500 || rate_limited) && attempt < 3 {
                let wait = headers
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .or_else(|| {
                        headers
                            .get("x-ratelimit-reset")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse::<i64>().ok())
                            .map(|reset| (reset - chrono::Utc::now().timestamp()).max(1) as u64)
                    })
                    .unwrap_or(1 << attempt);
                if wait > 60 {
                    return Err(Fail::new(format!("GitHub's rate limit is exhausted for the next {wait} s while trying to {what}"))
                        .with_hint("wait and run again")
                        .into());
                }
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(wait)).await;
                continue;
            }
            return Ok((status, body, headers));
        }
    }

    fn api_error(status: u16, body: &serde_json::Value, what: &str) -> Fail {
        let msg = body["message"].as_str().unwrap_or("no message");
        Fail::new(format!(
            "GitHub answered {status} when trying to {what}: {msg}"
        ))
    }

    /// Mint an installation token, narrowed to `repo` (its name, without the owner) with
    /// contents write, pull requests write and metadata read.
    pub async fn installation_token(
        &self,
        app_id: &str,
        private_key_pem: &str,
        installation_id: &str,
        repo: Option<&str>,
    ) -> anyhow::Result<InstallationToken> {
        let jwt = app_jwt(app_id, private_key_pem)?;
        let mut body = json!({
            "permissions": {"contents": "write", "pull_requests": "write", "metadata": "read"}
        });
        if let Some(r) = repo {
            body["repositories"] = json!([r]);
        }
        let path = format!("/app/installations/{installation_id}/access_tokens");
        let what = format!("mint an installation token for installation {installation_id}");
        let (status, v, _) = self
            .send(
                || self.request(reqwest::Method::POST, &path, &jwt).json(&body),
                &what,
            )
            .await?;
        match status {
            201 | 200 => Ok(serde_json::from_value(v)
                .map_err(|e| anyhow::anyhow!("GitHub's token reply is not what the API documents: {e}"))?),
            401 => Err(Self::api_error(status, &v, &what)
                .with_hint("GitHub rejected the App's JWT: check LACKEY_GITHUB_APP_ID and that the private key in Secrets Manager belongs to that app")
                .into()),
            404 => Err(Self::api_error(status, &v, &what)
                .with_hint("check LACKEY_GITHUB_INSTALLATION_ID: it is in the URL of the app's installation page")
                .into()),
            422 => Err(Self::api_error(status, &v, &what)
                .with_hint(format!(
                    "install the app on `{}` and grant it Contents (read & write), Pull requests (read & write) and Metadata (read)",
                    repo.unwrap_or("the repository")
                ))
                .into()),
            _ => Err(Self::api_error(status, &v, &what).into()),
        }
    }

    /// The repositories an installation token can see (`owner/name`), every page.
    pub async fn installation_repositories(&self, token: &str) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        let mut page = 1;
        loop {
            let path = format!("/installation/repositories?per_page=100&page={page}");
            let (status, v, headers) = self
                .send(
                    || self.request(reqwest::Method::GET, &path, token),
                    "list the installation's repositories",
                )
                .await?;
            if status != 200 {
                return Err(
                    Self::api_error(status, &v, "list the installation's repositories").into(),
                );
            }
            for r in v["repositories"].as_array().into_iter().flatten() {
                if let Some(n) = r["full_name"].as_str() {
                    out.push(n.to_string());
                }
            }
            let has_next = headers
                .get("link")
                .and_then(|l| l.to_str().ok())
                .is_some_and(|l| l.contains("rel=\"next\""));
            if !has_next {
                return Ok(out);
            }
            page += 1;
        }
    }

    /// The repository's default branch.
    pub async fn default_branch(&self, token: &str, full: &str) -> anyhow::Result<String> {
        let (owner, repo) = split_repo(full)?;
        let path = format!("/repos/{owner}/{repo}");
        let what = format!("read repository `{full}`");
        let (status, v, _) = self
            .send(|| self.request(reqwest::Method::GET, &path, token), &what)
            .await?;
        if status != 200 {
            return Err(Self::api_error(status, &v, &what)
                .with_hint(format!("check that the app is installed on `{full}`"))
                .into());
        }
        Ok(v["default_branch"].as_str().unwrap_or("main").to_string())
    }

    /// Whether the repository has the branch `branch`.
    pub async fn branch_exists(
        &self,
        token: &str,
        full: &str,
        branch: &str,
    ) -> anyhow::Result<bool> {
        let (owner, repo) = split_repo(full)?;
        let path = format!("/repos/{owner}/{repo}/branches/{}", encode_path(branch));
        let what = format!("read branch `{branch}` of `{full}`");
        let (status, v, _) = self
            .send(|| self.request(reqwest::Method::GET, &path, token), &what)
            .await?;
        match status {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(Self::api_error(status, &v, &what).into()),
        }
    }

    /// A file or a directory of the repository at `git_ref` (the contents API): the
    /// file's text, or the names in the directory; `None` when there is no such path.
    pub async fn contents(
        &self,
        token: &str,
        full: &str,
        path: &str,
        git_ref: &str,
    ) -> anyhow::Result<Option<Contents>> {
        use base64::Engine;
        let (owner, repo) = split_repo(full)?;
        let url = format!(
            "/repos/{owner}/{repo}/contents/{}?ref={}",
            encode_path(path.trim_start_matches('/')),
            encode_path(git_ref).replace('/', "%2F")
        );
        let what = format!("read `{path}` of `{full}` at `{git_ref}`");
        let (status, v, _) = self
            .send(|| self.request(reqwest::Method::GET, &url, token), &what)
            .await?;
        match status {
            200 => {}
            404 => return Ok(None),
            _ => return Err(Self::api_error(status, &v, &what).into()),
        }
        if let Some(entries) = v.as_array() {
            return Ok(Some(Contents::Dir(
                entries
                    .iter()
                    .filter(|e| e["type"] == "file")
                    .filter_map(|e| e["name"].as_str().map(str::to_string))
                    .collect(),
            )));
        }
        if v["type"] != "file" || v["encoding"] != "base64" {
            return Ok(None);
        }
        let packed: String = v["content"]
            .as_str()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(packed)
            .map_err(|e| anyhow::anyhow!("GitHub's answer to {what} is not base64: {e}"))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| Fail::new(format!("`{path}` of `{full}` is not UTF-8 text")))?;
        Ok(Some(Contents::File(text)))
    }

    /// Open a pull request; when one already exists for the branch, return its URL.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_pull_request(
        &self,
        token: &str,
        full: &str,
        title: &str,
        head: &str,
        base: &str,
        body: &str,
        draft: bool,
    ) -> anyhow::Result<String> {
        let (owner, repo) = split_repo(full)?;
        let path = format!("/repos/{owner}/{repo}/pulls");
        let payload =
            json!({"title": title, "head": head, "base": base, "body": body, "draft": draft});
        let what = format!("open a pull request from `{head}` into `{base}` of `{full}`");
        let (status, v, _) = self
            .send(
                || {
                    self.request(reqwest::Method::POST, &path, token)
                        .json(&payload)
                },
                &what,
            )
            .await?;
        match status {
            201 => Ok(v["html_url"].as_str().unwrap_or_default().to_string()),
            422 if v.to_string().contains("already exists") => {
                let list = format!("/repos/{owner}/{repo}/pulls?head={owner}:{head}&state=open");
                let (s, v2, _) = self
                    .send(|| self.request(reqwest::Method::GET, &list, token), &what)
                    .await?;
                match (s, v2[0]["html_url"].as_str()) {
                    (200, Some(url)) => Ok(url.to_string()),
                    _ => Err(Self::api_error(status, &v, &what).into()),
                }
            }
            _ => Err(Self::api_error(status, &v, &what).into()),
        }
    }
}

/// What the contents API holds at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contents {
    File(String),
    /// The names of the files in a directory.
    Dir(Vec<String>),
}

/// A path (or a branch name) for a URL: `/` kept, every byte but letters, digits and
/// `-._~` percent-encoded.
fn encode_path(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for b in p.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One step of a run, as the pull request's body shows it.
#[derive(Debug, Clone)]
pub struct PrStep {
    pub index: usize,
    pub name: String,
    pub success: bool,
    pub detail: String,
    /// A command step's output (its tail is shown).
    pub output: Option<String>,
}

/// Where a run's artifacts are.
#[derive(Debug, Clone)]
pub enum ArtifactsAt {
    S3 {
        bucket: String,
        prefix: String,
        region: String,
    },
    /// On the machine that started the run.
    Local,
}

/// What the pull request's body says.
#[derive(Debug, Clone)]
pub struct PrBody {
    pub outcome: crate::summary::Outcome,
    pub run_id: String,
    pub steps: Vec<PrStep>,
    pub diff_stats: String,
    pub artifacts: ArtifactsAt,
}

/// Lines of a step's output shown, and their size at most.
const SNIPPET_LINES: usize = 20;
const SNIPPET_CHARS: usize = 2_000;
/// GitHub refuses a body over 65,536 characters.
const BODY_CHARS: usize = 60_000;

/// A fence longer than any run of backticks in `text`.
fn fence(text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    "`".repeat((longest + 1).max(3))
}

/// The last lines of a command's output, clipped.
fn snippet(output: &str) -> Option<String> {
    let lines: Vec<&str> = output.trim_end().lines().collect();
    if lines.is_empty() {
        return None;
    }
    let start = lines.len().saturating_sub(SNIPPET_LINES);
    let mut text = lines[start..].join("\n");
    if text.chars().count() > SNIPPET_CHARS {
        let skip = text.chars().count() - SNIPPET_CHARS;
        text = format!("…{}", text.chars().skip(skip).collect::<String>());
    }
    let note = if start > 0 {
        format!(" (last {} of {} lines)", lines.len() - start, lines.len())
    } else {
        String::new()
    };
    Some(format!("output{note}|{text}"))
}

/// The body of a run's pull request: the outcome and run id, each step with its result
/// (the tail of each command's output, clipped), the diff stats, and where the
/// artifacts are (the S3 console for cloud runs).
pub fn pr_body(b: &PrBody) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "**Outcome:** `{}` · **Run:** `{}`\n\n### Steps\n\n",
        b.outcome, b.run_id
    ));
    for s in &b.steps {
        let mark = if s.success { "✅" } else { "❌" };
        let detail = s.detail.lines().next().unwrap_or("").trim();
        let detail: String = if detail.chars().count() > 200 {
            format!("{}…", detail.chars().take(199).collect::<String>())
        } else {
            detail.to_string()
        };
        out.push_str(&format!("- {mark} {}. `{}`", s.index, s.name));
        if !detail.is_empty() {
            out.push_str(&format!(": {detail}"));
        }
        out.push('\n');
        if let Some(sn) = s.output.as_deref().and_then(snippet) {
            let (summary, text) = sn.split_once('|').unwrap_or(("output", &sn));
            let f = fence(text);
            out.push_str(&format!(
                "  <details><summary>{summary}</summary>\n\n{f}\n{text}\n{f}\n\n  </details>\n"
            ));
        }
    }
    if !b.diff_stats.trim().is_empty() {
        let f = fence(&b.diff_stats);
        out.push_str(&format!(
            "\n### Diff\n\n{f}\n{}\n{f}\n",
            b.diff_stats.trim_end()
        ));
    }
    out.push_str("\n### Artifacts\n\n");
    match &b.artifacts {
        ArtifactsAt::S3 {
            bucket,
            prefix,
            region,
        } => {
            let prefix = format!("{}/", prefix.trim_end_matches('/'));
            // Encode what a query value cannot hold; keep `-`, `_`, `.`, `~` and `/`.
            const QUERY: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
                .remove(b'-')
                .remove(b'_')
                .remove(b'.')
                .remove(b'~')
                .remove(b'/');
            let q = |s: &str| percent_encoding::utf8_percent_encode(s, QUERY).to_string();
            out.push_str(&format!(
                "[Open in the S3 console](https://s3.console.aws.amazon.com/s3/buckets/{bucket}?region={}&prefix={}) · `s3://{bucket}/{prefix}` (in the run's private folder below it; `lackey report {}` fetches them)\n",
                q(region),
                q(&prefix),
                b.run_id
            ));
        }
        ArtifactsAt::Local => out.push_str(&format!(
            "On the machine that started run `{}`: `lackey runs` lists them.\n",
            b.run_id
        )),
    }
    out.push_str("\n---\n*Opened by lackey.*\n");
    if out.chars().count() > BODY_CHARS {
        let head: String = out.chars().take(BODY_CHARS).collect();
        out = format!("{head}\n\n*(cut: the full record is in the artifacts)*\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_names_split() {
        assert_eq!(split_repo("acme/app").unwrap(), ("acme", "app"));
        assert!(split_repo("acme").is_err());
        assert!(split_repo("a/b/c").is_err());
    }

    #[test]
    fn a_bad_key_is_a_clear_error() {
        let e = app_jwt("1", "not a key").unwrap_err().to_string();
        assert!(e.contains("not a valid RSA PEM key"), "{e}");
    }
}
