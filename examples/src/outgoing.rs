//! Outgoing HTTP the way services make it: reqwest-middleware with reqwest-tracing, which opens
//! a CLIENT span and injects `traceparent` from the OpenTelemetry globals obs installed.

/// A client whose requests are spans of the current trace.
pub fn traced_client() -> reqwest_middleware::ClientWithMiddleware {
    reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(reqwest_tracing::TracingMiddleware::default())
        .build()
}
