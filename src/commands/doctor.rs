//! `lackey doctor`: every setup phase checked, a fix for each failure.

use std::time::Instant;

use super::Ctx;
use crate::cli::{DoctorArgs, Phase};
use crate::config::keys;
use crate::doctor::{self, Doctor, Status};
use crate::output::Reporter;

pub async fn run(ctx: &Ctx, args: DoctorArgs) -> anyhow::Result<u8> {
    let mut flags: Vec<(&'static crate::config::Key, String)> = Vec::new();
    if let Some(repo) = &args.repo {
        flags.push((&keys::RUN_REPO, repo.clone()));
    }
    if let Some(image) = &args.image {
        flags.push((&keys::IMAGE_LOCAL, image.clone()));
    }
    let settings = ctx.settings(&flags)?;
    if args.phase.contains(&Phase::Cloud) && !args.e2e {
        return Err(crate::error::Fail::new(
            "the `cloud` phase launches a task on Fargate and runs only with --e2e",
        )
        .with_hint("lackey doctor --e2e (or --phase cloud --e2e)")
        .into());
    }
    let mut phases = if args.phase.is_empty() {
        vec![Phase::Local, Phase::Aws, Phase::Infra]
    } else {
        args.phase.clone()
    };
    if args.e2e && !phases.contains(&Phase::Cloud) {
        phases.push(Phase::Cloud);
    }
    let t0 = Instant::now();
    let aws = if phases.iter().any(|p| *p != Phase::Local) {
        ctx.aws(&settings).await
    } else {
        Err(anyhow::anyhow!("the AWS phases were not asked for"))
    };
    let d = Doctor {
        settings,
        aws: &aws,
        reporter: &ctx.printer,
    };
    let spinner = ctx.printer.spinner("checking");
    let checks = doctor::run(&d, &phases, &ctx.printer, &ctx.cancel).await;
    drop(spinner);
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    if ctx.printer.json_mode() {
        ctx.printer.json(&serde_json::json!({ "checks": checks }));
    } else {
        for c in &checks {
            let mark = match c.status {
                Status::Pass => "✓",
                Status::Warn => "!",
                Status::Fail => "✗",
                Status::Skip => "-",
            };
            ctx.printer
                .result(format!("{mark} {}/{} — {}", c.phase, c.name, c.detail));
            if matches!(c.status, Status::Warn | Status::Fail) {
                if let Some(h) = &c.hint {
                    ctx.printer.result(format!("    hint: {h}"));
                }
            }
        }
        let count = |s: Status| checks.iter().filter(|c| c.status == s).count();
        let (passed, warned, skipped) = (
            count(Status::Pass),
            count(Status::Warn),
            count(Status::Skip),
        );
        ctx.printer.line(format!(
            "{} checks in {:.2}s: {passed} passed, {warned} warned, {failed} failed, {skipped} skipped",
            checks.len(),
            t0.elapsed().as_secs_f64(),
        ));
    }
    if ctx.cancel.is_cancelled() {
        return Err(anyhow::Error::new(crate::error::Interrupted));
    }
    Ok(if failed > 0 { 1 } else { 0 })
}
