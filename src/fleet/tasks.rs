//! The `--tasks FILE` format: one run per line.
//!
//! A line is either plain text (the task itself) or, when it starts with `{`, a JSON
//! object `{"task": …, "repo": …, "blueprint": …, "model": …, "timeout": …}` in which
//! only `task` is required; a field left out falls back to the command line, then to
//! the settings. Blank lines and lines starting with `#` are skipped. Every error names
//! the file and the line, and says how to fix it.

use serde::Deserialize;

use crate::error::Fail;

/// Most lines one file may hold (a typo like `--tasks /dev/urandom` fails fast).
pub const MAX_TASKS: usize = 10_000;
/// Longest task text on one line (a cloud run ships longer ones through S3, but a
/// fleet of them is more likely a mistake).
pub const MAX_TASK_CHARS: usize = 100_000;

/// One task of the file, with the fields the line set.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct TaskLine {
    /// The 1-based line of the file it came from.
    pub line: usize,
    pub task: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blueprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

/// The JSON form of a line, as written by the user.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonLine {
    task: Option<serde_json::Value>,
    repo: Option<serde_json::Value>,
    blueprint: Option<serde_json::Value>,
    model: Option<serde_json::Value>,
    timeout: Option<serde_json::Value>,
}

fn fail(source: &str, line: usize, what: impl std::fmt::Display, hint: &str) -> anyhow::Error {
    Fail::new(format!("{source} line {line}: {what}"))
        .with_hint(hint.to_string())
        .into()
}

const FORMAT_HINT: &str = "each line is a task in plain text, or a JSON object like {\"task\": \"fix the flaky test\", \"repo\": \"acme/app\", \"timeout\": 900}";

/// Parse a tasks file. `source` names it in errors (`tasks.txt`, `stdin`).
pub fn parse(source: &str, text: &str) -> anyhow::Result<Vec<TaskLine>> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if out.len() == MAX_TASKS {
            return Err(fail(
                source,
                n,
                format!("more than {MAX_TASKS} tasks"),
                "split the file and run one fleet per part",
            ));
        }
        let task = if line.starts_with('{') {
            parse_json(source, n, line)?
        } else {
            TaskLine {
                line: n,
                task: line.to_string(),
                ..TaskLine::default()
            }
        };
        if task.task.chars().count() > MAX_TASK_CHARS {
            return Err(fail(
                source,
                n,
                format!("the task is longer than {MAX_TASK_CHARS} characters"),
                "shorten it, or run it alone with `lackey run \"TASK\"`",
            ));
        }
        out.push(task);
    }
    if out.is_empty() {
        return Err(Fail::new(format!("{source} holds no task"))
            .with_hint(format!(
                "{FORMAT_HINT}; blank lines and lines starting with # are skipped"
            ))
            .into());
    }
    Ok(out)
}

fn parse_json(source: &str, n: usize, line: &str) -> anyhow::Result<TaskLine> {
    let j: JsonLine = serde_json::from_str(line).map_err(|e| {
        // serde's message names an unknown field and lists the known ones; drop its
        // "at line 1 column 42", which is about the line, not the file.
        let msg = e.to_string();
        let msg = msg
            .rsplit_once(" at line ")
            .map(|(m, _)| m.to_string())
            .unwrap_or(msg);
        fail(
            source,
            n,
            format!("not a valid task object: {msg}"),
            FORMAT_HINT,
        )
    })?;
    let text = |field: &str, v: Option<serde_json::Value>| -> anyhow::Result<Option<String>> {
        match v {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) if s.trim().is_empty() => Err(fail(
                source,
                n,
                format!("`{field}` is empty"),
                "give it a value, or leave the field out to use the command line's or the settings'",
            )),
            Some(serde_json::Value::String(s)) => Ok(Some(s.trim().to_string())),
            Some(other) => Err(fail(
                source,
                n,
                format!("`{field}` must be a string, got {other}"),
                FORMAT_HINT,
            )),
        }
    };
    let task = text("task", j.task)?.ok_or_else(|| {
        fail(
            source,
            n,
            "the object has no `task`",
            "add \"task\": \"what the minion should do\"",
        )
    })?;
    let timeout = match j.timeout {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Number(num)) if num.as_u64().is_some_and(|s| s > 0) => num.as_u64(),
        Some(other) => {
            return Err(fail(
                source,
                n,
                format!("`timeout` must be a whole number of seconds above 0, got {other}"),
                "write it as a number, e.g. \"timeout\": 900",
            ))
        }
    };
    if let Some(t) = timeout {
        crate::config::validate::run_timeout(&t.to_string()).map_err(|e| {
            fail(
                source,
                n,
                format!("`timeout` {e}"),
                "see `lackey run --help`",
            )
        })?;
    }
    Ok(TaskLine {
        line: n,
        task,
        repo: text("repo", j.repo)?,
        blueprint: text("blueprint", j.blueprint)?,
        model: text("model", j.model)?,
        timeout,
    })
}

/// Read `--tasks FILE` (`-` for stdin): its name for errors, its text, its tasks.
pub fn read(path: &str) -> anyhow::Result<(String, String, Vec<TaskLine>)> {
    let (source, text) = if path == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|e| {
            Fail::new(format!("cannot read the tasks from stdin: {e}"))
                .with_hint("pipe UTF-8 text, one task per line")
        })?;
        ("stdin".to_string(), s)
    } else {
        let text = std::fs::read(path).map_err(|e| {
            Fail::new(format!("cannot read the tasks file `{path}`: {e}"))
                .with_hint("pass --tasks FILE with one task per line, or --tasks - to read stdin")
        })?;
        let text = String::from_utf8(text).map_err(|_| {
            Fail::new(format!("the tasks file `{path}` is not UTF-8 text"))
                .with_hint("save it as UTF-8, one task per line")
        })?;
        (path.to_string(), text)
    };
    let tasks = parse(&source, &text)?;
    Ok((source, text, tasks))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        let e = parse("tasks.txt", text).unwrap_err();
        let mut s = e.to_string();
        if let Some(f) = e.downcast_ref::<Fail>() {
            s.push_str(&format!(" | hint: {}", f.hint.clone().unwrap_or_default()));
        }
        s
    }

    #[test]
    fn plain_lines_skip_blanks_and_comments() {
        let t = parse("t", "# backlog\n\nfix the flaky test\n  add a README  \n").unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].task, "fix the flaky test");
        assert_eq!(t[0].line, 3);
        assert_eq!(t[1].task, "add a README");
        assert_eq!(t[1].line, 4);
        assert_eq!(t[1].repo, None);
    }

    #[test]
    fn json_lines_set_their_fields_and_leave_the_rest() {
        let t = parse(
            "t",
            "{\"task\": \"a\", \"repo\": \"acme/app\", \"timeout\": 600}\n{\"task\":\"b\",\"model\":\"claude-x\",\"blueprint\":\"docs\"}\nplain c\n",
        )
        .unwrap();
        assert_eq!(
            t[0],
            TaskLine {
                line: 1,
                task: "a".into(),
                repo: Some("acme/app".into()),
                timeout: Some(600),
                ..Default::default()
            }
        );
        assert_eq!(t[1].model.as_deref(), Some("claude-x"));
        assert_eq!(t[1].blueprint.as_deref(), Some("docs"));
        assert_eq!(t[1].timeout, None);
        assert_eq!(t[2].task, "plain c");
    }

    #[test]
    fn errors_name_the_line_and_the_fix() {
        assert_eq!(
            err("ok\n{\"task\": \"x\", \"timout\": 5}\n"),
            "tasks.txt line 2: not a valid task object: unknown field `timout`, expected one of `task`, `repo`, `blueprint`, `model`, `timeout` | hint: each line is a task in plain text, or a JSON object like {\"task\": \"fix the flaky test\", \"repo\": \"acme/app\", \"timeout\": 900}"
        );
        assert!(err("{\"repo\": \"a/b\"}")
            .starts_with("tasks.txt line 1: the object has no `task` | hint: add \"task\""));
        assert!(err("\n\n{\"task\": \"x\", \"timeout\": \"ten\"}").starts_with(
            "tasks.txt line 3: `timeout` must be a whole number of seconds above 0, got \"ten\""
        ));
        assert!(err("{\"task\": \"x\", \"timeout\": 0}").contains("line 1: `timeout` must be"));
        assert!(
            err("{\"task\": 5}").starts_with("tasks.txt line 1: `task` must be a string, got 5")
        );
        assert!(err("{\"task\": \"  \"}").starts_with("tasks.txt line 1: `task` is empty"));
        assert!(
            err("{\"task\": \"x\"").starts_with("tasks.txt line 1: not a valid task object: EOF")
        );
        assert!(err("# only a comment\n\n").starts_with("tasks.txt holds no task | hint:"));
    }

    #[test]
    fn too_many_tasks_is_refused() {
        let text = "t\n".repeat(MAX_TASKS + 1);
        assert!(err(&text).contains(&format!(
            "line {}: more than {MAX_TASKS} tasks",
            MAX_TASKS + 1
        )));
    }
}
