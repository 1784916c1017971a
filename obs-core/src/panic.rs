//! The panic hook: a panic anywhere becomes one ERROR log line (inside a request it carries the
//! request's fields), then whatever hook was installed before runs. Sentry's panic integration,
//! installed after this one, reports the panic with its stack frames first.

use std::panic::PanicHookInfo;

/// The `tracing` target of the panic line (the Sentry layers leave it to the panic integration).
pub(crate) const TARGET: &str = "obs::panic";

/// Chains the log line in front of the current panic hook. Called once, by the global `init()`.
pub(crate) fn install_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info: &PanicHookInfo<'_>| {
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
        let message = payload_message(info.payload());
        tracing::error!(target: TARGET, { panic.location = location }, "panicked: {message}");
        previous(info);
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
