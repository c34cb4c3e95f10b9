//! Cloud runs on ECS Fargate: the [`Ecs`] backend.
//!
//! Output order is fixed (users and tests read it): the image in ECR, the GitHub token,
//! the Anthropic key, `Launched ECS task: <arn>`, each status transition on stderr,
//! `Downloading artifacts to …`, the summary.
//!
//! What must stay true:
//! * No secret enters the minion's container: the task definition `lackey up` registers
//!   has two containers, the minion and the credential sidecar (`lackey proxy`,
//!   `proxy::sidecar`), and ECS injects the Anthropic key and the GitHub App key from
//!   Secrets Manager into the sidecar only. The sidecar mints the installation token and
//!   adds the credentials on the way out; the minion is told its address
//!   (`LACKEY_PROXY_URL`) and reaches the LLM, git and the GitHub API through it
//!   ([`through_sidecar`]). A task definition made by hand (one container with the
//!   secrets) still runs, with a warning on every run, unless
//!   `[run] require_isolation` refuses it ([`check_isolation`]).
//! * No secret travels through RunTask either: a value the task definition does not
//!   inject goes as an environment override only as a fallback, with a warning, because
//!   anyone with `ecs:DescribeTasks` can read it.
//! * Overrides stay under ECS's 8,192-character limit: a long task goes through S3.
//! * Every task the process watches is polled by one DescribeTasks call per tick
//!   ([`TaskWatcher`]), with backoff, for as long as the run takes.
//! * Timeout and Ctrl-C stop the task (StopTask: SIGTERM, the minion uploads what it
//!   has, SIGKILL after 30 s); no task is left running.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_ecs::operation::run_task::builders::RunTaskFluentBuilder;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, ContainerOverride, KeyValuePair, LaunchType,
    NetworkConfiguration, Tag, TaskField, TaskOverride,
};
use futures::stream::BoxStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::backend::{
    channel_stream, Backend, LogSink, RunEnd, RunEvent, RunHandle, RunOutcome, RunRow,
};
use super::{HostEnd, RunSpec};
use crate::aws::{Aws, AwsResultExt};
use crate::cloud::records;
use crate::error::Fail;
use crate::output::Reporter;
use crate::ownership;
use crate::run_contract::{
    var, GithubAuth, Isolation, MinionInput, RepoSource, Secret, SidecarInput, TaskSource,
    MINION_CONTAINER, SIDECAR_CONTAINER,
};
use crate::summary::{RunSummary, Runtime};

/// ECS's limit on the JSON of a RunTask's overrides.
pub const OVERRIDES_LIMIT: usize = 8192;

/// GitHub settings of a cloud run on a GitHub repository.
#[derive(Clone, Debug)]
pub struct GithubTarget {
    pub repo: String,
    pub app_id: String,
    pub installation_id: String,
    pub key_secret: String,
    pub api_url: String,
    pub git_url: String,
}

/// Everything a cloud run needs beyond [`RunSpec`].
#[derive(Clone, Debug)]
pub struct CloudSpec {
    pub stack: String,
    pub region: String,
    pub endpoint_url: Option<String>,
    pub cluster: String,
    pub task_family: String,
    pub subnets: Vec<String>,
    pub security_group_id: String,
    pub assign_public_ip: bool,
    pub bucket: String,
    /// The stack's log group (a launched task's own comes from its task definition).
    pub log_group: String,
    pub registry: String,
    pub repository: String,
    pub anthropic_secret: String,
    pub github: Option<GithubTarget>,
    /// `[run] require_isolation`: refuse a task definition without the credential
    /// sidecar rather than warn.
    pub require_isolation: bool,
}

impl CloudSpec {
    /// The cloud side of a run, from settings (values found nowhere are errors naming
    /// their variable).
    pub fn from_settings(
        settings: &crate::config::Settings,
        github_repo: Option<&str>,
    ) -> anyhow::Result<CloudSpec> {
        use crate::config::keys;
        let subnets: Vec<String> = settings
            .require(&keys::NETWORK_SUBNETS)?
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let github = match github_repo {
            Some(repo) => Some(GithubTarget {
                repo: repo.to_string(),
                app_id: settings.require(&keys::GITHUB_APP_ID)?.to_string(),
                installation_id: settings.require(&keys::GITHUB_INSTALLATION_ID)?.to_string(),
                key_secret: settings.require(&keys::SECRETS_GITHUB_APP_KEY)?.to_string(),
                api_url: settings.require(&keys::GITHUB_API_URL)?.to_string(),
                git_url: settings.require(&keys::GITHUB_GIT_URL)?.to_string(),
            }),
            None => None,
        };
        Ok(CloudSpec {
            stack: settings.require(&keys::STACK_NAME)?.to_string(),
            region: settings.require(&keys::AWS_REGION)?.to_string(),
            endpoint_url: settings.get(&keys::AWS_ENDPOINT_URL).map(str::to_string),
            cluster: settings.require(&keys::ECS_CLUSTER)?.to_string(),
            task_family: settings.require(&keys::ECS_TASK_FAMILY)?.to_string(),
            subnets,
            security_group_id: settings
                .require(&keys::NETWORK_SECURITY_GROUP_ID)?
                .to_string(),
            assign_public_ip: settings.flag(&keys::NETWORK_ASSIGN_PUBLIC_IP),
            bucket: settings.require(&keys::BUCKET_NAME)?.to_string(),
            log_group: settings.require(&keys::LOGS_GROUP)?.to_string(),
            registry: settings.require(&keys::ECR_REGISTRY)?.to_string(),
            repository: settings.require(&keys::ECR_REPOSITORY)?.to_string(),
            anthropic_secret: settings
                .require(&keys::SECRETS_ANTHROPIC_API_KEY)?
                .to_string(),
            github,
            require_isolation: settings.flag(&keys::RUN_REQUIRE_ISOLATION),
        })
    }

    pub fn started_by(&self) -> String {
        ownership::started_by(&self.stack)
    }
}

/// A task's state as DescribeTasks reports it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskState {
    pub last_status: String,
    pub stop_code: Option<String>,
    pub stopped_reason: Option<String>,
    pub exit_code: Option<i32>,
    pub container_reason: Option<String>,
}

impl TaskState {
    pub fn stopped(&self) -> bool {
        self.last_status == "STOPPED"
    }

    /// The state DescribeTasks reports for a task: its exit code and reason are the
    /// minion's container's (the one named `minion`, else the first).
    pub fn of(t: &aws_sdk_ecs::types::Task) -> TaskState {
        let c = t
            .containers()
            .iter()
            .find(|c| c.name() == Some(MINION_CONTAINER))
            .or(t.containers().first());
        TaskState {
            last_status: t.last_status().unwrap_or_default().to_string(),
            stop_code: t.stop_code().map(|s| s.as_str().to_string()),
            stopped_reason: t.stopped_reason().map(str::to_string),
            exit_code: c.and_then(|c| c.exit_code()),
            container_reason: c.and_then(|c| c.reason()).map(str::to_string),
        }
    }

    /// How the run ended, as the backend tells `collect`; `stopped`: the host stopped it.
    pub(crate) fn end(&self, stopped: Option<HostEnd>) -> RunEnd {
        RunEnd {
            stopped,
            exit_code: self.exit_code.map(i64::from),
            reason: self
                .stopped_reason
                .clone()
                .or(self.container_reason.clone()),
            failed_to_start: self.stop_code.as_deref() == Some("TaskFailedToStart"),
        }
    }
}

/// Polls every watched task with one DescribeTasks call (per 100 tasks) per tick.
pub struct TaskWatcher {
    ecs: aws_sdk_ecs::Client,
    cluster: String,
    tasks: Arc<Mutex<HashMap<String, watch::Sender<TaskState>>>>,
    /// DescribeTasks calls made, and ticks (for measurement).
    pub calls: Arc<std::sync::atomic::AtomicU64>,
    pub ticks: Arc<std::sync::atomic::AtomicU64>,
    stop: CancellationToken,
}

impl TaskWatcher {
    pub fn start(ecs: aws_sdk_ecs::Client, cluster: &str) -> Arc<TaskWatcher> {
        let w = Arc::new(TaskWatcher {
            ecs,
            cluster: cluster.to_string(),
            tasks: Arc::new(Mutex::new(HashMap::new())),
            calls: Arc::new(Default::default()),
            ticks: Arc::new(Default::default()),
            stop: CancellationToken::new(),
        });
        let me = w.clone();
        tokio::spawn(async move { me.poll().await });
        w
    }

    /// Watch a task; the receiver sees every state the watcher observes.
    pub fn watch(&self, arn: &str) -> watch::Receiver<TaskState> {
        let (tx, rx) = watch::channel(TaskState::default());
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(arn.to_string(), tx);
        rx
    }

    pub fn shutdown(&self) {
        self.stop.cancel();
    }

    async fn poll(&self) {
        let mut interval = Duration::from_millis(500);
        let started = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = self.stop.cancelled() => return,
            }
            let arns: Vec<String> = {
                let mut map = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
                // Forget tasks nobody listens to any more.
                map.retain(|_, tx| !tx.is_closed());
                map.keys().cloned().collect()
            };
            if arns.is_empty() {
                continue;
            }
            self.ticks
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut failed = false;
            for chunk in arns.chunks(100) {
                self.calls
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                match self
                    .ecs
                    .describe_tasks()
                    .cluster(&self.cluster)
                    .set_tasks(Some(chunk.to_vec()))
                    .send()
                    .await
                {
                    Ok(out) => {
                        let map = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
                        for t in out.tasks() {
                            let Some(arn) = t.task_arn() else { continue };
                            let state = TaskState::of(t);
                            if let Some(tx) = map.get(arn) {
                                tx.send_if_modified(|old| {
                                    if *old != state {
                                        *old = state.clone();
                                        true
                                    } else {
                                        false
                                    }
                                });
                            }
                        }
                    }
                    Err(e) => {
                        tracing::debug!(
                            "DescribeTasks failed: {}",
                            crate::aws::render_sdk_error(e)
                        );
                        failed = true;
                    }
                }
            }
            // Quick at first (the transitions are worth seeing), then easing off; back
            // off harder while ECS throttles or fails. No cap on how long a run takes.
            let base = if started.elapsed() < Duration::from_secs(60) {
                Duration::from_millis(500)
            } else {
                Duration::from_secs(3)
            };
            interval = if failed {
                (interval * 2).min(Duration::from_secs(15))
            } else {
                base
            };
        }
    }
}

fn hint_for_stop(reason: &str) -> Option<&'static str> {
    if reason.contains("CannotPullContainerError") {
        Some("check the image URI in the task definition (`lackey up`), that the image is in ECR (`lackey image push`), and that the execution role may pull from ECR")
    } else if reason.contains("ResourceInitializationError") {
        Some("ECS could not prepare the task: the execution role must read both secrets and each needs a value (`lackey secret put ...`); `lackey doctor` checks both")
    } else {
        None
    }
}

/// What the GitHub preflight of a cloud run (or of a fleet's repository) learnt.
pub(crate) struct GitHubProof {
    pub(crate) token: String,
    pub(crate) default_branch: String,
}

/// The branch checked out in `repo` (`HEAD` when detached).
pub(crate) fn checked_out_branch(repo: &std::path::Path) -> anyhow::Result<String> {
    let branch = std::process::Command::new("git")
        .args(["rev-parse", "--abbrev-ref", "HEAD"])
        .current_dir(repo)
        .output()?;
    Ok(String::from_utf8_lossy(&branch.stdout).trim().to_string())
}

/// The repository's current branch, bundled whole for a run without GitHub (with the
/// existing branch of `--push-to`, which the run checks out).
pub(crate) fn bundle_repo(
    repo: &std::path::Path,
    out: &std::path::Path,
    push_to: Option<&str>,
) -> anyhow::Result<String> {
    let branch = checked_out_branch(repo)?;
    let status = std::process::Command::new("git")
        .args(["bundle", "create", "--quiet"])
        .arg(out)
        .arg("HEAD")
        .arg(if branch == "HEAD" || branch.is_empty() {
            "HEAD"
        } else {
            &branch
        })
        .args(push_to)
        .current_dir(repo)
        .output()?;
    if !status.status.success() {
        return Err(anyhow::anyhow!(
            "git bundle failed: {}",
            String::from_utf8_lossy(&status.stderr).trim()
        ));
    }
    Ok(branch)
}

/// Where the ECS backend finds runs launched earlier: the stack's cluster, its bucket
/// and its log group.
#[derive(Clone, Debug)]
pub struct EcsTarget {
    pub stack: String,
    pub cluster: String,
    pub bucket: String,
    pub log_group: String,
}

impl EcsTarget {
    pub fn from_settings(settings: &crate::config::Settings) -> anyhow::Result<EcsTarget> {
        use crate::config::keys;
        Ok(EcsTarget {
            stack: settings.require(&keys::STACK_NAME)?.to_string(),
            cluster: settings.require(&keys::ECS_CLUSTER)?.to_string(),
            bucket: settings.require(&keys::BUCKET_NAME)?.to_string(),
            log_group: settings.require(&keys::LOGS_GROUP)?.to_string(),
        })
    }
}

/// The ECS Fargate backend: tasks of the stack's task definition, artifacts in S3. It
/// owns its AWS clients (`Ecs<Aws>`) or borrows a caller's (`Ecs<&Aws>`).
pub struct Ecs<A = Aws> {
    aws: A,
    target: EcsTarget,
    /// What launching needs beyond the target (absent on a backend opened to look runs
    /// up).
    launch: Option<CloudSpec>,
}

/// What the backend holds of a launched task.
struct CloudRun {
    task_arn: String,
    task_id: String,
    first_status: String,
    log_group: String,
    /// The RunTask request, to launch the task again when ECS could not assume its
    /// roles yet (IAM propagation); none for a run found later.
    relaunch: Option<RunTaskFluentBuilder>,
    /// The run's artifact prefix, when this process launched it (else looked up in the
    /// records, `cloud::records`).
    artifacts: Option<String>,
}

impl<A: Borrow<Aws> + Send + Sync> Ecs<A> {
    /// A backend that launches runs as `cloud` says.
    pub fn new(aws: A, cloud: CloudSpec) -> Ecs<A> {
        Ecs {
            target: EcsTarget {
                stack: cloud.stack.clone(),
                cluster: cloud.cluster.clone(),
                bucket: cloud.bucket.clone(),
                log_group: cloud.log_group.clone(),
            },
            aws,
            launch: Some(cloud),
        }
    }

    /// A backend that finds, lists, tails and stops runs, but launches none.
    pub fn lookup(aws: A, target: EcsTarget) -> Ecs<A> {
        Ecs {
            aws,
            target,
            launch: None,
        }
    }

    fn aws(&self) -> &Aws {
        self.aws.borrow()
    }

    fn cloud(&self) -> anyhow::Result<&CloudSpec> {
        self.launch.as_ref().ok_or_else(|| {
            anyhow::anyhow!("this ECS backend was opened to look runs up, not to launch them")
        })
    }

    /// The task definition: how the secrets reach the task, which images it can run,
    /// where its log goes.
    pub(crate) async fn task_definition(
        &self,
        cloud: &CloudSpec,
    ) -> anyhow::Result<TaskDefinitionFacts> {
        let td = self
            .aws()
            .ecs()
            .describe_task_definition()
            .task_definition(&cloud.task_family)
            .send()
            .await
            .map_err(|e| {
                if crate::aws::is_invalid_for_state(&e) {
                    anyhow::Error::new(
                        Fail::new(format!("task definition `{}` not found", cloud.task_family))
                            .with_hint(
                                "run `lackey up` to register it (or set LACKEY_ECS_TASK_DEF)",
                            ),
                    )
                } else {
                    anyhow::Error::new(crate::aws::render_sdk_error(e))
                }
            })?;
        let containers = td
            .task_definition()
            .map(|t| t.container_definitions())
            .unwrap_or_default();
        let minion = containers
            .iter()
            .find(|c| c.name() == Some(MINION_CONTAINER))
            .or(containers.first());
        Ok(TaskDefinitionFacts {
            arch: td
                .task_definition()
                .map(crate::cloud::ecr::task_definition_architecture)
                .unwrap_or(crate::image::CpuArch::X86_64),
            isolation: isolation_of(containers),
            log_group: minion
                .and_then(|c| c.log_configuration())
                .and_then(|l| l.options())
                .and_then(|o| o.get("awslogs-group").cloned())
                .unwrap_or_else(|| "/ecs/lackey-minion".into()),
        })
    }

    /// Launch, first wave: what the local Docker and the registry say of the image.
    pub(crate) async fn probe_image(
        &self,
        cloud: &CloudSpec,
        image: &str,
    ) -> anyhow::Result<Probed> {
        match super::docker::connect().await {
            Ok(docker) => {
                let probe = crate::cloud::ecr::probe_image(
                    &docker,
                    self.aws(),
                    image,
                    &cloud.registry,
                    &cloud.repository,
                )
                .await?;
                Ok(Probed::Image(docker, Box::new(probe)))
            }
            Err(e) => Ok(Probed::NoDocker(format!("{e:#}"))),
        }
    }

    /// Launch phase 1: the image in ECR, once the task definition says where it runs
    /// (refused before anything is pushed when it cannot run there). Without Docker,
    /// the image ECR already holds is used.
    pub(crate) async fn ensure_image(
        probed: Probed,
        arch: crate::image::CpuArch,
        reporter: &dyn Reporter,
    ) -> anyhow::Result<()> {
        match probed {
            Probed::Image(docker, probe) => {
                crate::cloud::ecr::push_if_needed(&docker, *probe, arch, reporter).await?;
            }
            Probed::NoDocker(why) => {
                reporter.warn(&format!("{why}; using the image ECR already holds"));
            }
        }
        Ok(())
    }

    /// A token minted now, narrowed to GitHub repository `repo` (`owner/name`): it
    /// proves the App, the key and the repository, and reads the default branch. The
    /// client comes with it, to read what a run's branch is decided from.
    pub(crate) async fn github_token(
        &self,
        gh: &GithubTarget,
        repo: &str,
    ) -> anyhow::Result<(crate::github::GitHub, GitHubProof)> {
        let key =
            crate::cloud::secrets::get_github_app_private_key(self.aws(), &gh.key_secret).await?;
        let client = crate::github::GitHub::new(&gh.api_url);
        let repo_name = repo.split_once('/').map(|(_, n)| n).unwrap_or(repo);
        let token = client
            .installation_token(&gh.app_id, &key, &gh.installation_id, Some(repo_name))
            .await?;
        let default_branch = client.default_branch(&token.token, repo).await?;
        Ok((
            client,
            GitHubProof {
                token: token.token,
                default_branch,
            },
        ))
    }

    /// Launch phase 1b, on GitHub: a token minted now proves the app, the key and the
    /// repository, and reads what the run's branch is decided from (the default branch,
    /// the blueprint's template, the `--push-to` branch), before anything is created.
    async fn github_proof(
        &self,
        cloud: &CloudSpec,
        spec: &mut RunSpec,
    ) -> anyhow::Result<Option<GitHubProof>> {
        let Some(gh) = &cloud.github else {
            return Ok(None);
        };
        let (client, proof) = self.github_token(gh, &gh.repo).await?;
        spec.decide_branch_on_github(&client, &proof.token, &gh.repo, &proof.default_branch)
            .await?;
        Ok(Some(proof))
    }

    /// Launch, first wave: a local repository's source (none on GitHub: the proof
    /// made it), uploaded under the run's input key.
    async fn fetch_bundle(
        &self,
        cloud: &CloudSpec,
        spec: &RunSpec,
    ) -> anyhow::Result<Option<Source>> {
        match (&cloud.github, &spec.repo) {
            (None, Some(repo)) => {
                let key = input_key(&spec.run_id, "source.bundle");
                Ok(Some(
                    self.bundle_source(cloud, repo, &key, spec.push_to.as_deref())
                        .await?,
                ))
            }
            _ => Ok(None),
        }
    }

    /// The source of runs on local repository `repo`: its current branch (with the
    /// existing branch of `--push-to`, which the run checks out) bundled and uploaded
    /// to `s3://<bucket>/<key>`; the run brings its branch back as a bundle.
    pub(crate) async fn bundle_source(
        &self,
        cloud: &CloudSpec,
        repo: &Path,
        key: &str,
        push_to: Option<&str>,
    ) -> anyhow::Result<Source> {
        let bundle = tempfile::NamedTempFile::new()?;
        let (repo, path, push_to) = (
            repo.to_path_buf(),
            bundle.path().to_path_buf(),
            push_to.map(str::to_string),
        );
        let branch =
            tokio::task::spawn_blocking(move || bundle_repo(&repo, &path, push_to.as_deref()))
                .await
                .map_err(|e| anyhow::anyhow!("git bundle did not finish: {e}"))??;
        crate::cloud::s3::upload_file(&self.aws().s3(), bundle.path(), &cloud.bucket, key).await?;
        Ok(Source {
            repo: RepoSource::BundleS3(format!("s3://{}/{key}", cloud.bucket)),
            base_ref: (branch != "HEAD").then_some(branch),
            github: None,
        })
    }

    /// The source of runs on GitHub repository `repo`, from the token `github_token`
    /// minted: the task mints its own from the App key ECS injects (the sidecar, or a
    /// hand-made definition's minion); the token travels only when the task definition
    /// does not inject the key (warned).
    pub(crate) fn github_source(
        gh: &GithubTarget,
        repo: &str,
        proof: &GitHubProof,
        injected: &[String],
        reporter: &dyn Reporter,
    ) -> Source {
        let auth = if injected.iter().any(|n| n == var::GITHUB_APP_PRIVATE_KEY) {
            GithubAuth::App {
                app_id: gh.app_id.clone(),
                installation_id: gh.installation_id.clone(),
                private_key: None,
            }
        } else {
            reporter.warn("the task definition does not inject the GitHub App key: the token goes as an environment override, visible to ecs:DescribeTasks (`lackey up` wires the key as an ECS secret)");
            GithubAuth::Token(Secret::Value(proof.token.clone()))
        };
        Source {
            repo: RepoSource::Url(format!("{}/{repo}.git", gh.git_url.trim_end_matches('/'))),
            base_ref: Some(proof.default_branch.clone()),
            github: Some(GithubSource {
                repo: repo.to_string(),
                api_url: gh.api_url.clone(),
                git_url: gh.git_url.clone(),
                auth,
            }),
        }
    }

    /// Launch phase 2: where the minion gets its repository, as the task definition
    /// allows (an App key it does not inject makes the token an override): on GitHub
    /// from the proof, else the bundle the first wave uploaded. None: no repository.
    fn source(
        cloud: &CloudSpec,
        proof: Option<GitHubProof>,
        bundle: Option<Source>,
        injected: &[String],
        reporter: &dyn Reporter,
    ) -> Option<Source> {
        match (&cloud.github, proof) {
            (Some(gh), Some(proof)) => {
                // Printed here, after the image's lines: the cloud run's fixed output
                // order (module docs); the token was minted in the launch's first wave.
                reporter.info("Minting GitHub App installation token...");
                Some(Self::github_source(
                    gh, &gh.repo, &proof, injected, reporter,
                ))
            }
            _ => bundle,
        }
    }

    /// Launch phase 3: the Anthropic key, injected by ECS, else as an override (warned).
    /// The value to pass, when it must be passed.
    pub(crate) async fn api_key(
        &self,
        cloud: &CloudSpec,
        stubs: bool,
        injected: &[String],
        reporter: &dyn Reporter,
    ) -> anyhow::Result<Option<Secret>> {
        if stubs {
            reporter.info("Anthropic API key: not needed (--stubs)");
            Ok(None)
        } else if injected.iter().any(|n| n == var::ANTHROPIC_API_KEY) {
            reporter.info(&format!(
                "Anthropic API key: injected by ECS from Secrets Manager ({})",
                cloud.anthropic_secret
            ));
            Ok(None)
        } else {
            reporter.info("Fetching Anthropic API key from Secrets Manager...");
            let key = crate::cloud::secrets::get_secret_value(self.aws(), &cloud.anthropic_secret)
                .await?;
            reporter.warn("the task definition does not inject the Anthropic key: it goes as an environment override, visible to ecs:DescribeTasks (`lackey up` wires it as an ECS secret)");
            Ok(Some(Secret::Value(key)))
        }
    }

    /// Launch phase 4: the run's environment overrides: the run contract's input, filled
    /// in from what the launch prepared (the source, the key), for the minion and, when
    /// the task has the credential sidecar, for the sidecar (the credentials and
    /// upstreams move to it, [`through_sidecar`]), under ECS's size limit (a long task
    /// goes through S3, under the run's input key).
    #[allow(
        clippy::too_many_arguments,
        reason = "each is one input of the overrides, prepared by a different launch step"
    )]
    pub(crate) async fn environment(
        &self,
        cloud: &CloudSpec,
        spec: &RunSpec,
        deadline: SystemTime,
        source: Option<&Source>,
        api_key: Option<&Secret>,
        isolated: bool,
        artifacts: &str,
    ) -> anyhow::Result<TaskOverride> {
        let mut input = spec.minion_input(Runtime::Cloud, deadline);
        // What `env.GITHUB_TOKEN` means in a blueprint: this run can push.
        input.can_push = Some(source.is_some_and(|s| s.apply(&mut input)));
        if let Some(key) = api_key {
            input.api_key = Some(key.clone());
        }
        input.bucket = Some(cloud.bucket.clone());
        input.s3_prefix = Some(artifacts.to_string());
        input.aws_region = Some(cloud.region.clone());
        // With the credential sidecar, the credentials and upstreams move from the
        // minion's input to the sidecar's, with the push target decided before launch
        // (the run's branch; never the default branch).
        let sc = isolated.then(|| {
            let target = spec.push_target(input.base_ref.clone());
            through_sidecar(&mut input, target).to_env()
        });
        let mut env = input.to_env();
        if overrides_size(&env, sc.as_deref()) > OVERRIDES_LIMIT - 512 {
            if let TaskSource::Inline(task) = &input.task {
                let key = input_key(&input.run_id, "task.txt");
                crate::cloud::s3::put_text(&self.aws().s3(), &cloud.bucket, &key, task).await?;
                input.task = TaskSource::S3(format!("s3://{}/{key}", cloud.bucket));
                env = input.to_env();
            }
        }
        let size = overrides_size(&env, sc.as_deref());
        if size > OVERRIDES_LIMIT {
            return Err(anyhow::anyhow!(
                "the run's environment overrides are {size} characters, over ECS's limit of {OVERRIDES_LIMIT}"
            ));
        }
        Ok(task_overrides(&env, sc.as_deref()))
    }

    /// The RunTask request of a run: the stack's task definition on Fargate, the
    /// containers' environments ([`Ecs::environment`]), the run id as its `lackey:run-id` tag, plus `tags`.
    /// Without its client token: each attempt gives its own ([`Ecs::run_task_once`]),
    /// and launching the task again while IAM propagates needs a new one.
    pub(crate) fn run_task_request(
        &self,
        cloud: &CloudSpec,
        run_id: &str,
        overrides: TaskOverride,
        tags: &[(&str, &str)],
    ) -> anyhow::Result<RunTaskFluentBuilder> {
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
        let mut all = vec![
            (ownership::TAG_STACK, cloud.stack.as_str()),
            (ownership::TAG_RUN_ID, run_id),
            (ownership::TAG_MANAGED_BY, "lackey"),
        ];
        all.extend_from_slice(tags);
        Ok(self
            .aws()
            .ecs()
            .run_task()
            .cluster(&cloud.cluster)
            .task_definition(&cloud.task_family)
            .launch_type(LaunchType::Fargate)
            .network_configuration(network)
            .overrides(overrides)
            .count(1)
            .started_by(cloud.started_by())
            .set_tags(Some(
                all.into_iter()
                    .map(|(k, v)| Tag::builder().key(k).value(v).build())
                    .collect(),
            )))
    }

    /// One RunTask call of `request` with `client_token` (the run id: ECS answers a
    /// repeated call with the first task instead of starting a second).
    pub(crate) async fn run_task_once(
        request: &RunTaskFluentBuilder,
        client_token: &str,
    ) -> Result<Started, RunTaskSdkError> {
        let out = request.clone().client_token(client_token).send().await?;
        if let Some(arn) = out.tasks().first().and_then(|t| t.task_arn()) {
            // The task's first status is in RunTask's answer (PROVISIONING): a first
            // poll may already see a later one.
            let status = out.tasks()[0].last_status().unwrap_or_default();
            return Ok(Started::Task {
                arn: arn.to_string(),
                status: status.to_string(),
            });
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
        let capacity = reasons
            .iter()
            .any(|r| r.contains("RESOURCE") || r.to_lowercase().contains("capacity"));
        let reasons = reasons.join("; ");
        Ok(if capacity {
            Started::NoCapacity(reasons)
        } else {
            Started::Refused(reasons)
        })
    }

    /// Launch phase 5: RunTask, retrying capacity failures (they come back in
    /// `failures`). The task's ARN, its first status, and the request (without its
    /// client token) to launch it again while IAM propagates.
    async fn run_task(
        &self,
        cloud: &CloudSpec,
        run_id: &str,
        overrides: TaskOverride,
        reporter: &dyn Reporter,
        cancel: &CancellationToken,
    ) -> anyhow::Result<(String, String, RunTaskFluentBuilder)> {
        let request = self.run_task_request(cloud, run_id, overrides, &[])?;
        let t_launch = Instant::now();
        let mut wait = Duration::from_secs(2);
        loop {
            if cancel.is_cancelled() {
                return Err(anyhow::Error::new(crate::error::Interrupted));
            }
            let reasons = match Self::run_task_once(&request, run_id).await.aws(format!(
                "failed to run a task of `{}` on cluster `{}`",
                cloud.task_family, cloud.cluster
            ))? {
                Started::Task { arn, status } => return Ok((arn, status, request)),
                Started::NoCapacity(reasons) if t_launch.elapsed() <= Duration::from_secs(300) => {
                    reasons
                }
                Started::NoCapacity(reasons) | Started::Refused(reasons) => {
                    return Err(Fail::new(format!("ECS did not start the task: {reasons}"))
                        .with_hint(
                            "check the cluster, subnets and security group (`lackey doctor`)",
                        )
                        .into())
                }
            };
            reporter.warn(&format!(
                "no Fargate capacity yet ({reasons}); retrying in {}s",
                wait.as_secs()
            ));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = cancel.cancelled() => return Err(anyhow::Error::new(crate::error::Interrupted)),
            }
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    }

    /// A handle on a task launched earlier (by `run_task_once`, perhaps by another
    /// process), so it can be collected like a run this backend launched. It is not
    /// launched again by the backend (a fleet relaunches its own runs).
    pub(crate) fn handle(
        &self,
        run_id: &str,
        task_arn: &str,
        dir: PathBuf,
        started: chrono::DateTime<chrono::Utc>,
        artifacts: Option<String>,
    ) -> RunHandle {
        RunHandle {
            run_id: run_id.to_string(),
            id: task_arn.to_string(),
            dir,
            started,
            deadline: tokio::time::Instant::now(),
            timeout: Duration::ZERO,
            follow: false,
            held: Box::new(CloudRun {
                task_id: task_arn.rsplit('/').next().unwrap_or_default().to_string(),
                task_arn: task_arn.to_string(),
                first_status: String::new(),
                log_group: self.target.log_group.clone(),
                relaunch: None,
                artifacts,
            }),
        }
    }

    /// Collect phase: the artifacts from the bucket, below the run's recorded prefix
    /// (refused names reported); the prefix, when any artifact came.
    async fn download(
        &self,
        run_id: &str,
        known: Option<&str>,
        dir: &Path,
        reporter: &dyn Reporter,
    ) -> Option<String> {
        let (s3, bucket) = (self.aws().s3(), &self.target.bucket);
        let prefix = match known {
            Some(p) => p.to_string(),
            None => match records::find(&s3, bucket, run_id).await {
                Ok(Some(p)) => p,
                Ok(None) => {
                    reporter.warn(&format!(
                        "no record of run {run_id}'s artifacts in s3://{bucket}/{}",
                        records::RECORDS
                    ));
                    return None;
                }
                Err(e) => {
                    reporter.warn(&format!("could not look run {run_id} up: {e:#}"));
                    return None;
                }
            },
        };
        let at = records::url(bucket, &prefix);
        match crate::cloud::s3::download_artifacts(&s3, bucket, &prefix, dir).await {
            Ok(t) if t.files > 0 => {
                for r in &t.refused {
                    reporter.warn(&format!("not downloaded: {r}"));
                }
                Some(prefix)
            }
            Ok(_) => {
                reporter.warn(&format!("no artifacts at {at}"));
                None
            }
            Err(e) => {
                reporter.warn(&format!(
                    "could not download the artifacts from {at}: {e:#}"
                ));
                None
            }
        }
    }

    /// Download a finished run's artifacts into `dir` (for `lackey report`). False when
    /// the bucket has no such run; `dir` is then left as it was.
    pub async fn fetch_artifacts(
        &self,
        run_id: &str,
        dir: &Path,
        reporter: &dyn Reporter,
    ) -> anyhow::Result<bool> {
        let (s3, bucket) = (self.aws().s3(), &self.target.bucket);
        let Some(prefix) = records::find(&s3, bucket, run_id).await? else {
            return Ok(false);
        };
        if crate::cloud::s3::get_summary(&s3, bucket, &format!("{prefix}/run_summary.json"))
            .await
            .is_err()
        {
            return Ok(false);
        }
        reporter.info(&format!(
            "Downloading the artifacts of {run_id} from {}",
            records::url(bucket, &prefix)
        ));
        let guard = super::RunDirGuard::new(dir);
        let t = crate::cloud::s3::download_artifacts(&s3, bucket, &prefix, dir).await?;
        for r in &t.refused {
            reporter.warn(&format!("not downloaded: {r}"));
        }
        guard.keep();
        Ok(true)
    }

    /// The run's task among the stack's tasks, if ECS still knows it.
    async fn find(&self, run_id: &str) -> anyhow::Result<Option<(String, String)>> {
        find_task(
            self.aws(),
            &self.target.cluster,
            &ownership::started_by(&self.target.stack),
            run_id,
        )
        .await
    }
}

/// Where a run's minion gets its repository, as a launch prepared it: the same for
/// every run on that repository (a fleet prepares it once per repository).
#[derive(Clone, Debug)]
pub(crate) struct Source {
    repo: RepoSource,
    base_ref: Option<String>,
    github: Option<GithubSource>,
}

#[derive(Clone, Debug)]
struct GithubSource {
    repo: String,
    api_url: String,
    git_url: String,
    auth: GithubAuth,
}

impl Source {
    /// Fill the run's input with it; whether the run can push (a GitHub repository).
    fn apply(&self, input: &mut MinionInput) -> bool {
        input.repo = self.repo.clone();
        input.base_ref = self.base_ref.clone();
        match &self.github {
            Some(gh) => {
                input.github_repo = Some(gh.repo.clone());
                input.github_api_url = gh.api_url.clone();
                input.github_git_url = gh.git_url.clone();
                input.github = Some(gh.auth.clone());
                true
            }
            None => false,
        }
    }
}

/// A RunTask call's error, as the SDK returns it.
pub(crate) type RunTaskSdkError =
    aws_sdk_ecs::error::SdkError<aws_sdk_ecs::operation::run_task::RunTaskError>;

/// What one RunTask call did.
pub(crate) enum Started {
    /// The task, and its first status.
    Task { arn: String, status: String },
    /// ECS had no capacity for it (worth trying again); the reasons it gave.
    NoCapacity(String),
    /// ECS refused it for another reason.
    Refused(String),
}

/// The image as the first wave of a launch found it.
pub(crate) enum Probed {
    Image(bollard::Docker, Box<crate::cloud::ecr::ImageProbe>),
    /// No Docker to push from (why): the image ECR holds is used, with a warning.
    NoDocker(String),
}

/// What the task definition tells a launch.
pub(crate) struct TaskDefinitionFacts {
    pub(crate) arch: crate::image::CpuArch,
    /// Which container ECS injects the secrets into.
    pub(crate) isolation: Isolation,
    pub(crate) log_group: String,
}

/// A task definition's containers as [`Isolation`] reads them.
pub(crate) fn isolation_of(containers: &[aws_sdk_ecs::types::ContainerDefinition]) -> Isolation {
    Isolation::of(containers.iter().map(|c| {
        (
            c.name().unwrap_or_default().to_string(),
            c.secrets().iter().map(|s| s.name().to_string()).collect(),
            c.depends_on()
                .iter()
                .map(|d| d.container_name().to_string())
                .collect(),
        )
    }))
}

/// Before anything is launched: a task definition without the credential sidecar (one
/// made by hand) hands the secrets to the minion's container.
/// Such a run still goes, with a warning, unless `[run] require_isolation` is set.
pub(crate) fn check_isolation(
    isolation: &Isolation,
    cloud: &CloudSpec,
    reporter: &dyn Reporter,
) -> anyhow::Result<()> {
    if isolation.isolated() {
        return Ok(());
    }
    let family = &cloud.task_family;
    if cloud.require_isolation {
        return Err(Fail::new(format!(
            "task definition `{family}` has no credential sidecar: the minion's container would hold the Anthropic key and the GitHub credentials, and [run] require_isolation is set"
        ))
        .with_hint("run `lackey up --adopt` to register the task definition with the credential sidecar (or unset [run] require_isolation / LACKEY_REQUIRE_ISOLATION)")
        .into());
    }
    reporter.warn(&format!(
        "task definition `{family}` has no credential sidecar: the Anthropic key and the GitHub credentials reach the minion's container, where any command the agent runs can read them; run `lackey up --adopt` to register the isolated task definition (set [run] require_isolation = true to refuse such runs)"
    ));
    Ok(())
}

/// The sidecar's address on the task's loopback: a port taken from the run id, so runs
/// that share a network namespace (the test harness's tasks all use the host's) do not
/// meet. On Fargate every task has a namespace of its own, where any port is free.
/// The port is below Linux's ephemeral range (32768–60999 by default), where an
/// outgoing connection of the namespace could hold it and the bind would fail.
pub(crate) fn sidecar_listen(run_id: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(run_id.as_bytes());
    let port = SIDECAR_PORTS.start
        + u16::from_be_bytes([h[0], h[1]]) % (SIDECAR_PORTS.end - SIDECAR_PORTS.start);
    format!("127.0.0.1:{port}")
}

/// Where [`sidecar_listen`] takes its port from: neither privileged nor ephemeral.
const SIDECAR_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// Move a run's credentials and upstreams from the minion's input to the sidecar's: the
/// minion gets the sidecar's URL for the LLM, git and the GitHub API, and no key, no
/// token and no App credentials; the sidecar gets the key or token the host had to pass
/// (when ECS does not inject it) and the run's push target, decided on the host before
/// launch ([`RunSpec::push_target`]: the run's branch, which only `--push-to` lets it
/// fast-forward, and the default branch, never pushed).
pub(crate) fn through_sidecar(
    input: &mut MinionInput,
    target: crate::proxy::PushTarget,
) -> SidecarInput {
    let listen = sidecar_listen(&input.run_id);
    let url = format!("http://{listen}");
    let mut sc = SidecarInput::new(&listen);
    sc.stubs = input.stubs;
    sc.base_url = std::mem::replace(
        &mut input.base_url,
        crate::run_contract::default::ANTHROPIC_BASE_URL.to_string(),
    );
    sc.api_key = input.api_key.take();
    sc.github = input.github.take();
    if let Some(repo) = input.github_repo.clone() {
        sc.github_repo = Some(repo.clone());
        sc.github_api_url = std::mem::replace(&mut input.github_api_url, format!("{url}/github"));
        sc.github_git_url = std::mem::replace(&mut input.github_git_url, format!("{url}/git"));
        input.repo = RepoSource::Url(format!("{url}/git/{repo}.git"));
        sc.push_branch = Some(target.branch);
        sc.push_may_update = target.may_update;
        sc.default_branch = target.default_branch;
    } else {
        sc.github = None;
    }
    input.proxy_url = Some(url);
    sc
}

/// RunTask's overrides: each container's environment.
pub(crate) fn task_overrides(
    minion: &[(String, String)],
    sidecar: Option<&[(String, String)]>,
) -> TaskOverride {
    let one = |name: &str, env: &[(String, String)]| {
        ContainerOverride::builder()
            .name(name)
            .set_environment(Some(
                env.iter()
                    .map(|(k, v)| KeyValuePair::builder().name(k).value(v).build())
                    .collect(),
            ))
            .build()
    };
    let mut b = TaskOverride::builder().container_overrides(one(MINION_CONTAINER, minion));
    if let Some(env) = sidecar {
        b = b.container_overrides(one(SIDECAR_CONTAINER, env));
    }
    b.build()
}

/// The size of the overrides' JSON, as ECS counts it against [`OVERRIDES_LIMIT`].
pub(crate) fn overrides_size(
    minion: &[(String, String)],
    sidecar: Option<&[(String, String)]>,
) -> usize {
    let one = |name: &str, env: &[(String, String)]| serde_json::json!({"name": name, "environment": env.iter().map(|(k, v)| serde_json::json!({"name": k, "value": v})).collect::<Vec<_>>()});
    let mut list = vec![one(MINION_CONTAINER, minion)];
    if let Some(env) = sidecar {
        list.push(one(SIDECAR_CONTAINER, env));
    }
    serde_json::to_string(&serde_json::json!({ "containerOverrides": list }))
        .map(|s| s.len())
        .unwrap_or(0)
}

#[async_trait::async_trait]
impl<A: Borrow<Aws> + Send + Sync> Backend for Ecs<A> {
    fn runtime(&self) -> Runtime {
        Runtime::Cloud
    }

    async fn launch(
        &self,
        spec: &mut RunSpec,
        reporter: &dyn Reporter,
        cancel: &CancellationToken,
    ) -> anyhow::Result<RunHandle> {
        let cloud = self.cloud()?;
        // The run's directory first: making it may draw a new run id (a collision), which
        // the branch and the input keys below must carry. Until the launch a failure (or
        // Ctrl-C) leaves nothing behind: the guard removes the directory, and inputs
        // already uploaded are deleted.
        let dir = super::create_artifacts_dir(spec)?;
        let dir_guard = super::RunDirGuard::new(&dir);
        let started = chrono::Utc::now();
        let image = spec.image.clone();
        // Where the run's artifacts go: a prefix no other run's task can guess, recorded
        // where no task can write (`cloud::records`).
        let artifacts = records::new_prefix(&spec.run_id);
        let s3 = self.aws().s3();
        // One wave: the task definition, the image in the local Docker and in the
        // registry, the record of the artifacts' prefix, and the repository's source: on
        // GitHub the proof (a token that decides the run's branch), else the bundle's
        // upload. What depends on the task definition (the image's platform, a push,
        // what ECS injects) is decided when all have answered.
        let (source, td, probed, recorded) = tokio::join!(
            async {
                let proof = self.github_proof(cloud, spec).await?;
                let bundle = self.fetch_bundle(cloud, spec).await?;
                Ok::<_, anyhow::Error>((proof, bundle))
            },
            self.task_definition(cloud),
            self.probe_image(cloud, &image),
            records::record(&s3, &cloud.bucket, &artifacts)
        );
        let (uploaded, was_recorded) = (source.is_ok(), recorded.is_ok());
        let first_wave: anyhow::Result<_> = (|| Ok((source?, td?, probed?, recorded?)))();
        let ((proof, bundle), td, probed, ()) = match first_wave {
            Ok(answers) => answers,
            Err(e) => {
                tokio::join!(
                    async {
                        if uploaded {
                            delete_inputs(&s3, &cloud.bucket, &spec.run_id).await;
                        }
                    },
                    async {
                        if was_recorded {
                            records::forget(&s3, &cloud.bucket, &artifacts).await;
                        }
                    }
                );
                return Err(e);
            }
        };
        let spec: &RunSpec = spec;
        let launched = async {
            // Before any push: a definition without the credential sidecar is warned
            // about, or refused under `[run] require_isolation`.
            check_isolation(&td.isolation, cloud, reporter)?;
            Self::ensure_image(probed, td.arch, reporter).await?;
            let injected = td.isolation.injected();
            let source = Self::source(cloud, proof, bundle, injected, reporter);
            let api_key = self.api_key(cloud, spec.stubs, injected, reporter).await?;
            let deadline = SystemTime::now() + spec.timeout;
            let overrides = self
                .environment(
                    cloud,
                    spec,
                    deadline,
                    source.as_ref(),
                    api_key.as_ref(),
                    td.isolation.isolated(),
                    &artifacts,
                )
                .await?;
            let task = self
                .run_task(cloud, &spec.run_id, overrides, reporter, cancel)
                .await?;
            Ok::<_, anyhow::Error>((task, td.log_group))
        }
        .await;
        let ((task_arn, first_status, relaunch), log_group) = match launched {
            Ok(t) => t,
            Err(e) => {
                tokio::join!(
                    delete_inputs(&s3, &cloud.bucket, &spec.run_id),
                    records::forget(&s3, &cloud.bucket, &artifacts)
                );
                return Err(e);
            }
        };
        dir_guard.keep();
        reporter.info(&format!("Launched ECS task: {task_arn}"));
        std::fs::write(dir.join(".ecs-task"), &task_arn).ok();
        Ok(RunHandle {
            run_id: spec.run_id.clone(),
            id: task_arn.clone(),
            dir,
            started,
            deadline: tokio::time::Instant::now() + spec.timeout,
            timeout: spec.timeout,
            follow: spec.follow,
            held: Box::new(CloudRun {
                task_id: task_arn.rsplit('/').next().unwrap_or_default().to_string(),
                task_arn,
                first_status,
                log_group,
                relaunch: Some(relaunch),
                artifacts: Some(artifacts),
            }),
        })
    }

    fn watch(
        &self,
        runs: &[&RunHandle],
        cancel: &CancellationToken,
    ) -> BoxStream<'static, RunEvent> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        // One watcher, so every task is polled by one DescribeTasks call per tick.
        let watcher = TaskWatcher::start(self.aws().ecs(), &self.target.cluster);
        let mut each = Vec::new();
        for run in runs {
            let Some(held) = run.held::<CloudRun>() else {
                let _ = tx.send(RunEvent::Ended {
                    run_id: run.run_id.clone(),
                    end: RunEnd {
                        reason: Some("not a run of the ECS backend".into()),
                        ..RunEnd::default()
                    },
                });
                continue;
            };
            let w = TaskWatch {
                ecs: self.aws().ecs(),
                logs: self.aws().logs(),
                cluster: self.target.cluster.clone(),
                run_id: run.run_id.clone(),
                task_arn: held.task_arn.clone(),
                task_id: held.task_id.clone(),
                first_status: held.first_status.clone(),
                log_group: held.log_group.clone(),
                deadline: run.deadline,
                timeout: run.timeout,
                follow: run.follow,
                relaunch: held.relaunch.clone().map(|request| Relaunch {
                    request,
                    watcher: watcher.clone(),
                }),
            };
            let rx = watcher.watch(&held.task_arn);
            each.push(tokio::spawn(w.run(rx, tx.clone(), cancel.clone())));
        }
        drop(tx);
        tokio::spawn(async move {
            for h in each {
                let _ = h.await;
            }
            watcher.shutdown();
        });
        channel_stream(rx)
    }

    async fn collect(
        &self,
        run: RunHandle,
        end: RunEnd,
        spec: &RunSpec,
        reporter: &dyn Reporter,
    ) -> anyhow::Result<RunOutcome> {
        let bucket = &self.target.bucket;
        reporter.info(&format!("Downloading artifacts to {}/", run.dir.display()));
        // The inputs go while the artifacts come: neither waits for the other.
        let s3 = self.aws().s3();
        let known = run.held::<CloudRun>().and_then(|h| h.artifacts.clone());
        let (prefix, ()) = tokio::join!(
            self.download(&run.run_id, known.as_deref(), &run.dir, reporter),
            delete_inputs(&s3, bucket, &run.run_id)
        );
        let downloaded = prefix.is_some();
        let reason = end.reason.clone().unwrap_or_default();
        let host_end = end.stopped.clone().unwrap_or_else(|| {
            if end.failed_to_start || !downloaded {
                let mut msg = format!(
                    "the task stopped: {}",
                    if reason.is_empty() {
                        "no reason given"
                    } else {
                        &reason
                    }
                );
                if let Some(code) = end.exit_code {
                    msg.push_str(&format!(" (exit code {code})"));
                }
                HostEnd::Failed(msg)
            } else {
                HostEnd::Exited(end.exit_code.unwrap_or(-1))
            }
        });
        let mut summary = super::settle_summary(spec, Runtime::Cloud, &host_end, run.started, None);
        // What the host knows, not what the run's summary claims.
        summary.s3_prefix = prefix.as_deref().map(|p| records::url(bucket, p));
        if let HostEnd::Failed(msg) = &host_end {
            if let Some(h) = hint_for_stop(msg) {
                reporter.info(&format!("hint: {h}"));
            }
        }
        // A run on GitHub pushed its branch; a run on a local repository brings it back.
        let github = self
            .launch
            .as_ref()
            .and_then(|c| c.github.as_ref())
            .filter(|_| spec.github_repo.is_some());
        let (fetched, fetch_error) = match (&spec.repo, github) {
            (Some(repo), None) => {
                match super::fetch_back(repo, &run.dir, &summary, spec, &host_end) {
                    Ok(f) => (Some(f), None),
                    Err(e) => (None, Some(e)),
                }
            }
            _ => (None, None),
        };
        Ok(RunOutcome {
            interrupted: matches!(host_end, HostEnd::Interrupted),
            summary,
            dir: run.dir,
            fetched,
            fetch_error,
            pushed_to: github.map(|g| g.repo.clone()),
        })
    }

    async fn logs(
        &self,
        run_id: &str,
        follow: bool,
        sink: LogSink<'_>,
        cancel: &CancellationToken,
    ) -> anyhow::Result<bool> {
        if let Some((arn, status)) = self.find(run_id).await? {
            let task_id = arn.rsplit('/').next().unwrap_or_default().to_string();
            let done = CancellationToken::new();
            let mut watcher = None;
            if !follow || status == "STOPPED" {
                done.cancel();
            } else {
                // Stop tailing when the task stops (or on Ctrl-C).
                let w = TaskWatcher::start(self.aws().ecs(), &self.target.cluster);
                let mut rx = w.watch(&arn);
                let d = done.clone();
                let cancel = cancel.clone();
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
                    d.cancel();
                });
                watcher = Some(w);
            }
            tail_logs(
                &self.aws().logs(),
                &self.target.log_group,
                &format!("minion/minion/{task_id}"),
                sink,
                done,
            )
            .await;
            if let Some(w) = watcher {
                w.shutdown();
            }
            return Ok(true);
        }
        let (s3, bucket) = (self.aws().s3(), &self.target.bucket);
        let Some(prefix) = records::find(&s3, bucket, run_id).await? else {
            return Ok(false);
        };
        let key = format!("{prefix}/minion.log");
        match crate::cloud::s3::get_text(&s3, bucket, &key).await {
            Ok(text) => {
                for line in text.lines() {
                    sink(&crate::output::visible(line));
                }
                Ok(true)
            }
            Err(_) => Ok(false),
        }
    }

    async fn stop(&self, run_id: &str) -> anyhow::Result<Option<String>> {
        match self.find(run_id).await? {
            Some((arn, status)) if status != "STOPPED" => {
                stop_task(&self.aws().ecs(), &self.target.cluster, &arn, "lackey stop").await;
                Ok(Some(format!(
                    "cloud run {run_id} (task {arn}); its artifacts go to S3"
                )))
            }
            _ => Ok(None),
        }
    }

    async fn keep_beside(
        &self,
        summary: &RunSummary,
        path: &Path,
        name: &str,
    ) -> anyhow::Result<()> {
        let (s3, bucket) = (self.aws().s3(), &self.target.bucket);
        // The prefix the collection downloaded from (the host sets it in the summary).
        let prefix = summary
            .s3_prefix
            .as_deref()
            .and_then(|u| u.strip_prefix(&format!("s3://{bucket}/")))
            .map(|p| p.trim_end_matches('/'))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "not uploaded: run {} has no artifacts in s3://{bucket}/",
                    summary.run_id
                )
            })?;
        let key = format!("{prefix}/{name}");
        crate::cloud::s3::upload_file(&s3, path, bucket, &key)
            .await
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!("not uploaded to s3://{bucket}/{key}: {e:#}"))
    }

    async fn list(&self, limit: usize, known: &[String]) -> anyhow::Result<Vec<RunRow>> {
        let s3 = self.aws().s3();
        let bucket = &self.target.bucket;
        // The runs the records name (what a task wrote elsewhere in the bucket is no run).
        let recorded = tokio::time::timeout(Duration::from_secs(20), records::all(&s3, bucket))
            .await
            .map_err(|_| {
                anyhow::anyhow!("listing s3://{bucket}/{} took over 20 s", records::RECORDS)
            })??;
        let mut by_id: HashMap<String, Vec<String>> = HashMap::new();
        for (id, prefix) in recorded {
            by_id.entry(id).or_default().push(prefix);
        }
        // Run ids sort by time: the newest first.
        let mut ids: Vec<String> = by_id
            .keys()
            .filter(|id| !known.contains(id))
            .cloned()
            .collect();
        ids.sort();
        ids.reverse();
        ids.truncate(limit);
        // Each run's summary (from the first of its prefixes that holds one), all at once.
        let rows = ids.into_iter().map(|id| {
            let prefixes = by_id.remove(&id).unwrap_or_default();
            let s3 = &s3;
            async move {
                let mut summary = None;
                let mut at = prefixes.first().cloned().unwrap_or_else(|| id.clone());
                for p in prefixes {
                    let key = format!("{p}/run_summary.json");
                    if let Ok(t) = crate::cloud::s3::get_summary(s3, bucket, &key).await {
                        summary = serde_json::from_str::<RunSummary>(&t).ok();
                        at = p;
                        break;
                    }
                }
                RunRow::new(
                    &id,
                    Runtime::Cloud,
                    summary.as_ref(),
                    records::url(bucket, &at),
                )
            }
        });
        // At most 8 at once: each is up to a summary's cap in memory.
        Ok(futures::StreamExt::collect(futures::StreamExt::buffered(
            futures::stream::iter(rows),
            8,
        ))
        .await)
    }
}

/// One task followed by `watch`: its status lines, its log, its timeout and Ctrl-C.
struct TaskWatch {
    ecs: aws_sdk_ecs::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
    cluster: String,
    run_id: String,
    task_arn: String,
    task_id: String,
    first_status: String,
    log_group: String,
    deadline: tokio::time::Instant,
    timeout: Duration,
    follow: bool,
    relaunch: Option<Relaunch>,
}

/// Launching a task again, watched by the same watcher.
struct Relaunch {
    request: RunTaskFluentBuilder,
    watcher: Arc<TaskWatcher>,
}

/// How long a run waits for IAM to let ECS assume its roles, launching again.
pub const ROLE_PROPAGATION_WAIT: Duration = Duration::from_secs(120);

/// Whether a task failed to start because ECS could not assume its execution or task
/// role: right after `up` made or changed a role, IAM has not propagated it yet.
pub fn role_not_assumable(state: &TaskState) -> bool {
    state.stop_code.as_deref() == Some("TaskFailedToStart")
        && state
            .stopped_reason
            .as_deref()
            .is_some_and(|r| r.contains("unable to assume the role"))
}

impl Relaunch {
    /// RunTask again (the attempt number makes its client token new); the new task's
    /// ARN and its watch.
    async fn launch(
        &self,
        run_id: &str,
        attempt: u32,
    ) -> anyhow::Result<(String, watch::Receiver<TaskState>)> {
        let out = self
            .request
            .clone()
            .client_token(format!("{run_id}-{attempt}"))
            .send()
            .await
            .aws("failed to launch the task again")?;
        let arn = out
            .tasks()
            .first()
            .and_then(|t| t.task_arn())
            .ok_or_else(|| anyhow::anyhow!("ECS did not start the task again"))?
            .to_string();
        let rx = self.watcher.watch(&arn);
        Ok((arn, rx))
    }
}

impl TaskWatch {
    /// Tail the task's CloudWatch stream while it runs (with `--follow`).
    fn tail(
        &self,
        task_id: &str,
        done: CancellationToken,
        tx: &tokio::sync::mpsc::UnboundedSender<RunEvent>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if !self.follow {
            return None;
        }
        let logs = self.logs.clone();
        let group = self.log_group.clone();
        let stream = format!("minion/minion/{task_id}");
        let tx = tx.clone();
        let run_id = self.run_id.clone();
        Some(tokio::spawn(async move {
            let sink = move |l: &str| {
                let _ = tx.send(RunEvent::Log {
                    run_id: run_id.clone(),
                    line: l.to_string(),
                });
            };
            tail_logs(&logs, &group, &stream, &sink, done).await
        }))
    }

    /// Follow one task until STOPPED: its status lines; StopTask at the deadline or on
    /// Ctrl-C (`stopped` says which).
    async fn until_stopped(
        &self,
        rx: &mut watch::Receiver<TaskState>,
        task_arn: &str,
        lines: &mut StatusLines,
        stopped: &mut Option<HostEnd>,
        tx: &tokio::sync::mpsc::UnboundedSender<RunEvent>,
        cancel: &CancellationToken,
    ) -> TaskState {
        let status = |line: String| {
            let _ = tx.send(RunEvent::Status {
                run_id: self.run_id.clone(),
                line,
            });
        };
        let mut stop_sent = stopped.is_some();
        loop {
            let state = watch::Receiver::borrow(rx).clone();
            if let Some(l) = lines.see(&state.last_status) {
                status(l);
            }
            if state.stopped() {
                return state;
            }
            tokio::select! {
                r = rx.changed() => {
                    if r.is_err() {
                        return state;
                    }
                }
                _ = tokio::time::sleep_until(self.deadline), if !stop_sent => {
                    *stopped = Some(HostEnd::TimedOut);
                    stop_task(&self.ecs, &self.cluster, task_arn, &format!("lackey: timed out after {} s", self.timeout.as_secs())).await;
                    stop_sent = true;
                }
                _ = cancel.cancelled(), if !stop_sent => {
                    *stopped = Some(HostEnd::Interrupted);
                    let _ = tx.send(RunEvent::Warning {
                        run_id: self.run_id.clone(),
                        message: format!("interrupted: stopping task {} (its artifacts are kept)", task_arn.rsplit('/').next().unwrap_or_default()),
                    });
                    stop_task(&self.ecs, &self.cluster, task_arn, "lackey: interrupted by the user").await;
                    stop_sent = true;
                }
                // After a stop request the task gets SIGTERM, then SIGKILL after 30 s.
                _ = tokio::time::sleep(Duration::from_secs(120)), if stop_sent => {
                    let _ = tx.send(RunEvent::Warning {
                        run_id: self.run_id.clone(),
                        message: "the task has not reported STOPPED two minutes after StopTask; not waiting longer".into(),
                    });
                    return watch::Receiver::borrow(rx).clone();
                }
            }
        }
    }

    async fn run(
        self,
        mut rx: watch::Receiver<TaskState>,
        tx: tokio::sync::mpsc::UnboundedSender<RunEvent>,
        cancel: CancellationToken,
    ) {
        let mut log_done = CancellationToken::new();
        let mut follow = self.tail(&self.task_id, log_done.clone(), &tx);
        let mut stopped = None;
        let mut lines = StatusLines::new(&self.task_id);
        if let Some(l) = lines.see(&self.first_status) {
            let _ = tx.send(RunEvent::Status {
                run_id: self.run_id.clone(),
                line: l,
            });
        }
        let mut task_arn = self.task_arn.clone();
        let waiting = Instant::now();
        let mut attempt = 0u32;
        let final_state = loop {
            let state = self
                .until_stopped(&mut rx, &task_arn, &mut lines, &mut stopped, &tx, &cancel)
                .await;
            // ECS could not assume the task's roles: IAM has not propagated a role `up`
            // just made or changed. Launch again, for a bounded while.
            let Some(relaunch) = &self.relaunch else {
                break state;
            };
            if stopped.is_some()
                || !role_not_assumable(&state)
                || waiting.elapsed() >= ROLE_PROPAGATION_WAIT
            {
                break state;
            }
            attempt += 1;
            let pause = Duration::from_secs(1 << attempt.min(3));
            let _ = tx.send(RunEvent::Status {
                run_id: self.run_id.clone(),
                line: format!(
                    "waiting for IAM: ECS could not assume the task's role yet (a role `lackey up` just made or changed propagates in seconds); launching the task again in {}s ({}s waited, at most {}s)",
                    pause.as_secs(),
                    waiting.elapsed().as_secs(),
                    ROLE_PROPAGATION_WAIT.as_secs()
                ),
            });
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = cancel.cancelled() => break state,
            }
            match relaunch.launch(&self.run_id, attempt).await {
                Ok((arn, new_rx)) => {
                    rx = new_rx;
                    let task_id = arn.rsplit('/').next().unwrap_or_default().to_string();
                    let _ = tx.send(RunEvent::Status {
                        run_id: self.run_id.clone(),
                        line: format!("Launched ECS task again: {arn}"),
                    });
                    lines = StatusLines::new(&task_id);
                    log_done.cancel();
                    log_done = CancellationToken::new();
                    follow = self.tail(&task_id, log_done.clone(), &tx);
                    task_arn = arn;
                }
                Err(e) => {
                    let _ = tx.send(RunEvent::Warning {
                        run_id: self.run_id.clone(),
                        message: format!("{e:#}"),
                    });
                    break state;
                }
            }
        };
        drop(rx);
        log_done.cancel();
        if let Some(h) = follow {
            let _ = tokio::time::timeout(Duration::from_secs(30), h).await;
        }
        let _ = tx.send(RunEvent::Ended {
            run_id: self.run_id.clone(),
            end: final_state.end(stopped),
        });
    }
}

/// The key of one of a run's (or a fleet's) inputs: `inputs/<id>-<128 random bits>/<name>`.
/// The task role may read `inputs/*` and list nothing, so a run reads another's
/// inputs only if it can guess this key (docs/iam.md).
pub fn input_key(id: &str, name: &str) -> String {
    format!(
        "inputs/{id}-{}/{name}",
        hex::encode(rand::random::<[u8; 16]>())
    )
}

/// Remove a run's inputs (`inputs/<run id>-…/`: the task text, the repository bundle).
pub async fn delete_inputs(s3: &aws_sdk_s3::Client, bucket: &str, run_id: &str) {
    let prefix = format!("inputs/{run_id}-");
    if let Ok(keys) = crate::cloud::s3::list_keys_starting(s3, bucket, &prefix).await {
        // At most two keys (the bundle, a long task's text): deleted at once.
        futures::future::join_all(
            keys.into_iter()
                .map(|(k, _)| s3.delete_object().bucket(bucket).key(k).send()),
        )
        .await;
    }
}

pub async fn stop_task(ecs: &aws_sdk_ecs::Client, cluster: &str, arn: &str, reason: &str) {
    if let Err(e) = ecs
        .stop_task()
        .cluster(cluster)
        .task(arn)
        .reason(reason)
        .send()
        .await
    {
        tracing::warn!("StopTask failed: {}", crate::aws::render_sdk_error(e));
    }
}

/// Print a task's CloudWatch stream from its first line; after `done`, drain what is
/// left (the end is when the forward token comes back unchanged).
pub async fn tail_logs(
    logs: &aws_sdk_cloudwatchlogs::Client,
    group: &str,
    stream: &str,
    print: LogSink<'_>,
    done: CancellationToken,
) {
    let mut token: Option<String> = None;
    let mut draining = false;
    loop {
        let r = logs
            .get_log_events()
            .log_group_name(group)
            .log_stream_name(stream)
            .start_from_head(true)
            .set_next_token(token.clone())
            .send()
            .await;
        match r {
            Ok(out) => {
                for e in out.events() {
                    if let Some(m) = e.message() {
                        // What the task wrote, made harmless for a terminal.
                        print(&crate::output::visible(m.trim_end()));
                    }
                }
                let next = out.next_forward_token().map(str::to_string);
                let unchanged = next == token;
                token = next;
                if unchanged && draining {
                    return;
                }
                if !unchanged {
                    continue;
                }
            }
            // The stream does not exist until the task writes its first line.
            Err(e) if crate::aws::is_not_found(&e) => {
                if draining {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!("GetLogEvents failed: {}", crate::aws::render_sdk_error(e));
            }
        }
        if done.is_cancelled() {
            draining = true;
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(1000)) => {}
            _ = done.cancelled() => { draining = true; }
        }
    }
}

/// The ARNs of every task the stack started that ECS still knows (running or recently
/// stopped): the one listing that finding a run's or a fleet's tasks starts from.
pub async fn stack_task_arns(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    started_by: &str,
) -> anyhow::Result<Vec<String>> {
    let mut arns = Vec::new();
    for status in [
        aws_sdk_ecs::types::DesiredStatus::Running,
        aws_sdk_ecs::types::DesiredStatus::Stopped,
    ] {
        let mut pages = ecs
            .list_tasks()
            .cluster(cluster)
            .started_by(started_by)
            .desired_status(status)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.aws(format!("failed to list the tasks of cluster `{cluster}`"))?;
            arns.extend(page.task_arns().iter().cloned());
        }
    }
    Ok(arns)
}

/// Every task of the stack ECS still knows (running or recently stopped), with its
/// tags: [`stack_task_arns`], then DescribeTasks per 100.
pub(crate) async fn stack_tasks(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    started_by: &str,
) -> anyhow::Result<Vec<aws_sdk_ecs::types::Task>> {
    let arns = stack_task_arns(ecs, cluster, started_by).await?;
    let mut tasks = Vec::new();
    for chunk in arns.chunks(100) {
        let d = ecs
            .describe_tasks()
            .cluster(cluster)
            .set_tasks(Some(chunk.to_vec()))
            .include(TaskField::Tags)
            .send()
            .await
            .aws("failed to describe the stack's tasks")?;
        tasks.extend(d.tasks().iter().cloned());
    }
    Ok(tasks)
}

/// A task's tag.
pub(crate) fn tag<'a>(t: &'a aws_sdk_ecs::types::Task, key: &str) -> Option<&'a str> {
    t.tags()
        .iter()
        .find(|x| x.key() == Some(key))
        .and_then(|x| x.value())
}

/// The ECS task of a run (by its `lackey:run-id` tag), among the stack's tasks.
pub async fn find_task(
    aws: &Aws,
    cluster: &str,
    started_by: &str,
    run_id: &str,
) -> anyhow::Result<Option<(String, String)>> {
    Ok(stack_tasks(&aws.ecs(), cluster, started_by)
        .await?
        .iter()
        .find(|t| tag(t, ownership::TAG_RUN_ID) == Some(run_id))
        .map(|t| {
            (
                t.task_arn().unwrap_or_default().to_string(),
                t.last_status().unwrap_or_default().to_string(),
            )
        }))
}

/// The task's status lines: its first status, then one line for each change.
pub struct StatusLines {
    task_id: String,
    last: String,
}

impl StatusLines {
    pub fn new(task_id: &str) -> StatusLines {
        StatusLines {
            task_id: task_id.to_string(),
            last: String::new(),
        }
    }

    /// The line to print for a status seen now, if it is a change.
    pub fn see(&mut self, status: &str) -> Option<String> {
        if status.is_empty() || status == self.last {
            return None;
        }
        self.last = status.to_string();
        Some(format!("Task {}: {status}", self.task_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_role_ecs_could_not_assume_is_launched_again() {
        let failed = |code: &str, reason: &str| TaskState {
            last_status: "STOPPED".into(),
            stop_code: Some(code.into()),
            stopped_reason: Some(reason.into()),
            ..TaskState::default()
        };
        assert!(role_not_assumable(&failed(
            "TaskFailedToStart",
            "ECS was unable to assume the role 'arn:aws:iam::123456789012:role/lackey-ecs-execution' that was provided for this task. Please verify that the role being passed has the proper trust relationship and permissions and that your IAM user has permissions to pass this role."
        )));
        assert!(!role_not_assumable(&failed(
            "TaskFailedToStart",
            "CannotPullContainerError: pull image manifest has been retried 5 time(s)"
        )));
        assert!(!role_not_assumable(&failed(
            "EssentialContainerExited",
            "unable to assume the role"
        )));
    }

    #[test]
    fn through_the_sidecar_the_minion_keeps_no_credential_and_the_sidecar_gets_them() {
        let mut input = MinionInput::new("20261128-220000-ab12", "t");
        input.runtime = Runtime::Cloud;
        input.base_url = "http://127.0.0.1:9/llm".into();
        input.api_key = Some(Secret::Value("sk-ant-canary".into()));
        input.github = Some(GithubAuth::App {
            app_id: "1".into(),
            installation_id: "2".into(),
            private_key: None,
        });
        input.github_repo = Some("acme/app".into());
        input.github_api_url = "http://127.0.0.1:8/api".into();
        input.github_git_url = "http://127.0.0.1:8".into();
        input.repo = RepoSource::Url("http://127.0.0.1:8/acme/app.git".into());
        input.base_ref = Some("main".into());
        let target = crate::proxy::PushTarget {
            branch: input.branch.clone(),
            may_update: false,
            default_branch: input.base_ref.clone(),
        };
        let sc = through_sidecar(&mut input, target);
        // The minion: no key, no App credentials, everything through the sidecar.
        let url = input.proxy_url.clone().unwrap();
        assert_eq!(url, format!("http://{}", sc.listen));
        assert_eq!(input.api_key, None);
        assert_eq!(input.github, None);
        assert!(input.secrets().is_empty());
        assert_eq!(
            input.repo,
            RepoSource::Url(format!("{url}/git/acme/app.git"))
        );
        assert_eq!(input.github_api_url, format!("{url}/github"));
        let env = input.to_env();
        let leaked: Vec<&(String, String)> = env
            .iter()
            .filter(|(k, v)| {
                // (`LACKEY_` itself contains `KEY`.)
                let name = k.strip_prefix("LACKEY_").unwrap_or(k);
                name.contains("KEY")
                    || name.contains("TOKEN")
                    || name.starts_with("GITHUB_APP")
                    || v.contains("canary")
            })
            .collect();
        assert!(leaked.is_empty(), "{leaked:?}");
        // The sidecar: the upstreams, the key the host had to pass, the push target.
        assert_eq!(sc.base_url, "http://127.0.0.1:9/llm");
        assert_eq!(sc.api_key, Some(Secret::Value("sk-ant-canary".into())));
        assert_eq!(sc.github_repo.as_deref(), Some("acme/app"));
        assert_eq!(sc.github_git_url, "http://127.0.0.1:8");
        assert_eq!(
            sc.push_branch.as_deref(),
            Some("minion/20261128-220000-ab12")
        );
        assert_eq!(sc.default_branch.as_deref(), Some("main"));
        assert!(!sc.push_may_update, "a new branch may only be created");
        assert!(matches!(sc.github, Some(GithubAuth::App { .. })));
        // One port per run, the same every time, never a privileged or ephemeral one.
        let port = |id: &str| -> u16 {
            sidecar_listen(id)
                .rsplit(':')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        assert_eq!(port("a"), port("a"));
        for id in ["a", "20261129-022637-d2b5", "20261129-022154-b16f"] {
            assert!((20_000..32_768).contains(&port(id)), "{id}: {}", port(id));
        }
        // Both containers' environments are in the overrides, each under its name.
        let o = task_overrides(&env, Some(&sc.to_env()));
        let names: Vec<&str> = o
            .container_overrides()
            .iter()
            .filter_map(|c| c.name())
            .collect();
        assert_eq!(names, [MINION_CONTAINER, SIDECAR_CONTAINER]);
        assert!(overrides_size(&env, Some(&sc.to_env())) > overrides_size(&env, None));
        // `--push-to`: the existing branch the host decided is the push target, which the
        // sidecar lets be fast-forwarded; the default branch goes with it.
        let env = crate::config::EnvVars::from_pairs(
            vec![("LACKEY_REPO".to_string(), "acme/app".to_string())],
            Vec::new(),
        );
        let settings =
            crate::config::Settings::resolve(&[], &env, &crate::config::ConfigFile::default())
                .unwrap();
        let mut spec = RunSpec::from_settings(&settings, "t", true).unwrap();
        spec.branch = "feature".into();
        spec.push_to = Some("feature".into());
        let mut input = spec.minion_input(Runtime::Cloud, SystemTime::now());
        input.github_repo = Some("acme/app".into());
        input.base_ref = Some("main".into());
        let target = spec.push_target(input.base_ref.clone());
        let sc = through_sidecar(&mut input, target);
        assert_eq!(sc.push_branch.as_deref(), Some("feature"));
        assert!(sc.push_may_update);
        assert_eq!(sc.default_branch.as_deref(), Some("main"));
        assert!(sc
            .to_env()
            .contains(&(var::PUSH_MAY_UPDATE.to_string(), "1".to_string())));
        assert!(
            input.branch_exists,
            "the minion still checks the branch out"
        );
    }
}
