//! Evented HTTP/1.1 for long-poll, Comet and server-push applications.
//!
//! iomux serves every connection as a small task (a *connection actor*) on one single-threaded
//! [`async_executor::LocalExecutor`], so thousands of requests can wait for an event at the cost
//! of a few hundred bytes each. It follows IOMUX-ACCEPTOR for Hunchentoot: a handler need not
//! return the reply. It saves the request's context with [`with_saved_context!`], hands it to an
//! application actor, and later, from any event, the reply is sent inside
//! [`with_restored_context!`]; the connection writes it when it arrives.
//!
//! ```
//! use std::time::Duration;
//! use async_executor::LocalExecutor;
//! use iomux::{context, with_restored_context, with_saved_context, Acceptor, Handled, Mailbox, Request, SavedContext};
//!
//! let ex = LocalExecutor::new();
//!
//! // An application actor: it receives saved contexts and replies after an event (a timer).
//! let waiter = iomux::spawn_actor_task(&ex, 64, |mut mailbox: Mailbox<SavedContext>| async move {
//!     while let Some(ctx) = mailbox.recv().await {
//!         async_io::Timer::after(Duration::from_millis(50)).await;
//!         with_restored_context!(ctx, {
//!             let path = context::request().path().into_owned();
//!             context::send_body(format!("event for {path}\n")).ok();
//!         });
//!     }
//! });
//!
//! // The handler saves the context and defers: its reply comes from the actor.
//! let acceptor = Acceptor::bind("127.0.0.1:0", move |_req: &Request| {
//!     waiter.do_send(with_saved_context!());
//!     Handled::Deferred
//! })?;
//!
//! let addr = acceptor.local_addr();
//! let stop = acceptor.stop_handle();
//! let client = std::thread::spawn(move || {
//!     use std::io::{Read, Write};
//!     let mut s = std::net::TcpStream::connect(addr).unwrap();
//!     s.write_all(b"GET /news HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n").unwrap();
//!     let mut reply = String::new();
//!     s.read_to_string(&mut reply).unwrap();
//!     stop.stop();
//!     reply
//! });
//! async_io::block_on(ex.run(acceptor.serve(&ex)))?;
//! assert!(client.join().unwrap().ends_with("\r\n\r\nevent for /news\n"));
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! The data path, one module per step: [`Acceptor`] (accept) → connection actor (read, parse,
//! body) → [`Handler`] (dispatch, with the [`context`] current) → [`Handled::Deferred`] and a
//! [`SavedContext`] to an actor ([`spawn_actor`], [`Addr`]) → [`Responder`] / [`send_reply`]
//! back over the request's reply channel → the connection writes.
//!
//! To use more than one core, [`AcceptorBuilder::workers`] and
//! [`AcceptorBuilder::bind_workers`] run several such loops, one per thread ([`Worker`],
//! [`Workers`]), each with its own listening socket on the same port; handlers and actors stay
//! single-threaded in their worker.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod access_log;
mod actor;
mod config;
mod conn;
pub mod context;
pub mod cookie;
mod dispatch;
mod error;
pub mod error_pages;
mod macros;
mod multipart;
pub mod params;
mod parse;
mod reply;
mod request;
mod responder;
pub mod router;
mod server;
pub mod session;
pub mod static_files;
mod workers;

pub use actor::{spawn_actor, spawn_actor_task, Addr, Mailbox};
pub use config::Config;
pub use context::{send_body, send_reply, ContextLocal, RequestRef, SavedContext, Scoped};
pub use dispatch::{abort, abort_with, catch_abort, require_authorization, Handled, Handler};
pub use error::{ChunkError, CookieError, MailboxError, NoContextError, RedirectError, SendError};
pub use reply::{no_cache, InvalidHeader, Reply};
pub use request::{Request, Version};
pub use responder::{BodySender, RemoteResponder, Responder};
pub use server::{Acceptor, AcceptorBuilder, AcceptorRef, StopHandle};
pub use workers::{Worker, Workers};

/// Re-export of `bytes`: reply bodies are [`bytes::Bytes`], shared without copying.
pub use bytes;
/// The README's code, compiled as a doc test so that the tour stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// Measurements for benches and tests; not part of the API.
#[doc(hidden)]
pub mod __measure {
    pub use crate::conn::connection_future_size;

    /// Size in bytes of a [`SavedContext`](crate::SavedContext) value (its heap part is the
    /// request state it shares).
    pub fn saved_context_size() -> usize {
        std::mem::size_of::<crate::SavedContext>()
    }
}

/// Re-export of the `http` crate, whose status codes and header types replies use.
pub use http;

/// Entry points for the fuzz targets; not part of the API.
///
/// Each `*_target` function takes the raw bytes of one fuzz input, runs the crate-private parser
/// on them and panics when an invariant does not hold. The cargo-fuzz targets in `fuzz/` and the
/// corpus replay test `tests/fuzz_corpus.rs` call the same functions, so a stable `cargo test`
/// checks the seed corpus exactly as the fuzzer does.
#[doc(hidden)]
pub mod __fuzz {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    use crate::parse::{self, ChunkedDecoder, Head};
    use crate::{Config, Request, Version};

    const PEER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40000);
    const LOCAL: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);

    /// Every status the head parser may refuse a request with.
    const REFUSALS: [u16; 7] = [400, 413, 414, 417, 431, 501, 505];

    /// How a parsed head delimits its body.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Framing {
        /// No body.
        Empty,
        /// `Content-Length` bytes.
        Length(u64),
        /// `Transfer-Encoding: chunked`.
        Chunked,
    }

    /// A parsed head, in a form that can be compared.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Parsed {
        /// Bytes the head took.
        pub len: usize,
        /// The method.
        pub method: String,
        /// The request target.
        pub target: String,
        /// The version.
        pub version: Version,
        /// Number of header fields.
        pub headers: usize,
        /// Body framing.
        pub framing: Framing,
        /// The connection may stay open after the reply.
        pub keep_alive: bool,
        /// `Expect: 100-continue` applies.
        pub expect_continue: bool,
    }

    /// What the head parser made of a buffer.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum HeadSummary {
        /// More bytes are needed.
        Partial,
        /// Refused with this status (the connection closes).
        Refused(u16),
        /// A complete head.
        Parsed(Parsed),
    }

    /// What decoding a chunked body gave.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum ChunkedSummary {
        /// The body ended after `consumed` input bytes.
        Done {
            /// The de-chunked body.
            body: Vec<u8>,
            /// Input bytes up to the end of the body.
            consumed: usize,
        },
        /// All input was taken and the body is not over.
        NeedMore {
            /// The data decoded so far.
            body: Vec<u8>,
        },
        /// Refused with this status (0 from the reference decoder: any refusal).
        Refused(u16),
    }

    /// A few configurations, chosen by a selector byte: the default, tiny limits, no header
    /// slots, heap-allocated header slots, no limits, and the limits of tests/corpus's `.config`
    /// files.
    pub fn config(selector: u8) -> Config {
        let default = Config::default();
        match selector % 6 {
            0 => default,
            1 => Config {
                max_head_size: 64,
                max_headers: 4,
                max_body_size: 16,
                ..default
            },
            2 => Config {
                max_headers: 0,
                max_body_size: 0,
                ..default
            },
            3 => Config {
                max_head_size: 1 << 16,
                max_headers: 200,
                ..default
            },
            4 => Config {
                max_head_size: usize::MAX,
                max_headers: 300,
                max_body_size: usize::MAX,
                ..default
            },
            _ => Config {
                max_head_size: 256,
                max_headers: 8,
                max_body_size: 16,
                ..default
            },
        }
    }

    /// Fuzz target `parse_request`: the first byte picks a [`config`] and a split seed, the rest
    /// is a connection's input: heads, bodies and pipelined requests.
    pub fn parse_request_target(data: &[u8]) -> Vec<HeadSummary> {
        let Some((&selector, input)) = data.split_first() else {
            return Vec::new();
        };
        connection(input, &config(selector), usize::from(selector >> 3))
    }

    /// Fuzz target `chunked`: two bytes of split point, one byte choosing the limits, then the
    /// encoded body.
    pub fn chunked_target(data: &[u8]) -> ChunkedSummary {
        let [a, b, limits, input @ ..] = data else {
            return ChunkedSummary::NeedMore { body: Vec::new() };
        };
        let (limit, max_trailer) = match limits % 5 {
            0 => (1 << 20, 8192),
            1 => (16, 8),
            2 => (0, 0),
            3 => (5, 2),
            _ => (usize::MAX, usize::MAX),
        };
        chunked(
            input,
            usize::from(u16::from_le_bytes([*a, *b])),
            limit,
            max_trailer,
        )
    }

    /// Serve `input` as a connection would, without the socket: parse a head, take its body
    /// (`Content-Length` bytes, or a chunked body through [`chunked`]) and go on with the next
    /// pipelined request, until the input ends or a request is refused.
    pub fn connection(input: &[u8], config: &Config, seed: usize) -> Vec<HeadSummary> {
        let mut summaries = Vec::new();
        let mut rest = input;
        while summaries.len() < 64 {
            let summary = parse_head(rest, config, seed);
            let HeadSummary::Parsed(parsed) = &summary else {
                summaries.push(summary);
                break;
            };
            rest = &rest[parsed.len..];
            match parsed.framing {
                Framing::Empty => {}
                Framing::Length(n) => match usize::try_from(n) {
                    Ok(n) if n <= rest.len() => rest = &rest[n..],
                    _ => rest = &[],
                },
                Framing::Chunked => {
                    match chunked(rest, seed, config.max_body_size, config.max_head_size) {
                        ChunkedSummary::Done { consumed, .. } => rest = &rest[consumed..],
                        _ => rest = &[],
                    }
                }
            }
            summaries.push(summary);
            if rest.is_empty() {
                break;
            }
        }
        summaries
    }

    /// Parse one head of `buf` and check what the parser promises about it; `seed` picks one
    /// more prefix to re-parse.
    pub fn parse_head(buf: &[u8], config: &Config, seed: usize) -> HeadSummary {
        let summary = summarize(buf, config);
        if let HeadSummary::Parsed(parsed) = &summary {
            let len = parsed.len;
            // A head parsed once the bytes are all there is only waited for before.
            for prefix in [len - 1, seed % len] {
                assert_eq!(
                    summarize(&buf[..prefix], config),
                    HeadSummary::Partial,
                    "a {prefix}-byte prefix of a {len}-byte head"
                );
            }
            // The head alone parses the same: nothing after it changes it.
            assert_eq!(summarize(&buf[..len], config), summary, "the head alone");
        }
        summary
    }

    /// Parse a head with the default configuration, for the request-reading fuzz targets of
    /// other crates.
    pub fn request(head: &[u8]) -> Option<Request> {
        match checked_parse(head, &Config::default()) {
            Ok(Some((head, _))) => Some(head.request),
            _ => None,
        }
    }

    fn summarize(buf: &[u8], config: &Config) -> HeadSummary {
        match checked_parse(buf, config) {
            Ok(None) => HeadSummary::Partial,
            Err(status) => HeadSummary::Refused(status),
            Ok(Some((head, len))) => HeadSummary::Parsed(Parsed {
                len,
                method: head.request.method().to_owned(),
                target: head.request.target().to_owned(),
                version: head.request.version(),
                headers: head.request.headers().count(),
                framing: match head.framing {
                    parse::Framing::Empty => Framing::Empty,
                    parse::Framing::Length(n) => Framing::Length(n),
                    parse::Framing::Chunked => Framing::Chunked,
                },
                keep_alive: head.keep_alive,
                expect_continue: head.expect_continue,
            }),
        }
    }

    fn checked_parse(buf: &[u8], config: &Config) -> Result<Option<(Head, usize)>, u16> {
        let conn = std::rc::Rc::new(crate::responder::ConnCell::new(PEER, LOCAL));
        let (head, len) = match parse::parse_head(buf, config, &conn) {
            Err(status) => {
                let status = status.as_u16();
                assert!(REFUSALS.contains(&status), "unexpected refusal {status}");
                return Err(status);
            }
            Ok(None) => {
                assert!(
                    buf.len() < config.max_head_size,
                    "waiting past the head limit"
                );
                return Ok(None);
            }
            Ok(Some(parsed)) => parsed,
        };
        assert!(0 < len && len <= buf.len() && len <= config.max_head_size);
        assert_eq!(buf[len - 1], b'\n', "a head ends with a line feed");

        let req = &head.request;
        let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
        assert!(token(req.method()), "method {:?}", req.method());
        assert_eq!(head.is_head, req.method() == "HEAD");
        let target = req.target();
        assert!(!target.is_empty(), "empty target");
        let raw_path = req.raw_path();
        assert!(raw_path == "/" || target.contains(raw_path));
        let _ = (req.path(), req.query());
        assert!(req.body().is_empty());
        assert_eq!((req.peer_addr(), req.local_addr()), (PEER, LOCAL));

        assert!(req.headers().count() <= config.max_headers);
        for (name, value) in req.headers() {
            assert!(token(name), "header name {name:?}");
            assert!(
                !value.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)),
                "header value {value:?}"
            );
            assert!(req.header_bytes(name).is_some());
        }
        let has = |name: &str| req.header_all(name).next().is_some();
        let tokens = |name: &'static str, want: &'static [u8]| {
            req.header_all(name).any(|v| {
                v.split(|&b| b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(want))
            })
        };
        let host_byte = |b: &u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:%[]".contains(b);
        assert!(
            req.header_all("host").all(|v| v.iter().all(host_byte)),
            "a Host value of other than RFC 3986 host characters"
        );
        let hosts = req.header_all("host").count();
        let version = req.version();
        match version {
            Version::Http11 => assert_eq!(hosts, 1, "HTTP/1.1 needs exactly one Host"),
            Version::Http10 => assert!(hosts <= 1, "two Host fields"),
        }
        assert!(!(has("content-length") && has("transfer-encoding")));
        match head.framing {
            parse::Framing::Empty => assert!(!has("transfer-encoding")),
            parse::Framing::Length(n) => {
                assert!(has("content-length"));
                assert!(0 < n && n <= config.max_body_size as u64, "length {n}");
            }
            parse::Framing::Chunked => {
                assert!(version == Version::Http11 && tokens("transfer-encoding", b"chunked"));
            }
        }
        if head.expect_continue {
            assert!(version == Version::Http11 && head.framing != parse::Framing::Empty);
        }
        if tokens("connection", b"close") {
            assert!(!head.keep_alive, "kept alive despite Connection: close");
        }
        if version == Version::Http10 && head.keep_alive {
            assert!(tokens("connection", b"keep-alive"));
        }
        Ok(Some((head, len)))
    }

    /// Decode `input` as a chunked body with the connection's decoder: whole, split at
    /// `split % (len + 1)`, and one byte at a time, which must all agree; then compare with an
    /// independent reference decoder.
    pub fn chunked(input: &[u8], split: usize, limit: usize, max_trailer: usize) -> ChunkedSummary {
        let whole = decode_pieces(input, [input.len()], limit, max_trailer);
        let split = split % (input.len() + 1);
        let halves = decode_pieces(input, [split, input.len()], limit, max_trailer);
        assert_eq!(whole, halves, "whole vs split at {split}");
        let bytes = decode_pieces(input, 1..=input.len(), limit, max_trailer);
        assert_eq!(whole, bytes, "whole vs byte by byte");
        let reference = reference_chunked(input, limit, max_trailer);
        match (&whole, &reference) {
            (ChunkedSummary::Refused(_), ChunkedSummary::Refused(_)) => {}
            _ => assert_eq!(whole, reference, "decoder vs reference"),
        }
        if let ChunkedSummary::Done { body, .. } | ChunkedSummary::NeedMore { body } = &whole {
            assert!(body.len() <= limit, "body of {} over {limit}", body.len());
        }
        whole
    }

    /// Feed `input` as the connection does: the buffer grows to each cut in turn and the
    /// decoder is given what it has not consumed yet.
    fn decode_pieces(
        input: &[u8],
        cuts: impl IntoIterator<Item = usize>,
        limit: usize,
        max_trailer: usize,
    ) -> ChunkedSummary {
        let mut decoder = ChunkedDecoder::new(max_trailer);
        let mut body = Vec::new();
        let mut pos = 0;
        for cut in cuts {
            let available = &input[pos..cut.clamp(pos, input.len())];
            let used = match decoder.decode(available, &mut body, limit) {
                Ok(used) => used,
                Err(e) => return ChunkedSummary::Refused(e.status().as_u16()),
            };
            assert!(
                used <= available.len(),
                "consumed {used} of {}",
                available.len()
            );
            assert!(body.len() <= limit, "body of {} over {limit}", body.len());
            pos += used;
            if decoder.is_done() {
                return ChunkedSummary::Done {
                    body,
                    consumed: pos,
                };
            }
            assert_eq!(used, available.len(), "stopped before the end of the body");
        }
        ChunkedSummary::NeedMore { body }
    }

    /// RFC 9112 §7.1 as the decoder implements it, written line by line instead of as a state
    /// machine: `1*64HEXDIG` (a value that fits in 64 bits), `*(SP / HTAB)`, optionally `;` and
    /// an extension without controls other than HTAB, CRLF, the data and CRLF; a zero-size last
    /// chunk; trailer field lines `1*tchar ":" value` (no controls other than HTAB), each ended
    /// by CRLF, and a final CRLF. The trailer section, its CRLF included, may not exceed
    /// `max_trailer` bytes (nor, while incomplete, `max_trailer - 1`). `Refused(0)`: refused, for
    /// whatever reason.
    fn reference_chunked(input: &[u8], limit: usize, max_trailer: usize) -> ChunkedSummary {
        use ChunkedSummary::{Done, NeedMore, Refused};
        let ctl = |b: u8| (b < 0x20 && b != b'\t') || b == 0x7f;
        let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        // From `from`, bytes without controls up to a CR: `Ok(Some(cr))`, `Ok(None)` when the
        // input ends first, `Err(())` at a control.
        let to_cr = |from: usize| -> Result<Option<usize>, ()> {
            for (i, &b) in input.iter().enumerate().skip(from) {
                if b == b'\r' {
                    return Ok(Some(i));
                }
                if ctl(b) {
                    return Err(());
                }
            }
            Ok(None)
        };
        let mut body = Vec::new();
        let mut pos = 0;
        loop {
            let digits: Vec<u32> = input[pos..]
                .iter()
                .map_while(|&b| (b as char).to_digit(16))
                .collect();
            let size = digits
                .iter()
                .try_fold(0u64, |n, &d| n.checked_mul(16)?.checked_add(u64::from(d)));
            let Some(size) = size.filter(|_| digits.len() <= 64) else {
                return Refused(0);
            };
            let mut i = pos + digits.len();
            if i == input.len() {
                return NeedMore { body };
            }
            if digits.is_empty() {
                return Refused(0);
            }
            while input.get(i).is_some_and(|&b| b == b' ' || b == b'\t') {
                i += 1;
            }
            let cr = match input.get(i) {
                None => return NeedMore { body },
                Some(b'\r') => i,
                Some(b';') => match to_cr(i + 1) {
                    Err(()) => return Refused(0),
                    Ok(None) => return NeedMore { body },
                    Ok(Some(cr)) => cr,
                },
                Some(_) => return Refused(0),
            };
            match input.get(cr + 1) {
                None => return NeedMore { body },
                Some(b'\n') => pos = cr + 2,
                Some(_) => return Refused(0),
            }
            if size == 0 {
                break;
            }
            if body.len() as u128 + u128::from(size) > limit as u128 {
                return Refused(0);
            }
            let size = size as usize; // at most `limit`
            if input.len() - pos < size {
                body.extend_from_slice(&input[pos..]);
                return NeedMore { body };
            }
            body.extend_from_slice(&input[pos..pos + size]);
            pos += size;
            match &input[pos..] {
                [b'\r', b'\n', ..] => pos += 2,
                [] | [b'\r'] => return NeedMore { body },
                _ => return Refused(0),
            }
        }
        // The trailer section.
        let start = pos;
        loop {
            let cr = match input.get(pos) {
                None => break,
                Some(b'\r') => pos,
                Some(&b) if tchar(b) => {
                    let colon = pos + input[pos..].iter().take_while(|&&b| tchar(b)).count();
                    match input.get(colon) {
                        None => break,
                        Some(b':') => match to_cr(colon + 1) {
                            Err(()) => return Refused(0),
                            Ok(None) => break,
                            Ok(Some(cr)) => cr,
                        },
                        Some(_) => return Refused(0),
                    }
                }
                Some(_) => return Refused(0),
            };
            match input.get(cr + 1) {
                None => break,
                Some(b'\n') if cr == pos => {
                    if cr + 2 - start > max_trailer {
                        return Refused(0);
                    }
                    return Done {
                        body,
                        consumed: cr + 2,
                    };
                }
                Some(b'\n') => pos = cr + 2,
                Some(_) => return Refused(0),
            }
        }
        // Incomplete: the decoder counts the last chunk's LF and every trailer byte so far.
        if 1 + (input.len() - start) > max_trailer {
            return Refused(0);
        }
        NeedMore { body }
    }
}
