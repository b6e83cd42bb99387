//! The advances API's OpenAPI document, served at `/api/v1/openapi.json` and rendered at `/docs/`.

use service_kit::openapi::{BearerAuth, CommonResponses};
use utoipa::OpenApi;

use crate::routes::{advances, alerts, book, commands, servicing, system};

/// The advances API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "advances-api",
        description = "Advances repaid in weekly payments, each advance a durable Temporal workflow. Money is exact \
                       decimal: send amounts as JSON numbers or strings; they come back as JSON numbers with their \
                       exact value. Errors are `{\"error\":{\"code\",\"message\"}}`."
    ),
    paths(
        advances::create_advance, advances::list_advances, advances::get_advance, commands::cancel_advance,
        commands::pay_off_advance, commands::pause_advance, commands::resume_advance, servicing::reschedule_advance, servicing::prepay_advance,
        servicing::write_off_advance, servicing::payoff_quote, alerts::list_alerts, book::list_products, book::exposure,
        system::health, system::metrics
    ),
    modifiers(&BearerAuth, &CommonResponses),
    security(("bearer" = [])),
    tags(
        (name = "advances", description = "Advances, their payments, operator commands and alerts"),
        (name = "system", description = "Health and metrics (no token needed)"),
    )
)]
pub struct ApiDoc;

/// The whole document: the advances API's own paths and the event feed's and webhooks' (the `events` crate's).
pub fn document() -> utoipa::openapi::OpenApi {
    let mut document = ApiDoc::openapi();
    document.merge(events::routes::EventsApi::openapi());
    document
}
