//! A Slack incoming-webhook stand-in for tests: it checks every message against Block Kit's
//! limits and answers as scripted (200, 429 with `Retry-After`, 500, 400, a hang).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const WEBHOOK_PATH: &str = "/services/T000/B000/SECRETWEBHOOKTOKEN";

/// How the stand-in answers one request.
#[derive(Clone)]
pub enum Reply {
    /// This status, body text and optional `Retry-After` seconds.
    Status(u16, &'static str, Option<u64>),
    /// Sleeps this long, then hangs up without answering.
    Hang(Duration),
}

#[derive(Default)]
struct SlackState {
    script: VecDeque<Reply>,
    /// Every request: when, the JSON body, and the status answered (None = hung up).
    received: Vec<(Instant, Value, Option<u16>)>,
}

/// A Slack incoming-webhook stand-in: records every request and answers as scripted (200 once
/// the script is used up).
pub struct Slack {
    addr: SocketAddr,
    state: Arc<Mutex<SlackState>>,
}

impl Slack {
    /// Starts listening on a loopback port.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(SlackState::default()));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || handle(stream, &shared));
            }
        });
        Slack { addr, state }
    }

    /// Queues replies for the next requests.
    pub fn script(&self, replies: &[Reply]) {
        self.state
            .lock()
            .unwrap()
            .script
            .extend(replies.iter().cloned());
    }

    /// The webhook URL (its path is the secret token).
    pub fn url(&self) -> String {
        format!("http://{}{WEBHOOK_PATH}", self.addr)
    }

    /// Every request: when, its JSON body, and the status answered (`None`: hung up).
    pub fn received(&self) -> Vec<(Instant, Value, Option<u16>)> {
        self.state.lock().unwrap().received.clone()
    }

    /// Waits until `n` requests were answered 200; returns their bodies.
    pub fn wait_delivered(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let ok: Vec<Value> = self
                .received()
                .into_iter()
                .filter(|r| r.2 == Some(200))
                .map(|r| r.1)
                .collect();
            if ok.len() >= n {
                return ok;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} messages delivered: {:#?}",
                ok.len(),
                self.received()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn handle(mut stream: TcpStream, state: &Mutex<SlackState>) {
    let (path, body) = read_request(&stream);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    assert_eq!(path, WEBHOOK_PATH);
    let reply = state
        .lock()
        .unwrap()
        .script
        .pop_front()
        .unwrap_or(Reply::Status(200, "ok", None));
    let answered = match reply {
        Reply::Hang(d) => {
            std::thread::sleep(d);
            None
        }
        Reply::Status(code, text, retry_after) => {
            let extra = retry_after
                .map(|s| format!("retry-after: {s}\r\n"))
                .unwrap_or_default();
            let _ = write!(
                stream,
                "HTTP/1.1 {code} X\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n{text}",
                text.len()
            );
            Some(code)
        }
    };
    state
        .lock()
        .unwrap()
        .received
        .push((Instant::now(), body, answered));
}

/// Checks a message against Slack's Block Kit rules that matter here (panics otherwise).
pub fn assert_block_kit(m: &Value) {
    let text = m["text"].as_str().expect("a plain-text fallback");
    assert!(!text.is_empty() && text.chars().count() <= 3000);
    let Some(blocks) = blocks(m) else {
        return;
    }; // plain-text retry
    assert!(!blocks.is_empty() && blocks.len() <= 50);
    assert_eq!(m["attachments"].as_array().unwrap().len(), 1);
    let colour = m["attachments"][0]["color"].as_str().expect("a colour");
    assert!(colour.starts_with('#') && colour.len() == 7, "{colour}");
    for b in blocks {
        match b["type"].as_str().unwrap() {
            "header" => {
                assert_eq!(b["text"]["type"], "plain_text");
                assert!(b["text"]["text"].as_str().unwrap().chars().count() <= 150);
            }
            "section" => {
                if let Some(t) = b["text"]["text"].as_str() {
                    assert_eq!(b["text"]["type"], "mrkdwn");
                    assert!(t.chars().count() <= 3000);
                }
                if let Some(fields) = b["fields"].as_array() {
                    assert!(fields.len() <= 10);
                    assert!(fields
                        .iter()
                        .all(|f| f["text"].as_str().unwrap().chars().count() <= 2000));
                }
                assert!(b["text"].is_object() || b["fields"].is_array());
            }
            "context" => assert!(!b["elements"].as_array().unwrap().is_empty()),
            "actions" => {
                let buttons = b["elements"].as_array().unwrap();
                assert!(!buttons.is_empty() && buttons.len() <= 25);
                for button in buttons {
                    assert_eq!(button["type"], "button");
                    assert!(button["text"]["text"].as_str().unwrap().chars().count() <= 75);
                    let url = button["url"].as_str().unwrap();
                    assert!(url.starts_with("http") && url.chars().count() <= 3000);
                }
            }
            other => panic!("unexpected block type {other}"),
        }
    }
}

/// The message's blocks (inside its one attachment, for the colour bar); `None` for a
/// plain-text message.
pub fn blocks(m: &Value) -> Option<&Vec<Value>> {
    m["attachments"][0]["blocks"].as_array()
}

/// The message's link buttons: `(text, url)`.
pub fn buttons(m: &Value) -> Vec<(String, String)> {
    blocks(m)
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            let get = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (get(&e["text"]["text"]), get(&e["url"]))
        })
        .collect()
}

/// The example trace id a message names (its plain text's "(example trace <32 hex digits>)");
/// panics when it names none.
pub fn example_trace(m: &Value) -> String {
    let text = m["text"].as_str().expect("a plain-text fallback");
    let id = text
        .split("(example trace ")
        .nth(1)
        .and_then(|rest| rest.get(..32))
        .unwrap_or_else(|| panic!("no example trace in {text}"));
    id.to_owned()
}

/// The message's header text (or its plain text when it has no blocks).
pub fn header(m: &Value) -> String {
    m["attachments"][0]["blocks"][0]["text"]["text"]
        .as_str()
        .unwrap_or_else(|| m["text"].as_str().unwrap())
        .to_owned()
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
