//! The parsed request: one compact owned block, kept while a reply is deferred; and what
//! Hunchentoot reads from it besides parameters (those are in [`params`](crate::params)): host,
//! cookies, Basic credentials, the body as text, the client behind trusted proxies, and
//! per-request data.

use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::cell::{OnceCell, RefCell};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;

use bytes::Bytes;
use http::StatusCode;

use crate::params::{Form, FormError};
use crate::parse::{self, ChunkedDecoder, Framing};
use crate::responder::ConnCell;
use crate::{context, Config};

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

/// Bytes of one header field's entry in a request's field index: name and value spans, four
/// little-endian `u32`s.
const FIELD_ENTRY: usize = 16;

fn encode_field(index: &mut Vec<u8>, (name, value): (Span, Span)) {
    for n in [name.start, name.len, value.start, value.len] {
        index.extend_from_slice(&n.to_le_bytes());
    }
}

fn decode_field(entry: &[u8]) -> (Span, Span) {
    let n = |i: usize| u32::from_le_bytes([entry[i], entry[i + 1], entry[i + 2], entry[i + 3]]);
    (
        Span {
            start: n(0),
            len: n(4),
        },
        Span {
            start: n(8),
            len: n(12),
        },
    )
}

/// One HTTP request: method, target, version, header fields, body and the two socket addresses.
///
/// The head is stored as it arrived, in one allocation, with an index of spans into it, so a
/// request waiting for a deferred reply costs little more than its own bytes. What is derived
/// from it on demand (parameters, cookies, uploads) and the handler's own
/// [data](Request::set_data) live in one more allocation, made on first use and kept with the
/// request, also while its context is saved: a restored context sees the same values.
///
/// ```no_run
/// use iomux::{Handled, Reply, Request};
/// fn handler(req: &Request) -> Handled {
///     let who = req.header("user-agent").unwrap_or("stranger");
///     Reply::text(format!("{} {} from {who}\n", req.method(), req.path())).into()
/// }
/// ```
pub struct Request {
    /// The head's bytes, then the header fields' index (`FIELD_ENTRY` bytes per field): one
    /// allocation per request.
    block: Box<[u8]>,
    /// Length of the head's bytes in `block`.
    head_len: u32,
    method: Span,
    target: Span,
    version: Version,
    /// `None` for an empty body (most requests): 8 bytes here rather than a `Bytes`' 32, in a
    /// request that may wait for a long time.
    body: Option<Box<Bytes>>,
    /// The connection it came on: its addresses (kept once per connection, not per request).
    conn: Rc<ConnCell>,
    /// Made on first use of a derived value or of request data.
    ext: OnceCell<Box<Ext>>,
}

/// What is derived from a request on demand, and per-request data; one allocation, made when
/// first needed.
#[derive(Default)]
pub(crate) struct Ext {
    /// The query string's parameters.
    pub(crate) get_params: OnceCell<Vec<(String, String)>>,
    /// The body's form: fields and uploads, or why it was refused.
    pub(crate) form: OnceCell<Result<Form, FormError>>,
    cookies: OnceCell<Vec<(String, String)>>,
    /// Values of [`Request::set_data`], one per type.
    data: RefCell<Vec<(TypeId, Rc<dyn Any>)>>,
    /// Hunchentoot's `*session*` (see [`context::session`]): here, since most requests never
    /// have one.
    session: RefCell<Option<Rc<dyn Any>>>,
}

impl Request {
    pub(crate) fn new(
        head: &[u8],
        fields: impl ExactSizeIterator<Item = (Span, Span)>,
        method: Span,
        target: Span,
        version: Version,
        conn: Rc<ConnCell>,
    ) -> Request {
        let mut block = Vec::with_capacity(head.len() + fields.len() * FIELD_ENTRY);
        block.extend_from_slice(head);
        fields.for_each(|field| encode_field(&mut block, field));
        Request {
            block: block.into_boxed_slice(),
            // The head is at most `Config::max_head_size`, checked by the parser.
            head_len: head.len() as u32,
            method,
            target,
            version,
            body: None,
            conn,
            ext: OnceCell::new(),
        }
    }

    /// Parse one request from raw bytes as the server would (head and body, with
    /// [`Config::default()`]'s limits), with the peer address `127.0.0.1:50000` and the local
    /// address `127.0.0.1:8080`: for examples, and for calling a handler without a socket.
    /// Bytes after the first request are ignored.
    ///
    /// ```
    /// let req = iomux::Request::from_bytes(
    ///     b"POST /items?id=7 HTTP/1.1\r\nHost: example\r\nContent-Length: 5\r\n\r\nhello",
    /// )?;
    /// assert_eq!((req.method(), req.path().as_ref()), ("POST", "/items"));
    /// assert_eq!(req.body().as_ref(), b"hello");
    /// // HTTP/1.1 without Host: the server would answer 400.
    /// assert_eq!(iomux::Request::from_bytes(b"GET / HTTP/1.1\r\n\r\n").unwrap_err(), 400);
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    ///
    /// # Errors
    /// The status the server would refuse the request with; `400` also when the bytes end
    /// before the head or the body does.
    pub fn from_bytes(raw: &[u8]) -> Result<Request, StatusCode> {
        let config = Config::default();
        let peer = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 50000);
        let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
        let (head, len) = parse::parse_head(raw, &config, &Rc::new(ConnCell::new(peer, local)))?
            .ok_or(StatusCode::BAD_REQUEST)?;
        let rest = &raw[len..];
        let body = match head.framing {
            Framing::Empty => Vec::new(),
            Framing::Length(n) => {
                let n = usize::try_from(n).map_err(|_| StatusCode::PAYLOAD_TOO_LARGE)?;
                rest.get(..n).ok_or(StatusCode::BAD_REQUEST)?.to_vec()
            }
            Framing::Chunked => {
                let mut decoder = ChunkedDecoder::new(config.max_head_size);
                let mut body = Vec::new();
                decoder
                    .decode(rest, &mut body, config.max_body_size)
                    .map_err(|e| e.status())?;
                if !decoder.is_done() {
                    return Err(StatusCode::BAD_REQUEST);
                }
                body
            }
        };
        let mut request = head.request;
        request.set_body(body.into());
        Ok(request)
    }

    pub(crate) fn set_body(&mut self, body: Bytes) {
        self.body = (!body.is_empty()).then(|| Box::new(body));
    }

    /// The connection the request came on.
    pub(crate) fn conn(&self) -> &Rc<ConnCell> {
        &self.conn
    }

    fn head(&self) -> &[u8] {
        &self.block[..self.head_len as usize]
    }

    /// The header fields' name and value spans, in the order received.
    fn fields(&self) -> impl ExactSizeIterator<Item = (Span, Span)> + '_ {
        self.block[self.head_len as usize..]
            .chunks_exact(FIELD_ENTRY)
            .map(decode_field)
    }

    fn text(&self, span: Span) -> &str {
        // Method, target and field names are checked tokens (ASCII) by the parser.
        std::str::from_utf8(span.get(self.head())).unwrap_or_default()
    }

    /// The method, as sent (`GET`, `POST`, or an extension token).
    ///
    /// ```
    /// let req = iomux::Request::from_bytes(b"DELETE /x HTTP/1.1\r\nHost: h\r\n\r\n")?;
    /// assert_eq!(req.method(), "DELETE");
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn method(&self) -> &str {
        self.text(self.method)
    }

    /// The request target as sent: origin form (`/path?query`), absolute form, `*` or authority.
    ///
    /// ```
    /// let req = iomux::Request::from_bytes(b"GET /a%20b?c=d HTTP/1.1\r\nHost: h\r\n\r\n")?;
    /// assert_eq!(req.target(), "/a%20b?c=d");
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn target(&self) -> &str {
        self.text(self.target)
    }

    /// The path of the target, percent-decoded (invalid UTF-8 becomes U+FFFD). For an absolute
    /// form target (`http://host/path`) the path part; `*` stays `*`.
    ///
    /// ```
    /// let req = iomux::Request::from_bytes(b"GET http://h/a%20b?c HTTP/1.1\r\nHost: h\r\n\r\n")?;
    /// assert_eq!(req.path(), "/a b");
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn path(&self) -> Cow<'_, str> {
        let raw = self.raw_path();
        if !raw.contains('%') {
            // Nothing to decode (the usual case), and the target is valid UTF-8 already.
            return Cow::Borrowed(raw);
        }
        percent_encoding::percent_decode_str(raw).decode_utf8_lossy()
    }

    /// The path of the target before percent-decoding.
    ///
    /// ```
    /// let req = iomux::Request::from_bytes(b"GET /a%20b?c HTTP/1.1\r\nHost: h\r\n\r\n")?;
    /// assert_eq!(req.raw_path(), "/a%20b");
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn raw_path(&self) -> &str {
        let target = self.target();
        let without_query = target.split_once('?').map_or(target, |(p, _)| p);
        if without_query.starts_with('/') {
            // Origin form, the usual case.
            return without_query;
        }
        match without_query.find("://") {
            Some(scheme_end) => {
                let rest = &without_query[scheme_end + 3..];
                rest.find('/').map_or("/", |slash| &rest[slash..])
            }
            None => without_query,
        }
    }

    /// The query string (after `?`, without it), if the target has one.
    ///
    /// ```
    /// let req = iomux::Request::from_bytes(b"GET /s?q=a+b&n=1 HTTP/1.1\r\nHost: h\r\n\r\n")?;
    /// assert_eq!(req.query(), Some("q=a+b&n=1")); // decoded: get_parameter
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn query(&self) -> Option<&str> {
        self.target().split_once('?').map(|(_, q)| q)
    }

    /// The HTTP version.
    ///
    /// ```
    /// let req = iomux::Request::from_bytes(b"GET / HTTP/1.0\r\n\r\n")?;
    /// assert_eq!(req.version(), iomux::Version::Http10);
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn version(&self) -> Version {
        self.version
    }

    /// The first header field with this name (case-insensitive), if its value is valid UTF-8.
    ///
    /// ```
    /// let req = iomux::Request::from_bytes(b"GET / HTTP/1.1\r\nHost: h\r\nX-Id: 7\r\n\r\n")?;
    /// assert_eq!(req.header("x-id"), Some("7"));
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_bytes(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The first header field with this name (case-insensitive), as raw bytes.
    ///
    /// ```
    /// let req = iomux::Request::from_bytes(b"GET / HTTP/1.1\r\nHost: h\r\nX-Name: caf\xe9\r\n\r\n")?;
    /// assert_eq!(req.header_bytes("x-name"), Some(&b"caf\xe9"[..]));
    /// assert_eq!(req.header("x-name"), None); // not UTF-8
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        self.first_header(name)
    }

    /// Every header field with this name (case-insensitive), in the order received.
    ///
    /// ```
    /// let req = iomux::Request::from_bytes(b"GET / HTTP/1.1\r\nHost: h\r\nAccept: a\r\nAccept: b\r\n\r\n")?;
    /// assert_eq!(req.header_all("accept").collect::<Vec<_>>(), [b"a", b"b"]);
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        let head = self.head();
        self.fields()
            .filter(move |(n, _)| n.get(head).eq_ignore_ascii_case(name.as_bytes()))
            .map(move |(_, v)| v.get(head))
    }

    /// Names are compared as bytes: a lookup costs no UTF-8 check per field.
    fn first_header(&self, name: &str) -> Option<&[u8]> {
        let head = self.head();
        self.fields()
            .find(|(n, _)| n.get(head).eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.get(head))
    }

    /// All header fields in the order received: name as sent, raw value.
    ///
    /// ```
    /// let req = iomux::Request::from_bytes(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n")?;
    /// let names: Vec<&str> = req.headers().map(|(name, _)| name).collect();
    /// assert_eq!(names, ["Host", "X-A"]);
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.fields()
            .map(|(n, v)| (self.text(n), v.get(self.head())))
    }

    /// The request body (empty when none was sent), de-chunked.
    ///
    /// ```
    /// let req = iomux::Request::from_bytes(b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc")?;
    /// assert_eq!(req.body().as_ref(), b"abc");
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn body(&self) -> &Bytes {
        /// The body of every request without one.
        static EMPTY: Bytes = Bytes::new();
        self.body.as_deref().unwrap_or(&EMPTY)
    }

    /// The client's address.
    ///
    /// ```
    /// let req = iomux::Request::from_bytes(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")?;
    /// assert_eq!(req.peer_addr().to_string(), "127.0.0.1:50000"); // from_bytes's placeholder
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn peer_addr(&self) -> SocketAddr {
        self.conn.addrs().peer
    }

    /// The local address the request arrived on.
    ///
    /// ```
    /// let req = iomux::Request::from_bytes(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")?;
    /// assert_eq!(req.local_addr().port(), 8080); // from_bytes's placeholder
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn local_addr(&self) -> SocketAddr {
        self.conn.addrs().local
    }

    /// The protocol as written on the wire (Hunchentoot's `server-protocol`): `HTTP/1.1` or
    /// `HTTP/1.0` (a later `HTTP/1.x` is served, and named, as `HTTP/1.1`).
    ///
    /// ```
    /// let req = iomux::Request::from_bytes(b"GET / HTTP/1.0\r\n\r\n")?;
    /// assert_eq!(req.protocol(), "HTTP/1.0");
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn protocol(&self) -> &'static str {
        self.version.as_str()
    }

    /// The host the request is for, as sent, port included: the authority of an absolute-form
    /// target (`GET http://example.com:8080/ HTTP/1.1`), which RFC 9112 §3.2.2 puts before the
    /// `Host` field, and otherwise the `Host` field. `None` for an HTTP/1.0 request without
    /// either.
    ///
    /// ```
    /// let req = iomux::Request::from_bytes(b"GET /a HTTP/1.1\r\nHost: example.com:8080\r\n\r\n")?;
    /// assert_eq!(req.host(), Some("example.com:8080"));
    /// let req = iomux::Request::from_bytes(b"GET http://origin.test/a HTTP/1.1\r\nHost: proxy\r\n\r\n")?;
    /// assert_eq!(req.host(), Some("origin.test"));
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn host(&self) -> Option<&str> {
        self.target_authority().or_else(|| self.header("host"))
    }

    /// The authority of an absolute-form target, without user information.
    fn target_authority(&self) -> Option<&str> {
        let target = self.target();
        let (scheme, rest) = target.split_once("://")?;
        if scheme.is_empty() || scheme.contains('/') {
            return None;
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        (!host.is_empty()).then_some(host)
    }

    /// The `User-Agent` field, if any (and valid UTF-8).
    ///
    /// ```
    /// let req = iomux::Request::from_bytes(b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: curl/8\r\n\r\n")?;
    /// assert_eq!(req.user_agent(), Some("curl/8"));
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn user_agent(&self) -> Option<&str> {
        self.header("user-agent")
    }

    /// The `Referer` field, if any (and valid UTF-8).
    ///
    /// ```
    /// let req = iomux::Request::from_bytes(b"GET / HTTP/1.1\r\nHost: x\r\nReferer: http://x/from\r\n\r\n")?;
    /// assert_eq!(req.referer(), Some("http://x/from"));
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn referer(&self) -> Option<&str> {
        self.header("referer")
    }

    /// The `Content-Type` field as sent, parameters included, if any (and valid UTF-8).
    ///
    /// ```
    /// let req = iomux::Request::from_bytes(
    ///     b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\n\r\nhi",
    /// )?;
    /// assert_eq!(req.content_type(), Some("text/plain; charset=utf-8"));
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn content_type(&self) -> Option<&str> {
        self.header("content-type")
    }

    /// The cookies the client sent, in order, duplicates kept: every `Cookie` field split at
    /// `;` into `name=value` pairs (RFC 6265 §5.4, as browsers send them), with surrounding
    /// whitespace and a pair of double quotes around the value removed. Values are as sent (no
    /// percent-decoding). A pair without `=` is a value with an empty name (RFC 6265bis), empty
    /// pairs are skipped, and bytes that are not UTF-8 become U+FFFD. Parsed once, on first use.
    ///
    /// ```
    /// let req = iomux::Request::from_bytes(
    ///     b"GET / HTTP/1.1\r\nHost: x\r\nCookie: sid=abc; theme=\"dark\";; lang=en\r\n\r\n",
    /// )?;
    /// let names: Vec<&str> = req.cookies().iter().map(|(n, _)| n.as_str()).collect();
    /// assert_eq!(names, ["sid", "theme", "lang"]);
    /// assert_eq!(req.cookie("theme"), Some("dark"));
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn cookies(&self) -> &[(String, String)] {
        self.ext()
            .cookies
            .get_or_init(|| parse_cookies(self.header_all("cookie")))
    }

    /// The value of the first cookie with this name (case-sensitive), if sent.
    ///
    /// ```
    /// let req = iomux::Request::from_bytes(b"GET / HTTP/1.1\r\nHost: x\r\nCookie: a=1; a=2\r\n\r\n")?;
    /// assert_eq!(req.cookie("a"), Some("1"));
    /// assert_eq!(req.cookie("A"), None);
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The user name and password of `Authorization: Basic` credentials (RFC 7617; Hunchentoot's
    /// `authorization`), if the request has them and they decode: base64 (padding optional),
    /// then split at the first `:`. The decoded bytes are read as UTF-8, or as ISO-8859-1 when
    /// they are not UTF-8 (what older browsers sent). `None` for another scheme or a malformed
    /// value.
    ///
    /// ```
    /// // "Aladdin:open sesame"
    /// let req = iomux::Request::from_bytes(
    ///     b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n",
    /// )?;
    /// assert_eq!(req.authorization(), Some(("Aladdin".to_string(), "open sesame".to_string())));
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn authorization(&self) -> Option<(String, String)> {
        let value = self.header_bytes("authorization")?.trim_ascii();
        let split = value.iter().position(|&b| b == b' ' || b == b'\t')?;
        let (scheme, credentials) = value.split_at(split);
        if !scheme.eq_ignore_ascii_case(b"basic") {
            return None;
        }
        let decoded = base64_decode(credentials.trim_ascii())?;
        let text = match String::from_utf8(decoded) {
            Ok(text) => text,
            Err(e) => e.into_bytes().iter().map(|&b| char::from(b)).collect(),
        };
        let (user, password) = text.split_once(':')?;
        Some((user.to_string(), password.to_string()))
    }

    /// The body as text, decoded by the `charset` parameter of `Content-Type`: UTF-8 when there
    /// is none or it names UTF-8 (or US-ASCII); ISO-8859-1 (`iso-8859-1`, `latin1`, `l1` and
    /// their aliases: each byte is the code point of the same number; not WHATWG's windows-1252
    /// reading of that label); any other charset is read as UTF-8. Bytes that are not valid
    /// UTF-8 become U+FFFD. Borrowed when no conversion is needed.
    ///
    /// ```
    /// let req = iomux::Request::from_bytes(
    ///     b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain; charset=ISO-8859-1\r\nContent-Length: 4\r\n\r\ncaf\xe9",
    /// )?;
    /// assert_eq!(req.body_text(), "café");
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn body_text(&self) -> Cow<'_, str> {
        let charset = self
            .content_type()
            .and_then(|value| media_type_param(value, "charset"));
        decode_text(self.body(), charset.as_deref())
    }

    /// The client's address as the proxies in front of the server report it, when the peer is
    /// one of [`Config::trusted_proxies`] (Hunchentoot's `real-remote-addr`, made safe); the
    /// peer's own address otherwise. The trusted proxies are those of the acceptor of the
    /// current context (while a handler runs, or in a restored context); outside any context,
    /// none. See [`real_remote_addr_with`](Request::real_remote_addr_with) for the rules.
    ///
    /// ```
    /// let req = iomux::Request::from_bytes(b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n")?;
    /// // Outside a server no proxy is trusted: the header is not believed.
    /// assert_eq!(req.real_remote_addr(), req.peer_addr().ip());
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn real_remote_addr(&self) -> IpAddr {
        with_config(|config| self.real_remote_addr_with(&config.trusted_proxies))
    }

    /// The client's address given the trusted proxies `trusted`. If the peer is not one of
    /// them, the peer. Otherwise the hops the proxies appended are read from right to left —
    /// the `for=` of each element of the `Forwarded` fields (RFC 7239) if there are any, else
    /// the entries of the `X-Forwarded-For` fields — and the first hop that is not a trusted
    /// proxy is the client (so addresses a client wrote itself, to the left, are never taken).
    /// A hop that is not an IP address (`unknown`, an obfuscated name, garbage) ends the walk:
    /// the answer is then the last trusted address reached. If every hop is trusted, the
    /// leftmost. Ports (`192.0.2.1:4711`, `"[2001:db8::1]:80"`) are ignored; IPv4-mapped IPv6
    /// addresses are given in their IPv4 form.
    ///
    /// ```
    /// use std::net::IpAddr;
    /// let req = iomux::Request::from_bytes(
    ///     b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.1.1.1, 203.0.113.9, 10.0.0.2\r\n\r\n",
    /// )?;
    /// let proxies: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()];
    /// assert_eq!(req.real_remote_addr_with(&proxies), "203.0.113.9".parse::<IpAddr>().unwrap());
    /// assert_eq!(req.real_remote_addr_with(&[]), req.peer_addr().ip());
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn real_remote_addr_with(&self, trusted: &[IpAddr]) -> IpAddr {
        let is_trusted = |ip: IpAddr| trusted.iter().any(|t| t.to_canonical() == ip);
        let mut addr = self.peer_addr().ip().to_canonical();
        if !is_trusted(addr) {
            return addr;
        }
        let mut hops: Vec<Option<IpAddr>> = Vec::new();
        for value in self.header_all("forwarded") {
            hops.extend(split_unquoted(&lossy(value), ',').map(|element| {
                split_unquoted(element, ';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                    .and_then(|(_, node)| parse_node(&unquote(node.trim())))
            }));
        }
        if self.header_all("forwarded").next().is_none() {
            for value in self.header_all("x-forwarded-for") {
                hops.extend(lossy(value).split(',').map(|hop| parse_node(hop.trim())));
            }
        }
        for hop in hops.into_iter().rev() {
            match hop {
                Some(ip) => {
                    addr = ip.to_canonical();
                    if !is_trusted(addr) {
                        return addr;
                    }
                }
                None => return addr,
            }
        }
        addr
    }

    /// Attach a value of type `T` to this request (Hunchentoot's `aux-request-value`),
    /// replacing the one set before; it stays with the request while its context is saved, so
    /// an actor sees it inside [`with_restored_context!`](crate::with_restored_context). Keyed
    /// by type: use a type of your own for each value.
    ///
    /// ```
    /// struct User(&'static str);
    /// let req = iomux::Request::from_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")?;
    /// req.set_data(User("alice"));
    /// assert_eq!(req.data::<User>().map(|u| u.0), Some("alice"));
    /// assert!(req.data::<String>().is_none());
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn set_data<T: 'static>(&self, value: T) {
        let value: Rc<dyn Any> = Rc::new(value);
        let mut data = self.ext().data.borrow_mut();
        match data.iter_mut().find(|(t, _)| *t == TypeId::of::<T>()) {
            Some(entry) => entry.1 = value,
            None => data.push((TypeId::of::<T>(), value)),
        }
    }

    /// The value of type `T` set with [`set_data`](Request::set_data), if any.
    ///
    /// ```
    /// let req = iomux::Request::from_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")?;
    /// assert!(req.data::<u32>().is_none());
    /// req.set_data(7u32);
    /// assert_eq!(req.data::<u32>().as_deref(), Some(&7));
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn data<T: 'static>(&self) -> Option<Rc<T>> {
        let ext = self.ext.get()?;
        let data = ext.data.borrow();
        let (_, value) = data.iter().find(|(t, _)| *t == TypeId::of::<T>())?;
        value.clone().downcast().ok()
    }

    /// Remove the value of type `T` from the request, returning it.
    ///
    /// ```
    /// let req = iomux::Request::from_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")?;
    /// req.set_data("token");
    /// assert_eq!(req.remove_data::<&str>().as_deref(), Some(&"token"));
    /// assert!(req.data::<&str>().is_none());
    /// # Ok::<(), iomux::http::StatusCode>(())
    /// ```
    pub fn remove_data<T: 'static>(&self) -> Option<Rc<T>> {
        let ext = self.ext.get()?;
        let mut data = ext.data.borrow_mut();
        let at = data.iter().position(|(t, _)| *t == TypeId::of::<T>())?;
        data.remove(at).1.downcast().ok()
    }

    /// The derived values and data, allocated on first use.
    pub(crate) fn ext(&self) -> &Ext {
        self.ext.get_or_init(Box::default)
    }

    /// The session slot's value.
    pub(crate) fn session(&self) -> Option<Rc<dyn Any>> {
        self.ext.get()?.session.borrow().clone()
    }

    /// Replace the session slot's value, giving back the previous one (to be dropped once the
    /// slot is no longer borrowed: its drop may look at the slot).
    pub(crate) fn replace_session(&self, session: Option<Rc<dyn Any>>) -> Option<Rc<dyn Any>> {
        if session.is_none() && self.ext.get().is_none() {
            return None;
        }
        std::mem::replace(&mut *self.ext().session.borrow_mut(), session)
    }
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method())
            .field("target", &self.target())
            .field("version", &self.version)
            .field("headers", &self.fields().len())
            .field("body", &self.body().len())
            .field("peer_addr", &self.peer_addr())
            .finish()
    }
}

/// Run `f` with the configuration of the acceptor of the current context, or with
/// [`Config::default()`] outside any context.
pub(crate) fn with_config<R>(f: impl FnOnce(&Config) -> R) -> R {
    if context::try_request().is_ok() {
        f(context::acceptor().config())
    } else {
        f(&Config::default())
    }
}

/// A header value as text; bytes that are not UTF-8 become U+FFFD.
fn lossy(value: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(value)
}

/// The `name=value` pairs of `Cookie` field values; see [`Request::cookies`].
fn parse_cookies<'a>(values: impl Iterator<Item = &'a [u8]>) -> Vec<(String, String)> {
    let mut cookies = Vec::new();
    for value in values {
        for pair in lossy(value).split(';') {
            let pair = pair.trim_matches([' ', '\t']);
            if pair.is_empty() {
                continue;
            }
            let (name, value) = pair.split_once('=').unwrap_or(("", pair));
            let value = value.trim_matches([' ', '\t']);
            let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                Some(inner) => inner,
                None => value,
            };
            cookies.push((
                name.trim_matches([' ', '\t']).to_string(),
                value.to_string(),
            ));
        }
    }
    cookies
}

/// Decode standard base64 (RFC 4648 §4), with or without `=` padding; `None` for anything
/// else.
fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    let unpadded = text.strip_suffix(b"==").or_else(|| text.strip_suffix(b"="));
    let data = unpadded.unwrap_or(text);
    if data.len() % 4 == 1 || (unpadded.is_some() && text.len() % 4 != 0) {
        return None;
    }
    let mut out = Vec::with_capacity(data.len() / 4 * 3 + 2);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in data {
        let sextet = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6 | u32::from(sextet)) & 0xffff;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Split `text` at every `sep` that is not inside a double-quoted string (where `\` escapes
/// the next character).
pub(crate) fn split_unquoted(text: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let s = rest?;
        let (mut quoted, mut escaped) = (false, false);
        for (i, c) in s.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                c if c == sep && !quoted => {
                    rest = Some(&s[i + c.len_utf8()..]);
                    return Some(&s[..i]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(s)
    })
}

/// The content of a double-quoted string (`\"` and `\\` unescaped; a backslash before anything
/// else is kept, as browsers send Windows paths unescaped), or `text` itself if not quoted.
pub(crate) fn unquote(text: &str) -> Cow<'_, str> {
    let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) else {
        return Cow::Borrowed(text);
    };
    if !inner.contains('\\') {
        return Cow::Borrowed(inner);
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('\\', Some(&next @ ('"' | '\\'))) => {
                out.push(next);
                chars.next();
            }
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The value of parameter `name` (case-insensitive) of a media type (`type/subtype; a=b;
/// c="d"`), unquoted.
pub(crate) fn media_type_param<'a>(value: &'a str, name: &str) -> Option<Cow<'a, str>> {
    split_unquoted(value, ';').skip(1).find_map(|param| {
        let (n, v) = param.split_once('=')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| unquote(v.trim()))
    })
}

/// The `type/subtype` of a media type, without parameters or surrounding whitespace.
pub(crate) fn media_essence(value: &str) -> &str {
    value.split(';').next().unwrap_or_default().trim()
}

/// Text in the named charset; see [`Request::body_text`].
pub(crate) fn decode_text<'a>(bytes: &'a [u8], charset: Option<&str>) -> Cow<'a, str> {
    const LATIN1: [&str; 10] = [
        "iso-8859-1",
        "iso8859-1",
        "iso_8859-1",
        "iso_8859-1:1987",
        "latin1",
        "l1",
        "cp819",
        "ibm819",
        "iso-ir-100",
        "csisolatin1",
    ];
    let charset = charset.map(str::trim).unwrap_or_default();
    if LATIN1.iter().any(|c| c.eq_ignore_ascii_case(charset)) && !bytes.is_ascii() {
        Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect())
    } else {
        String::from_utf8_lossy(bytes)
    }
}

/// An address of a forwarding header: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:4711`.
fn parse_node(node: &str) -> Option<IpAddr> {
    let port = |p: &str| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = node.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(port)) {
            return None;
        }
        return ip.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if let Ok(ip) = node.parse() {
        return Some(ip);
    }
    let (ip, p) = node.split_once(':')?;
    if !port(p) {
        return None;
    }
    ip.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(head: &str) -> Request {
        Request::from_bytes(head.as_bytes()).unwrap()
    }

    #[test]
    fn base64_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_decode(encoded.as_bytes()).unwrap(), plain.as_bytes());
            let unpadded = encoded.trim_end_matches('=');
            assert_eq!(
                base64_decode(unpadded.as_bytes()).unwrap(),
                plain.as_bytes()
            );
        }
        assert_eq!(base64_decode(b"+/+/").unwrap(), [0xfb, 0xff, 0xbf]);
        for bad in ["Z", "Zg=", "Zm9v=", "Zm 9v", "Zm9v!", "=", "Zg==="] {
            assert_eq!(base64_decode(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn authorization_forms() {
        let auth = |value: &str| {
            request(&format!(
                "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: {value}\r\n\r\n"
            ))
            .authorization()
        };
        let pair = |u: &str, p: &str| Some((u.to_string(), p.to_string()));
        assert_eq!(auth("Basic dXNlcjpwYXNz"), pair("user", "pass"));
        assert_eq!(auth("basic   dXNlcjpwYXNz"), pair("user", "pass"));
        assert_eq!(auth("Basic dXNlcjo="), pair("user", ""));
        // "a:b:c": the password may hold colons.
        assert_eq!(auth("Basic YTpiOmM="), pair("a", "b:c"));
        // ISO-8859-1 "é:x".
        assert_eq!(auth("Basic 6Tp4"), pair("é", "x"));
        assert_eq!(auth("Bearer dXNlcjpwYXNz"), None);
        assert_eq!(auth("Basic"), None);
        assert_eq!(auth("Basic !!!"), None);
        // "nocolon"
        assert_eq!(auth("Basic bm9jb2xvbg=="), None);
    }

    #[test]
    fn cookies_tolerant() {
        let cookies = parse_cookies(
            [&b" a=1 ;b = 2;;c=\"q\"; flag; e==x; =v; u=\xff"[..], b"a=3"].into_iter(),
        );
        let want = [
            ("a", "1"),
            ("b", "2"),
            ("c", "q"),
            ("", "flag"),
            ("e", "=x"),
            ("", "v"),
            ("u", "\u{fffd}"),
            ("a", "3"),
        ];
        let got: Vec<(&str, &str)> = cookies
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(got, want);
        assert!(parse_cookies([&b""[..], b";;", b" "].into_iter()).is_empty());
    }

    #[test]
    fn quoting_and_media_types() {
        let parts: Vec<&str> = split_unquoted(r#"a; b="x;y\"z"; c"#, ';').collect();
        assert_eq!(parts, ["a", r#" b="x;y\"z""#, " c"]);
        assert_eq!(unquote(r#""x;y\"z""#), r#"x;y"z"#);
        assert_eq!(unquote(r#""C:\dir\f.txt""#), r#"C:\dir\f.txt"#);
        assert_eq!(unquote("\""), "\"");
        assert_eq!(unquote("plain"), "plain");
        let ct = r#"multipart/form-data ; Boundary="a b;c" ; charset=latin1"#;
        assert_eq!(media_essence(ct), "multipart/form-data");
        assert_eq!(media_type_param(ct, "boundary").unwrap(), "a b;c");
        assert_eq!(media_type_param(ct, "CHARSET").unwrap(), "latin1");
        assert_eq!(media_type_param(ct, "other"), None);
        assert_eq!(media_type_param("text/plain", "charset"), None);
    }

    #[test]
    fn text_by_charset() {
        assert_eq!(decode_text(b"caf\xc3\xa9", None), "café");
        assert_eq!(decode_text(b"caf\xe9", Some("Latin1")), "café");
        assert_eq!(decode_text(b"caf\xe9", Some("utf-8")), "caf\u{fffd}");
        assert_eq!(decode_text(b"caf\xe9", Some("x-unknown")), "caf\u{fffd}");
        assert!(matches!(
            decode_text(b"ascii", Some("iso-8859-1")),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn forwarding_nodes() {
        let ip = |s: &str| s.parse::<IpAddr>().ok();
        assert_eq!(parse_node("192.0.2.1"), ip("192.0.2.1"));
        assert_eq!(parse_node("192.0.2.1:4711"), ip("192.0.2.1"));
        assert_eq!(parse_node("2001:db8::1"), ip("2001:db8::1"));
        assert_eq!(parse_node("[2001:db8::1]"), ip("2001:db8::1"));
        assert_eq!(parse_node("[2001:db8::1]:80"), ip("2001:db8::1"));
        for bad in [
            "unknown",
            "_hidden",
            "",
            "[::1",
            "[::1]x",
            "1.2.3.4:5:6",
            "[1.2.3.4]",
        ] {
            assert_eq!(parse_node(bad), None, "{bad}");
        }
    }

    #[test]
    fn real_remote_addr_walk() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let at = |fields: &str, trusted: &[&str]| {
            let trusted: Vec<IpAddr> = trusted.iter().map(|t| ip(t)).collect();
            request(&format!("GET / HTTP/1.1\r\nHost: x\r\n{fields}\r\n"))
                .real_remote_addr_with(&trusted)
        };
        let xff = "X-Forwarded-For: 6.6.6.6, 203.0.113.9\r\nX-Forwarded-For: 10.0.0.2\r\n";
        assert_eq!(at(xff, &[]), ip("127.0.0.1"));
        assert_eq!(at(xff, &["127.0.0.1"]), ip("10.0.0.2"));
        assert_eq!(at(xff, &["127.0.0.1", "10.0.0.2"]), ip("203.0.113.9"));
        assert_eq!(
            at(xff, &["127.0.0.1", "10.0.0.2", "203.0.113.9"]),
            ip("6.6.6.6")
        );
        assert_eq!(
            at("X-Forwarded-For: unknown\r\n", &["127.0.0.1"]),
            ip("127.0.0.1")
        );
        assert_eq!(at("X-Forwarded-For: \r\n", &["127.0.0.1"]), ip("127.0.0.1"));
        assert_eq!(at("", &["127.0.0.1"]), ip("127.0.0.1"));
        // Forwarded wins over X-Forwarded-For; quoted, bracketed and with ports.
        let fwd = "Forwarded: for=6.6.6.6, For=\"[2001:db8::7]:4711\";proto=https\r\n\
                   X-Forwarded-For: 198.51.100.1\r\n";
        assert_eq!(at(fwd, &["127.0.0.1"]), ip("2001:db8::7"));
        assert_eq!(at(fwd, &["127.0.0.1", "2001:db8::7"]), ip("6.6.6.6"));
        // An element without for=, or an obfuscated one, ends the walk at the last trusted hop.
        let fwd = "Forwarded: for=6.6.6.6, proto=http;by=10.0.0.1\r\n";
        assert_eq!(at(fwd, &["127.0.0.1"]), ip("127.0.0.1"));
        let fwd = "Forwarded: for=6.6.6.6, for=_gazonk, for=10.0.0.2\r\n";
        assert_eq!(at(fwd, &["127.0.0.1", "10.0.0.2"]), ip("10.0.0.2"));
        // The trusted list matches IPv4-mapped IPv6 addresses.
        assert_eq!(at(xff, &["::ffff:127.0.0.1"]), ip("10.0.0.2"));
    }

    #[test]
    fn hosts() {
        let host = |target: &str, host: &str| {
            request(&format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n"))
                .host()
                .map(str::to_string)
        };
        assert_eq!(host("/", "a.test:81").as_deref(), Some("a.test:81"));
        assert_eq!(host("http://b.test/x", "a").as_deref(), Some("b.test"));
        assert_eq!(
            host("http://u:p@b.test:8/x?y", "a").as_deref(),
            Some("b.test:8")
        );
        assert_eq!(host("http://b.test?q", "a").as_deref(), Some("b.test"));
        assert_eq!(host("/a://b", "a").as_deref(), Some("a"));
    }

    #[test]
    fn from_bytes_bodies() {
        let chunked = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        assert_eq!(
            Request::from_bytes(chunked).unwrap().body().as_ref(),
            b"abc"
        );
        let short = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nabc";
        assert_eq!(Request::from_bytes(short).unwrap_err(), 400);
        assert_eq!(
            Request::from_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap_err(),
            400
        );
        let chunked_cut =
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab";
        assert_eq!(Request::from_bytes(chunked_cut).unwrap_err(), 400);
    }

    #[test]
    fn data_by_type() {
        let req = request("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(req.data::<u8>().is_none());
        assert!(req.remove_data::<u8>().is_none());
        req.set_data(1u8);
        req.set_data(String::from("s"));
        req.set_data(2u8);
        assert_eq!(req.data::<u8>().as_deref(), Some(&2));
        assert_eq!(
            req.data::<String>().as_deref().map(String::as_str),
            Some("s")
        );
        let held = req.data::<u8>().unwrap();
        req.set_data(3u8); // no borrow is held across calls
        assert_eq!((*held, *req.data::<u8>().unwrap()), (2, 3));
    }

    proptest::proptest! {
        #[test]
        fn derived_values_never_panic(
            target in "[ -~]{0,40}",
            field in proptest::collection::vec(proptest::num::u8::ANY, 0..80),
        ) {
            let mut raw = format!("GET /{} HTTP/1.1\r\nHost: x\r\n", target.replace(' ', "")).into_bytes();
            for name in ["Cookie", "Authorization", "Forwarded", "X-Forwarded-For", "Content-Type"] {
                raw.extend_from_slice(format!("{name}: ").as_bytes());
                raw.extend(field.iter().map(|&b| if b == b'\r' || b == b'\n' || b == 0 { b'x' } else { b }));
                raw.extend_from_slice(b"\r\n");
            }
            raw.extend_from_slice(b"\r\n");
            if let Ok(req) = Request::from_bytes(&raw) {
                let _ = (req.cookies(), req.authorization(), req.body_text(), req.host());
                let _ = req.real_remote_addr_with(&["127.0.0.1".parse().unwrap()]);
                let _ = (req.get_parameters(), req.post_parameters(), req.uploads());
            }
        }
    }
}
