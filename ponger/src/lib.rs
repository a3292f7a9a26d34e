//! The pong server: answers `GET /ping` after an injected delay, with an
//! injected chance of failure, as configured by a [`profile::Profile`].

pub mod app;
pub mod config;
pub mod profile;
pub mod shutdown;
