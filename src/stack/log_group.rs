//! The CloudWatch log group the task writes to; retention optional.

use aws_sdk_cloudwatchlogs::Client;

use super::{Action, Change, Deletion, FieldDiff, Seen, StackCtx, StackSpec};
use crate::aws::{error_code, AwsResultExt};

#[derive(Clone, Debug)]
pub struct Have {
    pub retention_days: Option<i32>,
}

pub async fn observe(cx: &StackCtx<'_>) -> anyhow::Result<Option<Seen<Have>>> {
    let name = &cx.spec.log_group;
    let logs = cx.aws.logs();
    let out = logs
        .describe_log_groups()
        .log_group_name_prefix(name)
        .send()
        .await
        .aws(format!("failed to describe log group `{name}`"))?;
    let Some(g) = out
        .log_groups()
        .iter()
        .find(|g| g.log_group_name() == Some(name.as_str()))
    else {
        return Ok(None);
    };
    let tags = list_tags(&logs, name).await?;
    Ok(Some(Seen::new(
        &cx.spec.stack,
        tags,
        Have {
            retention_days: g.retention_in_days(),
        },
    )))
}

#[allow(deprecated)]
async fn list_tags(
    logs: &Client,
    name: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    // ListTagsLogGroup takes the name; it is what every CloudWatch Logs endpoint
    // (and moto) answers.
    let out = logs
        .list_tags_log_group()
        .log_group_name(name)
        .send()
        .await
        .aws(format!("failed to read the tags of log group `{name}`"))?;
    Ok(out
        .tags()
        .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default())
}

/// Retention is managed only when configured.
pub fn diff(spec: &StackSpec, have: &Have) -> Vec<FieldDiff> {
    match spec.retention_days {
        Some(want) if have.retention_days != Some(want) => vec![FieldDiff::new(
            "retention_days",
            have.retention_days
                .map(serde_json::Value::from)
                .unwrap_or(serde_json::Value::Null),
            want,
        )],
        _ => vec![],
    }
}

#[allow(deprecated)]
pub async fn apply(cx: &StackCtx<'_>, c: &Change) -> anyhow::Result<()> {
    let name = &cx.spec.log_group;
    let logs = cx.aws.logs();
    let tags: std::collections::HashMap<String, String> = cx.spec.tags().into_iter().collect();
    if c.action == Action::Create {
        match logs
            .create_log_group()
            .log_group_name(name)
            .set_tags(Some(tags))
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if error_code(&e) == Some("ResourceAlreadyExistsException") => {}
            Err(e) => return Err(e).aws(format!("failed to create log group `{name}`")),
        }
    } else if c.diff.iter().any(|d| d.field == "tags") {
        logs.tag_log_group()
            .log_group_name(name)
            .set_tags(Some(tags))
            .send()
            .await
            .aws(format!("failed to tag log group `{name}`"))?;
    }
    let retention_differs =
        c.action == Action::Create || c.diff.iter().any(|d| d.field == "retention_days");
    if let (Some(days), true) = (cx.spec.retention_days, retention_differs) {
        logs.put_retention_policy()
            .log_group_name(name)
            .retention_in_days(days)
            .send()
            .await
            .aws(format!("failed to set the retention of log group `{name}`"))?;
    }
    Ok(())
}

pub async fn delete(cx: &StackCtx<'_>, seen: Option<&Seen<Have>>) -> anyhow::Result<Deletion> {
    let Some(seen) = seen else {
        return Ok(Deletion::Absent);
    };
    if let Some(d) = super::not_owned(&seen.owner) {
        return Ok(d);
    }
    let name = &cx.spec.log_group;
    match cx
        .aws
        .logs()
        .delete_log_group()
        .log_group_name(name)
        .send()
        .await
    {
        Ok(_) => Ok(Deletion::Deleted),
        Err(e) if error_code(&e) == Some("ResourceNotFoundException") => Ok(Deletion::Absent),
        Err(e) => Err(e).aws(format!("failed to delete log group `{name}`")),
    }
}
