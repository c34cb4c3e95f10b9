//! Where a fleet's manifest is kept, and the stop marker `lackey stop --fleet` leaves.
//!
//! * Cloud fleets: `s3://<bucket>/fleets/<fleet id>/manifest.json` and
//!   `fleets/<fleet id>/stop` (the bucket's other keys are run ids and `inputs/`).
//! * Local fleets: `<artifacts_dir>/fleets/<fleet id>/manifest.json` and `stop`.

use std::path::{Path, PathBuf};

use super::engine::Store;
use super::{check_fleet_id, Manifest};
use crate::error::Fail;

pub struct FileStore {
    root: PathBuf,
}

impl FileStore {
    pub fn new(artifacts_root: &Path) -> FileStore {
        FileStore {
            root: artifacts_root.join("fleets"),
        }
    }

    fn dir(&self, fleet_id: &str) -> PathBuf {
        self.root.join(fleet_id)
    }

    pub fn load(&self, fleet_id: &str) -> anyhow::Result<Manifest> {
        check_fleet_id(fleet_id)?;
        let path = self.dir(fleet_id).join("manifest.json");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Fail::new(format!("no local fleet `{fleet_id}` ({}: {e})", path.display()))
                .with_hint("a local fleet's manifest is under [local] artifacts_dir/fleets/; for a cloud fleet add --cloud")
        })?;
        Manifest::from_json(&text, &path.display().to_string())
    }

    pub fn request_stop(&self, fleet_id: &str) -> anyhow::Result<()> {
        check_fleet_id(fleet_id)?;
        std::fs::write(self.dir(fleet_id).join("stop"), b"stop\n")?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for FileStore {
    async fn save(&self, m: &Manifest) -> anyhow::Result<()> {
        let dir = self.dir(&m.fleet_id);
        std::fs::create_dir_all(&dir).map_err(|e| {
            Fail::new(format!("cannot create `{}`: {e}", dir.display())).with_hint(
                "set [local] artifacts_dir (or LACKEY_ARTIFACTS_DIR) to a writable directory",
            )
        })?;
        let tmp = dir.join("manifest.json.tmp");
        std::fs::write(&tmp, m.to_json())?;
        std::fs::rename(&tmp, dir.join("manifest.json"))?;
        Ok(())
    }

    async fn stop_requested(&self, fleet_id: &str) -> bool {
        self.dir(fleet_id).join("stop").exists()
    }
}

pub struct S3Store {
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
}

pub fn manifest_key(fleet_id: &str) -> String {
    format!("fleets/{fleet_id}/manifest.json")
}

fn stop_key(fleet_id: &str) -> String {
    format!("fleets/{fleet_id}/stop")
}

impl S3Store {
    pub async fn load(&self, fleet_id: &str) -> anyhow::Result<Manifest> {
        check_fleet_id(fleet_id)?;
        let key = manifest_key(fleet_id);
        let text = crate::cloud::s3::get_text(&self.s3, &self.bucket, &key)
            .await
            .map_err(|e| {
                Fail::new(format!(
                    "no cloud fleet `{fleet_id}` (s3://{}/{key}: {e:#})",
                    self.bucket
                ))
                .with_hint("check the fleet id (printed when it started) and the stack's bucket; a local fleet's id needs no --cloud")
            })?;
        Manifest::from_json(&text, &format!("s3://{}/{key}", self.bucket))
    }

    pub async fn request_stop(&self, fleet_id: &str) -> anyhow::Result<()> {
        check_fleet_id(fleet_id)?;
        crate::cloud::s3::put_text(&self.s3, &self.bucket, &stop_key(fleet_id), "stop\n").await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for S3Store {
    async fn save(&self, m: &Manifest) -> anyhow::Result<()> {
        crate::cloud::s3::put_text(
            &self.s3,
            &self.bucket,
            &manifest_key(&m.fleet_id),
            &m.to_json(),
        )
        .await
        .map_err(|e| {
            anyhow::Error::from(
                Fail::new(format!(
                    "cannot write the fleet's manifest to s3://{}/{}: {e:#}",
                    self.bucket,
                    manifest_key(&m.fleet_id)
                ))
                .with_hint(
                    "the fleet needs the stack's bucket to be resumable: check `lackey doctor`",
                ),
            )
        })
    }

    async fn stop_requested(&self, fleet_id: &str) -> bool {
        self.s3
            .head_object()
            .bucket(&self.bucket)
            .key(stop_key(fleet_id))
            .send()
            .await
            .is_ok()
    }
}
