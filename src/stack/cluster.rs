//! The ECS cluster, and stopping the stack's tasks before `down`.

use std::time::{Duration, Instant};

use aws_sdk_ecs::types::{ClusterField, DesiredStatus, Tag};

use super::{Action, Change, Deletion, Seen, StackCtx};
use crate::aws::{error_code, AwsResultExt};
use crate::error::Fail;
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

/// Every task running in the cluster, split into this stack's own and the others'.
/// A task is the stack's when this stack started it (`startedBy`) or tagged it.
async fn running_tasks(cx: &StackCtx<'_>) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let ecs = cx.aws.ecs();
    let cluster = &cx.spec.cluster;
    let mut arns: Vec<String> = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let out = ecs
            .list_tasks()
            .cluster(cluster)
            .desired_status(DesiredStatus::Running)
            .set_next_token(next.take())
            .send()
            .await
            .aws(format!(
                "failed to list the tasks of ECS cluster `{cluster}`"
            ))?;
        arns.extend(out.task_arns().iter().cloned());
        match out.next_token() {
            Some(t) if !t.is_empty() => next = Some(t.to_string()),
            _ => break,
        }
    }
    let (mut ours, mut others) = (Vec::new(), Vec::new());
    // DescribeTasks takes at most 100 tasks per call.
    for chunk in arns.chunks(100) {
        let d = ecs
            .describe_tasks()
            .cluster(cluster)
            .set_tasks(Some(chunk.to_vec()))
            .include(aws_sdk_ecs::types::TaskField::Tags)
            .send()
            .await
            .aws(format!(
                "failed to describe the tasks of ECS cluster `{cluster}`"
            ))?;
        for t in d.tasks() {
            let arn = t.task_arn().unwrap_or_default().to_string();
            let started_by_us = t.started_by() == Some(cx.spec.started_by().as_str());
            let tagged_ours = t.tags().iter().any(|tag| {
                tag.key() == Some(super::TAG_STACK) && tag.value() == Some(cx.spec.stack.as_str())
            });
            if started_by_us || tagged_ours {
                ours.push(arn);
            } else {
                others.push(arn);
            }
        }
    }
    Ok((ours, others))
}

/// Stop every task this stack started and wait until they are STOPPED, so their
/// network interfaces leave the security group. Tasks someone else runs in the
/// cluster are not lackey's to stop, and AWS refuses to delete a cluster that still
/// runs tasks: then nothing is stopped and `down` is refused, naming them.
pub async fn stop_stack_tasks(cx: &StackCtx<'_>) -> anyhow::Result<()> {
    let ecs = cx.aws.ecs();
    let cluster = &cx.spec.cluster;
    let (arns, others) = running_tasks(cx).await?;
    if !others.is_empty() {
        let ids: Vec<&str> = others
            .iter()
            .map(|a| a.rsplit('/').next().unwrap_or(a))
            .collect();
        return Err(Fail::new(format!(
            "ECS cluster `{cluster}` runs {} task(s) that stack `{}` did not start: {}; nothing deleted",
            others.len(),
            cx.spec.stack,
            ids.join(", ")
        ))
        .with_hint(format!(
            "wait for them to finish, or stop them yourself (`aws ecs stop-task --cluster {cluster} --task {}`), then run `lackey down` again",
            ids[0]
        ))
        .into());
    }
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
