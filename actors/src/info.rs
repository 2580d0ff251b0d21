//! Channel information and server figures, in nchan's text and JSON forms.

use iomux::http::header::CONTENT_TYPE;
use iomux::http::{HeaderValue, StatusCode};
use iomux::{Reply, Request};

use crate::msgid::MessageId;

/// What a publisher learns about a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelInfo {
    /// Messages in the buffer.
    pub messages: usize,
    /// Seconds since a subscriber last asked for the channel; `None`: never.
    pub requested: Option<u64>,
    /// Long-poll and EventSource subscribers connected now.
    pub subscribers: usize,
    /// The last message's id (`0:0` if none was ever published).
    pub last_message_id: MessageId,
}

/// The representation asked for by `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain` (the default).
    Text,
    /// `text/json` or `application/json` (served as `text/json`, as nchan).
    Json,
}

impl Format {
    /// As nchan: the first known type listed in `Accept` wins (q-values are not weighed).
    pub fn of(request: &Request) -> Format {
        let accept = request.header("accept").unwrap_or("");
        for media in accept.split(',') {
            let media = media.split(';').next().unwrap_or("").trim();
            if media.eq_ignore_ascii_case("application/json")
                || media.eq_ignore_ascii_case("text/json")
            {
                return Format::Json;
            }
            if media.eq_ignore_ascii_case("text/plain") {
                return Format::Text;
            }
        }
        Format::Text
    }
}

impl ChannelInfo {
    /// The body in nchan's exact forms: four CRLF-separated lines without a final newline, or
    /// JSON with nchan's spacing.
    ///
    /// ```
    /// use iomux_actors::{ChannelInfo, Format, MessageId};
    /// let info = ChannelInfo { messages: 2, requested: None, subscribers: 0,
    ///                          last_message_id: MessageId { time: 5, tag: 1 } };
    /// assert_eq!(info.render(Format::Json),
    ///            r#"{"messages": 2, "requested": -1, "subscribers": 0, "last_message_id": "5:1" }"#);
    /// assert!(info.render(Format::Text).starts_with("queued messages: 2\r\nlast requested: -1 sec. ago\r\n"));
    /// ```
    pub fn render(&self, format: Format) -> String {
        let requested = self.requested.map_or(-1, |s| s as i64);
        match format {
            Format::Text => format!(
                "queued messages: {}\r\nlast requested: {requested} sec. ago\r\nactive subscribers: {}\r\nlast message id: {}",
                self.messages, self.subscribers, self.last_message_id
            ),
            Format::Json => format!(
                "{{\"messages\": {}, \"requested\": {requested}, \"subscribers\": {}, \"last_message_id\": \"{}\" }}",
                self.messages, self.subscribers, self.last_message_id
            ),
        }
    }

    /// A reply carrying this information.
    pub fn reply(&self, status: StatusCode, format: Format) -> Reply {
        let content_type = match format {
            Format::Text => "text/plain",
            Format::Json => "text/json",
        };
        Reply::new(status)
            .header(CONTENT_TYPE, HeaderValue::from_static(content_type))
            .with_body(self.render(format))
    }
}

/// The figures of `GET /status` (in the spirit of `nchan_stub_status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Status {
    /// Open client connections.
    pub connections: usize,
    /// Requests waiting for a deferred reply (long-polls among them).
    pub waiting_requests: usize,
    /// Long-poll subscribers waiting in the hub.
    pub long_poll_subscribers: usize,
    /// EventSource streams open.
    pub eventsource_subscribers: usize,
    /// Channels known to the hub.
    pub channels: usize,
    /// Messages in all channel buffers.
    pub stored_messages: usize,
    /// Messages published since start.
    pub published_messages: u64,
    /// Messages delivered to subscribers since start (one per subscriber reached).
    pub delivered_messages: u64,
    /// Resident memory of the process, in bytes (`VmRSS`).
    pub resident_memory: u64,
}

impl Status {
    const FIELDS: usize = 9;

    fn fields(&self) -> [(&'static str, u64); Status::FIELDS] {
        [
            ("connections", self.connections as u64),
            ("waiting requests", self.waiting_requests as u64),
            ("long-poll subscribers", self.long_poll_subscribers as u64),
            (
                "eventsource subscribers",
                self.eventsource_subscribers as u64,
            ),
            ("channels", self.channels as u64),
            ("stored messages", self.stored_messages as u64),
            ("total published messages", self.published_messages),
            ("total delivered messages", self.delivered_messages),
            ("resident memory bytes", self.resident_memory),
        ]
    }

    /// `name: value` lines, or a JSON object with the names in snake case.
    ///
    /// ```
    /// let status = iomux_actors::Status { channels: 3, ..Default::default() };
    /// assert!(status.render(iomux_actors::Format::Text).contains("\nchannels: 3\n"));
    /// assert!(status.render(iomux_actors::Format::Json).contains("\"channels\": 3"));
    /// ```
    pub fn render(&self, format: Format) -> String {
        let fields = self.fields();
        match format {
            Format::Text => {
                let mut out: String = fields.iter().map(|(n, v)| format!("{n}: {v}\n")).collect();
                out.push_str(concat!("iomux version: ", env!("CARGO_PKG_VERSION"), "\n"));
                out
            }
            Format::Json => {
                let body: Vec<String> = fields
                    .iter()
                    .map(|(n, v)| format!("\"{}\": {v}", n.replace([' ', '-'], "_")))
                    .collect();
                format!(
                    "{{{}, \"iomux_version\": \"{}\"}}\n",
                    body.join(", "),
                    env!("CARGO_PKG_VERSION")
                )
            }
        }
    }

    /// A reply with these figures (`application/json` for JSON).
    pub fn reply(&self, format: Format) -> Reply {
        let content_type = match format {
            Format::Text => "text/plain; charset=utf-8",
            Format::Json => "application/json",
        };
        Reply::with_type(content_type, self.render(format))
    }
}

/// Resident memory of this process in bytes, from `/proc/self/status` (0 where unavailable).
pub fn resident_memory() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}
