//! A job's own Sentry hub: what `sentry::capture_*` and the `sentry-tracing` layers see while
//! the job's future is polled, and the event for a job that failed without one.

use std::sync::Arc;

use sentry::protocol::{Event, Exception, Level};
use sentry::Hub;

use crate::request::{JobInfo, JobOutcome};

/// One job's hub: its breadcrumbs and scope changes are the job's own.
pub(crate) struct JobHub {
    hub: Arc<Hub>,
    info: Arc<JobInfo>,
}

impl JobHub {
    pub fn new(base: &Arc<Hub>, info: Arc<JobInfo>) -> Self {
        // As a request's hub: no scope of its own until the job adds to it; the job's tags are
        // added where events are processed (`with_job`, from the job being polled).
        let hub = Arc::new(Hub::new_from_top(base));
        Self { hub, info }
    }

    /// Runs `f` (one poll of the job) with this hub as the thread's current hub.
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        Hub::run(Arc::clone(&self.hub), f)
    }

    /// After the job: a failure that produced no Sentry event yet gets one (the error's type
    /// and text), so every failed job is in Sentry exactly once. A panic was reported by the
    /// panic integration; a cancelled job is not an error of its own.
    pub fn finish(&self, outcome: JobOutcome, error: Option<&str>) {
        let JobOutcome::Err(ty) = outcome else {
            return;
        };
        if self.hub.last_event_id().is_some() {
            return;
        }
        let event = Event {
            message: Some(format!("job {} failed", self.info.name)),
            level: Level::Error,
            exception: vec![Exception {
                ty: ty.to_owned(),
                value: error.map(str::to_owned),
                ..Exception::default()
            }]
            .into(),
            ..Event::default()
        };
        self.hub.capture_event(event);
    }
}

/// Tags `job_id`, `job_name` and `messaging.system`.
pub(super) fn with_job(mut event: Event<'static>, info: &JobInfo) -> Event<'static> {
    event.tags.insert("job_id".to_owned(), info.id.to_string());
    event
        .tags
        .insert("job_name".to_owned(), info.name.to_string());
    event
        .tags
        .insert("messaging.system".to_owned(), info.system.to_string());
    event
}
