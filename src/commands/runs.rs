//! `lackey runs`: past and running runs, newest first: the run directories here, the
//! local containers, and the runs in the artifact bucket.

use super::Ctx;
use crate::cli::RunsArgs;
use crate::config::keys;
use crate::error::Fail;
use crate::output::Reporter;
use crate::runner::docker::Docker;
use crate::runner::{Backend, RunRow};

pub async fn run(ctx: &Ctx, args: RunsArgs) -> anyhow::Result<u8> {
    if let Some(fleet) = &args.fleet {
        return super::fleet::runs(ctx, fleet, args.watch).await;
    }
    let settings = ctx.settings(&[])?;
    let root = std::path::PathBuf::from(settings.require(&keys::LOCAL_ARTIFACTS_DIR)?);
    let mut rows = crate::runner::local_rows(&root);
    // Without Docker the list is shown, then the error.
    let docker_error = mark_gone_containers(&mut rows).await.err();
    merge_cloud_rows(ctx, &settings, &mut rows, args.limit).await;
    print_rows(ctx, rows, &root, args.limit);
    match docker_error {
        None => Ok(0),
        Some(e) => Err(Fail::new(format!("cannot check local runs: {e}"))
            .with_hint("the list may miss local runs, and one shown as running may have ended: start Docker (or point DOCKER_HOST at a running daemon) and run `lackey runs` again")
            .into()),
    }
}

/// A local run whose container is gone without a summary did not finish: `unknown`.
/// Without Docker that cannot be told.
async fn mark_gone_containers(rows: &mut [RunRow]) -> anyhow::Result<()> {
    let docker = Docker::lookup().await?;
    let live = docker.list(usize::MAX, &[]).await.unwrap_or_default();
    for r in rows
        .iter_mut()
        .filter(|r| r.outcome == "running" && r.backend == "local")
    {
        if !live.iter().any(|l| l.run_id == r.run_id) {
            r.outcome = "unknown".into();
        }
    }
    Ok(())
}

/// The bucket knows every cloud run: those of other machines, and the outcome of ones
/// this machine launched but did not see finish. AWS that cannot be reached lists none.
async fn merge_cloud_rows(
    ctx: &Ctx,
    settings: &crate::config::Settings,
    rows: &mut Vec<RunRow>,
    limit: usize,
) {
    let finished: Vec<String> = rows
        .iter()
        .filter(|r| r.outcome != "running")
        .map(|r| r.run_id.clone())
        .collect();
    let cloud_rows = match super::ecs_listing(ctx, settings).await.ok().flatten() {
        Some(ecs) => ecs.list(limit, &finished).await.unwrap_or_else(|e| {
            ctx.printer.warn(&format!("cloud runs not listed: {e:#}"));
            vec![]
        }),
        None => vec![],
    };
    for s3row in cloud_rows {
        match rows.iter_mut().find(|r| r.run_id == s3row.run_id) {
            Some(local) => {
                local.outcome = s3row.outcome;
                local.duration_s = s3row.duration_s;
                local.branch = s3row.branch;
                local.cost_usd = s3row.cost_usd;
                local.tokens = s3row.tokens;
            }
            None => rows.push(s3row),
        }
    }
}

/// The table (or `--json`), newest first, with the total cost.
fn print_rows(ctx: &Ctx, mut rows: Vec<RunRow>, root: &std::path::Path, limit: usize) {
    rows.sort_by(|a, b| b.run_id.cmp(&a.run_id));
    rows.truncate(limit);
    let priced: Vec<f64> = rows.iter().filter_map(|r| r.cost_usd).collect();
    // A fold from +0.0: an empty f64 sum is -0.0, which would print as `$-0.0000`.
    let total_cost = crate::cost::round_usd(priced.iter().fold(0.0, |a, b| a + b));
    let total_tokens: u64 = rows.iter().filter_map(|r| r.tokens).sum();
    if ctx.printer.json_mode() {
        ctx.printer.json(&serde_json::json!({
            "runs": rows,
            "total": {"cost_usd": total_cost, "tokens": total_tokens, "runs_priced": priced.len()},
        }));
        return;
    }
    if rows.is_empty() {
        ctx.printer
            .result(format!("no runs yet (artifacts go to {}/)", root.display()));
        return;
    }
    ctx.printer.result(format!(
        "{:<22} {:<7} {:<19} {:>9} {:>9} {:>7}  BRANCH",
        "RUN ID", "BACKEND", "OUTCOME", "DURATION", "COST", "TOKENS"
    ));
    let unpriced = rows.len() - priced.len();
    for r in rows {
        ctx.printer.result(format!(
            "{:<22} {:<7} {:<19} {:>9} {:>9} {:>7}  {}",
            r.run_id,
            r.backend,
            r.outcome,
            r.duration_s
                .map(
                    |d| crate::output::human_duration(std::time::Duration::from_secs_f64(
                        d.max(0.0)
                    ))
                )
                .unwrap_or_else(|| "-".into()),
            crate::cost::format_usd(r.cost_usd),
            r.tokens
                .map(crate::cost::format_tokens)
                .unwrap_or_else(|| "-".into()),
            r.branch.unwrap_or_else(|| "-".into())
        ));
    }
    ctx.printer.result(format!(
        "total: {} and {} tokens{}",
        crate::cost::format_usd(Some(total_cost)),
        crate::cost::format_tokens(total_tokens),
        if unpriced > 0 {
            format!(" ({unpriced} run(s) without a known cost not counted)")
        } else {
            String::new()
        }
    ));
}
