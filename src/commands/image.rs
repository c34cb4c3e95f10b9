//! `lackey image build` / `lackey image push`.

use std::path::PathBuf;

use super::Ctx;
use crate::cli::{ImageBuildArgs, ImageCommand, ImagePushArgs};
use crate::config::keys;
use crate::image::{self, CpuArch, ImageSource};
use crate::output::Reporter;

pub async fn run(ctx: &Ctx, cmd: ImageCommand) -> anyhow::Result<u8> {
    match cmd {
        ImageCommand::Build(args) => build(ctx, args).await,
        ImageCommand::Push(args) => push(ctx, args).await,
    }
}

async fn build(ctx: &Ctx, args: ImageBuildArgs) -> anyhow::Result<u8> {
    let settings = ctx.settings(&[])?;
    let configured = settings.require(&keys::IMAGE_LOCAL)?.to_string();
    // The architecture the task definition runs, so one image serves local and cloud runs.
    let arch =
        CpuArch::parse(settings.require(&keys::ECS_CPU_ARCHITECTURE)?).unwrap_or(CpuArch::HOST);
    let docker = crate::runner::docker::connect().await?;
    let base = args.base.clone().unwrap_or_else(|| {
        if args.offline {
            image::OFFLINE_BASE.to_string()
        } else {
            image::ONLINE_BASE.to_string()
        }
    });
    let cwd = std::env::current_dir()?;
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
    } else if args.from_source
        || (!args.offline
            && !image::host_binary_fits(arch)
            && cwd.join("docker/Dockerfile").is_file())
    {
        if !args.from_source {
            // This lackey is not a Linux executable for the target (macOS, or another
            // architecture): the source tree is here, so compile inside Docker.
            ctx.printer.info(&format!(
                "This lackey cannot run in a linux/{} image: compiling it inside Docker from `{}`",
                arch.docker(),
                cwd.display()
            ));
        }
        (
            ImageSource::Source { dir: cwd, base },
            args.tag.unwrap_or(configured),
        )
    } else {
        (ImageSource::Binary { base }, args.tag.unwrap_or(configured))
    };
    let id = image::build(&docker, &tag, &source, arch, &ctx.printer).await?;
    if ctx.printer.json_mode() {
        ctx.printer
            .json(&serde_json::json!({"image": tag, "id": id, "platform": format!("linux/{}", arch.docker())}));
    } else {
        ctx.printer
            .result(format!("{tag} {}", image::short_id(&id)));
    }
    Ok(0)
}

/// `lackey image push`: the same `ensure_image_in_ecr` cloud runs use.
pub async fn push(ctx: &Ctx, args: ImagePushArgs) -> anyhow::Result<u8> {
    let mut flags = Vec::new();
    if let Some(i) = &args.image {
        flags.push((&keys::IMAGE_LOCAL, i.clone()));
    }
    let mut settings = ctx.settings(&flags)?;
    let aws = ctx.aws(&settings).await?;
    aws.discover_account(&mut settings).await?;
    let image = settings.require(&keys::IMAGE_LOCAL)?.to_string();
    let registry = settings.require(&keys::ECR_REGISTRY)?.to_string();
    let repository = settings.require(&keys::ECR_REPOSITORY)?.to_string();
    // The image must run on the task definition `lackey up` registered (or will).
    let configured =
        CpuArch::parse(settings.require(&keys::ECS_CPU_ARCHITECTURE)?).unwrap_or(CpuArch::HOST);
    let docker = crate::runner::docker::connect().await?;
    // The task definition's architecture and the image's state in Docker and in the
    // registry are asked at once; the platform is checked before anything is pushed.
    let (arch, probe) = tokio::join!(
        crate::cloud::ecr::task_architecture(
            &aws,
            settings.require(&keys::ECS_TASK_FAMILY)?,
            configured,
        ),
        crate::cloud::ecr::probe_image(&docker, &aws, &image, &registry, &repository)
    );
    let pushed = crate::cloud::ecr::push_if_needed(&docker, probe?, arch, &ctx.printer).await?;
    if ctx.printer.json_mode() {
        ctx.printer.json(&serde_json::json!({"image": pushed.uri, "digest": pushed.digest, "pushed": pushed.pushed}));
    } else {
        ctx.printer.result(&pushed.uri);
    }
    Ok(0)
}
