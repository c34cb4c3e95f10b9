//! Artifact transfer: a run's directory to and from `s3://bucket/<prefix>/`.
//!
//! The bucket round trip (upload, download, compare), as library functions:
//!
//! ```no_run
//! # async fn demo(s3: &aws_sdk_s3::Client) -> anyhow::Result<()> {
//! use std::path::Path;
//! use lackey::cloud::s3::{upload_dir, download_dir};
//! std::fs::create_dir_all("/tmp/lackey-upload-test")?;
//! std::fs::write("/tmp/lackey-upload-test/run_summary.json", "{\"outcome\":\"success\"}\n")?;
//! std::fs::write("/tmp/lackey-upload-test/log.txt", "hello from lackey\n")?;
//! upload_dir(s3, Path::new("/tmp/lackey-upload-test"), "YOUR_BUCKET_NAME", "test-roundtrip").await?;
//! let dest = Path::new("/tmp/lackey-download-test");
//! download_dir(s3, "YOUR_BUCKET_NAME", "test-roundtrip", dest).await?;
//! assert_eq!(std::fs::read_to_string(dest.join("run_summary.json"))?.trim(), "{\"outcome\":\"success\"}");
//! assert_eq!(std::fs::read_to_string(dest.join("log.txt"))?.trim(), "hello from lackey");
//! # Ok(()) }
//! ```
//!
//! Transfers run concurrently (8 at a time); files over 8 MiB go up in multipart parts;
//! each request is retried by the SDK, and a whole file once more on a transient failure.
//! Keys never escape the destination directory on download.

use std::path::{Component, Path, PathBuf};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use futures::stream::{self, StreamExt, TryStreamExt};

use crate::aws::AwsResultExt;

const CONCURRENCY: usize = 8;
pub const MULTIPART_THRESHOLD: u64 = 8 * 1024 * 1024;
const PART_SIZE: u64 = 8 * 1024 * 1024;

/// `s3://bucket/key/with/slashes` → (`bucket`, `key/with/slashes`).
pub fn parse_url(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| anyhow::anyhow!("`{url}` is not an s3:// URL"))?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        anyhow::bail!("`{url}` names no bucket");
    }
    Ok((bucket.to_string(), key.to_string()))
}

/// What a transfer moved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    pub files: usize,
    pub bytes: u64,
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        // Temporary files of an atomic write in progress are not artifacts.
        .filter(|e| !e.file_name().to_string_lossy().ends_with(".tmp"))
        .map(|e| e.into_path())
        .collect()
}

fn key_for(prefix: &str, dir: &Path, file: &Path) -> String {
    let rel = file
        .strip_prefix(dir)
        .map(|p| p.to_string_lossy().replace('\\', "/"))
        .unwrap_or_default();
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        rel
    } else {
        format!("{prefix}/{rel}")
    }
}

/// Upload every file under `dir` to `s3://bucket/prefix/`.
pub async fn upload_dir(
    s3: &aws_sdk_s3::Client,
    dir: &Path,
    bucket: &str,
    prefix: &str,
) -> anyhow::Result<Transfer> {
    let files = files_under(dir);
    let sizes: Vec<u64> = stream::iter(files.into_iter().map(|f| {
        let key = key_for(prefix, dir, &f);
        async move {
            let size = upload_file(s3, &f, bucket, &key).await?;
            Ok::<u64, anyhow::Error>(size)
        }
    }))
    .buffer_unordered(CONCURRENCY)
    .try_collect()
    .await?;
    Ok(Transfer {
        files: sizes.len(),
        bytes: sizes.iter().sum(),
    })
}

/// Upload one file (multipart above the threshold); a transient failure is retried once
/// more as a whole, on top of the SDK's own retries.
pub async fn upload_file(
    s3: &aws_sdk_s3::Client,
    file: &Path,
    bucket: &str,
    key: &str,
) -> anyhow::Result<u64> {
    let size = tokio::fs::metadata(file)
        .await
        .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", file.display()))?
        .len();
    let mut attempt = 0;
    loop {
        let r = if size > MULTIPART_THRESHOLD {
            upload_multipart(s3, file, bucket, key, size).await
        } else {
            put_small(s3, file, bucket, key).await
        };
        match r {
            Ok(()) => return Ok(size),
            Err(e) if attempt == 0 => {
                tracing::debug!("upload of {key} failed ({e:#}); retrying once");
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn put_small(
    s3: &aws_sdk_s3::Client,
    file: &Path,
    bucket: &str,
    key: &str,
) -> anyhow::Result<()> {
    let body = ByteStream::from_path(file)
        .await
        .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", file.display()))?;
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(body)
        .send()
        .await
        .aws(format!("failed to upload `s3://{bucket}/{key}`"))?;
    Ok(())
}

async fn upload_multipart(
    s3: &aws_sdk_s3::Client,
    file: &Path,
    bucket: &str,
    key: &str,
    size: u64,
) -> anyhow::Result<()> {
    let create = s3
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .aws(format!(
            "failed to start a multipart upload of `s3://{bucket}/{key}`"
        ))?;
    let upload_id = create
        .upload_id()
        .ok_or_else(|| anyhow::anyhow!("S3 returned no upload id for `{key}`"))?
        .to_string();
    let parts = size.div_ceil(PART_SIZE);
    let result: anyhow::Result<Vec<CompletedPart>> = stream::iter((0..parts).map(|i| {
        let upload_id = upload_id.clone();
        async move {
            let offset = i * PART_SIZE;
            let len = PART_SIZE.min(size - offset);
            let body = ByteStream::read_from()
                .path(file)
                .offset(offset)
                .length(aws_sdk_s3::primitives::Length::Exact(len))
                .build()
                .await
                .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", file.display()))?;
            let number = (i + 1) as i32;
            let out = s3
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .part_number(number)
                .body(body)
                .send()
                .await
                .aws(format!(
                    "failed to upload part {number} of `s3://{bucket}/{key}`"
                ))?;
            Ok(CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_string))
                .build())
        }
    }))
    .buffer_unordered(4)
    .try_collect()
    .await;
    match result {
        Ok(mut done) => {
            done.sort_by_key(|p| p.part_number());
            s3.complete_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(done))
                        .build(),
                )
                .send()
                .await
                .aws(format!(
                    "failed to complete the multipart upload of `s3://{bucket}/{key}`"
                ))?;
            Ok(())
        }
        Err(e) => {
            // Leave no half upload behind (it would be billed until a lifecycle rule removes it).
            let _ = s3
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
            Err(e)
        }
    }
}

/// Every key under `prefix/`.
pub async fn list_keys(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> anyhow::Result<Vec<(String, i64)>> {
    let prefix = format!("{}/", prefix.trim_matches('/'));
    let mut out = Vec::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(&prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.aws(format!("failed to list `s3://{bucket}/{prefix}`"))?;
        for o in page.contents() {
            if let Some(k) = o.key() {
                out.push((k.to_string(), o.size().unwrap_or(0)));
            }
        }
    }
    Ok(out)
}

/// A key's path below `prefix/`, refusing anything that would land outside `dest`.
fn safe_relative(prefix: &str, key: &str) -> Option<PathBuf> {
    let rel = key.strip_prefix(&format!("{}/", prefix.trim_matches('/')))?;
    let p = Path::new(rel);
    if rel.is_empty() || p.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(p.to_path_buf())
}

/// Download every object under `s3://bucket/prefix/` into `dest`.
pub async fn download_dir(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    dest: &Path,
) -> anyhow::Result<Transfer> {
    let keys = list_keys(s3, bucket, prefix).await?;
    tokio::fs::create_dir_all(dest)
        .await
        .map_err(|e| anyhow::anyhow!("cannot create `{}`: {e}", dest.display()))?;
    let sizes: Vec<u64> = stream::iter(
        keys.into_iter()
            .filter_map(|(k, _)| {
                let rel = safe_relative(prefix, &k)?;
                Some((k, dest.join(rel)))
            })
            .map(|(key, path)| async move { download_key(s3, bucket, &key, &path).await }),
    )
    .buffer_unordered(CONCURRENCY)
    .try_collect()
    .await?;
    Ok(Transfer {
        files: sizes.len(),
        bytes: sizes.iter().sum(),
    })
}

/// Download one object to a file (atomically: a partial download never shows).
pub async fn download_key(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    path: &Path,
) -> anyhow::Result<u64> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    let out = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .aws(format!("failed to download `s3://{bucket}/{key}`"))?;
    let mut reader = out.body.into_async_read();
    let tmp = path.with_extension("part");
    let mut f = tokio::fs::File::create(&tmp)
        .await
        .map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", tmp.display()))?;
    let n = tokio::io::copy(&mut reader, &mut f).await?;
    drop(f);
    tokio::fs::rename(&tmp, path).await?;
    Ok(n)
}

/// An object's text.
pub async fn get_text(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> anyhow::Result<String> {
    let out = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .aws(format!("failed to read `s3://{bucket}/{key}`"))?;
    let bytes = out.body.collect().await?.into_bytes();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

pub async fn put_text(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    text: &str,
) -> anyhow::Result<()> {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(text.as_bytes().to_vec()))
        .send()
        .await
        .aws(format!("failed to write `s3://{bucket}/{key}`"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_keys() {
        assert_eq!(
            parse_url("s3://b/a/b.txt").unwrap(),
            ("b".into(), "a/b.txt".into())
        );
        assert!(parse_url("http://x").is_err());
        assert_eq!(
            key_for("run/", Path::new("/d"), Path::new("/d/x/y.log")),
            "run/x/y.log"
        );
        assert_eq!(safe_relative("run", "run/a/b"), Some(PathBuf::from("a/b")));
        assert_eq!(safe_relative("run", "run/../etc"), None);
        assert_eq!(safe_relative("run", "other/x"), None);
    }
}
