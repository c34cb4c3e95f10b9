//! A run's cost and its report page: a scripted run priced to the hand-computed cent,
//! price overrides, `lackey runs` totals, and the report loaded in real headless
//! Chromium (observed through the DevTools protocol) with hostile run data in it.

mod cdp;

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{json, Value};

use crate::support::fake_llm::{self, with_usage, FakeLlm};
use crate::support::{repo, snapshot_filters, TestEnv};

const CANARY_KEY: &str = "sk-ant-api03-CANARY-report-0123456789abcdef";
const RUN_ID: &str = "20261124-143015-7f3a";

/// The hostile strings a run can carry: a script end tag and an image whose error
/// handler would run. Each logs to the console if it ever executes.
const SCRIPT_PAYLOAD: &str = "</script><script>console.error('pwned-script')</script>";
const IMG_PAYLOAD: &str = "<img src=x onerror=\"console.error('pwned-img')\">";

/// A minion run on the host (no Docker) whose artifacts land where `lackey report`
/// and `lackey runs` look: `<t>/artifacts/<RUN_ID>/`.
struct HostRun {
    t: TestEnv,
    artifacts: PathBuf,
    summary: Value,
    stderr: String,
}

impl HostRun {
    fn run(llm: &FakeLlm, task: &str, model: &str, extra: &[(&str, &str)]) -> HostRun {
        let mut t = TestEnv::new();
        let src = repo::hello_project(&t.path().join("src-repo"));
        let artifacts = t.path().join("artifacts");
        let out = artifacts.join(RUN_ID);
        let work = t.path().join("work-minion");
        t.set("LACKEY_RUN_ID", RUN_ID)
            .set("LACKEY_TASK", task)
            .set("LACKEY_REPO_PATH", src.display().to_string())
            .set("LACKEY_WORK_DIR", work.display().to_string())
            .set("LACKEY_OUTPUT_DIR", out.display().to_string())
            .set("LACKEY_ARTIFACTS_DIR", artifacts.display().to_string())
            .set("ANTHROPIC_API_KEY", CANARY_KEY)
            .set("ANTHROPIC_BASE_URL", llm.url())
            .set("LACKEY_MODEL", model);
        for (k, v) in extra {
            t.set(k, *v);
        }
        let o = t.run(&["minion"]);
        let summary: Value = std::fs::read_to_string(out.join("run_summary.json"))
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_else(|| panic!("no summary\n{}\n{}", o.stdout, o.stderr));
        HostRun {
            t,
            artifacts,
            summary,
            stderr: o.stderr,
        }
    }

    fn dir(&self) -> PathBuf {
        self.artifacts.join(RUN_ID)
    }
}

fn scope_hello() -> fake_llm::Answer {
    fake_llm::tool_use(
        "submit_scope",
        json!({"summary": "change the greeting", "allowed_dirs": [], "allowed_files": ["hello.sh"],
               "test_files": ["test.sh"], "rationale": "hello.sh prints the greeting; test.sh checks it"}),
    )
}

/// Five calls, each billed a scripted number of tokens (uncached input, output, cache
/// write, cache read).
fn priced_script() -> Vec<fake_llm::Answer> {
    vec![
        with_usage(
            fake_llm::tool_use("view", json!({"path": "."})),
            1000,
            100,
            2000,
            0,
        ),
        with_usage(scope_hello(), 300, 200, 500, 2000),
        with_usage(
            fake_llm::tool_use("view", json!({"path": "hello.sh"})),
            1200,
            80,
            2500,
            0,
        ),
        with_usage(fake_llm::edit_hello_sh(), 400, 300, 300, 2500),
        with_usage(
            fake_llm::tool_use("finish", json!({"summary": "done"})),
            100,
            60,
            0,
            2800,
        ),
    ]
}

#[test]
fn a_scripted_run_costs_what_the_price_table_says() {
    let llm = FakeLlm::start(CANARY_KEY, priced_script());
    let r = HostRun::run(
        &llm,
        "make hello.sh print hello, world",
        // A dated snapshot id: priced as claude-sonnet-4-5.
        "claude-sonnet-4-5-20250929",
        &[("LACKEY_TEST", "sh test.sh")],
    );
    llm.assert_clean();
    let u = &r.summary["usage"];
    assert_eq!(r.summary["outcome"], "success", "{}", r.stderr);
    // Tokens: input 3000, output 740, cache write 5300, cache read 7300.
    assert_eq!(
        (
            &u["input_tokens"],
            &u["output_tokens"],
            &u["cache_creation_input_tokens"],
            &u["cache_read_input_tokens"]
        ),
        (&json!(3000), &json!(740), &json!(5300), &json!(7300))
    );
    // At 3 / 15 / 3.75 / 0.30 USD per million:
    // 3000·3 + 740·15 + 5300·3.75 + 7300·0.30 = 9000 + 11100 + 19875 + 2190 = 42165 µ$.
    assert_eq!(u["cost_usd"], json!(0.042165));
    assert_eq!(u["model"], "claude-sonnet-4-5-20250929");
    assert!(u.get("cost_note").is_none());
    // Scoper: 1300·3 + 300·15 + 2500·3.75 + 2000·0.30 = 3900 + 4500 + 9375 + 600.
    assert_eq!(
        u["by_agent"]["scoper"],
        json!({"llm_calls": 2, "input_tokens": 1300, "output_tokens": 300,
               "cache_read_input_tokens": 2000, "cache_creation_input_tokens": 2500,
               "cost_usd": 0.018375})
    );
    // Executor: 1700·3 + 440·15 + 2800·3.75 + 5300·0.30 = 5100 + 6600 + 10500 + 1590.
    assert_eq!(u["by_agent"]["executor"]["cost_usd"], json!(0.02379));
    assert_eq!(u["by_agent"]["executor"]["llm_calls"], 3);
    assert!(u["by_agent"].get("fixer").is_none());

    // `lackey runs` shows the cost and the tokens, and a total.
    let runs = r.t.run(&["runs", "--json"]);
    runs.assert_success();
    let v = runs.json();
    assert_eq!(v["runs"][0]["cost_usd"], json!(0.042165));
    assert_eq!(v["runs"][0]["tokens"], json!(3000 + 740 + 5300 + 7300));
    assert_eq!(v["total"]["cost_usd"], json!(0.042165));
    let human = r.t.run(&["runs"]);
    human.assert_success();
    assert!(
        human.stdout.contains("COST") && human.stdout.contains("$0.0422"),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains("total: $0.0422 and 16k tokens"),
        "{}",
        human.stdout
    );
    runs_snapshot("runs_with_cost", &human.stdout);
    let mut v = v;
    v["runs"][0]["duration_s"] = json!("[DURATION]");
    let shape = serde_json::to_string_pretty(&v).unwrap();
    runs_snapshot("runs_json_with_cost", &shape);
}

/// A snapshot of `lackey runs` output, its duration column made steady.
fn runs_snapshot(name: &str, text: &str) {
    snapshot_filters(&[
        (r" +\[TIME\] +", " [DURATION] "),
        (r"/tmp/\.tmp[A-Za-z0-9]+", "[TMP]"),
    ])
    .bind(|| insta::assert_snapshot!(name, text));
}

#[test]
fn a_model_without_a_price_has_no_cost_and_says_why_until_one_is_set() {
    // Unknown model: null, with the reason.
    let llm = FakeLlm::start(CANARY_KEY, priced_script());
    let r = HostRun::run(&llm, "make hello.sh print hello, world", "claude-test", &[]);
    let u = &r.summary["usage"];
    assert!(u["cost_usd"].is_null(), "{u:#}");
    assert!(
        u["cost_note"]
            .as_str()
            .unwrap()
            .starts_with("no price for model `claude-test`"),
        "{u:#}"
    );
    assert!(u["by_agent"]["scoper"]["cost_usd"].is_null());
    let runs = r.t.run(&["runs"]);
    assert!(
        runs.stdout
            .contains("1 run(s) without a known cost not counted"),
        "{}",
        runs.stdout
    );
    runs_snapshot("runs_without_price", &runs.stdout);

    // The same model priced through the setting (as the host hands it to the minion).
    let llm = FakeLlm::start(CANARY_KEY, priced_script());
    let prices =
        r#"{"claude-test": {"input": 1, "output": 2, "cache_write": 0.5, "cache_read": 0.1}}"#;
    let r = HostRun::run(
        &llm,
        "make hello.sh print hello, world",
        "claude-test",
        &[("LACKEY_PRICES", prices)],
    );
    // 3000·1 + 740·2 + 5300·0.5 + 7300·0.1 = 3000 + 1480 + 2650 + 730 = 7860 µ$.
    assert_eq!(r.summary["usage"]["cost_usd"], json!(0.00786));
}

#[test]
fn price_overrides_are_checked_and_resolved() {
    let mut t = TestEnv::new();
    t.set(
        "LACKEY_PRICES",
        r#"{"my-model": {"input": 2, "output": 8, "cache_write": 2.5, "cache_read": 0.2}}"#,
    );
    let o = t.run(&["config", "--json"]);
    o.assert_success();
    assert!(
        o.stdout.contains("my-model") && o.stdout.contains("cache_read"),
        "{}",
        o.stdout
    );
    t.set(
        "LACKEY_PRICES",
        r#"{"my-model": {"input": 2, "output": 8}}"#,
    );
    let o = t.run(&["config"]);
    o.assert_code(1);
    assert!(
        o.stderr.contains("run.prices") && o.stderr.contains("missing field `cache_write`"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("hint:"), "{}", o.stderr);
}

/// A run whose diff, task and test output carry hostile markup and whose model repeats
/// the API key.
fn hostile_run() -> HostRun {
    let new_line = format!("echo \"hello, world\" # {SCRIPT_PAYLOAD} {IMG_PAYLOAD}");
    let llm = FakeLlm::start(
        CANARY_KEY,
        vec![
            with_usage(
                fake_llm::tool_use("view", json!({"path": "."})),
                1000,
                100,
                2000,
                0,
            ),
            with_usage(scope_hello(), 300, 200, 500, 2000),
            with_usage(
                fake_llm::tool_use("view", json!({"path": "hello.sh"})),
                1200,
                80,
                2500,
                0,
            ),
            with_usage(
                fake_llm::say_and_use(
                    &format!("Editing. {IMG_PAYLOAD} The key is {CANARY_KEY}."),
                    "str_replace",
                    json!({"path": "hello.sh", "old_str": "echo \"hello\"", "new_str": new_line}),
                ),
                400,
                300,
                300,
                2500,
            ),
            with_usage(
                fake_llm::tool_use("bash", json!({"command": "sh test.sh"})),
                150,
                40,
                0,
                2700,
            ),
            with_usage(
                fake_llm::tool_use("finish", json!({"summary": "done"})),
                100,
                60,
                0,
                2800,
            ),
        ],
    );
    let test_cmd = format!("sh test.sh && cat <<'EOF'\n{SCRIPT_PAYLOAD}\n{IMG_PAYLOAD}\nEOF");
    let r = HostRun::run(
        &llm,
        &format!("make hello.sh print hello, world {SCRIPT_PAYLOAD}"),
        "claude-sonnet-4-5",
        &[("LACKEY_TEST", &test_cmd)],
    );
    llm.assert_clean();
    assert_eq!(r.summary["outcome"], "success", "{}", r.stderr);
    r
}

#[test]
fn the_report_is_one_self_contained_page_with_everything_escaped() {
    let r = hostile_run();
    // A secret only the host knows (a token the minion never saw) that reached an artifact.
    let host_secret = "ghp_HOSTCANARY0123456789abcdefABCDEF";
    let diff = r.dir().join("diff.patch");
    let mut text = std::fs::read_to_string(&diff).unwrap();
    text.push_str(&format!(
        "diff --git a/leak.txt b/leak.txt\n--- /dev/null\n+++ b/leak.txt\n@@ -0,0 +1 @@\n+token={host_secret}\n"
    ));
    std::fs::write(&diff, text).unwrap();
    let mut t = r.t;
    t.set("GITHUB_TOKEN", host_secret);
    let o = t.run(&["report", RUN_ID]);
    o.assert_success();
    let path = r.artifacts.join(RUN_ID).join("report.html");
    assert_eq!(o.stdout.trim(), path.display().to_string());
    let html = std::fs::read_to_string(&path).unwrap();
    assert!(!html.contains(CANARY_KEY), "the API key is in the report");
    assert!(
        !html.contains(host_secret),
        "the host's token is in the report"
    );
    assert!(html.contains("token=[REDACTED]"));
    // Hostile text is escaped wherever it appears; the one script is ours.
    assert!(!html.contains("<img"), "an <img> tag got through");
    assert_eq!(html.matches("<script").count(), 1);
    assert_eq!(html.matches("</script>").count(), 1);
    assert!(html.contains("&lt;/script&gt;&lt;script&gt;console.error(&#39;pwned-script&#39;)"));
    // No URL the page would fetch.
    for needle in ["src=\"http", "href=\"http", "@import", "url(http", "<link"] {
        assert!(!html.contains(needle), "the page references {needle}");
    }
    // --output writes elsewhere; --json says where and how big.
    let o = t.run(&["report", RUN_ID, "--output", "review.html", "--json"]);
    o.assert_success();
    let v = o.json();
    snapshot_filters(&[(r#""bytes": \d+"#, r#""bytes": [BYTES]"#)]).bind(|| {
        insta::assert_snapshot!(
            "report_json",
            serde_json::to_string_pretty(&v)
                .unwrap()
                .replace(&t.work().display().to_string(), "[WORK]")
        )
    });
    assert!(v["report"].as_str().unwrap().ends_with("review.html"));
    assert_eq!(
        v["bytes"].as_u64().unwrap() as usize,
        std::fs::read_to_string(t.work().join("review.html"))
            .unwrap()
            .len()
    );

    // --open hands the page to the platform's opener; without one it says how to open it.
    let bin = t.path().join("opener-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let opened = t.path().join("opened.txt");
    let opener = bin.join("xdg-open");
    std::fs::write(
        &opener,
        format!("#!/bin/sh\necho \"$1\" > {}\n", opened.display()),
    )
    .unwrap();
    std::fs::set_permissions(&opener, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path_before = t.env["PATH"].clone();
    t.set("PATH", bin.display().to_string());
    let with = t.run(&["report", RUN_ID, "--open"]);
    with.assert_success();
    let start = Instant::now();
    while !opened.is_file() {
        assert!(start.elapsed().as_secs() < 60, "the opener never ran");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let page = r.artifacts.join(RUN_ID).join("report.html");
    // The opener got the page (written once it ran: poll until its line is complete).
    while !std::fs::read_to_string(&opened).unwrap().ends_with('\n') {
        assert!(start.elapsed().as_secs() < 60, "the opener never finished");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        std::fs::read_to_string(&opened).unwrap().trim(),
        page.display().to_string()
    );
    std::fs::remove_file(&opener).unwrap();
    let without = t.run(&["report", RUN_ID, "--open"]);
    without.assert_success();
    t.set("PATH", path_before);
    snapshot_filters(&[]).bind(|| {
        insta::assert_snapshot!(
            "report_open",
            format!(
                "with an opener:\n{}\nwithout one:\n{}",
                with.stderr, without.stderr
            )
        )
    });
}

#[test]
fn report_errors_name_the_problem() {
    let mut t = TestEnv::new();
    let artifacts = t.path().join("artifacts");
    t.set("LACKEY_ARTIFACTS_DIR", artifacts.display().to_string());
    let o = t.run(&["report", "nope"]);
    o.assert_code(1);
    assert!(o.stderr.contains("`nope` is not a run id"), "{}", o.stderr);
    let o = t.run(&["report", RUN_ID]);
    o.assert_code(1);
    assert!(
        o.stderr.contains(&format!("no run `{RUN_ID}`")) && o.stderr.contains("hint:"),
        "{}",
        o.stderr
    );
    let o = t.run(&["report", RUN_ID, "--output", "missing-dir/x.html"]);
    o.assert_code(1);
    assert!(
        o.stderr
            .contains("the directory `missing-dir` does not exist"),
        "{}",
        o.stderr
    );

    // Every error of `lackey report` and of the price setting, as the user reads them.
    let mut seen = Vec::new();
    let mut expect_error = |t: &TestEnv, args: &[&str]| {
        let o = t.run(args);
        o.assert_code(1);
        assert!(o.stdout.is_empty(), "{}", o.stdout);
        seen.push(format!(
            "$ lackey {}\n{}",
            args.join(" "),
            o.stderr.trim_end()
        ));
    };
    expect_error(&t, &["report", "nope"]);
    expect_error(&t, &["report", RUN_ID]);
    expect_error(&t, &["report", RUN_ID, "--output", "missing-dir/x.html"]);
    std::fs::create_dir_all(t.work().join("a-dir")).unwrap();
    expect_error(&t, &["report", RUN_ID, "--output", "a-dir"]);
    // A run whose directory exists without a summary has not finished.
    std::fs::create_dir_all(artifacts.join(RUN_ID)).unwrap();
    expect_error(&t, &["report", RUN_ID]);
    t.set(
        "LACKEY_PRICES",
        r#"{"m": {"input": -1, "output": 1, "cache_write": 1, "cache_read": 1}}"#,
    );
    expect_error(&t, &["report", RUN_ID]);
    let root = artifacts.display().to_string();
    snapshot_filters(&[]).bind(|| {
        insta::assert_snapshot!(
            "report_errors",
            seen.join("\n\n").replace(&root, "[ARTIFACTS]")
        )
    });
}

/// The cost line of a run's final summary, in each of its forms.
#[test]
fn the_summary_cost_line() {
    use lackey::summary::{AgentUsage, Usage};
    // 2000·3 + 1200·15 + 500·3.75 + 9800·0.30 = 6000 + 18000 + 1875 + 2940 µ$.
    let tokens = AgentUsage {
        llm_calls: 7,
        input_tokens: 2_000,
        output_tokens: 1_200,
        cache_read_input_tokens: 9_800,
        cache_creation_input_tokens: 500,
        cost_usd: None,
    };
    let table = lackey::cost::PriceTable::with_overrides(None).unwrap();
    let by_agent = std::collections::BTreeMap::new();
    let priced = lackey::cost::priced(&tokens.tokens(), &by_agent, "claude-sonnet-4-5", &table);
    let unknown = lackey::cost::priced(&tokens.tokens(), &by_agent, "claude-test", &table);
    assert_eq!(priced.cost_usd, Some(0.028815));
    assert_eq!(unknown.cost_usd, None);
    let none = Usage::default();
    let lines: Vec<String> = [
        ("priced", priced),
        ("no price", unknown),
        ("no LLM call", none),
    ]
    .into_iter()
    .map(|(what, u)| format!("{what}: {}", lackey::commands::run::cost_line(&u).unwrap()))
    .collect();
    snapshot_filters(&[]).bind(|| insta::assert_snapshot!("summary_cost_lines", lines.join("\n")));
}

/// Debian's Chromium, or None (a recorded skip outside CI; a failure under CI=true).
fn chromium() -> Option<String> {
    let bin = cdp::chromium();
    let found = bin.is_some();
    if crate::support::require(
        "Chromium",
        found,
        "install Debian's chromium (scripts/install-deps.sh does)",
    ) {
        bin
    } else {
        None
    }
}

/// The page loaded with no console message, no error, no failed request, and no
/// request for anything but itself.
fn assert_clean_load(l: &cdp::PageLoad, page: &Path) {
    assert!(
        l.problems.is_empty(),
        "console or errors: {:#?}",
        l.problems
    );
    assert!(l.failed.is_empty(), "failed requests: {:#?}", l.failed);
    let url = format!("file://{}", page.display());
    assert!(
        l.requests.iter().all(|u| *u == url),
        "requests beyond the page: {:#?}",
        l.requests
    );
}

/// The report in a real browser: loads from file:// with no request beyond itself, no
/// console message, no exception, no CSP or network error; shows what it must; runs
/// no injected script; its own script works under its policy.
#[test]
fn the_report_in_headless_chromium() {
    let Some(bin) = chromium() else { return };
    let r = hostile_run();
    let o = r.t.run(&["report", RUN_ID]);
    o.assert_success();
    let page = r.dir().join("report.html");

    // The observer sees what it must: a page with a console message, a thrown error
    // and a failing load is caught on all three counts.
    let control = r.t.path().join("control.html");
    std::fs::write(
        &control,
        "<!doctype html><title>c</title><img src=\"missing.png\"><script>console.log('hi'); throw new Error('boom')</script>",
    )
    .unwrap();
    let c = cdp::load(&bin, &control, &r.t.path().join("profile-control"), false);
    assert!(
        c.problems.iter().any(|p| p.contains("hi")),
        "{:?}",
        c.problems
    );
    assert!(
        c.problems.iter().any(|p| p.contains("boom")),
        "{:?}",
        c.problems
    );
    assert!(
        c.failed.iter().any(|f| f.contains("missing.png")),
        "{:?}",
        c.failed
    );

    let l = cdp::load(
        &bin,
        &page,
        &r.t.path().join("profile"),
        std::env::var("LACKEY_REPORT_SCREENSHOT").is_ok(),
    );
    assert_clean_load(&l, &page);
    // What it shows.
    let text = &l.text;
    assert!(text.contains(RUN_ID), "{text}");
    assert!(text.contains("success"));
    for step in ["branch", "scope", "execute", "test", "commit"] {
        assert!(
            l.dom
                .contains(&format!("<td class=\"step-name\">{step}</td>")),
            "step {step} missing"
        );
    }
    assert!(l.dom.contains("<code class=\"path\">hello.sh</code>"));
    // 3000+150 in, 780 out, 5300 written, 10000 read at sonnet prices:
    // 9450 + 11700 + 19875 + 3000 = 44025 µ$.
    assert_eq!(r.summary["usage"]["cost_usd"], json!(0.044025));
    assert!(text.contains("$0.0440"), "the cost is not shown");
    // The payloads are text on the page, and nothing of theirs ran.
    assert!(
        text.contains(SCRIPT_PAYLOAD),
        "the script payload is not shown as text"
    );
    assert!(text.contains("onerror=\"console.error('pwned-img')\""));
    assert!(!l.dom.contains("<img"), "an <img> element exists");
    assert_eq!(l.dom.matches("<script").count(), 1);
    // Our script ran (the policy allows it by hash): it added the buttons.
    assert!(
        l.dom.contains(">Expand all</button>"),
        "the page's script did not run"
    );
    assert!(!text.contains(CANARY_KEY));

    if let Ok(dest) = std::env::var("LACKEY_REPORT_SCREENSHOT") {
        let png = l.screenshot.expect("a screenshot");
        assert!(png.starts_with(b"\x89PNG"));
        std::fs::write(&dest, png).unwrap();
        eprintln!("screenshot written to {dest}");
    }
}

/// A run's artifacts made up for the benchmark: `turns` agent turns with two tool calls
/// each, and a diff of `diff_lines` changed lines over 50 files.
fn synthetic_run(dir: &Path, turns: usize, diff_lines: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let summary = json!({
        "run_id": RUN_ID, "task": "refactor the parser", "outcome": "success", "runtime": "local",
        "branch": format!("minion/{RUN_ID}"), "base_sha": "a".repeat(40), "head_sha": "b".repeat(40),
        "started_at": "2026-11-24T14:30:15Z", "finished_at": "2026-11-24T14:40:15Z", "duration_s": 600.0,
        "steps": [{"name": "scope", "success": true, "detail": ""}, {"name": "execute", "success": true, "detail": ""}],
        "usage": {"llm_calls": turns, "input_tokens": 1000, "output_tokens": 1000,
                  "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 1000,
                  "cost_usd": 0.5, "model": "claude-sonnet-4-5", "by_agent": {}},
        "pr_url": null, "s3_prefix": null, "error": null
    });
    std::fs::write(dir.join("run_summary.json"), summary.to_string()).unwrap();
    let mut transcript = String::new();
    let mut tools = String::new();
    for turn in 0..turns {
        let ts = format!("2026-11-24T14:3{}:{:02}.000Z", 1 + turn / 60, turn % 60);
        let uses: Vec<Value> = (0..2)
            .map(|i| json!({"type": "tool_use", "id": format!("t{turn}-{i}"), "name": "view", "input": {"path": format!("src/f{i}.rs")}}))
            .collect();
        let results: Vec<Value> = if turn == 0 {
            vec![]
        } else {
            (0..2)
                .map(|i| json!({"type": "tool_result", "tool_use_id": format!("t{}-{i}", turn - 1), "content": "fn main() {}\n".repeat(300)}))
                .collect()
        };
        transcript.push_str(&json!({"ts": ts, "agent": "executor", "turn": turn, "attempt": 0, "status": 200, "duration_ms": 1500,
            "request": {"new_messages": [{"role": "user", "content": results}]},
            "response": {"content": uses, "stop_reason": "tool_use",
                         "usage": {"input_tokens": 200, "output_tokens": 150, "cache_read_input_tokens": 4000 + 500 * turn, "cache_creation_input_tokens": 500}}}).to_string());
        transcript.push('\n');
        for i in 0..2 {
            tools.push_str(&json!({"ts": ts, "agent": "executor", "turn": turn, "tool": "view", "input": {}, "is_error": false, "output_chars": 3900, "duration_ms": 3, "summary": format!("view src/f{i}.rs")}).to_string());
            tools.push('\n');
        }
    }
    std::fs::write(dir.join("transcript.jsonl"), transcript).unwrap();
    std::fs::write(dir.join("tool_calls.log"), tools).unwrap();
    let mut diff = String::new();
    let per_file = diff_lines / 50;
    for f in 0..50 {
        diff.push_str(&format!(
            "diff --git a/src/m{f}.rs b/src/m{f}.rs\n--- a/src/m{f}.rs\n+++ b/src/m{f}.rs\n@@ -1,{per_file} +1,{per_file} @@\n"
        ));
        for i in 0..per_file {
            if i % 2 == 0 {
                diff.push_str(&format!(
                    "-    let value_{i} = compute(&input, {i}); // old\n"
                ));
            } else {
                diff.push_str(&format!(
                    "+    let value_{i} = compute_checked(&input, {i})?; // new\n"
                ));
            }
        }
    }
    std::fs::write(dir.join("diff.patch"), diff).unwrap();
    std::fs::write(
        dir.join("commands.log"),
        json!({"ts": "2026-11-24T14:39:00.000Z", "agent": "step:test", "cwd": "/work", "command": "cargo test", "exit_code": 0, "duration_ms": 42000, "timed_out": false, "output": "test result: ok\n".repeat(200), "output_truncated": false}).to_string() + "\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("scope.json"),
        r#"{"allowed_dirs": ["src"], "allowed_files": [], "test_files": ["tests"]}"#,
    )
    .unwrap();
}

fn html_has_open_file(
    dir: &Path,
    redactor: &lackey::minion::artifacts::Redactor,
    prices: &lackey::cost::PriceTable,
) -> bool {
    let data = lackey::report::RunData::load(dir).unwrap();
    lackey::report::render(&data, redactor, prices).contains("<details class=\"file\" open>")
}

/// `make bench-report`: time and size of the report for a 20-turn run and for a run
/// with a 5,000-line diff (targets: 100 ms and 2 MB each).
#[test]
#[ignore]
fn bench_report() {
    let t = TestEnv::new();
    let redactor = lackey::minion::artifacts::Redactor::new([CANARY_KEY.to_string()]);
    let prices = lackey::cost::PriceTable::builtin();
    for (name, turns, lines) in [("20-turn run", 20, 200), ("5,000-line diff", 4, 5000)] {
        let dir = t.path().join(name.replace([' ', ','], "-"));
        synthetic_run(&dir, turns, lines);
        // Loading the artifacts and rendering, as `lackey report` does; best of 5.
        let mut best = f64::MAX;
        let mut size = 0;
        for _ in 0..5 {
            let t0 = Instant::now();
            let data = lackey::report::RunData::load(&dir).unwrap();
            let html = lackey::report::render(&data, &redactor, &prices);
            best = best.min(t0.elapsed().as_secs_f64() * 1000.0);
            size = html.len();
        }
        if lines > 1_500 {
            // A big diff starts collapsed by file.
            assert!(!html_has_open_file(&dir, &redactor, &prices));
        }
        println!(
            "bench-report: {name}: {best:.1} ms to load and render, {:.0} KB (targets: 100 ms, 2048 KB)",
            size as f64 / 1024.0
        );
    }
}

/// A fleet's page in a real browser: `lackey report --fleet` over a local fleet's
/// manifest writes each finished run's page and the fleet's, which loads from file://
/// with nothing fetched, no console message or error, links each finished run to its
/// page, shows the outcomes and costs, and runs nothing from the tasks file.
#[test]
fn the_fleet_report_in_headless_chromium() {
    let Some(bin) = chromium() else { return };
    const FLEET: &str = "fleet-20261128-190000-ab12";
    let ids = [
        "20261128-190001-0a01",
        "20261128-190002-0a02",
        "20261128-190003-0a03",
    ];
    let mut t = TestEnv::new();
    t.set("ANTHROPIC_API_KEY", CANARY_KEY);
    let root = PathBuf::from(&t.env["LACKEY_ARTIFACTS_DIR"]);
    let hostile = format!("{SCRIPT_PAYLOAD} {IMG_PAYLOAD}");
    for (id, task, outcome) in [
        (ids[0], "fix the greeting", "success"),
        (ids[1], hostile.as_str(), "test_failure"),
    ] {
        let dir = root.join(id);
        synthetic_run(&dir, 2, 10);
        let path = dir.join("run_summary.json");
        let mut s: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        s["run_id"] = json!(id);
        s["task"] = json!(task);
        s["outcome"] = json!(outcome);
        std::fs::write(&path, s.to_string()).unwrap();
    }
    let manifest = json!({
        "version": 1, "fleet_id": FLEET, "where": "local", "created_at": "2026-11-28T19:00:00+00:00",
        "tasks_sha256": "0", "options": {"max_parallel": 2, "attempts": 1, "max_tokens": 5000},
        "tasks": [{"line": 1, "task": "fix the greeting"}, {"line": 2, "task": hostile},
                  {"line": 3, "task": "a third task"}],
        "runs": [
            {"run_id": ids[0], "task": 0, "attempt": 1, "state": "done",
             "result": {"outcome": "success", "duration_s": 600.0, "tokens": 4000, "cost_usd": 0.5,
                        "pr_url": "https://github.com/o/r/pull/7"}},
            {"run_id": ids[1], "task": 1, "attempt": 1, "state": "done",
             "result": {"outcome": "test_failure", "duration_s": 30.0, "tokens": 1000, "cost_usd": 0.01,
                        "pr_url": "javascript:console.error('pwned-link')",
                        "error": format!("{IMG_PAYLOAD} with the key {CANARY_KEY}")}},
            {"run_id": ids[2], "task": 2, "attempt": 1, "state": "not_run",
             "not_run": "budget: finished runs used 5000 tokens of --max-tokens 5000"}
        ]
    });
    let fleet_dir = root.join("fleets").join(FLEET);
    std::fs::create_dir_all(&fleet_dir).unwrap();
    std::fs::write(fleet_dir.join("manifest.json"), manifest.to_string()).unwrap();

    let o = t.run(&["report", "--fleet", FLEET, "--json"]);
    o.assert_success();
    let page = fleet_dir.join("report.html");
    assert_eq!(o.json()["report"], page.display().to_string());
    // Each finished run got its own page, which the fleet's links reach.
    for id in &ids[..2] {
        assert!(root.join(id).join("report.html").is_file(), "{id}");
        assert!(fleet_dir.join(format!("../../{id}/report.html")).is_file());
    }

    let l = cdp::load(&bin, &page, &t.path().join("profile"), false);
    assert_clean_load(&l, &page);
    let text = &l.text;
    assert!(text.contains(FLEET), "{text}");
    assert!(text.contains("1 of 3 tasks succeeded"), "{text}");
    for id in ids {
        assert!(text.contains(id), "{id} missing");
    }
    for word in [
        "success",
        "test_failure",
        "not run",
        "budget: finished runs used",
    ] {
        assert!(text.contains(word), "{word} missing");
    }
    assert!(text.contains("$0.5100"), "the total cost is not shown");
    for id in &ids[..2] {
        assert!(
            l.dom
                .contains(&format!("<a href=\"../../{id}/report.html\">")),
            "no link to {id}'s report"
        );
    }
    assert!(!l.dom.contains(&format!("href=\"../../{}", ids[2])));
    // The hostile task and error are text; nothing of theirs is an element or ran.
    assert!(
        text.contains(SCRIPT_PAYLOAD),
        "the script payload is not text"
    );
    assert!(text.contains("onerror=\"console.error('pwned-img')\""));
    assert!(!l.dom.contains("<img"), "an <img> element exists");
    assert!(!l.dom.contains("<script"), "a <script> element exists");
    assert!(!l.dom.contains("href=\"javascript"), "a javascript: link");
    assert!(!text.contains(CANARY_KEY) && !l.dom.contains(CANARY_KEY));
}
