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

/// The default VPC's default-for-az subnets, sorted for a stable order.
pub async fn default_subnets(aws: &Aws, vpc_id: &str) -> anyhow::Result<Vec<String>> {
    let out = aws
        .ec2()
        .describe_subnets()
        .filters(Filter::builder().name("vpc-id").values(vpc_id).build())
        .filters(
            Filter::builder()
                .name("default-for-az")
                .values("true")
                .build(),
        )
        .send()
        .await
        .aws(format!("failed to list the subnets of VPC `{vpc_id}`"))?;
    let mut ids: Vec<String> = out
        .subnets()
        .iter()
        .filter_map(|s| s.subnet_id().map(str::to_string))
        .collect();
    ids.sort();
    Ok(ids)
}

/// The id of the security group with this name in this VPC.
pub async fn security_group_id(
    aws: &Aws,
    vpc_id: &str,
    name: &str,
) -> anyhow::Result<Option<String>> {
    let out = aws
        .ec2()
        .describe_security_groups()
        .filters(Filter::builder().name("vpc-id").values(vpc_id).build())
        .filters(Filter::builder().name("group-name").values(name).build())
        .send()
        .await
        .aws(format!("failed to look up security group `{name}`"))?;
    Ok(out
        .security_groups()
        .first()
        .and_then(|g| g.group_id().map(str::to_string)))
}

/// Fill the values that come from AWS when the user has not set them: account id,
/// default subnets, the security group's id. The account and the default VPC are asked
/// for at once, then the subnets and the group.
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
    let (account, vpc) = tokio::join!(aws.discover_account(&mut account_settings), async {
        if need_vpc {
            default_vpc(aws).await
        } else {
            Ok(None)
        }
    });
    account?;
    *settings = account_settings;
    let Some(vpc) = vpc? else {
        return Ok(());
    };
    let (subnets, sg) = tokio::join!(
        async {
            if need_subnets {
                default_subnets(aws, &vpc).await.map(Some)
            } else {
                Ok(None)
            }
        },
        async {
            match &sg_name {
                Some(name) => security_group_id(aws, &vpc, name).await,
                None => Ok(None),
            }
        }
    );
    if let Some(subnets) = subnets?.filter(|s| !s.is_empty()) {
        settings.set_discovered(
            &keys::NETWORK_SUBNETS,
            subnets.join(","),
            &format!("default VPC {vpc}"),
        );
    }
    if let (Some(name), Some(id)) = (&sg_name, sg?) {
        settings.set_discovered(
            &keys::NETWORK_SECURITY_GROUP_ID,
            id,
            &format!("security group `{name}`"),
        );
    }
    Ok(())
}
