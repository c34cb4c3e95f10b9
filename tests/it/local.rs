//! Local runs against the real Docker engine: the whole path from `lackey run` to the
//! branch in the user's repository, with the fake LLM on the host's loopback.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::docker::{self, containers_with_label};
use crate::support::fake_llm::{self, Answer, FakeLlm};
use crate::support::{repo, wait_with_timeout, TestEnv, ARTIFACTS};

const CANARY_KEY: &str = "sk-ant-api03-CANARY-local-5a5a5a5a5a5a5a5a";

struct Local {
    t: TestEnv,
    repo: PathBuf,
    artifacts: PathBuf,
}

impl Local {
    /// None when Docker is missing outside CI (under CI=true that panics instead).
    fn new() -> Option<Local> {
        if !docker::available() {
            return None;
        }
        let mut t = TestEnv::new();
        let repo = repo::hello_project(&t.work().join("project"));
        let artifacts = t.path().join("artifacts");
        t.set("LACKEY_ARTIFACTS_DIR", artifacts.display().to_string())
            .set("LACKEY_IMAGE", docker::test_image());
        Some(Local { t, repo, artifacts })
    }

    fn args<'a>(&'a self, task: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec!["run", task, "--repo", "project"];
        a.extend_from_slice(extra);
        a
    }

    fn run_dirs(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.artifacts)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    /// Containers of this test (their artifact directories are under ours).
    fn our_containers(&self) -> Vec<String> {
        containers_with_label("lackey.managed=true")
            .into_iter()
            .filter(|name| docker::inspect(name).contains(&self.artifacts.display().to_string()))
            .collect()
    }

    fn branches(&self) -> Vec<String> {
        repo::git(
            &self.repo,
            &["branch", "--list", "minion/*", "--format=%(refname:short)"],
        )
        .lines()
        .map(str::to_string)
        .collect()
    }

    fn spawn(&self, args: &[&str]) -> Child {
        let mut cmd = self.t.command(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.spawn().expect("spawn lackey run")
    }

    /// Wait until a run container of this test is running; returns its name.
    fn wait_for_container(&self) -> String {
        let start = Instant::now();
        loop {
            if let Some(c) = self.our_containers().into_iter().next() {
                return c;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no container appeared"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn read_summary(dir: &Path) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(dir.join("run_summary.json")).expect("run_summary.json"),
    )
    .unwrap()
}

fn assert_no_canary_in(dir: &Path) {
    for e in walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
    {
        if e.file_type().is_file() {
            let text = String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned();
            assert!(
                !text.contains(CANARY_KEY),
                "the API key leaked into {}",
                e.path().display()
            );
        }
    }
}

#[test]
fn a_stub_run_end_to_end() {
    let Some(l) = Local::new() else { return };
    let out =
        l.t.run(&l.args("add a hello world test", &["--stubs", "--json"]));
    out.assert_success();
    let v = out.json();
    let id = v["run_id"].as_str().unwrap().to_string();
    assert_eq!(v["outcome"], "success");
    assert_eq!(v["runtime"], "local");
    assert_eq!(v["branch"], format!("minion/{id}"));
    assert_eq!(v["task"], "add a hello world test");
    assert!(
        v["base_sha"].is_string() && v["head_sha"].is_string() && v["base_sha"] != v["head_sha"]
    );
    assert_eq!(v["usage"]["llm_calls"], 0);
    let dir = l.artifacts.join(&id);
    assert_eq!(v["artifacts_dir"], format!("{}/", dir.display()));
    for a in ARTIFACTS {
        assert!(dir.join(a).is_file(), "missing artifact {a}");
    }
    assert!(std::fs::read_to_string(dir.join("minion.log"))
        .unwrap()
        .contains("outcome success"));
    // The report page is written at the end of the run, from these artifacts.
    let report = std::fs::read_to_string(dir.join("report.html")).expect("report.html");
    assert!(report.contains(&id) && report.contains("add a hello world test"));
    // The branch is in the user's repository, with the stub's commit, and HEAD is untouched.
    assert_eq!(l.branches(), vec![format!("minion/{id}")]);
    let files = repo::git(
        &l.repo,
        &["show", "--name-only", "--format=", &format!("minion/{id}")],
    );
    assert_eq!(files.trim(), format!(".lackey/stub-runs/{id}.md"));
    // Its commit says it is a stub's, not that the task was done.
    let subject = repo::git(
        &l.repo,
        &["log", "-1", "--format=%s", &format!("minion/{id}")],
    );
    assert_eq!(
        subject.trim(),
        format!("Stub run {id}: add .lackey/stub-runs/{id}.md")
    );
    assert_eq!(
        repo::git(&l.repo, &["rev-parse", "--abbrev-ref", "HEAD"]).trim(),
        "main"
    );
    assert!(repo::git(&l.repo, &["status", "--porcelain"]).is_empty());
    assert!(l.our_containers().is_empty(), "a container was left behind");
    assert!(
        out.stderr.contains(&format!("Starting run {id}")),
        "{}",
        out.stderr
    );

    // The human summary names outcome, runtime, branch and artifact path; --follow
    // streams the run's log as it happens.
    let out = l.t.run(&l.args("another", &["--stubs", "--follow"]));
    out.assert_success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("outcome:   success"), "{}", out.stdout);
    assert!(lines[1].starts_with("runtime:   local, "));
    assert!(
        lines[2].starts_with("branch:    minion/") && lines[2].ends_with("(in project)"),
        "{}",
        lines[2]
    );
    assert!(lines[3].starts_with(&format!("artifacts: {}/", l.artifacts.display())));
    assert!(
        lines[4].starts_with(&format!("report:    {}/", l.artifacts.display()))
            && lines[4].ends_with("/report.html"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr
            .contains("[minion] cloning /run/lackey/source.bundle")
            && out.stderr.contains("[minion] outcome success"),
        "{}",
        out.stderr
    );

    // `lackey runs` lists both, newest first; `lackey logs` prints the log.
    let runs = l.t.run(&["runs", "--json"]);
    runs.assert_success();
    let rows = runs.json()["runs"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["run_id"], id.as_str());
    assert_eq!(rows[1]["backend"], "local");
    assert_eq!(rows[1]["outcome"], "success");
    let logs = l.t.run(&["logs", &id]);
    logs.assert_success();
    assert!(logs.stdout.contains("[minion] outcome success"));
    let bad = l.t.run(&["logs", "../../etc"]);
    bad.assert_code(1);
}

/// The branch a local run brings back is the one decided before launch: the
/// blueprint's template expanded (read from the repository's last commit), or with
/// `--push-to` an existing branch, moved forward, never the one checked out.
#[test]
fn the_branch_brought_back_is_decided_before_launch() {
    let Some(l) = Local::new() else { return };
    std::fs::create_dir_all(l.repo.join(".lackey/blueprints")).unwrap();
    std::fs::write(
        l.repo.join(".lackey/blueprints/named.yaml"),
        "name: named\nsteps:\n  - {name: branch, type: git_branch, branch: \"lackey/{run_id}/{task_slug}\"}\n  - {name: implement, type: agent, agent: executor}\n  - {name: commit, type: git_commit}\n",
    )
    .unwrap();
    repo::git(&l.repo, &["add", "-A"]);
    repo::git(&l.repo, &["commit", "-qm", "a blueprint"]);
    let out =
        l.t.run(&l.args("Say Hello, World!", &["--stubs", "--json"]));
    out.assert_success();
    let v = out.json();
    let id = v["run_id"].as_str().unwrap().to_string();
    let named = format!("lackey/{id}/say-hello-world");
    assert_eq!(v["branch"], named.as_str());
    assert!(
        repo::git(&l.repo, &["branch", "--list", &named]).contains(&named),
        "{}",
        out.stderr
    );

    // --push-to: the existing branch, fast-forwarded by the run's one commit.
    repo::git(&l.repo, &["branch", "feature"]);
    let before = repo::git(&l.repo, &["rev-parse", "feature"]);
    let out =
        l.t.run(&l.args("more", &["--stubs", "--push-to", "feature", "--json"]));
    out.assert_success();
    let v = out.json();
    assert_eq!(v["branch"], "feature");
    assert_eq!(repo::git(&l.repo, &["rev-parse", "feature^"]), before);
    let id = v["run_id"].as_str().unwrap();
    assert!(
        repo::git(&l.repo, &["ls-tree", "-r", "--name-only", "feature"])
            .contains(&format!(".lackey/stub-runs/{id}.md"))
    );
    // The branch the work tree has checked out is refused before anything starts.
    let runs = l.run_dirs().len();
    let out = l.t.run(&l.args("x", &["--stubs", "--push-to", "main"]));
    out.assert_code(1);
    assert!(
        out.stderr.contains("it is the branch checked out in"),
        "{}",
        out.stderr
    );
    assert_eq!(l.run_dirs().len(), runs, "no run started");
}

#[test]
fn four_parallel_stub_runs_on_one_repository() {
    let Some(l) = Local::new() else { return };
    let children: Vec<Child> = (0..4)
        .map(|i| l.spawn(&l.args(&format!("parallel task {i}"), &["--stubs", "--json"])))
        .collect();
    let mut ids = Vec::new();
    for c in children {
        let out = wait_with_timeout(c, Duration::from_secs(300));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["outcome"], "success");
        ids.push(v["run_id"].as_str().unwrap().to_string());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "run ids collide");
    let mut branches = l.branches();
    branches.sort();
    assert_eq!(
        branches,
        ids.iter()
            .map(|i| format!("minion/{i}"))
            .collect::<Vec<_>>()
    );
    assert_eq!(l.run_dirs().len(), 4);
    assert!(l.our_containers().is_empty());
}

#[test]
fn timeout_against_an_llm_that_never_answers() {
    let Some(mut l) = Local::new() else { return };
    let llm = FakeLlm::start(
        CANARY_KEY,
        vec![
            fake_llm::tool_use(
                "submit_scope",
                json!({"summary": "s", "allowed_dirs": [], "allowed_files": ["hello.sh"], "test_files": [], "rationale": "r"}),
            ),
            Answer::Hang,
        ],
    );
    l.t.set("ANTHROPIC_API_KEY", CANARY_KEY)
        .set("ANTHROPIC_BASE_URL", llm.url());
    let started = Instant::now();
    let out =
        l.t.run(&l.args("add a hello world test", &["--timeout", "8"]));
    let took = started.elapsed();
    out.assert_code(1);
    assert!(
        took < Duration::from_secs(25),
        "the run outlived its timeout by far: {took:?}"
    );
    let dirs = l.run_dirs();
    assert_eq!(dirs.len(), 1);
    let s = read_summary(&dirs[0]);
    assert_eq!(s["outcome"], "error");
    assert!(
        s["error"]
            .as_str()
            .unwrap()
            .starts_with("timed out after 8 s"),
        "{}",
        s["error"]
    );
    // The loopback LLM was reached from inside the container, and the partial work stayed.
    assert_eq!(llm.received().len(), 2);
    llm.assert_clean();
    assert!(std::fs::read_to_string(dirs[0].join("scope.json"))
        .unwrap()
        .contains("hello.sh"));
    assert!(std::fs::read_to_string(dirs[0].join("minion.log"))
        .unwrap()
        .contains("timed out after 8 s"));
    assert!(out.stdout.contains("outcome:   error"));
    assert!(l.our_containers().is_empty());
    // A run that failed has its report too, without the key.
    assert!(std::fs::read_to_string(dirs[0].join("report.html"))
        .unwrap()
        .contains("timed out after 8 s"));
    assert_no_canary_in(&dirs[0]);
}

#[test]
fn ctrl_c_stops_the_container_and_keeps_partial_artifacts() {
    let Some(mut l) = Local::new() else { return };
    let llm = FakeLlm::start(CANARY_KEY, vec![Answer::Hang]);
    l.t.set("ANTHROPIC_API_KEY", CANARY_KEY)
        .set("ANTHROPIC_BASE_URL", llm.url());
    let child = l.spawn(&l.args("add a hello world test", &[]));
    l.wait_for_container();
    // Wait until the minion is mid-run (its first LLM request is pending).
    let start = Instant::now();
    while llm.received().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the minion never called the LLM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = wait_with_timeout(child, Duration::from_secs(60));
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dirs = l.run_dirs();
    let s = read_summary(&dirs[0]);
    assert_eq!(s["outcome"], "error");
    assert!(
        s["error"].as_str().unwrap().starts_with("stopped"),
        "{}",
        s["error"]
    );
    assert!(std::fs::metadata(dirs[0].join("minion.log")).unwrap().len() > 0);
    assert!(
        dirs[0].join("report.html").is_file(),
        "an interrupted run has no report"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted"));
    assert!(
        l.our_containers().is_empty(),
        "Ctrl-C left a container behind"
    );
}

#[test]
fn lackey_stop_ends_a_running_run() {
    let Some(mut l) = Local::new() else { return };
    let llm = FakeLlm::start(CANARY_KEY, vec![Answer::Hang]);
    l.t.set("ANTHROPIC_API_KEY", CANARY_KEY)
        .set("ANTHROPIC_BASE_URL", llm.url());
    let child = l.spawn(&l.args("add a hello world test", &[]));
    l.wait_for_container();
    let id = l.run_dirs()[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let stop = l.t.run(&["stop", &id]);
    stop.assert_success();
    assert!(
        stop.stderr.contains(&format!("Stopped local run {id}")),
        "{}",
        stop.stderr
    );
    let out = wait_with_timeout(child, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1));
    let s = read_summary(&l.run_dirs()[0]);
    assert!(
        s["error"].as_str().unwrap().starts_with("stopped"),
        "{}",
        s["error"]
    );
    assert!(l.our_containers().is_empty());
    let again = l.t.run(&["stop", &id]);
    again.assert_code(1);
}

#[test]
fn an_image_that_does_not_exist() {
    let Some(l) = Local::new() else { return };
    let out =
        l.t.run(&l.args("x", &["--stubs", "--image", "lackey-minion:does-not-exist"]));
    out.assert_code(1);
    assert_eq!(
        out.stderr.lines().next().unwrap(),
        "error: image `lackey-minion:does-not-exist` not found in the local Docker"
    );
    assert!(out.stderr.contains("hint: build it with `make build-base`"));
    assert!(
        l.run_dirs().is_empty(),
        "an artifact directory was created for a run that never started"
    );
}

#[test]
fn a_repo_path_that_is_not_a_git_repository() {
    let Some(l) = Local::new() else { return };
    std::fs::create_dir_all(l.t.work().join("plain")).unwrap();
    let out = l.t.run(&["run", "x", "--stubs", "--repo", "plain"]);
    out.assert_code(1);
    assert!(
        out.stderr
            .starts_with("error: `plain` is not a git repository\nhint:"),
        "{}",
        out.stderr
    );
    let out = l.t.run(&["run", "x", "--stubs", "--repo", "missing"]);
    out.assert_code(1);
    assert!(
        out.stderr
            .starts_with("error: repository path `missing` does not exist"),
        "{}",
        out.stderr
    );
    assert!(l.run_dirs().is_empty());
}

#[test]
fn missing_api_key_without_stubs_names_the_variable() {
    let Some(l) = Local::new() else { return };
    let out = l.t.run(&l.args("x", &[]));
    out.assert_code(1);
    assert_eq!(
        out.stderr.lines().next().unwrap(),
        "error: missing ANTHROPIC_API_KEY"
    );
}

#[test]
fn the_api_key_never_shows_and_the_container_is_hardened() {
    let Some(mut l) = Local::new() else { return };
    let llm = FakeLlm::start(
        CANARY_KEY,
        vec![
            Answer::Slow(
                Duration::from_secs(3),
                Box::new(fake_llm::tool_use(
                    "submit_scope",
                    json!({"summary": "s", "allowed_dirs": [], "allowed_files": ["hello.sh"], "test_files": ["test.sh"], "rationale": "r"}),
                )),
            ),
            fake_llm::tool_use("view", json!({"path": "hello.sh"})),
            fake_llm::edit_hello_sh(),
            fake_llm::tool_use(
                "bash",
                json!({"command": "sh test.sh; cat /run/secrets/anthropic_api_key; env | grep -i anthropic; echo done"}),
            ),
            fake_llm::tool_use("finish", json!({"summary": "done"})),
        ],
    );
    l.t.set("ANTHROPIC_API_KEY", CANARY_KEY)
        .set("ANTHROPIC_BASE_URL", llm.url())
        .set("LACKEY_TEST", "sh test.sh");
    let child = l.spawn(&l.args("make hello.sh print hello, world", &[]));
    let name = l.wait_for_container();
    // While the run is going: nothing in `docker inspect` carries the key.
    let inspected = docker::inspect(&name);
    let out = wait_with_timeout(child, Duration::from_secs(300));
    assert!(
        !inspected.contains(CANARY_KEY),
        "docker inspect shows the API key"
    );
    // No key in any form: the container gets the proxy's socket, and no network.
    assert!(inspected.contains("LACKEY_PROXY_SOCKET=/run/lackey/proxy.sock"));
    assert!(!inspected.contains("ANTHROPIC_API_KEY"));
    let v: Value = serde_json::from_str(&inspected).unwrap();
    let hc = &v[0]["HostConfig"];
    assert_eq!(hc["ReadonlyRootfs"], true);
    assert_eq!(hc["CapDrop"], json!(["ALL"]));
    assert_eq!(hc["SecurityOpt"], json!(["no-new-privileges"]));
    assert!(
        hc["PidsLimit"].as_i64().unwrap() > 0
            && hc["Memory"].as_i64().unwrap() > 0
            && hc["NanoCpus"].as_i64().unwrap() > 0
    );
    assert!(hc["Tmpfs"]["/work"].is_string() && hc["Tmpfs"]["/tmp"].is_string());
    // The container's output, kept by Docker on the host, is rotated and bounded.
    assert_eq!(
        hc["LogConfig"],
        json!({"Type": "json-file", "Config": {"max-size": "8m", "max-file": "2"}})
    );
    let binds: Vec<String> = hc["Binds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap().to_string())
        .collect();
    // Two mounts only: the run folder and the run's read-only host directory (the
    // proxy's socket and the repository's bundle); never the work tree.
    assert_eq!(binds.len(), 2, "{binds:?}");
    assert!(
        binds.iter().any(|b| b.ends_with(":/output:rw")),
        "{binds:?}"
    );
    assert!(
        binds.iter().any(|b| b.ends_with(":/run/lackey:ro")),
        "{binds:?}"
    );
    assert_eq!(hc["NetworkMode"], "none");
    assert_ne!(v[0]["Config"]["User"], "");
    assert!(!v[0]["Config"]["User"].as_str().unwrap().starts_with("0:"));
    // The run itself worked, through the credential proxy, which added the key.
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    llm.assert_clean();
    let dir = &l.run_dirs()[0];
    let s = read_summary(dir);
    assert_eq!(s["outcome"], "success");
    // There was no secret file to read, and the environment held no key.
    let commands = std::fs::read_to_string(dir.join("commands.log")).unwrap();
    assert!(
        commands.contains("/run/secrets/anthropic_api_key: No such file"),
        "{commands}"
    );
    assert!(!commands.contains("ANTHROPIC_API_KEY="), "{commands}");
    assert_no_canary_in(dir);
    assert!(!String::from_utf8_lossy(&out.stdout).contains(CANARY_KEY));
    assert!(!String::from_utf8_lossy(&out.stderr).contains(CANARY_KEY));
    let id = dir.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        !l.t.tmp().join(format!("lackey-proxy-{id}")).exists(),
        "the proxy's directory outlived the run"
    );
    assert_eq!(
        std::fs::read_to_string(l.repo.join("hello.sh")).unwrap(),
        "#!/bin/sh\necho \"hello\"\n",
        "the user's working tree was written"
    );
    assert!(
        repo::git(&l.repo, &["show", &format!("minion/{id}:hello.sh")]).contains("hello, world")
    );
}

#[test]
fn a_project_image_extends_the_base_from_the_repository() {
    let Some(l) = Local::new() else { return };
    l.t.write(
        "project/.lackey/Dockerfile",
        "ARG BASE=minion-base:latest\nFROM ${BASE}\nUSER root\nRUN echo project-tools > /etc/project-marker\nUSER 1000:1000\n",
    );
    let tag = format!("lackey-minion-app:test-{}", std::process::id());
    let out = l.t.run(&[
        "image",
        "build",
        "--project",
        "--repo",
        "project",
        "--tag",
        &tag,
    ]);
    out.assert_success();
    let check = std::process::Command::new("docker")
        .args([
            "run",
            "--rm",
            "--entrypoint",
            "cat",
            &tag,
            "/etc/project-marker",
        ])
        .output()
        .unwrap();
    let _ = std::process::Command::new("docker")
        .args(["rmi", "-f", &tag])
        .output();
    assert_eq!(
        String::from_utf8_lossy(&check.stdout).trim(),
        "project-tools"
    );
    // A repository without one says how to write it.
    let out =
        l.t.run(&["image", "build", "--project", "--repo", "missing-dir"]);
    out.assert_code(1);
}

/// As root, lackey runs the container as uid 1000. A repository only root may read
/// still runs: the container gets a bundle the host made of its commits, never the
/// work tree, so its permissions do not matter.
#[test]
fn a_repository_only_its_owner_can_read_still_runs() {
    let Some(l) = Local::new() else { return };
    let project = l.repo.clone();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&project, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = l.t.run(&["run", "x", "--stubs", "--repo", "project"]);
    std::fs::set_permissions(&project, std::fs::Permissions::from_mode(0o755)).unwrap();
    out.assert_success();
    let branches = repo::git(&project, &["branch", "--list", "minion/*"]);
    assert!(branches.contains("minion/"), "{branches}\n{}", out.stderr);
}

/// The artifact directory's root holds every run's folder (a run's repository bundle
/// among them): one other users may write in (the default is under /tmp) is refused
/// before anything runs, and one lackey makes is private.
#[test]
fn an_artifact_root_others_may_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let Some(mut l) = Local::new() else { return };
    let shared = l.t.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    l.t.set("LACKEY_ARTIFACTS_DIR", shared.display().to_string());
    let out = l.t.run(&l.args("x", &["--stubs"]));
    out.assert_code(1);
    assert!(
        out.stderr.starts_with(&format!(
            "error: the artifact directory `{}` may be written by other users",
            shared.display()
        )) && out.stderr.contains("hint: "),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_dir(&shared).unwrap().count(), 0);
    let fresh = l.t.path().join("fresh/runs");
    l.t.set("LACKEY_ARTIFACTS_DIR", fresh.display().to_string());
    l.t.run(&l.args("x", &["--stubs"])).assert_success();
    let mode = std::fs::metadata(&fresh).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");
}
