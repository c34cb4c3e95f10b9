//! A unified diff (`git diff` output) split into files, hunks and numbered lines.

/// What a line of a hunk is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Context,
    Added,
    Removed,
    /// `@@ -a,b +c,d @@ …`
    Hunk,
    /// `\ No newline at end of file`, `Binary files … differ`, mode changes.
    Note,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line<'a> {
    pub kind: Kind,
    pub old: Option<u64>,
    pub new: Option<u64>,
    /// The text without its `+`/`-`/` ` marker.
    pub text: &'a str,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct File<'a> {
    pub path: String,
    /// The old path when the file was renamed.
    pub renamed_from: Option<String>,
    pub added: usize,
    pub removed: usize,
    pub lines: Vec<Line<'a>>,
}

fn strip_prefix_path(p: &str) -> String {
    let p = p.trim_end_matches('\t');
    p.strip_prefix("a/")
        .or_else(|| p.strip_prefix("b/"))
        .unwrap_or(p)
        .to_string()
}

/// `@@ -12,7 +12,8 @@` → (12, 12).
fn hunk_starts(line: &str) -> (u64, u64) {
    let mut parts = line.split_whitespace().skip(1);
    let num = |s: Option<&str>| -> u64 {
        s.and_then(|s| s.get(1..)?.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let old = num(parts.next());
    let new = num(parts.next());
    (old, new)
}

pub fn parse(diff: &str) -> Vec<File<'_>> {
    let mut files: Vec<File> = Vec::new();
    let (mut old, mut new) = (0u64, 0u64);
    let mut in_hunk = false;
    for line in diff.lines() {
        if let Some(rest) = line.strip_prefix("diff --git ") {
            // `a/x b/x`: the path after ` b/` (paths with spaces keep them).
            let path = rest
                .rsplit_once(" b/")
                .map(|(_, b)| b.to_string())
                .unwrap_or_else(|| rest.to_string());
            files.push(File {
                path,
                ..File::default()
            });
            in_hunk = false;
            continue;
        }
        let Some(file) = files.last_mut() else {
            continue;
        };
        if line.starts_with("@@") {
            (old, new) = hunk_starts(line);
            in_hunk = true;
            file.lines.push(Line {
                kind: Kind::Hunk,
                old: None,
                new: None,
                text: line,
            });
            continue;
        }
        if !in_hunk {
            if let Some(p) = line.strip_prefix("+++ ") {
                if p != "/dev/null" {
                    file.path = strip_prefix_path(p);
                }
            } else if let Some(p) = line.strip_prefix("rename from ") {
                file.renamed_from = Some(p.to_string());
            } else if line.starts_with("Binary files")
                || line.starts_with("new file mode")
                || line.starts_with("deleted file mode")
            {
                file.lines.push(Line {
                    kind: Kind::Note,
                    old: None,
                    new: None,
                    text: line,
                });
            }
            continue;
        }
        let (kind, text) = match line.as_bytes().first() {
            Some(b'+') => (Kind::Added, &line[1..]),
            Some(b'-') => (Kind::Removed, &line[1..]),
            Some(b' ') => (Kind::Context, &line[1..]),
            Some(b'\\') => (Kind::Note, line),
            None => (Kind::Context, ""),
            _ => (Kind::Note, line),
        };
        let (o, n) = match kind {
            Kind::Added => {
                new += 1;
                file.added += 1;
                (None, Some(new - 1))
            }
            Kind::Removed => {
                old += 1;
                file.removed += 1;
                (Some(old - 1), None)
            }
            Kind::Context => {
                old += 1;
                new += 1;
                (Some(old - 1), Some(new - 1))
            }
            _ => (None, None),
        };
        file.lines.push(Line {
            kind,
            old: o,
            new: n,
            text,
        });
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIFF: &str = "diff --git a/hello.sh b/hello.sh
index 1..2 100755
--- a/hello.sh
+++ b/hello.sh
@@ -1,2 +1,3 @@
 #!/bin/sh
-echo \"hello\"
+echo \"hello, world\"
+echo done
diff --git a/new.txt b/new.txt
new file mode 100644
--- /dev/null
+++ b/new.txt
@@ -0,0 +1 @@
+x
\\ No newline at end of file
";

    #[test]
    fn files_hunks_and_line_numbers() {
        let f = parse(DIFF);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].path, "hello.sh");
        assert_eq!((f[0].added, f[0].removed), (2, 1));
        let lines: Vec<(Kind, Option<u64>, Option<u64>, &str)> = f[0]
            .lines
            .iter()
            .map(|l| (l.kind, l.old, l.new, l.text))
            .collect();
        assert_eq!(
            lines[1..],
            [
                (Kind::Context, Some(1), Some(1), "#!/bin/sh"),
                (Kind::Removed, Some(2), None, "echo \"hello\""),
                (Kind::Added, None, Some(2), "echo \"hello, world\""),
                (Kind::Added, None, Some(3), "echo done"),
            ]
        );
        assert_eq!(f[1].path, "new.txt");
        assert_eq!(f[1].lines[0].kind, Kind::Note);
        assert_eq!(f[1].lines[2].new, Some(1));
        assert_eq!(f[1].lines.last().unwrap().kind, Kind::Note);
    }

    #[test]
    fn empty_and_garbage() {
        assert!(parse("").is_empty());
        assert!(parse("not a diff\n+++ x\n").is_empty());
    }
}
