//! The ECS cluster, and stopping the stack's tasks before `down`.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_ecs::types::{ClusterField, DesiredStatus, Tag};

use super::resource::{Facts, Intent, Resource};
use super::{Action, Change, Deletion, FieldDiff, Kind, Seen, StackCtx, StackSpec};
use crate::aws::{self, AwsResultExt};
use crate::error::Fail;
use crate::output::Tone;

#[derive(Clone, Debug)]
pub struct Have {
    /// For `down`: the running tasks, this stack's and the others'.
    pub tasks: Option<Tasks>,
}

/// The tasks running in the cluster, by who started them.
#[derive(Clone, Debug, Default)]
pub struct Tasks {
    pub ours: Vec<String>,
    pub others: Vec<String>,
}

/// The stack's ECS cluster.
pub struct Cluster {
    name: String,
}

impl Cluster {
    pub fn new(spec: &StackSpec) -> Cluster {
        Cluster {
            name: spec.cluster.clone(),
        }
    }
}

pub async fn observe(cx: &StackCtx<'_>) -> anyhow::Result<Option<Seen<Have>>> {
    observe_for(cx, Intent::Plan).await
}

/// The cluster; for `down` with its running tasks, listed at the same time.
async fn observe_for(cx: &StackCtx<'_>, intent: Intent) -> anyhow::Result<Option<Seen<Have>>> {
    let name = &cx.spec.cluster;
    let (out, tasks) = tokio::join!(
        cx.aws
            .ecs()
            .describe_clusters()
            .clusters(name)
            .include(ClusterField::Tags)
            .send(),
        async {
            match intent {
                Intent::Delete => running_tasks(cx).await.map(Some),
                Intent::Plan => Ok(None),
            }
        }
    );
    let out = out.aws(format!("failed to describe ECS cluster `{name}`"))?;
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
        Have { tasks: tasks? },
    )))
}

fn tags(cx: &StackCtx) -> Vec<Tag> {
    cx.spec
        .tags()
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// Every task running in the cluster, split into this stack's own and the others'.
/// A task is the stack's when this stack started it (`startedBy`) or tagged it. A
/// cluster that does not exist runs none.
async fn running_tasks(cx: &StackCtx<'_>) -> anyhow::Result<Tasks> {
    let ecs = cx.aws.ecs();
    let cluster = &cx.spec.cluster;
    let mut arns: Vec<String> = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let out = match ecs
            .list_tasks()
            .cluster(cluster)
            .desired_status(DesiredStatus::Running)
            .set_next_token(next.take())
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) if aws::is_not_found(&e) => return Ok(Tasks::default()),
            Err(e) => {
                return Err(e).aws(format!(
                    "failed to list the tasks of ECS cluster `{cluster}`"
                ))
            }
        };
        arns.extend(out.task_arns().iter().cloned());
        match out.next_token() {
            Some(t) if !t.is_empty() => next = Some(t.to_string()),
            _ => break,
        }
    }
    let mut tasks = Tasks::default();
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
                tasks.ours.push(arn);
            } else {
                tasks.others.push(arn);
            }
        }
    }
    Ok(tasks)
}

/// Stop every task this stack started and wait until they are STOPPED, so their
/// network interfaces leave the security group.
async fn stop_stack_tasks(cx: &StackCtx<'_>, arns: &[String]) -> anyhow::Result<()> {
    if arns.is_empty() {
        return Ok(());
    }
    let ecs = cx.aws.ecs();
    let cluster = &cx.spec.cluster;
    cx.reporter.status(
        "Stopping",
        Tone::Warn,
        &format!(
            "{} running task(s) of stack `{}`",
            arns.len(),
            cx.spec.stack
        ),
    );
    futures::future::join_all(arns.iter().map(|arn| {
        ecs.stop_task()
            .cluster(cluster)
            .task(arn)
            .reason("lackey down: the stack is being deleted")
            .send()
    }))
    .await;
    let spinner = cx.reporter.spinner("waiting for the stack's tasks to stop");
    let start = Instant::now();
    let mut wait = Duration::from_millis(500);
    loop {
        let d = ecs
            .describe_tasks()
            .cluster(cluster)
            .set_tasks(Some(arns.to_vec()))
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

#[async_trait]
impl Resource for Cluster {
    type Have = Have;

    fn kind(&self) -> Kind {
        Kind::EcsCluster
    }

    fn name(&self) -> &str {
        &self.name
    }

    async fn observe(
        &self,
        cx: &StackCtx<'_>,
        intent: Intent,
    ) -> anyhow::Result<Option<Seen<Have>>> {
        observe_for(cx, intent).await
    }

    fn diff(&self, _: &StackSpec, _: &Have, _: &Facts) -> Vec<FieldDiff> {
        vec![]
    }

    async fn apply(
        &self,
        cx: &StackCtx<'_>,
        c: &Change,
        _: &[Change],
        _: Option<&Seen<Have>>,
        _: &Facts,
    ) -> anyhow::Result<Facts> {
        let name = &self.name;
        let ecs = cx.aws.ecs();
        if c.action == Action::Create {
            // Only called when no ACTIVE cluster exists: CreateCluster on an existing one
            // is a no-op on AWS but replaces it (tags and all) on moto.
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
        Ok(Facts::new())
    }

    /// Tasks someone else runs in the cluster are not lackey's to stop, and AWS refuses
    /// to delete a cluster that still runs tasks: then nothing is deleted, and `down`
    /// names them.
    fn check_delete(&self, cx: &StackCtx<'_>, seen: &Seen<Have>) -> anyhow::Result<()> {
        let others = seen
            .state
            .tasks
            .as_ref()
            .map(|t| t.others.as_slice())
            .unwrap_or_default();
        let Some(first) = others.first() else {
            return Ok(());
        };
        let cluster = &self.name;
        let id = |a: &String| a.rsplit('/').next().unwrap_or(a).to_string();
        let ids: Vec<String> = others.iter().map(id).collect();
        Err(Fail::new(format!(
            "ECS cluster `{cluster}` runs {} task(s) that stack `{}` did not start: {}; nothing deleted",
            others.len(),
            cx.spec.stack,
            ids.join(", ")
        ))
        .with_hint(format!(
            "wait for them to finish, or stop them yourself (`aws ecs stop-task --cluster {cluster} --task {}`), then run `lackey down` again",
            id(first)
        ))
        .into())
    }

    /// A running task holds its network interface in the security group: the stack's
    /// tasks are stopped before anything is deleted.
    async fn prepare_delete(&self, cx: &StackCtx<'_>, seen: &Seen<Have>) -> anyhow::Result<()> {
        match &seen.state.tasks {
            Some(t) => stop_stack_tasks(cx, &t.ours).await,
            None => Ok(()),
        }
    }

    async fn delete(
        &self,
        cx: &StackCtx<'_>,
        _: &Seen<Have>,
        _: bool,
    ) -> anyhow::Result<Vec<Deletion>> {
        let name = &self.name;
        match cx.aws.ecs().delete_cluster().cluster(name).send().await {
            Ok(_) => Ok(vec![Deletion::Deleted]),
            Err(e) if aws::is_not_found(&e) => Ok(vec![Deletion::Absent]),
            Err(e) => Err(e).aws(format!("failed to delete ECS cluster `{name}`")),
        }
    }
}
