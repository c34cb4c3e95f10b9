//! The tasks' security group: in the default VPC, outbound only.
//!
//! An inbound rule added by hand is drift: `plan` shows it and `up` revokes it. `down`
//! retries a group still held by a network interface (a task's ENI lingers after the
//! task stops) with backoff, and when that persists names the interface.

use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::types::{Filter, IpPermission, ResourceType, Tag, TagSpecification};

use super::resource::{Facts, Intent, Resource};
use super::{network, Action, Change, Deletion, FieldDiff, Kind, Seen, StackCtx, StackSpec};
use crate::aws::{self, AwsResultExt, Failure};
use crate::error::Fail;

pub const DESCRIPTION: &str = "Lackey ECS tasks - outbound only";

#[derive(Clone, Debug)]
pub struct Have {
    pub id: String,
    pub ingress: Vec<IpPermission>,
}

/// The tasks' security group, in the default VPC.
pub struct SecurityGroup {
    name: String,
    /// The default VPC, as observation found it (where a create puts the group).
    vpc: OnceLock<String>,
}

impl SecurityGroup {
    pub fn new(spec: &StackSpec) -> SecurityGroup {
        SecurityGroup {
            name: spec.security_group.clone(),
            vpc: OnceLock::new(),
        }
    }
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

/// The default VPC and the group in it, read at once: the groups of that name are
/// listed in every VPC and the default VPC's is kept.
async fn observe_in_vpc(cx: &StackCtx<'_>) -> anyhow::Result<(String, Option<Seen<Have>>)> {
    let name = &cx.spec.security_group;
    let (vpc, out) = tokio::join!(
        network::default_vpc(cx.aws),
        cx.aws
            .ec2()
            .describe_security_groups()
            .filters(Filter::builder().name("group-name").values(name).build())
            .send()
    );
    let Some(vpc) = vpc? else {
        return Err(Fail::new(format!(
            "region {} has no default VPC for the security group",
            cx.spec.region
        ))
        .with_hint(
            "create one (`aws ec2 create-default-vpc`): the stack puts its tasks in the default VPC",
        )
        .into());
    };
    let out = out.aws(format!("failed to describe security group `{name}`"))?;
    let Some(g) = out
        .security_groups()
        .iter()
        .find(|g| g.vpc_id() == Some(vpc.as_str()))
    else {
        return Ok((vpc, None));
    };
    let tags = super::tag_map(
        g.tags()
            .iter()
            .map(|t| (t.key().map(str::to_string), t.value().map(str::to_string))),
    );
    let seen = Seen::new(
        &cx.spec.stack,
        tags,
        Have {
            id: g.group_id().unwrap_or_default().to_string(),
            ingress: g.ip_permissions().to_vec(),
        },
    );
    Ok((vpc, Some(seen)))
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

#[async_trait]
impl Resource for SecurityGroup {
    type Have = Have;

    fn kind(&self) -> Kind {
        Kind::SecurityGroup
    }

    fn name(&self) -> &str {
        &self.name
    }

    async fn observe(&self, cx: &StackCtx<'_>, _: Intent) -> anyhow::Result<Option<Seen<Have>>> {
        let (vpc, seen) = observe_in_vpc(cx).await?;
        let _ = self.vpc.set(vpc);
        Ok(seen)
    }

    fn diff(&self, _: &StackSpec, have: &Have, _: &Facts) -> Vec<FieldDiff> {
        diff(have)
    }

    /// Created in the default VPC observation found; an owned group gets its tags and
    /// loses any inbound rule.
    async fn apply(
        &self,
        cx: &StackCtx<'_>,
        c: &Change,
        _: &[Change],
        seen: Option<&Seen<Have>>,
        _: &Facts,
    ) -> anyhow::Result<Facts> {
        let ec2 = cx.aws.ec2();
        let name = &self.name;
        if c.action == Action::Create {
            let vpc = match self.vpc.get() {
                Some(v) => v.clone(),
                None => network::default_vpc(cx.aws)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("no default VPC in {}", cx.spec.region))?,
            };
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
                Err(e) if aws::is_already_exists(&e) => {}
                Err(e) => return Err(e).aws(format!("failed to create security group `{name}`")),
            }
            return Ok(Facts::new());
        }
        let Some(seen) = seen else {
            return Ok(Facts::new());
        };
        let tag = async {
            if c.diff.iter().any(|d| d.field == "tags") {
                ec2.create_tags()
                    .resources(&seen.state.id)
                    .set_tags(Some(tags(cx)))
                    .send()
                    .await
                    .aws(format!("failed to tag security group `{name}`"))
                    .map(|_| ())
            } else {
                Ok(())
            }
        };
        let revoke = async {
            if seen.state.ingress.is_empty() {
                return Ok(());
            }
            ec2.revoke_security_group_ingress()
                .group_id(&seen.state.id)
                .set_ip_permissions(Some(seen.state.ingress.clone()))
                .send()
                .await
                .aws(format!(
                    "failed to remove the inbound rules of security group `{name}`"
                ))
                .map(|_| ())
        };
        let (t, r) = tokio::join!(tag, revoke);
        t?;
        r?;
        Ok(Facts::new())
    }

    /// Retried while a network interface still holds the group (a task's lingers after
    /// the task stops); when that persists, the interface is named.
    async fn delete(
        &self,
        cx: &StackCtx<'_>,
        seen: &Seen<Have>,
        _: bool,
    ) -> anyhow::Result<Vec<Deletion>> {
        let ec2 = cx.aws.ec2();
        let id = seen.state.id.clone();
        let name = &self.name;
        let in_use = |e: &anyhow::Error| Failure::of_rendered(e) == Failure::InUse;
        let result = super::retry_while(cx.sg_delete_timeout, in_use, || {
            let ec2 = ec2.clone();
            let id = id.clone();
            async move {
                match ec2.delete_security_group().group_id(&id).send().await {
                    Ok(_) => Ok(()),
                    Err(e) if aws::is_not_found(&e) => Ok(()),
                    Err(e) => {
                        Err(e).aws(format!("failed to delete security group `{name}` ({id})"))
                    }
                }
            }
        })
        .await;
        match result {
            Ok(()) => Ok(vec![Deletion::Deleted]),
            Err(e) if in_use(&e) => {
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
}

/// How long `down` keeps retrying a group in use, by default.
pub const DEFAULT_DELETE_TIMEOUT: Duration = Duration::from_secs(300);
