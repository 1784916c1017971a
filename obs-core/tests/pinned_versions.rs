//! obs re-exports the OpenTelemetry and Sentry crates so that a service's own code shares obs'
//! provider, propagator and hub; two versions of one of them in the build would silently split
//! that state (a span from the other `opentelemetry` is invisible to obs). The workspace lock
//! must hold exactly one version of each.

#[test]
fn one_version_of_each_shared_crate() {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock"))
        .expect("the workspace Cargo.lock");
    for name in [
        "opentelemetry",
        "opentelemetry_sdk",
        "opentelemetry-otlp",
        "opentelemetry-proto",
        "tracing-opentelemetry",
        "sentry",
        "sentry-core",
        "sentry-tracing",
        "reqwest",
        "tonic",
    ] {
        let versions: Vec<&str> = lock
            .split("[[package]]")
            .filter(|p| p.contains(&format!("\nname = \"{name}\"\n")))
            .filter_map(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
            .collect();
        assert_eq!(versions.len(), 1, "{name}: {versions:?}");
    }
}
