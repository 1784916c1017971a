//! `obs.actix()` in process, on actix-web's own test server: what the framework suite cannot
//! reach from outside: an error a handler returns (counted with its status, the request id on
//! its response), and a response future dropped before it finished (cancelled).
#![cfg(feature = "actix")]

use std::time::Duration;

use actix_web::dev::Service;
use actix_web::test as actix_test; // not `test`: with actix' `macros`, that is its attribute
use actix_web::{web, App, HttpResponse};

fn count(page: &str, labels: &str) -> u64 {
    let prefix = format!("http_server_request_duration_seconds_count{{{labels}}} ");
    page.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map_or(0, |v| v.parse().unwrap())
}

#[test]
fn errors_are_counted_with_their_status_and_dropped_futures_as_cancelled() {
    let obs = obs::test::init();
    actix_web::rt::System::new().block_on(async {
        let app = actix_test::init_service(
            App::new()
                .wrap(obs.actix())
                .route(
                    "/orders/{id}",
                    web::get().to(|| async {
                        Err::<HttpResponse, _>(actix_web::error::ErrorBadGateway("upstream down"))
                    }),
                )
                .route(
                    "/slow",
                    // Never answers: the request is dropped first.
                    web::get().to(std::future::pending::<HttpResponse>),
                ),
        )
        .await;
        let req = actix_test::TestRequest::get()
            .uri("/orders/7")
            .insert_header(("x-request-id", "order-7"))
            .to_request();
        let response = actix_test::call_service(&app, req).await;
        assert_eq!(response.status(), 502);
        assert_eq!(response.headers().get("x-request-id").unwrap(), "order-7");

        let slow = app.call(actix_test::TestRequest::get().uri("/slow").to_request());
        let raced = actix_web::rt::time::timeout(Duration::from_millis(50), slow).await;
        assert!(raced.is_err(), "the future is dropped before its response");
    });
    let page = obs.metrics_text();
    assert_eq!(
        count(
            &page,
            r#"error_type="502",http_request_method="GET",http_response_status_code="502",http_route="/orders/{id}",url_scheme="http""#
        ),
        1,
        "{page}"
    );
    assert_eq!(
        count(
            &page,
            r#"error_type="cancelled",http_request_method="GET",http_route="/slow",url_scheme="http""#
        ),
        1,
        "{page}"
    );
    let lines = obs.logs();
    let cancelled = lines
        .iter()
        .find(|l| l.contains("request completed") && l.contains("/slow"))
        .unwrap();
    assert!(cancelled.contains(r#""level":"WARN""#) && cancelled.contains("cancelled"));
}
