//! The lender's side: `GET /api/v1/products` (the products that take new advances) and `GET /api/v1/exposure`
//! (the book, by product, and the caps), and the book's gauges on `/metrics`.

use axum::extract::State;
use axum::Json;
use prometheus::{GaugeVec, IntGaugeVec, Opts, Registry};
use rust_decimal::prelude::ToPrimitive;
use service_kit::ApiResult;

use crate::state::ApiState;
use crate::views::{book_view, caps_view, product_view};
use advances_contract::{ExposureView, ProductList};
use advances_store::exposure::{book, BookLine};
use advances_store::{products, Store};

/// Lists the products that take new advances, by name.
#[utoipa::path(
    get, path = "/api/v1/products", tag = "advances",
    responses((status = 200, description = "The active products", body = ProductList))
)]
pub async fn list_products(State(state): State<ApiState>) -> ApiResult<Json<ProductList>> {
    let active = products::list(state.store.pool(), false).await?;
    Ok(Json(ProductList { products: active.iter().map(product_view).collect() }))
}

/// The lender's book: what open advances owe, in total and by product, what was paid and defaulted, and the
/// exposure caps in force. Exact: kept in the same transaction as every advance's own state.
#[utoipa::path(
    get, path = "/api/v1/exposure", tag = "advances",
    responses((status = 200, description = "The book", body = ExposureView))
)]
pub async fn exposure(State(state): State<ApiState>) -> ApiResult<Json<ExposureView>> {
    let (lines, total) = book(state.store.pool()).await?;
    Ok(Json(ExposureView {
        total: book_view(&total),
        by_product: lines.iter().map(book_view).collect(),
        caps: caps_view(&state.settings.caps),
    }))
}

/// The book on `/metrics`, by product (`""` for advances from before products), refreshed at each scrape.
/// Approximate (floating point) for dashboards; `GET /api/v1/exposure` is exact.
#[derive(Clone)]
pub struct BookGauges {
    open: IntGaugeVec,
    amounts: GaugeVec,
}

impl BookGauges {
    pub fn register(registry: &Registry) -> anyhow::Result<Self> {
        let open = IntGaugeVec::new(
            Opts::new("advances_book_open_advances", "Advances accepted and not closed, by product"),
            &["product"],
        )?;
        let amounts = GaugeVec::new(
            Opts::new(
                "advances_book_amount",
                "The book by product: outstanding, paid, defaulted and written-off amounts",
            ),
            &["product", "kind"],
        )?;
        registry.register(Box::new(open.clone()))?;
        registry.register(Box::new(amounts.clone()))?;
        Ok(Self { open, amounts })
    }

    fn set(&self, lines: &[BookLine]) {
        for line in lines {
            let product = line.product.as_deref().unwrap_or("");
            self.open.with_label_values(&[product]).set(line.open_advances);
            let amounts = [
                ("outstanding", line.outstanding),
                ("paid", line.paid),
                ("defaulted", line.defaulted),
                ("written_off", line.written_off),
            ];
            for (kind, amount) in amounts {
                self.amounts.with_label_values(&[product, kind]).set(amount.to_f64().unwrap_or(f64::NAN));
            }
        }
    }

    /// Reads the book and sets the gauges; a failure leaves the last values (and is logged).
    pub async fn refresh(&self, store: &Store) {
        match book(store.pool()).await {
            Ok((lines, _)) => self.set(&lines),
            Err(error) => tracing::warn!(%error, "reading the book for /metrics failed"),
        }
    }
}
