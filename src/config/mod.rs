//! Settings: every input merged once, with where each value came from.
//!
//! Precedence, highest first (docs/config.md): command-line flag > environment variable >
//! `.env` > `lackey.toml` > value discovered from AWS > built-in default. Environment
//! variables are read here and nowhere else; the rest of lackey asks [`Settings`].
//! The exceptions are variables other tools define and read themselves, honoured as
//! those tools do: the AWS SDK's (`AWS_*`), Docker's `DOCKER_HOST` (bollard),
//! `NO_COLOR`, `LACKEY_LOG` (log filter, read before settings exist), the XDG state
//! directory of the stack's journal, and the minion's input contract (`minion` module),
//! which is its own configuration.
//! Values are validated as they are resolved, so a bad name fails before any AWS call.

pub mod file;
pub mod keys;
pub mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use file::ConfigFile;
pub use keys::Key;

use crate::error::Fail;

/// Where a value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Source {
    #[serde(rename = "flag")]
    Flag,
    #[serde(rename = "env")]
    Env,
    #[serde(rename = ".env")]
    DotEnv,
    #[serde(rename = "toml")]
    Toml,
    #[serde(rename = "discovered")]
    Discovered,
    #[serde(rename = "default")]
    Default,
}

impl Source {
    pub fn label(self) -> &'static str {
        match self {
            Source::Flag => "flag",
            Source::Env => "env",
            Source::DotEnv => ".env",
            Source::Toml => "toml",
            Source::Discovered => "discovered",
            Source::Default => "default",
        }
    }
}

/// A resolved value and its provenance.
#[derive(Clone, Debug, Serialize)]
pub struct Resolved {
    pub value: String,
    pub source: Source,
    /// The exact place: `--region`, `AWS_REGION`, `lackey.toml:4`, `STS`, …
    pub origin: String,
}

/// The process environment plus the `.env` file, each variable tagged with which one set it.
#[derive(Clone, Debug, Default)]
pub struct EnvVars {
    vars: BTreeMap<String, (String, Source)>,
    pub dotenv_path: Option<PathBuf>,
}

impl EnvVars {
    /// Capture the process environment and the `.env` file. `explicit` means the user
    /// named the file, so a missing one is an error; the default `./.env` is optional.
    pub fn load(dotenv: &Path, explicit: bool) -> anyhow::Result<EnvVars> {
        let process: Vec<(String, String)> = std::env::vars().collect();
        let mut dot = Vec::new();
        let mut dotenv_path = None;
        if dotenv.is_dir() {
            return Err(Fail::new(format!(
                "env file `{}` is a directory, not a file",
                dotenv.display()
            ))
            .with_hint(if explicit {
                "pass --env-file a file of NAME=value lines"
            } else {
                "lackey reads NAME=value lines from a file `.env` in the working directory: remove or rename the directory, or pass --env-file PATH"
            })
            .into());
        }
        if dotenv.exists() {
            dot = read_dotenv(dotenv)?;
            dotenv_path = Some(dotenv.to_path_buf());
        } else if explicit {
            return Err(
                Fail::new(format!("env file `{}` does not exist", dotenv.display()))
                    .with_hint("check the --env-file path")
                    .into(),
            );
        }
        let mut env = EnvVars::from_pairs(process, dot);
        env.dotenv_path = dotenv_path;
        Ok(env)
    }

    /// Build from explicit pairs (process variables win over `.env` ones, like dotenvy).
    pub fn from_pairs(
        process: impl IntoIterator<Item = (String, String)>,
        dotenv: impl IntoIterator<Item = (String, String)>,
    ) -> EnvVars {
        let mut vars = BTreeMap::new();
        for (k, v) in dotenv {
            vars.insert(k, (v, Source::DotEnv));
        }
        for (k, v) in process {
            vars.insert(k, (v, Source::Env));
        }
        EnvVars {
            vars,
            dotenv_path: None,
        }
    }

    /// A variable's value, treating an empty value as unset.
    pub fn get(&self, name: &str) -> Option<(&str, Source)> {
        self.vars
            .get(name)
            .filter(|(v, _)| !v.trim().is_empty())
            .map(|(v, s)| (v.as_str(), *s))
    }

    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name).map(|(v, _)| v)
    }

    /// Variables that only `.env` sets; exported into the process so the AWS SDK's own
    /// credential chain sees `AWS_ACCESS_KEY_ID` and friends from `.env` too.
    pub fn dotenv_only(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars
            .iter()
            .filter(|(_, (_, s))| *s == Source::DotEnv)
            .map(|(k, (v, _))| (k.as_str(), v.as_str()))
    }
}

/// Every `NAME=value` pair of an env file. A line that does not parse is named by its
/// line and column in the file.
fn read_dotenv(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Fail::new(format!("cannot read env file `{shown}`: {e}")))?;
    let mut pairs = Vec::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok(pair) => pairs.push(pair),
            Err(dotenvy::Error::LineParse(line, index)) => {
                let (number, column) = dotenv_position(&text, &line, index);
                return Err(Fail::new(format!(
                    "invalid line {number} in env file `{shown}` (column {column}): `{}`",
                    clip(text.lines().nth(number - 1).unwrap_or(&line))
                ))
                .with_hint("each line should read NAME=value; quote a value that has spaces or `#`")
                .into());
            }
            Err(e) => {
                return Err(Fail::new(format!("cannot read env file `{shown}`: {e}")).into());
            }
        }
    }
    Ok(pairs)
}

/// Line and column in the file of byte `index` of `logical`, a line as the env parser
/// saw it (several physical lines when a quoted value spans them).
fn dotenv_position(text: &str, logical: &str, index: usize) -> (usize, usize) {
    let start = text.find(logical).unwrap_or(0);
    let mut at = (start + index).min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map(|i| at - i).unwrap_or(at + 1);
    (line, column)
}

/// The resolved settings of one invocation.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    values: BTreeMap<&'static str, Resolved>,
    pub config_path: Option<PathBuf>,
    pub env_file: Option<PathBuf>,
}

impl Settings {
    /// Merge flags, environment, `.env` and `lackey.toml`, then fill defaults and validate.
    pub fn resolve(
        flags: &[(&'static Key, String)],
        env: &EnvVars,
        file: &ConfigFile,
    ) -> anyhow::Result<Settings> {
        let mut values = BTreeMap::new();
        for key in keys::ALL {
            let from_flag = flags
                .iter()
                .find(|(k, v)| std::ptr::eq(*k, *key) && !v.is_empty())
                .map(|(_, v)| Resolved {
                    value: v.clone(),
                    source: Source::Flag,
                    origin: key.flag.unwrap_or("flag").to_string(),
                });
            // The process environment beats .env whichever alias sets the value, so
            // look through every name for a process variable before any .env one.
            let from_env = [Source::Env, Source::DotEnv].into_iter().find_map(|want| {
                key.env.iter().find_map(|name| {
                    env.get(name)
                        .filter(|(_, s)| *s == want)
                        .map(|(v, source)| Resolved {
                            value: v.to_string(),
                            source,
                            origin: match source {
                                Source::DotEnv => format!(
                                    "{name} in {}",
                                    env.dotenv_path
                                        .as_deref()
                                        .map(|p| p.display().to_string())
                                        .unwrap_or_else(|| ".env".into())
                                ),
                                _ => name.to_string(),
                            },
                        })
                })
            });
            let from_file = || {
                file.values.get(key.name).map(|fv| Resolved {
                    value: fv.value.clone(),
                    source: Source::Toml,
                    origin: format!(
                        "{}:{}",
                        file.path
                            .as_deref()
                            .map(|p| p.display().to_string())
                            .unwrap_or_else(|| "lackey.toml".into()),
                        fv.line
                    ),
                })
            };
            let chosen = from_flag.or(from_env);
            // A malformed lackey.toml is an error whatever overrides the value.
            if let (Some(_), Some(check), Some(in_file)) = (&chosen, key.validate, from_file()) {
                if let Err(rule) = check(&in_file.value) {
                    return Err(invalid(key, &in_file, &rule));
                }
            }
            if let Some(r) = chosen.or_else(from_file) {
                values.insert(key.name, r);
            }
        }
        let mut settings = Settings {
            values,
            config_path: file.path.clone(),
            env_file: env.dotenv_path.clone(),
        };
        settings.fill_defaults();
        settings.validate()?;
        Ok(settings)
    }

    /// Fill built-in defaults, including templates whose inputs are now known.
    fn fill_defaults(&mut self) {
        for key in keys::ALL {
            let current = self.values.get(key.name);
            let replaceable = current.map(|r| r.source == Source::Default).unwrap_or(true);
            if !replaceable {
                continue;
            }
            match key.default {
                keys::DefaultValue::None => {}
                keys::DefaultValue::Value(v) => {
                    self.values.insert(
                        key.name,
                        Resolved {
                            value: v.to_string(),
                            source: Source::Default,
                            origin: "default".into(),
                        },
                    );
                }
                keys::DefaultValue::Template(t) => {
                    if let Some(v) = self.expand(t) {
                        self.values.insert(
                            key.name,
                            Resolved {
                                value: v,
                                source: Source::Default,
                                origin: t.to_string(),
                            },
                        );
                    }
                }
            }
        }
    }

    fn expand(&self, template: &str) -> Option<String> {
        let mut out = String::new();
        let mut rest = template;
        while let Some(start) = rest.find('{') {
            let end = rest[start..].find('}')? + start;
            out.push_str(&rest[..start]);
            out.push_str(self.get_name(&rest[start + 1..end])?);
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Some(out)
    }

    fn validate(&self) -> anyhow::Result<()> {
        for key in keys::ALL {
            let (Some(check), Some(r)) = (key.validate, self.values.get(key.name)) else {
                continue;
            };
            if let Err(rule) = check(&r.value) {
                return Err(invalid(key, r, &rule));
            }
        }
        let cpu = self.get(&keys::ECS_CPU).and_then(|v| v.parse::<u32>().ok());
        let memory = self
            .get(&keys::ECS_MEMORY)
            .and_then(|v| v.parse::<u32>().ok());
        if let (Some(cpu), Some(memory)) = (cpu, memory) {
            if let Err(rule) = validate::fargate_size(cpu, memory) {
                let r = &self.values["ecs.memory"];
                return Err(invalid(&keys::ECS_MEMORY, r, &rule));
            }
        }
        Ok(())
    }

    /// Record a value discovered from AWS. It only fills a gap: anything the user set wins.
    pub fn set_discovered(&mut self, key: &'static Key, value: impl Into<String>, origin: &str) {
        let keep = self
            .values
            .get(key.name)
            .map(|r| r.source < Source::Discovered)
            .unwrap_or(false);
        if keep {
            return;
        }
        self.values.insert(
            key.name,
            Resolved {
                value: value.into(),
                source: Source::Discovered,
                origin: origin.to_string(),
            },
        );
        self.fill_defaults();
    }

    /// Override a value from inside lackey (the minion's own settings, tests).
    pub fn set(&mut self, key: &'static Key, value: impl Into<String>, source: Source) {
        self.values.insert(
            key.name,
            Resolved {
                value: value.into(),
                source,
                origin: source.label().to_string(),
            },
        );
        self.fill_defaults();
    }

    pub fn get(&self, key: &Key) -> Option<&str> {
        self.get_name(key.name)
    }

    fn get_name(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(|r| r.value.as_str())
    }

    pub fn resolved(&self, key: &Key) -> Option<&Resolved> {
        self.values.get(key.name)
    }

    /// A value that must be set: the error names the variable and the toml key
    /// (`missing LACKEY_ECR_REGISTRY (or [ecr] registry in lackey.toml)`).
    pub fn require(&self, key: &Key) -> anyhow::Result<&str> {
        self.get(key).ok_or_else(|| missing(key))
    }

    pub fn flag(&self, key: &Key) -> bool {
        self.get(key)
            .and_then(validate::parse_bool)
            .unwrap_or(false)
    }

    pub fn number<T: std::str::FromStr>(&self, key: &Key) -> anyhow::Result<T> {
        let raw = self.require(key)?;
        raw.trim().parse::<T>().map_err(|_| {
            let r = &self.values[key.name];
            invalid(key, r, "expected a number")
        })
    }

    /// Every key with its resolved value (secrets masked) for `lackey config`.
    pub fn entries(&self) -> Vec<(&'static Key, Option<Resolved>)> {
        keys::ALL
            .iter()
            .map(|k| {
                let r = self.values.get(k.name).cloned().map(|mut r| {
                    if k.secret {
                        r.value = mask(&r.value);
                    }
                    r
                });
                (*k, r)
            })
            .collect()
    }
}

/// `********` plus the length, so a user can tell a set key from an empty one without
/// seeing any of it.
pub fn mask(secret: &str) -> String {
    format!("******** ({} chars)", secret.chars().count())
}

/// A value as it is shown in a message: whole when short, otherwise its start and its
/// size, so a 10 MB value does not flood the terminal.
pub fn clip(value: &str) -> String {
    const SHOWN: usize = 48;
    if value.chars().count() <= SHOWN + 16 && !value.contains('\n') {
        return value.to_string();
    }
    let head: String = value
        .chars()
        .take_while(|c| *c != '\n')
        .take(SHOWN)
        .collect();
    format!("{head}… ({} bytes in all)", value.len())
}

pub fn missing(key: &Key) -> anyhow::Error {
    let hint = if key.name == keys::AWS_ACCOUNT_ID.name
        || key
            .default
            .to_string_template()
            .is_some_and(|t| t.contains("account_id"))
    {
        "run `lackey init` to write the account id into lackey.toml, or set the value".to_string()
    } else {
        format!("set {} ({})", key.how_to_set(), key.doc)
    };
    Fail::new(format!("missing {}", key.how_to_set()))
        .with_hint(hint)
        .into()
}

fn invalid(key: &Key, r: &Resolved, rule: &str) -> anyhow::Error {
    // A default derived from the stack's name breaks a rule only because of that name:
    // say so, and name the key that takes an explicit value instead.
    let derived = r.source == Source::Default && r.origin.contains("{stack.name}");
    let from = if derived {
        "the default for this stack name".to_string()
    } else {
        r.origin.clone()
    };
    let hint = if derived {
        format!(
            "set {} explicitly, or choose a [stack] name that gives valid names",
            key.how_to_set()
        )
    } else {
        format!("set a valid value with {}", key.how_to_set())
    };
    Fail::new(format!(
        "invalid {} `{}` (from {from}): {rule}",
        key.name,
        if key.secret {
            mask(&r.value)
        } else {
            clip(&r.value)
        },
    ))
    .with_hint(hint)
    .into()
}

impl keys::DefaultValue {
    fn to_string_template(self) -> Option<&'static str> {
        match self {
            keys::DefaultValue::Template(t) => Some(t),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(process: &[(&str, &str)], dot: &[(&str, &str)]) -> EnvVars {
        EnvVars::from_pairs(
            process.iter().map(|(k, v)| (k.to_string(), v.to_string())),
            dot.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    fn toml(text: &str) -> ConfigFile {
        ConfigFile::parse(text, Path::new("lackey.toml")).unwrap()
    }

    #[test]
    fn precedence_flag_env_dotenv_toml_default() {
        let file = toml("[aws]\nprofile = \"from-toml\"\n");
        let flag = [(&keys::AWS_PROFILE, "from-flag".to_string())];
        let both = env(
            &[("AWS_PROFILE", "from-env")],
            &[("AWS_PROFILE", "from-dotenv")],
        );
        let dot = env(&[], &[("AWS_PROFILE", "from-dotenv")]);
        let none = env(&[], &[]);

        let s = Settings::resolve(&flag, &both, &file).unwrap();
        assert_eq!(s.resolved(&keys::AWS_PROFILE).unwrap().source, Source::Flag);
        let s = Settings::resolve(&[], &both, &file).unwrap();
        assert_eq!(s.get(&keys::AWS_PROFILE), Some("from-env"));
        let s = Settings::resolve(&[], &dot, &file).unwrap();
        assert_eq!(s.get(&keys::AWS_PROFILE), Some("from-dotenv"));
        assert_eq!(
            s.resolved(&keys::AWS_PROFILE).unwrap().source,
            Source::DotEnv
        );
        let s = Settings::resolve(&[], &none, &file).unwrap();
        assert_eq!(s.get(&keys::AWS_PROFILE), Some("from-toml"));
        let s = Settings::resolve(&[], &none, &ConfigFile::default()).unwrap();
        assert_eq!(s.get(&keys::AWS_PROFILE), Some("default"));
        assert_eq!(
            s.resolved(&keys::AWS_PROFILE).unwrap().source,
            Source::Default
        );
    }

    #[test]
    fn process_env_beats_dotenv_across_alias_names() {
        // AWS_DEFAULT_REGION in the real environment beats AWS_REGION in .env.
        let e = env(
            &[("AWS_DEFAULT_REGION", "eu-west-1")],
            &[("AWS_REGION", "us-east-1")],
        );
        let s = Settings::resolve(&[], &e, &ConfigFile::default()).unwrap();
        assert_eq!(s.get(&keys::AWS_REGION), Some("eu-west-1"));
    }

    #[test]
    fn templates_fill_once_inputs_are_known() {
        let e = env(&[("AWS_REGION", "us-east-1")], &[]);
        let mut s = Settings::resolve(&[], &e, &ConfigFile::default()).unwrap();
        assert_eq!(s.get(&keys::BUCKET_NAME), None);
        let err = s.require(&keys::ECR_REGISTRY).unwrap_err().to_string();
        assert_eq!(
            err,
            "missing LACKEY_ECR_REGISTRY (or [ecr] registry in lackey.toml)"
        );
        s.set_discovered(&keys::AWS_ACCOUNT_ID, "123456789012", "STS");
        assert_eq!(
            s.get(&keys::BUCKET_NAME),
            Some("lackey-artifacts-123456789012")
        );
        assert_eq!(
            s.get(&keys::ECR_REGISTRY),
            Some("123456789012.dkr.ecr.us-east-1.amazonaws.com")
        );
    }

    #[test]
    fn default_names_derive_from_the_stack_name() {
        let names = |stack: Option<&str>| -> Vec<String> {
            let e = match stack {
                Some(s) => env(&[("LACKEY_STACK", s)], &[]),
                None => env(&[], &[]),
            };
            let mut s = Settings::resolve(&[], &e, &ConfigFile::default()).unwrap();
            s.set_discovered(&keys::AWS_ACCOUNT_ID, "123456789012", "STS");
            [
                &keys::BUCKET_NAME,
                &keys::ECR_REPOSITORY,
                &keys::ECS_CLUSTER,
                &keys::ECS_TASK_FAMILY,
                &keys::LOGS_GROUP,
                &keys::IAM_EXECUTION_ROLE,
                &keys::IAM_TASK_ROLE,
                &keys::NETWORK_SECURITY_GROUP,
                &keys::SECRETS_GITHUB_APP_KEY,
                &keys::SECRETS_ANTHROPIC_API_KEY,
            ]
            .iter()
            .map(|k| s.get(k).unwrap().to_string())
            .collect()
        };
        // The stack `lackey` keeps the documented default names exactly.
        let guide = [
            "lackey-artifacts-123456789012",
            "lackey-minion",
            "lackey",
            "lackey-minion",
            "/ecs/lackey-minion",
            "lackey-ecs-execution",
            "lackey-ecs-task",
            "lackey-ecs-tasks",
            "lackey/github-app-key",
            "lackey/anthropic-api-key",
        ];
        assert_eq!(names(None), guide);
        assert_eq!(names(Some("lackey")), guide);
        assert_eq!(
            names(Some("stackb")),
            [
                "stackb-artifacts-123456789012",
                "stackb-minion",
                "stackb",
                "stackb-minion",
                "/ecs/stackb-minion",
                "stackb-ecs-execution",
                "stackb-ecs-task",
                "stackb-ecs-tasks",
                "stackb/github-app-key",
                "stackb/anthropic-api-key",
            ]
        );
    }

    #[test]
    fn a_derived_name_that_breaks_a_rule_names_the_key_to_set() {
        let e = env(&[("LACKEY_STACK", "Team_B")], &[]);
        let err = Settings::resolve(&[], &e, &ConfigFile::default()).unwrap_err();
        let lines = crate::error::render(&err);
        assert_eq!(
            lines,
            [
                ("error", "invalid ecr.repository `Team_B-minion` (from the default for this stack name): ECR repository names may contain only lowercase letters, digits and `._-/` (found `T`)".to_string()),
                ("hint", "set LACKEY_ECR_REPOSITORY (or [ecr] repository in lackey.toml) explicitly, or choose a [stack] name that gives valid names".to_string()),
            ]
        );
        // With that name set explicitly, the stack name is fine for every other resource.
        let e = env(
            &[
                ("LACKEY_STACK", "Team_B"),
                ("LACKEY_ECR_REPOSITORY", "team-b"),
            ],
            &[],
        );
        let s = Settings::resolve(&[], &e, &ConfigFile::default()).unwrap();
        assert_eq!(s.get(&keys::ECS_CLUSTER), Some("Team_B"));
    }

    #[test]
    fn discovered_never_overrides_the_user() {
        let e = env(&[("LACKEY_ECS_SG", "sg-0abc")], &[]);
        let mut s = Settings::resolve(&[], &e, &ConfigFile::default()).unwrap();
        s.set_discovered(&keys::NETWORK_SECURITY_GROUP_ID, "sg-0fff", "EC2");
        assert_eq!(s.get(&keys::NETWORK_SECURITY_GROUP_ID), Some("sg-0abc"));
    }

    #[test]
    fn invalid_values_name_the_rule_and_the_origin() {
        let file = toml("[bucket]\nname = \"My_Bucket\"\n");
        let err = Settings::resolve(&[], &env(&[], &[]), &file)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "invalid bucket.name `My_Bucket` (from lackey.toml:2): bucket names may contain only lowercase letters, digits, dots and hyphens (found `M`)"
        );
        let file = toml("[ecs]\ncpu = 256\nmemory = 4096\n");
        let err = Settings::resolve(&[], &env(&[], &[]), &file)
            .unwrap_err()
            .to_string();
        assert!(err.contains("Fargate memory for cpu 256"), "{err}");
    }

    #[test]
    fn a_malformed_file_fails_whatever_overrides_it() {
        let e = env(
            &[
                ("AWS_REGION", "us-east-1"),
                ("LACKEY_STACK", "good"),
                ("LACKEY_ECS_CPU", "1024"),
            ],
            &[],
        );
        for (text, want) in [
            (
                "[aws]\nregion = \"not a region\"\n",
                "invalid aws.region `not a region` (from lackey.toml:2): regions look like `us-east-1`",
            ),
            (
                "[stack]\nname = \"a b\"\n",
                "invalid stack.name `a b` (from lackey.toml:2)",
            ),
            ("[ecs]\ncpu = 333\n", "invalid ecs.cpu `333` (from lackey.toml:2)"),
        ] {
            let err = Settings::resolve(&[], &e, &toml(text))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(want), "{err}");
        }
        // A flag hides nothing either.
        let flag = [(&keys::RUN_TIMEOUT, "60".to_string())];
        let err = Settings::resolve(&flag, &env(&[], &[]), &toml("[run]\ntimeout = 0\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("invalid run.timeout `0` (from lackey.toml:2)"),
            "{err}"
        );
        // A good file under an override resolves to the override.
        let s = Settings::resolve(&[], &e, &toml("[ecs]\ncpu = 512\nmemory = 2048\n")).unwrap();
        assert_eq!(s.get(&keys::ECS_CPU), Some("1024"));
        assert_eq!(s.resolved(&keys::ECS_CPU).unwrap().source, Source::Env);
    }

    #[test]
    fn numbers_out_of_range_name_the_key_and_the_range() {
        let flag = [(&keys::RUN_TIMEOUT, "18446744073709551615".to_string())];
        let err = Settings::resolve(&flag, &env(&[], &[]), &ConfigFile::default())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "invalid run.timeout `18446744073709551615` (from --timeout): expected a whole number from 1 to 604800 seconds (604800 is 7 days)"
        );
        let err = Settings::resolve(
            &[],
            &env(&[], &[]),
            &toml("[local]\nmemory_mb = 9223372036854775807\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("invalid local.memory_mb `9223372036854775807` (from lackey.toml:2): expected a whole number from 64 to 1048576 MiB"),
            "{err}"
        );
        // cpu 333 blames cpu, not the default memory.
        let err = Settings::resolve(&[], &env(&[], &[]), &toml("[ecs]\ncpu = 333\n"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("invalid ecs.cpu `333`"), "{err}");
    }

    #[test]
    fn long_values_are_clipped_in_messages() {
        let huge = "x".repeat(10 * 1024 * 1024);
        let e = env(&[("LACKEY_STACK", huge.as_str())], &[]);
        let err = Settings::resolve(&[], &e, &ConfigFile::default())
            .unwrap_err()
            .to_string();
        assert!(err.len() < 300, "{} bytes", err.len());
        assert!(err.contains("(10485760 bytes in all)"), "{err}");
        assert_eq!(clip("short"), "short");
    }

    #[test]
    fn env_file_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".env");
        std::fs::write(&p, "# comment\nA=1\n\nB=2\nnot a pair\nC=3\n").unwrap();
        let err = EnvVars::load(&p, true).unwrap_err().to_string();
        assert!(err.starts_with("invalid line 5 in env file"), "{err}");
        assert!(err.contains("(column 5): `not a pair`"), "{err}");
        let err = EnvVars::load(dir.path(), true).unwrap_err().to_string();
        assert!(err.ends_with("is a directory, not a file"), "{err}");
    }

    #[test]
    fn secrets_are_masked() {
        let e = env(&[("ANTHROPIC_API_KEY", "sk-ant-canary")], &[]);
        let s = Settings::resolve(&[], &e, &ConfigFile::default()).unwrap();
        let (_, r) = s
            .entries()
            .into_iter()
            .find(|(k, _)| k.name == "anthropic.api_key")
            .unwrap();
        let shown = r.unwrap().value;
        assert!(!shown.contains("canary"), "{shown}");
    }
}
