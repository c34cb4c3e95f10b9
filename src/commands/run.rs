//! `lackey run "TASK"`: one minion run, in local Docker or (with --cloud) on Fargate.
//!
//! Settings → a typed [`RunSpec`] and a backend → [`runner::run_one`] → print. Which
//! backend runs it is the only difference between a local and a cloud run here.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::Ctx;
use crate::cli::RunArgs;
use crate::config::{keys, validate, Key, Settings};
use crate::output::{human_duration, Printer, Reporter, Tone};
use crate::runner::docker::{Docker, Limits};
use crate::runner::ecs::{CloudSpec, Ecs};
use crate::runner::{self, Backend, RunOutcome, RunSpec};
use crate::summary::{Outcome, RunSummary, Runtime};

/// The settings a run's flags carry (flags are one source of the settings table, so
/// `lackey config` shows where each value came from and one validator checks it).
pub fn run_flags(args: &RunArgs) -> Vec<(&'static Key, String)> {
    let mut flags: Vec<(&'static Key, String)> = Vec::new();
    if let Some(t) = args.timeout {
        flags.push((&keys::RUN_TIMEOUT, t.to_string()));
    }
    if args.stubs {
        flags.push((&keys::RUN_STUBS, "1".into()));
    }
    if args.pr {
        flags.push((&keys::RUN_PR, "1".into()));
    }
    for (key, value) in [
        (&keys::RUN_REPO, &args.repo),
        (&keys::IMAGE_LOCAL, &args.image),
        (&keys::RUN_BLUEPRINT, &args.blueprint),
        (&keys::RUN_MODEL, &args.model),
    ] {
        if let Some(v) = value {
            flags.push((key, v.clone()));
        }
    }
    flags
}

pub async fn run(ctx: &Ctx, args: RunArgs) -> anyhow::Result<u8> {
    if args.tasks.is_some() {
        return super::fleet::run(ctx, args).await;
    }
    let mut settings = ctx.settings(&run_flags(&args))?;
    // `[run] env` goes to both backends: a local container's environment, or the
    // task's container overrides.
    let mut spec = RunSpec::from_settings(
        &settings,
        args.task.as_deref().unwrap_or_default(),
        args.cloud,
    )?
    .with_pass_env(&settings, &ctx.env)?;
    spec.follow = args.follow;
    // The run's branch is decided here, before launch (for a GitHub repository, by the
    // cloud backend once it can read the repository).
    spec.push_to(args.push_to.clone())?;
    spec.decide_branch_in_repo()?;
    let backend: Box<dyn Backend> = if args.cloud {
        Box::new(cloud_backend(ctx, &mut settings, &spec).await?)
    } else {
        Box::new(Docker::connect(Limits::from_settings(&settings)?).await?)
    };
    let outcome = runner::run_one(&*backend, &mut spec, &ctx.printer, &ctx.cancel).await?;
    if let Some(e) = &outcome.fetch_error {
        ctx.printer.error(e);
    }
    finished(ctx, backend.runtime(), &outcome);
    // The report, beside the artifacts (and, for a cloud run, in the bucket: that
    // upload goes while the summary is printed, and is waited for before the exit).
    let report = super::report::write_after_run(ctx, &settings, &outcome.dir);
    let kept = async {
        match &report {
            Some(path) => {
                let name = crate::report::REPORT_FILE;
                backend.keep_beside(&outcome.summary, path, name).await
            }
            None => Ok(()),
        }
    };
    let note = branch_note(backend.runtime(), &spec, &outcome);
    let (kept, ()) = tokio::join!(kept, async {
        print_summary(&ctx.printer, &outcome.summary, &outcome.dir, &note);
    });
    if let Err(e) = kept {
        ctx.printer.warn(&format!("the report was {e:#}"));
    }
    if outcome.interrupted {
        let what = match backend.runtime() {
            Runtime::Local => "its partial artifacts are",
            Runtime::Cloud => "its task was stopped and its artifacts are",
        };
        return Err(
            anyhow::Error::new(crate::error::Interrupted).context(format!(
                "run {} was interrupted; {what} in {}/",
                outcome.summary.run_id,
                outcome.dir.display()
            )),
        );
    }
    Ok(runner::exit_code(&outcome.summary, false))
}

/// The ECS backend for a run, its settings checked and discovered: a GitHub
/// repository needs the App's settings, checked before anything is created in AWS.
async fn cloud_backend(ctx: &Ctx, settings: &mut Settings, spec: &RunSpec) -> anyhow::Result<Ecs> {
    let github_repo = spec
        .github_repo
        .clone()
        .filter(|r| validate::is_github_repo(r));
    if spec.repo.is_some() && github_repo.is_none() {
        ctx.printer.info("No GitHub repository configured: the local repository goes up as a git bundle, and the branch comes back as one");
    }
    if github_repo.is_some() {
        // These need no AWS call to check, and name their variables.
        settings.require(&keys::GITHUB_APP_ID)?;
        settings.require(&keys::GITHUB_INSTALLATION_ID)?;
    }
    let aws = super::cloud_aws(ctx, settings).await?;
    let cloud = CloudSpec::from_settings(settings, github_repo.as_deref())?;
    Ok(Ecs::new(aws, cloud))
}

/// `Finished run …: outcome` (with the duration for local runs).
fn finished(ctx: &Ctx, runtime: Runtime, outcome: &RunOutcome) {
    let s = &outcome.summary;
    let tone = if s.outcome == Outcome::Success {
        Tone::Good
    } else {
        Tone::Bad
    };
    let message = match runtime {
        Runtime::Local => format!(
            "run {}: {} in {}",
            s.run_id,
            s.outcome,
            human_duration(Duration::from_secs_f64(s.duration_s.max(0.0)))
        ),
        Runtime::Cloud => format!("run {}: {}", s.run_id, s.outcome),
    };
    ctx.printer.status("Finished", tone, &message);
}

/// What the summary's branch line adds: where the branch is now.
fn branch_note(runtime: Runtime, spec: &RunSpec, outcome: &RunOutcome) -> String {
    match (outcome.fetched, runtime) {
        (Some(true), Runtime::Local) => format!(
            " (in {})",
            spec.repo
                .as_deref()
                .map(super::display_path)
                .unwrap_or_default()
        ),
        (Some(true), Runtime::Cloud) => " (fetched into the local repository)".to_string(),
        (Some(false), _) => " (not created: the run made no commit)".to_string(),
        (None, Runtime::Local) => " (not fetched: see the error above)".to_string(),
        (None, Runtime::Cloud) => outcome
            .pushed_to
            .as_ref()
            .map(|repo| format!(" (pushed to {repo})"))
            .unwrap_or_default(),
    }
}

/// The summary object `--json` prints: run_summary.json plus where the artifacts are.
#[derive(Serialize)]
pub struct SummaryOutput<'a> {
    #[serde(flatten)]
    pub summary: &'a RunSummary,
    pub artifacts_dir: String,
}

/// Print the final summary (human) or the summary object (`--json`).
pub fn print_summary(printer: &Printer, summary: &RunSummary, artifacts: &Path, branch_note: &str) {
    let dir = format!("{}/", artifacts.display());
    if printer.json_mode() {
        printer.json(&SummaryOutput {
            summary,
            artifacts_dir: dir,
        });
        return;
    }
    printer.result(format!("outcome:   {}", summary.outcome));
    printer.result(format!(
        "runtime:   {}, {}",
        runner::backend::runtime_name(summary.runtime),
        human_duration(Duration::from_secs_f64(summary.duration_s.max(0.0)))
    ));
    printer.result(format!("branch:    {}{branch_note}", summary.branch));
    if let Some(pr) = &summary.pr_url {
        printer.result(format!("pr:        {pr}"));
    }
    printer.result(format!("artifacts: {dir}"));
    let report = artifacts.join(crate::report::REPORT_FILE);
    if report.is_file() {
        printer.result(format!("report:    {}", report.display()));
    }
    if let Some(s3) = &summary.s3_prefix {
        printer.result(format!("s3:        {s3}"));
    }
    if let Some(cost) = cost_line(&summary.usage) {
        printer.result(format!("cost:      {cost}"));
    }
    if let Some(e) = &summary.error {
        printer.result(format!("error:     {e}"));
    }
}

/// `$0.0196 (7 LLM calls, 12.3k tokens in, 1.2k out, 80% of input from the cache)`; the
/// reason when the model has no price; nothing for a summary without usage.
pub fn cost_line(u: &crate::summary::Usage) -> Option<String> {
    use crate::cost::{format_tokens, format_usd};
    match (u.cost_usd, &u.cost_note) {
        (_, _) if u.llm_calls == 0 => Some("$0 (no LLM call)".to_string()),
        (Some(c), _) => Some(format!(
            "{} ({} LLM calls, {} tokens in, {} out, {:.0}% of input from the cache)",
            format_usd(Some(c)),
            u.llm_calls,
            format_tokens(u.prompt_tokens()),
            format_tokens(u.output_tokens),
            100.0 * u.cache_hit_ratio()
        )),
        (None, Some(note)) => Some(format!("unknown: {note}")),
        (None, None) => None,
    }
}
