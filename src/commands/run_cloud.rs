//! Cloud runs (ECS Fargate): `run --cloud`, and the cloud side of `runs`, `logs`,
//! `stop` and `image push`.

use std::time::Duration;

use super::Ctx;
use crate::aws::{Aws, AwsResultExt};
use crate::cli::{ImagePushArgs, LogsArgs, RunArgs};
use crate::config::{keys, validate, Settings};
use crate::error::Fail;
use crate::output::{Reporter, Tone};
use crate::runner::ecs::CloudSpec;
use crate::runner::{self, RunSpec};

/// Settings a cloud run needs, with the account, subnets and security group
/// discovered when not given. A value found nowhere is an error naming its variable.
pub async fn cloud_settings(ctx: &Ctx, settings: &mut Settings) -> anyhow::Result<Aws> {
    // The region may also come from the AWS profile; with none anywhere, connecting
    // fails naming AWS_REGION.
    let aws = ctx.aws(settings).await?;
    crate::stack::discover(&aws, settings).await?;
    Ok(aws)
}

pub async fn run(ctx: &Ctx, args: RunArgs, mut settings: Settings) -> anyhow::Result<u8> {
    let mut spec =
        RunSpec::from_settings(&settings, args.task.as_deref().unwrap_or_default(), true)?;
    spec.follow = args.follow;
    // A GitHub repository needs the App's settings; they are checked before anything
    // is created in AWS.
    let github_repo = spec
        .github_repo
        .clone()
        .filter(|r| validate::is_github_repo(r));
    if spec.repo.is_some() && github_repo.is_none() {
        ctx.printer.info("No GitHub repository configured: the local repository goes up as a git bundle, and the branch comes back as one");
    }
    if github_repo.is_some() {
        // These need no AWS call to check, and name their variables.
        settings.require(&keys::GITHUB_APP_ID)?;
        settings.require(&keys::GITHUB_INSTALLATION_ID)?;
    }
    let aws = cloud_settings(ctx, &mut settings).await?;
    let cloud = CloudSpec::from_settings(&settings, github_repo.as_deref())?;
    let result = runner::ecs::run_cloud(&mut spec, &cloud, &aws, &ctx.printer, &ctx.cancel).await?;
    let note = match result.fetched {
        Some(true) => " (fetched into the local repository)".to_string(),
        Some(false) => " (not created: the run made no commit)".to_string(),
        None if cloud.github.is_some() => format!(
            " (pushed to {})",
            cloud
                .github
                .as_ref()
                .map(|g| g.repo.as_str())
                .unwrap_or_default()
        ),
        None => String::new(),
    };
    // The report, beside the artifacts here and in the bucket.
    if let Some(path) = super::report::write_after_run(ctx, &settings, &spec.artifacts_dir()) {
        let key = format!("{}/{}", spec.run_id, crate::report::REPORT_FILE);
        if let Err(e) = crate::cloud::s3::upload_file(&aws.s3(), &path, &cloud.bucket, &key).await {
            ctx.printer.warn(&format!(
                "the report was not uploaded to s3://{}/{key}: {e:#}",
                cloud.bucket
            ));
        }
    }
    runner::print_summary(&ctx.printer, &result.summary, &spec.artifacts_dir(), &note);
    if result.interrupted {
        return Err(
            anyhow::Error::new(crate::error::Interrupted).context(format!(
                "run {} was interrupted; its task was stopped and its artifacts are in {}/",
                spec.run_id,
                spec.artifacts_dir().display()
            )),
        );
    }
    Ok(runner::exit_code(&result.summary, false))
}

/// The newest runs in the artifact bucket (when AWS is configured), with their
/// summaries; `have` lists the ids whose summary is already on this machine (not fetched
/// again). A bucket that cannot be listed is reported, not fatal.
pub async fn s3_rows(
    ctx: &Ctx,
    settings: &Settings,
    have: &[String],
    limit: usize,
) -> Vec<super::runs::RunRow> {
    let (Some(bucket), Some(_)) = (
        settings.get(&keys::BUCKET_NAME),
        settings.get(&keys::AWS_REGION),
    ) else {
        return vec![];
    };
    let Ok(aws) = ctx.aws(settings).await else {
        return vec![];
    };
    let s3 = aws.s3();
    let mut ids: Vec<String> = Vec::new();
    let listing = async {
        let mut pages = s3
            .list_objects_v2()
            .bucket(bucket)
            .delimiter("/")
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.aws(format!("failed to list `s3://{bucket}/`"))?;
            ids.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(|p| p.trim_end_matches('/').to_string()))
                    .filter(|p| crate::summary::is_run_id(p)),
            );
        }
        Ok::<_, anyhow::Error>(())
    };
    match tokio::time::timeout(Duration::from_secs(20), listing).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            ctx.printer.warn(&format!("cloud runs not listed: {e:#}"));
            return vec![];
        }
        Err(_) => {
            ctx.printer.warn(&format!(
                "cloud runs not listed: listing s3://{bucket}/ took over 20 s"
            ));
            return vec![];
        }
    }
    // Run ids sort by time: the newest are last in S3's order.
    ids.sort();
    ids.reverse();
    ids.truncate(limit);
    let mut rows = Vec::new();
    for id in ids {
        if have.contains(&id) {
            continue;
        }
        let summary = crate::cloud::s3::get_text(&s3, bucket, &format!("{id}/run_summary.json"))
            .await
            .ok()
            .and_then(|t| serde_json::from_str::<crate::summary::RunSummary>(&t).ok());
        let (cost_usd, tokens) = super::runs::RunRow::usage_of(summary.as_ref());
        rows.push(super::runs::RunRow {
            cost_usd,
            tokens,
            backend: "cloud".into(),
            outcome: summary
                .as_ref()
                .map(|s| s.outcome.to_string())
                .unwrap_or_else(|| "running".into()),
            duration_s: summary.as_ref().map(|s| s.duration_s),
            branch: summary.as_ref().map(|s| s.branch.clone()),
            location: format!("s3://{bucket}/{id}/"),
            run_id: id,
        });
    }
    rows
}

/// Download a cloud run's artifacts from the bucket into `dir` (for `lackey report`).
/// False when AWS or the bucket is not configured, or the bucket has no such run; `dir`
/// is left as it was then.
pub async fn download_run(
    ctx: &Ctx,
    settings: &Settings,
    run_id: &str,
    dir: &std::path::Path,
) -> anyhow::Result<bool> {
    let (Some(bucket), Some(_)) = (
        settings.get(&keys::BUCKET_NAME),
        settings.get(&keys::AWS_REGION),
    ) else {
        return Ok(false);
    };
    let aws = ctx.aws(settings).await?;
    let s3 = aws.s3();
    let summary_key = format!("{run_id}/run_summary.json");
    if crate::cloud::s3::get_text(&s3, bucket, &summary_key)
        .await
        .is_err()
    {
        return Ok(false);
    }
    ctx.printer.info(&format!(
        "Downloading the artifacts of {run_id} from s3://{bucket}/{run_id}/"
    ));
    let guard = runner::RunDirGuard::new(dir);
    let t = crate::cloud::s3::download_artifacts(&s3, bucket, run_id, dir).await?;
    for r in &t.refused {
        ctx.printer.warn(&format!("not downloaded: {r}"));
    }
    guard.keep();
    Ok(true)
}

/// A run looked for in the cloud: AWS, the settings with what was discovered, and the
/// run's ECS task (by its `lackey:run-id` tag) if ECS still knows it.
struct CloudRun {
    aws: Aws,
    settings: Settings,
    cluster: String,
    task: Option<(String, String)>,
}

impl CloudRun {
    /// None when AWS is not configured at all (no region).
    async fn find(
        ctx: &Ctx,
        settings: &Settings,
        run_id: &str,
    ) -> anyhow::Result<Option<CloudRun>> {
        let mut settings = settings.clone();
        if settings.get(&keys::AWS_REGION).is_none() {
            return Ok(None);
        }
        let aws = cloud_settings(ctx, &mut settings).await?;
        let cluster = settings.require(&keys::ECS_CLUSTER)?.to_string();
        let started_by = crate::stack::started_by(settings.require(&keys::STACK_NAME)?);
        let task = runner::ecs::find_task(&aws, &cluster, &started_by, run_id).await?;
        Ok(Some(CloudRun {
            aws,
            settings,
            cluster,
            task,
        }))
    }
}

/// `lackey logs` for a run that is not on this machine: its CloudWatch stream, or the
/// minion.log it uploaded.
pub async fn logs(ctx: &Ctx, settings: &Settings, args: &LogsArgs) -> anyhow::Result<u8> {
    let not_found = || -> anyhow::Error {
        Fail::new(format!("no run `{}` here or in the cloud", args.run_id))
            .with_hint("`lackey runs` lists the runs")
            .into()
    };
    let Some(cloud) = CloudRun::find(ctx, settings, &args.run_id).await? else {
        return Err(not_found());
    };
    let (aws, settings, cluster) = (&cloud.aws, &cloud.settings, &cloud.cluster);
    if let Some((arn, status)) = cloud.task.clone() {
        let task_id = arn.rsplit('/').next().unwrap_or_default().to_string();
        let group = settings.require(&keys::LOGS_GROUP)?.to_string();
        let done = tokio_util::sync::CancellationToken::new();
        if !args.follow || status == "STOPPED" {
            done.cancel();
        } else {
            // Stop tailing when the task stops (or on Ctrl-C).
            let watcher = runner::ecs::TaskWatcher::start(aws.ecs(), cluster);
            let mut rx = watcher.watch(&arn);
            let d = done.clone();
            let cancel = ctx.cancel.clone();
            tokio::spawn(async move {
                loop {
                    if rx.borrow().stopped() {
                        break;
                    }
                    tokio::select! {
                        r = rx.changed() => if r.is_err() { break },
                        _ = cancel.cancelled() => break,
                    }
                }
                watcher.shutdown();
                d.cancel();
            });
        }
        runner::ecs::tail_logs(
            &aws.logs(),
            &group,
            &format!("minion/minion/{task_id}"),
            |l| ctx.printer.raw(l),
            done,
        )
        .await;
        return Ok(0);
    }
    let bucket = settings.require(&keys::BUCKET_NAME)?.to_string();
    match crate::cloud::s3::get_text(&aws.s3(), &bucket, &format!("{}/minion.log", args.run_id))
        .await
    {
        Ok(text) => {
            for line in text.lines() {
                ctx.printer.raw(line);
            }
            Ok(0)
        }
        Err(_) => Err(not_found()),
    }
}

/// `lackey stop` for a cloud run: StopTask (the minion uploads its artifacts on SIGTERM).
pub async fn stop(ctx: &Ctx, settings: &Settings, run_id: &str) -> anyhow::Result<u8> {
    let not_found = || -> anyhow::Error {
        Fail::new(format!("no running run `{run_id}`"))
            .with_hint("`lackey runs` lists the runs")
            .into()
    };
    let Some(cloud) = CloudRun::find(ctx, settings, run_id).await? else {
        return Err(not_found());
    };
    let (aws, cluster) = (&cloud.aws, &cloud.cluster);
    match cloud.task.clone() {
        Some((arn, status)) if status != "STOPPED" => {
            runner::ecs::stop_task(&aws.ecs(), cluster, &arn, "lackey stop").await;
            ctx.printer.status(
                "Stopped",
                Tone::Good,
                &format!("cloud run {run_id} (task {arn}); its artifacts go to S3"),
            );
            Ok(0)
        }
        _ => Err(not_found()),
    }
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
    let configured = runner::image::CpuArch::parse(settings.require(&keys::ECS_CPU_ARCHITECTURE)?)
        .unwrap_or(runner::image::CpuArch::HOST);
    let arch = crate::cloud::ecr::task_architecture(
        &aws,
        settings.require(&keys::ECS_TASK_FAMILY)?,
        configured,
    )
    .await;
    let docker = runner::docker::connect().await?;
    let pushed = crate::cloud::ecr::ensure_image_in_ecr(
        &docker,
        &aws,
        &image,
        &registry,
        &repository,
        arch,
        &ctx.printer,
    )
    .await?;
    if ctx.printer.json_mode() {
        ctx.printer.json(&serde_json::json!({"image": pushed.uri, "digest": pushed.digest, "pushed": pushed.pushed}));
    } else {
        ctx.printer.result(&pushed.uri);
    }
    Ok(0)
}
