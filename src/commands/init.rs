//! `lackey init`: write `lackey.toml` from the embedded example, with the account id
//! from STS and the region filled in.

use std::path::PathBuf;

use serde::Serialize;

use super::Ctx;
use crate::cli::InitArgs;
use crate::config::{keys, ConfigFile};
use crate::error::Fail;
use crate::output::Reporter;

/// The documented example, embedded so `init` works from any directory.
pub const EXAMPLE: &str = include_str!("../../lackey.toml.example");

/// The keys whose defaults derive from the stack's name, as `(section, field)`.
const NAME_KEYS: &[&keys::Key] = &[
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
];

/// The example with `[aws] region` and `account_id` filled in. Without an account id
/// (STS could not be asked) the line stays commented out, saying so. With a stack name
/// that is not `lackey`, `[stack] name` and every resource name derived from it are
/// written out, so the file alone says which names the stack owns.
pub fn render(account_id: Option<&str>, region: &str, stack: Option<&str>) -> String {
    let stack = stack.filter(|s| *s != "lackey");
    let mut out = String::with_capacity(EXAMPLE.len());
    let mut section = "";
    for line in EXAMPLE.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            section = trimmed.trim_start_matches('[').trim_end_matches(']');
        }
        let field = trimmed
            .trim_start_matches("# ")
            .split(" = ")
            .next()
            .unwrap_or_default();
        let replaced = match (section, field) {
            ("aws", "region") if !trimmed.starts_with('#') => Some(replace_value(line, region)),
            ("aws", "account_id") if !trimmed.starts_with('#') => Some(match account_id {
                Some(a) => replace_value(line, a),
                None => "# account_id = \"<account id>\"       # STS could not be asked: set it, or lackey asks STS each time".to_string(),
            }),
            ("stack", "name") => stack.map(|s| replace_value(uncomment(line), s)),
            _ => stack.and_then(|s| {
                let key = NAME_KEYS
                    .iter()
                    .find(|k| k.section() == section && k.field() == field)?;
                let keys::DefaultValue::Template(t) = key.default else {
                    return None;
                };
                let value = t.replace("{stack.name}", s);
                match account_id {
                    Some(a) => Some(replace_value(
                        uncomment(line),
                        &value.replace("{aws.account_id}", a),
                    )),
                    // Leave the bucket's name to be derived once the account is known.
                    None if value.contains('{') => None,
                    None => Some(replace_value(uncomment(line), &value)),
                }
            }),
        };
        out.push_str(replaced.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// `# key = "v"   # note` as `key = "v"   # note`.
fn uncomment(line: &str) -> &str {
    line.strip_prefix("# ").unwrap_or(line)
}

/// Swap the quoted value of `key = "value"   # comment`, keeping the comment's column.
fn replace_value(line: &str, value: &str) -> String {
    let head = line.split('"').next().unwrap_or(line);
    let assignment = format!("{head}\"{value}\"");
    match line.find('#') {
        Some(col) => {
            let width = col.max(assignment.len() + 1);
            format!("{assignment:<width$}{}", &line[col..])
        }
        None => assignment,
    }
}

#[derive(Serialize)]
struct Written {
    path: String,
    account_id: Option<String>,
    region: String,
    stack: String,
}

pub async fn run(ctx: &Ctx, args: InitArgs) -> anyhow::Result<u8> {
    let path = ctx
        .global
        .config
        .clone()
        .or_else(|| ctx.env.value("LACKEY_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("lackey.toml"));
    if path.exists() && !args.force {
        return Err(Fail::new(format!("`{}` already exists", path.display()))
            .with_hint("pass --force to overwrite it")
            .into());
    }
    // Settings from everything but the file being replaced.
    let mut flags = ctx.global_flags();
    if let Some(stack) = &args.stack {
        flags.push((&keys::STACK_NAME, stack.clone()));
    }
    let settings = crate::config::Settings::resolve(&flags, &ctx.env, &ConfigFile::default())?;
    let stack = settings
        .get(&keys::STACK_NAME)
        .unwrap_or("lackey")
        .to_string();
    let region = settings.get(&keys::AWS_REGION).map(str::to_string);
    let aws = ctx.aws(&settings).await?;
    let region = region.unwrap_or_else(|| aws.region().to_string());
    // The file is useful before credentials exist: without an account id, `plan` and
    // `up` ask STS each time, which is what the file's account id only saves.
    let account = match aws.account_id().await {
        Ok(a) => Some(a),
        Err(e) => {
            let reason = crate::error::render(&e)
                .into_iter()
                .filter(|(l, _)| *l != "hint")
                .map(|(_, t)| t)
                .collect::<Vec<_>>()
                .join(": ");
            ctx.printer.warn(&format!(
                "the account id is not in the file: {reason}; set [aws] account_id, or lackey asks STS when it runs"
            ));
            None
        }
    };
    let text = render(account.as_deref(), &region, args.stack.as_deref());
    // Prove the file reads back, and that the names it holds are valid, before writing it.
    let file = ConfigFile::parse(&text, &path)?;
    crate::config::Settings::resolve(&[], &crate::config::EnvVars::default(), &file)?;
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, &text)
        .map_err(|e| Fail::new(format!("cannot write `{}`: {e}", tmp.display())))?;
    std::fs::rename(&tmp, &path)
        .map_err(|e| Fail::new(format!("cannot write `{}`: {e}", path.display())))?;
    let shown = super::display_path(&path);
    if ctx.printer.json_mode() {
        ctx.printer.json(&Written {
            path: shown,
            account_id: account,
            region,
            stack,
        });
    } else {
        let what = match &account {
            Some(a) => format!("account {a}, region {region}"),
            None => format!("region {region}, no account id"),
        };
        let what = if stack == "lackey" {
            what
        } else {
            format!("stack `{stack}`, {what}")
        };
        ctx.printer.result(format!("Wrote {shown} ({what})"));
        ctx.printer
            .line("next: review it, then `lackey plan` and `lackey up`");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn renders_account_and_region_and_reads_back() {
        let text = render(Some("111122223333"), "eu-west-2", None);
        assert!(text.contains("region = \"eu-west-2\""));
        assert!(text.contains("account_id = \"111122223333\""));
        let f = ConfigFile::parse(&text, Path::new("lackey.toml")).unwrap();
        assert_eq!(f.values["aws.account_id"].value, "111122223333");
        assert_eq!(f.values["aws.region"].value, "eu-west-2");
        // Nothing else is set: every other key keeps its default.
        assert_eq!(f.values.len(), 2);
        assert_eq!(
            render(Some("111122223333"), "eu-west-2", Some("lackey")),
            text
        );
    }

    #[test]
    fn a_stack_name_writes_every_derived_name() {
        let text = render(Some("111122223333"), "eu-west-2", Some("stackb"));
        let f = ConfigFile::parse(&text, Path::new("lackey.toml")).unwrap();
        let got: Vec<(&str, &str)> = f
            .values
            .iter()
            .map(|(k, v)| (*k, v.value.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("aws.account_id", "111122223333"),
                ("aws.region", "eu-west-2"),
                ("bucket.name", "stackb-artifacts-111122223333"),
                ("ecr.repository", "stackb-minion"),
                ("ecs.cluster", "stackb"),
                ("ecs.task_family", "stackb-minion"),
                ("iam.execution_role", "stackb-ecs-execution"),
                ("iam.task_role", "stackb-ecs-task"),
                ("logs.group", "/ecs/stackb-minion"),
                ("network.security_group", "stackb-ecs-tasks"),
                ("secrets.anthropic_api_key", "stackb/anthropic-api-key"),
                ("secrets.github_app_key", "stackb/github-app-key"),
                ("stack.name", "stackb"),
            ]
        );
        // Without an account id the bucket is left to be derived, the rest is written.
        let text = render(None, "eu-west-2", Some("stackb"));
        let f = ConfigFile::parse(&text, Path::new("lackey.toml")).unwrap();
        assert!(!f.values.contains_key("aws.account_id"));
        assert!(!f.values.contains_key("bucket.name"));
        assert_eq!(f.values["ecs.cluster"].value, "stackb");
    }

    #[test]
    fn the_example_documents_every_toml_key() {
        for key in keys::ALL.iter().filter(|k| k.in_toml) {
            let needle = format!("{} = ", key.field());
            let section = format!("[{}]", key.section());
            let body = EXAMPLE
                .split(&section)
                .nth(1)
                .unwrap_or_else(|| panic!("lackey.toml.example has no {section} section"));
            let body = body.split("\n[").next().unwrap();
            assert!(
                body.contains(&needle),
                "lackey.toml.example does not document `{}`",
                key.name
            );
        }
    }
}
