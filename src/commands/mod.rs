//! One file per command: each turns its arguments into [`Settings`], builds the typed
//! specs and backends it needs from them, calls the library and prints what comes back.
//! Nothing here talks to AWS, Docker or the LLM directly: runs go through
//! [`crate::runner::Backend`].
//!
//! [`main`] owns the process: it loads `.env` and `lackey.toml`, builds the runtime,
//! turns Ctrl-C and SIGTERM into a cancellation that long commands observe (so they can
//! stop a container or a task and keep what was made), and maps the result to an exit
//! code.

mod config_cmd;
mod doctor;
mod fleet;
mod image;
mod init;
mod logs;
mod minion;
mod policy;
mod report;
pub mod run;
mod runs;
mod stack_cmd;
mod stop;
mod tty;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::aws::Aws;
use crate::cli::{Cli, Command, GlobalArgs};
use crate::config::{keys, ConfigFile, EnvVars, Key, Settings};
use crate::error::{Fail, Interrupted};
use crate::output::{OutputOptions, Printer};

/// What every command gets: the printer, the inputs, and the cancellation token.
pub struct Ctx {
    pub printer: Printer,
    pub global: GlobalArgs,
    pub env: EnvVars,
    pub file: ConfigFile,
    pub cancel: CancellationToken,
}

impl Ctx {
    /// Resolve settings with this command's own flags on top.
    pub fn settings(&self, flags: &[(&'static Key, String)]) -> anyhow::Result<Settings> {
        let mut all = self.global_flags();
        all.extend_from_slice(flags);
        Settings::resolve(&all, &self.env, &self.file)
    }

    /// The settings the global flags carry: `--region`, `--profile`, `--endpoint-url`.
    pub fn global_flags(&self) -> Vec<(&'static Key, String)> {
        let g = &self.global;
        [
            (&keys::AWS_REGION, &g.region),
            (&keys::AWS_PROFILE, &g.profile),
            (&keys::AWS_ENDPOINT_URL, &g.endpoint_url),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
    }

    pub async fn aws(&self, settings: &Settings) -> anyhow::Result<Aws> {
        Aws::connect(settings).await
    }
}

/// AWS for a command that works on the stack's runs, with the account, subnets and
/// security group discovered when not given. A value found nowhere is an error naming
/// its variable. (The region may also come from the AWS profile; with none anywhere,
/// connecting fails naming AWS_REGION.)
pub async fn cloud_aws(ctx: &Ctx, settings: &mut Settings) -> anyhow::Result<Aws> {
    let aws = ctx.aws(settings).await?;
    crate::stack::discover(&aws, settings).await?;
    Ok(aws)
}

/// The ECS backend to find a run launched earlier (`logs`, `stop`); None when AWS is
/// not configured at all (no region).
pub async fn ecs_lookup(
    ctx: &Ctx,
    settings: &Settings,
) -> anyhow::Result<Option<crate::runner::ecs::Ecs>> {
    let mut settings = settings.clone();
    if settings.get(&keys::AWS_REGION).is_none() {
        return Ok(None);
    }
    let aws = cloud_aws(ctx, &mut settings).await?;
    let target = crate::runner::ecs::EcsTarget::from_settings(&settings)?;
    Ok(Some(crate::runner::ecs::Ecs::lookup(aws, target)))
}

/// The ECS backend to read the bucket's runs (`runs`, `report`): None when the bucket
/// or the region is not configured (nothing is discovered).
pub async fn ecs_listing(
    ctx: &Ctx,
    settings: &Settings,
) -> anyhow::Result<Option<crate::runner::ecs::Ecs>> {
    if settings.get(&keys::BUCKET_NAME).is_none() || settings.get(&keys::AWS_REGION).is_none() {
        return Ok(None);
    }
    let aws = ctx.aws(settings).await?;
    let target = crate::runner::ecs::EcsTarget::from_settings(settings)?;
    Ok(Some(crate::runner::ecs::Ecs::lookup(aws, target)))
}

/// Where the config file is, and whether the user named it (then it must exist).
fn config_path(global: &GlobalArgs, env: &EnvVars) -> (PathBuf, bool) {
    if let Some(p) = &global.config {
        return (p.clone(), true);
    }
    if let Some(p) = env.value("LACKEY_CONFIG") {
        return (PathBuf::from(p), true);
    }
    (PathBuf::from("lackey.toml"), false)
}

/// Read `.env` and `lackey.toml`. `init` reads no config file: it writes one, at a path
/// that may not exist yet, over one that may be broken.
fn load_inputs(global: &GlobalArgs, read_config: bool) -> anyhow::Result<(EnvVars, ConfigFile)> {
    let (dotenv, explicit) = match &global.env_file {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(".env"), false),
    };
    let env = EnvVars::load(&dotenv, explicit)?;
    if !explicit {
        let set = env
            .dotenv_only()
            .map(|(k, _)| k.to_string())
            .filter(|k| {
                k.starts_with("AWS_")
                    || k.starts_with("DOCKER_")
                    || REPOSITORY_MAY_NOT_SET
                        .iter()
                        .any(|key| key.env.contains(&k.as_str()))
            })
            .collect();
        refuse_repository_settings(&dotenv, set)?;
    }
    // The AWS SDK (credentials) and bollard (DOCKER_HOST) read their own variables:
    // let them see the ones only .env sets. Nothing else is exported, so no secret from
    // .env reaches a child process. This runs before the runtime starts, while the
    // process has a single thread.
    for (k, v) in env.dotenv_only() {
        if k.starts_with("AWS_") || k.starts_with("DOCKER_") {
            std::env::set_var(k, v);
        }
    }
    let (path, explicit) = config_path(global, &env);
    let file = if !read_config {
        ConfigFile::default()
    } else if path.exists() {
        let file = ConfigFile::load(&path)?;
        if !explicit {
            let set = REPOSITORY_MAY_NOT_SET
                .iter()
                .filter(|key| file.values.contains_key(key.name))
                .map(|key| key.name.to_string())
                .collect();
            refuse_repository_settings(&path, set)?;
        }
        file
    } else if explicit {
        return Err(
            Fail::new(format!("config file `{}` does not exist", path.display()))
                .with_hint("run `lackey init` to write one, or fix --config / LACKEY_CONFIG")
                .into(),
        );
    } else {
        ConfigFile::default()
    };
    Ok((env, file))
}

/// What a file a repository carries may not set: where credentials are sent, which of
/// the user's variables reach the container, how open its network is, where runs are
/// written, and which AWS and Docker endpoints and credentials the CLI uses.
const REPOSITORY_MAY_NOT_SET: &[&Key] = &[
    &keys::ANTHROPIC_BASE_URL,
    &keys::GITHUB_API_URL,
    &keys::GITHUB_GIT_URL,
    &keys::RUN_ENV,
    &keys::RUN_NETWORK,
    &keys::LOCAL_ARTIFACTS_DIR,
    &keys::AWS_ENDPOINT_URL,
];

/// `.env` and `lackey.toml` are read from the working directory, which is usually the
/// repository a run works on; one committed to that repository was written by whoever
/// wrote the repository. Such a file may not set [`REPOSITORY_MAY_NOT_SET`] (nor, for
/// `.env`, any `AWS_` or `DOCKER_` variable): a cloned repository must not send the
/// user's API key or App token elsewhere, or run a credential process of its own.
fn refuse_repository_settings(file: &Path, set: Vec<String>) -> anyhow::Result<()> {
    // Most files set none of it: then git is not asked (this runs before every command).
    let Some(name) = file.file_name().filter(|_| !set.is_empty()) else {
        return Ok(());
    };
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Tracked by git in the repository holding it (its own config cannot run anything
    // here: no fsmonitor, no hooks for ls-files).
    let tracked = std::process::Command::new("git")
        .args([
            "-c",
            "core.fsmonitor=false",
            "ls-files",
            "--error-unmatch",
            "--",
        ])
        .arg(name)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !tracked {
        return Ok(());
    }
    Err(Fail::new(format!(
        "`{}` is committed to the repository and sets {}: a repository's own files may not decide where credentials go or what reaches the container",
        file.display(),
        set.join(", ")
    ))
    .with_hint(format!(
        "set them in the environment or in a file of yours passed with --env-file / --config (or stop tracking it: `git rm --cached {}`)",
        name.to_string_lossy()
    ))
    .into())
}

fn init_tracing(verbose: u8) {
    // Other crates speak only of errors by default: the AWS credential chain warns about
    // every provider it tries, which is noise when the next one succeeds.
    let default = match verbose {
        0 | 1 => "lackey=warn,error",
        2 => "lackey=debug,info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LACKEY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Whether a command stops cleanly on Ctrl-C by itself (stopping containers, tasks, or
/// finishing the resource it is changing). Others are simply dropped.
fn handles_interrupt(cmd: &Command) -> bool {
    match cmd {
        Command::Run(_) | Command::Minion(_) | Command::Proxy => true,
        // Only the end-to-end check has a task to stop.
        Command::Doctor(d) => d.e2e,
        _ => false,
    }
}

/// The whole process: inputs, runtime, signals, command, exit code.
pub fn main(cli: Cli) -> ExitCode {
    let printer = Printer::new(OutputOptions {
        json: cli.global.json,
        quiet: cli.global.quiet,
        verbose: cli.global.verbose,
        no_progress: cli.global.no_progress,
    });
    init_tracing(cli.global.verbose);
    let (env, file) = match load_inputs(&cli.global, !matches!(cli.command, Command::Init(_))) {
        Ok(x) => x,
        Err(e) => {
            printer.error(&e);
            return ExitCode::from(crate::error::exit_code(&e));
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            printer.error(&anyhow::anyhow!("cannot start the async runtime: {e}"));
            return ExitCode::from(crate::error::EXIT_FAILURE);
        }
    };
    let cancel = CancellationToken::new();
    let graceful = handles_interrupt(&cli.command);
    let ctx = Ctx {
        printer: printer.clone(),
        global: cli.global.clone(),
        env,
        file,
        cancel: cancel.clone(),
    };
    let result = runtime.block_on(async move {
        let signals = tokio::spawn(watch_signals(cancel.clone()));
        let command = dispatch(&ctx, cli.command);
        tokio::pin!(command);
        let result = tokio::select! {
            r = &mut command => r,
            _ = cancel.cancelled(), if !graceful => Err(anyhow::Error::new(Interrupted)),
        };
        signals.abort();
        result
    });
    // Do not wait for stray background work (a log follower, an SDK connection).
    runtime.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            printer.error(&e);
            ExitCode::from(crate::error::exit_code(&e))
        }
    }
}

/// Ctrl-C or SIGTERM cancels once; a second one exits at once.
#[allow(
    clippy::print_stderr,
    reason = "the process is exiting at once: no printer is reachable from the signal task"
)]
async fn watch_signals(cancel: CancellationToken) {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    loop {
        #[cfg(unix)]
        let terminated = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminated = std::future::pending::<()>();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminated => {}
        }
        if cancel.is_cancelled() {
            crate::runner::docker::remove_live_secrets();
            tty::restore_terminal();
            eprintln!("interrupted twice: exiting without cleaning up");
            std::process::exit(130);
        }
        cancel.cancel();
    }
}

/// Run one command; the returned number is the exit code on success paths that are not
/// plain 0 (`plan --detailed-exitcode`, a run that did not succeed).
async fn dispatch(ctx: &Ctx, command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Init(args) => init::run(ctx, args).await,
        Command::Config(args) => config_cmd::run(ctx, args).await,
        Command::Policy(args) => policy::run(ctx, args).await,
        Command::Plan(args) => stack_cmd::plan(ctx, args).await,
        Command::Up(args) => stack_cmd::up(ctx, args).await,
        Command::Down(args) => stack_cmd::down(ctx, args).await,
        Command::Secret(crate::cli::SecretCommand::Put(args)) => {
            stack_cmd::secret_put(ctx, args).await
        }
        Command::Doctor(args) => doctor::run(ctx, args).await,
        Command::Run(args) => run::run(ctx, args).await,
        Command::Runs(args) => runs::run(ctx, args).await,
        Command::Logs(args) => logs::run(ctx, args).await,
        Command::Report(args) => report::run(ctx, args).await,
        Command::Stop(args) => stop::run(ctx, args).await,
        Command::Image(cmd) => image::run(ctx, cmd).await,
        Command::Minion(args) => minion::run(ctx, args).await,
        Command::Proxy => minion::proxy(ctx).await,
    }
}

/// Show a path relative to the working directory when it is inside it.
pub fn display_path(p: &Path) -> String {
    if let Ok(cwd) = std::env::current_dir() {
        if let Ok(rel) = p.strip_prefix(&cwd) {
            let rel = rel.display().to_string();
            return if rel.is_empty() { ".".into() } else { rel };
        }
    }
    p.display().to_string()
}
