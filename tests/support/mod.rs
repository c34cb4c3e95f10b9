//! The test harness every integration test uses.
//!
//! * [`TestEnv`]: a temporary directory with its own HOME, AWS config files and working
//!   directory; every `lackey` it starts sees only the environment the test gives it.
//! * [`moto::Moto`]: the local AWS (moto with the workarounds of docs/stand-ins.md), started on
//!   a free loopback port and killed on drop.
//! * [`require`]: what happens when a dependency (Docker, moto) is missing: under
//!   `CI=true` the test fails; elsewhere it says loudly that it is skipped.
//! * [`snapshot_filters`]: insta filters for times, temp paths, ports, ids.

#![allow(dead_code)]

pub mod docker;
pub mod fake_github;
pub mod fake_llm;
pub mod fargate;
pub mod moto;
pub mod registry;
pub mod repo;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The artifact set (docs/artifacts.md), as the product defines it.
pub use lackey::summary::ARTIFACTS;

/// The `lackey` binary cargo built for these tests.
/// The lackey the tests run: this build's, or the one `LACKEY_BIN` names (the
/// benchmarks measure a release build that way: `make bench-stack LACKEY_BIN=…`).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("LACKEY_BIN")
            .ok()
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_lackey").to_string())
    })
}

/// Whether this is a CI run, where a missing dependency is a failure, never a skip.
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

/// Check a dependency. Returns false (the test should return early) only outside CI;
/// under CI a missing dependency panics so the run fails.
pub fn require(what: &str, available: bool, how_to_get: &str) -> bool {
    if available {
        return true;
    }
    if in_ci() {
        panic!("{what} is required under CI=true but is not available: {how_to_get}");
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    eprintln!(
        "SKIPPED: {test}: {what} is not available ({how_to_get}); CI=true makes this a failure"
    );
    record(
        "skip",
        &format!("{test}\t{what} is not available ({how_to_get})"),
    );
    false
}

/// Append a line to the ledger of this test run, the file named by
/// `LACKEY_TEST_LEDGER` (`make test` sets it): the tests it skipped, and what it made
/// (temporary directories, registries), so the run can be checked afterwards for
/// anything it left behind. Without the variable, nothing is recorded.
pub fn record(kind: &str, text: &str) {
    let Ok(path) = std::env::var("LACKEY_TEST_LEDGER") else {
        return;
    };
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        // One write per line: appends from parallel tests do not interleave.
        let _ = f.write_all(format!("{kind}\t{text}\n").as_bytes());
    }
}

/// The result of one `lackey` invocation.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n--- stdout\n{}\n--- stderr\n{}",
                self.stdout, self.stderr
            )
        })
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "unexpected exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        self.assert_code(0)
    }
}

/// An isolated place to run lackey: HOME, AWS config and a working directory of its own.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub env: BTreeMap<String, String>,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        let dir = tempfile::Builder::new()
            .prefix("lackey-test-")
            .tempdir()
            .expect("create temp dir");
        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join(".aws")).unwrap();
        std::fs::create_dir_all(dir.path().join("work")).unwrap();
        std::fs::write(home.join(".aws/config"), "[default]\nregion = us-east-1\n").unwrap();
        std::fs::write(
            home.join(".aws/credentials"),
            "[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
        )
        .unwrap();
        let mut env = BTreeMap::new();
        env.insert("PATH".into(), std::env::var("PATH").unwrap_or_default());
        env.insert("HOME".into(), home.display().to_string());
        env.insert(
            "AWS_CONFIG_FILE".into(),
            home.join(".aws/config").display().to_string(),
        );
        env.insert(
            "AWS_SHARED_CREDENTIALS_FILE".into(),
            home.join(".aws/credentials").display().to_string(),
        );
        env.insert("AWS_EC2_METADATA_DISABLED".into(), "true".into());
        env.insert("NO_COLOR".into(), "1".into());
        if let Ok(h) = std::env::var("DOCKER_HOST") {
            env.insert("DOCKER_HOST".into(), h);
        }
        // Run folders go under this directory, removed with it, never to /tmp/lackey.
        env.insert(
            "LACKEY_ARTIFACTS_DIR".into(),
            dir.path().join("artifacts").display().to_string(),
        );
        // The CLI's own temporary folders (a local run's proxy socket and bundle) too: a
        // test that kills the CLI leaves them, and they go with the test's directory.
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        env.insert(
            "TMPDIR".into(),
            dir.path().join("tmp").display().to_string(),
        );
        record("dir", &dir.path().display().to_string());
        TestEnv { dir, env }
    }

    /// The CLI's temporary directory (`TMPDIR`).
    pub fn tmp(&self) -> PathBuf {
        self.dir.path().join("tmp")
    }

    /// The working directory lackey runs in.
    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn set(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.env.insert(key.into(), value.into());
        self
    }

    pub fn unset(&mut self, key: &str) -> &mut Self {
        self.env.remove(key);
        self
    }

    /// Point the AWS SDK at a moto server.
    pub fn with_moto(&mut self, moto: &moto::Moto) -> &mut Self {
        self.set("AWS_ENDPOINT_URL", moto.url());
        self.set("AWS_REGION", "us-east-1");
        self
    }

    /// Run lackey with these AWS credentials (an IAM user of moto's, say).
    pub fn with_keys(&mut self, keys: &moto::Keys) -> &mut Self {
        let mut text = format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            keys.access_key_id, keys.secret_access_key
        );
        if let Some(t) = &keys.session_token {
            text.push_str(&format!("aws_session_token = {t}\n"));
        }
        std::fs::write(self.path().join("home/.aws/credentials"), text).unwrap();
        self
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.work().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.work().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    /// A `lackey` command in this environment (not yet run).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .current_dir(self.work())
            .env_clear()
            .envs(&self.env)
            .stdin(Stdio::null());
        cmd
    }

    /// Run `lackey` to completion (with a generous timeout so a hang fails the test).
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, None)
    }

    pub fn run_with_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = self.command(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().expect("spawn lackey");
        if let Some(data) = stdin {
            use std::io::Write;
            let mut s = child.stdin.take().unwrap();
            s.write_all(data).unwrap();
        }
        let out = wait_with_timeout(child, Duration::from_secs(600));
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Drop for TestEnv {
    /// Remove the run containers whose artifact directory is under this environment
    /// (a run a failing test left behind); the directory itself goes with `dir`.
    fn drop(&mut self) {
        let made_runs = self
            .env
            .get("LACKEY_ARTIFACTS_DIR")
            .is_some_and(|d| Path::new(d).exists());
        if made_runs {
            docker::remove_containers_under(self.dir.path());
        }
    }
}

/// Wait for a child, killing it if it outlives `timeout`.
pub fn wait_with_timeout(child: std::process::Child, timeout: Duration) -> std::process::Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.expect("wait for lackey"),
        Err(_) => {
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
            panic!("lackey did not finish within {timeout:?}");
        }
    }
}

/// insta settings with filters for what changes between runs.
pub fn snapshot_filters(extra: &[(&str, &str)]) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path("../snapshots");
    s.set_prepend_module_to_snapshot(false);
    let mut filters: Vec<(String, String)> = vec![
        (r"/tmp/lackey-test-[A-Za-z0-9]+".into(), "[TMP]".into()),
        (r"127\.0\.0\.1:\d+".into(), "127.0.0.1:[PORT]".into()),
        (r"\b\d{8}-\d{6}-[0-9a-f]{4}\b".into(), "[RUN_ID]".into()),
        (r"\b\d+(\.\d+)?(ms|s)\b".into(), "[TIME]".into()),
        (
            r"\b(subnet|sg|vpc|eni)-[0-9a-f]{8,17}\b".into(),
            "$1-[ID]".into(),
        ),
        (r"request id [A-Za-z0-9-]+".into(), "request id [ID]".into()),
    ];
    for (a, b) in extra {
        filters.push((a.to_string(), b.to_string()));
    }
    for (a, b) in filters {
        s.add_filter(&a, &b);
    }
    s
}
