//! Creation intents, for the one resource AWS cannot tag as it creates it.
//!
//! S3's CreateBucket takes no tags, so `up` killed between CreateBucket and
//! PutBucketTagging would leave a bucket that looks unowned, and the next `up` would
//! refuse to touch it. Before creating a bucket, `up` records the intent here; a bucket
//! found without tags whose name is recorded is this stack's, and `up` finishes tagging
//! it. The record is removed once the tags are on. Everything else is tagged atomically
//! at creation and needs no record.
//!
//! The file lives in `$XDG_STATE_HOME/lackey/` (default `~/.local/state/lackey/`), one
//! per account, region and stack.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;

pub struct Journal {
    path: Option<PathBuf>,
    entries: Mutex<BTreeSet<String>>,
}

fn key(kind: &str, name: &str) -> String {
    format!("{kind}:{name}")
}

impl Journal {
    /// The journal of one stack.
    pub fn open(account: &str, region: &str, stack: &str) -> Journal {
        let dir = std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
            .map(|d| d.join("lackey"));
        let path = dir.map(|d| d.join(format!("intents-{account}-{region}-{stack}.txt")));
        let entries = path
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|t| {
                t.lines()
                    .map(str::to_string)
                    .filter(|l| !l.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Journal {
            path,
            entries: Mutex::new(entries),
        }
    }

    /// A journal that remembers nothing (tests of the pure planner).
    pub fn none() -> Journal {
        Journal {
            path: None,
            entries: Mutex::new(BTreeSet::new()),
        }
    }

    fn save(&self, entries: &BTreeSet<String>) -> anyhow::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let text: String = entries.iter().map(|e| format!("{e}\n")).collect();
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    /// Record that `kind`/`name` is about to be created by this stack (durably, before
    /// the create call is sent).
    pub fn intend(&self, kind: &str, name: &str) -> anyhow::Result<()> {
        let mut e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if e.insert(key(kind, name)) {
            self.save(&e)?;
        }
        Ok(())
    }

    /// The creation finished (tags are on).
    pub fn done(&self, kind: &str, name: &str) -> anyhow::Result<()> {
        let mut e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if e.remove(&key(kind, name)) {
            self.save(&e)?;
        }
        Ok(())
    }

    pub fn intended(&self, kind: &str, name: &str) -> bool {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&key(kind, name))
    }
}
