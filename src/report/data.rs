//! A run's artifacts read back into what the report shows: the summary, the scope, the
//! diff, the commands, and the agents' turns rebuilt from the transcript and the tool
//! log.
//!
//! Only `run_summary.json` must exist; every other file may be missing or cut short (a
//! run killed mid-line) and then shows as empty. Nothing here trusts the files' text:
//! it is carried as plain strings and escaped by the renderer.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use crate::runner::rundir::RunDir;
use crate::summary::{RunSummary, Usage};

/// One tool call of an agent's turn.
#[derive(Debug, Clone, Default)]
pub struct ToolCall {
    pub name: String,
    pub input: Value,
    /// What the tool answered, as the model saw it (absent for a turn that ended the
    /// agent: nothing was sent back).
    pub result: Option<String>,
    pub is_error: bool,
    pub duration_ms: Option<u64>,
    pub summary: String,
}

/// One model call that got an answer (retried attempts are counted, not shown apart).
#[derive(Debug, Clone, Default)]
pub struct Turn {
    /// The call's label: `scoper`, `executor`, `fixer-1`, …
    pub agent: String,
    pub turn: u64,
    /// When the answer came (RFC 3339, milliseconds, UTC).
    pub ts: String,
    pub duration_ms: u64,
    /// Attempts that failed before this one (retries), with their errors.
    pub failed_attempts: Vec<String>,
    pub usage: Usage,
    pub text: String,
    pub stop_reason: String,
    pub tools: Vec<ToolCall>,
}

/// A line of `minion.log`: `2026-11-24T14:30:15.123Z [component] message`.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub ts: String,
    pub component: String,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct RunData {
    pub summary: RunSummary,
    pub scope: Value,
    pub diff: String,
    /// `commands.log`, one object a line.
    pub commands: Vec<Value>,
    pub turns: Vec<Turn>,
    pub log: Vec<LogLine>,
    /// The artifacts larger than the report reads, shown in part.
    pub cut: Vec<&'static str>,
}

/// The most of one artifact the report reads. The page is for a reader, and what the
/// run wrote is the attacker's data: a large file of JSON lines turns into many times
/// its size once parsed (each `0,` of an array is a 32-byte value), and fleets render
/// several reports at once.
const RENDER_CAP: u64 = 8 * 1024 * 1024;
/// The longest JSON line the report parses (a first turn's whole request is the largest
/// a run writes).
const RENDER_LINE_CAP: usize = 2 * 1024 * 1024;

/// An artifact as text, read without following a link (a local run's directory was
/// the container's to write) and capped at [`RENDER_CAP`]: a name that is missing or
/// not a regular file reads as empty; a longer file is read up to its last whole line
/// within the cap (and its name added to `cut`).
fn read_optional(dir: &RunDir, name: &'static str, cut: &mut Vec<&'static str>) -> String {
    let Ok((mut bytes, more)) = dir.read_capped(name, RENDER_CAP) else {
        return String::new();
    };
    if more {
        let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        bytes.truncate(whole);
        cut.push(name);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The same for a log, whose end matters most: its last [`RENDER_CAP`] bytes, from its
/// first whole line.
fn read_optional_tail(dir: &RunDir, name: &'static str, cut: &mut Vec<&'static str>) -> String {
    let Ok((mut bytes, more)) = dir.read_tail(name, RENDER_CAP) else {
        return String::new();
    };
    if more {
        let start = bytes
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |i| i + 1);
        bytes.drain(..start);
        cut.push(name);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn ndjson(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && l.len() <= RENDER_LINE_CAP)
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

impl RunData {
    /// Read a run's artifact directory.
    pub fn load(path: &Path) -> anyhow::Result<RunData> {
        let dir = &RunDir::open(path)
            .map_err(|e| anyhow::anyhow!("cannot open `{}`: {e}", path.display()))?;
        let summary = dir
            .read("run_summary.json", crate::runner::rundir::MAX_SUMMARY_BYTES)
            .map_err(|e| anyhow::anyhow!("cannot read `{}/run_summary.json`: {e}", path.display()))
            .and_then(|b| {
                serde_json::from_slice::<RunSummary>(&b).map_err(|e| {
                    anyhow::anyhow!(
                        "`{}/run_summary.json` is not a run summary: {e}",
                        path.display()
                    )
                })
            })?;
        let mut cut = Vec::new();
        let scope = serde_json::from_str(&read_optional(dir, "scope.json", &mut cut))
            .unwrap_or(Value::Null);
        let transcript = ndjson(&read_optional(dir, "transcript.jsonl", &mut cut));
        let tool_log = ndjson(&read_optional(dir, "tool_calls.log", &mut cut));
        let diff = read_optional(dir, "diff.patch", &mut cut);
        let commands = ndjson(&read_optional(dir, "commands.log", &mut cut));
        let log = read_optional_tail(dir, "minion.log", &mut cut)
            .lines()
            .filter_map(parse_log_line)
            .collect();
        Ok(RunData {
            summary,
            scope,
            diff,
            commands,
            turns: turns(&transcript, &tool_log),
            log,
            cut,
        })
    }
}

fn parse_log_line(line: &str) -> Option<LogLine> {
    let (ts, rest) = line.split_once(' ')?;
    let rest = rest.strip_prefix('[')?;
    let (component, message) = rest.split_once("] ")?;
    Some(LogLine {
        ts: ts.to_string(),
        component: component.to_string(),
        message: message.to_string(),
    })
}

/// The text of a `tool_result` block's content (a string, or text blocks).
fn result_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Rebuild the agents' turns. Each transcript line is one attempt; its `response`
/// holds the usage and the tool calls. The results of a turn's tool calls travel in the
/// next request of the same agent (its `new_messages`, or the whole `messages` for a
/// first call), matched by tool-use id. Durations come from `tool_calls.log`, matched by
/// agent, turn and order.
pub fn turns(transcript: &[Value], tool_log: &[Value]) -> Vec<Turn> {
    let mut results: HashMap<String, (String, bool)> = HashMap::new();
    for line in transcript {
        let req = &line["request"];
        let messages = req["new_messages"]
            .as_array()
            .or_else(|| req["messages"].as_array());
        for m in messages.into_iter().flatten() {
            for b in m["content"].as_array().into_iter().flatten() {
                if b["type"] == "tool_result" {
                    if let Some(id) = b["tool_use_id"].as_str() {
                        results.insert(
                            id.to_string(),
                            (result_text(&b["content"]), b["is_error"] == true),
                        );
                    }
                }
            }
        }
    }
    let mut timings: HashMap<(String, u64), Vec<&Value>> = HashMap::new();
    for t in tool_log {
        let key = (
            t["agent"].as_str().unwrap_or_default().to_string(),
            t["turn"].as_u64().unwrap_or(0),
        );
        timings.entry(key).or_default().push(t);
    }
    let mut out: Vec<Turn> = Vec::new();
    let mut failed: HashMap<(String, u64), Vec<String>> = HashMap::new();
    for line in transcript {
        let agent = line["agent"].as_str().unwrap_or_default().to_string();
        let turn = line["turn"].as_u64().unwrap_or(0);
        let key = (agent.clone(), turn);
        let resp = &line["response"];
        if resp.is_null() {
            failed.entry(key).or_default().push(
                line["error"]
                    .as_str()
                    .unwrap_or("the call failed")
                    .to_string(),
            );
            continue;
        }
        let u = &resp["usage"];
        let n = |k: &str| u[k].as_u64().unwrap_or(0);
        let content = resp["content"].as_array().cloned().unwrap_or_default();
        let logged = timings.get(&key);
        let tools = content
            .iter()
            .filter(|b| b["type"] == "tool_use")
            .enumerate()
            .map(|(i, b)| {
                let id = b["id"].as_str().unwrap_or_default();
                let log = logged.and_then(|l| l.get(i));
                let result = results.get(id);
                ToolCall {
                    name: b["name"].as_str().unwrap_or_default().to_string(),
                    input: b["input"].clone(),
                    result: result.map(|r| r.0.clone()),
                    is_error: result.is_some_and(|r| r.1)
                        || log.is_some_and(|l| l["is_error"] == true),
                    duration_ms: log.and_then(|l| l["duration_ms"].as_u64()),
                    summary: log
                        .and_then(|l| l["summary"].as_str())
                        .unwrap_or_default()
                        .to_string(),
                }
            })
            .collect();
        out.push(Turn {
            failed_attempts: failed.remove(&key).unwrap_or_default(),
            agent,
            turn,
            ts: line["ts"].as_str().unwrap_or_default().to_string(),
            duration_ms: line["duration_ms"].as_u64().unwrap_or(0),
            usage: Usage {
                llm_calls: 1,
                input_tokens: n("input_tokens"),
                output_tokens: n("output_tokens"),
                cache_read_input_tokens: n("cache_read_input_tokens"),
                cache_creation_input_tokens: n("cache_creation_input_tokens"),
                ..Usage::default()
            },
            text: content
                .iter()
                .filter(|b| b["type"] == "text")
                .filter_map(|b| b["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            stop_reason: resp["stop_reason"].as_str().unwrap_or_default().to_string(),
            tools,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_artifact_is_read_to_its_last_whole_line_under_the_cap_and_long_lines_are_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let line = format!("{}\n", json!({"n": "x".repeat(1000)}));
        let many = line.repeat((RENDER_CAP as usize / line.len()) + 10);
        std::fs::write(tmp.path().join("commands.log"), &many).unwrap();
        let huge = format!("[{}0]\n{line}", "0,".repeat(RENDER_LINE_CAP));
        std::fs::write(tmp.path().join("tool_calls.log"), &huge).unwrap();
        let dir = RunDir::open(tmp.path()).unwrap();
        let mut cut = Vec::new();
        let read = read_optional(&dir, "commands.log", &mut cut);
        assert_eq!(cut, ["commands.log"]);
        assert!(
            read.len() as u64 <= RENDER_CAP && read.ends_with('\n'),
            "{}",
            read.len()
        );
        assert_eq!(ndjson(&read).len(), read.len() / line.len());
        // The over-long line is not parsed; the one after it is.
        assert_eq!(
            ndjson(&read_optional(&dir, "tool_calls.log", &mut cut)).len(),
            1
        );
        // A log keeps its end, from a whole line.
        std::fs::write(tmp.path().join("minion.log"), &many).unwrap();
        let tail = read_optional_tail(&dir, "minion.log", &mut cut);
        assert!(tail.len() as u64 <= RENDER_CAP && tail.starts_with('{') && many.ends_with(&tail));
        assert_eq!(cut, ["commands.log", "minion.log"]);
    }

    #[test]
    fn turns_join_results_and_timings() {
        let transcript = vec![
            json!({"ts": "t1", "agent": "executor", "turn": 0, "duration_ms": 5, "status": 529, "error": "overloaded"}),
            json!({"ts": "t2", "agent": "executor", "turn": 0, "duration_ms": 7, "status": 200,
                   "request": {"messages": [{"role": "user", "content": [{"type": "text", "text": "task"}]}]},
                   "response": {"content": [{"type": "text", "text": "looking"},
                                            {"type": "tool_use", "id": "a", "name": "view", "input": {"path": "x"}},
                                            {"type": "tool_use", "id": "b", "name": "bash", "input": {"command": "ls"}}],
                                "stop_reason": "tool_use",
                                "usage": {"input_tokens": 100, "output_tokens": 10, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 50}}}),
            json!({"ts": "t3", "agent": "executor", "turn": 1, "duration_ms": 9, "status": 200,
                   "request": {"new_messages": [{"role": "assistant", "content": []},
                       {"role": "user", "content": [
                           {"type": "tool_result", "tool_use_id": "a", "content": "file x"},
                           {"type": "tool_result", "tool_use_id": "b", "content": "boom", "is_error": true}]}]},
                   "response": {"content": [{"type": "tool_use", "id": "c", "name": "finish", "input": {}}],
                                "stop_reason": "tool_use", "usage": {"input_tokens": 20, "output_tokens": 5}}}),
        ];
        let tool_log = vec![
            json!({"agent": "executor", "turn": 0, "tool": "view", "duration_ms": 3, "summary": "view x", "is_error": false}),
            json!({"agent": "executor", "turn": 0, "tool": "bash", "duration_ms": 40, "summary": "bash ls", "is_error": true}),
        ];
        let t = turns(&transcript, &tool_log);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].failed_attempts, ["overloaded"]);
        assert_eq!(t[0].text, "looking");
        assert_eq!(t[0].usage.cache_creation_input_tokens, 50);
        assert_eq!(t[0].tools.len(), 2);
        assert_eq!(t[0].tools[0].result.as_deref(), Some("file x"));
        assert_eq!(t[0].tools[0].duration_ms, Some(3));
        assert!(!t[0].tools[0].is_error);
        assert!(t[0].tools[1].is_error);
        assert_eq!(t[0].tools[1].duration_ms, Some(40));
        // The last turn's tool result was never sent back.
        assert_eq!(t[1].tools[0].result, None);
        assert_eq!(t[1].usage.input_tokens, 20);
    }

    #[test]
    fn log_lines_parse() {
        let l = parse_log_line("2026-11-24T14:30:15.123Z [minion] step `test`").unwrap();
        assert_eq!(
            (l.ts.as_str(), l.component.as_str(), l.message.as_str()),
            ("2026-11-24T14:30:15.123Z", "minion", "step `test`")
        );
        assert!(parse_log_line("garbage").is_none());
    }
}
