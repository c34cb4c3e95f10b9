//! A fleet's page (`lackey report --fleet ID`): every run of the fleet with its
//! outcome, duration, tokens and cost, and a link to the run's own `report.html`.
//!
//! It is written as `fleets/<fleet id>/report.html`, beside the fleet's manifest (in
//! the artifacts directory, and in the bucket for a cloud fleet), so the link to a run's
//! page is the same relative path in both places: `../../<run id>/report.html`.
//!
//! The rules of the run page hold here too: nothing is fetched, and everything that
//! came from a run or from the tasks file (the task, an error, a pull-request URL) goes
//! through [`Page::text`] (redacted, then escaped). The page has no script at all, and
//! its Content-Security-Policy allows none.

use std::fmt::Write as _;
use std::time::Duration;

use super::{Page, STYLE};
use crate::cost::{format_tokens, format_usd};
use crate::fleet::{Manifest, RunState, Where};
use crate::minion::artifacts::Redactor;

/// The page's policy: inline styles, nothing else.
const FLEET_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'none'; base-uri 'none'; form-action 'none'";

/// The task text shown in a row is cut to this many characters (the run's own page has
/// the whole task).
const TASK_CHARS: usize = 300;

/// The relative link from the fleet's page to a run's page.
pub fn run_link(run_id: &str) -> String {
    format!("../../{run_id}/report.html")
}

/// Render the fleet's page; `has_report` says which runs have a page to link to.
pub fn render_fleet(
    m: &Manifest,
    redactor: &Redactor,
    has_report: &dyn Fn(&str) -> bool,
) -> String {
    let mut p = Page {
        out: String::with_capacity(16 * 1024 + m.runs.len() * 600),
        redactor,
    };
    p.fleet_document(m, has_report);
    p.out
}

impl Page<'_> {
    fn fleet_document(&mut self, m: &Manifest, has_report: &dyn Fn(&str) -> bool) {
        self.raw("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
        let _ = writeln!(
            self.out,
            "<meta http-equiv=\"Content-Security-Policy\" content=\"{FLEET_CSP}\">"
        );
        self.raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
        self.raw("<meta name=\"referrer\" content=\"no-referrer\">\n<title>lackey fleet ");
        self.text(&m.fleet_id);
        self.raw("</title>\n<style>\n");
        self.raw(STYLE);
        self.raw("</style>\n</head>\n<body>\n");
        self.fleet_header(m);
        self.raw("<main>\n");
        self.fleet_runs(m, has_report);
        self.raw("</main>\n<footer><p>Written by lackey from the fleet's manifest. Secrets are redacted as in the artifacts.</p></footer>\n</body>\n</html>\n");
    }

    fn fleet_header(&mut self, m: &Manifest) {
        let c = m.counts();
        let tasks_ok = m.tasks_succeeded();
        let badge = if m.all_succeeded() {
            "success"
        } else {
            "error"
        };
        self.raw("<header>\n<p class=\"brand\">lackey · fleet report</p>\n<h1>Fleet <span id=\"fleet-id\">");
        self.text(&m.fleet_id);
        let _ = writeln!(
            self.out,
            "</span> <span class=\"badge {badge}\" id=\"outcome\">{tasks_ok} of {} tasks succeeded</span></h1>",
            m.tasks.len()
        );
        let (tokens, usd) = m.spent();
        self.raw("<dl class=\"facts\">\n");
        let place = match m.place {
            Where::Local => "local (Docker)",
            Where::Cloud => "cloud (ECS Fargate)",
        };
        let facts: [(&str, String); 7] = [
            ("Runtime", place.to_string()),
            (
                "Runs",
                format!("{} ({} per task)", m.runs.len(), m.options.attempts.max(1)),
            ),
            ("At most at once", m.options.max_parallel.to_string()),
            ("Started", m.created_at.clone()),
            (
                "Outcomes",
                format!(
                    "{} success, {} test_failure, {} scope_disagreement, {} error, {} not run",
                    c.success, c.test_failure, c.scope_disagreement, c.error, c.not_run
                ),
            ),
            ("Tokens", format_tokens(tokens)),
            ("Cost", format_usd(usd)),
        ];
        for (name, value) in facts {
            let _ = write!(self.out, "<div><dt>{name}</dt><dd");
            if name == "Cost" {
                self.raw(" id=\"cost\"");
            }
            self.raw(">");
            self.text(&value);
            self.raw("</dd></div>\n");
        }
        self.raw("</dl>\n</header>\n");
    }

    fn fleet_runs(&mut self, m: &Manifest, has_report: &dyn Fn(&str) -> bool) {
        self.raw("<section id=\"runs\">\n<h2>Runs</h2>\n<table class=\"fleet\">\n<thead><tr><th scope=\"col\">Run</th><th scope=\"col\">Task</th><th scope=\"col\">Attempt</th><th scope=\"col\">Outcome</th><th scope=\"col\" class=\"num\">Duration</th><th scope=\"col\" class=\"num\">Tokens</th><th scope=\"col\" class=\"num\">Cost</th><th scope=\"col\">Pull request</th></tr></thead>\n<tbody>\n");
        for (i, r) in m.runs.iter().enumerate() {
            let word = crate::fleet::view::state_word(m, i);
            let class = match r.state {
                RunState::Done => word.as_str(),
                _ => "pending",
            };
            self.raw("<tr class=\"run\"><td>");
            if r.state == RunState::Done && has_report(&r.run_id) {
                self.raw("<a href=\"");
                self.text(&run_link(&r.run_id));
                self.raw("\"><code>");
                self.text(&r.run_id);
                self.raw("</code></a>");
            } else {
                self.raw("<code>");
                self.text(&r.run_id);
                self.raw("</code>");
            }
            self.raw("</td><td class=\"task\">");
            let task = &m.task_of(r).task;
            let shown: String = task.chars().take(TASK_CHARS).collect();
            self.text(&shown);
            if task.chars().count() > TASK_CHARS {
                self.raw("…");
            }
            let _ = write!(
                self.out,
                "</td><td>{}</td><td><span class=\"badge {}\">",
                r.attempt,
                class.replace(' ', "_")
            );
            self.text(&word);
            self.raw("</span>");
            let why = r
                .result
                .as_ref()
                .and_then(|x| x.error.as_deref())
                .or(r.not_run.as_deref());
            if let Some(why) = why {
                self.raw("<br><small>");
                let cut: String = why.chars().take(TASK_CHARS).collect();
                self.text(&cut);
                self.raw("</small>");
            }
            self.raw("</td>");
            match &r.result {
                Some(x) => {
                    self.raw("<td class=\"num\">");
                    self.text(&crate::output::human_duration(Duration::from_secs_f64(
                        x.duration_s.max(0.0),
                    )));
                    self.raw("</td><td class=\"num\">");
                    self.text(&format_tokens(x.tokens));
                    self.raw("</td><td class=\"num\">");
                    self.text(&format_usd(x.cost_usd));
                    self.raw("</td><td>");
                    if let Some(pr) = &x.pr_url {
                        self.web_link(pr);
                    }
                    self.raw("</td>");
                }
                None => self.raw("<td class=\"num\">-</td><td class=\"num\">-</td><td class=\"num\">-</td><td></td>"),
            }
            self.raw("</tr>\n");
        }
        let (tokens, usd) = m.spent();
        self.raw("</tbody>\n<tfoot><tr class=\"total\"><th scope=\"row\" colspan=\"5\">Total</th><td class=\"num\">");
        self.text(&format_tokens(tokens));
        self.raw("</td><td class=\"num\" id=\"total-cost\">");
        self.text(&format_usd(usd));
        self.raw("</td><td></td></tr></tfoot>\n</table>\n");
        self.raw("<p class=\"note\">A run's id links to its own report (its scope, timeline, checks, diff and bill) when the run finished.</p>\n</section>\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::{tasks, FleetOptions, RunResult};
    use crate::summary::Outcome;

    fn fleet() -> Manifest {
        let text = "fix the greeting\n{\"task\": \"</td></tr></table><script>alert(1)</script><img src=x onerror=alert(2)>\"}\nthird\n";
        let lines = tasks::parse("tasks.txt", text).unwrap();
        let mut m = Manifest::new(
            Where::Local,
            text,
            &lines,
            FleetOptions {
                max_tokens: Some(1000),
                ..FleetOptions::new(2, 1)
            },
            |_| false,
        );
        m.fleet_id = "fleet-20261128-190000-ab12".into();
        m.created_at = "2026-11-28T19:00:00+00:00".into();
        for (i, id) in [
            "20261128-190001-0001",
            "20261128-190001-0002",
            "20261128-190001-0003",
        ]
        .into_iter()
        .enumerate()
        {
            m.runs[i].run_id = id.into();
        }
        m.runs[0].state = RunState::Done;
        m.runs[0].result = Some(RunResult {
            outcome: Outcome::Success,
            duration_s: 61.0,
            tokens: 12_345,
            cost_usd: Some(0.0441),
            pr_url: Some("https://github.com/o/r/pull/7".into()),
            error: None,
        });
        m.runs[1].state = RunState::Done;
        m.runs[1].result = Some(RunResult {
            outcome: Outcome::Error,
            duration_s: 3.0,
            tokens: 0,
            cost_usd: None,
            pr_url: Some("javascript:alert(3)".into()),
            error: Some("the key sk-ant-api03-SECRET leaked <b>here</b>".into()),
        });
        m.runs[2].state = RunState::NotRun;
        m.runs[2].not_run =
            Some("budget: finished runs used 12345 tokens of --max-tokens 1000".into());
        m
    }

    #[test]
    fn the_fleet_page_escapes_links_and_totals() {
        let m = fleet();
        let redactor = Redactor::new(vec!["sk-ant-api03-SECRET".to_string()]);
        let html = render_fleet(&m, &redactor, &|id| id.ends_with("0001"));
        // No script, no element from the tasks file or a run.
        assert!(!html.contains("<script"), "a script element");
        assert!(!html.contains("<img"), "an img element");
        assert!(!html.contains("<b>"));
        assert!(html.contains("&lt;/td&gt;&lt;/tr&gt;&lt;/table&gt;&lt;script&gt;alert(1)"));
        assert!(!html.contains("sk-ant-api03-SECRET"), "the secret is shown");
        // Links: the finished run with a page; a non-http PR URL is text, not a link.
        assert!(html.contains("<a href=\"../../20261128-190001-0001/report.html\">"));
        assert!(!html.contains("href=\"../../20261128-190001-0002"));
        assert!(!html.contains("href=\"javascript"));
        assert!(
            html.contains("<a rel=\"noopener noreferrer\" href=\"https://github.com/o/r/pull/7\">")
        );
        insta::assert_snapshot!(
            html.split("<style>").next().unwrap_or_default().to_string()
                + &html[html.find("</style>").unwrap_or_default()..]
        );
    }
}
