//! A service that set its own global subscriber first: `init()` refuses with an error that
//! names both ways out, leaves nothing installed, and the non-global form still works.

#[test]
fn init_after_another_subscriber_names_the_ways_out() {
    tracing_subscriber::fmt().with_writer(std::io::sink).init();
    let err = obs::Config::new().disable_admin().init().unwrap_err();
    assert!(matches!(err, obs::Error::SubscriberAlreadySet));
    let message = err.to_string();
    assert!(
        message.contains("Config::with_layer") && message.contains("Config::into_layers"),
        "{message}"
    );
    // Nothing was installed: obs can still be set up, as layers.
    let (obs, _layers) = obs::Config::new()
        .disable_admin()
        .into_layers()
        .expect("the refused init() left obs uninstalled");
    obs.shutdown(std::time::Duration::from_secs(1));
}
