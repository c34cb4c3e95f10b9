//! The minion: one run, inside the container (`lackey minion`), the same for local and
//! cloud runs. It also runs straight on a host against temporary directories, which is
//! how its tests run without Docker.
//!
//! # Input contract
//!
//! The environment the host gives the minion is [`crate::run_contract`]: one typed
//! [`MinionInput`], written by the host with `to_env` and read here with `from_env`.
//! The table of variables is `docs/run-contract.md`.
//!
//! # What must stay true
//! * Every exit path writes `run_summary.json` and the rest of the artifact set; a run
//!   that reaches its deadline stops its loops first and says `timed out after N s`.
//! * The source repository is never written; the result is a branch in the clone (and a
//!   bundle of it for local runs, a push for cloud runs).
//! * Secrets (API key, GitHub token) are redacted from every artifact.

pub mod agents;
pub mod artifacts;
pub mod blueprint;
pub mod bridge;
pub mod git;
pub mod llm;
pub mod sandbox;
pub mod tools;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use self::agents::{AgentEnd, Limits};
use self::artifacts::{clip, Artifacts, Redactor};
use self::blueprint::{
    Action, AgentKind, Blueprint, CommandSpec, Dialect, Facts, OnFailure, Templates,
};
use self::git::Git;
use self::llm::{Llm, LlmConfig, LlmError};
use self::tools::{Terminal, Workspace, WriteScope};
use crate::summary::{Outcome, RunSummary, Runtime, StepRecord, Usage};

pub use crate::run_contract::{GithubAuth, MinionInput, RepoSource, Secret, TaskSource};

/// Why the run's body stopped early.
#[derive(Debug)]
enum Stop {
    /// End with this outcome and message.
    End(Outcome, String),
    /// The deadline is near: stop and say so.
    Deadline,
}

impl From<anyhow::Error> for Stop {
    fn from(e: anyhow::Error) -> Stop {
        Stop::End(Outcome::Error, format!("{e:#}"))
    }
}

impl From<git::GitError> for Stop {
    fn from(e: git::GitError) -> Stop {
        Stop::End(Outcome::Error, e.to_string())
    }
}

/// The state of a run as its steps execute.
struct Run {
    input: MinionInput,
    task: String,
    art: Arc<Artifacts>,
    repo_dir: PathBuf,
    git: Option<Git>,
    ws: Option<Workspace>,
    llm: Option<Llm>,
    s3: Option<aws_sdk_s3::Client>,
    /// When the run's loops must stop (the kill time minus a margin for the artifacts).
    deadline: Option<Instant>,
    base_sha: Option<String>,
    head_sha: Option<String>,
    /// The last commit the minion made, or the one it started from: what its branch
    /// points at, whatever an agent's git commands did since (see `Git::seal`).
    tip: Option<String>,
    /// The ref HEAD is on (`refs/heads/<branch>`); None when detached.
    head_ref: Option<String>,
    branch: String,
    branch_created: bool,
    /// Nothing untrusted (an agent, a command) has run since the last commit's checks
    /// and commit: the repository is as they left it, so the end's own checks would
    /// find nothing and are skipped.
    sealed: bool,
    /// The tree of `tip` (path → mode and object id), listed when nothing untrusted had
    /// run yet or verified when the minion committed it: what the next commit must still
    /// hold outside the scope.
    tip_listing: Option<std::collections::HashMap<String, String>>,
    default_branch: Option<String>,
    github_token: Option<String>,
    scope: Option<Value>,
    steps: Vec<StepRecord>,
    /// `Some(true)` failed, `Some(false)` succeeded; absent when skipped or not run.
    results: BTreeMap<String, bool>,
    /// Checks failing right now: step name → (command, output).
    failing: BTreeMap<String, (String, String)>,
    pushed: bool,
    pr_url: Option<String>,
    templates: Templates,
    /// The blueprint as loaded before any work (re-checks use it, not the file, which an
    /// agent may have edited since).
    blueprint: Option<Blueprint>,
    dialect: Dialect,
    /// The index of the step running now (0 before the first).
    step_index: usize,
    /// Each command step's output (its commands' and its check's), by step name.
    outputs: BTreeMap<String, String>,
    /// The original dialect: the outcome an `on_failure: outcome:<name>` set, and why.
    set_outcome: Option<(Outcome, String)>,
}

impl Facts for Run {
    fn step_failed(&self, name: &str) -> Option<bool> {
        self.results.get(name).copied()
    }
    fn env(&self, name: &str) -> bool {
        match name {
            // "This run can push": the host decides; else the credentials the minion holds.
            "GITHUB_TOKEN" => self.input.can_push.unwrap_or(self.github_token.is_some()),
            // The key itself, or a credential proxy that holds it (which refuses a stub run).
            "ANTHROPIC_API_KEY" => {
                self.input.api_key.is_some()
                    || ((self.input.proxy_socket.is_some() || self.input.proxy_url.is_some())
                        && !self.input.stubs)
            }
            // Only what the user passed through: never the minion's own environment.
            _ => self.input.pass_env.get(name).is_some_and(|v| !v.is_empty()),
        }
    }
    fn config(&self, name: &str) -> bool {
        match name {
            "lint" => self.input.lint.is_some(),
            "test" => self.input.test.is_some(),
            "pr" => self.input.pr,
            "stubs" => self.input.stubs,
            "github" => self.github_token.is_some(),
            _ => false,
        }
    }
}

/// The safety margin before the deadline: time to write the artifacts (and upload them).
fn margin(remaining: Duration) -> Duration {
    (remaining / 10).clamp(Duration::from_millis(800), Duration::from_secs(10))
}

/// Perform a run. Never fails: every error becomes `outcome: error` in the summary.
pub async fn run(input: MinionInput) -> RunSummary {
    // Listen for SIGTERM before anything else: a run stopped while it starts must still
    // write its summary, not die of the signal's default action.
    let sigterm = terminated();
    let started_at = chrono::Utc::now();
    let t0 = Instant::now();
    let art = match Artifacts::create(&input.output_dir, Redactor::new(input.secrets()), true) {
        Ok(a) => {
            // Before any command runs: its orphans must stay the minion's descendants.
            a.log("sandbox", &sandbox::arm());
            Arc::new(a)
        }
        #[allow(
            clippy::print_stderr,
            reason = "the minion owns its container's stderr, and its own log cannot be written"
        )]
        Err(e) => {
            eprintln!("minion: {e:#}");
            let mut s = empty_summary(&input, "", started_at);
            s.error = Some(format!("{e:#}"));
            return s;
        }
    };
    let hard_deadline = input.deadline.map(|d| {
        let rem = d.duration_since(SystemTime::now()).unwrap_or_default();
        t0 + rem
    });
    let soft_deadline = hard_deadline.map(|d| d - margin(d.saturating_duration_since(t0)));
    let mut run = Run {
        task: String::new(),
        art: art.clone(),
        repo_dir: input.work_dir.join("repo"),
        git: None,
        ws: None,
        llm: None,
        s3: None,
        deadline: soft_deadline,
        base_sha: None,
        head_sha: None,
        tip: None,
        head_ref: None,
        branch: input.branch.clone(),
        branch_created: false,
        sealed: false,
        tip_listing: None,
        default_branch: None,
        github_token: None,
        scope: None,
        steps: Vec::new(),
        results: BTreeMap::new(),
        failing: BTreeMap::new(),
        pushed: false,
        pr_url: None,
        templates: Templates {
            values: BTreeMap::new(),
            env: BTreeMap::new(),
        },
        blueprint: None,
        dialect: Dialect::V2,
        step_index: 0,
        outputs: BTreeMap::new(),
        set_outcome: None,
        input,
    };
    let body = run.body();
    let stop = match soft_deadline {
        Some(d) => {
            tokio::select! {
                r = tokio::time::timeout_at(d.into(), body) => r.unwrap_or(Err(Stop::Deadline)),
                _ = sigterm => Err(if Instant::now() + Duration::from_secs(2) >= d { Stop::Deadline } else {
                    Stop::End(Outcome::Error, "stopped: the run was stopped before it finished (SIGTERM)".into())
                }),
            }
        }
        None => {
            tokio::select! {
                r = body => r,
                _ = sigterm => Err(Stop::End(Outcome::Error, "stopped: the run was stopped before it finished (SIGTERM)".into())),
            }
        }
    };
    let (outcome, error) = match stop {
        Ok(()) => run.final_outcome(),
        Err(Stop::End(o, msg)) => (o, Some(msg)),
        Err(Stop::Deadline) => {
            let secs = run.input.timeout_secs.unwrap_or_else(|| {
                run.input
                    .deadline
                    .and_then(|d| d.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
            });
            run.steps.push(StepRecord {
                index: run.step_index,
                name: "deadline".into(),
                success: false,
                detail: "stopped before the run's deadline; the work so far is in diff.patch"
                    .into(),
            });
            (Outcome::Error, Some(crate::summary::timed_out(secs)))
        }
    };
    run.finish(outcome, error, started_at, t0).await
}

/// Resolves when the process receives SIGTERM (docker stop, ECS StopTask).
/// The handler is installed when this is called (not when it is first awaited).
fn terminated() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let stream = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        #[cfg(unix)]
        if let Some(mut s) = stream {
            s.recv().await;
            return;
        }
        std::future::pending::<()>().await
    }
}

fn empty_summary(
    input: &MinionInput,
    task: &str,
    started: chrono::DateTime<chrono::Utc>,
) -> RunSummary {
    let now = chrono::Utc::now();
    RunSummary {
        run_id: input.run_id.clone(),
        task: task.to_string(),
        outcome: Outcome::Error,
        runtime: input.runtime,
        branch: input.branch.clone(),
        base_sha: None,
        head_sha: None,
        started_at: started.to_rfc3339(),
        finished_at: now.to_rfc3339(),
        duration_s: (now - started).num_milliseconds() as f64 / 1000.0,
        steps: vec![],
        usage: Usage::default(),
        pr_url: None,
        s3_prefix: None,
        error: None,
    }
}

impl Run {
    fn log(&self, msg: &str) {
        self.art.log("minion", msg);
    }

    fn record(&mut self, name: &str, success: bool, detail: impl Into<String>) {
        let detail = detail.into();
        self.log(&format!(
            "step `{name}` {}{}",
            if success { "succeeded" } else { "failed" },
            if detail.is_empty() {
                String::new()
            } else {
                format!(": {detail}")
            }
        ));
        self.results.insert(name.to_string(), !success);
        self.steps.push(StepRecord {
            index: self.step_index,
            name: name.to_string(),
            success,
            detail,
        });
    }

    /// The S3 client, made on first use from the input's region and endpoint.
    async fn s3(&mut self) -> anyhow::Result<aws_sdk_s3::Client> {
        if let Some(c) = &self.s3 {
            return Ok(c.clone());
        }
        let aws = crate::aws::Aws::connect_with(crate::aws::AwsParams {
            region: self.input.aws_region.clone(),
            profile: None,
            endpoint_url: self.input.aws_endpoint_url.clone(),
            max_attempts: 5,
            app_name: "lackey-minion",
        })
        .await?;
        let c = aws.s3();
        self.s3 = Some(c.clone());
        Ok(c)
    }

    async fn read_task(&mut self) -> anyhow::Result<String> {
        match self.input.task.clone() {
            TaskSource::Inline(t) => Ok(t),
            TaskSource::File(p) => std::fs::read_to_string(&p)
                .map_err(|e| anyhow::anyhow!("cannot read the task file `{}`: {e}", p.display())),
            TaskSource::S3(url) => {
                let (bucket, key) = crate::cloud::s3::parse_url(&url)?;
                let s3 = self.s3().await?;
                crate::cloud::s3::get_text(&s3, &bucket, &key).await
            }
        }
    }

    /// Everything from the clone to the last step.
    async fn body(&mut self) -> Result<(), Stop> {
        self.task = self.read_task().await?;
        self.log(&format!(
            "run {} on branch `{}`: {}",
            self.input.run_id,
            self.branch,
            blueprint::summary_line(&self.task)
        ));
        self.templates = Templates::for_run(
            &self.input.run_id,
            &self.task,
            &self.branch,
            self.input.lint.as_deref(),
            self.input.test.as_deref(),
            self.input.pass_env.clone(),
        );
        if let Some(url) = self.input.proxy_url.clone() {
            bridge::wait_for_sidecar(&url)
                .await
                .map_err(|e| Stop::End(Outcome::Error, format!("{e:#}")))?;
            self.log(&format!(
                "the LLM, git and GitHub are reached through the task's credential sidecar at {url}"
            ));
        }
        self.github_token = self.github_token().await?;
        self.clone_repo().await?;
        let ws_root = self.repo_dir.clone();
        let blueprint = Blueprint::load(&ws_root, self.input.blueprint.as_deref())?;
        self.log(&format!(
            "blueprint `{}` ({}): {}",
            blueprint.name,
            match blueprint.dialect {
                Dialect::V2 => "version 2",
                Dialect::Original => "the original lackey's dialect",
            },
            blueprint
                .steps
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(" → ")
        ));
        for w in &blueprint.warnings {
            self.log(&format!("warning: blueprint `{}`: {w}", blueprint.name));
        }
        self.dialect = blueprint.dialect;
        self.ws = Some(
            Workspace::new(&ws_root, self.art.clone(), self.deadline)
                .map_err(|e| Stop::End(Outcome::Error, format!("{e:#}")))?
                .with_env(
                    self.input
                        .pass_env
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ),
        );
        if let (Some(socket), false) = (self.input.proxy_socket.clone(), self.input.stubs) {
            // The proxy holds the key and adds it; the client talks to it through a
            // bridge on the container's loopback, with a placeholder key.
            let addr = bridge::start(&socket)
                .await
                .map_err(|e| Stop::End(Outcome::Error, format!("{e:#}")))?;
            self.input.base_url = format!("http://{addr}/anthropic");
            self.input
                .api_key
                .get_or_insert_with(|| Secret::Value(bridge::KEY_PLACEHOLDER.to_string()));
            self.log("the LLM is reached through the host's credential proxy");
        } else if let (Some(url), false) = (self.input.proxy_url.clone(), self.input.stubs) {
            // The sidecar holds the key and adds it.
            self.input.base_url = format!("{}/anthropic", url.trim_end_matches('/'));
            self.input
                .api_key
                .get_or_insert_with(|| Secret::Value(bridge::KEY_PLACEHOLDER.to_string()));
        }
        if !self.input.stubs {
            let api_key = self
                .input
                .api_key
                .as_ref()
                .and_then(Secret::value)
                .map(str::to_string)
                .ok_or_else(|| {
                    Stop::End(
                        Outcome::Error,
                        "no Anthropic API key: set ANTHROPIC_API_KEY (or run with --stubs)".into(),
                    )
                })?;
            self.llm = Some(Llm::new(
                LlmConfig {
                    base_url: self.input.base_url.clone(),
                    api_key,
                    model: self.input.model.clone(),
                    request_timeout: Duration::from_secs(600),
                    max_retries: 6,
                },
                self.deadline,
                self.art.clone(),
            ));
        } else {
            self.log("stubs: agents are stubbed, no LLM call will be made");
        }
        self.blueprint = Some(blueprint.clone());
        for step in blueprint.steps {
            if let Some(c) = &step.when {
                if !c.eval(self) {
                    self.log(&format!(
                        "step `{}` skipped (its `when` is false)",
                        step.name
                    ));
                    continue;
                }
            }
            self.step_index = step.index;
            self.art.set_step(Some((step.index, step.name.clone())));
            self.log(&format!("step {} `{}`", step.index, step.name));
            self.step(&step.name, &step.action).await?;
        }
        self.art.set_step(None);
        Ok(())
    }

    async fn github_token(&self) -> anyhow::Result<Option<String>> {
        if self.input.proxy_url.is_some() {
            // The sidecar adds the real token to git and GitHub API requests; the
            // minion's requests carry a placeholder, which the sidecar drops.
            return Ok(self
                .input
                .github_repo
                .as_ref()
                .map(|_| bridge::KEY_PLACEHOLDER.to_string()));
        }
        match &self.input.github {
            None => Ok(None),
            Some(GithubAuth::Token(t)) => Ok(t.value().map(str::to_string)),
            Some(GithubAuth::App {
                private_key: None, ..
            }) => Ok(None),
            Some(GithubAuth::App {
                app_id,
                installation_id,
                private_key: Some(private_key),
            }) => {
                let private_key = private_key.value().unwrap_or_default();
                let repo = self
                    .input
                    .github_repo
                    .as_deref()
                    .and_then(|r| r.split_once('/').map(|(_, n)| n.to_string()));
                self.log("minting a GitHub App installation token for this run");
                let gh = crate::github::GitHub::new(&self.input.github_api_url);
                let tok = gh
                    .installation_token(app_id, private_key, installation_id, repo.as_deref())
                    .await?;
                self.art.add_secret(&tok.token);
                Ok(Some(tok.token))
            }
        }
    }

    async fn clone_repo(&mut self) -> Result<(), Stop> {
        let git = Git::new(
            &self.repo_dir,
            self.art.clone(),
            &self.input.commit_name,
            &self.input.commit_email,
            self.github_token.clone(),
        );
        // A local run's host writes the repository's bundle while the container starts
        // (it appears whole, renamed into place): wait for it.
        if let RepoSource::Path(p) = &self.input.repo {
            if p.extension().is_some_and(|e| e == "bundle") && !p.exists() {
                // Until the run's deadline: a large repository takes a while to bundle.
                let waited = Instant::now();
                while !p.exists() {
                    if self.deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(Stop::End(
                            Outcome::Error,
                            format!(
                                "the host did not provide the repository's bundle `{}` before the run's deadline",
                                p.display()
                            ),
                        ));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                self.log(&format!(
                    "waited {:.0} ms for the repository's bundle",
                    waited.elapsed().as_secs_f64() * 1000.0
                ));
            }
        }
        let source = match &self.input.repo {
            // A bundle file (local runs: the host bundles the repository's commits).
            RepoSource::Path(p) if p.is_file() => p.display().to_string(),
            RepoSource::Path(p) => {
                let denied = |q: std::path::PathBuf| {
                    std::fs::metadata(q)
                        .is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
                };
                if denied(p.join(".git"))
                    || std::fs::read_dir(p)
                        .is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
                {
                    return Err(Stop::End(
                        Outcome::Error,
                        format!(
                            "permission denied: the minion (uid {}) cannot read the repository at `{}`; make it readable to that user (chmod -R o+rX on the host)",
                            unsafe { libc::getuid() },
                            p.display()
                        ),
                    ));
                }
                if !p.join(".git").exists() && !p.join("HEAD").exists() {
                    return Err(Stop::End(
                        Outcome::Error,
                        format!("`{}` is not a git repository", p.display()),
                    ));
                }
                p.display().to_string()
            }
            RepoSource::Url(u) => u.clone(),
            RepoSource::BundleS3(url) => {
                let local = self.input.work_dir.join("source.bundle");
                let (bucket, key) = crate::cloud::s3::parse_url(url)?;
                let s3 = self.s3().await?;
                crate::cloud::s3::download_key(&s3, &bucket, &key, &local).await?;
                local.display().to_string()
            }
        };
        self.log(&format!("cloning {}", self.art.redact(&source)));
        git.clone_from(&source, self.input.base_ref.is_none())
            .await?;
        if let Some(r) = &self.input.base_ref {
            git.run(&["checkout", "--quiet", r]).await?;
        }
        git.settle_index().await;
        let base = git.head().await?;
        // Listed now, before anything untrusted runs: the object store is the clone's.
        self.tip_listing = Some(git.tree_listing(&base).await?);
        self.log(&format!("base commit {base}"));
        self.default_branch = git
            .run(&["rev-parse", "--abbrev-ref", "HEAD"])
            .await
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| s != "HEAD");
        self.head_ref = git
            .run(&["symbolic-ref", "--quiet", "HEAD"])
            .await
            .ok()
            .map(|s| s.trim().to_string());
        self.tip = Some(base.clone());
        self.base_sha = Some(base);
        self.git = Some(git);
        Ok(())
    }

    /// Check out an existing branch (fetched from the source first when the clone does
    /// not have it), which becomes the run's branch.
    async fn checkout_existing(&mut self, name: &str, b: &str) -> Result<(), Stop> {
        let local = format!("refs/heads/{b}");
        let exists = self
            .git()
            .run(&["rev-parse", "--verify", "--quiet", &local])
            .await
            .is_ok();
        if !exists {
            // A single-branch clone: fetch the branch from the source first.
            if let Err(e) = self
                .git()
                .run(&["fetch", "--quiet", "origin", &format!("{local}:{local}")])
                .await
            {
                return Err(Stop::End(
                    Outcome::Error,
                    format!(
                        "step `{name}`: no branch `{b}` to check out: {}",
                        e.stderr.trim()
                    ),
                ));
            }
        }
        self.git().run(&["checkout", "--quiet", b]).await?;
        self.tip = Some(self.git().head().await?);
        // A blueprint checks a branch out before its agents and commands run.
        let tip = self.tip.clone().unwrap_or_default();
        self.tip_listing = Some(self.git().tree_listing(&tip).await?);
        self.head_ref = Some(local);
        self.branch = b.to_string();
        self.templates.values.insert("branch", b.to_string());
        self.branch_created = true;
        Ok(())
    }

    /// Why the run may not push (or bring back) its current branch, if it may not: only
    /// the branch the host decided before launch, a new one named after the run or the
    /// existing one of `--push-to`, and never the repository's default branch.
    fn push_refusal(&self) -> Option<String> {
        let b = &self.branch;
        if b != &self.input.branch {
            return Some(format!(
                "refusing to push `{b}`: this run may push only `{}`, decided on the host before launch (name an existing branch with --push-to)",
                self.input.branch
            ));
        }
        if !self.input.branch_exists && !b.contains(&self.input.run_id) {
            return Some(format!(
                "refusing to push `{b}`: a run creates only branches named after it"
            ));
        }
        if self.input.base_ref.as_deref() == Some(b.as_str()) {
            return Some(format!(
                "refusing to push `{b}`: it is the repository's default branch"
            ));
        }
        None
    }

    fn ws(&self) -> &Workspace {
        self.ws.as_ref().expect("workspace exists after the clone")
    }

    fn git(&self) -> &Git {
        self.git.as_ref().expect("git exists after the clone")
    }

    /// The checks the agents are told about: `lint: `cmd`; test: none configured`.
    fn checks_text(&self) -> String {
        let show = |c: &Option<String>| {
            c.as_deref()
                .map(|c| format!("`{c}`"))
                .unwrap_or_else(|| "none configured".into())
        };
        format!(
            "lint: {}; test: {}",
            show(&self.input.lint),
            show(&self.input.test)
        )
    }

    fn write_scope(&self) -> WriteScope {
        match &self.scope {
            Some(s) => tools::write_scope_from(s),
            None => WriteScope::everything(),
        }
    }

    #[allow(
        clippy::too_many_lines,
        reason = "one arm per blueprint action: the dispatch table reads better whole"
    )]
    async fn step(&mut self, name: &str, action: &Action) -> Result<(), Stop> {
        if matches!(action, Action::Agent { .. } | Action::Command(_)) {
            self.sealed = false;
        }
        match action {
            Action::GitBranch { branch } => {
                if self.input.branch_exists {
                    // `--push-to`: the run works on the existing branch the user named,
                    // and its own commits are the diff.
                    let b = self.input.branch.clone();
                    self.checkout_existing(name, &b).await?;
                    self.base_sha = self.tip.clone();
                    self.record(
                        name,
                        true,
                        format!("checked out the existing `{b}` (--push-to)"),
                    );
                    return Ok(());
                }
                if let Some(b) = branch {
                    self.branch = self.templates.render(b);
                    self.templates.values.insert("branch", self.branch.clone());
                }
                let b = self.branch.clone();
                if !b.contains(&self.input.run_id) {
                    return Err(Stop::End(
                        Outcome::Error,
                        format!("step `{name}`: the branch `{b}` does not contain the run id `{}`; a run creates only branches named after it", self.input.run_id),
                    ));
                }
                if b != self.input.branch {
                    self.log(&format!(
                        "warning: step `{name}`: the branch `{b}` is not the run's branch `{}`, which the host decided before launch; it will be neither pushed nor brought back",
                        self.input.branch
                    ));
                }
                self.git().checkout_new_branch(&b).await?;
                self.head_ref = Some(format!("refs/heads/{b}"));
                self.branch_created = true;
                self.record(name, true, format!("created `{b}`"));
            }
            Action::GitCheckout { branch } => {
                let b = self.templates.render(branch);
                // The commit checked out now is the base the diff is taken against.
                self.base_sha = Some(self.git().head().await?);
                self.checkout_existing(name, &b).await?;
                self.record(name, true, format!("checked out `{b}`"));
            }
            Action::Agent {
                agent,
                rounds,
                recheck,
                max_turns,
                input_from,
            } => match agent {
                AgentKind::Scoper => self.scoper(name, *max_turns).await?,
                AgentKind::Executor => self.executor(name, *max_turns).await?,
                AgentKind::Fixer if self.dialect == Dialect::Original => {
                    self.fixer_once(name, input_from.as_deref(), *max_turns)
                        .await?
                }
                AgentKind::Fixer => self.fixer(name, *rounds, recheck, *max_turns).await?,
            },
            Action::Command(spec) => {
                let ok = if self.dialect == Dialect::Original {
                    self.command_all(name, spec).await
                } else {
                    self.command(name, spec, spec.check).await
                };
                if !ok {
                    match &spec.on_failure {
                        OnFailure::Continue => {}
                        OnFailure::Outcome(o) => {
                            return Err(Stop::End(*o, format!("step `{name}` failed")))
                        }
                        OnFailure::SetOutcome(o) => {
                            self.log(&format!(
                                "step `{name}` failed: the run's outcome is now {o}"
                            ));
                            self.set_outcome = Some((
                                *o,
                                format!(
                                    "step `{name}` failed (its on_failure sets the outcome `{o}`)"
                                ),
                            ));
                        }
                    }
                }
            }
            Action::GitCommit { message } => {
                let msg = if self.input.stubs && message == "{task_summary}" {
                    // A stub run changes one file of its own; its commit says so rather
                    // than claiming the task was done (a blueprint's own message stays).
                    format!(
                        "Stub run {id}: add .lackey/stub-runs/{id}.md\n\nNo agent ran; the task was: {}",
                        blueprint::summary_line(&self.task),
                        id = self.input.run_id
                    )
                } else {
                    self.templates.render(message)
                };
                let msg = format!("{msg}\n\nlackey run {}", self.input.run_id);
                let committed = self.commit_in_scope(&msg).await?;
                self.sealed = true;
                match committed {
                    Some(sha) => {
                        self.head_sha = Some(sha.clone());
                        self.tip = Some(sha.clone());
                        self.record(
                            name,
                            true,
                            format!("committed {}", &sha[..12.min(sha.len())]),
                        );
                    }
                    None => {
                        self.head_sha = self.base_sha.clone();
                        self.record(name, true, "nothing to commit");
                    }
                }
            }
            Action::GitPush => {
                if self.head_sha == self.base_sha {
                    self.record(name, true, "nothing to push");
                    return Ok(());
                }
                // The original dialect records a failed push and goes on.
                let fatal = self.dialect == Dialect::V2;
                if let Some(msg) = self.push_refusal() {
                    if fatal {
                        return Err(Stop::End(Outcome::Error, msg));
                    }
                    self.record(name, false, msg);
                    return Ok(());
                }
                let b = self.branch.clone();
                // The minion's own last commit, with no stray process left to race it.
                let tip = self.tip.clone().unwrap_or_default();
                self.git().seal(&tip, self.head_ref.as_deref()).await?;
                match self.git().push(&tip, &b).await {
                    Ok(()) => {
                        self.pushed = true;
                        self.record(name, true, format!("pushed `{b}`"));
                    }
                    Err(e) => {
                        let msg = format!("push of `{b}` failed: {}", e.stderr);
                        if fatal {
                            return Err(Stop::End(Outcome::Error, msg));
                        }
                        self.record(name, false, msg);
                    }
                }
            }
            Action::GitPr { title, body, draft } => {
                if !self.pushed {
                    self.record(name, false, "no pull request: the branch was not pushed");
                    return Ok(());
                }
                let (Some(token), Some(repo)) =
                    (self.github_token.clone(), self.input.github_repo.clone())
                else {
                    self.record(
                        name,
                        false,
                        "no pull request: no GitHub token or repository",
                    );
                    return Ok(());
                };
                let gh = crate::github::GitHub::new(&self.input.github_api_url);
                let base = match self.input.base_ref.clone().or(self.default_branch.clone()) {
                    Some(b) => b,
                    None => gh.default_branch(&token, &repo).await?,
                };
                let body = match body {
                    Some(b) => self.templates.render(b),
                    None => self.pr_body().await,
                };
                let opened = gh
                    .create_pull_request(
                        &token,
                        &repo,
                        &self.templates.render(title),
                        &self.branch,
                        &base,
                        &self.art.redact(&body),
                        *draft || self.input.pr_draft,
                    )
                    .await;
                match opened {
                    Ok(url) => {
                        self.record(name, true, format!("opened {url}"));
                        self.pr_url = Some(url);
                    }
                    // The original dialect records a failed pull request and goes on.
                    Err(e) if self.dialect == Dialect::Original => {
                        self.record(name, false, format!("{e:#}"));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    fn agent_stop(&self, label: &str, err: LlmError) -> Stop {
        match err {
            LlmError::Deadline => Stop::Deadline,
            other => Stop::End(Outcome::Error, format!("{label}: {other}")),
        }
    }

    async fn scoper(&mut self, name: &str, max_turns: Option<u32>) -> Result<(), Stop> {
        let scope = if self.input.stubs {
            json!({
                "summary": "stub scope: the whole repository",
                "allowed_dirs": ["."],
                "allowed_files": [],
                "test_files": [],
                "rationale": "stub run (LACKEY_STUBS=1): no LLM call",
            })
        } else {
            let listing = self.ws().view(".", None).unwrap_or_default();
            let first = format!(
                "Task:\n{}\n\nThe repository's top level:\n{listing}\n\nChecks that will run after the change: {}.",
                self.task,
                self.checks_text(),
            );
            let limits = Limits::for_agent(AgentKind::Scoper).with_max_turns(max_turns);
            let llm = self.llm.as_ref().expect("llm exists without stubs");
            let r = agents::run_agent(
                llm,
                self.ws(),
                AgentKind::Scoper,
                "scoper",
                &first,
                &WriteScope::default(),
                limits,
            )
            .await;
            match r.end {
                AgentEnd::Done(Terminal::Scope(s)) => s,
                AgentEnd::Failed(e) => return Err(self.agent_stop("scoper", e)),
                AgentEnd::Limit(l) => {
                    return Err(Stop::End(
                        Outcome::Error,
                        format!("the scoper reached its limit ({l}) without submitting a scope"),
                    ))
                }
                _ => {
                    return Err(Stop::End(
                        Outcome::Error,
                        "the scoper ended without submitting a scope".into(),
                    ))
                }
            }
        };
        self.art
            .write(
                "scope.json",
                &serde_json::to_string_pretty(&scope).unwrap_or_default(),
            )
            .map_err(Stop::from)?;
        let detail = format!("scope: {}", tools::write_scope_from(&scope).describe());
        self.scope = Some(scope);
        self.record(name, true, detail);
        Ok(())
    }

    async fn executor(&mut self, name: &str, max_turns: Option<u32>) -> Result<(), Stop> {
        let scope = self.write_scope();
        if self.input.stubs {
            let path = format!(".lackey/stub-runs/{}.md", self.input.run_id);
            let text = format!(
                "# lackey stub run {}\n\nTask: {}\n\nThis file is the one deterministic change a stub executor makes, so the branch, commit, bundle and push are exercised without an LLM.\n",
                self.input.run_id,
                blueprint::summary_line(&self.task)
            );
            self.ws()
                .create(&path, &text, &WriteScope::everything())
                .map_err(|e| Stop::End(Outcome::Error, format!("stub executor: {e}")))?;
            self.record(name, true, format!("stub: wrote {path}"));
            return Ok(());
        }
        let scope_text = self
            .scope
            .as_ref()
            .map(|s| serde_json::to_string_pretty(s).unwrap_or_default())
            .unwrap_or_else(|| "{\"allowed_dirs\": [\".\"]}".into());
        let first = format!(
            "Task:\n{}\n\nScope (you may write only here):\n{scope_text}\n\nChecks that run after you: {}.",
            self.task,
            self.checks_text(),
        );
        let limits = Limits::for_agent(AgentKind::Executor).with_max_turns(max_turns);
        let llm = self.llm.as_ref().expect("llm exists without stubs");
        let r = agents::run_agent(
            llm,
            self.ws(),
            AgentKind::Executor,
            "executor",
            &first,
            &scope,
            limits,
        )
        .await;
        let detail = match r.end {
            AgentEnd::Done(Terminal::Finish(s)) => format!("finished in {} turns: {s}", r.turns),
            AgentEnd::EndTurn(s) => format!(
                "stopped in {} turns: {}",
                r.turns,
                s.chars().take(300).collect::<String>()
            ),
            AgentEnd::Done(Terminal::ScopeChange { files, reasoning }) => {
                let msg = format!(
                    "the executor needs files outside the scope ({}): {reasoning}",
                    files.join(", ")
                );
                self.record(name, false, msg.clone());
                if let Some(s) = self.scope.as_mut() {
                    s["requested_files"] = json!(files);
                    s["requested_reasoning"] = json!(reasoning);
                    let _ = self.art.write(
                        "scope.json",
                        &serde_json::to_string_pretty(s).unwrap_or_default(),
                    );
                }
                return Err(Stop::End(Outcome::ScopeDisagreement, msg));
            }
            AgentEnd::Done(Terminal::Scope(_)) => "finished".into(),
            AgentEnd::Failed(e) => return Err(self.agent_stop("executor", e)),
            AgentEnd::Limit(l) => {
                self.record(name, false, format!("stopped at its limit ({l})"));
                return Err(Stop::End(
                    Outcome::Error,
                    format!("the executor reached its limit ({l}) before finishing"),
                ));
            }
        };
        self.revert_out_of_scope(&scope).await?;
        self.record(name, true, detail);
        Ok(())
    }

    /// Commit what changed since the minion's last commit, within the scope, after every
    /// stray process is stopped: paths outside the scope are put back as they were and
    /// recorded (a `drop-out-of-scope` step in run_summary.json), never committed. The
    /// commit names its paths one by one.
    async fn commit_in_scope(&mut self, message: &str) -> Result<Option<String>, Stop> {
        let started = Instant::now();
        let tip = self.tip.clone().unwrap_or_default();
        let swept = self.git().seal(&tip, self.head_ref.as_deref()).await?;
        let scope = self.write_scope();
        let changed = self.git().changed_paths(&tip).await?;
        let (inside, outside): (Vec<String>, Vec<String>) =
            changed.into_iter().partition(|p| scope.allows(p));
        if !outside.is_empty() {
            self.git().revert_paths(&tip, &outside).await?;
            self.log(&format!(
                "dropped {} change(s) outside the scope from the commit: {}",
                outside.len(),
                outside.join(", ")
            ));
            self.steps.push(StepRecord {
                index: self.step_index,
                name: "drop-out-of-scope".into(),
                success: true,
                detail: format!("not committed, put back: {}", outside.join(", ")),
            });
        }
        self.log(&format!(
            "commit checks (stray processes, git metadata, scope) took {:.1} ms; {}",
            started.elapsed().as_secs_f64() * 1000.0,
            swept
                .map(|s| s.describe())
                .unwrap_or_else(|| "stray processes not swept (not armed)".into())
        ));
        let committed = self.git().commit_paths(&inside, message).await?;
        if let Some(sha) = &committed {
            self.verify_outside_scope(&scope, sha, &tip).await?;
        }
        Ok(committed)
    }

    /// The commit just made must hold, outside the scope, exactly what `tip` held when it
    /// was listed (before anything untrusted ran, or when the minion made it). The checks above read the
    /// object store, which the agents' commands could write: one that rewrote the
    /// base's tree objects (say, a pack listing a file of its own under the base's tree
    /// id) would make an out-of-scope change look unchanged, and the commit carry it.
    /// What git wrote is compared with the listing kept in memory; on a difference the
    /// branch goes back to `tip` and the run ends, bringing nothing of it back.
    async fn verify_outside_scope(
        &mut self,
        scope: &WriteScope,
        sha: &str,
        tip: &str,
    ) -> Result<(), Stop> {
        let Some(before) = self.tip_listing.take() else {
            return Ok(());
        };
        let now = self.git().tree_listing(sha).await?;
        let changed = changed_outside(scope, &before, &now);
        if changed.is_empty() {
            self.tip_listing = Some(now);
            return Ok(());
        }
        let shown: Vec<&str> = changed.iter().take(20).map(String::as_str).collect();
        match &self.head_ref {
            Some(r) => {
                self.git().run(&["update-ref", r, tip]).await?;
            }
            None => {
                self.git()
                    .run(&["update-ref", "--no-deref", "HEAD", tip])
                    .await?;
            }
        }
        Err(Stop::End(
            Outcome::Error,
            format!(
                "the commit would have changed {} path(s) outside the scope that the checks saw as unchanged ({}): the repository's objects were tampered with; the commit was undone",
                changed.len(),
                shown.join(", ")
            ),
        ))
    }

    /// Undo changes outside `scope` (made by shell commands: the edit tools refuse them).
    async fn revert_out_of_scope(&mut self, scope: &WriteScope) -> Result<(), Stop> {
        self.revert_out_of_scope_as(scope, "revert-out-of-scope")
            .await
    }

    /// The same, recorded as a step named `step`.
    async fn revert_out_of_scope_as(&mut self, scope: &WriteScope, step: &str) -> Result<(), Stop> {
        let base = self.base_sha.clone().unwrap_or_default();
        let changed = self.git().changed_paths(&base).await?;
        let outside: Vec<String> = changed.into_iter().filter(|p| !scope.allows(p)).collect();
        if !outside.is_empty() {
            self.git().revert_paths(&base, &outside).await?;
            self.log(&format!(
                "reverted {} change(s) outside the scope: {}",
                outside.len(),
                outside.join(", ")
            ));
            self.steps.push(StepRecord {
                index: self.step_index,
                name: step.into(),
                success: true,
                detail: format!("reverted: {}", outside.join(", ")),
            });
        }
        Ok(())
    }

    /// A command step of `version: 2`: its commands in order, up to the first failure.
    async fn command(&mut self, name: &str, spec: &CommandSpec, check: bool) -> bool {
        let CommandSpec {
            commands,
            success_codes,
            timeout,
            artifact,
            ..
        } = spec;
        let timeout = *timeout;
        let mut all_output = String::new();
        let mut failed: Option<(String, String)> = None;
        for c in commands {
            let cmd = self.templates.render(c);
            if cmd.trim().is_empty() {
                continue;
            }
            let r = self
                .ws()
                .shell(&format!("step:{name}"), &cmd, Duration::from_secs(timeout))
                .await;
            all_output.push_str(&format!("$ {cmd}\n{}\n", r.output));
            let ok = !r.timed_out && r.exit_code.is_some_and(|c| success_codes.contains(&c));
            if !ok {
                let why = if r.timed_out {
                    format!("`{cmd}` timed out after {timeout} s")
                } else {
                    format!(
                        "`{cmd}` exited with {}",
                        r.exit_code
                            .map(|c| c.to_string())
                            .unwrap_or("a signal".into())
                    )
                };
                failed = Some((why, r.output.clone()));
                break;
            }
        }
        if let Some(a) = artifact {
            let _ = self.art.write(a, &all_output);
        }
        self.outputs.insert(name.to_string(), all_output);
        match failed {
            None => {
                self.failing.remove(name);
                self.record(name, true, format!("{} command(s) passed", commands.len()));
                true
            }
            Some((why, output)) => {
                if check {
                    self.failing.insert(name.to_string(), (why.clone(), output));
                }
                self.record(name, false, why);
                false
            }
        }
    }

    async fn fixer(
        &mut self,
        name: &str,
        rounds: u32,
        recheck: &[String],
        max_turns: Option<u32>,
    ) -> Result<(), Stop> {
        if self.failing.is_empty() {
            self.record(name, true, "nothing to fix");
            return Ok(());
        }
        for round in 1..=rounds {
            let base = self.base_sha.clone().unwrap_or_default();
            if !self.input.stubs {
                let (diff, _) = self.git().diff(&base).await?;
                let failures: String = self
                    .failing
                    .iter()
                    .map(|(step, (why, out))| {
                        format!(
                            "--- check `{step}`: {why}\n{}\n",
                            clip(out, 12_000, "only the head and tail are shown").0
                        )
                    })
                    .collect();
                let first = format!(
                    "Task:\n{}\n\nFailing checks:\n{failures}\nThe diff so far:\n{}",
                    self.task,
                    clip(&diff, 20_000, "view the files for the rest").0
                );
                let mut touched = self.git().changed_paths(&base).await?;
                let mut dirs = Vec::new();
                if let Some(s) = &self.scope {
                    for t in s["test_files"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|v| v.as_str())
                    {
                        touched.push(t.to_string());
                        if self.repo_dir.join(t).is_dir() {
                            dirs.push(t.to_string());
                        }
                    }
                }
                let scope = WriteScope {
                    dirs,
                    files: touched,
                };
                let limits = Limits::for_agent(AgentKind::Fixer).with_max_turns(max_turns);
                let label = format!("fixer-{round}");
                let llm = self.llm.as_ref().expect("llm exists without stubs");
                let r = agents::run_agent(
                    llm,
                    self.ws(),
                    AgentKind::Fixer,
                    &label,
                    &first,
                    &scope,
                    limits,
                )
                .await;
                if let AgentEnd::Failed(e) = r.end {
                    return Err(self.agent_stop(&label, e));
                }
                self.revert_out_of_scope(&scope).await?;
            }
            // Re-run the checks that are failing and that this fixer re-checks.
            let to_check: Vec<String> = recheck
                .iter()
                .filter(|r| self.failing.contains_key(*r))
                .cloned()
                .collect();
            for step in to_check {
                if let Some(Action::Command(spec)) = self.command_step(&step) {
                    self.command(&step, &spec, true).await;
                }
            }
            if self.failing.is_empty() {
                self.record(name, true, format!("fixed in round {round}"));
                return Ok(());
            }
        }
        let still: Vec<&String> = self.failing.keys().collect();
        let detail = format!(
            "still failing after {rounds} round(s): {}",
            still
                .iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.record(name, false, detail);
        Ok(())
    }

    /// A command step of the original dialect: every command runs whatever an earlier
    /// one returned; then the check command, when there is one, alone decides success
    /// (its output goes to its artifact); without it the last command's exit code does.
    async fn command_all(&mut self, name: &str, spec: &CommandSpec) -> bool {
        let timeout = Duration::from_secs(spec.timeout);
        let label = format!("step:{name}");
        let mut combined = String::new();
        let mut verdict: Option<(bool, String)> = None;
        let judge = |cmd: &str, r: &tools::ShellResult| -> (bool, String) {
            let ok = !r.timed_out && r.exit_code.is_some_and(|c| spec.success_codes.contains(&c));
            let why = if r.timed_out {
                format!("`{cmd}` timed out after {} s", spec.timeout)
            } else {
                format!(
                    "`{cmd}` exited with {}",
                    r.exit_code
                        .map(|c| c.to_string())
                        .unwrap_or("a signal".into())
                )
            };
            (ok, why)
        };
        for c in &spec.commands {
            let cmd = self.templates.render(c);
            let r = self.ws().shell(&label, &cmd, timeout).await;
            combined.push_str(&format!("$ {cmd}\n{}\n", r.output));
            verdict = Some(judge(&cmd, &r));
        }
        if let Some(check) = &spec.check_command {
            let cmd = self.templates.render(&check.command);
            let r = self.ws().shell(&label, &cmd, timeout).await;
            let _ = self.art.write(&check.artifact, &r.output);
            combined.push_str(&format!("$ {cmd}\n{}\n", r.output));
            verdict = Some(judge(&cmd, &r));
        } else if let Some(a) = &spec.artifact {
            let _ = self.art.write(a, &combined);
        }
        self.outputs.insert(name.to_string(), combined);
        let n = spec.commands.len() + usize::from(spec.check_command.is_some());
        match verdict {
            None => {
                self.record(name, true, "no command to run");
                true
            }
            Some((true, why)) => {
                self.record(name, true, format!("{n} command(s) ran; {why}"));
                true
            }
            Some((false, why)) => {
                self.record(name, false, why);
                false
            }
        }
    }

    /// The original dialect's fixer: one attempt, given the output of the step named
    /// by `input_from` (its commands' and its check's). It records success: the step
    /// after it, a re-run of the check, says whether the repair worked.
    async fn fixer_once(
        &mut self,
        name: &str,
        input_from: Option<&str>,
        max_turns: Option<u32>,
    ) -> Result<(), Stop> {
        let output = input_from
            .and_then(|s| self.outputs.get(s))
            .cloned()
            .unwrap_or_default();
        if self.input.stubs {
            self.record(name, true, "stub: no change");
            return Ok(());
        }
        let base = self.base_sha.clone().unwrap_or_default();
        let (diff, _) = self.git().diff(&base).await?;
        let what = match input_from {
            Some(s) => format!(
                "The output of step `{s}`, which failed:\n{}",
                clip(&output, 12_000, "only the head and tail are shown").0
            ),
            None => {
                "No step's output was given to you: run the project's checks to find the failure."
                    .into()
            }
        };
        let first = format!(
            "Task:\n{}\n\n{what}\n\nThe diff so far:\n{}",
            self.task,
            clip(&diff, 20_000, "view the files for the rest").0
        );
        let scope = self.write_scope();
        let limits = Limits::for_agent(AgentKind::Fixer).with_max_turns(max_turns);
        let llm = self.llm.as_ref().expect("llm exists without stubs");
        let r = agents::run_agent(
            llm,
            self.ws(),
            AgentKind::Fixer,
            name,
            &first,
            &scope,
            limits,
        )
        .await;
        let detail = match r.end {
            AgentEnd::Failed(e) => return Err(self.agent_stop(name, e)),
            AgentEnd::Done(Terminal::Finish(s)) => format!("finished in {} turns: {s}", r.turns),
            AgentEnd::Limit(l) => format!("stopped at its limit ({l})"),
            _ => format!("stopped after {} turns", r.turns),
        };
        self.revert_out_of_scope(&scope).await?;
        self.record(name, true, detail);
        Ok(())
    }

    /// The pull request's body: what a reviewer needs to judge the run.
    async fn pr_body(&self) -> String {
        let (outcome, _) = self.final_outcome();
        let stats = match (&self.git, &self.base_sha) {
            (Some(g), Some(base)) => g.diff(base).await.map(|(_, s)| s).unwrap_or_default(),
            _ => String::new(),
        };
        let steps: Vec<crate::github::PrStep> = self
            .steps
            .iter()
            .map(|s| crate::github::PrStep {
                index: s.index,
                name: s.name.clone(),
                success: s.success,
                detail: s.detail.clone(),
                output: self.outputs.get(&s.name).cloned(),
            })
            .collect();
        let artifacts = match &self.input.bucket {
            // The run's folder, never its private prefix below it: whoever reads the
            // pull request (anyone, on a public repository) could otherwise write there
            // with any run's task role.
            Some(bucket) => crate::github::ArtifactsAt::S3 {
                bucket: bucket.clone(),
                prefix: self.input.run_id.clone(),
                region: self
                    .input
                    .aws_region
                    .clone()
                    .unwrap_or_else(|| "us-east-1".into()),
            },
            None => crate::github::ArtifactsAt::Local,
        };
        crate::github::pr_body(&crate::github::PrBody {
            outcome,
            run_id: self.input.run_id.clone(),
            steps,
            diff_stats: stats,
            artifacts,
        })
    }

    /// The definition of a command step, for re-checks.
    fn command_step(&self, step: &str) -> Option<Action> {
        self.blueprint
            .as_ref()?
            .steps
            .iter()
            .find(|s| s.name == step)
            .map(|s| s.action.clone())
            .filter(|a| matches!(a, Action::Command(_)))
    }

    fn final_outcome(&self) -> (Outcome, Option<String>) {
        if self.dialect == Dialect::Original {
            // That dialect's rule: success unless an `on_failure` set another outcome.
            return match &self.set_outcome {
                Some((o, why)) => (*o, Some(why.clone())),
                None => (Outcome::Success, None),
            };
        }
        if self.failing.is_empty() {
            (Outcome::Success, None)
        } else {
            let names: Vec<String> = self
                .failing
                .iter()
                .map(|(k, (why, _))| format!("`{k}` ({why})"))
                .collect();
            (
                Outcome::TestFailure,
                Some(format!("checks still failing: {}", names.join(", "))),
            )
        }
    }

    /// Write every artifact and the summary; upload them for cloud runs.
    async fn finish(
        mut self,
        outcome: Outcome,
        error: Option<String>,
        started_at: chrono::DateTime<chrono::Utc>,
        t0: Instant,
    ) -> RunSummary {
        if let Some(url) = self.input.proxy_url.clone() {
            // What the sidecar refused (this container's own requests), into the log.
            for line in bridge::sidecar_refusals(&url).await {
                self.log(&line);
            }
        }
        if let Some(e) = &error {
            self.log(&format!("outcome {outcome}: {e}"));
        } else {
            self.log(&format!("outcome {outcome}"));
        }
        // Nothing the untrusted side started runs on while the diff and the bundle are
        // made, the branch is the minion's own commits, and changes outside the scope
        // are dropped (and recorded) as at each commit.
        let tip = self.tip.clone().filter(|_| !self.sealed);
        if let (Some(git), Some(tip)) = (self.git.clone(), tip) {
            match git.seal(&tip, self.head_ref.as_deref()).await {
                Ok(_) => {
                    let scope = self.write_scope();
                    if let Err(e) = self
                        .revert_out_of_scope_as(&scope, "drop-out-of-scope")
                        .await
                    {
                        self.log(&format!(
                            "could not drop the changes outside the scope: {e:?}"
                        ));
                    }
                }
                Err(e) => self.log(&format!("could not seal the repository: {e}")),
            }
        }
        // The diff of the work so far, committed or not.
        if let (Some(git), Some(base)) = (&self.git, &self.base_sha) {
            match git.diff(base).await {
                Ok((patch, stat)) => {
                    let _ = self.art.write("diff.patch", &patch);
                    let _ = self.art.write("diff_stats.txt", &stat);
                }
                Err(e) => self.log(&format!("could not write the diff: {e}")),
            }
            if self.head_sha.is_none() {
                self.head_sha = git.head().await.ok();
            }
            // A bundle the minion did not make is never left for the host (which also
            // checks the tip against head_sha): whatever is at these names goes first.
            for name in ["repo.bundle", "repo.bundle.lock"] {
                self.art.clear(name);
            }
            let bundled = self.input.runtime == Runtime::Local
                || matches!(self.input.repo, RepoSource::BundleS3(_));
            if bundled && self.branch_created && self.push_refusal().is_some() {
                self.log(&format!(
                    "the branch `{}` is not the run's branch `{}`; no bundle",
                    self.branch, self.input.branch
                ));
            } else if bundled && self.branch_created {
                match git
                    .bundle(base, &self.branch, &self.art.dir.join("repo.bundle"))
                    .await
                {
                    Ok(true) => self.log("bundled the branch into repo.bundle"),
                    Ok(false) => self.log("the branch has no new commits; no bundle"),
                    Err(e) => self.log(&format!("could not bundle the branch: {e}")),
                }
            }
        }
        for name in ["diff.patch", "diff_stats.txt"] {
            if !self.art.dir.join(name).exists() {
                let _ = self.art.write(name, "");
            }
        }
        if !self.art.dir.join("scope.json").exists() {
            let _ = self.art.write("scope.json", "{}\n");
        }
        let finished = chrono::Utc::now();
        let usage = self.priced_usage();
        if let Some(llm) = &self.llm {
            let p = llm.prefix_stats();
            self.log(&format!(
                "llm: {} calls, {} bytes sent; {:.1}% of each continuing request repeated the previous request's bytes (cacheable prefix)",
                p.requests,
                p.bytes_sent,
                100.0 * p.share()
            ));
        }
        let s3_prefix = match (&self.input.bucket, &self.input.s3_prefix) {
            (Some(b), Some(p)) => Some(format!("s3://{b}/{}/", p.trim_end_matches('/'))),
            (Some(b), None) => Some(format!("s3://{b}/{}/", self.input.run_id)),
            _ => None,
        };
        let summary = RunSummary {
            run_id: self.input.run_id.clone(),
            task: self.task.clone(),
            outcome,
            runtime: self.input.runtime,
            branch: self.branch.clone(),
            base_sha: self.base_sha.clone(),
            head_sha: self.head_sha.clone(),
            started_at: started_at.to_rfc3339(),
            finished_at: finished.to_rfc3339(),
            duration_s: (t0.elapsed().as_millis() as f64) / 1000.0,
            steps: self.steps.clone(),
            usage,
            pr_url: self.pr_url.clone(),
            s3_prefix: s3_prefix.clone(),
            error: error.map(|e| self.art.redact(&e)),
        };
        // Through the redactor: step details carry the model's own words.
        let text = serde_json::to_string_pretty(&summary).unwrap_or_default() + "\n";
        if let Err(e) = self.art.write("run_summary.json", &text) {
            self.log(&format!("could not write run_summary.json: {e}"));
        }
        if let (Some(url), Some(bucket)) = (&s3_prefix, self.input.bucket.clone()) {
            self.log(&format!("uploading artifacts to {url}"));
            let prefix = self
                .input
                .s3_prefix
                .clone()
                .unwrap_or_else(|| self.input.run_id.clone());
            let dir = self.art.dir.clone();
            let uploaded = match self.s3().await {
                Ok(s3) => crate::cloud::s3::upload_dir(&s3, &dir, &bucket, &prefix).await,
                Err(e) => Err(e),
            };
            match uploaded {
                Ok(t) => self.log(&format!("uploaded {} files ({} bytes)", t.files, t.bytes)),
                Err(e) => self.log(&format!("could not upload the artifacts: {e:#}")),
            }
        }
        summary
    }
}

impl Run {
    /// The run's token counts, in total and per agent, with their cost.
    fn priced_usage(&self) -> Usage {
        let (total, by_agent) = self
            .llm
            .as_ref()
            .map(|l| (l.usage(), l.usage_by_agent()))
            .unwrap_or_default();
        let table = crate::cost::PriceTable::with_overrides(self.input.prices.as_deref())
            .unwrap_or_else(|e| {
                self.log(&format!("LACKEY_PRICES ignored: {e}"));
                crate::cost::PriceTable::builtin()
            });
        crate::cost::priced(&total, &by_agent, &self.input.model, &table)
    }
}

/// Exit code of the minion process: 0 only on success.
pub fn exit_code(summary: &RunSummary) -> u8 {
    if summary.outcome == Outcome::Success {
        0
    } else {
        1
    }
}

/// The paths outside `scope` whose entry differs between two tree listings (changed,
/// added or removed), sorted.
fn changed_outside(
    scope: &WriteScope,
    before: &std::collections::HashMap<String, String>,
    now: &std::collections::HashMap<String, String>,
) -> Vec<String> {
    let mut changed: Vec<String> = now
        .iter()
        .filter(|(p, v)| !scope.allows(p) && before.get(*p) != Some(*v))
        .map(|(p, _)| p.clone())
        .chain(
            before
                .keys()
                .filter(|p| !scope.allows(p) && !now.contains_key(*p))
                .cloned(),
        )
        .collect();
    changed.sort();
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_may_differ_from_its_tip_only_inside_the_scope() {
        let scope = WriteScope {
            dirs: vec!["src".into()],
            files: vec!["hello.sh".into()],
        };
        let listing = |entries: &[(&str, &str)]| {
            entries
                .iter()
                .map(|(p, v)| (p.to_string(), v.to_string()))
                .collect::<std::collections::HashMap<_, _>>()
        };
        let before = listing(&[
            ("hello.sh", "100644 a"),
            ("src/x.rs", "100644 b"),
            ("test.sh", "100755 c"),
            (".github/ci.yml", "100644 d"),
        ]);
        let inside = listing(&[
            ("hello.sh", "100644 a2"),
            ("src/x.rs", "100644 b2"),
            ("src/new.rs", "100644 e"),
            ("test.sh", "100755 c"),
            (".github/ci.yml", "100644 d"),
        ]);
        assert!(changed_outside(&scope, &before, &inside).is_empty());
        // A mode, a new file, a removal: each outside the scope is a change.
        let outside = listing(&[
            ("hello.sh", "100644 a"),
            ("src/x.rs", "100644 b"),
            ("test.sh", "100644 c"),
            ("evil.sh", "100644 f"),
        ]);
        assert_eq!(
            changed_outside(&scope, &before, &outside),
            [".github/ci.yml", "evil.sh", "test.sh"]
        );
    }
}
