//! The two Secrets Manager secrets: the GitHub App key and the
//! Anthropic key. Created without a value so their ARNs exist for the policies and the
//! task definition; `lackey secret put` stores a value; `plan` and `doctor` report a
//! secret that has none. A secret scheduled for deletion is restored by `up`.

use async_trait::async_trait;
use aws_sdk_secretsmanager::types::Tag;

use super::resource::{Facts, Intent, Resource};
use super::{Action, Change, Deletion, FieldDiff, Kind, Seen, StackCtx, StackSpec};
use crate::aws::{self, AwsResultExt};
use crate::error::Fail;

#[derive(Clone, Debug)]
pub struct Have {
    pub arn: String,
    pub has_value: bool,
    pub scheduled_for_deletion: bool,
}

/// One of the stack's secrets: its key under `[secrets]` and its name.
pub struct Secret {
    pub key: &'static str,
    pub name: String,
}

impl Secret {
    /// Every secret the spec names.
    pub fn all(spec: &StackSpec) -> Vec<Secret> {
        spec.secrets
            .iter()
            .map(|(key, name)| Secret {
                key,
                name: name.clone(),
            })
            .collect()
    }
}

/// The fact under which a secret's ARN is known (the task definition needs it).
pub fn arn_fact(key: &str) -> String {
    format!("secret_arn:{key}")
}

pub async fn observe(cx: &StackCtx<'_>, name: &str) -> anyhow::Result<Option<Seen<Have>>> {
    let out = match cx
        .aws
        .secrets()
        .describe_secret()
        .secret_id(name)
        .send()
        .await
    {
        Ok(o) => o,
        Err(e) if aws::is_not_found(&e) => return Ok(None),
        Err(e) => return Err(e).aws(format!("failed to describe secret `{name}`")),
    };
    let tags = super::tag_map(
        out.tags()
            .iter()
            .map(|t| (t.key().map(str::to_string), t.value().map(str::to_string))),
    );
    let has_value = out
        .version_ids_to_stages()
        .map(|m| {
            m.values()
                .any(|stages| stages.iter().any(|s| s == "AWSCURRENT"))
        })
        .unwrap_or(false);
    Ok(Some(Seen::new(
        &cx.spec.stack,
        tags,
        Have {
            arn: out.arn().unwrap_or_default().to_string(),
            has_value,
            scheduled_for_deletion: out.deleted_date().is_some(),
        },
    )))
}

pub fn diff(have: &Have) -> Vec<FieldDiff> {
    if have.scheduled_for_deletion {
        vec![FieldDiff::new("deletion", "scheduled", "restored")]
    } else {
        vec![]
    }
}

fn tags(cx: &StackCtx) -> Vec<Tag> {
    cx.spec
        .tags()
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

#[async_trait]
impl Resource for Secret {
    type Have = Have;

    fn kind(&self) -> Kind {
        Kind::Secret
    }

    fn name(&self) -> &str {
        &self.name
    }

    async fn observe(&self, cx: &StackCtx<'_>, _: Intent) -> anyhow::Result<Option<Seen<Have>>> {
        observe(cx, &self.name).await
    }

    fn diff(&self, _: &StackSpec, have: &Have, _: &Facts) -> Vec<FieldDiff> {
        diff(have)
    }

    fn notes(&self, seen: Option<&Seen<Have>>, c: &Change) -> Vec<String> {
        let name = &self.name;
        match seen {
            Some(s) if !s.state.has_value && c.action != Action::Unowned => {
                vec![format!("has no value yet: run `lackey secret put {name}`")]
            }
            None => vec![format!(
                "created without a value: then run `lackey secret put {name}`"
            )],
            _ => vec![],
        }
    }

    fn facts(&self, have: &Have) -> Facts {
        Facts::from([(arn_fact(self.key), have.arn.clone())])
    }

    /// Create (without a value), restore or tag the secret; its ARN is a fact.
    async fn apply(
        &self,
        cx: &StackCtx<'_>,
        c: &Change,
        _: &[Change],
        seen: Option<&Seen<Have>>,
        _: &Facts,
    ) -> anyhow::Result<Facts> {
        let name = &self.name;
        let sm = cx.aws.secrets();
        let learnt = |arn: String| Ok(Facts::from([(arn_fact(self.key), arn)]));
        if c.action == Action::Create {
            return match sm
                .create_secret()
                .name(name)
                .description(format!("lackey stack `{}`", cx.spec.stack))
                .set_tags(Some(tags(cx)))
                .send()
                .await
            {
                Ok(o) => learnt(o.arn().unwrap_or_default().to_string()),
                Err(e) if aws::is_already_exists(&e) => {
                    let seen = observe(cx, name).await?;
                    let arn = seen.map(|s| s.state.arn).ok_or_else(|| {
                        anyhow::anyhow!("secret `{name}` exists but cannot be described")
                    })?;
                    learnt(arn)
                }
                Err(e) => Err(e).aws(format!("failed to create secret `{name}`")),
            };
        }
        let have = seen.map(|s| &s.state);
        if have.is_some_and(|h| h.scheduled_for_deletion) {
            sm.restore_secret()
                .secret_id(name)
                .send()
                .await
                .aws(format!(
                    "failed to restore secret `{name}`, which is scheduled for deletion"
                ))?;
        }
        if c.diff.iter().any(|d| d.field == "tags") {
            sm.tag_resource()
                .secret_id(name)
                .set_tags(Some(tags(cx)))
                .send()
                .await
                .aws(format!("failed to tag secret `{name}`"))?;
        }
        learnt(have.map(|h| h.arn.clone()).unwrap_or_default())
    }

    /// Schedule deletion (7 days' recovery), or delete at once with `force`.
    async fn delete(
        &self,
        cx: &StackCtx<'_>,
        seen: &Seen<Have>,
        force: bool,
    ) -> anyhow::Result<Vec<Deletion>> {
        let name = &self.name;
        if seen.state.scheduled_for_deletion && !force {
            return Ok(vec![Deletion::Absent]);
        }
        let mut req = cx.aws.secrets().delete_secret().secret_id(name);
        req = if force {
            req.force_delete_without_recovery(true)
        } else {
            req.recovery_window_in_days(7)
        };
        match req.send().await {
            Ok(_) => Ok(vec![Deletion::Deleted]),
            Err(e) if aws::is_not_found(&e) => Ok(vec![Deletion::Absent]),
            Err(e) => Err(e).aws(format!("failed to delete secret `{name}`")),
        }
    }
}

/// Store a new value (`lackey secret put`); creates the secret (tagged) if missing.
/// A secret this stack does not own (untagged, or another stack's) is refused, as `up`
/// and `down` refuse to change it.
pub async fn put_value(cx: &StackCtx<'_>, name: &str, value: &str) -> anyhow::Result<String> {
    if let Some(seen) = observe(cx, name).await? {
        refuse_unowned(&cx.spec.stack, name, &seen.owner)?;
    }
    let sm = cx.aws.secrets();
    match sm
        .put_secret_value()
        .secret_id(name)
        .secret_string(value)
        .send()
        .await
    {
        Ok(o) => Ok(o.version_id().unwrap_or_default().to_string()),
        Err(e) if aws::is_not_found(&e) => {
            let o = sm
                .create_secret()
                .name(name)
                .description(format!("lackey stack `{}`", cx.spec.stack))
                .set_tags(Some(tags(cx)))
                .secret_string(value)
                .send()
                .await
                .aws(format!("failed to create secret `{name}`"))?;
            Ok(o.version_id().unwrap_or_default().to_string())
        }
        Err(e) => Err(e).aws(format!("failed to store a value in secret `{name}`")),
    }
}

/// The refusal for storing a value in a secret `stack` does not own.
fn refuse_unowned(stack: &str, name: &str, owner: &super::Owner) -> Result<(), Fail> {
    match owner {
        super::Owner::Us => Ok(()),
        super::Owner::OtherStack(other) => Err(Fail::new(format!(
            "secret `{name}` belongs to lackey stack `{other}`, not to `{stack}`: its value was not changed"
        ))
        .with_hint(format!(
            "store it from that stack (LACKEY_STACK={other} lackey secret put ...), or give stack `{stack}` its own secret name under [secrets] in lackey.toml"
        ))),
        super::Owner::OtherAccount => Err(Fail::new(format!(
            "secret `{name}` belongs to another AWS account: its value was not changed"
        ))
        .with_hint("check the credentials and region lackey uses (`lackey config`)")),
        super::Owner::Nobody => Err(Fail::new(format!(
            "secret `{name}` has no lackey tags: stack `{stack}` does not own it, so its value was not changed"
        ))
        .with_hint("run `lackey up --adopt` to make it this stack's, then `lackey secret put` again")),
    }
}
