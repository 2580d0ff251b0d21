//! [`Reply`]: status, header fields and body; and its encoding on the wire (RFC 9112 §6).

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};

use crate::request::Version;

/// A reply: status, header fields and body.
///
/// The framing fields (`Content-Length`, `Transfer-Encoding`) and `Date` are written by the
/// connection; `Connection: close` set here closes the connection after the reply.
///
/// ```
/// use iomux::Reply;
/// use iomux::http::{header, HeaderValue, StatusCode};
///
/// let reply = Reply::text("created\n")
///     .with_status(StatusCode::CREATED)
///     .header(header::LOCATION, HeaderValue::from_static("/items/7"));
/// assert_eq!(reply.status(), StatusCode::CREATED);
/// assert_eq!(reply.headers()["content-type"], "text/plain; charset=utf-8");
/// assert_eq!(reply.body(), "created\n");
/// ```
#[derive(Debug, Clone, Default)]
pub struct Reply {
    status: StatusCode,
    /// Boxed so that a `Reply` is small to move, and so are the errors that hand one back.
    headers: Box<HeaderMap>,
    body: Bytes,
}

/// A header name or value that may not be sent (not a token; CR, LF, NUL or other controls).
///
/// ```
/// let err = iomux::Reply::text("x").try_header("X-Evil", "a\r\nSet-Cookie: b").unwrap_err();
/// assert_eq!(err.to_string(), "invalid header field");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidHeader;

impl std::fmt::Display for InvalidHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid header field")
    }
}

impl std::error::Error for InvalidHeader {}

impl Reply {
    /// An empty reply with this status.
    ///
    /// ```
    /// let r = iomux::Reply::new(iomux::http::StatusCode::NO_CONTENT);
    /// assert!(r.body().is_empty());
    /// ```
    pub fn new(status: StatusCode) -> Reply {
        Reply {
            status,
            headers: Box::default(),
            body: Bytes::new(),
        }
    }

    /// 200 with a `text/plain; charset=utf-8` body.
    ///
    /// ```
    /// assert_eq!(iomux::Reply::text("hi").body(), "hi");
    /// ```
    pub fn text(body: impl Into<Bytes>) -> Reply {
        Reply::with_type("text/plain; charset=utf-8", body)
    }

    /// 200 with a `text/html; charset=utf-8` body.
    ///
    /// ```
    /// assert_eq!(iomux::Reply::html("<p>hi</p>").headers()["content-type"], "text/html; charset=utf-8");
    /// ```
    pub fn html(body: impl Into<Bytes>) -> Reply {
        Reply::with_type("text/html; charset=utf-8", body)
    }

    /// 200 with a body of the given content type.
    ///
    /// ```
    /// let r = iomux::Reply::with_type("application/json", "{}");
    /// assert_eq!(r.headers()["content-type"], "application/json");
    /// ```
    pub fn with_type(content_type: &'static str, body: impl Into<Bytes>) -> Reply {
        let mut headers = Box::<HeaderMap>::default();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        Reply {
            status: StatusCode::OK,
            headers,
            body: body.into(),
        }
    }

    /// A plain-text reply whose body is the status line's reason, e.g. `404 Not Found`.
    ///
    /// ```
    /// let r = iomux::Reply::error(iomux::http::StatusCode::NOT_FOUND);
    /// assert_eq!(r.body(), "404 Not Found\n");
    /// ```
    pub fn error(status: StatusCode) -> Reply {
        let reason = status.canonical_reason().unwrap_or("Error");
        Reply::text(format!("{} {reason}\n", status.as_u16())).with_status(status)
    }

    /// Replace the status.
    pub fn with_status(mut self, status: StatusCode) -> Reply {
        self.status = status;
        self
    }

    /// Set a header field, replacing any field of that name.
    ///
    /// ```
    /// use iomux::http::{header, HeaderValue};
    /// let r = iomux::Reply::text("x").header(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    /// assert_eq!(r.headers()["cache-control"], "no-cache");
    /// ```
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Reply {
        self.headers.insert(name, value);
        self
    }

    /// Set a header field from strings, refusing names that are not tokens and values with
    /// CR, LF, NUL or other control bytes (no response splitting).
    ///
    /// ```
    /// let r = iomux::Reply::text("x").try_header("X-Request-Id", "42").unwrap();
    /// assert_eq!(r.headers()["x-request-id"], "42");
    /// ```
    pub fn try_header(mut self, name: &str, value: &str) -> Result<Reply, InvalidHeader> {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| InvalidHeader)?;
        let value = HeaderValue::from_str(value).map_err(|_| InvalidHeader)?;
        self.headers.insert(name, value);
        Ok(self)
    }

    /// Replace the body.
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Reply {
        self.body = body.into();
        self
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The header fields.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The header fields, to change.
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.headers
    }

    /// The body. Cloning a [`Bytes`] shares it: one encoded message can go to many clients.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    pub(crate) fn into_parts(self) -> (StatusCode, HeaderMap, Bytes) {
        (self.status, *self.headers, self.body)
    }

    pub(crate) fn from_parts(status: StatusCode, headers: HeaderMap, body: Bytes) -> Reply {
        Reply {
            status,
            headers: Box::new(headers),
            body,
        }
    }
}

impl From<&'static str> for Reply {
    fn from(body: &'static str) -> Reply {
        Reply::text(body)
    }
}

impl From<String> for Reply {
    fn from(body: String) -> Reply {
        Reply::text(body)
    }
}

impl From<StatusCode> for Reply {
    fn from(status: StatusCode) -> Reply {
        Reply::error(status)
    }
}

/// How a reply body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFraming {
    /// 1xx, 204, 304: no body and no length.
    None,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked` (HTTP/1.1 streams).
    Chunked,
    /// Ends when the connection closes (HTTP/1.0 streams).
    UntilClose,
}

/// May this status carry a body (RFC 9110 §6.4.1)?
pub(crate) fn status_has_body(status: StatusCode) -> bool {
    !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED)
}

/// Does the application ask to close the connection after this reply?
pub(crate) fn wants_close(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
    })
}

/// Append the status line and header fields of a reply to `out`.
pub(crate) fn encode_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    framing: BodyFraming,
    version: Version,
    keep_alive: bool,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    if !headers.contains_key(header::DATE) {
        out.extend_from_slice(b"Date: ");
        with_http_date(|date| out.extend_from_slice(date));
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        BodyFraming::None | BodyFraming::UntilClose => {}
        BodyFraming::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        BodyFraming::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if version == Version::Http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Append a chunk-size line for `len` bytes of chunk data.
pub(crate) fn encode_chunk_size(out: &mut Vec<u8>, len: usize) {
    let mut digits = [0u8; 16];
    let mut n = len;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk and the end of a chunked body.
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Length of an IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
const HTTP_DATE_LEN: usize = 29;

thread_local! {
    /// The Date header value, formatted at most once per second per thread.
    static DATE: RefCell<(u64, [u8; HTTP_DATE_LEN])> = const { RefCell::new((u64::MAX, [0; HTTP_DATE_LEN])) };
}

/// Call `f` with the current time as an HTTP-date.
pub(crate) fn with_http_date<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    DATE.with(|cell| {
        let mut cache = cell.borrow_mut();
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if cache.0 != secs {
            let text = httpdate::fmt_http_date(now);
            if text.len() == HTTP_DATE_LEN {
                cache.1.copy_from_slice(text.as_bytes());
                cache.0 = secs;
            }
        }
        f(&cache.1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes_are_lowercase_hex() {
        for (n, s) in [
            (0, "0\r\n"),
            (1, "1\r\n"),
            (255, "ff\r\n"),
            (4096, "1000\r\n"),
        ] {
            let mut out = Vec::new();
            encode_chunk_size(&mut out, n);
            assert_eq!(out, s.as_bytes());
        }
    }

    #[test]
    fn head_skips_framing_fields_and_adds_date() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        let mut out = Vec::new();
        encode_head(
            &mut out,
            StatusCode::OK,
            &headers,
            BodyFraming::Length(2),
            Version::Http10,
            true,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nDate: "), "{text}");
        assert!(text.contains("\r\ncontent-type: text/plain\r\n"));
        assert!(text.contains("\r\nContent-Length: 2\r\n"));
        assert!(!text.contains("999"));
        assert!(text.ends_with("Connection: keep-alive\r\n\r\n"));
        with_http_date(|d| {
            assert!(httpdate::parse_http_date(std::str::from_utf8(d).unwrap()).is_ok())
        });
    }

    #[test]
    fn bodiless_statuses() {
        assert!(!status_has_body(StatusCode::CONTINUE));
        assert!(!status_has_body(StatusCode::NO_CONTENT));
        assert!(!status_has_body(StatusCode::NOT_MODIFIED));
        assert!(status_has_body(StatusCode::OK));
    }
}
