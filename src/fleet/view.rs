//! The live view of a fleet.
//!
//! * [`LinesView`] (stderr is not a terminal, or `--no-progress`): one line per state
//!   change of a run, so a log or CI output reads as a history.
//! * [`TableView`] (a terminal): a table redrawn in place, one row per run in flight
//!   (then the latest finished), id, task (clipped), state, elapsed, and a footer with
//!   counts by state and outcome.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{Manifest, RunState, Where};
use crate::output::human_duration;

/// What the engine tells the view.
pub trait View: Send {
    fn started(&mut self, m: &Manifest);
    /// Run `i` changed (state or backend status).
    fn changed(&mut self, m: &Manifest, i: usize);
    /// Something worth saying that is not a run's state (a retry, a stop).
    fn note(&mut self, message: &str);
    /// Called every loop turn: a redraw, if the view draws.
    fn tick(&mut self, _m: &Manifest) {}
    fn finished(&mut self, m: &Manifest);
}

/// `add a hello world test to the…`: at most `n` characters.
pub fn clip(s: &str, n: usize) -> String {
    let one_line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= n {
        one_line
    } else {
        let mut c: String = one_line.chars().take(n.saturating_sub(1)).collect();
        c.push('…');
        c
    }
}

/// The state word of run `i`: its backend status while launched, its outcome when done.
pub fn state_word(m: &Manifest, i: usize) -> String {
    let r = &m.runs[i];
    match r.state {
        RunState::Queued => "queued".into(),
        RunState::Launching => "launching".into(),
        RunState::Launched => r.status.clone().unwrap_or_else(|| "launched".into()),
        RunState::Done => r
            .result
            .as_ref()
            .map(|x| x.outcome.to_string())
            .unwrap_or_else(|| "done".into()),
        RunState::NotRun => "not run".into(),
    }
}

/// The footer: `30 runs: 2 queued, 5 in flight, 23 done (21 success, 2 error) · 12.3k tokens`.
pub fn footer(m: &Manifest) -> String {
    let c = m.counts();
    let mut done = Vec::new();
    for (n, what) in [
        (c.success, "success"),
        (c.test_failure, "test_failure"),
        (c.scope_disagreement, "scope_disagreement"),
        (c.error, "error"),
    ] {
        if n > 0 {
            done.push(format!("{n} {what}"));
        }
    }
    let mut s = format!(
        "{} runs: {} queued, {} in flight, {} done",
        m.runs.len(),
        c.queued,
        c.in_flight,
        c.done()
    );
    if !done.is_empty() {
        s.push_str(&format!(" ({})", done.join(", ")));
    }
    if c.not_run > 0 {
        s.push_str(&format!(", {} not run", c.not_run));
    }
    let (tokens, usd) = m.spent();
    if tokens > 0 {
        s.push_str(&format!(" · {} tokens", crate::cost::format_tokens(tokens)));
    }
    if let Some(usd) = usd {
        s.push_str(&format!(" · {}", crate::cost::format_usd(Some(usd))));
    }
    s
}

fn header(m: &Manifest) -> String {
    format!(
        "Fleet {}: {} runs of {} tasks, at most {} at once, {}",
        m.fleet_id,
        m.runs.len(),
        m.tasks.len(),
        m.options.max_parallel,
        match m.place {
            Where::Cloud => "on ECS Fargate",
            Where::Local => "in local Docker",
        }
    )
}

/// One line per change, through `sink` (the printer's status stream).
pub struct LinesView {
    sink: Box<dyn FnMut(String) + Send>,
    last: HashMap<usize, String>,
}

impl LinesView {
    pub fn new(sink: Box<dyn FnMut(String) + Send>) -> LinesView {
        LinesView {
            sink,
            last: HashMap::new(),
        }
    }

    /// The line for run `i`, or None when it says nothing new.
    fn line(&mut self, m: &Manifest, i: usize) -> Option<String> {
        let word = state_word(m, i);
        if self.last.get(&i) == Some(&word) {
            return None;
        }
        self.last.insert(i, word.clone());
        let r = &m.runs[i];
        let task = clip(&m.task_of(r).task, 48);
        let attempt = if m.options.attempts > 1 {
            format!(" (attempt {})", r.attempt)
        } else {
            String::new()
        };
        let mut line = format!("{}  {word:<18}  {task}{attempt}", r.run_id);
        match r.state {
            RunState::Done => {
                if let Some(x) = &r.result {
                    line.push_str(&format!(
                        "  [{}, {} tokens]",
                        human_duration(Duration::from_secs_f64(x.duration_s.max(0.0))),
                        x.tokens
                    ));
                    if let Some(e) = &x.error {
                        line.push_str(&format!(": {}", clip(e, 120)));
                    }
                }
            }
            RunState::NotRun => {
                if let Some(why) = &r.not_run {
                    line.push_str(&format!(": {why}"));
                }
            }
            _ => {}
        }
        Some(line)
    }
}

impl View for LinesView {
    fn started(&mut self, m: &Manifest) {
        (self.sink)(header(m));
        // A resumed fleet: say where each run already is.
        for i in 0..m.runs.len() {
            if m.runs[i].state != RunState::Queued {
                if let Some(l) = self.line(m, i) {
                    (self.sink)(l);
                }
            }
        }
    }

    fn changed(&mut self, m: &Manifest, i: usize) {
        if let Some(l) = self.line(m, i) {
            (self.sink)(l);
        }
    }

    fn note(&mut self, message: &str) {
        (self.sink)(format!("note: {message}"));
    }

    fn finished(&mut self, m: &Manifest) {
        for i in 0..m.runs.len() {
            if m.runs[i].state == RunState::NotRun {
                if let Some(l) = self.line(m, i) {
                    (self.sink)(l);
                }
            }
        }
        (self.sink)(format!("Fleet {}: {}", m.fleet_id, footer(m)));
    }
}

/// Most rows the table shows (the footer counts the rest).
const TABLE_ROWS: usize = 20;

/// The table redrawn in place on a terminal.
pub struct TableView {
    table: crate::output::LiveTable,
    notes: Box<dyn FnMut(String) + Send>,
    since: HashMap<usize, Instant>,
    finished_order: Vec<usize>,
    drawn: Option<Instant>,
}

impl TableView {
    pub fn new(table: crate::output::LiveTable, notes: Box<dyn FnMut(String) + Send>) -> TableView {
        TableView {
            table,
            notes,
            since: HashMap::new(),
            finished_order: Vec::new(),
            drawn: None,
        }
    }

    fn draw(&mut self, m: &Manifest) {
        let mut rows: Vec<usize> = (0..m.runs.len())
            .filter(|&i| matches!(m.runs[i].state, RunState::Launching | RunState::Launched))
            .collect();
        rows.sort_by_key(|i| self.since.get(i).copied());
        for &i in self.finished_order.iter().rev() {
            if rows.len() >= TABLE_ROWS {
                break;
            }
            rows.push(i);
        }
        rows.truncate(TABLE_ROWS);
        let mut lines = vec![format!(
            "{:<20}  {:<18}  {:>8}  {}",
            "RUN", "STATE", "ELAPSED", "TASK"
        )];
        for i in rows {
            let r = &m.runs[i];
            let elapsed = match (r.state, &r.result) {
                (RunState::Done, Some(x)) => Duration::from_secs_f64(x.duration_s.max(0.0)),
                _ => self.since.get(&i).map(|t| t.elapsed()).unwrap_or_default(),
            };
            lines.push(format!(
                "{:<20}  {:<18}  {:>8}  {}",
                r.run_id,
                state_word(m, i),
                human_duration(Duration::from_secs(elapsed.as_secs())),
                clip(&m.task_of(r).task, 48)
            ));
        }
        lines.push(footer(m));
        self.table.show(&lines);
        self.drawn = Some(Instant::now());
    }
}

impl View for TableView {
    fn started(&mut self, m: &Manifest) {
        (self.notes)(header(m));
        self.draw(m);
    }

    fn changed(&mut self, m: &Manifest, i: usize) {
        match m.runs[i].state {
            RunState::Launching => {
                self.since.insert(i, Instant::now());
            }
            RunState::Done | RunState::NotRun => {
                self.finished_order.retain(|&j| j != i);
                self.finished_order.push(i);
            }
            _ => {}
        }
    }

    fn note(&mut self, message: &str) {
        (self.notes)(format!("note: {message}"));
    }

    fn tick(&mut self, m: &Manifest) {
        // At most a few redraws a second, whatever the loop does.
        if self
            .drawn
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(250))
        {
            self.draw(m);
        }
    }

    fn finished(&mut self, m: &Manifest) {
        self.table.clear();
        (self.notes)(format!("Fleet {}: {}", m.fleet_id, footer(m)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_one_line_and_marks_the_cut() {
        assert_eq!(clip("fix\nthe   test", 20), "fix the test");
        assert_eq!(clip("abcdefghij", 5), "abcd…");
    }
}
