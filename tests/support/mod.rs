//! Shared by the integration tests: a real server on 127.0.0.1:0 in its own thread, raw
//! clients that write literal bytes, and a small HTTP/1.1 response reader.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use async_executor::LocalExecutor;
use iomux::{Acceptor, AcceptorBuilder, Config, Handler, StopHandle};

/// A server running on its own thread; stopped (and joined) on drop.
pub struct Server {
    pub addr: SocketAddr,
    stop: StopHandle,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Start a server on 127.0.0.1:0 with the default config. `make` runs on the server thread
    /// with the executor (to spawn actors) and returns the handler.
    pub fn start<H, F>(make: F) -> Server
    where
        H: Handler,
        F: FnOnce(&LocalExecutor<'static>) -> H + Send + 'static,
    {
        Server::start_with("127.0.0.1:0", Config::default(), make)
    }

    /// Start a server on `addr` with `config`.
    pub fn start_with<H, F>(addr: &str, config: Config, make: F) -> Server
    where
        H: Handler,
        F: FnOnce(&LocalExecutor<'static>) -> H + Send + 'static,
    {
        let addr = addr.to_string();
        Server::start_built(move |b| b.listen(addr).config(config), make)
    }

    /// Start a server whose builder `configure` sets up (address, config, error pages, access
    /// log...); `make` runs on the server thread with the executor and returns the handler.
    pub fn start_built<H, C, F>(configure: C, make: F) -> Server
    where
        H: Handler,
        C: FnOnce(AcceptorBuilder) -> AcceptorBuilder + Send + 'static,
        F: FnOnce(&LocalExecutor<'static>) -> H + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let ex: LocalExecutor<'static> = LocalExecutor::new();
            let handler = make(&ex);
            let acceptor = configure(Acceptor::builder()).bind(handler).unwrap();
            tx.send((acceptor.local_addr(), acceptor.stop_handle()))
                .unwrap();
            async_io::block_on(ex.run(acceptor.serve(&ex))).unwrap();
        });
        let (addr, stop) = rx.recv().expect("server thread failed to start");
        Server {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Open a client connection with a read timeout (a hung test fails instead of hanging).
    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        s
    }

    /// Send `request` on a new connection and read until the server closes it.
    pub fn exchange(&self, request: &[u8]) -> Vec<u8> {
        let mut s = self.connect();
        s.write_all(request).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    }

    /// Stop the server and wait for its thread.
    pub fn shutdown(mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
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

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads responses one by one from a stream (Content-Length, chunked, or until close).
pub struct Reader<R> {
    inner: R,
    buf: Vec<u8>,
}

impl<R: Read> Reader<R> {
    pub fn new(inner: R) -> Self {
        Reader {
            inner,
            buf: Vec::new(),
        }
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    fn fill(&mut self) -> io::Result<bool> {
        let mut chunk = [0u8; 8192];
        let n = self.inner.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    fn line(&mut self) -> io::Result<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            if !self.fill()? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    fn exact(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill()? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Read the status line and headers only.
    pub fn head(&mut self) -> io::Result<Response> {
        let status_line = self.line()?;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, status_line.clone()))?;
        let mut headers = Vec::new();
        loop {
            let line = self.line()?;
            if line.is_empty() {
                break;
            }
            let (n, v) = line.split_once(':').unwrap_or((&line, ""));
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
        Ok(Response {
            status,
            headers,
            body: Vec::new(),
        })
    }

    /// Read one chunk of a chunked body; `None` at the last chunk (trailers consumed).
    pub fn chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let size_line = self.line()?;
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, size_line.clone()))?;
        if size == 0 {
            while !self.line()?.is_empty() {}
            return Ok(None);
        }
        let data = self.exact(size)?;
        let crlf = self.exact(2)?;
        if crlf != b"\r\n" {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "chunk without CRLF",
            ));
        }
        Ok(Some(data))
    }

    /// Read one whole response. `head_request`: the request was HEAD (no body follows).
    pub fn response(&mut self, head_request: bool) -> io::Result<Response> {
        let mut r = self.head()?;
        let no_body = head_request || r.status < 200 || r.status == 204 || r.status == 304;
        if no_body {
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
            while self.fill()? {}
            r.body = std::mem::take(&mut self.buf);
        }
        Ok(r)
    }

    /// Bytes buffered but not yet consumed.
    pub fn leftover(&self) -> &[u8] {
        &self.buf
    }
}

/// Parse every response in `bytes` (as read until close).
pub fn parse_all(bytes: &[u8]) -> Vec<Response> {
    let mut reader = Reader::new(bytes);
    let mut out = Vec::new();
    while let Ok(r) = reader.response(false) {
        out.push(r);
    }
    out
}

/// Send one request on a fresh connection and parse the single response.
pub fn request(server: &Server, raw: &str) -> Response {
    let stream = server.connect();
    (&stream).write_all(raw.as_bytes()).unwrap();
    Reader::new(stream)
        .response(raw.starts_with("HEAD "))
        .unwrap()
}

/// Open a client connection to `server` (with the read timeout of [`Server::connect`]).
pub fn connect(server: &Server) -> TcpStream {
    server.connect()
}

/// Write literal request text on a connection.
pub fn write(stream: &TcpStream, raw: &str) {
    let mut s = stream;
    s.write_all(raw.as_bytes()).unwrap();
}

/// A minimal HTTP/1.1 GET for `path`.
pub fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")
}

/// An application for framing tests: 200 with a text body echoing method, target, version and
/// body (see [`echo_body`]).
pub fn echo(req: &iomux::Request) -> iomux::Reply {
    iomux::Reply::text(echo_body(
        req.method(),
        req.target(),
        req.version().as_str(),
        req.body(),
    ))
}

/// The body [`echo`] answers with.
pub fn echo_body(method: &str, target: &str, version: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "method={method}\ntarget={target}\nversion={version}\nbody[{}]=",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out.push(b'\n');
    out
}
