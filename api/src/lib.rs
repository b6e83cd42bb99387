//! The `advances-api`: start, inspect and command advances over REST ([`rest`]).
//!
//! The worker that runs the workflows is another process (`advances-worker`, in `activities/`); the API starts
//! and queries workflows through Temporal and reads the `advances` database through `advances-store`.

pub mod config;
pub mod rest;
pub mod scopes;
pub mod views;
