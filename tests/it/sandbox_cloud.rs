//! Cloud runs played by an attacker: moto as AWS, the Fargate player running the task's
//! two containers (the minion and the credential sidecar) in one network namespace, the
//! fake LLM and the fake GitHub checking the credentials they receive.
//!
//! * The agent's `bash` tool hunts for the secrets in the minion's container
//!   (environment, `/proc/*/environ`, `/run/secrets`, files, git config) and sends what
//!   it finds back to the LLM: the Anthropic key, every installation token and the App's
//!   private key are nowhere, in any encoding (as is, reversed, base64), in what the LLM
//!   received, the artifacts, the bucket, the logs. The run still succeeds: the sidecar
//!   added the key to the LLM's requests and the token to git and the GitHub API.
//! * Through the sidecar, a push to another ref, a force-push and a branch delete are
//!   refused, the API outside the run's needs too, and the refusals reach `minion.log`.
//! * A task definition made by hand (one container, the secrets in it) still runs, with
//!   a warning naming the exposure and the fix; `[run] require_isolation` refuses it.

use serde_json::{json, Value};

use crate::cloud::{launched_arn, Cloud, CANARY_KEY};
use crate::sandbox_net::encodings;
use crate::support::fake_llm::{self, FakeLlm};
use crate::support::moto::block_on;
use crate::support::repo;

/// Every secret of the world, with a label for the failure message.
fn secrets(c: &Cloud) -> Vec<(String, String)> {
    let mut v = vec![("the Anthropic key".to_string(), CANARY_KEY.to_string())];
    for (i, t) in c.github().tokens().into_iter().enumerate() {
        v.push((format!("installation token {i}"), t));
    }
    for l in c
        .github_key()
        .lines()
        .filter(|l| l.len() >= 40 && !l.starts_with("-----"))
    {
        v.push(("a line of the App's private key".into(), l.to_string()));
    }
    v
}

#[track_caller]
fn assert_nowhere(secrets: &[(String, String)], place: &str, text: &str) {
    for (what, s) in secrets {
        for e in encodings(s) {
            assert!(!text.contains(&e), "{what} (as `{e}`) is in {place}");
        }
    }
}

/// Everything in the bucket, and the task's two CloudWatch streams.
fn stored(c: &Cloud, task_id: &str) -> Vec<(String, String)> {
    let conf = c.moto.sdk_config();
    let mut places = Vec::new();
    for key in c.s3_keys("") {
        places.push((format!("s3://{key}"), c.s3_text(&key)));
    }
    block_on(async {
        let logs = aws_sdk_cloudwatchlogs::Client::new(&conf);
        for container in ["minion", "sidecar"] {
            let stream = format!("minion/{container}/{task_id}");
            let text = match logs
                .get_log_events()
                .log_group_name("/ecs/lackey-minion")
                .log_stream_name(&stream)
                .start_from_head(true)
                .send()
                .await
            {
                Ok(events) => events
                    .events()
                    .iter()
                    .filter_map(|e| e.message())
                    .collect::<Vec<_>>()
                    .join("\n"),
                Err(e) => panic!("no CloudWatch stream {stream}: {e:?}"),
            };
            places.push((format!("CloudWatch {stream}"), text));
        }
    });
    places
}

/// The agent's hunt: everything a key or a token could be in, encoded as an exfiltrating
/// prompt injection would, sent back to the LLM as the tool's result.
const HUNT: &str =
    "env; echo; for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' < $f; done 2>/dev/null; \
    ls -la /run/secrets 2>&1; cat /run/secrets/* 2>&1; \
    echo run-secrets-$(test -e /run/secrets && echo present || echo absent); \
    git config --list --show-origin 2>&1; cat ~/.git-credentials .git/config 2>&1; \
    grep -rs -e ghs_ -e sk-ant -e PRIVATE /tmp /work /output 2>/dev/null | head -20; \
    (env; cat /proc/*/environ) 2>/dev/null | base64 -w0; echo; \
    (env; cat /proc/*/environ) 2>/dev/null | rev; echo hunted";

/// The agent's attacks through the sidecar: a push to another ref, a force-push over
/// the default branch, a delete, and API calls the run does not need.
const ATTACKS: &str = "g='git -c user.name=a -c user.email=a@b.c'; \
    $g commit -q --allow-empty -m sneaky; \
    git push origin HEAD:refs/heads/sneaky 2>&1; echo push-other=$?; \
    git checkout -q --orphan rewrite && $g commit -q --allow-empty -m rewritten; \
    git push --force origin rewrite:refs/heads/main 2>&1; echo push-force=$?; \
    git push origin :refs/heads/main 2>&1; echo push-delete=$?; \
    base=$(git remote get-url origin | sed 's#/git/.*##'); \
    curl -s -o /dev/null -w 'api-delete=%{http_code}\\n' -X DELETE $base/github/repos/acme/app; \
    curl -s -o /dev/null -w 'llm-models=%{http_code}\\n' $base/anthropic/v1/models; \
    git checkout -q -; echo attacked";

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one attacker's run, then every place the secrets must not be"
)]
fn a_cloud_runs_container_holds_no_credential_and_the_sidecar_adds_them() {
    let Some(mut c) = Cloud::new(true) else {
        return;
    };
    let llm = FakeLlm::start(
        CANARY_KEY,
        vec![
            fake_llm::scope_hello_sh(),
            // The executor edits only a file it has viewed.
            fake_llm::tool_use("view", json!({"path": "hello.sh"})),
            fake_llm::edit_hello_sh(),
            fake_llm::tool_use("bash", json!({"command": HUNT})),
            fake_llm::tool_use("bash", json!({"command": ATTACKS})),
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
    assert_eq!(out.code, 0, "{}\nplayer: {:?}", out.stderr, c.player_log());
    assert!(
        !out.stderr.contains("no credential sidecar"),
        "{}",
        out.stderr
    );
    let v = out.json();
    let id = v["run_id"].as_str().unwrap().to_string();
    let arn = launched_arn(&out.stderr);
    let task_id = arn.rsplit('/').next().unwrap().to_string();

    // The sidecar really added the credentials: every LLM request carried the key (the
    // minion sent a placeholder), the branch went up with a valid token, the pull
    // request was opened with one.
    let received = llm.received();
    assert!(received.len() >= 4, "{} requests", received.len());
    for r in &received {
        assert_eq!(r.api_key.as_deref(), Some(CANARY_KEY));
    }
    llm.assert_clean();
    let run_log = || std::fs::read_to_string(c.run_dir(&id).join("minion.log")).unwrap_or_default();
    assert!(
        c.github()
            .branches("acme/app")
            .contains(&format!("minion/{id}")),
        "{:?}\n{}",
        c.github().branches("acme/app"),
        run_log()
    );
    assert_eq!(c.github().pulls().len(), 1, "{}", run_log());
    c.github().assert_clean();
    assert!(
        c.github().tokens().len() >= 2,
        "the CLI's preflight and the sidecar each mint a token"
    );

    // The hunt ran in the minion's container, saw its environment and no secret.
    let sent: String = received
        .iter()
        .map(|r| String::from_utf8_lossy(&r.raw).into_owned())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(sent.contains("hunted"), "the hunt did not run");
    assert!(
        sent.contains("LACKEY_PROXY_URL=http://127.0.0.1:"),
        "the hunt did not see the minion's environment"
    );
    assert!(sent.contains("LACKEY_RUN_ID="), "no /proc/*/environ read");
    assert!(
        // (Spelled so that only the command's output, not the command, matches.)
        sent.contains("run-secrets-absent"),
        "/run/secrets exists"
    );
    let secrets = secrets(&c);
    assert_nowhere(&secrets, "what the LLM received", &sent);

    // The attacks were refused by the sidecar: nothing but the run's branch was
    // pushed, main is where it was, and each refusal is in minion.log.
    assert!(sent.contains("attacked"), "the attacks did not run");
    for (what, exit) in [
        ("push-other", "push-other=0"),
        ("push-force", "push-force=0"),
        ("push-delete", "push-delete=0"),
    ] {
        assert!(sent.contains(&format!("{what}=")), "{what} did not run");
        assert!(!sent.contains(exit), "{what} succeeded");
    }
    assert!(
        sent.contains("api-delete=403"),
        "the API delete was not refused"
    );
    assert!(
        sent.contains("llm-models=403"),
        "GET /v1/models was not refused"
    );
    let mut branches = c.github().branches("acme/app");
    branches.sort();
    assert_eq!(branches, ["main".to_string(), format!("minion/{id}")]);
    let main_log = crate::support::repo::git(
        &c.github().bare("acme/app"),
        &["log", "--format=%s", "main"],
    );
    assert!(
        !main_log.contains("rewritten") && !main_log.contains("sneaky"),
        "{main_log}"
    );
    let log = std::fs::read_to_string(c.run_dir(&id).join("minion.log")).unwrap();
    assert!(
        log.contains("through the task's credential sidecar"),
        "{log}"
    );
    for refused in [
        "proxy refused POST /git/acme/app.git/git-receive-pack: a push to `refs/heads/sneaky`",
        "proxy refused POST /git/acme/app.git/git-receive-pack: `refs/heads/main` is the default branch",
        "proxy refused DELETE /github/repos/acme/app",
        "proxy refused GET /anthropic/v1/models",
    ] {
        assert!(log.contains(refused), "`{refused}` not in minion.log:\n{log}");
    }

    // The task: the minion's container declares no secret, the sidecar both; the minion
    // waits for it; RunTask's overrides carry no secret.
    let conf = c.moto.sdk_config();
    let task = c.task(&arn);
    let td = block_on(async {
        aws_sdk_ecs::Client::new(&conf)
            .describe_task_definition()
            .task_definition(task.task_definition_arn().unwrap())
            .send()
            .await
            .unwrap()
    });
    let defs = td.task_definition().unwrap().container_definitions();
    let by = |n: &str| defs.iter().find(|d| d.name() == Some(n)).unwrap();
    assert!(by("minion").secrets().is_empty());
    assert_eq!(by("minion").depends_on()[0].container_name(), "sidecar");
    assert_eq!(by("sidecar").secrets().len(), 2);
    // Each container's exit code: the minion's 0, the sidecar stopped with the task.
    let codes: Vec<(String, Option<i32>)> = task
        .containers()
        .iter()
        .map(|c| (c.name().unwrap_or_default().to_string(), c.exit_code()))
        .collect();
    assert!(
        codes.contains(&("minion".to_string(), Some(0))),
        "{codes:?}"
    );
    assert!(codes.iter().any(|(n, _)| n == "sidecar"), "{codes:?}");

    // Nowhere: stdout, stderr, the overrides, the artifacts, the bucket, the logs.
    let mut places: Vec<(String, String)> = vec![
        ("stdout".into(), out.stdout.clone()),
        ("stderr".into(), out.stderr.clone()),
        (
            "RunTask overrides".into(),
            format!("{:?}", task.overrides()),
        ),
    ];
    for e in walkdir::WalkDir::new(c.run_dir(&id))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
    {
        places.push((
            e.path().display().to_string(),
            String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned(),
        ));
    }
    let stored = stored(&c, &task_id);
    let sidecar_log = &stored
        .iter()
        .find(|(p, _)| p.contains("/sidecar/"))
        .unwrap()
        .1;
    assert!(
        sidecar_log.contains("[sidecar] listening on 127.0.0.1:"),
        "{sidecar_log}"
    );
    places.extend(stored);
    for (place, text) in &places {
        assert_nowhere(&secrets, place, text);
    }
}

/// A task definition written by hand: the minion's container alone, the secrets
/// injected into it.
pub(crate) fn register_hand_made(c: &Cloud) {
    let conf = c.moto.sdk_config();
    block_on(async {
        let ecs = aws_sdk_ecs::Client::new(&conf);
        let td = ecs
            .describe_task_definition()
            .task_definition("lackey-minion")
            .send()
            .await
            .unwrap();
        let td = td.task_definition().unwrap();
        let defs = td.container_definitions();
        let sidecar = defs.iter().find(|d| d.name() == Some("sidecar")).unwrap();
        let minion = defs.iter().find(|d| d.name() == Some("minion")).unwrap();
        let alone = aws_sdk_ecs::types::ContainerDefinition::builder()
            .name("minion")
            .set_image(minion.image().map(str::to_string))
            .essential(true)
            .set_log_configuration(minion.log_configuration().cloned())
            .set_secrets(Some(sidecar.secrets().to_vec()))
            .build();
        ecs.register_task_definition()
            .family("lackey-minion")
            .network_mode(aws_sdk_ecs::types::NetworkMode::Awsvpc)
            .requires_compatibilities(aws_sdk_ecs::types::Compatibility::Fargate)
            .cpu(td.cpu().unwrap())
            .memory(td.memory().unwrap())
            .set_runtime_platform(td.runtime_platform().cloned())
            .execution_role_arn(td.execution_role_arn().unwrap())
            .task_role_arn(td.task_role_arn().unwrap())
            .container_definitions(alone)
            .send()
            .await
            .unwrap();
    });
}

#[test]
fn a_hand_made_task_definition_runs_with_a_warning_and_require_isolation_refuses_it() {
    let Some(mut c) = Cloud::new(true) else {
        return;
    };
    register_hand_made(&c);
    let out =
        c.t.run(&["run", "stub work", "--cloud", "--stubs", "--json"]);
    assert_eq!(out.code, 0, "{}\nplayer: {:?}", out.stderr, c.player_log());
    assert!(
        out.stderr.contains(
            "task definition `lackey-minion` has no credential sidecar: the Anthropic key and the GitHub credentials reach the minion's container"
        ) && out.stderr.contains("run `lackey up --adopt`"),
        "{}",
        out.stderr
    );
    // A hand-made, one-container definition still runs end to end: the minion pushed
    // its branch with the token it minted from the injected key.
    let id = out.json()["run_id"].as_str().unwrap().to_string();
    assert!(c
        .github()
        .branches("acme/app")
        .contains(&format!("minion/{id}")));
    // doctor says the same, as a warning.
    let doctor = c.t.run(&["doctor", "--json"]);
    let checks: Value = doctor.json();
    let iso = checks["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "credential-isolation")
        .cloned()
        .unwrap_or_else(|| panic!("no credential-isolation check: {checks}"));
    assert_eq!(iso["status"], "warn", "{iso}");
    assert!(
        iso["hint"].as_str().unwrap().contains("lackey up --adopt"),
        "{iso}"
    );

    // Under require_isolation: refused before anything is launched, with the fix.
    c.t.set("LACKEY_REQUIRE_ISOLATION", "1");
    let refused = c.t.run(&["run", "stub work", "--cloud", "--stubs"]);
    refused.assert_code(1);
    assert!(
        refused
            .stderr
            .contains("error: task definition `lackey-minion` has no credential sidecar")
            && refused.stderr.contains("hint: run `lackey up --adopt`"),
        "{}",
        refused.stderr
    );
    assert!(
        !refused.stderr.contains("Launched ECS task"),
        "{}",
        refused.stderr
    );
    let doctor = c.t.run(&["doctor", "--json"]);
    let iso = doctor.json()["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "credential-isolation")
        .cloned()
        .unwrap();
    assert_eq!(iso["status"], "fail", "{iso}");

    // `up --adopt` registers the isolated definition again; the run goes, no warning.
    c.t.unset("LACKEY_REQUIRE_ISOLATION");
    c.t.run(&["up", "-q", "--adopt"]).assert_success();
    c.t.set("LACKEY_REQUIRE_ISOLATION", "1");
    let again = c.t.run(&["run", "stub work", "--cloud", "--stubs"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        !again.stderr.contains("no credential sidecar"),
        "{}",
        again.stderr
    );
}

/// Every task of the stack runs with one task role, which may write anywhere in the
/// artifacts bucket but the host's areas, and run ids are times. Another run's task,
/// with that role's credentials, forges a finished run's summary and bundle wherever it
/// can name them and a run that never was, and tries to record, list or read the run's
/// real prefix: what it may write is never read, the rest is refused. From a machine
/// without the run's directory, `lackey runs` and `lackey report` show the run as it was.
#[test]
#[allow(
    clippy::too_many_lines,
    reason = "the forger's every attempt, then what the host shows"
)]
fn another_runs_task_cannot_forge_or_find_a_runs_artifacts() {
    let Some(c) = Cloud::new(true) else { return };
    let local = repo::hello_project(&c.t.work().join("project"));
    let out = c.t.run(&[
        "run",
        "the real task",
        "--cloud",
        "--stubs",
        "--repo",
        "project",
        "--json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let id = out.json()["run_id"].as_str().unwrap().to_string();
    let prefix = c.artifact_prefix(&id);
    let never_ran = "20261129-000000-0bad";
    let bucket = "lackey-artifacts-123456789012";
    let forged = |run_id: &str| {
        json!({"run_id": run_id, "task": "FORGED", "outcome": "test_failure",
               "runtime": "cloud", "branch": "minion/forged", "base_sha": null,
               "head_sha": null, "started_at": "2026-01-01T00:00:00Z",
               "finished_at": "2026-01-01T00:00:01Z", "duration_s": 999.0})
        .to_string()
    };
    let creds = c
        .moto
        .assume_as_ecs("arn:aws:iam::123456789012:role/lackey-ecs-task");
    let conf = c.moto.sdk_config_as(&creds);
    block_on(async {
        let role = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&conf)
                .force_path_style(true)
                .build(),
        );
        let put = |key: String, body: String| {
            role.put_object()
                .bucket(bucket)
                .key(key)
                .body(body.into_bytes().into())
                .send()
        };
        // Where a forger can name: the run's id, a made-up private part, a run that
        // never was. The role may write there (it writes its own run's artifacts so).
        let made_up = "0123456789abcdef0123456789abcdef";
        for key in [
            format!("{id}/run_summary.json"),
            format!("{id}/{made_up}/run_summary.json"),
            format!("{never_ran}/run_summary.json"),
        ] {
            let run_id = key.split('/').next().unwrap().to_string();
            put(key, forged(&run_id))
                .await
                .expect("a task writes there");
        }
        put(format!("{id}/repo.bundle"), "not a bundle".into())
            .await
            .expect("a task writes there");
        // The host's records: neither written, nor listed, nor read; the run's real
        // artifacts not read either.
        crate::iam::refused(
            "record a prefix of its own for the run",
            put(format!("runs/{id}/{made_up}"), String::new()).await,
        );
        crate::iam::refused(
            "record a run that never was",
            put(format!("runs/{never_ran}/{made_up}"), String::new()).await,
        );
        crate::iam::refused(
            "list the records",
            role.list_objects_v2()
                .bucket(bucket)
                .prefix("runs/")
                .send()
                .await,
        );
        crate::iam::refused(
            "list the run's folder",
            role.list_objects_v2()
                .bucket(bucket)
                .prefix(format!("{id}/"))
                .send()
                .await,
        );
        crate::iam::refused(
            "read the run's real summary",
            role.get_object()
                .bucket(bucket)
                .key(format!("{prefix}/run_summary.json"))
                .send()
                .await,
        );
    });
    // Another machine: no run directory here. The listing names the real run only.
    std::fs::remove_dir_all(c.run_dir(&id)).unwrap();
    let runs = c.t.run(&["runs", "--json"]);
    runs.assert_success();
    let rows = runs.json()["runs"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["run_id"], id.as_str());
    assert_eq!(rows[0]["outcome"], "success", "{rows:?}");
    assert_eq!(rows[0]["branch"], format!("minion/{id}"), "{rows:?}");
    assert_eq!(
        rows[0]["location"],
        format!("s3://{bucket}/{prefix}/"),
        "{rows:?}"
    );
    // The report fetches the run's own artifacts.
    let report = c.t.run(&["report", &id]);
    report.assert_success();
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(c.run_dir(&id).join("run_summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["task"], "the real task");
    assert_eq!(summary["outcome"], "success");
    let page = std::fs::read_to_string(c.run_dir(&id).join("report.html")).unwrap();
    assert!(
        !page.contains("FORGED"),
        "the report shows a forged summary"
    );
    let absent = c.t.run(&["report", never_ran]);
    absent.assert_code(1);
    // The run's branch, back in the repository, is the run's own.
    let log = repo::git(&local, &["log", "--format=%s", &format!("minion/{id}")]);
    assert!(!log.contains("FORGED"), "{log}");
}
