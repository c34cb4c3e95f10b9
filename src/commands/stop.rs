//! `lackey stop RUN_ID`: stop a running local container or ECS task, keeping its
//! partial artifacts.

use super::Ctx;
use crate::cli::StopArgs;
use crate::output::{Reporter, Tone};

pub async fn run(ctx: &Ctx, args: StopArgs) -> anyhow::Result<u8> {
    super::logs::check_run_id(&args.run_id)?;
    let settings = ctx.settings(&[])?;
    if let Ok(docker) = crate::runner::docker::connect().await {
        if crate::runner::docker::stop_run(&docker, &args.run_id).await? {
            ctx.printer.status(
                "Stopped",
                Tone::Good,
                &format!("local run {} (its artifacts are kept)", args.run_id),
            );
            return Ok(0);
        }
    }
    super::run_cloud::stop(ctx, &settings, &args.run_id).await
}
