//! A job's own Sentry hub: what `sentry::capture_*` and the `sentry-tracing` layers see while
//! the job's future is polled, and the event for a job that failed without one.

use sentry::protocol::{Event, Exception, Level};

use crate::request::{JobInfo, JobOutcome};

/// A job's hub.
pub(crate) type JobHub = super::request::UnitHub<JobInfo>;

impl JobHub {
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
