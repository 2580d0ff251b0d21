//! One place for every limit and timeout of an [`Acceptor`](crate::Acceptor).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Limits and timeouts of an acceptor. Every field documents its default and unit.
///
/// Build one with struct-update syntax from [`Config::default()`]:
///
/// ```
/// use std::time::Duration;
/// let config = iomux::Config {
///     keep_alive_timeout: Duration::from_secs(30),
///     max_body_size: 64 * 1024,
///     ..iomux::Config::default()
/// };
/// assert_eq!(config.max_headers, 64);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Largest request head (request line and header fields), in bytes. A longer head is answered
    /// `431 Request Header Fields Too Large`, or `414 URI Too Long` when the request line alone
    /// does not fit. Default: 8192 (nginx's `large_client_header_buffers` size).
    pub max_head_size: usize,
    /// Most header fields in one request; more are answered `431`. Default: 64.
    pub max_headers: usize,
    /// Largest request body, in bytes, whether framed by `Content-Length` or chunked. A larger
    /// declared body is answered `413 Content Too Large` without being read. Default: 1 MiB
    /// (nginx's `client_max_body_size`).
    pub max_body_size: usize,
    /// Time allowed from the first byte of a request to the end of its head. Default: 10 s.
    pub head_timeout: Duration,
    /// Time allowed to receive a whole request body once its head is read. Default: 30 s.
    pub body_timeout: Duration,
    /// Time an idle keep-alive connection may wait for its next request, and a new connection for
    /// its first byte. Default: 60 s. Kept by one sweep of the connections four times per period
    /// (and only while some connection is idle), so an idle connection closes between this and
    /// 1.25 times it.
    pub keep_alive_timeout: Duration,
    /// Time allowed to write out what is buffered for a client (one reply, or a batch of stream
    /// chunks); a client that stops reading is dropped after it. Default: 30 s.
    pub write_timeout: Duration,
    /// Bytes asked of the socket per read; the read buffer grows by this much when it is full,
    /// and is released while a request waits for a deferred reply. Default: 4096.
    pub read_buffer_size: usize,
    /// Buffers kept for reuse by the acceptor, so that connections going idle or waiting can
    /// give theirs back cheaply and take one again when they become active: a read buffer, and
    /// one to encode replies into. Default: 128 (512 KiB with the default buffer size).
    pub buffer_pool_len: usize,
    /// Most requests served on one connection before it is closed (`Connection: close` on the
    /// last reply); `0` means no limit. Default: 0.
    pub max_requests_per_connection: usize,
    /// Most body chunks queued between a streaming reply's sender and the connection. A full
    /// queue makes [`BodySender::send`](crate::BodySender::send) wait and
    /// [`BodySender::try_send`](crate::BodySender::try_send) fail: the backpressure of a slow
    /// client reaches the producer. Default: 64 chunks.
    pub stream_queue_len: usize,
    /// Replies and chunks smaller than this are copied next to the head and written with it in
    /// one system call; larger bodies are written as they are. Default: 16 KiB.
    pub coalesce_limit: usize,
    /// Most open connections. When reached the acceptor stops accepting (new clients wait in the
    /// kernel's listen backlog) until a connection closes. Default: 16384. With
    /// [workers](crate::AcceptorBuilder::workers), a limit per worker: n workers may hold up to
    /// n times as many.
    pub max_connections: usize,
    /// Pause after a failed `accept` (for example `EMFILE`: out of file descriptors) before the
    /// next attempt, so the loop never spins. Default: 100 ms.
    pub accept_error_backoff: Duration,
    /// After [`StopHandle::stop`](crate::StopHandle::stop): time given to in-flight replies
    /// before remaining connections are dropped. Default: 10 s.
    pub shutdown_timeout: Duration,
    /// Status sent to requests still waiting for a deferred reply when the acceptor stops.
    /// Default: 503 (with `Retry-After: 1`).
    pub shutdown_status: u16,
    /// Set `TCP_NODELAY` on accepted sockets, so small replies leave at once. Default: true.
    pub tcp_nodelay: bool,
    /// Length of the kernel's queue of connections not yet accepted: what absorbs a burst of
    /// connections arriving faster than the loop accepts them (while it is busy, or while
    /// another process has its core). A connection that finds the queue full has its SYN
    /// dropped and is retried by the client a second later (`ListenOverflows` in
    /// `/proc/net/netstat`). The kernel caps it at `net.core.somaxconn` (4096 on Linux 5.4 and
    /// later, 128 before; logged at `info` when it does). With
    /// [workers](crate::AcceptorBuilder::workers), each worker's socket has a queue this long.
    /// Default: 4096.
    pub listen_backlog: i32,
    /// After an error reply that closes the connection, how long unread request bytes are still
    /// read and discarded, so the client receives the reply instead of a reset. Default: 2 s.
    pub lingering_time: Duration,
    /// Addresses of the reverse proxies in front of the server whose forwarding headers are
    /// believed: [`Request::real_remote_addr`](crate::Request::real_remote_addr) reads
    /// `Forwarded` / `X-Forwarded-For` only when the peer is one of them (IPv4-mapped IPv6
    /// addresses match their IPv4 form). Default: empty (the headers are never believed).
    pub trusted_proxies: Vec<IpAddr>,
    /// Largest file upload of a `multipart/form-data` body kept in memory, in bytes; a larger one
    /// is written to a temporary file in [`upload_dir`](Config::upload_dir), removed when the
    /// request ends. See [`Upload`](crate::params::Upload). Default: 64 KiB.
    pub upload_memory_limit: usize,
    /// Directory of the temporary files of uploads over
    /// [`upload_memory_limit`](Config::upload_memory_limit). Default: [`std::env::temp_dir()`].
    pub upload_dir: PathBuf,
    /// Most fields in one form body: `name=value` pairs of an urlencoded body, parts of a
    /// multipart one (fields and files together). A body with more is refused as a whole:
    /// [`FormError::TooManyFields`](crate::params::FormError::TooManyFields), answered
    /// `413 Content Too Large`. Query strings are bounded by
    /// [`max_head_size`](Config::max_head_size) instead. Default: 1000.
    pub max_form_fields: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_head_size: 8 * 1024,
            max_headers: 64,
            max_body_size: 1024 * 1024,
            head_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            keep_alive_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            read_buffer_size: 4096,
            buffer_pool_len: 128,
            max_requests_per_connection: 0,
            stream_queue_len: 64,
            coalesce_limit: 16 * 1024,
            max_connections: 16384,
            accept_error_backoff: Duration::from_millis(100),
            shutdown_timeout: Duration::from_secs(10),
            shutdown_status: 503,
            tcp_nodelay: true,
            listen_backlog: 4096,
            lingering_time: Duration::from_secs(2),
            trusted_proxies: Vec::new(),
            upload_memory_limit: 64 * 1024,
            upload_dir: std::env::temp_dir(),
            max_form_fields: 1000,
        }
    }
}
