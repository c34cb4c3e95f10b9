//! The tools agents use on the work tree, and the guards around them.
//!
//! What must stay true:
//! * Nothing is read or written outside the work tree: absolute paths elsewhere, `..`
//!   and symlinks that lead out are refused, and `.git` is never written.
//! * The scoper can only read. The executor writes only inside the scope; the fixer only
//!   the files already touched and the test files.
//! * A file is read before it is edited, and an edit's `old_str` matches exactly once.
//! * Shell commands run with a timeout, without the run's secrets in their environment,
//!   their output clipped with a note on how to narrow it; each lands in `commands.log`.
//! * Rule files (`CLAUDE.md`, `AGENTS.md`) met between a read path and the repo root
//!   are handed to the agent once each.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

use super::artifacts::{clip, now_rfc3339, Artifacts, CommandRecord};

pub const VIEW_LIMIT: usize = 16_000;
pub const BASH_LIMIT: usize = 30_000;
pub const BASH_DEFAULT_TIMEOUT: u64 = 120;
pub const BASH_MAX_TIMEOUT: u64 = 600;
const RULE_FILES: &[&str] = &["CLAUDE.md", "AGENTS.md"];

/// Where an agent may write.
#[derive(Clone, Debug, Default)]
pub struct WriteScope {
    /// Directories (relative, `.` for the whole tree) whose files may be written.
    pub dirs: Vec<String>,
    /// Single files that may be written.
    pub files: Vec<String>,
}

impl WriteScope {
    pub fn everything() -> WriteScope {
        WriteScope {
            dirs: vec![".".into()],
            files: vec![],
        }
    }

    pub fn allows(&self, rel: &str) -> bool {
        let rel = rel.trim_start_matches("./");
        self.files.iter().any(|f| f.trim_start_matches("./") == rel)
            || self.dirs.iter().any(|d| {
                let d = d.trim_start_matches("./").trim_end_matches('/');
                d.is_empty() || d == "." || rel == d || rel.starts_with(&format!("{d}/"))
            })
    }

    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.dirs.iter().map(|d| format!("{d}/")).collect();
        parts.extend(self.files.iter().cloned());
        parts.join(", ")
    }
}

/// The shell's result.
#[derive(Debug, Clone)]
pub struct ShellResult {
    pub exit_code: Option<i32>,
    pub output: String,
    pub duration: Duration,
    pub timed_out: bool,
}

/// The work tree as the agents see it.
pub struct Workspace {
    pub root: PathBuf,
    pub artifacts: Arc<Artifacts>,
    read: Mutex<HashSet<String>>,
    rules_seen: Mutex<HashSet<PathBuf>>,
    /// When the run will be killed; commands never run past it.
    pub deadline: Option<Instant>,
    /// Variables the user passed through, added to every command's environment.
    extra_env: Vec<(String, String)>,
}

impl Workspace {
    pub fn new(
        root: &Path,
        artifacts: Arc<Artifacts>,
        deadline: Option<Instant>,
    ) -> anyhow::Result<Workspace> {
        let root = root
            .canonicalize()
            .map_err(|e| anyhow::anyhow!("work tree `{}`: {e}", root.display()))?;
        Ok(Workspace {
            root,
            artifacts,
            read: Mutex::new(HashSet::new()),
            rules_seen: Mutex::new(HashSet::new()),
            deadline,
            extra_env: Vec::new(),
        })
    }

    /// Add variables to every command's environment (names already checked).
    pub fn with_env(mut self, env: Vec<(String, String)>) -> Workspace {
        self.extra_env = env;
        self
    }

    /// Resolve a path an agent gave to (absolute path, path relative to the root).
    pub fn resolve(&self, path: &str) -> Result<(PathBuf, String), String> {
        let path = path.trim();
        if path.is_empty() {
            return Err("the path is empty".into());
        }
        let p = Path::new(path);
        let rel: PathBuf = if p.is_absolute() {
            match p.strip_prefix(&self.root) {
                Ok(r) => r.to_path_buf(),
                Err(_) => {
                    return Err(format!(
                    "`{path}` is outside the work tree: use paths relative to the repository root"
                ))
                }
            }
        } else {
            p.to_path_buf()
        };
        let mut clean = PathBuf::new();
        for c in rel.components() {
            match c {
                Component::Normal(x) => clean.push(x),
                Component::CurDir => {}
                Component::ParentDir => {
                    return Err(format!(
                        "`{path}` uses `..`: paths must stay inside the repository"
                    ))
                }
                _ => return Err(format!("`{path}` is not a relative path")),
            }
        }
        let abs = self.root.join(&clean);
        // Follow symlinks as far as the path exists; the result must stay under the root.
        let mut existing = abs.clone();
        let mut rest = Vec::new();
        while !existing.exists() && existing.symlink_metadata().is_err() {
            match (existing.file_name(), existing.parent()) {
                (Some(name), Some(parent)) => {
                    rest.push(name.to_os_string());
                    existing = parent.to_path_buf();
                }
                _ => break,
            }
        }
        let real = existing
            .canonicalize()
            .map_err(|_| format!("`{path}` resolves outside the work tree (through a symlink)"))?;
        if !real.starts_with(&self.root) {
            return Err(format!(
                "`{path}` resolves outside the work tree (through a symlink)"
            ));
        }
        let mut real_abs = real;
        for name in rest.iter().rev() {
            real_abs.push(name);
        }
        let rel_str = real_abs
            .strip_prefix(&self.root)
            .map(|r| r.to_string_lossy().replace('\\', "/"))
            .unwrap_or_default();
        Ok((
            real_abs,
            if rel_str.is_empty() {
                ".".into()
            } else {
                rel_str
            },
        ))
    }

    fn mark_read(&self, rel: &str) {
        self.read
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(rel.to_string());
    }

    pub fn was_read(&self, rel: &str) -> bool {
        self.read
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(rel)
    }

    /// Rule files between `rel` (a file or directory) and the root, not yet handed over.
    fn new_rules(&self, rel: &str) -> String {
        let mut dir = self.root.join(rel);
        if !dir.is_dir() {
            dir.pop();
        }
        let mut found = Vec::new();
        loop {
            for name in RULE_FILES {
                let f = dir.join(name);
                if f.is_file() {
                    let mut seen = self.rules_seen.lock().unwrap_or_else(|e| e.into_inner());
                    if seen.insert(f.clone()) {
                        if let Ok(text) = std::fs::read_to_string(&f) {
                            let shown = f
                                .strip_prefix(&self.root)
                                .map(|p| p.display().to_string())
                                .unwrap_or_default();
                            let (text, _) =
                                clip(&text, 8_000, "the rest of this rule file was cut");
                            found.push(format!("<rules path=\"{shown}\">\n{text}\n</rules>"));
                        }
                    }
                }
            }
            if dir == self.root || !dir.pop() || !dir.starts_with(&self.root) {
                break;
            }
        }
        if found.is_empty() {
            String::new()
        } else {
            format!(
                "\n\nThe repository has rules that apply here; follow them:\n{}",
                found.join("\n")
            )
        }
    }

    /// `view`: a file with line numbers (optionally a range) or a directory listing.
    pub fn view(&self, path: &str, range: Option<(usize, i64)>) -> Result<String, String> {
        let (abs, rel) = self.resolve(path)?;
        if abs.is_dir() {
            let listing = list_dir(&abs, &self.root, 2, 400);
            self.mark_read(&rel);
            return Ok(format!("{listing}{}", self.new_rules(&rel)));
        }
        let bytes = std::fs::read(&abs).map_err(|e| format!("cannot read `{rel}`: {e}"))?;
        if bytes.iter().take(8192).any(|b| *b == 0) {
            return Err(format!("`{rel}` is a binary file ({} bytes)", bytes.len()));
        }
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().collect();
        let (start, end) = match range {
            Some((s, e)) => {
                let s = s.max(1);
                let e = if e < 0 {
                    lines.len()
                } else {
                    (e as usize).min(lines.len())
                };
                if s > lines.len().max(1) || e < s {
                    return Err(format!(
                        "view_range [{s}, {e}] is outside `{rel}`, which has {} lines",
                        lines.len()
                    ));
                }
                (s, e)
            }
            None => (1, lines.len()),
        };
        let mut out = String::new();
        for (i, line) in lines.iter().enumerate().take(end).skip(start - 1) {
            out.push_str(&format!("{:6}\t{line}\n", i + 1));
        }
        if lines.is_empty() {
            out.push_str("(empty file)\n");
        }
        let (out, _) = clip(
            &out,
            VIEW_LIMIT,
            "view a smaller view_range, or grep for what you need",
        );
        self.mark_read(&rel);
        Ok(format!("{out}{}", self.new_rules(&rel)))
    }

    /// `glob`: paths matching a pattern such as `src/**/*.rs`.
    pub fn glob(&self, pattern: &str) -> Result<String, String> {
        let glob = globset::GlobBuilder::new(pattern)
            .literal_separator(false)
            .build()
            .map_err(|e| format!("invalid glob `{pattern}`: {e}"))?
            .compile_matcher();
        let mut hits = Vec::new();
        for entry in walk(&self.root) {
            let rel = entry
                .strip_prefix(&self.root)
                .map(|p| p.to_string_lossy().replace('\\', "/"))
                .unwrap_or_default();
            if glob.is_match(&rel) {
                hits.push(rel);
            }
        }
        hits.sort();
        let total = hits.len();
        hits.truncate(300);
        let mut out = hits.join("\n");
        if total > 300 {
            out.push_str(&format!(
                "\n[{} more matches not shown; narrow the pattern]",
                total - 300
            ));
        }
        if total == 0 {
            out = format!("no files match `{pattern}`");
        }
        Ok(out)
    }

    /// `grep`: lines matching a regex, as `path:line: text`.
    pub fn grep(
        &self,
        pattern: &str,
        path: Option<&str>,
        file_glob: Option<&str>,
    ) -> Result<String, String> {
        let re =
            regex::Regex::new(pattern).map_err(|e| format!("invalid regex `{pattern}`: {e}"))?;
        let base = match path {
            Some(p) => self.resolve(p)?.0,
            None => self.root.clone(),
        };
        let filter = match file_glob {
            Some(g) => Some(
                globset::Glob::new(g)
                    .map_err(|e| format!("invalid glob `{g}`: {e}"))?
                    .compile_matcher(),
            ),
            None => None,
        };
        let files: Vec<PathBuf> = if base.is_file() {
            vec![base.clone()]
        } else {
            walk(&base)
        };
        let mut hits = Vec::new();
        let mut total = 0usize;
        for f in files {
            let rel = f
                .strip_prefix(&self.root)
                .map(|p| p.to_string_lossy().replace('\\', "/"))
                .unwrap_or_default();
            if let Some(m) = &filter {
                let name = f
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                if !m.is_match(&rel) && !m.is_match(&name) {
                    continue;
                }
            }
            let Ok(meta) = f.metadata() else { continue };
            if meta.len() > 2_000_000 {
                continue;
            }
            let Ok(bytes) = std::fs::read(&f) else {
                continue;
            };
            if bytes.iter().take(8192).any(|b| *b == 0) {
                continue;
            }
            let text = String::from_utf8_lossy(&bytes);
            for (i, line) in text.lines().enumerate() {
                if re.is_match(line) {
                    total += 1;
                    if hits.len() < 200 {
                        let line: String = line.chars().take(240).collect();
                        hits.push(format!("{rel}:{}: {line}", i + 1));
                    }
                }
            }
        }
        if total == 0 {
            return Ok(format!("no lines match `{pattern}`"));
        }
        let mut out = hits.join("\n");
        if total > hits.len() {
            out.push_str(&format!(
                "\n[{} more matches not shown; narrow the pattern, the path or the glob]",
                total - hits.len()
            ));
        }
        Ok(out)
    }

    fn check_write(&self, path: &str, scope: &WriteScope) -> Result<(PathBuf, String), String> {
        let (abs, rel) = self.resolve(path)?;
        if rel == ".git" || rel.starts_with(".git/") {
            return Err("`.git` is never edited directly".into());
        }
        if !scope.allows(&rel) {
            return Err(format!(
                "`{rel}` is outside the scope you may edit ({}). If the task really needs it, call request_scope_change with the files and your reasoning.",
                scope.describe()
            ));
        }
        if abs.is_dir() {
            return Err(format!("`{rel}` is a directory"));
        }
        Ok((abs, rel))
    }

    /// `create`: write a new file, or replace one that has been read.
    pub fn create(&self, path: &str, text: &str, scope: &WriteScope) -> Result<String, String> {
        let (abs, rel) = self.check_write(path, scope)?;
        let existed = abs.exists();
        if existed && !self.was_read(&rel) {
            return Err(format!(
                "`{rel}` already exists and has not been read: view it before replacing it"
            ));
        }
        if let Some(parent) = abs.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create `{}`: {e}", parent.display()))?;
        }
        std::fs::write(&abs, text).map_err(|e| format!("cannot write `{rel}`: {e}"))?;
        self.mark_read(&rel);
        Ok(if existed {
            format!("replaced `{rel}` ({} lines)", text.lines().count())
        } else {
            format!("created `{rel}` ({} lines)", text.lines().count())
        })
    }

    fn read_for_edit(
        &self,
        path: &str,
        scope: &WriteScope,
    ) -> Result<(PathBuf, String, String), String> {
        let (abs, rel) = self.check_write(path, scope)?;
        if !abs.is_file() {
            return Err(format!("`{rel}` does not exist: use create for a new file"));
        }
        if !self.was_read(&rel) {
            return Err(format!(
                "`{rel}` has not been read yet: view it before editing it"
            ));
        }
        let text =
            std::fs::read_to_string(&abs).map_err(|e| format!("cannot read `{rel}`: {e}"))?;
        Ok((abs, rel, text))
    }

    /// `str_replace`: replace the one occurrence of `old` with `new`.
    pub fn str_replace(
        &self,
        path: &str,
        old: &str,
        new: &str,
        scope: &WriteScope,
    ) -> Result<String, String> {
        let (abs, rel, text) = self.read_for_edit(path, scope)?;
        if old.is_empty() {
            return Err("old_str is empty: give the exact text to replace".into());
        }
        let count = text.matches(old).count();
        match count {
            0 => Err(format!(
                "old_str does not occur in `{rel}`: it must match the file exactly, whitespace included (view the file again)"
            )),
            1 => {
                let updated = text.replacen(old, new, 1);
                std::fs::write(&abs, &updated).map_err(|e| format!("cannot write `{rel}`: {e}"))?;
                let line = text[..text.find(old).unwrap_or(0)].lines().count().max(1);
                Ok(format!("edited `{rel}` at line {line}"))
            }
            n => Err(format!(
                "old_str occurs {n} times in `{rel}`: include more surrounding lines so it matches exactly once"
            )),
        }
    }

    /// `insert`: insert text after line `after` (0 = at the top).
    pub fn insert(
        &self,
        path: &str,
        after: usize,
        insert: &str,
        scope: &WriteScope,
    ) -> Result<String, String> {
        let (abs, rel, text) = self.read_for_edit(path, scope)?;
        let mut lines: Vec<&str> = text.lines().collect();
        if after > lines.len() {
            return Err(format!(
                "insert_line {after} is past the end of `{rel}`, which has {} lines",
                lines.len()
            ));
        }
        let new_lines: Vec<&str> = insert.lines().collect();
        let n = new_lines.len();
        lines.splice(after..after, new_lines);
        let mut updated = lines.join("\n");
        if text.ends_with('\n') || text.is_empty() {
            updated.push('\n');
        }
        std::fs::write(&abs, updated).map_err(|e| format!("cannot write `{rel}`: {e}"))?;
        Ok(format!(
            "inserted {n} lines into `{rel}` after line {after}"
        ))
    }

    /// Run a shell command in the work tree (the agents' `bash`, and blueprint commands).
    pub async fn shell(&self, agent: &str, command: &str, timeout: Duration) -> ShellResult {
        let timeout = match self.deadline {
            Some(d) => timeout.min(d.saturating_duration_since(Instant::now())),
            None => timeout,
        };
        let started = Instant::now();
        let mut cmd = tokio::process::Command::new("bash");
        cmd.arg("-c")
            .arg(format!("exec 2>&1\n{command}"))
            .current_dir(&self.root)
            .env_clear()
            .envs(safe_env())
            .envs(self.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        #[cfg(unix)]
        cmd.process_group(0);
        let result = match cmd.spawn() {
            Err(e) => ShellResult {
                exit_code: None,
                output: format!("cannot start bash: {e}"),
                duration: started.elapsed(),
                timed_out: false,
            },
            Ok(mut child) => {
                let pid = child.id();
                let mut stdout = child.stdout.take().expect("piped stdout");
                let mut buf = Vec::new();
                let read_all = async {
                    let _ = stdout.read_to_end(&mut buf).await;
                    child.wait().await
                };
                match tokio::time::timeout(timeout, read_all).await {
                    Ok(status) => ShellResult {
                        exit_code: status.ok().and_then(|s| s.code()),
                        output: String::from_utf8_lossy(&buf).into_owned(),
                        duration: started.elapsed(),
                        timed_out: false,
                    },
                    Err(_) => {
                        #[cfg(unix)]
                        if let Some(pid) = pid {
                            // The whole process group: a test runner's children too.
                            unsafe {
                                libc::kill(-(pid as i32), libc::SIGKILL);
                            }
                        }
                        ShellResult {
                            exit_code: None,
                            output: String::from_utf8_lossy(&buf).into_owned(),
                            duration: started.elapsed(),
                            timed_out: true,
                        }
                    }
                }
            }
        };
        // Redact before anything else sees the output (the model included), and before
        // clipping, which could cut a secret in two and leave half of it unrecognised.
        let result = ShellResult {
            output: self.artifacts.redact(&result.output),
            ..result
        };
        let (logged, truncated) = clip(&result.output, 8_000, "see the agent's transcript");
        self.artifacts.command(&CommandRecord {
            ts: now_rfc3339(),
            agent,
            cwd: &self.root.display().to_string(),
            command,
            exit_code: result.exit_code,
            duration_ms: result.duration.as_millis(),
            timed_out: result.timed_out,
            output: &logged,
            output_truncated: truncated,
        });
        result
    }
}

/// The environment commands see: enough to build and test, none of the run's secrets.
fn safe_env() -> Vec<(String, String)> {
    const KEEP: &[&str] = &[
        "PATH",
        "HOME",
        "LANG",
        "LC_ALL",
        "TERM",
        "USER",
        "TMPDIR",
        "CARGO_HOME",
        "RUSTUP_HOME",
        "GOPATH",
        "GOCACHE",
        "JAVA_HOME",
        "PYTHONPATH",
        "VIRTUAL_ENV",
        "NODE_PATH",
    ];
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| KEEP.contains(&k.as_str()))
        .collect();
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()));
    }
    env.push(("CI".into(), "true".into()));
    env.push(("GIT_TERMINAL_PROMPT".into(), "0".into()));
    env
}

/// Every file under `dir`, skipping `.git` and common dependency caches.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| {
            let n = e.file_name().to_string_lossy();
            !(e.depth() > 0
                && e.file_type().is_dir()
                && (n == ".git" || n == "node_modules" || n == "target"))
        })
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect()
}

fn list_dir(abs: &Path, root: &Path, depth: usize, max: usize) -> String {
    let mut entries = Vec::new();
    for e in walkdir::WalkDir::new(abs)
        .min_depth(1)
        .max_depth(depth)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.file_name() != ".git")
        .filter_map(Result::ok)
    {
        let rel = e
            .path()
            .strip_prefix(root)
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        entries.push(if e.file_type().is_dir() {
            format!("{rel}/")
        } else {
            rel
        });
    }
    let total = entries.len();
    entries.truncate(max);
    let mut out = entries.join("\n");
    if total > max {
        out.push_str(&format!(
            "\n[{} more entries; view a subdirectory or use glob]",
            total - max
        ));
    }
    if total == 0 {
        out.push_str("(empty directory)");
    }
    out
}

fn str_arg<'a>(input: &'a Value, name: &str) -> Result<&'a str, String> {
    input[name]
        .as_str()
        .ok_or_else(|| format!("missing string argument `{name}`"))
}

/// Which tools an agent has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Toolset {
    /// view, glob, grep, submit_scope
    Scoper,
    /// view, glob, grep, create, str_replace, insert, bash, finish, request_scope_change
    Executor,
    /// the executor's, without request_scope_change
    Fixer,
}

/// The tool definitions sent to the API.
pub fn definitions(set: Toolset) -> Vec<Value> {
    let mut tools = vec![
        json!({"name": "view", "description": "View a file with line numbers, or list a directory (two levels). Use view_range [start, end] (1-based, end -1 for the end of the file) for a part of a large file. Viewing a file is required before editing it.",
               "input_schema": {"type": "object", "properties": {"path": {"type": "string", "description": "path relative to the repository root"}, "view_range": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2}}, "required": ["path"]}}),
        json!({"name": "glob", "description": "List files whose path relative to the repository root matches a glob such as `src/**/*.rs`.",
               "input_schema": {"type": "object", "properties": {"pattern": {"type": "string"}}, "required": ["pattern"]}}),
        json!({"name": "grep", "description": "Search file contents with a regular expression; prints `path:line: text`. Optionally limit to a path and a file glob.",
               "input_schema": {"type": "object", "properties": {"pattern": {"type": "string"}, "path": {"type": "string"}, "glob": {"type": "string"}}, "required": ["pattern"]}}),
    ];
    match set {
        Toolset::Scoper => tools.push(json!({
            "name": "submit_scope",
            "description": "Finish by submitting the scope of the change: the directories and files the executor may edit, the test files, and why.",
            "input_schema": {"type": "object", "properties": {
                "summary": {"type": "string", "description": "what the change is, in a few sentences"},
                "allowed_dirs": {"type": "array", "items": {"type": "string"}, "description": "directories whose files may be edited or created"},
                "allowed_files": {"type": "array", "items": {"type": "string"}, "description": "single files that may be edited or created"},
                "test_files": {"type": "array", "items": {"type": "string"}, "description": "test files to add or change"},
                "rationale": {"type": "string"}},
                "required": ["summary", "allowed_dirs", "allowed_files", "test_files", "rationale"]}})),
        Toolset::Executor | Toolset::Fixer => {
            tools.push(json!({"name": "create", "description": "Create a file with the given text (an existing file must be viewed first, and is replaced).",
                "input_schema": {"type": "object", "properties": {"path": {"type": "string"}, "file_text": {"type": "string"}}, "required": ["path", "file_text"]}}));
            tools.push(json!({"name": "str_replace", "description": "Replace old_str with new_str in a file you have viewed. old_str must match exactly once, whitespace included.",
                "input_schema": {"type": "object", "properties": {"path": {"type": "string"}, "old_str": {"type": "string"}, "new_str": {"type": "string"}}, "required": ["path", "old_str", "new_str"]}}));
            tools.push(json!({"name": "insert", "description": "Insert text after line insert_line (0 inserts at the top) of a file you have viewed.",
                "input_schema": {"type": "object", "properties": {"path": {"type": "string"}, "insert_line": {"type": "integer", "minimum": 0}, "insert_text": {"type": "string"}}, "required": ["path", "insert_line", "insert_text"]}}));
            tools.push(json!({"name": "bash", "description": "Run one shell command in the repository root (build, test, lint). Output is clipped; the default timeout is 120 s (at most 600).",
                "input_schema": {"type": "object", "properties": {"command": {"type": "string"}, "timeout": {"type": "integer", "minimum": 1, "maximum": 600}}, "required": ["command"]}}));
            tools.push(json!({"name": "finish", "description": "Call when the change is complete and checked.",
                "input_schema": {"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"]}}));
            if set == Toolset::Executor {
                tools.push(json!({"name": "request_scope_change", "description": "Call when the task cannot be done within the scope: name the files you need and why. This ends the run for a human to decide.",
                    "input_schema": {"type": "object", "properties": {"files": {"type": "array", "items": {"type": "string"}}, "reasoning": {"type": "string"}}, "required": ["files", "reasoning"]}}));
            }
        }
    }
    tools
}

/// A terminal tool call that ends the agent.
#[derive(Debug, Clone)]
pub enum Terminal {
    Scope(Value),
    Finish(String),
    ScopeChange {
        files: Vec<String>,
        reasoning: String,
    },
}

/// Run one tool call. Returns the text for the tool_result, whether it is an error, and
/// a terminal signal when the agent is done.
pub async fn call(
    ws: &Workspace,
    set: Toolset,
    agent: &str,
    scope: &WriteScope,
    name: &str,
    input: &Value,
) -> (String, bool, Option<Terminal>) {
    let writes = matches!(set, Toolset::Executor | Toolset::Fixer);
    let result: Result<String, String> = match name {
        "view" => {
            let range = input["view_range"]
                .as_array()
                .and_then(|r| Some((r.first()?.as_u64()? as usize, r.get(1)?.as_i64()?)));
            match str_arg(input, "path") {
                Ok(p) => ws.view(p, range),
                Err(e) => Err(e),
            }
        }
        "glob" => str_arg(input, "pattern").and_then(|p| ws.glob(p)),
        "grep" => str_arg(input, "pattern")
            .and_then(|p| ws.grep(p, input["path"].as_str(), input["glob"].as_str())),
        "submit_scope" if set == Toolset::Scoper => {
            return match validate_scope(ws, input) {
                Ok(scope) => ("scope recorded".into(), false, Some(Terminal::Scope(scope))),
                Err(e) => (e, true, None),
            }
        }
        "create" if writes => (|| {
            let p = str_arg(input, "path")?;
            let t = str_arg(input, "file_text")?;
            ws.create(p, t, scope)
        })(),
        "str_replace" if writes => (|| {
            let p = str_arg(input, "path")?;
            let old = str_arg(input, "old_str")?;
            let new = input["new_str"].as_str().unwrap_or("");
            ws.str_replace(p, old, new, scope)
        })(),
        "insert" if writes => (|| {
            let p = str_arg(input, "path")?;
            let line = input["insert_line"]
                .as_u64()
                .ok_or("missing integer argument `insert_line`")? as usize;
            let t = str_arg(input, "insert_text")?;
            ws.insert(p, line, t, scope)
        })(),
        "bash" if writes => match str_arg(input, "command") {
            Err(e) => Err(e),
            Ok(command) => {
                let secs = input["timeout"]
                    .as_u64()
                    .unwrap_or(BASH_DEFAULT_TIMEOUT)
                    .clamp(1, BASH_MAX_TIMEOUT);
                let r = ws.shell(agent, command, Duration::from_secs(secs)).await;
                let body = if r.output.trim().is_empty() {
                    "(the command ran and printed nothing)".to_string()
                } else {
                    clip(
                        &r.output,
                        BASH_LIMIT,
                        "pipe the output through grep, head or tail to see what you need",
                    )
                    .0
                };
                let status = match (r.timed_out, r.exit_code) {
                    (true, _) => format!("timed out after {secs} s"),
                    (_, Some(c)) => format!("exit code {c}"),
                    (_, None) => "killed by a signal".into(),
                };
                Ok(format!("{body}\n[{status}]")).and_then(|s| {
                    if r.timed_out || r.exit_code != Some(0) {
                        Err(s)
                    } else {
                        Ok(s)
                    }
                })
            }
        },
        "finish" if writes => {
            let summary = input["summary"].as_str().unwrap_or("").to_string();
            return ("finished".into(), false, Some(Terminal::Finish(summary)));
        }
        "request_scope_change" if set == Toolset::Executor => {
            let files: Vec<String> = input["files"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|f| f.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let reasoning = input["reasoning"].as_str().unwrap_or("").to_string();
            return (
                "scope change requested; the run ends here".into(),
                false,
                Some(Terminal::ScopeChange { files, reasoning }),
            );
        }
        other => Err(format!("there is no tool `{other}` for this agent")),
    };
    match result {
        Ok(text) => (text, false, None),
        Err(text) => (text, true, None),
    }
}

/// Check a submitted scope: lists of relative paths inside the tree.
fn validate_scope(ws: &Workspace, input: &Value) -> Result<Value, String> {
    let mut scope = json!({
        "summary": input["summary"].as_str().unwrap_or(""),
        "allowed_dirs": [],
        "allowed_files": [],
        "test_files": [],
        "rationale": input["rationale"].as_str().unwrap_or(""),
    });
    for field in ["allowed_dirs", "allowed_files", "test_files"] {
        let Some(items) = input[field].as_array() else {
            return Err(format!("`{field}` must be a list of paths"));
        };
        let mut out = Vec::new();
        for item in items {
            let Some(p) = item.as_str() else {
                return Err(format!("`{field}` must contain only strings"));
            };
            let (_, rel) = ws.resolve(p).map_err(|e| format!("in `{field}`: {e}"))?;
            out.push(Value::String(rel));
        }
        scope[field] = Value::Array(out);
    }
    if scope["allowed_dirs"]
        .as_array()
        .is_some_and(|a| a.is_empty())
        && scope["allowed_files"]
            .as_array()
            .is_some_and(|a| a.is_empty())
        && scope["test_files"].as_array().is_some_and(|a| a.is_empty())
    {
        return Err(
            "the scope is empty: name at least one directory or file the change may touch".into(),
        );
    }
    Ok(scope)
}

/// The write scope a scope.json grants the executor.
pub fn write_scope_from(scope: &Value) -> WriteScope {
    let list = |k: &str| -> Vec<String> {
        scope[k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut files = list("allowed_files");
    files.extend(list("test_files"));
    WriteScope {
        dirs: list("allowed_dirs"),
        files,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::minion::artifacts::Redactor;

    fn ws() -> (tempfile::TempDir, Workspace) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::write(root.join("src/lib.rs"), "fn a() {}\nfn b() {}\nfn a() {}\n").unwrap();
        std::fs::write(root.join("AGENTS.md"), "use tabs").unwrap();
        let out = dir.path().join("out");
        let art = Arc::new(Artifacts::create(&out, Redactor::default(), false).unwrap());
        let ws = Workspace::new(&root, art, None).unwrap();
        (dir, ws)
    }

    #[test]
    fn paths_cannot_escape() {
        let (dir, ws) = ws();
        assert!(ws.resolve("../x").unwrap_err().contains("`..`"));
        assert!(ws
            .resolve("/etc/passwd")
            .unwrap_err()
            .contains("outside the work tree"));
        std::os::unix::fs::symlink("/etc", ws.root.join("escape")).unwrap();
        assert!(ws.resolve("escape/passwd").unwrap_err().contains("symlink"));
        assert_eq!(ws.resolve("src/./lib.rs").unwrap().1, "src/lib.rs");
        assert_eq!(ws.resolve("src/new/file.rs").unwrap().1, "src/new/file.rs");
        let abs = ws.root.join("src/lib.rs");
        assert_eq!(ws.resolve(abs.to_str().unwrap()).unwrap().1, "src/lib.rs");
        drop(dir);
    }

    #[test]
    fn edits_need_a_read_a_unique_match_and_the_scope() {
        let (_d, ws) = ws();
        let all = WriteScope::everything();
        assert!(ws
            .str_replace("src/lib.rs", "fn b", "fn c", &all)
            .unwrap_err()
            .contains("has not been read"));
        let viewed = ws.view("src/lib.rs", None).unwrap();
        assert!(viewed.contains("     1\tfn a() {}"));
        assert!(
            viewed.contains("<rules path=\"AGENTS.md\">\nuse tabs"),
            "{viewed}"
        );
        // Rules are handed over once.
        assert!(!ws.view("src", None).unwrap().contains("<rules"));
        assert!(ws
            .str_replace("src/lib.rs", "fn a", "fn z", &all)
            .unwrap_err()
            .contains("occurs 2 times"));
        assert!(ws
            .str_replace("src/lib.rs", "fn q", "fn z", &all)
            .unwrap_err()
            .contains("does not occur"));
        ws.str_replace("src/lib.rs", "fn b", "fn c", &all).unwrap();
        let narrow = WriteScope {
            dirs: vec!["tests".into()],
            files: vec![],
        };
        assert!(ws
            .create("src/x.rs", "", &narrow)
            .unwrap_err()
            .contains("outside the scope"));
        ws.create("tests/t.rs", "#[test] fn t() {}\n", &narrow)
            .unwrap();
        assert!(ws
            .create(".git/config", "x", &all)
            .unwrap_err()
            .contains(".git"));
        ws.insert("tests/t.rs", 0, "// top", &narrow).unwrap();
        assert!(std::fs::read_to_string(ws.root.join("tests/t.rs"))
            .unwrap()
            .starts_with("// top\n#[test]"));
    }

    #[tokio::test]
    async fn shell_times_out_and_hides_secrets() {
        let (_d, ws) = ws();
        std::env::set_var("ANTHROPIC_API_KEY_TEST_ONLY", "x");
        let r = ws
            .shell("t", "echo hi; echo err >&2; exit 3", Duration::from_secs(5))
            .await;
        assert_eq!(r.exit_code, Some(3));
        assert_eq!(r.output, "hi\nerr\n");
        let r = ws.shell("t", "env", Duration::from_secs(5)).await;
        assert!(!r.output.contains("ANTHROPIC"), "{}", r.output);
        let r = ws
            .shell("t", "sleep 5 & sleep 5", Duration::from_millis(300))
            .await;
        assert!(r.timed_out);
        assert!(r.duration < Duration::from_secs(3));
    }
}
