//! Timestamps: the seed's `YYYY-MM-DD HH:MM:SS.mmm` (UTC) out, that or RFC 3339 in.
//!
//! Use with `#[serde(with = "money::timestamp")]` (or [`option`] for an `Option<DateTime<Utc>>`).

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer, Serializer};

const SEED_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.3f";

/// Formats a timestamp the way the seed's API shows it: UTC, millisecond precision, no zone suffix.
pub fn format_timestamp(at: DateTime<Utc>) -> String {
    at.format(SEED_FORMAT).to_string()
}

/// Writes a timestamp in the seed's format ([`format_timestamp`]).
pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_timestamp(*at))
}

/// Reads a timestamp in either accepted format ([`parse_timestamp`]).
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_timestamp(&text).map_err(serde::de::Error::custom)
}

/// The same wire format for an optional timestamp (`null` when absent).
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(at: &Option<DateTime<Utc>>, serializer: S) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => super::serialize(at, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|text| parse_timestamp(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Parses `YYYY-MM-DD HH:MM:SS[.fff]` (taken as UTC) or an RFC 3339 timestamp with any offset.
pub fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, TimestampError> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .map(|naive| naive.and_utc())
        .map_err(|_| TimestampError(text.chars().take(64).collect()))
}

/// A timestamp that is in neither accepted format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a timestamp: use 'YYYY-MM-DD HH:MM:SS.mmm' (UTC) or RFC 3339")]
pub struct TimestampError(String);

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    #[test]
    fn the_seed_format_is_read_as_utc() {
        let at = parse_timestamp("2023-07-11 12:01:27.053").expect("seed format");
        assert_eq!(at, Utc.with_ymd_and_hms(2023, 7, 11, 12, 1, 27).unwrap() + chrono::Duration::milliseconds(53));
        assert!(parse_timestamp("2023-07-11 12:01:27").is_ok());
    }

    #[test]
    fn rfc3339_with_an_offset_is_converted_to_utc() {
        let at = parse_timestamp("2023-07-11T14:01:27.053+02:00").expect("rfc3339");
        assert_eq!(format_timestamp(at), "2023-07-11 12:01:27.053");
        assert!(parse_timestamp("2023-07-11T12:01:27Z").is_ok());
    }

    #[test]
    fn other_text_is_rejected() {
        for text in ["", "yesterday", "2023-07-11", "2023-13-11 12:00:00", "2023-07-11 25:00:00", "1689076887"] {
            assert!(parse_timestamp(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn output_has_exactly_millisecond_precision() {
        let at = Utc.with_ymd_and_hms(2023, 7, 11, 12, 1, 27).unwrap() + chrono::Duration::microseconds(53_999);
        assert_eq!(format_timestamp(at), "2023-07-11 12:01:27.053");
    }

    proptest! {
        #[test]
        fn a_formatted_timestamp_parses_back_to_the_same_millisecond(ms in 0i64..4_102_444_800_000i64) {
            let at = DateTime::from_timestamp_millis(ms).expect("in range");
            prop_assert_eq!(parse_timestamp(&format_timestamp(at)), Ok(at));
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(text in ".{0,40}") {
            let _ = parse_timestamp(&text);
        }
    }
}
