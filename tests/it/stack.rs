//! `lackey plan`, `up` and `down` against moto: the default stack, idempotence,
//! drift, ownership, interruption, faults and teardown.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::moto::{block_on, Moto};
use crate::support::{snapshot_filters, TestEnv};

struct Stack {
    moto: Moto,
    t: TestEnv,
}

impl Stack {
    fn new() -> Option<Stack> {
        Self::with_toml("")
    }

    /// moto plus a lackey.toml (account id and region as `lackey init` writes them).
    fn with_toml(extra: &str) -> Option<Stack> {
        let moto = Moto::start()?;
        let mut t = TestEnv::new();
        t.with_moto(&moto).set("AWS_MAX_ATTEMPTS", "10");
        t.write(
            "lackey.toml",
            &format!("[aws]\nregion = \"us-east-1\"\naccount_id = \"123456789012\"\n{extra}"),
        );
        Some(Stack { moto, t })
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.t.run(&a);
        assert!(
            out.code == 0 || out.code == 2,
            "lackey {}: exit {}\n{}",
            args.join(" "),
            out.code,
            out.stderr
        );
        out.json()
    }

    fn actions(v: &Value) -> Vec<String> {
        v["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                format!(
                    "{} {} {}",
                    c["action"].as_str().unwrap(),
                    c["kind"].as_str().unwrap(),
                    c["name"].as_str().unwrap()
                )
            })
            .collect()
    }

    fn changed(v: &Value) -> Vec<String> {
        Self::actions(v)
            .into_iter()
            .filter(|a| !a.starts_with("noop"))
            .collect()
    }

    fn mutating_requests(&self) -> Vec<String> {
        self.moto
            .requests()
            .into_iter()
            .filter(|r| r.is_mutating())
            .map(|r| format!("{} {} {}", r.service, r.action, r.path))
            .collect()
    }

    fn converged(&self) {
        let out = self.t.run(&["plan", "--detailed-exitcode", "--json"]);
        assert_eq!(
            out.code,
            0,
            "the stack has pending changes: {:?}\n{}",
            Self::changed(&out.json()),
            out.stderr
        );
    }
}

const ALL: [&str; 12] = [
    "s3_bucket lackey-artifacts-123456789012",
    "ecr_repository lackey-minion",
    "ecs_cluster lackey",
    "log_group /ecs/lackey-minion",
    "iam_role lackey-ecs-execution",
    "iam_role_policy lackey-ecs-execution/lackey-secrets",
    "iam_role lackey-ecs-task",
    "iam_role_policy lackey-ecs-task/lackey-s3-artifacts",
    "security_group lackey-ecs-tasks",
    "secret lackey/github-app-key",
    "secret lackey/anthropic-api-key",
    "task_definition lackey-minion",
];

fn with_action(action: &str) -> Vec<String> {
    ALL.iter().map(|r| format!("{action} {r}")).collect()
}

#[test]
fn up_from_empty_builds_the_guides_stack_and_a_second_up_changes_nothing() {
    let Some(s) = Stack::new() else { return };
    let plan = s.json(&["plan"]);
    assert_eq!(Stack::actions(&plan), with_action("create"));
    assert_eq!(
        plan["summary"],
        serde_json::json!({"create": 12, "update": 0, "delete": 0, "noop": 0})
    );
    assert_eq!(plan["stack"], "lackey");
    let up = s.json(&["up"]);
    assert_eq!(Stack::actions(&up), with_action("create"));

    // Every resource with its documented properties, read back through the SDK.
    let conf = s.moto.sdk_config();
    block_on(async {
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&conf)
                .force_path_style(true)
                .build(),
        );
        let tags = s3
            .get_bucket_tagging()
            .bucket("lackey-artifacts-123456789012")
            .send()
            .await
            .unwrap();
        assert!(tags
            .tag_set()
            .iter()
            .any(|t| t.key() == "lackey:stack" && t.value() == "lackey"));
        assert!(tags
            .tag_set()
            .iter()
            .any(|t| t.key() == "managed-by" && t.value() == "lackey"));

        let iam = aws_sdk_iam::Client::new(&conf);
        let role = iam
            .get_role()
            .role_name("lackey-ecs-execution")
            .send()
            .await
            .unwrap()
            .role
            .unwrap();
        let trust = percent_decode(role.assume_role_policy_document().unwrap());
        assert!(
            trust.contains("ecs-tasks.amazonaws.com") && trust.contains("sts:AssumeRole"),
            "{trust}"
        );
        let attached = iam
            .list_attached_role_policies()
            .role_name("lackey-ecs-execution")
            .send()
            .await
            .unwrap();
        let arns: Vec<&str> = attached
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_arn())
            .collect();
        assert_eq!(
            arns,
            ["arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"]
        );
        let doc = inline_policy(&iam, "lackey-ecs-execution", "lackey-secrets").await;
        assert_eq!(
            doc["Statement"][0]["Action"],
            serde_json::json!(["secretsmanager:GetSecretValue"])
        );
        assert_eq!(
            doc["Statement"][0]["Resource"],
            serde_json::json!([
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:lackey/github-app-key-??????",
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:lackey/anthropic-api-key-??????"
            ])
        );
        let doc = inline_policy(&iam, "lackey-ecs-task", "lackey-s3-artifacts").await;
        assert_eq!(
            doc["Statement"][0]["Action"],
            serde_json::json!(["s3:PutObject", "s3:GetObject", "s3:ListBucket"])
        );
        assert_eq!(
            doc["Statement"][0]["Resource"],
            serde_json::json!([
                "arn:aws:s3:::lackey-artifacts-123456789012",
                "arn:aws:s3:::lackey-artifacts-123456789012/*"
            ])
        );

        let ec2 = aws_sdk_ec2::Client::new(&conf);
        let vpcs = ec2
            .describe_vpcs()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("isDefault")
                    .values("true")
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let vpc = vpcs.vpcs()[0].vpc_id().unwrap().to_string();
        let sgs = crate::support::moto::lackey_security_groups(&ec2).await;
        assert_eq!(sgs.len(), 1);
        let sg = &sgs[0];
        assert_eq!(sg.vpc_id(), Some(vpc.as_str()));
        assert!(
            sg.ip_permissions().is_empty(),
            "the security group has inbound rules"
        );
        assert_eq!(sg.description(), Some("Lackey ECS tasks - outbound only"));

        let sm = aws_sdk_secretsmanager::Client::new(&conf);
        let mut secret_arns = std::collections::BTreeMap::new();
        for name in ["lackey/github-app-key", "lackey/anthropic-api-key"] {
            let d = sm.describe_secret().secret_id(name).send().await.unwrap();
            assert!(
                d.version_ids_to_stages()
                    .map(|m| m.is_empty())
                    .unwrap_or(true),
                "{name} was created with a value"
            );
            secret_arns.insert(name, d.arn().unwrap().to_string());
        }

        let logs = aws_sdk_cloudwatchlogs::Client::new(&conf);
        let groups = logs
            .describe_log_groups()
            .log_group_name_prefix("/ecs/lackey-minion")
            .send()
            .await
            .unwrap();
        assert_eq!(groups.log_groups().len(), 1);

        let ecs = aws_sdk_ecs::Client::new(&conf);
        let c = ecs
            .describe_clusters()
            .clusters("lackey")
            .send()
            .await
            .unwrap();
        assert_eq!(c.clusters()[0].status(), Some("ACTIVE"));
        let td = ecs
            .describe_task_definition()
            .task_definition("lackey-minion")
            .send()
            .await
            .unwrap()
            .task_definition
            .unwrap();
        assert_eq!(td.network_mode().map(|m| m.as_str()), Some("awsvpc"));
        assert_eq!(
            td.requires_compatibilities()
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>(),
            ["FARGATE"]
        );
        assert_eq!((td.cpu(), td.memory()), (Some("1024"), Some("4096")));
        assert_eq!(
            td.execution_role_arn(),
            Some("arn:aws:iam::123456789012:role/lackey-ecs-execution")
        );
        assert_eq!(
            td.task_role_arn(),
            Some("arn:aws:iam::123456789012:role/lackey-ecs-task")
        );
        let minion = &td.container_definitions()[0];
        assert_eq!(minion.name(), Some("minion"));
        assert_eq!(
            minion.image(),
            Some("123456789012.dkr.ecr.us-east-1.amazonaws.com/lackey-minion:latest")
        );
        let log = minion.log_configuration().unwrap();
        assert_eq!(log.log_driver().as_str(), "awslogs");
        let opts = log.options().unwrap();
        assert_eq!(opts["awslogs-group"], "/ecs/lackey-minion");
        assert_eq!(opts["awslogs-stream-prefix"], "minion");
        let secrets: Vec<(&str, &str)> = minion
            .secrets()
            .iter()
            .map(|s| (s.name(), s.value_from()))
            .collect();
        assert!(
            secrets.contains(&(
                "ANTHROPIC_API_KEY",
                secret_arns["lackey/anthropic-api-key"].as_str()
            )),
            "{secrets:?}"
        );
        assert!(
            minion.environment().is_empty(),
            "no secret or value travels in the environment"
        );
    });

    // Converged: plan exits 0 and a second up makes no mutating call.
    s.converged();
    s.moto.reset_requests();
    let again = s.json(&["up"]);
    assert_eq!(Stack::actions(&again), with_action("noop"));
    assert_eq!(s.mutating_requests(), Vec::<String>::new());
    // Observation costs at most 2 requests per resource.
    s.moto.reset_requests();
    s.json(&["plan"]);
    assert!(
        s.moto.requests().len() <= 24,
        "{} requests for a converged plan",
        s.moto.requests().len()
    );
}

/// A role's inline policy as IAM returns it (URL-encoded), parsed.
async fn inline_policy(iam: &aws_sdk_iam::Client, role: &str, name: &str) -> Value {
    let out = iam
        .get_role_policy()
        .role_name(role)
        .policy_name(name)
        .send()
        .await
        .unwrap();
    serde_json::from_str(&percent_decode(out.policy_document())).unwrap()
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[test]
fn drift_is_shown_field_by_field_and_repaired() {
    let Some(s) = Stack::with_toml("[logs]\nretention_days = 30\n") else {
        return;
    };
    s.json(&["up"]);
    s.converged();
    let conf = s.moto.sdk_config();
    block_on(async {
        let iam = aws_sdk_iam::Client::new(&conf);
        iam.put_role_policy()
            .role_name("lackey-ecs-task")
            .policy_name("lackey-s3-artifacts")
            .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#)
            .send()
            .await
            .unwrap();
        let logs = aws_sdk_cloudwatchlogs::Client::new(&conf);
        logs.put_retention_policy()
            .log_group_name("/ecs/lackey-minion")
            .retention_in_days(7)
            .send()
            .await
            .unwrap();
        let ec2 = aws_sdk_ec2::Client::new(&conf);
        crate::support::moto::add_ssh_ingress(&ec2).await;
    });
    let out = s.t.run(&["plan", "--detailed-exitcode", "--json"]);
    assert_eq!(out.code, 2);
    let plan = out.json();
    assert_eq!(
        Stack::changed(&plan),
        [
            "update log_group /ecs/lackey-minion",
            "update iam_role_policy lackey-ecs-task/lackey-s3-artifacts",
            "update security_group lackey-ecs-tasks",
        ]
    );
    let diff = |name: &str| {
        plan["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()["diff"]
            .clone()
    };
    assert_eq!(
        diff("/ecs/lackey-minion"),
        serde_json::json!([{"field": "retention_days", "old": 7, "new": 30}])
    );
    assert_eq!(
        diff("lackey-ecs-tasks"),
        serde_json::json!([{"field": "ingress", "old": ["tcp/22 from 0.0.0.0/0"], "new": []}])
    );
    let policy = diff("lackey-ecs-task/lackey-s3-artifacts");
    assert_eq!(policy[0]["field"], "document");
    assert_eq!(
        policy[0]["old"]["Statement"][0]["Action"],
        serde_json::json!(["s3:*"])
    );

    let human = s.t.run(&["plan"]);
    assert!(
        human.stderr.contains("retention_days: 7 -> 30"),
        "{}",
        human.stderr
    );
    assert!(
        human
            .stderr
            .contains("ingress: [\"tcp/22 from 0.0.0.0/0\"] -> []"),
        "{}",
        human.stderr
    );
    s.json(&["up"]);
    s.converged();
}

#[test]
fn resources_deleted_out_of_band_are_created_again() {
    let Some(s) = Stack::new() else { return };
    s.json(&["up"]);
    let conf = s.moto.sdk_config();
    block_on(async {
        let iam = aws_sdk_iam::Client::new(&conf);
        iam.delete_role_policy()
            .role_name("lackey-ecs-task")
            .policy_name("lackey-s3-artifacts")
            .send()
            .await
            .unwrap();
        iam.delete_role()
            .role_name("lackey-ecs-task")
            .send()
            .await
            .unwrap();
        let logs = aws_sdk_cloudwatchlogs::Client::new(&conf);
        logs.delete_log_group()
            .log_group_name("/ecs/lackey-minion")
            .send()
            .await
            .unwrap();
    });
    let plan = s.json(&["plan"]);
    assert_eq!(
        Stack::changed(&plan),
        [
            "create log_group /ecs/lackey-minion",
            "create iam_role lackey-ecs-task",
            "create iam_role_policy lackey-ecs-task/lackey-s3-artifacts",
        ]
    );
    s.json(&["up"]);
    s.converged();
}

#[test]
fn a_policy_aws_returns_reordered_shows_no_change() {
    let Some(s) = Stack::new() else { return };
    s.json(&["up"]);
    let conf = s.moto.sdk_config();
    block_on(async {
        aws_sdk_iam::Client::new(&conf)
            .put_role_policy()
            .role_name("lackey-ecs-task")
            .policy_name("lackey-s3-artifacts")
            .policy_document(
                r#"{"Statement":[{"Resource":["arn:aws:s3:::lackey-artifacts-123456789012/*","arn:aws:s3:::lackey-artifacts-123456789012"],"Effect":"Allow","Action":["s3:ListBucket","s3:PutObject","s3:GetObject","s3:GetObject"]}],"Version":"2012-10-17"}"#,
            )
            .send()
            .await
            .unwrap();
    });
    s.converged();
}

#[test]
fn an_untagged_bucket_is_unowned_until_adopted() {
    let Some(s) = Stack::new() else { return };
    let conf = s.moto.sdk_config();
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    );
    block_on(async {
        s3.create_bucket()
            .bucket("lackey-artifacts-123456789012")
            .send()
            .await
            .unwrap();
        s3.put_object()
            .bucket("lackey-artifacts-123456789012")
            .key("keep.txt")
            .body(b"mine".to_vec().into())
            .send()
            .await
            .unwrap();
    });
    let plan = s.json(&["plan"]);
    let bucket = &plan["changes"][0];
    assert_eq!(bucket["action"], "unowned");
    assert!(bucket["notes"][0].as_str().unwrap().contains("--adopt"));
    assert_eq!(plan["summary"]["create"], 11);

    s.moto.reset_requests();
    let up = s.t.run(&["up"]);
    up.assert_success();
    assert!(
        up.stderr.contains(
            "warning: s3_bucket `lackey-artifacts-123456789012` exists without lackey's tags"
        ),
        "{}",
        up.stderr
    );
    assert!(
        !s.mutating_requests()
            .iter()
            .any(|r| r.contains("/lackey-artifacts-123456789012")),
        "up touched the unowned bucket"
    );

    let down = s.json(&["down", "--yes", "--force"]);
    let b = down["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "s3_bucket")
        .unwrap();
    assert_eq!(b["action"], "unowned");
    block_on(async {
        let o = s3
            .get_object()
            .bucket("lackey-artifacts-123456789012")
            .key("keep.txt")
            .send()
            .await;
        assert!(o.is_ok(), "down deleted an unowned bucket's object");
    });

    let adopt = s.json(&["up", "--adopt"]);
    let b = adopt["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "s3_bucket")
        .unwrap();
    assert_eq!(b["action"], "update");
    assert_eq!(b["diff"][0]["field"], "tags");
    s.converged();
    block_on(async {
        let tags = s3
            .get_bucket_tagging()
            .bucket("lackey-artifacts-123456789012")
            .send()
            .await
            .unwrap();
        assert!(tags.tag_set().iter().any(|t| t.key() == "lackey:stack"));
    });
}

#[test]
fn down_force_leaves_nothing_and_a_second_down_deletes_nothing() {
    let Some(s) = Stack::new() else { return };
    s.json(&["up"]);
    let conf = s.moto.sdk_config();
    block_on(async {
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&conf)
                .force_path_style(true)
                .build(),
        );
        for i in 0..3 {
            s3.put_object()
                .bucket("lackey-artifacts-123456789012")
                .key(format!("run/{i}.log"))
                .body(b"x".to_vec().into())
                .send()
                .await
                .unwrap();
        }
    });
    // Without --force the non-empty bucket is kept and reported; the rest goes.
    let down = s.t.run(&["down", "--yes", "--json"]);
    down.assert_success();
    let v = down.json();
    let b = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "s3_bucket")
        .unwrap();
    assert_eq!(b["action"], "noop");
    assert!(b["notes"][0].as_str().unwrap().contains("not empty"));
    assert_eq!(v["summary"]["delete"], 11);
    assert!(
        down.stderr.contains("is not empty; kept"),
        "{}",
        down.stderr
    );

    // --force also deletes, without recovery, the secrets the first down scheduled.
    let v = s.json(&["down", "--yes", "--force"]);
    assert_eq!(
        Stack::changed(&v),
        [
            "delete s3_bucket lackey-artifacts-123456789012",
            "delete secret lackey/github-app-key",
            "delete secret lackey/anthropic-api-key"
        ]
    );
    let plan = s.json(&["plan"]);
    assert_eq!(
        Stack::actions(&plan),
        with_action("create"),
        "something of the stack is left"
    );
    let again = s.json(&["down", "--yes", "--force"]);
    assert_eq!(again["summary"]["delete"], 0);
}

#[test]
fn down_needs_yes_without_a_terminal() {
    let Some(s) = Stack::new() else { return };
    let out = s.t.run(&["down"]);
    out.assert_code(1);
    assert_eq!(out.stderr, "error: refusing to delete the stack without confirmation\nhint: pass --yes to delete without a prompt\n");
}

#[test]
fn a_secret_scheduled_for_deletion_is_restored_by_up() {
    let Some(s) = Stack::new() else { return };
    s.json(&["up"]);
    s.json(&["down", "--yes"]);
    let plan = s.json(&["plan"]);
    let secret = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "lackey/anthropic-api-key")
        .unwrap();
    assert_eq!(secret["action"], "update");
    assert_eq!(
        secret["diff"],
        serde_json::json!([{"field": "deletion", "old": "scheduled", "new": "restored"}])
    );
    s.json(&["up"]);
    s.converged();
}

#[test]
fn secret_put_stores_a_value_and_never_echoes_it() {
    let Some(s) = Stack::new() else { return };
    s.json(&["up"]);
    let canary = "sk-ant-api03-CANARY-secret-put-0123456789";
    let out = s.t.run_with_stdin(
        &["secret", "put", "anthropic_api_key"],
        Some(format!("{canary}\n").as_bytes()),
    );
    out.assert_success();
    assert!(!out.stdout.contains(canary) && !out.stderr.contains(canary));
    assert!(
        out.stderr
            .contains("Stored a new value in secret `lackey/anthropic-api-key`"),
        "{}",
        out.stderr
    );
    let conf = s.moto.sdk_config();
    block_on(async {
        let v = aws_sdk_secretsmanager::Client::new(&conf)
            .get_secret_value()
            .secret_id("lackey/anthropic-api-key")
            .send()
            .await
            .unwrap();
        assert_eq!(v.secret_string(), Some(canary));
    });
    // The plan no longer says the Anthropic secret lacks a value; the GitHub one still does.
    let plan = s.json(&["plan"]);
    let notes = |name: &str| -> Vec<String> {
        plan["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()["notes"]
            .as_array()
            .map(|n| n.iter().map(|x| x.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    assert_eq!(notes("lackey/anthropic-api-key"), Vec::<String>::new());
    assert_eq!(
        notes("lackey/github-app-key"),
        ["has no value yet: run `lackey secret put lackey/github-app-key`"]
    );

    let bad =
        s.t.run_with_stdin(&["secret", "put", "github_app_key"], Some(b"not a pem"));
    bad.assert_code(1);
    assert!(
        bad.stderr
            .starts_with("error: the GitHub App key is not a PEM private key"),
        "{}",
        bad.stderr
    );
    let unknown = s.t.run_with_stdin(&["secret", "put", "nope"], Some(b"x"));
    unknown.assert_code(1);
    assert!(unknown
        .stderr
        .contains("`nope` is not one of the stack's secrets"));
}

#[test]
fn secret_put_refuses_a_secret_the_stack_does_not_own() {
    let Some(s) = Stack::new() else { return };
    let conf = s.moto.sdk_config();
    let sm = aws_sdk_secretsmanager::Client::new(&conf);
    let value = |sm: &aws_sdk_secretsmanager::Client| {
        block_on(async {
            sm.get_secret_value()
                .secret_id("lackey/anthropic-api-key")
                .send()
                .await
                .unwrap()
                .secret_string()
                .map(str::to_string)
        })
    };
    // Made by hand, untagged: only `up --adopt` may make it this stack's.
    block_on(async {
        sm.create_secret()
            .name("lackey/anthropic-api-key")
            .secret_string("theirs")
            .send()
            .await
            .unwrap();
    });
    let put = |s: &Stack| {
        s.t.run_with_stdin(
            &["secret", "put", "anthropic_api_key"],
            Some(b"sk-ant-api03-CANARY-not-stored-0123456789\n"),
        )
    };
    let untagged = put(&s);
    untagged.assert_code(1);
    assert_eq!(untagged.stdout, "");
    snapshot_filters(&[])
        .bind(|| insta::assert_snapshot!("secret_put_untagged_refused", untagged.stderr));
    assert_eq!(value(&sm).as_deref(), Some("theirs"));
    // Another stack's: the message names it.
    block_on(async {
        sm.tag_resource()
            .secret_id("lackey/anthropic-api-key")
            .tags(
                aws_sdk_secretsmanager::types::Tag::builder()
                    .key("lackey:stack")
                    .value("team-b")
                    .build(),
            )
            .send()
            .await
            .unwrap();
    });
    let other = put(&s);
    other.assert_code(1);
    snapshot_filters(&[])
        .bind(|| insta::assert_snapshot!("secret_put_other_stack_refused", other.stderr));
    assert_eq!(value(&sm).as_deref(), Some("theirs"));
    assert!(!other.stderr.contains("CANARY") && !untagged.stderr.contains("CANARY"));
}

#[test]
fn plan_json_is_exactly_the_spec_shape() {
    let Some(s) = Stack::new() else { return };
    let out = s.t.run(&["plan", "--json"]);
    out.assert_success();
    snapshot_filters(&[]).bind(|| insta::assert_snapshot!("plan_json_empty", out.stdout));
    let human = s.t.run(&["plan"]);
    snapshot_filters(&[]).bind(|| {
        insta::assert_snapshot!(
            "plan_human_empty",
            format!("{}{}", human.stderr, human.stdout)
        )
    });
}

/// Kill -9 `up` at ten points (after n AWS requests), then `up` again: every resource
/// present, one security group, one active task definition revision.
#[test]
fn up_killed_at_ten_points_converges() {
    let Some(s) = Stack::new() else { return };
    let conf = s.moto.sdk_config();
    for point in [1usize, 3, 5, 8, 11, 14, 17, 20, 24, 28] {
        s.moto.hang_after(point);
        let mut child =
            s.t.command(&["up", "-q"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
        // Wait until the request after `point` is being held.
        let start = Instant::now();
        while s.moto.requests().len() < point && start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(150));
        child.kill().unwrap();
        let _ = child.wait();
        s.moto.release();
        s.moto.reset_requests();
        let up = s.t.run(&["up", "--json"]);
        assert_eq!(
            up.code, 0,
            "up after a kill at request {point} failed:\n{}",
            up.stderr
        );
        s.converged();
        block_on(async {
            let ec2 = aws_sdk_ec2::Client::new(&conf);
            let sgs = crate::support::moto::lackey_security_groups(&ec2).await;
            assert_eq!(
                sgs.len(),
                1,
                "duplicate security groups after a kill at {point}"
            );
            let ecs = aws_sdk_ecs::Client::new(&conf);
            let tds = ecs
                .list_task_definitions()
                .family_prefix("lackey-minion")
                .status(aws_sdk_ecs::types::TaskDefinitionStatus::Active)
                .send()
                .await
                .unwrap();
            assert_eq!(
                tds.task_definition_arns().len(),
                1,
                "task definition revisions after a kill at {point}: {:?}",
                tds.task_definition_arns()
            );
        });
        let down = s.t.run(&["down", "--yes", "--force", "-q"]);
        assert_eq!(down.code, 0, "{}", down.stderr);
        s.moto.reset_requests();
    }
}

#[test]
fn down_killed_midway_converges() {
    let Some(s) = Stack::new() else { return };
    for point in [2usize, 9, 15] {
        s.json(&["up"]);
        s.moto.reset_requests();
        s.moto.hang_after(point + 17);
        let mut child =
            s.t.command(&["down", "--yes", "--force", "-q"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
        let start = Instant::now();
        while s.moto.requests().len() < point + 17 && start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(150));
        child.kill().unwrap();
        let _ = child.wait();
        s.moto.release();
        let down = s.t.run(&["down", "--yes", "--force", "--json"]);
        assert_eq!(down.code, 0, "{}", down.stderr);
        let plan = s.json(&["plan"]);
        assert_eq!(
            Stack::actions(&plan),
            with_action("create"),
            "down after a kill at {point} left something"
        );
    }
}

#[test]
fn up_and_down_converge_through_throttling_and_5xx() {
    let Some(s) = Stack::new() else { return };
    s.moto.set_faults(0.2, 42);
    let up = s.t.run(&["up", "--json"]);
    assert_eq!(up.code, 0, "{}", up.stderr);
    let faults = s
        .moto
        .requests()
        .iter()
        .filter(|r| r.status == "fault")
        .count();
    assert!(faults > 0, "no fault was injected");
    s.converged();
    let down = s.t.run(&["down", "--yes", "--force", "--json"]);
    assert_eq!(down.code, 0, "{}", down.stderr);
    s.moto.set_faults(0.0, 0);
    let plan = s.json(&["plan"]);
    assert_eq!(Stack::actions(&plan), with_action("create"));
}

/// A security group a task's network interface still holds: `down` retries it with
/// backoff (moto never refuses, so the refusals are injected, in EC2's own format).
#[test]
fn down_retries_a_security_group_still_in_use() {
    let Some(s) = Stack::new() else { return };
    s.json(&["up"]);
    s.moto.inject(
        "DeleteSecurityGroup",
        2,
        400,
        "text/xml",
        "<Response><Errors><Error><Code>DependencyViolation</Code><Message>resource sg-0123 has a dependent object</Message></Error></Errors><RequestID>x</RequestID></Response>",
    );
    s.moto.reset_requests();
    let down = s.json(&["down", "--yes", "--force"]);
    let tries: Vec<String> = s
        .moto
        .requests()
        .into_iter()
        .filter(|r| r.action == "DeleteSecurityGroup")
        .map(|r| r.status.to_string())
        .collect();
    assert_eq!(tries, ["\"injected\"", "\"injected\"", "200"]);
    assert_eq!(down["summary"]["delete"], 12);
}
