//! `report.html`: one self-contained page per run, rendered on the host from the run's
//! artifacts (local and cloud runs alike).
//!
//! What must stay true:
//! * Nothing is fetched: styles, the one script and the chart are inline, so the page
//!   works from `file://`, as an S3 object, offline. A Content-Security-Policy allows
//!   only inline styles, `data:` images and the one script, by its hash.
//! * Everything that came from the run (the task, the diff, commands' output, tool
//!   inputs and results, the model's words, step details, the scope) is untrusted: it
//!   goes through [`Page::text`], which redacts the secrets the host knows (with the
//!   artifacts' own [`Redactor`]) and then escapes it. The script is a constant and
//!   holds no run data; links are only `http(s)` URLs.
//! * Without JavaScript everything is readable; the script only adds "expand all" /
//!   "collapse all" and opens every section before printing.

pub mod data;
pub mod diff;
pub mod fleet;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::cost::{format_tokens, format_usd, PriceTable};
use crate::minion::artifacts::Redactor;
use crate::summary::{Runtime, Usage};

pub use data::RunData;

/// The report's file name beside the artifacts.
pub const REPORT_FILE: &str = "report.html";

/// A tool result or command output is cut to this many characters in the page (head
/// and tail kept); the artifacts keep the whole text.
const CLIP_CHARS: usize = 6_000;
/// Above this many diff lines, files start collapsed.
const OPEN_DIFF_LINES: usize = 1_500;

const STYLE: &str = include_str!("report.css");
const SCRIPT: &str = include_str!("report.js");

/// Render the page.
pub fn render(run: &RunData, redactor: &Redactor, prices: &PriceTable) -> String {
    let mut p = Page {
        out: String::with_capacity(64 * 1024 + run.diff.len() * 2),
        redactor,
    };
    p.document(run, prices);
    p.out
}

/// Render the report of the run in `dir` and write it there as `report.html`
/// (atomically). Returns its path.
pub fn write(dir: &Path, redactor: &Redactor, prices: &PriceTable) -> anyhow::Result<PathBuf> {
    let run = RunData::load(dir)?;
    let html = render(&run, redactor, prices);
    write_in_run_dir(dir, &html)
}

/// Put `html` as `report.html` in a run's directory. The directory was the container's
/// to write, so a name in it may be a planted link: the page goes into a fresh file
/// under a random name, renamed over `report.html` (never written through a link).
pub fn write_in_run_dir(dir: &Path, html: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(REPORT_FILE);
    crate::runner::rundir::RunDir::open(dir)
        .and_then(|d| d.replace(REPORT_FILE, html.as_bytes()))
        .map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", path.display()))?;
    Ok(path)
}

/// Write `html` to `path` (a file the user named, outside any run directory) through a
/// temporary file beside it.
pub fn write_file(path: &Path, html: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("html.tmp");
    std::fs::write(&tmp, html)
        .map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", path.display()))?;
    Ok(())
}

/// HTML-escape `s` for text and attribute values.
pub fn escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// The Content-Security-Policy: nothing from anywhere, but inline styles, `data:`
/// images and the report's own script.
fn csp() -> String {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(SCRIPT.as_bytes()));
    format!(
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'sha256-{hash}'; base-uri 'none'; form-action 'none'"
    )
}

fn clip_text(s: &str) -> (String, bool) {
    crate::minion::artifacts::clip(s, CLIP_CHARS, "the run's artifacts hold the whole text")
}

fn seconds(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        crate::output::human_duration(std::time::Duration::from_millis(ms))
    }
}

/// `14:30:15` from an RFC 3339 time (the date is in the header).
fn clock(ts: &str) -> &str {
    ts.get(11..19).unwrap_or(ts)
}

fn pretty_json(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

struct Page<'a> {
    out: String,
    redactor: &'a Redactor,
}

impl Page<'_> {
    /// Trusted markup (constants and numbers only).
    fn raw(&mut self, s: &str) {
        self.out.push_str(s);
    }

    /// Untrusted text: redacted, then escaped.
    fn text(&mut self, s: &str) {
        let r = self.redactor.redact(s);
        escape(&r, &mut self.out);
    }

    /// `<tag class="…">untrusted text</tag>`
    fn el(&mut self, tag: &str, class: &str, s: &str) {
        if class.is_empty() {
            let _ = write!(self.out, "<{tag}>");
        } else {
            let _ = write!(self.out, "<{tag} class=\"{class}\">");
        }
        self.text(s);
        let _ = write!(self.out, "</{tag}>");
    }

    /// An untrusted URL: a link when it is `http(s)`, else text.
    fn web_link(&mut self, url: &str) {
        if url.starts_with("https://") || url.starts_with("http://") {
            self.raw("<a rel=\"noopener noreferrer\" href=\"");
            self.text(url);
            self.raw("\">");
            self.text(url);
            self.raw("</a>");
        } else {
            self.text(url);
        }
    }

    /// A `<pre>` of untrusted text, clipped, with a note when cut.
    fn pre_clipped(&mut self, s: &str) {
        let (shown, cut) = clip_text(s);
        self.el("pre", "", &shown);
        if cut {
            let _ = write!(
                self.out,
                "<p class=\"note\">{} characters in all; cut to {CLIP_CHARS} here.</p>",
                s.chars().count()
            );
        }
    }

    fn document(&mut self, run: &RunData, prices: &PriceTable) {
        let s = &run.summary;
        self.raw("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
        let _ = writeln!(
            self.out,
            "<meta http-equiv=\"Content-Security-Policy\" content=\"{}\">",
            csp()
        );
        self.raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
        self.raw("<meta name=\"referrer\" content=\"no-referrer\">\n<title>lackey run ");
        self.text(&s.run_id);
        self.raw(" · ");
        self.raw(s.outcome.as_str());
        self.raw("</title>\n<style>\n");
        self.raw(STYLE);
        self.raw("</style>\n</head>\n<body>\n");
        self.header(run);
        if !run.cut.is_empty() {
            self.raw("<p class=\"error\" role=\"note\"><strong>Shown in part:</strong> larger than the report reads (8 MiB), so only part of ");
            self.text(&run.cut.join(", "));
            self.raw(" is shown here (a log's end, any other file's beginning); the run's folder holds the whole files.</p>\n");
        }
        self.raw("<nav aria-label=\"Sections\"><ul><li><a href=\"#scope\">Scope</a></li><li><a href=\"#steps\">Steps</a></li><li><a href=\"#timeline\">Timeline</a></li><li><a href=\"#checks\">Checks</a></li><li><a href=\"#diff\">Diff</a></li><li><a href=\"#usage\">Tokens and cost</a></li></ul><div id=\"controls\" hidden></div></nav>\n<main>\n");
        let files = diff::parse(&run.diff);
        self.scope(run, &files);
        self.steps(run);
        self.timeline(run, prices);
        self.checks(run);
        self.diff(&files);
        self.usage(run, prices);
        self.raw("</main>\n<footer><p>Written by lackey from the run's artifacts. Secrets are redacted as in the artifacts.</p></footer>\n<script>");
        self.raw(SCRIPT);
        self.raw("</script>\n</body>\n</html>\n");
    }

    fn header(&mut self, run: &RunData) {
        let s = &run.summary;
        let outcome = s.outcome.as_str();
        self.raw(
            "<header>\n<p class=\"brand\">lackey · run report</p>\n<h1>Run <span id=\"run-id\">",
        );
        self.text(&s.run_id);
        let _ = writeln!(
            self.out,
            "</span> <span class=\"badge {outcome}\" id=\"outcome\">{outcome}</span></h1>"
        );
        self.raw("<section aria-label=\"Task\" class=\"task\"><h2 class=\"label\">Task</h2>");
        self.el("pre", "task-text", &s.task);
        self.raw("</section>\n");
        if let Some(e) = &s.error {
            self.raw("<p class=\"error\" role=\"alert\"><strong>Error:</strong> ");
            self.text(e);
            self.raw("</p>\n");
        }
        self.raw("<dl class=\"facts\">\n");
        self.raw("<div><dt>Outcome</dt><dd>");
        self.raw(outcome);
        self.raw("</dd></div>\n<div><dt>Runtime</dt><dd>");
        self.raw(match s.runtime {
            Runtime::Local => "local (Docker)",
            Runtime::Cloud => "cloud (ECS Fargate)",
        });
        self.raw("</dd></div>\n<div><dt>Duration</dt><dd>");
        let d = crate::output::human_duration(std::time::Duration::from_secs_f64(
            s.duration_s.max(0.0),
        ));
        self.text(&d);
        self.raw("</dd></div>\n<div><dt>Cost</dt><dd id=\"cost\">");
        match s.usage.cost_usd {
            Some(c) => self.text(&format_usd(Some(c))),
            None => {
                self.raw("unknown");
                if let Some(n) = &s.usage.cost_note {
                    self.raw(" <small>(");
                    self.text(n);
                    self.raw(")</small>");
                }
            }
        }
        self.raw("</dd></div>\n<div><dt>Branch</dt><dd><code>");
        self.text(&s.branch);
        self.raw("</code></dd></div>\n");
        if let Some(pr) = &s.pr_url {
            self.raw("<div><dt>Pull request</dt><dd>");
            self.web_link(pr);
            self.raw("</dd></div>\n");
        }
        if let Some(m) = &s.usage.model {
            self.raw("<div><dt>Model</dt><dd><code>");
            self.text(m);
            self.raw("</code></dd></div>\n");
        }
        self.raw("<div><dt>Started</dt><dd><time>");
        self.text(&s.started_at);
        self.raw("</time></dd></div>\n");
        if let (Some(b), Some(h)) = (&s.base_sha, &s.head_sha) {
            self.raw("<div><dt>Commits</dt><dd><code>");
            self.text(b.get(..12).unwrap_or(b));
            self.raw("</code> → <code>");
            self.text(h.get(..12).unwrap_or(h));
            self.raw("</code></dd></div>\n");
        }
        if let Some(p) = &s.s3_prefix {
            self.raw("<div><dt>Artifacts</dt><dd><code>");
            self.text(p);
            self.raw("</code></dd></div>\n");
        }
        self.raw("</dl>\n</header>\n");
    }

    fn list_of(&mut self, title: &str, items: &[&str]) {
        let _ = write!(self.out, "<h3>{title}</h3>");
        if items.is_empty() {
            self.raw("<p class=\"muted\">none</p>");
            return;
        }
        self.raw("<ul class=\"paths\">");
        for i in items {
            self.raw("<li><code>");
            self.text(i);
            self.raw("</code></li>");
        }
        self.raw("</ul>");
    }

    fn scope(&mut self, run: &RunData, files: &[diff::File]) {
        self.raw("<section id=\"scope\">\n<h2>Scope</h2>\n");
        let sc = &run.scope;
        let strs = |k: &str| -> Vec<&str> {
            sc[k]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default()
        };
        let (dirs, allowed, tests) = (
            strs("allowed_dirs"),
            strs("allowed_files"),
            strs("test_files"),
        );
        let has_scope =
            sc.is_object() && !(dirs.is_empty() && allowed.is_empty() && tests.is_empty());
        if !has_scope {
            self.raw("<p class=\"muted\">No scope was recorded (a run without the scoper, or one that ended before it).</p>\n");
        } else {
            if let Some(summary) = sc["summary"].as_str() {
                self.el("p", "", summary);
            }
            self.raw("<div class=\"cols\"><div>");
            self.list_of("Allowed directories", &dirs);
            self.raw("</div><div>");
            self.list_of("Allowed files", &allowed);
            self.raw("</div><div>");
            self.list_of("Test files", &tests);
            self.raw("</div></div>\n");
            if let Some(r) = sc["rationale"].as_str() {
                self.raw("<h3>Rationale</h3>");
                self.el("p", "prose", r);
            }
        }
        // Where the agents went outside it.
        let requested = strs("requested_files");
        if !requested.is_empty() {
            self.raw("<div class=\"outside\"><h3>The executor asked for more</h3>");
            self.raw("<ul class=\"paths\">");
            for f in &requested {
                self.raw("<li><code>");
                self.text(f);
                self.raw("</code></li>");
            }
            self.raw("</ul>");
            if let Some(r) = sc["requested_reasoning"].as_str() {
                self.el("p", "prose", r);
            }
            self.raw("</div>\n");
        }
        let reverted: Vec<&str> = run
            .summary
            .steps
            .iter()
            .filter(|s| s.name == "revert-out-of-scope" || s.name == "drop-out-of-scope")
            .map(|s| s.detail.as_str())
            .collect();
        let outside: Vec<&str> = if has_scope {
            let ws = crate::minion::tools::write_scope_from(sc);
            files
                .iter()
                .map(|f| f.path.as_str())
                .filter(|p| !ws.allows(p))
                .collect()
        } else {
            vec![]
        };
        if !reverted.is_empty() || !outside.is_empty() {
            self.raw(
                "<div class=\"outside\" id=\"outside-scope\"><h3>Touched outside the scope</h3>",
            );
            if !outside.is_empty() {
                self.raw("<p>In the final diff but not in the scope:</p><ul class=\"paths\">");
                for f in &outside {
                    self.raw("<li><code>");
                    self.text(f);
                    self.raw("</code></li>");
                }
                self.raw("</ul>");
            }
            for r in reverted {
                self.raw("<p>Changed by a command and undone by lackey: ");
                self.text(r);
                self.raw("</p>");
            }
            self.raw("</div>\n");
        } else if has_scope {
            self.raw("<p class=\"ok-note\">Every changed file is inside the scope.</p>\n");
        }
        self.raw("</section>\n");
    }

    fn steps(&mut self, run: &RunData) {
        self.raw("<section id=\"steps\">\n<h2>Steps</h2>\n");
        if run.summary.steps.is_empty() {
            self.raw("<p class=\"muted\">No step ran.</p>\n</section>\n");
            return;
        }
        self.raw("<table class=\"steps\"><thead><tr><th scope=\"col\">#</th><th scope=\"col\">Step</th><th scope=\"col\">Result</th><th scope=\"col\">Detail</th></tr></thead><tbody>\n");
        for (i, st) in run.summary.steps.iter().enumerate() {
            let (class, word) = if st.success {
                ("ok", "✓ passed")
            } else {
                ("fail", "✗ failed")
            };
            let _ = write!(
                self.out,
                "<tr class=\"{class}\"><td>{}</td><td class=\"step-name\">",
                i + 1
            );
            self.text(&st.name);
            let _ = write!(self.out, "</td><td>{word}</td><td>");
            self.text(&st.detail);
            self.raw("</td></tr>\n");
        }
        self.raw("</tbody></table>\n</section>\n");
    }

    fn timeline(&mut self, run: &RunData, prices: &PriceTable) {
        self.raw("<section id=\"timeline\">\n<h2>Timeline</h2>\n");
        let price = run
            .summary
            .usage
            .model
            .as_deref()
            .and_then(|m| prices.get(m));
        // Events in time order: step starts and ends (minion.log), agent turns
        // (transcript), the steps' commands (commands.log).
        enum Ev<'r> {
            Log(&'r data::LogLine),
            Turn(&'r data::Turn),
            Cmd(&'r Value),
        }
        let mut evs: Vec<(String, Ev)> = Vec::new();
        for l in &run.log {
            if l.component == "minion" && l.message.starts_with("step `") {
                evs.push((l.ts.clone(), Ev::Log(l)));
            }
        }
        for t in &run.turns {
            evs.push((t.ts.clone(), Ev::Turn(t)));
        }
        for c in &run.commands {
            if c["agent"].as_str().is_some_and(|a| a.starts_with("step:")) {
                evs.push((c["ts"].as_str().unwrap_or_default().to_string(), Ev::Cmd(c)));
            }
        }
        evs.sort_by(|a, b| a.0.cmp(&b.0));
        if evs.is_empty() {
            self.raw("<p class=\"muted\">Nothing was recorded.</p>\n</section>\n");
            return;
        }
        self.raw("<ol class=\"timeline\">\n");
        for (ts, ev) in &evs {
            match ev {
                Ev::Log(l) => {
                    let class = if l.message.contains("` failed") {
                        "ev step fail"
                    } else if l.message.contains("` succeeded") {
                        "ev step ok"
                    } else {
                        "ev step"
                    };
                    let _ = write!(self.out, "<li class=\"{class}\"><time>");
                    self.text(clock(ts));
                    self.raw("</time> ");
                    self.text(&l.message);
                    self.raw("</li>\n");
                }
                Ev::Cmd(c) => {
                    self.raw("<li class=\"ev cmd\"><time>");
                    self.text(clock(ts));
                    self.raw("</time> ");
                    self.command_details(c);
                    self.raw("</li>\n");
                }
                Ev::Turn(t) => {
                    self.raw("<li class=\"ev turn\"><time>");
                    self.text(clock(ts));
                    self.raw("</time> <details><summary><span class=\"agent\">");
                    self.text(&t.agent);
                    let cost = price.map(|p| p.cost(&t.usage));
                    let _ = writeln!(
                        self.out,
                        "</span> turn {} · {} · {} in / {} out{} · {} tool call{}{}</summary>",
                        t.turn,
                        seconds(t.duration_ms),
                        format_tokens(t.usage.prompt_tokens()),
                        format_tokens(t.usage.output_tokens),
                        cost.map(|c| format!(" · {}", format_usd(Some(c))))
                            .unwrap_or_default(),
                        t.tools.len(),
                        if t.tools.len() == 1 { "" } else { "s" },
                        if t.failed_attempts.is_empty() {
                            String::new()
                        } else {
                            format!(" · {} retried", t.failed_attempts.len())
                        }
                    );
                    for f in &t.failed_attempts {
                        self.raw("<p class=\"note\">Retried after: ");
                        self.text(f);
                        self.raw("</p>");
                    }
                    if !t.text.trim().is_empty() {
                        self.raw("<blockquote class=\"said\">");
                        self.pre_clipped(&t.text);
                        self.raw("</blockquote>");
                    }
                    if !t.tools.is_empty() {
                        self.raw("<ul class=\"tools\">");
                        for call in &t.tools {
                            self.tool_call(call);
                        }
                        self.raw("</ul>");
                    }
                    self.raw("</details></li>\n");
                }
            }
        }
        self.raw("</ol>\n</section>\n");
    }

    fn tool_call(&mut self, call: &data::ToolCall) {
        let class = if call.is_error { "tool err" } else { "tool" };
        let _ = write!(self.out, "<li class=\"{class}\"><details><summary><code>");
        let label = if call.summary.is_empty() {
            call.name.clone()
        } else {
            call.summary.clone()
        };
        self.text(&label);
        self.raw("</code>");
        if let Some(ms) = call.duration_ms {
            let _ = write!(self.out, " · {}", seconds(ms));
        }
        if call.is_error {
            self.raw(" · <strong>refused or failed</strong>");
        }
        self.raw("</summary><h4>Input</h4>");
        self.pre_clipped(&pretty_json(&call.input));
        self.raw("<h4>Result</h4>");
        match &call.result {
            Some(r) => self.pre_clipped(r),
            None => self.raw("<p class=\"muted\">Not sent back (the call ended the agent).</p>"),
        }
        self.raw("</details></li>");
    }

    fn command_details(&mut self, c: &Value) {
        let step = c["agent"].as_str().unwrap_or_default();
        let step = step.strip_prefix("step:").unwrap_or(step);
        let exit = c["exit_code"].as_i64();
        let timed_out = c["timed_out"] == true;
        let ok = exit == Some(0) && !timed_out;
        let _ = write!(
            self.out,
            "<details class=\"command {}\"><summary><span class=\"step-name\">",
            if ok { "ok" } else { "fail" }
        );
        self.text(step);
        self.raw("</span>: <code>");
        self.text(c["command"].as_str().unwrap_or_default());
        self.raw("</code> → ");
        if timed_out {
            self.raw("timed out");
        } else {
            match exit {
                Some(code) => {
                    let _ = write!(self.out, "exit {code}");
                }
                None => self.raw("killed by a signal"),
            }
        }
        let _ = write!(
            self.out,
            " in {}</summary>",
            seconds(c["duration_ms"].as_u64().unwrap_or(0))
        );
        let output = c["output"].as_str().unwrap_or_default();
        if output.is_empty() {
            self.raw("<p class=\"muted\">No output.</p>");
        } else {
            self.pre_clipped(output);
        }
        if c["output_truncated"] == true {
            self.raw("<p class=\"note\">The output was already cut when it was logged.</p>");
        }
        self.raw("</details>");
    }

    fn checks(&mut self, run: &RunData) {
        self.raw("<section id=\"checks\">\n<h2>Checks</h2>\n");
        let cmds: Vec<&Value> = run
            .commands
            .iter()
            .filter(|c| c["agent"].as_str().is_some_and(|a| a.starts_with("step:")))
            .collect();
        if cmds.is_empty() {
            self.raw("<p class=\"muted\">No check command ran.</p>\n");
        } else {
            self.raw("<ul class=\"checks\">\n");
            for c in cmds {
                self.raw("<li>");
                self.command_details(c);
                self.raw("</li>\n");
            }
            self.raw("</ul>\n");
        }
        self.raw("</section>\n");
    }

    fn diff(&mut self, files: &[diff::File]) {
        self.raw("<section id=\"diff\">\n<h2>Diff</h2>\n");
        if files.is_empty() {
            self.raw("<p class=\"muted\">The run changed nothing.</p>\n</section>\n");
            return;
        }
        let total: usize = files.iter().map(|f| f.lines.len()).sum();
        let (added, removed) = files
            .iter()
            .fold((0, 0), |(a, r), f| (a + f.added, r + f.removed));
        let _ = write!(
            self.out,
            "<p>{} file{} changed, <span class=\"plus\">+{added}</span> <span class=\"minus\">−{removed}</span>{}</p>\n<ul class=\"files\">",
            files.len(),
            if files.len() == 1 { "" } else { "s" },
            if total > OPEN_DIFF_LINES {
                " · a large diff: open a file to see it"
            } else {
                ""
            }
        );
        for f in files {
            self.raw("<li><code>");
            self.text(&f.path);
            let _ = write!(
                self.out,
                "</code> <span class=\"plus\">+{}</span> <span class=\"minus\">−{}</span></li>",
                f.added, f.removed
            );
        }
        self.raw("</ul>\n");
        let open = total <= OPEN_DIFF_LINES;
        for f in files {
            let _ = write!(
                self.out,
                "<details class=\"file\"{}><summary><code class=\"path\">",
                if open { " open" } else { "" }
            );
            self.text(&f.path);
            self.raw("</code>");
            if let Some(from) = &f.renamed_from {
                self.raw(" (renamed from <code>");
                self.text(from);
                self.raw("</code>)");
            }
            let _ = write!(
                self.out,
                " <span class=\"plus\">+{}</span> <span class=\"minus\">−{}</span></summary>\n<table class=\"diff\"><tbody>\n",
                f.added, f.removed
            );
            for l in &f.lines {
                let class = match l.kind {
                    diff::Kind::Added => "a",
                    diff::Kind::Removed => "d",
                    diff::Kind::Context => "c",
                    diff::Kind::Hunk => "h",
                    diff::Kind::Note => "n",
                };
                let mark = match l.kind {
                    diff::Kind::Added => "+",
                    diff::Kind::Removed => "-",
                    _ => "",
                };
                let _ = write!(self.out, "<tr class=\"{class}\"><td class=\"ln\">");
                if let Some(o) = l.old {
                    let _ = write!(self.out, "{o}");
                }
                self.raw("</td><td class=\"ln\">");
                if let Some(n) = l.new {
                    let _ = write!(self.out, "{n}");
                }
                let _ = write!(self.out, "</td><td class=\"m\">{mark}</td><td class=\"t\">");
                self.text(l.text);
                self.raw("</td></tr>\n");
            }
            self.raw("</tbody></table></details>\n");
        }
        self.raw("</section>\n");
    }

    fn usage(&mut self, run: &RunData, prices: &PriceTable) {
        let u = &run.summary.usage;
        self.raw("<section id=\"usage\">\n<h2>Tokens and cost</h2>\n");
        let _ = write!(
            self.out,
            "<p>{} LLM call{}; {} of {} prompt tokens read from the cache (<strong id=\"cache-hit\">{:.0}% cache hits</strong>); total cost <strong>",
            u.llm_calls,
            if u.llm_calls == 1 { "" } else { "s" },
            format_tokens(u.cache_read_input_tokens),
            format_tokens(u.prompt_tokens()),
            100.0 * u.cache_hit_ratio()
        );
        self.text(&format_usd(u.cost_usd));
        self.raw("</strong>.</p>\n");
        if let Some(n) = &u.cost_note {
            self.el("p", "note", n);
        }
        self.raw("<table class=\"usage\"><thead><tr><th scope=\"col\">Agent</th><th scope=\"col\">Calls</th><th scope=\"col\">Input</th><th scope=\"col\">Cache write</th><th scope=\"col\">Cache read</th><th scope=\"col\">Output</th><th scope=\"col\">Cache hits</th><th scope=\"col\">Cost</th></tr></thead><tbody>\n");
        let row = |p: &mut Page, name: &str, t: &Usage, cost: Option<f64>, class: &str| {
            let _ = write!(p.out, "<tr class=\"{class}\"><th scope=\"row\">");
            p.text(name);
            let _ = writeln!(
                p.out,
                "</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0}%</td><td>{}</td></tr>",
                t.llm_calls,
                t.input_tokens,
                t.cache_creation_input_tokens,
                t.cache_read_input_tokens,
                t.output_tokens,
                100.0 * t.cache_hit_ratio(),
                format_usd(cost)
            );
        };
        for (name, a) in &u.by_agent {
            row(self, name, &a.tokens(), a.cost_usd, "");
        }
        row(self, "total", u, u.cost_usd, "total");
        self.raw("</tbody></table>\n");
        self.chart(run, prices);
        self.raw("</section>\n");
    }

    /// Tokens per turn as stacked bars (cache read, cache write, uncached input,
    /// output), one per turn in time order; each bar's `<title>` has the numbers.
    fn chart(&mut self, run: &RunData, prices: &PriceTable) {
        if run.turns.is_empty() {
            return;
        }
        let price = run
            .summary
            .usage
            .model
            .as_deref()
            .and_then(|m| prices.get(m));
        let mut turns: Vec<&data::Turn> = run.turns.iter().collect();
        turns.sort_by(|a, b| a.ts.cmp(&b.ts));
        let max = turns
            .iter()
            .map(|t| t.usage.prompt_tokens() + t.usage.output_tokens)
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let (bar, gap, h, top, left) = (14.0, 4.0, 160.0, 10.0, 44.0);
        let width = left + turns.len() as f64 * (bar + gap) + 10.0;
        let height = top + h + 34.0;
        let _ = write!(
            self.out,
            "<h3>Tokens per turn</h3>\n<figure class=\"chart\"><div class=\"scroll\"><svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-labelledby=\"chart-title\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\"><title id=\"chart-title\">Prompt and output tokens of each of the {} turns</title>",
            turns.len()
        );
        // The axis: 0 and the maximum.
        let _ = write!(
            self.out,
            "<line x1=\"{left}\" y1=\"{y0}\" x2=\"{x2:.0}\" y2=\"{y0}\" class=\"axis\"/><text x=\"{tx}\" y=\"{y0}\" class=\"tick\">0</text><text x=\"{tx}\" y=\"{yt}\" class=\"tick\">{}</text>",
            format_tokens(max as u64),
            y0 = top + h,
            x2 = width - 6.0,
            tx = left - 6.0,
            yt = top + 8.0,
        );
        let mut last_agent = "";
        for (i, t) in turns.iter().enumerate() {
            let x = left + i as f64 * (bar + gap);
            let mut y = top + h;
            let parts = [
                ("cr", t.usage.cache_read_input_tokens),
                ("cw", t.usage.cache_creation_input_tokens),
                ("in", t.usage.input_tokens),
                ("out", t.usage.output_tokens),
            ];
            self.raw("<g class=\"turn\"><title>");
            self.text(&t.agent);
            let _ = write!(
                self.out,
                " turn {}: {} input, {} cache write, {} cache read, {} output{}</title>",
                t.turn,
                t.usage.input_tokens,
                t.usage.cache_creation_input_tokens,
                t.usage.cache_read_input_tokens,
                t.usage.output_tokens,
                price
                    .map(|p| format!(", {}", format_usd(Some(p.cost(&t.usage)))))
                    .unwrap_or_default()
            );
            for (class, n) in parts {
                if n == 0 {
                    continue;
                }
                let hh = (n as f64 / max * h).max(0.5);
                y -= hh;
                let _ = write!(
                    self.out,
                    "<rect class=\"{class}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar}\" height=\"{hh:.1}\"/>"
                );
            }
            self.raw("</g>");
            // The agent's name under its first turn.
            if t.agent != last_agent {
                let _ = write!(
                    self.out,
                    "<line x1=\"{x:.1}\" y1=\"{a:.0}\" x2=\"{x:.1}\" y2=\"{b:.0}\" class=\"sep\"/><text x=\"{x:.1}\" y=\"{ty:.0}\" class=\"agent-label\">",
                    a = top,
                    b = top + h + 6.0,
                    ty = top + h + 20.0
                );
                self.text(&t.agent);
                self.raw("</text>");
                last_agent = &t.agent;
            }
        }
        self.raw("</svg></div><figcaption><span class=\"key cr\"></span> cache read <span class=\"key cw\"></span> cache write <span class=\"key in\"></span> input <span class=\"key out\"></span> output. Hover a bar for its numbers.</figcaption></figure>\n");
    }
}

/// The secrets the host knows of, for the report's redactor: the API key and the
/// GitHub token in the settings and the environment.
pub fn host_redactor(settings: &crate::config::Settings) -> Redactor {
    let mut secrets: Vec<String> = crate::config::keys::ALL
        .iter()
        .filter(|k| k.secret)
        .filter_map(|k| settings.get(k).map(str::to_string))
        .collect();
    for var in ["ANTHROPIC_API_KEY", "GITHUB_TOKEN", "GH_TOKEN"] {
        if let Ok(v) = std::env::var(var) {
            secrets.push(v);
        }
    }
    Redactor::new(secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_and_quotes() {
        let mut out = String::new();
        escape("</script><img src=x onerror=\"alert('1')\">&", &mut out);
        assert_eq!(
            out,
            "&lt;/script&gt;&lt;img src=x onerror=&quot;alert(&#39;1&#39;)&quot;&gt;&amp;"
        );
    }

    #[test]
    fn the_script_is_allowed_by_its_hash_and_holds_no_markup() {
        assert!(csp().contains("script-src 'sha256-"));
        assert!(!SCRIPT.contains("</script"));
    }
}
