//! The artifact bucket. Owned when tagged, or when the journal shows
//! this stack created it and was stopped before tagging it.

use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, Delete, ObjectIdentifier, Tag, Tagging,
};

use super::{Change, Deletion, Owner, Seen, StackCtx, TAG_STACK};
use crate::aws::{error_code, AwsResultExt};
use crate::error::Fail;

#[derive(Clone, Debug)]
pub struct Have;

pub async fn observe(cx: &StackCtx<'_>) -> anyhow::Result<Option<Seen<Have>>> {
    let name = &cx.spec.bucket;
    let r = cx.aws.s3().get_bucket_tagging().bucket(name).send().await;
    let tags = match r {
        Ok(out) => super::tag_map(
            out.tag_set()
                .iter()
                .map(|t| (Some(t.key().to_string()), Some(t.value().to_string()))),
        ),
        Err(e) => match error_code(&e) {
            Some("NoSuchTagSet") => Default::default(),
            Some("NoSuchBucket") => return Ok(None),
            // Owned by another account, or in a region this account cannot see it from.
            Some("AccessDenied")
            | Some("PermanentRedirect")
            | Some("AuthorizationHeaderMalformed") => {
                let mut s = Seen::new(&cx.spec.stack, Default::default(), Have);
                s.owner = Owner::OtherStack("another AWS account".into());
                return Ok(Some(s));
            }
            _ => return Err(e).aws(format!("failed to read the tags of S3 bucket `{name}`")),
        },
    };
    let mut seen = Seen::new(&cx.spec.stack, tags, Have);
    if seen.owner == Owner::Nobody && cx.journal.intended("s3_bucket", name) {
        // Created by this stack, interrupted before the tags went on.
        seen.owner = Owner::Us;
        seen.tags.insert(TAG_STACK.into(), String::new());
    }
    Ok(Some(seen))
}

async fn put_tags(cx: &StackCtx<'_>) -> anyhow::Result<()> {
    let name = &cx.spec.bucket;
    let s3 = cx.aws.s3();
    // Keep tags someone else put on it; ours win.
    let mut tags = match s3.get_bucket_tagging().bucket(name).send().await {
        Ok(out) => out.tag_set().to_vec(),
        Err(_) => vec![],
    };
    for (k, v) in cx.spec.tags() {
        tags.retain(|t| t.key() != k);
        tags.push(Tag::builder().key(k).value(v).build()?);
    }
    s3.put_bucket_tagging()
        .bucket(name)
        .tagging(Tagging::builder().set_tag_set(Some(tags)).build()?)
        .send()
        .await
        .aws(format!("failed to tag S3 bucket `{name}`"))?;
    Ok(())
}

pub async fn apply(cx: &StackCtx<'_>, c: &Change) -> anyhow::Result<()> {
    let name = &cx.spec.bucket;
    if c.action == super::Action::Create {
        cx.journal.intend("s3_bucket", name)?;
        let mut req = cx.aws.s3().create_bucket().bucket(name);
        if cx.spec.region != "us-east-1" {
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(cx.spec.region.as_str()))
                    .build(),
            );
        }
        if let Err(e) = req.send().await {
            match error_code(&e) {
                Some("BucketAlreadyOwnedByYou") => {}
                Some("BucketAlreadyExists") => {
                    cx.journal.done("s3_bucket", name)?;
                    return Err(Fail::new(format!("the S3 bucket name `{name}` is taken by another AWS account"))
                        .with_hint("bucket names are global: set another [bucket] name (or LACKEY_ARTIFACT_BUCKET)")
                        .into());
                }
                _ => return Err(e).aws(format!("failed to create S3 bucket `{name}`")),
            }
        }
    }
    put_tags(cx).await?;
    cx.journal.done("s3_bucket", name)?;
    Ok(())
}

/// Delete the bucket; a non-empty one only with `force` (every version, in batches).
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
    let name = &cx.spec.bucket;
    let s3 = cx.aws.s3();
    let first = s3
        .list_object_versions()
        .bucket(name)
        .max_keys(1)
        .send()
        .await
        .aws(format!("failed to list S3 bucket `{name}`"))?;
    let empty = first.versions().is_empty() && first.delete_markers().is_empty();
    if !empty && !force {
        return Ok(Deletion::Kept(
            "is not empty; kept (`lackey down --force` empties and deletes it)".into(),
        ));
    }
    if !empty {
        let mut key_marker: Option<String> = None;
        let mut version_marker: Option<String> = None;
        loop {
            let page = s3
                .list_object_versions()
                .bucket(name)
                .set_key_marker(key_marker.clone())
                .set_version_id_marker(version_marker.clone())
                .max_keys(1000)
                .send()
                .await
                .aws(format!("failed to list S3 bucket `{name}`"))?;
            let mut ids = Vec::new();
            for v in page.versions() {
                ids.push(
                    ObjectIdentifier::builder()
                        .key(v.key().unwrap_or_default())
                        .set_version_id(v.version_id().map(str::to_string))
                        .build()?,
                );
            }
            for m in page.delete_markers() {
                ids.push(
                    ObjectIdentifier::builder()
                        .key(m.key().unwrap_or_default())
                        .set_version_id(m.version_id().map(str::to_string))
                        .build()?,
                );
            }
            if !ids.is_empty() {
                s3.delete_objects()
                    .bucket(name)
                    .delete(
                        Delete::builder()
                            .set_objects(Some(ids))
                            .quiet(true)
                            .build()?,
                    )
                    .send()
                    .await
                    .aws(format!("failed to empty S3 bucket `{name}`"))?;
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_string);
            version_marker = page.next_version_id_marker().map(str::to_string);
        }
        // Unfinished multipart uploads are not objects but keep their parts billed.
        if let Ok(mpus) = s3.list_multipart_uploads().bucket(name).send().await {
            for u in mpus.uploads() {
                let _ = s3
                    .abort_multipart_upload()
                    .bucket(name)
                    .key(u.key().unwrap_or_default())
                    .upload_id(u.upload_id().unwrap_or_default())
                    .send()
                    .await;
            }
        }
    }
    match s3.delete_bucket().bucket(name).send().await {
        Ok(_) => {}
        Err(e) if error_code(&e) == Some("NoSuchBucket") => {}
        Err(e) => return Err(e).aws(format!("failed to delete S3 bucket `{name}`")),
    }
    cx.journal.done("s3_bucket", name)?;
    Ok(Deletion::Deleted)
}
