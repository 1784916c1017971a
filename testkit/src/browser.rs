//! Headless Chromium (Debian `chromium`) driven over the DevTools protocol, for tests that click
//! through a page: open a URL at a window size, run JavaScript in it (click, read the DOM,
//! measure layout), take a screenshot.
//!
//! The protocol goes over `--remote-debugging-pipe` (JSON messages separated by NUL on the
//! browser's file descriptors 3 and 4, here two named pipes), so no WebSocket client and no
//! browser download are needed. Chromium runs with the flags this machine needs: no sandbox (as
//! root), no GPU, no background networking (the closed network refuses it).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// One browser with one page.
pub struct Browser {
    child: Child,
    to_browser: File,
    from_browser: BufReader<File>,
    next_id: u64,
    session: String,
    dir: PathBuf,
}

impl Browser {
    /// Starts Chromium with a fresh profile in `dir` and one blank page of `width` x `height`
    /// CSS pixels (a phone's user agent and touch below 500 px).
    pub fn start(dir: &Path, width: u32, height: u32) -> io::Result<Self> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let (to, from) = (dir.join("to-browser"), dir.join("from-browser"));
        for fifo in [&to, &from] {
            let made = Command::new("mkfifo").arg(fifo).status()?;
            if !made.success() {
                return Err(io::Error::other("mkfifo failed"));
            }
        }
        // The shell opens the pipes as fds 3 and 4, then becomes Chromium.
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking --disable-component-update --disable-sync --hide-scrollbars --remote-debugging-pipe --user-data-dir="$2" about:blank 3<"$0" 4>"$1""#)
            .arg(&to)
            .arg(&from)
            .arg(dir.join("profile"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(dir.join("chromium.log"))?)
            .spawn()
            .map_err(|e| io::Error::other(format!("chromium (apt-get install chromium): {e}")))?;
        // Opened in the shell's order, so neither side blocks the other.
        let to_browser = File::options().write(true).open(&to)?;
        let from_browser = BufReader::new(File::open(&from)?);
        let mut browser = Browser {
            child,
            to_browser,
            from_browser,
            next_id: 0,
            session: String::new(),
            dir: dir.to_owned(),
        };
        let target = browser.call("Target.createTarget", json!({"url": "about:blank"}))?;
        let attached = browser.call(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        )?;
        browser.session = attached["sessionId"]
            .as_str()
            .ok_or_else(|| io::Error::other("no session"))?
            .to_owned();
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 500}),
        )?;
        Ok(browser)
    }

    /// Sends one command (to the page once attached) and returns its result.
    pub fn call(&mut self, method: &str, params: Value) -> io::Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&message)?;
        bytes.push(0);
        self.to_browser.write_all(&bytes)?;
        loop {
            let mut raw = Vec::new();
            if self.from_browser.read_until(0, &mut raw)? == 0 {
                return Err(io::Error::other(format!(
                    "chromium closed the pipe: {}",
                    std::fs::read_to_string(self.dir.join("chromium.log")).unwrap_or_default()
                )));
            }
            raw.pop();
            let answer: Value = serde_json::from_slice(&raw)?;
            if answer["id"] != id {
                continue; // an event
            }
            if let Some(error) = answer.get("error") {
                return Err(io::Error::other(format!("{method}: {error}")));
            }
            return Ok(answer["result"].clone());
        }
    }

    /// Runs `script` in the page (awaiting a promise) and returns its value as JSON; a thrown
    /// error is an `Err`.
    pub fn eval(&mut self, script: &str) -> io::Result<Value> {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": script, "returnByValue": true, "awaitPromise": true}),
        )?;
        if let Some(e) = result.get("exceptionDetails") {
            return Err(io::Error::other(format!("{script}: {e}")));
        }
        Ok(result["result"]["value"].clone())
    }

    /// Loads `url` and waits until the document is complete.
    pub fn open(&mut self, url: &str) -> io::Result<()> {
        self.call("Page.navigate", json!({"url": url}))?;
        self.wait_loaded(url)
    }

    /// Waits until the page at an address starting with `prefix` has finished loading (after a
    /// navigation or a form's redirect).
    pub fn wait_loaded(&mut self, prefix: &str) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let state = self.eval("[document.readyState, location.href]")?;
            if state[0] == "complete" && state[1].as_str().unwrap_or_default().starts_with(prefix) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!("{prefix} not loaded: {state}")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Clicks the element `selector` finds and waits for the page it leads to (a form post and
    /// its redirect, a link) to have loaded.
    pub fn click_and_wait(&mut self, selector: &str) -> io::Result<()> {
        let selector = serde_json::to_string(selector)?;
        let clicked = self.eval(&format!(
            "(() => {{ const e = document.querySelector({selector}); if (!e) return false; window.__leaving = true; e.click(); return true; }})()"
        ))?;
        if clicked != true {
            return Err(io::Error::other(format!("nothing matches {selector}")));
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            // While the old document unloads, the evaluation may fail: not there yet.
            let state = self.eval("[document.readyState, window.__leaving === undefined]");
            if state.is_ok_and(|s| s[0] == "complete" && s[1] == true) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!("clicking {selector} led nowhere")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A PNG of the whole page, written to `path`; returns its bytes.
    pub fn screenshot(&mut self, path: &Path) -> io::Result<Vec<u8>> {
        let shot = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        )?;
        use base64::Engine as _;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())
            .map_err(io::Error::other)?;
        std::fs::write(path, &png)?;
        Ok(png)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
