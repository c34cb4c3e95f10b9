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

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, Delete, ObjectIdentifier, ObjectOwnership,
    OwnershipControls, OwnershipControlsRule, Tag, Tagging,
};

use super::resource::{Facts, Intent, Resource};
use super::{
    Action, Change, Deletion, FieldDiff, Kind, Owner, Seen, StackCtx, StackSpec, TAG_STACK,
};
use crate::aws::{self, AwsResultExt, Failure};
use crate::error::Fail;

/// The object-ownership rule lackey's create sequence leaves while it runs.
pub const CREATION_MARKER: &str = "BucketOwnerPreferred";
/// The rule of a finished bucket: ACLs disabled, the bucket owner owns every object.
pub const FINISHED_OWNERSHIP: &str = "BucketOwnerEnforced";

/// The stack's artifact bucket.
pub struct Bucket {
    name: String,
}

impl Bucket {
    pub fn new(spec: &StackSpec) -> Bucket {
        Bucket {
            name: spec.bucket.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Have {
    /// Whether the bucket still carries the creation marker.
    pub marked: bool,
}

/// The bucket's object-ownership rule; `None` when it has no ownership controls.
async fn ownership(cx: &StackCtx<'_>, name: &str) -> anyhow::Result<Option<String>> {
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
        Err(e) if aws::is_no_configuration(&e) => Ok(None),
        Err(e) => Err(e).aws(format!(
            "failed to read the object ownership of S3 bucket `{name}`"
        )),
    }
}

async fn is_empty(cx: &StackCtx<'_>, name: &str) -> anyhow::Result<bool> {
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

/// The bucket as AWS holds it. Its tags and its ownership rule are read at once (the
/// rule matters only for a bucket that is not another owner's).
pub async fn observe(cx: &StackCtx<'_>) -> anyhow::Result<Option<Seen<Have>>> {
    let name = &cx.spec.bucket;
    let s3 = cx.aws.s3();
    let (tagging, rule) = tokio::join!(
        s3.get_bucket_tagging()
            .bucket(name)
            .expected_bucket_owner(&cx.spec.account)
            .send(),
        ownership(cx, name)
    );
    let tags = match tagging {
        Ok(out) => super::tag_map(
            out.tag_set()
                .iter()
                .map(|t| (Some(t.key().to_string()), Some(t.value().to_string()))),
        ),
        // The operator lacks s3:GetBucketTagging: say so, not "another account's".
        Err(e) if crate::aws::is_denied_to_caller(&e) => {
            return Err(e).aws(format!("failed to read the tags of S3 bucket `{name}`"))
        }
        Err(e) => match Failure::of(&e) {
            Failure::NoConfiguration => Default::default(),
            Failure::NotFound => return Ok(None),
            // Owned by another account, or in a region this account cannot see it from.
            Failure::AccessDenied | Failure::WrongRegion => {
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
        _ => rule?.as_deref() == Some(CREATION_MARKER),
    };
    let mut seen = Seen::new(&cx.spec.stack, tags, Have { marked });
    if seen.owner == Owner::Nobody
        && (cx.journal.intended("s3_bucket", name) || (marked && is_empty(cx, name).await?))
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

/// Put the stack's tags on, keeping the ones someone else put (`existing`); ours win.
async fn put_tags(
    cx: &StackCtx<'_>,
    name: &str,
    existing: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let mut tags = existing.clone();
    tags.extend(cx.spec.tags());
    let tags = tags
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect::<Result<Vec<_>, _>>()?;
    cx.aws
        .s3()
        .put_bucket_tagging()
        .bucket(name)
        .expected_bucket_owner(&cx.spec.account)
        .tagging(Tagging::builder().set_tag_set(Some(tags)).build()?)
        .send()
        .await
        .aws(format!("failed to tag S3 bucket `{name}`"))?;
    Ok(())
}

/// The tags a bucket carries now (one that this account already owned when `up`
/// created it again).
async fn current_tags(cx: &StackCtx<'_>, name: &str) -> BTreeMap<String, String> {
    match cx
        .aws
        .s3()
        .get_bucket_tagging()
        .bucket(name)
        .expected_bucket_owner(&cx.spec.account)
        .send()
        .await
    {
        Ok(out) => out
            .tag_set()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect(),
        Err(_) => BTreeMap::new(),
    }
}

/// Remove the creation marker: the last step of the create sequence.
async fn finish_ownership(cx: &StackCtx<'_>, name: &str) -> anyhow::Result<()> {
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

/// CreateBucket with the creation marker. Returns the tags the bucket already carries
/// when this account owned it already (an `up` interrupted after CreateBucket).
async fn create(cx: &StackCtx<'_>, name: &str) -> anyhow::Result<BTreeMap<String, String>> {
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
    match req.send().await {
        // A new bucket has no tags: nothing to read back.
        Ok(_) => Ok(BTreeMap::new()),
        Err(e) => match Failure::of(&e) {
            Failure::AlreadyExists => Ok(current_tags(cx, name).await),
            Failure::NameTakenElsewhere => {
                cx.journal.done("s3_bucket", name)?;
                Err(Fail::new(format!("the S3 bucket name `{name}` is taken by another AWS account"))
                    .with_hint("bucket names are global: set another [bucket] name (or LACKEY_ARTIFACT_BUCKET)")
                    .into())
            }
            _ => Err(e).aws(format!("failed to create S3 bucket `{name}`")),
        },
    }
}

/// Every version and delete marker, in batches of 1,000.
async fn empty(cx: &StackCtx<'_>, name: &str) -> anyhow::Result<()> {
    let s3 = cx.aws.s3();
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
        for (key, version) in page
            .versions()
            .iter()
            .map(|v| (v.key(), v.version_id()))
            .chain(
                page.delete_markers()
                    .iter()
                    .map(|m| (m.key(), m.version_id())),
            )
        {
            ids.push(
                ObjectIdentifier::builder()
                    .key(key.unwrap_or_default())
                    .set_version_id(version.map(str::to_string))
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
            return Ok(());
        }
        key_marker = page.next_key_marker().map(str::to_string);
        version_marker = page.next_version_id_marker().map(str::to_string);
    }
}

/// Unfinished multipart uploads are not objects but keep their parts billed.
async fn abort_uploads(cx: &StackCtx<'_>, name: &str) {
    let s3 = cx.aws.s3();
    if let Ok(mpus) = s3.list_multipart_uploads().bucket(name).send().await {
        futures::future::join_all(mpus.uploads().iter().map(|u| {
            s3.abort_multipart_upload()
                .bucket(name)
                .key(u.key().unwrap_or_default())
                .upload_id(u.upload_id().unwrap_or_default())
                .send()
        }))
        .await;
    }
}

#[async_trait]
impl Resource for Bucket {
    type Have = Have;

    fn kind(&self) -> Kind {
        Kind::S3Bucket
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

    /// CreateBucket (marked) → PutBucketTagging → PutBucketOwnershipControls, in this
    /// order: a bucket is never unmarked before it is tagged.
    async fn apply(
        &self,
        cx: &StackCtx<'_>,
        c: &Change,
        _: &[Change],
        seen: Option<&Seen<Have>>,
        _: &Facts,
    ) -> anyhow::Result<Facts> {
        let name = &self.name;
        let creating = c.action == Action::Create;
        let existing = if creating {
            create(cx, name).await?
        } else {
            seen.map(|s| s.tags.clone()).unwrap_or_default()
        };
        if creating || c.diff.iter().any(|d| d.field == "tags") {
            put_tags(cx, name, &existing).await?;
        }
        if creating || c.diff.iter().any(|d| d.field == "object_ownership") {
            finish_ownership(cx, name).await?;
        }
        cx.journal.done("s3_bucket", name)?;
        Ok(Facts::new())
    }

    /// Delete the bucket; a non-empty one only with `force` (every version, in batches).
    async fn delete(
        &self,
        cx: &StackCtx<'_>,
        _: &Seen<Have>,
        force: bool,
    ) -> anyhow::Result<Vec<Deletion>> {
        let name = &self.name;
        // S3 refuses to delete a bucket that holds anything (BucketNotEmpty), so the
        // delete is tried first: an empty bucket goes in one call, and only one that
        // holds something is listed, emptied (with --force) and deleted again.
        let s3 = cx.aws.s3();
        let delete = || async {
            match s3.delete_bucket().bucket(name).send().await {
                Ok(_) => Ok(true),
                Err(e) if aws::is_not_found(&e) => Ok(true),
                Err(e) if Failure::of(&e) == Failure::NotEmpty => Ok(false),
                Err(e) => Err(e).aws(format!("failed to delete S3 bucket `{name}`")),
            }
        };
        if !delete().await? {
            if !force {
                return Ok(vec![Deletion::Kept(
                    "is not empty; kept (`lackey down --force` empties and deletes it)".into(),
                )]);
            }
            let (emptied, ()) = tokio::join!(empty(cx, name), abort_uploads(cx, name));
            emptied?;
            if !delete().await? {
                return Err(Fail::new(format!(
                    "S3 bucket `{name}` still holds objects after it was emptied"
                ))
                .with_hint(
                    "something is writing into it: stop it, then run `lackey down --force` again",
                )
                .into());
            }
        }
        cx.journal.done("s3_bucket", name)?;
        Ok(vec![Deletion::Deleted])
    }
}
