//! Cloud runs (ECS Fargate): `run --cloud`, and the cloud side of `runs`, `logs`,
//! `stop` and `image push`.

use super::Ctx;
use crate::cli::{ImagePushArgs, LogsArgs, RunArgs};
use crate::config::Settings;
use crate::error::Fail;

fn not_yet(what: &str) -> anyhow::Error {
    Fail::new(format!("{what} is not built yet in this version of lackey")).into()
}

pub async fn run(_ctx: &Ctx, _args: RunArgs, _settings: Settings) -> anyhow::Result<u8> {
    Err(not_yet("`lackey run --cloud` (ECS Fargate runs)"))
}

pub async fn s3_rows(
    _ctx: &Ctx,
    _settings: &Settings,
    _local: &[super::runs::RunRow],
) -> Vec<super::runs::RunRow> {
    Vec::new()
}

pub async fn logs(_ctx: &Ctx, _settings: &Settings, args: &LogsArgs) -> anyhow::Result<u8> {
    Err(Fail::new(format!("no local run `{}`", args.run_id))
        .with_hint("`lackey runs` lists the runs")
        .into())
}

pub async fn stop(_ctx: &Ctx, _settings: &Settings, run_id: &str) -> anyhow::Result<u8> {
    Err(Fail::new(format!("no running run `{run_id}`"))
        .with_hint("`lackey runs` lists the runs")
        .into())
}

pub async fn push(_ctx: &Ctx, _args: ImagePushArgs) -> anyhow::Result<u8> {
    Err(not_yet("`lackey image push`"))
}
