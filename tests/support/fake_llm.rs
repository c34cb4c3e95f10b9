//! A fake Anthropic Messages API that replays a scripted conversation and checks what
//! it is sent against the real contract (docs/anthropic.md):
//!
//! * headers: `x-api-key` (the expected key), `anthropic-version: 2023-06-01`, JSON body;
//! * body: model, max_tokens, messages starting with `user` and alternating roles, tool
//!   names matching `^[a-zA-Z0-9_-]{1,64}$` with an object `input_schema`;
//! * one `tool_result` per `tool_use` of the previous assistant turn, first in the next
//!   user message, ids matching;
//! * the assistant turns sent back are byte-for-byte what the fake replied;
//! * at most 4 `cache_control` breakpoints, one on the system prompt and one on the
//!   newest message's last block;
//! * earlier turns unchanged: each request's messages start with the previous request's
//!   (ignoring where the moving breakpoint sat).
//!
//! Violations are collected, not panicked on in the server thread; a test asserts
//! `violations()` is empty. Faults: any status with any headers (429 + retry-after, 529,
//! 500, 401), a slow reply, a reply that never comes.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// One scripted answer.
#[derive(Clone, Debug)]
pub enum Answer {
    /// A 200 message with these content blocks and stop reason.
    Message {
        content: Vec<Value>,
        stop_reason: String,
    },
    /// An error status with headers and the API's error body.
    Error {
        status: u16,
        kind: String,
        message: String,
        headers: Vec<(String, String)>,
    },
    /// Wait, then give the inner answer.
    Slow(Duration, Box<Answer>),
    /// Never answer.
    Hang,
    /// The inner answer, reporting this `usage` object instead of an estimate.
    Usage(Value, Box<Answer>),
}

/// `answer`, billed as `input` uncached, `output`, `cache_write` and `cache_read` tokens.
pub fn with_usage(
    answer: Answer,
    input: u64,
    output: u64,
    cache_write: u64,
    cache_read: u64,
) -> Answer {
    Answer::Usage(
        json!({"input_tokens": input, "output_tokens": output,
               "cache_creation_input_tokens": cache_write, "cache_read_input_tokens": cache_read}),
        Box::new(answer),
    )
}

pub fn tool_use(name: &str, input: Value) -> Answer {
    tool_uses(&[(name, input)])
}

/// The scoper's answer in the tests on `repo::hello_project`: only `hello.sh` may change.
pub fn scope_hello_sh() -> Answer {
    tool_use(
        "submit_scope",
        json!({"summary": "greeting", "allowed_dirs": [], "allowed_files": ["hello.sh"], "test_files": [], "rationale": "r"}),
    )
}

/// The executor's edit in those tests (after a `view` of the file): `hello.sh` prints
/// `hello, world`.
pub fn edit_hello_sh() -> Answer {
    tool_use(
        "str_replace",
        json!({"path": "hello.sh", "old_str": "echo \"hello\"", "new_str": "echo \"hello, world\""}),
    )
}

pub fn tool_uses(calls: &[(&str, Value)]) -> Answer {
    let content = calls
        .iter()
        .map(|(name, input)| {
            json!({"type": "tool_use", "id": format!("toolu_{}", rand_id()), "name": name, "input": input})
        })
        .collect();
    Answer::Message {
        content,
        stop_reason: "tool_use".into(),
    }
}

pub fn say_and_use(text: &str, name: &str, input: Value) -> Answer {
    Answer::Message {
        content: vec![
            json!({"type": "text", "text": text}),
            json!({"type": "tool_use", "id": format!("toolu_{}", rand_id()), "name": name, "input": input}),
        ],
        stop_reason: "tool_use".into(),
    }
}

pub fn text(t: &str) -> Answer {
    Answer::Message {
        content: vec![json!({"type": "text", "text": t})],
        stop_reason: "end_turn".into(),
    }
}

pub fn error(status: u16, kind: &str, message: &str) -> Answer {
    Answer::Error {
        status,
        kind: kind.into(),
        message: message.into(),
        headers: vec![],
    }
}

pub fn rate_limited(retry_after_secs: u32) -> Answer {
    Answer::Error {
        status: 429,
        kind: "rate_limit_error".into(),
        message: "Number of request tokens has exceeded your per-minute rate limit".into(),
        headers: vec![("retry-after".into(), retry_after_secs.to_string())],
    }
}

fn rand_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    format!("{:016x}", N.fetch_add(1, Ordering::Relaxed) * 0x9e37_79b9)
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct Received {
    pub at: std::time::Instant,
    pub body: Value,
    pub raw: Vec<u8>,
    pub api_key: Option<String>,
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Answer>,
    received: Vec<Received>,
    violations: Vec<String>,
    expected_key: String,
    /// Per conversation (system + first message): the last request's messages, and the
    /// content of every assistant turn the fake sent.
    conversations: HashMap<String, Vec<Value>>,
    sent: HashMap<String, Value>,
}

pub struct FakeLlm {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn strip_cache_control(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| k.as_str() != "cache_control")
                .map(|(k, v)| (k.clone(), strip_cache_control(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_cache_control).collect()),
        other => other.clone(),
    }
}

fn count_breakpoints(v: &Value) -> usize {
    match v {
        Value::Object(m) => {
            m.contains_key("cache_control") as usize
                + m.values().map(count_breakpoints).sum::<usize>()
        }
        Value::Array(a) => a.iter().map(count_breakpoints).sum(),
        _ => 0,
    }
}

fn check(inner: &mut Inner, headers: &HeaderMap, body: &Value) {
    let mut v = Vec::new();
    let key = headers.get("x-api-key").and_then(|h| h.to_str().ok());
    if key != Some(inner.expected_key.as_str()) {
        v.push("x-api-key header is missing or not the expected key".to_string());
    }
    if headers
        .get("anthropic-version")
        .and_then(|h| h.to_str().ok())
        != Some("2023-06-01")
    {
        v.push("anthropic-version header is not 2023-06-01".into());
    }
    if !headers
        .get("content-type")
        .and_then(|h| h.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"))
    {
        v.push("content-type is not application/json".into());
    }
    if !body["model"].is_string() {
        v.push("no model".into());
    }
    if body["max_tokens"].as_u64().is_none_or(|n| n == 0) {
        v.push("max_tokens missing or zero".into());
    }
    let name_re = regex::Regex::new("^[a-zA-Z0-9_-]{1,64}$").unwrap();
    for t in body["tools"].as_array().into_iter().flatten() {
        let name = t["name"].as_str().unwrap_or("");
        if !name_re.is_match(name) {
            v.push(format!("tool name `{name}` breaks the API's pattern"));
        }
        if t["input_schema"]["type"] != "object" || !t["description"].is_string() {
            v.push(format!(
                "tool `{name}` lacks a description or an object input_schema"
            ));
        }
    }
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    if messages.is_empty() || messages[0]["role"] != "user" {
        v.push("messages must start with a user message".into());
    }
    for w in messages.windows(2) {
        if w[0]["role"] == w[1]["role"] {
            v.push("roles do not alternate".into());
        }
    }
    for (i, m) in messages.iter().enumerate() {
        if m["role"] != "assistant" {
            continue;
        }
        let ids: Vec<&str> = m["content"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["type"] == "tool_use")
            .filter_map(|b| b["id"].as_str())
            .collect();
        if let Some(sent) = m["content"]
            .as_array()
            .and_then(|c| c.iter().find_map(|b| b["id"].as_str()))
        {
            if let Some(original) = inner.sent.get(sent) {
                if &strip_cache_control(&m["content"]) != original {
                    v.push(format!(
                        "assistant turn {i} was changed before being sent back"
                    ));
                }
            }
        }
        if ids.is_empty() {
            continue;
        }
        let Some(next) = messages.get(i + 1) else {
            v.push("the last message is an assistant tool_use with no results".into());
            continue;
        };
        let blocks = next["content"].as_array().cloned().unwrap_or_default();
        let results: Vec<&str> = blocks
            .iter()
            .take(ids.len())
            .filter(|b| b["type"] == "tool_result")
            .filter_map(|b| b["tool_use_id"].as_str())
            .collect();
        if results != ids {
            v.push(format!(
                "turn {}: expected one tool_result per tool_use {:?} first in the next message, got {:?}",
                i + 1,
                ids,
                results
            ));
        }
    }
    let breakpoints = count_breakpoints(body);
    if breakpoints > 4 {
        v.push(format!(
            "{breakpoints} cache_control breakpoints (at most 4)"
        ));
    }
    if count_breakpoints(&body["system"]) != 1 {
        v.push("the system prompt should carry one cache_control breakpoint".into());
    }
    let last_block = messages
        .last()
        .and_then(|m| m["content"].as_array())
        .and_then(|c| c.last());
    if last_block.is_none_or(|b| b.get("cache_control").is_none()) {
        v.push("the newest message's last block carries no cache_control breakpoint".into());
    }
    // Earlier turns unchanged.
    let conv = format!(
        "{}\u{0}{}",
        body["system"],
        messages
            .first()
            .map(|m| strip_cache_control(m).to_string())
            .unwrap_or_default()
    );
    let now: Vec<Value> = messages.iter().map(strip_cache_control).collect();
    if let Some(prev) = inner.conversations.get(&conv) {
        if now.len() < prev.len() || now[..prev.len()] != prev[..] {
            v.push("earlier turns changed between requests (the cached prefix is lost)".into());
        }
    }
    inner.conversations.insert(conv, now);
    inner.violations.extend(v);
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let body: Value = match serde_json::from_slice(&raw) {
        Ok(b) => b,
        Err(e) => {
            inner
                .lock()
                .unwrap()
                .violations
                .push(format!("body is not JSON: {e}"));
            return (StatusCode::BAD_REQUEST, "bad json").into_response();
        }
    };
    let answer = {
        let mut g = inner.lock().unwrap();
        check(&mut g, &headers, &body);
        g.received.push(Received {
            at: std::time::Instant::now(),
            body: body.clone(),
            raw: raw.to_vec(),
            api_key: headers
                .get("x-api-key")
                .and_then(|h| h.to_str().ok())
                .map(str::to_string),
        });
        match g.script.pop_front() {
            Some(a) => a,
            None => {
                g.violations
                    .push("a request arrived after the script ended".into());
                error(
                    400,
                    "invalid_request_error",
                    "fake: the script has no more answers",
                )
            }
        }
    };
    respond(inner, answer, &body, None).await
}

fn respond(
    inner: Arc<Mutex<Inner>>,
    answer: Answer,
    body: &Value,
    usage: Option<Value>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>> {
    let body = body.clone();
    Box::pin(async move {
        match answer {
            Answer::Hang => {
                std::future::pending::<()>().await;
                unreachable!()
            }
            Answer::Slow(d, inner_answer) => {
                tokio::time::sleep(d).await;
                respond(inner, *inner_answer, &body, usage).await
            }
            Answer::Usage(u, inner_answer) => respond(inner, *inner_answer, &body, Some(u)).await,
            Answer::Error {
                status,
                kind,
                message,
                headers,
            } => {
                let mut resp = (
                    StatusCode::from_u16(status).unwrap(),
                    axum::Json(json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_fake"})),
                )
                    .into_response();
                for (k, v) in headers {
                    resp.headers_mut().insert(
                        axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                        v.parse().unwrap(),
                    );
                }
                resp.headers_mut()
                    .insert("request-id", "req_fake".parse().unwrap());
                resp
            }
            Answer::Message {
                content,
                stop_reason,
            } => {
                for b in &content {
                    if let Some(id) = b["id"].as_str() {
                        inner
                            .lock()
                            .unwrap()
                            .sent
                            .insert(id.to_string(), Value::Array(content.clone()));
                    }
                }
                let size = serde_json::to_vec(&body).map(|b| b.len()).unwrap_or(0) as u64;
                let msg = json!({
                    "id": format!("msg_{}", rand_id()),
                    "type": "message",
                    "role": "assistant",
                    "model": body["model"],
                    "content": content,
                    "stop_reason": stop_reason,
                    "stop_sequence": null,
                    "usage": usage.unwrap_or_else(|| json!({"input_tokens": size / 4, "output_tokens": 50, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}))
                });
                let mut resp = axum::Json(msg).into_response();
                resp.headers_mut()
                    .insert("request-id", "req_fake".parse().unwrap());
                resp
            }
        }
    })
}

impl FakeLlm {
    /// Start the fake with the key it expects and its script.
    pub fn start(expected_key: &str, script: Vec<Answer>) -> FakeLlm {
        Self::start_on("127.0.0.1:0", expected_key, script)
    }

    /// Start on a given address (`0.0.0.0:0` to be reachable from containers).
    pub fn start_on(bind: &str, expected_key: &str, script: Vec<Answer>) -> FakeLlm {
        let inner = Arc::new(Mutex::new(Inner {
            script: script.into(),
            expected_key: expected_key.to_string(),
            ..Default::default()
        }));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let state = inner.clone();
        let bind = bind.to_string();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(&bind).await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let app = axum::Router::new()
                    .route("/v1/messages", axum::routing::post(handle))
                    .with_state(state);
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = rx.await;
                    })
                    .await;
            });
        });
        let addr = addr_rx.recv().unwrap();
        FakeLlm {
            addr,
            inner,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.addr.port())
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.inner.lock().unwrap().violations.clone()
    }

    pub fn remaining(&self) -> usize {
        self.inner.lock().unwrap().script.len()
    }

    /// The tool_result blocks of the newest user message of request `i`.
    pub fn tool_results(&self, i: usize) -> Vec<Value> {
        let r = &self.received()[i];
        r.body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .and_then(|m| m["content"].as_array())
            .map(|c| {
                c.iter()
                    .filter(|b| b["type"] == "tool_result")
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    #[track_caller]
    pub fn assert_clean(&self) {
        let v = self.violations();
        assert!(
            v.is_empty(),
            "the fake LLM saw contract violations:\n{}",
            v.join("\n")
        );
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // A hanging handler keeps the graceful shutdown waiting; do not join then.
        if let Some(t) = self.thread.take() {
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}
