//! Webhooks: each client's endpoints, and deliveries of the feed's events to them, signed as the Standard
//! Webhooks specification says, at least once, retried for days.

pub mod address;
pub mod deliver;
pub mod sign;
pub mod store;
