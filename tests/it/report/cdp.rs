//! Just enough of the Chrome DevTools Protocol to load a page in headless Chromium and
//! see what happened: every console message, script exception, log entry (CSP
//! violations, blocked loads), failed and attempted request, the DOM after load, and a
//! screenshot.
//!
//! It talks over `--remote-debugging-pipe` (commands on the child's fd 3, replies and
//! events on its fd 4, each message ending in a NUL byte), so no port and no WebSocket
//! are involved.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The Chromium binary, if one is installed.
pub fn chromium() -> Option<String> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(|b| b.to_string())
}

/// What loading a page showed.
#[derive(Debug, Default)]
pub struct PageLoad {
    /// `document.documentElement.outerHTML` after the load event.
    pub dom: String,
    /// `document.body.innerText`.
    pub text: String,
    /// Console messages (any level), script exceptions and error log entries.
    pub problems: Vec<String>,
    /// Every URL the page requested.
    pub requests: Vec<String>,
    /// Requests that failed, with the reason.
    pub failed: Vec<String>,
    /// A PNG of the first screen, when asked for.
    pub screenshot: Option<Vec<u8>>,
}

struct Browser {
    child: Child,
    to: std::fs::File,
    rx: Receiver<Value>,
    next_id: u64,
    /// Events seen while waiting for replies.
    events: VecDeque<Value>,
}

fn pipe() -> (i32, i32) {
    let mut fds = [0i32; 2];
    // SAFETY: fds is a valid array of two ints for pipe2 to fill.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2 failed");
    (fds[0], fds[1])
}

impl Browser {
    fn launch(bin: &str, profile: &Path, width: u32, height: u32) -> Browser {
        let (child_in, to_child) = pipe();
        let (from_child, child_out) = pipe();
        let mut cmd = Command::new(bin);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--remote-debugging-pipe",
            // Any name lookup fails: a page that reaches for the network shows it.
            "--host-resolver-rules=MAP * ~NOTFOUND",
        ])
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: only dup2/fcntl (async-signal-safe) run between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // Move both ends above 4 first, so neither dup2 clobbers the other.
                let a = libc::fcntl(child_in, libc::F_DUPFD, 10);
                let b = libc::fcntl(child_out, libc::F_DUPFD, 10);
                if a < 0 || b < 0 || libc::dup2(a, 3) < 0 || libc::dup2(b, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start chromium");
        // SAFETY: these fds were created above and are owned here from now on.
        unsafe {
            libc::close(child_in);
            libc::close(child_out);
        }
        let to = unsafe { std::fs::File::from_raw_fd(to_child) };
        let mut from = unsafe { std::fs::File::from_raw_fd(from_child) };
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 65536];
            loop {
                let n = match from.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                while let Some(end) = buf.iter().position(|b| *b == 0) {
                    let msg: Vec<u8> = buf.drain(..=end).collect();
                    if let Ok(v) = serde_json::from_slice::<Value>(&msg[..msg.len() - 1]) {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Browser {
            child,
            to,
            rx,
            next_id: 1,
            events: VecDeque::new(),
        }
    }

    /// Send a command (to a page session when `session` is given) and wait for its reply.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).expect("write to chromium");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(v) if v["id"] == id => {
                    assert!(v.get("error").is_none(), "{method} failed: {}", v["error"]);
                    return v["result"].clone();
                }
                Ok(v) => self.events.push_back(v),
                Err(RecvTimeoutError::Timeout) => panic!("chromium did not answer {method}"),
                Err(RecvTimeoutError::Disconnected) => panic!("chromium exited during {method}"),
            }
        }
    }

    /// Wait for an event of `method` (already seen or to come).
    fn wait_event(&mut self, method: &str, timeout: Duration) -> bool {
        if self.events.iter().any(|e| e["method"] == method) {
            return true;
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(v) => {
                    let hit = v["method"] == method;
                    self.events.push_back(v);
                    if hit {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
    }

    /// Collect events for a little longer (late console messages, failed loads).
    fn drain(&mut self, quiet: Duration) {
        while let Ok(v) = self.rx.recv_timeout(quiet) {
            self.events.push_back(v);
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Load `page` (a file) in headless Chromium and report what happened.
pub fn load(bin: &str, page: &Path, profile: &Path, screenshot: bool) -> PageLoad {
    let (width, height) = (1280, 1600);
    let mut b = Browser::launch(bin, profile, width, height);
    let target = b.call(None, "Target.createTarget", json!({"url": "about:blank"}));
    let target_id = target["targetId"].as_str().unwrap().to_string();
    let attached = b.call(
        None,
        "Target.attachToTarget",
        json!({"targetId": target_id, "flatten": true}),
    );
    let s = attached["sessionId"].as_str().unwrap().to_string();
    let s = Some(s.as_str());
    for domain in [
        "Runtime.enable",
        "Log.enable",
        "Network.enable",
        "Page.enable",
    ] {
        b.call(s, domain, json!({}));
    }
    b.call(
        s,
        "Emulation.setDeviceMetricsOverride",
        json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
    );
    let url = format!("file://{}", page.display());
    let nav = b.call(s, "Page.navigate", json!({"url": url}));
    assert!(
        nav.get("errorText").is_none(),
        "navigation failed: {}",
        nav["errorText"]
    );
    assert!(
        b.wait_event("Page.loadEventFired", Duration::from_secs(30)),
        "the page never finished loading"
    );
    b.drain(Duration::from_millis(500));
    let eval = |b: &mut Browser, expr: &str| -> String {
        b.call(
            s,
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        )["result"]["value"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let dom = eval(&mut b, "document.documentElement.outerHTML");
    let text = eval(&mut b, "document.body.innerText");
    let shot = screenshot.then(|| {
        use base64::Engine as _;
        let r = b.call(s, "Page.captureScreenshot", json!({"format": "png"}));
        base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap()
    });
    b.drain(Duration::from_millis(100));
    let mut out = PageLoad {
        dom,
        text,
        screenshot: shot,
        ..PageLoad::default()
    };
    let mut urls = std::collections::HashMap::new();
    for e in &b.events {
        let p = &e["params"];
        match e["method"].as_str().unwrap_or_default() {
            "Runtime.consoleAPICalled" => out.problems.push(format!(
                "console.{}: {}",
                p["type"].as_str().unwrap_or_default(),
                p["args"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| a["value"].to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            )),
            "Runtime.exceptionThrown" => out
                .problems
                .push(format!("exception: {}", p["exceptionDetails"])),
            "Log.entryAdded" => {
                let level = p["entry"]["level"].as_str().unwrap_or_default();
                if level == "error" || level == "warning" {
                    out.problems.push(format!(
                        "log {level} ({}): {}",
                        p["entry"]["source"].as_str().unwrap_or_default(),
                        p["entry"]["text"].as_str().unwrap_or_default()
                    ));
                }
            }
            "Network.requestWillBeSent" => {
                let u = p["request"]["url"].as_str().unwrap_or_default().to_string();
                urls.insert(p["requestId"].to_string(), u.clone());
                out.requests.push(u);
            }
            "Network.loadingFailed" => out.failed.push(format!(
                "{}: {}",
                urls.get(&p["requestId"].to_string())
                    .cloned()
                    .unwrap_or_default(),
                p["errorText"].as_str().unwrap_or_default()
            )),
            _ => {}
        }
    }
    // Ask the browser to close; Drop kills it if it has not by then.
    let _ =
        b.to.write_all(b"{\"id\":999999,\"method\":\"Browser.close\"}\0");
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        if let Ok(Some(_)) = b.child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    out
}
