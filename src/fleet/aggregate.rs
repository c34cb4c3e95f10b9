//! A fleet's result: the table printed at its end and the `--json` document
//! `{"fleet_id", "runs": [<run summary>…], "not_run": […], "summary": {…}}`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::{Manifest, RunState};
use crate::output::{human_duration, Printer};
use crate::summary::{Outcome, RunSummary, Runtime};

/// One finished run: its `run_summary.json` plus where its artifacts are and which
/// task and attempt it was.
#[derive(Serialize)]
pub struct RunEntry {
    #[serde(flatten)]
    pub summary: RunSummary,
    pub artifacts_dir: String,
    pub task_line: usize,
    pub attempt: u32,
}

/// A run that never launched, and why.
#[derive(Serialize)]
pub struct NotRunEntry {
    pub run_id: String,
    pub task: String,
    pub task_line: usize,
    pub attempt: u32,
    pub reason: String,
}

/// Counts by outcome (runs), and by task.
#[derive(Serialize, Default, Debug, PartialEq)]
pub struct SummaryCounts {
    pub success: usize,
    pub test_failure: usize,
    pub scope_disagreement: usize,
    pub error: usize,
    pub not_run: usize,
    pub runs: usize,
    pub tasks: usize,
    /// Tasks with at least one successful attempt.
    pub tasks_succeeded: usize,
    pub tokens: u64,
    pub cost_usd: Option<f64>,
}

#[derive(Serialize)]
pub struct Aggregate {
    pub fleet_id: String,
    pub runs: Vec<RunEntry>,
    pub not_run: Vec<NotRunEntry>,
    pub summary: SummaryCounts,
}

impl Aggregate {
    /// From the manifest, with the summaries this process collected (`fresh`) and, for
    /// runs finished earlier, the ones under `artifacts_root`.
    pub fn build(
        m: &Manifest,
        fresh: &HashMap<String, RunSummary>,
        artifacts_root: &Path,
    ) -> Aggregate {
        let mut runs = Vec::new();
        let mut not_run = Vec::new();
        for r in &m.runs {
            let task = m.task_of(r);
            let dir = artifacts_root.join(&r.run_id);
            match r.state {
                RunState::Done => {
                    let summary = fresh
                        .get(&r.run_id)
                        .cloned()
                        .or_else(|| {
                            crate::runner::rundir::RunDir::open(&dir)
                                .ok()
                                .and_then(|d| crate::runner::read_summary(&d).ok())
                        })
                        .unwrap_or_else(|| stand_in(m, r));
                    runs.push(RunEntry {
                        summary,
                        artifacts_dir: format!("{}/", dir.display()),
                        task_line: task.line,
                        attempt: r.attempt,
                    });
                }
                _ => not_run.push(NotRunEntry {
                    run_id: r.run_id.clone(),
                    task: task.task.clone(),
                    task_line: task.line,
                    attempt: r.attempt,
                    reason: r
                        .not_run
                        .clone()
                        .unwrap_or_else(|| "the fleet ended before it ran".into()),
                }),
            }
        }
        let c = m.counts();
        let (tokens, cost_usd) = m.spent();
        let tasks_succeeded = m.tasks_succeeded();
        Aggregate {
            fleet_id: m.fleet_id.clone(),
            summary: SummaryCounts {
                success: c.success,
                test_failure: c.test_failure,
                scope_disagreement: c.scope_disagreement,
                error: c.error,
                not_run: not_run.len(),
                runs: m.runs.len(),
                tasks: m.tasks.len(),
                tasks_succeeded,
                tokens,
                cost_usd,
            },
            runs,
            not_run,
        }
    }

    /// The table (human) or the document (`--json`), on stdout.
    pub fn print(&self, printer: &Printer) {
        if printer.json_mode() {
            printer.json(self);
            return;
        }
        for line in self.table() {
            printer.result(line);
        }
    }

    /// The human table, line by line.
    pub fn table(&self) -> Vec<String> {
        let mut out = vec![format!(
            "{:<20}  {:<40}  {:<18}  {:>8}  {:>7}  {:<10}  ARTIFACTS",
            "RUN", "TASK", "OUTCOME", "DURATION", "TOKENS", "PR"
        )];
        for r in &self.runs {
            let s = &r.summary;
            out.push(format!(
                "{:<20}  {:<40}  {:<18}  {:>8}  {:>7}  {:<10}  {}",
                s.run_id,
                super::view::clip(&s.task, 40),
                s.outcome.as_str(),
                human_duration(Duration::from_secs_f64(s.duration_s.max(0.0))),
                crate::cost::format_tokens(s.usage.prompt_tokens() + s.usage.output_tokens),
                s.pr_url.as_deref().unwrap_or("-"),
                r.artifacts_dir
            ));
        }
        for n in &self.not_run {
            out.push(format!(
                "{:<20}  {:<40}  {:<18}  {}",
                n.run_id,
                super::view::clip(&n.task, 40),
                "not run",
                n.reason
            ));
        }
        let c = &self.summary;
        let mut line = format!(
            "fleet {}: {} of {} tasks succeeded; runs: {} success, {} test_failure, {} scope_disagreement, {} error",
            self.fleet_id,
            c.tasks_succeeded,
            c.tasks,
            c.success,
            c.test_failure,
            c.scope_disagreement,
            c.error
        );
        if c.not_run > 0 {
            line.push_str(&format!(", {} not run", c.not_run));
        }
        line.push_str(&format!(
            "; {} tokens, {}",
            crate::cost::format_tokens(c.tokens),
            crate::cost::format_usd(c.cost_usd)
        ));
        out.push(line);
        out
    }
}

/// A summary for a run whose `run_summary.json` is nowhere (its directory was removed).
fn stand_in(m: &Manifest, r: &super::FleetRun) -> RunSummary {
    let x = r.result.clone();
    RunSummary {
        run_id: r.run_id.clone(),
        task: m.task_of(r).task.clone(),
        outcome: x.as_ref().map(|x| x.outcome).unwrap_or(Outcome::Error),
        runtime: match m.place {
            super::Where::Local => Runtime::Local,
            super::Where::Cloud => Runtime::Cloud,
        },
        branch: String::new(),
        base_sha: None,
        head_sha: None,
        started_at: String::new(),
        finished_at: String::new(),
        duration_s: x.as_ref().map(|x| x.duration_s).unwrap_or_default(),
        steps: vec![],
        usage: Default::default(),
        pr_url: x.as_ref().and_then(|x| x.pr_url.clone()),
        s3_prefix: None,
        error: x.and_then(|x| x.error),
    }
}

/// Where a fleet's local manifest lives: `<artifacts_root>/fleets/<fleet id>/`.
pub fn local_fleet_dir(artifacts_root: &Path, fleet_id: &str) -> PathBuf {
    artifacts_root.join("fleets").join(fleet_id)
}
