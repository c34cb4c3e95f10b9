//! Local runs in Docker (bollard).
//!
//! What must stay true:
//! * The container is hardened: read-only root filesystem, tmpfs for `/work` and
//!   `/tmp`, every capability dropped, no-new-privileges, a non-root user, cpu, memory
//!   and pids limits. The repository goes in as a bundle of its commits (made by the
//!   host into the run's read-only directory), never as the work tree: an uncommitted
//!   `.env` or a token in `.git/config` stays on the host. Only `/output` (the run's
//!   artifact directory) is writable on the host.
//! * No secret enters the container: not in its environment, not in a file, not in git
//!   config. The credential proxy (`crate::proxy`) runs in this process, holds the
//!   API key and adds it to the LLM requests it lets through; the container reaches it
//!   on a Unix socket mounted at `/run/lackey/proxy.sock`. A `--stubs` run's proxy has
//!   no key at all.
//! * With `[run] network = "proxy-only"` (the default) the container has no network
//!   interface but its own loopback (`--network none`): the proxy's socket is its only
//!   way out. `open` puts it on Docker's default bridge as well (docs/sandbox-network.md).
//! * No run leaves a container behind: timeout, Ctrl-C, errors, all remove it.
//! * The run stops at its timeout (the minion stops itself just before; the container
//!   is stopped if it has not), keeping the partial artifacts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker as Engine;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::backend::{
    channel_stream, Backend, LogSink, RunEnd, RunEvent, RunHandle, RunOutcome, RunRow,
};
use super::image::{docker_error, image_exists};
use super::{HostEnd, RunSpec};
use crate::error::Fail;
use crate::output::{Reporter, Tone};
use crate::proxy::{LlmUpstream, Proxy, ProxyConfig, CONTAINER_SOCKET};
use crate::run_contract::RepoSource;
use crate::summary::Runtime;

pub const LABEL_RUN_ID: &str = "lackey.run-id";
pub const LABEL_MANAGED: &str = "lackey.managed";
pub const LABEL_ARTIFACTS: &str = "lackey.artifacts";

/// The repository's bundle, in the run's read-only host directory.
const SOURCE_BUNDLE: &str = "source.bundle";
/// Where the container sees its work tree (a tmpfs), the run directory and the run's
/// read-only host directory (the credential proxy's socket and the source bundle).
const WORK_MOUNT: &str = "/work";
const OUTPUT_MOUNT: &str = "/output";
const PROXY_MOUNT: &str = "/run/lackey";

/// Connect to the Docker daemon (DOCKER_HOST or the local socket) and agree on an API
/// version, so older engines work too.
pub async fn connect() -> anyhow::Result<Engine> {
    let where_ =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let fail = |e: String| -> anyhow::Error {
        Fail::new(format!("cannot reach the Docker daemon at {where_}: {e}"))
            .with_hint("start Docker, or point DOCKER_HOST at a running daemon")
            .into()
    };
    let docker = Engine::connect_with_defaults().map_err(|e| fail(e.to_string()))?;
    let docker = tokio::time::timeout(Duration::from_secs(10), docker.negotiate_version())
        .await
        .map_err(|_| fail("no answer within 10 s".into()))?
        .map_err(|e| fail(e.to_string()))?;
    tokio::time::timeout(Duration::from_secs(10), docker.ping())
        .await
        .map_err(|_| fail("no answer within 10 s".into()))?
        .map_err(|e| fail(e.to_string()))?;
    Ok(docker)
}

pub fn container_name(run_id: &str) -> String {
    format!("lackey-{run_id}")
}

/// Container limits for local runs.
#[derive(Clone, Debug)]
pub struct Limits {
    pub cpus: f64,
    pub memory_mb: i64,
    pub pids: i64,
    pub network: Network,
    /// Disk the run may fill in its artifacts directory (`/output`), in bytes.
    pub output_bytes: u64,
}

/// What a local run's container may reach besides the credential proxy (`[run] network`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    /// No network interface but loopback; the proxy's socket is the only way out.
    ProxyOnly,
    /// Docker's default bridge as well: general egress (and with it the host's
    /// services and the metadata address, which Docker does not block).
    Open,
}

impl Network {
    pub fn parse(s: &str) -> Network {
        if s == "open" {
            Network::Open
        } else {
            Network::ProxyOnly
        }
    }
}

impl Limits {
    /// The `[local]` limits, parsed once.
    pub fn from_settings(settings: &crate::config::Settings) -> anyhow::Result<Limits> {
        use crate::config::keys;
        Ok(Limits {
            cpus: settings.number(&keys::LOCAL_CPUS)?,
            memory_mb: settings.number(&keys::LOCAL_MEMORY_MB)?,
            pids: settings.number(&keys::LOCAL_PIDS_LIMIT)?,
            network: Network::parse(settings.require(&keys::RUN_NETWORK)?),
            output_bytes: settings.number::<u64>(&keys::LOCAL_OUTPUT_LIMIT_MB)? * 1024 * 1024,
        })
    }
}

/// The uid:gid the container runs as: the invoking user's, so artifacts are theirs;
/// 1000:1000 when lackey runs as root (never root in the container).
fn container_user() -> (u32, u32) {
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    if uid == 0 {
        (1000, 1000)
    } else {
        (uid, gid)
    }
}

/// A private directory for one run's proxy socket, mounted read-only at `/run/lackey`;
/// removed on drop.
struct ProxyDir {
    dir: PathBuf,
}

/// The proxy directories of the runs in flight, so a forced exit (a second Ctrl-C)
/// can still remove them.
static LIVE_DIRS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Remove every proxy directory of this process's runs (called before a forced exit).
pub fn remove_live_secrets() {
    let dirs = std::mem::take(&mut *LIVE_DIRS.lock().unwrap_or_else(|e| e.into_inner()));
    for d in dirs {
        let _ = std::fs::remove_dir_all(d);
    }
}

const DIR_PREFIX: &str = "lackey-proxy-";

/// Remove proxy directories left by runs that were killed outright (their container
/// is gone). Only this user's, only lackey's. (`lackey-secrets-` ones are from versions
/// that mounted the key as a file.)
async fn sweep_stale_dirs(docker: &Engine) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    let me = unsafe { libc::getuid() };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(id) = name
            .strip_prefix(DIR_PREFIX)
            .or_else(|| name.strip_prefix("lackey-secrets-"))
        else {
            continue;
        };
        use std::os::unix::fs::MetadataExt;
        if e.metadata().map(|m| m.uid() != me).unwrap_or(true) {
            continue;
        }
        // A run starting right now has its directory before its container: leave
        // young directories alone.
        let young = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age < Duration::from_secs(120));
        if young {
            continue;
        }
        if docker
            .inspect_container(
                &container_name(id),
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .is_err()
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl ProxyDir {
    /// `lackey-proxy-<run id>` in the temporary directory: 0700, owned by the
    /// container's user (so only it, and root, may enter it and reach the socket).
    fn create(run_id: &str, owner: (u32, u32)) -> anyhow::Result<ProxyDir> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{run_id}"));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        LIVE_DIRS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(dir.clone());
        let d = ProxyDir { dir };
        if unsafe { libc::getuid() } == 0 {
            std::os::unix::fs::chown(&d.dir, Some(owner.0), Some(owner.1))?;
        }
        Ok(d)
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("proxy.sock")
    }

    /// Hand the socket to the container's user (the proxy runs as whoever runs lackey).
    fn own_socket(&self, owner: (u32, u32)) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(self.socket(), std::fs::Permissions::from_mode(0o600))?;
        if unsafe { libc::getuid() } == 0 {
            std::os::unix::fs::chown(self.socket(), Some(owner.0), Some(owner.1))?;
        }
        Ok(())
    }
}

impl Drop for ProxyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        LIVE_DIRS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|d| d != &self.dir);
    }
}

/// Remove a run's container, whatever state it is in.
pub async fn remove(docker: &Engine, name: &str) {
    let _ = docker
        .remove_container(
            name,
            Some(
                RemoveContainerOptionsBuilder::default()
                    .force(true)
                    .v(true)
                    .build(),
            ),
        )
        .await;
}

/// The most of the container's output the host reads back, and keeps on disk while the
/// container lives (Docker's log of it, rotated): anything in the container can write
/// to the minion's stdout, as much as it likes.
const OUTPUT_READ_LIMIT: usize = 1024 * 1024;
const OUTPUT_LOG_MAX_SIZE: &str = "8m";
const OUTPUT_LOG_MAX_FILES: &str = "2";

/// The end of the run's container output (stdout and stderr, its last 1,000 lines, at
/// most [`OUTPUT_READ_LIMIT`] bytes), for when the minion wrote no log.
async fn container_output(docker: &Engine, name: &str) -> String {
    let mut out: Vec<u8> = Vec::new();
    let mut logs = docker.logs(
        name,
        Some(
            LogsOptionsBuilder::default()
                .stdout(true)
                .stderr(true)
                .tail("1000")
                .build(),
        ),
    );
    // At most 1,000 lines of at most 16 KiB each (Docker splits longer ones): the last
    // OUTPUT_READ_LIMIT bytes of them are kept.
    while let Some(Ok(chunk)) = logs.next().await {
        out.extend_from_slice(&chunk.into_bytes());
        if out.len() > 2 * OUTPUT_READ_LIMIT {
            out.drain(..out.len() - OUTPUT_READ_LIMIT);
        }
    }
    if out.len() > OUTPUT_READ_LIMIT {
        out.drain(..out.len() - OUTPUT_READ_LIMIT);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The local Docker backend: one hardened container per run.
pub struct Docker {
    engine: Engine,
    /// The container limits of the runs it launches (absent on a backend opened to
    /// look runs up).
    limits: Option<Limits>,
}

/// What the backend holds of a running container; dropping it removes the container,
/// stops the run's proxy and removes its socket directory.
struct LocalRun {
    repo: PathBuf,
    guard: ContainerGuard,
    proxy: Proxy,
    proxy_dir: ProxyDir,
    spinner: Option<Box<dyn crate::output::Progress>>,
}

impl Docker {
    /// A backend on the local engine that launches runs with `limits`.
    pub async fn connect(limits: Limits) -> anyhow::Result<Docker> {
        Ok(Docker {
            engine: connect().await?,
            limits: Some(limits),
        })
    }

    /// A backend that finds, lists, tails and stops runs, but launches none.
    pub async fn lookup() -> anyhow::Result<Docker> {
        Ok(Docker {
            engine: connect().await?,
            limits: None,
        })
    }

    /// Launch phase 1: what must hold before anything is created: the image is here.
    /// (The repository need not be readable by the container's user: it goes in as a
    /// bundle the host makes.)
    async fn preflight(&self, spec: &RunSpec, reporter: &dyn Reporter) -> anyhow::Result<PathBuf> {
        let repo = spec
            .repo
            .clone()
            .ok_or_else(|| anyhow::anyhow!("a local run needs a local repository"))?;
        sweep_stale_dirs(&self.engine).await;
        if !image_exists(&self.engine, &spec.image).await? {
            return Err(Fail::new(format!("image `{}` not found in the local Docker", spec.image))
                .with_hint("build it with `make build-base` (or `lackey image build`; `--offline` where nothing can be pulled), or pass --image")
                .into());
        }
        if super::is_dirty(&repo) {
            reporter.warn(
                "the repository has uncommitted changes; the run starts from the last commit",
            );
        }
        Ok(repo)
    }

    /// Launch phase 2: the container's mounts, the run's credential proxy and the
    /// environment (which holds no secret).
    async fn prepare(
        &self,
        spec: &RunSpec,
        repo: &Path,
        dir: &Path,
        deadline: SystemTime,
    ) -> anyhow::Result<Prepared> {
        let user = container_user();
        let mut input = spec.minion_input(Runtime::Local, deadline);
        input.work_dir = WORK_MOUNT.into();
        input.output_dir = OUTPUT_MOUNT.into();
        let mut binds = vec![format!("{}:{OUTPUT_MOUNT}:rw", dir.display())];
        // The run's host-made directory, mounted read-only: the proxy's socket and the
        // repository's source.
        let proxy_dir = ProxyDir::create(&spec.run_id, user)?;
        // The repository goes in as a bundle of its commits (the checked-out branch and
        // any --push-to branch), never as the work tree: what is not committed (a `.env`
        // holding a key, `.git/config` with a CI token) stays on the host.
        let branch = super::ecs::checked_out_branch(repo)?;
        input.repo = RepoSource::Path(format!("{PROXY_MOUNT}/{SOURCE_BUNDLE}").into());
        if branch != "HEAD" && !branch.is_empty() {
            input.base_ref = Some(branch);
        }
        // The credential proxy: the container's only way to the LLM, holding the key it
        // never sees. A stub run's proxy holds nothing and refuses everything.
        let proxy = Proxy::serve_unix(
            &proxy_dir.socket(),
            ProxyConfig {
                llm: match (&spec.api_key, spec.stubs) {
                    (Some(key), false) => Some(LlmUpstream {
                        base_url: spec.base_url.clone(),
                        api_key: key.clone(),
                    }),
                    _ => None,
                },
                github: None,
            },
        )?;
        proxy_dir.own_socket(user)?;
        binds.push(format!("{}:{PROXY_MOUNT}:ro", proxy_dir.dir.display()));
        input.api_key = None;
        input.base_url = crate::run_contract::default::ANTHROPIC_BASE_URL.into();
        input.proxy_socket = Some(CONTAINER_SOCKET.into());
        let mut env = input.to_env();
        // The root filesystem is read-only; /tmp is a tmpfs.
        env.push(("HOME".into(), "/tmp".into()));
        // Last, so nothing after it can fail: the bundle is made while the container
        // starts (the minion waits for it), written under another name, then renamed
        // into place whole.
        let bundling = {
            let (repo, dir, push_to) = (
                repo.to_path_buf(),
                proxy_dir.dir.clone(),
                spec.push_to.clone(),
            );
            tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                let part = dir.join(format!("{SOURCE_BUNDLE}.part"));
                super::ecs::bundle_repo(&repo, &part, push_to.as_deref())?;
                // Readable by the container's user whatever the umask. The directory is
                // that user's: the mode is set on the file git wrote, opened without
                // following a link, never on whatever a path names by now.
                use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
                std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&part)?
                    .set_permissions(std::fs::Permissions::from_mode(0o644))?;
                std::fs::rename(&part, dir.join(SOURCE_BUNDLE))?;
                Ok(())
            })
        };
        Ok(Prepared {
            env,
            binds,
            proxy,
            proxy_dir,
            bundling,
        })
    }

    /// Launch phase 3: create and start the hardened container. The guard removes it
    /// on any error after its creation.
    async fn start(
        &self,
        spec: &RunSpec,
        dir: &Path,
        prepared: &Prepared,
    ) -> anyhow::Result<ContainerGuard> {
        let limits = self.limits.as_ref().ok_or_else(|| {
            anyhow::anyhow!("this Docker backend was opened to look runs up, not to launch them")
        })?;
        let user = container_user();
        let name = container_name(&spec.run_id);
        let labels: HashMap<String, String> = [
            (LABEL_RUN_ID.to_string(), spec.run_id.clone()),
            (LABEL_MANAGED.to_string(), "true".to_string()),
            (LABEL_ARTIFACTS.to_string(), dir.display().to_string()),
        ]
        .into();
        let tmpfs: HashMap<String, String> = [
            (
                WORK_MOUNT.to_string(),
                format!(
                    "rw,exec,nosuid,size=8g,uid={},gid={},mode=0755",
                    user.0, user.1
                ),
            ),
            (
                "/tmp".to_string(),
                "rw,exec,nosuid,size=2g,mode=1777".to_string(),
            ),
        ]
        .into();
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            env: Some(
                prepared
                    .env
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect(),
            ),
            labels: Some(labels),
            user: Some(format!("{}:{}", user.0, user.1)),
            working_dir: Some(WORK_MOUNT.into()),
            host_config: Some(HostConfig {
                binds: Some(prepared.binds.clone()),
                readonly_rootfs: Some(true),
                tmpfs: Some(tmpfs),
                cap_drop: Some(vec!["ALL".into()]),
                security_opt: Some(vec!["no-new-privileges".into()]),
                nano_cpus: Some((limits.cpus * 1e9) as i64),
                memory: Some(limits.memory_mb * 1024 * 1024),
                // No swap beyond the memory limit (Docker's default gives as much again).
                memory_swap: Some(limits.memory_mb * 1024 * 1024),
                pids_limit: Some(limits.pids),
                network_mode: Some(
                    match limits.network {
                        Network::ProxyOnly => "none",
                        Network::Open => "bridge",
                    }
                    .into(),
                ),
                init: Some(true),
                // The container's output, kept by Docker on the host: rotated, bounded.
                log_config: Some(bollard::models::HostConfigLogConfig {
                    typ: Some("json-file".into()),
                    config: Some(HashMap::from([
                        ("max-size".to_string(), OUTPUT_LOG_MAX_SIZE.to_string()),
                        ("max-file".to_string(), OUTPUT_LOG_MAX_FILES.to_string()),
                    ])),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = self
            .engine
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(&name).build()),
                body,
            )
            .await
            .map_err(|e| docker_error(e, &format!("create container `{name}`")))?;
        let guard = ContainerGuard {
            docker: self.engine.clone(),
            name: name.clone(),
            armed: true,
        };
        if let Err(e) = self
            .engine
            .start_container(
                &created.id,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
        {
            guard.remove().await;
            return Err(docker_error(e, &format!("start container `{name}`")));
        }
        Ok(guard)
    }
}

/// A container's inputs, ready to create it.
struct Prepared {
    env: Vec<(String, String)>,
    binds: Vec<String>,
    proxy: Proxy,
    proxy_dir: ProxyDir,
    /// The repository's bundle being made (the minion waits for it).
    bundling: tokio::task::JoinHandle<anyhow::Result<()>>,
}

#[async_trait::async_trait]
impl Backend for Docker {
    fn runtime(&self) -> Runtime {
        Runtime::Local
    }

    async fn launch(
        &self,
        spec: &mut RunSpec,
        reporter: &dyn Reporter,
        _cancel: &CancellationToken,
    ) -> anyhow::Result<RunHandle> {
        let repo = self.preflight(spec, reporter).await?;
        let dir = super::create_artifacts_dir(spec)?;
        let dir_guard = super::RunDirGuard::new(&dir);
        let spec: &RunSpec = spec;
        let user = container_user();
        if unsafe { libc::getuid() } == 0 {
            std::os::unix::fs::chown(&dir, Some(user.0), Some(user.1))?;
        }
        let started = chrono::Utc::now();
        let deadline = tokio::time::Instant::now() + spec.timeout;
        let prepared = self
            .prepare(spec, &repo, &dir, SystemTime::now() + spec.timeout)
            .await?;
        reporter.status(
            "Starting",
            Tone::Good,
            &format!(
                "run {} in `{}` ({})",
                spec.run_id,
                spec.image,
                if spec.stubs { "stubs" } else { &spec.model }
            ),
        );
        let container = self.start(spec, &dir, &prepared).await;
        let Prepared {
            proxy,
            proxy_dir,
            bundling,
            ..
        } = prepared;
        // The bundle is waited for whatever happened: its folder goes with `proxy_dir`.
        let bundled = match bundling.await {
            Ok(r) => r.map_err(|e| anyhow::anyhow!("cannot bundle the repository: {e:#}")),
            Err(e) => Err(anyhow::anyhow!("git bundle did not finish: {e}")),
        };
        let guard = match (container, bundled) {
            (Ok(guard), Ok(())) => guard,
            (Ok(guard), Err(e)) => {
                guard.remove().await;
                return Err(e);
            }
            (Err(e), _) => return Err(e),
        };
        dir_guard.keep();
        let spinner =
            (!spec.follow).then(|| reporter.spinner(&format!("minion {} running", spec.run_id)));
        Ok(RunHandle {
            run_id: spec.run_id.clone(),
            id: guard.name.clone(),
            dir,
            started,
            deadline,
            timeout: spec.timeout,
            follow: spec.follow,
            held: Box::new(LocalRun {
                repo,
                guard,
                proxy,
                proxy_dir,
                spinner,
            }),
        })
    }

    fn watch(
        &self,
        runs: &[&RunHandle],
        cancel: &CancellationToken,
    ) -> BoxStream<'static, RunEvent> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        for run in runs {
            let (engine, name, run_id) = (self.engine.clone(), run.id.clone(), run.run_id.clone());
            let (deadline, follow, cancel, tx) =
                (run.deadline, run.follow, cancel.clone(), tx.clone());
            let output = OutputLimit {
                dir: run.dir.clone(),
                bytes: self.limits.as_ref().map_or(u64::MAX, |l| l.output_bytes),
            };
            tokio::spawn(async move {
                let follow = follow.then(|| {
                    let (engine, name, run_id, tx) =
                        (engine.clone(), name.clone(), run_id.clone(), tx.clone());
                    // The run's own status goes to stderr, so its log does too.
                    tokio::spawn(async move {
                        follow_logs(&engine, &name, |l| {
                            let _ = tx.send(RunEvent::Log {
                                run_id: run_id.clone(),
                                line: l.to_string(),
                            });
                        })
                        .await
                    })
                });
                let timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
                let end = wait(&engine, &name, timeout, &cancel, &output).await;
                if let Some(h) = follow {
                    // Let the log stream drain what the container wrote before it stopped.
                    let _ = tokio::time::timeout(Duration::from_secs(2), h).await;
                }
                let end = match end {
                    HostEnd::Exited(code) => RunEnd {
                        exit_code: Some(code),
                        ..RunEnd::default()
                    },
                    HostEnd::Failed(reason) => RunEnd {
                        reason: Some(reason),
                        ..RunEnd::default()
                    },
                    stopped => RunEnd {
                        stopped: Some(stopped),
                        ..RunEnd::default()
                    },
                };
                let _ = tx.send(RunEvent::Ended { run_id, end });
            });
        }
        channel_stream(rx)
    }

    async fn collect(
        &self,
        run: RunHandle,
        end: RunEnd,
        spec: &RunSpec,
        _reporter: &dyn Reporter,
    ) -> anyhow::Result<RunOutcome> {
        let held = run.held.downcast::<LocalRun>().map_err(|_| {
            anyhow::anyhow!("run {} is not a run of the Docker backend", run.run_id)
        })?;
        let LocalRun {
            repo,
            guard,
            proxy,
            proxy_dir,
            spinner,
        } = *held;
        drop(spinner);
        let log = container_output(&self.engine, &guard.name).await;
        guard.remove().await;
        let refusals = proxy.refusals();
        drop(proxy);
        drop(proxy_dir);
        super::append_to_log(&run.dir, &refusals);
        let host_end = match (end.stopped, end.exit_code) {
            (Some(stopped), _) => stopped,
            (None, Some(code)) => HostEnd::Exited(code),
            (None, None) => HostEnd::Failed(
                end.reason
                    .unwrap_or_else(|| "lost track of the container".into()),
            ),
        };
        let summary =
            super::settle_summary(spec, Runtime::Local, &host_end, run.started, Some(&log));
        let (fetched, fetch_error) =
            match super::fetch_back(&repo, &run.dir, &summary, spec, &host_end) {
                Ok(f) => (Some(f), None),
                Err(e) => (None, Some(e)),
            };
        Ok(RunOutcome {
            interrupted: matches!(host_end, HostEnd::Interrupted),
            summary,
            dir: run.dir,
            fetched,
            fetch_error,
            pushed_to: None,
        })
    }

    /// The log of a run whose container is still here (a finished run's log is its
    /// `minion.log`).
    async fn logs(
        &self,
        run_id: &str,
        follow: bool,
        sink: LogSink<'_>,
        _cancel: &CancellationToken,
    ) -> anyhow::Result<bool> {
        let live = list_runs(&self.engine).await?;
        let Some(run) = live.iter().find(|r| r.run_id == run_id) else {
            return Ok(false);
        };
        if follow {
            follow_logs(&self.engine, &run.name, sink).await;
        } else {
            for line in container_output(&self.engine, &run.name).await.lines() {
                sink(line);
            }
        }
        Ok(true)
    }

    async fn stop(&self, run_id: &str) -> anyhow::Result<Option<String>> {
        Ok(stop_run(&self.engine, run_id)
            .await?
            .then(|| format!("local run {run_id} (its artifacts are kept)")))
    }

    /// The runs whose container is here (running or not yet removed).
    async fn list(&self, limit: usize, known: &[String]) -> anyhow::Result<Vec<RunRow>> {
        let mut runs = list_runs(&self.engine).await?;
        runs.retain(|r| !known.contains(&r.run_id));
        runs.sort_by(|a, b| b.run_id.cmp(&a.run_id));
        runs.truncate(limit);
        Ok(runs
            .into_iter()
            .map(|r| RunRow::new(&r.run_id, Runtime::Local, None, r.name))
            .collect())
    }
}

/// Wait for the container to exit, stopping it at the timeout or on Ctrl-C.
/// How much of the disk a run's artifacts directory may take.
struct OutputLimit {
    dir: PathBuf,
    bytes: u64,
}

/// The free space a local run must leave on the disk holding its artifacts directory.
const DISK_FLOOR: u64 = 256 * 1024 * 1024;

/// Free bytes (for an unprivileged user) on the filesystem holding `dir`.
fn disk_free(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain old data; all zeroes is a valid value to be filled in.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `s` a statvfs the call fills in.
    (unsafe { libc::statvfs(c.as_ptr(), &mut s) } == 0)
        .then(|| (s.f_bavail as u64).saturating_mul(s.f_frsize as u64))
}

/// How often the artifacts directory is measured while the container runs.
const OUTPUT_CHECK_EVERY: Duration = Duration::from_secs(1);
/// The most entries a run's artifacts directory may hold (a run leaves about ten).
const OUTPUT_MAX_ENTRIES: u64 = 10_000;

impl OutputLimit {
    /// Returns once the directory holds more than the limit (or more entries, or
    /// deeper folders, than a run has any use for); never otherwise.
    async fn exceeded(&self) -> String {
        loop {
            tokio::time::sleep(OUTPUT_CHECK_EVERY).await;
            let dir = self.dir.clone();
            let used = tokio::task::spawn_blocking(move || {
                // What the walk cannot see (a file deleted while still open and
                // written): the disk itself must keep room.
                match disk_free(&dir) {
                    Some(free) if free < DISK_FLOOR => Err(format!(
                        "the disk holding the run's artifacts directory has under {} MiB free",
                        DISK_FLOOR / (1024 * 1024)
                    )),
                    _ => disk_used(&dir),
                }
            })
            .await
            .unwrap_or(Ok(0));
            match used {
                Ok(n) if n > self.bytes => {
                    return format!(
                        "the run filled more than {} MiB of its artifacts directory (`[local] output_limit_mb`); its container was stopped",
                        self.bytes / (1024 * 1024)
                    )
                }
                Ok(_) => {}
                Err(why) => return format!("{why}; its container was stopped"),
            }
        }
    }
}

/// The disk `dir` takes (allocated blocks, so a sparse file counts what it holds),
/// walked without following links; an error when it holds more than
/// [`OUTPUT_MAX_ENTRIES`] entries or folders nested over 16 deep.
fn disk_used(dir: &Path) -> Result<u64, String> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0u64;
    let mut entries = 0u64;
    let mut todo = vec![(dir.to_path_buf(), 0usize)];
    while let Some((d, depth)) = todo.pop() {
        // A folder the walk cannot read could hide anything.
        let listing = match std::fs::read_dir(&d) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(_) => {
                return Err("the run made a folder of its artifacts directory unreadable".into())
            }
        };
        for e in listing.flatten() {
            entries += 1;
            if entries > OUTPUT_MAX_ENTRIES {
                return Err(format!(
                    "the run made more than {OUTPUT_MAX_ENTRIES} files in its artifacts directory"
                ));
            }
            let Ok(m) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            total = total.saturating_add(m.blocks().saturating_mul(512));
            if m.is_dir() {
                if depth >= 16 {
                    return Err(
                        "the run nested folders over 16 deep in its artifacts directory".into(),
                    );
                }
                todo.push((e.path(), depth + 1));
            }
        }
    }
    Ok(total)
}

async fn wait(
    docker: &Engine,
    name: &str,
    timeout: Duration,
    cancel: &CancellationToken,
    output: &OutputLimit,
) -> HostEnd {
    let mut waiter = docker.wait_container(
        name,
        None::<bollard::query_parameters::WaitContainerOptions>,
    );
    let exited = async {
        match waiter.next().await {
            Some(Ok(r)) => HostEnd::Exited(r.status_code),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
                HostEnd::Exited(code)
            }
            Some(Err(e)) => HostEnd::Failed(format!("lost track of the container: {e}")),
            None => HostEnd::Failed("lost track of the container".into()),
        }
    };
    tokio::pin!(exited);
    let reason = tokio::select! {
        end = &mut exited => return end,
        // The minion stops itself a little before its deadline; this is the backstop.
        _ = tokio::time::sleep(timeout) => HostEnd::TimedOut,
        _ = cancel.cancelled() => HostEnd::Interrupted,
        why = output.exceeded() => HostEnd::Failed(why),
    };
    // SIGTERM lets the minion write its summary; SIGKILL follows after the grace period.
    // At the timeout the minion has already had its margin: SIGKILL follows quickly. A
    // container filling the disk gets no grace at all.
    let grace = match reason {
        HostEnd::TimedOut => 3,
        HostEnd::Failed(_) => 0,
        _ => 10,
    };
    let _ = docker
        .stop_container(
            name,
            Some(StopContainerOptionsBuilder::default().t(grace).build()),
        )
        .await;
    let _ = tokio::time::timeout(Duration::from_secs(grace as u64 + 5), &mut exited).await;
    reason
}

/// Removes the container unless disarmed; the async path removes it explicitly, and
/// Drop covers a panic or an early return.
struct ContainerGuard {
    docker: Engine,
    name: String,
    armed: bool,
}

impl ContainerGuard {
    async fn remove(mut self) {
        remove(&self.docker, &self.name).await;
        self.armed = false;
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        if self.armed {
            let docker = self.docker.clone();
            let name = self.name.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move { remove(&docker, &name).await });
            }
        }
    }
}

/// A run's container, if one is running.
#[derive(Debug, Clone)]
pub struct RunningRun {
    pub run_id: String,
    pub name: String,
    pub state: String,
}

/// Containers lackey started for runs.
pub async fn list_runs(docker: &Engine) -> anyhow::Result<Vec<RunningRun>> {
    let filters: HashMap<String, Vec<String>> =
        [("label".to_string(), vec![format!("{LABEL_MANAGED}=true")])].into();
    let list = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(|e| docker_error(e, "list containers"))?;
    Ok(list
        .into_iter()
        .filter_map(|c| {
            let labels = c.labels.unwrap_or_default();
            Some(RunningRun {
                run_id: labels.get(LABEL_RUN_ID)?.clone(),
                name: c
                    .names
                    .and_then(|n| n.first().cloned())
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string(),
                state: c.state.map(|s| s.to_string()).unwrap_or_default(),
            })
        })
        .collect())
}

/// Stop a local run: SIGTERM (the minion writes its summary), SIGKILL after 10 s. The
/// `lackey run` waiting on it removes the container; if none is, it is removed here.
pub async fn stop_run(docker: &Engine, run_id: &str) -> anyhow::Result<bool> {
    let runs = list_runs(docker).await?;
    let Some(run) = runs.into_iter().find(|r| r.run_id == run_id) else {
        return Ok(false);
    };
    let _ = docker
        .stop_container(
            &run.name,
            Some(StopContainerOptionsBuilder::default().t(10).build()),
        )
        .await;
    // Give the run's own `lackey run` a moment to collect and remove it.
    for _ in 0..30 {
        if !list_runs(docker).await?.iter().any(|r| r.run_id == run_id) {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    remove(docker, &run.name).await;
    Ok(true)
}

/// Stream a container's output, line by line, until it ends.
pub async fn follow_logs(docker: &Engine, name: &str, print: impl Fn(&str)) {
    let mut logs = docker.logs(
        name,
        Some(
            LogsOptionsBuilder::default()
                .follow(true)
                .stdout(true)
                .stderr(true)
                .build(),
        ),
    );
    while let Some(Ok(chunk)) = logs.next().await {
        for line in String::from_utf8_lossy(&chunk.into_bytes()).lines() {
            print(&crate::output::visible(line));
        }
    }
}
