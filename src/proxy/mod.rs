//! The credential proxy: the only way a run's container reaches the LLM API, git and
//! the GitHub API, and the only holder of the credentials they need.
//!
//! What must stay true:
//! * The container holds no credential. Whatever credential headers a request carries
//!   (`x-api-key`, `authorization`, cookies) are dropped; the proxy adds its own on the
//!   way out: `x-api-key` for the LLM API, the GitHub token for git smart HTTP (basic
//!   auth, as git sends it) and for the REST API (bearer).
//! * Every request is checked against [`policy`] before anything is sent upstream:
//!   only `POST /v1/messages` on the LLM API, only the run's repository on git and
//!   GitHub, a push may only create (or provably fast-forward) the run's push target,
//!   a pull request only from it. Anything else gets a 403 and one line in
//!   [`Proxy::refusals`], which the host appends to the run's `minion.log`.
//! * Local runs reach it on a Unix socket bind-mounted into a container that has no
//!   network at all (docs/sandbox-network.md); the proxy itself runs in the `lackey run`
//!   process, so it reaches a loopback `ANTHROPIC_BASE_URL` directly.

pub mod pack;
pub mod policy;
pub mod sidecar;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::TryStreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use tokio::task::{JoinHandle, JoinSet};

pub use policy::{GitHubScope, PushTarget};

/// The path of the socket inside a local run's container.
pub const CONTAINER_SOCKET: &str = "/run/lackey/proxy.sock";
const MIB: usize = 1024 * 1024;
/// The most of a push's body (its pack) the proxy holds: the pack is checked whole.
const MAX_PACK: usize = 256 * MIB;
/// The most of an LLM request the proxy holds (the Messages API takes 32 MB at most).
const MAX_LLM: usize = 32 * MIB;
/// The most of any other request body (GitHub API JSON, git's negotiation).
const MAX_OTHER: usize = 8 * MIB;
/// All the request bodies held at once by every proxy of this process, however many
/// connections its containers open: a local run's proxy lives in the user's CLI (a
/// local fleet's runs each have one), whose memory a hostile container must not
/// exhaust. A request is charged its declared length (its kind's cap when it declares
/// none), in MiB rounded up, from its run's share and from this.
const BODY_BUDGET: usize = 1024 * MIB;
/// The most of [`BODY_BUDGET`] one proxy (one run) may hold: a run that holds its share
/// with bodies it never finishes sending slows only itself.
const PROXY_SHARE: usize = 256 * MIB;
/// How long a request may wait for room in the budget, and take to send its body.
const BODY_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// [`BODY_BUDGET`] in MiB, shared by every proxy of the process.
static BUDGET: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(BODY_BUDGET / MIB);
/// Connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 64;
/// The most refusal lines kept for the log (a hostile process could send millions).
const MAX_REFUSALS: usize = 1000;

/// The LLM API and its key.
#[derive(Clone)]
pub struct LlmUpstream {
    /// Scheme and host, no `/v1` (`ANTHROPIC_BASE_URL`).
    pub base_url: String,
    pub api_key: String,
}

/// GitHub's two URLs, the token, and what the run may do with them.
#[derive(Clone)]
pub struct GitHubUpstream {
    /// REST base, e.g. `https://api.github.com` (Enterprise: `https://HOST/api/v3`).
    pub api_url: String,
    /// git base, e.g. `https://github.com`.
    pub git_url: String,
    pub token: String,
    pub scope: GitHubScope,
}

/// What one run's proxy serves. (Debug leaves the credentials out.)
#[derive(Clone, Default)]
pub struct ProxyConfig {
    pub llm: Option<LlmUpstream>,
    pub github: Option<GitHubUpstream>,
}

impl std::fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("llm", &self.llm.as_ref().map(|l| &l.base_url))
            .field(
                "github",
                &self
                    .github
                    .as_ref()
                    .map(|g| (&g.api_url, &g.git_url, &g.scope)),
            )
            .finish()
    }
}

struct State {
    cfg: ProxyConfig,
    /// The GitHub token in use: the config's, or a newer one (a sidecar re-mints its
    /// installation token before the old one expires).
    github_token: std::sync::RwLock<Option<String>>,
    client: reqwest::Client,
    refusals: Mutex<Vec<String>>,
    forwarded: AtomicU64,
    /// This proxy's share of the body budget, in MiB ([`PROXY_SHARE`]).
    share: tokio::sync::Semaphore,
}

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// A running proxy; stops (with every connection it serves) when dropped.
pub struct Proxy {
    state: Arc<State>,
    task: JoinHandle<()>,
    /// The Unix socket it listens on, removed on drop.
    pub socket: Option<PathBuf>,
    /// The TCP address it listens on (tests and benchmarks).
    pub addr: Option<SocketAddr>,
}

impl Proxy {
    fn state(cfg: ProxyConfig) -> anyhow::Result<Arc<State>> {
        let client = reqwest::Client::builder()
            // A redirect is the upstream's answer, passed back as it is: followed, it
            // could carry a credential header (reqwest drops only `authorization` when
            // the host changes, not `x-api-key`) to another host.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(std::time::Duration::from_secs(30))
            .pool_idle_timeout(std::time::Duration::from_secs(60))
            .build()?;
        Ok(Arc::new(State {
            github_token: std::sync::RwLock::new(cfg.github.as_ref().map(|g| g.token.clone())),
            cfg,
            client,
            refusals: Mutex::new(Vec::new()),
            forwarded: AtomicU64::new(0),
            share: tokio::sync::Semaphore::new(PROXY_SHARE / MIB),
        }))
    }

    /// Listen on a new Unix socket at `path` (its directory must exist; the caller
    /// decides who may connect through the directory's and the socket's permissions).
    pub fn serve_unix(path: &Path, cfg: ProxyConfig) -> anyhow::Result<Proxy> {
        let listener = tokio::net::UnixListener::bind(path).map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on the proxy socket `{}`: {e}",
                path.display()
            )
        })?;
        let state = Self::state(cfg)?;
        let s = state.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept(), if conns.len() < MAX_CONNECTIONS => match accepted {
                        Ok((stream, _)) => { conns.spawn(serve_conn(s.clone(), stream)); }
                        Err(e) => {
                            tracing::warn!("proxy: accept failed: {e}");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                    },
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Ok(Proxy {
            state,
            task,
            socket: Some(path.to_path_buf()),
            addr: None,
        })
    }

    /// Listen on a TCP address (for tests and benchmarks; runs use a Unix socket).
    pub async fn serve_tcp(addr: SocketAddr, cfg: ProxyConfig) -> anyhow::Result<Proxy> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Self::state(cfg)?;
        let s = state.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept(), if conns.len() < MAX_CONNECTIONS => if let Ok((stream, _)) = accepted {
                        let _ = stream.set_nodelay(true);
                        conns.spawn(serve_conn(s.clone(), stream));
                    },
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Ok(Proxy {
            state,
            task,
            socket: None,
            addr: Some(addr),
        })
    }

    /// The refused requests so far, one line each.
    pub fn refusals(&self) -> Vec<String> {
        self.state
            .refusals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many requests went upstream.
    pub fn forwarded(&self) -> u64 {
        self.state.forwarded.load(Ordering::Relaxed)
    }

    /// Use a new GitHub token from now on (a re-minted installation token).
    pub fn set_github_token(&self, token: String) {
        *self
            .state
            .github_token
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(token);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(p) = &self.socket {
            let _ = std::fs::remove_file(p);
        }
    }
}

async fn serve_conn<S>(state: Arc<State>, stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(stream);
    let svc = hyper::service::service_fn(move |req| handle(state.clone(), req));
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, svc)
        .await;
}

fn full(status: StatusCode, text: String) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(text))
            .map_err(|never: Infallible| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Printable, bounded text from a request (it is the attacker's).
fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(200).flat_map(char::escape_debug).collect();
    if s.chars().count() > 200 {
        out.push('…');
    }
    out
}

impl State {
    fn refuse(&self, method: &str, path: &str, reason: &str) -> Response<Body> {
        let line = format!("proxy refused {} {}: {reason}", shown(method), shown(path));
        tracing::warn!("{line}");
        let mut r = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        if r.len() < MAX_REFUSALS {
            r.push(line.clone());
        } else if r.len() == MAX_REFUSALS {
            r.push("proxy: further refusals not recorded".into());
        }
        full(StatusCode::FORBIDDEN, format!("lackey {line}\n"))
    }
}

/// The most of a request's body the proxy holds, by what the request is.
fn body_cap(allowed: &policy::Allowed) -> usize {
    if allowed.receive_pack {
        MAX_PACK
    } else if allowed.upstream == policy::Upstream::Llm {
        MAX_LLM
    } else {
        MAX_OTHER
    }
}

/// Headers that never go on: hop-by-hop ones, and every credential the container sent.
fn dropped(name: &str) -> bool {
    matches!(
        name,
        "host"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
            | "authorization"
            | "x-api-key"
            | "cookie"
    )
}

/// The path where the container reads back the refusals so far (the cloud minion
/// copies them into its `minion.log`; they are the container's own requests).
pub const REFUSALS_PATH: &str = "/_lackey/refusals";

/// What a request's body holds of the budget until the request is answered.
type Held<'s> = (
    tokio::sync::SemaphorePermit<'s>,
    tokio::sync::SemaphorePermit<'static>,
);

/// A request's whole body, within its kind's cap, charged to the budget (its run's
/// share first, so one run cannot hold what the others need) until the returned
/// permits are dropped; or why not.
async fn read_body<'s>(
    state: &'s State,
    parts: &hyper::http::request::Parts,
    body: Incoming,
    allowed: &policy::Allowed,
) -> Result<(Bytes, Held<'s>), String> {
    let cap = body_cap(allowed);
    let declared = parts
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cap as u64) {
        return Err(format!("the request body is larger than {} MiB", cap / MIB));
    }
    // Its declared length (its cap when it declares none) is charged while its body is
    // in memory, that is until it is answered.
    let limit = declared.map_or(cap, |n| n as usize);
    let mib = limit.div_ceil(MIB).max(1) as u32;
    let held = tokio::time::timeout(BODY_WAIT, async {
        let own = state.share.acquire_many(mib).await.ok()?;
        let all = BUDGET.acquire_many(mib).await.ok()?;
        Some((own, all))
    })
    .await;
    let Ok(Some(held)) = held else {
        return Err("the proxy holds as many request bodies as it may; try again later".into());
    };
    match tokio::time::timeout(BODY_WAIT, Limited::new(body, limit).collect()).await {
        Ok(Ok(b)) => Ok((b.to_bytes(), held)),
        Ok(Err(e)) => Err(format!("the request body could not be read ({e})")),
        Err(_) => Err(format!(
            "the request body did not arrive within {} s",
            BODY_WAIT.as_secs()
        )),
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    if method == "GET" && path == REFUSALS_PATH {
        let lines = state
            .refusals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n");
        return Ok(full(StatusCode::OK, lines));
    }
    let gh = state.cfg.github.as_ref();
    let allowed = match policy::route(
        &method,
        &path,
        query.as_deref(),
        state.cfg.llm.is_some(),
        gh.map(|g| &g.scope),
    ) {
        Ok(a) => a,
        Err(reason) => return Ok(state.refuse(&method, &path, &reason)),
    };
    let (parts, body) = req.into_parts();
    let (body, _held) = match read_body(&state, &parts, body, &allowed).await {
        Ok(read) => read,
        Err(reason) => return Ok(state.refuse(&method, &path, &reason)),
    };
    let body = if allowed.upstream == policy::Upstream::Llm {
        if parts.headers.contains_key(hyper::header::CONTENT_ENCODING) {
            return Ok(state.refuse(&method, &path, "an encoded LLM request cannot be checked"));
        }
        // What goes on is the request as checked, written again.
        match policy::check_message(&body, parts.headers.contains_key("anthropic-beta")) {
            Ok(checked) => Bytes::from(checked),
            Err(reason) => return Ok(state.refuse(&method, &path, &reason)),
        }
    } else {
        body
    };
    if allowed.receive_pack || allowed.create_pull {
        // Only checked bytes go upstream: nothing the check could not read.
        if parts.headers.contains_key(hyper::header::CONTENT_ENCODING) {
            return Ok(state.refuse(
                &method,
                &path,
                "an encoded push or pull request cannot be checked",
            ));
        }
        let Some(g) = gh else {
            return Ok(state.refuse(&method, &path, "this run has no GitHub access"));
        };
        let verdict = if allowed.receive_pack {
            match &g.scope.target {
                Some(t) => policy::check_push(&body, t),
                None => Err("this run may not push".into()),
            }
        } else {
            policy::check_pull(&body, &g.scope)
        };
        if let Err(reason) = verdict {
            return Ok(state.refuse(&method, &path, &reason));
        }
    }
    let token = state
        .github_token
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_default();
    let (base, credential) = match (allowed.upstream, &state.cfg.llm, gh) {
        (policy::Upstream::Llm, Some(l), _) => (&l.base_url, ("x-api-key", l.api_key.clone())),
        (policy::Upstream::Git, _, Some(g)) => {
            use base64::Engine;
            let basic =
                base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
            (&g.git_url, ("authorization", format!("Basic {basic}")))
        }
        (policy::Upstream::GitHubApi, _, Some(g)) => {
            (&g.api_url, ("authorization", format!("Bearer {token}")))
        }
        _ => return Ok(state.refuse(&method, &path, "no upstream for this request")),
    };
    let url = format!(
        "{}{}{}",
        base.trim_end_matches('/'),
        allowed.path,
        query.map(|q| format!("?{q}")).unwrap_or_default()
    );
    let mut rb = state.client.request(parts.method, &url);
    for (k, v) in &parts.headers {
        if !dropped(k.as_str()) {
            rb = rb.header(k, v);
        }
    }
    let Ok(value) = reqwest::header::HeaderValue::from_str(&credential.1) else {
        return Ok(state.refuse(&method, &path, "the credential is not a valid header value"));
    };
    let mut value = value;
    value.set_sensitive(true);
    rb = rb.header(credential.0, value).body(body);
    let resp = match rb.send().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("proxy: {method} {path}: upstream failed: {e}");
            // The error names the upstream URL only, never a credential.
            return Ok(full(
                StatusCode::BAD_GATEWAY,
                format!(
                    "lackey proxy: cannot reach the upstream: {}\n",
                    e.without_url()
                ),
            ));
        }
    };
    state.forwarded.fetch_add(1, Ordering::Relaxed);
    let status = resp.status();
    let headers = resp.headers().clone();
    let stream = resp
        .bytes_stream()
        .map_ok(Frame::data)
        .map_err(std::io::Error::other);
    let mut out = Response::new(BodyExt::boxed_unsync(StreamBody::new(stream)));
    *out.status_mut() = status;
    for (k, v) in &headers {
        if !dropped(k.as_str()) || *k == hyper::header::CONTENT_LENGTH {
            out.headers_mut().append(k, v.clone());
        }
    }
    Ok(out)
}
