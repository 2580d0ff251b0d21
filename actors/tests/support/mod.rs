//! Shared by the pub/sub integration tests: the pub/sub server on 127.0.0.1:0 in its own
//! thread, raw clients that write literal bytes, and a small HTTP/1.1 response reader that keeps
//! partial input across read timeouts (so EventSource streams can be read with deadlines).
#![allow(dead_code)]

pub mod redis;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;
use iomux::{Acceptor, Config, StopHandle};
use iomux_actors::{Backend, PubSub, PubSubConfig};

/// Read timeout of every client socket: a hung test fails instead of hanging.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Tests that open thousands of sockets take this lock, so that they never run together
/// (the file descriptors of one process stay well under 5000).
static HEAVY: Mutex<()> = Mutex::new(());

pub fn heavy() -> MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// The pub/sub settings of most tests: short hold timeout and tick, no heartbeat.
pub fn pubsub_config() -> PubSubConfig {
    PubSubConfig {
        hold_timeout: Duration::from_secs(1),
        tick: Duration::from_millis(100),
        heartbeat_interval: Duration::ZERO,
        ..PubSubConfig::default()
    }
}

/// The server settings of the tests: a deep listen backlog, a short shutdown.
pub fn server_config() -> Config {
    Config {
        listen_backlog: 4096,
        shutdown_timeout: Duration::from_secs(2),
        ..Config::default()
    }
}

/// A pub/sub server on its own thread; stopped (and joined) on drop. Or, made with
/// [`Server::at`], a client's view of a server that runs elsewhere.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<StopHandle>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(config: PubSubConfig) -> Server {
        Server::start_with(config, server_config())
    }

    pub fn start_with(config: PubSubConfig, server: Config) -> Server {
        Server::start_full(config, server, Backend::InProcess)
    }

    /// A server whose hub has this backend.
    pub fn start_backend(config: PubSubConfig, backend: Backend) -> Server {
        Server::start_full(config, server_config(), backend)
    }

    /// The requests of the tests, to a server that runs elsewhere (not stopped on drop).
    pub fn at(addr: SocketAddr) -> Server {
        Server {
            addr,
            stop: None,
            thread: None,
        }
    }

    fn start_full(config: PubSubConfig, server: Config, backend: Backend) -> Server {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let ex: LocalExecutor<'static> = LocalExecutor::new();
            let pubsub = PubSub::with_backend(&ex, config, backend);
            let acceptor = Acceptor::builder()
                .listen("127.0.0.1:0")
                .config(server)
                .bind(pubsub.handler())
                .unwrap();
            tx.send((acceptor.local_addr(), acceptor.stop_handle()))
                .unwrap();
            async_io::block_on(ex.run(acceptor.serve(&ex))).unwrap();
        });
        let (addr, stop) = rx.recv().expect("server thread failed to start");
        Server {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// A new client connection.
    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// One request on a new connection, one response.
    pub fn request(&self, raw: &str) -> Response {
        self.request_bytes(raw.as_bytes())
    }

    pub fn request_bytes(&self, raw: &[u8]) -> Response {
        let mut c = self.client();
        c.send(raw);
        c.response_for(raw).unwrap_or_else(|e| {
            panic!(
                "no response to {:?}: {e}",
                String::from_utf8_lossy(&raw[..raw.len().min(200)])
            )
        })
    }

    /// Publish `body` on `channel` with extra header lines (each ending in CRLF).
    pub fn publish(&self, channel: &str, body: &[u8], headers: &str) -> Response {
        self.request_bytes(&publish_request("POST", channel, body, headers))
    }

    /// Publish and return the new message's id (`T:G`, from the publisher's reply).
    pub fn publish_id(&self, channel: &str, body: &str) -> String {
        let r = self.publish(channel, body.as_bytes(), "");
        assert!(r.status == 201 || r.status == 202, "publish: {r:?}");
        last_message_id(&r)
    }

    /// `GET /status` as `name: value` pairs.
    pub fn status(&self) -> Vec<(String, String)> {
        let r = self.request("GET /status HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(r.status, 200, "{r:?}");
        r.text()
            .lines()
            .map(|l| {
                let (n, v) = l.split_once(": ").unwrap_or_else(|| panic!("line {l:?}"));
                (n.to_string(), v.to_string())
            })
            .collect()
    }

    /// One numeric `/status` field.
    pub fn status_field(&self, name: &str) -> u64 {
        let status = self.status();
        let value = status
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("/status has no {name:?}: {status:?}"));
        value.1.parse().unwrap()
    }

    /// Poll `/status` until `name` has `value`; the last value seen otherwise.
    pub fn wait_status(&self, name: &str, value: u64, within: Duration) -> Result<(), u64> {
        let deadline = Instant::now() + within;
        loop {
            let seen = self.status_field(name);
            if seen == value {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(seen);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = &self.stop {
            stop.stop();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The request bytes of a publish.
pub fn publish_request(method: &str, channel: &str, body: &[u8], headers: &str) -> Vec<u8> {
    let mut raw = format!(
        "{method} /pub/{channel} HTTP/1.1\r\nHost: t\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw
}

/// A subscriber GET of `/sub/{target}` with extra header lines.
pub fn sub(target: &str, headers: &str) -> String {
    format!("GET /sub/{target} HTTP/1.1\r\nHost: t\r\n{headers}\r\n")
}

/// An EventSource GET of `/sub/{target}` with extra header lines.
pub fn es(target: &str, headers: &str) -> String {
    format!("GET /sub/{target} HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n{headers}\r\n")
}

/// The `last message id` of a publisher reply (text form).
pub fn last_message_id(r: &Response) -> String {
    r.text()
        .split("\r\n")
        .find_map(|l| l.strip_prefix("last message id: "))
        .unwrap_or_else(|| panic!("no last message id in {r:?}"))
        .to_string()
}

/// `(time, tag)` of a `T:G` id.
pub fn split_id(id: &str) -> (u64, u32) {
    let (t, g) = id.split_once(':').unwrap();
    (t.parse().unwrap(), g.parse().unwrap())
}

/// The HTTP-date of a `T:G` id's second.
pub fn id_date(id: &str) -> String {
    let (t, _) = split_id(id);
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_secs(t))
}

/// A long-poll subscriber at `addr` that re-polls with its cursor (starting from the header
/// lines `cursor`; empty: none) until it has `n` messages or 10 s pass: the replies, in order.
pub fn repoll(
    addr: SocketAddr,
    channel: &str,
    cursor: String,
    n: usize,
) -> JoinHandle<Vec<Response>> {
    let channel = channel.to_string();
    std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        c.set_timeout(Duration::from_secs(10));
        let mut got = Vec::new();
        let mut cursor = cursor;
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.len() < n && Instant::now() < deadline {
            let r = c.exchange(&sub(&channel, &cursor));
            assert_eq!(r.status, 200, "{r:?}");
            cursor = cursor_of(&r);
            got.push(r);
        }
        got
    })
}

/// The header lines a long-poll client sends back: `If-Modified-Since` from `Last-Modified` and
/// `If-None-Match` from `Etag`.
pub fn cursor_of(r: &Response) -> String {
    let lm = r
        .header("last-modified")
        .unwrap_or_else(|| panic!("no Last-Modified: {r:?}"));
    let etag = r.header("etag").unwrap_or_else(|| panic!("no Etag: {r:?}"));
    format!("If-Modified-Since: {lm}\r\nIf-None-Match: {etag}\r\n")
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    /// Names in lower case, in wire order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// First header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All headers but `Date`, as `name: value` strings in wire order.
    pub fn header_lines(&self) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n != "date")
            .map(|(n, v)| format!("{n}: {v}"))
            .collect()
    }

    /// Headers whose name starts with `access-control-`.
    pub fn cors_lines(&self) -> Vec<String> {
        self.header_lines()
            .into_iter()
            .filter(|l| l.starts_with("access-control-"))
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client connection that keeps unread input between calls.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).unwrap();
    }

    pub fn send_str(&mut self, raw: &str) {
        self.send(raw.as_bytes());
    }

    /// Send a request and read its response.
    pub fn exchange(&mut self, raw: &str) -> Response {
        self.exchange_bytes(raw.as_bytes())
    }

    pub fn exchange_bytes(&mut self, raw: &[u8]) -> Response {
        self.send(raw);
        self.response_for(raw).unwrap_or_else(|e| {
            panic!(
                "no response to {:?}: {e}",
                String::from_utf8_lossy(&raw[..raw.len().min(200)])
            )
        })
    }

    pub fn set_timeout(&self, timeout: Duration) {
        self.stream
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .unwrap();
    }

    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 16384];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// Status line and headers.
    pub fn head(&mut self) -> io::Result<Response> {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            self.fill()?;
        };
        let text = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end + 4);
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        if version != "HTTP/1.1" {
            return Err(io::Error::new(io::ErrorKind::InvalidData, text));
        }
        let status = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, text.clone()))?;
        let reason = parts.next().unwrap_or("").to_string();
        let headers = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap_or((l, ""));
                (n.trim().to_ascii_lowercase(), v.trim().to_string())
            })
            .collect();
        Ok(Response {
            status,
            reason,
            headers,
            body: Vec::new(),
        })
    }

    fn exact(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            self.fill()?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// One chunk of a chunked body; `None` at the last chunk. A read timeout leaves the input
    /// as it was, so the call can be repeated.
    pub fn chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(line_end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
                let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, line.clone()))?;
                if size == 0 {
                    if let Some(i) = self.buf[line_end..]
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                    {
                        self.buf.drain(..line_end + i + 4);
                        return Ok(None);
                    }
                } else if self.buf.len() >= line_end + 2 + size + 2 {
                    let start = line_end + 2;
                    if &self.buf[start + size..start + size + 2] != b"\r\n" {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "chunk without CRLF",
                        ));
                    }
                    let data = self.buf[start..start + size].to_vec();
                    self.buf.drain(..start + size + 2);
                    return Ok(Some(data));
                }
            }
            self.fill()?;
        }
    }

    /// A whole response (to a request that was not HEAD).
    pub fn response(&mut self) -> io::Result<Response> {
        self.response_inner(false)
    }

    /// A whole response to `raw`.
    pub fn response_for(&mut self, raw: &[u8]) -> io::Result<Response> {
        self.response_inner(raw.starts_with(b"HEAD "))
    }

    fn response_inner(&mut self, head_request: bool) -> io::Result<Response> {
        let mut r = self.head()?;
        if head_request || r.status < 200 || r.status == 204 || r.status == 304 {
            return Ok(r);
        }
        if r.header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            while let Some(c) = self.chunk()? {
                r.body.extend(c);
            }
        } else if let Some(len) = r.header("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
            r.body = self.exact(len)?;
        } else {
            loop {
                match self.fill() {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(e),
                }
            }
            r.body = std::mem::take(&mut self.buf);
        }
        Ok(r)
    }

    /// Has the server closed the connection (within `within`)? Unread bytes are an error.
    pub fn closed_within(&mut self, within: Duration) -> bool {
        self.set_timeout(within);
        let result = match self.fill() {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => true,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => true,
            Err(_) => false,
            Ok(()) => panic!("unexpected bytes: {:?}", String::from_utf8_lossy(&self.buf)),
        };
        self.set_timeout(READ_TIMEOUT);
        result
    }
}

/// An EventSource stream being read: its head and the body text received so far.
pub struct EventStream {
    pub client: Client,
    pub head: Response,
    /// Every chunk received, in order.
    pub chunks: Vec<Vec<u8>>,
    /// The last chunk was received (the stream ended cleanly).
    pub ended: bool,
}

impl EventStream {
    /// Send an EventSource request and read the head.
    pub fn open(server: &Server, raw: &str) -> EventStream {
        let mut client = server.client();
        client.send_str(raw);
        let head = client.head().expect("eventsource head");
        EventStream {
            client,
            head,
            chunks: Vec::new(),
            ended: false,
        }
    }

    /// Everything received so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.chunks.concat()).into_owned()
    }

    /// Read chunks until `done(text)` or the stream ends or `within` passes; whether `done`.
    pub fn read_until(&mut self, within: Duration, done: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if done(&self.text()) {
                return true;
            }
            if self.ended {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            self.client.set_timeout(deadline - now);
            match self.client.chunk() {
                Ok(Some(c)) => self.chunks.push(c),
                Ok(None) => self.ended = true,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("eventsource stream broken: {e}; so far {:?}", self.text()),
            }
        }
    }

    /// Read until the text contains `needle`.
    pub fn read_until_contains(&mut self, within: Duration, needle: &str) -> bool {
        self.read_until(within, |t| t.contains(needle))
    }

    /// Read until the stream ends (last chunk); whether it did.
    pub fn read_to_end(&mut self, within: Duration) -> bool {
        self.read_until(within, |_| false);
        self.ended
    }
}

/// Flat JSON object of numbers and strings (as `/status` writes it) to `name → raw value`.
pub fn flat_json(text: &str) -> Vec<(String, String)> {
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or_else(|| panic!("not a JSON object: {text:?}"));
    inner
        .split(", ")
        .map(|pair| {
            let (n, v) = pair
                .split_once(": ")
                .unwrap_or_else(|| panic!("pair {pair:?}"));
            let n = n
                .trim()
                .strip_prefix('"')
                .and_then(|n| n.strip_suffix('"'))
                .unwrap_or_else(|| panic!("name {n:?}"));
            (n.to_string(), v.trim().to_string())
        })
        .collect()
}
