//! The ECR repository for the minion image.

use aws_sdk_ecr::types::{ImageTagMutability, Tag};

use super::{Action, Change, Deletion, FieldDiff, Seen, StackCtx};
use crate::aws::{error_code, AwsResultExt};

#[derive(Clone, Debug)]
pub struct Have {
    pub arn: String,
    pub mutability: String,
}

pub async fn observe(cx: &StackCtx<'_>) -> anyhow::Result<Option<Seen<Have>>> {
    let name = &cx.spec.ecr_repository;
    let ecr = cx.aws.ecr();
    let out = match ecr
        .describe_repositories()
        .repository_names(name)
        .send()
        .await
    {
        Ok(o) => o,
        Err(e) if error_code(&e) == Some("RepositoryNotFoundException") => return Ok(None),
        Err(e) => return Err(e).aws(format!("failed to describe ECR repository `{name}`")),
    };
    let Some(repo) = out.repositories().first() else {
        return Ok(None);
    };
    let arn = repo.repository_arn().unwrap_or_default().to_string();
    let tags = ecr
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .aws(format!(
            "failed to read the tags of ECR repository `{name}`"
        ))?;
    let tags = super::tag_map(
        tags.tags()
            .iter()
            .map(|t| (Some(t.key().to_string()), Some(t.value().to_string()))),
    );
    Ok(Some(Seen::new(
        &cx.spec.stack,
        tags,
        Have {
            arn,
            mutability: repo
                .image_tag_mutability()
                .map(|m| m.as_str().to_string())
                .unwrap_or_else(|| "MUTABLE".into()),
        },
    )))
}

/// The image is pushed as `:latest` again and again: tags must stay mutable.
pub fn diff(have: &Have) -> Vec<FieldDiff> {
    if have.mutability != "MUTABLE" {
        vec![FieldDiff::new(
            "image_tag_mutability",
            have.mutability.clone(),
            "MUTABLE",
        )]
    } else {
        vec![]
    }
}

fn tags(cx: &StackCtx) -> anyhow::Result<Vec<Tag>> {
    cx.spec
        .tags()
        .into_iter()
        .map(|(k, v)| Ok(Tag::builder().key(k).value(v).build()?))
        .collect()
}

pub async fn apply(cx: &StackCtx<'_>, c: &Change) -> anyhow::Result<()> {
    let name = &cx.spec.ecr_repository;
    let ecr = cx.aws.ecr();
    if c.action == Action::Create {
        ecr.create_repository()
            .repository_name(name)
            .image_tag_mutability(ImageTagMutability::Mutable)
            .set_tags(Some(tags(cx)?))
            .send()
            .await
            .aws(format!("failed to create ECR repository `{name}`"))?;
        return Ok(());
    }
    let arn = format!(
        "arn:{}:ecr:{}:{}:repository/{name}",
        cx.spec.partition, cx.spec.region, cx.spec.account
    );
    for d in &c.diff {
        match d.field.as_str() {
            "tags" => {
                ecr.tag_resource()
                    .resource_arn(&arn)
                    .set_tags(Some(tags(cx)?))
                    .send()
                    .await
                    .aws(format!("failed to tag ECR repository `{name}`"))?;
            }
            "image_tag_mutability" => {
                ecr.put_image_tag_mutability()
                    .repository_name(name)
                    .image_tag_mutability(ImageTagMutability::Mutable)
                    .send()
                    .await
                    .aws(format!("failed to update ECR repository `{name}`"))?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Delete the repository; one holding images only with `force`.
pub async fn delete(
    cx: &StackCtx<'_>,
    seen: Option<&Seen<Have>>,
    force: bool,
) -> anyhow::Result<Deletion> {
    let Some(seen) = seen else {
        return Ok(Deletion::Absent);
    };
    if let Some(d) = super::not_owned(&seen.owner) {
        return Ok(d);
    }
    let name = &cx.spec.ecr_repository;
    match cx
        .aws
        .ecr()
        .delete_repository()
        .repository_name(name)
        .force(force)
        .send()
        .await
    {
        Ok(_) => Ok(Deletion::Deleted),
        Err(e) => match error_code(&e) {
            Some("RepositoryNotEmptyException") => Ok(Deletion::Kept(
                "holds images; kept (`lackey down --force` deletes them with it)".into(),
            )),
            Some("RepositoryNotFoundException") => Ok(Deletion::Absent),
            _ => Err(e).aws(format!("failed to delete ECR repository `{name}`")),
        },
    }
}
