//! IAM, enforced: the CLI runs as an IAM user holding exactly `lackey policy`'s
//! document, moto evaluates every call against it (docs/stand-ins.md), and the
//! document is shown both sufficient (every command succeeds) and necessary (without
//! any one statement, some command fails naming an action of that statement).

use serde_json::Value;

use crate::cloud::{Cloud, CANARY_KEY, OPERATOR};
use crate::support::moto::Moto;
use crate::support::{Output, TestEnv};

/// One step of the operator's day, and what it printed.
struct Step {
    args: Vec<String>,
    out: Output,
}

/// `up`, `doctor` (aws and infra), both `secret put`, a cloud run, `runs`, `logs`,
/// `down`: until the first failure. Every AWS-talking command family is here.
fn operator_day(c: &mut Cloud) -> Vec<Step> {
    let mut steps = Vec::new();
    let key = c.t.write("app.pem", &c.github_key());
    let key = key.to_str().unwrap().to_string();
    let plan: Vec<(Vec<&str>, Option<&[u8]>)> = vec![
        (vec!["up", "-q"], None),
        (vec!["image", "push", "-q"], None),
        (
            vec!["secret", "put", "github_app_key", "--from-file", &key],
            None,
        ),
        (
            vec!["secret", "put", "anthropic_api_key"],
            Some(CANARY_KEY.as_bytes()),
        ),
        (vec!["doctor", "--phase", "aws", "--phase", "infra"], None),
        (
            vec!["run", "stub work", "--cloud", "--stubs", "--json"],
            None,
        ),
    ];
    for (args, stdin) in plan {
        if args[0] == "run" {
            c.start_player();
        }
        let out = c.t.run_with_stdin(&args, stdin);
        let failed = out.code != 0;
        steps.push(Step {
            args: args.iter().map(|a| a.to_string()).collect(),
            out,
        });
        if failed {
            return steps;
        }
    }
    let id = steps.last().unwrap().out.json()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    for args in [
        vec!["runs"],
        vec!["logs", id.as_str()],
        vec!["down", "--yes", "--force", "-q"],
    ] {
        let out = c.t.run(&args);
        let failed = out.code != 0;
        steps.push(Step {
            args: args.iter().map(|a| a.to_string()).collect(),
            out,
        });
        if failed {
            break;
        }
    }
    steps
}

fn actions(statement: &Value) -> Vec<String> {
    match &statement["Action"] {
        Value::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_string()).collect(),
        Value::String(s) => vec![s.clone()],
        other => panic!("no Action in {other}"),
    }
}

/// A world as the operator sees it, lackey.toml written, nothing made.
fn world() -> Option<Cloud> {
    let c = Cloud::bare(Moto::start_for_fargate()?)?;
    c.moto.add_internet_gateway();
    Some(c)
}

#[test]
fn the_operator_policy_is_sufficient_and_every_statement_is_needed() {
    let Some(mut full) = world() else { return };
    let doc = full.operator_policy();
    let statements = doc["Statement"].as_array().unwrap().clone();
    // Sufficient: the whole day succeeds with the document as printed.
    let day = operator_day(&mut full);
    let last = day.last().unwrap();
    assert_eq!(
        (last.args[0].as_str(), last.out.code),
        ("down", 0),
        "the operator policy is not enough for `{}`:\n{}",
        last.args.join(" "),
        last.out.stderr
    );
    drop(full);
    // Necessary, statement by statement.
    for (i, statement) in statements.iter().enumerate() {
        let Some(mut c) = world() else { return };
        let mut less = doc.clone();
        less["Statement"].as_array_mut().unwrap().remove(i);
        c.set_operator_policy(&less);
        let day = operator_day(&mut c);
        let last = day.last().unwrap();
        let sid = statement["Sid"].as_str().unwrap_or("?");
        assert_ne!(
            last.out.code, 0,
            "without statement {sid} every command still succeeded"
        );
        let text = format!("{}\n{}", last.out.stdout, last.out.stderr);
        let named = actions(statement)
            .into_iter()
            .find(|a| text.contains(&format!("not authorized to perform: {a}")));
        assert!(
            named.is_some(),
            "without statement {sid}, `{}` failed without naming one of its actions {:?}:\n{text}",
            last.args.join(" "),
            actions(statement)
        );
        eprintln!(
            "without {sid}: `lackey {}` fails on {}",
            last.args.join(" "),
            named.unwrap()
        );
    }
}

/// `plan` and `doctor --phase infra` need no more than AWS's managed ReadOnlyAccess;
/// `up` without write rights fails naming the action, pointing at `lackey policy`.
#[test]
fn plan_and_doctor_run_read_only_and_up_says_what_it_lacks() {
    let Some(mut c) = world() else { return };
    let reader = c
        .moto
        .iam_user_managed("reader", "arn:aws:iam::aws:policy/ReadOnlyAccess");
    let operator_creds = std::fs::read_to_string(c.t.path().join("home/.aws/credentials")).unwrap();
    c.t.with_keys(&reader);
    let plan = c.t.run(&["plan"]);
    plan.assert_success();
    assert!(plan.stderr.contains("Create"), "{}", plan.stderr);
    let up = c.t.run(&["up"]);
    assert_eq!(up.code, 1, "{}", up.stderr);
    assert!(
        up.stderr.contains("is not authorized to perform: "),
        "{}",
        up.stderr
    );
    assert!(up.stderr.contains("lackey policy"), "{}", up.stderr);
    // The stack made by the operator, then read by the reader.
    std::fs::write(c.t.path().join("home/.aws/credentials"), operator_creds).unwrap();
    c.up(true);
    c.t.with_keys(&reader);
    c.moto.reset_requests();
    let plan = c.t.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let doctor = c.t.run(&["doctor", "--phase", "infra"]);
    assert_eq!(doctor.code, 0, "{}\n{}", doctor.stdout, doctor.stderr);
    let cli_reads: Vec<String> = c
        .moto
        .requests()
        .into_iter()
        .filter(|r| r.caller == "cli" && r.action == "GetSecretValue")
        .map(|r| format!("{} {:?}", r.action, r.status))
        .collect();
    // doctor's secrets check may try (and is denied under ReadOnlyAccess, which grants
    // no secret value); plan never asks.
    assert!(
        cli_reads.iter().all(|r| !r.contains("200")),
        "a secret value was read: {cli_reads:?}"
    );
}

/// Whoever holds the operator's document may not do more than it says: another
/// stack's cluster, bucket or secret is refused.
#[test]
fn the_operator_cannot_touch_another_stacks_resources() {
    let Some(moto) = Moto::start() else { return };
    let mut t = TestEnv::new();
    t.with_moto(&moto);
    t.write(
        "lackey.toml",
        "[aws]\nregion = \"us-east-1\"\naccount_id = \"123456789012\"\n",
    );
    let policy = t.run(&["policy", "--json"]);
    policy.assert_success();
    let keys = moto.iam_user(OPERATOR, &policy.stdout);
    t.with_keys(&keys);
    t.run(&["plan"]).assert_success();
    // The same operator, another stack's names: denied on the first of them.
    t.write(
        "other.toml",
        "[aws]\nregion = \"us-east-1\"\naccount_id = \"123456789012\"\n[stack]\nname = \"other\"\n",
    );
    let out = t.run(&["--config", "other.toml", "plan"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("is not authorized to perform: "),
        "{}",
        out.stderr
    );
}

/// IAM takes seconds to propagate: moto here refuses for 20 s to let anyone (ECS
/// included) assume a role just made or changed. `up`, then at once `doctor` and a
/// cloud run and a fleet of two: all succeed, the runs after a named wait.
#[test]
fn up_then_at_once_doctor_a_run_and_a_fleet_wait_for_iam_and_succeed() {
    let Some(moto) = Moto::start_with_propagation(20_000) else {
        return;
    };
    let Some(mut c) = Cloud::bare(moto) else {
        return;
    };
    c.moto.add_internet_gateway();
    c.start_player();
    c.up(true);
    c.t.run(&["image", "push", "-q"]).assert_success();
    let doctor = c.t.run(&["doctor", "--phase", "aws", "--phase", "infra"]);
    assert_eq!(doctor.code, 0, "{}\n{}", doctor.stdout, doctor.stderr);
    // On a loaded machine the push and doctor may outlast the window: the run meets
    // roles as fresh as right after `up`.
    c.moto.roles_just_changed();
    let out =
        c.t.run(&["run", "stub work", "--cloud", "--stubs", "--json"]);
    let player = c._player.as_ref().unwrap().log.lock().unwrap().join("\n");
    assert_eq!(out.code, 0, "{}\nplayer:\n{player}", out.stderr);
    assert!(
        player.contains("unable to assume the role"),
        "the run did not meet IAM's propagation: {player}"
    );
    assert!(out.stderr.contains("waiting for IAM"), "{}", out.stderr);
    assert_eq!(out.json()["outcome"], "success", "{}", out.stdout);
}

#[test]
fn a_fleet_right_after_up_waits_for_iam_and_succeeds() {
    let Some(moto) = Moto::start_with_propagation(20_000) else {
        return;
    };
    let Some(mut c) = Cloud::bare(moto) else {
        return;
    };
    c.start_player();
    c.up(true);
    // The image first: its push may outlast the window on a loaded machine.
    c.t.run(&["image", "push", "-q"]).assert_success();
    let file = c.t.write("tasks.txt", "first stub\nsecond stub\n");
    c.moto.roles_just_changed();
    let out = c.t.run(&[
        "run",
        "--cloud",
        "--stubs",
        "--tasks",
        file.to_str().unwrap(),
        "--json",
    ]);
    let player = c._player.as_ref().unwrap().log.lock().unwrap().join("\n");
    assert_eq!(out.code, 0, "{}\nplayer:\n{player}", out.stderr);
    assert!(
        player.contains("unable to assume the role"),
        "the fleet did not meet IAM's propagation: {player}"
    );
    assert_eq!(out.json()["summary"]["success"], 2, "{}", out.stdout);
}

/// Inside a task, the minion's SDK gets the task role's credentials from the
/// container-credentials endpoint, as on Fargate. With them: the run's own input can
/// be read and its artifacts written; another bucket, a made-up input key, a listing,
/// a delete, the manifests' prefix and the secrets are refused.
#[test]
fn the_task_role_can_do_its_run_and_nothing_else() {
    let Some(c) = Cloud::new(true) else { return };
    // The task role's own credentials, as ECS hands them to the container.
    let creds = c
        .moto
        .assume_as_ecs("arn:aws:iam::123456789012:role/lackey-ecs-task");
    let conf = c.moto.sdk_config_as(&creds);
    let admin = c.moto.sdk_config();
    let bucket = "lackey-artifacts-123456789012";
    crate::support::moto::block_on(async {
        let s3 = |conf: &aws_config::SdkConfig| {
            aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(conf)
                    .force_path_style(true)
                    .build(),
            )
        };
        let (role, admin) = (s3(&conf), s3(&admin));
        admin
            .create_bucket()
            .bucket("someone-elses")
            .send()
            .await
            .unwrap();
        for (b, k) in [
            (
                bucket,
                "inputs/20261128-120000-aaaa-0123456789abcdef0123456789abcdef/task.txt",
            ),
            ("someone-elses", "x"),
        ] {
            admin
                .put_object()
                .bucket(b)
                .key(k)
                .body(b"secret input".to_vec().into())
                .send()
                .await
                .unwrap();
        }
        // What a run does: read its input, write its artifacts.
        role.get_object()
            .bucket(bucket)
            .key("inputs/20261128-120000-aaaa-0123456789abcdef0123456789abcdef/task.txt")
            .send()
            .await
            .expect("the run reads its input");
        role.put_object()
            .bucket(bucket)
            .key("20261128-120000-aaaa/minion.log")
            .body(b"log".to_vec().into())
            .send()
            .await
            .expect("the run writes its artifacts");
        // What it must not.
        refused(
            "read another bucket",
            role.get_object()
                .bucket("someone-elses")
                .key("x")
                .send()
                .await,
        );
        refused(
            "write another bucket",
            role.put_object()
                .bucket("someone-elses")
                .key("y")
                .body(b"x".to_vec().into())
                .send()
                .await,
        );
        refused(
            "list the bucket (and find other runs' inputs)",
            role.list_objects_v2().bucket(bucket).send().await,
        );
        refused(
            "read another run's artifacts",
            role.get_object()
                .bucket(bucket)
                .key("20261128-120000-aaaa/minion.log")
                .send()
                .await,
        );
        refused(
            "delete an object",
            role.delete_object()
                .bucket(bucket)
                .key("20261128-120000-aaaa/minion.log")
                .send()
                .await,
        );
        refused(
            "overwrite an input",
            role.put_object()
                .bucket(bucket)
                .key("inputs/x/task.txt")
                .body(b"x".to_vec().into())
                .send()
                .await,
        );
        refused(
            "record where a run's artifacts are",
            role.put_object()
                .bucket(bucket)
                .key("runs/20261128-120000-aaaa/0123456789abcdef0123456789abcdef")
                .body(b"".to_vec().into())
                .send()
                .await,
        );
        refused(
            "write a fleet's manifest",
            role.put_object()
                .bucket(bucket)
                .key("fleets/f/manifest.json")
                .body(b"x".to_vec().into())
                .send()
                .await,
        );
        let sm = aws_sdk_secretsmanager::Client::new(&conf);
        for name in ["lackey/anthropic-api-key", "lackey/github-app-key"] {
            refused(
                "read a secret",
                sm.get_secret_value().secret_id(name).send().await,
            );
        }
    });
}

/// A call the task role must be refused: it failed, with AccessDenied.
pub(crate) fn refused<T, E: std::fmt::Debug>(what: &str, r: Result<T, E>) {
    let Err(e) = r else {
        panic!("the task role could {what}");
    };
    let e = format!("{e:?}");
    assert!(e.contains("AccessDenied"), "{what}: {e}");
}
