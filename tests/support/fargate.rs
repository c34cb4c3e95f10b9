//! The Fargate player: no emulator runs moto's ECS tasks, so the harness does.
//!
//! It watches moto (started with `--fargate-player`) for new tasks and walks each
//! through Fargate's lifecycle: PROVISIONING, then PENDING while it pulls the task
//! definition's image from the local registry and resolves its `secrets` from Secrets
//! Manager (as the execution role would), then RUNNING while the container runs in
//! local Docker with the task's overrides, then STOPPED with the container's real exit
//! code. A pull that fails stops the task with `CannotPullContainerError`, a secret that
//! cannot be read with `ResourceInitializationError`, an image whose OS or architecture
//! is not the task definition's `runtimePlatform` with `CannotStartContainerError`
//! (`exec format error`), all `TaskFailedToStart`. StopTask (desiredStatus STOPPED)
//! stops the container with SIGTERM. The container's output is written to the
//! CloudWatch stream `<prefix>/<container>/<task id>`.
//!
//! As ECS, the player works as the task definition's execution role (assumed through
//! moto, which enforces IAM): the registry login, the secrets and the log streams are
//! that role's calls, and a role ECS cannot assume yet (IAM propagation) stops the task
//! with `TaskFailedToStart` ("unable to assume the role"), which lackey launches again.
//!
//! A task's containers start in `dependsOn` order and share one network namespace, as
//! an awsvpc task's do: the host's, so that they reach moto, the registry, the fake
//! GitHub and the fake LLM on loopback. Each container gets its own overrides and only
//! the `secrets` its own definition declares (a task with the credential sidecar: the
//! sidecar alone). Every container gets the task role as Fargate gives it: the
//! container-credentials endpoint (`AWS_CONTAINER_CREDENTIALS_FULL_URI` and its token),
//! no keys; the minion writes its artifacts to S3 with it. When an essential container
//! exits, the others are stopped and the task stops; DescribeTasks then reports each
//! container's exit code.

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::moto::Moto;

pub struct FargatePlayer {
    id: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// What the player did, for test failure messages.
    pub log: Arc<Mutex<Vec<String>>>,
}

/// How long a task stays in PROVISIONING and PENDING (long enough for a poller to see).
const STEP: Duration = Duration::from_millis(1500);

fn docker(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("docker");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

struct Ctx {
    moto_url: String,
    http: reqwest::Client,
    ecs: aws_sdk_ecs::Client,
    sm: aws_sdk_secretsmanager::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
    cluster: String,
    log: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    /// Labels this player's containers, so tests running side by side stay apart.
    label: String,
    /// The container-credentials endpoint: what the task's containers get their task
    /// role's credentials from.
    credentials: Credentials,
}

impl Ctx {
    async fn set(&self, body: serde_json::Value) {
        let _ = self
            .http
            .post(format!("{}/_harness/ecs/task", self.moto_url))
            .json(&body)
            .send()
            .await;
    }

    fn note(&self, s: String) {
        self.log.lock().unwrap().push(s);
    }

    async fn fail_to_start(&self, arn: &str, reason: String) {
        self.note(format!("{arn}: failed to start: {reason}"));
        self.set(serde_json::json!({"task_arn": arn, "last_status": "STOPPED", "stop_code": "TaskFailedToStart", "stopped_reason": reason})).await;
    }

    async fn desired_stopped(&self, arn: &str) -> bool {
        match self
            .ecs
            .describe_tasks()
            .cluster(&self.cluster)
            .tasks(arn)
            .send()
            .await
        {
            Ok(o) => o.tasks().first().and_then(|t| t.desired_status()) == Some("STOPPED"),
            Err(_) => false,
        }
    }

    /// PENDING, as the execution role: pull each image (after the registry login) and
    /// check its platform; resolve each container's `secrets` into that container's
    /// environment only. The containers' environments (overrides by container name,
    /// then secrets), or the reason the task fails to start.
    async fn prepare(
        &self,
        agent: &Agent,
        td: &aws_sdk_ecs::types::TaskDefinition,
        task: &aws_sdk_ecs::types::Task,
    ) -> Result<Vec<Vec<(String, String)>>, String> {
        agent.registry_login().await?;
        let defs = td.container_definitions();
        let mut images: Vec<String> = defs
            .iter()
            .map(|c| c.image().unwrap_or_default().to_string())
            .collect();
        images.sort();
        images.dedup();
        for image in images {
            check_image(td, &image).await?;
        }
        let mut envs = Vec::new();
        for def in defs {
            let mut env: Vec<(String, String)> = task
                .overrides()
                .map(|o| o.container_overrides())
                .unwrap_or_default()
                .iter()
                .filter(|o| o.name() == def.name())
                .flat_map(|c| c.environment().iter())
                .map(|kv| {
                    (
                        kv.name().unwrap_or_default().to_string(),
                        kv.value().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            for s in def.secrets() {
                match agent.sm.get_secret_value().secret_id(s.value_from()).send().await {
                    Ok(v) if v.secret_string().is_some() => env.push((s.name().to_string(), v.secret_string().unwrap().to_string())),
                    _ => return Err(format!("ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: unable to retrieve secret from asm: service call has been retried 1 time(s): failed to fetch secret {} from secrets manager", s.value_from())),
                }
            }
            envs.push(env);
        }
        Ok(envs)
    }

    #[allow(
        clippy::too_many_lines,
        reason = "Fargate's task lifecycle, one state after the other: reads better whole"
    )]
    async fn play(self: Arc<Self>, arn: String) {
        let task_id = arn.rsplit('/').next().unwrap_or_default().to_string();
        let Ok(d) = self
            .ecs
            .describe_tasks()
            .cluster(&self.cluster)
            .tasks(&arn)
            .send()
            .await
        else {
            return;
        };
        let Some(task) = d.tasks().first().cloned() else {
            return;
        };
        let td_arn = task.task_definition_arn().unwrap_or_default().to_string();
        let Ok(td) = self
            .ecs
            .describe_task_definition()
            .task_definition(&td_arn)
            .send()
            .await
        else {
            return self
                .fail_to_start(
                    &arn,
                    "ResourceNotFoundException: task definition not found".into(),
                )
                .await;
        };
        let Some(td) = td.task_definition().cloned() else {
            return;
        };
        if td.container_definitions().is_empty() {
            return;
        }
        tokio::time::sleep(STEP).await;
        self.set(serde_json::json!({"task_arn": arn, "last_status": "PENDING"}))
            .await;
        // ECS's agent works as the execution role: it must be assumable, and what the
        // agent does is evaluated against its policies.
        let agent = match Agent::assume(&self, &td).await {
            Ok(a) => a,
            Err(reason) => return self.fail_to_start(&arn, reason).await,
        };
        let envs = match self.prepare(&agent, &td, &task).await {
            Ok(e) => e,
            Err(reason) => return self.fail_to_start(&arn, reason).await,
        };
        tokio::time::sleep(STEP).await;
        if self.desired_stopped(&arn).await {
            self.set(serde_json::json!({"task_arn": arn, "last_status": "STOPPED"}))
                .await;
            return;
        }
        let task_role = match self.task_role_env(&td, &task_id).await {
            Ok(vars) => vars,
            Err(reason) => return self.fail_to_start(&arn, reason).await,
        };
        let mut running = Vec::new();
        if let Err(reason) = self
            .start_all(&td, envs, &task_role, &agent, &task_id, &arn, &mut running)
            .await
        {
            for c in &running {
                let name = c.docker_name.clone();
                let _ = tokio::task::spawn_blocking(move || docker(&["rm", "-f", &name])).await;
            }
            return self.fail_to_start(&arn, reason).await;
        }
        self.set(serde_json::json!({"task_arn": arn, "last_status": "RUNNING"}))
            .await;
        self.note(format!(
            "{arn}: running {}",
            running
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let codes = self.watch_until_stopped(&arn, &running).await;
        for c in running.iter_mut() {
            if let Some(f) = c.forwarder.take() {
                let _ = tokio::time::timeout(Duration::from_secs(10), f).await;
            }
        }
        self.set(serde_json::json!({"task_arn": arn, "last_status": "DEPROVISIONING"}))
            .await;
        let minion = running.iter().position(|c| c.name == "minion").unwrap_or(0);
        let exit_code = codes[minion];
        let by_name: serde_json::Map<String, serde_json::Value> = running
            .iter()
            .zip(&codes)
            .map(|(c, code)| (c.name.clone(), serde_json::json!(code)))
            .collect();
        self.set(serde_json::json!({
            "task_arn": arn,
            "last_status": "STOPPED",
            "exit_code": exit_code,
            "container_exit_codes": by_name,
            "stop_code": "EssentialContainerExited",
            "stopped_reason": "Essential container in task exited",
        }))
        .await;
        self.note(format!("{arn}: stopped with exit codes {by_name:?}"));
        for c in &running {
            let name = c.docker_name.clone();
            let _ = tokio::task::spawn_blocking(move || docker(&["rm", "-f", &name])).await;
        }
    }

    /// Start the task's containers in `dependsOn` order (START: once the container it
    /// depends on has started; COMPLETE and SUCCESS: once it has exited, with 0 for
    /// SUCCESS; HEALTHY is taken as START, the player runs no health checks). The
    /// containers share one network namespace, as an awsvpc task's do: the host's, so
    /// that they reach moto and the fakes on loopback. Each gets the environment
    /// `prepare` made for it, and nothing of the others', and the task role's
    /// (`task_role`, the same for every container, as on Fargate). The log streams are
    /// written as the execution role (`agent`).
    #[allow(
        clippy::too_many_arguments,
        reason = "one task's start: its definition, environments, roles and names"
    )]
    async fn start_all(
        &self,
        td: &aws_sdk_ecs::types::TaskDefinition,
        mut envs: Vec<Vec<(String, String)>>,
        task_role: &[(String, String)],
        agent: &Agent,
        task_id: &str,
        arn: &str,
        running: &mut Vec<Running>,
    ) -> Result<(), String> {
        let defs = td.container_definitions();
        let mut started: Vec<Option<usize>> = vec![None; defs.len()];
        while started.iter().any(Option::is_none) {
            let ready = (0..defs.len()).find(|&i| {
                started[i].is_none()
                    && defs[i].depends_on().iter().all(|d| {
                        defs.iter()
                            .position(|c| c.name() == Some(d.container_name()))
                            .and_then(|j| started[j])
                            .is_some()
                    })
            });
            let Some(i) = ready else {
                return Err(format!(
                    "CannotStartContainerError: the dependsOn of {} cannot be met",
                    td.family().unwrap_or_default()
                ));
            };
            let def = &defs[i];
            for d in def.depends_on() {
                let cond = d.condition().as_str();
                if cond == "COMPLETE" || cond == "SUCCESS" {
                    let j = defs
                        .iter()
                        .position(|c| c.name() == Some(d.container_name()))
                        .and_then(|j| started[j])
                        .unwrap();
                    let code = wait_exit(&running[j].docker_name).await;
                    if cond == "SUCCESS" && code != 0 {
                        return Err(format!(
                            "CannotStartContainerError: dependency {} exited with {code}",
                            d.container_name()
                        ));
                    }
                }
            }
            let name = def.name().unwrap_or("minion").to_string();
            let docker_name = format!("lackey-fargate-{task_id}-{name}");
            let mut env = std::mem::take(&mut envs[i]);
            env.extend(task_role.iter().cloned());
            let mut args: Vec<String> = vec![
                "run".into(),
                "-d".into(),
                "--name".into(),
                docker_name.clone(),
                "--network".into(),
                "host".into(),
                "--label".into(),
                self.label.clone(),
            ];
            for (k, v) in &env {
                args.push("-e".into());
                args.push(format!("{k}={v}"));
            }
            let entry = def.entry_point();
            if let Some(first) = entry.first() {
                args.push("--entrypoint".into());
                args.push(first.clone());
            }
            args.push(def.image().unwrap_or_default().to_string());
            args.extend(entry.iter().skip(1).cloned());
            args.extend(def.command().iter().cloned());
            let (ok, out) = tokio::task::spawn_blocking(move || {
                docker(&args.iter().map(String::as_str).collect::<Vec<_>>())
            })
            .await
            .unwrap();
            if !ok {
                return Err(format!("CannotStartContainerError: {}", out.trim()));
            }
            self.note(format!("{arn}: started container {name}"));
            // Forward the container's output to CloudWatch Logs as the awslogs driver does.
            let opts = def
                .log_configuration()
                .and_then(|l| l.options())
                .cloned()
                .unwrap_or_default();
            let group = opts.get("awslogs-group").cloned().unwrap_or_default();
            let stream = format!(
                "{}/{name}/{task_id}",
                opts.get("awslogs-stream-prefix")
                    .cloned()
                    .unwrap_or_else(|| "minion".into()),
            );
            let forwarder = {
                let logs = agent.logs.clone();
                let docker_name = docker_name.clone();
                tokio::spawn(async move { forward_logs(logs, docker_name, group, stream).await })
            };
            started[i] = Some(running.len());
            running.push(Running {
                name,
                docker_name,
                essential: def.essential().unwrap_or(true),
                forwarder: Some(forwarder),
            });
        }
        Ok(())
    }

    /// RUNNING until an essential container exits (the others are then stopped, as
    /// ECS stops a task) or StopTask asks (SIGTERM to every container, SIGKILL after
    /// the grace period, 30 s on Fargate). Each container's exit code, in `running`'s
    /// order.
    async fn watch_until_stopped(&self, arn: &str, running: &[Running]) -> Vec<i64> {
        let mut codes: Vec<Option<i64>> = vec![None; running.len()];
        let mut stop_sent = false;
        loop {
            for (i, c) in running.iter().enumerate() {
                if codes[i].is_some() {
                    continue;
                }
                let (_, state) = tokio::task::spawn_blocking({
                    let name = c.docker_name.clone();
                    move || {
                        docker(&[
                            "inspect",
                            "-f",
                            "{{.State.Running}} {{.State.ExitCode}}",
                            &name,
                        ])
                    }
                })
                .await
                .unwrap();
                let mut parts = state.split_whitespace();
                if parts.next() == Some("false") {
                    codes[i] = Some(parts.next().and_then(|c| c.parse().ok()).unwrap_or(-1));
                }
            }
            if codes.iter().all(Option::is_some) {
                return codes.into_iter().map(|c| c.unwrap_or(-1)).collect();
            }
            let essential_exited = running
                .iter()
                .zip(&codes)
                .any(|(c, code)| c.essential && code.is_some());
            if !stop_sent
                && (essential_exited
                    || self.desired_stopped(arn).await
                    || self.stop.load(Ordering::Relaxed))
            {
                for (c, code) in running.iter().zip(&codes) {
                    if code.is_none() {
                        let name = c.docker_name.clone();
                        tokio::task::spawn_blocking(move || docker(&["stop", "-t", "30", &name]));
                    }
                }
                stop_sent = true;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// One started container of a task.
struct Running {
    name: String,
    docker_name: String,
    essential: bool,
    forwarder: Option<tokio::task::JoinHandle<()>>,
}

/// Wait for a container to exit; its exit code.
async fn wait_exit(docker_name: &str) -> i64 {
    let name = docker_name.to_string();
    let (_, out) = tokio::task::spawn_blocking(move || docker(&["wait", &name]))
        .await
        .unwrap();
    out.trim().parse().unwrap_or(-1)
}

/// Pull an image and check it runs on the task definition's platform: Fargate starts
/// an image only on the platform the task definition declares (Linux on X86_64 when it
/// declares none); any other image dies at its first instruction with `exec format
/// error`.
async fn check_image(td: &aws_sdk_ecs::types::TaskDefinition, image: &str) -> Result<(), String> {
    let (pulled, out) = tokio::task::spawn_blocking({
        let image = image.to_string();
        move || docker(&["pull", "-q", &image])
    })
    .await
    .unwrap();
    if !pulled {
        return Err(format!("CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve ref {image}: {}", out.trim()));
    }
    let platform = td.runtime_platform();
    let want_os = platform
        .and_then(|p| p.operating_system_family())
        .map(|o| o.as_str().to_string())
        .unwrap_or_else(|| "LINUX".into());
    let want_arch = platform
        .and_then(|p| p.cpu_architecture())
        .map(|a| a.as_str().to_string())
        .unwrap_or_else(|| "X86_64".into());
    let (_, have) = tokio::task::spawn_blocking({
        let image = image.to_string();
        move || {
            docker(&[
                "image",
                "inspect",
                "-f",
                "{{.Os}}/{{.Architecture}}",
                &image,
            ])
        }
    })
    .await
    .unwrap();
    let have = have.trim().to_string();
    let docker_arch = match want_arch.as_str() {
        "ARM64" => "arm64",
        _ => "amd64",
    };
    if want_os != "LINUX" || have != format!("linux/{docker_arch}") {
        return Err(format!("CannotStartContainerError: image {image} is {have}, the task runs {want_os}/{want_arch}: exec /usr/local/bin/lackey: exec format error"));
    }
    Ok(())
}

async fn forward_logs(
    logs: aws_sdk_cloudwatchlogs::Client,
    name: String,
    group: String,
    stream: String,
) {
    let _ = logs
        .create_log_stream()
        .log_group_name(&group)
        .log_stream_name(&stream)
        .send()
        .await;
    let mut child = tokio::process::Command::new("docker")
        .args(["logs", "-f", &name])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker logs");
    // Both of the container's streams, as the awslogs driver sends them (the minion
    // logs on stdout, the credential sidecar on stderr).
    use tokio::io::AsyncBufReadExt;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let out = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let err = tokio::io::BufReader::new(child.stderr.take().unwrap());
    for mut lines in [
        Box::pin(out) as std::pin::Pin<Box<dyn tokio::io::AsyncBufRead + Send>>,
        Box::pin(err),
    ]
    .map(AsyncBufReadExt::lines)
    {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);
    while let Some(line) = rx.recv().await {
        let ev = aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
            .timestamp(chrono::Utc::now().timestamp_millis())
            .message(line)
            .build()
            .unwrap();
        let _ = logs
            .put_log_events()
            .log_group_name(&group)
            .log_stream_name(&stream)
            .log_events(ev)
            .send()
            .await;
    }
    let _ = child.wait().await;
}

/// ECS's agent for one task: clients acting as the task definition's execution role.
struct Agent {
    ecr: aws_sdk_ecr::Client,
    sm: aws_sdk_secretsmanager::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
}

impl Agent {
    /// Assume the execution role as ECS does (the role must trust
    /// `ecs-tasks.amazonaws.com` and be past IAM's propagation).
    async fn assume(ctx: &Ctx, td: &aws_sdk_ecs::types::TaskDefinition) -> Result<Agent, String> {
        let Some(role) = td.execution_role_arn() else {
            return Err(
                "ResourceInitializationError: the task definition names no execution role".into(),
            );
        };
        let conf = ctx.assume_as_ecs(role, "ecs-agent").await?;
        Ok(Agent {
            ecr: aws_sdk_ecr::Client::new(&conf),
            sm: aws_sdk_secretsmanager::Client::new(&conf),
            logs: aws_sdk_cloudwatchlogs::Client::new(&conf),
        })
    }

    /// The registry login before the pull (the pull itself goes to the local registry,
    /// which checks no IAM).
    async fn registry_login(&self) -> Result<(), String> {
        self.ecr.get_authorization_token().send().await.map(|_| ()).map_err(|e| {
            format!(
                "CannotPullContainerError: pull image manifest has been retried 1 time(s): unable to retrieve ecr registry auth: {}",
                aws_sdk_ecr::error::DisplayErrorContext(e)
            )
        })
    }
}

/// The container-credentials endpoint Fargate gives every container of a task: a GET
/// with the task's authorization token answers its task role's credentials.
#[derive(Clone)]
struct Credentials {
    port: u16,
    /// id in the URI → (authorization token, credentials document)
    served: Arc<Mutex<std::collections::HashMap<String, (String, serde_json::Value)>>>,
}

impl Credentials {
    fn bind() -> (Credentials, std::net::TcpListener) {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind the credentials endpoint");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        (
            Credentials {
                port,
                served: Arc::new(Mutex::new(Default::default())),
            },
            listener,
        )
    }

    async fn serve(self, listener: std::net::TcpListener, stop: Arc<AtomicBool>) {
        use axum::extract::{Path, State};
        use axum::http::{HeaderMap, StatusCode};
        use axum::response::IntoResponse;
        async fn get(
            State(c): State<Credentials>,
            Path(id): Path<String>,
            headers: HeaderMap,
        ) -> axum::response::Response {
            let served = c.served.lock().unwrap().get(&id).cloned();
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            match served {
                Some((token, doc)) if token == auth => axum::Json(doc).into_response(),
                Some(_) => StatusCode::UNAUTHORIZED.into_response(),
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let app = axum::Router::new()
            .route("/v2/credentials/{id}", axum::routing::get(get))
            .with_state(self);
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
            .await;
    }
}

impl Ctx {
    /// Assume `role` as the ECS service does, through moto's harness endpoint (a role
    /// not yet propagated, or not trusting ECS, cannot be assumed).
    async fn assume_raw(&self, role: &str, session: &str) -> Result<serde_json::Value, String> {
        let r = self
            .http
            .post(format!("{}/_harness/ecs/assume", self.moto_url))
            .json(&serde_json::json!({"role_arn": role, "session": session}))
            .send()
            .await
            .map_err(|e| format!("ResourceInitializationError: {e}"))?;
        let ok = r.status().is_success();
        let v: serde_json::Value = r
            .json()
            .await
            .map_err(|e| format!("ResourceInitializationError: {e}"))?;
        if !ok {
            self.note(format!("assume {role}: {v}"));
            return Err(v["error"]
                .as_str()
                .unwrap_or("ECS was unable to assume the role")
                .to_string());
        }
        Ok(v)
    }

    async fn assume_as_ecs(
        &self,
        role: &str,
        session: &str,
    ) -> Result<aws_config::SdkConfig, String> {
        let v = self.assume_raw(role, session).await?;
        let creds = aws_sdk_sts::config::Credentials::new(
            v["AccessKeyId"].as_str().unwrap_or_default(),
            v["SecretAccessKey"].as_str().unwrap_or_default(),
            v["Token"].as_str().map(str::to_string),
            None,
            "ecs",
        );
        Ok(aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&self.moto_url)
            .credentials_provider(creds)
            .load()
            .await)
    }

    /// The environment that gives a task's containers its task role, as Fargate does:
    /// the container-credentials endpoint and its token, no keys.
    async fn task_role_env(
        &self,
        td: &aws_sdk_ecs::types::TaskDefinition,
        task_id: &str,
    ) -> Result<Vec<(String, String)>, String> {
        let mut env = vec![
            ("AWS_ENDPOINT_URL".to_string(), self.moto_url.clone()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ];
        let Some(role) = td.task_role_arn() else {
            return Ok(env);
        };
        let v = self.assume_raw(role, task_id).await?;
        let doc = serde_json::json!({
            "AccessKeyId": v["AccessKeyId"],
            "SecretAccessKey": v["SecretAccessKey"],
            "Token": v["Token"],
            "Expiration": v["Expiration"],
            "RoleArn": role,
        });
        let token = format!("{:032x}", rand::random::<u128>());
        self.credentials
            .served
            .lock()
            .unwrap()
            .insert(task_id.to_string(), (token.clone(), doc));
        env.push((
            "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
            format!(
                "http://127.0.0.1:{}/v2/credentials/{task_id}",
                self.credentials.port
            ),
        ));
        env.push(("AWS_CONTAINER_AUTHORIZATION_TOKEN".into(), token));
        Ok(env)
    }
}

impl FargatePlayer {
    pub fn start(moto: &Moto, cluster: &str) -> FargatePlayer {
        let conf = moto.sdk_config();
        let id = format!("{}", moto.port());
        let (credentials, listener) = Credentials::bind();
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let ctx = Arc::new(Ctx {
            moto_url: moto.url(),
            http: reqwest::Client::new(),
            ecs: aws_sdk_ecs::Client::new(&conf),
            sm: aws_sdk_secretsmanager::Client::new(&conf),
            logs: aws_sdk_cloudwatchlogs::Client::new(&conf),
            cluster: cluster.to_string(),
            log: log.clone(),
            stop: stop.clone(),
            label: format!("lackey.fargate-player={id}"),
            credentials: credentials.clone(),
        });
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                tokio::spawn(credentials.serve(listener, ctx.stop.clone()));
                let mut seen: HashSet<String> = HashSet::new();
                let mut handles = Vec::new();
                while !ctx.stop.load(Ordering::Relaxed) {
                    if let Ok(out) = ctx.ecs.list_tasks().cluster(&ctx.cluster).send().await {
                        for arn in out.task_arns() {
                            if seen.insert(arn.clone()) {
                                handles.push(tokio::spawn(ctx.clone().play(arn.clone())));
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                for h in handles {
                    let _ = tokio::time::timeout(Duration::from_secs(60), h).await;
                }
            });
        });
        FargatePlayer {
            id,
            stop,
            thread: Some(thread),
            log,
        }
    }
}

impl Drop for FargatePlayer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // No container outlives the test.
        let (_, names) = docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=lackey.fargate-player={}", self.id),
        ]);
        for n in names.split_whitespace() {
            let _ = docker(&["rm", "-f", n]);
        }
    }
}
