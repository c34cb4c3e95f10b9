//! `lackey minion`: the in-container entrypoint. Reads the input contract from the
//! environment (see `minion` module docs), performs the run, exits 0 only on success.
//! `lackey proxy`: a cloud run's credential sidecar (`proxy::sidecar`), the task's other
//! container; serves until the task stops.

use super::Ctx;
use crate::cli::MinionArgs;
use crate::minion::{self, MinionInput};

pub async fn run(_ctx: &Ctx, args: MinionArgs) -> anyhow::Result<u8> {
    let mut input = MinionInput::from_env(|k| std::env::var(k).ok())?;
    input.model = minion::llm::model_id(&input.model)
        .map_err(|e| anyhow::anyhow!("{}: {e}", crate::run_contract::var::MODEL))?;
    if let Some(dir) = args.workdir {
        input.work_dir = dir;
    }
    let summary = minion::run(input).await;
    Ok(minion::exit_code(&summary))
}

pub async fn proxy(ctx: &Ctx) -> anyhow::Result<u8> {
    let input = crate::run_contract::SidecarInput::from_env(|k| std::env::var(k).ok())?;
    crate::proxy::sidecar::serve(input, ctx.cancel.clone()).await?;
    Ok(0)
}
