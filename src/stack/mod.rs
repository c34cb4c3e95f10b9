//! The stack: the AWS resources of the deployment guide's Phases 2–3, reconciled.

pub mod network;

pub use network::discover;
