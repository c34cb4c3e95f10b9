//! The stack: the AWS resources cloud runs need, reconciled.
//!
//! Each resource follows one contract: *observe* what AWS holds, *diff* it against
//! what `lackey.toml` declares (a pure function; the plan is a value), then *apply* or
//! *delete*. Nothing prints inside a resource; progress goes through the [`Reporter`].
//!
//! What must stay true:
//! * Ownership: everything lackey creates carries `lackey:stack=<name>` and
//!   `managed-by=lackey`. A resource without its stack's tag is `unowned`: reported,
//!   never changed (unless `up --adopt`), never deleted.
//! * Idempotence: a converged stack plans no change and `up` then makes no mutating
//!   call. Diffs are semantic (policy documents by meaning, task definitions without
//!   the defaults AWS fills in).
//! * Convergence after interruption: every create is atomic with its ownership tags
//!   (the S3 bucket, whose API cannot tag on create, is covered by the [`journal`]), and
//!   every apply is safe to run again, so `up` and `down` converge after a kill -9.

pub mod bucket;
pub mod cluster;
pub mod ecr;
pub mod journal;
pub mod log_group;
pub mod network;
pub mod operator;
pub mod policy;
pub mod resource;
pub mod roles;
pub mod secrets;
pub mod security_group;
pub mod task_definition;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

pub use network::discover;

use crate::aws::Aws;
use crate::config::{keys, Settings};
use crate::output::Reporter;
use resource::{Intent, Node, Slot};

pub use crate::ownership::{started_by, TAG_MANAGED_BY as TAG_MANAGED, TAG_STACK};
pub const EXECUTION_POLICY_ARN_SUFFIX: &str =
    "policy/service-role/AmazonECSTaskExecutionRolePolicy";
pub const TASK_POLICY_NAME: &str = "lackey-s3-artifacts";
pub const EXECUTION_POLICY_NAME: &str = "lackey-secrets";

/// Resource kinds, as `--json` names them (docs/json-output.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    S3Bucket,
    EcrRepository,
    EcsCluster,
    LogGroup,
    IamRole,
    IamRolePolicy,
    SecurityGroup,
    Secret,
    TaskDefinition,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::S3Bucket => "s3_bucket",
            Kind::EcrRepository => "ecr_repository",
            Kind::EcsCluster => "ecs_cluster",
            Kind::LogGroup => "log_group",
            Kind::IamRole => "iam_role",
            Kind::IamRolePolicy => "iam_role_policy",
            Kind::SecurityGroup => "security_group",
            Kind::Secret => "secret",
            Kind::TaskDefinition => "task_definition",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Delete,
    Noop,
    Unowned,
}

/// One field that differs: what AWS holds and what the config wants.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldDiff {
    pub field: String,
    pub old: Value,
    pub new: Value,
}

impl FieldDiff {
    pub fn new(field: &str, old: impl Into<Value>, new: impl Into<Value>) -> FieldDiff {
        FieldDiff {
            field: field.to_string(),
            old: old.into(),
            new: new.into(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Change {
    pub kind: Kind,
    pub name: String,
    pub action: Action,
    pub diff: Vec<FieldDiff>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Change {
    pub fn new(kind: Kind, name: &str, action: Action) -> Change {
        Change {
            kind,
            name: name.to_string(),
            action,
            diff: vec![],
            notes: vec![],
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub delete: usize,
    pub noop: usize,
}

/// What `plan`, `up` and `down` print with `--json` (docs/json-output.md).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub stack: String,
    pub changes: Vec<Change>,
    pub summary: Summary,
}

impl Report {
    pub fn new(stack: &str, changes: Vec<Change>) -> Report {
        let mut summary = Summary::default();
        for c in &changes {
            match c.action {
                Action::Create => summary.create += 1,
                Action::Update => summary.update += 1,
                Action::Delete => summary.delete += 1,
                Action::Noop => summary.noop += 1,
                Action::Unowned => {}
            }
        }
        Report {
            stack: stack.to_string(),
            changes,
            summary,
        }
    }

    pub fn has_changes(&self) -> bool {
        self.summary.create + self.summary.update + self.summary.delete > 0
    }
}

/// Who owns an observed resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// This stack's tag is on it (or the journal shows this stack created it).
    Us,
    /// Another lackey stack's.
    OtherStack(String),
    /// Another AWS account's (an S3 bucket name is global).
    OtherAccount,
    /// No lackey tag at all.
    Nobody,
}

/// An observed resource: its tags and its kind-specific state.
#[derive(Clone, Debug)]
pub struct Seen<T> {
    pub tags: BTreeMap<String, String>,
    pub owner: Owner,
    pub state: T,
}

impl<T> Seen<T> {
    pub fn new(stack: &str, tags: BTreeMap<String, String>, state: T) -> Seen<T> {
        let owner = match tags.get(TAG_STACK) {
            Some(s) if s == stack => Owner::Us,
            Some(other) => Owner::OtherStack(other.clone()),
            None => Owner::Nobody,
        };
        Seen { tags, owner, state }
    }
}

/// The stack as `lackey.toml` declares it.
#[derive(Clone, Debug)]
pub struct StackSpec {
    pub stack: String,
    pub account: String,
    pub region: String,
    pub partition: String,
    pub bucket: String,
    pub ecr_repository: String,
    pub registry: String,
    pub cluster: String,
    pub log_group: String,
    pub retention_days: Option<i32>,
    pub execution_role: String,
    pub task_role: String,
    pub security_group: String,
    /// (key in [secrets], secret name)
    pub secrets: Vec<(&'static str, String)>,
    pub task_family: String,
    pub cpu: u32,
    pub memory: u32,
    /// `runtimePlatform.cpuArchitecture`: X86_64 or ARM64.
    pub cpu_architecture: crate::image::CpuArch,
    /// A GitHub App is configured: the task gets its key injected (ECS refuses to start
    /// a task whose injected secret has no value, so it is wired only when used).
    pub github_app: bool,
}

impl StackSpec {
    pub fn from_settings(s: &Settings) -> anyhow::Result<StackSpec> {
        let region = s.require(&keys::AWS_REGION)?.to_string();
        Ok(StackSpec {
            stack: s.require(&keys::STACK_NAME)?.to_string(),
            account: s.require(&keys::AWS_ACCOUNT_ID)?.to_string(),
            partition: partition(&region).to_string(),
            bucket: s.require(&keys::BUCKET_NAME)?.to_string(),
            ecr_repository: s.require(&keys::ECR_REPOSITORY)?.to_string(),
            registry: s.require(&keys::ECR_REGISTRY)?.to_string(),
            cluster: s.require(&keys::ECS_CLUSTER)?.to_string(),
            log_group: s.require(&keys::LOGS_GROUP)?.to_string(),
            retention_days: s
                .get(&keys::LOGS_RETENTION_DAYS)
                .map(str::parse)
                .transpose()?,
            execution_role: s.require(&keys::IAM_EXECUTION_ROLE)?.to_string(),
            task_role: s.require(&keys::IAM_TASK_ROLE)?.to_string(),
            security_group: s.require(&keys::NETWORK_SECURITY_GROUP)?.to_string(),
            secrets: vec![
                (
                    "github_app_key",
                    s.require(&keys::SECRETS_GITHUB_APP_KEY)?.to_string(),
                ),
                (
                    "anthropic_api_key",
                    s.require(&keys::SECRETS_ANTHROPIC_API_KEY)?.to_string(),
                ),
            ],
            task_family: s.require(&keys::ECS_TASK_FAMILY)?.to_string(),
            github_app: s.get(&keys::GITHUB_APP_ID).is_some(),
            cpu: s.number(&keys::ECS_CPU)?,
            memory: s.number(&keys::ECS_MEMORY)?,
            cpu_architecture: crate::image::CpuArch::parse(s.require(&keys::ECS_CPU_ARCHITECTURE)?)
                .unwrap_or(crate::image::CpuArch::HOST),
            region,
        })
    }

    pub fn tags(&self) -> Vec<(String, String)> {
        vec![
            (TAG_STACK.to_string(), self.stack.clone()),
            (TAG_MANAGED.to_string(), "lackey".to_string()),
        ]
    }

    pub fn role_arn(&self, name: &str) -> String {
        format!("arn:{}:iam::{}:role/{name}", self.partition, self.account)
    }

    pub fn execution_policy_arn(&self) -> String {
        format!(
            "arn:{}:iam::aws:{EXECUTION_POLICY_ARN_SUFFIX}",
            self.partition
        )
    }

    pub fn image_uri(&self) -> String {
        format!("{}/{}:latest", self.registry, self.ecr_repository)
    }

    /// `startedBy` of the tasks this stack runs.
    pub fn started_by(&self) -> String {
        started_by(&self.stack)
    }

    pub fn secret_name(&self, key: &str) -> &str {
        self.secrets
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, n)| n.as_str())
            .unwrap_or_default()
    }
}

/// The AWS partition of a region.
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// Everything a resource needs to observe and act.
pub struct StackCtx<'a> {
    pub aws: &'a Aws,
    pub spec: StackSpec,
    pub reporter: &'a dyn Reporter,
    pub journal: journal::Journal,
    /// How long `down` retries a security group still held by a network interface.
    pub sg_delete_timeout: Duration,
    /// How long a new IAM role may take to become usable.
    pub iam_propagation_timeout: Duration,
}

/// Every resource of the stack, in the order plans and reports list them. Adding a
/// resource to the stack is one file implementing [`resource::Resource`] and one line
/// here.
pub fn resources(spec: &StackSpec) -> Vec<Box<dyn Node>> {
    let mut all: Vec<Box<dyn Node>> = vec![
        Box::new(Slot::new(bucket::Bucket::new(spec))),
        Box::new(Slot::new(ecr::Repository::new(spec))),
        Box::new(Slot::new(cluster::Cluster::new(spec))),
        Box::new(Slot::new(log_group::LogGroup::new(spec))),
        Box::new(Slot::new(roles::Role::execution(spec))),
        Box::new(Slot::new(roles::Role::task(spec))),
        Box::new(Slot::new(security_group::SecurityGroup::new(spec))),
    ];
    for s in secrets::Secret::all(spec) {
        all.push(Box::new(Slot::new(s)));
    }
    all.push(Box::new(Slot::new(
        task_definition::TaskDefinitionFamily::new(spec),
    )));
    all
}

/// Observe the stack and refuse one whose names another owner holds.
async fn observed(cx: &StackCtx<'_>, intent: Intent) -> anyhow::Result<Vec<Box<dyn Node>>> {
    let nodes = resources(&cx.spec);
    resource::observe_all(cx, &nodes, intent).await?;
    resource::refuse_foreign(&cx.spec, &nodes)?;
    Ok(nodes)
}

/// `lackey plan`.
pub async fn plan_stack(cx: &StackCtx<'_>, adopt: bool) -> anyhow::Result<Report> {
    let nodes = observed(cx, Intent::Plan).await?;
    Ok(Report::new(
        &cx.spec.stack,
        resource::plan(&cx.spec, &nodes, adopt),
    ))
}

/// `lackey up`: apply the plan, independent resources concurrently, dependencies first.
pub async fn up(cx: &StackCtx<'_>, adopt: bool) -> anyhow::Result<Report> {
    let nodes = observed(cx, Intent::Plan).await?;
    let changes = resource::plan(&cx.spec, &nodes, adopt);
    if changes.iter().all(|c| c.action == Action::Unowned) {
        // A stack made by hand (or by another tool) under these names: doing nothing
        // and calling it success would leave the user believing lackey manages it.
        return Err(crate::error::Fail::new(format!(
            "every resource of stack `{}` already exists without lackey's tags ({} resources); nothing changed",
            cx.spec.stack,
            changes.len()
        ))
        .with_hint("if it is your stack, `lackey up --adopt` tags every resource and manages it from now on")
        .into());
    }
    let spinner = cx
        .reporter
        .spinner(&format!("applying stack `{}`", cx.spec.stack));
    let (applied, errors) = resource::apply_all(cx, &nodes, adopt).await;
    drop(spinner);
    if let Some(first) = errors.into_iter().next() {
        return Err(first.context(format!(
            "`lackey up` of stack `{}` did not finish; run it again to continue",
            cx.spec.stack
        )));
    }
    Ok(Report::new(&cx.spec.stack, applied))
}

/// `lackey down`: delete what this stack owns (its running tasks stopped first).
pub async fn down(cx: &StackCtx<'_>, force: bool) -> anyhow::Result<Report> {
    let nodes = observed(cx, Intent::Delete).await?;
    let spinner = cx
        .reporter
        .spinner(&format!("deleting stack `{}`", cx.spec.stack));
    let (changes, errors) = resource::delete_all(cx, &nodes, force).await?;
    drop(spinner);
    if let Some(first) = errors.into_iter().next() {
        return Err(first.context(format!(
            "`lackey down` of stack `{}` did not finish; run it again to continue",
            cx.spec.stack
        )));
    }
    Ok(Report::new(&cx.spec.stack, changes))
}

/// Who holds a resource, in words.
pub fn owner_label(owner: &Owner) -> String {
    match owner {
        Owner::Us => "this stack".into(),
        Owner::OtherStack(s) => format!("lackey stack `{s}`"),
        Owner::OtherAccount => "another AWS account".into(),
        Owner::Nobody => "nobody (no lackey tags)".into(),
    }
}

/// The result of deleting one resource.
#[derive(Debug, Clone)]
pub enum Deletion {
    Deleted,
    Absent,
    NotOwned(String),
    Kept(String),
}

/// Retry `f` while it fails with an error `retryable` accepts, for at most `limit`,
/// with exponential backoff (0.5 s doubling to 8 s).
pub async fn retry_while<T, F, Fut>(
    limit: Duration,
    mut retryable: impl FnMut(&anyhow::Error) -> bool,
    mut f: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let start = Instant::now();
    let mut wait = Duration::from_millis(500);
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if retryable(&e) && start.elapsed() + wait < limit => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(8));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Tags as the map observe functions return.
pub fn tag_map(
    pairs: impl IntoIterator<Item = (Option<String>, Option<String>)>,
) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .filter_map(|(k, v)| Some((k?, v.unwrap_or_default())))
        .collect()
}
