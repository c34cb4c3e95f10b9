//! `lackey doctor`: every setup step a user would verify by hand, as a check, with the
//! exact fix for each failure.
//!
//! Phases: `local` (Docker, image, repository, API key), `aws` (credentials, region,
//! bucket round trip, image in ECR, secrets, GitHub App), `infra` (cluster, log group,
//! roles, network, the execution role's access to the secrets, the task definition) and
//! `cloud` (with `--e2e`: a stub run on Fargate). Checks inside a phase run
//! concurrently; a check whose prerequisite failed is skipped and says which.
//! No check ever shows a secret's value.

use std::time::Duration;

use serde::Serialize;

use crate::aws::{self, Aws, AwsResultExt};
use crate::cli::Phase;
use crate::config::{keys, validate, Settings, Source};
use crate::stack::{self, policy, StackCtx, StackSpec};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
    /// Not checked: a prerequisite failed, or the check does not apply.
    Skip,
}

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub phase: &'static str,
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    /// The fix; an empty string when there is nothing to fix.
    #[serde(serialize_with = "hint_as_string")]
    pub hint: Option<String>,
}

fn hint_as_string<S: serde::Serializer>(h: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(h.as_deref().unwrap_or(""))
}

fn pass(phase: &'static str, name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        phase,
        name,
        status: Status::Pass,
        detail: detail.into(),
        hint: None,
    }
}

fn warn(
    phase: &'static str,
    name: &'static str,
    detail: impl Into<String>,
    hint: Option<&str>,
) -> Check {
    Check {
        phase,
        name,
        status: Status::Warn,
        detail: detail.into(),
        hint: hint.map(str::to_string),
    }
}

fn fail(
    phase: &'static str,
    name: &'static str,
    detail: impl Into<String>,
    hint: impl Into<String>,
) -> Check {
    Check {
        phase,
        name,
        status: Status::Fail,
        detail: detail.into(),
        hint: Some(hint.into()),
    }
}

fn skipped(phase: &'static str, name: &'static str, because: &str) -> Check {
    Check {
        phase,
        name,
        status: Status::Skip,
        detail: format!("skipped: {because} failed"),
        hint: None,
    }
}

fn is_foreign(owner: &stack::Owner) -> bool {
    matches!(
        owner,
        stack::Owner::OtherStack(_) | stack::Owner::OtherAccount
    )
}

/// The failed check of a resource another owner holds: another stack's (or another
/// account's) resource is never judged healthy for this one.
fn foreign_check(
    phase: &'static str,
    name: &'static str,
    kind: &str,
    resource: &str,
    owner: &stack::Owner,
) -> Check {
    fail(
        phase,
        name,
        format!(
            "{kind} `{resource}` belongs to {}, not to this stack",
            stack::owner_label(owner)
        ),
        "give this stack names of its own (`lackey init --stack NAME` writes them), then `lackey up`",
    )
}

/// One line of an error, without its hint, for a check's detail.
fn one_line(e: &anyhow::Error) -> String {
    crate::error::render(e)
        .into_iter()
        .filter(|(l, _)| *l != "hint")
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(": ")
}

fn hint_of(e: &anyhow::Error) -> Option<String> {
    crate::error::render(e)
        .into_iter()
        .find(|(l, _)| *l == "hint")
        .map(|(_, t)| t)
}

/// What the checks share.
pub struct Doctor<'a> {
    pub settings: Settings,
    /// The AWS configuration, or why there is none.
    pub aws: &'a anyhow::Result<Aws>,
    pub reporter: &'a dyn crate::output::Reporter,
}

// ---------------------------------------------------------------- local

async fn check_docker() -> (Check, Option<bollard::Docker>) {
    match crate::runner::docker::connect().await {
        Ok(d) => {
            let version = d
                .version()
                .await
                .ok()
                .and_then(|v| v.version)
                .unwrap_or_else(|| "?".into());
            (
                pass("local", "docker", format!("Docker {version} reachable")),
                Some(d),
            )
        }
        Err(e) => (
            fail(
                "local",
                "docker",
                one_line(&e),
                hint_of(&e).unwrap_or_default(),
            ),
            None,
        ),
    }
}

async fn check_image(docker: Option<&bollard::Docker>, image: &str) -> (Check, Option<String>) {
    let Some(docker) = docker else {
        return (skipped("local", "image", "local/docker"), None);
    };
    match docker.inspect_image(image).await {
        Ok(i) => {
            let id = i.id.clone().unwrap_or_default();
            let size = i.size.unwrap_or(0).max(0) as u64;
            (
                pass("local", "image", format!("{image} ({}, {})", crate::image::short_id(&id), crate::output::human_bytes(size))),
                Some(id),
            )
        }
        Err(_) => (
            fail("local", "image", format!("image `{image}` is not in the local Docker"), "make build-base (or `lackey image build`; `make build-base-offline` where nothing can be pulled)"),
            None,
        ),
    }
}

fn check_repo(settings: &Settings) -> Check {
    let value = settings.get(&keys::RUN_REPO).unwrap_or(".");
    if validate::is_github_repo(value) && !std::path::Path::new(value).exists() {
        return pass("local", "repo", format!("{value} on GitHub (cloud runs)"));
    }
    match crate::runner::resolve_repo(std::path::Path::new(value)) {
        Ok(top) => {
            let head = std::process::Command::new("git")
                .args(["log", "-1", "--format=%h %s"])
                .current_dir(&top)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default();
            pass("local", "repo", format!("{} at {head}", top.display()))
        }
        Err(e) => fail(
            "local",
            "repo",
            one_line(&e),
            hint_of(&e).unwrap_or_else(|| "set LACKEY_REPO".into()),
        ),
    }
}

fn check_anthropic_key(settings: &Settings) -> Check {
    if settings.flag(&keys::RUN_STUBS) {
        return pass(
            "local",
            "anthropic-key",
            "not needed: stubs are on (LACKEY_STUBS)",
        );
    }
    match settings.resolved(&keys::ANTHROPIC_API_KEY) {
        Some(r) if validate::is_anthropic_key(&r.value) => pass(
            "local",
            "anthropic-key",
            format!("set ({}, {} characters)", r.origin, r.value.len()),
        ),
        Some(r) => warn(
            "local",
            "anthropic-key",
            format!(
                "set ({}), but it does not look like an Anthropic key (sk-ant-…)",
                r.origin
            ),
            Some("check ANTHROPIC_API_KEY"),
        ),
        // Runs with --stubs need no key, and nothing says every run will use them:
        // missing is worth a warning, not a failure.
        None => warn(
            "local",
            "anthropic-key",
            "ANTHROPIC_API_KEY is not set: only runs with --stubs work",
            Some("set ANTHROPIC_API_KEY in .env for runs with the LLM (`lackey run --stubs` needs none)"),
        ),
    }
}

// ---------------------------------------------------------------- aws

async fn check_bucket(aws: &Aws, cx: &StackCtx<'_>) -> Check {
    let bucket = cx.spec.bucket.as_str();
    let s3 = aws.s3();
    let key = format!("lackey-doctor/probe-{}.txt", crate::summary::new_run_id());
    let body = format!("lackey doctor probe {key}");
    // Who owns the bucket is read while the probe is written: a probe in a bucket that
    // turns out to be another owner's is deleted again, and the check fails.
    let (seen, put) = tokio::join!(
        stack::bucket::observe(cx),
        crate::cloud::s3::put_text(&s3, bucket, &key, &body)
    );
    let delete_probe = || async {
        s3.delete_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .aws(format!("failed to delete `s3://{bucket}/{key}`"))
    };
    if let Ok(Some(seen)) = seen {
        if is_foreign(&seen.owner) {
            if put.is_ok() {
                let _ = delete_probe().await;
            }
            return foreign_check("aws", "bucket", "S3 bucket", bucket, &seen.owner);
        }
    }
    let r: anyhow::Result<()> = async {
        put?;
        let back = crate::cloud::s3::get_text(&s3, bucket, &key).await?;
        delete_probe().await?;
        if back != body {
            anyhow::bail!("the probe object came back different");
        }
        Ok(())
    }
    .await;
    match r {
        Ok(()) => pass(
            "aws",
            "bucket",
            format!("s3://{bucket}: put, get and delete of a probe object"),
        ),
        Err(e) => {
            let hint = if aws::Failure::of_rendered(&e) == aws::Failure::NotFound {
                "run `lackey up` to create it (or set LACKEY_ARTIFACT_BUCKET)"
            } else {
                "check that your credentials may read and write the bucket"
            };
            fail("aws", "bucket", one_line(&e), hint)
        }
    }
}

async fn check_ecr(
    aws: &Aws,
    settings: &Settings,
    local_id: Option<&str>,
    docker_ok: bool,
) -> Check {
    let (Ok(registry), Ok(repo)) = (
        settings.require(&keys::ECR_REGISTRY),
        settings.require(&keys::ECR_REPOSITORY),
    ) else {
        return fail(
            "aws",
            "ecr-image",
            "no ECR registry or repository configured",
            "set LACKEY_ECR_REGISTRY (or [ecr] registry in lackey.toml)",
        );
    };
    // The registry's credentials are asked for while the repository is described.
    let (described, creds) = tokio::join!(
        aws.ecr()
            .describe_repositories()
            .repository_names(repo)
            .send(),
        async {
            if docker_ok && local_id.is_some() {
                Some(crate::cloud::ecr::credentials(aws, registry).await)
            } else {
                None
            }
        }
    );
    match described {
        Ok(_) => {}
        Err(e) if aws::is_not_found(&e) => {
            return fail(
                "aws",
                "ecr-image",
                format!("ECR repository `{repo}` does not exist"),
                "run `lackey up`",
            );
        }
        Err(e) => {
            let e = anyhow::Error::new(crate::aws::render_sdk_error(e));
            return fail(
                "aws",
                "ecr-image",
                one_line(&e),
                "check your ECR permissions",
            );
        }
    }
    if !docker_ok {
        return skipped("aws", "ecr-image", "local/docker");
    }
    let Some(local_id) = local_id else {
        return skipped("aws", "ecr-image", "local/image");
    };
    let creds = match creds {
        Some(Ok(c)) => c,
        None => return skipped("aws", "ecr-image", "local/image"),
        Some(Err(e)) => {
            return fail(
                "aws",
                "ecr-image",
                one_line(&e),
                "check your ECR permissions (ecr:GetAuthorizationToken)",
            )
        }
    };
    match crate::cloud::ecr::remote_config_digest(registry, repo, "latest", &creds).await {
        Ok(Some((config, _))) if config == local_id => pass(
            "aws",
            "ecr-image",
            format!(
                "{registry}/{repo}:latest is the local image ({})",
                crate::image::short_id(local_id)
            ),
        ),
        Ok(Some((config, _))) => fail(
            "aws",
            "ecr-image",
            format!(
                "{registry}/{repo}:latest is another image ({}) than the local one ({})",
                crate::image::short_id(&config),
                crate::image::short_id(local_id)
            ),
            "run `lackey image push` (cloud runs push it themselves)",
        ),
        Ok(None) => fail(
            "aws",
            "ecr-image",
            format!("{registry}/{repo}:latest does not exist"),
            "run `lackey image push`",
        ),
        Err(e) => fail(
            "aws",
            "ecr-image",
            one_line(&e),
            "check that the registry is reachable",
        ),
    }
}

/// One secret: what is wrong with it, and the fixes.
async fn check_secret(
    aws: &Aws,
    cx: &StackCtx<'_>,
    key: &str,
    name: &str,
) -> (Vec<String>, Vec<String>) {
    let spec = &cx.spec;
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    match stack::secrets::observe(cx, name).await {
        Ok(None) => {
            problems.push(format!("`{name}` does not exist"));
            fixes.push("lackey up".to_string());
            return (problems, fixes);
        }
        Ok(Some(s)) if is_foreign(&s.owner) => {
            problems.push(format!(
                "`{name}` belongs to {}, not to this stack",
                stack::owner_label(&s.owner)
            ));
            fixes.push(format!("lackey init --stack {} --force", spec.stack));
            return (problems, fixes);
        }
        Ok(Some(s)) if s.state.scheduled_for_deletion => {
            problems.push(format!("`{name}` is scheduled for deletion"));
            fixes.push("lackey up".to_string());
            return (problems, fixes);
        }
        Ok(Some(s)) if !s.state.has_value => {
            problems.push(format!("`{name}` has no value"));
            fixes.push(format!("lackey secret put {key}"));
            return (problems, fixes);
        }
        Ok(Some(_)) => {}
        Err(e) => {
            problems.push(one_line(&e));
            return (problems, fixes);
        }
    }
    match crate::cloud::secrets::get_secret_value(aws, name).await {
        Ok(v) => {
            let ok = match key {
                "github_app_key" => validate::is_pem_private_key(&v),
                _ => validate::is_anthropic_key(&v),
            };
            if !ok {
                problems.push(format!(
                    "`{name}` does not hold {}",
                    if key == "github_app_key" {
                        "a PEM private key"
                    } else {
                        "an Anthropic key (sk-ant-…)"
                    }
                ));
                fixes.push(format!("lackey secret put {key}"));
            }
        }
        Err(e) => {
            problems.push(one_line(&e));
            fixes.push(format!("lackey secret put {key}"));
        }
    }
    (problems, fixes)
}

/// Both secrets exist and hold a value of the right shape (never shown). "Has a value"
/// is read from the AWSCURRENT stage, as ECS resolves it.
async fn check_secrets(aws: &Aws, cx: &StackCtx<'_>) -> Check {
    let spec = &cx.spec;
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    let judged = futures::future::join_all(
        spec.secrets
            .iter()
            .map(|(key, name)| check_secret(aws, cx, key, name)),
    )
    .await;
    for (p, f) in judged {
        problems.extend(p);
        fixes.extend(f);
    }
    if problems.is_empty() {
        pass(
            "aws",
            "secrets",
            format!(
                "{} hold values of the right shape",
                spec.secrets
                    .iter()
                    .map(|(_, n)| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        )
    } else {
        fixes.dedup();
        fail(
            "aws",
            "secrets",
            problems.join("; "),
            format!("run `{}`", fixes.join("` and `")),
        )
    }
}

async fn check_github(aws: &Aws, settings: &Settings) -> Check {
    let (Some(app_id), Some(installation)) = (
        settings.get(&keys::GITHUB_APP_ID),
        settings.get(&keys::GITHUB_INSTALLATION_ID),
    ) else {
        return warn("aws", "github", "no GitHub App configured: cloud runs ship the local repository as a git bundle", Some("set LACKEY_GITHUB_APP_ID and LACKEY_GITHUB_INSTALLATION_ID to work on GitHub repositories"));
    };
    let secret = settings
        .get(&keys::SECRETS_GITHUB_APP_KEY)
        .unwrap_or("lackey/github-app-key");
    let key = match crate::cloud::secrets::get_github_app_private_key(aws, secret).await {
        Ok(k) => k,
        Err(_) => return skipped("aws", "github", "aws/secrets"),
    };
    let repo = settings
        .get(&keys::RUN_REPO)
        .filter(|r| validate::is_github_repo(r) && !std::path::Path::new(r).exists())
        .or(settings.get(&keys::GITHUB_REPO));
    let gh = crate::github::GitHub::new(
        settings
            .get(&keys::GITHUB_API_URL)
            .unwrap_or("https://api.github.com"),
    );
    let name = repo.and_then(|r| r.split_once('/').map(|(_, n)| n));
    let token = match gh
        .installation_token(app_id, &key, installation, name)
        .await
    {
        Ok(t) => t,
        Err(e) => {
            let hint = hint_of(&e).unwrap_or_else(|| "check the GitHub App settings".into());
            return fail("aws", "github", one_line(&e), hint);
        }
    };
    match repo {
        Some(r) => match gh.default_branch(&token.token, r).await {
            Ok(b) => pass(
                "aws",
                "github",
                format!(
                    "app {app_id}: installation token minted; `{r}` visible (default branch `{b}`)"
                ),
            ),
            Err(e) => fail(
                "aws",
                "github",
                one_line(&e),
                format!("install the app on `{r}`"),
            ),
        },
        None => match gh.installation_repositories(&token.token).await {
            Ok(list) => pass(
                "aws",
                "github",
                format!(
                    "app {app_id}: installation token minted; {} repositories visible",
                    list.len()
                ),
            ),
            Err(e) => fail("aws", "github", one_line(&e), "check the installation id"),
        },
    }
}

// ---------------------------------------------------------------- infra

async fn check_cluster(cx: &StackCtx<'_>) -> Check {
    match stack::cluster::observe(cx).await {
        Ok(Some(s)) if is_foreign(&s.owner) => foreign_check(
            "infra",
            "cluster",
            "ECS cluster",
            &cx.spec.cluster,
            &s.owner,
        ),
        Ok(Some(_)) => pass(
            "infra",
            "cluster",
            format!("`{}` is ACTIVE", cx.spec.cluster),
        ),
        Ok(None) => fail(
            "infra",
            "cluster",
            format!(
                "ECS cluster `{}` does not exist or is not ACTIVE",
                cx.spec.cluster
            ),
            "run `lackey up`",
        ),
        Err(e) => fail(
            "infra",
            "cluster",
            one_line(&e),
            "check your ECS permissions",
        ),
    }
}

async fn check_log_group(cx: &StackCtx<'_>) -> Check {
    match stack::log_group::observe(cx).await {
        Ok(Some(s)) if is_foreign(&s.owner) => foreign_check(
            "infra",
            "log-group",
            "log group",
            &cx.spec.log_group,
            &s.owner,
        ),
        Ok(Some(s)) => pass(
            "infra",
            "log-group",
            format!(
                "`{}` ({})",
                cx.spec.log_group,
                s.state
                    .retention_days
                    .map(|d| format!("kept {d} days"))
                    .unwrap_or_else(|| "kept forever".into())
            ),
        ),
        Ok(None) => fail(
            "infra",
            "log-group",
            format!("log group `{}` does not exist", cx.spec.log_group),
            "run `lackey up`",
        ),
        Err(e) => fail(
            "infra",
            "log-group",
            one_line(&e),
            "check your CloudWatch Logs permissions",
        ),
    }
}

async fn check_roles(cx: &StackCtx<'_>) -> Check {
    let spec = &cx.spec;
    let roles = [
        stack::roles::Role::execution(spec),
        stack::roles::Role::task(spec),
    ];
    let seen = futures::future::join_all(roles.iter().map(|r| r.observe(cx))).await;
    let mut problems = Vec::new();
    for (r, seen) in roles.iter().zip(seen) {
        let (role, policy_name) = (&r.name, r.policy_name);
        match seen {
            Ok(Some(seen)) if is_foreign(&seen.owner) => {
                problems.push(format!(
                    "role `{role}` belongs to {}, not to this stack",
                    stack::owner_label(&seen.owner)
                ));
            }
            Ok(Some(seen)) => {
                for d in stack::roles::diff(&seen.state, &r.managed) {
                    problems.push(format!("`{role}`: {} differs", d.field));
                }
                match r.policy_diff(&seen.state) {
                    Some(d) if d.is_empty() => {}
                    Some(_) => problems.push(format!(
                        "`{role}`: inline policy `{policy_name}` differs from the config"
                    )),
                    None => problems.push(format!(
                        "`{role}`: inline policy `{policy_name}` is missing"
                    )),
                }
            }
            Ok(None) => problems.push(format!("role `{role}` does not exist")),
            Err(e) => problems.push(one_line(&e)),
        }
    }
    if problems.is_empty() {
        pass(
            "infra",
            "roles",
            format!(
                "`{}` and `{}` trust ecs-tasks.amazonaws.com and have their policies",
                spec.execution_role, spec.task_role
            ),
        )
    } else {
        fail(
            "infra",
            "roles",
            problems.join("; "),
            "run `lackey up` to repair them",
        )
    }
}

async fn check_network(aws: &Aws, settings: &Settings, cx: &StackCtx<'_>) -> Check {
    let ec2 = aws.ec2();
    let (Some(sg_id), Some(subnets)) = (
        settings.get(&keys::NETWORK_SECURITY_GROUP_ID),
        settings.get(&keys::NETWORK_SUBNETS),
    ) else {
        return fail(
            "infra",
            "network",
            "no security group or subnets found",
            "run `lackey up` (or set LACKEY_ECS_SG and LACKEY_ECS_SUBNETS)",
        );
    };
    let subnets: Vec<String> = subnets.split(',').map(|s| s.trim().to_string()).collect();
    let r: anyhow::Result<Check> = async {
        // One wave: the group, the subnets, the route tables associated with the
        // subnets and every main route table (the one of the group's VPC is picked once
        // the group says which VPC that is).
        let filter = |name: &str, values: &[String]| {
            aws_sdk_ec2::types::Filter::builder()
                .name(name)
                .set_values(Some(values.to_vec()))
                .build()
        };
        let (sg, subs, associated, mains) = tokio::join!(
            ec2.describe_security_groups().group_ids(sg_id).send(),
            ec2.describe_subnets().set_subnet_ids(Some(subnets.clone())).send(),
            ec2.describe_route_tables()
                .filters(filter("association.subnet-id", &subnets))
                .send(),
            ec2.describe_route_tables()
                .filters(filter("association.main", &["true".to_string()]))
                .send()
        );
        let sg = sg.aws(format!("failed to describe security group `{sg_id}`"))?;
        let Some(sg) = sg.security_groups().first() else {
            return Ok(fail("infra", "network", format!("security group `{sg_id}` does not exist"), "run `lackey up`"));
        };
        let sg_owner = stack::Seen::new(&cx.spec.stack, stack::tag_map(sg.tags().iter().map(|t| (t.key().map(str::to_string), t.value().map(str::to_string)))), ()).owner;
        if is_foreign(&sg_owner) {
            return Ok(foreign_check("infra", "network", "security group", sg_id, &sg_owner));
        }
        let vpc = sg.vpc_id().unwrap_or_default().to_string();
        let subs = subs.aws("failed to describe the subnets")?;
        let other: Vec<String> = subs.subnets().iter().filter(|s| s.vpc_id() != Some(vpc.as_str())).filter_map(|s| s.subnet_id().map(str::to_string)).collect();
        if !other.is_empty() {
            return Ok(fail("infra", "network", format!("subnet(s) {} are not in the security group's VPC {vpc}", other.join(", ")), "use subnets of the security group's VPC (LACKEY_ECS_SUBNETS)"));
        }
        if !sg.ip_permissions().is_empty() {
            return Ok(fail("infra", "network", format!("security group `{sg_id}` has {} inbound rule(s); tasks need none", sg.ip_permissions().len()), "run `lackey up` to remove them"));
        }
        let https_out = sg.ip_permissions_egress().iter().any(|p| {
            let all = p.ip_protocol() == Some("-1");
            let tcp443 = p.ip_protocol() == Some("tcp") && p.from_port().unwrap_or(0) <= 443 && p.to_port().unwrap_or(0) >= 443;
            (all || tcp443) && p.ip_ranges().iter().any(|r| r.cidr_ip() == Some("0.0.0.0/0"))
        });
        if !https_out {
            return Ok(fail("infra", "network", format!("security group `{sg_id}` does not allow outbound HTTPS (443) to 0.0.0.0/0"), "restore the default outbound rule, or allow tcp/443 to 0.0.0.0/0"));
        }
        // A route out for each subnet: its route table, or the VPC's main one.
        let associated = associated.aws("failed to describe the route tables")?;
        let mains = mains.aws("failed to describe the route tables")?;
        let main = mains.route_tables().iter().find(|t| t.vpc_id() == Some(vpc.as_str()));
        let public_ip = settings.flag(&keys::NETWORK_ASSIGN_PUBLIC_IP);
        let mut via = Vec::new();
        for s in &subnets {
            let table = associated
                .route_tables()
                .iter()
                .find(|t| t.associations().iter().any(|a| a.subnet_id() == Some(s.as_str())))
                .or(main);
            let out = table.and_then(|t| {
                t.routes().iter().find(|r| r.destination_cidr_block() == Some("0.0.0.0/0")).and_then(|r| {
                    r.nat_gateway_id().map(|n| format!("NAT {n}")).or_else(|| r.gateway_id().filter(|g| g.starts_with("igw-")).map(|g| format!("internet gateway {g}")))
                })
            });
            match out {
                Some(o) if o.starts_with("internet") && !public_ip => {
                    return Ok(fail("infra", "network", format!("subnet {s} reaches the internet through an internet gateway, but tasks get no public IP"), "set [network] assign_public_ip = true (or use subnets behind a NAT)"));
                }
                Some(o) => via.push(o),
                None => {
                    return Ok(fail("infra", "network", format!("subnet {s} has no route to the internet (0.0.0.0/0): tasks cannot reach ECR, Secrets Manager, GitHub or the LLM API"), "add a route through an internet gateway (with public IPs) or a NAT gateway"));
                }
            }
        }
        via.sort();
        via.dedup();
        Ok(pass("infra", "network", format!("`{}` ({sg_id}) and {} subnet(s) in {vpc}; no inbound rule; outbound 443 open; out through {}", cx.spec.security_group, subnets.len(), via.join(", "))))
    }
    .await;
    r.unwrap_or_else(|e| {
        fail(
            "infra",
            "network",
            one_line(&e),
            "check your EC2 permissions",
        )
    })
}

/// Can the execution role read the secrets? Checked, as ecspresso's `verify` does, by
/// assuming the role and reading them with its credentials. When the role cannot be
/// assumed (its trust allows only ECS, as it should), its policy is checked instead.
async fn check_execution_role_secrets(aws: &Aws, spec: &StackSpec, cx: &StackCtx<'_>) -> Check {
    let arn = spec.role_arn(&spec.execution_role);
    let assumed = aws
        .sts()
        .assume_role()
        .role_arn(&arn)
        .role_session_name("lackey-doctor")
        .duration_seconds(900)
        .send()
        .await;
    match assumed {
        Ok(out) => {
            let Some(c) = out.credentials() else { return fail("infra", "execution-role-secrets", "STS returned no credentials", "retry") };
            let creds = aws_sdk_secretsmanager::config::Credentials::new(c.access_key_id(), c.secret_access_key(), Some(c.session_token().to_string()), None, "lackey-doctor");
            let conf = aws_sdk_secretsmanager::config::Builder::from(&aws.sdk).credentials_provider(creds).build();
            let sm = aws_sdk_secretsmanager::Client::from_conf(conf);
            let reads = futures::future::join_all(spec.secrets.iter().map(|(_, name)| sm.get_secret_value().secret_id(name).send())).await;
            for ((key, name), read) in spec.secrets.iter().zip(reads) {
                if let Err(e) = read {
                    let e = anyhow::Error::new(crate::aws::render_sdk_error(e));
                    return fail("infra", "execution-role-secrets", format!("`{}` cannot read `{name}`: {}", spec.execution_role, one_line(&e)), format!("run `lackey up` (the role's `lackey-secrets` policy grants it); then `lackey secret put {key}` if it has no value"));
                }
            }
            pass("infra", "execution-role-secrets", format!("as `{}`, both secrets are readable", spec.execution_role))
        }
        Err(_) => match stack::roles::Role::execution(spec).observe(cx).await {
            Ok(Some(role)) if role.state.policy.as_deref().is_some_and(|p| policy::same(p, &stack::roles::execution_policy(spec))) => pass(
                "infra",
                "execution-role-secrets",
                format!("`{}` cannot be assumed from here (it trusts only ECS); its policy grants GetSecretValue on both secrets", spec.execution_role),
            ),
            _ => fail("infra", "execution-role-secrets", format!("`{}` has no policy reading both secrets", spec.execution_role), "run `lackey up`"),
        },
    }
}

/// The task definition keeps the credentials out of the minion's container: a
/// `sidecar` container alone receives the secrets, the minion's gets none and starts
/// after it. A definition without it (made by hand) still runs, with a warning on every
/// run: a warning here too, or a failure under `[run] require_isolation`.
fn check_isolation(td: &serde_json::Value, family: &str, require: bool) -> Check {
    let iso = stack::task_definition::isolation(td);
    let name = "credential-isolation";
    let shown = |v: &[String]| {
        if v.is_empty() {
            "no secret".to_string()
        } else {
            v.join(", ")
        }
    };
    match &iso.sidecar_secrets {
        Some(side) if iso.isolated() && iso.depends_on_sidecar => pass(
            "infra",
            name,
            format!(
                "`{family}`: the `{}` container alone receives {}; `{}` gets none and starts after it",
                stack::task_definition::SIDECAR_CONTAINER,
                shown(side),
                stack::task_definition::MINION_CONTAINER,
            ),
        ),
        _ => {
            let detail = if iso.sidecar_secrets.is_some() && iso.isolated() {
                format!("`{family}`: the minion's container does not wait for the credential sidecar (no dependsOn)")
            } else {
                format!(
                    "`{family}` has no credential sidecar: ECS hands {} to the minion's container, where the agent's commands can read them",
                    shown(&iso.minion_secrets)
                )
            };
            let hint = "run `lackey up --adopt` to register the task definition with the credential sidecar";
            if require {
                fail("infra", name, format!("{detail} ([run] require_isolation is set)"), hint)
            } else {
                warn("infra", name, detail, Some(hint))
            }
        }
    }
}

async fn check_task_definition(cx: &StackCtx<'_>, require_isolation: bool) -> Vec<Check> {
    let td = check_task_definition_content(cx).await;
    let isolation = match &td.1 {
        Some(json) => check_isolation(json, &cx.spec.task_family, require_isolation),
        None => skipped("infra", "credential-isolation", "infra/task-definition"),
    };
    vec![td.0, isolation]
}

/// The task definition against the config; and its JSON, when it is this stack's.
async fn check_task_definition_content(cx: &StackCtx<'_>) -> (Check, Option<serde_json::Value>) {
    let spec = &cx.spec;
    // The secrets' ARNs and the definition, read at once.
    let (secrets, td) = tokio::join!(
        futures::future::join_all(
            spec.secrets
                .iter()
                .map(|(_, name)| stack::secrets::observe(cx, name))
        ),
        stack::task_definition::observe(cx)
    );
    let mut arns = std::collections::BTreeMap::new();
    for ((key, _), seen) in spec.secrets.iter().zip(secrets) {
        if let Ok(Some(s)) = seen {
            arns.insert(*key, s.state.arn);
        }
    }
    let want = stack::task_definition::desired(spec, &arns);
    match td {
        Ok(Some(have)) if is_foreign(&have.owner) => (
            foreign_check(
                "infra",
                "task-definition",
                "task definition",
                &spec.task_family,
                &have.owner,
            ),
            None,
        ),
        Ok(Some(have)) => {
            let d = stack::task_definition::diff(&want, &have.state);
            let revision = have.state.arn.rsplit(':').next().unwrap_or("?").to_string();
            let json = Some(have.state.json.clone());
            let check = if d.is_empty() {
                pass("infra", "task-definition", format!("`{}:{revision}` matches the config (image, platform, roles, log configuration, secrets, the credential sidecar)", spec.task_family))
            } else {
                fail(
                    "infra",
                    "task-definition",
                    format!(
                        "`{}:{revision}` differs: {}",
                        spec.task_family,
                        d.iter()
                            .map(|x| x.field.clone())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    "run `lackey up` to register a revision that matches",
                )
            };
            (check, json)
        }
        Ok(None) => (
            fail(
                "infra",
                "task-definition",
                format!("task definition `{}` does not exist", spec.task_family),
                "run `lackey up`",
            ),
            None,
        ),
        Err(e) => (
            fail(
                "infra",
                "task-definition",
                one_line(&e),
                "check your ECS permissions",
            ),
            None,
        ),
    }
}

// ---------------------------------------------------------------- the run

/// Run the chosen phases; the result lists every check in phase order.
#[allow(
    clippy::too_many_lines,
    reason = "the phases in order, one block each; to be split into one function per phase"
)]
pub async fn run(
    doctor: &Doctor<'_>,
    phases: &[Phase],
    printer: &crate::output::Printer,
    cancel: &tokio_util::sync::CancellationToken,
) -> Vec<Check> {
    let settings = &doctor.settings;
    let want = |p: Phase| phases.contains(&p);
    let mut checks = Vec::new();
    // Docker is needed by `local` and by the image check of `aws`.
    let (docker_check, docker) = if want(Phase::Local) || want(Phase::Aws) {
        check_docker().await
    } else {
        (pass("local", "docker", ""), None)
    };
    let image = settings
        .get(&keys::IMAGE_LOCAL)
        .unwrap_or("minion-base:latest")
        .to_string();
    let (image_check, local_id) = check_image(docker.as_ref(), &image).await;
    if want(Phase::Local) {
        checks.push(docker_check.clone());
        checks.push(image_check);
        checks.push(check_repo(settings));
        checks.push(check_anthropic_key(settings));
    }
    let needs_aws = want(Phase::Aws) || want(Phase::Infra) || want(Phase::Cloud);
    if !needs_aws {
        return checks;
    }
    let aws = match doctor.aws {
        Ok(aws) => aws,
        Err(e) => {
            checks.push(fail(
                "aws",
                "credentials",
                one_line(e),
                hint_of(e).unwrap_or_else(|| "set AWS_REGION and credentials".into()),
            ));
            return checks;
        }
    };
    // The account and the network are discovered at once (discovery asks for the
    // account too; STS is called once).
    let mut settings = settings.clone();
    let mut discovered = settings.clone();
    let (account, discovery) =
        tokio::join!(aws.account_id(), stack::discover(aws, &mut discovered));
    if discovery.is_ok() {
        settings = discovered;
    }
    let cred = match &account {
        Ok(a) => {
            settings.set_discovered(&keys::AWS_ACCOUNT_ID, a.clone(), "STS");
            pass("aws", "credentials", format!("account {a}"))
        }
        Err(e) => fail(
            "aws",
            "credentials",
            one_line(e),
            hint_of(e).unwrap_or_else(|| "run `aws configure` or set AWS_PROFILE".into()),
        ),
    };
    let creds_ok = cred.status == Status::Pass;
    if want(Phase::Aws) {
        checks.push(cred.clone());
        // Where the user's settings (not the discovery above) put the region.
        let region = doctor
            .settings
            .resolved(&keys::AWS_REGION)
            .map(|r| {
                format!(
                    "{} ({})",
                    r.value,
                    if r.source == Source::Discovered {
                        "from the AWS profile".to_string()
                    } else {
                        r.origin.clone()
                    }
                )
            })
            .unwrap_or_else(|| aws.region().to_string());
        checks.push(pass("aws", "region", region));
    }
    if !creds_ok {
        for (p, n) in [
            ("aws", "bucket"),
            ("aws", "ecr-image"),
            ("aws", "secrets"),
            ("aws", "github"),
            ("infra", "cluster"),
            ("infra", "log-group"),
            ("infra", "roles"),
            ("infra", "network"),
            ("infra", "execution-role-secrets"),
            ("infra", "task-definition"),
        ] {
            if (p == "aws" && want(Phase::Aws)) || (p == "infra" && want(Phase::Infra)) {
                checks.push(skipped(p, n, "aws/credentials"));
            }
        }
        return checks;
    }
    let spec = match StackSpec::from_settings(&settings) {
        Ok(s) => s,
        Err(e) => {
            checks.push(fail(
                "aws",
                "config",
                one_line(&e),
                hint_of(&e).unwrap_or_default(),
            ));
            return checks;
        }
    };
    let cx = StackCtx {
        aws,
        journal: stack::journal::Journal::none(),
        spec: spec.clone(),
        reporter: doctor.reporter,
        sg_delete_timeout: Duration::from_secs(0),
        iam_propagation_timeout: Duration::from_secs(0),
    };
    let (bucket_c, ecr_c, secrets_c, github_c, cluster_c, logs_c, roles_c, net_c, td_c, exec_c) = tokio::join!(
        async {
            if want(Phase::Aws) {
                Some(check_bucket(aws, &cx).await)
            } else {
                None
            }
        },
        async {
            if want(Phase::Aws) {
                Some(check_ecr(aws, &settings, local_id.as_deref(), docker.is_some()).await)
            } else {
                None
            }
        },
        async {
            if want(Phase::Aws) || want(Phase::Infra) {
                Some(check_secrets(aws, &cx).await)
            } else {
                None
            }
        },
        async {
            if want(Phase::Aws) {
                Some(check_github(aws, &settings).await)
            } else {
                None
            }
        },
        async {
            if want(Phase::Infra) {
                Some(check_cluster(&cx).await)
            } else {
                None
            }
        },
        async {
            if want(Phase::Infra) {
                Some(check_log_group(&cx).await)
            } else {
                None
            }
        },
        async {
            if want(Phase::Infra) {
                Some(check_roles(&cx).await)
            } else {
                None
            }
        },
        async {
            if want(Phase::Infra) {
                Some(check_network(aws, &settings, &cx).await)
            } else {
                None
            }
        },
        async {
            if want(Phase::Infra) {
                Some(check_task_definition(&cx, settings.flag(&keys::RUN_REQUIRE_ISOLATION)).await)
            } else {
                None
            }
        },
        // Needs the secrets to be right; run meanwhile (it only reads) and kept only
        // when they are.
        async {
            if want(Phase::Infra) {
                Some(check_execution_role_secrets(aws, &spec, &cx).await)
            } else {
                None
            }
        },
    );
    let secrets_ok = secrets_c
        .as_ref()
        .map(|c| c.status == Status::Pass)
        .unwrap_or(false);
    if want(Phase::Aws) {
        checks.extend([bucket_c, ecr_c].into_iter().flatten());
        checks.extend(secrets_c.clone());
        checks.extend(github_c);
    }
    if want(Phase::Infra) {
        checks.extend([cluster_c, logs_c, roles_c, net_c].into_iter().flatten());
        checks.push(if let (true, Some(c)) = (secrets_ok, exec_c) {
            c
        } else {
            skipped("infra", "execution-role-secrets", "aws/secrets")
        });
        checks.extend(td_c.into_iter().flatten());
    }
    if want(Phase::Cloud) {
        let failed = checks.iter().any(|c| c.status == Status::Fail);
        checks.push(if failed {
            skipped("cloud", "e2e", "an earlier check")
        } else {
            e2e(aws, &settings, printer, cancel).await
        });
    }
    checks
}

/// A stub run on Fargate, on a throwaway repository (shipped as a bundle, so nothing is
/// pushed anywhere), whose `run_summary.json` must arrive in S3 with `outcome: success`.
async fn e2e(
    aws: &Aws,
    settings: &Settings,
    printer: &crate::output::Printer,
    cancel: &tokio_util::sync::CancellationToken,
) -> Check {
    let r: anyhow::Result<Check> = async {
        let dir = tempfile::tempdir()?;
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(&repo)?;
        let git = |args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .current_dir(&repo)
                .output()
        };
        git(&["init", "--quiet", "-b", "main"])?;
        std::fs::write(repo.join("README.md"), "lackey doctor end-to-end check\n")?;
        git(&["add", "-A"])?;
        git(&[
            "-c",
            "user.name=lackey doctor",
            "-c",
            "user.email=doctor@lackey.invalid",
            "commit",
            "--quiet",
            "-m",
            "doctor",
        ])?;
        let mut s = settings.clone();
        s.set(&keys::RUN_REPO, repo.display().to_string(), Source::Flag);
        s.set(&keys::RUN_STUBS, "1", Source::Flag);
        let mut spec =
            crate::runner::RunSpec::from_settings(&s, "lackey doctor end-to-end check", true)?;
        spec.timeout = Duration::from_secs(spec.timeout.as_secs().min(900));
        let cloud = crate::runner::ecs::CloudSpec::from_settings(&s, None)?;
        let backend = crate::runner::ecs::Ecs::new(aws, cloud.clone());
        let result = crate::runner::run_one(&backend, &mut spec, printer, cancel).await?;
        if let Some(e) = &result.fetch_error {
            printer.error(e);
        }
        {
            use crate::output::Reporter;
            let tone = if result.summary.outcome == crate::summary::Outcome::Success {
                crate::output::Tone::Good
            } else {
                crate::output::Tone::Bad
            };
            printer.status(
                "Finished",
                tone,
                &format!("run {}: {}", spec.run_id, result.summary.outcome),
            );
        }
        // Where the host downloaded the run's artifacts from (its recorded prefix).
        let at = result.summary.s3_prefix.clone().unwrap_or_default();
        let key = at
            .strip_prefix(&format!("s3://{}/", cloud.bucket))
            .map(|p| format!("{p}run_summary.json"));
        let summary = match &key {
            Some(key) => crate::cloud::s3::get_summary(&aws.s3(), &cloud.bucket, key).await,
            None => Err(anyhow::anyhow!("no artifacts in the bucket")),
        };
        Ok(
            match summary
                .ok()
                .and_then(|t| serde_json::from_str::<crate::summary::RunSummary>(&t).ok())
            {
                Some(s) if s.outcome == crate::summary::Outcome::Success => pass(
                    "cloud",
                    "e2e",
                    format!(
                        "stub run {} succeeded on Fargate; run_summary.json is in {at}",
                        spec.run_id
                    ),
                ),
                Some(s) => fail(
                    "cloud",
                    "e2e",
                    format!(
                        "stub run {} ended `{}`: {}",
                        spec.run_id,
                        s.outcome,
                        s.error.unwrap_or_default()
                    ),
                    format!("see `lackey logs {}`", spec.run_id),
                ),
                None => fail(
                    "cloud",
                    "e2e",
                    format!(
                        "stub run {} left no run_summary.json in S3 ({})",
                        spec.run_id,
                        result.summary.error.unwrap_or_default()
                    ),
                    format!("see `lackey logs {}`", spec.run_id),
                ),
            },
        )
    }
    .await;
    r.unwrap_or_else(|e| {
        fail(
            "cloud",
            "e2e",
            one_line(&e),
            hint_of(&e).unwrap_or_else(|| "see the error above".into()),
        )
    })
}
