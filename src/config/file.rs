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

// Values are not `Spanned`: toml cannot deserialize a spanned value that is a table with
// quoted keys (`[run.prices."claude-…"]`), and a value's line is its key's line anyway.
type RawTable = BTreeMap<Spanned<String>, toml::Value>;

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
                let text_value = typed_value(k, value).map_err(|(want, found)| {
                    Fail::new(format!(
                        "`{full}` in `{shown}` at line {line} must be {want}, not {found}"
                    ))
                    .with_hint(format!("for example: {}", example(k)))
                })?;
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

/// A TOML value as the text the settings layer validates, if its type fits the key:
/// otherwise what was wanted and what was found.
fn typed_value(
    key: &keys::Key,
    value: toml::Value,
) -> Result<String, (&'static str, &'static str)> {
    use keys::Kind;
    use toml::Value as V;
    let found = match &value {
        V::String(_) => "a string",
        V::Integer(_) => "a whole number",
        V::Float(_) => "a decimal number",
        V::Boolean(_) => "true or false",
        V::Array(_) => "an array",
        V::Datetime(_) => "a date",
        V::Table(_) => "a table",
    };
    match (key.kind(), value) {
        // `[run.prices."<model>"]`: a table of tables, kept as JSON.
        (_, V::Table(t)) if key.name == keys::RUN_PRICES.name => {
            serde_json::to_string(&t).map_err(|_| ("a table of prices", "a table"))
        }
        (Kind::Text | Kind::Digits | Kind::List, V::String(s)) => Ok(s),
        (Kind::Digits | Kind::Integer | Kind::Number, V::Integer(i)) => Ok(i.to_string()),
        (Kind::Number, V::Float(f)) => Ok(f.to_string()),
        (Kind::Bool, V::Boolean(b)) => Ok(b.to_string()),
        (Kind::List, V::Array(items)) => {
            let mut out = Vec::new();
            for item in items {
                match item {
                    V::String(s) => out.push(s),
                    _ => return Err(("an array of strings", "an array holding other values")),
                }
            }
            Ok(out.join(","))
        }
        (kind, _) => Err((
            match kind {
                Kind::Text => "a string",
                Kind::Digits => "a string of digits",
                Kind::Integer => "a whole number",
                Kind::Number => "a number",
                Kind::Bool => "true or false",
                Kind::List => "an array of strings",
            },
            found,
        )),
    }
}

/// A line of `lackey.toml` that sets `key` with the right type.
fn example(key: &keys::Key) -> String {
    use keys::Kind;
    let default = match key.default {
        keys::DefaultValue::Value(v) => Some(v),
        _ => None,
    };
    let value = match key.kind() {
        Kind::Text => format!("\"{}\"", default.unwrap_or("...")),
        Kind::Digits => "\"123456789012\"".to_string(),
        Kind::Integer | Kind::Number => default.unwrap_or("1").to_string(),
        Kind::Bool => default.unwrap_or("true").to_string(),
        Kind::List => "[\"subnet-0a1b\", \"subnet-2c3d\"]".to_string(),
    };
    format!("`{} = {value}`", key.field())
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
    fn price_tables_are_kept_as_json() {
        let f = parse(
            "[run.prices.\"claude-x-1.5\"]\ninput = 2\noutput = 10\ncache_write = 2.5\ncache_read = 0.2\n",
        )
        .unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&f.values[keys::RUN_PRICES.name].value).unwrap();
        assert_eq!(v["claude-x-1.5"]["output"], 10);
        assert_eq!(v["claude-x-1.5"]["cache_read"], 0.2);
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
    fn values_of_the_wrong_type_are_refused_with_an_example() {
        let err = |text: &str| parse(text).unwrap_err().to_string();
        assert_eq!(
            err("[aws]\nregion = 5\n"),
            "`aws.region` in `lackey.toml` at line 2 must be a string, not a whole number"
        );
        assert_eq!(
            err("[stack]\nname = [\"a\", \"b\"]\n"),
            "`stack.name` in `lackey.toml` at line 2 must be a string, not an array"
        );
        assert_eq!(
            err("[ecs]\ncpu = \"lots\"\n"),
            "`ecs.cpu` in `lackey.toml` at line 2 must be a whole number, not a string"
        );
        assert!(err("[run]\nstubs = \"yes\"\n").contains("must be true or false"));
        assert!(err("[network]\nsubnets = [1, 2]\n").contains("an array of strings"));
        assert!(err("[local]\nmemory_mb = 1.5\n").contains("whole number, not a decimal"));
        let e = parse("[ecs]\ncpu = \"lots\"\n").unwrap_err();
        let fail = e.downcast_ref::<Fail>().unwrap();
        assert_eq!(fail.hint.as_deref(), Some("for example: `cpu = 1024`"));
        // Right types pass, whole numbers where decimals are allowed too.
        let f = parse("[local]\ncpus = 1.5\nmemory_mb = 2048\n[aws]\naccount_id = 123456789012\n")
            .unwrap();
        assert_eq!(f.values["local.cpus"].value, "1.5");
        assert_eq!(f.values["aws.account_id"].value, "123456789012");
    }

    #[test]
    fn every_key_kind_fits_its_default() {
        use keys::Kind;
        for key in keys::ALL {
            let keys::DefaultValue::Value(v) = key.default else {
                continue;
            };
            let kind = key.kind();
            if v.parse::<u64>().is_ok() {
                assert!(
                    matches!(kind, Kind::Integer | Kind::Number),
                    "{}: a numeric default but kind {kind:?}",
                    key.name
                );
            } else if v == "true" || v == "false" {
                assert_eq!(kind, Kind::Bool, "{}", key.name);
            } else {
                assert_eq!(kind, Kind::Text, "{}", key.name);
            }
        }
    }

    #[test]
    fn suggests_the_closest_key() {
        assert_eq!(closest("nmae", &["name"]), Some("name"));
        assert_eq!(closest("zzzzzz", &["name"]), None);
    }
}
