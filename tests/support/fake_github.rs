//! A fake GitHub: the App token endpoint, the REST calls lackey makes, and git over
//! smart HTTP (through `git http-backend`), all on one loopback port, laid out like
//! GitHub Enterprise (REST under `/api/v3`).
//!
//! It checks what GitHub checks: the App JWT's RS256 signature against the app's
//! public key, `iss` and a lifetime of at most ten minutes; narrowed token requests
//! only for installed repositories (422 otherwise); installation tokens on every REST
//! and git request (401 otherwise). It records tokens and pull requests, and issues
//! tokens starting `ghs_CANARY` so tests can look for them where they must not be.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path as AxPath, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

pub const APP_ID: &str = "424242";
pub const INSTALLATION_ID: &str = "777";

#[derive(Default)]
struct Inner {
    installed: Vec<String>,
    tokens: HashMap<String, Vec<String>>,
    pulls: Vec<Value>,
    violations: Vec<String>,
    jwt_rejections: usize,
    /// Every contents API read: `path@ref`.
    contents_reads: Vec<String>,
}

#[derive(Clone)]
struct App {
    inner: Arc<Mutex<Inner>>,
    public_key: Arc<String>,
    root: Arc<PathBuf>,
    base: Arc<String>,
}

pub struct FakeGitHub {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    pub private_key_pem: String,
    root: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

fn openssl(args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    use std::io::Write;
    let mut c = std::process::Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl");
    if let Some(i) = stdin {
        c.stdin.take().unwrap().write_all(i).unwrap();
    } else {
        drop(c.stdin.take());
    }
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl {args:?} failed");
    out.stdout
}

/// A fresh RSA key pair (private PKCS#1 PEM as GitHub issues it, public PEM).
pub fn key_pair() -> (String, String) {
    let private = openssl(&["genrsa", "-traditional", "2048"], None);
    let private = if private.is_empty() {
        openssl(&["genrsa", "2048"], None)
    } else {
        private
    };
    let public = openssl(&["rsa", "-pubout"], Some(&private));
    (
        String::from_utf8(private).unwrap(),
        String::from_utf8(public).unwrap(),
    )
}

fn check_headers(app: &App, headers: &HeaderMap) {
    let mut v = Vec::new();
    if headers.get("accept").and_then(|h| h.to_str().ok()) != Some("application/vnd.github+json") {
        v.push("Accept is not application/vnd.github+json".to_string());
    }
    if headers
        .get("x-github-api-version")
        .and_then(|h| h.to_str().ok())
        != Some("2022-11-28")
    {
        v.push("X-GitHub-Api-Version is not 2022-11-28".into());
    }
    if headers.get("user-agent").is_none() {
        v.push("no User-Agent".into());
    }
    app.inner.lock().unwrap().violations.extend(v);
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let h = headers.get("authorization")?.to_str().ok()?;
    h.strip_prefix("Bearer ")
        .or_else(|| h.strip_prefix("token "))
        .map(str::to_string)
}

fn gh_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(
            json!({"message": message, "documentation_url": "https://docs.github.com/rest"}),
        ),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct Claims {
    iat: i64,
    exp: i64,
    iss: String,
}

async fn access_tokens(
    State(app): State<App>,
    AxPath(id): AxPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    check_headers(&app, &headers);
    let Some(jwt) = bearer(&headers) else {
        return gh_error(
            StatusCode::UNAUTHORIZED,
            "A JSON web token could not be decoded",
        );
    };
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(app.public_key.as_bytes()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_required_spec_claims(&["exp", "iss"]);
    let claims = match jsonwebtoken::decode::<Claims>(&jwt, &key, &validation) {
        Ok(d) => d.claims,
        Err(_) => {
            app.inner.lock().unwrap().jwt_rejections += 1;
            return gh_error(
                StatusCode::UNAUTHORIZED,
                "A JSON web token could not be decoded",
            );
        }
    };
    if claims.iss != APP_ID
        || claims.exp - claims.iat > 660
        || claims.iat > chrono::Utc::now().timestamp()
    {
        app.inner.lock().unwrap().jwt_rejections += 1;
        return gh_error(
            StatusCode::UNAUTHORIZED,
            "'Expiration time' claim ('exp') is too far in the future",
        );
    }
    if id != INSTALLATION_ID {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    }
    let req: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
    let mut g = app.inner.lock().unwrap();
    let owner_of = |name: &str| {
        g.installed
            .iter()
            .find(|full| full.split('/').nth(1) == Some(name))
            .cloned()
    };
    let repos: Vec<String> = match req["repositories"].as_array() {
        Some(names) => {
            let mut out = Vec::new();
            for n in names {
                match owner_of(n.as_str().unwrap_or_default()) {
                    Some(full) => out.push(full),
                    None => return gh_error(StatusCode::UNPROCESSABLE_ENTITY, "There is at least one repository that does not exist or is not accessible to the parent installation."),
                }
            }
            out
        }
        None => g.installed.clone(),
    };
    if let Some(p) = req["permissions"].as_object() {
        for (k, v) in p {
            let ok = matches!(
                (k.as_str(), v.as_str()),
                ("contents", Some("read" | "write"))
                    | ("pull_requests", Some("read" | "write"))
                    | ("metadata", Some("read"))
            );
            if !ok {
                return gh_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "The permissions requested are not granted to this installation.",
                );
            }
        }
    }
    let token = format!("ghs_CANARY{:032x}", rand_u128());
    g.tokens.insert(token.clone(), repos.clone());
    let expires = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "token": token,
            "expires_at": expires,
            "permissions": req["permissions"],
            "repository_selection": "selected",
            "repositories": repos.iter().map(|r| json!({"full_name": r, "name": r.split('/').nth(1)})).collect::<Vec<_>>(),
        })),
    )
        .into_response()
}

fn rand_u128() -> u128 {
    use std::time::SystemTime;
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    t.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
}

fn token_repos(app: &App, headers: &HeaderMap) -> Option<Vec<String>> {
    let t = bearer(headers)?;
    app.inner.lock().unwrap().tokens.get(&t).cloned()
}

async fn installation_repos(State(app): State<App>, headers: HeaderMap) -> Response {
    check_headers(&app, &headers);
    match token_repos(&app, &headers) {
        Some(repos) => axum::Json(json!({
            "total_count": repos.len(),
            "repositories": repos.iter().map(|r| json!({"full_name": r})).collect::<Vec<_>>(),
        }))
        .into_response(),
        None => gh_error(StatusCode::UNAUTHORIZED, "Bad credentials"),
    }
}

async fn repo(
    State(app): State<App>,
    AxPath((o, r)): AxPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    check_headers(&app, &headers);
    let full = format!("{o}/{r}");
    match token_repos(&app, &headers) {
        Some(repos) if repos.contains(&full) => {
            axum::Json(json!({"full_name": full, "default_branch": "main", "private": true}))
                .into_response()
        }
        Some(_) => gh_error(StatusCode::NOT_FOUND, "Not Found"),
        None => gh_error(StatusCode::UNAUTHORIZED, "Bad credentials"),
    }
}

async fn pulls(
    State(app): State<App>,
    method: Method,
    AxPath((o, r)): AxPath<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    check_headers(&app, &headers);
    let full = format!("{o}/{r}");
    match token_repos(&app, &headers) {
        Some(repos) if repos.contains(&full) => {}
        Some(_) => return gh_error(StatusCode::NOT_FOUND, "Not Found"),
        None => return gh_error(StatusCode::UNAUTHORIZED, "Bad credentials"),
    }
    let mut g = app.inner.lock().unwrap();
    if method == Method::GET {
        let head = uri
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("head=")))
            .unwrap_or("")
            .to_string();
        let found: Vec<Value> = g
            .pulls
            .iter()
            .filter(|p| format!("{o}:{}", p["head"].as_str().unwrap_or("")) == head)
            .cloned()
            .collect();
        return axum::Json(Value::Array(found)).into_response();
    }
    let req: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
    for field in ["title", "head", "base"] {
        if !req[field].is_string() {
            return gh_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("Validation Failed: {field} is missing"),
            );
        }
    }
    if g.pulls
        .iter()
        .any(|p| p["head"] == req["head"] && p["repo"] == full)
    {
        return gh_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!(
                "Validation Failed: A pull request already exists for {o}:{}.",
                req["head"].as_str().unwrap_or("")
            ),
        );
    }
    let number = g.pulls.len() + 1;
    let url = format!("{}/{full}/pull/{number}", app.base);
    let mut pr = req.clone();
    pr["repo"] = json!(full);
    pr["number"] = json!(number);
    pr["html_url"] = json!(url);
    g.pulls.push(pr.clone());
    (StatusCode::CREATED, axum::Json(pr)).into_response()
}

/// `git` in the bare repository of `full`: its stdout, or None when git fails.
fn bare_git(app: &App, full: &str, args: &[&str]) -> Option<Vec<u8>> {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(app.root.join(format!("{full}.git")))
        .output()
        .ok()?;
    out.status.success().then_some(out.stdout)
}

/// `%2F` and the other escapes of a URL path or query value.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `GET /repos/{o}/{r}/branches/{branch}`: 200 with the branch, 404 without.
async fn branch(
    State(app): State<App>,
    AxPath((o, r, b)): AxPath<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    check_headers(&app, &headers);
    let full = format!("{o}/{r}");
    match token_repos(&app, &headers) {
        Some(repos) if repos.contains(&full) => {}
        Some(_) => return gh_error(StatusCode::NOT_FOUND, "Not Found"),
        None => return gh_error(StatusCode::UNAUTHORIZED, "Bad credentials"),
    }
    let b = unescape(&b);
    match bare_git(
        &app,
        &full,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/heads/{b}"),
        ],
    ) {
        Some(sha) => {
            axum::Json(json!({"name": b, "commit": {"sha": String::from_utf8_lossy(&sha).trim()}}))
                .into_response()
        }
        None => gh_error(StatusCode::NOT_FOUND, "Branch not found"),
    }
}

/// `GET /repos/{o}/{r}/contents/{path}?ref=R`: a file (base64, wrapped at 60 columns as
/// GitHub sends it) or a directory's entries, from the bare repository; reads counted.
async fn contents(
    State(app): State<App>,
    AxPath((o, r, path)): AxPath<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    use base64::Engine;
    check_headers(&app, &headers);
    let full = format!("{o}/{r}");
    match token_repos(&app, &headers) {
        Some(repos) if repos.contains(&full) => {}
        Some(_) => return gh_error(StatusCode::NOT_FOUND, "Not Found"),
        None => return gh_error(StatusCode::UNAUTHORIZED, "Bad credentials"),
    }
    let path = unescape(&path);
    let git_ref = uri
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("ref=")))
        .map(unescape)
        .unwrap_or_else(|| "HEAD".into());
    app.inner
        .lock()
        .unwrap()
        .contents_reads
        .push(format!("{path}@{git_ref}"));
    let object = format!("{git_ref}:{path}");
    let kind = bare_git(&app, &full, &["cat-file", "-t", &object])
        .map(|k| String::from_utf8_lossy(&k).trim().to_string());
    match kind.as_deref() {
        Some("tree") => {
            let names = bare_git(&app, &full, &["ls-tree", &object]).unwrap_or_default();
            let entries: Vec<Value> = String::from_utf8_lossy(&names)
                .lines()
                .filter_map(|l| {
                    let (meta, name) = l.split_once('\t')?;
                    let kind = if meta.contains(" blob ") {
                        "file"
                    } else {
                        "dir"
                    };
                    Some(json!({"name": name, "path": format!("{path}/{name}"), "type": kind}))
                })
                .collect();
            axum::Json(Value::Array(entries)).into_response()
        }
        Some("blob") => {
            let bytes = bare_git(&app, &full, &["cat-file", "blob", &object]).unwrap_or_default();
            let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
            let wrapped: Vec<String> = b64
                .as_bytes()
                .chunks(60)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            axum::Json(json!({
                "type": "file", "encoding": "base64", "path": path,
                "name": path.rsplit('/').next(), "size": bytes.len(),
                "content": wrapped.join("\n") + "\n",
            }))
            .into_response()
        }
        _ => gh_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// git over smart HTTP: the token in Basic auth, then `git http-backend` as CGI.
async fn git(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let Some(repo_part) = path
        .split(".git")
        .next()
        .map(|p| p.trim_start_matches('/').to_string())
    else {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let authed = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Basic "))
        .and_then(base64_decode)
        .and_then(|up| up.split_once(':').map(|(_, p)| p.to_string()))
        .and_then(|token| app.inner.lock().unwrap().tokens.get(&token).cloned())
        .is_some_and(|repos| repos.contains(&repo_part));
    if !authed {
        let mut r = (StatusCode::UNAUTHORIZED, "Authentication required").into_response();
        r.headers_mut().insert(
            "www-authenticate",
            "Basic realm=\"GitHub\"".parse().unwrap(),
        );
        return r;
    }
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", app.root.as_path())
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", &path)
        .env("QUERY_STRING", uri.query().unwrap_or(""))
        .env("REQUEST_METHOD", method.as_str())
        .env(
            "CONTENT_TYPE",
            headers
                .get("content-type")
                .and_then(|h| h.to_str().ok())
                .unwrap_or(""),
        )
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_USER", "x-access-token")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    if let Some(enc) = headers
        .get("content-encoding")
        .and_then(|h| h.to_str().ok())
    {
        cmd.env("HTTP_CONTENT_ENCODING", enc);
    }
    if let Some(p) = headers.get("git-protocol").and_then(|h| h.to_str().ok()) {
        cmd.env("GIT_PROTOCOL", p);
    }
    let mut child = cmd.spawn().unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(&body).await;
    }
    let out = child.wait_with_output().await.unwrap();
    let raw = out.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((at, sep)) = split else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "bad CGI output").into_response();
    };
    let head = String::from_utf8_lossy(&raw[..at]).to_string();
    let mut status = StatusCode::OK;
    let mut resp_headers = HeaderMap::new();
    for line in head.lines() {
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("status") {
                status = StatusCode::from_u16(
                    v.split_whitespace()
                        .next()
                        .unwrap_or("200")
                        .parse()
                        .unwrap_or(200),
                )
                .unwrap();
            } else if let (Ok(name), Ok(value)) =
                (axum::http::HeaderName::from_bytes(k.as_bytes()), v.parse())
            {
                resp_headers.insert(name, value);
            }
        }
    }
    let mut r = (status, raw[at + sep..].to_vec()).into_response();
    r.headers_mut().extend(resp_headers);
    r
}

fn base64_decode(s: &str) -> Option<String> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
}

impl FakeGitHub {
    pub fn start() -> FakeGitHub {
        let (private, public) = key_pair();
        let root = tempfile::tempdir().unwrap();
        let inner = Arc::new(Mutex::new(Inner::default()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let app = App {
            inner: inner.clone(),
            public_key: Arc::new(public),
            root: Arc::new(root.path().to_path_buf()),
            base: Arc::new(format!("http://{addr}")),
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let router = axum::Router::new()
                    .route(
                        "/api/v3/app/installations/{id}/access_tokens",
                        axum::routing::post(access_tokens),
                    )
                    .route(
                        "/api/v3/installation/repositories",
                        axum::routing::get(installation_repos),
                    )
                    .route("/api/v3/repos/{o}/{r}", axum::routing::get(repo))
                    .route(
                        "/api/v3/repos/{o}/{r}/pulls",
                        axum::routing::get(pulls).post(pulls),
                    )
                    .route(
                        "/api/v3/repos/{o}/{r}/branches/{*b}",
                        axum::routing::get(branch),
                    )
                    .route(
                        "/api/v3/repos/{o}/{r}/contents/{*path}",
                        axum::routing::get(contents),
                    )
                    .fallback(git)
                    .with_state(app);
                let _ = axum::serve(listener, router)
                    .with_graceful_shutdown(async move {
                        let _ = rx.await;
                    })
                    .await;
            });
        });
        FakeGitHub {
            addr,
            inner,
            private_key_pem: private,
            root,
            shutdown: Some(tx),
        }
    }

    pub fn api_url(&self) -> String {
        format!("http://{}/api/v3", self.addr)
    }

    pub fn git_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// An installed repository `owner/name` with `files` on `main`.
    pub fn add_repo(&self, full: &str, files: &[(&str, &str)]) -> PathBuf {
        let bare = self.root.path().join(format!("{full}.git"));
        let work = tempfile::tempdir().unwrap();
        super::repo::init(work.path(), files);
        std::fs::create_dir_all(bare.parent().unwrap()).unwrap();
        super::repo::git(
            Path::new("/"),
            &[
                "clone",
                "--quiet",
                "--bare",
                work.path().to_str().unwrap(),
                bare.to_str().unwrap(),
            ],
        );
        super::repo::git(&bare, &["config", "http.receivepack", "true"]);
        self.inner.lock().unwrap().installed.push(full.to_string());
        bare
    }

    /// A branch `name` of `full`, one commit with `files` on top of `main`; its tip.
    pub fn add_branch(&self, full: &str, name: &str, files: &[(&str, &str)]) -> String {
        let bare = self.bare(full);
        let work = tempfile::tempdir().unwrap();
        let w = work.path();
        super::repo::git(
            Path::new("/"),
            &[
                "clone",
                "--quiet",
                bare.to_str().unwrap(),
                w.to_str().unwrap(),
            ],
        );
        super::repo::git(w, &["checkout", "--quiet", "-b", name]);
        for (path, text) in files {
            let p = w.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        super::repo::git(w, &["add", "-A"]);
        super::repo::git(w, &["commit", "--quiet", "-m", &format!("work on {name}")]);
        super::repo::git(w, &["push", "--quiet", "origin", name]);
        super::repo::git(w, &["rev-parse", "HEAD"])
            .trim()
            .to_string()
    }

    pub fn branches(&self, full: &str) -> Vec<String> {
        let bare = self.root.path().join(format!("{full}.git"));
        super::repo::git(&bare, &["branch", "--format=%(refname:short)"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn bare(&self, full: &str) -> PathBuf {
        self.root.path().join(format!("{full}.git"))
    }

    pub fn pulls(&self) -> Vec<Value> {
        self.inner.lock().unwrap().pulls.clone()
    }

    pub fn tokens(&self) -> Vec<String> {
        self.inner.lock().unwrap().tokens.keys().cloned().collect()
    }

    /// Every contents API read, as `path@ref`.
    pub fn contents_reads(&self) -> Vec<String> {
        self.inner.lock().unwrap().contents_reads.clone()
    }

    pub fn jwt_rejections(&self) -> usize {
        self.inner.lock().unwrap().jwt_rejections
    }

    #[track_caller]
    pub fn assert_clean(&self) {
        let v = self.inner.lock().unwrap().violations.clone();
        assert!(
            v.is_empty(),
            "the fake GitHub saw contract violations:\n{}",
            v.join("\n")
        );
    }
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
