//! Fleets (`lackey run --tasks FILE`): many runs from one command, on the Fargate player
//! (moto + Docker) and in local Docker, checked from what moto and Docker recorded.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cloud::Cloud;
use crate::support::docker;
use crate::support::fake_llm::{self, Answer, FakeLlm};
use crate::support::moto::block_on;
use crate::support::{repo, wait_with_timeout, TestEnv, ARTIFACTS};

const CANARY_KEY: &str = "sk-ant-api03-CANARY-fleet-0123456789abcdef";

fn tasks_file(t: &TestEnv, n: usize) -> String {
    let text: String = (1..=n).map(|i| format!("stub task number {i}\n")).collect();
    t.write("tasks.txt", &text);
    "tasks.txt".to_string()
}

fn artifacts(t: &TestEnv) -> PathBuf {
    PathBuf::from(&t.env["LACKEY_ARTIFACTS_DIR"])
}

/// The most intervals open at once (an interval ending at t closes before one that
/// starts at t opens).
fn most_at_once(intervals: &[(f64, f64)]) -> usize {
    let mut events: Vec<(f64, i32)> = Vec::new();
    for &(a, b) in intervals {
        events.push((a, 1));
        events.push((b, -1));
    }
    events.sort_by(|x, y| x.0.partial_cmp(&y.0).unwrap().then(x.1.cmp(&y.1)));
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in events {
        now += d;
        most = most.max(now);
    }
    most as usize
}

/// Every ECS task moto holds, with its `lackey:run-id` tag, created and stopped times.
fn moto_tasks(c: &Cloud) -> Vec<(String, f64, Option<f64>, String)> {
    let conf = c.moto.sdk_config();
    block_on(async {
        let ecs = aws_sdk_ecs::Client::new(&conf);
        let mut arns = Vec::new();
        for s in [
            aws_sdk_ecs::types::DesiredStatus::Running,
            aws_sdk_ecs::types::DesiredStatus::Stopped,
        ] {
            let out = ecs
                .list_tasks()
                .cluster("lackey")
                .desired_status(s)
                .send()
                .await
                .unwrap();
            arns.extend(out.task_arns().iter().cloned());
        }
        let mut out = Vec::new();
        for chunk in arns.chunks(100) {
            let d = ecs
                .describe_tasks()
                .cluster("lackey")
                .set_tasks(Some(chunk.to_vec()))
                .include(aws_sdk_ecs::types::TaskField::Tags)
                .send()
                .await
                .unwrap();
            for t in d.tasks() {
                let id = t
                    .tags()
                    .iter()
                    .find(|x| x.key() == Some("lackey:run-id"))
                    .and_then(|x| x.value())
                    .unwrap_or_default()
                    .to_string();
                out.push((
                    id,
                    t.created_at().unwrap().as_secs_f64(),
                    t.stopped_at().map(|s| s.as_secs_f64()),
                    t.last_status().unwrap_or_default().to_string(),
                ));
            }
        }
        out
    })
}

fn run_tasks_calls(c: &Cloud) -> usize {
    c.moto
        .requests()
        .iter()
        .filter(|r| r.action == "RunTask" && r.caller == "cli")
        .count()
}

#[test]
fn thirty_cloud_runs_never_exceed_max_parallel_and_all_finish() {
    let Some(c) = Cloud::new(true) else { return };
    let file = tasks_file(&c.t, 30);
    let out = c.t.run(&[
        "run",
        "--cloud",
        "--stubs",
        "--tasks",
        &file,
        "--max-parallel",
        "5",
        "--json",
    ]);
    assert_eq!(
        out.code,
        0,
        "stderr:\n{}\nplayer: {:#?}",
        out.stderr,
        c.player_log()
    );
    let v = out.json();
    assert_eq!(
        v["summary"],
        json!({"success": 30, "test_failure": 0, "scope_disagreement": 0, "error": 0,
               "not_run": 0, "runs": 30, "tasks": 30, "tasks_succeeded": 30,
               "tokens": 0, "cost_usd": 0.0})
    );
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 30);
    let root = artifacts(&c.t);
    let mut tasks_seen = HashSet::new();
    for r in runs {
        assert_eq!(r["outcome"], "success", "{r}");
        assert_eq!(r["runtime"], "cloud");
        tasks_seen.insert(r["task"].as_str().unwrap().to_string());
        let id = r["run_id"].as_str().unwrap();
        for a in ARTIFACTS {
            assert!(root.join(id).join(a).is_file(), "{id} lacks {a}");
        }
    }
    assert_eq!(tasks_seen.len(), 30, "every line ran once");
    // From moto's record: 30 tasks, one RunTask each, never more than 5 alive at once.
    let tasks = moto_tasks(&c);
    assert_eq!(tasks.len(), 30);
    assert_eq!(run_tasks_calls(&c), 30);
    let intervals: Vec<(f64, f64)> = tasks
        .iter()
        .map(|(id, a, b, s)| {
            assert_eq!(s, "STOPPED", "{id}");
            (*a, b.expect("stopped_at"))
        })
        .collect();
    let most = most_at_once(&intervals);
    assert!(most <= 5, "{most} tasks were alive at once");
    assert!(most >= 2, "the fleet ran in parallel ({most})");
    // The manifest in the bucket says the same.
    let fleet = v["fleet_id"].as_str().unwrap();
    let status = c.t.run(&["runs", "--fleet", fleet, "--json"]);
    status.assert_success();
    assert_eq!(status.json()["counts"]["success"], 30);
}

#[test]
fn capacity_errors_on_run_task_are_retried_and_no_run_is_lost() {
    let Some(c) = Cloud::new(true) else { return };
    c.moto.inject(
        "RunTask",
        3,
        200,
        "application/x-amz-json-1.1",
        r#"{"tasks": [], "failures": [{"reason": "RESOURCE:FARGATE", "detail": "capacity is unavailable at this time"}]}"#,
    );
    let file = tasks_file(&c.t, 6);
    let out = c.t.run(&[
        "run",
        "--cloud",
        "--stubs",
        "--tasks",
        &file,
        "--max-parallel",
        "3",
        "--json",
    ]);
    assert_eq!(out.code, 0, "stderr:\n{}", out.stderr);
    assert_eq!(out.json()["summary"]["success"], 6);
    assert!(
        out.stderr.contains("no Fargate capacity (RESOURCE:FARGATE (capacity is unavailable at this time)); launches pause for"),
        "{}",
        out.stderr
    );
    let requests = c.moto.requests();
    let run_task: Vec<_> = requests.iter().filter(|r| r.action == "RunTask").collect();
    assert_eq!(run_task.len(), 9, "6 launches and 3 refused");
    assert_eq!(
        run_task
            .iter()
            .filter(|r| r.status == json!("injected"))
            .count(),
        3
    );
    let tasks = moto_tasks(&c);
    let ids: HashSet<_> = tasks.iter().map(|t| t.0.clone()).collect();
    assert_eq!((tasks.len(), ids.len()), (6, 6), "each run launched once");
}

/// Spawn `lackey` with stderr read into a shared buffer.
fn spawn_watched(t: &TestEnv, args: &[&str]) -> (std::process::Child, Arc<Mutex<String>>) {
    let mut child = t
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let seen = Arc::new(Mutex::new(String::new()));
    let s2 = seen.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut g = s2.lock().unwrap();
            g.push_str(&line);
            g.push('\n');
        }
    });
    (child, seen)
}

fn wait_for(seen: &Arc<Mutex<String>>, what: &str, n: usize) {
    let start = Instant::now();
    while seen.lock().unwrap().matches(what).count() < n {
        assert!(
            start.elapsed() < Duration::from_secs(900),
            "never saw {n} × `{what}`:\n{}",
            seen.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn fleet_id(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("Fleet fleet-"))
        .map(|rest| format!("fleet-{}", &rest[..20]))
        .unwrap_or_else(|| panic!("no fleet id in:\n{stderr}"))
}

#[test]
fn a_killed_cli_is_finished_by_runs_watch_with_each_run_launched_once() {
    let Some(c) = Cloud::new(true) else { return };
    let file = tasks_file(&c.t, 6);
    let (mut child, seen) = spawn_watched(
        &c.t,
        &[
            "run",
            "--cloud",
            "--stubs",
            "--tasks",
            &file,
            "--max-parallel",
            "2",
        ],
    );
    wait_for(&seen, "  RUNNING", 2);
    child.kill().unwrap(); // SIGKILL: no cleanup runs
    let _ = child.wait();
    let id = fleet_id(&seen.lock().unwrap());
    let before = run_tasks_calls(&c);
    assert!(
        (2..6).contains(&before),
        "{before} RunTask calls before the kill"
    );
    let out = c.t.run(&["runs", "--fleet", &id, "--watch", "--json"]);
    assert_eq!(out.code, 0, "stderr:\n{}", out.stderr);
    let v = out.json();
    assert_eq!(v["summary"]["success"], 6, "{v}");
    assert_eq!(v["summary"]["tasks_succeeded"], 6);
    // Exactly one task per run: moto's record and the tags agree.
    assert_eq!(run_tasks_calls(&c), 6);
    let tasks = moto_tasks(&c);
    let ids: HashSet<_> = tasks.iter().map(|t| t.0.clone()).collect();
    assert_eq!((tasks.len(), ids.len()), (6, 6));
    let root = artifacts(&c.t);
    for r in v["runs"].as_array().unwrap() {
        let id = r["run_id"].as_str().unwrap();
        assert!(root.join(id).join("run_summary.json").is_file(), "{id}");
    }
}

#[test]
fn stop_fleet_from_another_process_and_ctrl_c_stop_every_task() {
    let Some(mut c) = Cloud::new(true) else {
        return;
    };
    let llm = FakeLlm::start(
        CANARY_KEY,
        vec![Answer::Hang, Answer::Hang, Answer::Hang, Answer::Hang],
    );
    c.t.set("ANTHROPIC_BASE_URL", llm.url());
    let file = tasks_file(&c.t, 4);
    // `lackey stop --fleet` from another process.
    let (child, seen) = spawn_watched(
        &c.t,
        &[
            "run",
            "--cloud",
            "--tasks",
            &file,
            "--max-parallel",
            "2",
            "--json",
        ],
    );
    wait_for(&seen, "  RUNNING", 2);
    let id = fleet_id(&seen.lock().unwrap());
    let stop = c.t.run(&["stop", "--fleet", &id]);
    stop.assert_success();
    assert!(
        stop.stderr
            .contains(&format!("Stopped 2 runs of fleet {id}")),
        "{}",
        stop.stderr
    );
    let out = wait_with_timeout(child, Duration::from_secs(300));
    let stderr = seen.lock().unwrap().clone();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["summary"]["error"], 2, "{v}");
    assert_eq!(v["summary"]["not_run"], 2, "{v}");
    assert!(v["not_run"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("stopped by `lackey stop --fleet`"));
    assert!(moto_tasks(&c).iter().all(|t| t.3 == "STOPPED"));
    assert_eq!(run_tasks_calls(&c), 2);

    // Ctrl-C: every task stopped, exit 130.
    let (child, seen) = spawn_watched(
        &c.t,
        &["run", "--cloud", "--tasks", &file, "--max-parallel", "3"],
    );
    wait_for(&seen, "  RUNNING", 3);
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = wait_with_timeout(child, Duration::from_secs(300));
    let stderr = seen.lock().unwrap().clone();
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted (Ctrl-C): stopping every run"),
        "{stderr}"
    );
    let tasks = moto_tasks(&c);
    assert_eq!(tasks.len(), 5);
    assert!(tasks.iter().all(|t| t.3 == "STOPPED"), "{tasks:?}");
}

struct Local {
    t: TestEnv,
    repo: PathBuf,
}

impl Local {
    fn new() -> Option<Local> {
        if !docker::available() {
            return None;
        }
        let mut t = TestEnv::new();
        let repo = repo::hello_project(&t.work().join("project"));
        t.set("LACKEY_IMAGE", docker::test_image())
            .set("LACKEY_REPO", "project");
        Some(Local { t, repo })
    }
}

/// `docker events` for our runs' containers: (time, start|die, name), in order.
fn docker_events(since: i64, names: &HashSet<String>) -> Vec<(f64, String, String)> {
    let until = chrono::Utc::now().timestamp() + 1;
    let out = std::process::Command::new("docker")
        .args([
            "events",
            "--since",
            &since.to_string(),
            "--until",
            &until.to_string(),
            "--filter",
            "type=container",
            "--filter",
            "event=start",
            "--filter",
            "event=die",
            "--format",
            "{{.TimeNano}} {{.Action}} {{.Actor.Attributes.name}}",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut p = l.split_whitespace();
            let t: f64 = p.next()?.parse().ok()?;
            let action = p.next()?.to_string();
            let name = p.next()?.to_string();
            names.contains(&name).then_some((t / 1e9, action, name))
        })
        .collect()
}

#[test]
fn a_local_fleet_of_six_runs_two_at_a_time() {
    let Some(l) = Local::new() else { return };
    let file = tasks_file(&l.t, 6);
    let since = chrono::Utc::now().timestamp() - 1;
    let out = l.t.run(&[
        "run",
        "--stubs",
        "--tasks",
        &file,
        "--max-parallel",
        "2",
        "--json",
    ]);
    assert_eq!(out.code, 0, "stderr:\n{}", out.stderr);
    let v = out.json();
    assert_eq!(v["summary"]["success"], 6, "{v}");
    let ids: Vec<String> = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_string())
        .collect();
    let names: HashSet<String> = ids.iter().map(|id| format!("lackey-{id}")).collect();
    let events = docker_events(since, &names);
    let started: HashSet<_> = events
        .iter()
        .filter(|e| e.1 == "start")
        .map(|e| e.2.clone())
        .collect();
    assert_eq!(
        started, names,
        "each run's container started once: {events:?}"
    );
    let mut open: HashMap<String, f64> = HashMap::new();
    let mut intervals = Vec::new();
    for (t, action, name) in &events {
        if action == "start" {
            open.insert(name.clone(), *t);
        } else if let Some(a) = open.remove(name) {
            intervals.push((a, *t));
        }
    }
    assert_eq!(intervals.len(), 6, "{events:?}");
    let most = most_at_once(&intervals);
    assert!(most <= 2, "{most} containers at once: {events:?}");
    // Every run's branch came back into the repository.
    let branches = repo::git(&l.repo, &["branch", "--list", "minion/*"]);
    for id in &ids {
        assert!(branches.contains(id), "{id} not in {branches}");
    }
}

#[test]
fn mixed_outcomes_exit_1_with_the_right_counts() {
    let Some(mut l) = Local::new() else { return };
    let scope = || {
        fake_llm::tool_use(
            "submit_scope",
            json!({"summary": "change the greeting", "allowed_dirs": [], "allowed_files": ["hello.sh"],
                   "test_files": ["test.sh"], "rationale": "hello.sh prints the greeting"}),
        )
    };
    // One run at a time, so the script's answers go to the runs in the file's order.
    let llm = FakeLlm::start(
        CANARY_KEY,
        vec![
            // 1: success.
            scope(),
            fake_llm::tool_use("view", json!({"path": "hello.sh"})),
            fake_llm::tool_use(
                "str_replace",
                json!({"path": "hello.sh", "old_str": "echo \"hello\"", "new_str": "echo \"hello, world\""}),
            ),
            fake_llm::tool_use("finish", json!({"summary": "done"})),
            // 2: the test fails and the fixer gives up.
            scope(),
            fake_llm::tool_use("finish", json!({"summary": "nothing needed"})),
            fake_llm::text("I cannot fix this."),
            fake_llm::text("Still cannot."),
            // 3: the executor wants a file outside the scope.
            scope(),
            fake_llm::tool_use(
                "request_scope_change",
                json!({"files": ["README.md"], "reasoning": "the README documents the greeting"}),
            ),
        ],
    );
    l.t.set("ANTHROPIC_API_KEY", CANARY_KEY)
        .set("ANTHROPIC_BASE_URL", llm.url())
        .set("LACKEY_TEST", "sh test.sh");
    l.t.write(
        "tasks.jsonl",
        "{\"task\": \"make hello.sh print hello, world\"}\n{\"task\": \"make the test pass\"}\n{\"task\": \"greet in the README too\"}\n",
    );
    let out = l.t.run(&[
        "run",
        "--tasks",
        "tasks.jsonl",
        "--max-parallel",
        "1",
        "--json",
    ]);
    assert_eq!(out.code, 1, "stderr:\n{}", out.stderr);
    let v = out.json();
    let logs: Vec<String> = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let dir = PathBuf::from(r["artifacts_dir"].as_str().unwrap());
            std::fs::read_to_string(dir.join("minion.log")).unwrap_or_default()
        })
        .collect();
    let s = &v["summary"];
    assert_eq!(
        (
            s["success"].clone(),
            s["test_failure"].clone(),
            s["scope_disagreement"].clone(),
            s["error"].clone()
        ),
        (json!(1), json!(1), json!(1), json!(0)),
        "{v}\n{}\nstderr:\n{}",
        logs.join("\n----\n"),
        out.stderr
    );
    assert_eq!(s["tasks_succeeded"], 1);
    let outcomes: Vec<&str> = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["success", "test_failure", "scope_disagreement"]);
    assert!(!out.stdout.contains(CANARY_KEY) && !out.stderr.contains(CANARY_KEY));
}

#[test]
fn a_bad_tasks_file_names_the_line_and_creates_nothing() {
    let t = TestEnv::new();
    t.write("tasks.jsonl", "fine\n{\"task\": \"x\", \"timout\": 5}\n");
    let out = t.run(&["run", "--tasks", "tasks.jsonl", "--stubs"]);
    out.assert_code(1);
    insta::with_settings!({snapshot_path => "../snapshots", prepend_module_to_snapshot => false}, {
        insta::assert_snapshot!("fleet_bad_tasks_file", out.stderr);
    });
    assert!(!artifacts(&t).exists(), "nothing was created");
}
