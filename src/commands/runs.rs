//! `lackey runs`: past and running runs, newest first.

use std::path::Path;

use serde::Serialize;

use super::Ctx;
use crate::cli::RunsArgs;
use crate::config::keys;
use crate::error::Fail;
use crate::runner::rundir::{Entry, RunDir};
use crate::summary::{is_run_id, Runtime};

#[derive(Serialize, Clone)]
pub struct RunRow {
    pub run_id: String,
    pub backend: String,
    pub outcome: String,
    pub duration_s: Option<f64>,
    pub branch: Option<String>,
    pub location: String,
    /// USD; null when unknown (no summary yet, or a model without a price).
    pub cost_usd: Option<f64>,
    /// Prompt tokens (uncached, cache write, cache read) plus output tokens.
    pub tokens: Option<u64>,
}

impl RunRow {
    /// The cost and token columns of a finished run's summary.
    pub fn usage_of(s: Option<&crate::summary::RunSummary>) -> (Option<f64>, Option<u64>) {
        match s {
            Some(s) => (
                s.usage.cost_usd,
                Some(s.usage.prompt_tokens() + s.usage.output_tokens),
            ),
            None => (None, None),
        }
    }
}

/// Runs with an artifact directory under `root`. A cloud run writes `.ecs-task` into
/// its directory at launch, so one still going (or whose CLI died) shows as cloud.
pub fn local_rows(root: &Path) -> Vec<RunRow> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return vec![];
    };
    entries
        .flatten()
        .filter_map(|e| {
            let id = e.file_name().to_string_lossy().to_string();
            if !is_run_id(&id) {
                return None;
            }
            // A run's directory may have been the container's to write: no-follow,
            // regular files only, size-capped (runner::rundir).
            let dir = RunDir::open(&e.path()).ok()?;
            let s = crate::runner::read_summary(&dir).ok();
            let cloud = dir.entry(".ecs-task").ok() == Some(Entry::File);
            let (cost_usd, tokens) = RunRow::usage_of(s.as_ref());
            Some(RunRow {
                cost_usd,
                tokens,
                backend: match (s.as_ref().map(|s| s.runtime), cloud) {
                    (Some(Runtime::Cloud), _) | (None, true) => "cloud".into(),
                    _ => "local".into(),
                },
                outcome: s
                    .as_ref()
                    .map(|s| s.outcome.to_string())
                    .unwrap_or_else(|| "running".into()),
                duration_s: s.as_ref().map(|s| s.duration_s),
                branch: s.as_ref().map(|s| s.branch.clone()),
                location: format!("{}/", e.path().display()),
                run_id: id,
            })
        })
        .collect()
}

pub async fn run(ctx: &Ctx, args: RunsArgs) -> anyhow::Result<u8> {
    if let Some(fleet) = &args.fleet {
        return super::fleet::runs(ctx, fleet, args.watch).await;
    }
    let settings = ctx.settings(&[])?;
    let root = std::path::PathBuf::from(settings.require(&keys::LOCAL_ARTIFACTS_DIR)?);
    let mut rows = local_rows(&root);
    // A local run whose container is gone without a summary did not finish. Without
    // Docker that cannot be told: the list is shown, then the error.
    let docker = crate::runner::docker::connect().await;
    let docker_error = match docker {
        Ok(docker) => {
            let live = crate::runner::docker::list_runs(&docker)
                .await
                .unwrap_or_default();
            for r in rows
                .iter_mut()
                .filter(|r| r.outcome == "running" && r.backend == "local")
            {
                if !live.iter().any(|l| l.run_id == r.run_id) {
                    r.outcome = "unknown".into();
                }
            }
            None
        }
        Err(e) => Some(e),
    };
    let result = |code: u8| -> anyhow::Result<u8> {
        match &docker_error {
            None => Ok(code),
            Some(e) => Err(Fail::new(format!("cannot check local runs: {e}"))
                .with_hint("the list may miss local runs, and one shown as running may have ended: start Docker (or point DOCKER_HOST at a running daemon) and run `lackey runs` again")
                .into()),
        }
    };
    // The bucket knows every cloud run: those of other machines, and the outcome of ones
    // this machine launched but did not see finish.
    let finished: Vec<String> = rows
        .iter()
        .filter(|r| r.outcome != "running")
        .map(|r| r.run_id.clone())
        .collect();
    for s3row in super::run_cloud::s3_rows(ctx, &settings, &finished, args.limit).await {
        match rows.iter_mut().find(|r| r.run_id == s3row.run_id) {
            Some(local) => {
                local.outcome = s3row.outcome;
                local.duration_s = s3row.duration_s;
                local.branch = s3row.branch;
                local.cost_usd = s3row.cost_usd;
                local.tokens = s3row.tokens;
            }
            None => rows.push(s3row),
        }
    }
    rows.sort_by(|a, b| b.run_id.cmp(&a.run_id));
    rows.truncate(args.limit);
    let priced: Vec<f64> = rows.iter().filter_map(|r| r.cost_usd).collect();
    // A fold from +0.0: an empty f64 sum is -0.0, which would print as `$-0.0000`.
    let total_cost = crate::cost::round_usd(priced.iter().fold(0.0, |a, b| a + b));
    let total_tokens: u64 = rows.iter().filter_map(|r| r.tokens).sum();
    if ctx.printer.json_mode() {
        ctx.printer.json(&serde_json::json!({
            "runs": rows,
            "total": {"cost_usd": total_cost, "tokens": total_tokens, "runs_priced": priced.len()},
        }));
        return result(0);
    }
    if rows.is_empty() {
        ctx.printer
            .result(format!("no runs yet (artifacts go to {}/)", root.display()));
        return result(0);
    }
    ctx.printer.result(format!(
        "{:<22} {:<7} {:<19} {:>9} {:>9} {:>7}  BRANCH",
        "RUN ID", "BACKEND", "OUTCOME", "DURATION", "COST", "TOKENS"
    ));
    let unpriced = rows.len() - priced.len();
    for r in rows {
        ctx.printer.result(format!(
            "{:<22} {:<7} {:<19} {:>9} {:>9} {:>7}  {}",
            r.run_id,
            r.backend,
            r.outcome,
            r.duration_s
                .map(
                    |d| crate::output::human_duration(std::time::Duration::from_secs_f64(
                        d.max(0.0)
                    ))
                )
                .unwrap_or_else(|| "-".into()),
            crate::cost::format_usd(r.cost_usd),
            r.tokens
                .map(crate::cost::format_tokens)
                .unwrap_or_else(|| "-".into()),
            r.branch.unwrap_or_else(|| "-".into())
        ));
    }
    ctx.printer.result(format!(
        "total: {} and {} tokens{}",
        crate::cost::format_usd(Some(total_cost)),
        crate::cost::format_tokens(total_tokens),
        if unpriced > 0 {
            format!(" ({unpriced} run(s) without a known cost not counted)")
        } else {
            String::new()
        }
    ));
    result(0)
}
