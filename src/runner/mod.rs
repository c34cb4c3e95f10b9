//! The host side of a run: what both backends share.
//!
//! * [`RunSpec`]: a run's inputs, resolved from settings once.
//! * The artifact directory `<artifacts_dir>/<run_id>/`, and the summary the host
//!   writes itself when the minion could not (killed before it wrote one).
//! * Bringing the branch back into the user's repository from the run's bundle (the
//!   container never writes to it).
//! * The runs and logs a run directory shows.
//!
//! Where runs execute is behind [`backend::Backend`]: [`docker::Docker`] (local) and
//! [`ecs::Ecs`] (cloud). Nothing here prints: results are values, progress goes through
//! `&dyn Reporter`, and the commands print.

pub mod backend;
pub mod branch;
pub mod docker;
pub mod ecs;

/// The image and the run directory are shared with `cloud` and `stack`: they live at the
/// top of the crate, and keep their old paths here.
pub use crate::image;
pub(crate) use crate::rundir;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use backend::{run_one, Backend, RunEnd, RunEvent, RunHandle, RunOutcome, RunRow};

use crate::config::{keys, validate, Settings};
use crate::error::Fail;
use crate::run_contract::MinionInput;
use crate::summary::{self, Outcome, RunSummary, Runtime};

/// Everything a run needs from the host, resolved once. (Debug leaves the API key out.)
#[derive(Clone)]
pub struct RunSpec {
    pub run_id: String,
    pub task: String,
    /// The local repository (local runs, and cloud runs that ship it as a bundle).
    pub repo: Option<PathBuf>,
    /// OWNER/REPO on GitHub (cloud runs).
    pub github_repo: Option<String>,
    pub image: String,
    pub timeout: Duration,
    pub stubs: bool,
    pub model: String,
    /// The `run.prices` setting (JSON), for the run's cost.
    pub prices: Option<String>,
    pub blueprint: Option<String>,
    pub lint: Option<String>,
    pub test: Option<String>,
    /// The run's branch, decided on the host before launch (`branch.rs`): a new one
    /// named after the run, or the existing one of `push_to`.
    pub branch: String,
    /// The blueprint's branch template it was expanded from, when the blueprint names
    /// one (a fleet expands it again for each run).
    pub branch_template: Option<String>,
    /// `--push-to BRANCH`: an existing branch the run checks out and may fast-forward.
    pub push_to: Option<String>,
    pub pr: bool,
    pub follow: bool,
    pub artifacts_root: PathBuf,
    pub api_key: Option<String>,
    pub base_url: String,
    /// Variables passed through for the blueprint (`[run] env`), with their values.
    pub pass_env: Vec<(String, String)>,
}

impl std::fmt::Debug for RunSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunSpec")
            .field("run_id", &self.run_id)
            .field("repo", &self.repo)
            .field("github_repo", &self.github_repo)
            .field("image", &self.image)
            .field("stubs", &self.stubs)
            .field("api_key", &self.api_key.as_ref().map(|_| "[REDACTED]"))
            .finish_non_exhaustive()
    }
}

impl RunSpec {
    pub fn from_settings(settings: &Settings, task: &str, cloud: bool) -> anyhow::Result<RunSpec> {
        if task.trim().is_empty() {
            return Err(Fail::new("the task is empty")
                .with_hint("say what the minion should do: lackey run \"add a hello world test\"")
                .into());
        }
        let run_id = summary::new_run_id();
        // What a run works on: `run.repo` when it reads OWNER/REPO; a local path when
        // it is one and was set explicitly; else, for cloud runs, `[github] repo`; else
        // the current directory (shipped as a bundle on cloud runs).
        let repo_value = settings.require(&keys::RUN_REPO)?.to_string();
        let explicit = settings
            .resolved(&keys::RUN_REPO)
            .is_some_and(|r| r.source != crate::config::Source::Default);
        let is_github = validate::is_github_repo(&repo_value) && !Path::new(&repo_value).exists();
        let (repo, github_repo) = if is_github {
            if !cloud {
                return Err(Fail::new(format!(
                    "`{repo_value}` is a GitHub repository, but local runs work on a local clone"
                ))
                .with_hint("pass --repo PATH (or LACKEY_REPO=.) for a local run, or add --cloud")
                .into());
            }
            (None, Some(repo_value))
        } else if cloud && !explicit && settings.get(&keys::GITHUB_REPO).is_some() {
            (None, settings.get(&keys::GITHUB_REPO).map(str::to_string))
        } else {
            (Some(resolve_repo(Path::new(&repo_value))?), None)
        };
        let template = settings.require(&keys::RUN_BRANCH_TEMPLATE)?;
        let stubs = settings.flag(&keys::RUN_STUBS);
        let api_key = settings.get(&keys::ANTHROPIC_API_KEY).map(str::to_string);
        if !stubs && !cloud && api_key.is_none() {
            return Err(Fail::new("missing ANTHROPIC_API_KEY")
                .with_hint("set ANTHROPIC_API_KEY in the environment or .env, or pass --stubs for a run without the LLM")
                .into());
        }
        let blueprint = settings
            .get(&keys::RUN_BLUEPRINT)
            .map(|b| blueprint_in_repo(b, repo.as_deref()))
            .transpose()?;
        Ok(RunSpec {
            branch: template.replace("{run_id}", &run_id),
            branch_template: None,
            push_to: None,
            run_id,
            task: task.to_string(),
            repo,
            github_repo,
            image: settings.require(&keys::IMAGE_LOCAL)?.to_string(),
            timeout: Duration::from_secs(settings.number(&keys::RUN_TIMEOUT)?),
            stubs,
            model: settings.require(&keys::RUN_MODEL)?.to_string(),
            prices: settings.get(&keys::RUN_PRICES).map(str::to_string),
            blueprint,
            lint: settings.get(&keys::RUN_LINT).map(str::to_string),
            test: settings.get(&keys::RUN_TEST).map(str::to_string),
            pr: settings.flag(&keys::RUN_PR),
            follow: false,
            artifacts_root: PathBuf::from(settings.require(&keys::LOCAL_ARTIFACTS_DIR)?),
            api_key,
            base_url: settings.require(&keys::ANTHROPIC_BASE_URL)?.to_string(),
            pass_env: Vec::new(),
        })
    }

    /// Take the values of the variables `[run] env` (`LACKEY_PASS_ENV`) names from the
    /// environment or `.env`; a name that is set nowhere is left out (its `env.NAME` is
    /// false). The names were checked when the settings were read: none looks secret. A
    /// value that looks like a credential whatever its name is refused too.
    pub fn with_pass_env(
        mut self,
        settings: &Settings,
        env: &crate::config::EnvVars,
    ) -> anyhow::Result<RunSpec> {
        self.pass_env = settings
            .get(&keys::RUN_ENV)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty() && !crate::run_contract::secret_looking(n))
            .filter_map(|n| env.value(n).map(|v| (n.to_string(), v.to_string())))
            .collect();
        if let Some((name, why)) = self
            .pass_env
            .iter()
            .find_map(|(n, v)| crate::run_contract::credential_value(v).map(|why| (n, why)))
        {
            return Err(Fail::new(format!(
                "the value of `{name}` looks like a credential ({why}), and secrets are never passed to a run"
            ))
            .with_hint(format!(
                "remove `{name}` from [run] env / LACKEY_PASS_ENV, or give the run a value without the credential"
            ))
            .into());
        }
        Ok(self)
    }

    pub fn artifacts_dir(&self) -> PathBuf {
        self.artifacts_root.join(&self.run_id)
    }

    /// The part of the minion's input every backend shares (the run contract,
    /// `crate::run_contract`); each backend adds where the repository, the secrets and
    /// the artifacts are.
    pub fn minion_input(&self, runtime: Runtime, deadline: std::time::SystemTime) -> MinionInput {
        let mut input = MinionInput::new(&self.run_id, &self.task);
        input.branch = self.branch.clone();
        input.branch_exists = self.push_to.is_some();
        input.model = self.model.clone();
        input.deadline = Some(deadline);
        input.timeout_secs = Some(self.timeout.as_secs());
        input.runtime = runtime;
        input.stubs = self.stubs;
        input.blueprint = self.blueprint.clone();
        input.lint = self.lint.clone();
        input.test = self.test.clone();
        input.prices = self.prices.clone();
        input.pr = self.pr;
        input.pass_env = self.pass_env.iter().cloned().collect();
        input.base_url = self.base_url.clone();
        // A local run never pushes (its branch comes back through a bundle).
        if runtime == Runtime::Local {
            input.can_push = Some(false);
        }
        input
    }
}

/// A blueprint given as an absolute path is read from the minion's clone: it must be
/// inside the repository, and is passed on relative to its top.
fn blueprint_in_repo(value: &str, repo: Option<&Path>) -> anyhow::Result<String> {
    let p = Path::new(value);
    if !p.is_absolute() {
        return Ok(value.to_string());
    }
    let inside = repo.and_then(|r| {
        let r = r.canonicalize().unwrap_or_else(|_| r.to_path_buf());
        let p = p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        p.strip_prefix(&r).ok().map(|rel| rel.display().to_string())
    });
    inside.ok_or_else(|| {
        Fail::new(format!(
            "blueprint `{value}` is outside the repository the run works on"
        ))
        .with_hint("the minion reads blueprints from its clone of the repository: commit the file there (e.g. .lackey/blueprints/) and name it, or give its path relative to the repository")
        .into()
    })
}

/// The top of the git work tree containing `path`, which must have a commit.
pub fn resolve_repo(path: &Path) -> anyhow::Result<PathBuf> {
    let shown = path.display();
    if !path.exists() {
        return Err(
            Fail::new(format!("repository path `{shown}` does not exist"))
                .with_hint("pass --repo PATH (or set LACKEY_REPO) to a git repository")
                .into(),
        );
    }
    if !path.is_dir() {
        return Err(Fail::new(format!(
            "repository path `{shown}` is a file, not a directory"
        ))
        .with_hint("pass --repo (or set LACKEY_REPO to) the directory of a git repository")
        .into());
    }
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--show-toplevel"])
        .current_dir(path)
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                Fail::new(format!("cannot run git: {e}")).with_hint("install git")
            }
            _ => Fail::new(format!("cannot run git in `{shown}`: {e}"))
                .with_hint("check that the directory exists and that you may enter it"),
        })?;
    if !out.status.success() {
        return Err(Fail::new(format!("`{shown}` is not a git repository"))
            .with_hint("run lackey inside a git repository, or pass --repo PATH (git init && git commit first)")
            .into());
    }
    let top = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--verify", "--quiet", "HEAD"])
        .current_dir(&top)
        .output()?;
    if !head.status.success() {
        return Err(Fail::new(format!(
            "the repository `{}` has no commit yet",
            top.display()
        ))
        .with_hint("commit something first: the minion works from the checked-out commit")
        .into());
    }
    Ok(top)
}

/// Whether the repository has uncommitted changes (they are not part of a run).
pub fn is_dirty(repo: &Path) -> bool {
    std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .current_dir(repo)
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false)
}

/// Create the run's artifact directory, exclusively: two runs started in the same
/// millisecond that drew the same id get different ids.
pub fn create_artifacts_dir(spec: &mut RunSpec) -> anyhow::Result<PathBuf> {
    let fail = |dir: &Path, e: std::io::Error| -> anyhow::Error {
        Fail::new(format!(
            "cannot create the artifact directory `{}`: {e}",
            dir.display()
        ))
        .with_hint("set [local] artifacts_dir (or LACKEY_ARTIFACTS_DIR) to a writable directory")
        .into()
    };
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        // Made private when it is made: a run's folder holds its repository's bundle.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&spec.artifacts_root)
            .map_err(|e| fail(&spec.artifacts_root, e))?;
        // A root another user made (the default is in /tmp) or may write in could read
        // every run, or swap a finished run's folder for one of its own before the host
        // reads it.
        let m =
            std::fs::metadata(&spec.artifacts_root).map_err(|e| fail(&spec.artifacts_root, e))?;
        let me = unsafe { libc::getuid() };
        if m.uid() != me || m.mode() & 0o022 != 0 {
            return Err(Fail::new(format!(
                "the artifact directory `{}` {}",
                spec.artifacts_root.display(),
                if m.uid() != me {
                    format!("belongs to another user (uid {})", m.uid())
                } else {
                    "may be written by other users".to_string()
                }
            ))
            .with_hint("set [local] artifacts_dir (or LACKEY_ARTIFACTS_DIR) to a folder only you can write, or `chmod go-w` it")
            .into());
        }
    }
    for _ in 0..20 {
        let dir = spec.artifacts_dir();
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let id = summary::new_run_id();
                if spec.push_to.is_none() {
                    spec.branch = spec.branch.replace(&spec.run_id, &id);
                }
                spec.run_id = id;
            }
            Err(e) => return Err(fail(&dir, e)),
        }
    }
    Err(anyhow::anyhow!("could not find a free run id"))
}

/// Removes a run's artifact directory if the run never started (an error before the
/// container or task was launched), so nothing half-created is left behind.
pub struct RunDirGuard {
    path: Option<PathBuf>,
}

impl RunDirGuard {
    pub fn new(path: &Path) -> RunDirGuard {
        RunDirGuard {
            path: Some(path.to_path_buf()),
        }
    }

    /// The run started: its directory stays, whatever happens next.
    pub fn keep(mut self) {
        self.path = None;
    }
}

impl Drop for RunDirGuard {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// How the host saw a run end, for the summary it writes when the minion could not.
#[derive(Debug, Clone)]
pub enum HostEnd {
    Exited(i64),
    TimedOut,
    Interrupted,
    Failed(String),
}

/// Add the credential proxy's refusals to the end of the run's `minion.log` (after the
/// container is gone: read no-follow and size-capped, written by replacing the file).
pub fn append_to_log(dir: &Path, lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    let Ok(rd) = rundir::RunDir::open(dir) else {
        return;
    };
    let (mut log, _) = rd
        .read_capped("minion.log", rundir::MAX_ARTIFACT_BYTES)
        .unwrap_or_default();
    if !log.is_empty() && !log.ends_with(b"\n") {
        log.push(b'\n');
    }
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for l in lines {
        log.extend_from_slice(format!("{now} {l}\n").as_bytes());
    }
    if let Err(e) = rd.replace("minion.log", &log) {
        tracing::warn!("cannot add the proxy's refusals to minion.log: {e}");
    }
}

/// The run's summary: the minion's, or one the host writes when there is none. Missing
/// artifacts are created empty so every run leaves the same set.
pub fn settle_summary(
    spec: &RunSpec,
    runtime: Runtime,
    end: &HostEnd,
    started: chrono::DateTime<chrono::Utc>,
    container_log: Option<&str>,
) -> RunSummary {
    // The directory is the container's to write: every access below is no-follow and
    // relative to one handle on it (crate::rundir).
    let dir = rundir::RunDir::open(&spec.artifacts_dir()).ok();
    let mut changed = false;
    let mut summary = match dir
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("the run directory is gone"))
        .and_then(read_summary)
    {
        Ok(s) => s,
        Err(_) => {
            changed = true;
            let finished = chrono::Utc::now();
            let error = match end {
                HostEnd::TimedOut => summary::timed_out(spec.timeout.as_secs()),
                HostEnd::Interrupted => {
                    "stopped: the run was interrupted before it finished".to_string()
                }
                // 128 + SIGTERM / SIGKILL: stopped before the minion could say so itself.
                HostEnd::Exited(143) => {
                    "stopped: the run was stopped (SIGTERM) before the minion had started"
                        .to_string()
                }
                HostEnd::Exited(137) => {
                    "stopped: the run was killed (SIGKILL) before it wrote its summary".to_string()
                }
                HostEnd::Exited(code) => {
                    format!("the minion exited with code {code} without writing run_summary.json")
                }
                HostEnd::Failed(msg) => msg.clone(),
            };
            RunSummary {
                run_id: spec.run_id.clone(),
                task: spec.task.clone(),
                outcome: Outcome::Error,
                runtime,
                branch: spec.branch.clone(),
                base_sha: None,
                head_sha: None,
                started_at: started.to_rfc3339(),
                finished_at: finished.to_rfc3339(),
                duration_s: (finished - started).num_milliseconds() as f64 / 1000.0,
                steps: vec![],
                usage: Default::default(),
                pr_url: None,
                s3_prefix: None,
                error: Some(error),
            }
        }
    };
    // The summary is the container's to write, the exit code is not: the minion exits 0
    // exactly when its outcome is success, so a "success" from a minion that did not
    // exit 0 was written by something else in the container (or the minion died before
    // it finished), and is not believed.
    if summary.outcome == Outcome::Success {
        let distrust = match end {
            HostEnd::Exited(0) | HostEnd::TimedOut | HostEnd::Interrupted => None,
            HostEnd::Exited(code) => Some(format!(
                "run_summary.json says success but the minion exited with code {code}: not believed"
            )),
            HostEnd::Failed(msg) => Some(format!(
                "run_summary.json says success but the run failed ({msg}): not believed"
            )),
        };
        if let Some(error) = distrust {
            summary.outcome = Outcome::Error;
            summary.error = Some(error);
            changed = true;
        }
    }
    // A run the host had to stop for its timeout is an error whatever it had reached,
    // and its error says so first.
    if matches!(end, HostEnd::TimedOut) {
        let timed_out = summary::timed_out(spec.timeout.as_secs());
        let already = summary.outcome == Outcome::Error
            && summary
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with("timed out"));
        if !already {
            summary.error = Some(match summary.error.take() {
                Some(e) => format!("{timed_out}; {e}"),
                None => timed_out,
            });
            summary.outcome = Outcome::Error;
            changed = true;
        }
    }
    let Some(dir) = dir else {
        return summary;
    };
    if let Some(log) = container_log {
        // Only an empty regular file is filled in; anything else (a link, a FIFO) is
        // replaced rather than written through.
        let empty = dir
            .read_capped("minion.log", 1)
            .map(|(b, _)| b.is_empty())
            .unwrap_or(true);
        if empty && !log.is_empty() {
            let _ = dir.replace("minion.log", log.as_bytes());
        }
    }
    if changed {
        if let Ok(text) = serde_json::to_string_pretty(&summary) {
            let _ = dir.replace("run_summary.json", (text + "\n").as_bytes());
        }
    }
    for name in summary::ARTIFACTS {
        let _ = dir.fill(
            name,
            if *name == "scope.json" {
                &b"{}\n"[..]
            } else {
                b""
            },
        );
    }
    summary
}

/// `run_summary.json` from a run directory: no-follow, a regular file, size-capped.
pub fn read_summary(dir: &rundir::RunDir) -> anyhow::Result<RunSummary> {
    let bytes = dir
        .read("run_summary.json", rundir::MAX_SUMMARY_BYTES)
        .map_err(|e| anyhow::anyhow!("cannot read `run_summary.json`: {e}"))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| anyhow::anyhow!("`run_summary.json` is not a run summary: {e}"))
}

/// Bring the run's branch into the user's repository from `repo.bundle`. Without a
/// bundle the run made no commit, and no branch is created. Only the branch the host
/// decided before launch (`spec.branch`) comes back: a new one, or with `--push-to` the
/// existing one, fast-forwarded (git refuses anything else).
pub fn fetch_back(
    repo: &Path,
    artifacts: &Path,
    summary: &RunSummary,
    spec: &RunSpec,
    end: &HostEnd,
) -> anyhow::Result<bool> {
    let branch = &summary.branch;
    // The bundle comes from the container's directory: git reads a private copy made
    // through a no-follow, size-capped read, never the name the container controls.
    let dir = rundir::RunDir::open(artifacts)
        .map_err(|e| anyhow::anyhow!("cannot open `{}`: {e}", artifacts.display()))?;
    let copy = match dir.entry("repo.bundle")? {
        rundir::Entry::Missing => None,
        _ => Some(copy_bundle(&dir).map_err(|e| {
            Fail::new(format!("the run's bundle `{}/repo.bundle` was not fetched: {e}", artifacts.display()))
                .with_hint("the run directory holds something other than the minion's bundle; inspect it by hand")
        })?),
    };
    let bundle = copy
        .as_ref()
        .map(|c| c.path().to_path_buf())
        .unwrap_or_default();
    let shown = artifacts.join("repo.bundle");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(["-c", "gc.auto=0", "-c", "maintenance.auto=false"])
            .args(args)
            .current_dir(repo)
            .output()
    };
    if copy.is_some() {
        // The minion removes any bundle it did not make before it makes its own, and
        // exits by itself (0 or 1) once that and its summary are written. A minion that
        // was killed or stopped leaves a directory whose bundle anything in the
        // container may have planted.
        if !matches!(end, HostEnd::Exited(0 | 1)) {
            return Err(Fail::new(format!(
                "the run's bundle `{}` was not fetched: the minion did not finish by itself, so nothing it left is trusted",
                shown.display()
            ))
            .with_hint(format!("inspect it by hand: git fetch {} {branch}", shown.display()))
            .into());
        }
        // The branch name comes from a file the container wrote: accept only the branch
        // the host decided, well-formed; a new one must be named after the run and not
        // exist yet, so a run can never move one of the user's own branches unless the
        // user named it with --push-to (and then only forward).
        let exists = git(&[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/heads/{branch}"),
        ])
        .is_ok_and(|o| o.status.success());
        let valid = branch == &spec.branch
            && summary.run_id == spec.run_id
            && git(&["check-ref-format", "--branch", branch]).is_ok_and(|o| o.status.success())
            && if spec.push_to.is_some() {
                exists
            } else {
                branch.contains(&summary.run_id) && !exists
            };
        if !valid {
            return Err(Fail::new(format!(
                "the run's branch `{branch}` was not fetched: it must be {}",
                if spec.push_to.is_some() {
                    format!("`{}`, the existing branch named by --push-to", spec.branch)
                } else {
                    format!(
                        "`{}`, the new branch decided for run {}",
                        spec.branch, spec.run_id
                    )
                }
            ))
            .with_hint(format!(
                "inspect it by hand: git fetch {} {branch}",
                shown.display()
            ))
            .into());
        }
        // The bundle's tip must be the commit the minion reported as its last.
        let heads = git(&[
            "bundle",
            "list-heads",
            &bundle.display().to_string(),
            &format!("refs/heads/{branch}"),
        ])?;
        let listed = String::from_utf8_lossy(&heads.stdout);
        let tip = listed.split_whitespace().next().unwrap_or_default();
        if tip.is_empty() || summary.head_sha.as_deref() != Some(tip) {
            return Err(Fail::new(format!(
                "the run's branch `{branch}` was not fetched: the bundle's tip `{}` is not the run's last commit `{}`",
                if tip.is_empty() { "(none)" } else { tip },
                summary.head_sha.as_deref().unwrap_or("(none)")
            ))
            .with_hint(format!("inspect it by hand: git fetch {} {branch}", shown.display()))
            .into());
        }
        let refspec = format!("refs/heads/{branch}:refs/heads/{branch}");
        let mut last = String::new();
        // Parallel runs fetch into one repository: retry on a busy lock.
        for attempt in 0..10 {
            let out = git(&[
                "fetch",
                "--quiet",
                "--no-write-fetch-head",
                &bundle.display().to_string(),
                &refspec,
            ])?;
            if out.status.success() {
                return Ok(true);
            }
            last = String::from_utf8_lossy(&out.stderr).trim().to_string();
            if !last.contains(".lock") {
                break;
            }
            std::thread::sleep(Duration::from_millis(100 * (attempt + 1)));
        }
        return Err(Fail::new(format!(
            "could not fetch `{branch}` into `{}`: {last}",
            repo.display()
        ))
        .with_hint(format!(
            "fetch it by hand: git fetch {} {refspec}",
            shown.display()
        ))
        .into());
    }
    Ok(false)
}

/// A private copy of the run's `repo.bundle` (a regular file, at most
/// [`rundir::MAX_BUNDLE_BYTES`]), in a file only this user can read.
fn copy_bundle(dir: &rundir::RunDir) -> std::io::Result<tempfile::NamedTempFile> {
    use std::io::{Read, Write};
    let file = dir.open_file("repo.bundle")?;
    let mut out = tempfile::Builder::new()
        .prefix("lackey-bundle-")
        .suffix(".bundle")
        .tempfile()?;
    let n = std::io::copy(
        &mut file.take(rundir::MAX_BUNDLE_BYTES + 1),
        out.as_file_mut(),
    )?;
    if n > rundir::MAX_BUNDLE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("it is larger than {} bytes", rundir::MAX_BUNDLE_BYTES),
        ));
    }
    out.as_file_mut().flush()?;
    Ok(out)
}

/// Runs with an artifact directory under `root`. A cloud run writes `.ecs-task` into
/// its directory at launch, so one still going (or whose CLI died) shows as cloud.
pub fn local_rows(root: &Path) -> Vec<RunRow> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return vec![];
    };
    entries
        .flatten()
        .filter_map(|e| {
            let id = e.file_name().to_string_lossy().to_string();
            if !summary::is_run_id(&id) {
                return None;
            }
            // A run's directory may have been the container's to write: no-follow,
            // regular files only, size-capped (crate::rundir).
            let dir = rundir::RunDir::open(&e.path()).ok()?;
            let s = read_summary(&dir).ok();
            let cloud = dir.entry(".ecs-task").ok() == Some(rundir::Entry::File);
            let runtime = match (s.as_ref().map(|s| s.runtime), cloud) {
                (Some(Runtime::Cloud), _) | (None, true) => Runtime::Cloud,
                _ => Runtime::Local,
            };
            Some(RunRow::new(
                &id,
                runtime,
                s.as_ref(),
                format!("{}/", e.path().display()),
            ))
        })
        .collect()
}

/// A run's `minion.log` from its directory: no-follow, a regular file only, size-capped
/// (a planted link never prints a host file). None when there is none; the flag says
/// the log was longer than the cap.
pub fn read_log(dir: &Path) -> anyhow::Result<Option<(String, bool)>> {
    let Ok(run_dir) = rundir::RunDir::open(dir) else {
        return Ok(None);
    };
    if run_dir.entry("minion.log")? == rundir::Entry::Missing {
        return Ok(None);
    }
    let (bytes, more) = run_dir
        .read_capped("minion.log", rundir::MAX_ARTIFACT_BYTES)
        .map_err(|e| {
            Fail::new(format!("cannot read `{}/minion.log`: {e}", dir.display())).with_hint(
                "the run directory holds something other than the minion's log; inspect it by hand",
            )
        })?;
    Ok(Some((String::from_utf8_lossy(&bytes).into_owned(), more)))
}

/// The exit code of a finished run: 0 only on success, 130 when interrupted, else 1.
pub fn exit_code(summary: &RunSummary, interrupted: bool) -> u8 {
    if interrupted {
        130
    } else if summary.outcome == Outcome::Success {
        0
    } else {
        1
    }
}
