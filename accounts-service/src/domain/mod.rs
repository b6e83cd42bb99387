//! Domain rules with no I/O: money, time, and the transfer rule.

pub mod money;
pub mod time;
pub mod transfer;
