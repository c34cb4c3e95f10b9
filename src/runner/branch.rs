//! The run's branch, decided on the host before launch: the one branch the run may push
//! (the credential proxy's push target) or bring back (the fetch-back from its bundle).
//!
//! * By default, a new branch named after the run: the template of the blueprint's
//!   first `git_branch` step, expanded here as the minion expands it (the blueprint is
//!   read where the minion will read it: the local repository's `HEAD`, or the GitHub
//!   repository's default branch through the contents API), else `[run] branch_template`.
//! * With `--push-to BRANCH`, that existing branch, never the repository's default
//!   branch (nor, for a local repository, the branch it has checked out, which git
//!   cannot update under it). The run checks it out and may fast-forward it, never
//!   force it.
//!
//! The blueprint is read with the minion's own parser (`minion::blueprint`): the host
//! and the minion choose the file and expand the template with one piece of code.

use std::path::Path;
use std::process::Command;

use super::RunSpec;
use crate::error::Fail;
use crate::github::{Contents, GitHub};
use crate::minion::blueprint::{self, Blueprint, Choice, Templates};

/// The blueprint's branch template, read from the local repository's `HEAD` (what the
/// minion clones). `None`: the blueprint names no branch (or it is the built-in one).
pub fn template_in_repo(repo: &Path, name: Option<&str>) -> anyhow::Result<Option<String>> {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(repo)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| o.stdout)
    };
    let listing: Vec<String> = git(&[
        "ls-tree",
        "--name-only",
        &format!("HEAD:{}", blueprint::BLUEPRINT_DIR),
    ])
    .map(|o| {
        String::from_utf8_lossy(&o)
            .lines()
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default();
    let rel = match blueprint::choose(&listing, name)? {
        Choice::Default => return Ok(None),
        Choice::File(rel) => rel,
    };
    let object = format!("HEAD:{}", rel.trim_start_matches("./"));
    let size = git(&["cat-file", "-s", &object])
        .and_then(|o| String::from_utf8_lossy(&o).trim().parse::<usize>().ok())
        .ok_or_else(|| committed_hint(blueprint::no_file(name.unwrap_or(&rel))))?;
    if size > blueprint::MAX_BYTES {
        return Err(blueprint::too_big(&format!("`{rel}`"), size));
    }
    let text = git(&["cat-file", "blob", &object])
        .map(|o| String::from_utf8_lossy(&o).into_owned())
        .ok_or_else(|| blueprint::no_file(name.unwrap_or(&rel)))?;
    let bp = Blueprint::parse(&text, &format!("`{rel}`"))?;
    Ok(bp.branch_template().map(str::to_string))
}

fn committed_hint(e: anyhow::Error) -> anyhow::Error {
    e.context("the minion reads blueprints from the repository's last commit (HEAD): commit the file first")
}

/// The blueprint's branch template, read from a GitHub repository at `git_ref` through
/// the contents API.
pub async fn template_on_github(
    gh: &GitHub,
    token: &str,
    repo: &str,
    git_ref: &str,
    name: Option<&str>,
) -> anyhow::Result<Option<String>> {
    let listing = match gh
        .contents(token, repo, blueprint::BLUEPRINT_DIR, git_ref)
        .await?
    {
        Some(Contents::Dir(names)) => names,
        _ => Vec::new(),
    };
    let rel = match blueprint::choose(&listing, name)? {
        Choice::Default => return Ok(None),
        Choice::File(rel) => rel,
    };
    let Some(Contents::File(text)) = gh.contents(token, repo, &rel, git_ref).await? else {
        return Err(blueprint::no_file(name.unwrap_or(&rel))
            .context(format!("`{repo}` has no file `{rel}` on `{git_ref}`")));
    };
    let bp = Blueprint::parse(&text, &format!("`{rel}` of {repo}"))?;
    Ok(bp.branch_template().map(str::to_string))
}

impl RunSpec {
    /// `--push-to BRANCH`: the run's branch is that existing branch (checked where the
    /// repository is read: [`RunSpec::decide_branch_in_repo`], or on GitHub).
    pub fn push_to(&mut self, branch: Option<String>) -> anyhow::Result<()> {
        let Some(b) = branch else {
            return Ok(());
        };
        let b = b.strip_prefix("refs/heads/").unwrap_or(&b).to_string();
        if let Err(why) = branch_name(&b) {
            return Err(
                Fail::new(format!("--push-to `{b}` is not a branch name: {why}"))
                    .with_hint(
                        "name an existing branch of the repository, e.g. --push-to feature/login",
                    )
                    .into(),
            );
        }
        self.branch = b.clone();
        self.push_to = Some(b);
        Ok(())
    }

    /// Take the blueprint's branch template (if it names one) as the run's new branch,
    /// expanded now; with `--push-to` the branch is the user's and nothing changes.
    pub fn take_branch_template(&mut self, template: Option<String>) -> anyhow::Result<()> {
        let Some(template) = template else {
            return Ok(());
        };
        if self.push_to.is_some() {
            return Ok(());
        }
        let values = Templates::for_run(
            &self.run_id,
            &self.task,
            &self.branch,
            self.lint.as_deref(),
            self.test.as_deref(),
            self.pass_env.iter().cloned().collect(),
        );
        let branch = values.render(&template);
        if let Err(why) = branch_name(&branch) {
            return Err(Fail::new(format!(
                "the blueprint's branch template `{template}` gives `{branch}`, which is not a branch name: {why}"
            ))
            .with_hint("change the template (`{task_slug}` is safe in a branch name; `{task}` holds spaces)")
            .into());
        }
        self.branch_template = Some(template);
        self.branch = branch;
        Ok(())
    }

    /// The run's branch for a run whose repository is local: the blueprint's template
    /// expanded, or with `--push-to` the existing branch, checked.
    pub fn decide_branch_in_repo(&mut self) -> anyhow::Result<()> {
        let Some(repo) = self.repo.clone() else {
            return Ok(());
        };
        if let Some(b) = self.push_to.clone() {
            return check_push_to_in_repo(&repo, &b);
        }
        let template = template_in_repo(&repo, self.blueprint.as_deref())?;
        self.take_branch_template(template)
    }

    /// The run's branch for a run on a GitHub repository, from its default branch.
    pub async fn decide_branch_on_github(
        &mut self,
        gh: &GitHub,
        token: &str,
        repo: &str,
        default_branch: &str,
    ) -> anyhow::Result<()> {
        if let Some(b) = self.push_to.clone() {
            if b == default_branch {
                return Err(default_refused(&b, repo));
            }
            if !gh.branch_exists(token, repo, &b).await? {
                return Err(Fail::new(format!("`{repo}` has no branch `{b}` to push to"))
                    .with_hint("--push-to names an existing branch; without it the run creates a new branch named after it")
                    .into());
            }
            return Ok(());
        }
        let template =
            template_on_github(gh, token, repo, default_branch, self.blueprint.as_deref()).await?;
        self.take_branch_template(template)
    }

    /// What the credential proxy lets this run push: its branch, created, or with
    /// `--push-to` fast-forwarded; never `default_branch`.
    pub fn push_target(&self, default_branch: Option<String>) -> crate::proxy::PushTarget {
        crate::proxy::PushTarget {
            branch: self.branch.clone(),
            may_update: self.push_to.is_some(),
            default_branch,
        }
    }
}

fn default_refused(b: &str, repo: &str) -> anyhow::Error {
    Fail::new(format!(
        "--push-to `{b}`: it is the default branch of `{repo}`, which a run never pushes"
    ))
    .with_hint("name another existing branch, or leave --push-to out: the run then pushes a new branch and can open a pull request (--pr)")
    .into()
}

/// `--push-to` on a local repository: an existing branch, not the one checked out (git
/// cannot move it under the user's work tree) nor the default branch of its `origin`.
fn check_push_to_in_repo(repo: &Path, b: &str) -> anyhow::Result<()> {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(repo)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let shown = repo.display();
    if branch_name(b).is_err()
        || git(&[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/heads/{b}"),
        ])
        .is_none()
    {
        return Err(Fail::new(format!("`{shown}` has no branch `{b}` to push to"))
            .with_hint("--push-to names an existing branch; without it the run creates a new branch named after it")
            .into());
    }
    if git(&["symbolic-ref", "--quiet", "--short", "HEAD"]).as_deref() == Some(b) {
        return Err(Fail::new(format!(
            "--push-to `{b}`: it is the branch checked out in `{shown}`, which the run cannot move under your work"
        ))
        .with_hint("check out another branch first (git switch -), or name another branch")
        .into());
    }
    let origin_default = git(&[
        "symbolic-ref",
        "--quiet",
        "--short",
        "refs/remotes/origin/HEAD",
    ]);
    if origin_default
        .as_deref()
        .and_then(|d| d.strip_prefix("origin/"))
        == Some(b)
    {
        return Err(default_refused(b, &shown.to_string()));
    }
    Ok(())
}

/// Whether `b` is a branch name git accepts (`git check-ref-format --branch`'s rules).
pub fn branch_name(b: &str) -> Result<(), String> {
    if b.is_empty() || b.len() > 250 {
        return Err("a branch name has 1 to 250 characters".into());
    }
    if let Some(c) = b
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(*c))
    {
        return Err(format!("it holds `{}`", c.escape_default()));
    }
    if b.contains("..") || b.contains("@{") || b.contains("//") || b == "@" {
        return Err("it holds `..`, `@{` or `//`, or is `@`".into());
    }
    if b.starts_with('/') || b.ends_with('/') || b.ends_with('.') || b.starts_with('-') {
        return Err("it starts with `/` or `-`, or ends with `/` or `.`".into());
    }
    if b.split('/')
        .any(|part| part.starts_with('.') || part.ends_with(".lock"))
    {
        return Err("a part of it starts with `.` or ends with `.lock`".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigFile, EnvVars, Settings};

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A repository with `files` committed on `main`.
    fn repo(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        git(d.path(), &["init", "--quiet", "-b", "main"]);
        for (path, text) in files {
            let p = d.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        git(d.path(), &["add", "-A"]);
        git(d.path(), &["commit", "--quiet", "-m", "initial"]);
        d
    }

    fn spec(repo: &Path, task: &str, extra: &[(&str, &str)]) -> RunSpec {
        let mut vars = vec![
            ("LACKEY_REPO".to_string(), repo.display().to_string()),
            ("LACKEY_STUBS".to_string(), "1".to_string()),
        ];
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let env = EnvVars::from_pairs(vars, Vec::new());
        let s = Settings::resolve(&[], &env, &ConfigFile::default()).unwrap();
        RunSpec::from_settings(&s, task, false)
            .unwrap()
            .with_pass_env(&s, &env)
            .unwrap()
    }

    const EXAMPLE: &str = include_str!("../../examples/blueprints/python-implement.yaml");

    #[test]
    fn the_blueprints_template_read_from_head_names_the_branch() {
        let r = repo(&[(".lackey/blueprints/python-implement.yaml", EXAMPLE)]);
        let mut s = spec(r.path(), "Add a /health route!", &[]);
        s.decide_branch_in_repo().unwrap();
        assert_eq!(s.branch, format!("lackey/{}/add-a-health-route", s.run_id));
        assert_eq!(
            s.branch_template.as_deref(),
            Some("lackey/{run_id}/{task_slug}")
        );
        // Expanded as the minion expands it (one piece of code, so one answer).
        let minion = Templates::for_run(&s.run_id, &s.task, "", None, None, Default::default());
        assert_eq!(minion.render("lackey/{run_id}/{task_slug}"), s.branch);
        assert!(!s.push_target(Some("main".into())).may_update);

        // What HEAD holds counts, not the work tree: the minion clones HEAD.
        std::fs::write(
            r.path().join(".lackey/blueprints/python-implement.yaml"),
            "name: x\nsteps:\n  - {name: b, type: git_branch, branch: \"other/{run_id}\"}\n",
        )
        .unwrap();
        let mut again = spec(r.path(), "Add a /health route!", &[]);
        again.decide_branch_in_repo().unwrap();
        assert!(again.branch.starts_with("lackey/"), "{}", again.branch);
    }

    #[test]
    fn env_in_a_template_takes_the_passed_value_and_a_bad_name_is_refused() {
        let bp =
            "name: x\nsteps:\n  - {name: b, type: git_branch, branch: \"{env.STAGE}/{run_id}\"}\n";
        let r = repo(&[(".lackey/blueprints/x.yaml", bp)]);
        let mut s = spec(
            r.path(),
            "t",
            &[("LACKEY_PASS_ENV", "STAGE"), ("STAGE", "ci")],
        );
        s.decide_branch_in_repo().unwrap();
        assert_eq!(s.branch, format!("ci/{}", s.run_id));

        let bp = "name: x\nsteps:\n  - {name: b, type: git_branch, branch: \"{run_id} {task}\"}\n";
        let r = repo(&[(".lackey/blueprints/x.yaml", bp)]);
        let e = spec(r.path(), "t", &[])
            .decide_branch_in_repo()
            .unwrap_err();
        assert!(format!("{e:#}").contains("is not a branch name"), "{e:#}");
    }

    #[test]
    fn without_a_template_the_setting_names_the_branch_and_blueprint_errors_come_first() {
        let r = repo(&[("a.txt", "a\n")]);
        let mut s = spec(r.path(), "t", &[]);
        s.decide_branch_in_repo().unwrap();
        assert_eq!(s.branch, format!("minion/{}", s.run_id));
        assert_eq!(s.branch_template, None);
        // A blueprint the minion would refuse is refused before launch.
        let r = repo(&[(".lackey/blueprints/x.yaml", "name: x\nsteps: 3\n")]);
        let e = spec(r.path(), "t", &[])
            .decide_branch_in_repo()
            .unwrap_err();
        assert!(format!("{e:#}").contains("invalid blueprint"), "{e:#}");
        let e = spec(r.path(), "t", &[("LACKEY_BLUEPRINT", "ci/none.yaml")])
            .decide_branch_in_repo()
            .unwrap_err();
        assert!(
            format!("{e:#}").contains("no blueprint file `ci/none.yaml`"),
            "{e:#}"
        );
    }

    #[test]
    fn push_to_names_an_existing_branch_that_is_neither_checked_out_nor_the_default() {
        let upstream = repo(&[("a.txt", "a\n")]);
        git(upstream.path(), &["branch", "feature"]);
        let d = tempfile::tempdir().unwrap();
        let clone = d.path().join("clone");
        git(
            d.path(),
            &[
                "clone",
                "--quiet",
                upstream.path().to_str().unwrap(),
                "clone",
            ],
        );
        git(&clone, &["branch", "feature", "origin/feature"]);
        git(&clone, &["branch", "other"]);
        let decide = |b: &str| {
            let mut s = spec(&clone, "t", &[]);
            s.push_to(Some(b.to_string()))?;
            s.decide_branch_in_repo().map(|()| s)
        };
        let s = decide("feature").unwrap();
        assert_eq!(s.branch, "feature");
        let t = s.push_target(Some("main".into()));
        assert!(t.may_update && t.branch == "feature");
        assert!(
            s.minion_input(crate::summary::Runtime::Local, std::time::SystemTime::now())
                .branch_exists
        );
        for (b, says) in [
            ("nope", "has no branch `nope`"),
            ("main", "the branch checked out"),
            ("a b", "is not a branch name"),
        ] {
            let e = decide(b).unwrap_err();
            assert!(format!("{e:#}").contains(says), "{b}: {e:#}");
        }
        git(&clone, &["switch", "--quiet", "other"]);
        let e = decide("main").unwrap_err();
        assert!(format!("{e:#}").contains("default branch"), "{e:#}");
    }

    #[test]
    fn branch_names_follow_git() {
        for ok in [
            "minion/20261124-143015-7f3a",
            "lackey/x/add-a-test",
            "feature-x",
        ] {
            assert_eq!(branch_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "add a test",
            "a..b",
            "/a",
            "a/",
            "a.lock",
            "a/.b",
            "-a",
            "a:b",
            "a@{1}",
            "a//b",
        ] {
            assert!(branch_name(bad).is_err(), "{bad}");
        }
    }
}
