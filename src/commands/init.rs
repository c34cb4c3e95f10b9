//! `lackey init`: write `lackey.toml` from the embedded example, with the account id
//! from STS and the region filled in.

use std::path::PathBuf;

use serde::Serialize;

use super::Ctx;
use crate::cli::InitArgs;
use crate::config::{keys, ConfigFile};
use crate::error::Fail;

/// The documented example, embedded so `init` works from any directory.
pub const EXAMPLE: &str = include_str!("../../lackey.toml.example");

/// The example with `[aws] region` and `account_id` replaced.
pub fn render(account_id: &str, region: &str) -> String {
    let mut out = String::with_capacity(EXAMPLE.len());
    let mut section = "";
    for line in EXAMPLE.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            section = trimmed;
        }
        let replaced = if section == "[aws]" && trimmed.starts_with("region = ") {
            Some(replace_value(line, region))
        } else if section == "[aws]" && trimmed.starts_with("account_id = ") {
            Some(replace_value(line, account_id))
        } else {
            None
        };
        out.push_str(replaced.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
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
    account_id: String,
    region: String,
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
    let settings =
        crate::config::Settings::resolve(&ctx.global_flags(), &ctx.env, &ConfigFile::default())?;
    let region = settings.get(&keys::AWS_REGION).map(str::to_string);
    let aws = ctx.aws(&settings).await?;
    let region = region.unwrap_or_else(|| aws.region().to_string());
    let account = aws.account_id().await?;
    let text = render(&account, &region);
    // Prove the file reads back before writing it.
    ConfigFile::parse(&text, &path)?;
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
        });
    } else {
        ctx.printer.result(format!(
            "Wrote {shown} (account {account}, region {region})"
        ));
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
        let text = render("111122223333", "eu-west-2");
        assert!(text.contains("region = \"eu-west-2\""));
        assert!(text.contains("account_id = \"111122223333\""));
        let f = ConfigFile::parse(&text, Path::new("lackey.toml")).unwrap();
        assert_eq!(f.values["aws.account_id"].value, "111122223333");
        assert_eq!(f.values["aws.region"].value, "eu-west-2");
        // Nothing else is set: every other key keeps its default.
        assert_eq!(f.values.len(), 2);
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
