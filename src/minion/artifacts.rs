//! The run's output directory: every artifact (docs/artifacts.md), written as the run goes.
//!
//! Each line is appended and flushed at once, so a run killed at any moment (timeout,
//! Ctrl-C, kill -9) leaves every line it wrote. Every write goes through the
//! [`Redactor`], which replaces each secret value the minion knows (API key, GitHub
//! token) wherever it appears: in a model's reply, a command's output, a log line.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

/// Replaces known secret values with `[REDACTED]`. (Debug shows only how many.)
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Redactor {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .map(|s| s.trim().to_string())
            // Very short values would redact ordinary text; real secrets are long.
            .filter(|s| s.len() >= 8)
            .collect();
        // Longest first, so a secret that contains another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    pub fn add(&mut self, secret: &str) {
        let mut all = std::mem::take(&mut self.secrets);
        all.push(secret.to_string());
        *self = Redactor::new(all);
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "[REDACTED]");
            }
        }
        out
    }
}

/// One shell command the minion ran (`commands.log`, NDJSON).
#[derive(Debug, Serialize)]
pub struct CommandRecord<'a> {
    pub ts: String,
    pub agent: &'a str,
    pub cwd: &'a str,
    pub command: &'a str,
    pub exit_code: Option<i32>,
    pub duration_ms: u128,
    pub timed_out: bool,
    pub output: &'a str,
    pub output_truncated: bool,
}

/// One agent tool call (`tool_calls.log`, NDJSON).
#[derive(Debug, Serialize)]
pub struct ToolCallRecord<'a> {
    pub ts: String,
    pub agent: &'a str,
    pub turn: usize,
    pub tool: &'a str,
    pub input: &'a serde_json::Value,
    pub is_error: bool,
    pub output_chars: usize,
    pub duration_ms: u128,
    pub summary: &'a str,
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub struct Artifacts {
    pub dir: PathBuf,
    redactor: Mutex<Redactor>,
    log: Mutex<File>,
    commands: Mutex<File>,
    tool_calls: Mutex<File>,
    transcript: Mutex<File>,
    /// Also print log lines on stdout (the container's log stream).
    echo: bool,
    /// The blueprint step running now (index, name): every `commands.log` entry names it.
    step: Mutex<Option<(usize, String)>>,
}

/// A `commands.log` entry: the command and the step it ran in.
#[derive(Serialize)]
struct StepCommand<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    step_name: Option<&'a str>,
    #[serde(flatten)]
    record: &'a CommandRecord<'a>,
}

fn open_append(dir: &Path, name: &str) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
        .map_err(|e| anyhow::anyhow!("cannot open `{}`: {e}", dir.join(name).display()))
}

impl Artifacts {
    /// Create the directory and every log file (empty), so the set exists from the start.
    pub fn create(dir: &Path, redactor: Redactor, echo: bool) -> anyhow::Result<Artifacts> {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create `{}`: {e}", dir.display()))?;
        Ok(Artifacts {
            dir: dir.to_path_buf(),
            redactor: Mutex::new(redactor),
            log: Mutex::new(open_append(dir, "minion.log")?),
            commands: Mutex::new(open_append(dir, "commands.log")?),
            tool_calls: Mutex::new(open_append(dir, "tool_calls.log")?),
            transcript: Mutex::new(open_append(dir, "transcript.jsonl")?),
            echo,
            step: Mutex::new(None),
        })
    }

    pub fn add_secret(&self, secret: &str) {
        self.redactor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(secret);
    }

    pub fn redact(&self, text: &str) -> String {
        self.redactor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .redact(text)
    }

    fn append(&self, file: &Mutex<File>, line: &str) {
        let line = self.redact(line);
        let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
        let _ = f.write_all(line.as_bytes());
        let _ = f.write_all(b"\n");
        let _ = f.flush();
    }

    /// A line in `minion.log` (and on stdout): `2026-11-24T14:30:15.123Z [scoper] …`.
    pub fn log(&self, component: &str, message: &str) {
        let line = format!("{} [{component}] {message}", now_rfc3339());
        if self.echo {
            let line = self.redact(&line);
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        self.append(&self.log, &line);
    }

    fn ndjson<T: Serialize>(&self, file: &Mutex<File>, record: &T) {
        match serde_json::to_string(record) {
            Ok(line) => self.append(file, &line),
            Err(e) => self.log("artifacts", &format!("could not serialise a record: {e}")),
        }
    }

    /// The step the following commands belong to (`None` before the first step).
    pub fn set_step(&self, step: Option<(usize, String)>) {
        *self.step.lock().unwrap_or_else(|e| e.into_inner()) = step;
    }

    pub fn command(&self, record: &CommandRecord) {
        let step = self.step.lock().unwrap_or_else(|e| e.into_inner()).clone();
        self.ndjson(
            &self.commands,
            &StepCommand {
                step: step.as_ref().map(|s| s.0),
                step_name: step.as_ref().map(|s| s.1.as_str()),
                record,
            },
        );
    }

    pub fn tool_call(&self, record: &ToolCallRecord) {
        self.ndjson(&self.tool_calls, record);
    }

    pub fn transcript(&self, record: &serde_json::Value) {
        self.ndjson(&self.transcript, record);
    }

    /// Remove whatever is at `name` in the artifact directory: a file, a link (not what
    /// it points at) or a directory. The directory is shared with everything that runs in
    /// the container, so a name the minion is about to write may hold something planted.
    pub fn clear(&self, name: &str) {
        let path = self.dir.join(name);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {
                let _ = std::fs::remove_dir_all(&path);
            }
            Ok(_) => {
                let _ = std::fs::remove_file(&path);
            }
            Err(_) => {}
        }
    }

    /// Write a whole artifact file (redacted), atomically, through a temporary name
    /// cleared first (a planted link or directory there is removed, not written through).
    pub fn write(&self, name: &str, contents: &str) -> anyhow::Result<()> {
        let path = self.dir.join(name);
        let tmp_name = format!(".{name}.tmp");
        self.clear(&tmp_name);
        let tmp = self.dir.join(tmp_name);
        std::fs::write(&tmp, self.redact(contents))
            .map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", path.display()))?;
        std::fs::rename(&tmp, &path)
            .map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", path.display()))?;
        Ok(())
    }
}

/// Clip text to `max` characters, keeping the head and the tail (errors are usually at
/// the end of a command's output), with a note saying how much was cut.
pub fn clip(text: &str, max: usize, how_to_narrow: &str) -> (String, bool) {
    let count = text.chars().count();
    if count <= max {
        return (text.to_string(), false);
    }
    let head: String = text.chars().take(max * 2 / 5).collect();
    let tail: String = text.chars().skip(count - max * 3 / 5).collect();
    (
        format!(
            "{head}\n\n[... {} characters cut; {how_to_narrow} ...]\n\n{tail}",
            count - head.chars().count() - tail.chars().count()
        ),
        true,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_every_occurrence_longest_first() {
        let r = Redactor::new([
            "sk-ant-secret-123".to_string(),
            "sk-ant-secret".to_string(),
            "abc".to_string(),
        ]);
        assert_eq!(
            r.redact("key sk-ant-secret-123 and sk-ant-secret and abc"),
            "key [REDACTED] and [REDACTED] and abc"
        );
    }

    #[test]
    fn clip_keeps_head_and_tail() {
        let text: String = (0..1000).map(|i| format!("{i}\n")).collect();
        let (out, cut) = clip(&text, 100, "use grep");
        assert!(cut);
        assert!(out.starts_with("0\n1\n"));
        assert!(out.ends_with("999\n"));
        assert!(out.contains("characters cut; use grep"));
        assert_eq!(clip("short", 100, "x"), ("short".to_string(), false));
    }
}
