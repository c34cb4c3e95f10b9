//! lackey: run an autonomous coding agent (a *minion*) against a git repository in a
//! container, locally in Docker or on AWS ECS Fargate, and provision, verify and tear
//! down the AWS stack it needs.
//!
//! The map, by folder:
//!
//! * [`cli`]: the command-line surface (clap definitions only).
//! * [`commands`]: one file per command; arguments → [`config::Settings`] → library call.
//! * [`config`]: `lackey.toml`, environment and `.env`, precedence, validation.
//! * [`output`]: the printer (stdout results, stderr status), progress, JSON.
//! * [`aws`]: one `SdkConfig`, the clients, SDK error rendering.
//! * [`stack`]: the reconciler behind `plan`, `up` and `down`.
//! * [`runner`]: the host side of a run: the `Backend` trait and its Docker and ECS
//!   implementations, the run directory, the host-side summary, fetch-back.
//! * [`run_contract`]: the environment the host gives the minion, typed, both ways.
//! * [`ownership`]: the tags and `startedBy` that mark what lackey owns in AWS.
//! * [`image`]: building the minion image; [`rundir`]: no-follow access to run directories.
//! * [`minion`]: the run inside the container: blueprint, agents, tools, git, artifacts.
//! * [`cloud`]: the cloud building blocks (S3 artifacts, ECR, secrets).
//! * [`proxy`]: the credential proxy: the only holder of a run's keys and tokens, and its
//!   policy (which requests, which ref).
//! * [`github`]: GitHub App tokens, repositories and pull requests.
//! * [`summary`]: `run_summary.json`, shared by the minion and the host.
//! * [`cost`]: the price table and what a run cost; [`report`]: the run's HTML page.
//! * [`fleet`]: many runs from one command: the tasks file, the scheduler, the manifest.
//! * [`doctor`]: every setup phase checked, with a fix per failure.
//! * [`error`]: errors that carry their exit code and their fix.

pub mod aws;
pub mod cli;
pub mod cloud;
pub mod commands;
pub(crate) mod config;
pub mod cost;
pub(crate) mod doctor;
pub(crate) mod error;
pub mod fleet;
pub mod github;
pub mod image;
pub mod minion;
pub mod output;
pub(crate) mod ownership;
pub mod proxy;
pub mod report;
pub(crate) mod run_contract;
pub(crate) mod rundir;
pub mod runner;
pub(crate) mod stack;
pub mod summary;
