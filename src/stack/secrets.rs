//! The two Secrets Manager secrets: the GitHub App key and the
//! Anthropic key. Created without a value so their ARNs exist for the policies and the
//! task definition; `lackey secret put` stores a value; `plan` and `doctor` report a
//! secret that has none. A secret scheduled for deletion is restored by `up`.

use aws_sdk_secretsmanager::types::Tag;

use super::{Action, Change, Deletion, FieldDiff, Seen, StackCtx};
use crate::aws::{error_code, AwsResultExt};
use crate::error::Fail;

#[derive(Clone, Debug)]
pub struct Have {
    pub arn: String,
    pub has_value: bool,
    pub scheduled_for_deletion: bool,
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
        Err(e) if error_code(&e) == Some("ResourceNotFoundException") => return Ok(None),
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

/// Create, restore or tag the secret; returns its ARN.
pub async fn apply(
    cx: &StackCtx<'_>,
    c: &Change,
    name: &str,
    have: Option<&Have>,
) -> anyhow::Result<String> {
    let sm = cx.aws.secrets();
    if c.action == Action::Create {
        match sm
            .create_secret()
            .name(name)
            .description(format!("lackey stack `{}`", cx.spec.stack))
            .set_tags(Some(tags(cx)))
            .send()
            .await
        {
            Ok(o) => return Ok(o.arn().unwrap_or_default().to_string()),
            Err(e) if error_code(&e) == Some("ResourceExistsException") => {
                let seen = observe(cx, name).await?;
                return seen.map(|s| s.state.arn).ok_or_else(|| {
                    anyhow::anyhow!("secret `{name}` exists but cannot be described")
                });
            }
            Err(e) => return Err(e).aws(format!("failed to create secret `{name}`")),
        }
    }
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
    Ok(have.map(|h| h.arn.clone()).unwrap_or_default())
}

/// Schedule deletion (7 days' recovery), or delete at once with `force`.
pub async fn delete(
    cx: &StackCtx<'_>,
    name: &str,
    seen: Option<&Seen<Have>>,
    force: bool,
) -> anyhow::Result<Deletion> {
    let Some(seen) = seen else {
        return Ok(Deletion::Absent);
    };
    if let Some(d) = super::not_owned(&seen.owner) {
        return Ok(d);
    }
    if seen.state.scheduled_for_deletion && !force {
        return Ok(Deletion::Absent);
    }
    let mut req = cx.aws.secrets().delete_secret().secret_id(name);
    req = if force {
        req.force_delete_without_recovery(true)
    } else {
        req.recovery_window_in_days(7)
    };
    match req.send().await {
        Ok(_) => Ok(Deletion::Deleted),
        Err(e) if error_code(&e) == Some("ResourceNotFoundException") => Ok(Deletion::Absent),
        Err(e) => Err(e).aws(format!("failed to delete secret `{name}`")),
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
        Err(e) if error_code(&e) == Some("ResourceNotFoundException") => {
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
