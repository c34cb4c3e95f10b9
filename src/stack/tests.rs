//! The pure core of the stack: plans from observations, the diffs, `normalize`.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::resource::{self, Node, Slot};
use super::*;
use crate::image::CpuArch;

pub(crate) fn spec() -> StackSpec {
    StackSpec {
        stack: "lackey".into(),
        account: "123456789012".into(),
        region: "us-east-1".into(),
        partition: "aws".into(),
        bucket: "lackey-artifacts-123456789012".into(),
        ecr_repository: "lackey-minion".into(),
        registry: "123456789012.dkr.ecr.us-east-1.amazonaws.com".into(),
        cluster: "lackey".into(),
        log_group: "/ecs/lackey-minion".into(),
        retention_days: None,
        execution_role: "lackey-ecs-execution".into(),
        task_role: "lackey-ecs-task".into(),
        security_group: "lackey-ecs-tasks".into(),
        secrets: vec![
            ("github_app_key", "lackey/github-app-key".into()),
            ("anthropic_api_key", "lackey/anthropic-api-key".into()),
        ],
        task_family: "lackey-minion".into(),
        cpu: 1024,
        memory: 4096,
        cpu_architecture: CpuArch::X86_64,
        github_app: false,
    }
}

fn tags(stack: Option<&str>) -> BTreeMap<String, String> {
    stack
        .map(|s| {
            BTreeMap::from([
                (TAG_STACK.to_string(), s.to_string()),
                (TAG_MANAGED.to_string(), "lackey".to_string()),
            ])
        })
        .unwrap_or_default()
}

fn seen<T>(stack: Option<&str>, state: T) -> Option<Seen<T>> {
    Some(Seen::new("lackey", tags(stack), state))
}

fn secret_arn(name: &str) -> String {
    format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}-AbCdEf")
}

/// The task definition as AWS describes one `up` registered: what lackey wrote plus
/// the defaults AWS fills in, lists in AWS's order.
fn described_task_definition(spec: &StackSpec) -> Value {
    let arns = BTreeMap::from([
        ("github_app_key", secret_arn("lackey/github-app-key")),
        ("anthropic_api_key", secret_arn("lackey/anthropic-api-key")),
    ]);
    let mut td = task_definition::desired(spec, &arns);
    for c in td["containerDefinitions"].as_array_mut().unwrap() {
        c["cpu"] = json!(0);
        c["essential"] = json!(true);
        c["environment"] = json!([]);
        c["portMappings"] = json!([]);
        c["memory"] = Value::Null;
        c["user"] = Value::Null;
    }
    td["volumes"] = json!([]);
    td["ephemeralStorage"] = Value::Null;
    td
}

/// An observation of the whole stack, each resource as given (`None`: absent).
struct World {
    bucket: Option<Seen<bucket::Have>>,
    ecr: Option<Seen<ecr::Have>>,
    cluster: Option<Seen<cluster::Have>>,
    logs: Option<Seen<log_group::Have>>,
    exec: Option<Seen<roles::Have>>,
    task: Option<Seen<roles::Have>>,
    sg: Option<Seen<security_group::Have>>,
    secrets: Vec<Option<Seen<secrets::Have>>>,
    td: Option<Seen<task_definition::Have>>,
}

impl World {
    fn empty() -> World {
        World {
            bucket: None,
            ecr: None,
            cluster: None,
            logs: None,
            exec: None,
            task: None,
            sg: None,
            secrets: vec![None, None],
            td: None,
        }
    }

    /// Everything as `up` leaves it.
    fn converged(spec: &StackSpec) -> World {
        let role = |policy: String, attached: Vec<String>| roles::Have {
            trust: roles::trust_policy(),
            attached,
            policy: Some(policy),
        };
        World {
            bucket: seen(Some("lackey"), bucket::Have { marked: false }),
            ecr: seen(
                Some("lackey"),
                ecr::Have {
                    mutability: "MUTABLE".into(),
                },
            ),
            cluster: seen(Some("lackey"), cluster::Have { tasks: None }),
            logs: seen(
                Some("lackey"),
                log_group::Have {
                    retention_days: None,
                },
            ),
            exec: seen(
                Some("lackey"),
                role(
                    roles::execution_policy(spec),
                    vec![spec.execution_policy_arn()],
                ),
            ),
            task: seen(Some("lackey"), role(roles::task_policy(spec), vec![])),
            sg: seen(
                Some("lackey"),
                security_group::Have {
                    id: "sg-1".into(),
                    ingress: vec![],
                },
            ),
            secrets: spec
                .secrets
                .iter()
                .map(|(_, n)| {
                    seen(
                        Some("lackey"),
                        secrets::Have {
                            arn: secret_arn(n),
                            has_value: true,
                            scheduled_for_deletion: false,
                        },
                    )
                })
                .collect(),
            td: seen(
                Some("lackey"),
                task_definition::Have {
                    arn: "arn:aws:ecs:us-east-1:123456789012:task-definition/lackey-minion:1"
                        .into(),
                    json: described_task_definition(spec),
                },
            ),
        }
    }

    fn nodes(self, spec: &StackSpec) -> Vec<Box<dyn Node>> {
        let mut all: Vec<Box<dyn Node>> = vec![
            Box::new(Slot::seen(bucket::Bucket::new(spec), self.bucket)),
            Box::new(Slot::seen(ecr::Repository::new(spec), self.ecr)),
            Box::new(Slot::seen(cluster::Cluster::new(spec), self.cluster)),
            Box::new(Slot::seen(log_group::LogGroup::new(spec), self.logs)),
            Box::new(Slot::seen(roles::Role::execution(spec), self.exec)),
            Box::new(Slot::seen(roles::Role::task(spec), self.task)),
            Box::new(Slot::seen(
                security_group::SecurityGroup::new(spec),
                self.sg,
            )),
        ];
        for (s, seen) in secrets::Secret::all(spec).into_iter().zip(self.secrets) {
            all.push(Box::new(Slot::seen(s, seen)));
        }
        all.push(Box::new(Slot::seen(
            task_definition::TaskDefinitionFamily::new(spec),
            self.td,
        )));
        all
    }

    fn plan(self, spec: &StackSpec, adopt: bool) -> Vec<Change> {
        resource::plan(spec, &self.nodes(spec), adopt)
    }
}

/// `action kind name`, one per change.
fn lines(changes: &[Change]) -> Vec<String> {
    changes
        .iter()
        .map(|c| {
            format!(
                "{} {} {}",
                serde_json::to_value(c.action).unwrap().as_str().unwrap(),
                c.kind.as_str(),
                c.name
            )
        })
        .collect()
}

fn changed(changes: &[Change]) -> Vec<String> {
    lines(changes)
        .into_iter()
        .filter(|l| !l.starts_with("noop"))
        .collect()
}

fn find(changes: &[Change], kind: Kind) -> &Change {
    changes.iter().find(|c| c.kind == kind).unwrap()
}

#[test]
fn an_empty_account_plans_every_resource_in_order() {
    let spec = spec();
    let plan = World::empty().plan(&spec, false);
    assert_eq!(
        lines(&plan),
        [
            "create s3_bucket lackey-artifacts-123456789012",
            "create ecr_repository lackey-minion",
            "create ecs_cluster lackey",
            "create log_group /ecs/lackey-minion",
            "create iam_role lackey-ecs-execution",
            "create iam_role_policy lackey-ecs-execution/lackey-secrets",
            "create iam_role lackey-ecs-task",
            "create iam_role_policy lackey-ecs-task/lackey-s3-artifacts",
            "create security_group lackey-ecs-tasks",
            "create secret lackey/github-app-key",
            "create secret lackey/anthropic-api-key",
            "create task_definition lackey-minion",
        ]
    );
    let secret = find(&plan, Kind::Secret);
    assert_eq!(
        secret.notes,
        ["created without a value: then run `lackey secret put lackey/github-app-key`"]
    );
}

#[test]
fn a_converged_stack_plans_nothing_despite_aws_filled_defaults() {
    let spec = spec();
    let plan = World::converged(&spec).plan(&spec, false);
    assert_eq!(changed(&plan), Vec::<String>::new());
    assert!(plan.iter().all(|c| c.diff.is_empty() && c.notes.is_empty()));
}

#[test]
fn a_policy_iam_returns_encoded_and_reordered_is_no_change() {
    let spec = spec();
    // The wanted document with its statements, lists and keys in another order,
    // URL-encoded as IAM returns it.
    let mut reordered: Value = serde_json::from_str(&roles::task_policy(&spec)).unwrap();
    let statements = reordered["Statement"].as_array_mut().unwrap();
    statements.reverse();
    for st in statements.iter_mut() {
        if let Value::Array(a) = &mut st["Action"] {
            a.reverse();
        }
    }
    let encoded = percent_encoding::utf8_percent_encode(
        &reordered.to_string(),
        percent_encoding::NON_ALPHANUMERIC,
    )
    .to_string();
    let mut w = World::converged(&spec);
    w.task.as_mut().unwrap().state.policy = Some(encoded);
    assert_eq!(changed(&w.plan(&spec, false)), Vec::<String>::new());

    // Statements fewer is a change, shown as the canonical documents.
    let mut fewer: Value = serde_json::from_str(&roles::task_policy(&spec)).unwrap();
    fewer["Statement"] = json!([fewer["Statement"][1].clone()]);
    let mut w = World::converged(&spec);
    w.task.as_mut().unwrap().state.policy = Some(fewer.to_string());
    let plan = w.plan(&spec, false);
    assert_eq!(
        changed(&plan),
        ["update iam_role_policy lackey-ecs-task/lackey-s3-artifacts"]
    );
    let c = &plan[7];
    assert_eq!(c.diff.len(), 1);
    assert_eq!(c.diff[0].field, "document");
    assert_eq!(
        c.diff[0].old["Statement"][0]["Action"],
        json!(["s3:GetObject"])
    );
    assert_eq!(
        c.diff[0].new,
        policy::canonical(&roles::task_policy(&spec)).unwrap()
    );
}

#[test]
fn a_missing_inline_policy_is_created_on_an_existing_role() {
    let spec = spec();
    let mut w = World::converged(&spec);
    w.exec.as_mut().unwrap().state.policy = None;
    assert_eq!(
        changed(&w.plan(&spec, false)),
        ["create iam_role_policy lackey-ecs-execution/lackey-secrets"]
    );
}

#[test]
fn role_drift_is_shown_field_by_field() {
    let spec = spec();
    let mut w = World::converged(&spec);
    let exec = &mut w.exec.as_mut().unwrap().state;
    exec.attached = vec![];
    exec.trust =
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#.into();
    let plan = w.plan(&spec, false);
    let role = &plan[4];
    assert_eq!(role.action, Action::Update);
    assert_eq!(
        role.diff
            .iter()
            .map(|d| d.field.as_str())
            .collect::<Vec<_>>(),
        ["trust_policy", "attached_policies"]
    );
    assert_eq!(role.diff[1].new, json!([spec.execution_policy_arn()]));
}

#[test]
fn tag_drift_untagged_resources_are_unowned_until_adopted() {
    let spec = spec();
    let untag = |w: &mut World| {
        w.ecr.as_mut().unwrap().tags.clear();
        w.ecr.as_mut().unwrap().owner = Owner::Nobody;
        w.exec.as_mut().unwrap().tags.clear();
        w.exec.as_mut().unwrap().owner = Owner::Nobody;
    };
    let mut w = World::converged(&spec);
    untag(&mut w);
    let plan = w.plan(&spec, false);
    assert_eq!(
        changed(&plan),
        [
            "unowned ecr_repository lackey-minion",
            "unowned iam_role lackey-ecs-execution",
            "unowned iam_role_policy lackey-ecs-execution/lackey-secrets",
        ]
    );
    assert_eq!(
        find(&plan, Kind::EcrRepository).notes,
        ["exists without lackey's tags; left alone (`lackey up --adopt` takes it over)"]
    );
    assert_eq!(
        plan[5].notes,
        ["belongs to the unowned role `lackey-ecs-execution`"]
    );

    let mut w = World::converged(&spec);
    untag(&mut w);
    let plan = w.plan(&spec, true);
    assert_eq!(
        changed(&plan),
        [
            "update ecr_repository lackey-minion",
            "update iam_role lackey-ecs-execution",
        ]
    );
    let tags = &find(&plan, Kind::EcrRepository).diff[0];
    assert_eq!(
        (tags.field.as_str(), &tags.old, &tags.new),
        (
            "tags",
            &json!("(none)"),
            &json!("lackey:stack, managed-by=lackey")
        )
    );
}

#[test]
fn a_bucket_proved_ours_without_tags_gets_them_and_loses_its_marker() {
    let spec = spec();
    let mut w = World::converged(&spec);
    let b = w.bucket.as_mut().unwrap();
    b.tags.clear();
    b.state.marked = true;
    // What observation decides for an untagged, marked, empty bucket of this account.
    b.owner = Owner::Us;
    let plan = w.plan(&spec, false);
    let c = find(&plan, Kind::S3Bucket);
    assert_eq!(c.action, Action::Update);
    assert_eq!(
        c.diff.iter().map(|d| d.field.as_str()).collect::<Vec<_>>(),
        ["tags", "object_ownership"]
    );
}

#[test]
fn another_stacks_resource_is_refused_naming_it() {
    let spec = spec();
    let mut w = World::converged(&spec);
    w.logs = seen(
        Some("other"),
        log_group::Have {
            retention_days: None,
        },
    );
    w.bucket.as_mut().unwrap().owner = Owner::OtherAccount;
    let nodes = w.nodes(&spec);
    let err = resource::refuse_foreign(&spec, &nodes).unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("uses 2 resource name(s) held by another owner")
            && text.contains(
                "s3_bucket `lackey-artifacts-123456789012` belongs to another AWS account"
            )
            && text.contains("log_group `/ecs/lackey-minion` belongs to lackey stack `other`"),
        "{text}"
    );
    // The plan says so too, should it ever be shown.
    let plan = resource::plan(&spec, &nodes, true);
    assert_eq!(
        find(&plan, Kind::LogGroup).notes,
        ["belongs to lackey stack `other`; left alone"]
    );
}

#[test]
fn secrets_without_a_value_or_scheduled_for_deletion() {
    let spec = spec();
    let mut w = World::converged(&spec);
    w.secrets[0].as_mut().unwrap().state.has_value = false;
    w.secrets[1].as_mut().unwrap().state.scheduled_for_deletion = true;
    let plan = w.plan(&spec, false);
    assert_eq!(changed(&plan), ["update secret lackey/anthropic-api-key"]);
    assert_eq!(
        plan[9].notes,
        ["has no value yet: run `lackey secret put lackey/github-app-key`"]
    );
    assert_eq!(
        (plan[10].diff[0].field.as_str(), &plan[10].diff[0].new),
        ("deletion", &json!("restored"))
    );
}

#[test]
fn a_task_definition_diff_names_each_field_and_waits_for_unknown_arns() {
    let spec = spec();
    // A new image and a new size show as two fields.
    let mut w = World::converged(&spec);
    let json = &mut w.td.as_mut().unwrap().state.json;
    json["containerDefinitions"][0]["image"] = json!("elsewhere/minion:latest");
    json["memory"] = json!("8192");
    let plan = w.plan(&spec, false);
    let td = find(&plan, Kind::TaskDefinition);
    assert_eq!(td.action, Action::Update);
    assert_eq!(
        td.diff.iter().map(|d| d.field.as_str()).collect::<Vec<_>>(),
        ["containerDefinitions[minion].image", "memory"]
    );

    // Secrets not created yet: their ARNs are unknown until apply, and say so.
    let mut w = World::converged(&spec);
    w.secrets = vec![None, None];
    let plan = w.plan(&spec, false);
    let td = find(&plan, Kind::TaskDefinition);
    assert_eq!(
        td.diff
            .iter()
            .map(|d| (d.field.as_str(), d.new.clone()))
            .collect::<Vec<_>>(),
        [(
            "containerDefinitions[sidecar].secrets",
            json!([{"name": "ANTHROPIC_API_KEY", "valueFrom": "(known after apply)"}])
        )]
    );
}

#[test]
fn normalize_drops_what_aws_fills_in_and_sorts_sets() {
    let have = json!({
        "family": "f",
        "requiresCompatibilities": ["FARGATE", "EC2"],
        "volumes": [],
        "ephemeralStorage": null,
        "containerDefinitions": [
            {"name": "b", "cpu": 0, "essential": true, "environment": [
                {"name": "Z", "value": "1"}, {"name": "A", "value": "2"}
            ], "portMappings": [], "user": null},
            {"name": "a", "cpu": 256, "essential": false, "secrets": [
                {"name": "S2", "valueFrom": "x"}, {"name": "S1", "valueFrom": "y"}
            ]}
        ]
    });
    assert_eq!(
        task_definition::normalize(&have),
        json!({
            "family": "f",
            "requiresCompatibilities": ["EC2", "FARGATE"],
            "containerDefinitions": [
                {"name": "a", "cpu": 256, "essential": false, "secrets": [
                    {"name": "S1", "valueFrom": "y"}, {"name": "S2", "valueFrom": "x"}
                ]},
                {"name": "b", "environment": [
                    {"name": "A", "value": "2"}, {"name": "Z", "value": "1"}
                ]}
            ]
        })
    );
}

#[test]
fn the_security_group_diff_names_each_inbound_rule() {
    use aws_sdk_ec2::types::{IpPermission, IpRange, UserIdGroupPair};
    let have = |ingress: Vec<IpPermission>| security_group::Have {
        id: "sg-1".into(),
        ingress,
    };
    assert!(security_group::diff(&have(vec![])).is_empty());
    let ssh = IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(22)
        .to_port(22)
        .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
        .build();
    let range = IpPermission::builder()
        .ip_protocol("udp")
        .from_port(1000)
        .to_port(2000)
        .user_id_group_pairs(UserIdGroupPair::builder().group_id("sg-2").build())
        .build();
    let all = IpPermission::builder().ip_protocol("-1").build();
    let d = security_group::diff(&have(vec![ssh, range, all]));
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].field, "ingress");
    assert_eq!(
        d[0].old,
        json!([
            "tcp/22 from 0.0.0.0/0",
            "udp/1000-2000 from sg-2",
            "-1/all from ?"
        ])
    );
    assert_eq!(d[0].new, json!([]));
}

#[test]
fn retention_is_managed_only_when_configured() {
    let mut spec = spec();
    let have = log_group::Have {
        retention_days: Some(7),
    };
    assert!(log_group::diff(&spec, &have).is_empty());
    spec.retention_days = Some(30);
    let d = log_group::diff(&spec, &have);
    assert_eq!(
        (d[0].field.as_str(), &d[0].old, &d[0].new),
        ("retention_days", &json!(7), &json!(30))
    );
}

#[test]
fn the_task_definition_needs_the_roles_and_the_secrets() {
    let spec = spec();
    let nodes = resources(&spec);
    let td = nodes.last().unwrap();
    let needs: Vec<String> = td
        .needs()
        .iter()
        .map(|id| format!("{} {}", id.kind.as_str(), id.name))
        .collect();
    assert_eq!(
        needs,
        [
            "iam_role lackey-ecs-execution",
            "iam_role lackey-ecs-task",
            "secret lackey/github-app-key",
            "secret lackey/anthropic-api-key",
        ]
    );
    // Each need comes before it in the list (the driver starts resources in order).
    for id in td.needs() {
        assert!(nodes.iter().any(|n| n.id() == id));
    }
}
