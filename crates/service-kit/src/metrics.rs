//! Prometheus metrics, one registry per application instance (so tests can run many side by side).

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};

use crate::error::ApiError;

/// Request counts and latencies by route, method and status: the same names in every service.
#[derive(Clone)]
pub struct HttpMetrics {
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
}

impl HttpMetrics {
    /// Creates the HTTP metrics in `registry`.
    pub fn register(registry: &Registry) -> anyhow::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route, method and status"),
            &["method", "route", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency by route, method and status")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["method", "route", "status"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self { requests, duration })
    }
}

/// The Prometheus text exposition of every metric in `registry`.
pub fn render(registry: &Registry) -> anyhow::Result<String> {
    let mut buffer = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut buffer)?;
    Ok(String::from_utf8(buffer)?)
}

/// The `/metrics` answer: every metric of `registry` in the Prometheus text format.
pub fn metrics_response(registry: &Registry) -> Result<Response, ApiError> {
    let text = render(registry)?;
    Ok(([(CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}
