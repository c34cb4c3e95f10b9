//! `lackey plan`, `up`, `down` and `secret put`: the stack.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Ctx;
use crate::aws::Aws;
use crate::cli::{DownArgs, PlanArgs, SecretPutArgs, UpArgs};
use crate::config::Settings;
use crate::error::Fail;
use crate::output::{Printer, Reporter, Tone};
use crate::stack::{self, journal::Journal, Action, Report, StackCtx, StackSpec};

/// Settings with the account discovered (STS, only when lackey.toml does not say it).
pub async fn stack_settings(ctx: &Ctx) -> anyhow::Result<(Settings, Aws)> {
    let mut settings = ctx.settings(&[])?;
    let aws = ctx.aws(&settings).await?;
    aws.discover_account(&mut settings).await?;
    Ok((settings, aws))
}

pub fn stack_ctx<'a>(aws: &'a Aws, spec: StackSpec, reporter: &'a dyn Reporter) -> StackCtx<'a> {
    StackCtx {
        aws,
        journal: Journal::open(&spec.account, &spec.region, &spec.stack),
        spec,
        reporter,
        sg_delete_timeout: stack::security_group::DEFAULT_DELETE_TIMEOUT,
        iam_propagation_timeout: Duration::from_secs(120),
    }
}

fn show_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "(none)".into(),
        other => other.to_string(),
    }
}

/// The human form of a report: one cargo-style line per change, diffs below.
fn print_changes(p: &Printer, report: &Report, show_noop: bool) {
    for c in &report.changes {
        let (verb, tone) = match c.action {
            Action::Create => ("Create", Tone::Good),
            Action::Update => ("Update", Tone::Warn),
            Action::Delete => ("Delete", Tone::Bad),
            Action::Noop if !c.notes.is_empty() => ("Unchanged", Tone::Warn),
            Action::Noop if show_noop => ("Unchanged", Tone::Info),
            Action::Noop => continue,
            Action::Unowned => ("Unowned", Tone::Warn),
        };
        p.status(verb, tone, &format!("{} `{}`", c.kind.as_str(), c.name));
        for d in &c.diff {
            let (old, new) = (show_value(&d.old), show_value(&d.new));
            if old.len() + new.len() > 80 {
                p.line(format!(
                    "{:>12}   {}:\n{:>12}     - {old}\n{:>12}     + {new}",
                    "", d.field, "", ""
                ));
            } else {
                p.line(format!("{:>12}   {}: {old} -> {new}", "", d.field));
            }
        }
        for n in &c.notes {
            p.line(format!("{:>12}   {n}", ""));
        }
    }
}

fn summary_line(r: &Report, applied: bool) -> String {
    let s = &r.summary;
    if applied {
        format!(
            "Applied: {} created, {} updated, {} deleted, {} unchanged",
            s.create, s.update, s.delete, s.noop
        )
    } else {
        format!(
            "Plan: {} to create, {} to update, {} to delete, {} unchanged",
            s.create, s.update, s.delete, s.noop
        )
    }
}

pub async fn plan(ctx: &Ctx, args: PlanArgs) -> anyhow::Result<u8> {
    let (settings, aws) = stack_settings(ctx).await?;
    let spec = StackSpec::from_settings(&settings)?;
    let cx = stack_ctx(&aws, spec.clone(), &ctx.printer);
    let spinner = ctx.printer.spinner("observing the stack");
    let report = stack::plan_stack(&cx, false).await?;
    drop(spinner);
    if ctx.printer.json_mode() {
        ctx.printer.json(&report);
    } else {
        ctx.printer.line(format!(
            "Stack `{}` in account {}, {}:",
            spec.stack, spec.account, spec.region
        ));
        print_changes(&ctx.printer, &report, ctx.printer.verbose() > 0);
        let unowned = report
            .changes
            .iter()
            .filter(|c| c.action == Action::Unowned)
            .count();
        let mut line = summary_line(&report, false);
        if unowned > 0 {
            line.push_str(&format!(", {unowned} unowned"));
        }
        ctx.printer.result(line);
        if report.has_changes() {
            ctx.printer.line("run `lackey up` to apply");
        }
    }
    Ok(if args.detailed_exitcode && report.has_changes() {
        crate::error::EXIT_CHANGES_PENDING
    } else {
        0
    })
}

pub async fn up(ctx: &Ctx, args: UpArgs) -> anyhow::Result<u8> {
    let (settings, aws) = stack_settings(ctx).await?;
    let spec = StackSpec::from_settings(&settings)?;
    let cx = stack_ctx(&aws, spec.clone(), &ctx.printer);
    let t0 = Instant::now();
    let report = stack::up(&cx, args.adopt).await?;
    if ctx.printer.json_mode() {
        ctx.printer.json(&report);
    } else {
        let s = &report.summary;
        if report.has_changes() {
            ctx.printer.status(
                "Finished",
                Tone::Good,
                &format!(
                    "stack `{}`: {} created, {} updated, {} unchanged in {:.1}s",
                    spec.stack,
                    s.create,
                    s.update,
                    s.noop,
                    t0.elapsed().as_secs_f64()
                ),
            );
        } else {
            ctx.printer.status(
                "Unchanged",
                Tone::Info,
                &format!(
                    "stack `{}` is up to date ({} resources)",
                    spec.stack, s.noop
                ),
            );
        }
        for c in report.changes.iter().filter(|c| {
            c.kind == stack::Kind::Secret && !c.notes.is_empty() && c.action != Action::Unowned
        }) {
            ctx.printer
                .warn(&format!("secret `{}` {}", c.name, c.notes.join("; ")));
        }
        ctx.printer.result(summary_line(&report, true));
    }
    Ok(0)
}

#[allow(
    clippy::print_stderr,
    reason = "an interactive prompt: the question goes to the terminal the user answers in"
)]
fn confirm(question: &str) -> anyhow::Result<bool> {
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

pub async fn down(ctx: &Ctx, args: DownArgs) -> anyhow::Result<u8> {
    let (settings, aws) = stack_settings(ctx).await?;
    let spec = StackSpec::from_settings(&settings)?;
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(
                Fail::new("refusing to delete the stack without confirmation")
                    .with_hint("pass --yes to delete without a prompt")
                    .into(),
            );
        }
        let q = format!(
            "Delete every resource of stack `{}` in account {}, {}{}?",
            spec.stack,
            spec.account,
            spec.region,
            if args.force {
                ", emptying the bucket and the repository"
            } else {
                ""
            }
        );
        if !confirm(&q)? {
            ctx.printer.line("nothing deleted");
            return Ok(1);
        }
    }
    let cx = stack_ctx(&aws, spec.clone(), &ctx.printer);
    let t0 = Instant::now();
    let report = stack::down(&cx, args.force).await?;
    if ctx.printer.json_mode() {
        ctx.printer.json(&report);
    } else {
        ctx.printer.status(
            "Finished",
            Tone::Good,
            &format!(
                "deleting stack `{}`: {} deleted in {:.1}s",
                spec.stack,
                report.summary.delete,
                t0.elapsed().as_secs_f64()
            ),
        );
        // What was kept (unowned, or a non-empty bucket or repository without --force)
        // is said beside the count, never in it.
        let kept = report
            .changes
            .iter()
            .filter(|c| {
                c.action == Action::Unowned || (c.action == Action::Noop && !c.notes.is_empty())
            })
            .count();
        let mut line = format!("Deleted: {} resources", report.summary.delete);
        if kept > 0 {
            line.push_str(&format!(", kept {kept} (see the warnings above)"));
        }
        ctx.printer.result(line);
    }
    Ok(0)
}

/// `lackey secret put NAME [--from-file PATH]`.
pub async fn secret_put(ctx: &Ctx, args: SecretPutArgs) -> anyhow::Result<u8> {
    let (settings, aws) = stack_settings(ctx).await?;
    let spec = StackSpec::from_settings(&settings)?;
    let known: Vec<(&'static str, String)> = spec.secrets.clone();
    let Some((key, name)) = known
        .iter()
        .find(|(k, n)| *k == args.name || *n == args.name)
        .map(|(k, n)| (*k, n.as_str()))
    else {
        return Err(
            Fail::new(format!("`{}` is not one of the stack's secrets", args.name))
                .with_hint(format!(
                    "use {}",
                    known
                        .iter()
                        .map(|(k, n)| format!("`{k}` ({n})"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ))
                .into(),
        );
    };
    let value = match &args.from_file {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| Fail::new(format!("cannot read `{}`: {e}", p.display())))?,
        None => {
            super::tty::read_hidden(&format!(
                "value for `{name}` (input hidden, end with Enter): "
            ))
            .await?
        }
    };
    let value = if key == "github_app_key" {
        value
    } else {
        value.trim().to_string()
    };
    if value.trim().is_empty() {
        return Err(Fail::new("the secret value is empty")
            .with_hint("pipe the value in, or pass --from-file PATH")
            .into());
    }
    match key {
        "github_app_key" if !crate::config::validate::is_pem_private_key(&value) => {
            return Err(Fail::new("the GitHub App key is not a PEM private key")
                .with_hint("store the .pem file GitHub generated: --from-file app.private-key.pem")
                .into());
        }
        "anthropic_api_key" if !crate::config::validate::is_anthropic_key(&value) => {
            ctx.printer.warn(
                "the value does not look like an Anthropic API key (sk-ant-...); stored anyway",
            );
        }
        _ => {}
    }
    let cx = stack_ctx(&aws, spec, &ctx.printer);
    let version = stack::secrets::put_value(&cx, name, &value).await?;
    if ctx.printer.json_mode() {
        ctx.printer
            .json(&serde_json::json!({"secret": name, "version_id": version}));
    } else {
        ctx.printer.status(
            "Stored",
            Tone::Good,
            &format!(
                "a new value in secret `{name}` ({} characters)",
                value.chars().count()
            ),
        );
    }
    Ok(0)
}
