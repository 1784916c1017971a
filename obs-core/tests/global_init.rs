//! The global path, in its own process: `init()` inside a runtime starts the admin server, a
//! second `init()` is an error, and `shutdown` works after the runtime is gone.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn global_init_admin_double_init_and_shutdown_outside_the_runtime() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let obs = runtime.block_on(async {
        obs::Config::new()
            .service_name("global-test")
            .admin_addr(([127, 0, 0, 1], 0).into())
            .init()
    });
    let obs = obs.expect("first init succeeds");
    assert!(matches!(obs::init(), Err(obs::Error::AlreadyInitialized)));
    assert!(matches!(
        obs::Config::new().init(),
        Err(obs::Error::AlreadyInitialized)
    ));

    let admin = obs
        .admin_addr()
        .expect("admin server started inside the runtime");
    let (health, ready, metrics) = runtime.block_on(async move {
        tokio::task::spawn_blocking(move || {
            (
                get(admin, "/healthz"),
                get(admin, "/readyz"),
                get(admin, "/metrics"),
            )
        })
        .await
        .unwrap()
    });
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    // Live, but no server serves yet (nothing polled the shutdown signal).
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    assert!(
        metrics.contains(r#"target_info{service_name="global-test"} 1"#),
        "{metrics}"
    );

    for i in 0..20 {
        tracing::info!(i, "buffered line");
    }
    drop(runtime);
    let t = Instant::now();
    obs.shutdown(Duration::from_secs(2));
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "shutdown took {:?}",
        t.elapsed()
    );
    obs.shutdown(Duration::from_secs(2)); // idempotent
}
