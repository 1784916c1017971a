//! RED metrics from `obs.layer()` on a real axum server on loopback (obs in test mode).

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use obs_testkit::client;
use obs_testkit::exposition::{sample, samples};

const DURATION_COUNT: &str = "http_server_request_duration_seconds_count";

fn app(obs: &obs::Obs) -> Router {
    Router::new()
        .route(
            "/users/{id}",
            get(|| async { "user" }).post(|| async { "created" }),
        )
        .route(
            "/fail",
            get(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "no") }),
        )
        .route("/panic", get(panics))
        .route(
            "/slow",
            // Never answers: the client goes away first.
            get(std::future::pending::<&'static str>),
        )
        .layer(obs.layer())
}

/// Runs blocking client calls off the (current-thread) runtime that serves them.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

fn labels<'a>(
    method: &'a str,
    route: Option<&'a str>,
    status: Option<&'a str>,
    error: Option<&'a str>,
) -> Vec<(&'a str, &'a str)> {
    let mut l = vec![("http_request_method", method), ("url_scheme", "http")];
    l.extend(route.map(|r| ("http_route", r)));
    l.extend(status.map(|s| ("http_response_status_code", s)));
    l.extend(error.map(|e| ("error_type", e)));
    l
}

#[tokio::test]
async fn counts_are_exact_per_label_set() {
    let obs = obs::test::init();
    let addr = obs_testkit::serve(app(&obs)).await;
    blocking(move || {
        for i in 0..50 {
            assert_eq!(
                client::get(addr, &format!("/users/{i}")).unwrap().status,
                200
            );
        }
        for _ in 0..5 {
            assert_eq!(client::get(addr, "/fail").unwrap().status, 500);
        }
        for _ in 0..3 {
            assert_eq!(
                client::request(addr, "POST", "/users/1", &[("content-length", b"0")])
                    .unwrap()
                    .status,
                200
            );
        }
        assert_eq!(
            client::request(addr, "DELETE", "/users/1", &[])
                .unwrap()
                .status,
            405
        );
    })
    .await;
    let page = obs.metrics_text();
    let count = |l: Vec<(&str, &str)>| sample(&page, DURATION_COUNT, &l);
    assert_eq!(
        count(labels("GET", Some("/users/{id}"), Some("200"), None)),
        Some(50.0)
    );
    assert_eq!(
        count(labels("GET", Some("/fail"), Some("500"), Some("500"))),
        Some(5.0)
    );
    assert_eq!(
        count(labels("POST", Some("/users/{id}"), Some("200"), None)),
        Some(3.0)
    );
    assert_eq!(
        count(labels("DELETE", Some("/users/{id}"), Some("405"), None)),
        Some(1.0)
    );
    // error_type appears on 5xx only.
    for s in samples(&page).iter().filter(|s| s.name == DURATION_COUNT) {
        let is_5xx = s
            .label("http_response_status_code")
            .is_some_and(|c| c.starts_with('5'));
        assert_eq!(s.label("error_type").is_some(), is_5xx, "{s:?}");
    }
    // The bucket layout is the contract's.
    let les: Vec<String> = samples(&page)
        .into_iter()
        .filter(|s| {
            s.name == "http_server_request_duration_seconds_bucket"
                && s.label("http_route") == Some("/fail")
        })
        .map(|s| s.label("le").unwrap().to_owned())
        .collect();
    assert_eq!(
        les,
        [
            "0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.25", "0.5", "0.75", "1", "2",
            "2.5", "5", "7.5", "10", "+Inf"
        ]
    );
    assert_eq!(
        sample(
            &page,
            "http_server_active_requests",
            &[("http_request_method", "GET"), ("url_scheme", "http")]
        ),
        Some(0.0)
    );
}

#[tokio::test]
async fn unmatched_paths_add_no_series_and_never_the_raw_path() {
    let obs = obs::test::init();
    let addr = obs_testkit::serve(app(&obs)).await;
    blocking(move || {
        for path in [
            "/.env",
            "/wp-admin/setup.php",
            "/.git/config",
            "/admin",
            "/a/b/c/d",
            "/%2e%2e/etc/passwd",
        ] {
            for _ in 0..5 {
                assert_eq!(client::get(addr, path).unwrap().status, 404);
            }
        }
    })
    .await;
    let page = obs.metrics_text();
    assert!(
        !page.contains(".env") && !page.contains("wp-admin") && !page.contains("passwd"),
        "{page}"
    );
    assert_eq!(
        sample(
            &page,
            DURATION_COUNT,
            &labels("GET", None, Some("404"), None)
        ),
        Some(30.0)
    );
    let series = samples(&page)
        .into_iter()
        .filter(|s| s.name == DURATION_COUNT)
        .count();
    assert_eq!(series, 1, "30 scans of 6 paths are one series");
}

#[tokio::test]
async fn unknown_methods_become_other() {
    let obs = obs::test::init();
    let addr = obs_testkit::serve(app(&obs)).await;
    blocking(move || {
        client::request(addr, "BREW", "/users/1", &[]).unwrap();
        client::request(addr, "PURGE", "/users/2", &[]).unwrap();
    })
    .await;
    let page = obs.metrics_text();
    assert_eq!(
        sample(
            &page,
            DURATION_COUNT,
            &labels("_OTHER", Some("/users/{id}"), Some("405"), None)
        ),
        Some(2.0)
    );
    assert!(!page.contains("BREW") && !page.contains("PURGE"));
}

#[tokio::test]
async fn a_panic_is_a_counted_500() {
    let obs = obs::test::init();
    let addr = obs_testkit::serve(app(&obs)).await;
    let r = blocking(move || client::get(addr, "/panic").unwrap()).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.header("x-request-id").map(str::len), Some(36));
    let page = obs.metrics_text();
    assert_eq!(
        sample(
            &page,
            DURATION_COUNT,
            &labels("GET", Some("/panic"), Some("500"), Some("panic"))
        ),
        Some(1.0)
    );
    // And the server keeps serving.
    assert_eq!(
        blocking(move || client::get(addr, "/users/1").unwrap().status).await,
        200
    );
}

#[tokio::test]
async fn a_cancelled_request_is_recorded_and_leaves_no_active_request() {
    let obs = obs::test::init();
    let addr = obs_testkit::serve(app(&obs)).await;
    let active = |page: &str| {
        sample(
            page,
            "http_server_active_requests",
            &[("http_request_method", "GET"), ("url_scheme", "http")],
        )
    };
    let mut stream = blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&client::encode_request(addr, "GET", "/slow", &[]))
            .unwrap();
        s
    })
    .await;
    obs_testkit::eventually_async(
        Duration::from_secs(5),
        || "the request never became active".into(),
        || (active(&obs.metrics_text()) == Some(1.0)).then_some(()),
    )
    .await;
    // The client goes away mid-handler.
    stream.flush().unwrap();
    drop(stream);
    let page = obs_testkit::eventually_async(
        Duration::from_secs(4),
        || format!("cancellation was not observed: {}", obs.metrics_text()),
        || Some(obs.metrics_text()).filter(|page| active(page) == Some(0.0)),
    )
    .await;
    let cancelled = labels("GET", Some("/slow"), None, Some("cancelled"));
    assert_eq!(
        sample(&page, DURATION_COUNT, &cancelled),
        Some(1.0),
        "{page}"
    );
    let completed = obs
        .logs()
        .into_iter()
        .find(|l| l.contains("request completed"))
        .unwrap();
    assert!(
        completed.contains(r#""level":"WARN""#)
            && completed.contains(r#""error.type":"cancelled""#),
        "{completed}"
    );
}

#[tokio::test]
async fn the_label_set_cap_folds_into_overflow_and_counts() {
    let obs = obs::test::init_with(obs::Config::new().max_label_sets(3));
    let mut router = Router::new();
    for i in 0..10 {
        router = router.route(&format!("/r{i}"), get(|| async { "ok" }));
    }
    let addr = obs_testkit::serve(router.layer(obs.layer())).await;
    blocking(move || {
        for i in 0..10 {
            assert_eq!(client::get(addr, &format!("/r{i}")).unwrap().status, 200);
        }
    })
    .await;
    let page = obs.metrics_text();
    let routes: Vec<String> = samples(&page)
        .into_iter()
        .filter(|s| s.name == DURATION_COUNT)
        .map(|s| s.label("http_route").unwrap().to_owned())
        .collect();
    assert_eq!(routes.len(), 4, "{routes:?}");
    assert!(routes.contains(&"_overflow".to_owned()));
    assert_eq!(
        sample(
            &page,
            DURATION_COUNT,
            &labels("GET", Some("_overflow"), Some("200"), None)
        ),
        Some(7.0)
    );
    assert_eq!(sample(&page, "obs_metrics_overflow_total", &[]), Some(7.0));
}

#[tokio::test]
async fn admin_requests_are_not_counted_and_the_page_passes_promtool() {
    let obs = obs::test::init();
    let addr = obs_testkit::serve(app(&obs)).await;
    let admin = obs_testkit::serve(obs.admin_router()).await;
    let readyz = move || async move {
        blocking(move || client::get(admin, "/readyz").unwrap().status).await
    };
    assert_eq!(readyz().await, 503, "not ready before the server serves");
    // A server polls its shutdown future once it serves: that is what makes it ready.
    let mut signal = obs.shutdown_signal();
    let not_yet = tokio::time::timeout(Duration::ZERO, &mut signal).await;
    assert!(not_yet.is_err(), "no signal came");
    assert_eq!(readyz().await, 200, "ready once serving");
    let page = blocking(move || {
        client::get(addr, "/users/1").unwrap();
        client::get(addr, "/fail").unwrap();
        for _ in 0..5 {
            assert_eq!(client::get(admin, "/healthz").unwrap().status, 200);
            assert_eq!(client::get(admin, "/readyz").unwrap().status, 200);
        }
        let r = client::get(admin, "/metrics").unwrap();
        assert_eq!(r.header("content-type"), Some(obs::metrics::CONTENT_TYPE));
        r.body
    })
    .await;
    let total: f64 = samples(&page)
        .iter()
        .filter(|s| s.name == DURATION_COUNT)
        .map(|s| s.value)
        .sum();
    assert_eq!(total, 2.0, "only the two app requests are counted");
    assert!(!page.contains("/metrics") && !page.contains("/healthz"));

    assert_eq!(obs_testkit::prometheus::check_metrics(&page), "", "{page}");

    obs.shutdown(Duration::from_secs(1));
    let r = blocking(move || client::get(admin, "/readyz").unwrap()).await;
    assert_eq!(r.status, 503, "not ready once shutdown began");
}

async fn panics() -> &'static str {
    panic!("boom")
}
