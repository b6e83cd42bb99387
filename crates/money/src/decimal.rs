//! Decimals on the wire: exact JSON numbers out, JSON numbers or strings in, never through `f64`.
//!
//! Use with `#[serde(with = "money::decimal")]` (or [`option`] for an `Option<Decimal>`).

use rust_decimal::Decimal;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

/// Writes a decimal as a JSON *number* with its exact value (no float rounding on the way out).
pub fn serialize<S: Serializer>(value: &Decimal, serializer: S) -> Result<S::Ok, S::Error> {
    let raw = RawValue::from_string(value.normalize().to_string()).map_err(serde::ser::Error::custom)?;
    raw.serialize(serializer)
}

/// Reads a JSON number, or a string holding one, from its text: exactly the digits that were sent.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
    let raw = Box::<RawValue>::deserialize(deserializer)?;
    let text = raw.get();
    let text = match text.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<String>(text).map_err(de::Error::custom)?,
        _ => text.to_owned(),
    };
    let parsed = if text.contains(['e', 'E']) { Decimal::from_scientific(&text) } else { text.parse() };
    parsed.map_err(|error| de::Error::custom(format!("{text:?} is not an exact decimal: {error}")))
}

/// The same wire format for an optional decimal (`null` when absent).
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Option<Decimal>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => super::serialize(value, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Decimal>, D::Error> {
        #[derive(Deserialize)]
        struct Exact(#[serde(with = "super")] Decimal);
        Ok(Option::<Exact>::deserialize(deserializer)?.map(|Exact(value)| value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Money {
        #[serde(with = "crate::decimal")]
        value: Decimal,
        #[serde(with = "crate::decimal::option", default)]
        maybe: Option<Decimal>,
    }

    fn dec(text: &str) -> Decimal {
        Decimal::from_str_exact(text).expect("test decimal")
    }

    #[test]
    fn a_decimal_is_written_as_an_exact_json_number() {
        let json = serde_json::to_string(&Money { value: dec("999999999999.99"), maybe: None }).expect("serialize");
        assert_eq!(json, r#"{"value":999999999999.99,"maybe":null}"#);
        let json = serde_json::to_string(&Money { value: dec("0.00"), maybe: Some(dec("1.50")) }).expect("serialize");
        assert_eq!(json, r#"{"value":0,"maybe":1.5}"#);
    }

    #[test]
    fn a_decimal_is_read_exactly_from_a_number_or_a_string() {
        let read = |json: &str| serde_json::from_str::<Money>(json).map(|money| (money.value, money.maybe));
        assert_eq!(read(r#"{"value":0.1}"#).expect("number"), (dec("0.1"), None));
        assert_eq!(
            read(r#"{"value":"12345678901234.56","maybe":"7"}"#).expect("string"),
            (dec("12345678901234.56"), Some(dec("7")))
        );
        assert_eq!(read(r#"{"value":1.25e2}"#).expect("exponent"), (dec("125"), None));
        assert!(read(r#"{"value":"twelve"}"#).is_err());
        assert!(read(r#"{"value":true}"#).is_err());
    }
}
