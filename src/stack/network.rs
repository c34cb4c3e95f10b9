//! The default VPC, its subnets and the stack's security group: found, never hard-coded
//! (their ids differ per account and region, and on every moto start).

use aws_sdk_ec2::types::Filter;

use crate::aws::{Aws, AwsResultExt};
use crate::config::{keys, Settings};

/// The default VPC's id, if the account has one in this region.
pub async fn default_vpc(aws: &Aws) -> anyhow::Result<Option<String>> {
    let out = aws
        .ec2()
        .describe_vpcs()
        .filters(Filter::builder().name("isDefault").values("true").build())
        .send()
        .await
        .aws("failed to look up the default VPC")?;
    Ok(out
        .vpcs()
        .first()
        .and_then(|v| v.vpc_id().map(str::to_string)))
}

/// The default-for-az subnets of every VPC (default subnets live in the default VPC),
/// as (subnet, VPC) pairs sorted by subnet id: asked without knowing the VPC, so the
/// question goes in the same wave as the one that finds the default VPC.
async fn default_for_az_subnets(aws: &Aws) -> anyhow::Result<Vec<(String, String)>> {
    let out = aws
        .ec2()
        .describe_subnets()
        .filters(
            Filter::builder()
                .name("default-for-az")
                .values("true")
                .build(),
        )
        .send()
        .await
        .aws("failed to list the default subnets")?;
    let mut ids: Vec<(String, String)> = out
        .subnets()
        .iter()
        .filter_map(|s| Some((s.subnet_id()?.to_string(), s.vpc_id()?.to_string())))
        .collect();
    ids.sort();
    Ok(ids)
}

/// The security groups named `name`, in any VPC, as (group, VPC) pairs.
async fn security_groups_named(aws: &Aws, name: &str) -> anyhow::Result<Vec<(String, String)>> {
    let out = aws
        .ec2()
        .describe_security_groups()
        .filters(Filter::builder().name("group-name").values(name).build())
        .send()
        .await
        .aws(format!("failed to look up security group `{name}`"))?;
    Ok(out
        .security_groups()
        .iter()
        .filter_map(|g| Some((g.group_id()?.to_string(), g.vpc_id()?.to_string())))
        .collect())
}

/// Fill the values that come from AWS when the user has not set them: account id,
/// default subnets, the security group's id. One wave: the account, the default VPC,
/// the default-for-az subnets and the groups with the stack's group name are asked for
/// at once, and matched to the default VPC afterwards (a subnet or a group of the same
/// name in another VPC is not the stack's).
pub async fn discover(aws: &Aws, settings: &mut Settings) -> anyhow::Result<()> {
    let need_subnets = settings.get(&keys::NETWORK_SUBNETS).is_none();
    let need_sg = settings.get(&keys::NETWORK_SECURITY_GROUP_ID).is_none();
    let sg_name = if need_sg {
        Some(settings.require(&keys::NETWORK_SECURITY_GROUP)?.to_string())
    } else {
        None
    };
    let need_vpc = need_subnets || need_sg;
    let mut account_settings = settings.clone();
    let (account, vpc, subnets, groups) = tokio::join!(
        aws.discover_account(&mut account_settings),
        async {
            if need_vpc {
                default_vpc(aws).await
            } else {
                Ok(None)
            }
        },
        async {
            if need_subnets {
                default_for_az_subnets(aws).await
            } else {
                Ok(Vec::new())
            }
        },
        async {
            match &sg_name {
                Some(name) => security_groups_named(aws, name).await,
                None => Ok(Vec::new()),
            }
        }
    );
    account?;
    *settings = account_settings;
    let Some(vpc) = vpc? else {
        return Ok(());
    };
    let subnets: Vec<String> = subnets?
        .into_iter()
        .filter(|(_, v)| *v == vpc)
        .map(|(s, _)| s)
        .collect();
    if !subnets.is_empty() {
        settings.set_discovered(
            &keys::NETWORK_SUBNETS,
            subnets.join(","),
            &format!("default VPC {vpc}"),
        );
    }
    let group = groups?.into_iter().find(|(_, v)| *v == vpc).map(|(g, _)| g);
    if let (Some(name), Some(id)) = (&sg_name, group) {
        settings.set_discovered(
            &keys::NETWORK_SECURITY_GROUP_ID,
            id,
            &format!("security group `{name}`"),
        );
    }
    Ok(())
}
