//! Fleets: `lackey run [--cloud] --tasks FILE`, `lackey runs --fleet ID [--watch]`,
//! `lackey stop --fleet ID`. Settings → one [`RunSpec`] per run (every line checked
//! before anything launches) → the fleet engine with the Docker or ECS backend → the
//! aggregate.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::Ctx;
use crate::cli::RunArgs;
use crate::config::{keys, Key, Settings};
use crate::error::{Fail, Interrupted};
use crate::fleet::aggregate::Aggregate;
use crate::fleet::engine::{self, Driven, Store};
use crate::fleet::store::{FileStore, S3Store};
use crate::fleet::view::{LinesView, TableView, View};
use crate::fleet::{
    check_fleet_id, ecs::EcsFleet, local::LocalFleet, tasks, FleetOptions, Manifest, ReportFn,
    RunState, Where,
};
use crate::output::{Reporter, Tone};
use crate::runner::docker::Limits;
use crate::runner::ecs::CloudSpec;
use crate::runner::RunSpec;

/// Fargate fleets run this many at once unless told otherwise.
const CLOUD_MAX_PARALLEL: usize = 10;

fn limits(settings: &Settings) -> anyhow::Result<Limits> {
    Limits::from_settings(settings)
}

fn artifacts_root(settings: &Settings) -> anyhow::Result<PathBuf> {
    Ok(PathBuf::from(settings.require(&keys::LOCAL_ARTIFACTS_DIR)?))
}

/// `lackey run --tasks FILE`.
pub async fn run(ctx: &Ctx, args: RunArgs) -> anyhow::Result<u8> {
    let path = args.tasks.clone().unwrap_or_default();
    let (source, text, lines) = tasks::read(&path)?;
    let mut flags = super::run::run_flags(&args);
    if let Some(n) = &args.max_parallel {
        flags.push((&keys::RUN_MAX_PARALLEL, n.clone()));
    }
    let settings = ctx.settings(&flags)?;
    if let Some(usd) = args.max_cost_usd {
        if !(usd > 0.0 && usd.is_finite()) {
            return Err(
                Fail::new(format!("--max-cost-usd {usd} is not a positive amount"))
                    .with_hint(
                        "give the most the fleet may spend in US dollars, e.g. --max-cost-usd 5",
                    )
                    .into(),
            );
        }
    }
    let place = if args.cloud {
        Where::Cloud
    } else {
        Where::Local
    };
    let root = artifacts_root(&settings)?;
    let manifest = match &args.resume {
        Some(id) => {
            let store = FileStore::new(&root);
            let m = store.load(id)?;
            let same = {
                use sha2::Digest;
                hex::encode(sha2::Sha256::digest(text.as_bytes())) == m.tasks_sha256
            };
            if !same {
                return Err(Fail::new(format!(
                    "{source} is not the tasks file fleet {id} was started from"
                ))
                .with_hint(format!(
                    "--resume needs the same file; start a new fleet without --resume to run {source}"
                ))
                .into());
            }
            prepare_local_resume(m, &root).await?
        }
        None => {
            let max_parallel = match settings.get(&keys::RUN_MAX_PARALLEL) {
                Some(_) => settings.number(&keys::RUN_MAX_PARALLEL)?,
                None => match place {
                    Where::Cloud => CLOUD_MAX_PARALLEL,
                    Where::Local => crate::fleet::local::default_parallelism(&limits(&settings)?),
                },
            };
            let options = FleetOptions {
                max_parallel,
                attempts: args.attempts.unwrap_or(1),
                max_tokens: args.max_tokens,
                max_cost_usd: args.max_cost_usd,
                stubs: args.stubs,
                pr: args.pr,
                image: args.image.clone(),
                repo: args.repo.clone(),
                blueprint: args.blueprint.clone(),
                model: args.model.clone(),
                // The engine enforces each run's deadline: the settings' timeout is the
                // default of every line that names none.
                timeout: Some(args.timeout.unwrap_or(settings.number(&keys::RUN_TIMEOUT)?)),
            };
            Manifest::new(place, &text, &lines, options, |id| root.join(id).exists())
        }
    };
    let specs = specs_for(ctx, &manifest, &source)?;
    drive(ctx, manifest, specs, settings, &root).await
}

/// The settings a fleet's options and one task's own fields carry, as flags.
fn flags_for(o: &FleetOptions, t: &crate::fleet::FleetTask) -> Vec<(&'static Key, String)> {
    let mut flags: Vec<(&'static Key, String)> = Vec::new();
    if o.stubs {
        flags.push((&keys::RUN_STUBS, "1".into()));
    }
    if o.pr {
        flags.push((&keys::RUN_PR, "1".into()));
    }
    if let Some(t) = t.timeout.or(o.timeout) {
        flags.push((&keys::RUN_TIMEOUT, t.to_string()));
    }
    for (key, value) in [
        (&keys::RUN_REPO, t.repo.as_ref().or(o.repo.as_ref())),
        (&keys::IMAGE_LOCAL, o.image.as_ref()),
        (
            &keys::RUN_BLUEPRINT,
            t.blueprint.as_ref().or(o.blueprint.as_ref()),
        ),
        (&keys::RUN_MODEL, t.model.as_ref().or(o.model.as_ref())),
    ] {
        if let Some(v) = value {
            flags.push((key, v.clone()));
        }
    }
    flags
}

/// `<source> line N: <what is wrong>`, keeping the error's hint.
fn at_line(source: &str, line: usize, e: anyhow::Error) -> anyhow::Error {
    let hint = e
        .chain()
        .find_map(|c| c.downcast_ref::<Fail>().and_then(|f| f.hint.clone()));
    let mut f = Fail::new(format!("{source} line {line}: {e:#}"));
    if let Some(h) = hint {
        f = f.with_hint(h);
    }
    f.into()
}

/// One [`RunSpec`] per run, each task's fields over the fleet's over the settings.
/// Every line is checked here, before anything is created or launched.
fn specs_for(ctx: &Ctx, m: &Manifest, source: &str) -> anyhow::Result<HashMap<String, RunSpec>> {
    let cloud = m.place == Where::Cloud;
    type Shape = (Option<String>, Option<String>, Option<String>, Option<u64>);
    let mut shapes: HashMap<Shape, RunSpec> = HashMap::new();
    let mut out = HashMap::new();
    for run in &m.runs {
        let t = m.task_of(run);
        let shape = (
            t.repo.clone(),
            t.blueprint.clone(),
            t.model.clone(),
            t.timeout,
        );
        if !shapes.contains_key(&shape) {
            let spec = ctx
                .settings(&flags_for(&m.options, t))
                .and_then(|s| {
                    let mut spec =
                        RunSpec::from_settings(&s, &t.task, cloud)?.with_pass_env(&s, &ctx.env)?;
                    // A local repository's blueprint names the branch (a GitHub
                    // repository's is read by the fleet's backend, once per repository).
                    spec.decide_branch_in_repo()?;
                    Ok(spec)
                })
                .map_err(|e| at_line(source, t.line, e))?;
            shapes.insert(shape.clone(), spec);
        }
        let shape_spec = &shapes[&shape];
        let mut spec = shape_spec.clone();
        spec.task = t.task.clone();
        spec.branch = shape_spec.branch.replace(&shape_spec.run_id, &run.run_id);
        spec.run_id = run.run_id.clone();
        if let Some(template) = shape_spec.branch_template.clone() {
            // Each run's own branch, from its own run id and task.
            spec.take_branch_template(Some(template))
                .map_err(|e| at_line(source, t.line, e))?;
        }
        spec.follow = false;
        out.insert(run.run_id.clone(), spec);
    }
    Ok(out)
}

fn spec_fn(specs: HashMap<String, RunSpec>) -> crate::fleet::ecs::SpecFn {
    let specs = Arc::new(specs);
    Box::new(move |run, _| {
        specs
            .get(&run.run_id)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("run {} has no spec", run.run_id))
    })
}

fn view(ctx: &Ctx) -> Box<dyn View> {
    let p = ctx.printer.clone();
    let sink = Box::new(move |l: String| p.line(l));
    match ctx.printer.live_table() {
        Some(t) => Box::new(TableView::new(Box::new(t), sink)),
        None => Box::new(LinesView::new(sink)),
    }
}

/// How each run's `report.html` is written as the run is collected (as after a single
/// run): the settings' prices, the secrets the host knows redacted.
fn report_fn(settings: &Settings) -> anyhow::Result<ReportFn> {
    let prices = super::report::prices(settings)?;
    let redactor = crate::report::host_redactor(settings);
    Ok(Arc::new(move |dir: &Path| {
        crate::report::write(dir, &redactor, &prices)
    }))
}

/// Where a fleet's page is written here: beside its local manifest.
fn fleet_page_path(root: &Path, fleet_id: &str) -> PathBuf {
    crate::fleet::aggregate::local_fleet_dir(root, fleet_id).join(crate::report::REPORT_FILE)
}

/// Render the fleet's page to `path` (and, for a cloud fleet, upload it beside the
/// manifest in the bucket). Runs link to their own page when it exists here, or, for a
/// cloud fleet, in the bucket (each run's page is uploaded as it is collected).
async fn write_fleet_page(
    m: &Manifest,
    settings: &Settings,
    root: &Path,
    path: &Path,
    bucket: Option<(&aws_sdk_s3::Client, &str)>,
) -> anyhow::Result<usize> {
    let redactor = crate::report::host_redactor(settings);
    let cloud = m.place == Where::Cloud;
    let html = crate::report::fleet::render_fleet(m, &redactor, &|id| {
        cloud || root.join(id).join(crate::report::REPORT_FILE).is_file()
    });
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create `{}`: {e}", dir.display()))?;
    }
    crate::report::write_file(path, &html)?;
    if let Some((s3, bucket)) = bucket {
        let key = format!("fleets/{}/{}", m.fleet_id, crate::report::REPORT_FILE);
        crate::cloud::s3::upload_file(s3, path, bucket, &key)
            .await
            .map_err(|e| anyhow::anyhow!("not uploaded to s3://{bucket}/{key}: {e:#}"))?;
    }
    Ok(html.len())
}

/// Launch (or re-attach to) a fleet and drive it to its end.
async fn drive(
    ctx: &Ctx,
    m: Manifest,
    specs: HashMap<String, RunSpec>,
    settings: Settings,
    root: &Path,
) -> anyhow::Result<u8> {
    let mut view = view(ctx);
    let fleet_id = m.fleet_id.clone();
    let driven = match m.place {
        Where::Cloud => {
            let mut settings = settings;
            let aws = Arc::new(super::cloud_aws(ctx, &mut settings).await?);
            let github_repo = specs.values().find_map(|s| s.github_repo.clone());
            if github_repo.is_some() {
                settings.require(&keys::GITHUB_APP_ID)?;
                settings.require(&keys::GITHUB_INSTALLATION_ID)?;
            }
            let cloud = CloudSpec::from_settings(&settings, github_repo.as_deref())?;
            let store: Arc<dyn Store> = Arc::new(S3Store {
                s3: aws.s3(),
                bucket: cloud.bucket.clone(),
            });
            let bucket = cloud.bucket.clone();
            let sample: Vec<RunSpec> = specs.values().cloned().collect();
            let backend = Arc::new(
                EcsFleet::prepare(
                    aws.clone(),
                    cloud,
                    &m.fleet_id,
                    &sample,
                    spec_fn(specs),
                    report_fn(&settings)?,
                    &ctx.printer,
                )
                .await?,
            );
            ctx.printer.info(&format!(
                "Fleet {fleet_id}: manifest at s3://{bucket}/{}; if this process stops, `lackey runs --fleet {fleet_id} --watch` re-attaches",
                crate::fleet::store::manifest_key(&fleet_id)
            ));
            let d =
                engine::drive(m, backend.clone(), store, view.as_mut(), ctx.cancel.clone()).await;
            backend.finish().await;
            let d = d?;
            let page = fleet_page_path(root, &fleet_id);
            match write_fleet_page(
                &d.manifest,
                &settings,
                root,
                &page,
                Some((&aws.s3(), bucket.as_str())),
            )
            .await
            {
                Ok(_) => ctx.printer.info(&format!(
                    "Fleet report: {} (and s3://{bucket}/fleets/{fleet_id}/{})",
                    page.display(),
                    crate::report::REPORT_FILE
                )),
                Err(e) => ctx.printer.warn(&format!("the fleet's report: {e:#}")),
            }
            d
        }
        Where::Local => {
            let limits = limits(&settings)?;
            let store: Arc<dyn Store> = Arc::new(FileStore::new(root));
            let backend =
                Arc::new(LocalFleet::new(limits, spec_fn(specs), report_fn(&settings)?).await?);
            ctx.printer.info(&format!(
                "Fleet {fleet_id}: manifest at {}; `lackey run --tasks FILE --resume {fleet_id}` runs what did not finish",
                crate::fleet::aggregate::local_fleet_dir(root, &fleet_id)
                    .join("manifest.json")
                    .display()
            ));
            let d = engine::drive(m, backend, store, view.as_mut(), ctx.cancel.clone()).await?;
            let page = fleet_page_path(root, &fleet_id);
            match write_fleet_page(&d.manifest, &settings, root, &page, None).await {
                Ok(_) => ctx
                    .printer
                    .info(&format!("Fleet report: {}", page.display())),
                Err(e) => ctx.printer.warn(&format!("the fleet's report: {e:#}")),
            }
            d
        }
    };
    drop(view);
    finish(ctx, driven, root)
}

fn finish(ctx: &Ctx, d: Driven, root: &Path) -> anyhow::Result<u8> {
    let agg = Aggregate::build(&d.manifest, &d.summaries, root);
    agg.print(&ctx.printer);
    let id = &d.manifest.fleet_id;
    if d.interrupted {
        let again = match d.manifest.place {
            Where::Cloud => format!("`lackey runs --fleet {id} --watch` launches what did not run"),
            Where::Local => {
                format!("`lackey run --tasks FILE --resume {id}` runs what did not finish")
            }
        };
        return Err(anyhow::Error::new(Interrupted).context(format!(
            "fleet {id} was interrupted: every run was stopped and its artifacts kept; {again}"
        )));
    }
    Ok(if d.manifest.all_succeeded() { 0 } else { 1 })
}

/// A local fleet resumed: a run whose minion wrote a summary other than an error is
/// done; a run cut short (the CLI died, or Ctrl-C), or that ended in an error the dead
/// CLI never collected, runs again under a new id (its old directory stays, its
/// container is stopped).
async fn prepare_local_resume(mut m: Manifest, root: &Path) -> anyhow::Result<Manifest> {
    if m.place != Where::Local {
        return Err(Fail::new(format!("{} is a cloud fleet", m.fleet_id))
            .with_hint(format!(
                "re-attach with `lackey runs --fleet {} --watch`",
                m.fleet_id
            ))
            .into());
    }
    let docker = crate::runner::docker::connect().await.ok();
    let mut taken: std::collections::HashSet<String> =
        m.runs.iter().map(|r| r.run_id.clone()).collect();
    for r in m.runs.iter_mut() {
        let unfinished = match r.state {
            RunState::Launching | RunState::Launched => {
                let summary = crate::runner::rundir::RunDir::open(&root.join(&r.run_id))
                    .ok()
                    .and_then(|d| crate::runner::read_summary(&d).ok());
                match summary {
                    // A run the dead CLI never collected counts as finished only when it
                    // ended on its own terms: an error may be the CLI's death itself (the
                    // run's only way out, the CLI's proxy, died with it), and a summary
                    // the host wrote for an interruption is no ending. Those run again.
                    Some(s) if s.outcome != crate::summary::Outcome::Error => {
                        r.state = RunState::Done;
                        r.result = Some(crate::fleet::RunResult::of(&s));
                        false
                    }
                    _ => true,
                }
            }
            RunState::Done => r.interrupted,
            _ => false,
        };
        if unfinished {
            if let Some(d) = &docker {
                let _ = crate::runner::docker::stop_run(d, &r.run_id).await;
            }
            let id = loop {
                let id = crate::summary::new_run_id();
                if !root.join(&id).exists() && taken.insert(id.clone()) {
                    break id;
                }
            };
            r.run_id = id;
            r.state = RunState::Queued;
            r.handle = None;
            r.deadline_unix = None;
            r.status = None;
            r.result = None;
            r.interrupted = false;
        }
    }
    Ok(m)
}

/// A fleet's manifest: local first, then the stack's bucket.
async fn find_manifest(
    ctx: &Ctx,
    id: &str,
) -> anyhow::Result<(Manifest, Settings, Option<crate::aws::Aws>)> {
    check_fleet_id(id)?;
    let mut settings = ctx.settings(&[])?;
    let root = artifacts_root(&settings)?;
    let local = crate::fleet::aggregate::local_fleet_dir(&root, id).join("manifest.json");
    if local.exists() {
        return Ok((FileStore::new(&root).load(id)?, settings, None));
    }
    if settings.get(&keys::AWS_REGION).is_none() {
        return Err(Fail::new(format!("no fleet `{id}` here"))
            .with_hint("a local fleet's manifest is under [local] artifacts_dir/fleets/; for a cloud fleet set AWS_REGION (or [aws] region)")
            .into());
    }
    let aws = super::cloud_aws(ctx, &mut settings).await?;
    let store = S3Store {
        s3: aws.s3(),
        bucket: settings.require(&keys::BUCKET_NAME)?.to_string(),
    };
    let m = store.load(id).await?;
    Ok((m, settings, Some(aws)))
}

#[derive(Serialize)]
struct StatusRow<'a> {
    run_id: &'a str,
    task: &'a str,
    task_line: usize,
    attempt: u32,
    state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_run: Option<&'a str>,
    /// Tokens and USD of a finished run (USD null when its model has no price).
    tokens: Option<u64>,
    cost_usd: Option<f64>,
}

#[derive(Serialize)]
struct Total {
    tokens: u64,
    cost_usd: Option<f64>,
}

#[derive(Serialize)]
struct Status<'a> {
    fleet_id: &'a str,
    #[serde(rename = "where")]
    place: Where,
    runs: Vec<StatusRow<'a>>,
    counts: crate::fleet::Counts,
    total: Total,
}

/// `lackey runs --fleet ID [--watch]`.
pub async fn runs(ctx: &Ctx, id: &str, watch: bool) -> anyhow::Result<u8> {
    let (m, settings, _aws) = find_manifest(ctx, id).await?;
    if !watch {
        let rows: Vec<StatusRow> = m
            .runs
            .iter()
            .enumerate()
            .map(|(i, r)| StatusRow {
                run_id: &r.run_id,
                task: &m.task_of(r).task,
                task_line: m.task_of(r).line,
                attempt: r.attempt,
                state: crate::fleet::view::state_word(&m, i),
                not_run: r.not_run.as_deref(),
                tokens: r.result.as_ref().map(|x| x.tokens),
                cost_usd: r.result.as_ref().and_then(|x| x.cost_usd),
            })
            .collect();
        let (tokens, cost_usd) = m.spent();
        if ctx.printer.json_mode() {
            ctx.printer.json(&Status {
                fleet_id: &m.fleet_id,
                place: m.place,
                runs: rows,
                counts: m.counts(),
                total: Total {
                    tokens,
                    cost_usd: cost_usd.map(crate::cost::round_usd),
                },
            });
        } else {
            ctx.printer.result(format!(
                "{:<20}  {:<18}  {:>7}  {:>8}  TASK",
                "RUN", "STATE", "TOKENS", "COST"
            ));
            for r in &rows {
                ctx.printer.result(format!(
                    "{:<20}  {:<18}  {:>7}  {:>8}  {}{}",
                    r.run_id,
                    r.state,
                    r.tokens
                        .map(crate::cost::format_tokens)
                        .unwrap_or_else(|| "-".into()),
                    crate::cost::format_usd(r.cost_usd),
                    crate::fleet::view::clip(r.task, 60),
                    r.not_run.map(|w| format!(": {w}")).unwrap_or_default()
                ));
            }
            ctx.printer.result(format!(
                "total: {} and {} tokens",
                crate::cost::format_usd(Some(cost_usd.unwrap_or_default())),
                crate::cost::format_tokens(tokens)
            ));
            ctx.printer.result(crate::fleet::view::footer(&m));
        }
        return Ok(0);
    }
    if m.place == Where::Local {
        return Err(Fail::new(format!(
            "{id} is a local fleet: its runs ended with the process that ran them"
        ))
        .with_hint(format!(
            "run what did not finish with `lackey run --tasks FILE --resume {id}`"
        ))
        .into());
    }
    let root = artifacts_root(&settings)?;
    let specs = specs_for(ctx, &m, "the fleet's task")?;
    drive(ctx, m, specs, settings, &root).await
}

/// `lackey stop --fleet ID`: no more launches, every run stopped at once.
pub async fn stop(ctx: &Ctx, id: &str) -> anyhow::Result<u8> {
    let (m, settings, aws) = find_manifest(ctx, id).await?;
    let live: Vec<&crate::fleet::FleetRun> = m
        .runs
        .iter()
        .filter(|r| matches!(r.state, RunState::Launching | RunState::Launched))
        .collect();
    let stopped = match (m.place, aws) {
        (Where::Local, _) => {
            let root = artifacts_root(&settings)?;
            FileStore::new(&root).request_stop(id)?;
            let docker = crate::runner::docker::connect().await?;
            let stops = live
                .iter()
                .map(|r| crate::runner::docker::stop_run(&docker, &r.run_id));
            futures::future::join_all(stops)
                .await
                .into_iter()
                .filter(|r| matches!(r, Ok(true)))
                .count()
        }
        (Where::Cloud, Some(aws)) => {
            let bucket = settings.require(&keys::BUCKET_NAME)?.to_string();
            S3Store {
                s3: aws.s3(),
                bucket,
            }
            .request_stop(id)
            .await?;
            // Every task of the fleet ECS knows, found by its tag (the manifest may not
            // hold a handle for a run whose launch was under way).
            let cluster = settings.require(&keys::ECS_CLUSTER)?.to_string();
            let started_by = crate::ownership::started_by(settings.require(&keys::STACK_NAME)?);
            let ecs = aws.ecs();
            let tasks = crate::fleet::ecs::fleet_tasks(&ecs, &cluster, &started_by, id).await?;
            let reason = format!("lackey stop --fleet {id}");
            let stops: Vec<_> = tasks
                .values()
                .filter(|(_, status)| status != "STOPPED")
                .map(|(arn, _)| crate::runner::ecs::stop_task(&ecs, &cluster, arn, &reason))
                .collect();
            let n = stops.len();
            futures::future::join_all(stops).await;
            n
        }
        (Where::Cloud, None) => 0,
    };
    ctx.printer.status(
        "Stopped",
        Tone::Good,
        &format!("{stopped} runs of fleet {id}; no more of its runs launch, and their artifacts are kept"),
    );
    Ok(0)
}

/// `lackey report --fleet ID [--open] [--output FILE]`: the fleet's page, from its
/// manifest (here, or in the stack's bucket). A finished run found here without its own
/// page gets one first, so its link works.
pub async fn report(
    ctx: &Ctx,
    id: &str,
    open: bool,
    output: Option<PathBuf>,
) -> anyhow::Result<u8> {
    let (m, settings, aws) = find_manifest(ctx, id).await?;
    let root = artifacts_root(&settings)?;
    let write_run = report_fn(&settings)?;
    for r in m.runs.iter().filter(|r| r.state == RunState::Done) {
        let dir = root.join(&r.run_id);
        if dir.join("run_summary.json").is_file() && !dir.join(crate::report::REPORT_FILE).is_file()
        {
            if let Err(e) = write_run(&dir) {
                ctx.printer.warn(&format!(
                    "run {}: its report was not written: {e:#}",
                    r.run_id
                ));
            }
        }
    }
    let path = output.unwrap_or_else(|| fleet_page_path(&root, id));
    // The bucket's copy is the page beside the manifest, not a page written elsewhere.
    let bucket = match (&aws, m.place, path == fleet_page_path(&root, id)) {
        (Some(aws), Where::Cloud, true) => {
            Some((aws.s3(), settings.require(&keys::BUCKET_NAME)?.to_string()))
        }
        _ => None,
    };
    let bytes = write_fleet_page(
        &m,
        &settings,
        &root,
        &path,
        bucket.as_ref().map(|(s3, b)| (s3, b.as_str())),
    )
    .await?;
    if ctx.printer.json_mode() {
        ctx.printer.json(&serde_json::json!({
            "fleet_id": id,
            "report": path.display().to_string(),
            "uploaded": bucket.as_ref().map(|(_, b)| format!("s3://{b}/fleets/{id}/{}", crate::report::REPORT_FILE)),
            "bytes": bytes,
        }));
    } else {
        ctx.printer.result(path.display());
    }
    if open {
        super::report::open(ctx, &path);
    }
    Ok(0)
}
