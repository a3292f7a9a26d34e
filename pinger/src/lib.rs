//! The ping client: sends a steady, open-loop stream of pings to the target
//! service and records what its users would experience.

pub mod app;
pub mod config;
pub mod schedule;
