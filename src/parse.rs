//! Bytes to [`Request`]: the request head with httparse, then body framing (RFC 9112 §6).
//!
//! Nothing here panics on any input; every refusal names the status to answer before closing.

use std::mem::MaybeUninit;
use std::rc::Rc;

use http::StatusCode;

use crate::request::{Request, Span, Version};
use crate::responder::ConnCell;
use crate::Config;

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed head, with what the connection needs to know about it.
pub(crate) struct Head {
    pub(crate) request: Request,
    pub(crate) framing: Framing,
    /// The client allows the connection to stay open after the reply.
    pub(crate) keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request.
    pub(crate) expect_continue: bool,
    pub(crate) is_head: bool,
}

/// The header-array size kept on the stack; configurations allowing more use the heap.
const STACK_HEADERS: usize = 128;

/// Parse one request head from the start of `buf`.
///
/// `Ok(None)`: more bytes are needed. `Ok(Some((head, n)))`: the head took `n` bytes.
/// `Err(status)`: the request is refused with that status and the connection closes.
pub(crate) fn parse_head(
    buf: &[u8],
    config: &Config,
    conn: &Rc<ConnCell>,
) -> Result<Option<(Head, usize)>, StatusCode> {
    let mut stack = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
    let mut heap = Vec::new();
    let slots: &mut [MaybeUninit<httparse::Header<'_>>] = if config.max_headers <= STACK_HEADERS {
        &mut stack[..config.max_headers]
    } else {
        heap.resize_with(config.max_headers, MaybeUninit::uninit);
        &mut heap
    };
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, slots) {
        Ok(httparse::Status::Complete(len)) if len <= config.max_head_size => len,
        Ok(httparse::Status::Partial) if buf.len() < config.max_head_size => return Ok(None),
        Ok(httparse::Status::Complete(_) | httparse::Status::Partial) => {
            return Err(too_large(&buf[..config.max_head_size]))
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        }
        Err(httparse::Error::Version) => {
            return match version_verdict(buf) {
                Verdict::Malformed => Err(StatusCode::BAD_REQUEST),
                Verdict::Incomplete if buf.len() < config.max_head_size => Ok(None),
                Verdict::Incomplete => Err(StatusCode::URI_TOO_LONG),
                Verdict::Unsupported => Err(StatusCode::HTTP_VERSION_NOT_SUPPORTED),
                Verdict::LaterMinor(at) => {
                    // RFC 9110 §2.5: a later HTTP/1.x is served as HTTP/1.1, the highest we know.
                    let mut patched = buf.to_vec();
                    patched[at] = b'1';
                    parse_head(&patched, config, conn)
                }
            };
        }
        Err(_) => return Err(StatusCode::BAD_REQUEST),
    };
    let version = match req.version {
        Some(0) => Version::Http10,
        _ => Version::Http11,
    };
    let method = req.method.unwrap_or_default();
    let target = req.path.unwrap_or_default();

    let mut hosts = 0;
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut chunked_last = false;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut expect_continue = false;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            // RFC 9112 §3.2: an invalid Host value is a 400, like a missing one.
            if !h.value.iter().all(|&b| is_host_byte(b)) {
                return Err(StatusCode::BAD_REQUEST);
            }
            hosts += 1;
        } else if name.eq_ignore_ascii_case("content-length") {
            for part in h.value.split(|&b| b == b',') {
                let n = parse_content_length(trim(part)).ok_or(StatusCode::BAD_REQUEST)?;
                if content_length.is_some_and(|prev| prev != n) {
                    return Err(StatusCode::BAD_REQUEST);
                }
                content_length = Some(n);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            for coding in h
                .value
                .split(|&b| b == b',')
                .map(trim)
                .filter(|c| !c.is_empty())
            {
                // Any coding after `chunked`, or `chunked` twice, is a framing error.
                if chunked_last {
                    return Err(StatusCode::BAD_REQUEST);
                }
                if !coding.eq_ignore_ascii_case(b"chunked") {
                    return Err(StatusCode::NOT_IMPLEMENTED);
                }
                chunked_last = true;
            }
            transfer_encoding = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',').map(trim) {
                conn_close |= token.eq_ignore_ascii_case(b"close");
                conn_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("expect") {
            if !trim(h.value).eq_ignore_ascii_case(b"100-continue") {
                return Err(StatusCode::EXPECTATION_FAILED);
            }
            expect_continue = version == Version::Http11;
        }
    }
    if version == Version::Http11 && hosts != 1 || hosts > 1 {
        return Err(StatusCode::BAD_REQUEST);
    }
    let framing = match (transfer_encoding, content_length) {
        // RFC 9112 §6.1: both together, or Transfer-Encoding on HTTP/1.0, is faulty framing.
        (true, Some(_)) => return Err(StatusCode::BAD_REQUEST),
        (true, None) if version == Version::Http10 => return Err(StatusCode::BAD_REQUEST),
        (true, None) if !chunked_last => return Err(StatusCode::BAD_REQUEST),
        (true, None) => Framing::Chunked,
        (false, Some(0)) | (false, None) => Framing::Empty,
        (false, Some(n)) => Framing::Length(n),
    };
    if let Framing::Length(n) = framing {
        if n > config.max_body_size as u64 {
            return Err(StatusCode::PAYLOAD_TOO_LARGE);
        }
    }
    let keep_alive = match version {
        Version::Http11 => !conn_close,
        Version::Http10 => conn_keep_alive && !conn_close,
    };

    let fields = req
        .headers
        .iter()
        .map(|h| (Span::of(buf, h.name.as_bytes()), Span::of(buf, h.value)));
    let is_head = method == "HEAD";
    let request = Request::new(
        &buf[..len],
        fields,
        Span::of(buf, method.as_bytes()),
        Span::of(buf, target.as_bytes()),
        version,
        conn.clone(),
    );
    let expect_continue = expect_continue && framing != Framing::Empty;
    Ok(Some((
        Head {
            request,
            framing,
            keep_alive,
            expect_continue,
            is_head,
        },
        len,
    )))
}

/// The status for a head over the size limit (`start` is its first `max_head_size` bytes).
fn too_large(start: &[u8]) -> StatusCode {
    if start.contains(&b'\n') {
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    } else {
        StatusCode::URI_TOO_LONG
    }
}

/// What to make of a request line whose version httparse refused.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Not `HTTP/DIGIT.DIGIT` at all: an invalid request line (RFC 9112 §3).
    Malformed,
    /// The line is not complete and its version could still become valid: read more.
    Incomplete,
    /// A well-formed version of another major version: 505.
    Unsupported,
    /// `HTTP/1.x` with x > 1: served as HTTP/1.1; the minor digit is at this offset.
    LaterMinor(usize),
}

fn version_verdict(buf: &[u8]) -> Verdict {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(0);
    let line = &buf[start..];
    let end = line.iter().position(|&b| b == b'\r' || b == b'\n');
    let line = &line[..end.unwrap_or(line.len())];
    let mut parts = line.split(|&b| b == b' ');
    let (Some(_method), Some(_target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Verdict::Malformed;
    };
    if end.is_none() && could_become_version(version) {
        return Verdict::Incomplete;
    }
    match version {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor] if minor.is_ascii_digit() => {
            let at = start + line.len() - 1;
            Verdict::LaterMinor(at)
        }
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Verdict::Unsupported
        }
        _ => Verdict::Malformed,
    }
}

/// Is `token` the start of `HTTP/DIGIT.DIGIT`?
fn could_become_version(token: &[u8]) -> bool {
    const SHAPE: &[u8] = b"HTTP/0.0";
    token.len() <= SHAPE.len()
        && token.iter().zip(SHAPE).all(|(&b, &want)| match want {
            b'0' => b.is_ascii_digit(),
            _ => b == want,
        })
}

/// A byte allowed in a `Host` value: `uri-host [ ":" port ]` of RFC 3986 (reg-name, IPv4, or an
/// IP literal in brackets, with percent-encoding).
fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:%[]".contains(&b)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// `1*DIGIT`, no sign, no overflow.
fn parse_content_length(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        let digit = (b as char).to_digit(10)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// Why a chunked body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// Malformed chunk framing: 400.
    Malformed,
    /// The decoded body would exceed the limit: 413.
    TooLarge,
}

impl BodyError {
    pub(crate) fn status(self) -> StatusCode {
        match self {
            BodyError::Malformed => StatusCode::BAD_REQUEST,
            BodyError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading hex digits of a chunk size.
    Size { digits: u8 },
    /// Whitespace after the chunk size, before `;` or CR.
    SizeBws,
    /// Skipping a chunk extension up to CR.
    Extension,
    /// Expecting LF after the size line's CR.
    SizeLf,
    /// Copying chunk data.
    Data,
    /// Expecting CR after chunk data.
    DataCr,
    /// Expecting LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    /// Inside a trailer field name.
    TrailerName,
    /// Inside a trailer field value.
    TrailerValue,
    /// Expecting the LF of a trailer line.
    TrailerLf { last: bool },
    /// The body is complete.
    Done,
}

/// Incremental `Transfer-Encoding: chunked` decoder (RFC 9112 §7.1). Extensions and trailer
/// fields are read and discarded; trailers count against `max_trailer` bytes.
#[derive(Debug)]
pub(crate) struct ChunkedDecoder {
    state: ChunkState,
    /// Bytes left in the current chunk (or the size being read).
    remaining: u64,
    trailer_bytes: usize,
    max_trailer: usize,
}

/// Longest chunk size accepted, in hex digits (leading zeros included; the value itself must
/// fit in a u64).
const MAX_SIZE_DIGITS: u8 = 64;

impl ChunkedDecoder {
    pub(crate) fn new(max_trailer: usize) -> Self {
        ChunkedDecoder {
            state: ChunkState::Size { digits: 0 },
            remaining: 0,
            trailer_bytes: 0,
            max_trailer,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decode from `input`, appending data to `out` (never beyond `limit` bytes in total).
    /// Returns how many input bytes were consumed; stops at the end of the body.
    pub(crate) fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<usize, BodyError> {
        use ChunkState::*;
        let mut i = 0;
        while i < input.len() && self.state != Done {
            let b = input[i];
            match self.state {
                Size { digits } => match (b as char).to_digit(16) {
                    // Leading zeros are allowed; a value that would not fit is not.
                    Some(d) if digits < MAX_SIZE_DIGITS && self.remaining <= u64::MAX >> 4 => {
                        self.remaining = self.remaining << 4 | u64::from(d);
                        self.state = Size { digits: digits + 1 };
                    }
                    Some(_) => return Err(BodyError::Malformed),
                    None if digits == 0 => return Err(BodyError::Malformed),
                    None => self.state = after_size(b)?,
                },
                // RFC 9112 §7.1.1: only BWS may stand between the size and `;`.
                SizeBws => self.state = after_size(b)?,
                Extension => match b {
                    b'\r' => self.state = SizeLf,
                    b'\t' => {}
                    0..=0x1f | 0x7f => return Err(BodyError::Malformed),
                    _ => {}
                },
                SizeLf => {
                    if b != b'\n' {
                        return Err(BodyError::Malformed);
                    }
                    if self.remaining == 0 {
                        self.state = TrailerStart;
                    } else if self.remaining > limit.saturating_sub(out.len()) as u64 {
                        return Err(BodyError::TooLarge);
                    } else {
                        self.state = Data;
                    }
                }
                Data => {
                    let take = (input.len() - i).min(self.remaining as usize);
                    out.extend_from_slice(&input[i..i + take]);
                    self.remaining -= take as u64;
                    i += take;
                    if self.remaining == 0 {
                        self.state = DataCr;
                    }
                    continue;
                }
                DataCr => {
                    if b != b'\r' {
                        return Err(BodyError::Malformed);
                    }
                    self.state = DataLf;
                }
                DataLf => {
                    if b != b'\n' {
                        return Err(BodyError::Malformed);
                    }
                    self.state = Size { digits: 0 };
                }
                // Trailer lines are field lines (RFC 9112 §7.1.2): `token ":" value`, checked as
                // strictly as header fields, so no parser downstream can read them otherwise.
                TrailerStart => match b {
                    b'\r' => self.state = TrailerLf { last: true },
                    b if is_token(b) => self.state = TrailerName,
                    _ => return Err(BodyError::Malformed),
                },
                TrailerName => match b {
                    b':' => self.state = TrailerValue,
                    b if is_token(b) => {}
                    _ => return Err(BodyError::Malformed),
                },
                TrailerValue => match b {
                    b'\r' => self.state = TrailerLf { last: false },
                    b'\t' => {}
                    0..=0x1f | 0x7f => return Err(BodyError::Malformed),
                    _ => {}
                },
                TrailerLf { last } => {
                    if b != b'\n' {
                        return Err(BodyError::Malformed);
                    }
                    self.state = if last { Done } else { TrailerStart };
                }
                Done => break,
            }
            if matches!(
                self.state,
                TrailerStart | TrailerName | TrailerValue | TrailerLf { .. }
            ) {
                self.trailer_bytes += 1;
                if self.trailer_bytes > self.max_trailer {
                    return Err(BodyError::TooLarge);
                }
            }
            i += 1;
        }
        Ok(i)
    }
}

/// The state after a chunk size's last digit (or its trailing whitespace), given the next byte.
fn after_size(b: u8) -> Result<ChunkState, BodyError> {
    match b {
        b'\r' => Ok(ChunkState::SizeLf),
        b';' => Ok(ChunkState::Extension),
        b' ' | b'\t' => Ok(ChunkState::SizeBws),
        _ => Err(BodyError::Malformed),
    }
}

/// A `tchar` of RFC 9110 §5.6.2.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], limit: usize) -> Result<(Vec<u8>, usize, bool), BodyError> {
        let mut d = ChunkedDecoder::new(1024);
        let mut out = Vec::new();
        let n = d.decode(input, &mut out, limit)?;
        Ok((out, n, d.is_done()))
    }

    #[test]
    fn chunked_whole_and_split_at_every_byte() {
        let wire =
            b"4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: y\r\n\r\nNEXT";
        let (out, n, done) = decode_all(wire, 1 << 20).unwrap();
        assert_eq!(out, b"Wikipedia in\r\n\r\nchunks.");
        assert_eq!(&wire[n..], b"NEXT");
        assert!(done);
        for split in 0..wire.len() {
            let mut d = ChunkedDecoder::new(1024);
            let mut out = Vec::new();
            let a = d.decode(&wire[..split], &mut out, 1 << 20).unwrap();
            assert_eq!(a, split.min(n), "split at {split}");
            let b = d.decode(&wire[a..], &mut out, 1 << 20).unwrap();
            assert_eq!(&wire[a + b..], b"NEXT", "split at {split}");
            assert_eq!(out, b"Wikipedia in\r\n\r\nchunks.");
        }
    }

    #[test]
    fn chunked_refusals() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"4\r\nWikiX\r\n",
            b"4\nWiki\r\n",
            b"11111111111111111\r\n",
            b"-1\r\n",
            b"0\r\n\n",
        ] {
            assert_eq!(
                decode_all(bad, 1 << 20).unwrap_err(),
                BodyError::Malformed,
                "{bad:?}"
            );
        }
        assert_eq!(decode_all(b"10\r\n", 8).unwrap_err(), BodyError::TooLarge);
        assert_eq!(
            decode_all(b"ffffffffffffffff\r\n", 8).unwrap_err(),
            BodyError::TooLarge
        );
    }

    #[test]
    fn version_verdicts() {
        assert_eq!(version_verdict(b"GET / HTTP/2.0\r\n"), Verdict::Unsupported);
        assert_eq!(
            version_verdict(b"GET / HTTP/1.2\r\n"),
            Verdict::LaterMinor(13)
        );
        assert_eq!(
            version_verdict(b"\r\nGET / HTTP/1.9\r\n"),
            Verdict::LaterMinor(15)
        );
        assert_eq!(
            version_verdict(b"GET /a b HTTP/1.1\r\n"),
            Verdict::Malformed
        );
        assert_eq!(version_verdict(b"GET / FOO/1.1\r\n"), Verdict::Malformed);
        assert_eq!(version_verdict(b"GET / http/1.1\r\n"), Verdict::Malformed);
        assert_eq!(version_verdict(b"GET / HTTP/1.10\r\n"), Verdict::Malformed);
        assert_eq!(version_verdict(b"GET /"), Verdict::Malformed);
        assert_eq!(version_verdict(b"GET / HTTP/2"), Verdict::Incomplete);
        assert_eq!(version_verdict(b"GET / HTTP/2."), Verdict::Incomplete);
        assert_eq!(version_verdict(b"GET / HTTP/2.0"), Verdict::Incomplete);
        assert_eq!(version_verdict(b"GET / HTTP/2.0x"), Verdict::Malformed);
        assert_eq!(version_verdict(b"GET / HTTQ"), Verdict::Malformed);
    }

    #[test]
    fn content_length_rules() {
        assert_eq!(parse_content_length(b"0"), Some(0));
        assert_eq!(parse_content_length(b"0042"), Some(42));
        assert_eq!(parse_content_length(b"+1"), None);
        assert_eq!(parse_content_length(b"-1"), None);
        assert_eq!(parse_content_length(b""), None);
        assert_eq!(parse_content_length(b"1 2"), None);
        assert_eq!(parse_content_length(b"99999999999999999999999"), None);
    }
}
