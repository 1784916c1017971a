//! Outgoing HTTP the way services make it: reqwest-middleware with reqwest-tracing, which opens
//! a CLIENT span and injects `traceparent` from the OpenTelemetry globals obs installed.

use std::sync::OnceLock;

/// A client whose requests are spans of the current trace; one per process (a new reqwest
/// client per call would load the TLS roots and open new connections each time).
pub fn traced_client() -> &'static reqwest_middleware::ClientWithMiddleware {
    static CLIENT: OnceLock<reqwest_middleware::ClientWithMiddleware> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(reqwest_tracing::TracingMiddleware::default())
            .build()
    })
}
