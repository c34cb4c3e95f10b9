//! `lackey stop RUN_ID`: stop a running local container or ECS task, keeping its
//! partial artifacts.

use super::Ctx;
use crate::cli::StopArgs;
use crate::config::keys;
use crate::error::Fail;
use crate::output::{Reporter, Tone};
use crate::runner::docker::Docker;
use crate::runner::Backend;

pub async fn run(ctx: &Ctx, args: StopArgs) -> anyhow::Result<u8> {
    if let Some(fleet) = &args.fleet {
        return super::fleet::stop(ctx, fleet).await;
    }
    let run_id = args.run_id.clone().unwrap_or_default();
    super::logs::check_run_id(&run_id)?;
    let settings = ctx.settings(&[])?;
    let docker = Docker::lookup().await;
    match &docker {
        Ok(docker) => {
            if let Some(what) = docker.stop(&run_id).await? {
                ctx.printer.status("Stopped", Tone::Good, &what);
                return Ok(0);
            }
        }
        Err(e) => {
            // A local run (its artifact directory here, and no ECS task recorded in it)
            // can only be stopped through Docker: say that Docker is the problem.
            let dir = settings
                .get(&keys::LOCAL_ARTIFACTS_DIR)
                .map(|root| std::path::Path::new(root).join(&run_id));
            let local = dir
                .as_ref()
                .is_some_and(|d| d.is_dir() && !d.join(".ecs-task").exists());
            if local {
                return Err(docker_down(&run_id, e));
            }
        }
    }
    match stop_in_cloud(ctx, &settings, &run_id).await {
        Err(cloud) => match &docker {
            Err(e) => {
                tracing::debug!("cloud lookup of {}: {cloud:#}", run_id);
                Err(docker_down(&run_id, e))
            }
            Ok(_) => Err(cloud),
        },
        ok => ok,
    }
}

/// StopTask (the minion uploads its artifacts on SIGTERM).
async fn stop_in_cloud(
    ctx: &Ctx,
    settings: &crate::config::Settings,
    run_id: &str,
) -> anyhow::Result<u8> {
    let stopped = match super::ecs_lookup(ctx, settings).await? {
        Some(ecs) => ecs.stop(run_id).await?,
        None => None,
    };
    match stopped {
        Some(what) => {
            ctx.printer.status("Stopped", Tone::Good, &what);
            Ok(0)
        }
        None => Err(Fail::new(format!("no running run `{run_id}`"))
            .with_hint("`lackey runs` lists the runs")
            .into()),
    }
}

/// The run may be a local one, but Docker cannot be asked.
fn docker_down(run_id: &str, e: &anyhow::Error) -> anyhow::Error {
    Fail::new(format!("cannot stop run `{run_id}`: {e}"))
    .with_hint(format!(
        "start Docker (or point DOCKER_HOST at a running daemon), then run `lackey stop {run_id}` again"
    ))
    .into()
}
