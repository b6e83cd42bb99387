//! The advances API's answers built from the model: its JSON shapes are `advances-contract`'s.

use advances_contract::{AdvanceState, AdvanceView, AlertView, BookView, CapsView, ProductView};
use advances_model::Advance;
use advances_store::exposure::BookLine;
use advances_store::products::StoredProduct;
use advances_store::{AlertRow, Caps};

/// An advance as the API shows it (the contract's conversion, which the events use too).
pub fn advance_view(advance: &Advance) -> AdvanceView {
    AdvanceView::from(advance)
}

/// An open advance whose workflow is not running; `temporal_says` is what Temporal says of it.
pub fn not_running_view(advance: &Advance, temporal_says: &str) -> AdvanceView {
    let mut view = advance_view(advance);
    view.status = AdvanceState::WorkflowNotRunning;
    view.status_reason = Some(format!(
        "the database says {}, but the advance's workflow is not running (Temporal says {temporal_says}): \
         nothing collects it until an operator acts",
        advance.status.as_str()
    ));
    view
}

/// A stored alert as the API shows it.
pub fn alert_view(row: AlertRow) -> AlertView {
    AlertView {
        alert_id: row.id,
        advance_id: row.advance_id,
        kind: row.kind,
        message: row.message,
        created_at: row.created_at,
    }
}

/// A product as the API shows it.
pub fn product_view(stored: &StoredProduct) -> ProductView {
    let product = &stored.product;
    ProductView {
        name: product.name.clone(),
        payments: product.payments,
        interval_ms: product.interval_ms,
        min_amount: product.min_amount,
        max_amount: product.max_amount,
        max_failed_extra_payments: product.max_failed_extra_payments,
        created_at: stored.created_at,
    }
}

/// A line of the book as the API shows it.
pub fn book_view(line: &BookLine) -> BookView {
    BookView {
        product: line.product.clone(),
        open_advances: line.open_advances,
        outstanding: line.outstanding,
        paid: line.paid,
        defaulted: line.defaulted,
        written_off: line.written_off,
    }
}

/// The caps in force.
pub fn caps_view(caps: &Caps) -> CapsView {
    CapsView {
        max_outstanding_per_account: caps.outstanding_per_account,
        max_open_advances_per_account: caps.open_per_account,
        max_outstanding_total: caps.outstanding_total,
    }
}
