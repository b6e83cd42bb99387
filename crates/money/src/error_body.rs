//! The error envelope every service of ours answers with: `{"error":{"code","message"}}`.
//!
//! It is a wire format like amounts and timestamps: the services write it (through `service-kit`) and clients
//! read it (the ledger's typed client), both from this one definition.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The JSON body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// A stable machine-readable `code` and a human-readable `message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    #[schema(example = "insufficient_funds")]
    pub code: String,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { error: ErrorDetail { code: code.into(), message: message.into() } }
    }
}
