//! `lackey.toml`: read, checked against the key table, flattened to `section.key` values.
//!
//! The schema is the key table in `keys.rs`, not a second copy of it: every section and
//! key is looked up there, so an unknown one is reported with its line and column and
//! the keys that section does accept.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::keys;
use crate::error::Fail;

/// One value set in the file, with where it was written.
#[derive(Debug, Clone)]
pub struct FileValue {
    pub value: String,
    pub line: usize,
}

#[derive(Debug, Clone, Default)]
pub struct ConfigFile {
    pub path: Option<PathBuf>,
    pub values: BTreeMap<&'static str, FileValue>,
}

type RawTable = BTreeMap<Spanned<String>, Spanned<toml::Value>>;

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map(|i| offset - i).unwrap_or(offset + 1);
    (line, col)
}

impl ConfigFile {
    pub fn load(path: &Path) -> anyhow::Result<ConfigFile> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::Error::new(
                Fail::new(format!("cannot read `{}`: {e}", path.display()))
                    .with_hint("run `lackey init` to write one, or pass --config PATH"),
            )
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> anyhow::Result<ConfigFile> {
        let shown = path.display();
        let raw: BTreeMap<Spanned<String>, RawTable> = toml::from_str(text).map_err(|e| {
            let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            let msg = e.message().trim().replace('\n', " ");
            anyhow::Error::new(
                Fail::new(format!(
                    "invalid TOML in `{shown}` at line {line}, column {col}: {msg}"
                ))
                .with_hint("fix the syntax; `lackey.toml.example` shows every key"),
            )
        })?;
        let mut values = BTreeMap::new();
        for (section, body) in raw {
            let (sline, scol) = line_col(text, section.span().start);
            let sections: Vec<&str> = {
                let mut s: Vec<&str> = keys::ALL
                    .iter()
                    .filter(|k| k.in_toml)
                    .map(|k| k.section())
                    .collect();
                s.dedup();
                s
            };
            if !sections.contains(&section.get_ref().as_str()) {
                return Err(Fail::new(format!(
                    "unknown section `[{}]` in `{shown}` at line {sline}, column {scol}",
                    section.get_ref()
                ))
                .with_hint(format!("known sections: {}", sections.join(", ")))
                .into());
            }
            for (key, value) in body {
                let full = format!("{}.{}", section.get_ref(), key.get_ref());
                let (line, col) = line_col(text, key.span().start);
                let Some(k) = keys::by_name(&full).filter(|k| k.in_toml) else {
                    let known: Vec<&str> = keys::ALL
                        .iter()
                        .filter(|k| k.in_toml && k.section() == section.get_ref())
                        .map(|k| k.field())
                        .collect();
                    let hint = match closest(key.get_ref(), &known) {
                        Some(c) => format!(
                            "did you mean `{c}`? [{}] accepts: {}",
                            section.get_ref(),
                            known.join(", ")
                        ),
                        None => format!("[{}] accepts: {}", section.get_ref(), known.join(", ")),
                    };
                    let what = if keys::by_name(&full).is_some() {
                        "a secret value cannot be stored in lackey.toml: key"
                    } else {
                        "unknown key"
                    };
                    return Err(Fail::new(format!(
                        "{what} `{}` in [{}] of `{shown}` at line {line}, column {col}",
                        key.get_ref(),
                        section.get_ref()
                    ))
                    .with_hint(hint)
                    .into());
                };
                let text_value = match value.into_inner() {
                    toml::Value::String(s) => s,
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    toml::Value::Array(items) => {
                        let mut out = Vec::new();
                        for item in items {
                            match item {
                                toml::Value::String(s) => out.push(s),
                                other => out.push(other.to_string()),
                            }
                        }
                        out.join(",")
                    }
                    toml::Value::Datetime(d) => d.to_string(),
                    // `[run.prices."<model>"]`: a table of tables, kept as JSON.
                    toml::Value::Table(t) if k.name == keys::RUN_PRICES.name => {
                        serde_json::to_string(&t).unwrap_or_default()
                    }
                    toml::Value::Table(_) => {
                        return Err(Fail::new(format!(
                            "`{full}` in `{shown}` at line {line} must be a value, not a table"
                        ))
                        .into())
                    }
                };
                values.insert(
                    k.name,
                    FileValue {
                        value: text_value,
                        line,
                    },
                );
            }
        }
        Ok(ConfigFile {
            path: Some(path.to_path_buf()),
            values,
        })
    }
}

/// The known word closest to a misspelt one (edit distance ≤ 2), for "did you mean".
fn closest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                let cost = if ca == *cb { 0 } else { 1 };
                cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
            }
            prev = cur;
        }
        prev[b.len()]
    }
    known
        .iter()
        .map(|k| (distance(word, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<ConfigFile> {
        ConfigFile::parse(text, Path::new("lackey.toml"))
    }

    #[test]
    fn flattens_values() {
        let f = parse(
            "[bucket]\nname = \"b-123\"\n[network]\nsubnets = [\"subnet-1\", \"subnet-2\"]\n[ecs]\ncpu = 512\n",
        )
        .unwrap();
        assert_eq!(f.values["bucket.name"].value, "b-123");
        assert_eq!(f.values["bucket.name"].line, 2);
        assert_eq!(f.values["network.subnets"].value, "subnet-1,subnet-2");
        assert_eq!(f.values["ecs.cpu"].value, "512");
    }

    #[test]
    fn unknown_key_names_key_line_and_column() {
        let err = parse("[bucket]\n\nnmae = \"x\"\n").unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown key `nmae` in [bucket] of `lackey.toml` at line 3, column 1"
        );
    }

    #[test]
    fn unknown_section_and_secret_key() {
        let err = parse("[buckets]\nname = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("unknown section `[buckets]`"), "{err}");
        assert!(err.contains("line 1"), "{err}");
        let err = parse("[anthropic]\napi_key = \"sk\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("secret value cannot be stored"), "{err}");
    }

    #[test]
    fn suggests_the_closest_key() {
        assert_eq!(closest("nmae", &["name"]), Some("name"));
        assert_eq!(closest("zzzzzz", &["name"]), None);
    }
}
