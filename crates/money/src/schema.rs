//! How money looks in an OpenAPI document.

use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;

/// Money in a response: a JSON number holding the exact decimal value.
pub fn money() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Number)
        .description(Some("Exact decimal amount, at most 2 decimal places"))
        .examples([serde_json::json!(12.3)])
        .build()
        .into()
}

/// Money in a request: a JSON number or a string holding one, parsed exactly.
pub fn money_input() -> Schema {
    OneOfBuilder::new()
        .item(RefOr::T(
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .exclusive_minimum(Some(0.0))
                .maximum(Some(1_000_000_000_000.0))
                .build()
                .into(),
        ))
        .item(RefOr::T(
            ObjectBuilder::new().schema_type(Type::String).pattern(Some(r"^\+?[0-9]+(\.[0-9]{1,2})?$")).build().into(),
        ))
        .description(Some("Greater than 0, at most 2 decimal places, at most 1000000000000.00"))
        .examples([serde_json::json!(12.3)])
        .build()
        .into()
}
