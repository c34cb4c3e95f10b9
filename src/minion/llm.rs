//! The Anthropic Messages API client (docs/anthropic.md).
//!
//! * `POST {ANTHROPIC_BASE_URL}/v1/messages` with `x-api-key`, `anthropic-version`.
//! * Prompt caching: one breakpoint on the system prompt (which, by the API's prefix
//!   order tools → system → messages, caches the tools too) and one on the last block
//!   of the newest message. Bodies are built with a fixed key order and earlier turns are
//!   kept byte-identical (assistant replies are stored exactly as received), so each
//!   request repeats the previous one's bytes as its prefix.
//! * Retries 408, 409, 429, 5xx (529 included) and connection errors, waiting
//!   `retry-after-ms` / `retry-after` when 0 < v ≤ 60 s, else `min(0.5·2ⁿ, 8)` s with
//!   jitter; `x-should-retry` overrides. Never waits past the run's deadline.
//! * 400/401/403/404/413 end the agent with the API's own message.
//! * Usage is summed for `run_summary.json`, in total and per agent; every call goes to
//!   `transcript.jsonl`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::artifacts::{now_rfc3339, Artifacts};
use crate::summary::Usage;

pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// The model the agents use unless told otherwise: Sonnet is the one that finishes
/// multi-step edits reliably; Haiku (the original lackey's default) is cheaper and can
/// be chosen with `LACKEY_MODEL=anthropic:claude-haiku-4-5`.
pub const DEFAULT_MODEL: &str = crate::run_contract::default::MODEL;

/// The Messages API's model id from `claude-…` or the original's `anthropic:claude-…`.
pub fn model_id(model: &str) -> Result<String, String> {
    let model = model.trim();
    let id = match model.split_once(':') {
        None => model,
        Some(("anthropic", id)) => id,
        Some((provider, _)) => {
            return Err(format!(
                "`{model}` names the provider `{provider}`; lackey's agents talk to Anthropic: write `anthropic:<model>` or the bare model id"
            ))
        }
    };
    if id.is_empty() || id.chars().any(|c| c.is_whitespace()) {
        return Err(format!(
            "`{model}` is not a model id (e.g. claude-sonnet-4-5)"
        ));
    }
    Ok(id.to_string())
}

/// Validator of the `run.model` setting.
pub fn check_model(model: &str) -> Result<(), String> {
    model_id(model).map(|_| ())
}

#[derive(Clone)]
pub struct LlmConfig {
    /// Scheme and host, no `/v1` (ANTHROPIC_BASE_URL).
    pub base_url: String,
    pub api_key: String,
    pub model: String,
    pub request_timeout: Duration,
    pub max_retries: u32,
}

impl std::fmt::Debug for LlmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &"[REDACTED]")
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

/// Why a call failed for good.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("the run's deadline was reached while waiting for the Anthropic API")]
    Deadline,
    #[error("Anthropic API error {status} {kind}: {message}{}", request_id.as_deref().map(|r| format!(" (request id {r})")).unwrap_or_default())]
    Api {
        status: u16,
        kind: String,
        message: String,
        request_id: Option<String>,
    },
    #[error("cannot reach the Anthropic API at {url}: {message}")]
    Network { url: String, message: String },
    #[error("the Anthropic API sent a reply lackey cannot read: {0}")]
    BadReply(String),
}

/// One reply from the model.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The content blocks exactly as received (sent back unchanged in the next turn).
    pub content: Vec<Value>,
    pub stop_reason: String,
    pub usage: Usage,
}

impl Reply {
    pub fn tool_uses(&self) -> Vec<(String, String, Value)> {
        self.content
            .iter()
            .filter(|b| b["type"] == "tool_use")
            .map(|b| {
                (
                    b["id"].as_str().unwrap_or_default().to_string(),
                    b["name"].as_str().unwrap_or_default().to_string(),
                    b["input"].clone(),
                )
            })
            .collect()
    }

    pub fn text(&self) -> String {
        self.content
            .iter()
            .filter(|b| b["type"] == "text")
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// What one request carries.
pub struct Call<'a> {
    pub agent: &'a str,
    pub turn: usize,
    pub system: &'a str,
    pub tools: &'a [Value],
    pub messages: &'a [Value],
    pub max_tokens: u32,
}

pub struct Llm {
    http: reqwest::Client,
    cfg: LlmConfig,
    deadline: Option<Instant>,
    usage: Mutex<Usage>,
    /// The same, per agent label (`scoper`, `executor`, `fixer-1`, …).
    by_agent: Mutex<BTreeMap<String, Usage>>,
    artifacts: Arc<Artifacts>,
    /// Bytes of the previous request and how many of them the next one repeated.
    prefix_stats: Mutex<PrefixStats>,
}

/// How much of each request repeats the previous request's bytes (the cacheable share).
#[derive(Debug, Default, Clone)]
pub struct PrefixStats {
    last_agent: String,
    last_body: Vec<u8>,
    pub requests: u64,
    pub bytes_sent: u64,
    pub bytes_repeating_prefix: u64,
    /// Requests that continued a conversation, and their bytes.
    pub compared: u64,
    pub compared_bytes: u64,
    pub min_share: Option<f64>,
}

impl PrefixStats {
    /// The share of bytes, over every continuing request, that repeat the previous
    /// request's prefix.
    pub fn share(&self) -> f64 {
        self.bytes_repeating_prefix as f64 / self.compared_bytes.max(1) as f64
    }
}

impl PrefixStats {
    /// Record a request; only requests that continue the same agent's conversation are
    /// compared (a new agent starts a new conversation with its own prefix).
    fn record(&mut self, agent: &str, body: &[u8]) {
        if self.last_agent == agent && !self.last_body.is_empty() {
            let common = self
                .last_body
                .iter()
                .zip(body)
                .take_while(|(a, b)| a == b)
                .count();
            self.bytes_repeating_prefix += common as u64;
            let share = common as f64 / body.len().max(1) as f64;
            self.min_share = Some(self.min_share.map_or(share, |m: f64| m.min(share)));
            self.compared += 1;
            self.compared_bytes += body.len() as u64;
        }
        self.requests += 1;
        self.bytes_sent += body.len() as u64;
        self.last_body = body.to_vec();
        self.last_agent = agent.to_string();
    }
}

fn jitter(d: Duration) -> Duration {
    let f = 0.75 + rand::random::<f64>() * 0.5;
    d.mul_f64(f)
}

/// How long to wait before retry `attempt` (0-based), from the reply's headers.
pub fn retry_wait(headers: Option<&reqwest::header::HeaderMap>, attempt: u32) -> Duration {
    if let Some(h) = headers {
        let ms = h
            .get("retry-after-ms")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<f64>().ok())
            .map(|ms| ms / 1000.0);
        let secs = ms.or_else(|| {
            h.get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
        });
        if let Some(s) = secs {
            if s > 0.0 && s <= 60.0 {
                return Duration::from_secs_f64(s);
            }
        }
    }
    jitter(Duration::from_secs_f64(
        (0.5 * 2f64.powi(attempt as i32)).min(8.0),
    ))
}

fn retryable(status: u16, headers: &reqwest::header::HeaderMap) -> bool {
    match headers.get("x-should-retry").and_then(|v| v.to_str().ok()) {
        Some("true") => return true,
        Some("false") => return false,
        _ => {}
    }
    matches!(status, 408 | 409 | 429) || status >= 500
}

impl Llm {
    pub fn new(cfg: LlmConfig, deadline: Option<Instant>, artifacts: Arc<Artifacts>) -> Llm {
        artifacts.add_secret(&cfg.api_key);
        Llm {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .build()
                .expect("build HTTP client"),
            cfg,
            deadline,
            usage: Mutex::new(Usage::default()),
            by_agent: Mutex::new(BTreeMap::new()),
            artifacts,
            prefix_stats: Mutex::new(PrefixStats::default()),
        }
    }

    pub fn usage(&self) -> Usage {
        self.usage.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Usage per agent label.
    pub fn usage_by_agent(&self) -> BTreeMap<String, Usage> {
        self.by_agent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn prefix_stats(&self) -> PrefixStats {
        self.prefix_stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The request body, keys in a fixed order with `messages` last, cache breakpoints
    /// on the system prompt and on the newest message's last block.
    pub fn body(&self, call: &Call) -> Value {
        let mut messages: Vec<Value> = call.messages.to_vec();
        if let Some(last) = messages.last_mut() {
            if let Some(blocks) = last["content"].as_array_mut() {
                if let Some(block) = blocks.last_mut() {
                    block["cache_control"] = json!({"type": "ephemeral"});
                }
            }
        }
        json!({
            "model": self.cfg.model,
            "max_tokens": call.max_tokens,
            "tools": call.tools,
            "system": [{"type": "text", "text": call.system, "cache_control": {"type": "ephemeral"}}],
            "messages": messages,
        })
    }

    /// Send one request, retrying what is worth retrying, never past the deadline.
    pub async fn create(&self, call: &Call<'_>) -> Result<Reply, LlmError> {
        let body = self.body(call);
        let bytes = serde_json::to_vec(&body).map_err(|e| LlmError::BadReply(e.to_string()))?;
        self.prefix_stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(call.agent, &bytes);
        let url = format!("{}/v1/messages", self.cfg.base_url.trim_end_matches('/'));
        let mut attempt: u32 = 0;
        loop {
            let mut timeout = self.cfg.request_timeout;
            if let Some(rem) = self.remaining() {
                if rem.is_zero() {
                    return Err(LlmError::Deadline);
                }
                timeout = timeout.min(rem);
            }
            let started = Instant::now();
            let sent = self
                .http
                .post(&url)
                .header("x-api-key", &self.cfg.api_key)
                .header("anthropic-version", ANTHROPIC_VERSION)
                .header("content-type", "application/json")
                .timeout(timeout)
                .body(bytes.clone())
                .send()
                .await;
            let (wait, failure) = match sent {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let headers = resp.headers().clone();
                    let request_id = headers
                        .get("request-id")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let text = match resp.text().await {
                        Ok(t) => t,
                        Err(e)
                            if e.is_timeout() && self.remaining().is_some_and(|r| r.is_zero()) =>
                        {
                            return Err(LlmError::Deadline)
                        }
                        Err(e) => {
                            let err = LlmError::Network {
                                url: url.clone(),
                                message: e.to_string(),
                            };
                            self.record(call, &body, attempt, None, Err(&err), started);
                            attempt += 1;
                            if attempt > self.cfg.max_retries {
                                return Err(err);
                            }
                            self.sleep(retry_wait(None, attempt - 1)).await?;
                            continue;
                        }
                    };
                    let parsed: Option<Value> = serde_json::from_str(&text).ok();
                    if status == 200 && parsed.as_ref().is_some_and(|v| v["type"] == "message") {
                        let v = parsed.unwrap_or_default();
                        let reply = parse_reply(&v)?;
                        self.record(call, &body, attempt, Some(status), Ok(&v), started);
                        let mut usage = reply.usage.clone();
                        usage.llm_calls = 1;
                        self.usage
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .add(&usage);
                        self.by_agent
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .entry(call.agent.to_string())
                            .or_default()
                            .add(&usage);
                        return Ok(reply);
                    }
                    let (kind, message) = parsed
                        .as_ref()
                        .map(|v| {
                            (
                                v["error"]["type"]
                                    .as_str()
                                    .unwrap_or("unknown_error")
                                    .to_string(),
                                v["error"]["message"]
                                    .as_str()
                                    .unwrap_or(text.as_str())
                                    .to_string(),
                            )
                        })
                        .unwrap_or_else(|| {
                            ("unknown_error".into(), text.chars().take(300).collect())
                        });
                    let err = LlmError::Api {
                        status,
                        kind,
                        message,
                        request_id,
                    };
                    self.record(call, &body, attempt, Some(status), Err(&err), started);
                    // An `error` body on HTTP 200 (as streams can carry) is treated like a 500.
                    let status_for_retry = if status == 200 { 500 } else { status };
                    if !retryable(status_for_retry, &headers) {
                        return Err(err);
                    }
                    (retry_wait(Some(&headers), attempt), err)
                }
                Err(e) => {
                    if e.is_timeout() && self.remaining().is_some_and(|r| r.is_zero()) {
                        self.record(
                            call,
                            &body,
                            attempt,
                            None,
                            Err(&LlmError::Deadline),
                            started,
                        );
                        return Err(LlmError::Deadline);
                    }
                    let err = LlmError::Network {
                        url: url.clone(),
                        message: if e.is_timeout() {
                            format!("no reply within {}s", timeout.as_secs())
                        } else if e.is_connect() {
                            "connection failed".to_string()
                        } else {
                            e.to_string()
                        },
                    };
                    self.record(call, &body, attempt, None, Err(&err), started);
                    (retry_wait(None, attempt), err)
                }
            };
            attempt += 1;
            if attempt > self.cfg.max_retries {
                return Err(failure);
            }
            self.artifacts.log(
                call.agent,
                &format!(
                    "{failure}; retrying in {:.1}s (attempt {attempt})",
                    wait.as_secs_f64()
                ),
            );
            self.sleep(wait).await?;
        }
    }

    async fn sleep(&self, wait: Duration) -> Result<(), LlmError> {
        if let Some(rem) = self.remaining() {
            if rem <= wait {
                tokio::time::sleep(rem).await;
                return Err(LlmError::Deadline);
            }
        }
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// One transcript line per attempt. The first call of an agent carries the whole
    /// request; later ones carry only the messages added since (the rest is unchanged),
    /// so every request can be rebuilt without the file growing quadratically.
    fn record(
        &self,
        call: &Call,
        body: &Value,
        attempt: u32,
        status: Option<u16>,
        result: Result<&Value, &LlmError>,
        started: Instant,
    ) {
        let request = if call.turn == 0 {
            body.clone()
        } else {
            let n = call.messages.len();
            let new_from = n.saturating_sub(2);
            json!({
                "model": body["model"],
                "max_tokens": body["max_tokens"],
                "message_count": n,
                "new_messages": &call.messages[new_from..],
            })
        };
        let mut line = json!({
            "ts": now_rfc3339(),
            "agent": call.agent,
            "turn": call.turn,
            "attempt": attempt,
            "status": status,
            "duration_ms": started.elapsed().as_millis() as u64,
            "request": request,
        });
        match result {
            Ok(v) => line["response"] = v.clone(),
            Err(e) => line["error"] = Value::String(e.to_string()),
        }
        self.artifacts.transcript(&line);
    }
}

fn parse_reply(v: &Value) -> Result<Reply, LlmError> {
    let content = v["content"]
        .as_array()
        .cloned()
        .ok_or_else(|| LlmError::BadReply("no `content` array".into()))?;
    let u = &v["usage"];
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    Ok(Reply {
        content,
        stop_reason: v["stop_reason"].as_str().unwrap_or("end_turn").to_string(),
        usage: Usage {
            llm_calls: 0,
            input_tokens: n("input_tokens"),
            output_tokens: n("output_tokens"),
            cache_read_input_tokens: n("cache_read_input_tokens"),
            cache_creation_input_tokens: n("cache_creation_input_tokens"),
            ..Usage::default()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_in_both_forms() {
        assert_eq!(model_id("claude-haiku-4-5").unwrap(), "claude-haiku-4-5");
        assert_eq!(
            model_id("anthropic:claude-haiku-4-5").unwrap(),
            "claude-haiku-4-5"
        );
        assert!(model_id("openai:gpt-4o")
            .unwrap_err()
            .contains("provider `openai`"));
        assert!(model_id("anthropic:").is_err());
    }
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn retry_wait_honours_headers_within_bounds() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(retry_wait(Some(&h), 0), Duration::from_secs(3));
        h.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_wait(Some(&h), 0), Duration::from_millis(250));
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("120"));
        // Out of range: exponential backoff instead (0.5 s ± 25 % on the first retry).
        let w = retry_wait(Some(&h), 0);
        assert!(
            w >= Duration::from_millis(375) && w <= Duration::from_millis(625),
            "{w:?}"
        );
        let w = retry_wait(None, 10);
        assert!(w <= Duration::from_secs(10), "{w:?}");
    }

    #[test]
    fn should_retry_header_wins() {
        let mut h = HeaderMap::new();
        assert!(retryable(529, &h));
        assert!(retryable(429, &h));
        assert!(!retryable(400, &h));
        h.insert("x-should-retry", HeaderValue::from_static("false"));
        assert!(!retryable(529, &h));
        h.insert("x-should-retry", HeaderValue::from_static("true"));
        assert!(retryable(400, &h));
    }

    #[test]
    fn prefix_stats_measure_the_repeated_prefix() {
        let mut s = PrefixStats::default();
        s.record("x", b"{\"a\":[1]}");
        s.record("x", b"{\"a\":[1,2]}");
        s.record("y", b"{\"b\":[1,2]}");
        assert_eq!(s.requests, 3);
        assert_eq!(s.compared, 1);
        assert_eq!(s.bytes_repeating_prefix, 7);
    }
}
