//! [`BoundedProcessor`]: the SDK span processor that hands finished spans to obs' export stage.
//!
//! The SDK's own `BatchSpanProcessor` sends every span through a channel to its thread; obs
//! appends it to the shared bounded queue of [`super::queue`] under a short lock and wakes the
//! export thread only when a batch is ready. A full queue drops the span and counts it.

use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};

use super::queue::Queue;

/// Queues sampled spans for the export thread. Flushing and shutdown belong to the
/// `Obs` guard, which bounds them by its deadline.
pub(crate) struct BoundedProcessor {
    pub queue: Queue<Vec<SpanData>>,
}

impl std::fmt::Debug for BoundedProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundedProcessor").finish_non_exhaustive()
    }
}

impl SpanProcessor for BoundedProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if span.span_context.is_sampled() {
            self.queue.push(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: std::time::Duration) -> OTelSdkResult {
        Ok(())
    }
}
