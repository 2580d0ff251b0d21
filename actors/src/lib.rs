//! Reusable application actors for [`iomux`], and the nchan-compatible pub/sub server built
//! from them.
//!
//! An iomux application actor is a task on the server's `LocalExecutor` with a mailbox
//! ([`iomux::spawn_actor`], [`iomux::Addr`]). It receives messages that carry a request's
//! [`iomux::SavedContext`], keeps them while they wait for an event, and replies later. The
//! [`spawn_hub`] actor does this for pub/sub: channels, message buffers, long-poll waiters and
//! EventSource streams. [`PubSub`] puts nchan's HTTP protocol in front of it, and the
//! `iomux-pubsub` binary makes a ready server of that.
//!
//! One hub serves one loop; where its messages are ordered and stored is its [`Backend`]: the
//! hub itself (the default), a [`HubGroup`] of the workers of one process, or a Redis shared by
//! several processes (`RedisBackend`, with the crate feature `redis`: the redis client brings
//! tokio and tokio-util in as libraries, so it is not built unless asked for).
//!
//! ```
//! use std::io::{Read, Write};
//! use iomux_actors::{PubSub, PubSubConfig};
//!
//! let ex = async_executor::LocalExecutor::new();
//! let pubsub = PubSub::new(&ex, PubSubConfig::default());
//! let acceptor = iomux::Acceptor::bind("127.0.0.1:0", pubsub.handler())?;
//! let (addr, stop) = (acceptor.local_addr(), acceptor.stop_handle());
//!
//! let client = std::thread::spawn(move || {
//!     let exchange = |request: &str| {
//!         let mut s = std::net::TcpStream::connect(addr).unwrap();
//!         s.write_all(request.as_bytes()).unwrap();
//!         let mut reply = String::new();
//!         s.read_to_string(&mut reply).unwrap();
//!         reply
//!     };
//!     let published = exchange("POST /pub/news HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
//!     let received = exchange("GET /sub/news HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
//!     stop.stop();
//!     (published, received)
//! });
//! async_io::block_on(ex.run(acceptor.serve(&ex)))?;
//! let (published, received) = client.join().unwrap();
//! assert!(published.starts_with("HTTP/1.1 202 Accepted"));
//! assert!(received.starts_with("HTTP/1.1 200 OK") && received.ends_with("\r\n\r\nhello"));
//! # Ok::<(), std::io::Error>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod backend;
mod config;
mod cors;
pub mod eventsource;
mod group;
mod hub;
mod info;
mod msgid;
mod pubsub;
#[cfg(feature = "redis")]
mod redis_backend;

pub use backend::Backend;
pub use config::{AllowOrigin, FirstMessage, PubSubConfig};
pub use group::{GroupMember, HubGroup};
pub use hub::{spawn_hub, spawn_hub_with, HubMsg, Mode, NewMessage};
pub use info::{resident_memory, ChannelInfo, Format, Status};
pub use msgid::{request_cursor, Cursor, InvalidMessageId, MessageId};
pub use pubsub::{PubSub, DEMO_PAGE};
#[cfg(feature = "redis")]
pub use redis_backend::{RedisBackend, WhileDown};

/// Entry points for the fuzz targets; not part of the API.
///
/// [`cursor_target`](__fuzz::cursor_target) takes the raw bytes of one fuzz input and panics
/// when an invariant of the message-id and cursor parsers does not hold. The cargo-fuzz target
/// `cursor` in `fuzz/` and the corpus replay test `actors/tests/fuzz_corpus.rs` both call it.
#[doc(hidden)]
pub mod __fuzz {
    use crate::msgid::{request_cursor, Cursor, InvalidMessageId, MessageId};

    /// Header fields a cursor is read from, in the order of the input's fields.
    const FIELDS: [&str; 4] = [
        "If-Modified-Since",
        "If-None-Match",
        "Etag",
        "Last-Event-ID",
    ];

    /// Fuzz target `cursor`. The whole input is parsed as a message id; its first 12 bytes,
    /// as a `(time, tag)` pair, go through `Display` and back; and the input read as a mask byte
    /// and `\n`-separated fields (query, then `FIELDS`) becomes a subscriber request whose
    /// cursor is read.
    pub fn cursor_target(data: &[u8]) {
        if let Ok(s) = std::str::from_utf8(data) {
            message_id(s);
        }
        if let Some((time, rest)) = data.split_first_chunk::<8>() {
            if let Some((tag, rest)) = rest.split_first_chunk::<4>() {
                let now = rest
                    .first_chunk::<8>()
                    .map_or(0, |b| u64::from_le_bytes(*b));
                round_trip(
                    MessageId {
                        time: u64::from_le_bytes(*time),
                        tag: u32::from_le_bytes(*tag),
                    },
                    now,
                );
            }
        }
        if let Some((&mask, rest)) = data.split_first() {
            let mut parts = rest.split(|&b| b == b'\n');
            let query = parts.next().unwrap_or_default();
            let mut head = b"GET /sub/fuzz".to_vec();
            if mask & 1 != 0 {
                head.push(b'?');
                head.extend_from_slice(query);
            }
            head.extend_from_slice(b" HTTP/1.1\r\nHost: fuzz\r\n");
            for (i, (name, value)) in FIELDS.iter().zip(parts).enumerate() {
                if mask & (2 << i) != 0 {
                    head.extend_from_slice(name.as_bytes());
                    head.extend_from_slice(b": ");
                    head.extend_from_slice(value);
                    head.extend_from_slice(b"\r\n");
                }
            }
            head.extend_from_slice(b"\r\n");
            cursor(&head);
        }
    }

    /// Parse `s` as a message id: only `DIGITS:DIGITS` in range parses, and the id prints back
    /// as `s` without leading zeros.
    pub fn message_id(s: &str) -> Option<MessageId> {
        let parsed = s.parse::<MessageId>().ok()?;
        let (time, tag) = s.split_once(':').expect("an id has a colon");
        let canonical = |d: &str| {
            assert!(
                !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()),
                "{s:?}"
            );
            match d.trim_start_matches('0') {
                "" => "0".to_owned(),
                d => d.to_owned(),
            }
        };
        assert_eq!(
            parsed.to_string(),
            format!("{}:{}", canonical(time), canonical(tag)),
            "{s:?}"
        );
        round_trip(parsed, 0);
        Some(parsed)
    }

    /// `parse(to_string(id)) == id`, and the next id never goes back.
    pub fn round_trip(id: MessageId, now: u64) {
        assert_eq!(id.to_string().parse(), Ok(id), "{id:?}");
        let next = MessageId::next(id, now);
        assert!(next >= id, "{next} after {id}");
        if id.tag < u32::MAX || now > id.time {
            assert!(next > id, "{next} after {id}");
        }
    }

    /// Read the cursor of the request in `head` (if it parses), and compare with what nchan's
    /// rules, as `request_cursor` documents them, give for the fields that decide it.
    pub fn cursor(head: &[u8]) -> Option<Result<Cursor, InvalidMessageId>> {
        let request = iomux::__fuzz::request(head)?;
        let cursor = request_cursor(&request);
        // A value decides only if it looks like `time:tag`; `0:0` means "nothing yet".
        let expected_from = |value: &str| {
            let value = value.trim();
            if !value.contains(':') {
                return Ok(Cursor::Fresh);
            }
            let (time, tag) = value.split_once(':').ok_or(InvalidMessageId)?;
            let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
            if !digits(time) || !digits(tag) {
                return Err(InvalidMessageId);
            }
            let id = MessageId {
                time: time.parse().map_err(|_| InvalidMessageId)?,
                tag: tag.parse().map_err(|_| InvalidMessageId)?,
            };
            Ok(if id == MessageId::ZERO {
                Cursor::Fresh
            } else {
                Cursor::After(id)
            })
        };
        let if_none_match = request.header("if-none-match");
        if let Some(since) = request.header("if-modified-since") {
            // An HTTP date, and If-None-Match as the tag: `time:tag` decides alone, otherwise its
            // digits (none: 0) are the tag within that second.
            let time = httpdate::parse_http_date(since)
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
            let expected = match (time, if_none_match.map(str::trim)) {
                (None, _) | (_, None) => Err(InvalidMessageId),
                (Some(_), Some(tag)) if tag.contains(':') => expected_from(tag),
                (Some(time), Some(tag)) => {
                    let digits: String = tag.chars().filter(char::is_ascii_digit).collect();
                    match digits.as_str() {
                        "" => Ok(0),
                        digits => digits.parse().map_err(|_| InvalidMessageId),
                    }
                    .map(|tag| {
                        Cursor::After(MessageId {
                            time: time.as_secs(),
                            tag,
                        })
                    })
                }
            };
            assert_eq!(cursor, expected, "{since:?} {if_none_match:?}");
        } else if let Some(value) = [
            if_none_match,
            request.header("etag"),
            request.header("last-event-id"),
        ]
        .into_iter()
        .flatten()
        .next()
        {
            assert_eq!(cursor, expected_from(value), "{value:?}");
        } else if !request.query().unwrap_or("").contains("last_event_id=") {
            assert_eq!(cursor, Ok(Cursor::Fresh), "{request:?}");
        }
        if let Ok(Cursor::After(id)) = cursor {
            round_trip(id, 0);
        }
        Some(cursor)
    }
}
