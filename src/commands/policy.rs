//! `lackey policy`: the IAM policy the identity running lackey needs.
//!
//! The document goes to stdout (alone with `--json`, so it can be piped into
//! `aws iam put-user-policy`); what it covers and the actions AWS lets no one scope go
//! to stderr.

use serde_json::Value;

use super::stack_cmd::stack_settings;
use super::Ctx;
use crate::cli::PolicyArgs;
use crate::stack::{operator, StackSpec};

pub async fn run(ctx: &Ctx, _: PolicyArgs) -> anyhow::Result<u8> {
    let (settings, _aws) = stack_settings(ctx).await?;
    let spec = StackSpec::from_settings(&settings)?;
    let doc = operator::operator_policy(&spec);
    let value: Value = serde_json::from_str(&doc)?;
    let p = &ctx.printer;
    if p.json_mode() {
        p.json(&value);
        return Ok(0);
    }
    let (statements, actions) = operator::count(&doc);
    p.line(format!(
        "The IAM policy for stack `{}` ({statements} statements, {actions} actions): every command lackey runs against AWS, each statement scoped to the stack's resources where AWS allows it.",
        spec.stack
    ));
    p.line("Not scoped, because AWS offers no narrower resource:");
    for (actions, why) in operator::UNSCOPED {
        p.line(format!("  {actions}: {why}"));
    }
    p.line("Attach it to the user or role you run lackey as (`lackey policy --json` prints the document alone).");
    p.result(serde_json::to_string_pretty(&value)?);
    Ok(0)
}
