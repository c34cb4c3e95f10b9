//! Artifact transfer: a run's directory to and from `s3://bucket/<prefix>/`.
//!
//! The bucket round trip (upload, download, compare), as library functions:
//!
//! ```no_run
//! # async fn demo(s3: &aws_sdk_s3::Client) -> anyhow::Result<()> {
//! use std::path::Path;
//! use lackey::cloud::s3::{upload_dir, download_artifacts};
//! std::fs::create_dir_all("/tmp/lackey-upload-test")?;
//! std::fs::write("/tmp/lackey-upload-test/run_summary.json", "{\"outcome\":\"success\"}\n")?;
//! std::fs::write("/tmp/lackey-upload-test/minion.log", "hello from lackey\n")?;
//! upload_dir(s3, Path::new("/tmp/lackey-upload-test"), "YOUR_BUCKET_NAME", "test-roundtrip").await?;
//! let dest = Path::new("/tmp/lackey-download-test");
//! download_artifacts(s3, "YOUR_BUCKET_NAME", "test-roundtrip", dest).await?;
//! assert_eq!(std::fs::read_to_string(dest.join("run_summary.json"))?.trim(), "{\"outcome\":\"success\"}");
//! assert_eq!(std::fs::read_to_string(dest.join("minion.log"))?.trim(), "hello from lackey");
//! # Ok(()) }
//! ```
//!
//! Transfers run concurrently (uploads 8 at a time, a run's downloads 16); files over 8 MiB go up in multipart parts;
//! each request is retried by the SDK, and a whole file once more on a transient failure.
//! A download writes only the known artifact names, size-capped; other keys (`../x`,
//! absolute names, names with a NUL or a backslash) are refused.

use std::path::{Path, PathBuf};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use futures::stream::{self, StreamExt, TryStreamExt};

use crate::aws::AwsResultExt;
use crate::rundir::RunDir;

const CONCURRENCY: usize = 8;
/// A run's artifacts are a dozen small files: all of them at once.
const DOWNLOAD_CONCURRENCY: usize = 16;
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
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub files: usize,
    pub bytes: u64,
    /// Keys a download skipped, each with why.
    pub refused: Vec<String>,
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
        refused: vec![],
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
    list_keys_starting(s3, bucket, &format!("{}/", prefix.trim_matches('/'))).await
}

/// Every key that starts with `prefix`, as it is.
pub async fn list_keys_starting(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> anyhow::Result<Vec<(String, i64)>> {
    let mut out = Vec::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
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

/// Download a run's artifacts from `s3://bucket/prefix/` into the run directory `dest`.
///
/// Only the known artifact names directly below the prefix are written (see
/// [`artifact_name`]), each size-capped and written as a fresh file renamed into place,
/// never through what is already at its name. Every known name is asked for at once,
/// beside the listing of the prefix (one round trip, not a listing and then the
/// downloads); a name the run did not leave is simply absent. Every other key the
/// listing finds is skipped and reported in `refused`, as is a file over its cap.
pub async fn download_artifacts(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    dest: &Path,
) -> anyhow::Result<Transfer> {
    tokio::fs::create_dir_all(dest)
        .await
        .map_err(|e| anyhow::anyhow!("cannot create `{}`: {e}", dest.display()))?;
    let dir =
        RunDir::open(dest).map_err(|e| anyhow::anyhow!("cannot open `{}`: {e}", dest.display()))?;
    let dir = &dir;
    let base = prefix.trim_matches('/');
    let (keys, got) = tokio::join!(
        list_keys(s3, bucket, prefix),
        stream::iter(
            crate::rundir::accepted_names()
                .map(|name| download_named(s3, bucket, base, dir, name))
                .collect::<Vec<_>>()
        )
        .buffer_unordered(DOWNLOAD_CONCURRENCY)
        .try_collect::<Vec<_>>()
    );
    let mut refused: Vec<String> = keys?
        .into_iter()
        .filter_map(|(key, _)| match artifact_name(prefix, &key) {
            Ok(_) => None,
            Err(why) => Some(format!("`{}` ({why})", key.escape_debug())),
        })
        .collect();
    let mut sizes = Vec::new();
    for (key, cap, g) in got? {
        match g {
            Got::Written(n) => sizes.push(n),
            Got::Missing => {}
            Got::TooLarge => refused.push(format!("`{key}` (larger than {cap} bytes)")),
        }
    }
    refused.sort();
    Ok(Transfer {
        files: sizes.len(),
        bytes: sizes.iter().sum(),
        refused,
    })
}

/// The artifact `name` of the run under `base`, with its key and its cap.
async fn download_named(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    base: &str,
    dir: &RunDir,
    name: &'static str,
) -> anyhow::Result<(String, u64, Got)> {
    let cap = crate::rundir::accepted(name).unwrap_or(0);
    let key = format!("{base}/{name}");
    let got = download_capped(s3, bucket, &key, dir, name, cap).await?;
    Ok((key, cap, got))
}

/// What became of one artifact's download.
enum Got {
    Written(u64),
    /// The run left no such file.
    Missing,
    /// Over its cap: not written.
    TooLarge,
}

/// One artifact into `dir`: at most `cap` bytes, through a fresh file renamed into place.
async fn download_capped(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    dir: &RunDir,
    name: &str,
    cap: u64,
) -> anyhow::Result<Got> {
    let out = match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(out) => out,
        Err(e) if crate::aws::is_not_found(&e) => return Ok(Got::Missing),
        Err(e) => return Err(e).aws(format!("failed to download `s3://{bucket}/{key}`")),
    };
    if out.content_length().is_some_and(|n| n.max(0) as u64 > cap) {
        return Ok(Got::TooLarge);
    }
    let reader = out.body.into_async_read();
    let (file, tmp) = dir
        .create_temp()
        .map_err(|e| anyhow::anyhow!("cannot write into `{}`: {e}", dir.path().display()))?;
    let mut f = tokio::fs::File::from_std(file);
    let copied = tokio::io::copy(&mut tokio::io::AsyncReadExt::take(reader, cap + 1), &mut f).await;
    drop(f);
    let n = match copied {
        Ok(n) if n <= cap => n,
        Ok(_) => {
            dir.discard(&tmp);
            return Ok(Got::TooLarge);
        }
        Err(e) => {
            dir.discard(&tmp);
            return Err(anyhow::anyhow!(
                "failed to download `s3://{bucket}/{key}`: {e}"
            ));
        }
    };
    dir.commit(&tmp, name).map_err(|e| {
        dir.discard(&tmp);
        anyhow::anyhow!("cannot write `{}/{name}`: {e}", dir.path().display())
    })?;
    Ok(Got::Written(n))
}

/// The artifact a key names directly below `prefix/`, with the most the host takes of
/// it; or why the key is refused: outside the prefix, empty, absolute, with a NUL, a
/// backslash, a `/` or a dot name, or not an artifact of a run.
pub fn artifact_name<'k>(prefix: &str, key: &'k str) -> Result<(&'k str, u64), &'static str> {
    let rel = key
        .strip_prefix(&format!("{}/", prefix.trim_matches('/')))
        .ok_or("outside the run's prefix")?;
    if rel.is_empty() {
        return Err("an empty name");
    }
    if rel.contains('\0') {
        return Err("a NUL in the name");
    }
    if rel.contains('\\') {
        return Err("a backslash in the name");
    }
    if rel.starts_with('/') {
        return Err("an absolute name");
    }
    if rel.contains('/') || rel == "." || rel == ".." {
        return Err("not a plain file name");
    }
    let cap = crate::rundir::accepted(rel).ok_or("not an artifact of a run")?;
    Ok((rel, cap))
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
    get_text_capped(s3, bucket, key, crate::runner::rundir::MAX_ARTIFACT_BYTES).await
}

/// A run's summary from the bucket, no larger than a summary may be.
pub async fn get_summary(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> anyhow::Result<String> {
    get_text_capped(s3, bucket, key, crate::runner::rundir::MAX_SUMMARY_BYTES).await
}

/// An object as text, refused when it is larger than `cap` (by its length, and while
/// it streams: a length can be absent).
pub async fn get_text_capped(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    cap: u64,
) -> anyhow::Result<String> {
    let out = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .aws(format!("failed to read `s3://{bucket}/{key}`"))?;
    // A run's task could write any size there: read no more than the cap.
    let too_large =
        || anyhow::anyhow!("`s3://{bucket}/{key}` is larger than {cap} bytes: not read");
    if out.content_length().is_some_and(|n| n.max(0) as u64 > cap) {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    use tokio::io::AsyncReadExt;
    out.body
        .into_async_read()
        .take(cap + 1)
        .read_to_end(&mut bytes)
        .await?;
    if bytes.len() as u64 > cap {
        return Err(too_large());
    }
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
    }

    #[test]
    fn download_keys_name_only_known_artifacts() {
        use crate::rundir::{MAX_ARTIFACT_BYTES, MAX_BUNDLE_BYTES, MAX_SUMMARY_BYTES};
        let id = "20261124-143015-7f3a";
        assert_eq!(
            artifact_name(id, &format!("{id}/minion.log")),
            Ok(("minion.log", MAX_ARTIFACT_BYTES))
        );
        assert_eq!(
            artifact_name(&format!("{id}/"), &format!("{id}/run_summary.json")),
            Ok(("run_summary.json", MAX_SUMMARY_BYTES))
        );
        assert_eq!(
            artifact_name(id, &format!("{id}/repo.bundle")),
            Ok(("repo.bundle", MAX_BUNDLE_BYTES))
        );
        for (key, why) in [
            (format!("{id}/../x"), "not a plain file name"),
            (format!("{id}/.."), "not a plain file name"),
            (format!("{id}/a/minion.log"), "not a plain file name"),
            (format!("{id}//etc/passwd"), "an absolute name"),
            (format!("{id}/minion.log\0"), "a NUL in the name"),
            (format!("{id}/..\\x"), "a backslash in the name"),
            (format!("{id}/"), "an empty name"),
            (format!("{id}/.ecs-task"), "not an artifact of a run"),
            (format!("{id}/evil.sh"), "not an artifact of a run"),
            ("/etc/passwd".to_string(), "outside the run's prefix"),
            (format!("{id}x/minion.log"), "outside the run's prefix"),
            ("other/minion.log".to_string(), "outside the run's prefix"),
        ] {
            assert_eq!(artifact_name(id, &key), Err(why), "{key:?}");
        }
    }
}
