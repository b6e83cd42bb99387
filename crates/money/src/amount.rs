//! Exact money: parsed from JSON text, never through `f64`.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::decimal;

/// The largest amount one request may move: 1 000 000 000 000.00.
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(0xD4A5_1000, 0xE8, 0, false, 0);

/// Why an amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount is not a decimal number")]
    NotANumber,
    #[error("amount must be greater than zero")]
    NotPositive,
    #[error("amount may have at most 2 decimal places")]
    TooManyDecimals,
    #[error("amount may be at most 1000000000000.00")]
    TooLarge,
}

/// A positive amount of money with at most two decimal places, at most [`MAX_AMOUNT`].
///
/// The only ways to build one are [`Amount::parse`] and [`FromStr`], so holding an `Amount` proves the
/// rules were checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(Decimal);

impl Amount {
    /// Parses the text of a decimal number: plain (`12.30`) or with an exponent (`1.23e1`), exactly as JSON
    /// writes one: no surrounding spaces and no leading `+` (in a string as in a number).
    pub fn parse(text: &str) -> Result<Self, AmountError> {
        // Exponents are accepted because JSON allows them, but the exponent itself is bounded first so
        // that `1e400` is "too large", not a parser overflow, and `1e-400` is "too many decimals".
        let value = match text.find(['e', 'E']) {
            None => parse_plain(text)?,
            Some(at) => {
                let mantissa = parse_plain(&text[..at])?;
                let exponent: i64 = text[at + 1..].parse().map_err(|_| AmountError::NotANumber)?;
                scale_by_power_of_ten(mantissa, exponent)?
            }
        };
        Self::try_from(value)
    }

    /// The exact decimal value.
    pub fn value(self) -> Decimal {
        self.0
    }
}

impl TryFrom<Decimal> for Amount {
    type Error = AmountError;

    fn try_from(value: Decimal) -> Result<Self, AmountError> {
        if value <= Decimal::ZERO {
            return Err(AmountError::NotPositive);
        }
        if value.normalize().scale() > 2 {
            return Err(AmountError::TooManyDecimals);
        }
        if value > MAX_AMOUNT {
            return Err(AmountError::TooLarge);
        }
        Ok(Self(value.normalize()))
    }
}

impl FromStr for Amount {
    type Err = AmountError;

    fn from_str(text: &str) -> Result<Self, AmountError> {
        Self::parse(text)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Parses `[-]digits[.digits]` exactly. Anything else (NaN, Infinity, hex, spaces, a leading `+`) is not a
/// number.
fn parse_plain(text: &str) -> Result<Decimal, AmountError> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
    let well_formed = !int_part.is_empty()
        && int_part.bytes().all(|b| b.is_ascii_digit())
        && frac_part.bytes().all(|b| b.is_ascii_digit())
        && (!digits.contains('.') || !frac_part.is_empty());
    if !well_formed {
        return Err(AmountError::NotANumber);
    }
    // Leading zeros and long fractions are trimmed before the 28-digit `Decimal` sees them, so that
    // `0.10000000000000000000000000000000` is still 0.1 and a 40-digit integer is "too large".
    let int_part = int_part.trim_start_matches('0');
    let frac_part = frac_part.trim_end_matches('0');
    if int_part.len() > 15 {
        return Err(if text.starts_with('-') { AmountError::NotPositive } else { AmountError::TooLarge });
    }
    if frac_part.len() > 13 {
        return Err(AmountError::TooManyDecimals);
    }
    let sign = if text.starts_with('-') { "-" } else { "" };
    let int_part = if int_part.is_empty() { "0" } else { int_part };
    let canonical =
        if frac_part.is_empty() { format!("{sign}{int_part}") } else { format!("{sign}{int_part}.{frac_part}") };
    Decimal::from_str_exact(&canonical).map_err(|_| AmountError::NotANumber)
}

/// Multiplies by 10^exponent exactly, refusing results that cannot be a valid amount anyway.
fn scale_by_power_of_ten(mantissa: Decimal, exponent: i64) -> Result<Decimal, AmountError> {
    if mantissa.is_zero() {
        return Ok(mantissa);
    }
    if mantissa.is_sign_negative() {
        return Err(AmountError::NotPositive);
    }
    if exponent > 15 {
        return Err(AmountError::TooLarge);
    }
    if exponent < -22 {
        return Err(AmountError::TooManyDecimals);
    }
    let factor = Decimal::from_i128_with_scale(10i128.pow(exponent.unsigned_abs() as u32), 0);
    let scaled = if exponent >= 0 { mantissa.checked_mul(factor) } else { mantissa.checked_div(factor) };
    scaled.ok_or(AmountError::TooLarge)
}

/// An amount is written as an exact JSON number (`12.3`), like every decimal of the API.
impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        decimal::serialize(&self.0, serializer)
    }
}

/// An amount is read from a JSON number or a string holding one, exactly, and must obey every rule.
impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        AmountInput::deserialize(deserializer)?.validate().map_err(de::Error::custom)
    }
}

/// An amount as it arrived in a request: the exact text of a JSON number or string, not yet validated.
///
/// Deserializing only checks the JSON *type* (a wrong type is a malformed request, 400); the money rules
/// are applied later by [`AmountInput::validate`] so that their failures are 422.
#[derive(Debug, Clone)]
pub struct AmountInput(String);

impl From<Amount> for AmountInput {
    fn from(amount: Amount) -> Self {
        Self(amount.to_string())
    }
}

impl AmountInput {
    /// Applies the money rules.
    pub fn validate(&self) -> Result<Amount, AmountError> {
        Amount::parse(&self.0)
    }
}

impl<'de> Deserialize<'de> for AmountInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        let text = raw.get();
        match text.as_bytes().first() {
            Some(b'"') => {
                let inner: String = serde_json::from_str(text).map_err(de::Error::custom)?;
                Ok(Self(inner))
            }
            Some(b'-' | b'0'..=b'9') => Ok(Self(text.to_owned())),
            _ => Err(de::Error::invalid_type(de::Unexpected::Other(text), &"a decimal number or a string holding one")),
        }
    }
}

/// Sends the text as a JSON number when it is one (so a request built from an [`Amount`] carries the seed's
/// number), else as a JSON string, which the server reads just the same.
impl Serialize for AmountInput {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match Amount::parse(&self.0) {
            Ok(amount) => amount.serialize(serializer),
            Err(_) => serializer.serialize_str(&self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn spaces_and_a_leading_plus_are_not_numbers() {
        for text in [" 1", "1 ", " 1.00 ", "+1", "+1.50", "\t2", "1\n", "+1e2"] {
            assert_eq!(Amount::parse(text), Err(AmountError::NotANumber), "{text:?}");
        }
        assert_eq!(Amount::parse("1e+2").map(Amount::value), Ok(Decimal::new(100, 0)), "JSON's exponent sign");
    }

    fn amount(text: &str) -> Result<Decimal, AmountError> {
        Amount::parse(text).map(Amount::value)
    }

    fn dec(text: &str) -> Decimal {
        Decimal::from_str_exact(text).expect("test decimal")
    }

    #[test]
    fn a_plain_amount_is_parsed_exactly() {
        assert_eq!(amount("12.3"), Ok(dec("12.3")));
        assert_eq!(amount("0.01"), Ok(dec("0.01")));
        assert_eq!(amount("100"), Ok(dec("100")));
    }

    #[test]
    fn a_value_that_floats_cannot_hold_is_kept_exact() {
        assert_eq!(amount("999999999999.99"), Ok(dec("999999999999.99")));
        assert_eq!(amount("0.10000000000000000000"), Ok(dec("0.1")));
    }

    #[test]
    fn an_amount_with_an_exponent_is_scaled_exactly() {
        assert_eq!(amount("1.23e1"), Ok(dec("12.3")));
        assert_eq!(amount("1E2"), Ok(dec("100")));
        assert_eq!(amount("125e-2"), Ok(dec("1.25")));
    }

    #[test]
    fn zero_is_rejected() {
        assert_eq!(amount("0"), Err(AmountError::NotPositive));
        assert_eq!(amount("0.00"), Err(AmountError::NotPositive));
        assert_eq!(amount("-0"), Err(AmountError::NotPositive));
        assert_eq!(amount("0e10"), Err(AmountError::NotPositive));
    }

    #[test]
    fn a_negative_amount_is_rejected() {
        assert_eq!(amount("-1"), Err(AmountError::NotPositive));
        assert_eq!(amount("-0.01"), Err(AmountError::NotPositive));
        assert_eq!(amount("-1e3"), Err(AmountError::NotPositive));
        assert_eq!(amount("-99999999999999999999999"), Err(AmountError::NotPositive));
    }

    #[test]
    fn an_amount_with_three_decimals_is_rejected() {
        assert_eq!(amount("1.001"), Err(AmountError::TooManyDecimals));
        assert_eq!(amount("1e-3"), Err(AmountError::TooManyDecimals));
        assert_eq!(amount("1e-400"), Err(AmountError::TooManyDecimals));
    }

    #[test]
    fn trailing_zeros_do_not_count_as_decimals() {
        assert_eq!(amount("1.100000"), Ok(dec("1.1")));
    }

    #[test]
    fn the_maximum_is_one_trillion() {
        assert_eq!(MAX_AMOUNT, dec("1000000000000"));
    }

    #[test]
    fn an_amount_above_the_maximum_is_rejected() {
        assert_eq!(amount("1000000000000.00"), Ok(MAX_AMOUNT));
        assert_eq!(amount("1000000000000.01"), Err(AmountError::TooLarge));
        assert_eq!(amount("1e400"), Err(AmountError::TooLarge));
        assert_eq!(amount("123456789012345678901234567890"), Err(AmountError::TooLarge));
    }

    #[test]
    fn text_that_is_not_a_number_is_rejected() {
        for text in
            ["", "NaN", "nan", "Infinity", "-Infinity", "1.", ".5", "1,5", "0x10", "1e", "1e+", "--1", "12a", "1 2"]
        {
            assert_eq!(amount(text), Err(AmountError::NotANumber), "{text:?}");
        }
    }

    #[test]
    fn a_json_number_or_string_is_accepted_and_other_types_are_not() {
        let parse = |json: &str| serde_json::from_str::<AmountInput>(json).map(|input| input.validate());
        assert_eq!(parse("12.3").expect("number"), Ok(Amount(dec("12.3"))));
        assert_eq!(parse("\"12.30\"").expect("string"), Ok(Amount(dec("12.3"))));
        assert_eq!(parse("1e400").expect("huge number is still a JSON number"), Err(AmountError::TooLarge));
        assert_eq!(parse("\"NaN\"").expect("string"), Err(AmountError::NotANumber));
        for wrong_type in ["true", "null", "[1]", "{\"a\":1}"] {
            assert!(parse(wrong_type).is_err(), "{wrong_type}");
        }
    }

    #[test]
    fn an_amount_goes_out_as_an_exact_number_and_comes_back_the_same() {
        let amount = Amount::parse("999999999999.99").expect("valid");
        let json = serde_json::to_string(&amount).expect("serialize");
        assert_eq!(json, "999999999999.99");
        assert_eq!(serde_json::from_str::<Amount>(&json).expect("deserialize"), amount);
        assert_eq!(serde_json::from_str::<Amount>("\"0.10\"").expect("string"), Amount(dec("0.1")));
    }

    #[test]
    fn an_amount_that_breaks_a_rule_does_not_deserialize() {
        for json in ["0", "-1", "1.001", "1000000000000.01", "\"NaN\"", "true"] {
            assert!(serde_json::from_str::<Amount>(json).is_err(), "{json}");
        }
    }

    #[test]
    fn an_input_built_from_an_amount_is_sent_as_a_number_and_other_text_as_a_string() {
        let input = AmountInput::from(Amount::parse("12.30").expect("valid"));
        assert_eq!(serde_json::to_string(&input).expect("serialize"), "12.3");
        let odd: AmountInput = serde_json::from_str("\"abc\"").expect("a string is an input");
        assert_eq!(serde_json::to_string(&odd).expect("serialize"), "\"abc\"");
    }

    proptest! {
        #[test]
        fn every_valid_cent_amount_round_trips(cents in 1i64..=100_000_000_000_000i64) {
            let value = Decimal::new(cents, 2);
            let parsed = Amount::parse(&value.to_string()).expect("valid amount");
            prop_assert_eq!(parsed.value(), value.normalize());
            let parsed = Amount::parse(&format!("{cents}e-2")).expect("valid amount with exponent");
            prop_assert_eq!(parsed.value(), value.normalize());
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(text in ".{0,40}") {
            let _ = Amount::parse(&text);
        }

        /// Every text a decimal parser reads is accepted exactly when its value obeys the three rules, and
        /// then with that value: checked against `rust_decimal`'s own scientific parser as the oracle.
        #[test]
        fn an_amount_is_accepted_exactly_when_it_obeys_every_rule(
            text in "-?[0-9]{1,16}(\\.[0-9]{1,4})?([eE][-+]?[0-9])?"
        ) {
            let oracle = if text.contains(['e', 'E']) { Decimal::from_scientific(&text) } else { text.parse() };
            let oracle = oracle.expect("the oracle reads every such text");
            let valid = oracle > Decimal::ZERO && oracle.normalize().scale() <= 2 && oracle <= MAX_AMOUNT;
            let parsed = Amount::parse(&text);
            prop_assert_eq!(parsed.is_ok(), valid, "{} (oracle {})", text, oracle);
            if valid {
                prop_assert_eq!(parsed.map(Amount::value), Ok(oracle.normalize()));
            }
        }
    }
}
