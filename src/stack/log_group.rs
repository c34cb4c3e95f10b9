//! The CloudWatch log group the task writes to; retention optional.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_cloudwatchlogs::Client;

use super::resource::{Facts, Intent, Resource};
use super::{Action, Change, Deletion, FieldDiff, Kind, Seen, StackCtx, StackSpec};
use crate::aws::{self, AwsResultExt};

#[derive(Clone, Debug)]
pub struct Have {
    pub retention_days: Option<i32>,
}

/// The log group the tasks write to.
pub struct LogGroup {
    name: String,
}

impl LogGroup {
    pub fn new(spec: &StackSpec) -> LogGroup {
        LogGroup {
            name: spec.log_group.clone(),
        }
    }
}

/// The log group and its tags, read at once.
pub async fn observe(cx: &StackCtx<'_>) -> anyhow::Result<Option<Seen<Have>>> {
    let name = &cx.spec.log_group;
    let logs = cx.aws.logs();
    let (out, tags) = tokio::join!(
        logs.describe_log_groups()
            .log_group_name_prefix(name)
            .send(),
        list_tags(&logs, name)
    );
    let out = out.aws(format!("failed to describe log group `{name}`"))?;
    let Some(g) = out
        .log_groups()
        .iter()
        .find(|g| g.log_group_name() == Some(name.as_str()))
    else {
        return Ok(None);
    };
    Ok(Some(Seen::new(
        &cx.spec.stack,
        tags?,
        Have {
            retention_days: g.retention_in_days(),
        },
    )))
}

#[allow(deprecated)]
async fn list_tags(logs: &Client, name: &str) -> anyhow::Result<BTreeMap<String, String>> {
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

#[async_trait]
impl Resource for LogGroup {
    type Have = Have;

    fn kind(&self) -> Kind {
        Kind::LogGroup
    }

    fn name(&self) -> &str {
        &self.name
    }

    async fn observe(&self, cx: &StackCtx<'_>, _: Intent) -> anyhow::Result<Option<Seen<Have>>> {
        observe(cx).await
    }

    fn diff(&self, spec: &StackSpec, have: &Have, _: &Facts) -> Vec<FieldDiff> {
        diff(spec, have)
    }

    #[allow(deprecated)]
    async fn apply(
        &self,
        cx: &StackCtx<'_>,
        c: &Change,
        _: &[Change],
        _: Option<&Seen<Have>>,
        _: &Facts,
    ) -> anyhow::Result<Facts> {
        let name = &self.name;
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
                Err(e) if aws::is_already_exists(&e) => {}
                Err(e) => return Err(e).aws(format!("failed to create log group `{name}`")),
            }
        }
        let retention_differs =
            c.action == Action::Create || c.diff.iter().any(|d| d.field == "retention_days");
        let retain = async {
            match (cx.spec.retention_days, retention_differs) {
                (Some(days), true) => logs
                    .put_retention_policy()
                    .log_group_name(name)
                    .retention_in_days(days)
                    .send()
                    .await
                    .aws(format!("failed to set the retention of log group `{name}`"))
                    .map(|_| ()),
                _ => Ok(()),
            }
        };
        let tag = async {
            if c.action != Action::Create && c.diff.iter().any(|d| d.field == "tags") {
                logs.tag_log_group()
                    .log_group_name(name)
                    .set_tags(Some(cx.spec.tags().into_iter().collect()))
                    .send()
                    .await
                    .aws(format!("failed to tag log group `{name}`"))
                    .map(|_| ())
            } else {
                Ok(())
            }
        };
        let (r, t) = tokio::join!(retain, tag);
        r?;
        t?;
        Ok(Facts::new())
    }

    async fn delete(
        &self,
        cx: &StackCtx<'_>,
        _: &Seen<Have>,
        _: bool,
    ) -> anyhow::Result<Vec<Deletion>> {
        let name = &self.name;
        match cx
            .aws
            .logs()
            .delete_log_group()
            .log_group_name(name)
            .send()
            .await
        {
            Ok(_) => Ok(vec![Deletion::Deleted]),
            Err(e) if aws::is_not_found(&e) => Ok(vec![Deletion::Absent]),
            Err(e) => Err(e).aws(format!("failed to delete log group `{name}`")),
        }
    }
}
