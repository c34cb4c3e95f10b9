//! Fleets: many runs from one command (`lackey run --tasks FILE`), locally or on Fargate.
//!
//! * [`tasks`]: the `--tasks` file (plain lines or JSON Lines).
//! * [`Manifest`]: the fleet's whole state (every run, its id, where it is, how it
//!   ended), written as it changes: to `s3://<bucket>/fleets/<fleet id>/manifest.json`
//!   for cloud fleets, to `<artifacts_dir>/fleets/<fleet id>/manifest.json` for local
//!   ones. A fleet is resumed from it.
//! * [`engine`]: the scheduler: at most `max_parallel` runs in flight, launches paced
//!   and retried on capacity and throttling errors (never dropped), one batched poll per
//!   tick, bounded collection, the token/cost budget, Ctrl-C and `stop --fleet`.
//! * [`view`]: the live view (a table on a terminal, one line per change elsewhere).
//! * [`aggregate`]: the result table and the `--json` document.
//!
//! What must stay true:
//! * Every run's id is decided before anything launches and recorded in the manifest;
//!   a run is marked `launching` in the manifest *before* its launch call, so a CLI that
//!   dies in between finds it again by its id (the `lackey:run-id` task tag) and never
//!   launches it twice.
//! * Nothing here prints: the engine reports through a [`view::View`].

pub mod aggregate;
pub mod ecs;
pub mod engine;
pub mod local;
pub mod store;
pub mod tasks;
pub mod view;

use serde::{Deserialize, Serialize};

use crate::error::Fail;
use crate::summary::{Outcome, RunSummary};

/// Writes a finished run's `report.html` into its artifact directory and returns its
/// path (the command layer builds it from the settings: the price table, the secrets
/// to redact). Each backend calls it as it collects a run, as a single run does.
pub type ReportFn =
    std::sync::Arc<dyn Fn(&std::path::Path) -> anyhow::Result<std::path::PathBuf> + Send + Sync>;

/// The manifest format's version (bumped when a field changes meaning).
pub const MANIFEST_VERSION: u32 = 1;

/// `fleet-20261128-190000-ab12`: a run id's shape behind `fleet-`.
pub fn new_fleet_id() -> String {
    format!("fleet-{}", crate::summary::new_run_id())
}

/// Whether `s` has the shape of a fleet id (guards paths and keys built from input).
pub fn is_fleet_id(s: &str) -> bool {
    s.strip_prefix("fleet-")
        .is_some_and(crate::summary::is_run_id)
}

/// Refuse an id that is not a fleet's, before it is used in a path or an S3 key.
pub fn check_fleet_id(s: &str) -> anyhow::Result<()> {
    if is_fleet_id(s) {
        Ok(())
    } else {
        Err(Fail::new(format!("`{s}` is not a fleet id"))
            .with_hint(
                "fleet ids look like fleet-20261128-190000-ab12 (printed when the fleet starts)",
            )
            .into())
    }
}

/// Where a fleet runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Where {
    Local,
    Cloud,
}

/// A task of the fleet with every field resolved (the line's own, else the command
/// line's, else the settings').
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FleetTask {
    /// The line of the tasks file it came from.
    pub line: usize,
    pub task: String,
    /// What the line set itself (the rest came from the command line and settings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blueprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

impl From<&tasks::TaskLine> for FleetTask {
    fn from(t: &tasks::TaskLine) -> Self {
        FleetTask {
            line: t.line,
            task: t.task.clone(),
            repo: t.repo.clone(),
            blueprint: t.blueprint.clone(),
            model: t.model.clone(),
            timeout: t.timeout,
        }
    }
}

/// Where a run of the fleet is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Not launched yet.
    Queued,
    /// Its launch call is (or may have been) made: on resume, look for it by its id.
    Launching,
    /// Launched; `handle` names it (the task ARN, the container).
    Launched,
    /// Finished and collected; `result` says how.
    Done,
    /// Never launched; `not_run` says why (the budget, a stop).
    NotRun,
}

/// How a finished run ended, as the aggregate needs it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub outcome: Outcome,
    pub duration_s: f64,
    /// Prompt tokens (uncached, cache write, cache read) plus output tokens.
    pub tokens: u64,
    pub cost_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pr_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl RunResult {
    pub fn of(s: &RunSummary) -> RunResult {
        RunResult {
            outcome: s.outcome,
            duration_s: s.duration_s,
            tokens: s.usage.prompt_tokens() + s.usage.output_tokens,
            cost_usd: s.usage.cost_usd,
            pr_url: s.pr_url.clone(),
            error: s.error.clone(),
        }
    }
}

/// One run of the fleet: one attempt at one task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FleetRun {
    pub run_id: String,
    /// Index into [`Manifest::tasks`].
    pub task: usize,
    /// 1-based.
    pub attempt: u32,
    pub state: RunState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<String>,
    /// The run's deadline (Unix seconds), fixed when it is first marked `launching`, so
    /// a launch made again after a crash asks for exactly the same thing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_unix: Option<f64>,
    /// The backend's last status (PROVISIONING, RUNNING, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<RunResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_run: Option<String>,
    /// Ended by Ctrl-C or `stop --fleet` (a local `--resume` runs it again).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

/// Settings the whole fleet shares, fixed when it starts (a resumed fleet reuses them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FleetOptions {
    pub max_parallel: usize,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
    /// `--stubs`, `--pr`, `--image`, `--timeout` as given (no secret is kept here).
    #[serde(default)]
    pub stubs: bool,
    #[serde(default)]
    pub pr: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blueprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

impl FleetOptions {
    /// Options with only the cap and the attempts set (no budget, nothing overridden).
    pub fn new(max_parallel: usize, attempts: u32) -> FleetOptions {
        FleetOptions {
            max_parallel,
            attempts,
            max_tokens: None,
            max_cost_usd: None,
            stubs: false,
            pr: false,
            image: None,
            repo: None,
            blueprint: None,
            model: None,
            timeout: None,
        }
    }
}

/// The whole state of a fleet (see the module docs for where it is kept).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub fleet_id: String,
    #[serde(rename = "where")]
    pub place: Where,
    pub created_at: String,
    /// sha256 of the tasks file's text: `--resume` refuses a different file.
    pub tasks_sha256: String,
    pub options: FleetOptions,
    pub tasks: Vec<FleetTask>,
    pub runs: Vec<FleetRun>,
}

impl Manifest {
    /// A new fleet: one run per task and attempt, attempts outermost (every task's
    /// first attempt launches before any second one, so a budget buys breadth first).
    /// `taken` says whether a run id is already used (an artifact directory).
    pub fn new(
        place: Where,
        tasks_text: &str,
        tasks: &[tasks::TaskLine],
        options: FleetOptions,
        taken: impl Fn(&str) -> bool,
    ) -> Manifest {
        use sha2::Digest;
        let mut seen = std::collections::HashSet::new();
        let mut runs = Vec::new();
        for attempt in 1..=options.attempts.max(1) {
            for (i, _) in tasks.iter().enumerate() {
                // Ids drawn in one millisecond share their time bits: draw until free.
                let run_id = loop {
                    let id = crate::summary::new_run_id();
                    if !taken(&id) && seen.insert(id.clone()) {
                        break id;
                    }
                };
                runs.push(FleetRun {
                    run_id,
                    task: i,
                    attempt,
                    state: RunState::Queued,
                    handle: None,
                    deadline_unix: None,
                    status: None,
                    result: None,
                    not_run: None,
                    interrupted: false,
                });
            }
        }
        Manifest {
            version: MANIFEST_VERSION,
            fleet_id: new_fleet_id(),
            place,
            created_at: chrono::Utc::now().to_rfc3339(),
            tasks_sha256: hex::encode(sha2::Sha256::digest(tasks_text.as_bytes())),
            options,
            tasks: tasks.iter().map(FleetTask::from).collect(),
            runs,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    pub fn from_json(text: &str, source: &str) -> anyhow::Result<Manifest> {
        let m: Manifest = serde_json::from_str(text).map_err(|e| {
            Fail::new(format!("{source} is not a fleet manifest: {e}"))
                .with_hint("it is written by lackey; if it was edited by hand, restore it")
        })?;
        if m.version != MANIFEST_VERSION {
            return Err(Fail::new(format!(
                "{source} is a version {} manifest; this lackey reads version {MANIFEST_VERSION}",
                m.version
            ))
            .with_hint("resume the fleet with the lackey that started it")
            .into());
        }
        if !is_fleet_id(&m.fleet_id)
            || m.runs
                .iter()
                .any(|r| !crate::summary::is_run_id(&r.run_id) || r.task >= m.tasks.len())
        {
            return Err(
                Fail::new(format!("{source} holds an invalid fleet or run id"))
                    .with_hint("it is written by lackey; if it was edited by hand, restore it")
                    .into(),
            );
        }
        Ok(m)
    }

    /// The task of a run.
    pub fn task_of(&self, run: &FleetRun) -> &FleetTask {
        &self.tasks[run.task]
    }

    /// How many tasks have a successful attempt.
    pub fn tasks_succeeded(&self) -> usize {
        (0..self.tasks.len())
            .filter(|&t| {
                self.runs.iter().any(|r| {
                    r.task == t
                        && r.result
                            .as_ref()
                            .is_some_and(|x| x.outcome == Outcome::Success)
                })
            })
            .count()
    }

    /// Whether every task has a successful attempt.
    pub fn all_succeeded(&self) -> bool {
        self.tasks_succeeded() == self.tasks.len()
    }

    /// Tokens and USD spent by finished runs (USD: None when no finished run had a price).
    pub fn spent(&self) -> (u64, Option<f64>) {
        let mut tokens = 0;
        let mut usd: Option<f64> = None;
        for r in self.runs.iter().filter_map(|r| r.result.as_ref()) {
            tokens += r.tokens;
            if let Some(c) = r.cost_usd {
                *usd.get_or_insert(0.0) += c;
            }
        }
        (tokens, usd)
    }

    /// Why no more runs may launch, when the budget is spent.
    pub fn budget_spent(&self) -> Option<String> {
        let (tokens, usd) = self.spent();
        if let Some(max) = self.options.max_tokens {
            if tokens >= max {
                return Some(format!(
                    "budget: finished runs used {tokens} tokens of --max-tokens {max}"
                ));
            }
        }
        if let (Some(max), Some(usd)) = (self.options.max_cost_usd, usd) {
            if usd >= max {
                return Some(format!(
                    "budget: finished runs cost ${usd:.4} of --max-cost-usd {max}"
                ));
            }
        }
        None
    }

    /// Runs launched and not seen to end.
    pub fn in_flight(&self) -> usize {
        self.runs
            .iter()
            .filter(|r| matches!(r.state, RunState::Launching | RunState::Launched))
            .count()
    }

    /// Counts for the footer and the summary.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for r in &self.runs {
            match r.state {
                RunState::Queued => c.queued += 1,
                RunState::Launching | RunState::Launched => c.in_flight += 1,
                RunState::NotRun => c.not_run += 1,
                RunState::Done => match r.result.as_ref().map(|x| x.outcome) {
                    Some(Outcome::Success) => c.success += 1,
                    Some(Outcome::TestFailure) => c.test_failure += 1,
                    Some(Outcome::ScopeDisagreement) => c.scope_disagreement += 1,
                    _ => c.error += 1,
                },
            }
        }
        c
    }
}

/// Runs by state and outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub queued: usize,
    pub in_flight: usize,
    pub success: usize,
    pub test_failure: usize,
    pub scope_disagreement: usize,
    pub error: usize,
    pub not_run: usize,
}

impl Counts {
    pub fn done(&self) -> usize {
        self.success + self.test_failure + self.scope_disagreement + self.error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(attempts: u32) -> FleetOptions {
        FleetOptions {
            stubs: true,
            ..FleetOptions::new(2, attempts)
        }
    }

    #[test]
    fn a_new_fleet_has_unique_ids_and_attempts_outermost() {
        let tasks = tasks::parse("t", "a\nb\nc\n").unwrap();
        let m = Manifest::new(Where::Cloud, "a\nb\nc\n", &tasks, options(2), |_| false);
        assert!(is_fleet_id(&m.fleet_id), "{}", m.fleet_id);
        assert_eq!(m.runs.len(), 6);
        let order: Vec<(usize, u32)> = m.runs.iter().map(|r| (r.task, r.attempt)).collect();
        assert_eq!(order, [(0, 1), (1, 1), (2, 1), (0, 2), (1, 2), (2, 2)]);
        let ids: std::collections::HashSet<_> = m.runs.iter().map(|r| &r.run_id).collect();
        assert_eq!(ids.len(), 6);
        let back = Manifest::from_json(&m.to_json(), "m").unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn success_means_any_attempt_succeeded() {
        let tasks = tasks::parse("t", "a\nb\n").unwrap();
        let mut m = Manifest::new(Where::Local, "", &tasks, options(2), |_| false);
        let done = |o: Outcome| RunResult {
            outcome: o,
            duration_s: 1.0,
            tokens: 10,
            cost_usd: Some(0.5),
            pr_url: None,
            error: None,
        };
        for (i, o) in [
            Outcome::Error,
            Outcome::Success,
            Outcome::Success,
            Outcome::TestFailure,
        ]
        .into_iter()
        .enumerate()
        {
            m.runs[i].state = RunState::Done;
            m.runs[i].result = Some(done(o));
        }
        // Task a: error then success; task b: success then test_failure.
        assert!(m.all_succeeded());
        m.runs[1].result = Some(done(Outcome::Error));
        m.runs[2].result = Some(done(Outcome::Error));
        assert!(!m.all_succeeded());
        assert_eq!(m.spent(), (40, Some(2.0)));
        m.options.max_cost_usd = Some(2.0);
        assert_eq!(
            m.budget_spent().as_deref(),
            Some("budget: finished runs cost $2.0000 of --max-cost-usd 2")
        );
        m.options.max_tokens = Some(41);
        m.options.max_cost_usd = None;
        assert_eq!(m.budget_spent(), None);
    }

    #[test]
    fn a_bad_manifest_is_refused() {
        let tasks = tasks::parse("t", "a\n").unwrap();
        let mut m = Manifest::new(Where::Local, "", &tasks, options(1), |_| false);
        m.runs[0].run_id = "../../etc".into();
        let e = Manifest::from_json(&m.to_json(), "manifest.json").unwrap_err();
        assert_eq!(
            e.to_string(),
            "manifest.json holds an invalid fleet or run id"
        );
        assert!(check_fleet_id("fleet-20261128-190000-ab12").is_ok());
        assert!(check_fleet_id("fleet-../x").is_err());
    }
}
