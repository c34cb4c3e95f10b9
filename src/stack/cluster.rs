//! The ECS cluster, and stopping the stack's tasks before `down`.

use std::time::{Duration, Instant};

use aws_sdk_ecs::types::{ClusterField, DesiredStatus, Tag};

use super::{Action, Change, Deletion, Seen, StackCtx};
use crate::aws::{error_code, AwsResultExt};
use crate::output::Tone;

#[derive(Clone, Debug)]
pub struct Have {
    pub arn: String,
}

pub async fn observe(cx: &StackCtx<'_>) -> anyhow::Result<Option<Seen<Have>>> {
    let name = &cx.spec.cluster;
    let out = cx
        .aws
        .ecs()
        .describe_clusters()
        .clusters(name)
        .include(ClusterField::Tags)
        .send()
        .await
        .aws(format!("failed to describe ECS cluster `{name}`"))?;
    // A deleted cluster stays visible as INACTIVE for a while.
    let Some(c) = out.clusters().iter().find(|c| c.status() == Some("ACTIVE")) else {
        return Ok(None);
    };
    let tags = super::tag_map(
        c.tags()
            .iter()
            .map(|t| (t.key().map(str::to_string), t.value().map(str::to_string))),
    );
    Ok(Some(Seen::new(
        &cx.spec.stack,
        tags,
        Have {
            arn: c.cluster_arn().unwrap_or_default().to_string(),
        },
    )))
}

fn tags(cx: &StackCtx) -> Vec<Tag> {
    cx.spec
        .tags()
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

pub async fn apply(cx: &StackCtx<'_>, c: &Change) -> anyhow::Result<()> {
    let name = &cx.spec.cluster;
    let ecs = cx.aws.ecs();
    if c.action == Action::Create {
        // Only called when no ACTIVE cluster exists: CreateCluster on an existing one is
        // a no-op on AWS but replaces it (tags and all) on moto.
        ecs.create_cluster()
            .cluster_name(name)
            .set_tags(Some(tags(cx)))
            .send()
            .await
            .aws(format!("failed to create ECS cluster `{name}`"))?;
    } else if c.diff.iter().any(|d| d.field == "tags") {
        let arn = format!(
            "arn:{}:ecs:{}:{}:cluster/{name}",
            cx.spec.partition, cx.spec.region, cx.spec.account
        );
        ecs.tag_resource()
            .resource_arn(arn)
            .set_tags(Some(tags(cx)))
            .send()
            .await
            .aws(format!("failed to tag ECS cluster `{name}`"))?;
    }
    Ok(())
}

/// Stop every task this stack started and wait until they are STOPPED, so their
/// network interfaces leave the security group.
pub async fn stop_stack_tasks(cx: &StackCtx<'_>) -> anyhow::Result<()> {
    let ecs = cx.aws.ecs();
    let cluster = &cx.spec.cluster;
    let out = ecs
        .list_tasks()
        .cluster(cluster)
        .started_by(cx.spec.started_by())
        .desired_status(DesiredStatus::Running)
        .send()
        .await
        .aws(format!(
            "failed to list the tasks of ECS cluster `{cluster}`"
        ))?;
    let arns: Vec<String> = out.task_arns().to_vec();
    if arns.is_empty() {
        return Ok(());
    }
    cx.reporter.status(
        "Stopping",
        Tone::Warn,
        &format!(
            "{} running task(s) of stack `{}`",
            arns.len(),
            cx.spec.stack
        ),
    );
    for arn in &arns {
        let _ = ecs
            .stop_task()
            .cluster(cluster)
            .task(arn)
            .reason("lackey down: the stack is being deleted")
            .send()
            .await;
    }
    let spinner = cx.reporter.spinner("waiting for the stack's tasks to stop");
    let start = Instant::now();
    let mut wait = Duration::from_millis(500);
    loop {
        let d = ecs
            .describe_tasks()
            .cluster(cluster)
            .set_tasks(Some(arns.clone()))
            .send()
            .await
            .aws("failed to describe the stack's tasks")?;
        if d.tasks().iter().all(|t| t.last_status() == Some("STOPPED")) {
            break;
        }
        if start.elapsed() > Duration::from_secs(300) {
            return Err(anyhow::anyhow!(
                "the stack's tasks did not stop within 5 minutes"
            ));
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
    drop(spinner);
    Ok(())
}

pub async fn delete(cx: &StackCtx<'_>, seen: Option<&Seen<Have>>) -> anyhow::Result<Deletion> {
    let Some(seen) = seen else {
        return Ok(Deletion::Absent);
    };
    if let Some(d) = super::not_owned(&seen.owner) {
        return Ok(d);
    }
    let name = &cx.spec.cluster;
    match cx.aws.ecs().delete_cluster().cluster(name).send().await {
        Ok(_) => Ok(Deletion::Deleted),
        Err(e) if error_code(&e) == Some("ClusterNotFoundException") => Ok(Deletion::Absent),
        Err(e) => Err(e).aws(format!("failed to delete ECS cluster `{name}`")),
    }
}
