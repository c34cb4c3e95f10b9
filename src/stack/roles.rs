//! The execution and task roles and their inline policies.
//!
//! Execution role: trust `ecs-tasks.amazonaws.com`, the managed
//! `AmazonECSTaskExecutionRolePolicy`, and inline `lackey-secrets` reading the two
//! secrets and nothing else. Task role: inline `lackey-s3-artifacts` on the bucket.
//! Policy documents are compared by meaning (`policy.rs`). `down` detaches managed
//! policies and deletes inline ones before deleting a role, as IAM requires.

use aws_sdk_iam::types::Tag;

use super::{policy, Action, Change, Deletion, FieldDiff, Seen, StackCtx, StackSpec};
use crate::aws::{error_code, AwsResultExt};

const TRUST: &str = include_str!("../../templates/trust-policy.json");
const TASK_POLICY: &str = include_str!("../../templates/task-role-policy.json");
const EXECUTION_POLICY: &str = include_str!("../../templates/execution-secrets-policy.json");

#[derive(Clone, Debug)]
pub struct Have {
    pub trust: String,
    pub attached: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct PolicyHave {
    pub document: String,
}

pub fn trust_policy() -> String {
    TRUST.to_string()
}

pub fn task_policy(spec: &StackSpec) -> String {
    policy::render(
        TASK_POLICY,
        &[("partition", &spec.partition), ("bucket", &spec.bucket)],
    )
}

pub fn execution_policy(spec: &StackSpec) -> String {
    policy::render(
        EXECUTION_POLICY,
        &[
            ("partition", &spec.partition),
            ("region", &spec.region),
            ("account", &spec.account),
            ("github_app_key_secret", spec.secret_name("github_app_key")),
            (
                "anthropic_api_key_secret",
                spec.secret_name("anthropic_api_key"),
            ),
        ],
    )
}

pub async fn observe(cx: &StackCtx<'_>, name: &str) -> anyhow::Result<Option<Seen<Have>>> {
    let iam = cx.aws.iam();
    let role = match iam.get_role().role_name(name).send().await {
        Ok(o) => o.role,
        Err(e) if error_code(&e) == Some("NoSuchEntity") => return Ok(None),
        Err(e) => return Err(e).aws(format!("failed to read IAM role `{name}`")),
    };
    let Some(role) = role else { return Ok(None) };
    let attached = iam
        .list_attached_role_policies()
        .role_name(name)
        .send()
        .await
        .aws(format!("failed to list the policies of IAM role `{name}`"))?;
    let mut attached: Vec<String> = attached
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn().map(str::to_string))
        .collect();
    attached.sort();
    let tags = super::tag_map(
        role.tags()
            .iter()
            .map(|t| (Some(t.key().to_string()), Some(t.value().to_string()))),
    );
    Ok(Some(Seen::new(
        &cx.spec.stack,
        tags,
        Have {
            trust: role
                .assume_role_policy_document()
                .unwrap_or_default()
                .to_string(),
            attached,
        },
    )))
}

pub async fn observe_policy(
    cx: &StackCtx<'_>,
    role: &str,
    name: &str,
) -> anyhow::Result<Option<PolicyHave>> {
    match cx
        .aws
        .iam()
        .get_role_policy()
        .role_name(role)
        .policy_name(name)
        .send()
        .await
    {
        Ok(o) => Ok(Some(PolicyHave {
            document: o.policy_document().to_string(),
        })),
        Err(e) if error_code(&e) == Some("NoSuchEntity") => Ok(None),
        Err(e) => Err(e).aws(format!(
            "failed to read inline policy `{name}` of IAM role `{role}`"
        )),
    }
}

pub fn diff(have: &Have, managed: &[String]) -> Vec<FieldDiff> {
    let mut d = Vec::new();
    if !policy::same(&have.trust, &trust_policy()) {
        d.push(FieldDiff::new(
            "trust_policy",
            policy::canonical(&have.trust).unwrap_or_default(),
            policy::canonical(&trust_policy()).unwrap_or_default(),
        ));
    }
    let mut want: Vec<String> = managed.to_vec();
    want.sort();
    if have.attached != want {
        d.push(FieldDiff::new(
            "attached_policies",
            have.attached.clone(),
            want,
        ));
    }
    d
}

fn tags(cx: &StackCtx) -> anyhow::Result<Vec<Tag>> {
    cx.spec
        .tags()
        .into_iter()
        .map(|(k, v)| Ok(Tag::builder().key(k).value(v).build()?))
        .collect()
}

/// Create or update a role to match: trust policy, managed policies, tags.
pub async fn apply(
    cx: &StackCtx<'_>,
    c: &Change,
    seen: Option<&Seen<Have>>,
    managed: &[String],
) -> anyhow::Result<()> {
    let name = &c.name;
    let iam = cx.aws.iam();
    let attached: Vec<String> = match (c.action, seen) {
        (Action::Create, _) => {
            match iam
                .create_role()
                .role_name(name)
                .assume_role_policy_document(trust_policy())
                .description(format!(
                    "lackey stack `{}`: ECS tasks of the minion",
                    cx.spec.stack
                ))
                .set_tags(Some(tags(cx)?))
                .send()
                .await
            {
                Ok(_) => {}
                // Created by an `up` that was interrupted before it could see the reply.
                Err(e) if error_code(&e) == Some("EntityAlreadyExists") => {}
                Err(e) => return Err(e).aws(format!("failed to create IAM role `{name}`")),
            }
            vec![]
        }
        (_, Some(s)) => {
            if c.diff.iter().any(|d| d.field == "trust_policy") {
                iam.update_assume_role_policy()
                    .role_name(name)
                    .policy_document(trust_policy())
                    .send()
                    .await
                    .aws(format!(
                        "failed to update the trust policy of IAM role `{name}`"
                    ))?;
            }
            if c.diff.iter().any(|d| d.field == "tags") {
                iam.tag_role()
                    .role_name(name)
                    .set_tags(Some(tags(cx)?))
                    .send()
                    .await
                    .aws(format!("failed to tag IAM role `{name}`"))?;
            }
            s.state.attached.clone()
        }
        _ => vec![],
    };
    for arn in managed.iter().filter(|a| !attached.contains(a)) {
        iam.attach_role_policy()
            .role_name(name)
            .policy_arn(arn)
            .send()
            .await
            .aws(format!("failed to attach `{arn}` to IAM role `{name}`"))?;
    }
    for arn in attached.iter().filter(|a| !managed.contains(a)) {
        iam.detach_role_policy()
            .role_name(name)
            .policy_arn(arn)
            .send()
            .await
            .aws(format!("failed to detach `{arn}` from IAM role `{name}`"))?;
    }
    Ok(())
}

pub async fn put_policy(
    cx: &StackCtx<'_>,
    role: &str,
    name: &str,
    document: &str,
) -> anyhow::Result<()> {
    cx.aws
        .iam()
        .put_role_policy()
        .role_name(role)
        .policy_name(name)
        .policy_document(document)
        .send()
        .await
        .aws(format!(
            "failed to write inline policy `{name}` of IAM role `{role}`"
        ))?;
    Ok(())
}

/// Delete a role: its inline and managed policies first. Returns what happened to the
/// role and to its lackey inline policy.
pub async fn delete(
    cx: &StackCtx<'_>,
    name: &str,
    seen: Option<&Seen<Have>>,
    policy_name: &str,
) -> anyhow::Result<(Deletion, Deletion)> {
    let Some(seen) = seen else {
        return Ok((Deletion::Absent, Deletion::Absent));
    };
    if let Some(d) = super::not_owned(&seen.owner) {
        return Ok((d.clone(), d));
    }
    let iam = cx.aws.iam();
    let inline = iam
        .list_role_policies()
        .role_name(name)
        .send()
        .await
        .aws(format!(
            "failed to list the inline policies of IAM role `{name}`"
        ))?;
    let mut policy = Deletion::Absent;
    for p in inline.policy_names() {
        match iam
            .delete_role_policy()
            .role_name(name)
            .policy_name(p)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if error_code(&e) == Some("NoSuchEntity") => {}
            Err(e) => {
                return Err(e).aws(format!(
                    "failed to delete inline policy `{p}` of IAM role `{name}`"
                ))
            }
        }
        if p == policy_name {
            policy = Deletion::Deleted;
        }
    }
    for arn in &seen.state.attached {
        match iam
            .detach_role_policy()
            .role_name(name)
            .policy_arn(arn)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if error_code(&e) == Some("NoSuchEntity") => {}
            Err(e) => {
                return Err(e).aws(format!("failed to detach `{arn}` from IAM role `{name}`"))
            }
        }
    }
    match iam.delete_role().role_name(name).send().await {
        Ok(_) => Ok((Deletion::Deleted, policy)),
        Err(e) if error_code(&e) == Some("NoSuchEntity") => Ok((Deletion::Absent, policy)),
        Err(e) => Err(e).aws(format!("failed to delete IAM role `{name}`")),
    }
}
