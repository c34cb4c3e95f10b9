//! The artifact bucket.
//!
//! S3's CreateBucket does not tag the bucket on every S3 implementation, so a create
//! interrupted before PutBucketTagging leaves a bucket without lackey's tags. To let the
//! next `up`, on any machine, tell that bucket from one someone else made, lackey
//! creates its bucket with a marker: object ownership `BucketOwnerPreferred` (a setting
//! CreateBucket applies atomically; AWS's default is `BucketOwnerEnforced`). The create
//! sequence is CreateBucket (marked) → PutBucketTagging → PutBucketOwnershipControls
//! back to `BucketOwnerEnforced`. A bucket is this stack's when it carries the stack's
//! tag, or when it is untagged, in this account, empty, and still marked: only an
//! interrupted create leaves that state, and `up` then finishes the sequence. The local
//! journal of creation intents is a second proof on the machine that started it.
//! docs/interrupted-bucket.md explains the choice.

use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, Delete, ObjectIdentifier, ObjectOwnership,
    OwnershipControls, OwnershipControlsRule, Tag, Tagging,
};

use super::{Change, Deletion, FieldDiff, Owner, Seen, StackCtx, TAG_STACK};
use crate::aws::{error_code, AwsResultExt};
use crate::error::Fail;

/// The object-ownership rule lackey's create sequence leaves while it runs.
pub const CREATION_MARKER: &str = "BucketOwnerPreferred";
/// The rule of a finished bucket: ACLs disabled, the bucket owner owns every object.
pub const FINISHED_OWNERSHIP: &str = "BucketOwnerEnforced";

#[derive(Clone, Debug)]
pub struct Have {
    /// Whether the bucket still carries the creation marker.
    pub marked: bool,
}

/// The bucket's object-ownership rule; `None` when it has no ownership controls.
async fn ownership(cx: &StackCtx<'_>) -> anyhow::Result<Option<String>> {
    let name = &cx.spec.bucket;
    match cx
        .aws
        .s3()
        .get_bucket_ownership_controls()
        .bucket(name)
        .expected_bucket_owner(&cx.spec.account)
        .send()
        .await
    {
        Ok(out) => Ok(out
            .ownership_controls()
            .and_then(|c| c.rules().first())
            .map(|r| r.object_ownership().as_str().to_string())),
        Err(e) if error_code(&e) == Some("OwnershipControlsNotFoundError") => Ok(None),
        Err(e) => Err(e).aws(format!(
            "failed to read the object ownership of S3 bucket `{name}`"
        )),
    }
}

async fn is_empty(cx: &StackCtx<'_>) -> anyhow::Result<bool> {
    let name = &cx.spec.bucket;
    let first = cx
        .aws
        .s3()
        .list_object_versions()
        .bucket(name)
        .expected_bucket_owner(&cx.spec.account)
        .max_keys(1)
        .send()
        .await
        .aws(format!("failed to list S3 bucket `{name}`"))?;
    Ok(first.versions().is_empty() && first.delete_markers().is_empty())
}

pub async fn observe(cx: &StackCtx<'_>) -> anyhow::Result<Option<Seen<Have>>> {
    let name = &cx.spec.bucket;
    let r = cx
        .aws
        .s3()
        .get_bucket_tagging()
        .bucket(name)
        .expected_bucket_owner(&cx.spec.account)
        .send()
        .await;
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
                let mut s = Seen::new(&cx.spec.stack, Default::default(), Have { marked: false });
                s.owner = Owner::OtherAccount;
                return Ok(Some(s));
            }
            _ => return Err(e).aws(format!("failed to read the tags of S3 bucket `{name}`")),
        },
    };
    let marked = match tags.get(TAG_STACK) {
        // Another stack's bucket: its settings are none of this stack's business.
        Some(s) if *s != cx.spec.stack => false,
        _ => ownership(cx).await?.as_deref() == Some(CREATION_MARKER),
    };
    let mut seen = Seen::new(&cx.spec.stack, tags, Have { marked });
    if seen.owner == Owner::Nobody
        && (cx.journal.intended("s3_bucket", name) || (marked && is_empty(cx).await?))
    {
        // Created by this stack, interrupted before the tags went on: the plan shows
        // the tags to add, and `up` adds them.
        seen.owner = Owner::Us;
    }
    Ok(Some(seen))
}

/// What differs on an owned bucket: a creation marker left by an interrupted `up`.
pub fn diff(have: &Have) -> Vec<FieldDiff> {
    if have.marked {
        vec![FieldDiff::new(
            "object_ownership",
            CREATION_MARKER,
            FINISHED_OWNERSHIP,
        )]
    } else {
        vec![]
    }
}

async fn put_tags(cx: &StackCtx<'_>) -> anyhow::Result<()> {
    let name = &cx.spec.bucket;
    let s3 = cx.aws.s3();
    // Keep tags someone else put on it; ours win.
    let mut tags = match s3
        .get_bucket_tagging()
        .bucket(name)
        .expected_bucket_owner(&cx.spec.account)
        .send()
        .await
    {
        Ok(out) => out.tag_set().to_vec(),
        Err(_) => vec![],
    };
    for (k, v) in cx.spec.tags() {
        tags.retain(|t| t.key() != k);
        tags.push(Tag::builder().key(k).value(v).build()?);
    }
    s3.put_bucket_tagging()
        .bucket(name)
        .expected_bucket_owner(&cx.spec.account)
        .tagging(Tagging::builder().set_tag_set(Some(tags)).build()?)
        .send()
        .await
        .aws(format!("failed to tag S3 bucket `{name}`"))?;
    Ok(())
}

/// Remove the creation marker: the last step of the create sequence.
async fn finish_ownership(cx: &StackCtx<'_>) -> anyhow::Result<()> {
    let name = &cx.spec.bucket;
    cx.aws
        .s3()
        .put_bucket_ownership_controls()
        .bucket(name)
        .expected_bucket_owner(&cx.spec.account)
        .ownership_controls(
            OwnershipControls::builder()
                .rules(
                    OwnershipControlsRule::builder()
                        .object_ownership(ObjectOwnership::from(FINISHED_OWNERSHIP))
                        .build()?,
                )
                .build()?,
        )
        .send()
        .await
        .aws(format!(
            "failed to set the object ownership of S3 bucket `{name}`"
        ))?;
    Ok(())
}

pub async fn apply(cx: &StackCtx<'_>, c: &Change) -> anyhow::Result<()> {
    let name = &cx.spec.bucket;
    let creating = c.action == super::Action::Create;
    if creating {
        cx.journal.intend("s3_bucket", name)?;
        let mut req = cx
            .aws
            .s3()
            .create_bucket()
            .bucket(name)
            .object_ownership(ObjectOwnership::from(CREATION_MARKER));
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
    if creating || c.diff.iter().any(|d| d.field == "tags") {
        put_tags(cx).await?;
    }
    if creating || c.diff.iter().any(|d| d.field == "object_ownership") {
        finish_ownership(cx).await?;
    }
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
