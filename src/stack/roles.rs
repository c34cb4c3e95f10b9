//! The execution and task roles and their inline policies.
//!
//! Execution role: trust `ecs-tasks.amazonaws.com`, the managed
//! `AmazonECSTaskExecutionRolePolicy`, and inline `lackey-secrets` reading the two
//! secrets and nothing else. Task role: inline `lackey-s3-artifacts` on the bucket.
//! Policy documents are compared by meaning (`policy.rs`). `down` detaches managed
//! policies and deletes inline ones before deleting a role, as IAM requires.

use async_trait::async_trait;
use aws_sdk_iam::types::Tag;
use futures::future::join_all;
use serde_json::Value;

use super::resource::{Facts, Id, Intent, Resource};
use super::{
    policy, Action, Change, Deletion, FieldDiff, Kind, Seen, StackCtx, StackSpec,
    EXECUTION_POLICY_NAME, TASK_POLICY_NAME,
};
use crate::aws::{self, AwsResultExt};

const TRUST: &str = include_str!("../../templates/trust-policy.json");
const TASK_POLICY: &str = include_str!("../../templates/task-role-policy.json");
const EXECUTION_POLICY: &str = include_str!("../../templates/execution-secrets-policy.json");

#[derive(Clone, Debug)]
pub struct Have {
    pub trust: String,
    pub attached: Vec<String>,
    /// The document of the role's lackey inline policy, if it has one.
    pub policy: Option<String>,
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

/// An IAM role the tasks use, with its lackey inline policy as a part.
pub struct Role {
    pub name: String,
    /// The inline policy's name and document.
    pub policy_name: &'static str,
    pub policy: String,
    /// The managed policies attached to it.
    pub managed: Vec<String>,
}

impl Role {
    /// The execution role: ECS pulls the image, writes the logs and reads the secrets.
    pub fn execution(spec: &StackSpec) -> Role {
        Role {
            name: spec.execution_role.clone(),
            policy_name: EXECUTION_POLICY_NAME,
            policy: execution_policy(spec),
            managed: vec![spec.execution_policy_arn()],
        }
    }

    /// The task role: what the minion itself may do (the artifact bucket).
    pub fn task(spec: &StackSpec) -> Role {
        Role {
            name: spec.task_role.clone(),
            policy_name: TASK_POLICY_NAME,
            policy: task_policy(spec),
            managed: vec![],
        }
    }

    fn policy_id(&self) -> String {
        format!("{}/{}", self.name, self.policy_name)
    }

    /// The role, its attached policies and its inline policy, read at once.
    pub async fn observe(&self, cx: &StackCtx<'_>) -> anyhow::Result<Option<Seen<Have>>> {
        let iam = cx.aws.iam();
        let name = &self.name;
        let (role, attached, inline) = tokio::join!(
            iam.get_role().role_name(name).send(),
            iam.list_attached_role_policies().role_name(name).send(),
            iam.get_role_policy()
                .role_name(name)
                .policy_name(self.policy_name)
                .send(),
        );
        let role = match role {
            Ok(o) => o.role,
            Err(e) if aws::is_not_found(&e) => return Ok(None),
            Err(e) => return Err(e).aws(format!("failed to read IAM role `{name}`")),
        };
        let Some(role) = role else { return Ok(None) };
        let attached = attached.aws(format!("failed to list the policies of IAM role `{name}`"))?;
        let mut attached: Vec<String> = attached
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_arn().map(str::to_string))
            .collect();
        attached.sort();
        let policy = match inline {
            Ok(o) => Some(o.policy_document().to_string()),
            Err(e) if aws::is_not_found(&e) => None,
            Err(e) => {
                return Err(e).aws(format!(
                    "failed to read inline policy `{}` of IAM role `{name}`",
                    self.policy_name
                ))
            }
        };
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
                policy,
            },
        )))
    }

    /// How the inline policy differs from the one wanted (`None`: it is missing).
    pub fn policy_diff(&self, have: &Have) -> Option<Vec<FieldDiff>> {
        let doc = have.policy.as_ref()?;
        if policy::same(doc, &self.policy) {
            return Some(vec![]);
        }
        Some(vec![FieldDiff::new(
            "document",
            policy::canonical(doc).unwrap_or(Value::String(doc.clone())),
            policy::canonical(&self.policy).unwrap_or_default(),
        )])
    }
}

/// How a role differs: its trust policy and its managed policies.
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

/// Create the role, or repair its trust policy and tags. Returns the managed policies
/// attached now.
async fn create_or_update(
    cx: &StackCtx<'_>,
    c: &Change,
    seen: Option<&Seen<Have>>,
) -> anyhow::Result<Vec<String>> {
    let name = &c.name;
    let iam = cx.aws.iam();
    match (c.action, seen) {
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
                Err(e) if aws::is_already_exists(&e) => {}
                Err(e) => return Err(e).aws(format!("failed to create IAM role `{name}`")),
            }
            Ok(vec![])
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
            Ok(s.state.attached.clone())
        }
        _ => Ok(vec![]),
    }
}

/// Attach the managed policies wanted and detach the others, all at once.
async fn attach(
    cx: &StackCtx<'_>,
    name: &str,
    attached: &[String],
    managed: &[String],
) -> anyhow::Result<()> {
    let iam = cx.aws.iam();
    let attaching = managed.iter().filter(|a| !attached.contains(a)).map(|arn| {
        let iam = iam.clone();
        async move {
            iam.attach_role_policy()
                .role_name(name)
                .policy_arn(arn)
                .send()
                .await
                .aws(format!("failed to attach `{arn}` to IAM role `{name}`"))
                .map(|_| ())
        }
    });
    let detaching = attached.iter().filter(|a| !managed.contains(a)).map(|arn| {
        let iam = iam.clone();
        async move {
            iam.detach_role_policy()
                .role_name(name)
                .policy_arn(arn)
                .send()
                .await
                .aws(format!("failed to detach `{arn}` from IAM role `{name}`"))
                .map(|_| ())
        }
    });
    let (a, d) = tokio::join!(join_all(attaching), join_all(detaching));
    a.into_iter().chain(d).collect()
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

#[async_trait]
impl Resource for Role {
    type Have = Have;

    fn kind(&self) -> Kind {
        Kind::IamRole
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn parts(&self) -> Vec<Id> {
        vec![Id::new(Kind::IamRolePolicy, &self.policy_id())]
    }

    async fn observe(&self, cx: &StackCtx<'_>, _: Intent) -> anyhow::Result<Option<Seen<Have>>> {
        Role::observe(self, cx).await
    }

    fn diff(&self, _: &StackSpec, have: &Have, _: &Facts) -> Vec<FieldDiff> {
        diff(have, &self.managed)
    }

    /// An inline policy belongs to its role: it is ours when the role is.
    fn plan_parts(&self, _: &StackSpec, own: &Change, seen: Option<&Seen<Have>>) -> Vec<Change> {
        let mut pc = Change::new(Kind::IamRolePolicy, &self.policy_id(), Action::Noop);
        if own.action == Action::Unowned {
            pc.action = Action::Unowned;
            pc.notes
                .push(format!("belongs to the unowned role `{}`", self.name));
            return vec![pc];
        }
        match seen.and_then(|s| self.policy_diff(&s.state)) {
            None => pc.action = Action::Create,
            Some(d) if d.is_empty() => {}
            Some(d) => {
                pc.action = Action::Update;
                pc.diff = d;
            }
        }
        vec![pc]
    }

    /// The role first (IAM needs it to exist), then its managed policies and its inline
    /// policy at once.
    async fn apply(
        &self,
        cx: &StackCtx<'_>,
        own: &Change,
        parts: &[Change],
        seen: Option<&Seen<Have>>,
        _: &Facts,
    ) -> anyhow::Result<Facts> {
        let role_changes = matches!(own.action, Action::Create | Action::Update);
        let attached = if role_changes {
            create_or_update(cx, own, seen).await?
        } else {
            vec![]
        };
        let write_policy = parts
            .iter()
            .any(|p| matches!(p.action, Action::Create | Action::Update));
        let (a, p) = tokio::join!(
            async {
                if role_changes {
                    attach(cx, &self.name, &attached, &self.managed).await
                } else {
                    Ok(())
                }
            },
            async {
                if write_policy {
                    put_policy(cx, &self.name, self.policy_name, &self.policy).await
                } else {
                    Ok(())
                }
            }
        );
        a?;
        p?;
        Ok(Facts::new())
    }

    /// IAM deletes a role only without policies: its inline policies are deleted and its
    /// managed ones detached first, all at once.
    async fn delete(
        &self,
        cx: &StackCtx<'_>,
        seen: &Seen<Have>,
        _: bool,
    ) -> anyhow::Result<Vec<Deletion>> {
        let iam = cx.aws.iam();
        let name = &self.name;
        let delete_inline = |p: String| {
            let iam = iam.clone();
            async move {
                match iam
                    .delete_role_policy()
                    .role_name(name)
                    .policy_name(&p)
                    .send()
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(e) if aws::is_not_found(&e) => Ok(false),
                    Err(e) => Err(e).aws(format!(
                        "failed to delete inline policy `{p}` of IAM role `{name}`"
                    )),
                }
            }
        };
        let detach = seen.state.attached.iter().map(|arn| {
            let iam = iam.clone();
            async move {
                match iam
                    .detach_role_policy()
                    .role_name(name)
                    .policy_arn(arn)
                    .send()
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) if aws::is_not_found(&e) => Ok(()),
                    Err(e) => {
                        Err(e).aws(format!("failed to detach `{arn}` from IAM role `{name}`"))
                    }
                }
            }
        });
        // Ours is known from the observation; others someone added are listed.
        let (listed, ours, detached) = tokio::join!(
            async {
                let inline = iam
                    .list_role_policies()
                    .role_name(name)
                    .send()
                    .await
                    .aws(format!(
                        "failed to list the inline policies of IAM role `{name}`"
                    ))?;
                let others = inline
                    .policy_names()
                    .iter()
                    .filter(|p| p.as_str() != self.policy_name)
                    .map(|p| delete_inline(p.clone()));
                join_all(others)
                    .await
                    .into_iter()
                    .collect::<anyhow::Result<Vec<_>>>()
            },
            delete_inline(self.policy_name.to_string()),
            join_all(detach),
        );
        listed?;
        let policy = if ours? {
            Deletion::Deleted
        } else {
            Deletion::Absent
        };
        detached.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
        match iam.delete_role().role_name(name).send().await {
            Ok(_) => Ok(vec![Deletion::Deleted, policy]),
            Err(e) if aws::is_not_found(&e) => Ok(vec![Deletion::Absent, policy]),
            Err(e) => Err(e).aws(format!("failed to delete IAM role `{name}`")),
        }
    }
}
