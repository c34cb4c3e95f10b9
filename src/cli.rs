//! Command-line definitions, and nothing else: no logic lives here.
//!
//! Flags never read the environment through clap; environment variables and `.env` are
//! merged in one place, `config::Settings::resolve`, so precedence is decided once.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const ABOUT: &str = "Run an autonomous coding agent (a minion) against a git repository, in local \
Docker or on AWS ECS Fargate, and provision the AWS stack it needs.";

const AFTER_HELP: &str = "\
Examples:
  lackey run \"add a hello world test\"          one local run in Docker
  lackey run \"add a hello world test\" --cloud  the same run on ECS Fargate
  lackey init && lackey up                     build the AWS stack cloud runs need
  lackey doctor                                check every setup phase";

#[derive(Debug, Parser)]
#[command(
    name = "lackey",
    version,
    about = ABOUT,
    after_help = AFTER_HELP,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args, Default)]
pub struct GlobalArgs {
    /// Config file [default: ./lackey.toml, or $LACKEY_CONFIG]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Environment file, loaded when present [default: ./.env]
    #[arg(long, global = true, value_name = "PATH")]
    pub env_file: Option<PathBuf>,

    /// AWS profile to use [env: AWS_PROFILE]
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,

    /// AWS region [env: AWS_REGION]
    #[arg(long, global = true, value_name = "REGION")]
    pub region: Option<String>,

    /// Send AWS requests to this endpoint instead of AWS's own [env: AWS_ENDPOINT_URL]
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint_url: Option<String>,

    /// Print one JSON document on stdout instead of human output
    #[arg(long, global = true)]
    pub json: bool,

    /// Print no status lines, only results and errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Print more detail (-vv for debug logs)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Never draw progress bars or spinners
    #[arg(long, global = true)]
    pub no_progress: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write lackey.toml with your account id and region filled in
    #[command(after_help = "Example:\n  lackey init --region us-east-1")]
    Init(InitArgs),

    /// Print the least-privilege IAM policy the identity running lackey needs
    #[command(
        after_help = "Examples:\n  lackey policy\n  lackey policy --json > lackey-policy.json   the document alone\n  aws iam put-user-policy --user-name me --policy-name lackey --policy-document file://lackey-policy.json"
    )]
    Policy(PolicyArgs),

    /// Print the resolved settings and where each value came from
    #[command(after_help = "Examples:\n  lackey config\n  lackey config --json")]
    Config(ConfigArgs),

    /// Show what `lackey up` would change, changing nothing
    #[command(
        after_help = "Examples:\n  lackey plan\n  lackey plan --detailed-exitcode   exit 2 when changes are pending"
    )]
    Plan(PlanArgs),

    /// Create or update every resource of the stack until it matches lackey.toml
    #[command(
        after_help = "Examples:\n  lackey up\n  lackey up --adopt   take over resources that exist without lackey's tags"
    )]
    Up(UpArgs),

    /// Delete every resource this stack owns, in reverse dependency order
    #[command(
        after_help = "Examples:\n  lackey down\n  lackey down --yes --force   no prompt; empty the bucket and the repository too"
    )]
    Down(DownArgs),

    /// Check each setup phase and print how to fix what fails
    #[command(
        after_help = "Examples:\n  lackey doctor\n  lackey doctor --phase local\n  lackey doctor --e2e   also launch a stub run on Fargate"
    )]
    Doctor(DoctorArgs),

    /// Run a minion on a task, in local Docker or on ECS Fargate
    #[command(
        after_help = "Examples:\n  lackey run \"add a hello world test\"\n  lackey run \"add a hello world test\" --cloud --pr\n  lackey run \"fix the flaky test\" --timeout 600 --follow\n  lackey run \"anything\" --stubs   the whole pipeline without calling the LLM\n  lackey run --cloud --tasks backlog.txt --max-parallel 20   a fleet: one run per line"
    )]
    Run(RunArgs),

    /// List past runs: id, backend, outcome, runtime, branch
    #[command(
        after_help = "Examples:\n  lackey runs\n  lackey runs --json\n  lackey runs --fleet fleet-20261128-190000-ab12 --watch   re-attach to a cloud fleet"
    )]
    Runs(RunsArgs),

    /// Print a run's log
    #[command(
        after_help = "Examples:\n  lackey logs 20261124-143015-7f3a\n  lackey logs 20261124-143015-7f3a --follow"
    )]
    Logs(LogsArgs),

    /// Write a run's report: one self-contained HTML page
    #[command(
        after_help = "Examples:\n  lackey report 20261124-143015-7f3a\n  lackey report 20261124-143015-7f3a --open\n  lackey report 20261124-143015-7f3a --output review.html\n  lackey report --fleet fleet-20261128-190000-ab12   a fleet's runs, each linked to its report"
    )]
    Report(ReportArgs),

    /// Stop a running run, keeping its partial artifacts
    #[command(
        after_help = "Examples:\n  lackey stop 20261124-143015-7f3a\n  lackey stop --fleet fleet-20261128-190000-ab12"
    )]
    Stop(StopArgs),

    /// Manage the stack's secrets in Secrets Manager
    #[command(subcommand)]
    Secret(SecretCommand),

    /// Build the minion image, or push it to ECR
    #[command(subcommand)]
    Image(ImageCommand),

    /// The in-container entrypoint that performs a run (reads its input from the environment)
    #[command(hide = true)]
    Minion(MinionArgs),

    /// A cloud run's credential sidecar: holds the secrets, serves the minion on the
    /// task's loopback (reads its input from the environment)
    #[command(hide = true)]
    Proxy,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Overwrite an existing lackey.toml
    #[arg(long)]
    pub force: bool,

    /// Name of the stack; every resource name derives from it (default `lackey`)
    #[arg(long, value_name = "NAME")]
    pub stack: Option<String>,
}

#[derive(Debug, Args)]
pub struct PolicyArgs {}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Also look up values that come from AWS (account id, subnets, security group id)
    #[arg(long)]
    pub discover: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Exit 0 when there is nothing to do, 2 when changes are pending
    #[arg(long)]
    pub detailed_exitcode: bool,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Tag and manage resources that already exist without lackey's ownership tags
    #[arg(long)]
    pub adopt: bool,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// Do not ask for confirmation
    #[arg(short, long)]
    pub yes: bool,

    /// Empty a non-empty bucket and repository first; delete secrets without recovery
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Phase {
    Local,
    Aws,
    Infra,
    Cloud,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Only these phases (repeatable)
    #[arg(long, value_enum)]
    pub phase: Vec<Phase>,

    /// Also run the `cloud` phase: a stub run on Fargate
    #[arg(long)]
    pub e2e: bool,

    /// The repository the `local/repo` check looks at [env: LACKEY_REPO]
    #[arg(long, value_name = "PATH")]
    pub repo: Option<String>,

    /// The image the `local/image` check looks for [env: LACKEY_IMAGE]
    #[arg(long, value_name = "TAG")]
    pub image: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// What the minion should do
    #[arg(required_unless_present = "tasks", conflicts_with = "tasks")]
    pub task: Option<String>,

    /// Run on ECS Fargate instead of local Docker
    #[arg(long)]
    pub cloud: bool,

    /// Stop the run after this many seconds (outcome `error`)
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,

    /// Run the whole pipeline with stub agents, without calling the LLM [env: LACKEY_STUBS]
    #[arg(long)]
    pub stubs: bool,

    /// Repository: a local path, or OWNER/REPO on GitHub [env: LACKEY_REPO]
    #[arg(long, value_name = "PATH|OWNER/REPO")]
    pub repo: Option<String>,

    /// Minion image [env: LACKEY_IMAGE]
    #[arg(long, value_name = "TAG")]
    pub image: Option<String>,

    /// Blueprint: a name in .lackey/blueprints/ or a path
    #[arg(long, value_name = "NAME")]
    pub blueprint: Option<String>,

    /// Open a pull request after a successful push
    #[arg(long)]
    pub pr: bool,

    /// Work on and push an existing branch, forward only (not the default)
    #[arg(long, value_name = "BRANCH", conflicts_with = "tasks")]
    pub push_to: Option<String>,

    /// Stream the run's log to the terminal
    #[arg(long)]
    pub follow: bool,

    /// Model for the agents [env: LACKEY_MODEL]
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,

    /// A fleet: one run per line of FILE (`-`: stdin), plain text or JSON Lines
    /// {"task", "repo", "blueprint", "model", "timeout"}
    #[arg(long, value_name = "FILE")]
    pub tasks: Option<String>,

    /// Run each task of --tasks N times; a task succeeds when any attempt does
    #[arg(long, value_name = "N", requires = "tasks", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub attempts: Option<u32>,

    /// Runs of --tasks in flight at once [default: 10 on Fargate, else what this machine
    /// can take] [env: LACKEY_MAX_PARALLEL]
    #[arg(long, value_name = "N", requires = "tasks")]
    pub max_parallel: Option<String>,

    /// Launch no more runs of --tasks once finished runs have used N tokens
    #[arg(long, value_name = "N", requires = "tasks", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_tokens: Option<u64>,

    /// Launch no more runs of --tasks once finished runs have cost USD dollars
    #[arg(long, value_name = "USD", requires = "tasks")]
    pub max_cost_usd: Option<f64>,

    /// Resume local fleet FLEET from the same --tasks file: run only what did not finish
    #[arg(
        long,
        value_name = "FLEET",
        requires = "tasks",
        conflicts_with = "cloud"
    )]
    pub resume: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Show at most this many runs, newest first
    #[arg(long, default_value_t = 20)]
    pub limit: usize,

    /// Show one fleet's runs (from its manifest)
    #[arg(long, value_name = "FLEET")]
    pub fleet: Option<String>,

    /// With --fleet: re-attach to a cloud fleet, launch what never launched, collect
    /// what finished, until it is over
    #[arg(long, requires = "fleet")]
    pub watch: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The run id (as printed by `lackey run` and `lackey runs`)
    #[arg(required_unless_present = "fleet", conflicts_with = "fleet")]
    pub run_id: Option<String>,

    /// A fleet's page instead: its runs with outcome and cost, each linked to its report
    #[arg(long, value_name = "FLEET")]
    pub fleet: Option<String>,

    /// Open the page in the default browser once written
    #[arg(long)]
    pub open: bool,

    /// Write the page to FILE instead of report.html beside the run's artifacts
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The run id (as printed by `lackey run` and `lackey runs`)
    pub run_id: String,

    /// Keep printing new lines until the run ends
    #[arg(short, long)]
    pub follow: bool,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// The run id
    #[arg(required_unless_present = "fleet", conflicts_with = "fleet")]
    pub run_id: Option<String>,

    /// Stop every run of a fleet (and launch no more of it)
    #[arg(long, value_name = "FLEET")]
    pub fleet: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Store a secret's value (from stdin unless --from-file); the value is never echoed
    #[command(
        after_help = "Examples:\n  lackey secret put anthropic_api_key < key.txt\n  lackey secret put lackey/github-app-key --from-file app.private-key.pem"
    )]
    Put(SecretPutArgs),
}

#[derive(Debug, Args)]
pub struct SecretPutArgs {
    /// The secret's name (`lackey/anthropic-api-key`) or its key in [secrets] (`anthropic_api_key`)
    pub name: String,

    /// Read the value from this file instead of stdin
    #[arg(long, value_name = "PATH")]
    pub from_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build the minion image from docker/ (or a project image from .lackey/Dockerfile)
    #[command(
        after_help = "Examples:\n  lackey image build                 this machine's lackey on debian:bookworm-slim\n  lackey image build --offline       from a local Debian base, no registry needed\n  lackey image build --from-source   compile in Docker from this source tree\n  lackey image build --project       extend minion-base with the repo's .lackey/Dockerfile"
    )]
    Build(ImageBuildArgs),

    /// Push the minion image to ECR, skipped when the digest is already there
    #[command(after_help = "Example:\n  lackey image push")]
    Push(ImagePushArgs),
}

#[derive(Debug, Args)]
pub struct ImageBuildArgs {
    /// Tag for the image [default: the configured image, minion-base:latest]
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,

    /// Build the project image from the repo's .lackey/Dockerfile on top of the base image
    #[arg(long)]
    pub project: bool,

    /// Build without pulling: a debootstrap base and a lackey binary built on this host
    #[arg(long, conflicts_with_all = ["from_source", "project"])]
    pub offline: bool,

    /// Compile lackey inside Docker from this source tree (docker/Dockerfile)
    #[arg(long, conflicts_with = "project")]
    pub from_source: bool,

    /// Repository whose .lackey/Dockerfile --project uses [env: LACKEY_REPO]
    #[arg(long, value_name = "PATH")]
    pub repo: Option<PathBuf>,

    /// Debian 12 image to build on [default: debian:bookworm-slim; --offline: lackey/debian-base:bookworm]
    #[arg(long, value_name = "IMAGE", conflicts_with = "project")]
    pub base: Option<String>,
}

#[derive(Debug, Args)]
pub struct ImagePushArgs {
    /// Local image to push [default: the configured image]
    #[arg(long, value_name = "TAG")]
    pub image: Option<String>,
}

#[derive(Debug, Args)]
pub struct MinionArgs {
    /// Work on this directory in place instead of cloning (for runs on the host)
    #[arg(long, value_name = "PATH", hide = true)]
    pub workdir: Option<PathBuf>,
}
