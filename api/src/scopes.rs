//! The advances-api's scopes: what a client's credential allows.

/// `GET /advances`, `GET /advances/{id}`, `GET /products`.
pub const ADVANCES_READ: &str = "advances:read";
/// `POST /advances`: grant an advance (money leaves the bank).
pub const ADVANCES_WRITE: &str = "advances:write";
/// `POST /advances/{id}/cancel`, `/pay_off`, `/pause`, `/resume`, `/reschedule`, `/prepay`, `/write_off`, and
/// `GET /advances/{id}/payoff_quote`.
pub const ADVANCES_OPERATE: &str = "advances:operate";
/// `GET /alerts`.
pub const ALERTS_READ: &str = "alerts:read";
/// `GET /exposure`: the whole book's figures (risk and finance, not a lending front end).
pub const ADVANCES_REPORT: &str = "advances:report";

/// `GET /events`: every change of every advance, in order.
pub const EVENTS_READ: &str = events::EVENTS_READ;
/// `/webhooks`: the client's own endpoints, which receive the events `events:read` shows.
pub const WEBHOOKS_MANAGE: &str = events::WEBHOOKS_MANAGE;

/// The prefix of the advances-api's tokens (`advances_…`).
pub const TOKEN_PREFIX: &str = "advances";

/// Every advances scope.
pub const ALL: [&str; 7] =
    [ADVANCES_READ, ADVANCES_WRITE, ADVANCES_OPERATE, ALERTS_READ, ADVANCES_REPORT, EVENTS_READ, WEBHOOKS_MANAGE];
