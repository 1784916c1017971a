//! No secret leaks: the demo service (Sentry DSN, OTLP credentials and headers, metrics token) and
//! the collector (Slack webhook, page token) run with every secret set while their backends fail,
//! so that errors get logged; then everything they wrote or served (stdout, stderr, the state
//! file, the status page, the API, /metrics) is searched for each secret.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use obs_testkit::client;
use obs_testkit::process::{sibling_binary, CollectorProcess, DemoService};
use obs_testkit::receivers::{Behavior, OtlpReceiver, SentryReceiver};
use obs_testkit::slack::{Reply, Slack};

const SECRETS: [&str; 7] = [
    "SENTRYKEYSECRET",
    "OTLPPASSSECRET",
    "OTLPHEADERSECRET",
    "BADHEADERSECRET",
    "METRICSTOKENSECRET",
    "SECRETWEBHOOKTOKEN", // the Slack stand-in's webhook path
    "COLLECTORTOKENSECRET",
];

#[test]
fn no_secret_appears_in_anything_the_processes_write_or_serve() {
    let mut written: Vec<(String, String)> = Vec::new();

    // The service, with failing backends so that their errors are reported.
    let otlp = OtlpReceiver::start(Behavior::Status(503));
    let sentry = SentryReceiver::start(Behavior::Status(500));
    let otlp_url = otlp
        .endpoint()
        .replace("http://", "http://otlpuser:OTLPPASSSECRET@");
    let dsn = sentry.dsn("SENTRYKEYSECRET");
    let mut demo = DemoService::start(
        env!("CARGO_BIN_EXE_demo-service").as_ref(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp_url),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer%20OTLPHEADERSECRET,bad header=BADHEADERSECRET",
            ),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("SENTRY_DSN", &dsn),
            ("OBS_METRICS_TOKEN", "METRICSTOKENSECRET"),
        ],
    )
    .unwrap();
    let admin = demo.admin.unwrap();
    for path in ["/users/1", "/fail", "/panic", "/users/2?token=x"] {
        client::get(demo.addr, path).unwrap();
    }
    for auth in [
        &b"Bearer wrong"[..],
        b"Bearer METRICSTOKENSECRET",
        b"Basic Zm9vOmJhcg==",
    ] {
        let r = client::request(admin, "GET", "/metrics", &[("authorization", auth)]).unwrap();
        written.push(("service /metrics".into(), format!("{r:?}")));
    }
    written.push((
        "service /metrics without a token".into(),
        format!("{:?}", client::get(admin, "/metrics").unwrap()),
    ));
    // The export failures are reported (so their messages are searched too).
    assert!(
        demo.wait_for(|l| l.contains("OTLP export to"), Duration::from_secs(10))
            .is_some(),
        "{:#?}",
        demo.lines()
    );
    assert!(demo
        .wait_for(
            |l| l.contains("sending an event to Sentry failed"),
            Duration::from_secs(10)
        )
        .is_some());
    // The credentials are sent (URL user info wins over the header, as in reqwest).
    assert!(otlp.requests()[0].headers.contains_key("authorization"));
    demo.terminate().unwrap();
    demo.wait_exit(Duration::from_secs(10));
    let stdout = demo.lines().join("\n");
    assert!(
        stdout.contains("***@127.0.0.1"),
        "the DSN is shown redacted"
    );
    written.push(("service stdout".into(), stdout));
    written.push(("service stderr".into(), demo.stderr()));

    // The collector, with a Slack webhook that fails, then refuses for good.
    let slack = Slack::start();
    slack.script(&[
        Reply::Status(500, "oops", None),
        Reply::Status(404, "no_service", None),
    ]);
    let dir = std::env::temp_dir().join(format!("obs-secrets-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let flag = Arc::new(Mutex::new("flag 1\n".to_owned()));
    let target = obs_testkit::receivers::serve_text(Arc::clone(&flag));
    std::fs::write(
        dir.join("rules.yml"),
        "groups:\n  - name: t\n    interval: 1s\n    rules:\n      - alert: Flag\n        expr: flag > 0\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("collector.yml"),
        format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\nscrape_configs:\n  - job_name: svc\n    static_configs:\n      - targets: ['{target}']\n{}", obs_testkit::PROMPT_ROUTE),
    )
    .unwrap();
    let url = slack.url();
    let collector = CollectorProcess::start(
        &sibling_binary("obs-collector"),
        &dir.join("collector.yml"),
        &dir.join("state.json"),
        &[
            ("SLACK_WEBHOOK_URL", &url),
            ("OBS_COLLECTOR_TOKEN", "COLLECTORTOKENSECRET"),
        ],
    );
    obs_testkit::eventually(
        Duration::from_secs(30),
        || "Slack was not tried twice".into(),
        || (slack.received().len() >= 2).then_some(()),
    );
    let auth: &[(&str, &[u8])] = &[("authorization", b"Bearer COLLECTORTOKENSECRET")];
    // The refusal is recorded once its answer is read.
    obs_testkit::eventually(
        Duration::from_secs(10),
        || "the refusal is not on the status page".into(),
        || {
            let page = client::request(collector.addr, "GET", "/", auth).ok()?.body;
            page.contains("no_service").then_some(())
        },
    );
    for path in ["/", "/api/v1/alerts", "/api/v1/rules", "/metrics"] {
        let r = client::request(collector.addr, "GET", path, auth).unwrap();
        assert_eq!(r.status, 200, "{path}");
        written.push((format!("collector {path}"), r.body));
        let denied = client::get(collector.addr, path).unwrap();
        written.push((
            format!("collector {path} without a token"),
            format!("{denied:?}"),
        ));
    }
    assert!(
        written.iter().any(|(_, t)| t.contains("no_service")),
        "the failure is shown"
    );
    written.push((
        "collector state file".into(),
        std::fs::read_to_string(dir.join("state.json")).unwrap(),
    ));
    let output = collector.output.lock().unwrap().clone();
    written.push(("collector stdout and stderr".into(), output));
    drop(collector);

    for (what, text) in &written {
        for secret in SECRETS {
            assert!(
                !text.contains(secret),
                "{secret} appears in {what}:\n{text}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
