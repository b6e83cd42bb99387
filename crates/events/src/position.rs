//! An event's position: where it stands in the one order every reader sees.
//!
//! The order is `(xid, seq)`: the 64-bit id of the database transaction that wrote the event (`xid8`), then the
//! event's number within the sequence. Transactions commit in any order, but PostgreSQL can say which of them
//! may still commit: none below the `xmin` of a fresh snapshot. So a reader that returns only events below that
//! `xmin`, in `(xid, seq)` order, never returns an event after one that commits later ([`crate::feed`]).
//!
//! On the wire a position is 32 lowercase hex digits (`xid` then `seq`, 16 each): opaque to clients, though
//! positions compare as strings in the same order.

use std::fmt;
use std::str::FromStr;

/// An event's place in the feed's order; also the cursor a consumer resumes after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    pub xid: u64,
    pub seq: u64,
}

impl Position {
    /// Before every event.
    pub const START: Self = Self { xid: 0, seq: 0 };

    /// From the database's columns (`xid8` read as text, `bigint`).
    pub fn from_columns(xid: &str, seq: i64) -> Result<Self, BadPosition> {
        let xid = xid.parse().map_err(|_| BadPosition)?;
        let seq = u64::try_from(seq).map_err(|_| BadPosition)?;
        Ok(Self { xid, seq })
    }

    /// The `xid8` column's value, as text (sqlx has no type for `xid8`; SQL casts `$1::text::xid8`).
    pub fn xid_text(&self) -> String {
        self.xid.to_string()
    }

    /// The `seq` column's value.
    pub fn seq_column(&self) -> i64 {
        // Written by a sequence of `bigint`, so it always fits; a position parsed from a cursor may not.
        i64::try_from(self.seq).unwrap_or(i64::MAX)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}{:016x}", self.xid, self.seq)
    }
}

/// A cursor that is not a position this service wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a cursor is 32 lowercase hex digits, as returned in `position` or `next_cursor`")]
pub struct BadPosition;

impl FromStr for Position {
    type Err = BadPosition;

    fn from_str(text: &str) -> Result<Self, BadPosition> {
        let lower_hex = text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if text.len() != 32 || !lower_hex {
            return Err(BadPosition);
        }
        let xid = u64::from_str_radix(&text[..16], 16).map_err(|_| BadPosition)?;
        let seq = u64::from_str_radix(&text[16..], 16).map_err(|_| BadPosition)?;
        if seq > i64::MAX as u64 {
            return Err(BadPosition);
        }
        Ok(Self { xid, seq })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_reads_back_what_it_writes() {
        let position = Position { xid: 0x1234_5678_9abc, seq: 42 };
        let text = position.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(text.parse(), Ok(position));
        assert_eq!(Position::START.to_string(), "0".repeat(32));
    }

    #[test]
    fn positions_compare_as_their_text_does() {
        let positions = [
            Position { xid: 1, seq: 900 },
            Position { xid: 2, seq: 3 },
            Position { xid: 2, seq: 17 },
            Position { xid: 0x100, seq: 1 },
        ];
        for pair in positions.windows(2) {
            assert!(pair[0] < pair[1]);
            assert!(pair[0].to_string() < pair[1].to_string());
        }
    }

    #[test]
    fn a_cursor_that_is_not_32_lowercase_hex_digits_is_refused() {
        for text in [
            "",
            "abc",
            &"0".repeat(31),
            &"A".repeat(32),
            &"g".repeat(32),
            &format!("{}{}", "0".repeat(16), "f".repeat(16)),
        ] {
            assert_eq!(text.parse::<Position>(), Err(BadPosition), "{text:?}");
        }
    }
}
