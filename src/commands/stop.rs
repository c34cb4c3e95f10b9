//! `lackey stop RUN_ID`: stop a running local container or ECS task, keeping its
//! partial artifacts.

use super::Ctx;
use crate::cli::StopArgs;
use crate::config::keys;
use crate::error::Fail;
use crate::output::{Reporter, Tone};

pub async fn run(ctx: &Ctx, args: StopArgs) -> anyhow::Result<u8> {
    if let Some(fleet) = &args.fleet {
        return super::fleet::stop(ctx, fleet).await;
    }
    let run_id = args.run_id.clone().unwrap_or_default();
    super::logs::check_run_id(&run_id)?;
    let settings = ctx.settings(&[])?;
    let docker = crate::runner::docker::connect().await;
    match &docker {
        Ok(docker) => {
            if crate::runner::docker::stop_run(docker, &run_id).await? {
                ctx.printer.status(
                    "Stopped",
                    Tone::Good,
                    &format!("local run {} (its artifacts are kept)", run_id),
                );
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
    match super::run_cloud::stop(ctx, &settings, &run_id).await {
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

/// The run may be a local one, but Docker cannot be asked.
fn docker_down(run_id: &str, e: &anyhow::Error) -> anyhow::Error {
    Fail::new(format!("cannot stop run `{run_id}`: {e}"))
    .with_hint(format!(
        "start Docker (or point DOCKER_HOST at a running daemon), then run `lackey stop {run_id}` again"
    ))
    .into()
}
