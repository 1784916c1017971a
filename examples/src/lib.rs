//! Shared pieces of the obs examples: a tiny blocking HTTP/1.1 client (used by the tests, the
//! load harness and the demo's traffic driver) and helpers to run the demo service as a child
//! process.

pub mod client;
pub mod demo_rules;
pub mod exposition;
pub mod fuzz_checks;
pub mod process;
pub mod prometheus;
pub mod receivers;
pub mod slack;
pub mod traffic;

/// Serves `router` on a free loopback port from the current tokio runtime; returns the address.
pub async fn serve(router: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}
