//! Where a cloud run's artifacts live in the bucket, and how the host finds them again.
//!
//! Every task of a stack runs with one task role, which may write anywhere in the
//! artifacts bucket except the host's own areas (`inputs/`, `fleets/`, `runs/`,
//! `lackey-doctor/`), and run ids are guessable (they are times). Were a run's artifacts
//! at `<run id>/`, a hostile task could replace another run's summary and repository
//! bundle before its host downloads them, and that host would bring the forged commits
//! back as the run's branch.
//!
//! So a run writes its artifacts below a prefix no other task can guess,
//! `<run id>/<128 random bits>/`, and the host records that prefix at launch as the key
//! of an empty object, `runs/<run id>/<128 random bits>`: an area the task role can
//! neither write nor read nor list. The host reads a run's artifacts only below a
//! recorded prefix. What any task writes elsewhere (`<run id>/run_summary.json`, a made-up
//! `<run id>/<bits>/`) is never read. The run's own task knows its prefix (it writes
//! there), so what it writes is checked as any run's artifacts are (the branch only
//! when the bundle's tip is the summary's head, sizes capped, names known).

use aws_sdk_s3::primitives::ByteStream;

use crate::aws::AwsResultExt;

/// The area of the bucket holding the records (the task role is denied it).
pub const RECORDS: &str = "runs/";

/// A new artifact prefix for the run: `<run id>/<128 random bits>` (no slash at either end).
pub fn new_prefix(run_id: &str) -> String {
    format!("{run_id}/{}", hex::encode(rand::random::<[u8; 16]>()))
}

/// Record `prefix` (made by [`new_prefix`]) as where its run's artifacts are.
pub async fn record(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> anyhow::Result<()> {
    let key = format!("{RECORDS}{prefix}");
    s3.put_object()
        .bucket(bucket)
        .key(&key)
        .body(ByteStream::from_static(b""))
        .send()
        .await
        .aws(format!("failed to write `s3://{bucket}/{key}`"))?;
    Ok(())
}

/// Remove the record of `prefix` (a launch that did not happen); best effort.
pub async fn forget(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) {
    let _ = s3
        .delete_object()
        .bucket(bucket)
        .key(format!("{RECORDS}{prefix}"))
        .send()
        .await;
}

/// The recorded prefix of `run_id`, or none when the host never launched such a run.
///
/// A run launched again by the host (a fleet's retry after a failed RunTask, a resumed
/// fleet) may have several records: each was written by a host and is as private as
/// the others, so the one whose prefix holds a summary is taken, else the last.
pub async fn find(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    run_id: &str,
) -> anyhow::Result<Option<String>> {
    if !crate::summary::is_run_id(run_id) {
        return Ok(None);
    }
    let keys =
        crate::cloud::s3::list_keys_starting(s3, bucket, &format!("{RECORDS}{run_id}/")).await?;
    let mut prefixes: Vec<String> = keys
        .into_iter()
        .filter_map(|(k, _)| parse(&k).map(|(_, p)| p))
        .collect();
    if prefixes.len() > 1 {
        for p in &prefixes {
            let summary = format!("{p}/run_summary.json");
            if s3
                .head_object()
                .bucket(bucket)
                .key(&summary)
                .send()
                .await
                .is_ok()
            {
                return Ok(Some(p.clone()));
            }
        }
    }
    Ok(prefixes.pop())
}

/// Every recorded run: (run id, prefix), one listing of the records' area. A run with
/// several records appears once per record.
pub async fn all(s3: &aws_sdk_s3::Client, bucket: &str) -> anyhow::Result<Vec<(String, String)>> {
    let keys = crate::cloud::s3::list_keys_starting(s3, bucket, RECORDS).await?;
    Ok(keys.into_iter().filter_map(|(k, _)| parse(&k)).collect())
}

/// A record's key as (run id, prefix); none for any other key.
fn parse(key: &str) -> Option<(String, String)> {
    let prefix = key.strip_prefix(RECORDS)?;
    let (id, bits) = prefix.split_once('/')?;
    let private = bits.len() == 32 && bits.bytes().all(|b| b.is_ascii_hexdigit());
    (crate::summary::is_run_id(id) && private).then(|| (id.to_string(), prefix.to_string()))
}

/// The `s3://` address of a prefix's folder, as the summary and the messages show it.
pub fn url(bucket: &str, prefix: &str) -> String {
    format!("s3://{bucket}/{}/", prefix.trim_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_is_the_run_id_and_128_private_bits_and_its_record_parses_back() {
        let id = "20261129-042233-a1b2";
        let p = new_prefix(id);
        assert!(
            p.starts_with(&format!("{id}/")) && p.len() == id.len() + 33,
            "{p}"
        );
        assert_ne!(p, new_prefix(id), "two prefixes of one run are different");
        assert_eq!(
            parse(&format!("runs/{p}")),
            Some((id.to_string(), p.clone()))
        );
        for not_a_record in [
            format!("{p}/run_summary.json"),
            format!("runs/{id}/short"),
            format!("runs/{id}/{}", "g".repeat(32)),
            format!("runs/../{}", "a".repeat(32)),
            format!("runs/{p}/x"),
        ] {
            assert_eq!(parse(&not_a_record), None, "{not_a_record}");
        }
        assert_eq!(url("b", &p), format!("s3://b/{p}/"));
    }
}
