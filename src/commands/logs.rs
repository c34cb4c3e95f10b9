//! `lackey logs RUN_ID [--follow]`: a run's log, from its artifacts, its container, or
//! CloudWatch.

use super::Ctx;
use crate::cli::LogsArgs;
use crate::config::keys;
use crate::error::Fail;
use crate::output::Reporter;

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
    // The run directory was the container's to write: read `minion.log` no-follow, a
    // regular file only, size-capped, so a planted link never prints a host file.
    if let Ok(run_dir) = crate::runner::rundir::RunDir::open(&dir) {
        match run_dir.entry("minion.log")? {
            crate::runner::rundir::Entry::Missing => {}
            _ => {
                let cap = crate::runner::rundir::MAX_ARTIFACT_BYTES;
                let (bytes, more) = run_dir.read_capped("minion.log", cap).map_err(|e| {
                    Fail::new(format!(
                        "cannot read `{}/minion.log`: {e}",
                        dir.display()
                    ))
                    .with_hint("the run directory holds something other than the minion's log; inspect it by hand")
                })?;
                for line in String::from_utf8_lossy(&bytes).lines() {
                    ctx.printer.raw(line);
                }
                if more {
                    ctx.printer.warn(&format!(
                        "minion.log is longer than {cap} bytes; the rest was not printed"
                    ));
                }
                return Ok(0);
            }
        }
    }
    super::run_cloud::logs(ctx, &settings, &args).await
}
