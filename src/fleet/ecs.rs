//! A fleet on ECS Fargate, through the runner's ECS backend ([`Ecs`]): the same task
//! definition facts, image check, repository source, key route, environment overrides,
//! RunTask request and collection as a single cloud run, with what is the same for every
//! run prepared once.
//!
//! Once per fleet, in one wave as a single run's launch: the task definition read, the
//! image probed (and pushed to ECR once the task definition says where it runs), the
//! GitHub App proven on each distinct repository (its default branch and the branch
//! template of each blueprint its runs use read: each run's branch is decided from it
//! before launch), each local repository bundled and uploaded
//! (`inputs/<fleet id>-<random>/…`); then, before any push, the task definition's
//! isolation checked as a single run's is (no credential sidecar: warned, or refused
//! under `[run] require_isolation`), and the Anthropic key's route decided. Each run's
//! overrides are a single run's: with the sidecar, its credentials and upstreams go to
//! the sidecar's container, never the minion's.
//!
//! Per run: one RunTask ([`Ecs::run_task_once`]), with the run id as its `clientToken`
//! (ECS makes a repeated RunTask with the same token return the first task instead of a
//! second one) and as its `lackey:run-id` tag, with the fleet id as `lackey:fleet`. A
//! fleet resumed after the CLI died finds its launched runs by those tags (ListTasks by
//! the stack's `startedBy`, then DescribeTasks with tags), so it relaunches only what
//! never reached ECS. moto ignores `clientToken`; the tag lookup is what the tests prove.
//! A task ECS could not start because it could not assume a role yet (IAM propagation
//! right after `up`) is launched again, as a single run's is; its run reads
//! `WAITING-FOR-IAM` meanwhile.
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

use aws_sdk_ecs::operation::run_task::builders::RunTaskFluentBuilder;

use super::engine::{FleetBackend, LaunchError, Pacing, Polled};
use super::{FleetRun, FleetTask, ReportFn};
use crate::aws::{is_retryable, render_sdk_error, Aws};
use crate::cloud::records;
use crate::error::Fail;
use crate::output::{Reporter, Silent};
use crate::run_contract::Secret;
use crate::runner::backend::Backend;
use crate::runner::ecs::{
    check_isolation, role_not_assumable, CloudSpec, Ecs, Source, Started, TaskDefinitionFacts,
    TaskState, ROLE_PROPAGATION_WAIT,
};
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
    /// (GitHub repository, blueprint) → the blueprint's branch template, read once from
    /// the default branch: each run's branch is decided from it before launch.
    github_templates: HashMap<(String, Option<String>), Option<String>>,
    api_key: Option<Secret>,
    specs: SpecFn,
    report: ReportFn,
    states: Mutex<HashMap<String, TaskState>>,
    started: Mutex<HashMap<String, chrono::DateTime<chrono::Utc>>>,
    /// The artifact prefix each run launched by this process was given (a run found
    /// again after a restart is looked up in the records).
    prefixes: Mutex<HashMap<String, String>>,
    /// The log read position, by the first stream of a group of streams.
    cursors: Mutex<HashMap<String, LogCursor>>,
    /// Each run's RunTask request and the task that stands for its handle now: ECS
    /// may fail to assume a role `up` just made, and the run is launched again.
    relaunches: Mutex<HashMap<String, Relaunching>>,
    pub calls: Arc<Calls>,
}

/// A run whose task may be launched again while IAM propagates its roles.
struct Relaunching {
    run_id: String,
    request: RunTaskFluentBuilder,
    /// The task standing for the handle (the first task's ARN) now.
    current: String,
    attempts: u32,
    since: std::time::Instant,
    next_at: Option<std::time::Instant>,
}

/// The branch template of each blueprint the fleet's runs on `repo` use, read from its
/// default branch (each run's branch is decided from it before launch).
async fn branch_templates(
    client: &crate::github::GitHub,
    token: &str,
    repo: &str,
    default_branch: &str,
    sample: &[RunSpec],
) -> anyhow::Result<Vec<((String, Option<String>), Option<String>)>> {
    let blueprints: std::collections::BTreeSet<Option<String>> = sample
        .iter()
        .filter(|s| s.github_repo.as_deref() == Some(repo))
        .map(|s| s.blueprint.clone())
        .collect();
    let mut out = Vec::new();
    for name in blueprints {
        let template = crate::runner::branch::template_on_github(
            client,
            token,
            repo,
            default_branch,
            name.as_deref(),
        )
        .await?;
        out.push(((repo.to_string(), name), template));
    }
    Ok(out)
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
    /// repository among them is prepared). Nothing is left in the bucket when it fails.
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
        let prepared = Self::prepare_once(&ecs, &cloud, fleet_id, sample, reporter).await;
        let (td, sources, github_templates, api_key) = match prepared {
            Ok(p) => p,
            Err(e) => {
                crate::runner::ecs::delete_inputs(&aws.s3(), &cloud.bucket, fleet_id).await;
                return Err(e);
            }
        };
        Ok(EcsFleet {
            ecs,
            aws,
            cloud,
            fleet_id: fleet_id.to_string(),
            td,
            sources,
            github_templates,
            api_key,
            specs,
            report,
            states: Mutex::new(HashMap::new()),
            started: Mutex::new(HashMap::new()),
            prefixes: Mutex::new(HashMap::new()),
            cursors: Mutex::new(HashMap::new()),
            relaunches: Mutex::new(HashMap::new()),
            calls: Default::default(),
        })
    }

    /// `prepare`'s work. One wave, as a single run's launch: the task definition, the
    /// image's probe, each GitHub repository's token, default branch and branch
    /// templates, each local repository's bundle upload. What depends on the task
    /// definition (the image's platform, a push, what ECS injects) follows.
    #[allow(clippy::type_complexity)]
    async fn prepare_once(
        ecs: &Ecs<Arc<Aws>>,
        cloud: &CloudSpec,
        fleet_id: &str,
        sample: &[RunSpec],
        reporter: &dyn Reporter,
    ) -> anyhow::Result<(
        TaskDefinitionFacts,
        HashMap<String, Source>,
        HashMap<(String, Option<String>), Option<String>>,
        Option<Secret>,
    )> {
        let gh_repos: std::collections::BTreeSet<String> = sample
            .iter()
            .filter_map(|s| s.github_repo.clone())
            .collect();
        // Local repositories: one bundle each, shared by the fleet's runs.
        let local: std::collections::BTreeSet<PathBuf> = sample
            .iter()
            .filter(|s| s.github_repo.is_none())
            .filter_map(|s| s.repo.clone())
            .collect();
        let image = async {
            match sample.first() {
                Some(first) => ecs.probe_image(cloud, &first.image).await.map(Some),
                None => Ok(None),
            }
        };
        let github = async {
            let mut out = Vec::new();
            if let Some(gh) = &cloud.github {
                for repo in &gh_repos {
                    let (client, proof) = ecs.github_token(gh, repo).await?;
                    let templates = branch_templates(
                        &client,
                        &proof.token,
                        repo,
                        &proof.default_branch,
                        sample,
                    )
                    .await?;
                    out.push((repo.clone(), proof, templates));
                }
            }
            Ok::<_, anyhow::Error>(out)
        };
        let bundles = async {
            let mut out = Vec::new();
            for (n, repo) in local.iter().enumerate() {
                let key = crate::runner::ecs::input_key(fleet_id, &format!("source-{n}.bundle"));
                out.push((
                    repo.clone(),
                    ecs.bundle_source(cloud, repo, &key, None).await?,
                ));
            }
            Ok::<_, anyhow::Error>(out)
        };
        let (td, probed, github, bundles) =
            tokio::join!(ecs.task_definition(cloud), image, github, bundles);
        let td = td?;
        // Before any push, as a single run: a definition without the credential sidecar
        // is warned about, or refused under `[run] require_isolation`.
        check_isolation(&td.isolation, cloud, reporter)?;
        if let Some(probed) = probed? {
            Ecs::<Arc<Aws>>::ensure_image(probed, td.arch, reporter).await?;
        }
        let github = github?;
        let mut sources = HashMap::new();
        let mut templates = HashMap::new();
        if let Some(gh) = &cloud.github {
            let injected = td.isolation.injected();
            let key_injected = injected
                .iter()
                .any(|n| n == crate::run_contract::var::GITHUB_APP_PRIVATE_KEY);
            if !key_injected && github.len() > 1 {
                return Err(Fail::new("a fleet over several GitHub repositories needs the task definition `lackey up` registers (it injects the App key)")
                    .with_hint("run `lackey up` (or `lackey up --adopt`), or give the fleet one repository")
                    .into());
            }
            if !github.is_empty() {
                // After the image's lines, as in a single run's output.
                reporter.info("Minting GitHub App installation tokens...");
            }
            for (repo, proof, t) in github {
                let source = Ecs::<Arc<Aws>>::github_source(gh, &repo, &proof, injected, reporter);
                sources.insert(format!("github:{repo}"), source);
                templates.extend(t);
            }
        }
        for (repo, source) in bundles? {
            sources.insert(format!("path:{}", repo.display()), source);
        }
        let api_key = ecs
            .api_key(
                cloud,
                sample.iter().all(|s| s.stubs),
                td.isolation.injected(),
                reporter,
            )
            .await?;
        Ok((td, sources, templates, api_key))
    }

    /// A run's spec, its branch decided: a GitHub repository's blueprint template (read
    /// once by `prepare`) expanded for this run (a local repository's was decided by
    /// the command layer).
    fn spec(&self, run: &FleetRun, task: &FleetTask) -> anyhow::Result<RunSpec> {
        let mut spec = (self.specs)(run, task)?;
        let template = spec.github_repo.as_ref().and_then(|r| {
            self.github_templates
                .get(&(r.clone(), spec.blueprint.clone()))
                .cloned()
                .flatten()
        });
        spec.take_branch_template(template)?;
        Ok(spec)
    }

    /// The task standing for a run's handle now (itself, unless launched again).
    fn current(&self, handle: &str) -> String {
        self.relaunches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(handle)
            .map(|r| r.current.clone())
            .unwrap_or_else(|| handle.to_string())
    }

    /// DescribeTasks for these tasks (100 per call); their states kept for `collect`
    /// and the log lines.
    async fn poll_tasks(&self, arns: &[String]) -> anyhow::Result<HashMap<String, Polled>> {
        self.calls.polls.fetch_add(1, Relaxed);
        let mut out = HashMap::new();
        let ecs = self.aws.ecs();
        for chunk in arns.chunks(100) {
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

    /// A task ECS could not start because it could not assume a role yet (IAM has not
    /// propagated what `up` just made) is launched again, with a pause that doubles,
    /// for up to [`ROLE_PROPAGATION_WAIT`]; meanwhile the run reads `WAITING-FOR-IAM`.
    async fn relaunch_if_role_not_ready(&self, handle: &str, arn: &str, polled: Polled) -> Polled {
        let state = self
            .states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(arn)
            .cloned()
            .unwrap_or_default();
        if !role_not_assumable(&state) {
            return polled;
        }
        let (request, run_id, attempt) = {
            let mut all = self.relaunches.lock().unwrap_or_else(|e| e.into_inner());
            let Some(r) = all.get_mut(handle) else {
                return polled;
            };
            if r.since.elapsed() >= ROLE_PROPAGATION_WAIT {
                return polled;
            }
            let now = std::time::Instant::now();
            let due = match r.next_at {
                None => {
                    r.next_at = Some(now + Duration::from_secs(1 << (r.attempts + 1).min(3)));
                    tracing::warn!("run {}: ECS could not assume the task's role yet (IAM propagation); launching it again", r.run_id);
                    false
                }
                Some(t) => t <= now,
            };
            if !due {
                return Polled {
                    status: "WAITING-FOR-IAM".into(),
                    stopped: false,
                };
            }
            r.attempts += 1;
            r.next_at = None;
            (r.request.clone(), r.run_id.clone(), r.attempts)
        };
        self.calls.run_task.fetch_add(1, Relaxed);
        // A new client token: the first one would give back the task that failed.
        let out = Ecs::<Arc<Aws>>::run_task_once(&request, &format!("{run_id}-{attempt}")).await;
        match out {
            Ok(Started::Task { arn: new, .. }) => {
                if let Some(r) = self
                    .relaunches
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_mut(handle)
                {
                    r.current = new;
                }
                Polled {
                    status: "PROVISIONING".into(),
                    stopped: false,
                }
            }
            _ => polled,
        }
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

impl EcsFleet {
    /// The rest of a launch, once the run's artifact prefix is recorded: its overrides,
    /// its directory, RunTask.
    async fn launch_recorded(
        &self,
        run: &FleetRun,
        spec: &RunSpec,
        deadline: SystemTime,
        source: Option<&Source>,
        artifacts: &str,
    ) -> Result<String, LaunchError> {
        let failed = |e: anyhow::Error| LaunchError::Failed(format!("{e:#}"));
        let overrides = self
            .ecs
            .environment(
                &self.cloud,
                spec,
                deadline,
                source,
                self.api_key.as_ref(),
                self.td.isolation.isolated(),
                artifacts,
            )
            .await
            .map_err(failed)?;
        let dir = spec.artifacts_dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| LaunchError::Failed(format!("cannot create `{}`: {e}", dir.display())))?;
        let request = self
            .ecs
            .run_task_request(
                &self.cloud,
                &run.run_id,
                overrides,
                &[(TAG_FLEET, self.fleet_id.as_str())],
            )
            .map_err(failed)?;
        self.calls.run_task.fetch_add(1, Relaxed);
        match Ecs::<Arc<Aws>>::run_task_once(&request, &run.run_id).await {
            Ok(Started::Task { arn, .. }) => {
                self.started
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(run.run_id.clone(), chrono::Utc::now());
                self.prefixes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(run.run_id.clone(), artifacts.to_string());
                let _ = std::fs::write(dir.join(".ecs-task"), &arn);
                self.relaunches
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(
                        arn.clone(),
                        Relaunching {
                            run_id: run.run_id.clone(),
                            request,
                            current: arn.clone(),
                            attempts: 0,
                            since: std::time::Instant::now(),
                            next_at: None,
                        },
                    );
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
        // The run's private artifact prefix, recorded before its task can exist
        // (`cloud::records`); a launch that fails forgets it.
        let artifacts = records::new_prefix(&run.run_id);
        let s3 = self.aws.s3();
        records::record(&s3, &self.cloud.bucket, &artifacts)
            .await
            .map_err(failed)?;
        let launched = self
            .launch_recorded(run, &spec, deadline, source, &artifacts)
            .await;
        if launched.is_err() {
            records::forget(&s3, &self.cloud.bucket, &artifacts).await;
        }
        launched
    }

    async fn poll(&self, handles: &[String]) -> anyhow::Result<HashMap<String, Polled>> {
        let current: Vec<String> = handles.iter().map(|h| self.current(h)).collect();
        let mut polled = self.poll_tasks(&current).await?;
        let mut out = HashMap::new();
        for (handle, arn) in handles.iter().zip(current) {
            if let Some(p) = polled.remove(&arn) {
                let p = self.relaunch_if_role_not_ready(handle, &arn, p).await;
                out.insert(handle.clone(), p);
            }
        }
        Ok(out)
    }

    async fn last_lines(&self, handles: &[String]) -> HashMap<String, String> {
        // Only tasks whose container started have a stream (the task standing for
        // the handle now: one launched again while IAM propagated has its own).
        let started: Vec<(String, String)> = {
            let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
            handles
                .iter()
                .map(|h| (h.clone(), self.current(h)))
                .filter(|(_, arn)| {
                    states.get(arn).is_some_and(|s| {
                        !matches!(
                            s.last_status.as_str(),
                            "" | "PROVISIONING" | "PENDING" | "ACTIVATING"
                        )
                    })
                })
                .collect()
        };
        let mut out = HashMap::new();
        for chunk in started.chunks(STREAMS_PER_CALL) {
            let streams: Vec<String> = chunk.iter().map(|(_, arn)| stream_of(arn)).collect();
            let lines = self.last_lines_of(&streams).await;
            for (h, arn) in chunk {
                if let Some(l) = lines.get(&stream_of(arn)) {
                    out.insert(h.clone(), l.clone());
                }
            }
        }
        out
    }

    async fn stop(&self, handle: &str, reason: &str) {
        crate::runner::ecs::stop_task(
            &self.aws.ecs(),
            &self.cloud.cluster,
            &self.current(handle),
            reason,
        )
        .await;
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
        // The task standing for the handle now (one launched again while IAM
        // propagated replaces the first).
        let current = handle.map(|h| self.current(h));
        let state = current
            .as_ref()
            .and_then(|t| {
                self.states
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(t)
                    .cloned()
            })
            .unwrap_or_default();
        // The same collection as a single cloud run: inputs deleted, artifacts
        // downloaded, the summary settled, the branch brought back.
        let prefix = self
            .prefixes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&run.run_id)
            .cloned();
        let h = self.ecs.handle(
            &run.run_id,
            current.as_deref().unwrap_or_default(),
            dir.clone(),
            started,
            prefix,
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
                if let Err(e) = self.ecs.keep_beside(&summary, &path, &name).await {
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
