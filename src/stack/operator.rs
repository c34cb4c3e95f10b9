//! The operator policy: what the identity running lackey needs, and nothing more.
//!
//! One document covers every command that talks to AWS (`plan`, `up`, `down`,
//! `doctor`, `secret put`, `image push`, `run --cloud`, `runs`, `logs`, `stop`, fleets
//! and report uploads), each statement scoped to this stack's ARNs where AWS allows
//! resource-level permissions. `lackey policy` prints it; the integration tests run
//! the CLI as an IAM user holding exactly this document, under enforced IAM, and show
//! each statement is needed (docs/aws-behaviour.md).

use serde_json::Value;

use super::{policy, StackSpec};

const OPERATOR_POLICY: &str = include_str!("../../templates/operator-policy.json");

/// The actions that take no resource narrower than `*`, and why: README lists them.
pub const UNSCOPED: &[(&str, &str)] = &[
    (
        "ec2:Describe*",
        "EC2's Describe calls support no resource-level permissions",
    ),
    (
        "ecr:GetAuthorizationToken",
        "the registry login is account-wide, not per repository",
    ),
    (
        "ecs:RegisterTaskDefinition, DeregisterTaskDefinition, DescribeTaskDefinition, ListTaskDefinitions",
        "ECS supports no resource-level permissions on these",
    ),
    (
        "ecs:ListTasks",
        "authorised on container instances, which Fargate tasks have none of",
    ),
    (
        "logs:DescribeLogGroups",
        "authorised on every log group of the region, whatever the prefix asked",
    ),
];

/// The document, rendered for this stack.
pub fn operator_policy(spec: &StackSpec) -> String {
    policy::render(
        OPERATOR_POLICY,
        &[
            ("partition", &spec.partition),
            ("region", &spec.region),
            ("account", &spec.account),
            ("bucket", &spec.bucket),
            ("ecr_repository", &spec.ecr_repository),
            ("cluster", &spec.cluster),
            ("task_family", &spec.task_family),
            ("log_group", &spec.log_group),
            ("execution_role", &spec.execution_role),
            ("task_role", &spec.task_role),
            ("github_app_key_secret", spec.secret_name("github_app_key")),
            (
                "anthropic_api_key_secret",
                spec.secret_name("anthropic_api_key"),
            ),
        ],
    )
}

/// Statements and actions in a policy document (a single action counts one).
pub fn count(doc: &str) -> (usize, usize) {
    let Ok(v) = serde_json::from_str::<Value>(doc) else {
        return (0, 0);
    };
    let statements = match &v["Statement"] {
        Value::Array(a) => a.clone(),
        single => vec![single.clone()],
    };
    let actions = statements
        .iter()
        .map(|s| match &s["Action"] {
            Value::Array(a) => a.len(),
            Value::String(_) => 1,
            _ => 0,
        })
        .sum();
    (statements.len(), actions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::tests::spec;

    #[test]
    fn the_document_is_json_with_every_placeholder_filled() {
        let doc = operator_policy(&spec());
        assert!(!doc.contains("{{"), "{doc}");
        let v: Value = serde_json::from_str(&doc).unwrap();
        assert_eq!(v["Version"], "2012-10-17");
        let (statements, actions) = count(&doc);
        assert!(
            statements >= 10 && actions > statements,
            "{statements} {actions}"
        );
    }

    fn listed(v: &Value) -> Vec<String> {
        match v {
            Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            Value::String(s) => vec![s.clone()],
            _ => vec![],
        }
    }

    /// The statements granting `action`.
    fn granting(doc: &Value, action: &str) -> Vec<Value> {
        doc["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| listed(&s["Action"]).iter().any(|a| a == action))
            .cloned()
            .collect()
    }

    /// No stand-in evaluates the registry's data plane (the test registry checks no
    /// IAM), so the push and pull actions are checked here: each granted once, on the
    /// stack's repository alone.
    #[test]
    fn the_registry_data_plane_is_granted_on_the_repository_alone() {
        let s = spec();
        let doc: Value = serde_json::from_str(&operator_policy(&s)).unwrap();
        let repo = format!(
            "arn:aws:ecr:{}:{}:repository/{}",
            s.region, s.account, s.ecr_repository
        );
        for action in [
            "ecr:BatchCheckLayerAvailability",
            "ecr:InitiateLayerUpload",
            "ecr:UploadLayerPart",
            "ecr:CompleteLayerUpload",
            "ecr:PutImage",
            "ecr:BatchGetImage",
            "ecr:GetDownloadUrlForLayer",
        ] {
            let g = granting(&doc, action);
            assert_eq!(g.len(), 1, "{action}");
            assert_eq!(listed(&g[0]["Resource"]), vec![repo.clone()], "{action}");
        }
    }

    /// PassRole on the stack's two roles and nothing else (a broader PassRole lets the
    /// operator hand ECS any role of the account).
    #[test]
    fn pass_role_names_the_two_roles_alone() {
        let s = spec();
        let doc: Value = serde_json::from_str(&operator_policy(&s)).unwrap();
        let g = granting(&doc, "iam:PassRole");
        assert_eq!(g.len(), 1);
        let mut want = vec![s.role_arn(&s.execution_role), s.role_arn(&s.task_role)];
        want.sort();
        let mut have = listed(&g[0]["Resource"]);
        have.sort();
        assert_eq!(have, want);
        assert_eq!(listed(&g[0]["Action"]), vec!["iam:PassRole".to_string()]);
    }

    /// Only the `Unscopable` statement names `*`; every other one names this stack's
    /// resources (its account, and the names of the spec).
    #[test]
    fn every_scoped_statement_names_the_stacks_resources() {
        let s = spec();
        let v: Value = serde_json::from_str(&operator_policy(&s)).unwrap();
        for st in v["Statement"].as_array().unwrap() {
            let resources: Vec<String> = match &st["Resource"] {
                Value::Array(a) => a.iter().map(|r| r.as_str().unwrap().to_string()).collect(),
                r => vec![r.as_str().unwrap().to_string()],
            };
            if st["Sid"] == "Unscopable" {
                assert_eq!(resources, vec!["*".to_string()]);
                continue;
            }
            for r in resources {
                assert!(r.starts_with("arn:aws:"), "{r}");
                assert!(
                    r.contains(&s.account) || r.starts_with("arn:aws:s3:::"),
                    "{r}"
                );
                let named = [
                    &s.bucket,
                    &s.ecr_repository,
                    &s.cluster,
                    &s.task_family,
                    &s.log_group,
                    &s.execution_role,
                    &s.task_role,
                ]
                .iter()
                .any(|n| r.contains(n.as_str()))
                    || s.secrets.iter().any(|(_, n)| r.contains(n.as_str()))
                    || r.ends_with(":security-group/*")
                    || r.ends_with(":vpc/*");
                assert!(named, "{r} names none of the stack's resources");
            }
        }
    }
}
