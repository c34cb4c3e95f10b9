//! The fleet scheduler, independent of where runs execute.
//!
//! One loop, one tick at a time:
//! 1. launch queued runs while fewer than `max_parallel` are in flight, the budget is
//!    not spent and no stop was asked; launches are paced (a token bucket under the
//!    backend's documented rate) and a run whose launch meets a capacity or throttling
//!    error goes back to the head of the queue while launches pause with a growing
//!    backoff: it is retried, never dropped;
//! 2. poll every launched run in one batched call;
//! 3. collect the runs that stopped (artifacts, summary), a bounded number at once;
//! 4. stop runs past their deadline; on Ctrl-C or `stop --fleet`, stop every run at
//!    once and mark the queue not run;
//! 5. write the manifest when it changed (and always *before* a launch call).
//!
//! "In flight" counts runs whose launch call was made and which were not yet seen
//! stopped, so the backend never holds more than `max_parallel` live runs.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use tokio_util::sync::CancellationToken;

use super::view::View;
use super::{FleetRun, FleetTask, Manifest, RunResult, RunState};
use crate::runner::HostEnd;
use crate::summary::RunSummary;

/// Why a launch did not happen.
#[derive(Debug, Clone)]
pub enum LaunchError {
    /// No capacity, or throttled: try again later (the run stays queued).
    Retry(String),
    /// The run cannot start (bad input, a failed preflight): it ends as an error.
    Failed(String),
}

/// A run's state as the backend's poll saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Polled {
    /// The backend's own word for it: PROVISIONING, RUNNING, STOPPED, …
    pub status: String,
    pub stopped: bool,
}

/// How fast the engine may go against this backend.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    /// Launch calls per second, sustained (and the burst).
    pub launches_per_s: f64,
    pub launch_burst: f64,
    /// Launch calls under way at once.
    pub concurrent_launches: usize,
    /// Launches start in batches at most this often: each batch costs one manifest
    /// write (the manifest says `launching` before the calls are made).
    pub launch_batch_every: Duration,
    /// Collections (artifact downloads) under way at once.
    pub concurrent_collects: usize,
    /// Time between polls.
    pub tick: Duration,
    /// First and longest pause of launches after a capacity or throttling error.
    pub backoff_first: Duration,
    pub backoff_max: Duration,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            launches_per_s: 10.0,
            launch_burst: 10.0,
            concurrent_launches: 4,
            launch_batch_every: Duration::from_millis(250),
            concurrent_collects: 4,
            tick: Duration::from_secs(1),
            backoff_first: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// Where runs execute: local Docker, ECS Fargate, or a test's fake.
#[async_trait::async_trait]
pub trait FleetBackend: Send + Sync + 'static {
    fn pacing(&self) -> Pacing;
    /// Launch one run; the handle names it to `poll`, `stop` and `collect`.
    async fn launch(&self, run: &FleetRun, task: &FleetTask) -> Result<String, LaunchError>;
    /// The state of every handle, in as few calls as the backend allows (ECS: one
    /// DescribeTasks per 100). A handle missing from the answer is unknown this tick.
    async fn poll(&self, handles: &[String]) -> anyhow::Result<HashMap<String, Polled>>;
    /// The last log line of each run, read in as few calls as the backend allows (ECS:
    /// one FilterLogEvents per 100 streams); a run without a new line may be missing.
    async fn last_lines(&self, _handles: &[String]) -> HashMap<String, String> {
        HashMap::new()
    }
    async fn stop(&self, handle: &str, reason: &str);
    /// A stopped (or never launched) run's summary, its artifacts brought home. `end`
    /// is how the engine ended it (timeout, interrupt, a failed launch), if it did.
    async fn collect(
        &self,
        run: &FleetRun,
        task: &FleetTask,
        handle: Option<&str>,
        end: Option<HostEnd>,
    ) -> RunSummary;
    /// Which of these runs were launched already (by their id), with their handles.
    async fn find(&self, run_ids: &[String]) -> anyhow::Result<HashMap<String, String>>;
}

/// Where the manifest is kept, and how `stop --fleet` reaches a running fleet.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    async fn save(&self, manifest: &Manifest) -> anyhow::Result<()>;
    async fn stop_requested(&self, fleet_id: &str) -> bool;
}

/// How a fleet's drive ended.
pub struct Driven {
    pub manifest: Manifest,
    pub interrupted: bool,
    pub stopped: bool,
    /// Summaries of the runs collected by this drive, by run id.
    pub summaries: HashMap<String, RunSummary>,
}

/// How long after StopTask the engine waits for a run to report stopped.
const STOP_GRACE: Duration = Duration::from_secs(120);
/// Consecutive polls a run may be missing from before it counts as stopped (ECS
/// forgets stopped tasks after a while).
const MISSING_POLLS: u32 = 3;

struct TokenBucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    at: Instant,
}

impl TokenBucket {
    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn next_in(&self) -> Duration {
        Duration::from_secs_f64(((1.0 - self.tokens) / self.rate).max(0.0))
    }
}

type LaunchDone = (usize, Result<String, LaunchError>);
/// A poll's answer: the runs asked about, their states, their last log lines.
type Poll = (
    Vec<(usize, String)>,
    anyhow::Result<HashMap<String, Polled>>,
    HashMap<String, String>,
);
type CollectDone = (usize, RunSummary);

/// Drive a fleet to its end (or to Ctrl-C / `stop --fleet`).
#[allow(
    clippy::too_many_lines,
    reason = "one select loop over launches, polls, collections and signals; to be split into a state struct"
)]
pub async fn drive<B: FleetBackend>(
    mut m: Manifest,
    backend: Arc<B>,
    store: Arc<dyn Store>,
    view: &mut dyn View,
    cancel: CancellationToken,
) -> anyhow::Result<Driven> {
    let pacing = backend.pacing();
    let max = m.options.max_parallel.max(1);
    // Resume: every run not known to be launched is looked for by its id (a launch
    // may have reached the backend just before the CLI died); what is found is
    // watched, the rest goes back in the queue.
    let resumed = m.runs.iter().any(|r| r.state != RunState::Queued);
    if resumed {
        let unsure: Vec<String> = m
            .runs
            .iter()
            .filter(|r| {
                matches!(
                    r.state,
                    RunState::Queued | RunState::Launching | RunState::NotRun
                )
            })
            .map(|r| r.run_id.clone())
            .collect();
        let found = if unsure.is_empty() {
            HashMap::new()
        } else {
            backend.find(&unsure).await?
        };
        for r in m.runs.iter_mut().filter(|r| {
            matches!(
                r.state,
                RunState::Queued | RunState::Launching | RunState::NotRun
            )
        }) {
            r.not_run = None;
            match found.get(&r.run_id) {
                Some(h) => {
                    r.state = RunState::Launched;
                    r.handle = Some(h.clone());
                }
                None => r.state = RunState::Queued,
            }
        }
    }
    store.save(&m).await?;
    view.started(&m);

    let mut bucket = TokenBucket {
        tokens: pacing.launch_burst,
        rate: pacing.launches_per_s,
        burst: pacing.launch_burst,
        at: Instant::now(),
    };
    let mut launches: FuturesUnordered<tokio::task::JoinHandle<LaunchDone>> =
        FuturesUnordered::new();
    let mut collects: FuturesUnordered<tokio::task::JoinHandle<CollectDone>> =
        FuturesUnordered::new();
    // Runs seen stopped, waiting for (or in) collection; how the engine ended a run.
    let mut stopped_seen: HashSet<usize> = HashSet::new();
    let mut collecting: HashSet<usize> = HashSet::new();
    let mut to_collect: Vec<usize> = Vec::new();
    let mut ended_by: HashMap<usize, HostEnd> = HashMap::new();
    let mut missing: HashMap<usize, u32> = HashMap::new();
    let mut stop_sent: HashMap<usize, Instant> = HashMap::new();
    let mut paused_until: Option<Instant> = None;
    let (poll_tx, mut poll_rx) = tokio::sync::mpsc::unbounded_channel::<Poll>();
    let want_lines = view.shows_log_lines();
    let mut polling = false;
    let mut last_batch: Option<Instant> = None;
    let mut last_save = Instant::now();
    let mut backoff = pacing.backoff_first;
    let mut stopping: Option<(String, bool)> = None; // (reason, interrupted)
    let mut budget_note: Option<String> = m.budget_spent();
    let mut summaries = HashMap::new();
    let mut tick = pacing.tick;
    let mut last_poll: Option<Instant> = None;
    let mut dirty = false;

    loop {
        // A stop: Ctrl-C here, or `stop --fleet` from another shell.
        if stopping.is_none() {
            if cancel.is_cancelled() {
                stopping = Some(("interrupted (Ctrl-C)".to_string(), true));
            } else if last_poll.is_some_and(|t| t.elapsed() >= tick)
                && store.stop_requested(&m.fleet_id).await
            {
                stopping = Some(("stopped by `lackey stop --fleet`".to_string(), false));
            }
            if let Some((reason, _)) = &stopping {
                view.note(&format!(
                    "{reason}: stopping every run of the fleet (artifacts are kept)"
                ));
                for r in m.runs.iter_mut().filter(|r| r.state == RunState::Queued) {
                    r.state = RunState::NotRun;
                    r.not_run = Some(reason.clone());
                }
                let mut stops = Vec::new();
                for (i, r) in m.runs.iter().enumerate() {
                    if r.state == RunState::Launched && !stopped_seen.contains(&i) {
                        if let Some(h) = r.handle.clone() {
                            ended_by.insert(i, HostEnd::Interrupted);
                            stop_sent.insert(i, Instant::now());
                            let b = backend.clone();
                            let reason = format!("lackey: fleet {}: {reason}", m.fleet_id);
                            stops.push(async move { b.stop(&h, &reason).await });
                        }
                    }
                }
                // One stop call per run, all at once.
                futures::future::join_all(stops).await;
                dirty = true;
                view.tick(&m);
            }
        }

        // 1. Launch.
        if budget_note.is_none() {
            budget_note = m.budget_spent();
            if let Some(why) = &budget_note {
                view.note(&format!(
                    "{why}: no more runs launch; runs in flight finish"
                ));
                for r in m.runs.iter_mut().filter(|r| r.state == RunState::Queued) {
                    r.state = RunState::NotRun;
                    r.not_run = Some(why.clone());
                }
                dirty = true;
            }
        }
        if paused_until.is_some_and(|t| Instant::now() >= t) {
            paused_until = None;
        }
        let can_launch = stopping.is_none()
            && budget_note.is_none()
            && paused_until.is_none()
            && last_batch.is_none_or(|t| t.elapsed() >= pacing.launch_batch_every);
        // With a budget, a stopped run still to be collected counts as in flight: what
        // it spent is not known yet.
        let budgeted = m.options.max_tokens.is_some() || m.options.max_cost_usd.is_some();
        let settled = if budgeted { 0 } else { stopped_seen.len() };
        if can_launch {
            let live = m.in_flight().saturating_sub(settled);
            let mut picked = Vec::new();
            let mut slots = max.saturating_sub(live);
            let mut calls = pacing.concurrent_launches.saturating_sub(launches.len());
            for (i, r) in m.runs.iter().enumerate() {
                if slots == 0 || calls == 0 {
                    break;
                }
                if r.state == RunState::Queued {
                    if !bucket.take() {
                        break;
                    }
                    picked.push(i);
                    slots -= 1;
                    calls -= 1;
                }
            }
            if !picked.is_empty() {
                for &i in &picked {
                    let r = &mut m.runs[i];
                    r.state = RunState::Launching;
                    let timeout = m.tasks[r.task].timeout.or(m.options.timeout);
                    if r.deadline_unix.is_none() {
                        // The backend fills in its default timeout when neither is set.
                        r.deadline_unix = timeout.map(|t| unix_now() + t as f64);
                    }
                }
                // The manifest says `launching` before any launch call is made.
                store.save(&m).await?;
                dirty = false;
                last_save = Instant::now();
                last_batch = Some(Instant::now());
                for i in picked {
                    let b = backend.clone();
                    let run = m.runs[i].clone();
                    let task = m.tasks[run.task].clone();
                    view.changed(&m, i);
                    launches.push(tokio::spawn(
                        async move { (i, b.launch(&run, &task).await) },
                    ));
                }
            }
        }

        // 2. Poll every launched run that is not known to have stopped.
        let due = last_poll.is_none_or(|t| t.elapsed() >= tick);
        let watched: Vec<(usize, String)> = m
            .runs
            .iter()
            .enumerate()
            .filter(|(i, r)| r.state == RunState::Launched && !stopped_seen.contains(i))
            .filter_map(|(i, r)| r.handle.clone().map(|h| (i, h)))
            .collect();
        if due {
            last_poll = Some(Instant::now());
            // The poll runs beside the loop, so launches go on while a large batch is
            // described; at most one poll is under way.
            if !watched.is_empty() && !polling {
                polling = true;
                let handles: Vec<String> = watched.iter().map(|(_, h)| h.clone()).collect();
                let b = backend.clone();
                let tx = poll_tx.clone();
                let w = watched.clone();
                tokio::spawn(async move {
                    // The states and, when the view shows them, the last log lines:
                    // both batched, side by side.
                    let lines = async {
                        if want_lines {
                            b.last_lines(&handles).await
                        } else {
                            HashMap::new()
                        }
                    };
                    let (r, lines) = tokio::join!(b.poll(&handles), lines);
                    let _ = tx.send((w, r, lines));
                });
            }
            // Deadlines, and runs that never confirm a stop.
            let now = unix_now();
            for (i, h) in &watched {
                let i = *i;
                if stopped_seen.contains(&i) {
                    continue;
                }
                match stop_sent.get(&i) {
                    None => {
                        if m.runs[i].deadline_unix.is_some_and(|d| now >= d) {
                            ended_by.insert(i, HostEnd::TimedOut);
                            stop_sent.insert(i, Instant::now());
                            backend.stop(h, "lackey: the run timed out").await;
                        }
                    }
                    Some(t) if t.elapsed() > STOP_GRACE => {
                        view.note(&format!(
                            "run {} did not report stopped {}s after it was stopped; collecting what it left",
                            m.runs[i].run_id,
                            STOP_GRACE.as_secs()
                        ));
                        stopped_seen.insert(i);
                        to_collect.push(i);
                    }
                    Some(_) => {}
                }
            }
        }

        // 3. Collect, a bounded number at once.
        while collects.len() < pacing.concurrent_collects.max(1) && !to_collect.is_empty() {
            let i = to_collect.remove(0);
            if !collecting.insert(i) {
                continue;
            }
            let b = backend.clone();
            let run = m.runs[i].clone();
            let task = m.tasks[run.task].clone();
            let end = ended_by.get(&i).cloned();
            collects.push(tokio::spawn(async move {
                let s = b.collect(&run, &task, run.handle.as_deref(), end).await;
                (i, s)
            }));
        }

        // The end: nothing queued that may launch, nothing in flight or being collected.
        let queued = m.runs.iter().any(|r| r.state == RunState::Queued);
        if !queued && launches.is_empty() && collects.is_empty() && m.in_flight() == 0 {
            break;
        }

        // Other changes are written at most once per tick (a run found launched, or
        // finished, is found again by its tag or collected again after a crash).
        if dirty && last_save.elapsed() >= pacing.tick {
            store.save(&m).await?;
            dirty = false;
            last_save = Instant::now();
        }
        view.tick(&m);

        // Wait for the next thing to happen: a launch or a collection ending, the next
        // poll, the next launch token, Ctrl-C.
        let next_poll = last_poll
            .map(|t| tick.saturating_sub(t.elapsed()))
            .unwrap_or_default();
        let mut wait = next_poll;
        if queued && stopping.is_none() && budget_note.is_none() {
            let launch_in = match paused_until {
                Some(t) => t.saturating_duration_since(Instant::now()),
                None => bucket.next_in().max(
                    last_batch
                        .map(|t| pacing.launch_batch_every.saturating_sub(t.elapsed()))
                        .unwrap_or_default(),
                ),
            };
            let live = m.in_flight().saturating_sub(settled);
            if live < max && launches.len() < pacing.concurrent_launches {
                wait = wait.min(launch_in.max(Duration::from_millis(5)));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            Some(done) = launches.next(), if !launches.is_empty() => {
                let (i, result) = done.map_err(|e| anyhow::anyhow!("a launch panicked: {e}"))?;
                match result {
                    Ok(handle) => {
                        backoff = pacing.backoff_first;
                        let r = &mut m.runs[i];
                        r.state = RunState::Launched;
                        r.handle = Some(handle.clone());
                        if stopping.is_some() {
                            // Launched while the fleet was being stopped: stop it too.
                            ended_by.insert(i, HostEnd::Interrupted);
                            stop_sent.insert(i, Instant::now());
                            backend.stop(&handle, "lackey: the fleet was stopped").await;
                        }
                        view.changed(&m, i);
                    }
                    Err(LaunchError::Retry(why)) => {
                        m.runs[i].state = RunState::Queued;
                        if stopping.is_some() {
                            m.runs[i].state = RunState::NotRun;
                            m.runs[i].not_run = stopping.as_ref().map(|s| s.0.clone());
                        } else {
                            view.note(&format!(
                                "run {}: {why}; launches pause for {}s, then it is tried again",
                                m.runs[i].run_id,
                                backoff.as_secs_f64()
                            ));
                            paused_until = Some(Instant::now() + backoff);
                            backoff = (backoff * 2).min(pacing.backoff_max);
                        }
                        view.changed(&m, i);
                    }
                    Err(LaunchError::Failed(why)) => {
                        // Nothing runs: the run ends as an error, with the reason.
                        m.runs[i].state = RunState::Launched;
                        m.runs[i].handle = None;
                        ended_by.insert(i, HostEnd::Failed(why));
                        stopped_seen.insert(i);
                        to_collect.push(i);
                    }
                }
                dirty = true;
            }
            Some(done) = collects.next(), if !collects.is_empty() => {
                let (i, summary) = done.map_err(|e| anyhow::anyhow!("a collection panicked: {e}"))?;
                collecting.remove(&i);
                stopped_seen.remove(&i);
                let r = &mut m.runs[i];
                r.state = RunState::Done;
                r.result = Some(RunResult::of(&summary));
                r.interrupted = matches!(ended_by.get(&i), Some(HostEnd::Interrupted));
                summaries.insert(r.run_id.clone(), summary);
                dirty = true;
                view.changed(&m, i);
            }
            Some((watched, result, lines)) = poll_rx.recv() => {
                polling = false;
                for (i, h) in &watched {
                    if let Some(l) = lines.get(h) {
                        view.log_line(*i, l);
                    }
                }
                match result {
                    Ok(states) => {
                        tick = pacing.tick;
                        for (i, h) in &watched {
                            let i = *i;
                            // Skip a run that moved on while the poll was under way.
                            if m.runs[i].state != RunState::Launched || stopped_seen.contains(&i) {
                                continue;
                            }
                            match states.get(h) {
                                Some(p) => {
                                    missing.remove(&i);
                                    if m.runs[i].status.as_deref() != Some(p.status.as_str()) {
                                        m.runs[i].status = Some(p.status.clone());
                                        dirty = true;
                                        view.changed(&m, i);
                                    }
                                    if p.stopped {
                                        stopped_seen.insert(i);
                                        to_collect.push(i);
                                    }
                                }
                                None => {
                                    let n = missing.entry(i).or_default();
                                    *n += 1;
                                    if *n >= MISSING_POLLS {
                                        stopped_seen.insert(i);
                                        to_collect.push(i);
                                    }
                                }
                            }
                        }
                    }
                    Err(e) => {
                        // Throttled or unreachable: poll less often, lose nothing.
                        tick = (tick * 2).min(Duration::from_secs(15));
                        view.note(&format!(
                            "polling failed ({e:#}); next poll in {}s",
                            tick.as_secs()
                        ));
                    }
                }
            }
            _ = cancel.cancelled(), if stopping.is_none() => {}
        }
    }
    store.save(&m).await?;
    view.finished(&m);
    let (interrupted, stopped) = match &stopping {
        Some((_, true)) => (true, false),
        Some((_, false)) => (false, true),
        None => (false, false),
    };
    Ok(Driven {
        manifest: m,
        interrupted,
        stopped,
        summaries,
    })
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::super::view::LinesView;
    use super::super::{tasks, FleetOptions, Where};
    use super::*;
    use crate::summary::{Outcome, Runtime, Usage};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    /// A scripted run's outcome and tokens, by task.
    type OutcomeFn = fn(&str) -> (Outcome, u64);

    /// A backend whose runs take `polls` polls to stop; records the most runs alive at
    /// once; refuses some launches for capacity.
    #[derive(Default)]
    struct Fake {
        alive: Mutex<HashMap<String, u32>>,
        most_alive: AtomicUsize,
        launched: Mutex<Vec<String>>,
        stopped: Mutex<Vec<String>>,
        /// Launch calls answered with a capacity error (before the one that succeeds).
        capacity_errors: Mutex<HashMap<String, u32>>,
        refuse_first: u32,
        polls_to_finish: u32,
        outcome: Option<OutcomeFn>,
        hang: bool,
        /// Runs already launched by an earlier (dead) CLI.
        earlier: Mutex<HashMap<String, String>>,
        /// Poll and last-line calls made.
        polls: AtomicUsize,
        line_reads: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl FleetBackend for Fake {
        fn pacing(&self) -> Pacing {
            Pacing {
                launches_per_s: 1000.0,
                launch_burst: 1000.0,
                tick: Duration::from_millis(5),
                launch_batch_every: Duration::ZERO,
                backoff_first: Duration::from_millis(5),
                backoff_max: Duration::from_millis(20),
                ..Pacing::default()
            }
        }
        async fn launch(&self, run: &FleetRun, _: &FleetTask) -> Result<String, LaunchError> {
            {
                let mut c = self.capacity_errors.lock().unwrap();
                let n = c.entry(run.run_id.clone()).or_default();
                if *n < self.refuse_first {
                    *n += 1;
                    return Err(LaunchError::Retry("RESOURCE:FARGATE (no capacity)".into()));
                }
            }
            if run.run_id.ends_with("bad!") {
                return Err(LaunchError::Failed("bad".into()));
            }
            let mut alive = self.alive.lock().unwrap();
            alive.insert(run.run_id.clone(), 0);
            self.most_alive.fetch_max(alive.len(), Ordering::SeqCst);
            self.launched.lock().unwrap().push(run.run_id.clone());
            Ok(format!("arn:{}", run.run_id))
        }
        async fn poll(&self, handles: &[String]) -> anyhow::Result<HashMap<String, Polled>> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            let mut alive = self.alive.lock().unwrap();
            let mut out = HashMap::new();
            for h in handles {
                let id = h.trim_start_matches("arn:").to_string();
                let Some(n) = alive.get_mut(&id) else {
                    out.insert(
                        h.clone(),
                        Polled {
                            status: "STOPPED".into(),
                            stopped: true,
                        },
                    );
                    continue;
                };
                *n += 1;
                let done = !self.hang && *n > self.polls_to_finish;
                out.insert(
                    h.clone(),
                    Polled {
                        status: if done { "STOPPED" } else { "RUNNING" }.into(),
                        stopped: done,
                    },
                );
                if done {
                    alive.remove(&id);
                }
            }
            Ok(out)
        }
        async fn last_lines(&self, handles: &[String]) -> HashMap<String, String> {
            self.line_reads.fetch_add(1, Ordering::SeqCst);
            let alive = self.alive.lock().unwrap();
            handles
                .iter()
                .filter_map(|h| {
                    let n = alive.get(h.trim_start_matches("arn:"))?;
                    Some((h.clone(), format!("{h} says {n}")))
                })
                .collect()
        }
        async fn stop(&self, handle: &str, _: &str) {
            let id = handle.trim_start_matches("arn:").to_string();
            self.alive.lock().unwrap().remove(&id);
            self.stopped.lock().unwrap().push(id);
        }
        async fn collect(
            &self,
            run: &FleetRun,
            task: &FleetTask,
            _: Option<&str>,
            end: Option<HostEnd>,
        ) -> RunSummary {
            let (outcome, tokens) = match (&end, self.outcome) {
                (Some(_), _) => (Outcome::Error, 0),
                (None, Some(f)) => f(&task.task),
                (None, None) => (Outcome::Success, 0),
            };
            RunSummary {
                run_id: run.run_id.clone(),
                task: task.task.clone(),
                outcome,
                runtime: Runtime::Cloud,
                branch: String::new(),
                base_sha: None,
                head_sha: None,
                started_at: String::new(),
                finished_at: String::new(),
                duration_s: 1.0,
                steps: vec![],
                usage: Usage {
                    output_tokens: tokens,
                    ..Usage::default()
                },
                pr_url: None,
                s3_prefix: None,
                error: end.map(|e| format!("{e:?}")),
            }
        }
        async fn find(&self, run_ids: &[String]) -> anyhow::Result<HashMap<String, String>> {
            let earlier = self.earlier.lock().unwrap();
            Ok(run_ids
                .iter()
                .filter_map(|id| earlier.get(id).map(|h| (id.clone(), h.clone())))
                .collect())
        }
    }

    #[derive(Default)]
    struct MemStore {
        saves: Mutex<Vec<Manifest>>,
        stop: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl Store for MemStore {
        async fn save(&self, m: &Manifest) -> anyhow::Result<()> {
            self.saves.lock().unwrap().push(m.clone());
            Ok(())
        }
        async fn stop_requested(&self, _: &str) -> bool {
            self.stop.load(Ordering::SeqCst)
        }
    }

    fn manifest(n: usize, max_parallel: usize, attempts: u32) -> Manifest {
        let text: String = (0..n).map(|i| format!("task {i}\n")).collect();
        let tasks = tasks::parse("t", &text).unwrap();
        Manifest::new(
            Where::Cloud,
            &text,
            &tasks,
            FleetOptions {
                stubs: true,
                ..FleetOptions::new(max_parallel, attempts)
            },
            |_| false,
        )
    }

    fn run(
        m: Manifest,
        fake: Arc<Fake>,
        store: Arc<MemStore>,
        cancel: CancellationToken,
    ) -> (Driven, Vec<String>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let mut view = LinesView::new(Box::new(move |l| sink.lock().unwrap().push(l)));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let d = rt
            .block_on(drive(m, fake, store, &mut view, cancel))
            .unwrap();
        let l = lines.lock().unwrap().clone();
        (d, l)
    }

    #[test]
    fn never_more_than_max_parallel_and_every_run_finishes() {
        let fake = Arc::new(Fake {
            polls_to_finish: 3,
            ..Fake::default()
        });
        let (d, _) = run(
            manifest(30, 5, 1),
            fake.clone(),
            Arc::default(),
            CancellationToken::new(),
        );
        assert_eq!(fake.most_alive.load(Ordering::SeqCst), 5);
        assert_eq!(fake.launched.lock().unwrap().len(), 30);
        assert_eq!(d.manifest.counts().success, 30);
        assert!(d.manifest.all_succeeded());
        assert_eq!(d.summaries.len(), 30);
    }

    #[test]
    fn capacity_errors_are_retried_and_nothing_is_lost() {
        let fake = Arc::new(Fake {
            polls_to_finish: 1,
            refuse_first: 2,
            ..Fake::default()
        });
        let (d, lines) = run(
            manifest(8, 3, 1),
            fake.clone(),
            Arc::default(),
            CancellationToken::new(),
        );
        let launched = fake.launched.lock().unwrap().clone();
        assert_eq!(launched.len(), 8, "each run launched exactly once");
        let unique: HashSet<_> = launched.iter().collect();
        assert_eq!(unique.len(), 8);
        assert_eq!(d.manifest.counts().success, 8);
        assert!(fake.most_alive.load(Ordering::SeqCst) <= 3);
        assert!(
            lines
                .iter()
                .any(|l| l.contains("RESOURCE:FARGATE (no capacity); launches pause")),
            "{lines:#?}"
        );
    }

    #[test]
    fn the_budget_stops_launches_and_says_what_did_not_run() {
        let fake = Arc::new(Fake {
            polls_to_finish: 1,
            outcome: Some(|_| (Outcome::Success, 400)),
            ..Fake::default()
        });
        let mut m = manifest(10, 2, 1);
        m.options.max_tokens = Some(1000);
        let (d, _) = run(m, fake.clone(), Arc::default(), CancellationToken::new());
        let c = d.manifest.counts();
        // Two in flight at a time: the third finished run crosses 1000 tokens; the
        // runs in flight when it did still finish.
        assert!(c.success >= 3 && c.success <= 4, "{c:?}");
        assert_eq!(c.success + c.not_run, 10);
        assert_eq!(fake.launched.lock().unwrap().len(), c.success);
        let why = d
            .manifest
            .runs
            .iter()
            .find(|r| r.state == RunState::NotRun)
            .and_then(|r| r.not_run.clone())
            .unwrap();
        assert!(why.starts_with("budget: finished runs used "), "{why}");
        assert!(!d.manifest.all_succeeded());
    }

    #[test]
    fn mixed_outcomes_are_counted_and_any_successful_attempt_counts() {
        let fake = Arc::new(Fake {
            polls_to_finish: 1,
            outcome: Some(|t| match t {
                "task 0" => (Outcome::TestFailure, 0),
                "task 1" => (Outcome::ScopeDisagreement, 0),
                _ => (Outcome::Success, 0),
            }),
            ..Fake::default()
        });
        let (d, _) = run(
            manifest(4, 2, 2),
            fake,
            Arc::default(),
            CancellationToken::new(),
        );
        let c = d.manifest.counts();
        assert_eq!(
            (c.success, c.test_failure, c.scope_disagreement, c.error),
            (4, 2, 2, 0)
        );
        assert!(!d.manifest.all_succeeded());
    }

    #[test]
    fn ctrl_c_stops_every_run_and_launches_no_more() {
        let fake = Arc::new(Fake {
            hang: true,
            ..Fake::default()
        });
        let cancel = CancellationToken::new();
        let c2 = cancel.clone();
        let f2 = fake.clone();
        std::thread::spawn(move || {
            while f2.launched.lock().unwrap().len() < 3 {
                std::thread::sleep(Duration::from_millis(5));
            }
            c2.cancel();
        });
        let (d, _) = run(manifest(6, 3, 1), fake.clone(), Arc::default(), cancel);
        assert!(d.interrupted);
        let mut stopped = fake.stopped.lock().unwrap().clone();
        let mut launched = fake.launched.lock().unwrap().clone();
        stopped.sort();
        launched.sort();
        assert_eq!(stopped, launched, "every launched run was stopped");
        let c = d.manifest.counts();
        assert_eq!((c.error, c.not_run), (3, 3), "{c:?}");
    }

    #[test]
    fn stop_fleet_from_another_shell_stops_it() {
        let fake = Arc::new(Fake {
            hang: true,
            ..Fake::default()
        });
        let store = Arc::new(MemStore::default());
        let s2 = store.clone();
        let f2 = fake.clone();
        std::thread::spawn(move || {
            while f2.launched.lock().unwrap().len() < 2 {
                std::thread::sleep(Duration::from_millis(5));
            }
            s2.stop.store(true, Ordering::SeqCst);
        });
        let (d, _) = run(
            manifest(4, 2, 1),
            fake.clone(),
            store,
            CancellationToken::new(),
        );
        assert!(d.stopped && !d.interrupted);
        assert_eq!(fake.stopped.lock().unwrap().len(), 2);
        assert_eq!(d.manifest.counts().not_run, 2);
    }

    #[test]
    fn a_resumed_fleet_finds_what_was_launched_and_launches_the_rest_once() {
        let fake = Arc::new(Fake {
            polls_to_finish: 1,
            ..Fake::default()
        });
        let mut m = manifest(5, 5, 1);
        // The dead CLI had marked three runs launching; two of them reached the backend.
        for i in 0..3 {
            m.runs[i].state = RunState::Launching;
        }
        m.runs[3].state = RunState::Done;
        m.runs[3].result = Some(RunResult {
            outcome: Outcome::Success,
            duration_s: 1.0,
            tokens: 0,
            cost_usd: None,
            pr_url: None,
            error: None,
        });
        for i in 0..2 {
            let id = m.runs[i].run_id.clone();
            fake.alive.lock().unwrap().insert(id.clone(), 0);
            fake.earlier
                .lock()
                .unwrap()
                .insert(id.clone(), format!("arn:{id}"));
        }
        let store = Arc::new(MemStore::default());
        let (d, _) = run(
            m.clone(),
            fake.clone(),
            store.clone(),
            CancellationToken::new(),
        );
        let launched = fake.launched.lock().unwrap().clone();
        assert_eq!(
            launched,
            vec![m.runs[2].run_id.clone(), m.runs[4].run_id.clone()],
            "only the runs that never reached the backend are launched"
        );
        assert_eq!(d.manifest.counts().success, 5);
        // Every save made before a launch already said `launching` for it.
        let saves = store.saves.lock().unwrap();
        for id in &launched {
            let first_launching = saves.iter().position(|s| {
                s.runs
                    .iter()
                    .any(|r| &r.run_id == id && r.state == RunState::Launching)
            });
            assert!(
                first_launching.is_some(),
                "{id} was never saved as launching"
            );
        }
    }

    /// A view that shows log lines and keeps them.
    #[derive(Default)]
    struct LogView(Vec<(usize, String)>);

    impl View for LogView {
        fn started(&mut self, _: &Manifest) {}
        fn changed(&mut self, _: &Manifest, _: usize) {}
        fn note(&mut self, _: &str) {}
        fn finished(&mut self, _: &Manifest) {}
        fn shows_log_lines(&self) -> bool {
            true
        }
        fn log_line(&mut self, i: usize, line: &str) {
            self.0.push((i, line.to_string()));
        }
    }

    #[test]
    fn log_lines_are_read_once_per_poll_and_only_for_a_view_that_shows_them() {
        let fake = Arc::new(Fake {
            polls_to_finish: 3,
            ..Fake::default()
        });
        let m = manifest(6, 3, 1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut view = LogView::default();
        let d = rt
            .block_on(drive(
                m,
                fake.clone(),
                Arc::new(MemStore::default()),
                &mut view,
                CancellationToken::new(),
            ))
            .unwrap();
        assert_eq!(d.manifest.counts().success, 6);
        // One batched read beside each batched poll, never more.
        let (polls, reads) = (
            fake.polls.load(Ordering::SeqCst),
            fake.line_reads.load(Ordering::SeqCst),
        );
        assert_eq!(reads, polls, "{reads} line reads for {polls} polls");
        // Each line reached the view as the run it belongs to.
        assert!(!view.0.is_empty());
        for (i, line) in &view.0 {
            assert!(
                line.starts_with(&format!("arn:{} says ", d.manifest.runs[*i].run_id)),
                "run {i}: {line}"
            );
        }
        // The line view shows none, so none are read.
        let quiet = Arc::new(Fake {
            polls_to_finish: 1,
            ..Fake::default()
        });
        run(
            manifest(3, 3, 1),
            quiet.clone(),
            Arc::default(),
            CancellationToken::new(),
        );
        assert!(quiet.polls.load(Ordering::SeqCst) > 0);
        assert_eq!(quiet.line_reads.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_failed_launch_is_an_error_run_not_a_retry() {
        let fake = Arc::new(Fake {
            polls_to_finish: 1,
            ..Fake::default()
        });
        let mut m = manifest(2, 2, 1);
        m.runs[0].run_id = format!("{}bad!", &m.runs[0].run_id[..16]);
        let (d, _) = run(m, fake.clone(), Arc::default(), CancellationToken::new());
        let c = d.manifest.counts();
        assert_eq!((c.success, c.error), (1, 1));
        assert_eq!(fake.launched.lock().unwrap().len(), 1);
    }

    #[test]
    fn the_line_view_says_one_line_per_change() {
        let fake = Arc::new(Fake {
            polls_to_finish: 1,
            refuse_first: 1,
            outcome: Some(|t| match t {
                "task 1" => (Outcome::TestFailure, 1200),
                _ => (Outcome::Success, 300),
            }),
            ..Fake::default()
        });
        let mut m = manifest(3, 1, 1);
        m.options.max_tokens = Some(1400);
        let (d, lines) = run(m, fake, Arc::default(), CancellationToken::new());
        assert_eq!(d.manifest.counts().not_run, 1);
        insta::with_settings!({filters => vec![
            (r"\b\d{8}-\d{6}-[0-9a-f]{4}\b", "[RUN_ID]"),
        ]}, {
            insta::assert_snapshot!(lines.join("\n"));
        });
    }
}
