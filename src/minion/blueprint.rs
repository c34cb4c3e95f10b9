//! Blueprints: the ordered steps of a run, from the repo's `.lackey/blueprints/*.yaml` or
//! the built-in default.
//!
//! Two dialects share one syntax and differ in meaning; which one a file is in is
//! written in the file, never guessed:
//!
//! * `version: 2` at the top: this project's dialect. Unknown fields are errors, `check`
//!   is a boolean (a failing check is repaired by a fixer that re-runs it), `on_failure:
//!   outcome:<name>` ends the run at once, a command step stops at its first failing
//!   command, the default timeout is 600 s, `when` may join conditions with `and`, `or`,
//!   `not` and may name only earlier steps.
//! * no `version`: the original lackey's dialect, so its users' files run unchanged.
//!   Every command of a step runs, `check: {command, artifact}` decides the step alone,
//!   the default timeout is 120 s, `on_failure: outcome:<name>` sets the run's outcome
//!   and the run goes on, `agent: fixer` makes one attempt fed by `input_from`, `when` is
//!   one `<step>.failed`, `<step>.succeeded` or `env.VAR`, and a field that does not
//!   apply is ignored with a warning. `docs/blueprints.md` has the whole list.
//!
//! ```yaml
//! version: 2
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
//! A blueprint is untrusted input: its size, nesting, aliases and step count are capped,
//! and it is checked completely before any work starts; every problem names the step's
//! index, its name and the field.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::error::Fail;
use crate::summary::Outcome;

/// The largest blueprint file read (bytes).
pub const MAX_BYTES: usize = 256 * 1024;
/// The most steps a blueprint may have.
pub const MAX_STEPS: usize = 500;
/// The deepest nesting of mappings and lists.
pub const MAX_DEPTH: usize = 16;
/// The most YAML aliases (`*name`) a blueprint may use.
pub const MAX_ALIASES: usize = 100;

/// Which meaning a blueprint's fields have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// No `version`: the original lackey's meaning.
    Original,
    /// `version: 2`: this project's meaning.
    V2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepType {
    GitBranch,
    GitCheckout,
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
            StepType::GitCheckout => "git_checkout",
            StepType::Agent => "agent",
            StepType::Command => "command",
            StepType::GitCommit => "git_commit",
            StepType::GitPush => "git_push",
            StepType::GitPr => "git_pr",
        }
    }

    /// The optional fields each step type accepts in a dialect.
    fn fields(self, dialect: Dialect) -> &'static [&'static str] {
        match (dialect, self) {
            (Dialect::V2, StepType::GitBranch) => &["branch"],
            (Dialect::V2, StepType::GitCheckout) => &[],
            (Dialect::V2, StepType::Agent) => &["agent", "rounds", "recheck", "max_turns"],
            (Dialect::V2, StepType::Command) => &[
                "commands",
                "check",
                "success_codes",
                "timeout",
                "artifact",
                "on_failure",
            ],
            (Dialect::V2, StepType::GitCommit) => &["message"],
            (Dialect::V2, StepType::GitPush) => &[],
            (Dialect::V2, StepType::GitPr) => &["title", "body", "draft"],
            (Dialect::Original, StepType::GitBranch | StepType::GitCheckout) => &["branch"],
            (Dialect::Original, StepType::Agent) => {
                &["agent", "input_from", "on_scope_disagreement"]
            }
            (Dialect::Original, StepType::Command) => &[
                "commands",
                "check",
                "timeout",
                "success_codes",
                "artifact",
                "on_failure",
            ],
            (Dialect::Original, StepType::GitCommit) => &["message"],
            (Dialect::Original, StepType::GitPush) => &[],
            (Dialect::Original, StepType::GitPr) => &["title"],
        }
    }
}

/// Every field a step may have in a dialect, whatever its type.
fn all_fields(dialect: Dialect) -> HashSet<&'static str> {
    let mut all: HashSet<&'static str> = ["name", "type", "when"].into();
    for t in [
        StepType::GitBranch,
        StepType::GitCheckout,
        StepType::Agent,
        StepType::Command,
        StepType::GitCommit,
        StepType::GitPush,
        StepType::GitPr,
    ] {
        all.extend(t.fields(dialect).iter().copied());
    }
    all
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

/// A step as written, in either dialect (fields that differ in type are read by hand).
#[derive(Debug, Deserialize)]
struct RawStep {
    name: String,
    #[serde(rename = "type")]
    kind: StepType,
    when: Option<String>,
    agent: Option<AgentKind>,
    rounds: Option<u32>,
    recheck: Option<Vec<String>>,
    max_turns: Option<u32>,
    input_from: Option<String>,
    on_scope_disagreement: Option<String>,
    commands: Option<Vec<String>>,
    check: Option<Value>,
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

/// What happens when a command step fails.
#[derive(Debug, Clone, PartialEq)]
pub enum OnFailure {
    /// Record the failure and go on (a later fixer step may repair it).
    Continue,
    /// End the run at once with this outcome.
    Outcome(Outcome),
    /// Set the run's outcome and go on to the remaining steps (the original dialect).
    SetOutcome(Outcome),
}

/// The original dialect's `check`: a command that alone decides the step, and the
/// artifact its output goes to.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckCommand {
    pub command: String,
    pub artifact: String,
}

#[derive(Debug, Clone)]
pub struct CommandSpec {
    pub commands: Vec<String>,
    /// `version: 2`: a failure is a failing check that a fixer may repair.
    pub check: bool,
    /// The original dialect: the command that decides success.
    pub check_command: Option<CheckCommand>,
    pub success_codes: Vec<i32>,
    pub timeout: u64,
    pub artifact: Option<String>,
    pub on_failure: OnFailure,
}

#[derive(Debug, Clone)]
pub enum Action {
    GitBranch {
        branch: Option<String>,
    },
    /// Record the current commit as the base, then check out an existing branch.
    GitCheckout {
        branch: String,
    },
    Agent {
        agent: AgentKind,
        rounds: u32,
        recheck: Vec<String>,
        max_turns: Option<u32>,
        /// The original dialect's fixer: the step whose output it is given.
        input_from: Option<String>,
    },
    Command(CommandSpec),
    GitCommit {
        message: String,
    },
    GitPush,
    GitPr {
        title: String,
        /// `None`: the body lackey writes for a reviewer.
        body: Option<String>,
        draft: bool,
    },
}

#[derive(Debug, Clone)]
pub struct Step {
    /// 1-based position in the blueprint.
    pub index: usize,
    pub name: String,
    pub when: Option<Condition>,
    pub action: Action,
}

#[derive(Debug, Clone)]
pub struct Blueprint {
    pub name: String,
    pub description: Option<String>,
    pub dialect: Dialect,
    pub steps: Vec<Step>,
    /// What was ignored (the original dialect ignores what does not apply).
    pub warnings: Vec<String>,
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

    /// The original dialect's `when`: one `env.VAR`, `<step>.failed` or
    /// `<step>.succeeded`; anything else is never true (with a warning).
    fn parse_original(text: &str) -> (Condition, Option<String>) {
        let text = text.trim();
        if text.is_empty() {
            return (Condition::True, None);
        }
        if let Some(var) = text.strip_prefix("env.") {
            return (Condition::Env(var.to_string()), None);
        }
        match text.split_once('.') {
            Some((step, "failed")) => (Condition::StepFailed(step.to_string()), None),
            Some((step, "succeeded")) => (Condition::StepSucceeded(step.to_string()), None),
            _ => (
                Condition::False,
                Some(format!(
                    "`{text}` is never true in this dialect (it knows <step>.failed, <step>.succeeded and env.VAR); the step will not run"
                )),
            ),
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
pub const DEFAULT: &str = r#"version: 2
name: default
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
        .with_hint("fix the blueprint; its two dialects and every field are described in docs/blueprints.md of lackey's repository")
        .into()
}

/// What a `version: 2` error adds when the field belongs to the original dialect.
fn other_dialect(what: &str) -> String {
    format!(
        "{what} belongs to the original lackey's dialect, but this file says `version: 2`; remove the `version` line to read it in that dialect"
    )
}

/// Read YAML text into a JSON value within the caps.
fn read_yaml(text: &str, origin: &str) -> anyhow::Result<Value> {
    if text.len() > MAX_BYTES {
        return Err(too_big(origin, text.len()));
    }
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.max_aliases = MAX_ALIASES;
    budget.max_anchors = MAX_ALIASES;
    budget.max_documents = 1;
    budget.max_nodes = 50_000;
    budget.max_events = 200_000;
    budget.max_total_scalar_bytes = MAX_BYTES;
    budget.max_merge_keys = MAX_ALIASES;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.alias_limits.max_total_replayed_events = 20_000;
    options.with_snippet = false;
    serde_saphyr::from_str_with_options::<Value>(text, options).map_err(|e| {
        let msg = e.to_string();
        let one_line = msg.split_whitespace().collect::<Vec<_>>().join(" ");
        bad(origin, format!("it is not YAML lackey reads: {one_line}"))
    })
}

pub fn too_big(origin: &str, len: usize) -> anyhow::Error {
    Fail::new(format!(
        "invalid blueprint {origin}: it is {len} bytes; a blueprint may be at most {} KiB",
        MAX_BYTES / 1024
    ))
    .with_hint(format!(
        "a blueprint lists at most {MAX_STEPS} steps; split the work into several blueprints"
    ))
    .into()
}

fn looks_like_path(name: &str) -> bool {
    name.contains('/') || name.ends_with(".yaml") || name.ends_with(".yml")
}

/// Where a repository keeps its blueprints.
pub const BLUEPRINT_DIR: &str = ".lackey/blueprints";

/// Which blueprint a run uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// The built-in default.
    Default,
    /// A file, relative to the repository's top (or absolute, in the minion's clone).
    File(String),
}

/// Choose the blueprint from the file names in `.lackey/blueprints/` and the name the
/// user gave (`--blueprint`, `LACKEY_BLUEPRINT`): a name there (`python-implement` →
/// `python-implement.yaml`), `default`, or a path in the repository; without a name the
/// only blueprint there, or the one called `default`, or the built-in default. The
/// minion (its clone) and the host (a commit, or GitHub's contents API, to decide the
/// run's branch before launch) choose with this one function.
pub fn choose(listing: &[String], name: Option<&str>) -> anyhow::Result<Choice> {
    let mut found: BTreeMap<String, String> = BTreeMap::new();
    for file in listing {
        let (stem, ext) = match file.rsplit_once('.') {
            Some((stem, ext @ ("yaml" | "yml"))) if !stem.is_empty() => (stem, ext),
            _ => continue,
        };
        // `.yaml` wins over `.yml` of the same name.
        if ext == "yaml" || !found.contains_key(stem) {
            found.insert(stem.to_string(), format!("{BLUEPRINT_DIR}/{file}"));
        }
    }
    Ok(match name {
        Some("default") if !found.contains_key("default") => Choice::Default,
        Some(n) if found.contains_key(n) => Choice::File(found[n].clone()),
        Some(n) if looks_like_path(n) => {
            if !n.contains('/') && listing.iter().any(|f| f == n) {
                // `name.yaml`: the file of that name in .lackey/blueprints/.
                Choice::File(format!("{BLUEPRINT_DIR}/{n}"))
            } else {
                Choice::File(n.to_string())
            }
        }
        Some(n) => {
            let known: Vec<&str> = found.keys().map(String::as_str).collect();
            return Err(Fail::new(format!("no blueprint `{n}` in .lackey/blueprints/"))
                .with_hint(if known.is_empty() {
                    "the repository has no blueprints; omit --blueprint to use the built-in default, or give a path to a blueprint file".to_string()
                } else {
                    format!("available: {} (or `default`, or a path to a blueprint file)", known.join(", "))
                })
                .into());
        }
        None => match found.len() {
            0 => Choice::Default,
            1 => Choice::File(found.values().next().cloned().unwrap_or_default()),
            _ if found.contains_key("default") => Choice::File(found["default"].clone()),
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
    })
}

/// The error for a blueprint path that names no file.
pub fn no_file(name: &str) -> anyhow::Error {
    Fail::new(format!("no blueprint file `{name}`"))
        .with_hint("a path names a file in the repository (relative to its top); a name without `/` names one in .lackey/blueprints/")
        .into()
}

impl Blueprint {
    pub fn default_blueprint() -> Blueprint {
        Blueprint::parse(DEFAULT, "`default` (built in)").expect("the built-in blueprint is valid")
    }

    /// Find the blueprint to use in a repository: `name` from `.lackey/blueprints/` (or a
    /// path to a file, relative to the repository), or the only one there, or the
    /// built-in default.
    pub fn load(repo: &Path, name: Option<&str>) -> anyhow::Result<Blueprint> {
        let dir = repo.join(BLUEPRINT_DIR);
        let listing: Vec<String> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.path().is_file())
                    .filter_map(|e| e.file_name().to_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let rel = match choose(&listing, name)? {
            Choice::Default => return Ok(Self::default_blueprint()),
            Choice::File(rel) => rel,
        };
        let chosen = if Path::new(&rel).is_absolute() {
            PathBuf::from(&rel)
        } else {
            repo.join(&rel)
        };
        if !chosen.is_file() {
            return Err(no_file(name.unwrap_or(&rel)));
        }
        let shown = format!(
            "`{}`",
            chosen.strip_prefix(repo).unwrap_or(&chosen).display()
        );
        let len = std::fs::metadata(&chosen).map(|m| m.len()).unwrap_or(0);
        if len > MAX_BYTES as u64 {
            return Err(too_big(&shown, len as usize));
        }
        let text = std::fs::read_to_string(&chosen)
            .map_err(|e| Fail::new(format!("cannot read blueprint `{}`: {e}", chosen.display())))?;
        Blueprint::parse(&text, &shown)
    }

    /// The branch template of the blueprint's first `git_branch` step that names one:
    /// the host expands it to decide the run's branch before launch.
    pub fn branch_template(&self) -> Option<&str> {
        self.steps.iter().find_map(|s| match &s.action {
            Action::GitBranch { branch: Some(b) } => Some(b.as_str()),
            _ => None,
        })
    }

    /// Parse and check a blueprint completely.
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Blueprint> {
        let doc = read_yaml(text, origin)?;
        let Value::Object(top) = doc else {
            return Err(bad(
                origin,
                "it must be a mapping with `steps` (and optionally `version`, `name`, `description`)",
            ));
        };
        let dialect = match top.get("version") {
            None => Dialect::Original,
            Some(v) if v.as_u64() == Some(2) || v.as_str() == Some("2") => Dialect::V2,
            Some(v) => {
                return Err(bad(
                    origin,
                    format!("`version: {v}` is not a version lackey knows: write `version: 2` for lackey's own dialect, or no `version` for the original lackey's"),
                ))
            }
        };
        for key in top.keys() {
            if !["version", "name", "description", "steps"].contains(&key.as_str()) {
                return Err(bad(
                    origin,
                    format!("unknown top-level field `{key}`: a blueprint has version, name, description and steps"),
                ));
            }
        }
        let text_field = |k: &str| -> anyhow::Result<Option<String>> {
            match top.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(bad(origin, format!("field `{k}` must be text"))),
            }
        };
        let name = text_field("name")?;
        let description = text_field("description")?;
        if dialect == Dialect::Original && name.is_none() {
            return Err(bad(
                origin,
                "field `name` is required in the original lackey's dialect (or write `version: 2` at the top for lackey's own)",
            ));
        }
        let raw_steps = match top.get("steps") {
            Some(Value::Array(a)) => a,
            Some(_) => return Err(bad(origin, "field `steps` must be a list")),
            None => return Err(bad(origin, "it has no `steps`")),
        };
        if raw_steps.is_empty() {
            return Err(bad(origin, "it has no steps"));
        }
        if raw_steps.len() > MAX_STEPS {
            return Err(Fail::new(format!(
                "invalid blueprint {origin}: it has {} steps; a blueprint may have at most {MAX_STEPS}",
                raw_steps.len()
            ))
            .with_hint("split the work into several blueprints")
            .into());
        }
        let mut parser = StepParser {
            origin,
            dialect,
            steps: Vec::with_capacity(raw_steps.len()),
            names: HashSet::with_capacity(raw_steps.len()),
            warnings: Vec::new(),
            all: all_fields(dialect),
            other: all_fields(match dialect {
                Dialect::V2 => Dialect::Original,
                Dialect::Original => Dialect::V2,
            }),
        };
        for (i, value) in raw_steps.iter().enumerate() {
            parser.step(i + 1, value)?;
        }
        // References the original dialect only warns about (it looks them up as it runs).
        if dialect == Dialect::Original {
            let mut warn = Vec::new();
            for s in &parser.steps {
                let mut refs = Vec::new();
                if let Some(c) = &s.when {
                    c.steps(&mut refs);
                }
                if let Action::Agent {
                    input_from: Some(f),
                    ..
                } = &s.action
                {
                    refs.push(f.clone());
                }
                for r in refs {
                    if !parser.names.contains(&r) {
                        warn.push(format!(
                            "step {} (`{}`): no step is called `{r}`; it never runs, so what refers to it is false or empty",
                            s.index, s.name
                        ));
                    }
                }
            }
            parser.warnings.extend(warn);
        }
        Ok(Blueprint {
            name: name.unwrap_or_else(|| origin.trim_matches('`').to_string()),
            description,
            dialect,
            steps: parser.steps,
            warnings: parser.warnings,
        })
    }
}

struct StepParser<'a> {
    origin: &'a str,
    dialect: Dialect,
    steps: Vec<Step>,
    names: HashSet<String>,
    warnings: Vec<String>,
    /// Every field of this dialect, and of the other.
    all: HashSet<&'static str>,
    other: HashSet<&'static str>,
}

impl StepParser<'_> {
    fn bad(&self, msg: impl std::fmt::Display) -> anyhow::Error {
        bad(self.origin, msg)
    }

    fn step(&mut self, index: usize, value: &Value) -> anyhow::Result<()> {
        let v2 = self.dialect == Dialect::V2;
        let name_hint = value
            .get("name")
            .and_then(|n| n.as_str())
            .map(|n| format!(" (`{n}`)"))
            .unwrap_or_default();
        let at = format!("step {index}{name_hint}");
        let Some(map) = value.as_object() else {
            return Err(self.bad(format!(
                "{at}: a step is a mapping with at least `name` and `type`"
            )));
        };
        let kind: Option<StepType> = map
            .get("type")
            .and_then(|t| serde_json::from_value(t.clone()).ok());
        if v2 && kind == Some(StepType::GitCheckout) {
            return Err(self.bad(format!(
                "{at}: field `type`: {}",
                other_dialect("`git_checkout`")
            )));
        }
        let mut kept = serde_json::Map::new();
        for (field, v) in map {
            let f = field.as_str();
            let known = self.all.contains(f);
            let applies = ["name", "type", "when"].contains(&f)
                || kind.is_none_or(|k| k.fields(self.dialect).contains(&f));
            if v2 && !known {
                let why = if self.other.contains(f) {
                    other_dialect(&format!("`{f}`"))
                } else {
                    match kind {
                        Some(k) => format!(
                            "a `{}` step accepts name, type, when{}",
                            k.as_str(),
                            k.fields(self.dialect)
                                .iter()
                                .map(|f| format!(", {f}"))
                                .collect::<String>()
                        ),
                        None => "check the field names".to_string(),
                    }
                };
                return Err(self.bad(format!("{at}: unknown field `{f}`: {why}")));
            }
            if v2 && !applies {
                return Err(self.bad(format!(
                    "{at}: field `{f}` does not apply to a `{}` step",
                    kind.map(StepType::as_str).unwrap_or("?")
                )));
            }
            if !v2 && !known {
                let note = if self.other.contains(f) {
                    " (a field of lackey's `version: 2` dialect)"
                } else {
                    ""
                };
                self.warnings
                    .push(format!("{at}: unknown field `{f}` ignored{note}"));
                continue;
            }
            if !v2 && !applies {
                self.warnings.push(format!(
                    "{at}: field `{f}` does not apply to a `{}` step; ignored",
                    kind.map(StepType::as_str).unwrap_or("?")
                ));
                continue;
            }
            kept.insert(field.clone(), v.clone());
        }
        let rs: RawStep = serde_path_to_error::deserialize(Value::Object(kept)).map_err(|e| {
            let path = e.path().to_string();
            if path.is_empty() || path == "." {
                self.bad(format!("{at}: {}", e.inner()))
            } else {
                self.bad(format!("{at}: field `{path}`: {}", e.inner()))
            }
        })?;
        let at = format!("step {index} (`{}`)", rs.name);
        if rs.name.trim().is_empty()
            || !rs
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(self.bad(format!(
                "{at}: field `name` must be letters, digits, `_` or `-`"
            )));
        }
        if !self.names.insert(rs.name.clone()) {
            return Err(self.bad(format!(
                "{at}: field `name`: another step is already called `{}`",
                rs.name
            )));
        }
        let when = match &rs.when {
            None => None,
            Some(w) if v2 => {
                let c = Condition::parse(w)
                    .map_err(|e| self.bad(format!("{at}: field `when`: {e}")))?;
                let mut refs = Vec::new();
                c.steps(&mut refs);
                for r in refs {
                    if r == rs.name || !self.names.contains(&r) {
                        return Err(self.bad(format!(
                            "{at}: field `when`: no earlier step is called `{r}`"
                        )));
                    }
                }
                Some(c)
            }
            Some(w) => {
                let (c, warning) = Condition::parse_original(w);
                if let Some(msg) = warning {
                    self.warnings.push(format!("{at}: field `when`: {msg}"));
                }
                Some(c)
            }
        };
        let name = rs.name.clone();
        let action = self.action(&at, rs)?;
        self.steps.push(Step {
            index,
            name,
            when,
            action,
        });
        Ok(())
    }

    fn action(&mut self, at: &str, rs: RawStep) -> anyhow::Result<Action> {
        let v2 = self.dialect == Dialect::V2;
        Ok(match rs.kind {
            StepType::GitBranch => {
                let branch = match rs.branch {
                    Some(b) => Some(b),
                    None if !v2 => Some("lackey/{run_id}/{task_slug}".to_string()),
                    None => None,
                };
                if let Some(b) = &branch {
                    if !b.contains("{run_id}") {
                        return Err(self.bad(format!(
                            "{at}: field `branch`: `{b}` must contain {{run_id}}: a run creates and pushes only branches named after it"
                        )));
                    }
                }
                Action::GitBranch { branch }
            }
            StepType::GitCheckout => {
                let branch = rs.branch.unwrap_or_default();
                if branch.trim().is_empty() {
                    return Err(self.bad(format!(
                        "{at}: field `branch` is required: the existing branch to check out"
                    )));
                }
                Action::GitCheckout { branch }
            }
            StepType::Agent => {
                let agent = rs.agent.ok_or_else(|| {
                    self.bad(format!(
                        "{at}: field `agent` is required (scoper, executor or fixer)"
                    ))
                })?;
                if agent != AgentKind::Fixer && (rs.rounds.is_some() || rs.recheck.is_some()) {
                    return Err(self.bad(format!(
                        "{at}: fields `rounds` and `recheck` apply only to the fixer"
                    )));
                }
                let mut input_from = rs.input_from.filter(|s| !s.is_empty());
                if agent != AgentKind::Fixer && input_from.is_some() {
                    self.warnings.push(format!(
                        "{at}: field `input_from` applies only to the fixer; ignored"
                    ));
                    input_from = None;
                }
                if let Some(s) = rs
                    .on_scope_disagreement
                    .as_deref()
                    .filter(|s| !s.is_empty())
                {
                    if agent != AgentKind::Executor {
                        self.warnings.push(format!(
                            "{at}: field `on_scope_disagreement` (`{s}`) applies only to the executor; ignored"
                        ));
                    }
                }
                let recheck = rs.recheck.unwrap_or_default();
                for r in &recheck {
                    match self.steps.iter().find(|s| &s.name == r) {
                        Some(Step {
                            action: Action::Command(_),
                            ..
                        }) => {}
                        Some(_) => {
                            return Err(self.bad(format!(
                                "{at}: field `recheck`: `{r}` is not a command step"
                            )))
                        }
                        None => {
                            return Err(self.bad(format!(
                                "{at}: field `recheck`: no earlier step is called `{r}`"
                            )))
                        }
                    }
                }
                let rounds = if v2 { rs.rounds.unwrap_or(2) } else { 1 };
                if agent == AgentKind::Fixer && !(1..=10).contains(&rounds) {
                    return Err(self.bad(format!("{at}: field `rounds` must be 1 to 10")));
                }
                Action::Agent {
                    agent,
                    rounds,
                    recheck,
                    max_turns: rs.max_turns,
                    input_from,
                }
            }
            StepType::Command => self.command(at, rs)?,
            StepType::GitCommit => Action::GitCommit {
                message: rs.message.unwrap_or_else(|| {
                    if v2 {
                        "{task_summary}"
                    } else {
                        "lackey: {task}"
                    }
                    .into()
                }),
            },
            StepType::GitPush => Action::GitPush,
            StepType::GitPr => Action::GitPr {
                title: rs.title.unwrap_or_else(|| {
                    if v2 {
                        "{task_summary}"
                    } else {
                        "lackey: {task}"
                    }
                    .into()
                }),
                body: rs.body,
                draft: rs.draft.unwrap_or(false),
            },
        })
    }

    fn command(&mut self, at: &str, rs: RawStep) -> anyhow::Result<Action> {
        let v2 = self.dialect == Dialect::V2;
        let commands = rs.commands.unwrap_or_default();
        if commands.iter().any(|c| c.trim().is_empty()) {
            return Err(self.bad(format!("{at}: field `commands` has an empty command")));
        }
        let (check, check_command) = match rs.check {
            None | Some(Value::Null) => (false, None),
            Some(Value::Bool(b)) if v2 => (b, None),
            Some(Value::Object(_)) if v2 => {
                return Err(self.bad(format!(
                    "{at}: field `check` is true or false here; {}",
                    other_dialect("`check: {command, artifact}`")
                )))
            }
            Some(Value::Object(m)) => {
                let text = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
                match (text("command"), text("artifact")) {
                    (Some(command), Some(artifact)) if !command.trim().is_empty() => {
                        (false, Some(CheckCommand { command, artifact }))
                    }
                    _ => {
                        return Err(self.bad(format!(
                            "{at}: field `check` needs `command` and `artifact`: the command that decides the step, and the file its output goes to"
                        )))
                    }
                }
            }
            Some(Value::Bool(_)) => {
                return Err(self.bad(format!(
                    "{at}: field `check` is a mapping {{command, artifact}} in the original lackey's dialect; write `version: 2` at the top of the file for lackey's own dialect, where `check` is true or false"
                )))
            }
            Some(_) => {
                return Err(self.bad(format!(
                    "{at}: field `check` must be {}",
                    if v2 {
                        "true or false"
                    } else {
                        "a mapping {command, artifact}"
                    }
                )))
            }
        };
        if v2 && commands.is_empty() {
            return Err(self.bad(format!(
                "{at}: field `commands` must list at least one non-empty command"
            )));
        }
        if !v2 && commands.is_empty() && check_command.is_none() {
            self.warnings.push(format!(
                "{at}: no `commands` and no `check`: the step does nothing and succeeds"
            ));
        }
        let timeout = rs.timeout.unwrap_or(if v2 { 600 } else { 120 });
        if timeout == 0 {
            return Err(self.bad(format!(
                "{at}: field `timeout` must be a positive number of seconds"
            )));
        }
        let on_failure = match rs.on_failure.as_deref() {
            None => OnFailure::Continue,
            Some("continue") if v2 => OnFailure::Continue,
            Some(s) if v2 => match s.strip_prefix("outcome:").and_then(Outcome::parse) {
                Some(Outcome::Success) | None => {
                    return Err(self.bad(format!(
                        "{at}: field `on_failure`: `{s}` is not `continue` or `outcome:<test_failure|scope_disagreement|error>`"
                    )))
                }
                Some(o) => OnFailure::Outcome(o),
            },
            Some(s) => match s.strip_prefix("outcome:") {
                Some("test_failure") => OnFailure::SetOutcome(Outcome::TestFailure),
                // These two ended the original's run at once.
                Some("error") => OnFailure::Outcome(Outcome::Error),
                Some("scope_disagreement") => OnFailure::Outcome(Outcome::ScopeDisagreement),
                Some("success") => OnFailure::Continue,
                Some("timeout") => {
                    self.warnings.push(format!(
                        "{at}: field `on_failure`: lackey reports a timeout as the outcome `error`"
                    ));
                    OnFailure::SetOutcome(Outcome::Error)
                }
                _ => {
                    self.warnings.push(format!(
                        "{at}: field `on_failure`: `{s}` is not `outcome:<test_failure|scope_disagreement|error|timeout>`; ignored"
                    ));
                    OnFailure::Continue
                }
            },
        };
        let artifacts = rs
            .artifact
            .iter()
            .chain(check_command.as_ref().map(|c| &c.artifact));
        for a in artifacts {
            if a.is_empty()
                || a.contains('/')
                || a.starts_with('.')
                || crate::summary::ARTIFACTS.contains(&a.as_str())
            {
                return Err(self.bad(format!("{at}: field `artifact` must be a plain file name that is not one of lackey's own artifacts (`{a}`)")));
            }
        }
        Ok(Action::Command(CommandSpec {
            commands,
            check,
            check_command,
            success_codes: rs.success_codes.unwrap_or_else(|| vec![0]),
            timeout,
            artifact: rs.artifact,
            on_failure,
        }))
    }
}

/// Values templates can use: `{run_id}`, `{task}`, `{task_slug}`, `{task_summary}`,
/// `{branch}`, `{lint}`, `{test}`, and `{env.VAR}` for the variables passed through.
pub struct Templates {
    pub values: BTreeMap<&'static str, String>,
    /// Variables the user passed through (an unknown one renders empty).
    pub env: BTreeMap<String, String>,
}

impl Templates {
    /// A run's values. The minion and the host (which expands the branch template to
    /// decide the run's branch before launch) both make them here, so both expand a
    /// template the same way.
    pub fn for_run(
        run_id: &str,
        task: &str,
        branch: &str,
        lint: Option<&str>,
        test: Option<&str>,
        env: BTreeMap<String, String>,
    ) -> Templates {
        Templates {
            values: [
                ("run_id", run_id.to_string()),
                ("task", task.to_string()),
                ("task_slug", slug(task)),
                ("task_summary", summary_line(task)),
                ("branch", branch.to_string()),
                ("lint", lint.unwrap_or_default().to_string()),
                ("test", test.unwrap_or_default().to_string()),
            ]
            .into_iter()
            .collect(),
            env,
        }
    }

    /// Replace each `{key}` once, left to right; an unknown key stays as written.
    pub fn render(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            match after.find('}') {
                Some(close) if close > 0 && !after[..close].contains('{') => {
                    let key = &after[..close];
                    if let Some(v) = self.values.get(key) {
                        out.push_str(v);
                    } else if let Some(var) = key.strip_prefix("env.") {
                        out.push_str(self.env.get(var).map(String::as_str).unwrap_or(""));
                    } else {
                        out.push_str(&rest[open..open + close + 2]);
                    }
                    rest = &after[close + 1..];
                }
                _ => {
                    out.push('{');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// `Add a hello world test!` → `add-a-hello-world-test`: lowercase letters and digits,
/// runs of anything else as one `-`, at most 50 characters, `task` when nothing is left.
pub fn slug(task: &str) -> String {
    let mut out = String::new();
    for c in task.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed: String = out.trim_matches('-').chars().take(50).collect();
    if trimmed.is_empty() {
        "task".into()
    } else {
        trimmed
    }
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

pub use crate::run_contract::{passable, reserved_prefix, secret_looking};

/// Check a list of variable names to pass through to runs (`[run] env`,
/// `LACKEY_PASS_ENV`): comma-separated names, none of them secret-looking.
pub fn check_pass_env(list: &str) -> Result<(), String> {
    for name in list.split(',').map(str::trim) {
        if name.is_empty() {
            return Err("an empty variable name in the list".into());
        }
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("`{name}` is not a variable name"));
        }
        // A secret is named as one first; `LACKEY_…` names all contain `KEY`, and are
        // refused for what they are.
        let reserved = reserved_prefix(name);
        if secret_looking(name) && reserved != Some("LACKEY_") {
            return Err(format!(
                "`{name}` looks like a secret, and secrets are never passed to a run's blueprint"
            ));
        }
        if let Some(prefix) = reserved {
            return Err(format!(
                "`{name}` is not passed through: names starting with `{prefix}` are set by lackey or the container runtime"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
