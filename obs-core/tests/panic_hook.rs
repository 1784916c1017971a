//! obs' panic hook chains the hook installed before it: a panic is one ERROR line (seen here
//! through an extra layer) and then the previous hook still runs.

use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

type Seen = Arc<Mutex<Vec<String>>>;

/// Records the message of every `obs::panic` event.
struct PanicLines(Seen);

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for PanicLines {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() == "obs::panic" {
            let mut message = Message(String::new());
            event.record(&mut message);
            self.0.lock().unwrap().push(format!("obs: {}", message.0));
        }
    }
}

#[test]
fn the_previous_panic_hook_still_runs_after_obs_line() {
    let seen: Seen = Arc::default();
    let by_previous = Arc::clone(&seen);
    std::panic::set_hook(Box::new(move |info| {
        by_previous.lock().unwrap().push(format!(
            "previous hook: {}",
            info.payload().downcast_ref::<&str>().unwrap()
        ));
    }));
    let obs = obs::Config::new()
        .disable_admin()
        .with_layer(PanicLines(Arc::clone(&seen)))
        .init()
        .unwrap();
    let joined = std::thread::spawn(|| panic!("boom")).join();
    assert!(joined.is_err());
    assert_eq!(
        *seen.lock().unwrap(),
        ["obs: panicked: boom", "previous hook: boom"]
    );
    obs.shutdown(std::time::Duration::from_secs(1));
}
