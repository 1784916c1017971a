//! A plain hyper 1 service, no axum: its own router (a match on the path) gives obs the route
//! template with an `HttpRoute` request extension, `obs.layer()` wraps the handler, and
//! hyper-util serves the tower service. The route reaches metrics, spans and lines; counts are
//! exact, also when the handler calls `record_request` as a server without tower would.

use std::convert::Infallible;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use obs::http::HttpRoute;
use obs_testkit::client;
use tower::ServiceBuilder;

/// The service's router: the template of a path, or none.
fn route_of(path: &str) -> Option<&'static str> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["users", _] => Some("/users/{id}"),
        ["orders", _] => Some("/orders/{id}"),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_hyper_service_gets_its_routes_and_exact_counts() {
    let obs = std::sync::Arc::new(obs::test::init());
    let handler_obs = std::sync::Arc::clone(&obs);
    let service = ServiceBuilder::new()
        .map_request(|mut req: Request<Incoming>| {
            if let Some(route) = route_of(req.uri().path()) {
                req.extensions_mut().insert(HttpRoute::new(route));
            }
            req
        })
        .layer(obs.layer())
        .service_fn(move |req: Request<Incoming>| {
            let obs = std::sync::Arc::clone(&handler_obs);
            async move {
                let status = match route_of(req.uri().path()) {
                    Some("/users/{id}") => StatusCode::OK,
                    Some(_) => StatusCode::INTERNAL_SERVER_ERROR,
                    None => StatusCode::NOT_FOUND,
                };
                tracing::info!(path = req.uri().path(), "handled");
                // Inside obs.layer(), this must not count the request a second time.
                let counted = obs.record_request(
                    req.method(),
                    route_of(req.uri().path()),
                    status.as_u16(),
                    Duration::from_millis(1),
                );
                assert!(!counted);
                let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
                *response.status_mut() = status;
                Ok::<_, Infallible>(response)
            }
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });

    let statuses = tokio::task::spawn_blocking(move || {
        [
            "/users/1",
            "/users/2",
            "/users/3",
            "/orders/9",
            "/nowhere/at/all",
        ]
        .map(|path| client::get(addr, path).unwrap().status)
    })
    .await
    .unwrap();
    assert_eq!(statuses, [200, 200, 200, 500, 404]);

    // Outside any request (a server without tower), record_request counts.
    assert!(obs.record_request(
        &http::Method::POST,
        Some("/jobs/{id}"),
        202,
        Duration::from_millis(3)
    ));

    let page = obs.metrics_text();
    let count = |route: &str, status: u16| {
        page.lines()
            .find(|l| {
                l.starts_with("http_server_request_duration_seconds_count{")
                    && l.contains(&format!("http_route=\"{route}\""))
                    && l.contains(&format!("http_response_status_code=\"{status}\""))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
    };
    assert_eq!(count("/users/{id}", 200), Some(3), "{page}");
    assert_eq!(count("/orders/{id}", 500), Some(1), "{page}");
    assert_eq!(count("/jobs/{id}", 202), Some(1), "{page}");
    assert!(!page.contains("nowhere"), "{page}");

    // The route names the request's lines too.
    let lines: Vec<serde_json::Value> = obs
        .logs()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let completed: Vec<_> = lines
        .iter()
        .filter(|l| l["message"] == "request completed")
        .collect();
    assert_eq!(completed.len(), 5, "{lines:#?}");
    assert_eq!(
        completed
            .iter()
            .filter(|l| l["http.route"] == "/users/{id}")
            .count(),
        3
    );
    assert!(completed
        .iter()
        .any(|l| l["http.route"] == "/orders/{id}" && l["http.response.status_code"] == 500));
}
