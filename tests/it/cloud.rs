//! Cloud runs end to end, with everything real but the cloud itself: moto as AWS (with
//! the Fargate player running its tasks in Docker), Debian's docker-registry as the ECR
//! data plane, a fake GitHub and the fake LLM.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::docker;
use crate::support::fake_github::{self, FakeGitHub};
use crate::support::fake_llm::{self, Answer, FakeLlm};
use crate::support::fargate::FargatePlayer;
use crate::support::moto::{block_on, Moto};
use crate::support::registry::Registry;
use crate::support::{repo, wait_with_timeout, TestEnv, ARTIFACTS};

pub(crate) const CANARY_KEY: &str = "sk-ant-api03-CANARY-cloud-c0ffee0123456789";

/// A blueprint in the original's dialect whose steps depend on passed-through variables.
const STAGED_BLUEPRINT: &str = r#"name: staged
steps:
  - {name: branch, type: git_branch, branch: "minion/{run_id}"}
  - {name: staged, type: command, when: env.STAGE, commands: ["echo stage=$STAGE"]}
  - {name: unpassed, type: command, when: env.NOT_PASSED, commands: ["echo should-not-run"]}
"#;

/// A blueprint in the original's dialect whose branch template the host expands.
const NAMED_BLUEPRINT: &str = r#"name: named
steps:
  - {name: branch, type: git_branch, branch: "lackey/{run_id}/{task_slug}"}
  - {name: implement, type: agent, agent: executor}
  - {name: commit, type: git_commit, message: "lackey: {task}"}
  - {name: push, type: git_push}
"#;

/// The original's `git_checkout`: work on an existing branch.
const CHECKOUT_BLUEPRINT: &str = r#"name: on-feature
steps:
  - {name: checkout, type: git_checkout, branch: feature}
  - {name: implement, type: agent, agent: executor}
  - {name: commit, type: git_commit}
  - {name: push, type: git_push}
"#;

pub(crate) struct Cloud {
    pub(crate) moto: Moto,
    registry: Registry,
    github: FakeGitHub,
    pub(crate) t: TestEnv,
    artifacts: PathBuf,
    pub(crate) _player: Option<FargatePlayer>,
}

/// The IAM user the CLI runs as in the cloud tests: it holds exactly `lackey policy`'s
/// document, and moto enforces IAM.
pub(crate) const OPERATOR: &str = "lackey-operator";

impl Cloud {
    /// The whole world, with the stack up; `secrets`: store both secret values.
    pub(crate) fn new(secrets: bool) -> Option<Cloud> {
        let mut c = Cloud::bare(Moto::start_for_fargate()?)?;
        c.up(secrets);
        c.start_player();
        Some(c)
    }

    /// Start the Fargate player: tasks run from now on.
    pub(crate) fn start_player(&mut self) {
        if self._player.is_none() {
            self._player = Some(FargatePlayer::start(&self.moto, "lackey"));
        }
    }

    /// `up` (as the operator), then both secrets' values when `secrets`.
    pub(crate) fn up(&self, secrets: bool) {
        let t = &self.t;
        t.run(&["up", "-q"]).assert_success();
        if secrets {
            let key = t.write("app.pem", &self.github.private_key_pem);
            t.run(&[
                "secret",
                "put",
                "github_app_key",
                "--from-file",
                key.to_str().unwrap(),
            ])
            .assert_success();
            t.run_with_stdin(
                &["secret", "put", "anthropic_api_key"],
                Some(CANARY_KEY.as_bytes()),
            )
            .assert_success();
        }
    }

    /// `lackey policy --json` for this world's lackey.toml.
    pub(crate) fn operator_policy(&self) -> Value {
        let out = self.t.run(&["policy", "--json"]);
        out.assert_success();
        out.json()
    }

    /// Give the operator this policy document instead of the one it holds.
    pub(crate) fn set_operator_policy(&self, doc: &Value) {
        self.moto.set_user_policy(OPERATOR, &doc.to_string());
    }

    /// The whole world with nothing made yet: moto (with the Fargate player), the
    /// registry, the fake GitHub, lackey.toml, and the CLI running as [`OPERATOR`].
    pub(crate) fn bare(moto: Moto) -> Option<Cloud> {
        if !docker::available() {
            return None;
        }
        let image = docker::test_image();
        let registry = Registry::start()?;
        let github = FakeGitHub::start();
        github.add_repo(
            "acme/app",
            &[
                ("hello.sh", "#!/bin/sh\necho \"hello\"\n"),
                ("README.md", "acme app\n"),
                // Not in .lackey/blueprints/, where the only blueprint there is the default.
                ("ci/staged.yaml", STAGED_BLUEPRINT),
                ("ci/named.yaml", NAMED_BLUEPRINT),
                ("ci/on-feature.yaml", CHECKOUT_BLUEPRINT),
            ],
        );
        let mut t = TestEnv::new();
        let artifacts = t.path().join("artifacts");
        t.with_moto(&moto)
            .set("LACKEY_ARTIFACTS_DIR", artifacts.display().to_string());
        t.write(
            "lackey.toml",
            &format!(
                "[aws]\nregion = \"us-east-1\"\naccount_id = \"123456789012\"\n[ecr]\nregistry = \"{}\"\n[github]\napp_id = {}\ninstallation_id = {}\nrepo = \"acme/app\"\napi_url = \"{}\"\ngit_url = \"{}\"\n[image]\nlocal = \"{image}\"\n",
                registry.host(),
                fake_github::APP_ID,
                fake_github::INSTALLATION_ID,
                github.api_url(),
                github.git_url(),
            ),
        );
        let policy = t.run(&["policy", "--json"]);
        policy.assert_success();
        let keys = moto.iam_user(OPERATOR, &policy.stdout);
        t.with_keys(&keys);
        Some(Cloud {
            moto,
            registry,
            github,
            t,
            artifacts,
            _player: None,
        })
    }

    pub(crate) fn github_key(&self) -> String {
        self.github.private_key_pem.clone()
    }

    pub(crate) fn registry_host(&self) -> String {
        self.registry.host()
    }

    pub(crate) fn github(&self) -> &FakeGitHub {
        &self.github
    }

    /// What the Fargate player did (for failure messages).
    pub(crate) fn player_log(&self) -> Vec<String> {
        self._player
            .as_ref()
            .map(|p| p.log.lock().unwrap().clone())
            .unwrap_or_default()
    }

    pub(crate) fn run_dir(&self, id: &str) -> PathBuf {
        self.artifacts.join(id)
    }

    pub(crate) fn task(&self, arn: &str) -> aws_sdk_ecs::types::Task {
        let conf = self.moto.sdk_config();
        block_on(async {
            aws_sdk_ecs::Client::new(&conf)
                .describe_tasks()
                .cluster("lackey")
                .tasks(arn)
                .send()
                .await
                .unwrap()
                .tasks()
                .first()
                .cloned()
                .expect("the task is in moto")
        })
    }

    /// An object of the artifacts bucket, as text.
    pub(crate) fn s3_text(&self, key: &str) -> String {
        let conf = self.moto.sdk_config();
        block_on(async {
            let s3 = aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(&conf)
                    .force_path_style(true)
                    .build(),
            );
            let body = s3
                .get_object()
                .bucket("lackey-artifacts-123456789012")
                .key(key)
                .send()
                .await
                .unwrap();
            let bytes = body.body.collect().await.unwrap().into_bytes();
            String::from_utf8_lossy(&bytes).into_owned()
        })
    }

    /// Where the host recorded run `id`'s artifacts: `<id>/<128 bits in hex>` (the one
    /// record under `runs/<id>/`).
    pub(crate) fn artifact_prefix(&self, id: &str) -> String {
        let records = self.s3_keys(&format!("runs/{id}/"));
        assert_eq!(records.len(), 1, "run {id}'s records: {records:?}");
        let prefix = records[0].strip_prefix("runs/").unwrap().to_string();
        let bits = prefix.strip_prefix(&format!("{id}/")).unwrap();
        assert!(
            bits.len() == 32 && bits.bytes().all(|b| b.is_ascii_hexdigit()),
            "{prefix}"
        );
        prefix
    }

    pub(crate) fn s3_keys(&self, prefix: &str) -> Vec<String> {
        let conf = self.moto.sdk_config();
        block_on(async {
            let s3 = aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(&conf)
                    .force_path_style(true)
                    .build(),
            );
            s3.list_objects_v2()
                .bucket("lackey-artifacts-123456789012")
                .prefix(prefix)
                .send()
                .await
                .unwrap()
                .contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string))
                .collect()
        })
    }
}

pub(crate) fn launched_arn(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("Launched ECS task: "))
        .unwrap_or_else(|| panic!("no `Launched ECS task` line:\n{stderr}"))
        .trim()
        .to_string()
}

/// The positions of `needles` in `haystack`, each after the previous.
fn in_order(haystack: &str, needles: &[&str]) {
    let mut at = 0;
    for n in needles {
        match haystack[at..].find(n) {
            Some(i) => at += i + n.len(),
            None => panic!("`{n}` missing or out of order in:\n{haystack}"),
        }
    }
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one end-to-end scenario, step by step, with the report and [run] env checks"
)]
fn a_stub_cloud_run_end_to_end() {
    let Some(mut c) = Cloud::new(true) else {
        return;
    };
    let out = c.t.run(&[
        "run",
        "add a hello world test",
        "--cloud",
        "--stubs",
        "--pr",
        "--json",
    ]);
    assert_eq!(
        out.code,
        0,
        "stderr:\n{}\nplayer: {:?}",
        out.stderr,
        c._player.as_ref().unwrap().log.lock().unwrap()
    );
    let v = out.json();
    let id = v["run_id"].as_str().unwrap().to_string();
    let task_id = launched_arn(&out.stderr)
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    // The cloud run's fixed output order (the `runner::ecs` module docs).
    in_order(
        &out.stderr,
        &[
            "Pushed 127.0.0.1",
            "Minting GitHub App installation token...",
            "Anthropic API key: not needed (--stubs)",
            "Launched ECS task: arn:aws:ecs:us-east-1:123456789012:task/lackey/",
            &format!("Task {task_id}: PROVISIONING"),
            &format!("Task {task_id}: PENDING"),
            &format!("Task {task_id}: RUNNING"),
            &format!("Task {task_id}: STOPPED"),
            &format!("Downloading artifacts to {}/", c.run_dir(&id).display()),
        ],
    );
    // The summary: outcome, branch, PR, artifacts, S3 prefix.
    assert_eq!(v["outcome"], "success");
    assert_eq!(v["runtime"], "cloud");
    assert_eq!(v["branch"], format!("minion/{id}"));
    // The artifacts are below a prefix no other run's task can guess, recorded by the
    // host where no task can write.
    let prefix = c.artifact_prefix(&id);
    assert_eq!(
        v["s3_prefix"],
        format!("s3://lackey-artifacts-123456789012/{prefix}/")
    );
    let pr = v["pr_url"]
        .as_str()
        .unwrap_or_else(|| panic!("no PR url: {v:#}\n{}", out.stderr));
    assert!(pr.ends_with("/acme/app/pull/1"), "{pr}");
    // Side effects: the branch on the remote, the PR, the artifacts in S3 and here.
    assert!(
        c.github
            .branches("acme/app")
            .contains(&format!("minion/{id}")),
        "{:?}",
        c.github.branches("acme/app")
    );
    let pulls = c.github.pulls();
    assert_eq!(pulls.len(), 1);
    assert_eq!(pulls[0]["head"], format!("minion/{id}"));
    assert_eq!(pulls[0]["base"], "main");
    // The pull request names the run's folder, never the private prefix below it.
    let body = pulls[0]["body"].as_str().unwrap();
    assert!(body.contains(&format!("s3://lackey-artifacts-123456789012/{id}/")));
    assert!(
        !body.contains(&prefix),
        "the PR publishes the private prefix: {body}"
    );
    c.github.assert_clean();
    let keys = c.s3_keys(&format!("{id}/"));
    for a in ARTIFACTS {
        assert!(
            keys.contains(&format!("{prefix}/{a}")),
            "s3 lacks {a}: {keys:?}"
        );
        assert!(c.run_dir(&id).join(a).is_file(), "not downloaded: {a}");
    }
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(c.run_dir(&id).join("run_summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["outcome"], "success");
    assert_eq!(summary["branch"], format!("minion/{id}"));
    // The report page, rendered on the host at the end of the run, beside the artifacts
    // here and in the bucket.
    let report = std::fs::read_to_string(c.run_dir(&id).join("report.html"))
        .expect("report.html beside the downloaded artifacts");
    assert!(report.contains(&id) && report.contains("success"));
    assert!(
        keys.contains(&format!("{prefix}/report.html")),
        "report.html not uploaded: {keys:?}"
    );
    // The container's log went to CloudWatch; `lackey logs` prints the run's log.
    let logs = c.t.run(&["logs", &id]);
    logs.assert_success();
    assert!(
        logs.stdout.contains("[minion] outcome success"),
        "{}",
        logs.stdout
    );

    // The same image a second time: no push. With --follow the task's CloudWatch stream
    // is printed from its first line to its last.
    let again =
        c.t.run(&["run", "another stub", "--cloud", "--stubs", "--follow"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stderr.contains(&format!(
            "Image {} already exists in ECR as",
            docker::test_image_tag()
        )),
        "{}",
        again.stderr
    );
    assert!(!again.stderr.contains("Pushing"), "{}", again.stderr);
    in_order(
        &again.stderr,
        &[
            "[minion] run ",
            "[minion] cloning ",
            "[minion] outcome success",
            "[minion] uploaded ",
        ],
    );
    assert_eq!(c.registry.tags("lackey-minion"), ["latest"]);
    assert!(
        again.stdout.contains("outcome:   success")
            && again
                .stdout
                .contains("s3:        s3://lackey-artifacts-123456789012/"),
        "{}",
        again.stdout
    );
    let runs = c.t.run(&["runs", "--json"]);
    let rows = runs.json()["runs"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|r| r["backend"] == "cloud" && r["outcome"] == "success"),
        "{rows:?}"
    );

    // Variables listed in `[run] env` reach a cloud run's blueprint through the task's
    // container overrides; others do not; a secret-looking name stops the run before
    // anything is launched.
    c.t.set("LACKEY_PASS_ENV", "STAGE,DEPLOY_TOKEN")
        .set("STAGE", "ci")
        .set("DEPLOY_TOKEN", "ghp_never-passed")
        .set("NOT_PASSED", "1");
    let refused = c.t.run(&[
        "run",
        "staged",
        "--cloud",
        "--stubs",
        "--blueprint",
        "ci/staged.yaml",
    ]);
    refused.assert_code(1);
    assert!(
        refused
            .stderr
            .contains("`DEPLOY_TOKEN` looks like a secret")
            && !refused.stderr.contains("Launched ECS task"),
        "{}",
        refused.stderr
    );
    c.t.set("LACKEY_PASS_ENV", "STAGE");
    let staged = c.t.run(&[
        "run",
        "staged",
        "--cloud",
        "--stubs",
        "--blueprint",
        "ci/staged.yaml",
        "--json",
    ]);
    assert_eq!(staged.code, 0, "{}", staged.stderr);
    let sid = staged.json()["run_id"].as_str().unwrap().to_string();
    let commands = std::fs::read_to_string(c.run_dir(&sid).join("commands.log")).unwrap();
    assert!(commands.contains("stage=ci"), "{commands}");
    assert!(!commands.contains("should-not-run"), "{commands}");
    let task = c.task(&launched_arn(&staged.stderr));
    let env: Vec<(String, String)> = task
        .overrides()
        .map(|o| o.container_overrides())
        .unwrap_or_default()
        .iter()
        .flat_map(|o| o.environment())
        .map(|kv| {
            (
                kv.name().unwrap_or_default().to_string(),
                kv.value().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert!(env.contains(&("STAGE".into(), "ci".into())), "{env:?}");
    assert!(
        env.contains(&("LACKEY_PASS_ENV".into(), "STAGE".into())),
        "{env:?}"
    );
    assert!(!env
        .iter()
        .any(|(k, _)| k == "NOT_PASSED" || k == "DEPLOY_TOKEN"));
}

#[test]
fn timeout_stops_the_task_and_keeps_the_artifacts() {
    let Some(mut c) = Cloud::new(true) else {
        return;
    };
    let llm = FakeLlm::start(CANARY_KEY, vec![Answer::Hang]);
    c.t.set("ANTHROPIC_BASE_URL", llm.url());
    // Long enough for a loaded machine to start the task and reach the LLM, which then
    // hangs: the deadline, not the agent, ends the run.
    let out =
        c.t.run(&["run", "do something complex", "--cloud", "--timeout", "30"]);
    out.assert_code(1);
    let arn = launched_arn(&out.stderr);
    let dir = c.run_dir(
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix("branch:    minion/"))
            .map(|s| s.split_whitespace().next().unwrap().to_string())
            .unwrap()
            .as_str(),
    );
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run_summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["outcome"], "error");
    assert!(
        summary["error"]
            .as_str()
            .unwrap()
            .starts_with("timed out after 30 s"),
        "{}",
        summary["error"]
    );
    assert_eq!(c.task(&arn).last_status(), Some("STOPPED"));
    assert!(!llm.received().is_empty(), "the task never reached the LLM");
    // A run that ended in an error has its report, here and in the bucket.
    let id = summary["run_id"].as_str().unwrap();
    assert!(std::fs::read_to_string(dir.join("report.html"))
        .unwrap()
        .contains("timed out after 30 s"));
    let prefix = c.artifact_prefix(id);
    assert!(c
        .s3_keys(&format!("{id}/"))
        .contains(&format!("{prefix}/report.html")));
}

#[test]
fn sigint_stops_the_task() {
    let Some(mut c) = Cloud::new(true) else {
        return;
    };
    let llm = FakeLlm::start(CANARY_KEY, vec![Answer::Hang]);
    c.t.set("ANTHROPIC_BASE_URL", llm.url());
    let mut child =
        c.t.command(&["run", "do something", "--cloud"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    let stderr = child.stderr.take().unwrap();
    let seen = Arc::new(Mutex::new(String::new()));
    let s2 = seen.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut g = s2.lock().unwrap();
            g.push_str(&line);
            g.push('\n');
        }
    });
    let start = Instant::now();
    // A guard against a hang, not a speed check: a loaded machine may take minutes.
    while !seen.lock().unwrap().contains(": RUNNING") || llm.received().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "the task never ran:\n{}",
            seen.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = wait_with_timeout(child, Duration::from_secs(600));
    reader.join().unwrap();
    let stderr = seen.lock().unwrap().clone();
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let arn = launched_arn(&stderr);
    let task = c.task(&arn);
    assert_eq!(task.last_status(), Some("STOPPED"));
    assert_eq!(task.stop_code().map(|s| s.as_str()), Some("UserInitiated"));
    assert!(stderr.contains("Downloading artifacts to"), "{stderr}");
}

#[test]
fn a_task_that_fails_to_start_names_the_reason_and_the_fix() {
    // No secret values: ECS cannot inject them and the task fails to start.
    let Some(c) = Cloud::new(false) else { return };
    let out =
        c.t.run(&["run", "x", "--cloud", "--stubs", "--repo", "acme/app"]);
    // The GitHub key is missing first: the preflight says so before any task starts.
    out.assert_code(1);
    assert!(
        out.stderr
            .contains("secret `lackey/github-app-key` does not exist or has no value"),
        "{}",
        out.stderr
    );
    let key = c.t.write("app.pem", &c.github.private_key_pem);
    c.t.run(&[
        "secret",
        "put",
        "github_app_key",
        "--from-file",
        key.to_str().unwrap(),
    ])
    .assert_success();
    let out = c.t.run(&["run", "x", "--cloud", "--stubs"]);
    out.assert_code(1);
    assert!(out.stdout.contains("outcome:   error"), "{}", out.stdout);
    assert!(
        out.stdout.contains("ResourceInitializationError"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("hint: ECS could not prepare the task"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_missing_env_variable_is_named_before_anything_starts() {
    let Some(moto) = Moto::start() else { return };
    let mut t = TestEnv::new();
    t.with_moto(&moto);
    t.write(
        ".env",
        "LACKEY_REPO=acme/app\nLACKEY_ECS_CLUSTER=lackey\nLACKEY_ECS_TASK_DEF=lackey-minion\nLACKEY_ARTIFACT_BUCKET=b-123\n\
         LACKEY_GITHUB_APP_PRIVATE_KEY_SECRET=lackey/github-app-key\nLACKEY_GITHUB_INSTALLATION_ID=67890\nLACKEY_STUBS=1\n",
    );
    moto.reset_requests();
    let out = t.run(&["run", "test", "--cloud"]);
    out.assert_code(1);
    assert_eq!(
        out.stderr.lines().next().unwrap(),
        "error: missing LACKEY_GITHUB_APP_ID (or [github] app_id in lackey.toml)"
    );
    assert!(
        moto.requests().is_empty(),
        "AWS was called before the missing variable was noticed"
    );
    // With no region anywhere (environment, lackey.toml, AWS profile), the region is named.
    t.set("LACKEY_GITHUB_APP_ID", "12345").unset("AWS_REGION");
    std::fs::write(t.path().join("home/.aws/config"), "[default]\n").unwrap();
    let out = t.run(&["run", "test", "--cloud"]);
    out.assert_code(1);
    assert_eq!(
        out.stderr.lines().next().unwrap(),
        "error: missing AWS_REGION (or [aws] region in lackey.toml)"
    );
}

#[test]
fn canary_secrets_appear_nowhere() {
    let Some(mut c) = Cloud::new(true) else {
        return;
    };
    let llm = FakeLlm::start(
        CANARY_KEY,
        vec![
            fake_llm::scope_hello_sh(),
            fake_llm::tool_use("view", json!({"path": "hello.sh"})),
            fake_llm::edit_hello_sh(),
            fake_llm::tool_use(
                "bash",
                json!({"command": "env | grep -ci -e anthropic -e github -e ghs_ ; git remote -v"}),
            ),
            fake_llm::tool_use("finish", json!({"summary": "done"})),
        ],
    );
    c.t.set("ANTHROPIC_BASE_URL", llm.url());
    let out = c.t.run(&[
        "run",
        "make hello.sh print hello, world",
        "--cloud",
        "--pr",
        "--json",
    ]);
    assert_eq!(
        out.code,
        0,
        "{}\nplayer: {:?}",
        out.stderr,
        c._player.as_ref().unwrap().log.lock().unwrap()
    );
    llm.assert_clean();
    let v = out.json();
    let id = v["run_id"].as_str().unwrap();
    let tokens = c.github.tokens();
    assert!(
        tokens.len() >= 2,
        "the CLI and the sidecar each mint a token: {}",
        tokens.len()
    );
    // The Anthropic key, every minted token, and the App's private key (its body lines).
    let pem = c.github_key();
    let secrets: Vec<&str> = std::iter::once(CANARY_KEY)
        .chain(tokens.iter().map(String::as_str))
        .chain(
            pem.lines()
                .filter(|l| l.len() >= 40 && !l.starts_with("-----")),
        )
        .collect();
    let arn = launched_arn(&out.stderr);
    let overrides = format!("{:?}", c.task(&arn).overrides());
    let mut places: Vec<(String, String)> = vec![
        ("stdout".into(), out.stdout.clone()),
        ("stderr".into(), out.stderr.clone()),
        ("RunTask overrides".into(), overrides),
    ];
    for e in walkdir::WalkDir::new(c.run_dir(id))
        .into_iter()
        .filter_map(Result::ok)
    {
        if e.file_type().is_file() {
            places.push((
                e.path().display().to_string(),
                String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned(),
            ));
        }
    }
    assert!(places.iter().any(|(p, _)| p.ends_with("transcript.jsonl")));
    // Everything in the bucket (artifacts and inputs), and the task's CloudWatch stream.
    let conf = c.moto.sdk_config();
    block_on(async {
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&conf)
                .force_path_style(true)
                .build(),
        );
        let objects = s3
            .list_objects_v2()
            .bucket("lackey-artifacts-123456789012")
            .send()
            .await
            .unwrap();
        assert!(!objects.contents().is_empty());
        for o in objects.contents() {
            let key = o.key().unwrap().to_string();
            let body = s3
                .get_object()
                .bucket("lackey-artifacts-123456789012")
                .key(&key)
                .send()
                .await
                .unwrap();
            let bytes = body.body.collect().await.unwrap().into_bytes();
            places.push((
                format!("s3://{key}"),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
        let logs = aws_sdk_cloudwatchlogs::Client::new(&conf);
        let task_id = arn.rsplit('/').next().unwrap();
        let events = logs
            .get_log_events()
            .log_group_name("/ecs/lackey-minion")
            .log_stream_name(format!("minion/minion/{task_id}"))
            .start_from_head(true)
            .send()
            .await
            .unwrap();
        let text: String = events
            .events()
            .iter()
            .filter_map(|e| e.message())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(text.contains("[minion]"), "the CloudWatch stream is empty");
        places.push(("CloudWatch stream".into(), text));
    });
    for (place, text) in &places {
        for s in &secrets {
            assert!(
                !text.contains(s),
                "a secret ({}…) leaked into {place}",
                &s[..12]
            );
        }
    }
    assert!(c
        .github
        .branches("acme/app")
        .contains(&format!("minion/{id}")));
    let shown = repo::git(
        &c.github.bare("acme/app"),
        &["show", &format!("minion/{id}:hello.sh")],
    );
    assert!(shown.contains("hello, world"));
}

/// The run's branch is decided on the host before launch: a blueprint's template, read
/// through GitHub's contents API, names a new branch; `--push-to` names an existing one,
/// which the run checks out and fast-forwards (with `git_checkout` too); the default
/// branch and a missing branch are refused before anything starts.
#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one scenario: each way the push target is decided, on one stack"
)]
fn the_push_target_is_decided_on_the_host() {
    let Some(c) = Cloud::new(true) else { return };
    let bare = c.github.bare("acme/app");
    let tip = |b: &str| repo::git(&bare, &["rev-parse", b]).trim().to_string();

    // A blueprint's template: read from the default branch, expanded on the host.
    let out = c.t.run(&[
        "run",
        "Rename the greeting!",
        "--cloud",
        "--stubs",
        "--blueprint",
        "ci/named.yaml",
        "--json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    let id = v["run_id"].as_str().unwrap().to_string();
    let named = format!("lackey/{id}/rename-the-greeting");
    assert_eq!(v["branch"], named.as_str());
    assert!(c.github.branches("acme/app").contains(&named));
    assert!(
        c.github
            .contents_reads()
            .contains(&"ci/named.yaml@main".to_string()),
        "{:?}",
        c.github.contents_reads()
    );

    // --push-to: the existing branch, checked out by `git_branch`, fast-forwarded, with
    // a pull request from it.
    let before = c
        .github
        .add_branch("acme/app", "feature", &[("notes.md", "wip\n")]);
    let main_before = tip("main");
    let out = c.t.run(&[
        "run",
        "more work",
        "--cloud",
        "--stubs",
        "--push-to",
        "feature",
        "--pr",
        "--json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    let id = v["run_id"].as_str().unwrap().to_string();
    assert_eq!(v["branch"], "feature");
    let after = tip("feature");
    assert_ne!(after, before);
    assert_eq!(tip("feature^"), before, "a fast-forward by one commit");
    assert_eq!(tip("main"), main_before, "the default branch is untouched");
    assert!(
        repo::git(&bare, &["ls-tree", "-r", "--name-only", "feature"])
            .contains(&format!(".lackey/stub-runs/{id}.md"))
    );
    let pulls = c.github.pulls();
    assert_eq!(pulls.last().unwrap()["head"], "feature");
    assert_eq!(pulls.last().unwrap()["base"], "main");

    // The original's `git_checkout` of that branch: pushed only with --push-to.
    let out = c.t.run(&[
        "run",
        "checkout work",
        "--cloud",
        "--stubs",
        "--blueprint",
        "ci/on-feature.yaml",
        "--json",
    ]);
    let v = out.json();
    let steps: Vec<String> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| format!("{}:{}", s["name"].as_str().unwrap(), s["success"]))
        .collect();
    assert_eq!(
        steps,
        [
            "checkout:true",
            "implement:true",
            "commit:true",
            "push:false"
        ],
        "{}",
        out.stderr
    );
    let refused = v["steps"][3]["detail"].as_str().unwrap();
    assert!(
        refused.contains("refusing to push `feature`") && refused.contains("--push-to"),
        "{refused}"
    );
    assert_eq!(tip("feature"), after, "nothing was pushed");
    let out = c.t.run(&[
        "run",
        "checkout work",
        "--cloud",
        "--stubs",
        "--blueprint",
        "ci/on-feature.yaml",
        "--push-to",
        "feature",
        "--json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["steps"][3]["success"], true, "{}", out.stderr);
    assert_eq!(tip("feature^"), after);

    // Refused before anything starts: the default branch, a branch that does not exist.
    for (branch, says) in [
        ("main", "it is the default branch of `acme/app`"),
        ("nope", "`acme/app` has no branch `nope` to push to"),
    ] {
        let out =
            c.t.run(&["run", "x", "--cloud", "--stubs", "--push-to", branch]);
        out.assert_code(1);
        assert!(out.stderr.contains(says), "{}", out.stderr);
        assert!(out.stderr.contains("hint: "), "{}", out.stderr);
        assert!(!out.stderr.contains("Launched ECS task"), "{}", out.stderr);
    }
    c.github.assert_clean();
}

#[test]
fn a_local_repository_goes_up_and_comes_back_as_a_bundle() {
    let Some(c) = Cloud::new(true) else { return };
    let local = repo::hello_project(&c.t.work().join("project"));
    let out = c.t.run(&[
        "run",
        "stub work",
        "--cloud",
        "--stubs",
        "--repo",
        "project",
        "--json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    let id = v["run_id"].as_str().unwrap();
    let branches = repo::git(&local, &["branch", "--list", "minion/*"]);
    assert!(
        branches.contains(id),
        "the branch did not come back: {branches}"
    );
    assert!(c.github.pulls().is_empty());
}

#[test]
fn a_push_refused_inside_the_progress_stream_fails_clearly() {
    if !docker::available() {
        return;
    }
    let image = docker::test_image();
    let Some(moto) = Moto::start() else { return };
    let Some(registry) = Registry::start_read_only() else {
        return;
    };
    let mut t = TestEnv::new();
    t.with_moto(&moto);
    t.write(
        "lackey.toml",
        &format!("[aws]\nregion = \"us-east-1\"\naccount_id = \"123456789012\"\n[ecr]\nregistry = \"{}\"\n[image]\nlocal = \"{image}\"\n", registry.host()),
    );
    let out = t.run(&["image", "push"]);
    out.assert_code(1);
    let first = out
        .stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert!(
        first.starts_with(&format!(
            "error: pushing `{}/lackey-minion:latest` failed:",
            registry.host()
        )),
        "{}",
        out.stderr
    );
    // The registry's refusal, as Docker reported it inside the stream.
    assert!(
        out.stderr.contains("405") || out.stderr.contains("read-only"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("hint: check that the ECR repository exists"),
        "{}",
        out.stderr
    );
}

/// Fargate capacity is short now and then: RunTask answers with a `failures` entry
/// instead of a task, and the run retries (moto never does this; it is injected).
#[test]
fn a_capacity_failure_is_retried() {
    let Some(c) = Cloud::new(true) else { return };
    c.moto.inject(
        "RunTask",
        1,
        200,
        "application/x-amz-json-1.1",
        r#"{"tasks": [], "failures": [{"reason": "RESOURCE:ENI", "detail": "capacity is unavailable at this time"}]}"#,
    );
    let out = c.t.run(&["run", "stub", "--cloud", "--stubs"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("warning: no Fargate capacity yet (RESOURCE:ENI (capacity is unavailable at this time)); retrying in 2s"), "{}", out.stderr);
    let runs: Vec<_> = c
        .moto
        .requests()
        .into_iter()
        .filter(|r| r.action == "RunTask")
        .collect();
    assert_eq!(runs.len(), 2);
}

/// A tiny image whose config says `linux/arm64` (this x86_64 machine cannot build a real
/// one, and its Docker ignores `import --platform`): a `docker save` archive written by
/// hand and loaded. Enough for every check that reads an image's platform. Removed on
/// drop.
struct ForeignImage(String);

impl ForeignImage {
    fn new(os: &str, arch: &str) -> ForeignImage {
        use sha2::Digest;
        let tag = format!("lackey-foreign:{os}-{arch}-{}", std::process::id());
        let append = |tar: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, name, data).unwrap();
        };
        let mut layer = tar::Builder::new(Vec::new());
        append(&mut layer, "hello", b"not a lackey\n");
        let layer = layer.into_inner().unwrap();
        let diff_id = hex::encode(sha2::Sha256::digest(&layer));
        let config = serde_json::to_vec(&json!({
            "architecture": arch,
            "os": os,
            "config": {"Cmd": ["/hello"]},
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
            "history": [{"created_by": "lackey test: a crafted image"}],
        }))
        .unwrap();
        let config_id = hex::encode(sha2::Sha256::digest(&config));
        let manifest = serde_json::to_vec(&json!([{
            "Config": format!("{config_id}.json"),
            "RepoTags": [tag],
            "Layers": [format!("{diff_id}/layer.tar")],
        }]))
        .unwrap();
        let mut archive = tar::Builder::new(Vec::new());
        append(&mut archive, &format!("{diff_id}/layer.tar"), &layer);
        append(&mut archive, &format!("{config_id}.json"), &config);
        append(&mut archive, "manifest.json", &manifest);
        let archive = archive.into_inner().unwrap();
        let mut child = std::process::Command::new("docker")
            .args(["load", "-q"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(&archive).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let inspect = std::process::Command::new("docker")
            .args(["image", "inspect", "-f", "{{.Os}}/{{.Architecture}}", &tag])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&inspect.stdout).trim(),
            format!("{os}/{arch}")
        );
        ForeignImage(tag)
    }
}

impl Drop for ForeignImage {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rmi", "-f", &self.0])
            .output();
    }
}

/// An arm64 image is refused, with the fix, by `image push` and by `run --cloud` on an
/// X86_64 task definition: nothing is pushed and no task starts.
#[test]
fn an_image_of_another_architecture_is_refused_before_run_task() {
    let Some(c) = Cloud::new(true) else { return };
    let arm = ForeignImage::new("linux", "arm64");
    let out = c.t.run(&["image", "push", "--image", &arm.0]);
    out.assert_code(1);
    crate::support::snapshot_filters(&[(r"lackey-foreign:linux-arm64-\d+", "[ARM64 IMAGE]")])
        .bind(|| insta::assert_snapshot!("image_push_wrong_architecture", out.stderr));
    c.moto.reset_requests();
    let out =
        c.t.run(&["run", "x", "--cloud", "--stubs", "--image", &arm.0]);
    out.assert_code(1);
    assert!(
        out.stderr.contains(&format!(
            "error: image `{}` cannot run on the task definition: it is built for linux/arm64, the task runs LINUX/X86_64",
            arm.0
        )),
        "{}",
        out.stderr
    );
    let actions: Vec<String> = c.moto.requests().into_iter().map(|r| r.action).collect();
    assert!(!actions.iter().any(|a| a == "RunTask"), "{actions:?}");
    assert!(c.registry.tags("lackey-minion").is_empty());
    assert!(!out.stderr.contains("Launched ECS task"), "{}", out.stderr);
}

/// `[ecs] cpu_architecture = "ARM64"`: the plan shows the change, `up` registers an
/// ARM64 task definition, the x86_64 image is refused for it, and the Fargate player
/// stops a task whose image does not match, as Fargate would with `exec format error`.
#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one scenario in order: build, push, register, refuse, run, stop"
)]
fn an_arm64_task_definition_runs_arm64_images_only() {
    let Some(mut c) = Cloud::new(true) else {
        return;
    };
    c.t.set("LACKEY_ECS_CPU_ARCHITECTURE", "ARM64");
    let plan = c.t.run(&["plan", "--json"]);
    plan.assert_success();
    let changes = plan.json()["changes"].as_array().unwrap().clone();
    let td = changes
        .iter()
        .find(|ch| ch["kind"] == "task_definition")
        .expect("a task definition change");
    assert_eq!(td["action"], "update", "{td}");
    assert!(
        td["diff"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["field"] == "runtimePlatform.cpuArchitecture"
                && d["old"] == "X86_64"
                && d["new"] == "ARM64"),
        "{td}"
    );
    c.t.run(&["up", "-q"]).assert_success();
    let conf = c.moto.sdk_config();
    let ecs = aws_sdk_ecs::Client::new(&conf);
    let registered = block_on(async {
        ecs.describe_task_definition()
            .task_definition("lackey-minion")
            .send()
            .await
            .unwrap()
    });
    let platform = registered
        .task_definition()
        .and_then(|t| t.runtime_platform())
        .expect("runtimePlatform");
    assert_eq!(
        platform.cpu_architecture().map(|a| a.as_str()),
        Some("ARM64")
    );
    assert_eq!(
        platform.operating_system_family().map(|o| o.as_str()),
        Some("LINUX")
    );
    // A second plan has nothing to do: runtimePlatform reads back as written.
    let again = c.t.run(&["plan", "--json"]);
    assert!(
        again.json()["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|ch| ch["action"] == "noop" || ch["kind"] != "task_definition"),
        "{}",
        again.stdout
    );
    // The x86_64 test image is refused for it, before anything is pushed or started.
    c.moto.reset_requests();
    let out = c.t.run(&["run", "x", "--cloud", "--stubs"]);
    out.assert_code(1);
    assert!(
        out.stderr
            .contains("it is built for linux/amd64, the task runs LINUX/ARM64"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("hint: rebuild it for linux/arm64"),
        "{}",
        out.stderr
    );
    assert!(!c.moto.requests().iter().any(|r| r.action == "RunTask"));
    // The player enforces the same rule: the x86_64 image put in the registry by hand and
    // started directly never runs on the ARM64 task.
    let uri = format!("{}/lackey-minion:latest", c.registry_host());
    for args in [
        vec!["tag", docker::test_image(), uri.as_str()],
        vec!["push", "-q", uri.as_str()],
        vec!["rmi", uri.as_str()],
    ] {
        let out = std::process::Command::new("docker")
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let arn = block_on(async {
        let ec2 = aws_sdk_ec2::Client::new(&conf);
        let subnet = ec2.describe_subnets().send().await.unwrap().subnets()[0]
            .subnet_id()
            .unwrap()
            .to_string();
        let group = ec2
            .describe_security_groups()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("group-name")
                    .values("lackey-ecs-tasks")
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .security_groups()[0]
            .group_id()
            .unwrap()
            .to_string();
        let network = aws_sdk_ecs::types::NetworkConfiguration::builder()
            .awsvpc_configuration(
                aws_sdk_ecs::types::AwsVpcConfiguration::builder()
                    .subnets(subnet)
                    .security_groups(group)
                    .build()
                    .unwrap(),
            )
            .build();
        let out = ecs
            .run_task()
            .cluster("lackey")
            .task_definition("lackey-minion")
            .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
            .network_configuration(network)
            .send()
            .await;
        let out = out.unwrap_or_else(|e| panic!("RunTask: {e:?}"));
        out.tasks()
            .first()
            .and_then(|t| t.task_arn())
            .expect("a task")
            .to_string()
    });
    let start = Instant::now();
    let task = loop {
        let task = c.task(&arn);
        if task.last_status() == Some("STOPPED") {
            break task;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the task never stopped"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(
        task.stop_code().map(|s| s.as_str()),
        Some("TaskFailedToStart")
    );
    let reason = task.stopped_reason().unwrap_or_default();
    assert!(
        reason.starts_with("CannotStartContainerError") && reason.contains("exec format error"),
        "{reason}"
    );
}
