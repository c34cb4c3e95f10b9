//! `lackey report RUN_ID [--open] [--output FILE]`: a run's page, rendered from its
//! artifacts (fetched from the bucket first when the run is not on this machine).

use std::path::{Path, PathBuf};

use super::Ctx;
use crate::cli::ReportArgs;
use crate::config::{keys, Settings};
use crate::cost::PriceTable;
use crate::error::Fail;
use crate::output::{Reporter, Tone};
use crate::report::{self, RunData};

/// The price table of the settings (built-in rows, `run.prices` on top).
pub fn prices(settings: &Settings) -> anyhow::Result<PriceTable> {
    PriceTable::with_overrides(settings.get(&keys::RUN_PRICES)).map_err(|e| {
        Fail::new(format!("invalid `run.prices`: {e}"))
            .with_hint(keys::RUN_PRICES.how_to_set())
            .into()
    })
}

/// Write `report.html` beside a finished run's artifacts. A report that cannot be
/// written is a warning: the run itself is done.
pub fn write_after_run(ctx: &Ctx, settings: &Settings, dir: &Path) -> Option<PathBuf> {
    let written =
        prices(settings).and_then(|p| report::write(dir, &report::host_redactor(settings), &p));
    match written {
        Ok(path) => Some(path),
        Err(e) => {
            ctx.printer
                .warn(&format!("the run's report was not written: {e:#}"));
            None
        }
    }
}

pub async fn run(ctx: &Ctx, args: ReportArgs) -> anyhow::Result<u8> {
    if let Some(out) = &args.output {
        check_output(out)?;
    }
    if let Some(fleet) = &args.fleet {
        return super::fleet::report(ctx, fleet, args.open, args.output).await;
    }
    let run_id = args.run_id.clone().unwrap_or_default();
    super::logs::check_run_id(&run_id)?;
    let settings = ctx.settings(&[])?;
    let prices = prices(&settings)?;
    let root = PathBuf::from(settings.require(&keys::LOCAL_ARTIFACTS_DIR)?);
    let dir = root.join(&run_id);
    if !dir.join("run_summary.json").is_file() {
        let running = dir.is_dir();
        let fetched = if running {
            false
        } else {
            match super::ecs_listing(ctx, &settings).await? {
                Some(ecs) => ecs.fetch_artifacts(&run_id, &dir, &ctx.printer).await?,
                None => false,
            }
        };
        if !fetched {
            return Err(if running {
                Fail::new(format!(
                    "run `{}` has not finished: `{}` has no run_summary.json yet",
                    run_id,
                    dir.display()
                ))
                .with_hint(format!(
                    "wait for it (`lackey logs {} --follow`), then ask again",
                    run_id
                ))
            } else {
                Fail::new(format!(
                    "no run `{}` in `{}/` or in the artifact bucket",
                    run_id,
                    root.display()
                ))
                .with_hint("`lackey runs` lists the runs")
            }
            .into());
        }
    }
    let data = RunData::load(&dir)?;
    let html = report::render(&data, &report::host_redactor(&settings), &prices);
    let path = match &args.output {
        Some(path) => {
            report::write_file(path, &html)?;
            path.clone()
        }
        None => report::write_in_run_dir(&dir, &html)?,
    };
    if ctx.printer.json_mode() {
        ctx.printer.json(&serde_json::json!({
            "run_id": run_id,
            "report": path.display().to_string(),
            "bytes": html.len(),
        }));
    } else {
        ctx.printer.result(path.display());
    }
    if args.open {
        open(ctx, &path);
    }
    Ok(0)
}

/// `--output` must name a file in a directory that exists.
fn check_output(out: &Path) -> anyhow::Result<()> {
    if out.is_dir() {
        return Err(Fail::new(format!("`{}` is a directory", out.display()))
            .with_hint("pass a file name: --output review.html")
            .into());
    }
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(Fail::new(format!(
            "cannot write `{}`: the directory `{}` does not exist",
            out.display(),
            parent.display()
        ))
        .with_hint("create it first, or pass another --output")
        .into());
    }
    Ok(())
}

/// Hand the page to the platform's opener (`open` on macOS, `xdg-open` elsewhere).
pub(super) fn open(ctx: &Ctx, path: &Path) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let spawned = std::process::Command::new(opener)
        .arg(path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match spawned {
        Ok(mut child) => {
            // Reap the opener when it returns (it hands the page to a browser and exits).
            std::thread::spawn(move || child.wait());
            ctx.printer.status(
                "Opened",
                Tone::Good,
                &format!("{} with {opener}", path.display()),
            )
        }
        Err(e) => ctx.printer.warn(&format!(
            "could not run `{opener}` to open the report ({e}); open {} in a browser",
            path.display()
        )),
    }
}
