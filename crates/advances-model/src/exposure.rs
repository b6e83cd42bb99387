//! What an advance adds to the lender's book: the store keeps these figures beside each advance's state, and
//! the book's totals follow them in the same transaction.

use rust_decimal::Decimal;

use crate::advance::Advance;
use crate::status::AdvanceStatus;

/// One advance's part of the book.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exposure {
    /// Accepted and not closed (granting or active, paused included).
    pub open: bool,
    /// What the bank still expects back: the amount less what was paid, while open; nothing once closed.
    pub outstanding: Decimal,
    /// Collected so far.
    pub paid: Decimal,
    /// What was outstanding when it defaulted.
    pub defaulted: Decimal,
    /// What an operator wrote off.
    pub written_off: Decimal,
}

impl Advance {
    /// This advance's part of the book.
    pub fn exposure(&self) -> Exposure {
        let paid = self.paid_amount();
        let unpaid = self.terms.amount - paid - self.written_off;
        let open = self.status.is_open();
        Exposure {
            open,
            outstanding: if open { unpaid } else { Decimal::ZERO },
            paid,
            defaulted: if self.status == AdvanceStatus::Defaulted { unpaid } else { Decimal::ZERO },
            written_off: self.written_off,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{collect, dec, granted, terms};

    #[test]
    fn an_advance_counts_from_its_acceptance_until_it_closes() {
        let accepted = Advance::new(terms("120"));
        assert_eq!(
            accepted.exposure(),
            Exposure {
                open: true,
                outstanding: dec("120"),
                paid: Decimal::ZERO,
                defaulted: Decimal::ZERO,
                written_off: Decimal::ZERO
            }
        );
        let mut advance = granted("120");
        collect(&mut advance, true);
        assert_eq!((advance.exposure().outstanding, advance.exposure().paid), (dec("110"), dec("10")));
        collect(&mut advance, false);
        assert_eq!(advance.exposure().outstanding, dec("110"), "a failed payment rolls over: still owed");
        advance.cancel("stop").ok();
        assert_eq!(
            advance.exposure(),
            Exposure {
                open: false,
                outstanding: Decimal::ZERO,
                paid: dec("10"),
                defaulted: Decimal::ZERO,
                written_off: Decimal::ZERO
            }
        );
    }

    #[test]
    fn a_default_moves_what_was_outstanding_to_defaulted() {
        let mut advance = granted("120");
        collect(&mut advance, true);
        while advance.status == AdvanceStatus::Active {
            collect(&mut advance, false);
        }
        assert_eq!(advance.status, AdvanceStatus::Defaulted);
        let exposure = advance.exposure();
        assert_eq!((exposure.open, exposure.outstanding, exposure.defaulted), (false, Decimal::ZERO, dec("110")));
    }
}
