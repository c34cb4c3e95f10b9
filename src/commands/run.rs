//! `lackey run "TASK"`: one minion run, in local Docker or (with --cloud) on Fargate.

use std::time::Duration;

use super::Ctx;
use crate::cli::RunArgs;
use crate::config::{keys, Key, Settings};
use crate::output::{human_duration, Reporter, Tone};
use crate::runner::{self, docker::Limits, RunSpec};

/// The settings a run's flags carry.
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
    let settings = ctx.settings(&run_flags(&args))?;
    if args.cloud {
        return super::run_cloud::run(ctx, args, settings).await;
    }
    run_local(ctx, &args, &settings).await
}

async fn run_local(ctx: &Ctx, args: &RunArgs, settings: &Settings) -> anyhow::Result<u8> {
    let mut spec =
        RunSpec::from_settings(settings, args.task.as_deref().unwrap_or_default(), false)?
            .with_pass_env(settings, &ctx.env);
    spec.follow = args.follow;
    let limits = Limits {
        cpus: settings.number(&keys::LOCAL_CPUS)?,
        memory_mb: settings.number(&keys::LOCAL_MEMORY_MB)?,
        pids: settings.number(&keys::LOCAL_PIDS_LIMIT)?,
    };
    let result = runner::docker::run_local(&mut spec, &limits, &ctx.printer, &ctx.cancel).await?;
    let s = &result.summary;
    let repo = spec
        .repo
        .as_deref()
        .map(super::display_path)
        .unwrap_or_default();
    let note = match result.fetched {
        Some(true) => format!(" (in {repo})"),
        Some(false) => " (not created: the run made no commit)".to_string(),
        None => " (not fetched: see the error above)".to_string(),
    };
    let tone = if s.outcome == crate::summary::Outcome::Success {
        Tone::Good
    } else {
        Tone::Bad
    };
    ctx.printer.status(
        "Finished",
        tone,
        &format!(
            "run {}: {} in {}",
            s.run_id,
            s.outcome,
            human_duration(Duration::from_secs_f64(s.duration_s.max(0.0)))
        ),
    );
    super::report::write_after_run(ctx, settings, &spec.artifacts_dir());
    runner::print_summary(&ctx.printer, s, &spec.artifacts_dir(), &note);
    if result.interrupted {
        return Err(
            anyhow::Error::new(crate::error::Interrupted).context(format!(
                "run {} was interrupted; its partial artifacts are in {}/",
                s.run_id,
                spec.artifacts_dir().display()
            )),
        );
    }
    Ok(runner::exit_code(s, false))
}
