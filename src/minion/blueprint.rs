//! Blueprints: the ordered steps of a run, from the repo's `.lackey/blueprints/*.yaml` or
//! the built-in default.
//!
//! ```yaml
//! name: default
//! steps:
//!   - {name: branch, type: git_branch}
//!   - {name: scope, type: agent, agent: scoper}
//!   - {name: execute, type: agent, agent: executor}
//!   - {name: test, type: command, commands: ["{test}"], when: config.test, check: true}
//!   - {name: fix, type: agent, agent: fixer, when: test.failed, rounds: 2, recheck: [test]}
//!   - {name: commit, type: git_commit}
//!   - {name: push, type: git_push, when: env.GITHUB_TOKEN}
//! ```
//!
//! A blueprint is checked completely before any work starts: every problem names the
//! step's index, its name and the field.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::Fail;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepType {
    GitBranch,
    Agent,
    Command,
    GitCommit,
    GitPush,
    GitPr,
}

impl StepType {
    fn as_str(self) -> &'static str {
        match self {
            StepType::GitBranch => "git_branch",
            StepType::Agent => "agent",
            StepType::Command => "command",
            StepType::GitCommit => "git_commit",
            StepType::GitPush => "git_push",
            StepType::GitPr => "git_pr",
        }
    }

    /// The optional fields each step type accepts.
    fn fields(self) -> &'static [&'static str] {
        match self {
            StepType::GitBranch => &["branch"],
            StepType::Agent => &["agent", "rounds", "recheck", "max_turns"],
            StepType::Command => &[
                "commands",
                "check",
                "success_codes",
                "timeout",
                "artifact",
                "on_failure",
            ],
            StepType::GitCommit => &["message"],
            StepType::GitPush => &[],
            StepType::GitPr => &["title", "body", "draft"],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentKind {
    Scoper,
    Executor,
    Fixer,
}

impl AgentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentKind::Scoper => "scoper",
            AgentKind::Executor => "executor",
            AgentKind::Fixer => "fixer",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: String,
    #[serde(rename = "type")]
    kind: StepType,
    when: Option<String>,
    agent: Option<AgentKind>,
    rounds: Option<u32>,
    recheck: Option<Vec<String>>,
    max_turns: Option<u32>,
    commands: Option<Vec<String>>,
    check: Option<bool>,
    success_codes: Option<Vec<i32>>,
    timeout: Option<u64>,
    artifact: Option<String>,
    on_failure: Option<String>,
    branch: Option<String>,
    message: Option<String>,
    title: Option<String>,
    body: Option<String>,
    draft: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBlueprint {
    name: Option<String>,
    description: Option<String>,
    steps: Vec<serde_yaml::Value>,
}

/// What happens when a command fails.
#[derive(Debug, Clone, PartialEq)]
pub enum OnFailure {
    /// Record the failure and go on (a later fixer step may repair it).
    Continue,
    /// End the run at once with this outcome.
    Outcome(crate::summary::Outcome),
}

#[derive(Debug, Clone)]
pub enum Action {
    GitBranch {
        branch: Option<String>,
    },
    Agent {
        agent: AgentKind,
        rounds: u32,
        recheck: Vec<String>,
        max_turns: Option<u32>,
    },
    Command {
        commands: Vec<String>,
        check: bool,
        success_codes: Vec<i32>,
        timeout: u64,
        artifact: Option<String>,
        on_failure: OnFailure,
    },
    GitCommit {
        message: String,
    },
    GitPush,
    GitPr {
        title: String,
        body: String,
        draft: bool,
    },
}

#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub when: Option<Condition>,
    pub action: Action,
}

#[derive(Debug, Clone)]
pub struct Blueprint {
    pub name: String,
    pub description: Option<String>,
    pub steps: Vec<Step>,
}

/// A `when` condition: `a.failed`, `env.GITHUB_TOKEN`, `config.pr`, joined by `and`,
/// `or`, `not` (no parentheses; `and` binds tighter than `or`).
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    True,
    False,
    StepFailed(String),
    StepSucceeded(String),
    StepSkipped(String),
    Env(String),
    Config(String),
    Not(Box<Condition>),
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
}

/// What a condition is evaluated against.
pub trait Facts {
    /// `Some(true)` failed, `Some(false)` succeeded, `None` skipped or not run.
    fn step_failed(&self, name: &str) -> Option<bool>;
    fn env(&self, name: &str) -> bool;
    fn config(&self, name: &str) -> bool;
}

impl Condition {
    pub fn parse(text: &str) -> Result<Condition, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("the condition is empty".into());
        }
        if let Some((a, b)) = split_word(text, "or") {
            return Ok(Condition::Or(
                Box::new(Self::parse(a)?),
                Box::new(Self::parse(b)?),
            ));
        }
        if let Some((a, b)) = split_word(text, "and") {
            return Ok(Condition::And(
                Box::new(Self::parse(a)?),
                Box::new(Self::parse(b)?),
            ));
        }
        if let Some(rest) = text.strip_prefix("not ") {
            return Ok(Condition::Not(Box::new(Self::parse(rest)?)));
        }
        match text {
            "true" => return Ok(Condition::True),
            "false" => return Ok(Condition::False),
            _ => {}
        }
        let (head, tail) = text
            .split_once('.')
            .ok_or_else(|| format!("`{text}` is not a condition: use step.failed, step.succeeded, step.skipped, env.NAME or config.NAME"))?;
        let ok_name = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if !ok_name(tail) && head != "env" {
            return Err(format!("`{text}` is not a condition"));
        }
        match (head, tail) {
            ("env", name) if !name.is_empty() => Ok(Condition::Env(name.to_string())),
            ("config", name) => match name {
                "lint" | "test" | "pr" | "stubs" | "github" => Ok(Condition::Config(name.to_string())),
                other => Err(format!("unknown `config.{other}`: use config.lint, config.test, config.pr, config.stubs or config.github")),
            },
            (step, "failed") if ok_name(step) => Ok(Condition::StepFailed(step.to_string())),
            (step, "succeeded") if ok_name(step) => Ok(Condition::StepSucceeded(step.to_string())),
            (step, "skipped") if ok_name(step) => Ok(Condition::StepSkipped(step.to_string())),
            _ => Err(format!("`{text}` is not a condition: use step.failed, step.succeeded, step.skipped, env.NAME or config.NAME")),
        }
    }

    fn steps(&self, out: &mut Vec<String>) {
        match self {
            Condition::StepFailed(s) | Condition::StepSucceeded(s) | Condition::StepSkipped(s) => {
                out.push(s.clone())
            }
            Condition::Not(c) => c.steps(out),
            Condition::And(a, b) | Condition::Or(a, b) => {
                a.steps(out);
                b.steps(out);
            }
            _ => {}
        }
    }

    pub fn eval(&self, facts: &dyn Facts) -> bool {
        match self {
            Condition::True => true,
            Condition::False => false,
            Condition::StepFailed(s) => facts.step_failed(s) == Some(true),
            Condition::StepSucceeded(s) => facts.step_failed(s) == Some(false),
            Condition::StepSkipped(s) => facts.step_failed(s).is_none(),
            Condition::Env(n) => facts.env(n),
            Condition::Config(n) => facts.config(n),
            Condition::Not(c) => !c.eval(facts),
            Condition::And(a, b) => a.eval(facts) && b.eval(facts),
            Condition::Or(a, b) => a.eval(facts) || b.eval(facts),
        }
    }
}

fn split_word<'a>(text: &'a str, word: &str) -> Option<(&'a str, &'a str)> {
    let pat = format!(" {word} ");
    text.find(&pat)
        .map(|i| (&text[..i], &text[i + pat.len()..]))
}

/// The built-in blueprint: branch → scope → execute → lint/test → fixer → re-check →
/// commit → push → PR when GitHub credentials are present.
pub const DEFAULT: &str = r#"name: default
description: scope, execute, check, fix, commit, push and open a pull request
steps:
  - {name: branch, type: git_branch}
  - {name: scope, type: agent, agent: scoper}
  - {name: execute, type: agent, agent: executor}
  - {name: lint, type: command, commands: ["{lint}"], when: config.lint, check: true, timeout: 900, artifact: lint.log}
  - {name: test, type: command, commands: ["{test}"], when: config.test, check: true, timeout: 1800, artifact: test.log}
  - {name: fix, type: agent, agent: fixer, when: lint.failed or test.failed, rounds: 2, recheck: [lint, test]}
  - {name: commit, type: git_commit, message: "{task_summary}"}
  - {name: push, type: git_push, when: env.GITHUB_TOKEN}
  - {name: pr, type: git_pr, when: env.GITHUB_TOKEN and config.pr}
"#;

fn bad(origin: &str, msg: impl std::fmt::Display) -> anyhow::Error {
    Fail::new(format!("invalid blueprint {origin}: {msg}"))
        .with_hint("fix the blueprint; the built-in default is shown in the minion's documentation (src/minion/blueprint.rs)")
        .into()
}

impl Blueprint {
    pub fn default_blueprint() -> Blueprint {
        Blueprint::parse(DEFAULT, "`default` (built in)").expect("the built-in blueprint is valid")
    }

    /// Find the blueprint to use in a repository: `name` from `.lackey/blueprints/`, or
    /// the only one there, or the built-in default.
    pub fn load(repo: &Path, name: Option<&str>) -> anyhow::Result<Blueprint> {
        let dir = repo.join(".lackey/blueprints");
        let mut found: BTreeMap<String, std::path::PathBuf> = BTreeMap::new();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let p = e.path();
                let ext = p.extension().and_then(|x| x.to_str()).unwrap_or("");
                if ext == "yaml" || ext == "yml" {
                    if let Some(stem) = p.file_stem().and_then(|s| s.to_str()) {
                        found.insert(stem.to_string(), p.clone());
                    }
                }
            }
        }
        let chosen = match name {
            Some("default") if !found.contains_key("default") => {
                return Ok(Self::default_blueprint())
            }
            Some(n) => match found.get(n) {
                Some(p) => p.clone(),
                None => {
                    let known: Vec<&str> = found.keys().map(String::as_str).collect();
                    return Err(Fail::new(format!("no blueprint `{n}` in .lackey/blueprints/"))
                        .with_hint(if known.is_empty() {
                            "the repository has no blueprints; omit --blueprint to use the built-in default".to_string()
                        } else {
                            format!("available: {} (or `default`)", known.join(", "))
                        })
                        .into());
                }
            },
            None => match found.len() {
                0 => return Ok(Self::default_blueprint()),
                1 => found.values().next().cloned().unwrap_or_default(),
                _ if found.contains_key("default") => found["default"].clone(),
                _ => {
                    let known: Vec<&str> = found.keys().map(String::as_str).collect();
                    return Err(Fail::new(format!(
                        "the repository has several blueprints ({}); choose one",
                        known.join(", ")
                    ))
                    .with_hint("pass --blueprint NAME (or set [run] blueprint)")
                    .into());
                }
            },
        };
        let text = std::fs::read_to_string(&chosen)
            .map_err(|e| Fail::new(format!("cannot read blueprint `{}`: {e}", chosen.display())))?;
        let shown = format!(
            "`{}`",
            chosen.strip_prefix(repo).unwrap_or(&chosen).display()
        );
        Blueprint::parse(&text, &shown)
    }

    /// Parse and check a blueprint completely.
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Blueprint> {
        let raw: RawBlueprint = serde_yaml::from_str(text).map_err(|e| bad(origin, e))?;
        if raw.steps.is_empty() {
            return Err(bad(origin, "it has no steps"));
        }
        let mut steps: Vec<Step> = Vec::new();
        for (i, value) in raw.steps.into_iter().enumerate() {
            let index = i + 1;
            let name_hint = value
                .get("name")
                .and_then(|n| n.as_str())
                .map(|n| format!(" (`{n}`)"))
                .unwrap_or_default();
            let at = format!("step {index}{name_hint}");
            let present: Vec<String> = value
                .as_mapping()
                .map(|m| {
                    m.keys()
                        .filter_map(|k| k.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let kind: Option<StepType> = value
                .get("type")
                .and_then(|t| serde_yaml::from_value(t.clone()).ok());
            let rs: RawStep = serde_path_to_error::deserialize(value).map_err(|e| {
                let path = e.path().to_string();
                let inner = e.inner().to_string();
                if inner.starts_with("unknown field") {
                    let field = inner.split('`').nth(1).unwrap_or("?");
                    let accepts = match kind {
                        Some(k) => format!(
                            "a `{}` step accepts name, type, when{}",
                            k.as_str(),
                            k.fields()
                                .iter()
                                .map(|f| format!(", {f}"))
                                .collect::<String>()
                        ),
                        None => "check the field names".to_string(),
                    };
                    bad(origin, format!("{at}: unknown field `{field}`: {accepts}"))
                } else if path.is_empty() || path == "." {
                    bad(origin, format!("{at}: {}", e.inner()))
                } else {
                    bad(origin, format!("{at}: field `{path}`: {}", e.inner()))
                }
            })?;
            let at = format!("step {index} (`{}`)", rs.name);
            if rs.name.trim().is_empty()
                || !rs
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(bad(
                    origin,
                    format!("{at}: field `name` must be letters, digits, `_` or `-`"),
                ));
            }
            if steps.iter().any(|s| s.name == rs.name) {
                return Err(bad(
                    origin,
                    format!(
                        "{at}: field `name`: another step is already called `{}`",
                        rs.name
                    ),
                ));
            }
            for field in &present {
                if ["name", "type", "when"].contains(&field.as_str()) {
                    continue;
                }
                if !rs.kind.fields().contains(&field.as_str()) {
                    return Err(bad(
                        origin,
                        format!(
                            "{at}: field `{field}` does not apply to a `{}` step",
                            rs.kind.as_str()
                        ),
                    ));
                }
            }
            let when = match &rs.when {
                Some(w) => {
                    let c = Condition::parse(w)
                        .map_err(|e| bad(origin, format!("{at}: field `when`: {e}")))?;
                    let mut refs = Vec::new();
                    c.steps(&mut refs);
                    for r in refs {
                        if !steps.iter().any(|s| s.name == r) {
                            return Err(bad(
                                origin,
                                format!("{at}: field `when`: no earlier step is called `{r}`"),
                            ));
                        }
                    }
                    Some(c)
                }
                None => None,
            };
            let action = match rs.kind {
                StepType::GitBranch => Action::GitBranch { branch: rs.branch },
                StepType::Agent => {
                    let agent = rs.agent.ok_or_else(|| {
                        bad(
                            origin,
                            format!("{at}: field `agent` is required (scoper, executor or fixer)"),
                        )
                    })?;
                    if agent != AgentKind::Fixer && (rs.rounds.is_some() || rs.recheck.is_some()) {
                        return Err(bad(
                            origin,
                            format!("{at}: fields `rounds` and `recheck` apply only to the fixer"),
                        ));
                    }
                    let recheck = rs.recheck.unwrap_or_default();
                    for r in &recheck {
                        match steps.iter().find(|s| &s.name == r) {
                            Some(Step {
                                action: Action::Command { .. },
                                ..
                            }) => {}
                            Some(_) => {
                                return Err(bad(
                                    origin,
                                    format!("{at}: field `recheck`: `{r}` is not a command step"),
                                ))
                            }
                            None => {
                                return Err(bad(
                                    origin,
                                    format!(
                                        "{at}: field `recheck`: no earlier step is called `{r}`"
                                    ),
                                ))
                            }
                        }
                    }
                    let rounds = rs.rounds.unwrap_or(2);
                    if agent == AgentKind::Fixer && !(1..=10).contains(&rounds) {
                        return Err(bad(origin, format!("{at}: field `rounds` must be 1 to 10")));
                    }
                    Action::Agent {
                        agent,
                        rounds,
                        recheck,
                        max_turns: rs.max_turns,
                    }
                }
                StepType::Command => {
                    let commands = rs.commands.unwrap_or_default();
                    if commands.is_empty() || commands.iter().any(|c| c.trim().is_empty()) {
                        return Err(bad(
                            origin,
                            format!(
                                "{at}: field `commands` must list at least one non-empty command"
                            ),
                        ));
                    }
                    let timeout = rs.timeout.unwrap_or(600);
                    if timeout == 0 {
                        return Err(bad(
                            origin,
                            format!("{at}: field `timeout` must be a positive number of seconds"),
                        ));
                    }
                    let on_failure = match rs.on_failure.as_deref() {
                        None | Some("continue") => OnFailure::Continue,
                        Some(s) => match s.strip_prefix("outcome:").and_then(crate::summary::Outcome::parse) {
                            Some(crate::summary::Outcome::Success) | None => {
                                return Err(bad(origin, format!(
                                    "{at}: field `on_failure`: `{s}` is not `continue` or `outcome:<test_failure|scope_disagreement|error>`"
                                )))
                            }
                            Some(o) => OnFailure::Outcome(o),
                        },
                    };
                    if let Some(a) = &rs.artifact {
                        if a.contains('/')
                            || a.starts_with('.')
                            || crate::summary::ARTIFACTS.contains(&a.as_str())
                        {
                            return Err(bad(origin, format!("{at}: field `artifact` must be a plain file name that is not one of lackey's own artifacts")));
                        }
                    }
                    Action::Command {
                        commands,
                        check: rs.check.unwrap_or(false),
                        success_codes: rs.success_codes.unwrap_or_else(|| vec![0]),
                        timeout,
                        artifact: rs.artifact,
                        on_failure,
                    }
                }
                StepType::GitCommit => Action::GitCommit {
                    message: rs.message.unwrap_or_else(|| "{task_summary}".into()),
                },
                StepType::GitPush => Action::GitPush,
                StepType::GitPr => Action::GitPr {
                    title: rs.title.unwrap_or_else(|| "{task_summary}".into()),
                    body: rs
                        .body
                        .unwrap_or_else(|| "{task}\n\nOpened by lackey run `{run_id}`.".into()),
                    draft: rs.draft.unwrap_or(false),
                },
            };
            steps.push(Step {
                name: rs.name,
                when,
                action,
            });
        }
        Ok(Blueprint {
            name: raw
                .name
                .unwrap_or_else(|| origin.trim_matches('`').to_string()),
            description: raw.description,
            steps,
        })
    }
}

/// Values templates can use: `{run_id}`, `{task}`, `{task_slug}`, `{task_summary}`,
/// `{branch}`, `{lint}`, `{test}`.
pub struct Templates {
    pub values: BTreeMap<&'static str, String>,
}

impl Templates {
    pub fn render(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (k, v) in &self.values {
            out = out.replace(&format!("{{{k}}}"), v);
        }
        out
    }
}

/// `Add a hello world test!` → `add-a-hello-world-test` (at most 40 characters).
pub fn slug(task: &str) -> String {
    let mut out = String::new();
    for c in task.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
        if out.len() >= 40 {
            break;
        }
    }
    out.trim_matches('-').to_string()
}

/// The first line of the task, at most 72 characters (a commit subject).
pub fn summary_line(task: &str) -> String {
    let first = task
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("minion run")
        .trim();
    if first.chars().count() > 72 {
        format!("{}…", first.chars().take(71).collect::<String>())
    } else {
        first.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Blueprint::parse(text, "`t.yaml`").unwrap_err().to_string()
    }

    #[test]
    fn the_default_parses() {
        let b = Blueprint::default_blueprint();
        assert_eq!(b.steps.len(), 9);
        assert!(matches!(
            b.steps[5].action,
            Action::Agent {
                agent: AgentKind::Fixer,
                rounds: 2,
                ..
            }
        ));
    }

    #[test]
    fn errors_name_the_step_and_field() {
        assert_eq!(
            err("steps:\n  - {name: a, type: command, comands: [x]}\n"),
            "invalid blueprint `t.yaml`: step 1 (`a`): unknown field `comands`: a `command` step accepts name, type, when, commands, check, success_codes, timeout, artifact, on_failure"
        );
        assert_eq!(
            err("steps:\n  - {name: a, type: git_branch}\n  - {name: b, type: command, commands: [x], agent: scoper}\n"),
            "invalid blueprint `t.yaml`: step 2 (`b`): field `agent` does not apply to a `command` step"
        );
        assert_eq!(
            err("steps:\n  - {name: b, type: command, commands: [x], when: lint.failed}\n"),
            "invalid blueprint `t.yaml`: step 1 (`b`): field `when`: no earlier step is called `lint`"
        );
        assert!(err("steps:\n  - {name: b, type: agent}\n")
            .contains("step 1 (`b`): field `agent` is required"));
        assert!(
            err("steps:\n  - {name: b, type: command, commands: [x], timeout: -1}\n")
                .contains("step 1 (`b`)")
        );
        assert!(
            err("steps:\n  - {name: b, type: command, commands: [x], on_failure: explode}\n")
                .contains("field `on_failure`")
        );
        assert!(err("steps:\n  - {name: b, type: launch}\n")
            .contains("step 1 (`b`): field `type`: unknown variant `launch`"));
        assert!(err("steps: []\n").contains("no steps"));
    }

    struct F;
    impl Facts for F {
        fn step_failed(&self, n: &str) -> Option<bool> {
            match n {
                "lint" => Some(true),
                "test" => Some(false),
                _ => None,
            }
        }
        fn env(&self, n: &str) -> bool {
            n == "GITHUB_TOKEN"
        }
        fn config(&self, n: &str) -> bool {
            n == "pr"
        }
    }

    #[test]
    fn conditions() {
        let c = |s: &str| Condition::parse(s).unwrap().eval(&F);
        assert!(c("lint.failed"));
        assert!(!c("test.failed"));
        assert!(c("lint.failed or test.failed"));
        assert!(!c("lint.failed and test.failed"));
        assert!(c("env.GITHUB_TOKEN and config.pr"));
        assert!(c("not env.NOPE"));
        assert!(c("fix.skipped"));
        assert!(Condition::parse("config.nope").is_err());
        assert!(Condition::parse("lint.broken").is_err());
    }

    #[test]
    fn templates_and_slugs() {
        assert_eq!(slug("Add a hello world test!"), "add-a-hello-world-test");
        assert_eq!(summary_line("\nfix it\nmore"), "fix it");
        let t = Templates {
            values: [("run_id", "r1".to_string()), ("task", "t".to_string())].into(),
        };
        assert_eq!(t.render("minion/{run_id}: {task}"), "minion/r1: t");
    }
}
