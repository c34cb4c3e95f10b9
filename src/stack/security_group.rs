//! The tasks' security group: in the default VPC, outbound only.
//!
//! An inbound rule added by hand is drift: `plan` shows it and `up` revokes it. `down`
//! retries a group still held by a network interface (a task's ENI lingers after the
//! task stops) with backoff, and when that persists names the interface.

use std::time::Duration;

use aws_sdk_ec2::types::{Filter, IpPermission, ResourceType, Tag, TagSpecification};

use super::{network, Action, Change, Deletion, FieldDiff, Seen, StackCtx};
use crate::aws::{error_code, AwsResultExt};
use crate::error::Fail;

pub const DESCRIPTION: &str = "Lackey ECS tasks - outbound only";

#[derive(Clone, Debug)]
pub struct Have {
    pub id: String,
    pub vpc_id: String,
    pub ingress: Vec<IpPermission>,
}

fn describe_rule(p: &IpPermission) -> String {
    let proto = p.ip_protocol().unwrap_or("-1");
    let ports = match (p.from_port(), p.to_port()) {
        (Some(a), Some(b)) if a == b => format!("{a}"),
        (Some(a), Some(b)) => format!("{a}-{b}"),
        _ => "all".into(),
    };
    let mut from: Vec<String> = p
        .ip_ranges()
        .iter()
        .filter_map(|r| r.cidr_ip().map(str::to_string))
        .collect();
    from.extend(
        p.ipv6_ranges()
            .iter()
            .filter_map(|r| r.cidr_ipv6().map(str::to_string)),
    );
    from.extend(
        p.user_id_group_pairs()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_string)),
    );
    format!(
        "{proto}/{ports} from {}",
        if from.is_empty() {
            "?".into()
        } else {
            from.join(",")
        }
    )
}

pub async fn observe(cx: &StackCtx<'_>) -> anyhow::Result<Option<Seen<Have>>> {
    let Some(vpc) = network::default_vpc(cx.aws).await? else {
        return Err(Fail::new(format!(
            "region {} has no default VPC for the security group",
            cx.spec.region
        ))
        .with_hint(
            "create one (`aws ec2 create-default-vpc`): the stack puts its tasks in the default VPC",
        )
        .into());
    };
    let name = &cx.spec.security_group;
    let out = cx
        .aws
        .ec2()
        .describe_security_groups()
        .filters(Filter::builder().name("vpc-id").values(&vpc).build())
        .filters(Filter::builder().name("group-name").values(name).build())
        .send()
        .await
        .aws(format!("failed to describe security group `{name}`"))?;
    let Some(g) = out.security_groups().first() else {
        return Ok(None);
    };
    let tags = super::tag_map(
        g.tags()
            .iter()
            .map(|t| (t.key().map(str::to_string), t.value().map(str::to_string))),
    );
    Ok(Some(Seen::new(
        &cx.spec.stack,
        tags,
        Have {
            id: g.group_id().unwrap_or_default().to_string(),
            vpc_id: vpc,
            ingress: g.ip_permissions().to_vec(),
        },
    )))
}

/// No inbound rule may exist.
pub fn diff(have: &Have) -> Vec<FieldDiff> {
    if have.ingress.is_empty() {
        return vec![];
    }
    let rules: Vec<String> = have.ingress.iter().map(describe_rule).collect();
    vec![FieldDiff::new("ingress", rules, Vec::<String>::new())]
}

fn tags(cx: &StackCtx) -> Vec<Tag> {
    let mut t: Vec<Tag> = cx
        .spec
        .tags()
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    t.push(
        Tag::builder()
            .key("Name")
            .value(&cx.spec.security_group)
            .build(),
    );
    t
}

pub async fn apply(cx: &StackCtx<'_>, c: &Change, seen: Option<&Seen<Have>>) -> anyhow::Result<()> {
    let ec2 = cx.aws.ec2();
    let name = &cx.spec.security_group;
    if c.action == Action::Create {
        let vpc = network::default_vpc(cx.aws)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no default VPC in {}", cx.spec.region))?;
        match ec2
            .create_security_group()
            .group_name(name)
            .description(DESCRIPTION)
            .vpc_id(&vpc)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::SecurityGroup)
                    .set_tags(Some(tags(cx)))
                    .build(),
            )
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if error_code(&e) == Some("InvalidGroup.Duplicate") => {}
            Err(e) => return Err(e).aws(format!("failed to create security group `{name}`")),
        }
        return Ok(());
    }
    let Some(seen) = seen else { return Ok(()) };
    if c.diff.iter().any(|d| d.field == "tags") {
        ec2.create_tags()
            .resources(&seen.state.id)
            .set_tags(Some(tags(cx)))
            .send()
            .await
            .aws(format!("failed to tag security group `{name}`"))?;
    }
    if !seen.state.ingress.is_empty() {
        ec2.revoke_security_group_ingress()
            .group_id(&seen.state.id)
            .set_ip_permissions(Some(seen.state.ingress.clone()))
            .send()
            .await
            .aws(format!(
                "failed to remove the inbound rules of security group `{name}`"
            ))?;
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
    let ec2 = cx.aws.ec2();
    let id = seen.state.id.clone();
    let name = &cx.spec.security_group;
    let result = super::retry_while(
        cx.sg_delete_timeout,
        |e| {
            e.to_string().contains("DependencyViolation")
                || format!("{e:#}").contains("DependencyViolation")
        },
        || {
            let ec2 = ec2.clone();
            let id = id.clone();
            async move {
                match ec2.delete_security_group().group_id(&id).send().await {
                    Ok(_) => Ok(()),
                    Err(e) if error_code(&e) == Some("InvalidGroup.NotFound") => Ok(()),
                    Err(e) => {
                        Err(e).aws(format!("failed to delete security group `{name}` ({id})"))
                    }
                }
            }
        },
    )
    .await;
    match result {
        Ok(()) => Ok(Deletion::Deleted),
        Err(e) if format!("{e:#}").contains("DependencyViolation") => {
            let enis = ec2
                .describe_network_interfaces()
                .filters(Filter::builder().name("group-id").values(&id).build())
                .send()
                .await
                .map(|o| {
                    o.network_interfaces()
                        .iter()
                        .map(|n| {
                            format!(
                                "{} ({})",
                                n.network_interface_id().unwrap_or("?"),
                                n.description().unwrap_or("no description")
                            )
                        })
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            Err(Fail::new(format!(
                "security group `{name}` ({id}) is still in use after {}s by network interface(s): {}",
                cx.sg_delete_timeout.as_secs(),
                if enis.is_empty() { "unknown".into() } else { enis.join(", ") }
            ))
            .with_hint("a task's interface can linger for minutes after it stops; run `lackey down` again later, or delete the interface")
            .into())
        }
        Err(e) => Err(e),
    }
}

/// How long `down` keeps retrying a group in use, by default.
pub const DEFAULT_DELETE_TIMEOUT: Duration = Duration::from_secs(300);
