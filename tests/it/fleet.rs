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
    // Each run's report, as after a single run: here and beside its artifacts in S3;
    // the fleet's page beside its manifest, linking to each.
    let fleet = v["fleet_id"].as_str().unwrap();
    let keys = c.s3_keys("");
    let page = std::fs::read_to_string(root.join("fleets").join(fleet).join("report.html"))
        .expect("the fleet's report.html");
    for r in runs {
        let id = r["run_id"].as_str().unwrap();
        let report = std::fs::read_to_string(root.join(id).join("report.html"))
            .unwrap_or_else(|e| panic!("{id} has no report.html: {e}"));
        assert!(report.contains(id));
        assert!(
            keys.contains(&format!("{}/report.html", c.artifact_prefix(id))),
            "{id}: {keys:?}"
        );
        assert!(
            page.contains(&format!("href=\"../../{id}/report.html\"")),
            "{id}"
        );
    }
    assert!(
        keys.contains(&format!("fleets/{fleet}/report.html")),
        "{keys:?}"
    );
    // From a machine without the fleet's local copy: the page from the bucket's
    // manifest, uploaded beside it again.
    std::fs::remove_dir_all(root.join("fleets")).unwrap();
    let again = c.t.run(&["report", "--fleet", fleet, "--json"]);
    again.assert_success();
    let a = again.json();
    assert_eq!(
        a["uploaded"],
        format!("s3://lackey-artifacts-123456789012/fleets/{fleet}/report.html")
    );
    let page = std::fs::read_to_string(a["report"].as_str().unwrap()).unwrap();
    assert_eq!(page.matches("<tr class=\"run\">").count(), 30);
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

/// On a terminal (a pty from `script`) the live table shows each cloud run's last log
/// line, read with FilterLogEvents: the CLI here holds exactly `lackey policy`'s
/// document, and none of those calls is refused.
#[test]
fn on_a_terminal_a_cloud_fleet_reads_log_lines_within_the_operator_policy() {
    let Some(c) = Cloud::new(true) else { return };
    let file = tasks_file(&c.t, 2);
    c.moto.reset_requests();
    let out_path = c.t.path().join("fleet.json");
    let cmdline = format!(
        "'{}' run --cloud --stubs --tasks '{file}' --json > '{}'",
        crate::support::bin(),
        out_path.display()
    );
    let status = std::process::Command::new("script")
        .args(["-qefc", &cmdline, "/dev/null"])
        .current_dir(c.t.work())
        .env_clear()
        .envs(&c.t.env)
        .env("TERM", "xterm-256color")
        .env("COLUMNS", "200")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("util-linux `script` gives the fleet a terminal");
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    assert!(status.success(), "the fleet failed: {text}");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(v["summary"]["success"], 2, "{v}");
    let reads: Vec<_> = c
        .moto
        .requests()
        .into_iter()
        .filter(|r| r.caller == "cli" && r.action == "FilterLogEvents")
        .collect();
    assert!(!reads.is_empty(), "no log line was read on a terminal");
    assert!(
        reads.iter().all(|r| r.status.as_u64() == Some(200)),
        "a FilterLogEvents was refused: {:?}",
        reads.iter().map(|r| &r.status).collect::<Vec<_>>()
    );
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
    // `lackey logs RUN --follow` from another shell while the fleet goes on: it streams
    // the run's log and ends when the run does.
    let manifest: Value =
        serde_json::from_str(&c.s3_text(&format!("fleets/{id}/manifest.json"))).unwrap();
    let running = manifest["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["state"] == "launched")
        .map(|r| r["run_id"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no launched run in {manifest}"));
    let follower =
        c.t.command(&["logs", &running, "--follow"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
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
    let followed = wait_with_timeout(follower, Duration::from_secs(600));
    let log = String::from_utf8_lossy(&followed.stdout);
    assert_eq!(
        followed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&followed.stderr)
    );
    assert!(!log.trim().is_empty(), "`logs --follow` printed nothing");
    assert!(!log.contains(CANARY_KEY));

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
    // Every run's branch came back into the repository, and each run has its report,
    // linked from the fleet's page.
    let branches = repo::git(&l.repo, &["branch", "--list", "minion/*"]);
    let root = artifacts(&l.t);
    let fleet = v["fleet_id"].as_str().unwrap();
    let page = std::fs::read_to_string(root.join("fleets").join(fleet).join("report.html"))
        .expect("the fleet's report.html");
    for id in &ids {
        assert!(branches.contains(id), "{id} not in {branches}");
        assert!(
            root.join(id).join("report.html").is_file(),
            "{id}: no report.html"
        );
        assert!(
            page.contains(&format!("href=\"../../{id}/report.html\"")),
            "{id}"
        );
    }
}

/// The answers of one successful run on the hello project.
fn a_successful_run() -> Vec<Answer> {
    vec![
        fake_llm::tool_use(
            "submit_scope",
            json!({"summary": "change the greeting", "allowed_dirs": [], "allowed_files": ["hello.sh"],
                   "test_files": ["test.sh"], "rationale": "hello.sh prints the greeting"}),
        ),
        fake_llm::tool_use("view", json!({"path": "hello.sh"})),
        fake_llm::edit_hello_sh(),
        fake_llm::tool_use("finish", json!({"summary": "done"})),
    ]
}

/// Whether a container is running (false once it exited or is gone).
fn container_running(name: &str) -> bool {
    let out = std::process::Command::new("docker")
        .args(["inspect", "-f", "{{.State.Running}}", name])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "true"
}

/// kill -9 of the CLI mid local fleet: the container it left stops by itself (its only
/// way out, the CLI's proxy, died with the CLI) and keeps its artifacts; `--resume` with
/// the same file runs only what did not finish, each once.
#[test]
fn a_killed_local_fleet_is_resumed_and_runs_only_what_did_not_finish() {
    let Some(mut l) = Local::new() else { return };
    // One run at a time, in the file's order: the first succeeds, the second hangs in
    // its first LLM call when the CLI is killed; the resumed fleet's two runs succeed.
    let mut script = a_successful_run();
    script.push(Answer::Hang);
    script.extend(a_successful_run());
    script.extend(a_successful_run());
    let llm = FakeLlm::start(CANARY_KEY, script);
    l.t.set("ANTHROPIC_API_KEY", CANARY_KEY)
        .set("ANTHROPIC_BASE_URL", llm.url())
        .set("LACKEY_TEST", "sh test.sh");
    l.t.write(
        "tasks.txt",
        "make hello.sh print hello, world\nthe same, second\nthe same, third\n",
    );
    let (mut child, seen) = spawn_watched(
        &l.t,
        &["run", "--tasks", "tasks.txt", "--max-parallel", "1"],
    );
    wait_for(&seen, "  success", 1);
    // The second run is in its hanging LLM call: 4 answers given, the 5th held.
    let start = Instant::now();
    while llm.received().len() < 5 {
        assert!(
            start.elapsed() < Duration::from_secs(900),
            "the second run never called the LLM:\n{}",
            seen.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The manifest takes changes other than a launch at most once per tick: the first
    // run's `done` is written within one after its line is shown.
    let id = fleet_id(&seen.lock().unwrap());
    let root = artifacts(&l.t);
    let path = root.join("fleets").join(&id).join("manifest.json");
    let start = Instant::now();
    while !std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .is_some_and(|m| m["runs"][0]["state"] == "done")
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the first run is not saved as done:\n{}",
            seen.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap(); // SIGKILL: nothing of the CLI runs after this
    let _ = child.wait();
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("fleets").join(&id).join("manifest.json")).unwrap(),
    )
    .unwrap();
    let run_id = |i: usize| manifest["runs"][i]["run_id"].as_str().unwrap().to_string();
    let (first, killed, third) = (run_id(0), run_id(1), run_id(2));
    assert_eq!(manifest["runs"][0]["state"], "done", "{manifest}");
    assert_eq!(manifest["runs"][2]["state"], "queued", "{manifest}");
    // The killed run's container stops by itself: its LLM calls fail without the proxy.
    let name = format!("lackey-{killed}");
    let start = Instant::now();
    while container_running(&name) {
        assert!(
            start.elapsed() < Duration::from_secs(900),
            "{name} still runs after the CLI died"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        root.join(&killed).join("minion.log").is_file(),
        "the killed run's artifacts are kept"
    );

    // Resume: the first run stays done; the killed one and the third run, once each.
    let since = chrono::Utc::now().timestamp() - 1;
    let out = l.t.run(&[
        "run",
        "--tasks",
        "tasks.txt",
        "--resume",
        &id,
        "--max-parallel",
        "1",
        "--json",
    ]);
    assert_eq!(out.code, 0, "stderr:\n{}", out.stderr);
    let v = out.json();
    assert_eq!(v["fleet_id"], id.as_str());
    assert_eq!(v["summary"]["success"], 3, "{v}");
    assert_eq!(v["summary"]["tasks_succeeded"], 3);
    let ids: Vec<String> = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids[0], first, "the finished run is not run again");
    assert_ne!(ids[1], killed, "the killed run runs again under a new id");
    assert_eq!(ids[2], third);
    let names: HashSet<String> = ids.iter().map(|i| format!("lackey-{i}")).collect();
    let started: Vec<String> = docker_events(since, &names)
        .into_iter()
        .filter(|e| e.1 == "start")
        .map(|e| e.2)
        .collect();
    let mut expected = vec![format!("lackey-{}", ids[1]), format!("lackey-{third}")];
    let mut got = started.clone();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "only what did not finish ran, once each");
    assert!(!container_running(&name));
    assert!(root.join(&killed).join("minion.log").is_file());
    assert_eq!(llm.remaining(), 0, "{:?}", llm.violations());
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
            fake_llm::edit_hello_sh(),
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
