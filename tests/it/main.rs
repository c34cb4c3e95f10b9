//! The one integration-test binary: every test that runs the `lackey` binary or talks
//! to a local stand-in (moto, Docker, the fake LLM and GitHub) lives in a module here.

// The whole crate is test code: its harness (tests/support) fails a test by panicking and
// says what it skips on stderr. clippy.toml's allow-*-in-tests covers #[test] functions
// only, not the helpers around them.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "test code: a panic is a test failure, and stdout/stderr are the test log"
)]

#[path = "../support/mod.rs"]
mod support;

mod bench;
mod blueprints;
mod cli;
mod cloud;
mod doctor;
mod fleet;
mod iam;
mod image;
mod latency;
mod local;
mod minion;
mod report;
mod sandbox;
mod sandbox_cloud;
mod sandbox_net;
mod stack;
