//! [`Reply`]: status, header fields and body; and its encoding on the wire (RFC 9112 §6).

use std::cell::RefCell;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};

use crate::cookie::Cookie;
use crate::error::{NoContextError, RedirectError};
use crate::request::{Request, Version};

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

/// A header field that may not be sent: the name is not a token, or the value holds CR, LF, NUL
/// or another control byte (no response splitting), or non-ASCII.
///
/// ```
/// use iomux::{InvalidHeader, Reply};
/// let err = Reply::text("x").try_header("X-Evil", "a\r\nSet-Cookie: b").unwrap_err();
/// assert_eq!(err, InvalidHeader::Value);
/// assert_eq!(err.to_string(), "invalid header field value");
/// assert_eq!(Reply::text("x").try_header("Bad Name", "1").unwrap_err(), InvalidHeader::Name);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidHeader {
    /// The name is empty or not a token (RFC 9110 `tchar`s).
    Name,
    /// The value holds a control byte (CR, LF, NUL, ...) or a byte outside visible ASCII, space
    /// and tab.
    Value,
}

impl std::fmt::Display for InvalidHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InvalidHeader::Name => "invalid header field name",
            InvalidHeader::Value => "invalid header field value",
        })
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

    /// An error reply: plain text whose body is the status line, e.g. `404 Not Found`.
    ///
    /// The connection knows it for an error *placeholder*: with
    /// [`ErrorPages::html`](crate::error_pages::ErrorPages::html) or
    /// [`templates`](crate::error_pages::ErrorPages::templates) configured, a 4xx or 5xx reply
    /// built here (header fields added or not, but with this body) is sent with the error page
    /// instead. A reply whose body the application chose is never changed.
    ///
    /// ```
    /// let r = iomux::Reply::error(iomux::http::StatusCode::NOT_FOUND);
    /// assert_eq!(r.body(), "404 Not Found\n");
    /// ```
    pub fn error(status: StatusCode) -> Reply {
        let body = match error_text(status) {
            Some(text) => Bytes::from_static(text.as_bytes()),
            None => Bytes::from(status_text(status)),
        };
        Reply::text(body).with_status(status)
    }

    /// A redirect to `target` with `status` (301, 302, 303, 307 or 308) and an empty body
    /// (Hunchentoot's REDIRECT, without the unwinding: pass the reply to
    /// [`abort`](crate::abort) for that).
    ///
    /// A relative `target` (`/login`, `next?page=2`, `../up`, `?q=1`, `//host/path`) is resolved
    /// (RFC 3986 §5.2) against the current request when there is one
    /// ([`context::try_request`](crate::context::try_request)): scheme `http` (iomux serves
    /// plain HTTP; behind a proxy that terminates TLS, give an absolute `https://` target), host
    /// from the request's `Host` field (the local address when it has none), base path and query
    /// from its target. Outside a request context the reference is sent as it is, which RFC 9110
    /// §10.2.2 allows. An absolute target (`https://example.com/`) is never changed. Spaces,
    /// non-ASCII and the other bytes URIs may not hold (`"<>\\^`{|}`) are percent-encoded.
    ///
    /// # Errors
    /// [`RedirectError::Status`] for another status, [`RedirectError::Target`] if `target`
    /// holds a control byte (CR, LF, NUL, ...).
    ///
    /// ```
    /// use iomux::http::StatusCode;
    /// let r = iomux::Reply::redirect(StatusCode::SEE_OTHER, "https://example.com/a b")?;
    /// assert_eq!(r.status(), StatusCode::SEE_OTHER);
    /// assert_eq!(r.headers()["location"], "https://example.com/a%20b");
    /// assert!(iomux::Reply::redirect(StatusCode::FOUND, "/x\r\nSet-Cookie: a=b").is_err());
    /// # Ok::<(), iomux::RedirectError>(())
    /// ```
    pub fn redirect(status: StatusCode, target: &str) -> Result<Reply, RedirectError> {
        if !matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
            return Err(RedirectError::Status(status));
        }
        if target.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err(RedirectError::Target);
        }
        let location = match crate::context::try_request() {
            Ok(request) => resolve_location(&request, target),
            Err(_) => target.to_owned(),
        };
        let value = HeaderValue::from_maybe_shared(Bytes::from(encode_location(&location)))
            .map_err(|_| RedirectError::Target)?;
        Ok(Reply::new(status).header(header::LOCATION, value))
    }

    /// Replace the status.
    ///
    /// ```
    /// let r = iomux::Reply::text("gone").with_status(iomux::http::StatusCode::GONE);
    /// assert_eq!(r.status().as_u16(), 410);
    /// ```
    pub fn with_status(mut self, status: StatusCode) -> Reply {
        self.status = status;
        self
    }

    /// Set a header field, replacing any field of that name.
    ///
    /// [`HeaderName`] and [`HeaderValue`] cannot hold CR, LF or NUL; for names and values
    /// from strings use [`try_header`](Reply::try_header).
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

    /// Set a header field from strings, replacing any field of that name; names that are not
    /// tokens and values with CR, LF, NUL or other control bytes are refused (no response
    /// splitting), and nothing is set.
    ///
    /// # Errors
    /// [`InvalidHeader::Name`] or [`InvalidHeader::Value`].
    ///
    /// ```
    /// let r = iomux::Reply::text("x").try_header("X-Request-Id", "42").unwrap();
    /// assert_eq!(r.headers()["x-request-id"], "42");
    /// assert!(iomux::Reply::text("x").try_header("X-A", "1\0").is_err());
    /// ```
    pub fn try_header(mut self, name: &str, value: &str) -> Result<Reply, InvalidHeader> {
        let (name, value) = field(name, value)?;
        self.headers.insert(name, value);
        Ok(self)
    }

    /// Add a header field, keeping the fields of that name already set (for fields that may
    /// repeat, such as `Set-Cookie`, `Link` or `Vary`).
    ///
    /// ```
    /// use iomux::http::{header, HeaderValue};
    /// let r = iomux::Reply::text("x")
    ///     .append_header(header::VARY, HeaderValue::from_static("Accept"))
    ///     .append_header(header::VARY, HeaderValue::from_static("Cookie"));
    /// assert_eq!(r.headers().get_all("vary").iter().count(), 2);
    /// ```
    pub fn append_header(mut self, name: HeaderName, value: HeaderValue) -> Reply {
        self.headers.append(name, value);
        self
    }

    /// Add a header field from strings, keeping the fields of that name already set; refused
    /// as [`try_header`](Reply::try_header) refuses.
    ///
    /// # Errors
    /// [`InvalidHeader::Name`] or [`InvalidHeader::Value`].
    ///
    /// ```
    /// let r = iomux::Reply::text("x")
    ///     .try_append_header("Link", "</a.css>; rel=preload")?
    ///     .try_append_header("Link", "</b.js>; rel=preload")?;
    /// assert_eq!(r.headers().get_all("link").iter().count(), 2);
    /// assert!(r.try_append_header("Link", "a\nb").is_err());
    /// # Ok::<(), iomux::InvalidHeader>(())
    /// ```
    pub fn try_append_header(mut self, name: &str, value: &str) -> Result<Reply, InvalidHeader> {
        let (name, value) = field(name, value)?;
        self.headers.append(name, value);
        Ok(self)
    }

    /// Remove every header field of that name (a name that was never set is fine).
    ///
    /// ```
    /// let r = iomux::Reply::text("x").remove_header("content-type");
    /// assert!(r.headers().get("content-type").is_none());
    /// ```
    pub fn remove_header<K: header::AsHeaderName>(mut self, name: K) -> Reply {
        self.headers.remove(name);
        self
    }

    /// Add a `Set-Cookie` field for `cookie` (fields of other cookies stay).
    ///
    /// Cookies set on the reply under construction (with
    /// [`cookie::set_cookie`](crate::cookie::set_cookie), or by a session store) are sent as
    /// well: `Set-Cookie` fields add up when the reply is sent, where other fields of a sent
    /// reply replace those of the same name.
    ///
    /// ```
    /// use iomux::cookie::{Cookie, SameSite};
    /// let cookie = Cookie::new("theme", "dark")?.path("/")?.same_site(SameSite::Lax);
    /// let r = iomux::Reply::text("ok").set_cookie(&cookie);
    /// assert_eq!(r.headers()["set-cookie"], "theme=dark; Path=/; SameSite=Lax");
    /// # Ok::<(), iomux::CookieError>(())
    /// ```
    pub fn set_cookie(self, cookie: &Cookie) -> Reply {
        self.append_header(header::SET_COOKIE, cookie.header_value())
    }

    /// Forbid caching of this reply (Hunchentoot's NO-CACHE): `Cache-Control: no-cache,
    /// no-store, must-revalidate`, `Pragma: no-cache` (HTTP/1.0 caches) and an `Expires` in the
    /// past, each replacing a field of that name. For the reply under construction use
    /// [`no_cache`](crate::no_cache()).
    ///
    /// ```
    /// let r = iomux::Reply::text("live").no_cache();
    /// assert_eq!(r.headers()["cache-control"], "no-cache, no-store, must-revalidate");
    /// assert_eq!(r.headers()["pragma"], "no-cache");
    /// assert_eq!(r.headers()["expires"], "Thu, 01 Jan 1970 00:00:00 GMT");
    /// ```
    pub fn no_cache(mut self) -> Reply {
        for (name, value) in no_cache_fields() {
            self.headers.insert(name, value);
        }
        self
    }

    /// Replace the body (the reply is then the application's own: never an error page).
    ///
    /// ```
    /// let r = iomux::Reply::error(iomux::http::StatusCode::NOT_FOUND).with_body("no such item\n");
    /// assert_eq!(r.body(), "no such item\n");
    /// ```
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Reply {
        self.body = body.into();
        self
    }

    /// The status.
    ///
    /// ```
    /// assert_eq!(iomux::Reply::text("x").status(), iomux::http::StatusCode::OK);
    /// ```
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The header fields.
    ///
    /// ```
    /// assert!(iomux::Reply::new(iomux::http::StatusCode::OK).headers().is_empty());
    /// ```
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The header fields, to change.
    ///
    /// ```
    /// let mut r = iomux::Reply::text("x");
    /// r.headers_mut().clear();
    /// assert!(r.headers().is_empty());
    /// ```
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.headers
    }

    /// The body. Cloning a [`Bytes`] shares it: one encoded message can go to many clients.
    ///
    /// ```
    /// assert_eq!(iomux::Reply::text("x").body(), "x");
    /// ```
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Was this reply made by [`Reply::error`] (a 4xx or 5xx status text as its body, by
    /// address: a body the application wrote never is)?
    pub(crate) fn is_error_placeholder(&self) -> bool {
        let code = self
            .body
            .get(..3)
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| digits.parse::<u16>().ok());
        code.and_then(error_slot)
            .and_then(OnceLock::get)
            .is_some_and(|text| {
                text.as_ptr() == self.body.as_ptr() && text.len() == self.body.len()
            })
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

/// `404 Not Found\n`: the status line text of [`Reply::error`].
fn status_text(status: StatusCode) -> String {
    let reason = status.canonical_reason().unwrap_or("Error");
    format!("{} {reason}\n", status.as_u16())
}

/// One slot per 4xx and 5xx status for the body of [`Reply::error`].
fn error_slot(code: u16) -> Option<&'static OnceLock<&'static str>> {
    static TEXTS: [OnceLock<&'static str>; 200] = [const { OnceLock::new() }; 200];
    TEXTS.get(usize::from(code.checked_sub(400)?))
}

/// The body of [`Reply::error`] for a 4xx or 5xx status: one static text per status, made once
/// (at most 200 short strings for the life of the process), so that the connection can tell a
/// `Reply::error` from a reply with a body of the application's by the body's address, also
/// after the reply was taken apart and put together again (as when the header fields of the
/// reply under construction are merged in).
fn error_text(status: StatusCode) -> Option<&'static str> {
    let slot = error_slot(status.as_u16())?;
    Some(slot.get_or_init(|| Box::leak(status_text(status).into_boxed_str())))
}

/// A header field from strings, checked.
fn field(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), InvalidHeader> {
    let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| InvalidHeader::Name)?;
    let value = HeaderValue::from_str(value).map_err(|_| InvalidHeader::Value)?;
    Ok((name, value))
}

/// The fields [`Reply::no_cache`] sets.
fn no_cache_fields() -> [(HeaderName, HeaderValue); 3] {
    [
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache, no-store, must-revalidate"),
        ),
        (header::PRAGMA, HeaderValue::from_static("no-cache")),
        (
            header::EXPIRES,
            HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"),
        ),
    ]
}

/// Forbid caching of the reply under construction (see [`Reply::no_cache`]): its fields are
/// set with [`context::set_header`](crate::context::set_header), so they go out with whatever
/// reply the request gets.
///
/// # Errors
/// [`NoContextError`] outside any request context.
///
/// ```
/// assert!(iomux::no_cache().is_err()); // no current request here
/// ```
pub fn no_cache() -> Result<(), NoContextError> {
    crate::context::try_request()?;
    for (name, value) in no_cache_fields() {
        crate::context::set_header(name, value);
    }
    Ok(())
}

/// The absolute `http` URI that `reference` names, seen from `request` (RFC 3986 §5.2.2).
fn resolve_location(request: &Request, reference: &str) -> String {
    if has_scheme(reference) {
        return reference.to_owned();
    }
    if reference.starts_with("//") {
        return format!("http:{reference}");
    }
    let host = match request.header("host") {
        Some(host) if !host.is_empty() => host.to_owned(),
        _ => request.local_addr().to_string(),
    };
    let (rest, fragment) = match reference.split_once('#') {
        Some((rest, fragment)) => (rest, Some(fragment)),
        None => (reference, None),
    };
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    let base_path = Some(request.raw_path())
        .filter(|p| p.starts_with('/'))
        .unwrap_or("/");
    let (path, query) = if path.is_empty() {
        (base_path.to_owned(), query.or(request.query()))
    } else if path.starts_with('/') {
        (remove_dot_segments(path), query)
    } else {
        let dir = &base_path[..=base_path.rfind('/').unwrap_or(0)];
        (remove_dot_segments(&format!("{dir}{path}")), query)
    };
    let mut out = format!("http://{host}{path}");
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

/// Does the reference start with a scheme (`ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":"`)?
fn has_scheme(reference: &str) -> bool {
    let Some((scheme, _)) = reference.split_once(':') else {
        return false;
    };
    let mut bytes = scheme.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
}

/// RFC 3986 §5.2.4 for a path that starts with `/`: `.` and `..` segments resolved.
fn remove_dot_segments(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." => {}
            ".." => {
                out.pop();
            }
            other => {
                out.push(other);
                continue;
            }
        }
        if last {
            out.push("");
        }
    }
    let mut result = String::with_capacity(path.len());
    for segment in out {
        result.push('/');
        result.push_str(segment);
    }
    if result.is_empty() {
        result.push('/');
    }
    result
}

/// Percent-encode the bytes a URI may not hold (space, non-ASCII, `"<>\^`{|}`); `%` and
/// everything else stay as they are.
fn encode_location(location: &str) -> String {
    let mut out = String::with_capacity(location.len());
    for &b in location.as_bytes() {
        if b <= b' ' || b >= 0x7f || b"\"<>\\^`{|}".contains(&b) {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(char::from(b));
        }
    }
    out
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

/// The Date header value of this thread's loop.
struct DateCache {
    /// The second `text` shows (`u64::MAX`: none yet).
    secs: u64,
    text: [u8; HTTP_DATE_LEN],
    /// The clock was read since the loop last had news (a read, a wake-up): replies encoded
    /// until the next news use `text` as it is.
    checked: bool,
}

thread_local! {
    /// Formatted at most once per second, the clock read at most once per batch of replies.
    static DATE: RefCell<DateCache> = const {
        RefCell::new(DateCache { secs: u64::MAX, text: [0; HTTP_DATE_LEN], checked: false })
    };
}

/// Time may have passed (the connection woke up, or read more requests): the next reply looks at
/// the clock again. Replies encoded in between — a batch of pipelined requests — share one clock
/// read.
pub(crate) fn date_may_have_changed() {
    DATE.with(|cell| cell.borrow_mut().checked = false);
}

/// Call `f` with the current time as an HTTP-date.
pub(crate) fn with_http_date<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    DATE.with(|cell| {
        let mut cache = cell.borrow_mut();
        if !cache.checked {
            cache.checked = true;
            let now = SystemTime::now();
            let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            if cache.secs != secs {
                let text = httpdate::fmt_http_date(now);
                if text.len() == HTTP_DATE_LEN {
                    cache.text.copy_from_slice(text.as_bytes());
                    cache.secs = secs;
                }
            }
        }
        f(&cache.text)
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
