//! Domain rules with no I/O. Money itself is the `money` crate's; the ledger's own rule is the transfer.

pub mod transfer;
