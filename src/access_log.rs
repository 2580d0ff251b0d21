//! The access log: one line per reply in Apache's combined format, written by a thread of its
//! own (Hunchentoot's access log).
//!
//! ```text
//! %h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i"
//! 127.0.0.1 - alice [06/Nov/1994:08:49:37 +0000] "GET /a?b=c HTTP/1.1" 200 13 "http://x/" "curl/8.5.0"
//! ```
//!
//! `%h` is the client's IP address, `%l` always `-`, `%u` the user name of a `Basic`
//! `Authorization` field (`-` without one), `%t` the time the request was read, in UTC,
//! `%r` the request line, `%>s` the status sent, `%b` the body bytes sent (`-` for none; for a
//! streamed reply, those written before it ended), then the `Referer` and `User-Agent` fields
//! (`-` when absent). As Apache does, `"` and `\` in `%u`, `%r` and the fields are escaped with
//! a backslash, and control bytes and non-ASCII as `\xhh`. A request refused before its head
//! could be read (`400`, `408`, `413`, ...) is logged with `"-"` for its request line. A line is
//! written when the reply has been handed to the socket (a stream's when it ends); a request whose
//! client hung up before any reply was sent has no line, as no status was sent.
//!
//! The event loop never writes to the destination: it formats the line and hands it over a
//! bounded queue to a writer thread ([`AccessLog::queue_len`] lines). When the queue is full
//! (the destination is slower than the requests, or blocked, like a FIFO nobody reads) lines
//! are dropped and counted ([`AcceptorRef::access_log_dropped`](crate::AcceptorRef::access_log_dropped)),
//! as are lines the destination refused. When [`Acceptor::serve`](crate::Acceptor::serve)
//! returns, the queue is closed and the writer given up to one second to write what is left.
//!
//! Messages (errors, warnings, debugging) go through the [`log`](https://docs.rs/log) facade
//! instead, with levels; the application chooses the logger.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::StatusCode;

use crate::request::Request;

/// Lines queued for the writer thread by default.
const DEFAULT_QUEUE_LEN: usize = 4096;
/// How long the end of [`Acceptor::serve`](crate::Acceptor::serve) waits for the writer to
/// write what is queued.
const FLUSH_WAIT: Duration = Duration::from_secs(1);

/// Where the access log goes; set with
/// [`AcceptorBuilder::access_log`](crate::AcceptorBuilder::access_log). Off by default.
///
/// ```
/// use iomux::access_log::AccessLog;
/// let acceptor = iomux::Acceptor::builder()
///     .listen("127.0.0.1:0")
///     .access_log(AccessLog::stderr().queue_len(1024))
///     .bind(|_: &iomux::Request| "hi")?;
/// # drop(acceptor);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct AccessLog {
    destination: Destination,
    queue_len: usize,
}

enum Destination {
    Off,
    Stderr,
    File(PathBuf),
    Writer(Box<dyn Write + Send>),
}

impl AccessLog {
    /// No access log (the default): no thread, no formatting.
    ///
    /// ```
    /// let log = iomux::access_log::AccessLog::off();
    /// assert!(!log.is_on());
    /// ```
    pub fn off() -> AccessLog {
        AccessLog::to(Destination::Off)
    }

    /// To the standard error stream.
    ///
    /// ```
    /// assert!(iomux::access_log::AccessLog::stderr().is_on());
    /// ```
    pub fn stderr() -> AccessLog {
        AccessLog::to(Destination::Stderr)
    }

    /// Appended to the file at `path`, created if missing. It is opened when the acceptor
    /// binds (bind fails if it cannot be; opening a FIFO waits, there, for a reader).
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("iomux-doc-access-{}.log", std::process::id()));
    /// let acceptor = iomux::Acceptor::builder()
    ///     .listen("127.0.0.1:0")
    ///     .access_log(iomux::access_log::AccessLog::file(&path))
    ///     .bind(|_: &iomux::Request| "hi")?;
    /// assert!(path.exists());
    /// # drop(acceptor);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn file(path: impl Into<PathBuf>) -> AccessLog {
        AccessLog::to(Destination::File(path.into()))
    }

    /// To any writer, on the writer thread (for example a socket, a pipe or a test's buffer).
    ///
    /// ```
    /// let log = iomux::access_log::AccessLog::writer(std::io::sink());
    /// assert!(log.is_on());
    /// ```
    pub fn writer(writer: impl Write + Send + 'static) -> AccessLog {
        AccessLog::to(Destination::Writer(Box::new(writer)))
    }

    fn to(destination: Destination) -> AccessLog {
        AccessLog {
            destination,
            queue_len: DEFAULT_QUEUE_LEN,
        }
    }

    /// Lines that may wait for the writer thread (default 4096, at least 1); more are dropped
    /// and counted.
    ///
    /// ```
    /// let log = iomux::access_log::AccessLog::stderr().queue_len(64);
    /// # drop(log);
    /// ```
    pub fn queue_len(mut self, lines: usize) -> AccessLog {
        self.queue_len = lines.max(1);
        self
    }

    /// Is there a destination?
    ///
    /// ```
    /// assert!(!iomux::access_log::AccessLog::default().is_on());
    /// ```
    pub fn is_on(&self) -> bool {
        !matches!(self.destination, Destination::Off)
    }

    /// Open the destination and start the writer thread; `None` when off.
    pub(crate) fn start(self, dropped: Arc<AtomicU64>) -> io::Result<Option<Logger>> {
        let out: Box<dyn Write + Send> = match self.destination {
            Destination::Off => return Ok(None),
            Destination::Stderr => Box::new(io::stderr()),
            Destination::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| {
                        io::Error::new(e.kind(), format!("access log {}: {e}", path.display()))
                    })?,
            ),
            Destination::Writer(writer) => writer,
        };
        let (tx, rx) = mpsc::sync_channel(self.queue_len);
        let (done_tx, done) = async_channel::bounded(1);
        let counter = dropped.clone();
        std::thread::Builder::new()
            .name("iomux-access-log".into())
            .spawn(move || {
                write_lines(rx, out, &counter);
                drop(done_tx);
            })?;
        Ok(Some(Logger { tx, dropped, done }))
    }
}

impl Default for AccessLog {
    fn default() -> AccessLog {
        AccessLog::off()
    }
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let destination = match &self.destination {
            Destination::Off => "off".to_string(),
            Destination::Stderr => "stderr".to_string(),
            Destination::File(path) => path.display().to_string(),
            Destination::Writer(_) => "writer".to_string(),
        };
        f.debug_struct("AccessLog")
            .field("destination", &destination)
            .field("queue_len", &self.queue_len)
            .finish()
    }
}

/// The writer thread: write lines as they come, each batch (what is queued) in one write.
fn write_lines(rx: Receiver<String>, mut out: Box<dyn Write + Send>, dropped: &AtomicU64) {
    let mut batch = Vec::new();
    let mut failing = false;
    while let Ok(line) = rx.recv() {
        batch.clear();
        batch.extend_from_slice(line.as_bytes());
        let mut lines = 1;
        while batch.len() < 64 * 1024 {
            let Ok(more) = rx.try_recv() else { break };
            batch.extend_from_slice(more.as_bytes());
            lines += 1;
        }
        match out.write_all(&batch).and_then(|()| out.flush()) {
            Ok(()) => failing = false,
            Err(e) => {
                dropped.fetch_add(lines, Ordering::Relaxed);
                if !failing {
                    log::warn!("access log: {e}; lines are dropped until it recovers");
                    failing = true;
                }
            }
        }
    }
}

/// The loop's end of the access log.
pub(crate) struct Logger {
    tx: SyncSender<String>,
    dropped: Arc<AtomicU64>,
    /// Closed when the writer thread ends.
    done: async_channel::Receiver<()>,
}

impl Logger {
    /// Queue a line, or drop and count it if the queue is full; never waits.
    pub(crate) fn log(&self, line: String) {
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Close the queue and give the writer [`FLUSH_WAIT`] to write what is left.
    pub(crate) async fn close(self) {
        let Logger { tx, done, .. } = self;
        drop(tx);
        futures_lite::future::or(
            async {
                let _ = done.recv().await;
            },
            async {
                async_io::Timer::after(FLUSH_WAIT).await;
            },
        )
        .await;
    }
}

/// What is known of a request when its head is read; the rest of its line comes with the reply.
#[derive(Debug)]
pub(crate) struct Entry {
    /// `%h %l %u %t "%r"`.
    head: String,
    /// `"%{Referer}i" "%{User-agent}i"`.
    tail: String,
}

impl Entry {
    /// For a request that was read.
    pub(crate) fn new(request: &Request) -> Entry {
        let mut head = String::with_capacity(128);
        let user = request
            .header_bytes("authorization")
            .and_then(basic_user)
            .unwrap_or_else(|| b"-".to_vec());
        let _ = write!(head, "{} - ", request.peer_addr().ip());
        escape_into(&mut head, &user);
        head.push(' ');
        push_time(&mut head, SystemTime::now());
        head.push_str(" \"");
        escape_into(&mut head, request.method().as_bytes());
        head.push(' ');
        escape_into(&mut head, request.target().as_bytes());
        head.push(' ');
        head.push_str(request.version().as_str());
        head.push('"');
        let mut tail = String::with_capacity(64);
        for (i, name) in ["referer", "user-agent"].into_iter().enumerate() {
            if i > 0 {
                tail.push(' ');
            }
            tail.push('"');
            escape_into(&mut tail, request.header_bytes(name).unwrap_or(b"-"));
            tail.push('"');
        }
        Entry { head, tail }
    }

    /// For a request refused before its head could be read.
    pub(crate) fn refused(peer: SocketAddr) -> Entry {
        let mut head = format!("{} - - ", peer.ip());
        push_time(&mut head, SystemTime::now());
        head.push_str(" \"-\"");
        Entry {
            head,
            tail: "\"-\" \"-\"".to_owned(),
        }
    }

    /// The whole line, newline included.
    pub(crate) fn line(&self, status: StatusCode, bytes: u64) -> String {
        let mut line = String::with_capacity(self.head.len() + self.tail.len() + 16);
        line.push_str(&self.head);
        line.push(' ');
        line.push_str(status.as_str());
        line.push(' ');
        if bytes == 0 {
            line.push('-');
        } else {
            line.push_str(itoa::Buffer::new().format(bytes));
        }
        line.push(' ');
        line.push_str(&self.tail);
        line.push('\n');
        line
    }
}

/// Apache's escaping of logged request data: `"` and `\` get a backslash, control bytes and
/// non-ASCII become `\xhh`.
fn escape_into(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(char::from(b));
            }
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
}

/// `[06/Nov/1994:08:49:37 +0000]`.
fn push_time(out: &mut String, at: SystemTime) {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (year, month, day) = civil_from_days(secs / 86_400);
    let of_day = secs % 86_400;
    let _ = write!(
        out,
        "[{day:02}/{}/{year:04}:{:02}:{:02}:{:02} +0000]",
        MONTHS[(month - 1) as usize],
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    );
}

/// Year, month (1-12) and day (1-31) of a day count since 1970-01-01 (Howard Hinnant's
/// algorithm, for the proleptic Gregorian calendar).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// The user name of a `Basic` credentials field (RFC 7617), if it is one.
fn basic_user(value: &[u8]) -> Option<Vec<u8>> {
    let value = value.trim_ascii();
    let (scheme, token) = value.split_at(value.iter().position(|&b| b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let decoded = base64_decode(token.trim_ascii())?;
    let end = decoded.iter().position(|&b| b == b':')?;
    Some(decoded[..end].to_vec()).filter(|user| !user.is_empty())
}

/// Standard base64 with optional padding; `None` for anything else.
fn base64_decode(input: &[u8]) -> Option<Vec<u8>> {
    let digit = |b: u8| -> Option<u32> {
        Some(match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let input = input
        .strip_suffix(b"==")
        .or_else(|| input.strip_suffix(b"="))
        .unwrap_or(input);
    if input.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    for group in input.chunks(4) {
        let mut n = 0u32;
        for (i, &b) in group.iter().enumerate() {
            n |= digit(b)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..group.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        let mut s = String::new();
        push_time(&mut s, UNIX_EPOCH + Duration::from_secs(784_111_777));
        assert_eq!(s, "[06/Nov/1994:08:49:37 +0000]");
        s.clear();
        push_time(&mut s, UNIX_EPOCH + Duration::from_secs(951_782_400)); // 2000-02-29
        assert_eq!(s, "[29/Feb/2000:00:00:00 +0000]");
        s.clear();
        push_time(&mut s, UNIX_EPOCH);
        assert_eq!(s, "[01/Jan/1970:00:00:00 +0000]");
    }

    #[test]
    fn basic_users() {
        assert_eq!(
            basic_user(b"Basic YWxpY2U6c2VjcmV0"),
            Some(b"alice".to_vec())
        );
        assert_eq!(basic_user(b"basic  Ym9iOg=="), Some(b"bob".to_vec()));
        assert_eq!(basic_user(b"Bearer abc"), None);
        assert_eq!(basic_user(b"Basic !!!"), None);
        assert_eq!(basic_user(b"Basic Og=="), None); // ":" (no user)
        assert_eq!(base64_decode(b"YQ"), Some(b"a".to_vec()));
        assert_eq!(base64_decode(b"YWI="), Some(b"ab".to_vec()));
    }

    #[test]
    fn escaping() {
        let mut s = String::new();
        escape_into(&mut s, b"a\"b\\c\x01\xff d");
        assert_eq!(s, "a\\\"b\\\\c\\x01\\xff d");
    }

    #[test]
    fn refused_line() {
        let peer: SocketAddr = "[::1]:5".parse().unwrap();
        let line = Entry::refused(peer).line(StatusCode::BAD_REQUEST, 16);
        assert!(line.starts_with("::1 - - ["), "{line}");
        assert!(line.ends_with("] \"-\" 400 16 \"-\" \"-\"\n"), "{line}");
    }
}
