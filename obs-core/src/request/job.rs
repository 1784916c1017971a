//! The job model: a unit of work that is not an HTTP request ([`JobInfo`]), how it ended
//! ([`JobOutcome`]), and the job the thread is polling, for Sentry's event processing.

use std::cell::RefCell;
use std::sync::Arc;

use crate::semconv;

/// The `tracing` target of a job's span and its "job completed" line.
pub const JOB_TARGET: &str = "obs::job";

/// The most bytes of a job name (`messaging.destination.name`), a message id or a messaging
/// system kept; longer ones are cut at a character boundary.
pub const MAX_JOB_TEXT_LEN: usize = 128;

/// What the span, the metrics, the log lines and Sentry know about one job.
pub(crate) struct JobInfo {
    /// `messaging.message.id`, logged as `job_id`.
    pub id: Box<str>,
    /// `messaging.destination.name`, logged as `job_name`.
    pub name: Arc<str>,
    /// `messaging.system`.
    pub system: Arc<str>,
}

/// `text`, cut to [`MAX_JOB_TEXT_LEN`] bytes at a character boundary.
pub(crate) fn bounded(text: &str) -> &str {
    if text.len() <= MAX_JOB_TEXT_LEN {
        return text;
    }
    let mut end = MAX_JOB_TEXT_LEN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// How a job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JobOutcome {
    Ok,
    /// The job's future returned `Err`; the error's type name (bounded: one per type).
    Err(&'static str),
    Panic,
    /// The job's future was dropped before it finished (a shutdown, a timeout around it).
    Cancelled,
}

impl JobOutcome {
    /// `error.type`: the error's type, `panic` or `cancelled`; `None` on success.
    pub fn error_type(self) -> Option<&'static str> {
        match self {
            JobOutcome::Ok => None,
            JobOutcome::Err(ty) => Some(ty),
            JobOutcome::Panic => Some(semconv::ERROR_PANIC),
            JobOutcome::Cancelled => Some(semconv::ERROR_CANCELLED),
        }
    }
}

thread_local! {
    /// The job whose future this thread is polling (set around each poll).
    static CURRENT: RefCell<Option<Arc<JobInfo>>> = const { RefCell::new(None) };
}

/// The job being polled on this thread, if any.
#[cfg(feature = "sentry")]
pub(crate) fn current_job() -> Option<Arc<JobInfo>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// The job being polled, as the thread's current one.
pub(crate) type JobPolling = super::Scoped<JobInfo>;

impl JobPolling {
    pub(crate) fn job(info: &Arc<JobInfo>) -> Self {
        super::Scoped::enter(&CURRENT, info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_at_a_character_boundary() {
        let long = "é".repeat(5000);
        let cut = bounded(&long);
        assert!(cut.len() <= MAX_JOB_TEXT_LEN && cut.len() >= MAX_JOB_TEXT_LEN - 1);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(bounded("send_welcome_email"), "send_welcome_email");
    }

    #[test]
    fn outcomes_have_bounded_error_types() {
        assert_eq!(JobOutcome::Ok.error_type(), None);
        assert_eq!(
            JobOutcome::Err("std::io::Error").error_type(),
            Some("std::io::Error")
        );
        assert_eq!(JobOutcome::Panic.error_type(), Some("panic"));
        assert_eq!(JobOutcome::Cancelled.error_type(), Some("cancelled"));
    }
}
