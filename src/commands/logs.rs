//! `lackey logs RUN_ID [--follow]`: a run's log, from its artifacts, its container, or
//! CloudWatch.

use super::Ctx;
use crate::cli::LogsArgs;
use crate::config::keys;
use crate::error::Fail;

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
    if args.follow {
        if let Ok(docker) = crate::runner::docker::connect().await {
            let live = crate::runner::docker::list_runs(&docker).await?;
            if let Some(run) = live.iter().find(|r| r.run_id == args.run_id) {
                crate::runner::docker::follow_logs(&docker, &run.name, |l| ctx.printer.raw(l))
                    .await;
                return Ok(0);
            }
        }
    }
    let log = dir.join("minion.log");
    if log.is_file() {
        let text = std::fs::read_to_string(&log)?;
        for line in text.lines() {
            ctx.printer.raw(line);
        }
        return Ok(0);
    }
    super::run_cloud::logs(ctx, &settings, &args).await
}
