//! The seam between a run and where it executes.
//!
//! A [`Backend`] launches runs, watches them as one stream of events, collects what they
//! left, and finds, lists, tails and stops runs it launched earlier (perhaps from another
//! process). [`super::docker::Docker`] runs containers in the local engine,
//! [`super::ecs::Ecs`] tasks on Fargate. Backends return values and report progress
//! through `&dyn Reporter`; they never print.
//!
//! One run is [`run_one`]: launch → watch until it ends → collect. A fleet is the same
//! three calls with many handles: `launch` once per run, then one `watch` over all the
//! handles (the ECS backend polls every task with one DescribeTasks call per tick), then
//! `collect` per run as each one ends. Whatever a run holds while it goes (a container
//! guard, the credential proxy and its socket directory; later a sidecar) lives in its [`RunHandle`] and is
//! released by `collect` or when the handle is dropped.

use std::any::Any;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{HostEnd, RunSpec};
use crate::output::Reporter;
use crate::summary::{RunSummary, Runtime};

/// A launched run.
pub struct RunHandle {
    pub run_id: String,
    /// Where the backend knows the run: the container's name, the task's ARN.
    pub id: String,
    /// The run's artifact directory on this machine.
    pub dir: PathBuf,
    pub started: chrono::DateTime<chrono::Utc>,
    /// When the host stops the run (the minion stops itself a little before).
    pub deadline: tokio::time::Instant,
    pub timeout: Duration,
    /// Whether `watch` streams the run's log.
    pub follow: bool,
    /// The backend's own state of the run, released when the handle goes.
    pub(crate) held: Box<dyn Any + Send + Sync>,
}

impl RunHandle {
    /// The backend's state of the run, if it is of type `T`.
    pub(crate) fn held<T: 'static>(&self) -> Option<&T> {
        self.held.downcast_ref::<T>()
    }
}

/// What `watch` says about a run.
#[derive(Debug, Clone)]
pub enum RunEvent {
    /// A status line worth showing ("Task 1a2b: RUNNING").
    Status { run_id: String, line: String },
    /// A line of the run's log (only when following).
    Log { run_id: String, line: String },
    /// Something went wrong on the way, but the run goes on.
    Warning { run_id: String, message: String },
    /// The run is over; nothing more comes for it.
    Ended { run_id: String, end: RunEnd },
}

/// How a run ended, as the backend saw it.
#[derive(Debug, Clone, Default)]
pub struct RunEnd {
    /// The host stopped it (timeout, Ctrl-C).
    pub stopped: Option<HostEnd>,
    /// The minion's exit code, when known.
    pub exit_code: Option<i64>,
    /// What the platform said about the stop (ECS's stopped reason), or why it was
    /// lost track of.
    pub reason: Option<String>,
    /// The platform never started the minion.
    pub failed_to_start: bool,
}

/// What a finished run produced.
pub struct RunOutcome {
    pub summary: RunSummary,
    pub dir: PathBuf,
    /// Ctrl-C stopped it.
    pub interrupted: bool,
    /// Whether the branch was brought back into the local repository (None: not tried).
    pub fetched: Option<bool>,
    /// Why it could not be brought back (reported by the caller).
    pub fetch_error: Option<anyhow::Error>,
    /// Where the branch was pushed, when the minion pushed it (`owner/repo`).
    pub pushed_to: Option<String>,
}

/// One row of `lackey runs`.
#[derive(Serialize, Clone, Debug)]
pub struct RunRow {
    pub run_id: String,
    pub backend: String,
    pub outcome: String,
    pub duration_s: Option<f64>,
    pub branch: Option<String>,
    pub location: String,
    /// USD; null when unknown (no summary yet, or a model without a price).
    pub cost_usd: Option<f64>,
    /// Prompt tokens (uncached, cache write, cache read) plus output tokens.
    pub tokens: Option<u64>,
}

impl RunRow {
    /// A row from what is known of a run: its summary when it has one.
    pub fn new(
        run_id: &str,
        backend: Runtime,
        summary: Option<&RunSummary>,
        location: String,
    ) -> RunRow {
        let (cost_usd, tokens) = match summary {
            Some(s) => (
                s.usage.cost_usd,
                Some(s.usage.prompt_tokens() + s.usage.output_tokens),
            ),
            None => (None, None),
        };
        RunRow {
            run_id: run_id.to_string(),
            backend: runtime_name(backend).into(),
            outcome: summary
                .map(|s| s.outcome.to_string())
                .unwrap_or_else(|| "running".into()),
            duration_s: summary.map(|s| s.duration_s),
            branch: summary.map(|s| s.branch.clone()),
            location,
            cost_usd,
            tokens,
        }
    }
}

/// `local` or `cloud`.
pub fn runtime_name(r: Runtime) -> &'static str {
    match r {
        Runtime::Local => "local",
        Runtime::Cloud => "cloud",
    }
}

/// Where log lines go.
pub type LogSink<'a> = &'a (dyn Fn(&str) + Send + Sync);

/// A place runs execute.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Which runtime this is (the `runs` table's backend, the summary's runtime).
    fn runtime(&self) -> Runtime;

    /// Prepare and start one run: its artifact directory, inputs and secrets, then the
    /// container or task. An error (or Ctrl-C) before the start leaves nothing behind.
    /// `spec.run_id` may change (two runs drew the same id).
    async fn launch(
        &self,
        spec: &mut RunSpec,
        reporter: &dyn Reporter,
        cancel: &CancellationToken,
    ) -> anyhow::Result<RunHandle>;

    /// Follow runs until each has ended: one stream for all of them, ending after the
    /// last `Ended`. A run is stopped at its deadline, and every run on `cancel`.
    fn watch(
        &self,
        runs: &[&RunHandle],
        cancel: &CancellationToken,
    ) -> BoxStream<'static, RunEvent>;

    /// After a run ended: its artifacts on this machine, its summary (the host writes
    /// one when the minion could not), the branch brought back where it applies.
    async fn collect(
        &self,
        run: RunHandle,
        end: RunEnd,
        spec: &RunSpec,
        reporter: &dyn Reporter,
    ) -> anyhow::Result<RunOutcome>;

    /// Print the log of a run this backend knows through `sink` (following it while it
    /// runs when `follow`); false when it does not know the run.
    async fn logs(
        &self,
        run_id: &str,
        follow: bool,
        sink: LogSink<'_>,
        cancel: &CancellationToken,
    ) -> anyhow::Result<bool>;

    /// Stop a running run, keeping its artifacts; what was stopped, or None when this
    /// backend has no such run running.
    async fn stop(&self, run_id: &str) -> anyhow::Result<Option<String>>;

    /// Keep a file made after the run (the report) where the backend keeps the run's
    /// artifacts (the summary's `s3_prefix`, which the host set), when that is not the
    /// run directory here. The error says where it was not stored ("not uploaded to …").
    async fn keep_beside(
        &self,
        _summary: &RunSummary,
        _path: &Path,
        _name: &str,
    ) -> anyhow::Result<()> {
        Ok(())
    }

    /// The runs this backend knows, newest first, at most `limit`; the ids in `known`
    /// (their summary is already on this machine) are left out.
    async fn list(&self, limit: usize, known: &[String]) -> anyhow::Result<Vec<RunRow>>;
}

/// One run from launch to outcome, its events reported as they come.
pub async fn run_one(
    backend: &dyn Backend,
    spec: &mut RunSpec,
    reporter: &dyn Reporter,
    cancel: &CancellationToken,
) -> anyhow::Result<RunOutcome> {
    let run = backend.launch(spec, reporter, cancel).await?;
    let mut events = backend.watch(&[&run], cancel);
    let mut end = None;
    while let Some(event) = events.next().await {
        match event {
            RunEvent::Status { line, .. } | RunEvent::Log { line, .. } => reporter.info(&line),
            RunEvent::Warning { message, .. } => reporter.warn(&message),
            RunEvent::Ended { end: e, .. } => end = Some(e),
        }
    }
    let end = end.unwrap_or_else(|| RunEnd {
        reason: Some("lost track of the run".into()),
        ..RunEnd::default()
    });
    backend.collect(run, end, spec, reporter).await
}

/// A stream fed by spawned tasks through a channel; it ends when every sender is gone.
pub(crate) fn channel_stream(
    rx: tokio::sync::mpsc::UnboundedReceiver<RunEvent>,
) -> BoxStream<'static, RunEvent> {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) }).boxed()
}
