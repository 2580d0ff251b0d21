//! A minimal raw HTTP/1.1 client over `std::net::TcpStream`: requests are written byte for byte
//! as built here, responses are read as sent (header names and order kept), with every read
//! bounded by a deadline.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Longest single blocking read: deadlines are checked at least this often.
const READ_SLICE: Duration = Duration::from_millis(100);

/// A request, rendered literally by [`Req::bytes`].
#[derive(Debug, Clone)]
pub struct Req {
    method: &'static str,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    /// `method target HTTP/1.1` with `Host: 127.0.0.1`.
    pub fn new(method: &'static str, target: impl Into<String>) -> Req {
        Req {
            method,
            target: target.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Add a header line, as given.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Req {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// Set the body (`Content-Length` is added).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Req {
        self.body = body.into();
        self
    }

    /// The request's `Origin`, if any.
    pub fn origin(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("origin"))
            .map(|(_, v)| v.as_str())
    }

    /// The request target (path and query).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Whether this is a `HEAD` request (its response has no body).
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }

    /// The exact bytes sent.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "{} {} HTTP/1.1\r\nHost: 127.0.0.1\r\n",
            self.method, self.target
        );
        for (name, value) in &self.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        if !self.body.is_empty() || matches!(self.method, "POST" | "PUT") {
            out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        out.push_str("\r\n");
        let mut out = out.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }

    /// The request line, for messages.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.target)
    }
}

/// How the body of a response was delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body by the status or the method.
    None,
    /// `Content-Length`.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Ends when the server closes the connection.
    Close,
}

/// A response as received.
#[derive(Debug, Clone, Default)]
pub struct Response {
    /// 0 if no response could be read (see `error`).
    pub status: u16,
    /// Every header line in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// Why the response is missing or incomplete.
    pub error: Option<String>,
}

impl Response {
    fn failed(error: String) -> Response {
        Response {
            error: Some(error),
            ..Response::default()
        }
    }

    /// The first header of this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn framing(&self, head_request: bool) -> Framing {
        if head_request || self.status < 200 || self.status == 204 || self.status == 304 {
            return Framing::None;
        }
        if self
            .header("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
        {
            return Framing::Chunked;
        }
        match self.header("content-length").map(|l| l.trim().parse()) {
            Some(Ok(n)) => Framing::Length(n),
            _ => Framing::Close,
        }
    }
}

/// One client connection.
pub struct Conn {
    stream: TcpStream,
    raw: Vec<u8>,
    eof: bool,
}

impl Conn {
    /// Connect (3 s at most) to a server on loopback.
    pub fn connect(addr: SocketAddr) -> io::Result<Conn> {
        assert!(addr.ip().is_loopback(), "only loopback servers: {addr}");
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(Duration::from_secs(5)))?;
        stream.set_read_timeout(Some(READ_SLICE))?;
        Ok(Conn {
            stream,
            raw: Vec::new(),
            eof: false,
        })
    }

    /// Send the request bytes.
    pub fn send(&mut self, req: &Req) -> io::Result<()> {
        self.stream.write_all(&req.bytes())
    }

    /// Read what arrives until `deadline`: `Ok(true)` on new bytes, `Ok(false)` at end of
    /// stream, `Err(TimedOut)` past the deadline.
    fn fill(&mut self, deadline: Instant) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        let mut buf = [0u8; 16384];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.stream.set_read_timeout(Some(left.min(READ_SLICE)))?;
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.raw.extend_from_slice(&buf[..n]);
                    return Ok(true);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// True if nothing at all (no byte, no close) arrives within `wait`.
    pub fn quiet_for(&mut self, wait: Duration) -> bool {
        self.raw.is_empty()
            && matches!(self.fill(Instant::now() + wait), Err(e) if e.kind() == io::ErrorKind::TimedOut)
    }

    /// Read a status line and headers.
    fn head(&mut self, deadline: Instant) -> Result<(Response, usize), String> {
        loop {
            if let Some(end) = find(&self.raw, b"\r\n\r\n") {
                let text = String::from_utf8_lossy(&self.raw[..end]).into_owned();
                let mut lines = text.split("\r\n");
                let status_line = lines.next().unwrap_or_default();
                let status = status_line
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("bad status line {status_line:?}"))?;
                let headers = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.to_string(), v.trim().to_string()))
                    .collect();
                let response = Response {
                    status,
                    headers,
                    ..Response::default()
                };
                return Ok((response, end + 4));
            }
            match self.fill(deadline) {
                Ok(true) => {}
                Ok(false) => {
                    return Err(format!(
                        "connection closed before a complete head ({} bytes: {:?})",
                        self.raw.len(),
                        String::from_utf8_lossy(&self.raw)
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err(if self.raw.is_empty() {
                        "no response before the deadline".to_string()
                    } else {
                        format!(
                            "incomplete head at the deadline: {:?}",
                            String::from_utf8_lossy(&self.raw)
                        )
                    })
                }
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    /// Read one whole response within `timeout`.
    pub fn response(&mut self, timeout: Duration, head_request: bool) -> Response {
        let deadline = Instant::now() + timeout;
        let (mut response, start) = match self.head(deadline) {
            Ok(head) => head,
            Err(e) => return Response::failed(e),
        };
        let framing = response.framing(head_request);
        loop {
            let (body, complete) = decode(&self.raw[start..], framing, self.eof);
            if complete {
                response.body = body;
                return response;
            }
            match self.fill(deadline) {
                Ok(_) => {}
                Err(e) => {
                    response.body = body;
                    response.error = Some(format!("body incomplete ({framing:?}): {e}"));
                    return response;
                }
            }
        }
    }

    /// Read the head of a streamed response (EventSource) within `timeout`.
    pub fn stream(mut self, timeout: Duration) -> Result<Stream, String> {
        let (head, start) = self.head(Instant::now() + timeout)?;
        let framing = head.framing(false);
        let mut stream = Stream {
            conn: self,
            head,
            start,
            framing,
            body: Vec::new(),
            ended: false,
        };
        stream.update();
        Ok(stream)
    }
}

/// A response whose body is read as it arrives.
pub struct Stream {
    conn: Conn,
    /// Status and headers (no body).
    pub head: Response,
    start: usize,
    /// How the body is delimited.
    pub framing: Framing,
    /// The body received so far, de-chunked.
    pub body: Vec<u8>,
    /// The body ended (last chunk, length reached, or the server closed the connection).
    pub ended: bool,
}

impl Stream {
    fn update(&mut self) {
        let (body, complete) = decode(&self.conn.raw[self.start..], self.framing, self.conn.eof);
        self.body = body;
        self.ended = complete;
    }

    /// Whether the server closed the connection.
    pub fn closed(&self) -> bool {
        self.conn.eof
    }

    /// Read until `done(body)` holds, the body ends, or the deadline passes; returns `done(body)`.
    pub fn read_until(&mut self, deadline: Instant, done: impl Fn(&[u8]) -> bool) -> bool {
        loop {
            self.update();
            if done(&self.body) || self.ended {
                return done(&self.body);
            }
            if self.conn.fill(deadline).is_err() {
                self.update();
                return done(&self.body);
            }
        }
    }

    /// Read until the body ends (true) or the deadline passes (false).
    pub fn read_to_end(&mut self, deadline: Instant) -> bool {
        self.read_until(deadline, |_| false);
        if self.ended && self.framing == Framing::Chunked {
            // A chunked stream's end is not the connection's: wait briefly for a close.
            let _ = self.conn.fill(
                Instant::now()
                    + Duration::from_millis(50)
                        .min(deadline.saturating_duration_since(Instant::now())),
            );
        }
        self.ended
    }
}

/// The body bytes decoded so far, and whether the body is complete.
fn decode(raw: &[u8], framing: Framing, eof: bool) -> (Vec<u8>, bool) {
    match framing {
        Framing::None => (Vec::new(), true),
        Framing::Length(n) => (raw[..n.min(raw.len())].to_vec(), raw.len() >= n),
        Framing::Close => (raw.to_vec(), eof),
        Framing::Chunked => {
            let mut body = Vec::new();
            let mut rest = raw;
            loop {
                let Some(line_end) = find(rest, b"\r\n") else {
                    return (body, false);
                };
                let size_text = String::from_utf8_lossy(&rest[..line_end]);
                let size_text = size_text.split(';').next().unwrap_or("").trim();
                let Ok(size) = usize::from_str_radix(size_text, 16) else {
                    return (body, false);
                };
                let data = &rest[line_end + 2..];
                if size == 0 {
                    // No trailers expected: the last chunk ends the body.
                    return (body, true);
                }
                if data.len() < size + 2 {
                    return (body, false);
                }
                body.extend_from_slice(&data[..size]);
                rest = &data[size + 2..];
            }
        }
    }
}

/// Position of `needle` in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One request on a new connection, its response read within `timeout`.
pub fn exchange(addr: SocketAddr, req: &Req, timeout: Duration) -> Response {
    let mut conn = match Conn::connect(addr) {
        Ok(conn) => conn,
        Err(e) => return Response::failed(format!("connect: {e}")),
    };
    if let Err(e) = conn.send(req) {
        return Response::failed(format!("send: {e}"));
    }
    conn.response(timeout, req.is_head())
}
