//! The Fargate task definition, plus the secrets ECS injects.
//!
//! Compared as normalised JSON: the fields lackey writes, with what AWS fills in on
//! its own removed (empty lists, `cpu: 0` on a container, nulls, read-only fields) and
//! lists that are sets sorted. So a definition registered by `up` never shows a change
//! on the next plan, and a real edit shows as a field-level diff. A new revision is
//! registered only when the content differs; the family's older revisions this stack
//! owns are then deregistered, leaving one ACTIVE revision.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_ecs::types::{
    Compatibility, ContainerCondition, ContainerDefinition, ContainerDependency, CpuArchitecture,
    KeyValuePair, LogConfiguration, LogDriver, NetworkMode, OsFamily, RuntimePlatform, Secret, Tag,
    TaskDefinition, TaskDefinitionField, TaskDefinitionStatus,
};
use serde_json::{json, Map, Value};

use super::resource::{Facts, Id, Intent, Resource};
use super::secrets::arn_fact;
use super::{policy, Action, Change, Deletion, FieldDiff, Kind, Seen, StackCtx, StackSpec};
use crate::aws::{self, AwsResultExt};
pub use crate::run_contract::{Isolation, MINION_CONTAINER, SIDECAR_CONTAINER};

const TEMPLATE: &str = include_str!("../../templates/task-definition.json");

#[derive(Clone, Debug)]
pub struct Have {
    pub arn: String,
    pub json: Value,
}

/// The task definition the config asks for, as API JSON.
pub fn desired(spec: &StackSpec, secret_arns: &BTreeMap<&'static str, String>) -> Value {
    let text = policy::render(
        TEMPLATE,
        &[
            ("family", &spec.task_family),
            ("cpu", &spec.cpu.to_string()),
            ("memory", &spec.memory.to_string()),
            ("cpu_architecture", spec.cpu_architecture.ecs()),
            ("execution_role_arn", &spec.role_arn(&spec.execution_role)),
            ("task_role_arn", &spec.role_arn(&spec.task_role)),
            ("image", &spec.image_uri()),
            ("log_group", &spec.log_group),
            ("region", &spec.region),
            (
                "anthropic_api_key_secret_arn",
                secret_arns
                    .get("anthropic_api_key")
                    .map(String::as_str)
                    .unwrap_or("(known after apply)"),
            ),
            (
                "github_app_key_secret_arn",
                secret_arns
                    .get("github_app_key")
                    .map(String::as_str)
                    .unwrap_or("(known after apply)"),
            ),
        ],
    );
    let mut td: Value =
        serde_json::from_str(&text).expect("templates/task-definition.json is valid JSON");
    if !spec.github_app {
        for c in td["containerDefinitions"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            if let Some(secrets) = c["secrets"].as_array_mut() {
                secrets.retain(|s| s["name"] != "LACKEY_GITHUB_APP_PRIVATE_KEY");
            }
        }
    }
    td
}

/// How a task definition (API JSON, as [`to_json`] gives it) keeps the credentials
/// from the minion's container.
pub fn isolation(td: &Value) -> Isolation {
    let list = |c: &Value, field: &str, key: &str| -> Vec<String> {
        c[field]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s[key].as_str().map(str::to_string))
            .collect()
    };
    Isolation::of(
        td["containerDefinitions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["name"].as_str().unwrap_or_default().to_string(),
                    list(c, "secrets", "name"),
                    list(c, "dependsOn", "containerName"),
                )
            }),
    )
}

fn kv_json(pairs: &[KeyValuePair]) -> Value {
    Value::Array(
        pairs
            .iter()
            .map(|p| json!({"name": p.name(), "value": p.value()}))
            .collect(),
    )
}

fn container_json(c: &ContainerDefinition) -> Value {
    json!({
        "name": c.name(),
        "image": c.image(),
        "essential": c.essential(),
        "cpu": c.cpu(),
        "memory": c.memory(),
        "memoryReservation": c.memory_reservation(),
        "command": c.command(),
        "entryPoint": c.entry_point(),
        "environment": kv_json(c.environment()),
        "secrets": c.secrets().iter().map(|s| json!({"name": s.name(), "valueFrom": s.value_from()})).collect::<Vec<_>>(),
        "logConfiguration": c.log_configuration().map(|l| json!({
            "logDriver": l.log_driver().as_str(),
            "options": l.options(),
        })),
        "portMappings": c.port_mappings().iter().map(|p| json!({"containerPort": p.container_port(), "hostPort": p.host_port(), "protocol": p.protocol().map(|x| x.as_str())})).collect::<Vec<_>>(),
        "dependsOn": c.depends_on().iter().map(|d| json!({"containerName": d.container_name(), "condition": d.condition().as_str()})).collect::<Vec<_>>(),
        "readonlyRootFilesystem": c.readonly_root_filesystem(),
        "user": c.user(),
        "workingDirectory": c.working_directory(),
    })
}

/// The SDK's task definition as API JSON (the fields lackey compares).
pub fn to_json(td: &TaskDefinition) -> Value {
    json!({
        "family": td.family(),
        "networkMode": td.network_mode().map(|m| m.as_str()),
        "requiresCompatibilities": td.requires_compatibilities().iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        "cpu": td.cpu(),
        "memory": td.memory(),
        "executionRoleArn": td.execution_role_arn(),
        "taskRoleArn": td.task_role_arn(),
        "containerDefinitions": td.container_definitions().iter().map(container_json).collect::<Vec<_>>(),
        "volumes": td.volumes().iter().map(|v| json!({"name": v.name()})).collect::<Vec<_>>(),
        "ephemeralStorage": td.ephemeral_storage().map(|e| json!({"sizeInGiB": e.size_in_gib()})),
        "runtimePlatform": td.runtime_platform().map(|p| json!({
            "operatingSystemFamily": p.operating_system_family().map(|o| o.as_str()),
            "cpuArchitecture": p.cpu_architecture().map(|a| a.as_str()),
        })),
    })
}

/// Drop what AWS fills in by itself, sort what is a set.
pub fn normalize(v: &Value) -> Value {
    fn strip(v: &Value) -> Option<Value> {
        match v {
            Value::Null => None,
            Value::Array(a) => {
                let items: Vec<Value> = a.iter().filter_map(strip).collect();
                (!items.is_empty()).then_some(Value::Array(items))
            }
            Value::Object(m) => {
                let out: Map<String, Value> = m
                    .iter()
                    .filter_map(|(k, v)| strip(v).map(|v| (k.clone(), v)))
                    .collect();
                (!out.is_empty()).then_some(Value::Object(out))
            }
            other => Some(other.clone()),
        }
    }
    let mut v = strip(v).unwrap_or(Value::Null);
    if let Some(cs) = v
        .get_mut("containerDefinitions")
        .and_then(|c| c.as_array_mut())
    {
        for c in cs.iter_mut() {
            if let Some(m) = c.as_object_mut() {
                if m.get("cpu") == Some(&json!(0)) {
                    m.remove("cpu");
                }
                // `essential` defaults to true.
                if m.get("essential") == Some(&json!(true)) {
                    m.remove("essential");
                }
                for list in ["environment", "secrets"] {
                    if let Some(a) = m.get_mut(list).and_then(|x| x.as_array_mut()) {
                        a.sort_by_key(|e| e["name"].as_str().unwrap_or_default().to_string());
                    }
                }
            }
        }
        cs.sort_by_key(|c| c["name"].as_str().unwrap_or_default().to_string());
    }
    if let Some(a) = v
        .get_mut("requiresCompatibilities")
        .and_then(|x| x.as_array_mut())
    {
        a.sort_by_key(|x| x.to_string());
    }
    v
}

/// Field-level differences between normalised documents (`containerDefinitions[minion].image`).
pub fn field_diffs(path: &str, have: &Value, want: &Value, out: &mut Vec<FieldDiff>) {
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => {
            let mut keys: Vec<&String> = h.keys().chain(w.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                field_diffs(
                    &p,
                    h.get(k).unwrap_or(&Value::Null),
                    w.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(h), Value::Array(w)) if path.ends_with("containerDefinitions") => {
            let by_name = |a: &Vec<Value>| -> BTreeMap<String, Value> {
                a.iter()
                    .map(|c| {
                        (
                            c["name"].as_str().unwrap_or_default().to_string(),
                            c.clone(),
                        )
                    })
                    .collect()
            };
            let (hm, wm) = (by_name(h), by_name(w));
            let mut names: Vec<&String> = hm.keys().chain(wm.keys()).collect();
            names.sort();
            names.dedup();
            for n in names {
                field_diffs(
                    &format!("{path}[{n}]"),
                    hm.get(n).unwrap_or(&Value::Null),
                    wm.get(n).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (h, w) if h != w => out.push(FieldDiff::new(path, h.clone(), w.clone())),
        _ => {}
    }
}

pub fn diff(want: &Value, have: &Have) -> Vec<FieldDiff> {
    let mut out = Vec::new();
    field_diffs("", &normalize(&have.json), &normalize(want), &mut out);
    out
}

/// The family's latest ACTIVE revision, as AWS describes a family.
pub async fn observe(cx: &StackCtx<'_>) -> anyhow::Result<Option<Seen<Have>>> {
    let family = &cx.spec.task_family;
    let ecs = cx.aws.ecs();
    let describe = |which: String| {
        let ecs = ecs.clone();
        async move {
            ecs.describe_task_definition()
                .task_definition(which)
                .include(TaskDefinitionField::Tags)
                .send()
                .await
        }
    };
    let out = match describe(family.clone()).await {
        Ok(out) => out,
        // ECS answers a ClientException for a family with no ACTIVE revision.
        Err(e) if aws::is_invalid_for_state(&e) => return Ok(None),
        Err(e) => return Err(e).aws(format!("failed to describe task definition `{family}`")),
    };
    let inactive = out
        .task_definition()
        .is_some_and(|td| td.status().map(|s| s.as_str()) == Some("INACTIVE"));
    // moto describes a family by its latest revision even when that one is INACTIVE:
    // then the latest ACTIVE one, if any, is the family's.
    let out = if inactive {
        match active_revisions(cx).await?.last() {
            Some(arn) => describe(arn.clone())
                .await
                .aws(format!("failed to describe `{arn}`"))?,
            None => return Ok(None),
        }
    } else {
        out
    };
    let Some(td) = out.task_definition() else {
        return Ok(None);
    };
    let tags = super::tag_map(
        out.tags()
            .iter()
            .map(|t| (t.key().map(str::to_string), t.value().map(str::to_string))),
    );
    Ok(Some(Seen::new(
        &cx.spec.stack,
        tags,
        Have {
            arn: td.task_definition_arn().unwrap_or_default().to_string(),
            json: to_json(td),
        },
    )))
}

/// The family's ACTIVE revisions, oldest first.
async fn active_revisions(cx: &StackCtx<'_>) -> anyhow::Result<Vec<String>> {
    let family = &cx.spec.task_family;
    let mut arns = Vec::new();
    let mut pages = cx
        .aws
        .ecs()
        .list_task_definitions()
        .family_prefix(family)
        .status(TaskDefinitionStatus::Active)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.aws(format!("failed to list task definitions of `{family}`"))?;
        for a in page.task_definition_arns() {
            // familyPrefix is a prefix: keep only this family's revisions.
            let fam = a
                .rsplit('/')
                .next()
                .and_then(|x| x.rsplit_once(':'))
                .map(|(f, _)| f);
            if fam == Some(family.as_str()) {
                arns.push(a.to_string());
            }
        }
    }
    Ok(arns)
}

fn str_list(v: &Value) -> Option<Vec<String>> {
    v.as_array().map(|a| {
        a.iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect()
    })
}

fn container_from_json(c: &Value) -> anyhow::Result<ContainerDefinition> {
    let mut b = ContainerDefinition::builder()
        .set_name(c["name"].as_str().map(str::to_string))
        .set_image(c["image"].as_str().map(str::to_string))
        .set_essential(c["essential"].as_bool())
        .set_command(str_list(&c["command"]))
        .set_entry_point(str_list(&c["entryPoint"]));
    for e in c["environment"].as_array().into_iter().flatten() {
        b = b.environment(
            KeyValuePair::builder()
                .set_name(e["name"].as_str().map(str::to_string))
                .set_value(e["value"].as_str().map(str::to_string))
                .build(),
        );
    }
    for d in c["dependsOn"].as_array().into_iter().flatten() {
        b = b.depends_on(
            ContainerDependency::builder()
                .container_name(d["containerName"].as_str().unwrap_or_default())
                .condition(ContainerCondition::from(
                    d["condition"].as_str().unwrap_or("START"),
                ))
                .build()?,
        );
    }
    for s in c["secrets"].as_array().into_iter().flatten() {
        b = b.secrets(
            Secret::builder()
                .name(s["name"].as_str().unwrap_or_default())
                .value_from(s["valueFrom"].as_str().unwrap_or_default())
                .build()?,
        );
    }
    if let Some(l) = c.get("logConfiguration") {
        let options: Option<std::collections::HashMap<String, String>> =
            l["options"].as_object().map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            });
        b = b.log_configuration(
            LogConfiguration::builder()
                .log_driver(LogDriver::from(
                    l["logDriver"].as_str().unwrap_or("awslogs"),
                ))
                .set_options(options)
                .build()?,
        );
    }
    Ok(b.build())
}

fn runtime_platform(v: &Value) -> Option<RuntimePlatform> {
    v.is_object().then(|| {
        RuntimePlatform::builder()
            .set_operating_system_family(v["operatingSystemFamily"].as_str().map(OsFamily::from))
            .set_cpu_architecture(v["cpuArchitecture"].as_str().map(CpuArchitecture::from))
            .build()
    })
}

fn is_role_not_ready(e: &anyhow::Error) -> bool {
    let text = format!("{e:#}").to_lowercase();
    text.contains("passrole")
        || (text.contains("role")
            && (text.contains("not valid")
                || text.contains("cannot be assumed")
                || text.contains("not authorized")))
}

/// The definition wanted, with the secrets' ARNs as known.
fn wanted(spec: &StackSpec, facts: &Facts) -> Value {
    let arns: BTreeMap<&'static str, String> = spec
        .secrets
        .iter()
        .filter_map(|(key, _)| facts.get(&arn_fact(key)).map(|a| (*key, a.clone())))
        .collect();
    desired(spec, &arns)
}

/// Register the definition (a new revision) with a named, bounded wait for a role
/// created moments ago. Returns the new revision's ARN.
async fn register(cx: &StackCtx<'_>, want: &Value) -> anyhow::Result<String> {
    let ecs = cx.aws.ecs();
    let family = &cx.spec.task_family;
    let containers: Vec<ContainerDefinition> = want["containerDefinitions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(container_from_json)
        .collect::<anyhow::Result<_>>()?;
    let register = || {
        let ecs = ecs.clone();
        let containers = containers.clone();
        async move {
            ecs.register_task_definition()
                .family(family)
                .network_mode(NetworkMode::from(
                    want["networkMode"].as_str().unwrap_or("awsvpc"),
                ))
                .set_requires_compatibilities(
                    str_list(&want["requiresCompatibilities"])
                        .map(|l| l.iter().map(|s| Compatibility::from(s.as_str())).collect()),
                )
                .set_cpu(want["cpu"].as_str().map(str::to_string))
                .set_memory(want["memory"].as_str().map(str::to_string))
                .set_runtime_platform(runtime_platform(&want["runtimePlatform"]))
                .set_execution_role_arn(want["executionRoleArn"].as_str().map(str::to_string))
                .set_task_role_arn(want["taskRoleArn"].as_str().map(str::to_string))
                .set_container_definitions(Some(containers))
                .set_tags(Some(tags(cx)))
                .send()
                .await
                .aws(format!("failed to register task definition `{family}`"))
        }
    };
    let out = match register().await {
        Ok(o) => o,
        Err(e) if is_role_not_ready(&e) => {
            let spinner = cx.reporter.spinner("waiting for IAM role to propagate");
            let r =
                super::retry_while(cx.iam_propagation_timeout, is_role_not_ready, register).await;
            drop(spinner);
            r?
        }
        Err(e) => return Err(e),
    };
    Ok(out
        .task_definition()
        .and_then(|t| t.task_definition_arn())
        .unwrap_or_default()
        .to_string())
}

fn tags(cx: &StackCtx) -> Vec<Tag> {
    cx.spec
        .tags()
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// Deregister the revisions in `arns` this stack owns. `ours` is a revision already
/// known to be the stack's (observed): it is not described again. Returns how many were
/// deregistered and how many were found but not owned.
async fn deregister_owned(
    cx: &StackCtx<'_>,
    arns: &[String],
    ours: Option<&str>,
) -> anyhow::Result<(usize, usize)> {
    let ecs = cx.aws.ecs();
    let results = futures::future::join_all(arns.iter().map(|arn| {
        let ecs = ecs.clone();
        async move {
            if Some(arn.as_str()) != ours {
                let d = ecs
                    .describe_task_definition()
                    .task_definition(arn)
                    .include(TaskDefinitionField::Tags)
                    .send()
                    .await
                    .aws(format!("failed to describe `{arn}`"))?;
                let owned = d.tags().iter().any(|t| {
                    t.key() == Some(super::TAG_STACK) && t.value() == Some(cx.spec.stack.as_str())
                });
                if !owned {
                    return Ok(false);
                }
            }
            match ecs
                .deregister_task_definition()
                .task_definition(arn)
                .send()
                .await
            {
                Ok(_) => Ok(true),
                // Already INACTIVE.
                Err(e) if aws::is_invalid_for_state(&e) => Ok(true),
                Err(e) => Err(e).aws(format!("failed to deregister `{arn}`")),
            }
        }
    }))
    .await;
    let mut counts = (0, 0);
    for r in results {
        if r? {
            counts.0 += 1;
        } else {
            counts.1 += 1;
        }
    }
    Ok(counts)
}

/// The stack's task definition family: one ACTIVE revision, registered anew only when
/// its content differs.
pub struct TaskDefinitionFamily {
    family: String,
    needs: Vec<Id>,
}

impl TaskDefinitionFamily {
    pub fn new(spec: &StackSpec) -> TaskDefinitionFamily {
        // The roles must exist (ECS checks that it may pass them) and the secrets' ARNs
        // be known.
        let mut needs = vec![
            Id::new(Kind::IamRole, &spec.execution_role),
            Id::new(Kind::IamRole, &spec.task_role),
        ];
        needs.extend(spec.secrets.iter().map(|(_, n)| Id::new(Kind::Secret, n)));
        TaskDefinitionFamily {
            family: spec.task_family.clone(),
            needs,
        }
    }
}

#[async_trait]
impl Resource for TaskDefinitionFamily {
    type Have = Have;

    fn kind(&self) -> Kind {
        Kind::TaskDefinition
    }

    fn name(&self) -> &str {
        &self.family
    }

    fn needs(&self) -> Vec<Id> {
        self.needs.clone()
    }

    async fn observe(&self, cx: &StackCtx<'_>, _: Intent) -> anyhow::Result<Option<Seen<Have>>> {
        observe(cx).await
    }

    fn diff(&self, spec: &StackSpec, have: &Have, facts: &Facts) -> Vec<FieldDiff> {
        diff(&wanted(spec, facts), have)
    }

    /// A tag-only change tags the revision; any other registers a new revision and
    /// deregisters the family's other ACTIVE revisions this stack owns (listed while the
    /// new one registers).
    async fn apply(
        &self,
        cx: &StackCtx<'_>,
        c: &Change,
        _: &[Change],
        seen: Option<&Seen<Have>>,
        facts: &Facts,
    ) -> anyhow::Result<Facts> {
        let ecs = cx.aws.ecs();
        let family = &self.family;
        if c.action == Action::Update && c.diff.iter().all(|d| d.field == "tags") {
            if let Some(s) = seen {
                ecs.tag_resource()
                    .resource_arn(&s.state.arn)
                    .set_tags(Some(tags(cx)))
                    .send()
                    .await
                    .aws(format!("failed to tag task definition `{family}`"))?;
            }
            return Ok(Facts::new());
        }
        let want = wanted(&cx.spec, facts);
        // Older ACTIVE revisions exist only where the observation saw one: from empty,
        // there is nothing to list.
        let (new_arn, old) = tokio::join!(register(cx, &want), async {
            if seen.is_some() {
                active_revisions(cx).await
            } else {
                Ok(Vec::new())
            }
        });
        let new_arn = new_arn?;
        let old: Vec<String> = old?.into_iter().filter(|a| *a != new_arn).collect();
        let ours = seen
            .filter(|s| s.owner == super::Owner::Us)
            .map(|s| s.state.arn.as_str());
        deregister_owned(cx, &old, ours).await?;
        Ok(Facts::new())
    }

    /// Deregister every ACTIVE revision this stack owns.
    async fn delete(
        &self,
        cx: &StackCtx<'_>,
        seen: &Seen<Have>,
        _: bool,
    ) -> anyhow::Result<Vec<Deletion>> {
        // The observed revision is known to be ours: deregistered while the others are
        // listed.
        let latest = std::slice::from_ref(&seen.state.arn);
        let (arns, first) = tokio::join!(
            active_revisions(cx),
            deregister_owned(cx, latest, Some(&seen.state.arn))
        );
        let others: Vec<String> = arns?.into_iter().filter(|a| *a != seen.state.arn).collect();
        let (d0, f0) = first?;
        let (d1, f1) = deregister_owned(cx, &others, None).await?;
        let (deregistered, foreign) = (d0 + d1, f0 + f1);
        Ok(vec![match (deregistered, foreign) {
            (0, 0) => Deletion::Absent,
            (0, _) => {
                Deletion::NotOwned(format!("{foreign} revision(s) without lackey's tags; kept"))
            }
            _ => Deletion::Deleted,
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::CpuArch;

    fn spec(arch: CpuArch) -> StackSpec {
        StackSpec {
            stack: "lackey".into(),
            account: "123456789012".into(),
            region: "us-east-1".into(),
            partition: "aws".into(),
            bucket: "b".into(),
            ecr_repository: "lackey-minion".into(),
            registry: "123456789012.dkr.ecr.us-east-1.amazonaws.com".into(),
            cluster: "lackey".into(),
            log_group: "/ecs/lackey-minion".into(),
            retention_days: None,
            execution_role: "exec".into(),
            task_role: "task".into(),
            security_group: "sg".into(),
            secrets: vec![],
            task_family: "lackey-minion".into(),
            cpu: 1024,
            memory: 4096,
            cpu_architecture: arch,
            github_app: false,
        }
    }

    #[test]
    fn the_task_runs_linux_on_the_configured_architecture() {
        let td = desired(&spec(CpuArch::Arm64), &BTreeMap::new());
        assert_eq!(
            td["runtimePlatform"],
            json!({"operatingSystemFamily": "LINUX", "cpuArchitecture": "ARM64"})
        );
        let td = desired(&spec(CpuArch::X86_64), &BTreeMap::new());
        assert_eq!(td["runtimePlatform"]["cpuArchitecture"], "X86_64");
        // It reaches RegisterTaskDefinition as the SDK's type.
        let p = runtime_platform(&td["runtimePlatform"]).unwrap();
        assert_eq!(p.cpu_architecture(), Some(&CpuArchitecture::X8664));
        assert_eq!(p.operating_system_family(), Some(&OsFamily::Linux));
    }

    #[test]
    fn a_changed_or_missing_runtime_platform_is_a_diff() {
        let arm = desired(&spec(CpuArch::Arm64), &BTreeMap::new());
        let x86 = desired(&spec(CpuArch::X86_64), &BTreeMap::new());
        let have = |json: Value| Have {
            arn: "arn:aws:ecs:us-east-1:123456789012:task-definition/lackey-minion:1".into(),
            json,
        };
        assert!(diff(&arm, &have(arm.clone())).is_empty());
        let d = diff(&arm, &have(x86.clone()));
        assert_eq!(
            d.iter().map(|f| f.field.as_str()).collect::<Vec<_>>(),
            ["runtimePlatform.cpuArchitecture"]
        );
        // A revision registered before lackey wrote runtimePlatform differs too.
        let mut old = x86.clone();
        old.as_object_mut().unwrap().remove("runtimePlatform");
        let d = diff(&x86, &have(old));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].field, "runtimePlatform");
        assert_eq!(d[0].old, Value::Null);
        assert_eq!(d[0].new["cpuArchitecture"], "X86_64");
    }

    #[test]
    fn only_the_sidecar_receives_secrets_and_the_minion_waits_for_it() {
        let mut with_app = spec(CpuArch::X86_64);
        with_app.github_app = true;
        let td = desired(&with_app, &BTreeMap::new());
        let iso = isolation(&td);
        assert!(iso.isolated() && iso.depends_on_sidecar, "{iso:?}");
        assert_eq!(
            iso.sidecar_secrets.as_deref(),
            Some(
                &[
                    "ANTHROPIC_API_KEY".to_string(),
                    "LACKEY_GITHUB_APP_PRIVATE_KEY".to_string()
                ][..]
            )
        );
        let minion = &td["containerDefinitions"][0];
        assert_eq!(minion["name"], MINION_CONTAINER);
        assert!(minion.get("secrets").is_none() && minion.get("environment").is_none());
        // Both essential: the task ends when either ends.
        assert!(td["containerDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["essential"] == true));
        // Without a GitHub App, the sidecar gets the Anthropic key alone.
        let td = desired(&spec(CpuArch::X86_64), &BTreeMap::new());
        assert_eq!(
            isolation(&td).sidecar_secrets.as_deref(),
            Some(&["ANTHROPIC_API_KEY".to_string()][..])
        );
        // dependsOn survives the way to RegisterTaskDefinition and back.
        let sdk = container_from_json(minion).unwrap();
        assert_eq!(sdk.depends_on()[0].container_name(), SIDECAR_CONTAINER);
        assert_eq!(container_json(&sdk)["dependsOn"], minion["dependsOn"]);
        // A hand-made definition: one container with the secrets.
        let hand = json!({"containerDefinitions": [{"name": "minion", "secrets": [{"name": "ANTHROPIC_API_KEY", "valueFrom": "x"}]}]});
        let iso = isolation(&hand);
        assert!(!iso.isolated());
        assert_eq!(iso.injected(), ["ANTHROPIC_API_KEY".to_string()]);
        // A registered revision of the old shape differs from the wanted one.
        let have = Have {
            arn: "arn:aws:ecs:us-east-1:123456789012:task-definition/lackey-minion:1".into(),
            json: hand,
        };
        let fields: Vec<String> = diff(&td, &have).into_iter().map(|d| d.field).collect();
        assert!(
            fields
                .iter()
                .any(|f| f.starts_with("containerDefinitions[sidecar]")),
            "{fields:?}"
        );
    }
}
