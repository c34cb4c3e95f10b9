//! Git inside the minion: clone, branch, commit, bundle, push.
//!
//! What must stay true:
//! * The source repository is only read (a clone of the read-only `/repo` mount, or of a
//!   remote); the minion never writes to the user's repository.
//! * A token never appears on a command line or in a URL: git asks a credential helper
//!   that reads it from the git process's own environment.
//! * Only the run's own branch is pushed, never with force.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Instant;

use super::artifacts::{clip, now_rfc3339, Artifacts, CommandRecord};

#[derive(Clone)]
pub struct Git {
    pub root: PathBuf,
    artifacts: Arc<Artifacts>,
    name: String,
    email: String,
    token: Option<String>,
}

/// A failed git command, with its stderr.
#[derive(Debug, thiserror::Error)]
#[error("`git {args}` failed: {stderr}")]
pub struct GitError {
    pub args: String,
    pub stderr: String,
}

impl Git {
    pub fn new(
        root: &Path,
        artifacts: Arc<Artifacts>,
        name: &str,
        email: &str,
        token: Option<String>,
    ) -> Git {
        if let Some(t) = &token {
            artifacts.add_secret(t);
        }
        Git {
            root: root.to_path_buf(),
            artifacts,
            name: name.to_string(),
            email: email.to_string(),
            token,
        }
    }

    fn command(&self, cwd: &Path, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("git");
        // Configuration through the environment, so nothing lands in a config file and no
        // secret lands on the command line.
        let mut config: Vec<(&str, String)> = vec![
            ("user.name", self.name.clone()),
            ("user.email", self.email.clone()),
            ("init.defaultBranch", "main".into()),
            ("advice.detachedHead", "false".into()),
            ("core.hooksPath", "/dev/null".into()),
            ("commit.gpgsign", "false".into()),
        ];
        if self.token.is_some() {
            config.push((
                "credential.helper",
                "!f() { echo username=x-access-token; echo \"password=$LACKEY_GIT_TOKEN\"; }; f"
                    .into(),
            ));
        }
        cmd.args(args)
            .current_dir(cwd)
            .env("GIT_CONFIG_GLOBAL", self.global_config())
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_COUNT", config.len().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (i, (k, v)) in config.iter().enumerate() {
            cmd.env(format!("GIT_CONFIG_KEY_{i}"), k)
                .env(format!("GIT_CONFIG_VALUE_{i}"), v);
        }
        if let Some(t) = &self.token {
            cmd.env("LACKEY_GIT_TOKEN", t);
        }
        cmd
    }

    /// A global config of the minion's own. Git (2.39, Debian 12) honours
    /// `safe.directory` only in global or system config, and the clone source (a read-only
    /// mount owned by another user) needs it.
    fn global_config(&self) -> PathBuf {
        let parent = self.root.parent().unwrap_or(Path::new("/tmp"));
        let path = parent.join(".lackey-gitconfig");
        if !path.exists() {
            let _ = std::fs::create_dir_all(parent);
            let _ = std::fs::write(&path, "[safe]\n\tdirectory = *\n");
        }
        path
    }

    async fn run_in(&self, cwd: &Path, args: &[&str]) -> Result<String, GitError> {
        let started = Instant::now();
        let shown = args.join(" ");
        let out = self.command(cwd, args).output().await;
        let (code, stdout, stderr) = match out {
            Ok(o) => (
                o.status.code(),
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            ),
            Err(e) => (None, String::new(), format!("cannot run git: {e}")),
        };
        // Redacted before clipping: a cut could leave half a secret unrecognised.
        let logged = self.artifacts.redact(&format!("{stdout}{stderr}"));
        let (logged, truncated) = clip(&logged, 4_000, "git output cut");
        self.artifacts.command(&CommandRecord {
            ts: now_rfc3339(),
            agent: "git",
            cwd: &cwd.display().to_string(),
            command: &format!("git {shown}"),
            exit_code: code,
            duration_ms: started.elapsed().as_millis(),
            timed_out: false,
            output: &logged,
            output_truncated: truncated,
        });
        if code == Some(0) {
            Ok(stdout)
        } else {
            Err(GitError {
                args: shown,
                stderr: self.artifacts.redact(stderr.trim()),
            })
        }
    }

    pub async fn run(&self, args: &[&str]) -> Result<String, GitError> {
        self.run_in(&self.root, args).await
    }

    /// Clone `source` (a path or URL) into `self.root`; only its checked-out branch
    /// unless another ref is needed.
    pub async fn clone_from(&self, source: &str, single_branch: bool) -> Result<(), GitError> {
        let parent = self.root.parent().unwrap_or(Path::new("/"));
        let _ = std::fs::create_dir_all(parent);
        let dest = self.root.display().to_string();
        // --no-local: the pack protocol instead of copying the object files one by one.
        // Through a bind mount, copying a fresh repository's loose objects took 2.3 s for
        // 5,000 files where packing them took 0.35 s; and nothing is hard-linked into a
        // read-only mount of another owner.
        let mut args = vec!["clone", "--quiet", "--no-local"];
        if single_branch {
            args.push("--single-branch");
        }
        args.extend([source, dest.as_str()]);
        self.run_in(parent, &args).await.map(|_| ())
    }

    pub async fn head(&self) -> Result<String, GitError> {
        Ok(self.run(&["rev-parse", "HEAD"]).await?.trim().to_string())
    }

    pub async fn checkout_new_branch(&self, branch: &str) -> Result<(), GitError> {
        self.run(&["checkout", "--quiet", "-b", branch])
            .await
            .map(|_| ())
    }

    /// Paths changed in the work tree relative to `base` (tracked and untracked, not ignored).
    pub async fn changed_paths(&self, base: &str) -> Result<Vec<String>, GitError> {
        let mut paths: Vec<String> = self
            .run(&["diff", "--name-only", "-z", base])
            .await?
            .split('\0')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let untracked = self
            .run(&["ls-files", "--others", "--exclude-standard", "-z"])
            .await?;
        paths.extend(
            untracked
                .split('\0')
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
        paths.sort();
        paths.dedup();
        Ok(paths)
    }

    /// Put `paths` back as they are at `base` (deleting files that did not exist there).
    pub async fn revert_paths(&self, base: &str, paths: &[String]) -> Result<(), GitError> {
        for p in paths {
            let existed = self
                .run(&["cat-file", "-e", &format!("{base}:{p}")])
                .await
                .is_ok();
            if existed {
                self.run(&["checkout", base, "--", p]).await?;
            } else {
                let _ = self
                    .run(&["rm", "--cached", "--quiet", "--ignore-unmatch", "--", p])
                    .await;
                let _ = std::fs::remove_file(self.root.join(p));
            }
        }
        Ok(())
    }

    /// Commit everything; returns the new commit, or None when nothing changed.
    pub async fn commit_all(&self, message: &str) -> Result<Option<String>, GitError> {
        self.run(&["add", "-A"]).await?;
        let staged = self.run(&["diff", "--cached", "--name-only"]).await?;
        if staged.trim().is_empty() {
            return Ok(None);
        }
        self.run(&["commit", "--quiet", "--no-verify", "-m", message])
            .await?;
        Ok(Some(self.head().await?))
    }

    /// The diff of the work tree (committed or not, new files included) against `base`.
    pub async fn diff(&self, base: &str) -> Result<(String, String), GitError> {
        // Intent-to-add makes untracked files show in the diff without staging content.
        let _ = self.run(&["add", "-A", "-N"]).await;
        let patch = self.run(&["diff", "--binary", base]).await?;
        let stat = self.run(&["diff", "--stat", base]).await?;
        Ok((patch, stat))
    }

    /// A bundle of `base..branch` (the user's repository has `base`); None when the
    /// branch has no commits beyond it.
    pub async fn bundle(&self, base: &str, branch: &str, out: &Path) -> Result<bool, GitError> {
        let count = self
            .run(&["rev-list", "--count", &format!("{base}..{branch}")])
            .await?;
        if count.trim() == "0" {
            return Ok(false);
        }
        let out = out.display().to_string();
        self.run(&["bundle", "create", &out, &format!("{base}..{branch}")])
            .await?;
        Ok(true)
    }

    /// Push the run's branch, and only it, without force.
    pub async fn push(&self, branch: &str) -> Result<(), GitError> {
        let refspec = format!("refs/heads/{branch}:refs/heads/{branch}");
        self.run(&["push", "--quiet", "--porcelain", "origin", &refspec])
            .await
            .map(|_| ())
    }
}
