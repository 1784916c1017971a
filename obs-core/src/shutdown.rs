//! The deploy signal: SIGTERM (what Kubernetes, systemd and `docker stop` send) or Ctrl-C.
//!
//! [`crate::Obs::shutdown_signal`] is a future for a server's graceful shutdown. A server
//! polls it first once it serves, which turns `/readyz` to 200 (`crate::readiness`). It turns
//! `/readyz` to 503 the moment the signal arrives (a load balancer stops sending new requests
//! while the in-flight ones finish), then resolves; the server drains and the service calls
//! [`crate::Obs::shutdown`], which flushes logs, spans and Sentry events within its deadline.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::shared::Shared;

/// Resolves when SIGTERM or Ctrl-C (SIGINT) arrives, after `/readyz` turned 503. Get it from
/// [`crate::Obs::shutdown_signal`]; pass it to axum's `with_graceful_shutdown`, hyper-util's
/// `GracefulShutdown` or any server's stop condition.
///
/// Created inside a tokio runtime, it listens from its creation (a signal that arrives before
/// the server starts is not lost); created outside one, from its first poll.
#[must_use = "a signal future does nothing unless awaited"]
pub struct ShutdownSignal {
    inner: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// Until the first poll: the server is not serving yet.
    starting: Option<Arc<Shared>>,
}

impl ShutdownSignal {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let listening = tokio::runtime::Handle::try_current()
            .ok()
            .map(|_| Signals::listen());
        let starting = Some(Arc::clone(&shared));
        let inner = Box::pin(async move {
            let signals = match listening {
                Some(signals) => signals,
                None => Signals::listen(),
            };
            let name = signals.recv().await;
            shared.ready.drain();
            tracing::info!(
                target: "obs",
                signal = name,
                "shutdown requested: /readyz answers 503, finishing in-flight requests"
            );
        });
        Self { inner, starting }
    }
}

impl Future for ShutdownSignal {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(shared) = self.starting.take() {
            shared.ready.serving();
        }
        self.inner.as_mut().poll(cx)
    }
}

impl std::fmt::Debug for ShutdownSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShutdownSignal").finish_non_exhaustive()
    }
}

/// The registered signal handlers. A handler that cannot be registered (no signal driver, an
/// exotic platform) is a warning and that signal is not awaited: the service still runs.
struct Signals {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    #[cfg(unix)]
    fn listen() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        let register = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(why) => {
                tracing::warn!(target: "obs", "cannot listen for {name}: {why}");
                None
            }
        };
        Self {
            terminate: register(SignalKind::terminate(), "SIGTERM"),
            interrupt: register(SignalKind::interrupt(), "SIGINT"),
        }
    }

    #[cfg(not(unix))]
    fn listen() -> Self {
        Self {}
    }

    /// The first signal's name.
    #[cfg(unix)]
    async fn recv(mut self) -> &'static str {
        async fn on(s: Option<&mut tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            () = on(self.terminate.as_mut()) => "SIGTERM",
            () = on(self.interrupt.as_mut()) => "SIGINT",
        }
    }

    #[cfg(not(unix))]
    async fn recv(self) -> &'static str {
        if let Err(why) = tokio::signal::ctrl_c().await {
            tracing::warn!(target: "obs", "cannot listen for Ctrl-C: {why}");
            std::future::pending::<()>().await;
        }
        "Ctrl-C"
    }
}
