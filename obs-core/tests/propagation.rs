//! `obs::trace::inject` and `extract` with the propagators `init()` installs, in their own
//! process (the OpenTelemetry globals are process-wide): a job's headers carry the producer's
//! trace to the consumer, whose span continues it; a malformed `traceparent` starts a new trace.

use std::collections::HashMap;

use obs::otel::opentelemetry::trace::TraceContextExt;
use obs::otel::tracing_opentelemetry::OpenTelemetrySpanExt;

#[test]
fn a_job_carries_the_producers_trace_through_its_headers() {
    let obs = obs::Config::new()
        .service_name("propagation-test")
        .disable_admin()
        .init()
        .unwrap();
    let producer = tracing::info_span!("enqueue");
    let mut headers: HashMap<String, String> = HashMap::new();
    let sent = producer.in_scope(|| {
        obs::trace::inject(&mut headers);
        obs::TraceContext::current()
    });
    assert_eq!(headers.get("traceparent"), Some(&sent.traceparent()));

    // The consumer, later and elsewhere: its span is a child of the producer's.
    let received = obs::trace::extract(&headers);
    assert_eq!(
        received.span().span_context().trace_id(),
        sent.span_context().trace_id()
    );
    let consumer = tracing::info_span!("process", otel.kind = "consumer");
    let _ = consumer.set_parent(received);
    let continued = consumer.in_scope(obs::TraceContext::current);
    assert_eq!(continued.trace_id(), sent.trace_id());
    assert_ne!(continued.span_id(), sent.span_id());

    // Baggage travels too.
    headers.insert("baggage".into(), "tenant=acme".into());
    let cx = obs::trace::extract(&headers);
    use obs::otel::opentelemetry::baggage::BaggageExt;
    assert_eq!(
        cx.baggage().get("tenant").map(|v| v.as_str().to_owned()),
        Some("acme".to_owned())
    );

    // A malformed traceparent: no remote parent, so the consumer starts a trace of its own.
    let bad = HashMap::from([("traceparent".to_owned(), "00-zz-not-a-context".to_owned())]);
    assert!(!obs::trace::extract(&bad).span().span_context().is_valid());
    let fresh = tracing::info_span!("process");
    let _ = fresh.set_parent(obs::trace::extract(&bad));
    let own = fresh.in_scope(obs::TraceContext::current);
    assert!(own.is_valid() && own.trace_id() != sent.trace_id());

    // Outside any span nothing is injected.
    let mut none: HashMap<String, String> = HashMap::new();
    obs::trace::inject(&mut none);
    assert!(!none.contains_key("traceparent"), "{none:?}");
    obs.shutdown(std::time::Duration::from_secs(1));
}
