//! `lackey logs RUN_ID [--follow]`: a run's log, from its running container, its
//! artifacts, or the cloud (its CloudWatch stream, or the minion.log it uploaded).

use super::Ctx;
use crate::cli::LogsArgs;
use crate::config::keys;
use crate::error::Fail;
use crate::output::Reporter;
use crate::runner::docker::Docker;
use crate::runner::Backend;

pub fn check_run_id(id: &str) -> anyhow::Result<()> {
    if crate::summary::is_run_id(id) {
        Ok(())
    } else {
        Err(Fail::new(format!(
            "`{id}` is not a run id (they look like 20261124-143015-7f3a)"
        ))
        .with_hint("`lackey runs` lists them")
        .into())
    }
}

pub async fn run(ctx: &Ctx, args: LogsArgs) -> anyhow::Result<u8> {
    check_run_id(&args.run_id)?;
    let settings = ctx.settings(&[])?;
    let dir =
        std::path::PathBuf::from(settings.require(&keys::LOCAL_ARTIFACTS_DIR)?).join(&args.run_id);
    let sink = |l: &str| ctx.printer.raw(l);
    if args.follow {
        if let Ok(docker) = Docker::lookup().await {
            if docker.logs(&args.run_id, true, &sink, &ctx.cancel).await? {
                return Ok(0);
            }
        }
    }
    if let Some((text, more)) = crate::runner::read_log(&dir)? {
        for line in text.lines() {
            ctx.printer.raw(crate::output::visible(line));
        }
        if more {
            ctx.printer.warn(&format!(
                "minion.log is longer than {} bytes; the rest was not printed",
                crate::rundir::MAX_ARTIFACT_BYTES
            ));
        }
        return Ok(0);
    }
    let found = match super::ecs_lookup(ctx, &settings).await? {
        Some(ecs) => {
            ecs.logs(&args.run_id, args.follow, &sink, &ctx.cancel)
                .await?
        }
        None => false,
    };
    if found {
        Ok(0)
    } else {
        Err(
            Fail::new(format!("no run `{}` here or in the cloud", args.run_id))
                .with_hint("`lackey runs` lists the runs")
                .into(),
        )
    }
}
