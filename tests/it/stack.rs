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
#[allow(
    clippy::too_many_lines,
    reason = "one scenario, every resource checked in turn: reads better whole"
)]
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
        // The task role: write artifacts, read inputs, never list, delete, nor write
        // inputs and fleet manifests (docs/iam.md).
        let doc = inline_policy(&iam, "lackey-ecs-task", "lackey-s3-artifacts").await;
        assert_eq!(
            doc["Statement"][0]["Action"],
            serde_json::json!(["s3:PutObject", "s3:AbortMultipartUpload"])
        );
        assert_eq!(
            doc["Statement"][0]["Resource"],
            "arn:aws:s3:::lackey-artifacts-123456789012/*"
        );
        assert_eq!(doc["Statement"][1]["Action"], "s3:GetObject");
        assert_eq!(
            doc["Statement"][1]["Resource"],
            "arn:aws:s3:::lackey-artifacts-123456789012/inputs/*"
        );
        assert_eq!(doc["Statement"][2]["Effect"], "Deny");

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
        // The minion's container gets no secret: the credential sidecar alone does, and
        // the minion starts after it.
        assert!(minion.secrets().is_empty());
        assert_eq!(minion.depends_on()[0].container_name(), "sidecar");
        let sidecar = &td.container_definitions()[1];
        assert_eq!(sidecar.name(), Some("sidecar"));
        assert_eq!(sidecar.image(), minion.image());
        assert_eq!(
            sidecar.entry_point(),
            ["/usr/local/bin/lackey".to_string(), "proxy".to_string()]
        );
        let secrets: Vec<(&str, &str)> = sidecar
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
                r#"{"Statement":[
                {"Resource":["arn:aws:s3:::lackey-artifacts-123456789012/lackey-doctor/*","arn:aws:s3:::lackey-artifacts-123456789012/inputs/*","arn:aws:s3:::lackey-artifacts-123456789012/runs/*","arn:aws:s3:::lackey-artifacts-123456789012/fleets/*"],"Effect":"Deny","Action":["s3:AbortMultipartUpload","s3:PutObject"],"Sid":"NeverTheHostsAreas"},
                {"Sid":"ReadInputs","Resource":"arn:aws:s3:::lackey-artifacts-123456789012/inputs/*","Effect":"Allow","Action":["s3:GetObject","s3:GetObject"]},
                {"Action":["s3:AbortMultipartUpload","s3:PutObject"],"Effect":"Allow","Resource":["arn:aws:s3:::lackey-artifacts-123456789012/*"],"Sid":"WriteArtifacts"}
              ],"Version":"2012-10-17"}"#,
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

// ------------------------------------------------------------------ exit codes

/// 0 success, 1 every failure (bad input, AWS unreachable, no credentials, the AWS
/// endpoint dying mid-`up`), 2 only for `plan --detailed-exitcode` with changes
/// pending, 130 interrupted: a CI script can tell an outage from a diff.
#[test]
fn exit_codes_tell_an_outage_from_a_diff() {
    let Some(s) = Stack::new() else { return };
    // Changes pending, then none.
    s.t.run(&["plan", "--detailed-exitcode"]).assert_code(2);
    s.t.run(&["plan"]).assert_code(0);
    s.json(&["up"]);
    s.t.run(&["plan", "--detailed-exitcode"]).assert_code(0);

    // AWS unreachable.
    let mut t = TestEnv::new();
    t.set("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .set("AWS_REGION", "us-east-1")
        .set("AWS_MAX_ATTEMPTS", "1");
    t.write(
        "lackey.toml",
        "[aws]\nregion = \"us-east-1\"\naccount_id = \"123456789012\"\n",
    );
    let out = t.run(&["plan", "--detailed-exitcode"]);
    out.assert_code(1);
    assert!(out.stderr.starts_with("error: "), "{}", out.stderr);

    // No credentials anywhere.
    let mut t = TestEnv::new();
    t.set("AWS_ENDPOINT_URL", s.moto.url())
        .set("AWS_REGION", "us-east-1")
        .set("AWS_MAX_ATTEMPTS", "1")
        .set("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials");
    let out = t.run(&["plan", "--detailed-exitcode"]);
    out.assert_code(1);
    assert!(out.stderr.starts_with("error: "), "{}", out.stderr);

    // Interrupted (Ctrl-C) while a request is held.
    s.json(&["down", "--yes", "--force"]);
    s.moto.reset_requests();
    s.moto.hang_after(3);
    let child =
        s.t.command(&["up"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
    let start = Instant::now();
    while s.moto.requests().len() < 3 && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(150));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = crate::support::wait_with_timeout(child, Duration::from_secs(60));
    s.moto.release();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The AWS endpoint dies in the middle of `up`: a failure (1), never 2.
#[test]
fn moto_killed_mid_up_exits_one() {
    let Some(moto) = Moto::start() else { return };
    let mut t = TestEnv::new();
    t.with_moto(&moto).set("AWS_MAX_ATTEMPTS", "2");
    t.write(
        "lackey.toml",
        "[aws]\nregion = \"us-east-1\"\naccount_id = \"123456789012\"\n",
    );
    moto.hang_after(8);
    let child = t
        .command(&["up"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while moto.requests().len() < 8 && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(150));
    drop(moto);
    let out = crate::support::wait_with_timeout(child, Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("could not reach AWS"), "{stderr}");
}

// ------------------------------------------------------------------ two stacks

/// Every default name derives from the stack's name, so a second stack in the account
/// builds its own resources; a stack whose names another stack holds is refused, naming
/// the owner, in plan, up and down, and doctor does not call them healthy.
#[test]
fn two_stacks_in_one_account_never_share_a_resource() {
    let Some(mut s) = Stack::new() else { return };
    s.json(&["up"]);
    s.t.set("LACKEY_STACK", "stackb");
    let plan = s.json(&["plan"]);
    let names: Vec<String> = ALL
        .iter()
        // The inline policies' names are per role, so they need no stack prefix.
        .map(|r| {
            format!("create {}", r.replace("lackey", "stackb"))
                .replace("stackb-secrets", "lackey-secrets")
                .replace("stackb-s3-artifacts", "lackey-s3-artifacts")
        })
        .collect();
    assert_eq!(Stack::actions(&plan), names);
    let up = s.t.run(&["up", "--json"]);
    up.assert_success();
    s.converged();
    s.t.unset("LACKEY_STACK");
    s.converged();

    // stackb pointed at stack `lackey`'s names (as a lackey.toml from before names
    // derived from the stack would): refused, naming the owner.
    let mut b = TestEnv::new();
    b.with_moto(&s.moto).set("AWS_MAX_ATTEMPTS", "10");
    b.write(
        "lackey.toml",
        "[aws]\nregion = \"us-east-1\"\naccount_id = \"123456789012\"\n[stack]\nname = \"stackb\"\n[ecs]\ncluster = \"lackey\"\n[logs]\ngroup = \"/ecs/lackey-minion\"\n",
    );
    s.moto.reset_requests();
    for cmd in [
        &["plan", "--detailed-exitcode"][..],
        &["up"][..],
        &["up", "--adopt"][..],
        &["down", "--yes", "--force"][..],
    ] {
        let out = b.run(cmd);
        out.assert_code(1);
        assert_eq!(out.stdout, "", "lackey {cmd:?}");
        snapshot_filters(&[]).bind(|| {
            insta::assert_snapshot!("another_stacks_resources", out.stderr);
        });
    }
    assert_eq!(s.mutating_requests(), Vec::<String>::new());
    // doctor does not judge stack `lackey`'s cluster and log group healthy for stackb.
    let out = b.run(&["doctor", "--phase", "infra", "--json"]);
    out.assert_code(1);
    let checks = out.json()["checks"].as_array().unwrap().clone();
    let detail = |name: &str| -> (String, String) {
        let c = checks.iter().find(|c| c["name"] == name).unwrap();
        (
            c["status"].as_str().unwrap().to_string(),
            c["detail"].as_str().unwrap().to_string(),
        )
    };
    assert_eq!(
        detail("cluster"),
        (
            "fail".to_string(),
            "ECS cluster `lackey` belongs to lackey stack `lackey`, not to this stack".to_string()
        )
    );
    assert_eq!(
        detail("log-group"),
        (
            "fail".to_string(),
            "log group `/ecs/lackey-minion` belongs to lackey stack `lackey`, not to this stack"
                .to_string()
        )
    );
    // Both stacks are intact.
    s.converged();
    b.write(
        "lackey.toml",
        "[aws]\nregion = \"us-east-1\"\naccount_id = \"123456789012\"\n[stack]\nname = \"stackb\"\n",
    );
    let out = b.run(&["plan", "--detailed-exitcode"]);
    out.assert_code(0);

    // Deleting stackb leaves stack `lackey` whole.
    let out = b.run(&["down", "--yes", "--force", "--json"]);
    out.assert_success();
    assert_eq!(out.json()["summary"]["delete"], 12);
    s.converged();
}

/// Remove lackey's tags from every resource of stack `lackey`, as if it had been made
/// by hand under the default names.
fn strip_tags(moto: &Moto) {
    let conf = moto.sdk_config();
    block_on(async {
        let keys = ["lackey:stack", "managed-by"];
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&conf)
                .force_path_style(true)
                .build(),
        );
        s3.delete_bucket_tagging()
            .bucket("lackey-artifacts-123456789012")
            .send()
            .await
            .unwrap();
        let arn = |svc: &str, what: &str| format!("arn:aws:{svc}:us-east-1:123456789012:{what}");
        aws_sdk_ecr::Client::new(&conf)
            .untag_resource()
            .resource_arn(arn("ecr", "repository/lackey-minion"))
            .set_tag_keys(Some(keys.map(String::from).to_vec()))
            .send()
            .await
            .unwrap();
        let ecs = aws_sdk_ecs::Client::new(&conf);
        let td = ecs
            .describe_task_definition()
            .task_definition("lackey-minion")
            .send()
            .await
            .unwrap();
        for a in [
            arn("ecs", "cluster/lackey"),
            td.task_definition()
                .unwrap()
                .task_definition_arn()
                .unwrap()
                .to_string(),
        ] {
            ecs.untag_resource()
                .resource_arn(a)
                .set_tag_keys(Some(keys.map(String::from).to_vec()))
                .send()
                .await
                .unwrap();
        }
        #[allow(deprecated)]
        aws_sdk_cloudwatchlogs::Client::new(&conf)
            .untag_log_group()
            .log_group_name("/ecs/lackey-minion")
            .set_tags(Some(keys.map(String::from).to_vec()))
            .send()
            .await
            .unwrap();
        let iam = aws_sdk_iam::Client::new(&conf);
        for role in ["lackey-ecs-execution", "lackey-ecs-task"] {
            iam.untag_role()
                .role_name(role)
                .set_tag_keys(Some(keys.map(String::from).to_vec()))
                .send()
                .await
                .unwrap();
        }
        let ec2 = aws_sdk_ec2::Client::new(&conf);
        let sg = crate::support::moto::lackey_security_groups(&ec2).await[0]
            .group_id()
            .unwrap()
            .to_string();
        ec2.delete_tags()
            .resources(sg)
            .set_tags(Some(
                keys.iter()
                    .map(|k| aws_sdk_ec2::types::Tag::builder().key(*k).build())
                    .collect(),
            ))
            .send()
            .await
            .unwrap();
        let sm = aws_sdk_secretsmanager::Client::new(&conf);
        for name in ["lackey/github-app-key", "lackey/anthropic-api-key"] {
            sm.untag_resource()
                .secret_id(name)
                .set_tag_keys(Some(keys.map(String::from).to_vec()))
                .send()
                .await
                .unwrap();
        }
    });
}

/// A stack made by hand (every resource there, none tagged): `up` says so and exits 1
/// without touching anything; `up --adopt` takes it over.
#[test]
fn up_on_a_stack_where_every_resource_is_unowned_says_so() {
    let Some(s) = Stack::new() else { return };
    s.json(&["up"]);
    strip_tags(&s.moto);
    let plan = s.json(&["plan"]);
    assert!(
        Stack::actions(&plan)
            .iter()
            .all(|a| a.starts_with("unowned ")),
        "{:?}",
        Stack::actions(&plan)
    );
    s.moto.reset_requests();
    let up = s.t.run(&["up"]);
    up.assert_code(1);
    snapshot_filters(&[]).bind(|| insta::assert_snapshot!("up_every_resource_unowned", up.stderr));
    assert_eq!(s.mutating_requests(), Vec::<String>::new());
    let adopt = s.t.run(&["up", "--adopt", "--json"]);
    adopt.assert_success();
    s.converged();
}

// ------------------------------------------------------------------ tasks of others

fn run_task(moto: &Moto, started_by: &str) -> String {
    let conf = moto.sdk_config();
    block_on(async {
        let ecs = aws_sdk_ecs::Client::new(&conf);
        let ec2 = aws_sdk_ec2::Client::new(&conf);
        let subnet = ec2.describe_subnets().send().await.unwrap().subnets()[0]
            .subnet_id()
            .unwrap()
            .to_string();
        let sg = crate::support::moto::lackey_security_groups(&ec2).await[0]
            .group_id()
            .unwrap()
            .to_string();
        let out = ecs
            .run_task()
            .cluster("lackey")
            .task_definition("lackey-minion")
            .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
            .started_by(started_by)
            .network_configuration(
                aws_sdk_ecs::types::NetworkConfiguration::builder()
                    .awsvpc_configuration(
                        aws_sdk_ecs::types::AwsVpcConfiguration::builder()
                            .subnets(&subnet)
                            .security_groups(&sg)
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .send()
            .await
            .unwrap();
        out.tasks()[0].task_arn().unwrap().to_string()
    })
}

/// `down` while someone else runs a task in the cluster: it refuses, naming the task,
/// and changes nothing; the stack's own tasks are stopped when only they run.
#[test]
fn down_refuses_while_another_party_runs_a_task_in_the_cluster() {
    let Some(s) = Stack::new() else { return };
    s.json(&["up"]);
    let theirs = run_task(&s.moto, "someone-else");
    let ours = run_task(&s.moto, "lackey:lackey");
    s.moto.reset_requests();
    let down = s.t.run(&["down", "--yes", "--force"]);
    down.assert_code(1);
    let id = theirs.rsplit('/').next().unwrap();
    snapshot_filters(&[(id, "[TASK_ID]")])
        .bind(|| insta::assert_snapshot!("down_refuses_foreign_tasks", down.stderr));
    assert_eq!(s.mutating_requests(), Vec::<String>::new());
    s.converged();

    let conf = s.moto.sdk_config();
    block_on(async {
        aws_sdk_ecs::Client::new(&conf)
            .stop_task()
            .cluster("lackey")
            .task(&theirs)
            .send()
            .await
            .unwrap();
    });
    s.moto.reset_requests();
    let down = s.t.run(&["down", "--yes", "--force", "--json"]);
    down.assert_success();
    assert_eq!(down.json()["summary"]["delete"], 12);
    let stopped: Vec<String> = s
        .moto
        .requests()
        .into_iter()
        .filter(|r| r.action == "StopTask")
        .map(|r| r.status.to_string())
        .collect();
    assert_eq!(stopped, ["200"], "only the stack's own task is stopped");
    block_on(async {
        let t = aws_sdk_ecs::Client::new(&conf)
            .describe_tasks()
            .cluster("lackey")
            .tasks(&ours)
            .send()
            .await
            .unwrap();
        let status = t
            .tasks()
            .first()
            .and_then(|t| t.desired_status().map(str::to_string));
        assert_eq!(status.as_deref(), Some("STOPPED"));
    });
}

// ------------------------------------------------------------------ interrupted bucket

/// Kill -9 `up` at every one of its requests, twice: the next `up` runs on another
/// machine (a state directory of its own), then on the same one. It must converge
/// (every resource present, one security group, one active task definition revision),
/// with the bucket tagged and its creation marker gone, and `down --force` must then
/// delete all twelve resources, keeping none.
#[test]
fn up_killed_at_every_request_converges_from_any_machine() {
    let Some(mut s) = Stack::new() else { return };
    let conf = s.moto.sdk_config();
    s.moto.reset_requests();
    s.json(&["up"]);
    let total = s.moto.requests().len();
    s.json(&["down", "--yes", "--force"]);
    let first_state = s.t.path().join("state-a");
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    );
    // Kills that left the bucket made but untagged, per recovery machine.
    let mut untagged_recovered = [0usize; 2];
    for (point, other_machine) in (0..total)
        .map(|p| (p, true))
        .chain((0..total).map(|p| (p, false)))
    {
        // moto keeps a deleted bucket's tags for the next bucket of that name (AWS does
        // not), so every attempt gets a bucket name of its own.
        let bucket = format!(
            "lackey-artifacts-123456789012-{point}-{}",
            other_machine as u8
        );
        s.t.set("LACKEY_ARTIFACT_BUCKET", bucket.clone());
        s.t.set("XDG_STATE_HOME", first_state.display().to_string());
        s.moto.reset_requests();
        s.moto.hang_after(point);
        let mut child =
            s.t.command(&["up", "-q"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
        let start = Instant::now();
        while s.moto.requests().len() < point && start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(100));
        child.kill().unwrap();
        let _ = child.wait();
        s.moto.release();
        let untagged = block_on(async {
            match s3.get_bucket_tagging().bucket(&bucket).send().await {
                Ok(t) => t.tag_set().is_empty(),
                Err(e) => e.into_service_error().meta().code() == Some("NoSuchTagSet"),
            }
        });
        if untagged {
            untagged_recovered[other_machine as usize] += 1;
        }
        if other_machine {
            let dir = s.t.path().join(format!("state-b-{point}"));
            s.t.set("XDG_STATE_HOME", dir.display().to_string());
        }
        let up = s.t.run(&["up", "--json"]);
        assert_eq!(
            up.code, 0,
            "up after a kill at request {point} (other machine: {other_machine}) failed:\n{}",
            up.stderr
        );
        s.converged();
        block_on(async {
            let s3 = aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(&conf)
                    .force_path_style(true)
                    .build(),
            );
            let tags = s3
                .get_bucket_tagging()
                .bucket(&bucket)
                .send()
                .await
                .unwrap();
            assert!(
                tags.tag_set()
                    .iter()
                    .any(|t| t.key() == "lackey:stack" && t.value() == "lackey"),
                "bucket untagged after a kill at {point}"
            );
            let own = s3
                .get_bucket_ownership_controls()
                .bucket(&bucket)
                .send()
                .await
                .unwrap();
            assert_eq!(
                own.ownership_controls().unwrap().rules()[0]
                    .object_ownership()
                    .as_str(),
                "BucketOwnerEnforced",
                "creation marker left after a kill at {point}"
            );
        });
        block_on(async {
            let ec2 = aws_sdk_ec2::Client::new(&conf);
            let sgs = crate::support::moto::lackey_security_groups(&ec2).await;
            assert_eq!(
                sgs.len(),
                1,
                "duplicate security groups after a kill at {point}"
            );
            let tds = aws_sdk_ecs::Client::new(&conf)
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
        let down = s.t.run(&["down", "--yes", "--force", "--json"]);
        assert_eq!(down.code, 0, "{}", down.stderr);
        let v = down.json();
        let changed = Stack::changed(&v);
        assert!(
            changed.len() == 12 && changed.iter().all(|c| c.starts_with("delete ")),
            "down after a kill at {point} kept something: {changed:?}"
        );
        assert_eq!(v["summary"]["delete"], 12);
    }
    assert!(
        untagged_recovered[0] > 0 && untagged_recovered[1] > 0,
        "no kill left an untagged bucket for each kind of recovery: {untagged_recovered:?}"
    );
}

/// A bucket someone made by hand under the stack's name is not mistaken for one an
/// interrupted `up` left: without lackey's creation marker it stays unowned.
#[test]
fn a_hand_made_empty_bucket_is_not_taken_for_an_interrupted_one() {
    let Some(s) = Stack::new() else { return };
    let conf = s.moto.sdk_config();
    block_on(async {
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&conf)
                .force_path_style(true)
                .build(),
        )
        .create_bucket()
        .bucket("lackey-artifacts-123456789012")
        .send()
        .await
        .unwrap();
    });
    let plan = s.json(&["plan"]);
    assert_eq!(plan["changes"][0]["action"], "unowned");
    let down = s.t.run(&["down", "--yes", "--force"]);
    down.assert_success();
    assert!(
        down.stdout.contains("Deleted: 0 resources, kept 1"),
        "{}",
        down.stdout
    );
}
