//! The one place lackey writes to the terminal.
//!
//! Results go to stdout, status to stderr, both through [`Printer`]: `--json` replaces
//! the human result with one JSON document, `-q` silences status, and progress bars and
//! spinners appear only when stderr is a terminal (and `--no-progress` is not given).
//! Library code never prints: it reports through the [`Reporter`] trait, which the
//! printer implements and tests replace with a recorder. Only this module touches
//! indicatif.

use std::fmt::Display;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// How a status line is coloured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    /// Progress and success (green, like cargo's `Compiling`).
    Good,
    /// Something worth a look (yellow).
    Warn,
    /// Removal or failure (red).
    Bad,
    /// Neutral information (cyan).
    Info,
}

/// A handle on one progress indicator; dropping it clears it.
pub trait Progress: Send + Sync {
    fn set_message(&self, message: &str);
    fn set_position(&self, pos: u64);
    fn set_length(&self, len: u64);
    fn finish(&self);
}

/// How library code tells the user what is happening, without printing itself.
pub trait Reporter: Send + Sync {
    /// A cargo-style status line: `    Creating s3 bucket `x``.
    fn status(&self, verb: &str, tone: Tone, message: &str);
    /// A warning line.
    fn warn(&self, message: &str);
    /// A plain informational line on stderr ("Minting GitHub App installation token...").
    fn info(&self, message: &str);
    /// A spinner while waiting on something; cleared when dropped.
    fn spinner(&self, message: &str) -> Box<dyn Progress>;
    /// A bar counting to `total` (bytes, layers); cleared when dropped.
    fn bar(&self, message: &str, total: u64) -> Box<dyn Progress>;
}

/// A reporter that discards everything (the minion's own reporting goes to its log).
pub struct Silent;

struct NoProgress;

impl Progress for NoProgress {
    fn set_message(&self, _: &str) {}
    fn set_position(&self, _: u64) {}
    fn set_length(&self, _: u64) {}
    fn finish(&self) {}
}

impl Reporter for Silent {
    fn status(&self, _: &str, _: Tone, _: &str) {}
    fn warn(&self, _: &str) {}
    fn info(&self, _: &str) {}
    fn spinner(&self, _: &str) -> Box<dyn Progress> {
        Box::new(NoProgress)
    }
    fn bar(&self, _: &str, _: u64) -> Box<dyn Progress> {
        Box::new(NoProgress)
    }
}

/// Output options from the global flags.
#[derive(Clone, Copy, Debug, Default)]
pub struct OutputOptions {
    pub json: bool,
    pub quiet: bool,
    pub verbose: u8,
    pub no_progress: bool,
}

/// Writes results to stdout and status to stderr.
#[derive(Clone)]
pub struct Printer {
    opts: OutputOptions,
    color: bool,
    progress: bool,
    multi: Arc<MultiProgress>,
    // Serialises writes so concurrent status lines from parallel applies never interleave.
    lock: Arc<Mutex<()>>,
}

impl Printer {
    pub fn new(opts: OutputOptions) -> Self {
        let stderr_tty = std::io::stderr().is_terminal();
        let color = stderr_tty && std::env::var_os("NO_COLOR").is_none();
        let progress = stderr_tty && !opts.no_progress && !opts.quiet;
        let multi = MultiProgress::with_draw_target(if progress {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        Printer {
            opts,
            color,
            progress,
            multi: Arc::new(multi),
            lock: Arc::new(Mutex::new(())),
        }
    }

    pub fn json_mode(&self) -> bool {
        self.opts.json
    }

    pub fn quiet(&self) -> bool {
        self.opts.quiet
    }

    pub fn verbose(&self) -> u8 {
        self.opts.verbose
    }

    fn paint(&self, text: &str, tone: Tone, bold: bool) -> String {
        if !self.color {
            return text.to_string();
        }
        let code = match tone {
            Tone::Good => "32",
            Tone::Warn => "33",
            Tone::Bad => "31",
            Tone::Info => "36",
        };
        let b = if bold { "1;" } else { "" };
        format!("\x1b[{b}{code}m{text}\x1b[0m")
    }

    fn err_line(&self, line: &str) {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        // Suspend progress bars so the line is not drawn over.
        self.multi.suspend(|| {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{line}");
        });
    }

    /// A result line on stdout (human mode only; JSON mode prints one document instead).
    /// Much of what is printed came from a run (its summary's branch, error, PR link):
    /// control characters are shown escaped, never sent to the terminal.
    pub fn result(&self, line: impl Display) {
        if self.opts.json {
            return;
        }
        let line = line.to_string();
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", printable(&line));
    }

    /// A line of content (a run's log) on stdout, in every mode: `--json` has no document
    /// to wrap a stream of log lines in.
    pub fn raw(&self, line: impl Display) {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
    }

    /// The one JSON document of a `--json` command, on stdout.
    pub fn json<T: Serialize + ?Sized>(&self, value: &T) {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = std::io::stdout().lock();
        let text = serde_json::to_string_pretty(value)
            .unwrap_or_else(|e| format!("{{\"error\": \"could not serialise output: {e}\"}}"));
        let _ = writeln!(out, "{text}");
    }

    /// Render an error chain as `error:` / `caused by:` / `hint:` lines on stderr.
    /// Shown even with `-q`: an error is never silent.
    pub fn error(&self, err: &anyhow::Error) {
        for (label, text) in crate::error::render(err) {
            let tone = match label {
                "error" => Tone::Bad,
                "hint" => Tone::Info,
                _ => Tone::Warn,
            };
            let head = self.paint(&format!("{label}:"), tone, true);
            self.err_line(&format!("{head} {}", printable(&text)));
        }
    }

    /// A status line that shows even in JSON mode (it goes to stderr) but not with `-q`.
    pub fn line(&self, text: impl Display) {
        if self.opts.quiet {
            return;
        }
        self.err_line(&printable(&text.to_string()));
    }
}

impl Reporter for Printer {
    fn status(&self, verb: &str, tone: Tone, message: &str) {
        if self.opts.quiet {
            return;
        }
        let verb = self.paint(&format!("{verb:>12}"), tone, true);
        self.err_line(&format!("{verb} {}", printable(message)));
    }

    fn warn(&self, message: &str) {
        let head = self.paint("warning:", Tone::Warn, true);
        self.err_line(&format!("{head} {}", printable(message)));
    }

    fn info(&self, message: &str) {
        if self.opts.quiet {
            return;
        }
        self.err_line(&printable(message));
    }

    fn spinner(&self, message: &str) -> Box<dyn Progress> {
        if !self.progress {
            return Box::new(NoProgress);
        }
        let pb = self.multi.add(ProgressBar::new_spinner());
        pb.set_style(
            ProgressStyle::with_template("{spinner:.cyan} {msg} {elapsed:.dim}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        pb.set_message(message.to_string());
        pb.enable_steady_tick(Duration::from_millis(100));
        Box::new(Bar(pb))
    }

    fn bar(&self, message: &str, total: u64) -> Box<dyn Progress> {
        if !self.progress {
            return Box::new(NoProgress);
        }
        let pb = self.multi.add(ProgressBar::new(total));
        pb.set_style(
            ProgressStyle::with_template(
                "{msg:24} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        pb.set_message(message.to_string());
        Box::new(Bar(pb))
    }
}

/// A block of lines redrawn in place (the fleet's table): one line per row, replaced
/// as a whole by [`LiveTable::show`], cleared when dropped. Only made on a terminal.
pub struct LiveTable {
    multi: Arc<MultiProgress>,
    rows: Mutex<Vec<ProgressBar>>,
}

impl Printer {
    /// A live table on stderr, or None when progress is not drawn (not a terminal,
    /// `--no-progress`, `-q`): the caller then prints one line per change instead.
    pub fn live_table(&self) -> Option<LiveTable> {
        if !self.progress {
            return None;
        }
        Some(LiveTable {
            multi: self.multi.clone(),
            rows: Mutex::new(Vec::new()),
        })
    }
}

impl LiveTable {
    pub fn show(&self, lines: &[String]) {
        let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        while rows.len() < lines.len() {
            let pb = self.multi.add(ProgressBar::new_spinner());
            pb.set_style(
                ProgressStyle::with_template("{msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            rows.push(pb);
        }
        while rows.len() > lines.len() {
            if let Some(pb) = rows.pop() {
                pb.finish_and_clear();
                self.multi.remove(&pb);
            }
        }
        for (pb, line) in rows.iter().zip(lines) {
            pb.set_message(line.clone());
        }
    }

    pub fn clear(&self) {
        self.show(&[]);
    }
}

impl Drop for LiveTable {
    fn drop(&mut self) {
        self.clear();
    }
}

struct Bar(ProgressBar);

impl Progress for Bar {
    fn set_message(&self, message: &str) {
        self.0.set_message(message.to_string());
    }
    fn set_position(&self, pos: u64) {
        self.0.set_position(pos);
    }
    fn set_length(&self, len: u64) {
        self.0.set_length(len);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// A reporter that records every line; used by tests and by the minion to keep status
/// lines in its log.
#[derive(Default, Clone)]
pub struct Recorder {
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.lines.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Reporter for Recorder {
    fn status(&self, verb: &str, _: Tone, message: &str) {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("{verb} {message}"));
    }
    fn warn(&self, message: &str) {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("warning: {message}"));
    }
    fn info(&self, message: &str) {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(message.to_string());
    }
    fn spinner(&self, _: &str) -> Box<dyn Progress> {
        Box::new(NoProgress)
    }
    fn bar(&self, _: &str, _: u64) -> Box<dyn Progress> {
        Box::new(NoProgress)
    }
}

/// `1536` → `1.5 KiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// Format a duration the way people read it: `850ms`, `4.2s`, `3m 05s`.
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        let s = d.as_secs();
        format!("{}m {:02}s", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(human_duration(Duration::from_millis(4200)), "4.2s");
        assert_eq!(human_duration(Duration::from_secs(185)), "3m 05s");
    }
}

/// A line that came from a run (its log, its container's output) made safe for a
/// terminal: control characters but the tab are shown escaped (`\u{1b}`), so a hostile
/// process cannot move the cursor, rewrite earlier lines or set the clipboard (OSC 52).
/// [`visible`] for text of several lines: line breaks and tabs kept, every other control
/// character (an escape sequence's ESC among them) shown escaped.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| c.is_control() && c != '\t' && c != '\n';
    if !text.chars().any(bad) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if bad(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

pub fn visible(line: &str) -> std::borrow::Cow<'_, str> {
    if !line.chars().any(|c| c.is_control() && c != '\t') {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 8);
    for c in line.chars() {
        if c.is_control() && c != '\t' {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A line that came from a run made fit for a one-line cell of a live table (a fleet's
/// last log lines), where [`visible`]'s escapes would only be noise: escape sequences
/// (CSI `ESC [ … final`, OSC `ESC ] … BEL` or `ESC ] … ESC \\`, their 8-bit
/// introducers, and `ESC x`) are dropped whole, every other control character becomes a
/// space. Nothing it returns can move the cursor or reach the terminal as a command.
pub fn without_escapes(line: &str) -> String {
    let mut printable = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        // The 8-bit CSI and OSC introducers mean what `ESC [` and `ESC ]` do.
        let kind = match c {
            '\u{1b}' => chars.next(),
            '\u{9b}' => Some('['),
            '\u{9d}' => Some(']'),
            _ => {
                printable.push(if c.is_control() { ' ' } else { c });
                continue;
            }
        };
        match kind {
            // CSI: parameters and intermediates, up to a final byte in @..~.
            Some('[') => {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            // OSC: up to BEL or the string terminator (ESC \, or its 8-bit form).
            Some(']') => {
                while let Some(c) = chars.next() {
                    if c == '\u{7}' || c == '\u{9c}' {
                        break;
                    }
                    if c == '\u{1b}' {
                        if chars.peek() == Some(&'\\') {
                            chars.next();
                        }
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    printable
}

#[cfg(test)]
mod visible_tests {
    #[test]
    fn printed_results_keep_their_lines_and_lose_their_escapes() {
        assert_eq!(super::printable("a\n\tb"), "a\n\tb");
        let error = "done\u{1b}]52;c;Y3Vy\u{7}\n\u{1b}[1A\u{1b}[2Koutcome:   success";
        let shown = super::printable(error);
        assert!(
            !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
            "{shown}"
        );
        assert_eq!(shown.lines().count(), 2);
    }

    #[test]
    fn control_characters_from_a_run_are_shown_escaped() {
        assert_eq!(super::visible("plain\ttext"), "plain\ttext");
        let osc52 = "\u{1b}]52;c;Y3VybCBldmlsfHNo\u{7}done";
        let shown = super::visible(osc52);
        assert!(!shown.chars().any(|c| c.is_control()), "{shown}");
        assert_eq!(shown, "\\u{1b}]52;c;Y3VybCBldmlsfHNo\\u{7}done");
        assert_eq!(super::visible("a\rb"), "a\\u{d}b");
    }

    #[test]
    fn escape_sequences_are_dropped_whole_for_a_table_cell() {
        let hostile = "\u{1b}]0;pwned\u{7}\u{1b}[2Jcleared\r\u{9b}31m";
        let shown = super::without_escapes(hostile);
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert_eq!(shown, "cleared ");
        // Text around the sequences stays, spaced as the line was.
        assert_eq!(
            super::without_escapes(
                "a\u{1b}[1;31mred\u{1b}[0m b\u{1b}]8;;http://x\u{1b}\\link\tc\u{1b}"
            ),
            "ared blink c"
        );
    }
}
