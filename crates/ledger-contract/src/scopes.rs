//! The ledger's scopes: what a client's credential allows. A request needs the scope of its operation.

/// `GET /accounts/{id}` (with its statement), `GET /holds/{id}` and `GET /transactions/by_key` (the caller's own
/// transactions).
pub const ACCOUNTS_READ: &str = "accounts:read";
/// `POST /accounts`.
pub const ACCOUNTS_WRITE: &str = "accounts:write";
/// `POST /transaction`: money between two accounts; `POST /holds` and a hold's capture (to an account) and void.
pub const TRANSFERS_WRITE: &str = "transfers:write";
/// `POST /bank_transactions`: money created or destroyed at the bank's side, and a hold's capture to the bank.
/// Only the advances worker holds it.
pub const BANK_WRITE: &str = "bank:write";
/// `GET /transactions` and `GET /transactions/export`: every account's transactions.
pub const REPORTS_READ: &str = "reports:read";

/// `GET /events`: every change in the ledger, in order.
pub const EVENTS_READ: &str = "events:read";
/// `/webhooks`: the client's own endpoints, which receive the events `events:read` shows.
pub const WEBHOOKS_MANAGE: &str = "webhooks:manage";

/// The prefix of the ledger's tokens (`ledger_…`), so a leaked token says where it belongs.
pub const TOKEN_PREFIX: &str = "ledger";

/// Every ledger scope.
pub const ALL: [&str; 7] =
    [ACCOUNTS_READ, ACCOUNTS_WRITE, TRANSFERS_WRITE, BANK_WRITE, REPORTS_READ, EVENTS_READ, WEBHOOKS_MANAGE];
