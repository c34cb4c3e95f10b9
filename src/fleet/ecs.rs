//! A fleet on ECS Fargate.
//!
//! What is done once per fleet, not once per run: the task definition is read, the
//! image checked in ECR, the GitHub App proven on each distinct repository (its default
//! branch read), the Anthropic key's route decided, a local repository bundled and
//! uploaded (one bundle per repository, `inputs/<fleet id>-<random>/…`).
//!
//! Per run: one RunTask, with the run id as its `clientToken` (ECS makes a repeated
//! RunTask with the same token return the first task instead of a second one) and as
//! its `lackey:run-id` tag, with the fleet id as `lackey:fleet`. A fleet resumed after
//! the CLI died finds its launched runs by those tags (ListTasks by the stack's
//! `startedBy`, then DescribeTasks with tags), so it relaunches only what never reached
//! ECS. moto ignores `clientToken`; the tag lookup is what the tests prove.
//!
//! Per tick: one DescribeTasks per 100 runs in flight. Collection (artifact downloads)
//! runs a bounded number at once (the engine's pacing).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_ecs::operation::run_task::builders::RunTaskFluentBuilder;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, LaunchType, NetworkConfiguration, Tag, TaskField,
    TaskOverride,
};

use super::engine::{FleetBackend, LaunchError, Pacing, Polled};
use super::{FleetRun, FleetTask};
use crate::aws::{is_invalid_for_state, is_retryable, render_sdk_error, Aws, AwsResultExt};
use crate::error::Fail;
use crate::output::Reporter;
use crate::ownership;
use crate::run_contract::{var, GithubAuth, RepoSource, Secret, TaskSource};
use crate::runner::ecs::{
    check_isolation, isolation_of, overrides_size, role_not_assumable, task_overrides,
    through_sidecar, CloudSpec, TaskState, OVERRIDES_LIMIT, ROLE_PROPAGATION_WAIT,
};
use crate::runner::{HostEnd, RunSpec};
use crate::summary::{RunSummary, Runtime};

/// Fargate's documented RunTask quota is 20 calls a second (burst and sustained), per
/// account and region; a fleet keeps under it so other callers still get a share.
pub const RUN_TASK_PER_S: f64 = 15.0;
pub const RUN_TASK_BURST: f64 = 20.0;

/// The fleet a task belongs to (its run is tagged with [`ownership::TAG_RUN_ID`]).
pub const TAG_FLEET: &str = "lackey:fleet";

/// Builds each run's [`RunSpec`] (the command layer resolves it from settings).
pub type SpecFn = Box<dyn Fn(&FleetRun, &FleetTask) -> anyhow::Result<RunSpec> + Send + Sync>;

/// Counters of AWS calls the fleet made (for `make bench-fleet`).
#[derive(Default, Debug)]
pub struct Calls {
    pub run_task: std::sync::atomic::AtomicU64,
    pub describe_tasks: std::sync::atomic::AtomicU64,
    pub polls: std::sync::atomic::AtomicU64,
}

pub struct EcsFleet {
    aws_ecs: aws_sdk_ecs::Client,
    s3: aws_sdk_s3::Client,
    cloud: CloudSpec,
    fleet_id: String,
    network: NetworkConfiguration,
    /// GitHub repository → its default branch, proven once.
    github_base: HashMap<String, String>,
    /// (GitHub repository, blueprint) → the blueprint's branch template, read once from
    /// the default branch: each run's branch is decided from it before launch.
    github_templates: HashMap<(String, Option<String>), Option<String>>,
    /// An installation token, when the task definition does not inject the App key
    /// (a hand-made task definition: it goes as an override, with a warning).
    github_token: Option<String>,
    /// The Anthropic key, when the task definition does not inject it (likewise).
    api_key: Option<String>,
    /// Whether the task definition has the credential sidecar (the credentials then go
    /// to it, never to the minion's container).
    isolated: bool,
    /// Local repository → (bundle URL in S3, its branch).
    bundles: HashMap<PathBuf, (String, Option<String>)>,
    specs: SpecFn,
    states: Mutex<HashMap<String, TaskState>>,
    started: Mutex<HashMap<String, chrono::DateTime<chrono::Utc>>>,
    /// Each run's RunTask request and the task that stands for its handle now: ECS
    /// may fail to assume a role `up` just made, and the run is launched again.
    relaunches: Mutex<HashMap<String, Relaunching>>,
    pub calls: std::sync::Arc<Calls>,
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

impl EcsFleet {
    /// Everything done once per fleet; `specs` are the runs' specs (every distinct
    /// repository among them is prepared).
    pub async fn prepare(
        aws: &Aws,
        cloud: CloudSpec,
        fleet_id: &str,
        sample: &[RunSpec],
        specs: SpecFn,
        reporter: &dyn Reporter,
        docker_image: Option<&crate::output::Printer>,
    ) -> anyhow::Result<EcsFleet> {
        let ecs = aws.ecs();
        let s3 = aws.s3();
        let td = ecs
            .describe_task_definition()
            .task_definition(&cloud.task_family)
            .send()
            .await
            .map_err(|e| {
                if is_invalid_for_state(&e) {
                    anyhow::Error::new(
                        Fail::new(format!("task definition `{}` not found", cloud.task_family))
                            .with_hint(
                                "run `lackey up` to register it (or set LACKEY_ECS_TASK_DEF)",
                            ),
                    )
                } else {
                    anyhow::Error::new(render_sdk_error(e))
                }
            })?;
        let arch = td
            .task_definition()
            .map(crate::cloud::ecr::task_definition_architecture)
            .unwrap_or(crate::runner::image::CpuArch::X86_64);
        if let (Some(printer), Some(first)) = (docker_image, sample.first()) {
            match crate::runner::docker::connect().await {
                Ok(docker) => {
                    crate::cloud::ecr::ensure_image_in_ecr(
                        &docker,
                        aws,
                        &first.image,
                        &cloud.registry,
                        &cloud.repository,
                        arch,
                        printer,
                    )
                    .await?;
                }
                Err(e) => reporter.warn(&format!("{e:#}; using the image ECR already holds")),
            }
        }
        let isolation = isolation_of(
            td.task_definition()
                .map(|t| t.container_definitions())
                .unwrap_or_default(),
        );
        check_isolation(&isolation, &cloud, reporter)?;
        let injected: Vec<String> = isolation.injected().to_vec();
        let github_key_injected = injected.iter().any(|n| n == var::GITHUB_APP_PRIVATE_KEY);
        let mut github_token = None;
        let mut api_key = None;
        // GitHub: each distinct repository proven once (and its default branch read).
        let mut github_base = HashMap::new();
        let mut github_templates = HashMap::new();
        let gh_repos: std::collections::BTreeSet<String> = sample
            .iter()
            .filter_map(|s| s.github_repo.clone())
            .collect();
        if let (Some(gh), false) = (&cloud.github, gh_repos.is_empty()) {
            reporter.info("Minting GitHub App installation tokens...");
            let key =
                crate::cloud::secrets::get_github_app_private_key(aws, &gh.key_secret).await?;
            let client = crate::github::GitHub::new(&gh.api_url);
            for repo in &gh_repos {
                let name = repo.split_once('/').map(|(_, n)| n).unwrap_or(repo);
                let token = client
                    .installation_token(&gh.app_id, &key, &gh.installation_id, Some(name))
                    .await?;
                let branch = client.default_branch(&token.token, repo).await?;
                github_templates
                    .extend(branch_templates(&client, &token.token, repo, &branch, sample).await?);
                github_base.insert(repo.clone(), branch);
                if !github_key_injected {
                    // A hand-made task definition: the token goes as an override.
                    github_token = Some(token.token.clone());
                }
            }
            if !github_key_injected {
                reporter.warn("the task definition does not inject the GitHub App key: the token goes as an environment override, visible to ecs:DescribeTasks (`lackey up` wires the key as an ECS secret)");
                if gh_repos.len() > 1 {
                    return Err(Fail::new("a fleet over several GitHub repositories needs the task definition `lackey up` registers (it injects the App key)")
                        .with_hint("run `lackey up` (or `lackey up --adopt`), or give the fleet one repository")
                        .into());
                }
            }
        }
        let stubs = sample.iter().all(|s| s.stubs);
        if stubs {
            reporter.info("Anthropic API key: not needed (--stubs)");
        } else if injected.iter().any(|n| n == var::ANTHROPIC_API_KEY) {
            reporter.info(&format!(
                "Anthropic API key: injected by ECS from Secrets Manager ({})",
                cloud.anthropic_secret
            ));
        } else {
            let key = crate::cloud::secrets::get_secret_value(aws, &cloud.anthropic_secret).await?;
            reporter.warn("the task definition does not inject the Anthropic key: it goes as an environment override, visible to ecs:DescribeTasks (`lackey up` wires it as an ECS secret)");
            api_key = Some(key);
        }
        // Local repositories: one bundle each, shared by the fleet's runs.
        let mut bundles = HashMap::new();
        let local: std::collections::BTreeSet<PathBuf> = sample
            .iter()
            .filter(|s| s.github_repo.is_none())
            .filter_map(|s| s.repo.clone())
            .collect();
        for (n, repo) in local.iter().enumerate() {
            let file = tempfile::NamedTempFile::new()?;
            let branch = crate::runner::ecs::bundle_repo(repo, file.path(), None)?;
            let key = crate::runner::ecs::input_key(fleet_id, &format!("source-{n}.bundle"));
            crate::cloud::s3::upload_file(&s3, file.path(), &cloud.bucket, &key).await?;
            bundles.insert(
                repo.clone(),
                (
                    format!("s3://{}/{key}", cloud.bucket),
                    (branch != "HEAD").then_some(branch),
                ),
            );
        }
        let network = NetworkConfiguration::builder()
            .awsvpc_configuration(
                AwsVpcConfiguration::builder()
                    .set_subnets(Some(cloud.subnets.clone()))
                    .security_groups(&cloud.security_group_id)
                    .assign_public_ip(if cloud.assign_public_ip {
                        AssignPublicIp::Enabled
                    } else {
                        AssignPublicIp::Disabled
                    })
                    .build()?,
            )
            .build();
        Ok(EcsFleet {
            aws_ecs: ecs,
            s3,
            cloud,
            fleet_id: fleet_id.to_string(),
            network,
            github_base,
            github_templates,
            github_token,
            api_key,
            isolated: isolation.isolated(),
            bundles,
            specs,
            states: Mutex::new(HashMap::new()),
            started: Mutex::new(HashMap::new()),
            relaunches: Mutex::new(HashMap::new()),
            calls: Default::default(),
        })
    }

    /// The minion's environment for one run: the run contract's `MinionInput`, filled
    /// in as a single cloud run fills it, from what the fleet prepared once.
    async fn environment(
        &self,
        spec: &RunSpec,
        deadline_unix: f64,
    ) -> anyhow::Result<TaskOverride> {
        let deadline = std::time::UNIX_EPOCH + Duration::from_secs_f64(deadline_unix.max(0.0));
        let template = spec.github_repo.as_ref().and_then(|r| {
            self.github_templates
                .get(&(r.clone(), spec.blueprint.clone()))
                .cloned()
                .flatten()
        });
        let mut spec = spec.clone();
        spec.take_branch_template(template)?;
        let spec = &spec;
        let mut input = spec.minion_input(Runtime::Cloud, deadline);
        let can_push = match (&spec.github_repo, &self.cloud.github) {
            (Some(repo), Some(gh)) => {
                input.repo =
                    RepoSource::Url(format!("{}/{repo}.git", gh.git_url.trim_end_matches('/')));
                input.github_repo = Some(repo.clone());
                input.github_api_url = gh.api_url.clone();
                input.github_git_url = gh.git_url.clone();
                input.github = Some(match &self.github_token {
                    None => GithubAuth::App {
                        app_id: gh.app_id.clone(),
                        installation_id: gh.installation_id.clone(),
                        private_key: None,
                    },
                    Some(token) => GithubAuth::Token(Secret::Value(token.clone())),
                });
                input.base_ref = self.github_base.get(repo).cloned();
                true
            }
            _ => {
                if let Some((url, branch)) = spec.repo.as_ref().and_then(|r| self.bundles.get(r)) {
                    input.repo = RepoSource::BundleS3(url.clone());
                    input.base_ref = branch.clone();
                }
                false
            }
        };
        if let Some(key) = &self.api_key {
            input.api_key = Some(Secret::Value(key.clone()));
        }
        // What `env.GITHUB_TOKEN` means in a blueprint: this run can push.
        input.can_push = Some(can_push);
        input.bucket = Some(self.cloud.bucket.clone());
        input.s3_prefix = Some(spec.run_id.clone());
        input.aws_region = Some(self.cloud.region.clone());
        // With the credential sidecar, the credentials and upstreams move to it, with the
        // run's push target (its branch, decided above; never the default branch).
        let sidecar = self.isolated.then(|| {
            let target = spec.push_target(input.base_ref.clone());
            through_sidecar(&mut input, target).to_env()
        });
        let mut env = input.to_env();
        if overrides_size(&env, sidecar.as_deref()) > OVERRIDES_LIMIT - 512 {
            if let TaskSource::Inline(task) = &input.task {
                let key = crate::runner::ecs::input_key(&spec.run_id, "task.txt");
                crate::cloud::s3::put_text(&self.s3, &self.cloud.bucket, &key, task).await?;
                input.task = TaskSource::S3(format!("s3://{}/{key}", self.cloud.bucket));
                env = input.to_env();
            }
        }
        let size = overrides_size(&env, sidecar.as_deref());
        if size > OVERRIDES_LIMIT {
            return Err(anyhow::anyhow!(
                "the run's environment overrides are {size} characters, over ECS's limit of {OVERRIDES_LIMIT}"
            ));
        }
        Ok(task_overrides(&env, sidecar.as_deref()))
    }

    fn spec(&self, run: &FleetRun, task: &FleetTask) -> anyhow::Result<RunSpec> {
        (self.specs)(run, task)
    }

    /// Remove the fleet's shared inputs (the bundles) once it is over.
    pub async fn finish(&self) {
        crate::runner::ecs::delete_inputs(&self.s3, &self.cloud.bucket, &self.fleet_id).await;
    }
}

impl EcsFleet {
    /// The task standing for a run's handle now (itself, unless launched again).
    fn current(&self, handle: &str) -> String {
        self.relaunches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(handle)
            .map(|r| r.current.clone())
            .unwrap_or_else(|| handle.to_string())
    }

    /// DescribeTasks for these tasks (100 per call); their states kept for `collect`.
    async fn poll_tasks(&self, arns: &[String]) -> anyhow::Result<HashMap<String, Polled>> {
        use std::sync::atomic::Ordering::Relaxed;
        self.calls.polls.fetch_add(1, Relaxed);
        let mut out = HashMap::new();
        for chunk in arns.chunks(100) {
            self.calls.describe_tasks.fetch_add(1, Relaxed);
            let d = self
                .aws_ecs
                .describe_tasks()
                .cluster(&self.cloud.cluster)
                .set_tasks(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| anyhow::Error::new(render_sdk_error(e)))?;
            let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
            for t in d.tasks() {
                let Some(arn) = t.task_arn() else { continue };
                let c = t
                    .containers()
                    .iter()
                    .find(|c| c.name() == Some(crate::run_contract::MINION_CONTAINER))
                    .or(t.containers().first());
                let state = TaskState {
                    last_status: t.last_status().unwrap_or_default().to_string(),
                    stop_code: t.stop_code().map(|s| s.as_str().to_string()),
                    stopped_reason: t.stopped_reason().map(str::to_string),
                    exit_code: c.and_then(|c| c.exit_code()),
                    container_reason: c.and_then(|c| c.reason()).map(str::to_string),
                };
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
        self.calls
            .run_task
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out = request
            .client_token(format!("{run_id}-{attempt}"))
            .send()
            .await;
        match out.ok().and_then(|o| {
            o.tasks()
                .first()
                .and_then(|t| t.task_arn())
                .map(str::to_string)
        }) {
            Some(new) => {
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
            None => polled,
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
        let deadline = run
            .deadline_unix
            .unwrap_or_else(|| chrono::Utc::now().timestamp() as f64 + spec.timeout.as_secs_f64());
        let overrides = self.environment(&spec, deadline).await.map_err(failed)?;
        let dir = spec.artifacts_dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| LaunchError::Failed(format!("cannot create `{}`: {e}", dir.display())))?;
        let tags = vec![
            Tag::builder()
                .key(ownership::TAG_STACK)
                .value(&self.cloud.stack)
                .build(),
            Tag::builder()
                .key(ownership::TAG_RUN_ID)
                .value(&run.run_id)
                .build(),
            Tag::builder().key(TAG_FLEET).value(&self.fleet_id).build(),
            Tag::builder()
                .key(ownership::TAG_MANAGED_BY)
                .value("lackey")
                .build(),
        ];
        self.calls
            .run_task
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let request = self
            .aws_ecs
            .run_task()
            .cluster(&self.cloud.cluster)
            .task_definition(&self.cloud.task_family)
            .launch_type(LaunchType::Fargate)
            .network_configuration(self.network.clone())
            .overrides(overrides)
            .count(1)
            .started_by(self.cloud.started_by())
            .set_tags(Some(tags));
        let out = request.clone().client_token(&run.run_id).send().await;
        let out = match out {
            Ok(o) => o,
            Err(e) if is_retryable(&e) => {
                return Err(LaunchError::Retry(format!(
                    "RunTask: {}",
                    render_sdk_error(e)
                )))
            }
            Err(e) => {
                return Err(LaunchError::Failed(format!(
                    "failed to run a task of `{}` on cluster `{}`: {}",
                    self.cloud.task_family,
                    self.cloud.cluster,
                    render_sdk_error(e)
                )))
            }
        };
        if let Some(arn) = out.tasks().first().and_then(|t| t.task_arn()) {
            self.started
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(run.run_id.clone(), chrono::Utc::now());
            let _ = std::fs::write(dir.join(".ecs-task"), arn);
            self.relaunches
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(
                    arn.to_string(),
                    Relaunching {
                        run_id: run.run_id.clone(),
                        request,
                        current: arn.to_string(),
                        attempts: 0,
                        since: std::time::Instant::now(),
                        next_at: None,
                    },
                );
            return Ok(arn.to_string());
        }
        let reasons: Vec<String> = out
            .failures()
            .iter()
            .map(|f| {
                format!(
                    "{} ({})",
                    f.reason().unwrap_or("?"),
                    f.detail().unwrap_or("")
                )
            })
            .collect();
        let reason = reasons.join("; ");
        if reasons
            .iter()
            .any(|r| r.contains("RESOURCE") || r.to_lowercase().contains("capacity"))
        {
            Err(LaunchError::Retry(format!(
                "no Fargate capacity ({reason})"
            )))
        } else {
            Err(LaunchError::Failed(format!(
                "ECS did not start the task: {reason}"
            )))
        }
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

    async fn stop(&self, handle: &str, reason: &str) {
        crate::runner::ecs::stop_task(
            &self.aws_ecs,
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
            Err(e) => return failed_summary(run, task, &format!("{e:#}")),
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
        crate::runner::ecs::delete_inputs(&self.s3, &self.cloud.bucket, &spec.run_id).await;
        let downloaded = match handle {
            None => false,
            Some(_) => matches!(
                crate::cloud::s3::download_artifacts(&self.s3, &self.cloud.bucket, &spec.run_id, &dir).await,
                Ok(t) if t.files > 0
            ),
        };
        let state = handle
            .and_then(|h| {
                self.states
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&self.current(h))
                    .cloned()
            })
            .unwrap_or_default();
        let end = end.unwrap_or_else(|| host_end(&state, downloaded));
        let mut summary = crate::runner::settle_summary(&spec, Runtime::Cloud, &end, started, None);
        if summary.s3_prefix.is_none() && downloaded {
            summary.s3_prefix = Some(format!("s3://{}/{}/", self.cloud.bucket, spec.run_id));
        }
        // A local repository gets the run's branch back from its bundle.
        if let (Some(repo), None) = (&spec.repo, &spec.github_repo) {
            if let Err(e) = crate::runner::fetch_back(repo, &dir, &summary, &spec, &end) {
                tracing::warn!("run {}: {e:#}", spec.run_id);
            }
        }
        summary
    }

    async fn find(&self, run_ids: &[String]) -> anyhow::Result<HashMap<String, String>> {
        let all = fleet_tasks(
            &self.aws_ecs,
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
    let arns = crate::runner::ecs::stack_task_arns(ecs, cluster, started_by).await?;
    let mut found = HashMap::new();
    for chunk in arns.chunks(100) {
        let d = ecs
            .describe_tasks()
            .cluster(cluster)
            .set_tasks(Some(chunk.to_vec()))
            .include(TaskField::Tags)
            .send()
            .await
            .aws("failed to describe the stack's tasks")?;
        for t in d.tasks() {
            let tag = |k: &str| {
                t.tags()
                    .iter()
                    .find(|x| x.key() == Some(k))
                    .and_then(|x| x.value())
                    .map(str::to_string)
            };
            if tag(TAG_FLEET).as_deref() != Some(fleet_id) {
                continue;
            }
            if let (Some(id), Some(arn)) = (tag(ownership::TAG_RUN_ID), t.task_arn()) {
                found.insert(
                    id,
                    (
                        arn.to_string(),
                        t.last_status().unwrap_or_default().to_string(),
                    ),
                );
            }
        }
    }
    Ok(found)
}

/// How the host saw a task end, when the engine did not end it itself.
fn host_end(state: &TaskState, downloaded: bool) -> HostEnd {
    if state.stop_code.as_deref() == Some("TaskFailedToStart") || !downloaded {
        let reason = state
            .stopped_reason
            .clone()
            .or(state.container_reason.clone())
            .unwrap_or_default();
        let mut msg = format!(
            "the task stopped: {}",
            if reason.is_empty() {
                "no reason given"
            } else {
                &reason
            }
        );
        if let Some(code) = state.exit_code {
            msg.push_str(&format!(" (exit code {code})"));
        }
        HostEnd::Failed(msg)
    } else {
        HostEnd::Exited(state.exit_code.unwrap_or(-1) as i64)
    }
}

/// A summary for a run whose spec could not even be built (nothing was launched).
pub fn failed_summary(run: &FleetRun, task: &FleetTask, error: &str) -> RunSummary {
    let now = chrono::Utc::now().to_rfc3339();
    RunSummary {
        run_id: run.run_id.clone(),
        task: task.task.clone(),
        outcome: crate::summary::Outcome::Error,
        runtime: Runtime::Cloud,
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
