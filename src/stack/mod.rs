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
pub mod policy;
pub mod roles;
pub mod secrets;
pub mod security_group;
pub mod task_definition;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

pub use network::discover;

use crate::aws::Aws;
use crate::config::{keys, Settings};
use crate::output::{Reporter, Tone};

pub const TAG_STACK: &str = "lackey:stack";
pub const TAG_MANAGED: &str = "managed-by";
pub const EXECUTION_POLICY_ARN_SUFFIX: &str =
    "policy/service-role/AmazonECSTaskExecutionRolePolicy";
pub const TASK_POLICY_NAME: &str = "lackey-s3-artifacts";
pub const EXECUTION_POLICY_NAME: &str = "lackey-secrets";
const KNOWN_AFTER_APPLY: &str = "(known after apply)";

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
    pub cpu_architecture: crate::runner::image::CpuArch,
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
            cpu_architecture: crate::runner::image::CpuArch::parse(
                s.require(&keys::ECS_CPU_ARCHITECTURE)?,
            )
            .unwrap_or(crate::runner::image::CpuArch::HOST),
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

/// `startedBy` of the tasks a stack runs (ECS allows 36 characters): how `down`,
/// `logs` and `stop` find them.
pub fn started_by(stack: &str) -> String {
    format!("lackey:{stack}").chars().take(36).collect()
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

/// Every resource as AWS holds it.
pub struct Observed {
    pub bucket: Option<Seen<bucket::Have>>,
    pub ecr: Option<Seen<ecr::Have>>,
    pub cluster: Option<Seen<cluster::Have>>,
    pub log_group: Option<Seen<log_group::Have>>,
    pub execution_role: Option<Seen<roles::Have>>,
    pub task_role: Option<Seen<roles::Have>>,
    pub execution_policy: Option<roles::PolicyHave>,
    pub task_policy: Option<roles::PolicyHave>,
    pub security_group: Option<Seen<security_group::Have>>,
    pub secrets: Vec<Option<Seen<secrets::Have>>>,
    pub task_definition: Option<Seen<task_definition::Have>>,
}

/// Observe every resource at once.
pub async fn observe(cx: &StackCtx<'_>) -> anyhow::Result<Observed> {
    let spec = &cx.spec;
    let (b, e, c, l, er, tr, ep, tp, sg, s0, s1, td) = tokio::join!(
        bucket::observe(cx),
        ecr::observe(cx),
        cluster::observe(cx),
        log_group::observe(cx),
        roles::observe(cx, &spec.execution_role),
        roles::observe(cx, &spec.task_role),
        roles::observe_policy(cx, &spec.execution_role, EXECUTION_POLICY_NAME),
        roles::observe_policy(cx, &spec.task_role, TASK_POLICY_NAME),
        security_group::observe(cx),
        secrets::observe(cx, &spec.secrets[0].1),
        secrets::observe(cx, &spec.secrets[1].1),
        task_definition::observe(cx),
    );
    Ok(Observed {
        bucket: b?,
        ecr: e?,
        cluster: c?,
        log_group: l?,
        execution_role: er?,
        task_role: tr?,
        execution_policy: ep?,
        task_policy: tp?,
        security_group: sg?,
        secrets: vec![s0?, s1?],
        task_definition: td?,
    })
}

/// The change for one resource, from its observation and its field diff.
fn change_for<T>(
    kind: Kind,
    name: &str,
    seen: Option<&Seen<T>>,
    diff: impl FnOnce(&T) -> Vec<FieldDiff>,
    adopt: bool,
) -> Change {
    match seen {
        None => Change::new(kind, name, Action::Create),
        Some(s) => {
            let mut c = Change::new(kind, name, Action::Noop);
            match &s.owner {
                // Proved ours without the tag (an interrupted create): the tag goes on.
                Owner::Us if !s.tags.contains_key(TAG_STACK) => c.diff.push(FieldDiff::new(
                    "tags",
                    "(none)",
                    "lackey:stack, managed-by=lackey",
                )),
                Owner::Us => {}
                // Never taken over, not even with --adopt: `refuse_foreign` stops
                // plan, up and down before they get here.
                Owner::OtherStack(_) | Owner::OtherAccount => {
                    c.action = Action::Unowned;
                    c.notes
                        .push(format!("belongs to {}; left alone", owner_label(&s.owner)));
                    return c;
                }
                Owner::Nobody if !adopt => {
                    c.action = Action::Unowned;
                    c.notes.push("exists without lackey's tags; left alone (`lackey up --adopt` takes it over)".into());
                    return c;
                }
                _ => c.diff.push(FieldDiff::new(
                    "tags",
                    s.tags
                        .get(TAG_STACK)
                        .map(|t| format!("{TAG_STACK}={t}"))
                        .unwrap_or_else(|| "(none)".into()),
                    "lackey:stack, managed-by=lackey",
                )),
            }
            c.diff.extend(diff(&s.state));
            if !c.diff.is_empty() {
                c.action = Action::Update;
            }
            c
        }
    }
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

/// Every observed resource with its kind, name and owner.
fn owners<'o>(spec: &'o StackSpec, obs: &'o Observed) -> Vec<(Kind, &'o str, &'o Owner)> {
    let mut all: Vec<(Kind, &str, Option<&Owner>)> = vec![
        (
            Kind::S3Bucket,
            spec.bucket.as_str(),
            obs.bucket.as_ref().map(|s| &s.owner),
        ),
        (
            Kind::EcrRepository,
            spec.ecr_repository.as_str(),
            obs.ecr.as_ref().map(|s| &s.owner),
        ),
        (
            Kind::EcsCluster,
            spec.cluster.as_str(),
            obs.cluster.as_ref().map(|s| &s.owner),
        ),
        (
            Kind::LogGroup,
            spec.log_group.as_str(),
            obs.log_group.as_ref().map(|s| &s.owner),
        ),
        (
            Kind::IamRole,
            spec.execution_role.as_str(),
            obs.execution_role.as_ref().map(|s| &s.owner),
        ),
        (
            Kind::IamRole,
            spec.task_role.as_str(),
            obs.task_role.as_ref().map(|s| &s.owner),
        ),
        (
            Kind::SecurityGroup,
            spec.security_group.as_str(),
            obs.security_group.as_ref().map(|s| &s.owner),
        ),
    ];
    for ((_, name), seen) in spec.secrets.iter().zip(&obs.secrets) {
        all.push((Kind::Secret, name.as_str(), seen.as_ref().map(|s| &s.owner)));
    }
    all.push((
        Kind::TaskDefinition,
        spec.task_family.as_str(),
        obs.task_definition.as_ref().map(|s| &s.owner),
    ));
    all.into_iter()
        .filter_map(|(k, n, o)| o.map(|o| (k, n, o)))
        .collect()
}

/// Refuse to plan, apply or delete a stack whose names another owner holds: two stacks
/// must never share a resource, and reporting one as "up to date" would hide that.
pub fn refuse_foreign(spec: &StackSpec, obs: &Observed) -> anyhow::Result<()> {
    let foreign: Vec<String> = owners(spec, obs)
        .into_iter()
        .filter(|(_, _, o)| matches!(o, Owner::OtherStack(_) | Owner::OtherAccount))
        .map(|(k, n, o)| format!("{} `{n}` belongs to {}", k.as_str(), owner_label(o)))
        .collect();
    if foreign.is_empty() {
        return Ok(());
    }
    Err(crate::error::Fail::new(format!(
        "stack `{}` uses {} resource name(s) held by another owner: {}",
        spec.stack,
        foreign.len(),
        foreign.join("; ")
    ))
    .with_hint(format!(
        "give stack `{}` names of its own: remove the explicit names from lackey.toml so they derive from [stack] name (`lackey init --stack {} --force` writes them); if you meant the owner's stack, set its [stack] name instead",
        spec.stack, spec.stack
    ))
    .into())
}

/// The plan: a pure function of the spec and the observation.
pub fn plan(spec: &StackSpec, obs: &Observed, adopt: bool) -> Vec<Change> {
    let mut changes = vec![
        change_for(
            Kind::S3Bucket,
            &spec.bucket,
            obs.bucket.as_ref(),
            bucket::diff,
            adopt,
        ),
        change_for(
            Kind::EcrRepository,
            &spec.ecr_repository,
            obs.ecr.as_ref(),
            ecr::diff,
            adopt,
        ),
        change_for(
            Kind::EcsCluster,
            &spec.cluster,
            obs.cluster.as_ref(),
            |_| vec![],
            adopt,
        ),
        change_for(
            Kind::LogGroup,
            &spec.log_group,
            obs.log_group.as_ref(),
            |h| log_group::diff(spec, h),
            adopt,
        ),
    ];
    for (role, seen, policy_name, policy_have, want_policy, managed) in [
        (
            &spec.execution_role,
            obs.execution_role.as_ref(),
            EXECUTION_POLICY_NAME,
            obs.execution_policy.as_ref(),
            roles::execution_policy(spec),
            vec![spec.execution_policy_arn()],
        ),
        (
            &spec.task_role,
            obs.task_role.as_ref(),
            TASK_POLICY_NAME,
            obs.task_policy.as_ref(),
            roles::task_policy(spec),
            vec![],
        ),
    ] {
        changes.push(change_for(
            Kind::IamRole,
            role,
            seen,
            |h| roles::diff(h, &managed),
            adopt,
        ));
        // An inline policy belongs to its role: it is ours when the role is.
        let role_change = changes.last().map(|c| c.action).unwrap_or(Action::Create);
        let name = format!("{role}/{policy_name}");
        let mut pc = Change::new(Kind::IamRolePolicy, &name, Action::Noop);
        match (role_change, policy_have) {
            (Action::Unowned, _) => {
                pc.action = Action::Unowned;
                pc.notes
                    .push(format!("belongs to the unowned role `{role}`"));
            }
            (_, None) => pc.action = Action::Create,
            (_, Some(have)) => {
                if !policy::same(&have.document, &want_policy) {
                    pc.action = Action::Update;
                    pc.diff.push(FieldDiff::new(
                        "document",
                        policy::canonical(&have.document)
                            .unwrap_or(Value::String(have.document.clone())),
                        policy::canonical(&want_policy).unwrap_or_default(),
                    ));
                }
            }
        }
        changes.push(pc);
    }
    changes.push(change_for(
        Kind::SecurityGroup,
        &spec.security_group,
        obs.security_group.as_ref(),
        security_group::diff,
        adopt,
    ));
    for ((_, name), seen) in spec.secrets.iter().zip(&obs.secrets) {
        let mut c = change_for(Kind::Secret, name, seen.as_ref(), secrets::diff, adopt);
        match seen {
            Some(s) if !s.state.has_value && c.action != Action::Unowned => c
                .notes
                .push(format!("has no value yet: run `lackey secret put {name}`")),
            None => c.notes.push(format!(
                "created without a value: then run `lackey secret put {name}`"
            )),
            _ => {}
        }
        changes.push(c);
    }
    let want = task_definition::desired(spec, &secret_arns(spec, obs));
    changes.push(change_for(
        Kind::TaskDefinition,
        &spec.task_family,
        obs.task_definition.as_ref(),
        |h| task_definition::diff(&want, h),
        adopt,
    ));
    changes
}

/// The secrets' ARNs where known (they are needed by the task definition).
fn secret_arns(spec: &StackSpec, obs: &Observed) -> BTreeMap<&'static str, String> {
    spec.secrets
        .iter()
        .zip(&obs.secrets)
        .map(|((key, _), seen)| {
            (
                *key,
                seen.as_ref()
                    .map(|s| s.state.arn.clone())
                    .unwrap_or_else(|| KNOWN_AFTER_APPLY.to_string()),
            )
        })
        .collect()
}

/// `lackey plan`.
pub async fn plan_stack(cx: &StackCtx<'_>, adopt: bool) -> anyhow::Result<Report> {
    let obs = observe(cx).await?;
    refuse_foreign(&cx.spec, &obs)?;
    Ok(Report::new(&cx.spec.stack, plan(&cx.spec, &obs, adopt)))
}

fn describe(c: &Change) -> String {
    let mut s = format!("{} `{}`", c.kind.as_str(), c.name);
    if !c.diff.is_empty() {
        let fields: Vec<&str> = c.diff.iter().map(|d| d.field.as_str()).collect();
        s.push_str(&format!(" ({})", fields.join(", ")));
    }
    s
}

fn report_done(cx: &StackCtx, c: &Change, started: Instant) {
    let (verb, tone) = match c.action {
        Action::Create => ("Created", Tone::Good),
        Action::Update => ("Updated", Tone::Warn),
        Action::Delete => ("Deleted", Tone::Bad),
        Action::Noop => return,
        Action::Unowned => ("Unowned", Tone::Warn),
    };
    cx.reporter.status(
        verb,
        tone,
        &format!("{} in {:.1}s", describe(c), started.elapsed().as_secs_f64()),
    );
}

/// Apply one change with `f`, reporting it as it completes.
async fn step<F, Fut>(cx: &StackCtx<'_>, c: &Change, f: F) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    if !matches!(c.action, Action::Create | Action::Update) {
        if c.action == Action::Unowned {
            cx.reporter.warn(&format!(
                "{} `{}` {}",
                c.kind.as_str(),
                c.name,
                c.notes.join("; ")
            ));
        }
        return Ok(());
    }
    let t0 = Instant::now();
    f().await?;
    report_done(cx, c, t0);
    Ok(())
}

/// `lackey up`: apply the plan, independent resources concurrently, dependencies first.
#[allow(
    clippy::too_many_lines,
    reason = "being replaced by the generic Resource driver (issue 13)"
)]
pub async fn up(cx: &StackCtx<'_>, adopt: bool) -> anyhow::Result<Report> {
    let obs = observe(cx).await?;
    refuse_foreign(&cx.spec, &obs)?;
    let changes = plan(&cx.spec, &obs, adopt);
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
    let find = |kind: Kind, name: &str| {
        changes
            .iter()
            .find(|c| c.kind == kind && c.name == name)
            .cloned()
            .unwrap_or_else(|| Change::new(kind, name, Action::Noop))
    };
    let spec = &cx.spec;
    let spinner = cx
        .reporter
        .spinner(&format!("applying stack `{}`", spec.stack));
    let c_bucket = find(Kind::S3Bucket, &spec.bucket);
    let c_ecr = find(Kind::EcrRepository, &spec.ecr_repository);
    let c_cluster = find(Kind::EcsCluster, &spec.cluster);
    let c_logs = find(Kind::LogGroup, &spec.log_group);
    let c_sg = find(Kind::SecurityGroup, &spec.security_group);
    let c_exec = find(Kind::IamRole, &spec.execution_role);
    let c_exec_p = find(
        Kind::IamRolePolicy,
        &format!("{}/{EXECUTION_POLICY_NAME}", spec.execution_role),
    );
    let c_task = find(Kind::IamRole, &spec.task_role);
    let c_task_p = find(
        Kind::IamRolePolicy,
        &format!("{}/{TASK_POLICY_NAME}", spec.task_role),
    );
    let c_secrets: Vec<Change> = spec
        .secrets
        .iter()
        .map(|(_, n)| find(Kind::Secret, n))
        .collect();
    let secret_states: Vec<Option<secrets::Have>> = obs
        .secrets
        .iter()
        .map(|s| s.as_ref().map(|s| s.state.clone()))
        .collect();
    let exec_policy = roles::execution_policy(spec);
    let task_policy = roles::task_policy(spec);
    let exec_managed = vec![spec.execution_policy_arn()];
    let results = futures::join!(
        step(cx, &c_bucket, || bucket::apply(cx, &c_bucket)),
        step(cx, &c_ecr, || ecr::apply(cx, &c_ecr)),
        step(cx, &c_cluster, || cluster::apply(cx, &c_cluster)),
        step(cx, &c_logs, || log_group::apply(cx, &c_logs)),
        step(cx, &c_sg, || security_group::apply(
            cx,
            &c_sg,
            obs.security_group.as_ref()
        )),
        async {
            step(cx, &c_exec, || {
                roles::apply(cx, &c_exec, obs.execution_role.as_ref(), &exec_managed)
            })
            .await?;
            step(cx, &c_exec_p, || {
                roles::put_policy(
                    cx,
                    &spec.execution_role,
                    EXECUTION_POLICY_NAME,
                    &exec_policy,
                )
            })
            .await
        },
        async {
            step(cx, &c_task, || {
                roles::apply(cx, &c_task, obs.task_role.as_ref(), &[])
            })
            .await?;
            step(cx, &c_task_p, || {
                roles::put_policy(cx, &spec.task_role, TASK_POLICY_NAME, &task_policy)
            })
            .await
        },
        async {
            let mut arns = BTreeMap::new();
            for (((key, name), c), have) in spec.secrets.iter().zip(&c_secrets).zip(&secret_states)
            {
                let t0 = Instant::now();
                let arn = match c.action {
                    Action::Create | Action::Update => {
                        let arn = secrets::apply(cx, c, name, have.as_ref()).await?;
                        report_done(cx, c, t0);
                        Some(arn)
                    }
                    Action::Unowned => {
                        cx.reporter.warn(&format!(
                            "{} `{}` {}",
                            c.kind.as_str(),
                            c.name,
                            c.notes.join("; ")
                        ));
                        have.as_ref().map(|h| h.arn.clone())
                    }
                    _ => have.as_ref().map(|h| h.arn.clone()),
                };
                if let Some(a) = arn {
                    arns.insert(*key, a);
                }
            }
            Ok::<_, anyhow::Error>(arns)
        },
    );
    let (r_bucket, r_ecr, r_cluster, r_logs, r_sg, r_exec, r_task, r_secrets) = results;
    let mut errors: Vec<anyhow::Error> = [r_bucket, r_ecr, r_cluster, r_logs, r_sg, r_exec, r_task]
        .into_iter()
        .filter_map(Result::err)
        .collect();
    let arns = match r_secrets {
        Ok(a) => Some(a),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let mut final_changes = changes.clone();
    if errors.is_empty() {
        // The task definition needs the roles, the log group and the secrets' ARNs.
        let arns = arns.unwrap_or_default();
        let want = task_definition::desired(spec, &arns);
        let mut c_td = find(Kind::TaskDefinition, &spec.task_family);
        // The plan may have shown unknown ARNs; decide again with the real ones.
        if let Some(have) = obs.task_definition.as_ref() {
            let recomputed = change_for(
                Kind::TaskDefinition,
                &spec.task_family,
                Some(have),
                |h| task_definition::diff(&want, h),
                adopt,
            );
            c_td = recomputed;
            if let Some(slot) = final_changes
                .iter_mut()
                .find(|c| c.kind == Kind::TaskDefinition)
            {
                *slot = c_td.clone();
            }
        }
        if let Err(e) = step(cx, &c_td, || {
            task_definition::apply(cx, &c_td, &want, obs.task_definition.as_ref())
        })
        .await
        {
            errors.push(e);
        }
    }
    drop(spinner);
    if let Some(first) = errors.into_iter().next() {
        return Err(first.context(format!(
            "`lackey up` of stack `{}` did not finish; run it again to continue",
            spec.stack
        )));
    }
    Ok(Report::new(&spec.stack, final_changes))
}

/// What `down` did with one resource.
fn deleted(kind: Kind, name: &str, outcome: Deletion) -> Change {
    match outcome {
        Deletion::Deleted => Change::new(kind, name, Action::Delete),
        Deletion::Absent => Change::new(kind, name, Action::Noop),
        Deletion::NotOwned(note) => {
            let mut c = Change::new(kind, name, Action::Unowned);
            c.notes.push(note);
            c
        }
        Deletion::Kept(note) => {
            let mut c = Change::new(kind, name, Action::Noop);
            c.notes.push(note);
            c
        }
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

fn not_owned(owner: &Owner) -> Option<Deletion> {
    match owner {
        Owner::Us => None,
        Owner::OtherStack(_) | Owner::OtherAccount => Some(Deletion::NotOwned(format!(
            "belongs to {}; kept",
            owner_label(owner)
        ))),
        Owner::Nobody => Some(Deletion::NotOwned("has no lackey tags; kept".into())),
    }
}

/// `lackey down`: delete what this stack owns, in reverse dependency order.
pub async fn down(cx: &StackCtx<'_>, force: bool) -> anyhow::Result<Report> {
    let obs = observe(cx).await?;
    refuse_foreign(&cx.spec, &obs)?;
    let spec = &cx.spec;
    let spinner = cx
        .reporter
        .spinner(&format!("deleting stack `{}`", spec.stack));
    let report = |c: Change, t0: Instant| {
        match c.action {
            Action::Delete => report_done(cx, &c, t0),
            Action::Unowned => cx.reporter.warn(&format!(
                "{} `{}` {}",
                c.kind.as_str(),
                c.name,
                c.notes.join("; ")
            )),
            Action::Noop if !c.notes.is_empty() => cx.reporter.warn(&format!(
                "{} `{}` {}",
                c.kind.as_str(),
                c.name,
                c.notes.join("; ")
            )),
            _ => {}
        }
        c
    };
    // Tasks first: a running task holds its network interface in the security group.
    if let Some(c) = &obs.cluster {
        if c.owner == Owner::Us {
            cluster::stop_stack_tasks(cx).await?;
        }
    }
    let t0 = Instant::now();
    let td = report(
        deleted(
            Kind::TaskDefinition,
            &spec.task_family,
            task_definition::delete(cx).await?,
        ),
        t0,
    );
    let exec_change = |r: anyhow::Result<(Deletion, Deletion)>,
                       role: &str,
                       policy: &str|
     -> anyhow::Result<Vec<Change>> {
        let (role_d, pol_d) = r?;
        Ok(vec![
            report(deleted(Kind::IamRole, role, role_d), t0),
            report(
                deleted(Kind::IamRolePolicy, &format!("{role}/{policy}"), pol_d),
                t0,
            ),
        ])
    };
    let (b, e, c, l, sg, er, tr, s0, s1) = tokio::join!(
        bucket::delete(cx, obs.bucket.as_ref(), force),
        ecr::delete(cx, obs.ecr.as_ref(), force),
        cluster::delete(cx, obs.cluster.as_ref()),
        log_group::delete(cx, obs.log_group.as_ref()),
        security_group::delete(cx, obs.security_group.as_ref()),
        roles::delete(
            cx,
            &spec.execution_role,
            obs.execution_role.as_ref(),
            EXECUTION_POLICY_NAME
        ),
        roles::delete(
            cx,
            &spec.task_role,
            obs.task_role.as_ref(),
            TASK_POLICY_NAME
        ),
        secrets::delete(cx, &spec.secrets[0].1, obs.secrets[0].as_ref(), force),
        secrets::delete(cx, &spec.secrets[1].1, obs.secrets[1].as_ref(), force),
    );
    drop(spinner);
    let mut changes = Vec::new();
    let mut errors = Vec::new();
    for (kind, name, r) in [
        (Kind::S3Bucket, spec.bucket.as_str(), b),
        (Kind::EcrRepository, spec.ecr_repository.as_str(), e),
        (Kind::EcsCluster, spec.cluster.as_str(), c),
        (Kind::LogGroup, spec.log_group.as_str(), l),
    ] {
        match r {
            Ok(d) => changes.push(report(deleted(kind, name, d), t0)),
            Err(err) => errors.push(err),
        }
    }
    for r in [
        exec_change(er, &spec.execution_role, EXECUTION_POLICY_NAME),
        exec_change(tr, &spec.task_role, TASK_POLICY_NAME),
    ] {
        match r {
            Ok(cs) => changes.extend(cs),
            Err(err) => errors.push(err),
        }
    }
    match sg {
        Ok(d) => changes.push(report(
            deleted(Kind::SecurityGroup, &spec.security_group, d),
            t0,
        )),
        Err(err) => errors.push(err),
    }
    for ((_, name), r) in spec.secrets.iter().zip([s0, s1]) {
        match r {
            Ok(d) => changes.push(report(deleted(Kind::Secret, name, d), t0)),
            Err(err) => errors.push(err),
        }
    }
    changes.push(td);
    if let Some(first) = errors.into_iter().next() {
        return Err(first.context(format!(
            "`lackey down` of stack `{}` did not finish; run it again to continue",
            spec.stack
        )));
    }
    Ok(Report::new(&spec.stack, changes))
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
