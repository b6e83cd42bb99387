//! The OpenAPI document of every endpoint, generated from the handlers' annotations.

use service_kit::openapi::{BearerAuth, CommonResponses};
use utoipa::OpenApi;

use crate::routes::{accounts, holds, reports, statements, system, transactions};

/// The accounts-service API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "accounts-service",
        description = "The ledger: accounts, atomic transfers that never overdraw, bank transactions, and a \
                       paged transaction report read from one snapshot, and every account's own book (statements with the \
                       balance after each transaction, and the balance at any time), and holds that reserve money until they are \
                       captured, voided or expire. Money is exact decimal: send amounts as \
                       JSON numbers or strings; they come back as JSON numbers with their exact value. \
                       Errors are `{\"error\":{\"code\",\"message\"}}`."
    ),
    paths(
        accounts::create_account,
        accounts::get_account,
        statements::statement,
        statements::export_statement,
        transactions::create_transfer,
        transactions::create_bank_transaction,
        transactions::transactions_by_key,
        transactions::transactions_by_keys,
        holds::place_hold,
        holds::capture_hold,
        holds::void_hold,
        holds::get_hold,
        reports::list_transactions,
        reports::export_transactions,
        system::health,
        system::metrics,
    ),
    modifiers(&BearerAuth, &CommonResponses),
    security(("bearer" = [])),
    tags(
        (name = "accounts", description = "Accounts, balances and statements"),
        (name = "transactions", description = "Moving money"),
        (name = "holds", description = "Reserving money, then capturing or releasing it"),
        (name = "reports", description = "The last 5 days of transactions"),
        (name = "system", description = "Health and metrics (no token needed)"),
    )
)]
pub struct ApiDoc;

/// The whole document: the ledger's own paths and the event feed's and webhooks' (the `events` crate's).
pub fn document() -> utoipa::openapi::OpenApi {
    let mut document = ApiDoc::openapi();
    document.merge(events::routes::EventsApi::openapi());
    document
}
