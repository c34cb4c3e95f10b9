//! Git inside the minion: clone, branch, commit, bundle, push.
//!
//! What must stay true:
//! * The source repository is only read (a clone of the bundle the host made of its
//!   commits, or of a remote); the minion never writes to the user's repository.
//! * A token never appears on a command line or in a URL: git asks a credential helper
//!   that reads it from the git process's own environment.
//! * Only the run's own branch is pushed, never with force, and only commits the
//!   minion made itself (it pushes its last commit by id).
//! * No git process lackey starts obeys a setting the untrusted side could have
//!   written: the repository's config is put back as the clone wrote it before every
//!   call, no system or user config is read, and command-line settings disable every
//!   program git could run (hooks, fsmonitor, credential helpers, ssh, `ext::`, …).
//!   docs/sandbox.md lists them and why.
//! * The token is in the environment of `clone`, `fetch` and `push` only, and those
//!   never run beside a stray process (`sandbox`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::artifacts::{clip, now_rfc3339, Artifacts, CommandRecord};

#[derive(Clone)]
pub struct Git {
    pub root: PathBuf,
    artifacts: Arc<Artifacts>,
    name: String,
    email: String,
    token: Option<String>,
    /// `.git/config` as the clone wrote it, restored before every git call in the repo.
    pinned: Arc<Mutex<Option<Vec<u8>>>>,
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
            pinned: Arc::new(Mutex::new(None)),
        }
    }

    fn command(&self, cwd: &Path, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("git");
        cmd.args(args)
            .current_dir(cwd)
            .env_clear()
            .envs(kept_env())
            // Nothing from the machine or the user: no system or global config, no
            // attributes of the system, no replacement objects, every path literal.
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", self.global_config())
            .env("GIT_ATTR_NOSYSTEM", "1")
            .env("GIT_NO_REPLACE_OBJECTS", "1")
            .env("GIT_LITERAL_PATHSPECS", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("HOME", "/nonexistent")
            .env("XDG_CONFIG_HOME", "/nonexistent")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if cwd == self.root {
            // The repository is the minion's clone: never a `.git` file or `commondir`
            // pointing elsewhere.
            let dir = self.root.join(".git");
            cmd.env("GIT_DIR", &dir)
                .env("GIT_COMMON_DIR", &dir)
                .env("GIT_WORK_TREE", &self.root);
        }
        // Command-line scope: read after the repository's own config, so these win.
        let config = self.config(args.first().copied() == Some("push"));
        cmd.env("GIT_CONFIG_COUNT", config.len().to_string());
        for (i, (k, v)) in config.iter().enumerate() {
            cmd.env(format!("GIT_CONFIG_KEY_{i}"), k)
                .env(format!("GIT_CONFIG_VALUE_{i}"), v);
        }
        // The token only for the commands that talk to the remote.
        let network = matches!(
            args.first().copied(),
            Some("clone" | "fetch" | "push" | "ls-remote")
        );
        if let (true, Some(t)) = (network, &self.token) {
            cmd.env("LACKEY_GIT_TOKEN", t);
        }
        cmd
    }

    /// Every setting of lackey's own git calls (see docs/sandbox.md for why each). A
    /// push sends its pack stored and undeltified: the credential proxy (a cloud run's
    /// sidecar) lets an existing branch (`--push-to`) move only when it can prove, from
    /// the pack itself, that the update is a fast-forward (docs/sandbox-network.md).
    fn config(&self, push: bool) -> Vec<(&'static str, String)> {
        let mut config: Vec<(&'static str, String)> = vec![
            ("user.name", self.name.clone()),
            ("user.email", self.email.clone()),
            ("init.defaultBranch", "main".into()),
            ("advice.detachedHead", "false".into()),
        ];
        config.extend(HARDENING.iter().map(|(k, v)| (*k, v.to_string())));
        if push {
            config.push(("pack.compression", "0".into()));
            config.push(("pack.window", "0".into()));
        }
        if self.token.is_some() {
            config.push((
                "credential.helper",
                "!f() { test \"$1\" = get || exit 0; echo username=x-access-token; echo \"password=$LACKEY_GIT_TOKEN\"; }; f"
                    .into(),
            ));
        }
        config
    }

    /// The global config of lackey's git calls: only `safe.directory = *`, which the
    /// clone source (a read-only mount of another owner) needs and which git 2.39 takes
    /// from the system or global config only, not from the command line. Rewritten
    /// before every call, as a command may have written it.
    fn global_config(&self) -> PathBuf {
        self.root
            .parent()
            .unwrap_or(Path::new("/tmp"))
            .join(".lackey-gitconfig")
    }

    /// Write `bytes` to `path` as a fresh file renamed over the old one: a link planted
    /// there is replaced, never written through.
    fn write_fresh(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
            std::fs::remove_dir_all(path)?;
        }
        let tmp = path.with_extension(format!("lackey-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(bytes)?;
        std::fs::rename(&tmp, path)
    }

    /// Put the repository's own configuration back as it was right after the clone, and
    /// remove the files that would redirect git elsewhere. The work tree's `.git` is
    /// writable by the commands the agents run, so it is never read as it is.
    fn restore(&self, in_repo: bool) -> Result<(), GitError> {
        let refuse = |why: String| GitError {
            args: "(the minion's checks before running git)".into(),
            stderr: why,
        };
        let global = self.global_config();
        if let Some(parent) = global.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        Self::write_fresh(&global, b"[safe]\n\tdirectory = *\n")
            .map_err(|e| refuse(format!("cannot write `{}`: {e}", global.display())))?;
        let config = match (
            in_repo,
            self.pinned
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        ) {
            (true, Some(c)) => c,
            _ => return Ok(()),
        };
        let dir = self.root.join(".git");
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_dir() => {}
            _ => {
                return Err(refuse(format!(
                    "`{}` is no longer the directory the minion cloned (it was removed or replaced by a link or a file); the minion runs no git command in it",
                    dir.display()
                )))
            }
        }
        for name in [
            "commondir",
            "config.worktree",
            "info/grafts",
            "shallow.lock",
        ] {
            let p = dir.join(name);
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_dir() => {
                    let _ = std::fs::remove_dir_all(&p);
                }
                Ok(_) => {
                    let _ = std::fs::remove_file(&p);
                }
                Err(_) => {}
            }
        }
        Self::write_fresh(&dir.join("config"), &config)
            .map_err(|e| refuse(format!("cannot restore `{}/config`: {e}", dir.display())))
    }

    async fn run_in(&self, cwd: &Path, args: &[&str]) -> Result<String, GitError> {
        self.run_with(cwd, args, None).await
    }

    async fn run_with(
        &self,
        cwd: &Path,
        args: &[&str],
        stdin: Option<Vec<u8>>,
    ) -> Result<String, GitError> {
        self.restore(cwd == self.root)?;
        // A git process holding the token never runs beside a stray process, which could
        // read it from /proc/<pid>/environ.
        if self.token.is_some() && matches!(args.first().copied(), Some("fetch" | "push")) {
            self.sweep()?;
        }
        let started = Instant::now();
        let shown = args.join(" ");
        let mut cmd = self.command(cwd, args);
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let out = match cmd.spawn() {
            Ok(mut child) => {
                if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
                    use tokio::io::AsyncWriteExt;
                    let _ = pipe.write_all(&data).await;
                    drop(pipe);
                }
                child.wait_with_output().await
            }
            Err(e) => Err(e),
        };
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
        self.run_in(parent, &args).await?;
        // The configuration as git wrote it for the clone, before any untrusted code ran.
        let config = std::fs::read(self.root.join(".git/config")).map_err(|e| GitError {
            args: "clone".into(),
            stderr: format!("cannot read the clone's .git/config: {e}"),
        })?;
        *self
            .pinned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(config);
        Ok(())
    }

    /// After the checkout: the work tree's files are dated two seconds back and the
    /// index refreshed once. Files checked out in the second the index was written are
    /// "racily clean" to git, which then reads every one of them again on each command
    /// until an index is written in a later second: on a 5,000-file repository a run
    /// made within one second paid that on every git call (0.6 s at the end alone).
    /// Dated back, they are hashed once, here, and never again while unchanged.
    pub async fn settle_index(&self) {
        let root = self.root.clone();
        let _ = tokio::task::spawn_blocking(move || backdate(&root, &root.join(".git"))).await;
        let _ = self.run(&["update-index", "-q", "--refresh"]).await;
    }

    /// Every entry of `commit`'s tree, path → `<mode> <object id>` (as git reads it now).
    pub async fn tree_listing(
        &self,
        commit: &str,
    ) -> Result<std::collections::HashMap<String, String>, GitError> {
        let out = self
            .run(&["ls-tree", "-r", "-z", "--full-tree", commit])
            .await?;
        Ok(out
            .split('\0')
            .filter_map(|e| {
                let (meta, path) = e.split_once('\t')?;
                let mut m = meta.split(' ');
                let (mode, _kind, id) = (m.next()?, m.next()?, m.next()?);
                Some((path.to_string(), format!("{mode} {id}")))
            })
            .collect())
    }

    /// Stop every stray process (when the minion armed the sweeps); logs what it did.
    pub fn sweep(&self) -> Result<Option<super::sandbox::Sweep>, GitError> {
        match super::sandbox::sweep() {
            None => Ok(None),
            Some(Ok(s)) => {
                if s.killed > 0 || s.foreign > 0 {
                    self.artifacts.log("sandbox", &s.describe());
                }
                Ok(Some(s))
            }
            Some(Err(e)) => Err(GitError {
                args: "(the minion's checks before running git)".into(),
                stderr: e.to_string(),
            }),
        }
    }

    /// Make the repository the minion's again before it is trusted: no stray process
    /// runs (see `sandbox`), git's metadata is the clone's, HEAD is `head_ref` (or
    /// detached) at `tip`, the last commit the minion made or started from, and the index
    /// is `tip`'s tree. Commits an agent's command made itself, and anything it staged,
    /// are left out; the work tree is untouched.
    pub async fn seal(
        &self,
        tip: &str,
        head_ref: Option<&str>,
    ) -> Result<Option<super::sandbox::Sweep>, GitError> {
        let swept = self.sweep()?;
        match head_ref {
            Some(r) => {
                self.run(&["symbolic-ref", "HEAD", r]).await?;
            }
            None => {
                self.run(&["update-ref", "--no-deref", "HEAD", tip]).await?;
            }
        }
        // A mixed reset: the branch back at `tip` and every index entry `tip`'s, so
        // nothing an agent staged is committed. (Entry flags such as assume-unchanged can
        // only hide a change from the listing, and what is not listed is not committed.)
        self.run(&["reset", "--quiet", tip]).await?;
        Ok(swept)
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
            .run(&["diff", "--no-renames", "--name-only", "-z", base])
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
                // Not followed: a link is removed, not what it points at; an untracked
                // repository inside the tree is listed as `dir/`.
                let abs = self.root.join(p.trim_end_matches('/'));
                match std::fs::symlink_metadata(&abs) {
                    Ok(m) if m.file_type().is_dir() => {
                        let _ = std::fs::remove_dir_all(&abs);
                    }
                    Ok(_) => {
                        let _ = std::fs::remove_file(&abs);
                    }
                    Err(_) => {}
                }
            }
        }
        Ok(())
    }

    /// Commit exactly `paths` (changed, added or deleted), named one by one: never
    /// `add -A`. Returns the new commit, or None when nothing changed.
    pub async fn commit_paths(
        &self,
        paths: &[String],
        message: &str,
    ) -> Result<Option<String>, GitError> {
        if paths.is_empty() {
            return Ok(None);
        }
        let list: Vec<u8> = paths
            .iter()
            .flat_map(|p| [p.as_bytes(), b"\0"])
            .flatten()
            .copied()
            .collect();
        self.run_with(
            &self.root,
            &[
                "add",
                "--all",
                "--pathspec-from-file=-",
                "--pathspec-file-nul",
            ],
            Some(list),
        )
        .await?;
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
        let patch = self
            .run(&["diff", "--no-ext-diff", "--no-textconv", "--binary", base])
            .await?;
        let stat = self
            .run(&["diff", "--no-ext-diff", "--no-textconv", "--stat", base])
            .await?;
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

    /// Push `tip` (the minion's own last commit, not whatever the branch points at now)
    /// to the run's branch, and only it, without force.
    pub async fn push(&self, tip: &str, branch: &str) -> Result<(), GitError> {
        let refspec = format!("{tip}:refs/heads/{branch}");
        self.run(&["push", "--quiet", "--porcelain", "origin", &refspec])
            .await
            .map(|_| ())
    }
}

/// Date every file under `dir` but `skip` two seconds back (links themselves, never
/// followed).
fn backdate(dir: &Path, skip: &Path) {
    let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) else {
        return;
    };
    let then = libc::timespec {
        tv_sec: now.as_secs().saturating_sub(2) as libc::time_t,
        tv_nsec: 0,
    };
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        then,
    ];
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path == skip {
                continue;
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(path.clone());
            }
            use std::os::unix::ffi::OsStrExt;
            let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
                continue;
            };
            // SAFETY: `c` is a valid NUL-terminated path and `times` two timespecs.
            unsafe {
                libc::utimensat(
                    libc::AT_FDCWD,
                    c.as_ptr(),
                    times.as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                );
            }
        }
    }
}

/// Settings for every git call lackey makes itself, in the command-line scope (read
/// after the repository's own config, so they win). Each closes a way the repository's
/// config, which the agents' commands can write, would run a program or send git
/// somewhere else; docs/sandbox.md lists why each is there.
const HARDENING: &[(&str, &str)] = &[
    ("core.hooksPath", "/dev/null"),
    ("core.fsmonitor", "false"),
    ("core.sshCommand", "false"),
    ("core.askPass", ""),
    ("core.editor", "false"),
    ("sequence.editor", "false"),
    ("core.pager", "cat"),
    ("core.attributesFile", "/dev/null"),
    ("gpg.program", "false"),
    ("commit.gpgsign", "false"),
    ("tag.gpgsign", "false"),
    ("gc.auto", "0"),
    ("maintenance.auto", "false"),
    ("submodule.recurse", "false"),
    ("fetch.recurseSubmodules", "false"),
    ("push.recurseSubmodules", "no"),
    // The empty value empties the list of helpers collected so far (the repository's
    // own); lackey's helper, when it has a token, comes after.
    ("credential.helper", ""),
    ("protocol.allow", "never"),
    ("protocol.file.allow", "always"),
    ("protocol.http.allow", "always"),
    ("protocol.https.allow", "always"),
    ("protocol.ext.allow", "never"),
    ("protocol.ssh.allow", "never"),
    ("protocol.git.allow", "never"),
    ("protocol.fd.allow", "never"),
];

/// The minion's environment variables git may see: no secret, nothing that changes
/// what git runs (`GIT_*`, `SSH_*`, `EDITOR`, `PAGER` are all dropped).
fn kept_env() -> Vec<(String, String)> {
    const KEEP: &[&str] = &[
        "PATH",
        "LANG",
        "LC_ALL",
        "LC_CTYPE",
        "TZ",
        "TMPDIR",
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "no_proxy",
        "NO_PROXY",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    ];
    std::env::vars()
        .filter(|(k, _)| KEEP.contains(&k.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::minion::artifacts::Redactor;
    use std::process::Command;

    /// Plain git, as an agent's command runs it: the user's own environment and config.
    fn plain(dir: &Path, args: &[&str]) -> std::process::Output {
        Command::new("git")
            .args(["-c", "user.name=a", "-c", "user.email=a@b"])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap()
    }

    /// Config planted in the clone (fsmonitor, hooks, hooksPath, a credential helper, a
    /// filter, an include, `ext::` and ssh rewrites, a commondir) runs under plain git
    /// and never under lackey's git calls: status, commit, diff, push.
    #[tokio::test]
    async fn the_repositorys_config_runs_nothing_in_lackeys_git_calls() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        let src = t.join("src");
        std::fs::create_dir_all(&src).unwrap();
        plain(&src, &["init", "-q", "-b", "main"]);
        std::fs::write(src.join("a.txt"), "a\n").unwrap();
        plain(&src, &["add", "a.txt"]);
        plain(&src, &["commit", "-qm", "init"]);
        let art =
            Arc::new(Artifacts::create(&t.join("out"), Redactor::new(vec![]), false).unwrap());
        let git = Git::new(
            &t.join("work/repo"),
            art,
            "lackey",
            "l@x",
            Some("ghs_CANARYTOKEN0123456789".into()),
        );
        git.clone_from(src.to_str().unwrap(), true).await.unwrap();
        let repo = t.join("work/repo");
        let m = t.join("ran");
        std::fs::create_dir_all(&m).unwrap();
        let m = m.display();
        for (k, v) in [
            ("core.fsmonitor", format!("touch {m}/fsmonitor; false #")),
            ("credential.helper", format!("!touch {m}/credential #")),
            ("core.sshCommand", format!("touch {m}/ssh #")),
            ("filter.pwn.clean", format!("touch {m}/filter; cat #")),
            ("diff.external", format!("touch {m}/external #")),
            ("include.path", t.join("evil.cfg").display().to_string()),
            ("protocol.ext.allow", "always".into()),
            (
                "url.ext::sh -c touch% /dev/null.pushInsteadOf",
                src.display().to_string(),
            ),
            (
                "remote.origin.receivepack",
                format!("touch {m}/receivepack #"),
            ),
        ] {
            assert!(plain(&repo, &["config", k, &v]).status.success(), "{k}");
        }
        std::fs::write(
            t.join("evil.cfg"),
            format!("[core]\n\thooksPath = {}\n", t.join("hooks").display()),
        )
        .unwrap();
        std::fs::create_dir_all(t.join("hooks")).unwrap();
        for hook in [
            "pre-commit",
            "post-commit",
            "pre-push",
            "reference-transaction",
        ] {
            for dir in [t.join("hooks"), repo.join(".git/hooks")] {
                let p = dir.join(hook);
                std::fs::write(&p, format!("#!/bin/sh\ntouch {m}/hook-{hook}\n")).unwrap();
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
        std::fs::write(repo.join(".gitattributes"), "* filter=pwn diff=pwn\n").unwrap();
        std::fs::write(repo.join("a.txt"), "b\n").unwrap();
        let ran = || -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(t.join("ran"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        // lackey's calls: none of it runs.
        let base = git.head().await.unwrap();
        git.seal(&base, Some("refs/heads/main")).await.unwrap();
        let changed = git.changed_paths(&base).await.unwrap();
        assert_eq!(changed, [".gitattributes", "a.txt"]);
        let sha = git.commit_paths(&changed, "change").await.unwrap().unwrap();
        git.diff(&base).await.unwrap();
        git.push(&sha, "minion/x").await.unwrap();
        assert_eq!(
            ran(),
            Vec::<String>::new(),
            "a trick ran under lackey's git"
        );
        assert!(plain(&src, &["rev-parse", "--verify", "minion/x"])
            .status
            .success());
        // The same config, planted again, does run under plain git: the tricks are live.
        assert!(plain(
            &repo,
            &[
                "config",
                "core.fsmonitor",
                &format!("touch {m}/fsmonitor; false #")
            ]
        )
        .status
        .success());
        assert!(plain(
            &repo,
            &[
                "config",
                "include.path",
                &t.join("evil.cfg").display().to_string()
            ]
        )
        .status
        .success());
        std::fs::write(repo.join("a.txt"), "c\n").unwrap();
        plain(&repo, &["status", "--short"]);
        plain(&repo, &["commit", "-qam", "plain"]);
        let fired = ran();
        assert!(fired.contains(&"fsmonitor".to_string()), "{fired:?}");
        assert!(fired.contains(&"hook-pre-commit".to_string()), "{fired:?}");
    }
}
