//! The host trusts nothing the container wrote: a blueprint `command` step plays the
//! attacker against the real Docker engine, planting links in `/output` that point at
//! files and directories of the host, outside the run folder.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::support::docker;
use crate::support::{repo, snapshot_filters, TestEnv};

const CANARY: &str = "CANARY-HOST-FILE-5e5e5e5e";

/// A test's host side: a canary file and a canary directory outside the run folder.
struct Attack {
    t: TestEnv,
    artifacts: PathBuf,
    host: PathBuf,
    canary_mtime: SystemTime,
}

impl Attack {
    /// `kill_minion`: the attacker also kills the minion, so the host writes the summary.
    fn new(kill_minion: bool) -> Option<Attack> {
        if !docker::available() {
            return None;
        }
        let mut t = TestEnv::new();
        let host = t.path().join("host");
        std::fs::create_dir_all(host.join("canary_dir")).unwrap();
        std::fs::write(host.join("canary.txt"), CANARY).unwrap();
        std::fs::write(host.join("canary_dir/inside.txt"), CANARY).unwrap();
        let canary_mtime = std::fs::metadata(host.join("canary.txt"))
            .unwrap()
            .modified()
            .unwrap();
        let h = host.display();
        // Links to the canary (to be overwritten), to names that do not exist yet (to
        // be created) and to a directory (to be written into).
        let mut script = format!(
            "#!/bin/bash\ncd /output\n\
             ln -sfn {h}/canary.txt run_summary.json\n\
             ln -sfn {h}/new-summary-tmp run_summary.json.tmp\n\
             ln -sfn {h}/canary.txt minion.log\n\
             ln -sfn {h}/canary_dir diff.patch\n\
             ln -sfn {h}/canary.txt scope.json\n\
             ln -sfn {h}/new-diff-stats diff_stats.txt\n\
             ln -sfn {h}/canary.txt commands.log\n\
             ln -sfn {h}/new-tool-calls tool_calls.log\n\
             ln -sfn {h}/canary_dir transcript.jsonl\n\
             ln -sfn {h}/canary.txt repo.bundle\n"
        );
        if kill_minion {
            script.push_str(
                "for p in /proc/[0-9]*; do\n  \
                 if tr '\\0' ' ' < $p/cmdline 2>/dev/null | grep -q '^/usr/local/bin/lackey minion'; then kill -9 ${p#/proc/}; fi\n\
                 done\nsleep 30\n",
            );
        }
        repo::init(
            &t.work().join("project"),
            &[
                ("hello.sh", "echo hello\n"),
                ("attack.sh", &script),
                (
                    ".lackey/blueprints/attack.yaml",
                    "version: 2\nsteps:\n  - {name: attack, type: command, commands: [\"bash attack.sh\"]}\n",
                ),
            ],
        );
        let artifacts = t.path().join("artifacts");
        t.set("LACKEY_ARTIFACTS_DIR", artifacts.display().to_string())
            .set("LACKEY_IMAGE", docker::test_image())
            .set("LACKEY_BLUEPRINT", "attack");
        Some(Attack {
            t,
            artifacts,
            host,
            canary_mtime,
        })
    }

    fn run_dir(&self) -> PathBuf {
        let dirs: Vec<PathBuf> = std::fs::read_dir(&self.artifacts)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(dirs.len(), 1, "one run folder and nothing else: {dirs:?}");
        dirs[0].clone()
    }

    /// The canaries are as the test made them and nothing appeared beside them.
    fn assert_host_untouched(&self) {
        let names = |dir: &Path| -> Vec<String> {
            let mut n: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            n.sort();
            n
        };
        assert_eq!(names(&self.host), ["canary.txt", "canary_dir"]);
        assert_eq!(names(&self.host.join("canary_dir")), ["inside.txt"]);
        assert_eq!(
            std::fs::read_to_string(self.host.join("canary.txt")).unwrap(),
            CANARY
        );
        assert_eq!(
            std::fs::read_to_string(self.host.join("canary_dir/inside.txt")).unwrap(),
            CANARY
        );
        let mtime = std::fs::metadata(self.host.join("canary.txt"))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(mtime, self.canary_mtime, "the canary file was written");
    }

    /// Every artifact of the set is a regular file holding no canary.
    fn assert_artifacts_are_files(&self, dir: &Path) {
        for name in crate::support::ARTIFACTS {
            let meta = std::fs::symlink_metadata(dir.join(name)).unwrap();
            assert!(
                meta.file_type().is_file(),
                "{name} is {:?}",
                meta.file_type()
            );
            let text = std::fs::read_to_string(dir.join(name)).unwrap();
            assert!(!text.contains(CANARY), "{name} holds the canary");
        }
    }
}

fn summary_of(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("run_summary.json")).unwrap()).unwrap()
}

#[test]
fn links_planted_before_the_minion_is_killed_are_never_followed() {
    let Some(a) = Attack::new(true) else { return };
    let out = a.t.run(&[
        "run",
        "plant links, then kill the minion",
        "--repo",
        "project",
        "--stubs",
    ]);
    out.assert_code(1);
    assert!(out.stdout.contains("outcome:   error"), "{}", out.stdout);
    assert!(!out.stdout.contains(CANARY) && !out.stderr.contains(CANARY));
    a.assert_host_untouched();
    let dir = a.run_dir();
    // The host wrote the summary itself, beside (not through) the planted link.
    let s = summary_of(&dir);
    assert_eq!(s["outcome"], "error");
    assert!(
        s["error"].as_str().unwrap().contains("SIGKILL"),
        "{}",
        s["error"]
    );
    a.assert_artifacts_are_files(&dir);
    // The planted bundle link was refused, not handed to git.
    assert!(
        out.stderr.contains("repo.bundle") && out.stderr.contains("symbolic link"),
        "{}",
        out.stderr
    );

    let id = dir.file_name().unwrap().to_string_lossy().to_string();
    let logs = a.t.run(&["logs", &id]);
    logs.assert_success();
    assert!(!logs.stdout.contains(CANARY));

    // A link planted at the log afterwards (a process left behind, or another local
    // user with the container's uid) is refused by `lackey logs`, not printed.
    std::fs::remove_file(dir.join("minion.log")).unwrap();
    std::os::unix::fs::symlink(a.host.join("canary.txt"), dir.join("minion.log")).unwrap();
    std::fs::remove_file(dir.join("run_summary.json")).unwrap();
    std::os::unix::fs::symlink(a.host.join("canary.txt"), dir.join("run_summary.json")).unwrap();
    let logs = a.t.run(&["logs", &id]);
    logs.assert_code(1);
    assert_eq!(logs.stdout, "");
    assert!(!logs.stderr.contains(CANARY));
    snapshot_filters(&[]).bind(|| insta::assert_snapshot!("logs_refuses_a_link", logs.stderr));
    // `runs` lists the run without reading through the link.
    let runs = a.t.run(&["runs", "--json"]);
    runs.assert_success();
    assert!(!runs.stdout.contains(CANARY));
    assert_eq!(runs.json()["runs"][0]["run_id"], id.as_str());
    a.assert_host_untouched();
}

#[test]
fn links_planted_while_the_minion_runs_on_are_replaced() {
    let Some(a) = Attack::new(false) else { return };
    let out = a.t.run(&[
        "run",
        "plant links and carry on",
        "--repo",
        "project",
        "--stubs",
    ]);
    assert!(
        out.stdout.contains("outcome:"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(!out.stdout.contains(CANARY) && !out.stderr.contains(CANARY));
    a.assert_host_untouched();
    let dir = a.run_dir();
    // The minion's own summary (written by renaming over the link) is the result.
    let s = summary_of(&dir);
    assert_eq!(s["steps"][0]["name"], "attack");
    a.assert_artifacts_are_files(&dir);
    let id = dir.file_name().unwrap().to_string_lossy().to_string();
    let logs = a.t.run(&["logs", &id]);
    assert!(!logs.stdout.contains(CANARY) && !logs.stderr.contains(CANARY));
    a.assert_host_untouched();
}
