//! The minion on the host, against temporary repositories and the fake Anthropic API
//! (no Docker): every outcome, the guards on its tools, retries, the deadline, stubs.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::support::fake_llm::{self, Answer, FakeLlm};
use crate::support::repo;
use crate::support::TestEnv;

pub(crate) const CANARY_KEY: &str = "sk-ant-api03-CANARY-minion-0123456789abcdef";
pub(crate) const RUN_ID: &str = "20261124-143015-7f3a";

/// A minion run on the host: a repository, a work dir, an output dir.
pub(crate) struct MinionRun {
    pub(crate) t: TestEnv,
    pub(crate) repo: PathBuf,
}

pub(crate) struct Done {
    pub(crate) _t: TestEnv,
    pub(crate) repo: PathBuf,
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) out: PathBuf,
    pub(crate) work: PathBuf,
    pub(crate) summary: Value,
}

impl Done {
    pub(crate) fn artifact(&self, name: &str) -> String {
        std::fs::read_to_string(self.out.join(name))
            .unwrap_or_else(|e| panic!("artifact {name}: {e}"))
    }

    /// The clone the minion worked in.
    pub(crate) fn clone_dir(&self) -> PathBuf {
        self.work.join("repo")
    }

    #[track_caller]
    pub(crate) fn assert_outcome(&self, outcome: &str) {
        assert_eq!(
            self.summary["outcome"], outcome,
            "summary: {:#}\n--- stdout\n{}\n--- stderr\n{}",
            self.summary, self.stdout, self.stderr
        );
    }

    /// No artifact (or log line) contains the canary key.
    #[track_caller]
    pub(crate) fn assert_no_canary(&self) {
        for entry in walkdir::WalkDir::new(&self.out)
            .into_iter()
            .filter_map(Result::ok)
        {
            if entry.file_type().is_file() {
                let bytes = std::fs::read(entry.path()).unwrap();
                assert!(
                    !String::from_utf8_lossy(&bytes).contains(CANARY_KEY),
                    "the API key leaked into {}",
                    entry.path().display()
                );
            }
        }
        assert!(!self.stdout.contains(CANARY_KEY) && !self.stderr.contains(CANARY_KEY));
    }
}

impl MinionRun {
    pub(crate) fn new() -> MinionRun {
        let t = TestEnv::new();
        let repo = repo::hello_project(&t.path().join("src-repo"));
        MinionRun { t, repo }
    }

    pub(crate) fn with_repo(files: &[(&str, &str)]) -> MinionRun {
        let t = TestEnv::new();
        let repo = repo::init(&t.path().join("src-repo"), files);
        MinionRun { t, repo }
    }

    pub(crate) fn run(mut self, llm: Option<&FakeLlm>, extra: &[(&str, &str)]) -> Done {
        let out = self.t.path().join("out");
        let work = self.t.path().join("work-minion");
        let t = &mut self.t;
        t.set("LACKEY_RUN_ID", RUN_ID)
            .set("LACKEY_TASK", "make hello.sh print hello, world")
            .set("LACKEY_REPO_PATH", self.repo.display().to_string())
            .set("LACKEY_WORK_DIR", work.display().to_string())
            .set("LACKEY_OUTPUT_DIR", out.display().to_string())
            .set("ANTHROPIC_API_KEY", CANARY_KEY)
            .set("LACKEY_MODEL", "claude-test");
        if let Some(l) = llm {
            t.set("ANTHROPIC_BASE_URL", l.url());
        }
        for (k, v) in extra {
            t.set(k, *v);
        }
        let o = t.run(&["minion"]);
        let summary: Value = std::fs::read_to_string(out.join("run_summary.json"))
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_else(|| {
                panic!(
                    "no run_summary.json\n--- stdout\n{}\n--- stderr\n{}",
                    o.stdout, o.stderr
                )
            });
        Done {
            _t: self.t,
            repo: self.repo,
            code: o.code,
            stdout: o.stdout,
            stderr: o.stderr,
            out,
            work,
            summary,
        }
    }
}

fn scope_hello() -> Answer {
    fake_llm::tool_use(
        "submit_scope",
        json!({"summary": "change the greeting", "allowed_dirs": [], "allowed_files": ["hello.sh"],
               "test_files": ["test.sh"], "rationale": "hello.sh prints the greeting; test.sh checks it"}),
    )
}

pub(crate) fn step_names(summary: &Value) -> Vec<String> {
    summary["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}:{}",
                s["name"].as_str().unwrap(),
                if s["success"] == true { "ok" } else { "failed" }
            )
        })
        .collect()
}

#[test]
fn success_with_the_tests_passing() {
    let llm = FakeLlm::start(
        CANARY_KEY,
        vec![
            fake_llm::tool_use("view", json!({"path": "."})),
            fake_llm::tool_use("view", json!({"path": "hello.sh"})),
            scope_hello(),
            fake_llm::tool_use("view", json!({"path": "hello.sh"})),
            fake_llm::say_and_use(
                // A model repeating a secret it should not know: the transcript must redact it.
                &format!("I will not print the key {CANARY_KEY}."),
                "str_replace",
                json!({"path": "hello.sh", "old_str": "echo \"hello\"", "new_str": "echo \"hello, world\""}),
            ),
            fake_llm::tool_use(
                "bash",
                json!({"command": "sh test.sh; echo key=$ANTHROPIC_API_KEY"}),
            ),
            fake_llm::tool_use(
                "finish",
                json!({"summary": "hello.sh now prints hello, world"}),
            ),
        ],
    );
    let m = MinionRun::new();
    let d = m.run(Some(&llm), &[("LACKEY_TEST", "sh test.sh")]);
    llm.assert_clean();
    d.assert_outcome("success");
    assert_eq!(d.code, 0);
    assert_eq!(
        step_names(&d.summary),
        [
            "branch:ok",
            "scope:ok",
            "execute:ok",
            "test:ok",
            "commit:ok"
        ]
    );
    let s = &d.summary;
    assert_eq!(s["run_id"], RUN_ID);
    assert_eq!(s["branch"], format!("minion/{RUN_ID}"));
    assert_eq!(s["runtime"], "local");
    assert_eq!(s["task"], "make hello.sh print hello, world");
    assert_eq!(s["usage"]["llm_calls"], 7);
    assert!(s["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(s["error"].is_null());
    for key in [
        "base_sha",
        "head_sha",
        "started_at",
        "finished_at",
        "duration_s",
        "pr_url",
        "s3_prefix",
    ] {
        assert!(s.get(key).is_some(), "summary lacks {key}");
    }
    assert_ne!(s["base_sha"], s["head_sha"]);
    // Every artifact of the set (docs/artifacts.md), and the bundle for the local fetch-back.
    for a in [
        "run_summary.json",
        "scope.json",
        "diff.patch",
        "diff_stats.txt",
        "commands.log",
        "tool_calls.log",
        "transcript.jsonl",
        "minion.log",
        "test.log",
        "repo.bundle",
    ] {
        assert!(d.out.join(a).is_file(), "missing artifact {a}");
    }
    assert!(d.artifact("diff.patch").contains("+echo \"hello, world\""));
    assert!(d.artifact("diff_stats.txt").contains("hello.sh"));
    let scope: Value = serde_json::from_str(&d.artifact("scope.json")).unwrap();
    assert_eq!(scope["allowed_files"], json!(["hello.sh"]));
    assert_eq!(d.artifact("tool_calls.log").lines().count(), 7);
    assert_eq!(d.artifact("transcript.jsonl").lines().count(), 7);
    let commands = d.artifact("commands.log");
    let bash: Vec<Value> = commands
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|c| c["agent"] == "executor")
        .collect();
    assert_eq!(bash.len(), 1);
    assert_eq!(bash[0]["exit_code"], 0);
    // The command's environment did not carry the key.
    assert!(
        bash[0]["output"].as_str().unwrap().contains("ok\nkey=\n"),
        "{}",
        bash[0]["output"]
    );
    assert!(d.artifact("transcript.jsonl").contains("[REDACTED]"));
    // The rule file was handed to the agent once.
    let agents_md = llm
        .received()
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.raw).contains("<rules path=\\\"AGENTS.md\\\">"))
        .count();
    assert!(agents_md >= 1);
    // The commit is on the run's branch in the clone; the source repo is untouched.
    let log = repo::git(
        &d.clone_dir(),
        &["log", "--format=%s", &format!("minion/{RUN_ID}")],
    );
    assert!(
        log.starts_with("make hello.sh print hello, world\n"),
        "{log}"
    );
    assert_eq!(
        std::fs::read_to_string(d.repo.join("hello.sh")).unwrap(),
        "#!/bin/sh\necho \"hello\"\n"
    );
    assert!(repo::git(&d.repo, &["branch", "--list"]).trim() == "* main");
    d.assert_no_canary();
}

#[test]
fn a_failing_test_repaired_by_the_fixer() {
    let llm = FakeLlm::start(
        CANARY_KEY,
        vec![
            scope_hello(),
            fake_llm::tool_use("view", json!({"path": "hello.sh"})),
            fake_llm::tool_use(
                "str_replace",
                json!({"path": "hello.sh", "old_str": "echo \"hello\"", "new_str": "echo \"hello world\""}),
            ),
            fake_llm::tool_use("finish", json!({"summary": "done"})),
            // Fixer, round 1.
            fake_llm::tool_use("view", json!({"path": "hello.sh"})),
            fake_llm::tool_use(
                "str_replace",
                json!({"path": "hello.sh", "old_str": "hello world", "new_str": "hello, world"}),
            ),
            fake_llm::tool_use("finish", json!({"summary": "added the comma"})),
        ],
    );
    let d = MinionRun::new().run(Some(&llm), &[("LACKEY_TEST", "sh test.sh")]);
    llm.assert_clean();
    d.assert_outcome("success");
    assert_eq!(
        step_names(&d.summary),
        [
            "branch:ok",
            "scope:ok",
            "execute:ok",
            "test:failed",
            "test:ok",
            "fix:ok",
            "commit:ok"
        ]
    );
    // The fixer was shown the failing output.
    let fixer_first = &llm.received()[4].body["messages"][0]["content"][0]["text"];
    assert!(
        fixer_first
            .as_str()
            .unwrap()
            .contains("FAIL: expected 'hello, world', got 'hello world'"),
        "{fixer_first}"
    );
    assert!(d.artifact("diff.patch").contains("+echo \"hello, world\""));
}

#[test]
fn a_failing_test_not_repaired_is_a_test_failure() {
    let llm = FakeLlm::start(
        CANARY_KEY,
        vec![
            scope_hello(),
            fake_llm::tool_use("finish", json!({"summary": "nothing needed"})),
            fake_llm::text("I cannot fix this."),
            fake_llm::text("Still cannot."),
        ],
    );
    let d = MinionRun::new().run(Some(&llm), &[("LACKEY_TEST", "sh test.sh")]);
    llm.assert_clean();
    d.assert_outcome("test_failure");
    assert_eq!(d.code, 1);
    assert!(
        d.summary["error"].as_str().unwrap().contains("`test`"),
        "{}",
        d.summary["error"]
    );
    assert!(step_names(&d.summary).contains(&"fix:failed".to_string()));
    // The work is still committed on the branch for a human to look at.
    assert!(step_names(&d.summary).contains(&"commit:ok".to_string()));
}

#[test]
fn scope_disagreement_ends_the_run_with_the_reasoning() {
    let llm = FakeLlm::start(
        CANARY_KEY,
        vec![
            scope_hello(),
            fake_llm::tool_use(
                "request_scope_change",
                json!({"files": ["README.md"], "reasoning": "the README documents the greeting"}),
            ),
        ],
    );
    let d = MinionRun::new().run(Some(&llm), &[]);
    llm.assert_clean();
    d.assert_outcome("scope_disagreement");
    assert_eq!(d.code, 1);
    let err = d.summary["error"].as_str().unwrap();
    assert!(
        err.contains("README.md") && err.contains("the README documents the greeting"),
        "{err}"
    );
    let scope: Value = serde_json::from_str(&d.artifact("scope.json")).unwrap();
    assert_eq!(scope["requested_files"], json!(["README.md"]));
}

#[test]
fn path_escapes_and_out_of_scope_writes_are_refused() {
    let llm = FakeLlm::start(
        CANARY_KEY,
        vec![
            scope_hello(),
            fake_llm::tool_use("create", json!({"path": "../escape.txt", "file_text": "x"})),
            fake_llm::tool_use(
                "create",
                json!({"path": "/tmp/lackey-escape-test.txt", "file_text": "x"}),
            ),
            fake_llm::tool_use("create", json!({"path": "README2.md", "file_text": "x"})),
            // A shell command writing outside the scope: reverted before the commit.
            fake_llm::tool_use("bash", json!({"command": "echo sneaky > sneaky.txt"})),
            fake_llm::tool_use("finish", json!({"summary": "done"})),
        ],
    );
    let d = MinionRun::new().run(Some(&llm), &[]);
    llm.assert_clean();
    d.assert_outcome("success");
    let r = |i: usize| llm.tool_results(i)[0].clone();
    assert_eq!(r(2)["is_error"], true);
    assert!(r(2)["content"].as_str().unwrap().contains("uses `..`"));
    assert!(r(3)["content"]
        .as_str()
        .unwrap()
        .contains("outside the work tree"));
    assert!(r(4)["content"]
        .as_str()
        .unwrap()
        .contains("outside the scope"));
    assert!(!d.work.join("escape.txt").exists());
    assert!(!Path::new("/tmp/lackey-escape-test.txt").exists());
    assert!(
        !d.clone_dir().join("sneaky.txt").exists(),
        "out-of-scope file was not reverted"
    );
    assert!(step_names(&d.summary).contains(&"revert-out-of-scope:ok".to_string()));
    assert!(!d.artifact("diff.patch").contains("sneaky"));
}

#[test]
fn an_edit_without_a_read_is_refused() {
    let llm = FakeLlm::start(
        CANARY_KEY,
        vec![
            scope_hello(),
            fake_llm::edit_hello_sh(),
            fake_llm::tool_use("view", json!({"path": "hello.sh"})),
            fake_llm::edit_hello_sh(),
            fake_llm::tool_use("finish", json!({"summary": "done"})),
        ],
    );
    let d = MinionRun::new().run(Some(&llm), &[("LACKEY_TEST", "sh test.sh")]);
    llm.assert_clean();
    let first = llm.tool_results(2)[0].clone();
    assert_eq!(first["is_error"], true);
    assert!(first["content"]
        .as_str()
        .unwrap()
        .contains("has not been read yet"));
    d.assert_outcome("success");
}

#[test]
fn the_deadline_mid_run_is_an_error_that_keeps_the_work_so_far() {
    let llm = FakeLlm::start(
        CANARY_KEY,
        vec![
            scope_hello(),
            fake_llm::tool_use("view", json!({"path": "hello.sh"})),
            fake_llm::tool_use(
                "str_replace",
                json!({"path": "hello.sh", "old_str": "echo \"hello\"", "new_str": "echo \"hello, wor\""}),
            ),
            Answer::Hang,
        ],
    );
    let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_secs(4);
    let d = MinionRun::new().run(
        Some(&llm),
        &[
            ("LACKEY_DEADLINE", &format!("{:.3}", deadline.as_secs_f64())),
            ("LACKEY_TIMEOUT", "4"),
        ],
    );
    d.assert_outcome("error");
    assert_eq!(d.code, 1);
    assert!(
        d.summary["error"]
            .as_str()
            .unwrap()
            .starts_with("timed out after 4 s"),
        "{}",
        d.summary["error"]
    );
    // It stopped itself at the deadline (the error above says so), with the partial work
    // and every log in place. How long the wrap-up took is the machine's business: the
    // final scope check and bundle run git several times, slow under a loaded CI.
    assert!(d.artifact("diff.patch").contains("+echo \"hello, wor\""));
    assert!(d.artifact("scope.json").contains("hello.sh"));
    // The three answered turns are kept; a fourth line exists only when the deadline
    // found the hanging request already sent (on a loaded machine it may still be
    // applying the edit).
    let turns = d.artifact("transcript.jsonl").lines().count();
    assert!((3..=4).contains(&turns), "{turns} transcript lines");
    assert!(d.artifact("minion.log").contains("timed out after 4 s"));
    d.assert_no_canary();
}

#[test]
fn a_401_is_an_error_naming_the_cause_without_retries() {
    let llm = FakeLlm::start(
        CANARY_KEY,
        vec![fake_llm::error(
            401,
            "authentication_error",
            "invalid x-api-key",
        )],
    );
    let d = MinionRun::new().run(Some(&llm), &[]);
    d.assert_outcome("error");
    let err = d.summary["error"].as_str().unwrap();
    assert!(
        err.contains("401 authentication_error: invalid x-api-key"),
        "{err}"
    );
    assert_eq!(llm.received().len(), 1);
    d.assert_no_canary();
}

#[test]
fn rate_limits_overload_and_server_errors_are_retried() {
    let llm = FakeLlm::start(
        CANARY_KEY,
        vec![
            fake_llm::rate_limited(1),
            fake_llm::error(529, "overloaded_error", "Overloaded"),
            fake_llm::error(500, "api_error", "Internal server error"),
            Answer::Slow(Duration::from_millis(1500), Box::new(scope_hello())),
            fake_llm::tool_use("finish", json!({"summary": "nothing to do"})),
        ],
    );
    let d = MinionRun::new().run(Some(&llm), &[]);
    llm.assert_clean();
    d.assert_outcome("success");
    let r = llm.received();
    assert_eq!(r.len(), 5);
    assert!(
        r[1].at - r[0].at >= Duration::from_millis(950),
        "retry-after was not honoured"
    );
    assert_eq!(d.summary["usage"]["llm_calls"], 2);
    let log = d.artifact("minion.log");
    assert!(
        log.contains("429 rate_limit_error") && log.contains("529 overloaded_error"),
        "{log}"
    );
}

#[test]
fn stubs_need_no_llm_and_exercise_branch_commit_and_bundle() {
    let m = MinionRun::new();
    let d = m.run(
        None,
        &[
            ("LACKEY_STUBS", "1"),
            ("ANTHROPIC_BASE_URL", "http://127.0.0.1:9"),
            ("ANTHROPIC_API_KEY", ""),
        ],
    );
    d.assert_outcome("success");
    assert_eq!(d.summary["usage"]["llm_calls"], 0);
    assert!(d.out.join("repo.bundle").is_file());
    let files = repo::git(
        &d.clone_dir(),
        &[
            "show",
            "--name-only",
            "--format=",
            &format!("minion/{RUN_ID}"),
        ],
    );
    assert_eq!(files.trim(), format!(".lackey/stub-runs/{RUN_ID}.md"));
    // The bundle applies to the source repository (what the host's fetch-back does).
    repo::git(
        &d.repo,
        &[
            "fetch",
            "--quiet",
            d.out.join("repo.bundle").to_str().unwrap(),
            &format!("minion/{RUN_ID}:minion/{RUN_ID}"),
        ],
    );
    assert!(repo::git(&d.repo, &["branch", "--list", "minion/*"]).contains(RUN_ID));
}

#[test]
fn a_malformed_blueprint_fails_before_any_work() {
    let llm = FakeLlm::start(CANARY_KEY, vec![]);
    let m = MinionRun::with_repo(&[
        ("hello.sh", "echo hello\n"),
        (
            ".lackey/blueprints/default.yaml",
            "version: 2\nname: broken\nsteps:\n  - {name: branch, type: git_branch}\n  - {name: check, type: command, commands: [\"true\"], timeout: soon}\n",
        ),
    ]);
    let d = m.run(Some(&llm), &[]);
    d.assert_outcome("error");
    let err = d.summary["error"].as_str().unwrap();
    assert!(
        err.contains("step 2 (`check`)") && err.contains("timeout"),
        "{err}"
    );
    assert!(llm.received().is_empty());
    assert!(d.summary["steps"].as_array().unwrap().is_empty());
}

#[test]
fn a_repository_blueprint_runs_its_own_steps() {
    let m = MinionRun::with_repo(&[
        ("hello.sh", "echo hello\n"),
        (
            ".lackey/blueprints/lint-only.yaml",
            "version: 2\nsteps:\n  - {name: branch, type: git_branch}\n  - {name: execute, type: agent, agent: executor}\n  - {name: lint, type: command, commands: [\"grep -q stub .lackey/stub-runs/{run_id}.md\"], check: true, on_failure: \"outcome:error\"}\n  - {name: commit, type: git_commit, message: \"{task_slug}\"}\n",
        ),
    ]);
    let d = m.run(
        None,
        &[("LACKEY_STUBS", "1"), ("LACKEY_BLUEPRINT", "lint-only")],
    );
    d.assert_outcome("success");
    assert_eq!(
        step_names(&d.summary),
        ["branch:ok", "execute:ok", "lint:ok", "commit:ok"]
    );
    let subject = repo::git(
        &d.clone_dir(),
        &["log", "-1", "--format=%s", &format!("minion/{RUN_ID}")],
    );
    assert_eq!(subject.trim(), "make-hello-sh-print-hello-world");
}

#[test]
fn a_path_that_is_not_a_git_repository_is_an_error() {
    let mut m = MinionRun::new();
    let plain = m.t.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    m.repo = plain.clone();
    let d = m.run(None, &[("LACKEY_STUBS", "1")]);
    d.assert_outcome("error");
    assert!(d.summary["error"]
        .as_str()
        .unwrap()
        .contains("is not a git repository"));
    for a in crate::support::ARTIFACTS {
        assert!(
            d.out.join(a).is_file(),
            "missing artifact {a} on the error path"
        );
    }
}
