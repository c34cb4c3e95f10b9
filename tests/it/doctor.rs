//! `lackey doctor` against moto and the fakes of the cloud tests: a healthy stack passes
//! every check, and each broken set-up fails exactly its own check, with its hint.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::cloud::Cloud;
use crate::support::moto::block_on;
use crate::support::snapshot_filters;

const KEY: &str = "sk-ant-api03-CANARY-doctor-0123456789abcdef";

pub(crate) fn healthy() -> Option<Cloud> {
    let mut c = Cloud::new(true)?;
    c.moto.add_internet_gateway();
    c.t.run(&["image", "push", "-q"]).assert_success();
    crate::support::repo::hello_project(&c.t.work().join("project"));
    c.t.set("LACKEY_REPO", "project")
        .set("ANTHROPIC_API_KEY", KEY);
    Some(c)
}

fn doctor(c: &Cloud, extra_env: &[(&str, &str)]) -> (i32, Vec<Value>) {
    let mut cmd = c.t.command(&["doctor", "--json"]);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = crate::support::wait_with_timeout(
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
        std::time::Duration::from_secs(120),
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json: {e}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (
        out.status.code().unwrap_or(-1),
        v["checks"].as_array().unwrap().clone(),
    )
}

fn failing(checks: &[Value]) -> BTreeSet<String> {
    checks
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| {
            format!(
                "{}/{}",
                c["phase"].as_str().unwrap(),
                c["name"].as_str().unwrap()
            )
        })
        .collect()
}

fn hint(checks: &[Value], name: &str) -> String {
    checks
        .iter()
        .find(|c| c["name"] == name)
        .and_then(|c| c["hint"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[track_caller]
fn only_fails(c: &Cloud, env: &[(&str, &str)], check: &str, hint_has: &str) {
    only_these_fail(c, env, &[check], hint_has);
}

/// `checks` fail and no other; the first one's hint names the fix.
fn only_these_fail(c: &Cloud, env: &[(&str, &str)], checks_failing: &[&str], hint_has: &str) {
    let check = checks_failing[0];
    let (code, checks) = doctor(c, env);
    assert_eq!(code, 1);
    assert_eq!(
        failing(&checks),
        checks_failing
            .iter()
            .map(|c| c.to_string())
            .collect::<BTreeSet<_>>(),
        "{checks:#?}"
    );
    let name = check.split('/').nth(1).unwrap();
    assert!(
        hint(&checks, name).contains(hint_has),
        "hint of {check}: {}",
        hint(&checks, name)
    );
}

#[test]
fn a_healthy_stack_passes_and_each_broken_setup_fails_only_its_check() {
    let Some(c) = healthy() else { return };
    let (code, checks) = doctor(&c, &[]);
    let not_passing: Vec<&Value> = checks.iter().filter(|c| c["status"] != "pass").collect();
    assert!(not_passing.is_empty(), "{not_passing:#?}");
    assert_eq!(code, 0);
    let names: Vec<String> = checks
        .iter()
        .map(|c| {
            format!(
                "{}/{}",
                c["phase"].as_str().unwrap(),
                c["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            "local/docker",
            "local/image",
            "local/repo",
            "local/anthropic-key",
            "aws/credentials",
            "aws/region",
            "aws/bucket",
            "aws/ecr-image",
            "aws/secrets",
            "aws/github",
            "infra/cluster",
            "infra/log-group",
            "infra/roles",
            "infra/network",
            "infra/execution-role-secrets",
            "infra/task-definition",
            "infra/credential-isolation",
        ]
    );
    // The human form: a mark per line, and no secret anywhere.
    let human = c.t.run(&["doctor"]);
    human.assert_success();
    assert!(
        human.stdout.lines().all(|l| l.starts_with("✓ ")),
        "{}",
        human.stdout
    );
    assert!(!human.stdout.contains(KEY) && !human.stderr.contains(KEY));

    let conf = c.moto.sdk_config();
    // Docker unreachable.
    only_fails(
        &c,
        &[("DOCKER_HOST", "tcp://127.0.0.1:9")],
        "local/docker",
        "start Docker",
    );

    // A role's policy deleted, then repaired by `lackey up`.
    block_on(async {
        aws_sdk_iam::Client::new(&conf)
            .delete_role_policy()
            .role_name("lackey-ecs-execution")
            .policy_name("lackey-secrets")
            .send()
            .await
            .unwrap();
    });
    // With IAM enforced, the role without its policy also cannot read the secrets.
    only_these_fail(
        &c,
        &[],
        &["infra/roles", "infra/execution-role-secrets"],
        "lackey up",
    );
    c.t.run(&["up", "-q"]).assert_success();

    // An inbound rule added.
    block_on(async {
        let ec2 = aws_sdk_ec2::Client::new(&conf);
        crate::support::moto::add_ssh_ingress(&ec2).await;
    });
    only_fails(&c, &[], "infra/network", "lackey up");
    c.t.run(&["up", "-q"]).assert_success();

    // A secret without a value (its current version unstaged).
    block_on(async {
        let sm = aws_sdk_secretsmanager::Client::new(&conf);
        let d = sm
            .describe_secret()
            .secret_id("lackey/anthropic-api-key")
            .send()
            .await
            .unwrap();
        let current = d
            .version_ids_to_stages()
            .unwrap()
            .iter()
            .find(|(_, s)| s.iter().any(|x| x == "AWSCURRENT"))
            .unwrap()
            .0
            .clone();
        sm.update_secret_version_stage()
            .secret_id("lackey/anthropic-api-key")
            .version_stage("AWSCURRENT")
            .remove_from_version_id(current)
            .send()
            .await
            .unwrap();
    });
    only_fails(
        &c,
        &[],
        "aws/secrets",
        "lackey secret put anthropic_api_key",
    );
    c.t.run_with_stdin(
        &["secret", "put", "anthropic_api_key"],
        Some(KEY.as_bytes()),
    )
    .assert_success();

    // A GitHub key that does not belong to the app.
    let (other, _) = crate::support::fake_github::key_pair();
    let p = c.t.write("other.pem", &other);
    c.t.run(&[
        "secret",
        "put",
        "github_app_key",
        "--from-file",
        p.to_str().unwrap(),
    ])
    .assert_success();
    only_fails(&c, &[], "aws/github", "private key");
    let p = c.t.write("app.pem", &c.github_key());
    c.t.run(&[
        "secret",
        "put",
        "github_app_key",
        "--from-file",
        p.to_str().unwrap(),
    ])
    .assert_success();

    // Another image in the registry under the same tag.
    let registry = c.registry_host();
    for args in [
        vec![
            "tag",
            "lackey/debian-base:bookworm",
            &format!("{registry}/lackey-minion:latest"),
        ],
        vec!["push", "-q", &format!("{registry}/lackey-minion:latest")],
    ] {
        let s = std::process::Command::new("docker")
            .args(&args)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(s.success());
    }
    only_fails(&c, &[], "aws/ecr-image", "lackey image push");
    c.t.run(&["image", "push", "-q"]).assert_success();

    let (code, checks) = doctor(&c, &[]);
    assert_eq!(failing(&checks), BTreeSet::new());
    assert_eq!(code, 0);
}

#[test]
fn e2e_runs_a_stub_task_on_fargate() {
    let Some(c) = healthy() else { return };
    // The cloud phase launches a task: it runs only when asked for with --e2e.
    let refused = c.t.run(&["doctor", "--phase", "cloud"]);
    refused.assert_code(1);
    assert!(
        refused.stderr.starts_with(
            "error: the `cloud` phase launches a task on Fargate and runs only with --e2e"
        ),
        "{}",
        refused.stderr
    );
    let out = c.t.run(&["doctor", "--phase", "cloud", "--e2e", "--json"]);
    let v = out.json();
    let checks = v["checks"].as_array().unwrap();
    let e2e = checks
        .iter()
        .find(|c| c["name"] == "e2e")
        .unwrap_or_else(|| panic!("{v:#}"));
    assert_eq!(e2e["status"], "pass", "{e2e:#}\n{}", out.stderr);
    assert!(e2e["detail"]
        .as_str()
        .unwrap()
        .contains("succeeded on Fargate"));
    out.assert_success();
}

#[test]
fn without_aws_the_local_phase_still_answers() {
    let mut t = crate::support::TestEnv::new();
    t.set("DOCKER_HOST", "tcp://127.0.0.1:9");
    // doctor takes --repo and --image, as its own hints say.
    let out = t.run(&[
        "doctor",
        "--phase",
        "local",
        "--repo",
        "nowhere",
        "--image",
        "some-image:1",
    ]);
    out.assert_code(1);
    // A skipped check is `skip`, not a warning; a missing Anthropic key only warns
    // (runs with --stubs need none).
    snapshot_filters(&[])
        .bind(|| insta::assert_snapshot!("doctor_local_without_docker", out.stdout));
    let out = t.run(&["doctor", "--phase", "local", "--repo", "nowhere", "--json"]);
    out.assert_code(1);
    let v = out.json();
    let status: Vec<(String, String)> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        status,
        [
            ("docker".to_string(), "fail".to_string()),
            ("image".to_string(), "skip".to_string()),
            ("repo".to_string(), "fail".to_string()),
            ("anthropic-key".to_string(), "warn".to_string()),
        ]
    );
}
