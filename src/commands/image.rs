//! `lackey image build` / `lackey image push`.

use std::path::PathBuf;

use super::Ctx;
use crate::cli::{ImageBuildArgs, ImageCommand};
use crate::config::keys;
use crate::runner::image::{self, ImageSource};

pub async fn run(ctx: &Ctx, cmd: ImageCommand) -> anyhow::Result<u8> {
    match cmd {
        ImageCommand::Build(args) => build(ctx, args).await,
        ImageCommand::Push(args) => super::run_cloud::push(ctx, args).await,
    }
}

async fn build(ctx: &Ctx, args: ImageBuildArgs) -> anyhow::Result<u8> {
    let settings = ctx.settings(&[])?;
    let configured = settings.require(&keys::IMAGE_LOCAL)?.to_string();
    let docker = crate::runner::docker::connect().await?;
    let (source, tag) = if args.project {
        let repo = match &args.repo {
            Some(r) => r.clone(),
            None => PathBuf::from(settings.require(&keys::RUN_REPO)?),
        };
        let repo = crate::runner::resolve_repo(&repo)?;
        (
            ImageSource::Project {
                repo,
                base: configured.clone(),
            },
            args.tag.unwrap_or_else(|| "minion-app:latest".into()),
        )
    } else if args.from_source {
        (
            ImageSource::Source {
                dir: std::env::current_dir()?,
            },
            args.tag.unwrap_or(configured),
        )
    } else {
        let base = if args.offline {
            image::OFFLINE_BASE
        } else {
            image::ONLINE_BASE
        };
        (
            ImageSource::Binary { base: base.into() },
            args.tag.unwrap_or(configured),
        )
    };
    let id = image::build(&docker, &tag, &source, &ctx.printer).await?;
    if ctx.printer.json_mode() {
        ctx.printer
            .json(&serde_json::json!({"image": tag, "id": id}));
    } else {
        ctx.printer
            .result(format!("{tag} {}", image::short_id(&id)));
    }
    Ok(0)
}
