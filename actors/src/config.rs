//! [`PubSubConfig`]: every setting of the pub/sub hub and its HTTP front ends.

use std::time::Duration;

/// Which message a subscriber without a cursor gets first (nchan's
/// `nchan_subscriber_first_message`).
///
/// ```
/// use iomux_actors::FirstMessage;
/// assert_eq!("oldest".parse(), Ok(FirstMessage::Oldest));
/// assert_eq!("-2".parse(), Ok(FirstMessage::Nth(-2)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstMessage {
    /// The oldest buffered message (or the next one, if none is buffered).
    Oldest,
    /// The next message published.
    Newest,
    /// `n > 0`: the n-th buffered message from the oldest; `n < 0`: the |n|-th from the newest;
    /// `0` is [`FirstMessage::Newest`]. Past either end, the nearest buffered message.
    Nth(i64),
}

impl std::str::FromStr for FirstMessage {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "oldest" => Ok(FirstMessage::Oldest),
            "newest" => Ok(FirstMessage::Newest),
            n => n
                .parse()
                .map(|n| {
                    if n == 0 {
                        FirstMessage::Newest
                    } else {
                        FirstMessage::Nth(n)
                    }
                })
                .map_err(|_| format!("expected oldest, newest or a number, not {s:?}")),
        }
    }
}

/// The `Access-Control-Allow-Origin` policy of the subscriber and publisher replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowOrigin {
    /// Echo the request's `Origin` (with `Access-Control-Allow-Credentials: true`), as nchan's
    /// default; no CORS headers when the request has no `Origin`.
    Echo,
    /// Allow only this origin (or `*`): requests from it get CORS headers, others none.
    Only(String),
    /// Send no CORS headers.
    Never,
}

impl std::str::FromStr for AllowOrigin {
    type Err = std::convert::Infallible;

    /// `echo` (or empty), `none`, or an origin such as `https://example.com` or `*`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "" | "echo" => AllowOrigin::Echo,
            "none" => AllowOrigin::Never,
            origin => AllowOrigin::Only(origin.to_string()),
        })
    }
}

/// Settings of the pub/sub hub and server. Defaults follow nchan where nchan has one.
///
/// ```
/// use std::time::Duration;
/// let config = iomux_actors::PubSubConfig {
///     buffer_length: 100,
///     hold_timeout: Duration::from_secs(30),
///     ..Default::default()
/// };
/// assert_eq!(config.buffer_age, Duration::from_secs(3600));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubSubConfig {
    /// Messages kept per channel for subscribers that come later or re-poll; 0 keeps none
    /// (a message reaches only those waiting). Default: 10.
    pub buffer_length: usize,
    /// Age after which a buffered message is dropped. Default: 1 hour.
    pub buffer_age: Duration,
    /// How long a long-poll may wait before `408 Request Timeout` (and an EventSource stream
    /// without messages before it is closed); zero waits forever. Default: 0 (nchan's).
    pub hold_timeout: Duration,
    /// What a subscriber without a cursor gets first. Default: [`FirstMessage::Oldest`].
    pub first_message: FirstMessage,
    /// Interval of the `: ping` comment sent on idle EventSource streams, so proxies keep them
    /// open; zero sends none. Default: 30 s.
    pub heartbeat_interval: Duration,
    /// Most subscribers (long-poll and EventSource) per channel; more get `403`. 0: no limit.
    /// Default: 0.
    pub max_subscribers_per_channel: usize,
    /// A channel with no buffered message and no subscriber is forgotten after this long.
    /// Default: 5 minutes.
    pub channel_idle_timeout: Duration,
    /// Longest channel id, in bytes; longer ones get `400`. Default: 1024.
    pub max_channel_id_len: usize,
    /// CORS policy. Default: [`AllowOrigin::Echo`] (nchan's).
    pub allow_origin: AllowOrigin,
    /// Chunks queued per EventSource stream; a subscriber that falls this far behind is dropped
    /// (its client reconnects and resumes with `Last-Event-ID`). Default: 64.
    pub stream_queue_len: usize,
    /// Period of the hub's timer: expires held long-polls and idle channels, sends heartbeats.
    /// Timeouts are accurate to this. Default: 1 s.
    pub tick: Duration,
}

impl Default for PubSubConfig {
    fn default() -> Self {
        PubSubConfig {
            buffer_length: 10,
            buffer_age: Duration::from_secs(3600),
            hold_timeout: Duration::ZERO,
            first_message: FirstMessage::Oldest,
            heartbeat_interval: Duration::from_secs(30),
            max_subscribers_per_channel: 0,
            channel_idle_timeout: Duration::from_secs(300),
            max_channel_id_len: 1024,
            allow_origin: AllowOrigin::Echo,
            stream_queue_len: 64,
            tick: Duration::from_secs(1),
        }
    }
}
