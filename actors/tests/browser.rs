//! The demo page in a real browser: starts the `iomux-pubsub` binary on a free port and runs
//! `tests/browser/demo.test.mjs` (Node + playwright-core driving the system's headless
//! Chromium), which opens the page in two tabs per transport (long-poll, EventSource), publishes
//! from one tab's form and expects the message in both, and saves a screenshot.
//!
//! Needs `node`, the test's node modules (`npm ci --prefix tests/browser`) and
//! `/usr/bin/chromium` (`apt-get install chromium`); `script/test` installs them. When one is
//! missing the test fails (it never passes without having run the browser).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Longest the server may take to print its `listening on` line.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest the whole browser run may take (the script bounds itself at 60 s).
const NODE_TIMEOUT: Duration = Duration::from_secs(90);
/// The browser the script launches.
const CHROMIUM: &str = "/usr/bin/chromium";

/// A started process, killed (by its process id) and reaped when dropped, so that a failing
/// assertion leaves nothing running.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn workspace_root() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .canonicalize()
        .expect("the workspace root")
}

/// Fails the test with what is missing and how to install it (also outside CI: a browser test
/// that cannot run must not look like one that passed).
fn require(ok: bool, what: &str, fix: &str) {
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
    assert!(
        ok,
        "browser test cannot run: {what}\n  fix: {fix}\n  (script/test installs it{})",
        if ci {
            "; CI is set, so this is an error"
        } else {
            ""
        }
    );
}

fn preconditions(root: &Path) {
    let node = Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .output();
    require(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "`node` is not on PATH",
        "install Node.js 20 or newer",
    );
    require(
        root.join("tests/browser/node_modules/playwright-core/package.json")
            .is_file(),
        "tests/browser/node_modules/playwright-core is missing",
        "npm ci --prefix tests/browser",
    );
    require(
        Path::new(CHROMIUM).is_file(),
        "/usr/bin/chromium is missing",
        "apt-get update && apt-get install -y chromium",
    );
}

/// Start the server on a free port; the guard and its base URL.
fn start_server() -> (Guard, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_iomux-pubsub"))
        .args(["--listen", "127.0.0.1:0", "--log", "warn"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start iomux-pubsub");
    let stdout = child.stdout.take().expect("server stdout");
    let guard = Guard(child);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next();
        let _ = tx.send(first);
        for _ in lines {} // keep the pipe drained
    });
    let line = match rx.recv_timeout(START_TIMEOUT) {
        Ok(Some(Ok(line))) => line,
        Ok(other) => panic!("iomux-pubsub printed no `listening on` line: {other:?}"),
        Err(_) => panic!("iomux-pubsub did not say `listening on` within {START_TIMEOUT:?}"),
    };
    let url = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line from iomux-pubsub: {line:?}"))
        .trim()
        .to_string();
    (guard, url)
}

/// Read a pipe to the end on a thread.
fn collect(pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(pipe).read_to_string(&mut text);
        text
    })
}

#[test]
fn demo_page_delivers_messages_between_tabs() {
    let root = workspace_root();
    preconditions(&root);
    let (_server, url) = start_server();
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo.png");
    let _ = std::fs::remove_file(&screenshot);

    let mut child = Command::new("node")
        .arg(root.join("tests/browser/demo.test.mjs"))
        .arg(&url)
        .arg(&screenshot)
        .current_dir(&root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    let stdout = collect(child.stdout.take().expect("node stdout"));
    let stderr = collect(child.stderr.take().expect("node stderr"));
    let mut node = Guard(child);

    let started = Instant::now();
    let status = loop {
        if let Some(status) = node.0.try_wait().expect("wait for node") {
            break Some(status);
        }
        if started.elapsed() > NODE_TIMEOUT {
            break None;
        }
        thread::sleep(Duration::from_millis(100));
    };
    if status.is_none() {
        // SIGTERM first: playwright then closes the browser it started; SIGKILL if that hangs.
        let _ = Command::new("kill")
            .args(["-TERM", &node.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(node.0.try_wait(), Ok(None)) {
            thread::sleep(Duration::from_millis(100));
        }
        drop(node); // kills it if still there, and reaps it
    }
    let out = stdout.join().unwrap_or_default();
    let err = stderr.join().unwrap_or_default();
    println!("--- node tests/browser/demo.test.mjs {url} ---\n{out}{err}");

    let status = status.unwrap_or_else(|| {
        panic!("the browser test did not finish within {NODE_TIMEOUT:?}:\n{out}{err}")
    });
    assert!(
        status.success(),
        "the browser test failed ({status}):\n{err}"
    );
    assert!(
        screenshot.is_file(),
        "no screenshot at {}",
        screenshot.display()
    );
    println!("screenshot: {}", screenshot.display());
}
