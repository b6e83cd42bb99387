//! PostgreSQL's SQLSTATE codes the services act on, by name (PostgreSQL's Appendix A), and a reader of an
//! error's code.

/// `serialization_failure`: the whole database transaction may be run again.
pub const SERIALIZATION_FAILURE: &str = "40001";
/// `deadlock_detected`: the whole database transaction may be run again.
pub const DEADLOCK_DETECTED: &str = "40P01";
/// `lock_not_available`: a `lock_timeout` expired.
pub const LOCK_NOT_AVAILABLE: &str = "55P03";
/// `query_canceled`: a `statement_timeout` expired (or the statement was cancelled).
pub const QUERY_CANCELED: &str = "57014";

/// The SQLSTATE of a database error, if it is one.
pub fn of(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(db) => db.code().map(|code| code.into_owned()),
        _ => None,
    }
}

/// True for errors after which the whole database transaction may simply be run again.
pub fn is_retryable(error: &sqlx::Error) -> bool {
    matches!(of(error).as_deref(), Some(SERIALIZATION_FAILURE | DEADLOCK_DETECTED))
}
