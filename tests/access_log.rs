//! The access log over real TCP: Apache's combined format, exactly, read back from the file it
//! was written to; off; and a destination that does not take lines (a writer that blocks, a
//! FIFO nobody reads) slowing no request down, its lines dropped and counted.

mod reply_support;
mod support;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use iomux::access_log::AccessLog;
use iomux::http::StatusCode;
use iomux::{context, Handled, Reply, Request};
use reply_support::{body, temp_dir, TestServer};

fn app(req: &Request) -> Handled {
    match req.path().as_ref() {
        "/missing" => Reply::error(StatusCode::NOT_FOUND).into(),
        "/empty" => Reply::new(StatusCode::NO_CONTENT).into(),
        "/stream" => {
            let body = context::start_stream().unwrap();
            body.try_send("abc").unwrap();
            body.try_send("de").unwrap();
            body.finish();
            Handled::Deferred
        }
        "/dropped" => Reply::text(context::acceptor().access_log_dropped().to_string()).into(),
        _ => Reply::text("hello").into(),
    }
}

/// Seconds since the epoch of `dd/Mon/yyyy:HH:MM:SS +0000`.
fn parse_log_time(text: &str) -> u64 {
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    assert_eq!(text.len(), 26, "{text:?}");
    assert!(text.ends_with(" +0000"), "{text:?}");
    let num = |range: std::ops::Range<usize>| text[range].parse::<u64>().unwrap();
    let (day, year) = (num(0..2), num(7..11));
    let month = months.iter().position(|m| *m == &text[3..6]).unwrap() as u64 + 1;
    let (h, m, s) = (num(12..14), num(15..17), num(18..20));
    assert_eq!(
        (
            &text[2..3],
            &text[6..7],
            &text[11..12],
            &text[14..15],
            &text[17..18]
        ),
        ("/", "/", ":", ":", ":")
    );
    // Days from the civil date (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + h * 3600 + m * 60 + s
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn combined_format_exactly() {
    let dir = temp_dir("access-log");
    let path = dir.join("access.log");
    let log_path = path.clone();
    let server = TestServer::start(move |b| b.access_log(AccessLog::file(log_path)), |_| app);
    let start = now_secs();
    let exchanges: [(&[u8], &str); 8] = [
        (
            b"GET /hello?x=1&y=%22 HTTP/1.1\r\nHost: h\r\nReferer: http://ref.example/page\r\n\
              User-Agent: agent/1.0 \"quoted\" \\ back \xc3\xa9\r\n\
              Authorization: Basic YWxpY2U6c2VjcmV0\r\nConnection: close\r\n\r\n",
            "\"GET /hello?x=1&y=%22 HTTP/1.1\" 200 5 \"http://ref.example/page\" \
             \"agent/1.0 \\\"quoted\\\" \\\\ back \\xc3\\xa9\"",
        ),
        (
            b"HEAD /hello HTTP/1.0\r\n\r\n",
            "\"HEAD /hello HTTP/1.0\" 200 - \"-\" \"-\"",
        ),
        (
            b"GET /missing HTTP/1.1\r\nHost: h\r\nUser-Agent: curl/8\r\nConnection: close\r\n\r\n",
            "\"GET /missing HTTP/1.1\" 404 14 \"-\" \"curl/8\"",
        ),
        (
            b"GET /stream HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            "\"GET /stream HTTP/1.1\" 200 5 \"-\" \"-\"",
        ),
        (
            b"GET /empty HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            "\"GET /empty HTTP/1.1\" 204 - \"-\" \"-\"",
        ),
        (
            // Refused before the head could be read: no request line.
            b"GET / HTTP/1.1\r\nHost: h\r\nNo colon\r\n\r\n",
            "\"-\" 400 16 \"-\" \"-\"",
        ),
        (
            // Refused while reading the body: the request line is known.
            b"POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "\"POST /upload HTTP/1.1\" 400 16 \"-\" \"-\"",
        ),
        (
            // A user name with a quote in it.
            b"GET /q HTTP/1.1\r\nHost: h\r\nAuthorization: Basic Ym9iIjp4\r\nConnection: close\r\n\r\n",
            "\"GET /q HTTP/1.1\" 200 5 \"-\" \"-\"",
        ),
    ];
    for (request, _) in &exchanges {
        let mut s = server.connect();
        s.write_all(request).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        assert!(
            out.starts_with(b"HTTP/1.1 "),
            "{:?}",
            String::from_utf8_lossy(&out)
        );
    }
    // `serve` waits for the writer before it returns.
    server.shutdown();
    let end = now_secs();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), exchanges.len(), "{text}");
    assert!(text.ends_with('\n'));
    let users = ["alice", "-", "-", "-", "-", "-", "-", "bob\\\""];
    for ((line, (_, rest)), user) in lines.iter().zip(&exchanges).zip(users) {
        let prefix = format!("127.0.0.1 - {user} [");
        assert!(line.starts_with(&prefix), "{line}");
        let time_end = line.find("] ").unwrap();
        let at = parse_log_time(&line[prefix.len()..time_end]);
        assert!(start <= at && at <= end, "{line}");
        assert_eq!(&line[time_end + 2..], *rest, "{line}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn off_writes_nothing() {
    assert!(!AccessLog::off().is_on());
    assert!(!AccessLog::default().is_on());
    let dir = temp_dir("access-log-off");
    let path = dir.join("access.log");
    let log_path = path.clone();
    // The last setting wins: off.
    let server = TestServer::start(
        move |b| {
            b.access_log(AccessLog::file(log_path))
                .access_log(AccessLog::off())
        },
        |_| app,
    );
    assert_eq!(body(&server.get("/", "")), "hello");
    assert_eq!(body(&server.get("/dropped", "")), "0");
    server.shutdown();
    assert!(!path.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A writer that blocks every write until released.
struct Stuck {
    released: Arc<(Mutex<bool>, Condvar)>,
    lines: Arc<AtomicUsize>,
}

impl Write for Stuck {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (lock, cvar) = &*self.released;
        let mut released = lock.lock().unwrap();
        while !*released {
            released = cvar.wait(released).unwrap();
        }
        let lines = buf.iter().filter(|&&b| b == b'\n').count();
        self.lines.fetch_add(lines, Ordering::SeqCst);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Send `n` keep-alive requests for `path` one after the other; the slowest reply's time.
fn slowest_of(server: &TestServer, n: usize, path: &str) -> Duration {
    let stream = server.connect();
    let mut slowest = Duration::ZERO;
    let mut buf = vec![0u8; 64 * 1024];
    for _ in 0..n {
        let started = Instant::now();
        (&stream)
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes())
            .unwrap();
        let mut got = Vec::new();
        while !got.ends_with(b"hello") {
            let read = match (&stream).read(&mut buf) {
                Ok(read) => read,
                // A signal to the process (the child `mkfifo` ending) may interrupt a read.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("{e} after {:?}", started.elapsed()),
            };
            assert!(read > 0, "connection closed");
            got.extend_from_slice(&buf[..read]);
        }
        slowest = slowest.max(started.elapsed());
    }
    slowest
}

#[test]
fn a_blocked_writer_does_not_slow_requests() {
    let released = Arc::new((Mutex::new(false), Condvar::new()));
    let lines = Arc::new(AtomicUsize::new(0));
    let writer = Stuck {
        released: released.clone(),
        lines: lines.clone(),
    };
    let server = TestServer::start(
        move |b| b.access_log(AccessLog::writer(writer).queue_len(4)),
        |_| app,
    );
    let started = Instant::now();
    let slowest = slowest_of(&server, 200, "/");
    assert!(
        slowest < Duration::from_millis(500),
        "slowest reply {slowest:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // The writer holds one batch (what was queued when it started to write) and the queue
    // four lines: the rest were dropped.
    let dropped: u64 = body(&server.get("/dropped", "")).parse().unwrap();
    assert!(dropped >= 150, "dropped {dropped}");
    assert_eq!(lines.load(Ordering::SeqCst), 0);
    // Released, the writer catches up with what was queued; the end of `serve` waits for it.
    {
        let (lock, cvar) = &*released;
        *lock.lock().unwrap() = true;
        cvar.notify_all();
    }
    server.shutdown();
    // Every line was written or dropped (the line of `/dropped` itself came after the count).
    let written = lines.load(Ordering::SeqCst) as u64;
    assert!(
        written + dropped == 200 || written + dropped == 201,
        "written {written}, dropped {dropped}"
    );
}

#[test]
fn a_fifo_nobody_reads_does_not_slow_requests() {
    let dir = temp_dir("access-log-fifo");
    let fifo = dir.join("access.fifo");
    match std::process::Command::new("mkfifo").arg(&fifo).status() {
        Ok(status) if status.success() => {}
        other => {
            eprintln!("skipped: mkfifo is not available ({other:?})");
            return;
        }
    }
    // Held open for reading (so the server's open does not wait for a reader) and never read.
    let holder = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    let log_path = fifo.clone();
    let server = TestServer::start(
        move |b| b.access_log(AccessLog::file(log_path).queue_len(16)),
        |_| app,
    );
    // Lines of about 4 KiB: the pipe (64 KiB) and the queue fill after a few dozen.
    let long_path = format!("/{}", "x".repeat(4000));
    let started = Instant::now();
    let slowest = slowest_of(&server, 300, &long_path);
    assert!(
        slowest < Duration::from_millis(500),
        "slowest reply {slowest:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let dropped: u64 = body(&server.get("/dropped", "")).parse().unwrap();
    assert!(dropped >= 200, "dropped {dropped}");
    // Stopping gives the stuck writer one second, then returns all the same.
    let stopping = Instant::now();
    server.shutdown();
    assert!(
        stopping.elapsed() < Duration::from_secs(4),
        "{:?}",
        stopping.elapsed()
    );
    // The writer thread gets EPIPE once the last reader is gone, and ends.
    drop(holder);
    std::fs::remove_dir_all(&dir).unwrap();
}
