//! Shared by the reply-side tests (tests/reply_side.rs, tests/error_pages.rs,
//! tests/access_log.rs): a real server whose [`AcceptorBuilder`] the test configures (error
//! pages, access log, debug), raw exchanges over TCP, and a logger that keeps what the server
//! logs.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

use async_executor::LocalExecutor;
use iomux::{AcceptorBuilder, Handler};

// Every test that uses this module also declares `mod support;` (the shared test server).
use crate::support;

/// A server on 127.0.0.1:0 on its own thread; stopped (and joined) on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    server: support::Server,
}

impl TestServer {
    /// Start a server: `configure` sets up the builder (the address is set here), `make` runs
    /// on the server thread with the executor and returns the handler.
    pub fn start<H, C, F>(configure: C, make: F) -> TestServer
    where
        H: Handler,
        C: FnOnce(AcceptorBuilder) -> AcceptorBuilder + Send + 'static,
        F: FnOnce(&LocalExecutor<'static>) -> H + Send + 'static,
    {
        let server = support::Server::start_built(|b| configure(b.listen("127.0.0.1:0")), make);
        TestServer {
            addr: server.addr,
            server,
        }
    }

    /// A connection with a read timeout, so that a hung test fails instead of hanging.
    pub fn connect(&self) -> TcpStream {
        self.server.connect()
    }

    /// Send `request` on a new connection and read until the server closes it (requests should
    /// say `Connection: close`), as text.
    pub fn exchange(&self, request: &str) -> String {
        String::from_utf8_lossy(&self.server.exchange(request.as_bytes())).into_owned()
    }

    /// `GET path` with `Connection: close` and the extra header lines (each ending in CRLF).
    pub fn get(&self, path: &str, extra: &str) -> String {
        self.exchange(&format!(
            "GET {path} HTTP/1.1\r\nHost: test.example\r\n{extra}Connection: close\r\n\r\n"
        ))
    }

    /// Stop the server and wait for its thread (and so for `serve` to end).
    pub fn shutdown(self) {
        self.server.shutdown();
    }
}

/// The response text with the `Date` value replaced by `<DATE>`.
pub fn mask_date(response: &str) -> String {
    match response.find("\r\nDate: ") {
        Some(start) => {
            let value = start + "\r\nDate: ".len();
            let end = value + response[value..].find("\r\n").unwrap_or(0);
            format!("{}<DATE>{}", &response[..value], &response[end..])
        }
        None => response.to_owned(),
    }
}

/// The body of a response read until close (after the blank line).
pub fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// Every header line of the response with this (lowercase) name, values only, in order.
pub fn header_values<'a>(response: &'a str, name: &str) -> Vec<&'a str> {
    let head = response.split_once("\r\n\r\n").map_or(response, |(h, _)| h);
    head.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(": "))
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .collect()
}

/// A fresh directory under the system's temporary directory.
pub fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "iomux-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What the server logged, as `LEVEL message` lines.
static LOGGED: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {}", record.level(), record.args());
        LOGGED.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }
    fn flush(&self) {}
}

/// Keep what is logged from now on (every level), for [`logged`].
pub fn capture_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        log::set_logger(&Capture).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
    });
}

/// The logged lines that contain `needle`.
pub fn logged(needle: &str) -> Vec<String> {
    LOGGED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|l| l.contains(needle))
        .cloned()
        .collect()
}
