//! HTTP/1.1 reply parsing and non-blocking connection buffers (adapted from the shared bench
//! harness, lpbench).

use std::io::{self, Read, Write};

use mio::net::TcpStream;

/// A parsed reply: what the modes look at.
pub struct Reply {
    pub status: u16,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub close: bool,
    /// Byte range of the body in the buffer (for a chunked body: `body` holds it instead).
    pub body_at: (usize, usize),
    /// The decoded body of a chunked reply.
    pub chunked_body: Option<Vec<u8>>,
}

impl Reply {
    /// The body, given the buffer the reply was parsed from.
    pub fn body<'a>(&'a self, buf: &'a [u8]) -> &'a [u8] {
        match &self.chunked_body {
            Some(b) => b,
            None => &buf[self.body_at.0..self.body_at.1],
        }
    }
}

pub enum Parse {
    Partial,
    /// The reply and the bytes it took.
    Done(Reply, usize),
    Bad(String),
}

/// Decode a chunked body starting at `buf[0]`; returns (body, bytes consumed).
fn parse_chunked(buf: &[u8]) -> Option<Result<(Vec<u8>, usize), String>> {
    let mut pos = 0;
    let mut body = Vec::new();
    loop {
        let line_end = buf[pos..].windows(2).position(|w| w == b"\r\n")? + pos;
        let line = std::str::from_utf8(&buf[pos..line_end]).ok()?;
        let size_str = line.split(';').next().unwrap_or("").trim();
        let size = match usize::from_str_radix(size_str, 16) {
            Ok(s) => s,
            Err(_) => return Some(Err(format!("bad chunk size {size_str:?}"))),
        };
        pos = line_end + 2;
        if size == 0 {
            // trailers until the empty line
            loop {
                let e = buf[pos..].windows(2).position(|w| w == b"\r\n")? + pos;
                let empty = e == pos;
                pos = e + 2;
                if empty {
                    return Some(Ok((body, pos)));
                }
            }
        }
        if buf.len() < pos + size + 2 {
            return None;
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        pos += size + 2;
    }
}

/// Parse one reply at the start of `buf`. `want_cursor`: keep `Etag` and `Last-Modified`.
pub fn parse_reply(buf: &[u8], want_cursor: bool) -> Parse {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Response::new(&mut headers);
    let hlen = match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parse::Partial,
        Err(e) => return Parse::Bad(format!("parse: {e}")),
    };
    let status = r.code.unwrap_or(0);
    let mut etag = None;
    let mut last_modified = None;
    let mut clen: Option<usize> = None;
    let mut chunked = false;
    let mut close = r.version == Some(0);
    let value = |v: &[u8]| String::from_utf8_lossy(v).trim().to_string();
    for h in r.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            clen = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok());
        } else if want_cursor && name.eq_ignore_ascii_case(b"etag") {
            etag = Some(value(h.value));
        } else if want_cursor && name.eq_ignore_ascii_case(b"last-modified") {
            last_modified = Some(value(h.value));
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = value(h.value).to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case(b"connection") {
            let l = value(h.value).to_ascii_lowercase();
            if l.contains("close") {
                close = true;
            } else if l.contains("keep-alive") {
                close = false;
            }
        }
    }
    let no_body = status == 204 || status == 304 || (100..200).contains(&status);
    let mut reply = Reply {
        status,
        etag,
        last_modified,
        close,
        body_at: (hlen, hlen),
        chunked_body: None,
    };
    let used = if no_body {
        hlen
    } else if chunked {
        match parse_chunked(&buf[hlen..]) {
            None => return Parse::Partial,
            Some(Err(e)) => return Parse::Bad(e),
            Some(Ok((b, n))) => {
                reply.chunked_body = Some(b);
                hlen + n
            }
        }
    } else if let Some(n) = clen {
        if buf.len() < hlen + n {
            return Parse::Partial;
        }
        reply.body_at = (hlen, hlen + n);
        hlen + n
    } else {
        return Parse::Bad("reply without length (read-to-close not supported)".into());
    };
    Parse::Done(reply, used)
}

/// A non-blocking client connection with its output and input buffers.
pub struct Io {
    pub sock: TcpStream,
    pub out: Vec<u8>,
    pub out_pos: usize,
    pub inb: Vec<u8>,
    /// Start of the unparsed input in `inb`.
    pub in_pos: usize,
}

impl Io {
    pub fn new(sock: TcpStream) -> Io {
        Io {
            sock,
            out: Vec::new(),
            out_pos: 0,
            inb: Vec::new(),
            in_pos: 0,
        }
    }

    /// Queue `req` (replacing anything already written) and try to write it.
    pub fn queue(&mut self, req: &[u8]) -> io::Result<bool> {
        if self.out_pos >= self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
        self.out.extend_from_slice(req);
        self.write_out()
    }

    /// Nothing left to write.
    pub fn written(&self) -> bool {
        self.out_pos >= self.out.len()
    }

    /// Write what is pending; Ok(true) when all is written.
    pub fn write_out(&mut self) -> io::Result<bool> {
        while self.out_pos < self.out.len() {
            match self.sock.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "write 0")),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.out_pos = 0;
        Ok(true)
    }

    /// Read what is available; Ok(true) if EOF was seen. A read shorter than the buffer ends
    /// it (the socket is edge-triggered: more data raises a new event), unless `to_eof`: then
    /// read until `WouldBlock` or EOF (for events that report a hang-up).
    pub fn read_in(&mut self, to_eof: bool) -> io::Result<bool> {
        // drop what was parsed before
        if self.in_pos > 0 {
            self.inb.drain(..self.in_pos);
            self.in_pos = 0;
        }
        let mut tmp = [0u8; 16384];
        loop {
            match self.sock.read(&mut tmp) {
                Ok(0) => return Ok(true),
                Ok(n) => {
                    self.inb.extend_from_slice(&tmp[..n]);
                    if n < tmp.len() && !to_eof {
                        return Ok(false);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The unparsed input.
    pub fn pending(&self) -> &[u8] {
        &self.inb[self.in_pos..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_reply() {
        let buf = b"HTTP/1.1 200 OK\r\nEtag: \"3\"\r\nLast-Modified: x\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1";
        let Parse::Done(r, used) = parse_reply(buf, true) else {
            panic!("not parsed")
        };
        assert_eq!(r.status, 200);
        assert_eq!(r.etag.as_deref(), Some("\"3\""));
        assert_eq!(r.last_modified.as_deref(), Some("x"));
        assert_eq!(r.body(buf), b"hello");
        assert_eq!(&buf[used..], b"HTTP/1.1");
        assert!(matches!(parse_reply(&buf[..70], true), Parse::Partial));
    }

    #[test]
    fn chunked_reply() {
        let buf = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n";
        let Parse::Done(r, used) = parse_reply(buf, false) else {
            panic!("not parsed")
        };
        assert_eq!(r.body(buf), b"hello");
        assert_eq!(used, buf.len());
        assert!(!r.close);
    }
}
