//! Logging set-up shared by every binary.

/// Structured logs: JSON lines when `LOG_FORMAT=json`, readable text otherwise; level from `RUST_LOG`. To
/// standard output, where a service's supervisor collects them.
pub fn init_tracing() {
    init(false)
}

/// [`init_tracing`] to standard error: for a command whose standard output is its result.
pub fn init_tracing_to_stderr() {
    init(true)
}

fn init(to_stderr: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if to_stderr {
        let builder = builder.with_writer(std::io::stderr);
        if std::env::var("LOG_FORMAT").is_ok_and(|format| format == "json") {
            builder.json().flatten_event(true).with_current_span(true).init();
        } else {
            builder.init();
        }
        return;
    }
    if std::env::var("LOG_FORMAT").is_ok_and(|format| format == "json") {
        builder.json().flatten_event(true).with_current_span(true).init();
    } else {
        builder.init();
    }
}
