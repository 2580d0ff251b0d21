//! The parsed request: one compact owned block, kept while a reply is deferred.

use std::borrow::Cow;
use std::net::SocketAddr;

use bytes::Bytes;

/// HTTP version of a request.
///
/// ```
/// assert_eq!(iomux::Version::Http11.as_str(), "HTTP/1.1");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// HTTP/1.0: the connection closes after the reply unless the client asked to keep it alive.
    Http10,
    /// HTTP/1.1: persistent connections, chunked bodies.
    Http11,
}

impl Version {
    /// The version as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// A byte range of the request's head block.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) len: u32,
}

impl Span {
    pub(crate) fn of(head: &[u8], part: &[u8]) -> Span {
        // Both slices come from the same buffer: the offset is a plain address difference.
        let start = part.as_ptr() as usize - head.as_ptr() as usize;
        Span {
            start: start as u32,
            len: part.len() as u32,
        }
    }

    fn get(self, head: &[u8]) -> &[u8] {
        &head[self.start as usize..(self.start + self.len) as usize]
    }
}

/// One HTTP request: method, target, version, header fields, body and the two socket addresses.
///
/// The head is stored as it arrived, in one allocation, with an index of spans into it, so a
/// request waiting for a deferred reply costs little more than its own bytes.
///
/// ```no_run
/// use iomux::{Handled, Reply, Request};
/// fn handler(req: &Request) -> Handled {
///     let who = req.header("user-agent").unwrap_or("stranger");
///     Reply::text(format!("{} {} from {who}\n", req.method(), req.path())).into()
/// }
/// ```
pub struct Request {
    head: Box<[u8]>,
    fields: Box<[(Span, Span)]>,
    method: Span,
    target: Span,
    version: Version,
    body: Bytes,
    peer_addr: SocketAddr,
    local_addr: SocketAddr,
}

impl Request {
    pub(crate) fn new(
        head: Box<[u8]>,
        fields: Box<[(Span, Span)]>,
        method: Span,
        target: Span,
        version: Version,
        peer_addr: SocketAddr,
        local_addr: SocketAddr,
    ) -> Request {
        Request {
            head,
            fields,
            method,
            target,
            version,
            body: Bytes::new(),
            peer_addr,
            local_addr,
        }
    }

    pub(crate) fn set_body(&mut self, body: Bytes) {
        self.body = body;
    }

    fn text(&self, span: Span) -> &str {
        // Method, target and field names are checked tokens (ASCII) by the parser.
        std::str::from_utf8(span.get(&self.head)).unwrap_or_default()
    }

    /// The method, as sent (`GET`, `POST`, or an extension token).
    pub fn method(&self) -> &str {
        self.text(self.method)
    }

    /// The request target as sent: origin form (`/path?query`), absolute form, `*` or authority.
    pub fn target(&self) -> &str {
        self.text(self.target)
    }

    /// The path of the target, percent-decoded (invalid UTF-8 becomes U+FFFD). For an absolute
    /// form target (`http://host/path`) the path part; `*` stays `*`.
    pub fn path(&self) -> Cow<'_, str> {
        percent_encoding::percent_decode_str(self.raw_path()).decode_utf8_lossy()
    }

    /// The path of the target before percent-decoding.
    pub fn raw_path(&self) -> &str {
        let target = self.target();
        let without_query = target.split_once('?').map_or(target, |(p, _)| p);
        match without_query.find("://") {
            Some(scheme_end) => {
                let rest = &without_query[scheme_end + 3..];
                rest.find('/').map_or("/", |slash| &rest[slash..])
            }
            None => without_query,
        }
    }

    /// The query string (after `?`, without it), if the target has one.
    pub fn query(&self) -> Option<&str> {
        self.target().split_once('?').map(|(_, q)| q)
    }

    /// The HTTP version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The first header field with this name (case-insensitive), if its value is valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_bytes(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The first header field with this name (case-insensitive), as raw bytes.
    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        self.first_header(name)
    }

    /// Every header field with this name (case-insensitive), in the order received.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    fn first_header(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(n, _)| self.text(*n).eq_ignore_ascii_case(name))
            .map(|(_, v)| v.get(&self.head))
    }

    /// All header fields in the order received: name as sent, raw value.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.fields
            .iter()
            .map(|&(n, v)| (self.text(n), v.get(&self.head)))
    }

    /// The request body (empty when none was sent), de-chunked.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// The local address the request arrived on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method())
            .field("target", &self.target())
            .field("version", &self.version)
            .field("headers", &self.fields.len())
            .field("body", &self.body.len())
            .field("peer_addr", &self.peer_addr)
            .finish()
    }
}
