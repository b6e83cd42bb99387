//! The advances service: `advances-api` (REST, [`rest`]) and `advances-worker` (Temporal worker, [`worker`]).

pub mod config;
pub mod rest;
pub mod temporal;
pub mod views;
pub mod worker;
