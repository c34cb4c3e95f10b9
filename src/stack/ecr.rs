//! The ECR repository for the minion image.

use async_trait::async_trait;
use aws_sdk_ecr::types::{ImageTagMutability, Tag};

use super::resource::{Facts, Intent, Resource};
use super::{Action, Change, Deletion, FieldDiff, Kind, Seen, StackCtx, StackSpec};
use crate::aws::{self, AwsResultExt, Failure};

#[derive(Clone, Debug)]
pub struct Have {
    pub mutability: String,
}

/// The stack's ECR repository.
pub struct Repository {
    name: String,
}

impl Repository {
    pub fn new(spec: &StackSpec) -> Repository {
        Repository {
            name: spec.ecr_repository.clone(),
        }
    }
}

/// A repository's ARN, known without asking.
fn arn(spec: &StackSpec, name: &str) -> String {
    format!(
        "arn:{}:ecr:{}:{}:repository/{name}",
        spec.partition, spec.region, spec.account
    )
}

/// The repository and its tags, read at once (the ARN is predictable).
pub async fn observe(cx: &StackCtx<'_>) -> anyhow::Result<Option<Seen<Have>>> {
    let name = &cx.spec.ecr_repository;
    let ecr = cx.aws.ecr();
    let (out, tags) = tokio::join!(
        ecr.describe_repositories().repository_names(name).send(),
        ecr.list_tags_for_resource()
            .resource_arn(arn(&cx.spec, name))
            .send()
    );
    let out = match out {
        Ok(o) => o,
        Err(e) if aws::is_not_found(&e) => return Ok(None),
        Err(e) => return Err(e).aws(format!("failed to describe ECR repository `{name}`")),
    };
    let Some(repo) = out.repositories().first() else {
        return Ok(None);
    };
    let tags = tags.aws(format!(
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

#[async_trait]
impl Resource for Repository {
    type Have = Have;

    fn kind(&self) -> Kind {
        Kind::EcrRepository
    }

    fn name(&self) -> &str {
        &self.name
    }

    async fn observe(&self, cx: &StackCtx<'_>, _: Intent) -> anyhow::Result<Option<Seen<Have>>> {
        observe(cx).await
    }

    fn diff(&self, _: &StackSpec, have: &Have, _: &Facts) -> Vec<FieldDiff> {
        diff(have)
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
        let ecr = cx.aws.ecr();
        if c.action == Action::Create {
            ecr.create_repository()
                .repository_name(name)
                .image_tag_mutability(ImageTagMutability::Mutable)
                .set_tags(Some(tags(cx)?))
                .send()
                .await
                .aws(format!("failed to create ECR repository `{name}`"))?;
            return Ok(Facts::new());
        }
        let arn = arn(&cx.spec, name);
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
        Ok(Facts::new())
    }

    /// Delete the repository; one holding images only with `force`.
    async fn delete(
        &self,
        cx: &StackCtx<'_>,
        _: &Seen<Have>,
        force: bool,
    ) -> anyhow::Result<Vec<Deletion>> {
        let name = &self.name;
        match cx
            .aws
            .ecr()
            .delete_repository()
            .repository_name(name)
            .force(force)
            .send()
            .await
        {
            Ok(_) => Ok(vec![Deletion::Deleted]),
            Err(e) => match Failure::of(&e) {
                Failure::NotEmpty => Ok(vec![Deletion::Kept(
                    "holds images; kept (`lackey down --force` deletes them with it)".into(),
                )]),
                Failure::NotFound => Ok(vec![Deletion::Absent]),
                _ => Err(e).aws(format!("failed to delete ECR repository `{name}`")),
            },
        }
    }
}
