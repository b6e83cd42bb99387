//! Alerts: an ERROR log line, a counter and a row in `alerts`, once per distinct alert.

use advances_model::Alert;
use temporalio_sdk::activities::ActivityError;

use crate::{retryable, Activities};

impl Activities {
    /// Logs, counts and stores an alert (for an activity: a database error is retryable).
    pub async fn alert(&self, alert: &Alert) -> Result<(), ActivityError> {
        self.raise(alert).await.map_err(retryable)
    }

    /// Logs, counts and stores an alert, once per distinct alert.
    pub(crate) async fn raise(&self, alert: &Alert) -> sqlx::Result<()> {
        let advance_id = alert.advance_id.map(|id| id.to_string()).unwrap_or_default();
        if self.store.insert_alert(alert).await? {
            tracing::error!(advance_id, kind = %alert.kind, "ALERT: {}", alert.message);
            self.metrics.alerts.with_label_values(&[alert.kind.as_str()]).inc();
        }
        Ok(())
    }
}
