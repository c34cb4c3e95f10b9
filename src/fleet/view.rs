//! The live view of a fleet.
//!
//! * [`LinesView`] (stderr is not a terminal, or `--no-progress`): one line per state
//!   change of a run, so a log or CI output reads as a history.
//! * [`TableView`] (a terminal): a table redrawn in place, one row per run in flight
//!   (then the latest finished), id, state, elapsed, task (clipped), the run's last log
//!   line, and a footer with counts by state and outcome.
//!
//! Log lines come from the run's container: they are untrusted, so escape sequences
//! are dropped whole and every other control character becomes a space before they are
//! drawn ([`crate::output::without_escapes`], beside [`crate::output::visible`], which
//! shows them escaped where a run's whole log is printed).

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
    /// Whether the view shows each run's last log line (the engine reads them only then).
    fn shows_log_lines(&self) -> bool {
        false
    }
    /// The last log line of run `i`, as read this tick.
    fn log_line(&mut self, _i: usize, _line: &str) {}
    fn finished(&mut self, m: &Manifest);
}

/// `add a hello world test to the…`: at most `n` characters.
pub fn clip(s: &str, n: usize) -> String {
    // A task's text or a run's error may hold escape sequences: dropped whole.
    let s = crate::output::without_escapes(s);
    let one_line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= n {
        one_line
    } else {
        let mut c: String = one_line.chars().take(n.saturating_sub(1)).collect();
        c.push('…');
        c
    }
}

/// A log line fit for a terminal: the minion's timestamp dropped (`<time> [step] …`
/// → `[step] …`), escape sequences dropped whole and every other control character made
/// a space ([`crate::output::without_escapes`]), clipped to `n` characters.
pub fn log_line(line: &str, n: usize) -> String {
    let shown = match line.split_once(' ') {
        Some((ts, rest)) if rest.starts_with('[') && ts.contains('T') => rest,
        _ => line,
    };
    clip(&crate::output::without_escapes(shown), n)
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

/// Where the table is drawn: the terminal ([`crate::output::LiveTable`]), or a test's
/// recorder.
pub trait Screen: Send {
    fn show(&self, lines: &[String]);
    fn clear(&self);
}

impl Screen for crate::output::LiveTable {
    fn show(&self, lines: &[String]) {
        crate::output::LiveTable::show(self, lines);
    }
    fn clear(&self) {
        crate::output::LiveTable::clear(self);
    }
}

/// The table redrawn in place on a terminal.
pub struct TableView {
    table: Box<dyn Screen>,
    notes: Box<dyn FnMut(String) + Send>,
    since: HashMap<usize, Instant>,
    finished_order: Vec<usize>,
    logs: HashMap<usize, String>,
    drawn: Option<Instant>,
}

impl TableView {
    pub fn new(table: Box<dyn Screen>, notes: Box<dyn FnMut(String) + Send>) -> TableView {
        TableView {
            table,
            notes,
            since: HashMap::new(),
            finished_order: Vec::new(),
            logs: HashMap::new(),
            drawn: None,
        }
    }

    /// The table's lines: a header, the rows, the footer.
    fn lines(&self, m: &Manifest) -> Vec<String> {
        let mut rows: Vec<usize> = (0..m.runs.len())
            .filter(|&i| matches!(m.runs[i].state, RunState::Launching | RunState::Launched))
            .collect();
        rows.sort_by_key(|i| (self.since.get(i).copied(), *i));
        for &i in self.finished_order.iter().rev() {
            if rows.len() >= TABLE_ROWS {
                break;
            }
            rows.push(i);
        }
        rows.truncate(TABLE_ROWS);
        let mut lines = vec![format!(
            "{:<20}  {:<18}  {:>8}  {:<36}  {}",
            "RUN", "STATE", "ELAPSED", "TASK", "LAST LOG LINE"
        )];
        for i in rows {
            let r = &m.runs[i];
            let elapsed = match (r.state, &r.result) {
                (RunState::Done, Some(x)) => Duration::from_secs_f64(x.duration_s.max(0.0)),
                _ => self.since.get(&i).map(|t| t.elapsed()).unwrap_or_default(),
            };
            lines.push(format!(
                "{:<20}  {:<18}  {:>8}  {:<36}  {}",
                r.run_id,
                state_word(m, i),
                human_duration(Duration::from_secs(elapsed.as_secs())),
                clip(&m.task_of(r).task, 36),
                self.logs.get(&i).map(String::as_str).unwrap_or("")
            ));
        }
        lines.push(footer(m));
        lines
    }

    fn draw(&mut self, m: &Manifest) {
        self.table.show(&self.lines(m));
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

    fn shows_log_lines(&self) -> bool {
        true
    }

    fn log_line(&mut self, i: usize, line: &str) {
        self.logs.insert(i, log_line(line, 60));
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

    /// A screen that keeps every frame drawn.
    struct Recorder(std::sync::Arc<std::sync::Mutex<Vec<Vec<String>>>>);

    impl Screen for Recorder {
        fn show(&self, lines: &[String]) {
            self.0.lock().unwrap().push(lines.to_vec());
        }
        fn clear(&self) {
            self.0.lock().unwrap().push(vec![]);
        }
    }

    #[test]
    fn the_terminal_table_shows_runs_states_and_last_log_lines() {
        use super::super::{tasks, FleetOptions, RunResult};
        use crate::summary::Outcome;
        let text = "add a hello world test to the project and make sure it passes on CI\nfix the flaky test\nupdate the README\nbump the version\n";
        let lines = tasks::parse("t", text).unwrap();
        let mut m = Manifest::new(Where::Cloud, text, &lines, FleetOptions::new(2, 1), |_| {
            false
        });
        m.fleet_id = "fleet-20261128-190000-ab12".into();
        for (i, r) in m.runs.iter_mut().enumerate() {
            r.run_id = format!("20261128-19000{i}-0a0{i}");
        }
        let frames = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let notes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let n2 = notes.clone();
        let mut view = TableView::new(
            Box::new(Recorder(frames.clone())),
            Box::new(move |l| n2.lock().unwrap().push(l)),
        );
        assert!(view.shows_log_lines());
        view.started(&m);
        for i in 0..3 {
            m.runs[i].state = RunState::Launching;
            view.changed(&m, i);
        }
        m.runs[0].state = RunState::Launched;
        m.runs[0].status = Some("RUNNING".into());
        m.runs[1].state = RunState::Launched;
        m.runs[1].status = Some("PROVISIONING".into());
        m.runs[2].state = RunState::Done;
        m.runs[2].result = Some(RunResult {
            outcome: Outcome::Success,
            duration_s: 61.0,
            tokens: 12_345,
            cost_usd: Some(0.0441),
            pr_url: None,
            error: None,
        });
        view.changed(&m, 2);
        view.log_line(
            0,
            "2026-11-28T19:00:05.120Z [execute] editing hello.sh: adding the hello world test and its fixture",
        );
        view.log_line(1, "\u{1b}[2J\u{1b}]0;owned\u{7}cloning the repository");
        view.draw(&m);
        view.finished(&m);
        let frames = frames.lock().unwrap();
        let table = frames
            .iter()
            .rev()
            .find(|f| !f.is_empty())
            .unwrap()
            .join("\n");
        assert!(
            frames.last().unwrap().is_empty(),
            "the table is cleared at the end"
        );
        assert!(
            !table.contains('\u{1b}'),
            "an escape sequence reached the table"
        );
        insta::with_settings!({filters => vec![(r"\b(\d+ms|\d+\.\ds)\b", "[ELAPSED]")]}, {
            insta::assert_snapshot!(table + "\n---\n" + &notes.lock().unwrap().join("\n"));
        });
    }

    #[test]
    fn a_log_line_loses_its_time_and_every_control_character() {
        assert_eq!(
            log_line("2026-11-28T19:00:01.123Z [execute] editing hello.sh", 60),
            "[execute] editing hello.sh"
        );
        // An escape sequence from the container cannot reach the terminal.
        let hostile = "\u{1b}]0;pwned\u{7}\u{1b}[2Jcleared\r\u{9b}31m";
        let shown = log_line(hostile, 60);
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert_eq!(shown, "cleared");
        // Text around the sequences stays, spaced as the line was.
        assert_eq!(
            log_line(
                "a\u{1b}[1;31mred\u{1b}[0m b\u{1b}]8;;http://x\u{1b}\\link\tc\u{1b}",
                60
            ),
            "ared blink c"
        );
    }
}
