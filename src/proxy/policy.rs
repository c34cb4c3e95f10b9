//! What the proxy lets through, decided from the request alone (pure functions, so every
//! rule has a unit test).
//!
//! Paths as the container sees them:
//!
//! | prefix | upstream | allowed |
//! |---|---|---|
//! | `/anthropic` | `ANTHROPIC_BASE_URL` | `POST /v1/messages` only (the client uses nothing else) |
//! | `/git` | the GitHub git URL | smart HTTP of the run's repository: fetch (`git-upload-pack`) and push (`git-receive-pack`) |
//! | `/github` | the GitHub REST URL | `GET /repos/{o}/{r}`; `POST /repos/{o}/{r}/pulls` with `head` the push target; `GET /repos/{o}/{r}/pulls?head={o}:{target}…` |
//!
//! A push may only create the run's push target, or fast-forward it when the host said
//! it may be updated (an existing branch the user named), one command per push, never
//! the default branch, never a delete.

use super::pack::{self, Command};

/// Which upstream a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    Llm,
    Git,
    GitHubApi,
}

/// A request that may go on, with the path to use upstream (the prefix removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    pub upstream: Upstream,
    pub path: String,
    /// A `git-receive-pack` POST: its body must pass [`check_push`] too.
    pub receive_pack: bool,
    /// A pull request creation: its JSON body's `head` must be the push target.
    pub create_pull: bool,
}

/// The branch a run may push, decided on the host before launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushTarget {
    /// The branch name, without `refs/heads/`.
    pub branch: String,
    /// Whether the branch exists already and may be fast-forwarded (`--push-to`);
    /// otherwise it may only be created.
    pub may_update: bool,
    /// The repository's default branch, never pushed whatever the target says.
    pub default_branch: Option<String>,
}

/// What the proxy knows of the run's GitHub side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitHubScope {
    /// `owner/repo`.
    pub repo: String,
    pub target: Option<PushTarget>,
}

/// Decide where a request goes, or why it may not.
pub fn route(
    method: &str,
    path: &str,
    query: Option<&str>,
    llm: bool,
    github: Option<&GitHubScope>,
) -> Result<Allowed, String> {
    if path.contains("/../")
        || path.ends_with("/..")
        || path.contains("//")
        || path.contains('\\')
        || path.contains('%')
    {
        return Err("the path is not in canonical form".into());
    }
    let allow = |upstream, path: &str| Allowed {
        upstream,
        path: path.to_string(),
        receive_pack: false,
        create_pull: false,
    };
    if let Some(rest) = strip(path, "/anthropic") {
        if !llm {
            return Err("this run has no LLM access (a --stubs run gets no API key)".into());
        }
        return if method == "POST" && rest == "/v1/messages" {
            if query.is_some() {
                return Err("an LLM request may not carry a query string".into());
            }
            Ok(allow(Upstream::Llm, rest))
        } else {
            Err("only POST /v1/messages is allowed on the LLM API".into())
        };
    }
    if let Some(rest) = strip(path, "/git") {
        let gh = github.ok_or("this run has no GitHub access")?;
        let repo_path = format!("/{}.git", gh.repo);
        let Some(op) = strip(rest, &repo_path) else {
            return Err(format!(
                "git access is limited to the run's repository `{}`",
                gh.repo
            ));
        };
        return match (method, op, query) {
            ("GET", "/info/refs", Some("service=git-upload-pack")) => {
                Ok(allow(Upstream::Git, rest))
            }
            ("POST", "/git-upload-pack", None) => Ok(allow(Upstream::Git, rest)),
            ("GET", "/info/refs", Some("service=git-receive-pack"))
            | ("POST", "/git-receive-pack", None)
                if gh.target.is_none() =>
            {
                Err("this run may not push".into())
            }
            ("GET", "/info/refs", Some("service=git-receive-pack")) => {
                Ok(allow(Upstream::Git, rest))
            }
            ("POST", "/git-receive-pack", None) => Ok(Allowed {
                receive_pack: true,
                ..allow(Upstream::Git, rest)
            }),
            _ => Err("only git fetch and push (smart HTTP) are allowed on the git host".into()),
        };
    }
    if let Some(rest) = strip(path, "/github") {
        let gh = github.ok_or("this run has no GitHub access")?;
        let repo = format!("/repos/{}", gh.repo);
        let pulls = format!("{repo}/pulls");
        return match method {
            "GET" if rest == repo && query.is_none() => Ok(allow(Upstream::GitHubApi, rest)),
            "POST" if rest == pulls && query.is_none() && gh.target.is_some() => Ok(Allowed {
                create_pull: true,
                ..allow(Upstream::GitHubApi, rest)
            }),
            "GET" if rest == pulls && lists_own_pulls(query, gh) => {
                Ok(allow(Upstream::GitHubApi, rest))
            }
            _ => Err(format!(
                "the GitHub API is limited to reading `{}` and opening a pull request from the run's branch",
                gh.repo
            )),
        };
    }
    Err("not a path the proxy serves (/anthropic, /git, /github)".into())
}

/// `rest` of `path` after `prefix`, when `prefix` is a whole leading path segment.
fn strip<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// `head={owner}:{target}&state=open`: the existing pull request of the run's branch.
fn lists_own_pulls(query: Option<&str>, gh: &GitHubScope) -> bool {
    let (Some(q), Some(t)) = (query, &gh.target) else {
        return false;
    };
    let owner = gh.repo.split('/').next().unwrap_or_default();
    let want_head = format!("{owner}:{}", t.branch);
    let mut head_ok = false;
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_encoding::percent_decode_str(v).decode_utf8_lossy();
        match k {
            "head" => head_ok = v == want_head,
            "state" | "per_page" | "page" => {}
            _ => return false,
        }
    }
    head_ok
}

/// An LLM request: the messages API with the client's own tools only. Anthropic's
/// server-side tools (web search, web fetch, code execution, MCP servers) would make
/// the API fetch any URL on the container's behalf, a way out of a container with no
/// network: a tool with a `type` other than `custom`, `mcp_servers`, `container` and
/// any `anthropic-beta` header (which turns such features on) are refused.
///
/// Content the LLM service would fetch itself (an image or a document whose `source`
/// is a URL or an uploaded file) is refused too: it would let the container read the
/// internet, and send to it, through the service. What goes upstream is the checked
/// request, serialized again (returned here), never the bytes as sent: a body with a
/// key twice could otherwise be read one way here and another way upstream.
pub fn check_message(body: &[u8], beta_header: bool) -> Result<Vec<u8>, String> {
    if beta_header {
        return Err(
            "the `anthropic-beta` header is not allowed (it turns on server-side features)".into(),
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "the LLM request body is not JSON")?;
    let Some(fields) = v.as_object() else {
        return Err("the LLM request body is not a JSON object".into());
    };
    for key in ["mcp_servers", "container"] {
        if fields.contains_key(key) {
            return Err(format!("an LLM request may not set `{key}`"));
        }
    }
    if let Some(tools) = fields.get("tools").and_then(|t| t.as_array()) {
        for t in tools {
            match t.get("type").and_then(|t| t.as_str()) {
                None | Some("custom") => {}
                Some(other) => {
                    return Err(format!(
                        "an LLM request may only declare its own tools, not the server tool `{}`",
                        other.escape_debug()
                    ))
                }
            }
        }
    }
    if let Some(kind) = fetched_source(&v, 0) {
        return Err(format!(
            "an LLM request may not hold content the service fetches itself (a `{}` source)",
            kind.escape_debug()
        ));
    }
    serde_json::to_vec(&v).map_err(|_| "the LLM request body cannot be written again".into())
}

/// The type of the first content `source` in `v` that the LLM service would fetch (a
/// URL, an uploaded file: anything but inline `base64`, `text` or `content`).
fn fetched_source(v: &serde_json::Value, depth: usize) -> Option<String> {
    // serde_json refuses nesting deeper than 128 when parsing; this only guards the walk.
    if depth > 256 {
        return Some("deeply nested".into());
    }
    match v {
        serde_json::Value::Object(m) => {
            // A content block the service reads a `source` of: an image or a document
            // (a tool's schema or input may have a field named `source` of its own).
            let block = matches!(
                m.get("type").and_then(|t| t.as_str()),
                Some("image" | "document")
            );
            if let (true, Some(src)) = (block, m.get("source")) {
                match src.get("type").and_then(|t| t.as_str()) {
                    Some("base64" | "text" | "content") => {}
                    other => return Some(other.unwrap_or("untyped").to_string()),
                }
            }
            m.values().find_map(|x| fetched_source(x, depth + 1))
        }
        serde_json::Value::Array(a) => a.iter().find_map(|x| fetched_source(x, depth + 1)),
        _ => None,
    }
}

/// A pull request body's `head` must be the push target (`branch` or `owner:branch`).
pub fn check_pull(body: &[u8], gh: &GitHubScope) -> Result<(), String> {
    let Some(t) = &gh.target else {
        return Err("this run may not open a pull request".into());
    };
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "the pull request body is not JSON")?;
    // Only the fields a new pull request needs: `issue` would turn an existing issue
    // into one, `head_repo` would take the head from another repository.
    const FIELDS: [&str; 6] = [
        "title",
        "head",
        "base",
        "body",
        "draft",
        "maintainer_can_modify",
    ];
    let Some(fields) = v.as_object() else {
        return Err("the pull request body is not a JSON object".into());
    };
    if let Some(k) = fields.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "a pull request may not set `{}` (allowed: {})",
            k.escape_debug(),
            FIELDS.join(", ")
        ));
    }
    let owner = gh.repo.split('/').next().unwrap_or_default();
    match v["head"].as_str() {
        Some(h) if h == t.branch || h == format!("{owner}:{}", t.branch) => Ok(()),
        Some(h) => Err(format!(
            "a pull request may only come from the run's branch `{}`, not `{}`",
            t.branch,
            h.escape_debug()
        )),
        None => Err("the pull request names no `head`".into()),
    }
}

/// Judge a receive-pack request body against the push target.
pub fn check_push(body: &[u8], target: &PushTarget) -> Result<(), String> {
    // git probes with a lone flush packet before a large push; it changes nothing.
    if body == b"0000" {
        return Ok(());
    }
    let req = pack::parse_push(body)?;
    if req.capabilities.iter().any(|c| c == "push-options") {
        return Err("push options are not allowed".into());
    }
    let want = format!("refs/heads/{}", target.branch);
    let [cmd] = req.commands.as_slice() else {
        let names: Vec<&str> = req.commands.iter().map(|c| c.refname.as_str()).collect();
        return Err(format!(
            "a push may update one ref, the run's `{want}`; this one names {}",
            names.join(", ")
        ));
    };
    let Command { old, new, refname } = cmd;
    if target
        .default_branch
        .as_ref()
        .is_some_and(|d| refname == &format!("refs/heads/{d}"))
    {
        return Err(format!(
            "`{refname}` is the default branch, which a run never pushes"
        ));
    }
    if refname != &want {
        return Err(format!(
            "a push to `{refname}`: this run may push only `{want}`"
        ));
    }
    if cmd.is_delete() {
        return Err(format!("deleting `{refname}` is not allowed"));
    }
    if cmd.is_create() {
        return Ok(());
    }
    if !target.may_update {
        return Err(format!(
            "`{refname}` may only be created by this run, not updated (from {})",
            pack::short(old)
        ));
    }
    pack::proves_fast_forward(&body[req.pack_at..], old, new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::pack::pkt_line;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";
    const Z: &str = "0000000000000000000000000000000000000000";

    fn scope(may_update: bool) -> GitHubScope {
        GitHubScope {
            repo: "acme/app".into(),
            target: Some(PushTarget {
                branch: "minion/r1".into(),
                may_update,
                default_branch: Some("main".into()),
            }),
        }
    }

    fn push(cmds: &[String], caps: &str) -> Vec<u8> {
        let mut b = Vec::new();
        for (i, c) in cmds.iter().enumerate() {
            let mut p = c.clone().into_bytes();
            if i == 0 {
                p.push(0);
                p.extend_from_slice(caps.as_bytes());
            }
            b.extend(pkt_line(&p));
        }
        b.extend_from_slice(b"0000");
        b
    }

    #[test]
    fn the_llm_api_allows_only_post_messages() {
        let ok = route("POST", "/anthropic/v1/messages", None, true, None).unwrap();
        assert_eq!(ok.upstream, Upstream::Llm);
        assert_eq!(ok.path, "/v1/messages");
        assert!(route(
            "POST",
            "/anthropic/v1/messages",
            Some("beta=true"),
            true,
            None
        )
        .unwrap_err()
        .contains("query string"));
        for (m, p) in [
            ("GET", "/anthropic/v1/messages"),
            ("GET", "/anthropic/v1/models"),
            ("POST", "/anthropic/v1/complete"),
            ("POST", "/anthropic/v1/messages/batches"),
            ("POST", "/anthropic/v1/files"),
            ("POST", "/anthropicx/v1/messages"),
            ("POST", "/anthropic/v1/../v1/messages"),
            ("POST", "/anthropic//v1/messages"),
            ("POST", "/anthropic/v1/%6dessages"),
        ] {
            assert!(route(m, p, None, true, None).is_err(), "{m} {p}");
        }
        let err = route("POST", "/anthropic/v1/messages", None, false, None).unwrap_err();
        assert!(err.contains("--stubs"), "{err}");
        assert!(route("GET", "/latest/meta-data", None, true, None).is_err());
    }

    #[test]
    fn git_is_limited_to_the_runs_repository_and_pushes_need_a_target() {
        let gh = scope(false);
        for (m, p, q, receive) in [
            (
                "GET",
                "/git/acme/app.git/info/refs",
                Some("service=git-upload-pack"),
                false,
            ),
            ("POST", "/git/acme/app.git/git-upload-pack", None, false),
            (
                "GET",
                "/git/acme/app.git/info/refs",
                Some("service=git-receive-pack"),
                false,
            ),
            ("POST", "/git/acme/app.git/git-receive-pack", None, true),
        ] {
            let a = route(m, p, q, true, Some(&gh)).unwrap();
            assert_eq!(a.upstream, Upstream::Git);
            assert_eq!(a.receive_pack, receive);
            assert!(a.path.starts_with("/acme/app.git/"));
        }
        for (m, p, q) in [
            (
                "GET",
                "/git/acme/other.git/info/refs",
                Some("service=git-upload-pack"),
            ),
            (
                "GET",
                "/git/acme/app.git.evil/info/refs",
                Some("service=git-upload-pack"),
            ),
            ("GET", "/git/acme/app.git/objects/info/packs", None),
            (
                "GET",
                "/git/acme/app.git/info/refs",
                Some("service=git-upload-archive"),
            ),
        ] {
            assert!(route(m, p, q, true, Some(&gh)).is_err(), "{m} {p}");
        }
        let read_only = GitHubScope {
            target: None,
            ..gh.clone()
        };
        let err = route(
            "POST",
            "/git/acme/app.git/git-receive-pack",
            None,
            true,
            Some(&read_only),
        )
        .unwrap_err();
        assert_eq!(err, "this run may not push");
        assert!(route(
            "GET",
            "/git/acme/app.git/info/refs",
            Some("service=git-upload-pack"),
            true,
            None
        )
        .is_err());
    }

    #[test]
    fn the_github_api_allows_reading_the_repo_and_a_pull_request_from_the_target() {
        let gh = scope(false);
        assert!(route("GET", "/github/repos/acme/app", None, true, Some(&gh)).is_ok());
        let pr = route(
            "POST",
            "/github/repos/acme/app/pulls",
            None,
            true,
            Some(&gh),
        )
        .unwrap();
        assert!(pr.create_pull);
        assert!(route(
            "GET",
            "/github/repos/acme/app/pulls",
            Some("head=acme:minion/r1&state=open"),
            true,
            Some(&gh)
        )
        .is_ok());
        for (m, p, q) in [
            (
                "GET",
                "/github/repos/acme/app/pulls",
                Some("head=acme:main&state=open"),
            ),
            ("GET", "/github/repos/acme/app/pulls", None),
            ("DELETE", "/github/repos/acme/app", None),
            ("PATCH", "/github/repos/acme/app", None),
            ("GET", "/github/repos/acme/other", None),
            ("DELETE", "/github/repos/acme/app/git/refs/heads/main", None),
            ("POST", "/github/repos/acme/app/git/refs", None),
            ("PUT", "/github/repos/acme/app/contents/x", None),
            ("POST", "/github/app/installations/1/access_tokens", None),
            ("GET", "/github/user", None),
        ] {
            assert!(route(m, p, q, true, Some(&gh)).is_err(), "{m} {p} {q:?}");
        }
        check_pull(br#"{"head":"minion/r1","base":"main"}"#, &gh).unwrap();
        check_pull(br#"{"head":"acme:minion/r1","base":"main"}"#, &gh).unwrap();
        let err = check_pull(br#"{"head":"main","base":"release"}"#, &gh).unwrap_err();
        assert!(err.contains("only come from the run's branch"), "{err}");
        assert!(check_pull(b"not json", &gh).is_err());
        // The body lackey's own client sends passes; `issue` (an existing issue turned
        // into a pull request) and `head_repo` do not.
        check_pull(
            br#"{"title":"t","head":"minion/r1","base":"main","body":"b","draft":false}"#,
            &gh,
        )
        .unwrap();
        for extra in [r#""issue":7"#, r#""head_repo":"evil/fork""#] {
            let body = format!(r#"{{"head":"minion/r1","base":"main",{extra}}}"#);
            let err = check_pull(body.as_bytes(), &gh).unwrap_err();
            assert!(err.contains("may not set"), "{err}");
        }
    }

    #[test]
    fn an_llm_request_may_use_only_its_own_tools() {
        let ok = br#"{"model":"m","max_tokens":10,"messages":[],"tools":[{"name":"bash","input_schema":{}},{"type":"custom","name":"x","input_schema":{}}]}"#;
        assert_eq!(
            check_message(ok, false).unwrap(),
            ok.to_vec(),
            "what goes on is what came"
        );
        // Inline content passes; content the service would fetch does not, wherever it is.
        let inline = br#"{"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AA=="}},{"type":"document","source":{"type":"text","media_type":"text/plain","data":"x"}},{"type":"search_result","source":"https://example.com","title":"t","content":[]}]}]}"#;
        check_message(inline, false).unwrap();
        // A field named `source` of a tool's own is no content block.
        let tool = br#"{"messages":[],"tools":[{"name":"t","input_schema":{"type":"object","properties":{"source":{"type":"string"}}}}]}"#;
        check_message(tool, false).unwrap();
        // A key given twice is sent once, as checked.
        let twice =
            br#"{"messages":[],"tools":[{"type":"web_search_20250305","name":"w"}],"tools":[]}"#;
        assert!(
            check_message(twice, false).is_ok_and(|b| !b.windows(10).any(|w| w == b"web_search"))
        );
        assert!(check_message(ok, true)
            .unwrap_err()
            .contains("anthropic-beta"));
        for bad in [
            r#"{"messages":[],"tools":[{"type":"web_fetch_20250910","name":"web_fetch"}]}"#,
            r#"{"messages":[],"tools":[{"type":"web_search_20250305","name":"web_search"}]}"#,
            r#"{"messages":[],"mcp_servers":[{"type":"url","url":"https://evil.example/x"}]}"#,
            r#"{"messages":[],"container":"c"}"#,
            r#"{"messages":[{"role":"user","content":[{"type":"image","source":{"type":"url","url":"https://evil.example/?k=secret"}}]}]}"#,
            r#"{"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"document","source":{"type":"url","url":"https://evil.example/"}}]}]}]}"#,
            r#"{"messages":[{"role":"user","content":[{"type":"document","source":{"type":"file","file_id":"f"}}]}]}"#,
            r#"{"messages":[{"role":"user","content":[{"type":"image","source":{"url":"https://evil.example/"}}]}]}"#,
            r#"{"messages":[{"role":"user","content":[{"type":"document","source":"https://evil.example/"}]}]}"#,
            "not json",
        ] {
            assert!(check_message(bad.as_bytes(), false).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_push_may_only_create_the_target() {
        let t = scope(false).target.unwrap();
        let caps = "report-status side-band-64k";
        check_push(b"0000", &t).unwrap();
        check_push(&push(&[format!("{Z} {A} refs/heads/minion/r1")], caps), &t).unwrap();
        for (cmds, want) in [
            (
                vec![format!("{Z} {A} refs/heads/other")],
                "this run may push only `refs/heads/minion/r1`",
            ),
            (
                vec![format!("{Z} {A} refs/tags/v1")],
                "this run may push only",
            ),
            (
                vec![format!("{A} {Z} refs/heads/minion/r1")],
                "deleting `refs/heads/minion/r1`",
            ),
            (
                vec![format!("{A} {B} refs/heads/minion/r1")],
                "may only be created by this run",
            ),
            (
                vec![format!("{A} {B} refs/heads/main")],
                "the default branch",
            ),
            (
                vec![
                    format!("{Z} {A} refs/heads/minion/r1"),
                    format!("{A} {Z} refs/heads/main"),
                ],
                "a push may update one ref",
            ),
        ] {
            let err = check_push(&push(&cmds, caps), &t).unwrap_err();
            assert!(err.contains(want), "{cmds:?}: {err}");
        }
        let err = check_push(
            &push(&[format!("{Z} {A} refs/heads/minion/r1")], "push-options"),
            &t,
        )
        .unwrap_err();
        assert!(err.contains("push options"), "{err}");
    }

    #[test]
    fn an_update_of_an_existing_target_needs_a_proof() {
        let t = scope(true).target.unwrap();
        // The pack is missing: nothing proves the update, so it is refused.
        let err =
            check_push(&push(&[format!("{A} {B} refs/heads/minion/r1")], ""), &t).unwrap_err();
        assert!(err.contains("carries no pack"), "{err}");
        // Even an updatable target is never deleted.
        let err =
            check_push(&push(&[format!("{A} {Z} refs/heads/minion/r1")], ""), &t).unwrap_err();
        assert!(err.contains("deleting"), "{err}");
    }
}
