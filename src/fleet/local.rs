//! A fleet in local Docker: each run is the same hardened container a single
//! `lackey run` starts (the `Docker` backend through `runner::run_one`), several at once.
//!
//! Local runs live and die with this process (their containers are removed when it
//! ends them); a run the process did not finish is run again by `--resume`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::engine::{FleetBackend, LaunchError, Pacing, Polled};
use super::{FleetRun, FleetTask, ReportFn};
use crate::output::Silent;
use crate::rundir::RunDir;
use crate::runner::docker::{Docker, Limits};
use crate::runner::{HostEnd, RunSpec};
use crate::summary::{RunSummary, Runtime};

pub type SpecFn = super::ecs::SpecFn;

/// What the machine can take: one run per `cpus` cores and `memory_mb` of memory.
pub fn default_parallelism(limits: &Limits) -> usize {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    let by_cpu = (cores / limits.cpus.max(0.1)).floor() as usize;
    let by_mem = total_memory_mb()
        .map(|m| (m / limits.memory_mb.max(1) as u64) as usize)
        .unwrap_or(by_cpu);
    by_cpu.min(by_mem).max(1)
}

fn total_memory_mb() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024)
}

struct Running {
    cancel: CancellationToken,
    /// The run's artifact directory (its `minion.log` gives the view its last line).
    dir: PathBuf,
    result: Option<Result<RunSummary, String>>,
}

pub struct LocalFleet {
    docker: std::sync::Arc<Docker>,
    specs: SpecFn,
    report: ReportFn,
    runs: std::sync::Arc<Mutex<HashMap<String, Running>>>,
}

impl LocalFleet {
    /// One Docker backend (one engine connection) for every run of the fleet.
    pub async fn new(
        limits: Limits,
        specs: SpecFn,
        report: ReportFn,
    ) -> anyhow::Result<LocalFleet> {
        Ok(LocalFleet {
            docker: std::sync::Arc::new(Docker::connect(limits).await?),
            specs,
            report,
            runs: Default::default(),
        })
    }
}

/// The last complete line of the file `name` in the run directory `dir`, read from its
/// last few kilobytes (no-follow: the container writes there).
fn last_line_of(dir: &Path, name: &str) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    const TAIL: u64 = 4096;
    let mut f = RunDir::open(dir).ok()?.open_file(name).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(TAIL))).ok()?;
    let mut buf = Vec::with_capacity(TAIL as usize);
    f.take(TAIL).read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    text.lines()
        .rev()
        .map(str::trim_end)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

#[async_trait::async_trait]
impl FleetBackend for LocalFleet {
    fn pacing(&self) -> Pacing {
        Pacing {
            launches_per_s: 20.0,
            launch_burst: 20.0,
            concurrent_launches: 4,
            launch_batch_every: Duration::from_millis(100),
            concurrent_collects: 4,
            tick: Duration::from_millis(500),
            backoff_first: Duration::from_secs(1),
            backoff_max: Duration::from_secs(10),
        }
    }

    async fn launch(&self, run: &FleetRun, task: &FleetTask) -> Result<String, LaunchError> {
        let mut spec: RunSpec =
            (self.specs)(run, task).map_err(|e| LaunchError::Failed(format!("{e:#}")))?;
        let cancel = CancellationToken::new();
        let id = run.run_id.clone();
        self.runs.lock().unwrap_or_else(|e| e.into_inner()).insert(
            id.clone(),
            Running {
                cancel: cancel.clone(),
                dir: spec.artifacts_dir(),
                result: None,
            },
        );
        let runs = self.runs.clone();
        let docker = self.docker.clone();
        tokio::spawn(async move {
            // The same path as one `lackey run`: launch, watch, collect (the branch
            // comes back into the repository). The fleet's view is the output: the
            // run's own status lines are not printed.
            let r = crate::runner::run_one(&*docker, &mut spec, &Silent, &cancel)
                .await
                .map(|o| o.summary)
                .map_err(|e| format!("{e:#}"));
            if let Some(slot) = runs.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&id) {
                slot.result = Some(r);
            }
        });
        Ok(run.run_id.clone())
    }

    async fn poll(&self, handles: &[String]) -> anyhow::Result<HashMap<String, Polled>> {
        let runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        Ok(handles
            .iter()
            .map(|h| {
                let done = runs.get(h).is_none_or(|r| r.result.is_some());
                (
                    h.clone(),
                    Polled {
                        status: if done { "exited" } else { "running" }.into(),
                        stopped: done,
                    },
                )
            })
            .collect())
    }

    async fn last_lines(&self, handles: &[String]) -> HashMap<String, String> {
        let dirs: Vec<(String, PathBuf)> = {
            let runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
            handles
                .iter()
                .filter_map(|h| runs.get(h).map(|r| (h.clone(), r.dir.clone())))
                .collect()
        };
        dirs.into_iter()
            .filter_map(|(h, dir)| last_line_of(&dir, "minion.log").map(|l| (h, l)))
            .collect()
    }

    async fn stop(&self, handle: &str, _reason: &str) {
        if let Some(r) = self
            .runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(handle)
        {
            r.cancel.cancel();
        }
    }

    async fn collect(
        &self,
        run: &FleetRun,
        task: &FleetTask,
        _handle: Option<&str>,
        end: Option<HostEnd>,
    ) -> RunSummary {
        let result = self
            .runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&run.run_id)
            .and_then(|r| r.result);
        let summary = match (result, end) {
            (Some(Ok(s)), _) => s,
            (Some(Err(e)), _) | (None, Some(HostEnd::Failed(e))) => {
                super::ecs::failed_summary(run, task, Runtime::Local, &e)
            }
            (None, _) => super::ecs::failed_summary(
                run,
                task,
                Runtime::Local,
                "the run ended before it started",
            ),
        };
        // Its report beside its artifacts, as after a single run.
        if let Ok(spec) = (self.specs)(run, task) {
            let dir = spec.artifacts_dir();
            if dir.join("run_summary.json").is_file() {
                if let Err(e) = (self.report)(&dir) {
                    tracing::warn!("run {}: the report was not written: {e:#}", run.run_id);
                }
            }
        }
        summary
    }

    async fn find(&self, _run_ids: &[String]) -> anyhow::Result<HashMap<String, String>> {
        // A local run does not outlive the process that started it.
        Ok(HashMap::new())
    }
}
