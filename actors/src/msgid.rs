//! Message ids (`time:tag`, as nchan) and the subscriber cursor read from a request.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use iomux::Request;

/// A message id: the Unix second of publication and a counter of the messages published on the
/// channel within that second, from 0. Ids order first by time, then by tag.
///
/// ```
/// use iomux_actors::MessageId;
/// let id: MessageId = "1795791979:2".parse().unwrap();
/// assert_eq!((id.time, id.tag), (1795791979, 2));
/// assert_eq!(id.to_string(), "1795791979:2");
/// assert!(id < "1795791980:0".parse().unwrap());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MessageId {
    /// Unix seconds of publication.
    pub time: u64,
    /// Index among the messages published on the channel in that second.
    pub tag: u32,
}

impl MessageId {
    /// The id before every real message: "nothing received yet".
    pub const ZERO: MessageId = MessageId { time: 0, tag: 0 };

    /// The id that follows `last` for a message published at `now` (Unix seconds); a clock that
    /// went backwards keeps the last second, so ids only grow.
    pub fn next(last: MessageId, now: u64) -> MessageId {
        if now > last.time {
            MessageId { time: now, tag: 0 }
        } else {
            MessageId {
                time: last.time,
                tag: last.tag.saturating_add(1),
            }
        }
    }

    /// The publication time as a [`SystemTime`] (for `Last-Modified`).
    pub fn system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.time)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.time, self.tag)
    }
}

/// A `time:tag` that is not one: answered `400 Message ID invalid`, as nchan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidMessageId;

impl fmt::Display for InvalidMessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Message ID invalid")
    }
}

impl std::error::Error for InvalidMessageId {}

impl std::str::FromStr for MessageId {
    type Err = InvalidMessageId;

    /// Exactly `DIGITS:DIGITS`, both in range.
    fn from_str(s: &str) -> Result<MessageId, InvalidMessageId> {
        let (time, tag) = s.split_once(':').ok_or(InvalidMessageId)?;
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(time) || !digits(tag) {
            return Err(InvalidMessageId);
        }
        Ok(MessageId {
            time: time.parse().map_err(|_| InvalidMessageId)?,
            tag: tag.parse().map_err(|_| InvalidMessageId)?,
        })
    }
}

/// Where a subscriber's stream resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// The client sent no usable cursor: the channel's first-message rule applies.
    Fresh,
    /// The client has this message: deliver the next one after it.
    After(MessageId),
}

/// A value is a cursor only if it looks like one (`time:tag`, or a bare tag where a tag is
/// expected). Like nchan, a value without a colon is ignored (the client gets the first-message
/// rule), while a value with a colon that is not `DIGITS:DIGITS` is refused.
fn parse_id(value: &str) -> Result<Option<MessageId>, InvalidMessageId> {
    let value = value.trim();
    if value.contains(':') {
        value.parse().map(Some)
    } else {
        Ok(None)
    }
}

/// Read the cursor of a subscriber request, in nchan's order: `If-Modified-Since` with
/// `If-None-Match: TAG`; `If-None-Match: TIME:TAG`; then (an iomux addition, for
/// NchanSubscriber.js) an `Etag: TIME:TAG` request header; the `Last-Event-ID` header; the
/// `last_event_id` query parameter.
///
/// # Errors
/// A malformed `time:tag`, or `If-Modified-Since` without a tag.
pub fn request_cursor(request: &Request) -> Result<Cursor, InvalidMessageId> {
    let if_none_match = request.header("if-none-match");
    if let Some(since) = request.header("if-modified-since") {
        let time = httpdate::parse_http_date(since).map_err(|_| InvalidMessageId)?;
        let time = time
            .duration_since(UNIX_EPOCH)
            .map_err(|_| InvalidMessageId)?
            .as_secs();
        let tag = if_none_match.ok_or(InvalidMessageId)?.trim();
        if tag.contains(':') {
            return cursor_from(Some(tag));
        }
        // Like nchan, non-digits in the tag are skipped (`garbage` is tag 0).
        let digits: String = tag.chars().filter(char::is_ascii_digit).collect();
        let tag = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| InvalidMessageId)?
        };
        return Ok(Cursor::After(MessageId { time, tag }));
    }
    let headers = [
        if_none_match,
        request.header("etag"),
        request.header("last-event-id"),
    ];
    if let Some(value) = headers.into_iter().flatten().next() {
        return cursor_from(Some(value));
    }
    let query = request.query().unwrap_or("");
    let last_event_id = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == "last_event_id")
        .map(|(_, value)| percent_encoding::percent_decode_str(value).decode_utf8_lossy());
    cursor_from(last_event_id.as_deref())
}

fn cursor_from(value: Option<&str>) -> Result<Cursor, InvalidMessageId> {
    match value.map(parse_id).transpose()?.flatten() {
        Some(id) if id != MessageId::ZERO => Ok(Cursor::After(id)),
        _ => Ok(Cursor::Fresh),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_strictly() {
        for bad in [
            "abc:def",
            ":1",
            ":",
            "-1:0",
            "99999999999999999999:0",
            "\"1:2\"",
            "W/\"1:2\"",
            "1:2,3",
            "[1:2]",
            "1:",
            "1:2:3",
            "1: 2",
        ] {
            assert_eq!(bad.parse::<MessageId>(), Err(InvalidMessageId), "{bad}");
        }
        assert_eq!("12:0".parse(), Ok(MessageId { time: 12, tag: 0 }));
    }

    #[test]
    fn values_without_colon_are_not_cursors() {
        for ignored in ["garbage", "12abc", "-1", "0", ""] {
            assert_eq!(parse_id(ignored), Ok(None), "{ignored}");
        }
        assert_eq!(cursor_from(Some("0:0")), Ok(Cursor::Fresh));
        assert_eq!(
            cursor_from(Some("5:1")),
            Ok(Cursor::After(MessageId { time: 5, tag: 1 }))
        );
    }

    #[test]
    fn next_ids_count_within_a_second() {
        let a = MessageId::next(MessageId::ZERO, 100);
        let b = MessageId::next(a, 100);
        let c = MessageId::next(b, 101);
        let d = MessageId::next(c, 99); // the clock went back
        assert_eq!(
            [a, b, c, d].map(|i| i.to_string()),
            ["100:0", "100:1", "101:0", "101:1"]
        );
    }
}
