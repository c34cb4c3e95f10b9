//! Cloud runs on ECS Fargate.
//!
//! Output order is fixed (users and tests read it): the image in ECR, the GitHub token,
//! the Anthropic key, `Launched ECS task: <arn>`, each status transition on stderr,
//! `Downloading artifacts to …`, the summary.
//!
//! What must stay true:
//! * No secret travels through RunTask: the task definition `lackey up` registers has
//!   ECS inject the Anthropic key and the GitHub App key from Secrets Manager, and the
//!   minion mints its own installation token. (A hand-made task definition without those
//!   entries still works: the values then go as environment overrides, with a warning,
//!   because anyone with `ecs:DescribeTasks` can read them.)
//! * Overrides stay under ECS's 8,192-character limit: a long task goes through S3.
//! * Every task the process watches is polled by one DescribeTasks call per tick
//!   ([`TaskWatcher`]), with backoff, for as long as the run takes.
//! * Timeout and Ctrl-C stop the task (StopTask: SIGTERM, the minion uploads what it
//!   has, SIGKILL after 30 s); no task is left running.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, ContainerOverride, KeyValuePair, LaunchType,
    NetworkConfiguration, Tag, TaskField, TaskOverride,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{HostEnd, RunSpec};
use crate::aws::{error_code, Aws, AwsResultExt};
use crate::error::Fail;
use crate::output::{Printer, Reporter, Tone};
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
    pub registry: String,
    pub repository: String,
    pub anthropic_secret: String,
    pub github: Option<GithubTarget>,
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
            registry: settings.require(&keys::ECR_REGISTRY)?.to_string(),
            repository: settings.require(&keys::ECR_REPOSITORY)?.to_string(),
            anthropic_secret: settings
                .require(&keys::SECRETS_ANTHROPIC_API_KEY)?
                .to_string(),
            github,
        })
    }

    pub fn started_by(&self) -> String {
        crate::stack::started_by(&self.stack)
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
                            let c = t.containers().first();
                            let state = TaskState {
                                last_status: t.last_status().unwrap_or_default().to_string(),
                                stop_code: t.stop_code().map(|s| s.as_str().to_string()),
                                stopped_reason: t.stopped_reason().map(str::to_string),
                                exit_code: c.and_then(|c| c.exit_code()),
                                container_reason: c.and_then(|c| c.reason()).map(str::to_string),
                            };
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

/// What a cloud run ended with.
pub struct CloudResult {
    pub summary: RunSummary,
    pub interrupted: bool,
    pub fetched: Option<bool>,
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

/// The repository's current branch, bundled whole for a run without GitHub.
fn bundle_repo(repo: &std::path::Path, out: &std::path::Path) -> anyhow::Result<String> {
    let branch = std::process::Command::new("git")
        .args(["rev-parse", "--abbrev-ref", "HEAD"])
        .current_dir(repo)
        .output()?;
    let branch = String::from_utf8_lossy(&branch.stdout).trim().to_string();
    let status = std::process::Command::new("git")
        .args(["bundle", "create", "--quiet"])
        .arg(out)
        .arg("HEAD")
        .arg(if branch == "HEAD" || branch.is_empty() {
            "HEAD"
        } else {
            &branch
        })
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

/// Perform a cloud run, from the image check to the downloaded artifacts.
#[allow(clippy::too_many_lines)]
pub async fn run_cloud(
    spec: &mut RunSpec,
    cloud: &CloudSpec,
    aws: &Aws,
    printer: &Printer,
    cancel: &CancellationToken,
) -> anyhow::Result<CloudResult> {
    let s3 = aws.s3();
    let ecs = aws.ecs();
    // The task definition decides how the secrets reach the task, and which images it
    // can run.
    let td = ecs
        .describe_task_definition()
        .task_definition(&cloud.task_family)
        .send()
        .await
        .map_err(|e| {
            if error_code(&e) == Some("ClientException") {
                anyhow::Error::new(
                    Fail::new(format!("task definition `{}` not found", cloud.task_family))
                        .with_hint("run `lackey up` to register it (or set LACKEY_ECS_TASK_DEF)"),
                )
            } else {
                anyhow::Error::new(crate::aws::render_sdk_error(e))
            }
        })?;
    let arch = td
        .task_definition()
        .map(crate::cloud::ecr::task_definition_architecture)
        .unwrap_or(crate::runner::image::CpuArch::X86_64);
    // 1. The image in ECR (refused before anything starts when it cannot run there).
    match super::docker::connect().await {
        Ok(docker) => {
            crate::cloud::ecr::ensure_image_in_ecr(
                &docker,
                aws,
                &spec.image,
                &cloud.registry,
                &cloud.repository,
                arch,
                printer,
            )
            .await?;
        }
        Err(e) => {
            printer.warn(&format!("{e:#}; using the image ECR already holds"));
        }
    }
    let injected: Vec<String> = td
        .task_definition()
        .and_then(|t| t.container_definitions().first())
        .map(|c| c.secrets().iter().map(|s| s.name().to_string()).collect())
        .unwrap_or_default();
    let dir = super::create_artifacts_dir(spec)?;
    let spec: &RunSpec = spec;
    let mut env: Vec<(String, String)> = Vec::new();
    let mut secret_env: Vec<(String, String)> = Vec::new();
    let started = chrono::Utc::now();
    // Everything up to the launch: a failure (or Ctrl-C) here leaves nothing behind,
    // neither the run's directory nor its inputs in S3.
    let dir_guard = super::RunDirGuard::new(&dir);
    let launched: anyhow::Result<(String, String)> = async {
        // 2. GitHub: mint a token now (it proves the app, the key and the repository),
        // and let the minion mint its own inside the task from the injected key.
        let mut base_ref = None;
        if let Some(gh) = &cloud.github {
            printer.info("Minting GitHub App installation token...");
            let key = crate::cloud::secrets::get_github_app_private_key(aws, &gh.key_secret).await?;
            let client = crate::github::GitHub::new(&gh.api_url);
            let repo_name = gh.repo.split_once('/').map(|(_, n)| n).unwrap_or(&gh.repo);
            let token = client
                .installation_token(&gh.app_id, &key, &gh.installation_id, Some(repo_name))
                .await?;
            let default_branch = client.default_branch(&token.token, &gh.repo).await?;
            base_ref = Some(default_branch);
            env.extend([
                (
                    "LACKEY_REPO_URL".to_string(),
                    format!("{}/{}.git", gh.git_url.trim_end_matches('/'), gh.repo),
                ),
                ("LACKEY_GITHUB_REPO".into(), gh.repo.clone()),
                ("LACKEY_GITHUB_API_URL".into(), gh.api_url.clone()),
                ("LACKEY_GITHUB_GIT_URL".into(), gh.git_url.clone()),
            ]);
            if injected
                .iter()
                .any(|n| n == "LACKEY_GITHUB_APP_PRIVATE_KEY")
            {
                env.extend([
                    ("LACKEY_GITHUB_APP_ID".to_string(), gh.app_id.clone()),
                    (
                        "LACKEY_GITHUB_INSTALLATION_ID".into(),
                        gh.installation_id.clone(),
                    ),
                ]);
            } else {
                printer.warn("the task definition does not inject the GitHub App key: the token goes as an environment override, visible to ecs:DescribeTasks (`lackey up` wires the key as an ECS secret)");
                secret_env.push(("GITHUB_TOKEN".into(), token.token.clone()));
            }
        } else if let Some(repo) = &spec.repo {
            // Without GitHub: a local repository goes up as a bundle and comes back as one.
            let bundle = tempfile::NamedTempFile::new()?;
            let branch = bundle_repo(repo, bundle.path())?;
            let key = format!("inputs/{}/source.bundle", spec.run_id);
            crate::cloud::s3::upload_file(&s3, bundle.path(), &cloud.bucket, &key).await?;
            env.push((
                "LACKEY_REPO_BUNDLE_S3".into(),
                format!("s3://{}/{key}", cloud.bucket),
            ));
            if branch != "HEAD" {
                base_ref = Some(branch);
            }
        }
        if let Some(b) = &base_ref {
            env.push(("LACKEY_BASE_REF".into(), b.clone()));
        }
        // 3. The Anthropic key.
        if spec.stubs {
            printer.info("Anthropic API key: not needed (--stubs)");
        } else if injected.iter().any(|n| n == "ANTHROPIC_API_KEY") {
            printer.info(&format!(
                "Anthropic API key: injected by ECS from Secrets Manager ({})",
                cloud.anthropic_secret
            ));
        } else {
            printer.info("Fetching Anthropic API key from Secrets Manager...");
            let key = crate::cloud::secrets::get_secret_value(aws, &cloud.anthropic_secret).await?;
            printer.warn("the task definition does not inject the Anthropic key: it goes as an environment override, visible to ecs:DescribeTasks (`lackey up` wires it as an ECS secret)");
            secret_env.push(("ANTHROPIC_API_KEY".into(), key));
        }
        let deadline = SystemTime::now() + spec.timeout;
        let mut minion = spec.minion_env(
            Runtime::Cloud,
            deadline.duration_since(UNIX_EPOCH)?.as_secs_f64(),
        );
        minion.extend(env);
        minion.extend([
            // What `env.GITHUB_TOKEN` means in a blueprint: this run can push.
            (
                "LACKEY_CAN_PUSH".to_string(),
                if cloud.github.is_some() { "1" } else { "0" }.to_string(),
            ),
            ("LACKEY_ARTIFACT_BUCKET".to_string(), cloud.bucket.clone()),
            ("LACKEY_S3_PREFIX".into(), spec.run_id.clone()),
            ("AWS_REGION".into(), cloud.region.clone()),
        ]);
        if spec.base_url != "https://api.anthropic.com" {
            minion.push(("ANTHROPIC_BASE_URL".into(), spec.base_url.clone()));
        }
        minion.extend(secret_env);
        // A task that does not fit in the overrides goes through S3.
        let size = |env: &[(String, String)]| -> usize {
            serde_json::to_string(&serde_json::json!({"containerOverrides": [{"name": "minion", "environment": env.iter().map(|(k, v)| serde_json::json!({"name": k, "value": v})).collect::<Vec<_>>()}]})).map(|s| s.len()).unwrap_or(0)
        };
        if size(&minion) > OVERRIDES_LIMIT - 512 {
            let key = format!("inputs/{}/task.txt", spec.run_id);
            crate::cloud::s3::put_text(&s3, &cloud.bucket, &key, &spec.task).await?;
            minion.retain(|(k, _)| k != "LACKEY_TASK");
            minion.push((
                "LACKEY_TASK_S3".into(),
                format!("s3://{}/{key}", cloud.bucket),
            ));
        }
        if size(&minion) > OVERRIDES_LIMIT {
            return Err(anyhow::anyhow!("the run's environment overrides are {} characters, over ECS's limit of {OVERRIDES_LIMIT}", size(&minion)));
        }
        // 4. RunTask, retrying capacity failures (they come back in `failures`).
        let overrides = TaskOverride::builder()
            .container_overrides(
                ContainerOverride::builder()
                    .name("minion")
                    .set_environment(Some(
                        minion
                            .iter()
                            .map(|(k, v)| KeyValuePair::builder().name(k).value(v).build())
                            .collect(),
                    ))
                    .build(),
            )
            .build();
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
        let tags = vec![
            Tag::builder()
                .key("lackey:stack")
                .value(&cloud.stack)
                .build(),
            Tag::builder()
                .key("lackey:run-id")
                .value(&spec.run_id)
                .build(),
            Tag::builder().key("managed-by").value("lackey").build(),
        ];
        let t_launch = Instant::now();
        let mut wait = Duration::from_secs(2);
        let task_arn = loop {
            if cancel.is_cancelled() {
                return Err(anyhow::Error::new(crate::error::Interrupted));
            }
            let out = ecs
                .run_task()
                .cluster(&cloud.cluster)
                .task_definition(&cloud.task_family)
                .launch_type(LaunchType::Fargate)
                .network_configuration(network.clone())
                .overrides(overrides.clone())
                .count(1)
                .started_by(cloud.started_by())
                .set_tags(Some(tags.clone()))
                .client_token(&spec.run_id)
                .send()
                .await
                .aws(format!(
                    "failed to run a task of `{}` on cluster `{}`",
                    cloud.task_family, cloud.cluster
                ))?;
            if let Some(t) = out.tasks().first() {
                if let Some(arn) = t.task_arn() {
                    // The task's first status is in RunTask's answer (PROVISIONING): a
                    // first poll may already see a later one.
                    break (arn.to_string(), t.last_status().unwrap_or_default().to_string());
                }
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
                .any(|r| r.contains("RESOURCE") || r.contains("capacity") || r.contains("Capacity"));
            if !capacity || t_launch.elapsed() > Duration::from_secs(300) || cancel.is_cancelled() {
                return Err(Fail::new(format!(
                    "ECS did not start the task: {}",
                    reasons.join("; ")
                ))
                .with_hint("check the cluster, subnets and security group (`lackey doctor`)")
                .into());
            }
            printer.warn(&format!(
                "no Fargate capacity yet ({}); retrying in {}s",
                reasons.join("; "),
                wait.as_secs()
            ));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = cancel.cancelled() => return Err(anyhow::Error::new(crate::error::Interrupted)),
            }
            wait = (wait * 2).min(Duration::from_secs(30));
        };
        Ok(task_arn)
    }
    .await;
    let (task_arn, first_status) = match launched {
        Ok(arn) => arn,
        Err(e) => {
            delete_inputs(&s3, &cloud.bucket, &spec.run_id).await;
            return Err(e);
        }
    };
    dir_guard.keep();
    printer.info(&format!("Launched ECS task: {task_arn}"));
    std::fs::write(dir.join(".ecs-task"), &task_arn).ok();
    let task_id = task_arn.rsplit('/').next().unwrap_or_default().to_string();
    // 5. Watch: status transitions, logs, timeout, Ctrl-C.
    let watcher = TaskWatcher::start(ecs.clone(), &cloud.cluster);
    let mut rx = watcher.watch(&task_arn);
    let log_done = CancellationToken::new();
    let follow = spec.follow.then(|| {
        let logs = aws.logs();
        let group = log_group_of(&td);
        let stream = format!("minion/minion/{task_id}");
        let printer = printer.clone();
        let done = log_done.clone();
        tokio::spawn(
            async move { tail_logs(&logs, &group, &stream, |l| printer.line(l), done).await },
        )
    });
    let timeout_at = tokio::time::Instant::now() + spec.timeout;
    let mut end = None;
    let mut lines = StatusLines::new(&task_id);
    if let Some(l) = lines.see(&first_status) {
        printer.info(&l);
    }
    let mut stop_sent = false;
    let final_state = loop {
        let state = rx.borrow().clone();
        if let Some(l) = lines.see(&state.last_status) {
            printer.info(&l);
        }
        if state.stopped() {
            break state;
        }
        tokio::select! {
            r = rx.changed() => {
                if r.is_err() {
                    break state;
                }
            }
            _ = tokio::time::sleep_until(timeout_at), if !stop_sent => {
                end = Some(HostEnd::TimedOut);
                stop_task(&ecs, &cloud.cluster, &task_arn, &format!("lackey: timed out after {} s", spec.timeout.as_secs())).await;
                stop_sent = true;
            }
            _ = cancel.cancelled(), if !stop_sent => {
                end = Some(HostEnd::Interrupted);
                printer.warn(&format!("interrupted: stopping task {task_id} (its artifacts are kept)"));
                stop_task(&ecs, &cloud.cluster, &task_arn, "lackey: interrupted by the user").await;
                stop_sent = true;
            }
            // After a stop request the task gets SIGTERM, then SIGKILL after 30 s.
            _ = tokio::time::sleep(Duration::from_secs(120)), if stop_sent => {
                printer.warn("the task has not reported STOPPED two minutes after StopTask; not waiting longer");
                break rx.borrow().clone();
            }
        }
    };
    watcher.shutdown();
    log_done.cancel();
    if let Some(h) = follow {
        let _ = tokio::time::timeout(Duration::from_secs(30), h).await;
    }
    delete_inputs(&s3, &cloud.bucket, &spec.run_id).await;
    // 6. The artifacts.
    printer.info(&format!("Downloading artifacts to {}/", dir.display()));
    let downloaded =
        match crate::cloud::s3::download_artifacts(&s3, &cloud.bucket, &spec.run_id, &dir).await {
            Ok(t) if t.files > 0 => {
                for r in &t.refused {
                    printer.warn(&format!("not downloaded: {r}"));
                }
                true
            }
            Ok(_) => {
                printer.warn(&format!(
                    "no artifacts at s3://{}/{}/",
                    cloud.bucket, spec.run_id
                ));
                false
            }
            Err(e) => {
                printer.warn(&format!(
                    "could not download the artifacts from s3://{}/{}/: {e:#}",
                    cloud.bucket, spec.run_id
                ));
                false
            }
        };
    let reason = final_state
        .stopped_reason
        .clone()
        .or(final_state.container_reason.clone())
        .unwrap_or_default();
    let end = end.unwrap_or_else(|| {
        if final_state.stop_code.as_deref() == Some("TaskFailedToStart") || !downloaded {
            let mut msg = format!(
                "the task stopped: {}",
                if reason.is_empty() {
                    "no reason given"
                } else {
                    &reason
                }
            );
            if let Some(code) = final_state.exit_code {
                msg.push_str(&format!(" (exit code {code})"));
            }
            HostEnd::Failed(msg)
        } else {
            HostEnd::Exited(final_state.exit_code.unwrap_or(-1) as i64)
        }
    });
    let mut summary = super::settle_summary(spec, Runtime::Cloud, &end, started, None);
    if summary.s3_prefix.is_none() && downloaded {
        summary.s3_prefix = Some(format!("s3://{}/{}/", cloud.bucket, spec.run_id));
    }
    if let HostEnd::Failed(msg) = &end {
        if let Some(h) = hint_for_stop(msg) {
            printer.line(format!("hint: {h}"));
        }
    }
    let fetched = match (&spec.repo, cloud.github.is_none()) {
        (Some(repo), true) => match super::fetch_back(repo, &dir, &summary) {
            Ok(f) => Some(f),
            Err(e) => {
                printer.error(&e);
                None
            }
        },
        _ => None,
    };
    printer.status(
        "Finished",
        if summary.outcome == crate::summary::Outcome::Success {
            Tone::Good
        } else {
            Tone::Bad
        },
        &format!("run {}: {}", spec.run_id, summary.outcome),
    );
    Ok(CloudResult {
        interrupted: matches!(end, HostEnd::Interrupted),
        summary,
        fetched,
    })
}

/// Remove a run's inputs (`inputs/<run id>/`: the task text, the repository bundle).
pub async fn delete_inputs(s3: &aws_sdk_s3::Client, bucket: &str, run_id: &str) {
    let prefix = format!("inputs/{run_id}");
    if let Ok(keys) = crate::cloud::s3::list_keys(s3, bucket, &prefix).await {
        for (k, _) in keys {
            let _ = s3.delete_object().bucket(bucket).key(k).send().await;
        }
    }
}

fn log_group_of(
    td: &aws_sdk_ecs::operation::describe_task_definition::DescribeTaskDefinitionOutput,
) -> String {
    td.task_definition()
        .and_then(|t| t.container_definitions().first())
        .and_then(|c| c.log_configuration())
        .and_then(|l| l.options())
        .and_then(|o| o.get("awslogs-group").cloned())
        .unwrap_or_else(|| "/ecs/lackey-minion".into())
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
    print: impl Fn(&str),
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
                        print(m.trim_end());
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
            Err(e) if error_code(&e) == Some("ResourceNotFoundException") => {
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

/// The ECS task of a run (by its `lackey:run-id` tag), among the stack's tasks.
pub async fn find_task(
    aws: &Aws,
    cluster: &str,
    started_by: &str,
    run_id: &str,
) -> anyhow::Result<Option<(String, String)>> {
    let ecs = aws.ecs();
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
            if t.tags()
                .iter()
                .any(|tag| tag.key() == Some("lackey:run-id") && tag.value() == Some(run_id))
            {
                return Ok(Some((
                    t.task_arn().unwrap_or_default().to_string(),
                    t.last_status().unwrap_or_default().to_string(),
                )));
            }
        }
    }
    Ok(None)
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
