//! The Scoper, Executor and Fixer: each a bounded loop over the Messages API.
//!
//! Every loop is bounded three ways (turns, output tokens, wall time) and by the run's
//! deadline. Tool results are clipped by the tools themselves, with a note telling the
//! model how to narrow. Messages are only ever appended, and assistant turns are kept
//! exactly as the API sent them, so each request extends the previous one.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::artifacts::{now_rfc3339, ToolCallRecord};
use super::blueprint::AgentKind;
use super::llm::{Call, Llm, LlmError};
use super::tools::{self, Terminal, Toolset, Workspace, WriteScope};
use crate::summary::Usage;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_turns: usize,
    pub max_tokens_per_call: u32,
    pub max_output_tokens: u64,
    pub max_wall: Duration,
}

impl Limits {
    /// A blueprint's `max_turns`, when it sets one.
    pub fn with_max_turns(mut self, turns: Option<u32>) -> Limits {
        if let Some(t) = turns {
            self.max_turns = t as usize;
        }
        self
    }

    pub fn for_agent(kind: AgentKind) -> Limits {
        match kind {
            AgentKind::Scoper => Limits {
                max_turns: 30,
                max_tokens_per_call: 4096,
                max_output_tokens: 60_000,
                max_wall: Duration::from_secs(15 * 60),
            },
            AgentKind::Executor => Limits {
                max_turns: 80,
                max_tokens_per_call: 8192,
                max_output_tokens: 250_000,
                max_wall: Duration::from_secs(45 * 60),
            },
            AgentKind::Fixer => Limits {
                max_turns: 40,
                max_tokens_per_call: 8192,
                max_output_tokens: 120_000,
                max_wall: Duration::from_secs(20 * 60),
            },
        }
    }
}

/// How an agent's loop ended.
#[derive(Debug)]
pub enum AgentEnd {
    /// A terminal tool was called.
    Done(Terminal),
    /// The model stopped without a terminal tool (its last words).
    EndTurn(String),
    /// A limit was reached (which one).
    Limit(String),
    /// The API failed for good.
    Failed(LlmError),
}

pub struct AgentRun {
    pub end: AgentEnd,
    pub turns: usize,
    pub usage: Usage,
}

const SCOPER_SYSTEM: &str = "You are the Scoper of lackey, an autonomous coding agent working on a git repository.

Your job: understand the task and the repository, then decide the smallest scope a correct change needs: the directories and files the Executor may edit or create, and the test files it should add or update. You have read-only tools (view, glob, grep); you cannot change anything.

Work efficiently: look at the layout, read the code the task concerns and how it is tested, follow the repository's rules when they are shown to you. Prefer naming files when you know them and directories when new files will be created there. Include the tests.

Finish by calling submit_scope exactly once.";

const EXECUTOR_SYSTEM: &str = "You are the Executor of lackey, an autonomous coding agent working on a git repository.

Your job: make the change the task asks for, within the scope you are given, and check it.

Rules:
- View a file before editing it. str_replace needs old_str to match exactly once; include enough surrounding lines.
- You may create and edit files only inside the scope. If the task cannot be done without other files, call request_scope_change with the files and your reasoning instead of working around the scope.
- Run the project's build, lint and tests with bash and fix what fails. Keep the change minimal and in the style of the code around it. Follow the repository's rules when they are shown to you.
- Do not commit: lackey commits your work.
- When the change is complete and checked, call finish with a short summary.";

const FIXER_SYSTEM: &str = "You are the Fixer of lackey, an autonomous coding agent working on a git repository.

A check (lint or tests) failed after a change was made for a task. Your job: make the failing check pass with the smallest correct edit. You may edit only the files the change already touched and the test files. View a file before editing it; str_replace needs old_str to match exactly once. Run the failing check with bash to confirm the fix. Do not weaken or delete tests to make them pass. When the check passes, call finish.";

pub fn system_prompt(kind: AgentKind) -> &'static str {
    match kind {
        AgentKind::Scoper => SCOPER_SYSTEM,
        AgentKind::Executor => EXECUTOR_SYSTEM,
        AgentKind::Fixer => FIXER_SYSTEM,
    }
}

pub fn toolset(kind: AgentKind) -> Toolset {
    match kind {
        AgentKind::Scoper => Toolset::Scoper,
        AgentKind::Executor => Toolset::Executor,
        AgentKind::Fixer => Toolset::Fixer,
    }
}

fn text_message(role: &str, text: &str) -> Value {
    json!({"role": role, "content": [{"type": "text", "text": text}]})
}

/// Run one agent until it finishes, gives up or hits a limit.
#[allow(clippy::too_many_arguments)]
pub async fn run_agent(
    llm: &Llm,
    ws: &Workspace,
    kind: AgentKind,
    label: &str,
    first_message: &str,
    scope: &WriteScope,
    limits: Limits,
) -> AgentRun {
    let set = toolset(kind);
    let tool_defs = tools::definitions(set);
    let system = system_prompt(kind);
    let mut messages: Vec<Value> = vec![text_message("user", first_message)];
    let started = Instant::now();
    let mut usage = Usage::default();
    let mut reminded = false;
    let art = &ws.artifacts;
    for turn in 0..limits.max_turns {
        if started.elapsed() > limits.max_wall {
            return AgentRun {
                end: AgentEnd::Limit(format!("wall time of {} s", limits.max_wall.as_secs())),
                turns: turn,
                usage,
            };
        }
        if usage.output_tokens >= limits.max_output_tokens {
            return AgentRun {
                end: AgentEnd::Limit(format!("{} output tokens", limits.max_output_tokens)),
                turns: turn,
                usage,
            };
        }
        let call = Call {
            agent: label,
            turn,
            system,
            tools: &tool_defs,
            messages: &messages,
            max_tokens: limits.max_tokens_per_call,
        };
        let reply = match llm.create(&call).await {
            Ok(r) => r,
            Err(e) => {
                return AgentRun {
                    end: AgentEnd::Failed(e),
                    turns: turn,
                    usage,
                }
            }
        };
        let mut u = reply.usage.clone();
        u.llm_calls = 1;
        usage.add(&u);
        let said = reply.text();
        if !said.trim().is_empty() {
            art.log(label, &format!("turn {turn}: {}", one_line(&said, 200)));
        }
        messages.push(json!({"role": "assistant", "content": reply.content.clone()}));
        let uses = reply.tool_uses();
        if uses.is_empty() {
            if reply.stop_reason == "refusal" {
                return AgentRun {
                    end: AgentEnd::Limit("the model refused the task".into()),
                    turns: turn + 1,
                    usage,
                };
            }
            if reply.stop_reason == "max_tokens" {
                messages.push(text_message(
                    "user",
                    "Your reply was cut off at the output limit. Continue, and keep each tool call small.",
                ));
                continue;
            }
            if kind == AgentKind::Scoper && !reminded {
                reminded = true;
                messages.push(text_message(
                    "user",
                    "You have not submitted a scope. Call submit_scope now.",
                ));
                continue;
            }
            return AgentRun {
                end: AgentEnd::EndTurn(said),
                turns: turn + 1,
                usage,
            };
        }
        let mut results = Vec::new();
        let mut terminal = None;
        for (id, name, input) in uses {
            let t0 = Instant::now();
            let (text, is_error, term) = if terminal.is_some() {
                (
                    "not run: an earlier tool call in this turn ended the agent".to_string(),
                    true,
                    None,
                )
            } else {
                tools::call(ws, set, label, scope, &name, &input).await
            };
            let summary = describe_call(&name, &input);
            art.log(
                label,
                &format!(
                    "turn {turn}: {summary}{}",
                    if is_error { " (refused or failed)" } else { "" }
                ),
            );
            art.tool_call(&ToolCallRecord {
                ts: now_rfc3339(),
                agent: label,
                turn,
                tool: &name,
                input: &input,
                is_error,
                output_chars: text.chars().count(),
                duration_ms: t0.elapsed().as_millis(),
                summary: &summary,
            });
            // The model never sees a secret the minion knows, whatever the tool read.
            let text = art.redact(&text);
            let mut block = json!({"type": "tool_result", "tool_use_id": id, "content": text});
            if is_error {
                block["is_error"] = Value::Bool(true);
            }
            results.push(block);
            if term.is_some() {
                terminal = term;
            }
        }
        messages.push(json!({"role": "user", "content": results}));
        if let Some(t) = terminal {
            return AgentRun {
                end: AgentEnd::Done(t),
                turns: turn + 1,
                usage,
            };
        }
    }
    AgentRun {
        end: AgentEnd::Limit(format!("{} turns", limits.max_turns)),
        turns: limits.max_turns,
        usage,
    }
}

fn one_line(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        format!("{}…", flat.chars().take(max).collect::<String>())
    } else {
        flat
    }
}

/// `view src/lib.rs`, `bash cargo test`, … for the log.
fn describe_call(name: &str, input: &Value) -> String {
    let arg = ["path", "command", "pattern"]
        .iter()
        .find_map(|k| input[*k].as_str())
        .map(|s| one_line(s, 120))
        .unwrap_or_default();
    if arg.is_empty() {
        name.to_string()
    } else {
        format!("{name} {arg}")
    }
}
