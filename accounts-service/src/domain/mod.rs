//! Domain rules with no I/O. Money itself is the `money` crate's; the ledger's own rules are the transfer and
//! the report's window.

pub mod book;
pub mod transfer;

use sha2::{Digest, Sha256};

/// How far back the report may reach, in days (the seed's "last 5 days"); rows stay hot at least this long.
pub const REPORT_WINDOW_DAYS: i64 = 5;

/// A fingerprint of what a request asks for (route and normalized fields), to tell a replay from misuse of its
/// Idempotency-Key.
pub fn fingerprint(parts: &[&str]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_do_not_collide_by_concatenation() {
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
        assert_eq!(fingerprint(&["a", "b"]), fingerprint(&["a", "b"]));
    }
}
