//! Temporary git repositories for runs to work on.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Run git in `dir`, panicking with its stderr on failure; returns stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A repository at `dir` with `files` committed on `main`.
pub fn init(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "--quiet", "-b", "main"]);
    for (path, text) in files {
        let p = dir.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(p, text).unwrap();
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "--quiet", "-m", "initial"]);
    dir.to_path_buf()
}

/// The small project most run tests use: `hello.sh` and a `test.sh` that wants
/// "hello, world".
pub fn hello_project(dir: &Path) -> PathBuf {
    init(
        dir,
        &[
            ("hello.sh", "#!/bin/sh\necho \"hello\"\n"),
            (
                "test.sh",
                "#!/bin/sh\nout=$(sh hello.sh)\nif [ \"$out\" != \"hello, world\" ]; then\n  echo \"FAIL: expected 'hello, world', got '$out'\"\n  exit 1\nfi\necho ok\n",
            ),
            ("README.md", "A tiny project.\n"),
            ("AGENTS.md", "Keep scripts POSIX sh.\n"),
        ],
    )
}
