//! A fleet on ECS Fargate, through the runner's ECS backend ([`Ecs`]): the same task
//! definition facts, image check, repository source, key route, environment overrides,
//! RunTask request and collection as a single cloud run, with what is the same for every
//! run prepared once.
//!
//! Once per fleet: the task definition read, the image checked in ECR, the GitHub App
//! proven on each distinct repository (its default branch read), the Anthropic key's
//! route decided, each local repository bundled and uploaded (`inputs/<fleet id>/…`).
//!
//! Per run: one RunTask ([`Ecs::run_task_once`]), with the run id as its `clientToken`
//! (ECS makes a repeated RunTask with the same token return the first task instead of a
//! second one) and as its `lackey:run-id` tag, with the fleet id as `lackey:fleet`. A
//! fleet resumed after the CLI died finds its launched runs by those tags (ListTasks by
//! the stack's `startedBy`, then DescribeTasks with tags), so it relaunches only what
//! never reached ECS. moto ignores `clientToken`; the tag lookup is what the tests prove.
//!
//! Per tick: one DescribeTasks per 100 runs in flight and, when the view shows log
//! lines, one FilterLogEvents per 100 of the started runs' log streams (one page each;
//! a second, by the streams' prefix, when CloudWatch refuses a list naming a stream not
//! made yet). Collection (artifact downloads, through [`Ecs`]'s `collect`) runs a
//! bounded number at once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::engine::{FleetBackend, LaunchError, Pacing, Polled};
use super::{FleetRun, FleetTask, ReportFn};
use crate::aws::{is_retryable, render_sdk_error, Aws};
use crate::error::Fail;
use crate::output::{Reporter, Silent};
use crate::run_contract::Secret;
use crate::runner::backend::Backend;
use crate::runner::ecs::{CloudSpec, Ecs, Source, Started, TaskDefinitionFacts, TaskState};
use crate::runner::{HostEnd, RunSpec};
use crate::summary::{RunSummary, Runtime};

/// Fargate's documented RunTask quota is 20 calls a second (burst and sustained), per
/// account and region; a fleet keeps under it so other callers still get a share.
pub const RUN_TASK_PER_S: f64 = 15.0;
pub const RUN_TASK_BURST: f64 = 20.0;

/// The fleet a task belongs to (its run is tagged with [`crate::ownership::TAG_RUN_ID`]).
pub const TAG_FLEET: &str = "lackey:fleet";

/// FilterLogEvents takes at most this many stream names.
const STREAMS_PER_CALL: usize = 100;

/// Builds each run's [`RunSpec`] (the command layer resolves it from settings).
pub type SpecFn = Box<dyn Fn(&FleetRun, &FleetTask) -> anyhow::Result<RunSpec> + Send + Sync>;

/// Counters of AWS calls the fleet made (for `make bench-fleet`).
#[derive(Default, Debug)]
pub struct Calls {
    pub run_task: AtomicU64,
    pub describe_tasks: AtomicU64,
    pub filter_log_events: AtomicU64,
    pub polls: AtomicU64,
}

/// Where the log lines of a group of streams were read up to (FilterLogEvents'
/// `startTime`, in ms).
#[derive(Default)]
struct LogCursor {
    since_ms: i64,
}

pub struct EcsFleet {
    ecs: Ecs<Arc<Aws>>,
    aws: Arc<Aws>,
    cloud: CloudSpec,
    fleet_id: String,
    td: TaskDefinitionFacts,
    /// Each repository's source (GitHub repository or local path), prepared once.
    sources: HashMap<String, Source>,
    api_key: Option<Secret>,
    specs: SpecFn,
    report: ReportFn,
    states: Mutex<HashMap<String, TaskState>>,
    started: Mutex<HashMap<String, chrono::DateTime<chrono::Utc>>>,
    /// The log read position, by the first stream of a group of streams.
    cursors: Mutex<HashMap<String, LogCursor>>,
    pub calls: Arc<Calls>,
}

/// The key of a run's source among the fleet's: its GitHub repository, else its path.
fn source_key(spec: &RunSpec) -> Option<String> {
    match (&spec.github_repo, &spec.repo) {
        (Some(gh), _) => Some(format!("github:{gh}")),
        (None, Some(path)) => Some(format!("path:{}", path.display())),
        (None, None) => None,
    }
}

impl EcsFleet {
    /// Everything done once per fleet; `sample` are the runs' specs (every distinct
    /// repository among them is prepared). `check_image`: push the image to ECR when
    /// the registry's differs (through the local Docker).
    pub async fn prepare(
        aws: Arc<Aws>,
        cloud: CloudSpec,
        fleet_id: &str,
        sample: &[RunSpec],
        specs: SpecFn,
        report: ReportFn,
        reporter: &dyn Reporter,
    ) -> anyhow::Result<EcsFleet> {
        let ecs = Ecs::new(aws.clone(), cloud.clone());
        let td = ecs.task_definition(&cloud).await?;
        if let Some(first) = sample.first() {
            ecs.ensure_image(&cloud, &first.image, td.arch, reporter)
                .await?;
        }
        let mut sources = HashMap::new();
        let gh_repos: std::collections::BTreeSet<String> = sample
            .iter()
            .filter_map(|s| s.github_repo.clone())
            .collect();
        if let Some(gh) = &cloud.github {
            let injected = td
                .injected
                .iter()
                .any(|n| n == crate::run_contract::var::GITHUB_APP_PRIVATE_KEY);
            if !injected && gh_repos.len() > 1 {
                return Err(Fail::new("a fleet over several GitHub repositories needs the task definition `lackey up` registers (it injects the App key)")
                    .with_hint("run `lackey up` (or `lackey up --adopt`), or give the fleet one repository")
                    .into());
            }
            for repo in &gh_repos {
                let source = ecs.github_source(gh, repo, &td.injected, reporter).await?;
                sources.insert(format!("github:{repo}"), source);
            }
        }
        let api_key = ecs
            .api_key(
                &cloud,
                sample.iter().all(|s| s.stubs),
                &td.injected,
                reporter,
            )
            .await?;
        // Local repositories: one bundle each, shared by the fleet's runs.
        let local: std::collections::BTreeSet<PathBuf> = sample
            .iter()
            .filter(|s| s.github_repo.is_none())
            .filter_map(|s| s.repo.clone())
            .collect();
        for (n, repo) in local.iter().enumerate() {
            let key = format!("inputs/{fleet_id}/source-{n}.bundle");
            let source = ecs.bundle_source(&cloud, repo, &key).await?;
            sources.insert(format!("path:{}", repo.display()), source);
        }
        Ok(EcsFleet {
            ecs,
            aws,
            cloud,
            fleet_id: fleet_id.to_string(),
            td,
            sources,
            api_key,
            specs,
            report,
            states: Mutex::new(HashMap::new()),
            started: Mutex::new(HashMap::new()),
            cursors: Mutex::new(HashMap::new()),
            calls: Default::default(),
        })
    }

    fn spec(&self, run: &FleetRun, task: &FleetTask) -> anyhow::Result<RunSpec> {
        (self.specs)(run, task)
    }

    /// Remove the fleet's shared inputs (the bundles) once it is over.
    pub async fn finish(&self) {
        crate::runner::ecs::delete_inputs(&self.aws.s3(), &self.cloud.bucket, &self.fleet_id).await;
    }

    /// The last line of each stream among `streams`, from one page of FilterLogEvents
    /// read from where the previous call left off. CloudWatch refuses a list naming a
    /// stream that does not exist yet (a task that has not started): the same page is
    /// then asked for by the streams' common prefix, and only `streams` are kept.
    async fn last_lines_of(&self, streams: &[String]) -> HashMap<String, String> {
        let Some(first) = streams.first() else {
            return HashMap::new();
        };
        let since = self
            .cursors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(first)
            .map(|c| c.since_ms)
            .unwrap_or(0);
        let logs = self.aws.logs();
        let ask = || {
            self.calls.filter_log_events.fetch_add(1, Relaxed);
            logs.filter_log_events()
                .log_group_name(&self.td.log_group)
                .start_time(since)
        };
        let mut out = ask()
            .set_log_stream_names(Some(streams.to_vec()))
            .send()
            .await;
        if matches!(&out, Err(e) if crate::aws::is_not_found(e)) {
            out = ask().log_stream_name_prefix(STREAM_PREFIX).send().await;
        }
        let mut last: HashMap<String, (i64, String)> = HashMap::new();
        match out {
            Ok(out) => {
                for e in out.events() {
                    let (Some(stream), Some(msg)) = (e.log_stream_name(), e.message()) else {
                        continue;
                    };
                    let line = msg.trim_end();
                    if line.is_empty() || !streams.iter().any(|s| s == stream) {
                        continue;
                    }
                    let ts = e.timestamp().unwrap_or_default();
                    let slot = last
                        .entry(stream.to_string())
                        .or_insert((ts, String::new()));
                    if ts >= slot.0 {
                        *slot = (ts, line.to_string());
                    }
                }
            }
            Err(e) => tracing::debug!("FilterLogEvents failed: {}", render_sdk_error(e)),
        }
        if let Some(newest) = last.values().map(|(ts, _)| *ts).max() {
            // Read on from the newest event seen (a line of the same millisecond may
            // come again: it only replaces itself).
            self.cursors
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(first.clone())
                .or_default()
                .since_ms = newest;
        }
        last.into_iter().map(|(s, (_, l))| (s, l)).collect()
    }
}

/// The awslogs driver's stream names: `<prefix>/<container>/<task id>`.
const STREAM_PREFIX: &str = "minion/minion/";

/// The CloudWatch stream of a task (`minion/minion/<task id>`, the awslogs driver's
/// `<prefix>/<container>/<task id>`).
fn stream_of(arn: &str) -> String {
    format!(
        "{STREAM_PREFIX}{}",
        arn.rsplit('/').next().unwrap_or_default()
    )
}

#[async_trait::async_trait]
impl FleetBackend for EcsFleet {
    fn pacing(&self) -> Pacing {
        Pacing {
            launches_per_s: RUN_TASK_PER_S,
            launch_burst: RUN_TASK_BURST,
            concurrent_launches: 8,
            launch_batch_every: Duration::from_millis(250),
            concurrent_collects: 8,
            tick: Duration::from_secs(1),
            backoff_first: Duration::from_secs(2),
            backoff_max: Duration::from_secs(30),
        }
    }

    async fn launch(&self, run: &FleetRun, task: &FleetTask) -> Result<String, LaunchError> {
        let failed = |e: anyhow::Error| LaunchError::Failed(format!("{e:#}"));
        let spec = self.spec(run, task).map_err(failed)?;
        let deadline = match run.deadline_unix {
            Some(d) => std::time::UNIX_EPOCH + Duration::from_secs_f64(d.max(0.0)),
            None => SystemTime::now() + spec.timeout,
        };
        let source = source_key(&spec).and_then(|k| self.sources.get(&k));
        let env = self
            .ecs
            .environment(&self.cloud, &spec, deadline, source, self.api_key.as_ref())
            .await
            .map_err(failed)?;
        let dir = spec.artifacts_dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| LaunchError::Failed(format!("cannot create `{}`: {e}", dir.display())))?;
        self.calls.run_task.fetch_add(1, Relaxed);
        let started = self
            .ecs
            .run_task_once(
                &self.cloud,
                &run.run_id,
                &env,
                &[(TAG_FLEET, self.fleet_id.as_str())],
            )
            .await;
        match started {
            Ok(Started::Task { arn, .. }) => {
                self.started
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(run.run_id.clone(), chrono::Utc::now());
                let _ = std::fs::write(dir.join(".ecs-task"), &arn);
                Ok(arn)
            }
            Ok(Started::NoCapacity(reason)) => Err(LaunchError::Retry(format!(
                "no Fargate capacity ({reason})"
            ))),
            Ok(Started::Refused(reason)) => Err(LaunchError::Failed(format!(
                "ECS did not start the task: {reason}"
            ))),
            Err(e) if is_retryable(&e) => Err(LaunchError::Retry(format!(
                "RunTask: {}",
                render_sdk_error(e)
            ))),
            Err(e) => Err(LaunchError::Failed(format!(
                "failed to run a task of `{}` on cluster `{}`: {}",
                self.cloud.task_family,
                self.cloud.cluster,
                render_sdk_error(e)
            ))),
        }
    }

    async fn poll(&self, handles: &[String]) -> anyhow::Result<HashMap<String, Polled>> {
        self.calls.polls.fetch_add(1, Relaxed);
        let mut out = HashMap::new();
        let ecs = self.aws.ecs();
        for chunk in handles.chunks(100) {
            self.calls.describe_tasks.fetch_add(1, Relaxed);
            let d = ecs
                .describe_tasks()
                .cluster(&self.cloud.cluster)
                .set_tasks(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| anyhow::Error::new(render_sdk_error(e)))?;
            let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
            for t in d.tasks() {
                let Some(arn) = t.task_arn() else { continue };
                let state = TaskState::of(t);
                out.insert(
                    arn.to_string(),
                    Polled {
                        status: state.last_status.clone(),
                        stopped: state.stopped(),
                    },
                );
                states.insert(arn.to_string(), state);
            }
        }
        Ok(out)
    }

    async fn last_lines(&self, handles: &[String]) -> HashMap<String, String> {
        // Only tasks whose container started have a stream.
        let started: Vec<String> = {
            let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
            handles
                .iter()
                .filter(|h| {
                    states.get(*h).is_some_and(|s| {
                        !matches!(
                            s.last_status.as_str(),
                            "" | "PROVISIONING" | "PENDING" | "ACTIVATING"
                        )
                    })
                })
                .cloned()
                .collect()
        };
        let mut out = HashMap::new();
        for chunk in started.chunks(STREAMS_PER_CALL) {
            let streams: Vec<String> = chunk.iter().map(|h| stream_of(h)).collect();
            let lines = self.last_lines_of(&streams).await;
            for h in chunk {
                if let Some(l) = lines.get(&stream_of(h)) {
                    out.insert(h.clone(), l.clone());
                }
            }
        }
        out
    }

    async fn stop(&self, handle: &str, reason: &str) {
        crate::runner::ecs::stop_task(&self.aws.ecs(), &self.cloud.cluster, handle, reason).await;
    }

    async fn collect(
        &self,
        run: &FleetRun,
        task: &FleetTask,
        handle: Option<&str>,
        end: Option<HostEnd>,
    ) -> RunSummary {
        let spec = match self.spec(run, task) {
            Ok(s) => s,
            Err(e) => return failed_summary(run, task, Runtime::Cloud, &format!("{e:#}")),
        };
        let dir = spec.artifacts_dir();
        let _ = std::fs::create_dir_all(&dir);
        let started = self
            .started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&run.run_id)
            .copied()
            .unwrap_or_else(chrono::Utc::now);
        let state = handle
            .and_then(|h| {
                self.states
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(h)
                    .cloned()
            })
            .unwrap_or_default();
        // The same collection as a single cloud run: inputs deleted, artifacts
        // downloaded, the summary settled, the branch brought back.
        let h = self.ecs.handle(
            &run.run_id,
            handle.unwrap_or_default(),
            dir.clone(),
            started,
        );
        let summary = match self.ecs.collect(h, state.end(end), &spec, &Silent).await {
            Ok(o) => {
                if let Some(e) = o.fetch_error {
                    tracing::warn!("run {}: {e:#}", spec.run_id);
                }
                o.summary
            }
            Err(e) => failed_summary(run, task, Runtime::Cloud, &format!("{e:#}")),
        };
        // Its report, here and beside its artifacts in the bucket.
        match (self.report)(&dir) {
            Ok(path) => {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if let Err(e) = self.ecs.keep_beside(&run.run_id, &path, &name).await {
                    tracing::warn!("run {}: the report was {e:#}", run.run_id);
                }
            }
            Err(e) => tracing::warn!("run {}: the report was not written: {e:#}", run.run_id),
        }
        summary
    }

    async fn find(&self, run_ids: &[String]) -> anyhow::Result<HashMap<String, String>> {
        let all = fleet_tasks(
            &self.aws.ecs(),
            &self.cloud.cluster,
            &self.cloud.started_by(),
            &self.fleet_id,
        )
        .await?;
        Ok(run_ids
            .iter()
            .filter_map(|id| all.get(id).map(|(arn, _)| (id.clone(), arn.clone())))
            .collect())
    }
}

/// Every task of a fleet ECS knows (running or recently stopped), by run id: its ARN
/// and last status. Found by the `lackey:fleet` tag among the stack's tasks.
pub async fn fleet_tasks(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    started_by: &str,
    fleet_id: &str,
) -> anyhow::Result<HashMap<String, (String, String)>> {
    use crate::runner::ecs::tag;
    Ok(crate::runner::ecs::stack_tasks(ecs, cluster, started_by)
        .await?
        .iter()
        .filter(|t| tag(t, TAG_FLEET) == Some(fleet_id))
        .filter_map(|t| {
            Some((
                tag(t, crate::ownership::TAG_RUN_ID)?.to_string(),
                (
                    t.task_arn()?.to_string(),
                    t.last_status().unwrap_or_default().to_string(),
                ),
            ))
        })
        .collect())
}

/// A summary for a run that never started (its spec could not be built, or its
/// collection failed before anything was known).
pub fn failed_summary(
    run: &FleetRun,
    task: &FleetTask,
    runtime: Runtime,
    error: &str,
) -> RunSummary {
    let now = chrono::Utc::now().to_rfc3339();
    RunSummary {
        run_id: run.run_id.clone(),
        task: task.task.clone(),
        outcome: crate::summary::Outcome::Error,
        runtime,
        branch: String::new(),
        base_sha: None,
        head_sha: None,
        started_at: now.clone(),
        finished_at: now,
        duration_s: 0.0,
        steps: vec![],
        usage: Default::default(),
        pr_url: None,
        s3_prefix: None,
        error: Some(error.to_string()),
    }
}
