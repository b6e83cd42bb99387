//! The events' settings, the same variables in both services.

use std::time::Duration;

use anyhow::bail;
use service_kit::settings::{parse_duration, Env};

/// The retry schedule's default: the waits after each failed attempt (Svix's, lengthened to last over three
/// days: about 77 hours from the first attempt to the last).
pub const DEFAULT_RETRY_SCHEDULE: &str = "5s,5m,30m,2h,5h,10h,10h,10h,10h,10h,10h,10h";

/// Three days: how long a default schedule must keep trying.
const THREE_DAYS: Duration = Duration::from_secs(3 * 24 * 3600);

#[derive(Debug, Clone)]
pub struct EventSettings {
    /// How long events are kept (`EVENT_RETENTION`, 30 days); a cursor older than that is refused with 410.
    pub retention: Duration,
    /// How often the feed's head is read while a request long-polls (`EVENT_POLL_INTERVAL`).
    pub poll_interval: Duration,
    /// The longest a feed request waits, whatever its `wait` asks (`EVENT_MAX_WAIT`, 30 s): lower it behind a
    /// proxy that cuts idle connections sooner.
    pub max_wait: Duration,
    pub webhooks: WebhookSettings,
}

#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// `WEBHOOK_ALLOW_INSECURE=on`: `http://` and internal addresses allowed (local use and tests only).
    pub allow_insecure: bool,
    /// The waits after each failed attempt (`WEBHOOK_RETRY_SCHEDULE`); after the last, the delivery is dead.
    pub retry_schedule: Vec<Duration>,
    /// One delivery attempt's time limit (`WEBHOOK_TIMEOUT`).
    pub timeout: Duration,
    /// How often new events are queued and due deliveries taken (`WEBHOOK_INTERVAL`).
    pub interval: Duration,
    /// The most endpoints one client may have (`WEBHOOKS_PER_CLIENT`).
    pub per_client: usize,
    /// Endpoints delivered to at once by one instance (`WEBHOOK_CONCURRENCY`); each gets its own task, so a slow
    /// one delays nobody else.
    pub concurrency: usize,
}

impl WebhookSettings {
    /// How long an endpoint may fail before it is disabled: the whole retry schedule.
    pub fn disable_after(&self) -> Duration {
        self.retry_schedule.iter().sum()
    }
}

impl EventSettings {
    pub fn read<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> anyhow::Result<Self> {
        let schedule = env.or("WEBHOOK_RETRY_SCHEDULE", DEFAULT_RETRY_SCHEDULE);
        let retry_schedule = schedule
            .split(',')
            .map(|wait| {
                parse_duration(wait).map_err(|_| anyhow::anyhow!("WEBHOOK_RETRY_SCHEDULE: {wait:?} is not a duration"))
            })
            .collect::<anyhow::Result<Vec<Duration>>>()?;
        let allow_insecure = match env.or("WEBHOOK_ALLOW_INSECURE", "off").as_str() {
            "on" => true,
            "off" => false,
            other => bail!("WEBHOOK_ALLOW_INSECURE must be on or off, not {other:?}"),
        };
        let settings = Self {
            retention: env.duration("EVENT_RETENTION", "30d")?,
            poll_interval: env.duration("EVENT_POLL_INTERVAL", "100ms")?,
            max_wait: env.duration("EVENT_MAX_WAIT", "30s")?,
            webhooks: WebhookSettings {
                allow_insecure,
                retry_schedule,
                timeout: env.duration("WEBHOOK_TIMEOUT", "10s")?,
                interval: env.duration("WEBHOOK_INTERVAL", "200ms")?,
                per_client: env.number("WEBHOOKS_PER_CLIENT", "16")?,
                concurrency: env.number("WEBHOOK_CONCURRENCY", "32")?,
            },
        };
        let hooks = &settings.webhooks;
        if !(1..=100).contains(&hooks.retry_schedule.len()) {
            bail!("WEBHOOK_RETRY_SCHEDULE must list 1 to 100 waits");
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(10)).contains(&settings.poll_interval) {
            bail!("EVENT_POLL_INTERVAL must be between 10ms and 10s");
        }
        if settings.max_wait > Duration::from_secs(30) {
            bail!("EVENT_MAX_WAIT must be at most 30s");
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(60)).contains(&hooks.interval) {
            bail!("WEBHOOK_INTERVAL must be between 10ms and 60s");
        }
        if hooks.timeout > Duration::from_secs(60) {
            bail!("WEBHOOK_TIMEOUT must be at most 60s");
        }
        if !(1..=1000).contains(&hooks.per_client) || !(1..=1000).contains(&hooks.concurrency) {
            bail!("WEBHOOKS_PER_CLIENT and WEBHOOK_CONCURRENCY must be between 1 and 1000");
        }
        Ok(settings)
    }

    /// Says at start what an operator should know: relaxed address rules, a schedule shorter than three days.
    pub fn warn_if_relaxed(&self) {
        if self.webhooks.allow_insecure {
            tracing::warn!("WEBHOOK_ALLOW_INSECURE=on: webhooks may be sent over http:// and to loopback, link-local and private addresses (local use and tests only)");
        }
        if self.webhooks.disable_after() < THREE_DAYS {
            tracing::warn!(
                total = ?self.webhooks.disable_after(),
                "WEBHOOK_RETRY_SCHEDULE gives up in less than three days"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use service_kit::settings::vars;

    #[test]
    fn the_default_schedule_retries_for_more_than_three_days() {
        let settings = EventSettings::read(&Env::from_lookup(vars(&[]))).expect("defaults are valid");
        assert!(settings.webhooks.disable_after() > THREE_DAYS);
        assert!(!settings.webhooks.allow_insecure);
        assert_eq!(settings.retention, Duration::from_secs(30 * 24 * 3600));
    }

    #[test]
    fn bad_values_are_refused_at_start() {
        for (name, value) in [
            ("WEBHOOK_RETRY_SCHEDULE", "5s,soon"),
            ("WEBHOOK_ALLOW_INSECURE", "yes"),
            ("EVENT_RETENTION", "0s"),
            ("WEBHOOKS_PER_CLIENT", "0"),
            ("WEBHOOK_TIMEOUT", "5m"),
        ] {
            assert!(EventSettings::read(&Env::from_lookup(vars(&[(name, value)]))).is_err(), "{name}={value}");
        }
    }
}
