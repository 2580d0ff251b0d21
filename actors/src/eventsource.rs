//! The EventSource (`text/event-stream`) wire format of messages and stream control lines.

use iomux::bytes::Bytes;

use crate::msgid::MessageId;

/// The first bytes of every stream (as nchan): a comment, so the browser sees the stream open.
pub(crate) const HELLO: &[u8] = b": hi\n\n";
/// The heartbeat: a comment, invisible to scripts, that keeps proxies from closing the stream.
pub(crate) const HEARTBEAT: &[u8] = b": ping\n\n";
/// Sent before closing a stream at the hold timeout (as nchan).
pub(crate) const TIMEOUT: &[u8] = b":408: 408 Request Timeout\n\n";
/// Sent before closing the streams of a deleted channel (as nchan).
pub(crate) const GONE: &[u8] = b":410: 410 Gone\n\n";

/// Encode one message as an event: `event:` (if named), `id: time:tag`, one `data:` line per
/// line of the body, and the blank line that ends the event. Lines end at LF, CRLF or CR, as
/// the EventSource parser reads them (nchan splits at LF only, so a CR broke its events).
///
/// ```
/// # use iomux_actors::MessageId;
/// let id = MessageId { time: 7, tag: 1 };
/// let event = iomux_actors::eventsource::encode(id, Some(b"chat"), b"hello\r\nworld");
/// assert_eq!(event, "event: chat\nid: 7:1\ndata: hello\ndata: world\n\n");
/// ```
pub fn encode(id: MessageId, event: Option<&[u8]>, body: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(body.len() + 32);
    if let Some(name) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name);
        out.push(b'\n');
    }
    out.extend_from_slice(format!("id: {id}\n").as_bytes());
    let mut rest = body;
    loop {
        let end = rest
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
            .unwrap_or(rest.len());
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&rest[..end]);
        out.push(b'\n');
        if end == rest.len() {
            break;
        }
        let skip = if rest[end..].starts_with(b"\r\n") {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
    }
    out.push(b'\n');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_at_every_line_end() {
        let id = MessageId { time: 1, tag: 0 };
        assert_eq!(encode(id, None, b""), "id: 1:0\ndata: \n\n");
        assert_eq!(encode(id, None, b"a\n"), "id: 1:0\ndata: a\ndata: \n\n");
        assert_eq!(
            encode(id, None, b"a\rb\nc\r\nd"),
            "id: 1:0\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
        );
    }
}
