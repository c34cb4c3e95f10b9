//! The one integration-test binary: every test that runs the `lackey` binary or talks
//! to a local stand-in (moto, Docker, the fake LLM and GitHub) lives in a module here.

#[path = "../support/mod.rs"]
mod support;

mod bench;
mod blueprints;
mod cli;
mod cloud;
mod doctor;
mod fleet;
mod image;
mod local;
mod minion;
mod report;
mod sandbox;
mod sandbox_net;
mod stack;
