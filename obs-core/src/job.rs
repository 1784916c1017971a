//! Units of work that are not HTTP requests: a job taken from a queue, a scheduled task.
//! [`crate::Obs::job`] wraps the job's future as `obs.layer()` wraps a request:
//!
//! - a CONSUMER span named `process {name}` with the messaging semantic conventions
//!   (`messaging.system`, `messaging.destination.name`, `messaging.operation.name` and
//!   `.type` = `process`, `messaging.message.id`, `error.type` on failure);
//! - `job_id` and `job_name` (and the trace ids) on every log line written inside it, whatever
//!   `RUST_LOG` says, and one "job completed" line at the end (ERROR on failure, with the
//!   error's text);
//! - `messaging_process_duration_seconds{messaging_system, messaging_destination_name,
//!   messaging_operation_name, error_type}` (seconds; `error_type` only on failure: the error's
//!   type name, `panic` or `cancelled`), its job names bounded by `Config::max_label_sets`
//!   (the excess is folded into `_overflow`) and each cut at [`MAX_JOB_TEXT_LEN`] bytes;
//! - its own Sentry hub: events captured inside carry `job_id`, `job_name` and the trace; a job
//!   that returned `Err` without reporting anything becomes one event;
//! - the producer's trace: [`Job::parent`] reads what [`crate::trace::inject`] put into the
//!   job's headers and makes the job's span its child, in the same trace; [`Job::link`] starts a
//!   new trace linked to the producer's instead, as the messaging conventions recommend for
//!   batches and for work processed long after it was sent.
//!
//! The future's output is returned unchanged, and a panic inside it is recorded, then resumed:
//! obs changes nothing about what the job does.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use std::collections::HashMap;
//! let obs = obs::test::init();
//! let headers: HashMap<String, String> = HashMap::new(); // the job's, from the queue
//! let sent = obs
//!     .job("send_welcome_email")
//!     .system("redis")
//!     .id("42")
//!     .parent(&headers)
//!     .run(async {
//!         tracing::info!("sending"); // carries job_id=42, job_name=send_welcome_email
//!         Ok::<_, std::io::Error>("sent")
//!     })
//!     .await;
//! assert_eq!(sent.unwrap(), "sent");
//! assert!(obs.metrics_text().contains(r#"messaging_destination_name="send_welcome_email""#));
//! # });
//! ```

use std::borrow::Cow;
use std::fmt::Display;
use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use tracing::field::Empty;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::report::JobHub;
pub use crate::request::MAX_JOB_TEXT_LEN;
use crate::request::{bounded, JobInfo, JobOutcome, JobPolling, JOB_TARGET};
use crate::shared::Shared;

/// The `messaging.system` of a job that does not name one.
pub const DEFAULT_SYSTEM: &str = "obs";

/// A job about to run: its name, and optionally its system, id and producer. Get one from
/// [`crate::Obs::job`]; [`Job::run`] runs it.
#[must_use = "a job does nothing until `run` is awaited"]
pub struct Job {
    shared: Arc<Shared>,
    name: Cow<'static, str>,
    system: Cow<'static, str>,
    id: Option<String>,
    producer: Producer,
}

/// How the job's span relates to the context its headers carried.
enum Producer {
    None,
    Parent(opentelemetry::Context),
    Link(opentelemetry::trace::SpanContext),
}

impl Job {
    pub(crate) fn new(shared: Arc<Shared>, name: Cow<'static, str>) -> Self {
        Self {
            shared,
            name,
            system: Cow::Borrowed(DEFAULT_SYSTEM),
            id: None,
            producer: Producer::None,
        }
    }

    /// `messaging.system`: the queue the job came from (`redis`, `rabbitmq`, `kafka`,
    /// `aws_sqs`, ...); [`DEFAULT_SYSTEM`] unless set.
    pub fn system(mut self, system: impl Into<Cow<'static, str>>) -> Self {
        self.system = system.into();
        self
    }

    /// `messaging.message.id`, logged as `job_id`: the queue's id for the job; a new UUIDv7
    /// unless set.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Continues the trace `carrier` names (what [`crate::trace::inject`] wrote into the job's
    /// headers): the job's span is a child of the producer's, in its trace. A carrier without a
    /// valid `traceparent` starts a new trace; a malformed one is also said, once, in a WARN
    /// line.
    pub fn parent(mut self, carrier: &dyn Extractor) -> Self {
        if let Some(cx) = self.producer_context(carrier) {
            self.producer = Producer::Parent(cx);
        }
        self
    }

    /// Starts a new trace for the job, linked to the producer's (the messaging conventions'
    /// advice for batches and for jobs processed long after they were sent, which would
    /// otherwise stretch the producer's trace over hours).
    pub fn link(mut self, carrier: &dyn Extractor) -> Self {
        if let Some(cx) = self.producer_context(carrier) {
            self.producer = Producer::Link(cx.span().span_context().clone());
        }
        self
    }

    /// The producer's context, when the carrier holds a valid one.
    fn producer_context(&self, carrier: &dyn Extractor) -> Option<opentelemetry::Context> {
        let cx = self.shared.propagator.extract(carrier);
        if cx.span().span_context().is_valid() {
            return Some(cx);
        }
        let sent = carrier.get(crate::trace::TRACEPARENT).is_some();
        if sent
            && !self
                .shared
                .warned_malformed_parent
                .swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                target: JOB_TARGET,
                "a job's traceparent is malformed: the job starts a new trace (said once)"
            );
        }
        None
    }

    /// Runs `job` inside the job's span and Sentry hub, and records how it ended. The output
    /// is `job`'s; a panic is recorded and resumed.
    pub fn run<F, T, E>(self, job: F) -> JobFuture<F>
    where
        F: Future<Output = Result<T, E>>,
        E: Display,
    {
        let start = Instant::now();
        let info = Arc::new(JobInfo {
            id: match &self.id {
                Some(id) => bounded(id).into(),
                None => String::from_utf8_lossy(&crate::ids::uuid_v7()).into(),
            },
            name: Arc::from(bounded(&self.name)),
            system: Arc::from(bounded(&self.system)),
        });
        let span = job_span(&info);
        // The producer's context, or none: never the context the thread happens to have.
        let (parent, link) = match self.producer {
            Producer::Parent(cx) => (cx, None),
            Producer::Link(sc) => (opentelemetry::Context::new(), Some(sc)),
            Producer::None => (opentelemetry::Context::new(), None),
        };
        let _ = span.set_parent(parent);
        if let Some(sc) = link {
            span.add_link(sc);
        }
        let hub = self
            .shared
            .sentry
            .as_ref()
            .map(|reporter| reporter.job_hub(Arc::clone(&info)));
        JobFuture {
            inner: Some(job),
            running: Some(Running {
                shared: self.shared,
                info,
                span,
                hub,
                start,
            }),
        }
    }
}

/// The job's span: tracing-opentelemetry makes it a CONSUMER span; its fields are every log
/// line's (`messaging.message.id` as `job_id`, `messaging.destination.name` as `job_name`).
fn job_span(info: &JobInfo) -> Span {
    tracing::info_span!(
        target: JOB_TARGET,
        "job",
        otel.name = format_args!("process {}", info.name),
        otel.kind = "consumer",
        otel.status_code = Empty,
        messaging.system = &*info.system,
        messaging.operation.name = "process",
        messaging.operation.r#type = "process",
        messaging.destination.name = &*info.name,
        messaging.message.id = &*info.id,
        error.r#type = Empty,
    )
}

/// What finishing a job needs, taken once.
struct Running {
    shared: Arc<Shared>,
    info: Arc<JobInfo>,
    span: Span,
    hub: Option<JobHub>,
    start: Instant,
}

impl Running {
    /// Runs `f` inside the job's span and hub, with the job as the thread's current one.
    fn within<R>(&self, f: impl FnOnce() -> R) -> R {
        let _entered = self.span.enter();
        let _polling = JobPolling::job(&self.info);
        match &self.hub {
            Some(hub) => hub.run(f),
            None => f(),
        }
    }

    /// Records the metric, completes the span, writes the "job completed" line and, for a
    /// failure nothing reported, the Sentry event. Inside [`Running::within`].
    fn record(&self, outcome: JobOutcome, error: Option<&str>) {
        let secs = self.start.elapsed().as_secs_f64();
        let error_type = outcome.error_type();
        self.shared
            .metrics
            .jobs
            .observe([&self.info.system, &self.info.name], error_type, secs);
        if let Some(ty) = error_type {
            self.span.record("error.type", ty);
            self.span.record("otel.status_code", "ERROR");
        }
        let duration_ms = (secs * 1e6).round() / 1e3;
        match outcome {
            JobOutcome::Ok => {
                tracing::info!(target: JOB_TARGET, duration_ms, "job completed")
            }
            JobOutcome::Cancelled => tracing::warn!(
                target: JOB_TARGET,
                { duration_ms, error.r#type = error_type },
                "job completed"
            ),
            _ => tracing::error!(
                target: JOB_TARGET,
                { duration_ms, error.r#type = error_type, error = error },
                "job completed"
            ),
        }
        if let Some(hub) = &self.hub {
            hub.finish(outcome, error);
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Job::run`]: the job's own output, once it is recorded.
    pub struct JobFuture<F> {
        #[pin]
        inner: Option<F>,
        running: Option<Running>,
    }

    impl<F> PinnedDrop for JobFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(running) = this.project().running.take() {
                // Dropped before it finished: a shutdown, or a timeout around the job.
                running.within(|| running.record(JobOutcome::Cancelled, None));
            }
        }
    }
}

impl<F, T, E> Future for JobFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Display,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(running) = this.running.take() else {
            panic!("JobFuture polled after completion");
        };
        let mut inner = this.inner;
        let polled = running.within(|| {
            let polled = match inner.as_mut().as_pin_mut() {
                Some(job) => catch_unwind(AssertUnwindSafe(|| job.poll(cx))),
                None => unreachable!("the job is dropped only with its record taken"),
            };
            match &polled {
                Ok(Poll::Pending) => {}
                Ok(Poll::Ready(Ok(_))) => running.record(JobOutcome::Ok, None),
                Ok(Poll::Ready(Err(e))) => running.record(
                    JobOutcome::Err(std::any::type_name::<E>()),
                    Some(&e.to_string()),
                ),
                Err(_) => running.record(JobOutcome::Panic, None),
            }
            polled
        });
        match polled {
            Ok(Poll::Pending) => {
                *this.running = Some(running);
                Poll::Pending
            }
            Ok(Poll::Ready(output)) => Poll::Ready(output),
            Err(panic) => {
                // The job's future is in an unknown state: drop it, then go on unwinding as the
                // job would have without obs.
                inner.set(None);
                drop(running);
                resume_unwind(panic)
            }
        }
    }
}
