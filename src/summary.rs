//! `run_summary.json` (docs/artifacts.md): written by the minion, read by the host, listed by
//! `lackey runs`. One type for all three so the field names cannot drift.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    TestFailure,
    ScopeDisagreement,
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::TestFailure => "test_failure",
            Outcome::ScopeDisagreement => "scope_disagreement",
            Outcome::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        match s {
            "success" => Some(Outcome::Success),
            "test_failure" => Some(Outcome::TestFailure),
            "scope_disagreement" => Some(Outcome::ScopeDisagreement),
            "error" => Some(Outcome::Error),
            _ => None,
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step of the blueprint as it ran.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The step's 1-based position in the blueprint.
    #[serde(default)]
    pub index: usize,
    pub name: String,
    pub success: bool,
    #[serde(default)]
    pub detail: String,
}

/// LLM usage summed over every call of the run, and what it cost.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub llm_calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub cache_creation_input_tokens: u64,
    /// USD, from the price table; `null` when the model has no price (see `cost_note`).
    #[serde(default)]
    pub cost_usd: Option<f64>,
    /// Why `cost_usd` is `null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_note: Option<String>,
    /// The model the run's agents used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The same counts per agent: `scoper`, `executor`, `fixer` (all rounds).
    #[serde(default)]
    pub by_agent: BTreeMap<String, AgentUsage>,
}

/// One agent's share of [`Usage`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentUsage {
    pub llm_calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub cache_creation_input_tokens: u64,
    #[serde(default)]
    pub cost_usd: Option<f64>,
}

impl AgentUsage {
    /// The token counts alone, as a [`Usage`] (for pricing).
    pub fn tokens(&self) -> Usage {
        Usage {
            llm_calls: self.llm_calls,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cache_read_input_tokens: self.cache_read_input_tokens,
            cache_creation_input_tokens: self.cache_creation_input_tokens,
            ..Usage::default()
        }
    }
}

impl Usage {
    /// Every input token the model read: uncached, written to the cache, read from it.
    pub fn prompt_tokens(&self) -> u64 {
        self.input_tokens + self.cache_read_input_tokens + self.cache_creation_input_tokens
    }

    /// The share of prompt tokens served from the cache (0 when there were none).
    pub fn cache_hit_ratio(&self) -> f64 {
        self.cache_read_input_tokens as f64 / self.prompt_tokens().max(1) as f64
    }

    /// Add `other`'s token counts (costs are computed once, from the totals).
    pub fn add(&mut self, other: &Usage) {
        self.llm_calls += other.llm_calls;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cache_read_input_tokens += other.cache_read_input_tokens;
        self.cache_creation_input_tokens += other.cache_creation_input_tokens;
    }
}

/// Where the run executed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Runtime {
    Local,
    Cloud,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunSummary {
    pub run_id: String,
    pub task: String,
    pub outcome: Outcome,
    pub runtime: Runtime,
    pub branch: String,
    pub base_sha: Option<String>,
    pub head_sha: Option<String>,
    pub started_at: String,
    pub finished_at: String,
    pub duration_s: f64,
    #[serde(default)]
    pub steps: Vec<StepRecord>,
    #[serde(default)]
    pub usage: Usage,
    pub pr_url: Option<String>,
    pub s3_prefix: Option<String>,
    pub error: Option<String>,
}

impl RunSummary {
    pub fn read(path: &Path) -> anyhow::Result<RunSummary> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("`{}` is not a run summary: {e}", path.display()))
    }

    /// Write atomically, so a reader (or a kill) never sees half a file.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(&tmp, text + "\n")?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

/// The text a timed-out run's `error` starts with (scripts match on it: keep the wording).
pub fn timed_out(secs: u64) -> String {
    format!("timed out after {secs} s")
}

/// A sortable, unique run id: `20261124-143015-7f3a`: the UTC second, then 16 bits
/// whose top 10 are the millisecond (so ids sort by time within a second too) and whose
/// low 6 are random. Callers that create a directory per run create it exclusively and
/// draw again on a clash.
pub fn new_run_id() -> String {
    let now = chrono::Utc::now();
    let ms = now.timestamp_subsec_millis().min(999) as u16;
    let suffix = (ms << 6) | (rand::random::<u16>() & 0x3f);
    format!("{}-{suffix:04x}", now.format("%Y%m%d-%H%M%S"))
}

/// Whether `s` has the shape of a run id (guards paths built from user input).
pub fn is_run_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'-'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'-'
        && b[16..]
            .iter()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

/// The artifact files every run leaves (docs/artifacts.md), in the order `lackey runs`
/// checks them.
pub const ARTIFACTS: &[&str] = &[
    "run_summary.json",
    "scope.json",
    "diff.patch",
    "diff_stats.txt",
    "commands.log",
    "tool_calls.log",
    "transcript.jsonl",
    "minion.log",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_sort_and_validate() {
        // Ids drawn later sort later, within one second too.
        let first = new_run_id();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let second = new_run_id();
        assert!(second > first, "{second} <= {first}");
        let a = new_run_id();
        assert!(is_run_id(&a), "{a}");
        assert!(is_run_id("20261124-143015-7f3a"));
        assert!(!is_run_id("../../etc/passwd"));
        assert!(!is_run_id("20261124-143015-7F3A"));
    }

    #[test]
    fn outcome_serialises_as_the_spec_says() {
        assert_eq!(
            serde_json::to_string(&Outcome::TestFailure).unwrap(),
            "\"test_failure\""
        );
        assert_eq!(
            Outcome::parse("scope_disagreement"),
            Some(Outcome::ScopeDisagreement)
        );
    }
}
