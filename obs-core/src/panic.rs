//! The panic hook: a panic anywhere becomes one ERROR log line (inside a request it carries the
//! request's fields), instead of unstructured text on stderr.

use std::panic::PanicHookInfo;

/// Replaces the process panic hook. Called once, by the global `init()`.
pub(crate) fn install_hook() {
    std::panic::set_hook(Box::new(|info: &PanicHookInfo<'_>| {
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
        let message = payload_message(info.payload());
        tracing::error!(target: "obs::panic", { panic.location = location }, "panicked: {message}");
    }));
}

/// The text of a panic payload (`&str` or `String`), else a placeholder.
pub(crate) fn payload_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-string panic payload")
}
