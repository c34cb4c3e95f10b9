//! `lackey config`: every setting, its value and where it came from, secrets masked.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Ctx;
use crate::cli::ConfigArgs;
use crate::config::Resolved;

#[derive(Serialize)]
struct Report {
    config_file: Option<String>,
    env_file: Option<String>,
    settings: BTreeMap<&'static str, Option<Resolved>>,
}

pub async fn run(ctx: &Ctx, args: ConfigArgs) -> anyhow::Result<u8> {
    let mut settings = ctx.settings(&[])?;
    if args.discover {
        let aws = ctx.aws(&settings).await?;
        crate::stack::discover(&aws, &mut settings).await?;
    }
    let entries = settings.entries();
    let config_file = settings.config_path.as_deref().map(super::display_path);
    let env_file = settings.env_file.as_deref().map(super::display_path);
    if ctx.printer.json_mode() {
        ctx.printer.json(&Report {
            config_file,
            env_file,
            settings: entries.into_iter().map(|(k, r)| (k.name, r)).collect(),
        });
        return Ok(0);
    }
    let p = &ctx.printer;
    p.result(format!(
        "config file: {}",
        config_file
            .as_deref()
            .unwrap_or("none (no lackey.toml found)")
    ));
    p.result(format!(
        "env file:    {}",
        env_file.as_deref().unwrap_or("none (no .env found)")
    ));
    p.result("");
    let width = entries
        .iter()
        .map(|(k, _)| k.name.len())
        .max()
        .unwrap_or(10);
    let vwidth = entries
        .iter()
        .filter_map(|(_, r)| r.as_ref().map(|r| r.value.len()))
        .max()
        .unwrap_or(10)
        .min(48);
    for (key, r) in entries {
        match r {
            Some(r) => {
                let source = if r.origin == r.source.label() {
                    r.source.label().to_string()
                } else {
                    format!("{} ({})", r.source.label(), r.origin)
                };
                p.result(format!(
                    "{:width$}  {:vwidth$}  {source}",
                    key.name, r.value
                ));
            }
            None => p.result(format!(
                "{:width$}  {:vwidth$}  set with {}",
                key.name,
                "-",
                key.how_to_set()
            )),
        }
    }
    Ok(0)
}
