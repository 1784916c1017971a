//! A real `prometheus` server and a real Alertmanager (Debian packages) as child processes,
//! for tests that need their own semantics.
//!
//! ```no_run
//! let config = "global:\n  scrape_interval: 1s\nscrape_configs: []\n";
//! let prom = obs_testkit::prometheus::Prometheus::start(config).unwrap();
//! let result = prom.query("vector(1)").unwrap();
//! assert_eq!(result[0]["value"][1], "1");
//! ```

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client;

/// A running Prometheus; killed and its data deleted when dropped.
pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    /// The web/API address.
    pub addr: SocketAddr,
}

/// A free loopback port (bound and released; fine for tests).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `promtool check metrics` on `page`: what promtool said, empty when the page is clean (it
/// exited 0 and printed nothing, not even a lint warning).
pub fn check_metrics(page: &str) -> String {
    use std::io::Write as _;
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) must be installed");
    promtool
        .stdin
        .take()
        .expect("a pipe")
        .write_all(page.as_bytes())
        .expect("promtool reads the page");
    let out = promtool.wait_with_output().expect("promtool runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.is_empty() {
        String::new()
    } else {
        format!("promtool check metrics ({}): {said}", out.status)
    }
}

/// The `prometheus` command for a configuration file, a data directory and a listen address.
pub fn command(config: &std::path::Path, data: &std::path::Path, listen: SocketAddr) -> Command {
    let mut command = Command::new("prometheus");
    command
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address={listen}"));
    command
}

impl Prometheus {
    /// The process id (its memory is in `/proc/PID/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Prometheus {
    /// Starts `prometheus` with `config` (YAML) and waits until it is ready.
    pub fn start(config: &str) -> io::Result<Self> {
        Self::start_with(config, &[])
    }

    /// [`Prometheus::start`] with more flags (`--enable-feature=exemplar-storage`).
    pub fn start_with(config: &str, flags: &[&str]) -> io::Result<Self> {
        Self::start_backfilled(config, flags, &[])
    }

    /// [`Prometheus::start_with`] over the blocks `promtool tsdb create-blocks-from
    /// openmetrics` makes of each of `openmetrics` (files with timestamps), as a backfill does.
    pub fn start_backfilled(
        config: &str,
        flags: &[&str],
        openmetrics: &[PathBuf],
    ) -> io::Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("obs-prom-{}-{}", std::process::id(), free_port()?));
        std::fs::create_dir_all(&dir)?;
        for file in openmetrics {
            let out = Command::new("promtool")
                .args(["tsdb", "create-blocks-from", "openmetrics", "-q"])
                .arg(file)
                .arg(dir.join("data"))
                .output()?;
            if !out.status.success() {
                return Err(io::Error::other(format!(
                    "promtool could not backfill {}: {}",
                    file.display(),
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
        }
        std::fs::write(dir.join("prometheus.yml"), config)?;
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let child = command(&dir.join("prometheus.yml"), &dir.join("data"), addr)
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log"))?)
            .spawn()
            .map_err(|e| {
                io::Error::other(format!(
                    "cannot run prometheus (apt-get install prometheus): {e}"
                ))
            })?;
        let mut prom = Prometheus { child, dir, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = prom.child.try_wait() {
                return Err(io::Error::other(format!(
                    "prometheus exited ({status}): {}",
                    prom.log()
                )));
            }
            if client::get(addr, "/-/ready").is_ok_and(|r| r.status == 200) {
                return Ok(prom);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(io::Error::other(format!(
            "prometheus not ready: {}",
            prom.log()
        )))
    }

    /// Prometheus' own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// Runs an instant query now; returns `data.result`, or the API's error.
    pub fn query(&self, expr: &str) -> io::Result<Vec<Value>> {
        let path = format!("/api/v1/query?query={}", client::encode_query(expr));
        let response = client::get(self.addr, &path)?;
        let body: Value = serde_json::from_str(&response.body).map_err(io::Error::other)?;
        if body["status"] != "success" {
            return Err(io::Error::other(format!(
                "query {expr:?} failed: {}",
                response.body
            )));
        }
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// The single value of a query grouped `by (label)`, keyed by that label's value.
    pub fn query_by(&self, expr: &str, label: &str) -> io::Result<Vec<(String, f64)>> {
        Ok(self
            .query(expr)?
            .iter()
            .map(|r| {
                let key = r["metric"][label].as_str().unwrap_or_default().to_owned();
                let value = r["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN);
                (key, value)
            })
            .collect())
    }

    /// Polls `expr` until `done(result)` or `timeout`.
    pub fn wait_until(
        &self,
        expr: &str,
        timeout: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> io::Result<Vec<Value>> {
        let deadline = Instant::now() + timeout;
        loop {
            let result = self.query(expr)?;
            if done(&result) {
                return Ok(result);
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "timed out waiting on {expr:?}; last: {result:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A real Debian `prometheus-alertmanager` with `config` (YAML), on a free loopback port,
/// clustering off; killed when dropped.
pub struct Alertmanager {
    child: Child,
    pub addr: SocketAddr,
}

impl Alertmanager {
    /// Starts it and waits until it is ready. One that exits before it is ready (its port
    /// was taken meanwhile by another test's process) is started again on another port; its
    /// log (`dir/am.log`) is in the panic of one that never gets ready.
    pub fn start(dir: &std::path::Path, config: &str) -> Self {
        std::fs::write(dir.join("am.yml"), config).unwrap();
        let log_path = dir.join("am.log");
        let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        for _ in 0..3 {
            let addr: SocketAddr = ([127, 0, 0, 1], free_port().unwrap()).into();
            let mut child = Command::new("prometheus-alertmanager")
                .arg(format!("--config.file={}", dir.join("am.yml").display()))
                .arg(format!("--storage.path={}", dir.join("am-data").display()))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--cluster.listen-address=")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log_path).unwrap())
                .spawn()
                .expect("prometheus-alertmanager (Debian package) must be installed");
            // A busy machine (tests side by side) can take a while to start it.
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            loop {
                if client::get(addr, "/-/ready").is_ok_and(|r| r.status == 200) {
                    return Alertmanager { child, addr };
                }
                if child.try_wait().ok().flatten().is_some() {
                    break; // exited: try another port
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "alertmanager not ready within 60s: {}",
                    log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!(
            "alertmanager exited three times before it was ready: {}",
            log()
        );
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
