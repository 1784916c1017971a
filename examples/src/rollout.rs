//! Deploys of the demo service, as a pipeline makes them: an instance keeps its addresses (so
//! it stays the same `instance` to whoever scrapes it), and a deploy stops the old process
//! with SIGTERM and starts the new build with its version in `OTEL_RESOURCE_ATTRIBUTES` and
//! its fault in `DEMO_FAULT` (see `demo-service`). Used by the demo and the incident tests,
//! with steady traffic to every instance.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use obs_testkit::process::DemoService;
use obs_testkit::prometheus::free_port;

/// A build of the demo service: its version and what it gets wrong (`DEMO_FAULT`: `""`,
/// `"errors"` or `"slow"`).
#[derive(Debug, Clone, Copy)]
pub struct Build<'a> {
    pub version: &'a str,
    pub fault: &'a str,
}

/// One instance: its fixed addresses and the process serving them now.
pub struct Instance {
    bin: PathBuf,
    env: Vec<(String, String)>,
    /// The application address.
    pub app: SocketAddr,
    /// The admin address (`/metrics`): what a collector scrapes, the `instance` label.
    pub admin: SocketAddr,
    /// The running build.
    pub service: Option<DemoService>,
}

impl Instance {
    /// An instance of `bin` on two free loopback ports, with `env` on top of each build's; not
    /// started.
    pub fn new(bin: &Path, env: &[(&str, &str)]) -> std::io::Result<Self> {
        let port = || -> std::io::Result<SocketAddr> { Ok(([127, 0, 0, 1], free_port()?).into()) };
        Ok(Self {
            bin: bin.to_owned(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            app: port()?,
            admin: port()?,
            service: None,
        })
    }

    /// Deploys `build`: the running process (if any) gets SIGTERM and drains, then the new one
    /// starts on the same addresses.
    pub fn deploy(&mut self, build: Build) -> std::io::Result<()> {
        if let Some(mut old) = self.service.take() {
            old.terminate()?;
            old.wait_exit(Duration::from_secs(10));
        }
        let (app, admin) = (self.app.to_string(), self.admin.to_string());
        let resource = format!("service.version={}", build.version);
        let mut env: Vec<(&str, &str)> = vec![
            ("OBS_DEMO_ADDR", &app),
            ("OBS_ADMIN_ADDR", &admin),
            ("OTEL_RESOURCE_ATTRIBUTES", &resource),
            ("DEMO_FAULT", build.fault),
        ];
        env.extend(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        self.service = Some(DemoService::start(&self.bin, &env)?);
        Ok(())
    }
}

/// Steady traffic to each of `apps` until `stop`: `GET /users/{id}` ten times a second,
/// `GET /accounts/{id}` (three statements on the service's database) twice a second, and six
/// loops of `GET /search` five times a second each (a slow build makes them 3 s); failed
/// connections (an instance being redeployed) are retried at the next turn.
pub fn steady_traffic(
    apps: &[SocketAddr],
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    let mut threads = Vec::new();
    for &addr in apps {
        // Accounts read the service's database: their traces show its statements.
        let mut loops: Vec<(&str, u64)> = vec![("/users/", 100), ("/accounts/", 500)];
        loops.extend((0..6).map(|_| ("/search?q=shoes", 200)));
        for (path, pause_ms) in loops {
            let stop = Arc::clone(stop);
            threads.push(std::thread::spawn(move || {
                let mut i: u64 = 1;
                while !stop.load(Ordering::Relaxed) {
                    let target = if path == "/accounts/" {
                        format!("{path}{}", i % 10 + 1) // the ten accounts there are
                    } else if path.ends_with('/') {
                        format!("{path}{i}")
                    } else {
                        path.to_owned()
                    };
                    let _ = obs_testkit::client::get(addr, &target);
                    i += 1;
                    std::thread::sleep(Duration::from_millis(pause_ms));
                }
            }));
        }
    }
    threads
}
