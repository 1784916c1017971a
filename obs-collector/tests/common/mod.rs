//! Shared harness of the process tests: a controllable metrics target and the collector as a
//! child process.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use obs_examples::client;
use obs_examples::prometheus::free_port;
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_obs-collector");

/// A fresh temporary directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("obs-collector-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A metrics endpoint whose page the test controls.
pub fn fake_target(page: Arc<Mutex<String>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let body = page.lock().unwrap().clone();
            let _ = write!(s, "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
        }
    });
    addr
}

/// Writes `collector.yml` (job `svc` scraping `target` every second) and `rules.yml` (alert
/// `Flag`: `flag > 0` for `for_`), plus `extra` appended to the configuration.
pub fn write_config(dir: &Path, target: SocketAddr, for_: &str, extra: &str) -> PathBuf {
    std::fs::write(
        dir.join("rules.yml"),
        format!("groups:\n  - name: t\n    interval: 1s\n    rules:\n      - alert: Flag\n        expr: flag > 0\n        for: {for_}\n        labels:\n          severity: page\n        annotations:\n          summary: The flag is up.\n          description: 'flag is {{{{ $value }}}} on {{{{ $labels.instance }}}}'\n          runbook_url: https://runbooks.example/flag\n"),
    )
    .unwrap();
    let config = dir.join("collector.yml");
    std::fs::write(
        &config,
        format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\nscrape_configs:\n  - job_name: svc\n    static_configs:\n      - targets: ['{target}']\n{extra}"),
    )
    .unwrap();
    config
}

/// The collector as a child process, with its stdout and stderr captured.
pub struct Collector {
    child: Child,
    pub addr: SocketAddr,
    pub output: Arc<Mutex<String>>,
}

impl Collector {
    pub fn start(config: &Path, state: &Path, env: &[(&str, &str)]) -> Self {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port().unwrap()).into();
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(config)
            .args(["--listen", &addr.to_string(), "--state-file"])
            .arg(state)
            .env_remove("SLACK_WEBHOOK_URL")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = Arc::clone(&output);
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    output.lock().unwrap().push_str(&(line + "\n"));
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !client::get(addr, "/-/ready").is_ok_and(|r| r.status == 200) {
            assert!(Instant::now() < deadline, "collector did not become ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            addr,
            output,
        }
    }

    /// `/api/v1/alerts`.
    pub fn alerts(&self) -> Vec<Value> {
        let r = client::get(self.addr, "/api/v1/alerts").unwrap();
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["status"], "success");
        v["data"]["alerts"].as_array().unwrap().clone()
    }

    /// Waits for an alert in `state` in `/api/v1/alerts`.
    pub fn wait_alert(&self, state: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(a) = self.alerts().into_iter().find(|a| a["state"] == state) {
                return a;
            }
            assert!(
                Instant::now() < deadline,
                "no {state} alert within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Reads one HTTP/1.1 request from `stream`: (path, body).
pub fn read_request(stream: &std::net::TcpStream) -> (String, Vec<u8>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let (mut line, mut length, mut path) = (String::new(), 0, String::new());
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
        if path.is_empty() {
            path = line
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_owned();
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
        line.clear();
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    (path, body)
}

/// A real Debian `prometheus-alertmanager` with `config` (YAML), on a free loopback port,
/// clustering off; killed when dropped.
pub struct Alertmanager {
    child: Child,
    pub addr: SocketAddr,
}

impl Alertmanager {
    pub fn start(dir: &Path, config: &str) -> Self {
        std::fs::write(dir.join("am.yml"), config).unwrap();
        let addr: SocketAddr = ([127, 0, 0, 1], free_port().unwrap()).into();
        let child = Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", dir.join("am.yml").display()))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-alertmanager (Debian package) must be installed");
        let am = Alertmanager { child, addr };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !client::get(addr, "/-/ready").is_ok_and(|r| r.status == 200) {
            assert!(Instant::now() < deadline, "alertmanager not ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        am
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
