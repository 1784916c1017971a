//! Runs the demo service as a child process and collects its stdout lines.
//!
//! ```no_run
//! use obs_testkit::process::DemoService;
//! let bin = obs_testkit::process::sibling_binary("demo-service");
//! let demo = DemoService::start(&bin, &[("OTEL_SERVICE_NAME", "demo")]).unwrap();
//! let response = obs_testkit::client::get(demo.addr, "/users/1").unwrap();
//! assert_eq!(response.status, 200);
//! ```

use std::io::{self, BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client;
use crate::prometheus::free_port;

/// How long to wait for the service to say it is listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A binary next to the running executable (tests: `target/debug/deps/..` -> `target/debug`).
pub fn sibling_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(name)
}

#[derive(Default)]
struct Lines {
    lines: Mutex<Vec<String>>,
    grew: Condvar,
    /// Everything written to stderr.
    stderr: Mutex<String>,
    /// Read but do not keep further lines (long runs).
    discard: std::sync::atomic::AtomicBool,
    /// How many of stdout and stderr reached their end (2: everything the process wrote is
    /// in `lines` and `stderr`).
    closed: std::sync::atomic::AtomicU8,
}

impl Lines {
    /// One of the two pipes reached its end.
    fn pipe_closed(&self) {
        // Under the lock, so that a waiter cannot miss the notification.
        let _lines = self.lines.lock().unwrap();
        self.closed
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.grew.notify_all();
    }
}

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`...), in KiB; `None` once the process
/// is gone.
///
/// ```
/// let rss = obs_testkit::process::status_kib(std::process::id(), "VmRSS").unwrap();
/// assert!(rss > 0);
/// ```
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix(field)?
            .strip_prefix(':')?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    })
}

/// A running demo service; killed when dropped.
pub struct DemoService {
    child: Child,
    lines: Arc<Lines>,
    /// The application address.
    pub addr: SocketAddr,
    /// The admin address (`/metrics`), unless disabled.
    pub admin: Option<SocketAddr>,
}

impl DemoService {
    /// Starts `bin` with `env` (on top of `OBS_DEMO_ADDR` and `OBS_ADMIN_ADDR` set to free
    /// loopback ports unless `env` sets them) and waits until it listens and, with an admin
    /// server, until `/readyz` says it serves (as a Kubernetes readiness probe waits).
    pub fn start(bin: &Path, env: &[(&str, &str)]) -> io::Result<Self> {
        let (demo, listening) = Self::start_until(bin, env, "demo-service listening")?;
        if demo.addr.port() == 0 {
            return Err(io::Error::other(format!("no listen.addr in {listening}")));
        }
        demo.wait_ready()?;
        Ok(demo)
    }

    /// Waits until `/readyz` answers 200, at most 20 s (at once without an admin
    /// server).
    pub fn wait_ready(&self) -> io::Result<()> {
        let Some(admin) = self.admin else {
            return Ok(());
        };
        within_start_timeout(
            || "/readyz never answered 200".into(),
            || client::get(admin, "/readyz").is_ok_and(|r| r.status == 200),
        )
    }

    /// Starts `bin` as [`DemoService::start`] does, for another service (whose start line is
    /// another) or a process without an application port (a worker): waits for a line
    /// containing `ready`, reads the application address from its `listen.addr` (if any) and
    /// the admin address from its `metrics.url`, and returns the line too.
    pub fn start_until(
        bin: &Path,
        env: &[(&str, &str)],
        ready: &str,
    ) -> io::Result<(Self, String)> {
        let mut demo = Self::spawn(bin, env)?;
        let Some(line) = demo.wait_for(|l| l.contains(ready), START_TIMEOUT) else {
            return Err(io::Error::other(format!(
                "{bin:?} did not say {ready:?}; output: {:?}",
                demo.lines()
            )));
        };
        if let Some(addr) = value_after(&line, "listen.addr").and_then(|a| a.parse().ok()) {
            demo.addr = addr;
        }
        demo.admin = value_after(&line, "metrics.url").and_then(|u| {
            u.strip_prefix("http://")?
                .strip_suffix("/metrics")?
                .parse()
                .ok()
        });
        Ok((demo, line))
    }

    /// Starts a service that listens on `PORT` (a free loopback port is given) and logs only
    /// obs' own start line, as the README's service does; waits until it accepts connections.
    pub fn start_on_port(bin: &Path, env: &[(&str, &str)]) -> io::Result<Self> {
        let port = free_port()?;
        let mut env = env.to_vec();
        let port_text = port.to_string();
        env.push(("PORT", &port_text));
        let mut demo = Self::spawn(bin, &env)?;
        demo.addr = ([127, 0, 0, 1], port).into();
        let started = demo
            .wait_for(|l| l.contains("obs initialized"), START_TIMEOUT)
            .ok_or_else(|| io::Error::other(format!("no start line: {:?}", demo.lines())))?;
        demo.admin = value_after(&started, "admin.addr").and_then(|a| a.parse().ok());
        wait_listening(demo.addr, &format!("{bin:?}"))?;
        demo.wait_ready()?;
        Ok(demo)
    }

    fn spawn(bin: &Path, env: &[(&str, &str)]) -> io::Result<Self> {
        let mut cmd = Command::new(bin);
        cmd.env("OBS_DEMO_ADDR", "127.0.0.1:0")
            .env("OBS_ADMIN_ADDR", "127.0.0.1:0")
            .env_remove("RUST_LOG")
            .env_remove("OBS_LOG_FORMAT")
            .env_remove("OTEL_SERVICE_NAME")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn()?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let lines = Arc::new(Lines::default());
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stderr.read(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]);
                eprint!("{text}"); // still visible in test output
                sink.stderr.lock().unwrap().push_str(&text);
            }
            sink.pipe_closed();
        });
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sink.discard.load(std::sync::atomic::Ordering::Relaxed) {
                    continue;
                }
                sink.lines.lock().unwrap().push(line);
                sink.grew.notify_all();
            }
            sink.pipe_closed();
        });
        Ok(DemoService {
            child,
            lines,
            addr: ([127, 0, 0, 1], 0).into(),
            admin: None,
        })
    }

    /// From now on, stdout is read (so the service never blocks on it) but not kept.
    pub fn discard_output(&self) {
        self.lines
            .discard
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        self.lines.stderr.lock().unwrap().clone()
    }

    /// Every stdout line so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lines.lock().unwrap().clone()
    }

    /// Waits until a line matching `pred` appears; returns it.
    pub fn wait_for(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.lines.lines.lock().unwrap();
        loop {
            if let Some(line) = lines.iter().find(|l| pred(l)) {
                return Some(line.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            lines = self.lines.grew.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// Sends SIGTERM, asserts a clean exit within 15 s, and returns every stdout line parsed
    /// as JSON (panics on one that is not).
    pub fn stop_json(self) -> Vec<serde_json::Value> {
        self.stop_json_and_stderr().0
    }

    /// [`DemoService::stop_json`], and all the process wrote to stderr.
    pub fn stop_json_and_stderr(mut self) -> (Vec<serde_json::Value>, String) {
        self.terminate().expect("SIGTERM sent");
        assert!(
            self.wait_exit(Duration::from_secs(15))
                .is_some_and(|s| s.success()),
            "demo-service did not exit cleanly"
        );
        let lines = self
            .lines()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        (lines, self.stderr())
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) -> io::Result<()> {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other("kill -TERM failed"))
        }
    }

    /// Waits for the process to exit, at most `timeout`, and for its last stdout line to be
    /// read.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break status;
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut lines = self.lines.lines.lock().unwrap();
        while self.lines.closed.load(std::sync::atomic::Ordering::SeqCst) < 2 {
            let left = deadline.checked_duration_since(Instant::now())?;
            lines = self.lines.grew.wait_timeout(lines, left).unwrap().0;
        }
        Some(status)
    }

    /// The sum of a metric's samples on the admin server's `/metrics` (`None` while it does
    /// not answer).
    pub fn metric_sum(&self, name: &str) -> Option<f64> {
        let admin = self.admin.expect("the admin server (/metrics)");
        let page = client::get(admin, "/metrics").ok()?.body;
        Some(
            page.lines()
                .filter(|l| l.split(['{', ' ']).next() == Some(name))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum(),
        )
    }

    /// Waits until the sum of `name`'s samples satisfies `done` (see [`DemoService::metric_sum`]).
    pub fn wait_metric(&self, name: &str, done: impl Fn(f64) -> bool) {
        crate::eventually(
            START_TIMEOUT,
            || format!("{name} never got there (last {:?})", self.metric_sum(name)),
            || self.metric_sum(name).filter(|v| done(*v)).map(drop),
        );
    }

    /// Waits until `n` requests are in flight (obs' `http_server_active_requests`): a test's
    /// slow requests have arrived.
    pub fn wait_in_flight(&self, n: u64) {
        self.wait_metric("http_server_active_requests", |v| v == n as f64);
    }
}

impl Drop for DemoService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `addr` accepts connections, at most [`START_TIMEOUT`]; `what` names the
/// server in the error.
fn wait_listening(addr: SocketAddr, what: &str) -> io::Result<()> {
    within_start_timeout(
        || format!("{what} never listened on {addr}"),
        || std::net::TcpStream::connect(addr).is_ok(),
    )
}

/// Polls `done` every 20 ms, at most [`START_TIMEOUT`]; the error says what never happened.
fn within_start_timeout(
    never: impl FnOnce() -> String,
    mut done: impl FnMut() -> bool,
) -> io::Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    while !done() {
        if Instant::now() >= deadline {
            return Err(io::Error::other(never()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The value following `key` in a JSON (`"key":"value"`) or pretty (`key=value`) log line.
fn value_after(line: &str, key: &str) -> Option<String> {
    let rest = &line[line.find(key)? + key.len()..];
    let rest = rest.trim_start_matches(['"', ':', '=']);
    let end = rest
        .find(|c: char| c == '"' || c == ',' || c.is_whitespace() || c == '}')
        .unwrap_or(rest.len());
    Some(rest[..end].to_owned())
}

/// A Redis server (Debian's `redis-server`) on a free loopback port, without persistence;
/// killed when dropped.
pub struct RedisServer {
    child: Child,
    addr: SocketAddr,
    /// `redis://127.0.0.1:port`.
    pub url: String,
}

impl RedisServer {
    /// Starts `redis-server` and waits until it answers `PING`.
    pub fn start() -> io::Result<Self> {
        let port = free_port()?;
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                io::Error::other(format!("redis-server (apt-get install redis-server): {e}"))
            })?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let server = Self {
            child,
            addr,
            url: format!("redis://{addr}"),
        };
        within_start_timeout(
            || "redis-server did not answer PING".into(),
            || {
                server
                    .command(&["PING"])
                    .is_ok_and(|r| r.starts_with("+PONG"))
            },
        )?;
        Ok(server)
    }

    /// Sends one command (RESP) and returns the first line of the reply (`:3`, `+PONG`).
    pub fn command(&self, args: &[&str]) -> io::Result<String> {
        use std::io::Write;
        let mut stream = std::net::TcpStream::connect_timeout(&self.addr, Duration::from_secs(1))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut request = format!("*{}\r\n", args.len());
        for a in args {
            request.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        stream.write_all(request.as_bytes())?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line)?;
        Ok(line.trim_end().to_owned())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PostgreSQL server (Debian's `postgresql`) in a fresh data directory on a free loopback
/// port, trusting local connections; run as `nobody` when the tests run as root (PostgreSQL
/// refuses root). Stopped and removed when dropped.
pub struct PostgresServer {
    child: Child,
    dir: PathBuf,
    /// How to stop it: `pg_ctl stop` as the user it runs as (killing `runuser` would leave
    /// the server behind).
    stop: Command,
    /// `postgres://obs@127.0.0.1:port/postgres`.
    pub url: String,
}

impl PostgresServer {
    /// Initialises a cluster and starts it; waits until it accepts connections.
    pub fn start() -> io::Result<Self> {
        let bin = postgres_bin()?;
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!("obs-pg-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let root = Command::new("id")
            .arg("-u")
            .output()?
            .stdout
            .starts_with(b"0");
        let as_user = |program: PathBuf| {
            if root {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", "nobody", "--"]).arg(program);
                cmd
            } else {
                Command::new(program)
            }
        };
        if root {
            Command::new("chown")
                .args(["nobody:nogroup"])
                .arg(&dir)
                .status()?;
        }
        let data = dir.join("data");
        let init = as_user(bin.join("initdb"))
            .args(["-U", "obs", "--auth=trust", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()?;
        if !init.status.success() {
            return Err(io::Error::other(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&init.stderr)
            )));
        }
        let child = as_user(bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args([
                "-p",
                &port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-k",
            ])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut stop = as_user(bin.join("pg_ctl"));
        stop.args(["stop", "-m", "immediate", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let server = Self {
            child,
            dir,
            stop,
            url: format!("postgres://obs@127.0.0.1:{port}/postgres"),
        };
        wait_listening(([127, 0, 0, 1], port).into(), "postgres")?;
        Ok(server)
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin`.
fn postgres_bin() -> io::Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| io::Error::other(format!("PostgreSQL (apt-get install postgresql): {e}")))?
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| io::Error::other("no /usr/lib/postgresql/*/bin/initdb"))
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let _ = self.stop.status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// obs-collector as a child process (`bin`), with its stdout and stderr captured; killed when
/// dropped.
pub struct CollectorProcess {
    child: Child,
    pub addr: SocketAddr,
    pub output: Arc<Mutex<String>>,
}

impl CollectorProcess {
    /// Starts `bin --config config --listen <free port> --state-file state --storage.path
    /// <state with the extension .data>` (beside the state file, so a restart with the same
    /// state finds its samples) and waits until it is ready.
    pub fn start(bin: &Path, config: &Path, state: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_with_args(bin, config, state, env, &[])
    }

    /// [`CollectorProcess::start`] with `args` added to the command line.
    pub fn start_with_args(
        bin: &Path,
        config: &Path,
        state: &Path,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Self {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port().unwrap()).into();
        let mut child = Command::new(bin)
            .arg("--config")
            .arg(config)
            .args(["--listen", &addr.to_string(), "--state-file"])
            .arg(state)
            .arg("--storage.path")
            .arg(state.with_extension("data"))
            .args(args)
            .env_remove("SLACK_WEBHOOK_URL")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                // Another package's binary: `cargo test -p obs-examples` alone does not build it.
                panic!(
                    "cannot start {}: {e} (`cargo test --workspace` builds it; alone: \
                     `cargo build -p obs-collector`)",
                    bin.display()
                )
            });
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
        client::wait_ready(addr, Duration::from_secs(10), "the collector");
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
        crate::eventually(
            timeout,
            || format!("no {state} alert within {timeout:?}"),
            || self.alerts().into_iter().find(|a| a["state"] == state),
        )
    }

    /// Waits until the status page shows `needle`; returns the page.
    pub fn wait_page(&self, needle: &str, timeout: Duration) -> String {
        crate::eventually(
            timeout,
            || format!("{needle:?} never shown on the status page"),
            || {
                let page = client::get(self.addr, "/").ok()?.body;
                page.contains(needle).then_some(page)
            },
        )
    }

    /// Waits until the first rule was evaluated `n` more times (from `/api/v1/rules`): every
    /// evaluation dispatches notifications, so whatever one would send has been queued.
    pub fn wait_evaluations(&self, n: usize) {
        let last = || -> String {
            let body = client::get(self.addr, "/api/v1/rules").unwrap().body;
            let v: Value = serde_json::from_str(&body).unwrap();
            v["data"]["groups"][0]["rules"][0]["lastEvaluation"].to_string()
        };
        for _ in 0..n {
            let before = last();
            crate::eventually(
                Duration::from_secs(10),
                || "the rules are not evaluated".into(),
                || (last() != before).then_some(()),
            );
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for CollectorProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[cfg(test)]
mod tests {
    use super::value_after;

    #[test]
    fn values_from_json_and_pretty_lines() {
        let json =
            r#"{"listen.addr":"127.0.0.1:41000","metrics.url":"http://127.0.0.1:9464/metrics"}"#;
        assert_eq!(
            value_after(json, "listen.addr").as_deref(),
            Some("127.0.0.1:41000")
        );
        assert_eq!(
            value_after(json, "metrics.url").as_deref(),
            Some("http://127.0.0.1:9464/metrics")
        );
        let pretty =
            "INFO demo_service: demo-service listening listen.addr=127.0.0.1:5 metrics.url=off";
        assert_eq!(
            value_after(pretty, "listen.addr").as_deref(),
            Some("127.0.0.1:5")
        );
        assert_eq!(value_after(pretty, "metrics.url").as_deref(), Some("off"));
    }
}
