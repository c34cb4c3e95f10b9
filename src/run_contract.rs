//! The run contract: what the host hands the minion, as environment variables.
//!
//! One typed value, [`MinionInput`], is both sides of it: the host builds one (the
//! shared part in `runner::RunSpec::minion_input`, the rest in each backend) and turns
//! it into variables with [`MinionInput::to_env`]; the minion reads it back with
//! [`MinionInput::from_env`]. Every variable name lives in [`var`], and no other module
//! names one. The table of variables, who sets each and the defaults is
//! `docs/run-contract.md`.
//!
//! Rules of the encoding:
//! * a variable that is empty counts as unset;
//! * a value equal to the minion's default is not written (the minion's default is the
//!   value), so `from_env(to_env(x)) == x` for every input;
//! * secrets are either a value or a file the minion reads ([`Secret`]); a secret the
//!   platform injects itself (ECS from Secrets Manager) is simply absent here.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::summary::Runtime;

/// The names of the contract's variables.
pub mod var {
    pub const RUN_ID: &str = "LACKEY_RUN_ID";
    pub const TASK: &str = "LACKEY_TASK";
    pub const TASK_FILE: &str = "LACKEY_TASK_FILE";
    pub const TASK_S3: &str = "LACKEY_TASK_S3";
    pub const REPO_PATH: &str = "LACKEY_REPO_PATH";
    pub const REPO_URL: &str = "LACKEY_REPO_URL";
    pub const REPO_BUNDLE_S3: &str = "LACKEY_REPO_BUNDLE_S3";
    pub const BASE_REF: &str = "LACKEY_BASE_REF";
    pub const WORK_DIR: &str = "LACKEY_WORK_DIR";
    pub const OUTPUT_DIR: &str = "LACKEY_OUTPUT_DIR";
    pub const DEADLINE: &str = "LACKEY_DEADLINE";
    pub const TIMEOUT: &str = "LACKEY_TIMEOUT";
    pub const BRANCH: &str = "LACKEY_BRANCH";
    pub const BRANCH_EXISTS: &str = "LACKEY_BRANCH_EXISTS";
    pub const MODEL: &str = "LACKEY_MODEL";
    pub const PRICES: &str = "LACKEY_PRICES";
    pub const BLUEPRINT: &str = "LACKEY_BLUEPRINT";
    pub const LINT: &str = "LACKEY_LINT";
    pub const TEST: &str = "LACKEY_TEST";
    pub const STUBS: &str = "LACKEY_STUBS";
    pub const RUNTIME: &str = "LACKEY_RUNTIME";
    pub const PASS_ENV: &str = "LACKEY_PASS_ENV";
    pub const CAN_PUSH: &str = "LACKEY_CAN_PUSH";
    pub const PROXY_SOCKET: &str = "LACKEY_PROXY_SOCKET";
    pub const PROXY_URL: &str = "LACKEY_PROXY_URL";
    pub const PROXY_LISTEN: &str = "LACKEY_PROXY_LISTEN";
    pub const PUSH_BRANCH: &str = "LACKEY_PUSH_BRANCH";
    pub const PUSH_MAY_UPDATE: &str = "LACKEY_PUSH_MAY_UPDATE";
    pub const DEFAULT_BRANCH: &str = "LACKEY_DEFAULT_BRANCH";
    pub const ANTHROPIC_API_KEY: &str = "ANTHROPIC_API_KEY";
    pub const ANTHROPIC_API_KEY_FILE: &str = "ANTHROPIC_API_KEY_FILE";
    pub const ANTHROPIC_BASE_URL: &str = "ANTHROPIC_BASE_URL";
    pub const GITHUB_TOKEN: &str = "GITHUB_TOKEN";
    pub const GITHUB_APP_ID: &str = "LACKEY_GITHUB_APP_ID";
    pub const GITHUB_INSTALLATION_ID: &str = "LACKEY_GITHUB_INSTALLATION_ID";
    pub const GITHUB_APP_PRIVATE_KEY: &str = "LACKEY_GITHUB_APP_PRIVATE_KEY";
    pub const GITHUB_APP_PRIVATE_KEY_FILE: &str = "LACKEY_GITHUB_APP_PRIVATE_KEY_FILE";
    pub const GITHUB_REPO: &str = "LACKEY_GITHUB_REPO";
    pub const GITHUB_API_URL: &str = "LACKEY_GITHUB_API_URL";
    pub const GITHUB_GIT_URL: &str = "LACKEY_GITHUB_GIT_URL";
    pub const PR: &str = "LACKEY_PR";
    pub const PR_DRAFT: &str = "LACKEY_PR_DRAFT";
    pub const ARTIFACT_BUCKET: &str = "LACKEY_ARTIFACT_BUCKET";
    pub const S3_PREFIX: &str = "LACKEY_S3_PREFIX";
    pub const COMMIT_NAME: &str = "LACKEY_COMMIT_NAME";
    pub const COMMIT_EMAIL: &str = "LACKEY_COMMIT_EMAIL";
    pub const AWS_REGION: &str = "AWS_REGION";
    pub const AWS_DEFAULT_REGION: &str = "AWS_DEFAULT_REGION";
    pub const AWS_ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";
}

/// The minion's defaults for the variables that have one.
pub mod default {
    pub const MODEL: &str = "claude-sonnet-4-5";
    pub const REPO_PATH: &str = "/repo";
    pub const WORK_DIR: &str = "/work";
    pub const OUTPUT_DIR: &str = "/output";
    pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
    pub const GITHUB_API_URL: &str = "https://api.github.com";
    pub const GITHUB_GIT_URL: &str = "https://github.com";
    pub const COMMIT_NAME: &str = "lackey minion";
    pub const COMMIT_EMAIL: &str = "minion@lackey.invalid";

    /// The branch a run creates when the host names none.
    pub fn branch(run_id: &str) -> String {
        format!("minion/{run_id}")
    }
}

/// A secret given to the minion: its value, or a file holding it. `Debug` never shows a
/// value.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Value(String),
    File(PathBuf),
}

impl Secret {
    /// The value, once [`MinionInput::from_env`] has read the files (None before).
    pub fn value(&self) -> Option<&str> {
        match self {
            Secret::Value(v) => Some(v),
            Secret::File(_) => None,
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Value(_) => f.write_str("Value([REDACTED])"),
            Secret::File(p) => f.debug_tuple("File").field(p).finish(),
        }
    }
}

/// GitHub credentials the minion may have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GithubAuth {
    /// A ready token (wins over App credentials).
    Token(Secret),
    /// App credentials: whoever holds them (the credential sidecar, or the minion of a
    /// hand-made task definition) mints the token, narrowed to the repository. The key
    /// is absent on the host side when the platform injects it.
    App {
        app_id: String,
        installation_id: String,
        private_key: Option<Secret>,
    },
}

/// Where to clone from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepoSource {
    Path(PathBuf),
    Url(String),
    BundleS3(String),
}

/// Where the task text is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskSource {
    Inline(String),
    File(PathBuf),
    S3(String),
}

/// Everything a run needs from the host: built by the host, read once by the minion.
#[derive(Clone, Debug, PartialEq)]
pub struct MinionInput {
    pub run_id: String,
    pub task: TaskSource,
    pub repo: RepoSource,
    pub base_ref: Option<String>,
    pub work_dir: PathBuf,
    pub output_dir: PathBuf,
    pub deadline: Option<SystemTime>,
    pub timeout_secs: Option<u64>,
    /// The branch the run pushes (or brings back), decided on the host before launch:
    /// a new branch named after the run, or, with `branch_exists`, the existing branch
    /// the user named with `--push-to`, which the run checks out and may fast-forward.
    pub branch: String,
    pub branch_exists: bool,
    pub model: String,
    pub prices: Option<String>,
    pub blueprint: Option<String>,
    pub lint: Option<String>,
    pub test: Option<String>,
    pub stubs: bool,
    pub runtime: Runtime,
    pub api_key: Option<Secret>,
    pub base_url: String,
    pub github: Option<GithubAuth>,
    pub github_repo: Option<String>,
    pub github_api_url: String,
    pub github_git_url: String,
    pub pr: bool,
    pub pr_draft: bool,
    pub bucket: Option<String>,
    pub s3_prefix: Option<String>,
    pub commit_name: String,
    pub commit_email: String,
    pub aws_region: Option<String>,
    pub aws_endpoint_url: Option<String>,
    /// Variables passed through for the blueprint (`env.NAME`, `{env.NAME}`, commands).
    pub pass_env: BTreeMap<String, String>,
    /// Whether this run can push, when the host said so.
    pub can_push: Option<bool>,
    /// The credential proxy's socket: the minion then reaches the LLM through it,
    /// without a key of its own, and `base_url` is not used.
    pub proxy_socket: Option<PathBuf>,
    /// The credential sidecar of a cloud run (`http://127.0.0.1:PORT`, on the task's
    /// shared loopback): the LLM, git and the GitHub API are reached through it, and the
    /// minion holds no credential at all.
    pub proxy_url: Option<String>,
}

fn truthy(v: Option<String>) -> bool {
    v.as_deref()
        .and_then(crate::config::validate::parse_bool)
        .unwrap_or(false)
}

/// Prefixes of the variables the run contract and the container runtime set themselves
/// (the minion's inputs, the LLM endpoint, ECS's credential variables): a passed-through
/// variable of the same name would clash with them.
const RESERVED_ENV_PREFIXES: [&str; 4] = ["LACKEY_", "ANTHROPIC_", "AWS_", "ECS_"];

/// The reserved prefix a variable's name starts with, if any.
pub fn reserved_prefix(name: &str) -> Option<&'static str> {
    let upper = name.to_ascii_uppercase();
    RESERVED_ENV_PREFIXES
        .into_iter()
        .find(|p| upper.starts_with(p))
}

/// Whether a variable may be passed through to a blueprint: not secret-looking, not one
/// lackey or the runtime sets.
pub fn passable(name: &str) -> bool {
    !secret_looking(name) && reserved_prefix(name).is_none()
}

/// Why a variable's value looks like a credential whatever its name (a URL with a
/// password, a token of a well-known shape, a private key), or None. The value itself
/// is never part of the answer.
pub fn credential_value(value: &str) -> Option<&'static str> {
    let v = value.trim();
    if let Some((_, rest)) = v.split_once("://") {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.contains('@') {
            return Some("a URL with a user and password");
        }
    }
    const PREFIXES: [&str; 12] = [
        "ghp_",
        "gho_",
        "ghu_",
        "ghs_",
        "ghr_",
        "github_pat_",
        "glpat-",
        "sk-",
        "xox",
        "AKIA",
        "ASIA",
        "AIza",
    ];
    if PREFIXES.iter().any(|p| v.starts_with(p)) && v.len() >= 16 {
        return Some("a token of a well-known shape");
    }
    if v.contains("-----BEGIN") {
        return Some("a private key or certificate");
    }
    None
}

/// Whether a variable's name says it holds a secret (such a variable is never passed
/// through to a run, on either side of the contract).
pub fn secret_looking(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    let anywhere = [
        "KEY",
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "CREDENTIAL",
        "PRIVATE",
        "COOKIE",
    ];
    let words = ["AUTH", "PASS", "PWD", "SESSION", "CERT"];
    anywhere.iter().any(|w| upper.contains(w)) || upper.split('_').any(|part| words.contains(&part))
}

impl MinionInput {
    /// An input with every default: a run of `task` on the repository at `/repo`.
    pub fn new(run_id: &str, task: &str) -> MinionInput {
        MinionInput {
            run_id: run_id.to_string(),
            task: TaskSource::Inline(task.to_string()),
            repo: RepoSource::Path(PathBuf::from(default::REPO_PATH)),
            base_ref: None,
            work_dir: PathBuf::from(default::WORK_DIR),
            output_dir: PathBuf::from(default::OUTPUT_DIR),
            deadline: None,
            timeout_secs: None,
            branch: default::branch(run_id),
            branch_exists: false,
            model: default::MODEL.to_string(),
            prices: None,
            blueprint: None,
            lint: None,
            test: None,
            stubs: false,
            runtime: Runtime::Local,
            api_key: None,
            base_url: default::ANTHROPIC_BASE_URL.to_string(),
            github: None,
            github_repo: None,
            github_api_url: default::GITHUB_API_URL.to_string(),
            github_git_url: default::GITHUB_GIT_URL.to_string(),
            pr: false,
            pr_draft: false,
            bucket: None,
            s3_prefix: None,
            commit_name: default::COMMIT_NAME.to_string(),
            commit_email: default::COMMIT_EMAIL.to_string(),
            aws_region: None,
            aws_endpoint_url: None,
            pass_env: BTreeMap::new(),
            can_push: None,
            proxy_socket: None,
            proxy_url: None,
        }
    }

    /// The variables, in a fixed order; values equal to the minion's defaults are left
    /// out. Secrets given as values are included: the caller decides where they go.
    pub fn to_env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = Vec::new();
        let mut put = |k: &str, v: String| env.push((k.to_string(), v));
        put(var::RUN_ID, self.run_id.clone());
        match &self.task {
            TaskSource::Inline(t) => put(var::TASK, t.clone()),
            TaskSource::File(f) => put(var::TASK_FILE, f.display().to_string()),
            TaskSource::S3(s) => put(var::TASK_S3, s.clone()),
        }
        if self.branch != default::branch(&self.run_id) {
            put(var::BRANCH, self.branch.clone());
        }
        if self.branch_exists {
            put(var::BRANCH_EXISTS, "1".into());
        }
        if self.model != default::MODEL {
            put(var::MODEL, self.model.clone());
        }
        if let Some(d) = self.deadline {
            let secs = d.duration_since(UNIX_EPOCH).unwrap_or_default();
            put(var::DEADLINE, format!("{:.3}", secs.as_secs_f64()));
        }
        if let Some(t) = self.timeout_secs {
            put(var::TIMEOUT, t.to_string());
        }
        if self.runtime == Runtime::Cloud {
            put(var::RUNTIME, "cloud".into());
        }
        if self.stubs {
            put(var::STUBS, "1".into());
        }
        for (k, v) in [
            (var::BLUEPRINT, &self.blueprint),
            (var::LINT, &self.lint),
            (var::TEST, &self.test),
            (var::PRICES, &self.prices),
        ] {
            if let Some(v) = v {
                put(k, v.clone());
            }
        }
        if self.pr {
            put(var::PR, "1".into());
        }
        if self.pr_draft {
            put(var::PR_DRAFT, "1".into());
        }
        if !self.pass_env.is_empty() {
            let names: Vec<&str> = self.pass_env.keys().map(String::as_str).collect();
            put(var::PASS_ENV, names.join(","));
            for (k, v) in &self.pass_env {
                put(k.as_str(), v.clone());
            }
        }
        if let Some(p) = self.can_push {
            put(var::CAN_PUSH, if p { "1" } else { "0" }.into());
        }
        if let Some(p) = &self.proxy_socket {
            put(var::PROXY_SOCKET, p.display().to_string());
        }
        if let Some(u) = &self.proxy_url {
            put(var::PROXY_URL, u.clone());
        }
        match &self.repo {
            RepoSource::Path(p) if p.as_os_str() == default::REPO_PATH => {}
            RepoSource::Path(p) => put(var::REPO_PATH, p.display().to_string()),
            RepoSource::Url(u) => put(var::REPO_URL, u.clone()),
            RepoSource::BundleS3(b) => put(var::REPO_BUNDLE_S3, b.clone()),
        }
        if let Some(b) = &self.base_ref {
            put(var::BASE_REF, b.clone());
        }
        if self.work_dir.as_os_str() != default::WORK_DIR {
            put(var::WORK_DIR, self.work_dir.display().to_string());
        }
        if self.output_dir.as_os_str() != default::OUTPUT_DIR {
            put(var::OUTPUT_DIR, self.output_dir.display().to_string());
        }
        if let Some(r) = &self.github_repo {
            put(var::GITHUB_REPO, r.clone());
        }
        if self.github_api_url != default::GITHUB_API_URL {
            put(var::GITHUB_API_URL, self.github_api_url.clone());
        }
        if self.github_git_url != default::GITHUB_GIT_URL {
            put(var::GITHUB_GIT_URL, self.github_git_url.clone());
        }
        match &self.github {
            None => {}
            Some(GithubAuth::Token(t)) => put_secret(&mut put, var::GITHUB_TOKEN, None, t),
            Some(GithubAuth::App {
                app_id,
                installation_id,
                private_key,
            }) => {
                put(var::GITHUB_APP_ID, app_id.clone());
                put(var::GITHUB_INSTALLATION_ID, installation_id.clone());
                if let Some(k) = private_key {
                    put_secret(
                        &mut put,
                        var::GITHUB_APP_PRIVATE_KEY,
                        Some(var::GITHUB_APP_PRIVATE_KEY_FILE),
                        k,
                    );
                }
            }
        }
        if let Some(b) = &self.bucket {
            put(var::ARTIFACT_BUCKET, b.clone());
        }
        if let Some(p) = &self.s3_prefix {
            put(var::S3_PREFIX, p.clone());
        }
        if self.commit_name != default::COMMIT_NAME {
            put(var::COMMIT_NAME, self.commit_name.clone());
        }
        if self.commit_email != default::COMMIT_EMAIL {
            put(var::COMMIT_EMAIL, self.commit_email.clone());
        }
        if let Some(r) = &self.aws_region {
            put(var::AWS_REGION, r.clone());
        }
        if let Some(u) = &self.aws_endpoint_url {
            put(var::AWS_ENDPOINT_URL, u.clone());
        }
        if self.base_url != default::ANTHROPIC_BASE_URL {
            put(var::ANTHROPIC_BASE_URL, self.base_url.clone());
        }
        if let Some(k) = &self.api_key {
            put_secret(
                &mut put,
                var::ANTHROPIC_API_KEY,
                Some(var::ANTHROPIC_API_KEY_FILE),
                k,
            );
        }
        env
    }

    /// Read the contract through `get` (the process environment in the minion), and
    /// read the secrets given as files.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<MinionInput> {
        let mut input = MinionInput::parse_env(get)?;
        input.api_key = match input.api_key.take() {
            Some(Secret::File(f)) => Some(Secret::Value(
                std::fs::read_to_string(&f)
                    .map(|s| s.trim().to_string())
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "cannot read {} `{}`: {e}",
                            var::ANTHROPIC_API_KEY_FILE,
                            f.display()
                        )
                    })?,
            )),
            other => other,
        };
        input.github = match input.github.take() {
            Some(GithubAuth::App {
                app_id,
                installation_id,
                private_key: Some(key),
            }) => {
                let key = match key {
                    Secret::File(f) => Secret::Value(
                        std::fs::read_to_string(&f)
                            .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", f.display()))?,
                    ),
                    v => v,
                };
                Some(GithubAuth::App {
                    app_id,
                    installation_id,
                    private_key: Some(key),
                })
            }
            // App credentials without the key cannot mint a token: no GitHub at all.
            Some(GithubAuth::App {
                private_key: None, ..
            }) => None,
            other => other,
        };
        Ok(input)
    }

    /// The contract as the variables give it, files not read: the exact inverse of
    /// [`MinionInput::to_env`].
    pub fn parse_env(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<MinionInput> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let run_id = get(var::RUN_ID).ok_or_else(|| {
            anyhow::anyhow!("the minion needs {} in its environment", var::RUN_ID)
        })?;
        let task = if let Some(t) = get(var::TASK) {
            TaskSource::Inline(t)
        } else if let Some(f) = get(var::TASK_FILE) {
            TaskSource::File(PathBuf::from(f))
        } else if let Some(s) = get(var::TASK_S3) {
            TaskSource::S3(s)
        } else {
            anyhow::bail!(
                "the minion needs {}, {} or {} in its environment",
                var::TASK,
                var::TASK_FILE,
                var::TASK_S3
            );
        };
        let repo = if let Some(u) = get(var::REPO_URL) {
            RepoSource::Url(u)
        } else if let Some(b) = get(var::REPO_BUNDLE_S3) {
            RepoSource::BundleS3(b)
        } else {
            RepoSource::Path(PathBuf::from(
                get(var::REPO_PATH).unwrap_or_else(|| default::REPO_PATH.into()),
            ))
        };
        let deadline = get(var::DEADLINE)
            .map(|d| {
                d.parse::<f64>()
                    .ok()
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
                    .and_then(|s| UNIX_EPOCH.checked_add(s))
                    .ok_or_else(|| {
                        anyhow::anyhow!("{} must be a Unix time in seconds", var::DEADLINE)
                    })
            })
            .transpose()?;
        let secret = |value: &str, file: &str| {
            get(value)
                .map(Secret::Value)
                .or_else(|| get(file).map(|f| Secret::File(PathBuf::from(f))))
        };
        let api_key = secret(var::ANTHROPIC_API_KEY, var::ANTHROPIC_API_KEY_FILE);
        let github = if let Some(t) = get(var::GITHUB_TOKEN) {
            Some(GithubAuth::Token(Secret::Value(t)))
        } else if let (Some(app_id), Some(installation_id)) =
            (get(var::GITHUB_APP_ID), get(var::GITHUB_INSTALLATION_ID))
        {
            Some(GithubAuth::App {
                app_id,
                installation_id,
                private_key: secret(
                    var::GITHUB_APP_PRIVATE_KEY,
                    var::GITHUB_APP_PRIVATE_KEY_FILE,
                ),
            })
        } else {
            None
        };
        let pass_env: BTreeMap<String, String> = get(var::PASS_ENV)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty() && passable(n))
            .filter_map(|n| get(n).map(|v| (n.to_string(), v)))
            .collect();
        Ok(MinionInput {
            pass_env,
            can_push: get(var::CAN_PUSH).and_then(|v| crate::config::validate::parse_bool(&v)),
            proxy_socket: get(var::PROXY_SOCKET).map(PathBuf::from),
            proxy_url: get(var::PROXY_URL),
            branch: get(var::BRANCH).unwrap_or_else(|| default::branch(&run_id)),
            branch_exists: truthy(get(var::BRANCH_EXISTS)),
            run_id,
            task,
            repo,
            base_ref: get(var::BASE_REF),
            work_dir: PathBuf::from(get(var::WORK_DIR).unwrap_or_else(|| default::WORK_DIR.into())),
            output_dir: PathBuf::from(
                get(var::OUTPUT_DIR).unwrap_or_else(|| default::OUTPUT_DIR.into()),
            ),
            deadline,
            timeout_secs: get(var::TIMEOUT).and_then(|t| t.parse().ok()),
            model: get(var::MODEL).unwrap_or_else(|| default::MODEL.into()),
            prices: get(var::PRICES),
            blueprint: get(var::BLUEPRINT),
            lint: get(var::LINT),
            test: get(var::TEST),
            stubs: truthy(get(var::STUBS)),
            runtime: match get(var::RUNTIME).as_deref() {
                Some("cloud") => Runtime::Cloud,
                _ => Runtime::Local,
            },
            api_key,
            base_url: get(var::ANTHROPIC_BASE_URL)
                .unwrap_or_else(|| default::ANTHROPIC_BASE_URL.into()),
            github,
            github_repo: get(var::GITHUB_REPO),
            github_api_url: get(var::GITHUB_API_URL)
                .unwrap_or_else(|| default::GITHUB_API_URL.into()),
            github_git_url: get(var::GITHUB_GIT_URL)
                .unwrap_or_else(|| default::GITHUB_GIT_URL.into()),
            pr: truthy(get(var::PR)),
            pr_draft: truthy(get(var::PR_DRAFT)),
            bucket: get(var::ARTIFACT_BUCKET),
            s3_prefix: get(var::S3_PREFIX),
            commit_name: get(var::COMMIT_NAME).unwrap_or_else(|| default::COMMIT_NAME.into()),
            commit_email: get(var::COMMIT_EMAIL).unwrap_or_else(|| default::COMMIT_EMAIL.into()),
            aws_region: get(var::AWS_REGION).or_else(|| get(var::AWS_DEFAULT_REGION)),
            aws_endpoint_url: get(var::AWS_ENDPOINT_URL),
        })
    }

    /// Every secret value the input holds (for redaction).
    pub fn secrets(&self) -> Vec<String> {
        let mut s: Vec<String> = self
            .api_key
            .as_ref()
            .and_then(Secret::value)
            .map(str::to_string)
            .into_iter()
            .collect();
        match &self.github {
            Some(GithubAuth::Token(t)) => s.extend(t.value().map(str::to_string)),
            Some(GithubAuth::App {
                private_key: Some(k),
                ..
            }) => s.extend(
                k.value()
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.len() >= 16 && !l.starts_with("-----"))
                    .map(str::to_string),
            ),
            _ => {}
        }
        s
    }
}

/// A secret as a value variable, or as its file variable when it is a file.
fn put_secret(put: &mut impl FnMut(&str, String), value: &str, file: Option<&str>, s: &Secret) {
    match (s, file) {
        (Secret::Value(v), _) => put(value, v.clone()),
        (Secret::File(f), Some(file)) => put(file, f.display().to_string()),
        // A secret with no file variable is only ever given as a value.
        (Secret::File(_), None) => {}
    }
}

/// The name of the task definition's container that runs the minion.
pub const MINION_CONTAINER: &str = "minion";
/// The name of the credential sidecar's container: the only one ECS injects secrets into.
pub const SIDECAR_CONTAINER: &str = "sidecar";

/// How a cloud run's task definition keeps the credentials from the minion's container
/// (read by the host before a launch, by `doctor`, and by `up` in tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Isolation {
    /// The variables ECS injects into the minion's container (none when isolated).
    pub minion_secrets: Vec<String>,
    /// The variables ECS injects into the sidecar, when the definition has one.
    pub sidecar_secrets: Option<Vec<String>>,
    /// Whether the minion's container starts after the sidecar's (`dependsOn`).
    pub depends_on_sidecar: bool,
}

impl Isolation {
    /// From the containers' names, injected secrets and `dependsOn` names. The minion's
    /// container is the one named `minion`, else the first.
    pub fn of(containers: impl Iterator<Item = (String, Vec<String>, Vec<String>)>) -> Isolation {
        let all: Vec<(String, Vec<String>, Vec<String>)> = containers.collect();
        let minion = all
            .iter()
            .position(|c| c.0 == MINION_CONTAINER)
            .or((!all.is_empty()).then_some(0));
        let sidecar = all
            .iter()
            .position(|c| c.0 == SIDECAR_CONTAINER)
            .filter(|s| Some(*s) != minion);
        let m = minion.map(|i| &all[i]);
        Isolation {
            minion_secrets: m.map(|c| c.1.clone()).unwrap_or_default(),
            sidecar_secrets: sidecar.map(|i| all[i].1.clone()),
            depends_on_sidecar: m.is_some_and(|c| c.2.iter().any(|d| d == SIDECAR_CONTAINER)),
        }
    }

    /// The credential sidecar is there, and the minion's container gets no secret.
    pub fn isolated(&self) -> bool {
        self.sidecar_secrets.is_some() && self.minion_secrets.is_empty()
    }

    /// The secrets ECS injects into the container that holds the run's credentials.
    pub fn injected(&self) -> &[String] {
        match &self.sidecar_secrets {
            Some(s) if self.isolated() => s,
            _ => &self.minion_secrets,
        }
    }
}

/// What the host hands a cloud run's credential sidecar (the task's `sidecar` container,
/// `lackey proxy`): where to listen on the task's shared loopback, the upstreams, and
/// the run's push target. Its secrets (the Anthropic key, the GitHub App key) are
/// injected by ECS into that container alone; the rest comes as the task's overrides for
/// it. The same encoding rules as [`MinionInput`].
#[derive(Clone, Debug, PartialEq)]
pub struct SidecarInput {
    /// `127.0.0.1:PORT`.
    pub listen: String,
    /// A `--stubs` run: the LLM is refused even when a key is injected.
    pub stubs: bool,
    /// Absent here when ECS injects it.
    pub api_key: Option<Secret>,
    pub base_url: String,
    /// App credentials (the key injected by ECS: the sidecar mints the token), or a
    /// token the host minted (a task definition that does not inject the key).
    pub github: Option<GithubAuth>,
    pub github_repo: Option<String>,
    pub github_api_url: String,
    pub github_git_url: String,
    /// The branch the run may push (decided on the host), and whether it may be
    /// fast-forwarded rather than only created.
    pub push_branch: Option<String>,
    pub push_may_update: bool,
    /// The repository's default branch, never pushed.
    pub default_branch: Option<String>,
}

impl SidecarInput {
    pub fn new(listen: &str) -> SidecarInput {
        SidecarInput {
            listen: listen.to_string(),
            stubs: false,
            api_key: None,
            base_url: default::ANTHROPIC_BASE_URL.to_string(),
            github: None,
            github_repo: None,
            github_api_url: default::GITHUB_API_URL.to_string(),
            github_git_url: default::GITHUB_GIT_URL.to_string(),
            push_branch: None,
            push_may_update: false,
            default_branch: None,
        }
    }

    /// The variables, defaults left out (secrets given as values included).
    pub fn to_env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = Vec::new();
        let mut put = |k: &str, v: String| env.push((k.to_string(), v));
        put(var::PROXY_LISTEN, self.listen.clone());
        if self.stubs {
            put(var::STUBS, "1".into());
        }
        if self.base_url != default::ANTHROPIC_BASE_URL {
            put(var::ANTHROPIC_BASE_URL, self.base_url.clone());
        }
        if let Some(r) = &self.github_repo {
            put(var::GITHUB_REPO, r.clone());
        }
        if self.github_api_url != default::GITHUB_API_URL {
            put(var::GITHUB_API_URL, self.github_api_url.clone());
        }
        if self.github_git_url != default::GITHUB_GIT_URL {
            put(var::GITHUB_GIT_URL, self.github_git_url.clone());
        }
        if let Some(b) = &self.push_branch {
            put(var::PUSH_BRANCH, b.clone());
        }
        if self.push_may_update {
            put(var::PUSH_MAY_UPDATE, "1".into());
        }
        if let Some(b) = &self.default_branch {
            put(var::DEFAULT_BRANCH, b.clone());
        }
        match &self.github {
            None => {}
            Some(GithubAuth::Token(t)) => put_secret(&mut put, var::GITHUB_TOKEN, None, t),
            Some(GithubAuth::App {
                app_id,
                installation_id,
                private_key,
            }) => {
                put(var::GITHUB_APP_ID, app_id.clone());
                put(var::GITHUB_INSTALLATION_ID, installation_id.clone());
                if let Some(k) = private_key {
                    put_secret(&mut put, var::GITHUB_APP_PRIVATE_KEY, None, k);
                }
            }
        }
        if let Some(k) = &self.api_key {
            put_secret(&mut put, var::ANTHROPIC_API_KEY, None, k);
        }
        env
    }

    /// Read it back (in the sidecar: the process environment, where ECS put the secrets
    /// too). The inverse of [`SidecarInput::to_env`].
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<SidecarInput> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let listen = get(var::PROXY_LISTEN).ok_or_else(|| {
            anyhow::anyhow!(
                "the credential sidecar needs {} in its environment",
                var::PROXY_LISTEN
            )
        })?;
        let github = if let Some(t) = get(var::GITHUB_TOKEN) {
            Some(GithubAuth::Token(Secret::Value(t)))
        } else if let (Some(app_id), Some(installation_id)) =
            (get(var::GITHUB_APP_ID), get(var::GITHUB_INSTALLATION_ID))
        {
            Some(GithubAuth::App {
                app_id,
                installation_id,
                private_key: get(var::GITHUB_APP_PRIVATE_KEY).map(Secret::Value),
            })
        } else {
            None
        };
        Ok(SidecarInput {
            listen,
            stubs: truthy(get(var::STUBS)),
            api_key: get(var::ANTHROPIC_API_KEY).map(Secret::Value),
            base_url: get(var::ANTHROPIC_BASE_URL)
                .unwrap_or_else(|| default::ANTHROPIC_BASE_URL.into()),
            github,
            github_repo: get(var::GITHUB_REPO),
            github_api_url: get(var::GITHUB_API_URL)
                .unwrap_or_else(|| default::GITHUB_API_URL.into()),
            github_git_url: get(var::GITHUB_GIT_URL)
                .unwrap_or_else(|| default::GITHUB_GIT_URL.into()),
            push_branch: get(var::PUSH_BRANCH),
            push_may_update: truthy(get(var::PUSH_MAY_UPDATE)),
            default_branch: get(var::DEFAULT_BRANCH),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(env: &[(String, String)]) -> MinionInput {
        let map: BTreeMap<String, String> = env.iter().cloned().collect();
        MinionInput::parse_env(|k| map.get(k).cloned()).expect("the contract parses")
    }

    /// An input with every field away from its default.
    fn everything() -> MinionInput {
        let mut i = MinionInput::new("20261124-143015-7f3a", "add a test");
        i.task = TaskSource::S3("s3://b/inputs/x/task.txt".into());
        i.repo = RepoSource::BundleS3("s3://b/inputs/x/source.bundle".into());
        i.base_ref = Some("main".into());
        i.work_dir = "/w".into();
        i.output_dir = "/o".into();
        i.deadline = Some(UNIX_EPOCH + Duration::from_millis(1_780_000_000_500));
        i.timeout_secs = Some(1800);
        i.branch = "lackey/x".into();
        i.branch_exists = true;
        i.model = "claude-opus-4".into();
        i.prices = Some(r#"{"m":{"input":1}}"#.into());
        i.blueprint = Some("lint-only".into());
        i.lint = Some("cargo clippy".into());
        i.test = Some("cargo test".into());
        i.stubs = true;
        i.runtime = Runtime::Cloud;
        i.api_key = Some(Secret::File("/run/secrets/k".into()));
        i.base_url = "http://10.0.0.1:8080".into();
        i.github = Some(GithubAuth::App {
            app_id: "1".into(),
            installation_id: "2".into(),
            private_key: Some(Secret::Value("pem".into())),
        });
        i.github_repo = Some("acme/app".into());
        i.github_api_url = "https://ghe/api/v3".into();
        i.github_git_url = "https://ghe".into();
        i.pr = true;
        i.pr_draft = true;
        i.bucket = Some("b".into());
        i.s3_prefix = Some("x".into());
        i.commit_name = "n".into();
        i.commit_email = "e@x".into();
        i.aws_region = Some("eu-west-1".into());
        i.aws_endpoint_url = Some("http://127.0.0.1:5000".into());
        i.pass_env = [("STAGE".to_string(), "prod".to_string())].into();
        i.can_push = Some(false);
        i.proxy_socket = Some("/run/lackey/proxy.sock".into());
        i.proxy_url = Some("http://127.0.0.1:30001".into());
        i
    }

    #[test]
    fn every_field_survives_the_round_trip_through_the_environment() {
        let all = everything();
        assert_eq!(parse(&all.to_env()), all);
        let defaults = MinionInput::new("20261124-143015-7f3a", "t");
        assert_eq!(parse(&defaults.to_env()), defaults);
        // The other variants of each choice.
        let mut other = all.clone();
        other.task = TaskSource::File("/t.txt".into());
        other.repo = RepoSource::Url("https://github.com/acme/app.git".into());
        other.github = Some(GithubAuth::Token(Secret::Value("ghs_x".into())));
        other.api_key = Some(Secret::Value("sk-ant-x".into()));
        assert_eq!(parse(&other.to_env()), other);
        other.repo = RepoSource::Path("/elsewhere".into());
        other.task = TaskSource::Inline("t".into());
        other.github = Some(GithubAuth::App {
            app_id: "1".into(),
            installation_id: "2".into(),
            private_key: None,
        });
        other.can_push = Some(true);
        assert_eq!(parse(&other.to_env()), other);
    }

    #[test]
    fn defaults_are_not_written_and_every_name_is_one_of_the_contract() {
        let env = MinionInput::new("20261124-143015-7f3a", "t").to_env();
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, [var::RUN_ID, var::TASK]);
    }

    #[test]
    fn secret_files_are_read_and_an_app_without_its_key_means_no_github() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        std::fs::write(&key, "sk-ant-from-file\n").unwrap();
        let mut i = MinionInput::new("20261124-143015-7f3a", "t");
        i.api_key = Some(Secret::File(key));
        i.github = Some(GithubAuth::App {
            app_id: "1".into(),
            installation_id: "2".into(),
            private_key: None,
        });
        let map: BTreeMap<String, String> = i.to_env().into_iter().collect();
        let read = MinionInput::from_env(|k| map.get(k).cloned()).unwrap();
        assert_eq!(read.api_key, Some(Secret::Value("sk-ant-from-file".into())));
        assert_eq!(read.github, None);
        assert_eq!(read.secrets(), vec!["sk-ant-from-file".to_string()]);
        // A missing file is named.
        let mut gone = i.clone();
        gone.api_key = Some(Secret::File(dir.path().join("missing")));
        let map: BTreeMap<String, String> = gone.to_env().into_iter().collect();
        let err = MinionInput::from_env(|k| map.get(k).cloned()).unwrap_err();
        assert!(
            format!("{err}").starts_with("cannot read ANTHROPIC_API_KEY_FILE"),
            "{err}"
        );
    }

    #[test]
    fn debug_shows_no_secret_value() {
        let text = format!("{:?}", everything());
        assert!(!text.contains("pem"), "{text}");
        let mut t = everything();
        t.github = Some(GithubAuth::Token(Secret::Value("ghs_canary".into())));
        t.api_key = Some(Secret::Value("sk-ant-canary".into()));
        let text = format!("{t:?}");
        assert!(!text.contains("canary"), "{text}");
    }

    #[test]
    fn empty_variables_count_as_unset() {
        let env = [
            (var::RUN_ID.to_string(), "r".to_string()),
            (var::TASK.to_string(), "t".to_string()),
            (var::MODEL.to_string(), " ".to_string()),
        ];
        assert_eq!(parse(&env).model, default::MODEL);
    }

    #[test]
    fn the_sidecar_input_survives_the_round_trip_and_debug_hides_its_secrets() {
        let parse = |env: Vec<(String, String)>| {
            let map: BTreeMap<String, String> = env.into_iter().collect();
            SidecarInput::from_env(|k| map.get(k).cloned()).unwrap()
        };
        let plain = SidecarInput::new("127.0.0.1:30001");
        assert_eq!(parse(plain.to_env()), plain);
        let mut all = plain.clone();
        all.stubs = true;
        all.api_key = Some(Secret::Value("sk-ant-canary".into()));
        all.base_url = "http://127.0.0.1:9".into();
        all.github = Some(GithubAuth::App {
            app_id: "1".into(),
            installation_id: "2".into(),
            private_key: Some(Secret::Value("pem-canary".into())),
        });
        all.github_repo = Some("acme/app".into());
        all.github_api_url = "http://127.0.0.1:8/api".into();
        all.github_git_url = "http://127.0.0.1:8".into();
        all.push_branch = Some("minion/r".into());
        all.push_may_update = true;
        all.default_branch = Some("main".into());
        assert_eq!(parse(all.to_env()), all);
        all.github = Some(GithubAuth::Token(Secret::Value("ghs_canary".into())));
        assert_eq!(parse(all.to_env()), all);
        assert!(!format!("{all:?}").contains("canary"));
        let none = SidecarInput::from_env(|_| None).unwrap_err();
        assert!(none.to_string().contains(var::PROXY_LISTEN), "{none}");
    }
}
