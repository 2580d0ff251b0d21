//! The examples, run as their users would run them: each compiled example binary is started
//! with `--listen 127.0.0.1:0`, the port is read from its `listening on http://HOST:PORT` line,
//! and the requests its header suggests are sent as literal bytes over TCP.
//!
//! The binaries are looked for next to this test's own: `target/<profile>/examples/`. Plain
//! `cargo test` builds them; `cargo test --test examples` alone does not, so run
//! `cargo build --examples` first. A missing binary fails the test.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::{Reader, Response};

/// Longest any single read from an example may wait.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest an example may take to print its `listening on` line, or to exit after `--help`.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Every example, by name.
const EXAMPLES: [&str; 7] = [
    "hello",
    "deferred",
    "worker_thread",
    "own_executor",
    "stream",
    "testsite",
    "workers",
];

/// Where cargo put the example `name`: `target/<profile>/examples/`, found from this test
/// binary, which is in `target/<profile>/deps/`.
fn example_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test binary");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary is in target/<profile>/deps/");
    profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// A command for the example `name`; fails the test when the binary is not there.
fn example_command(name: &str) -> Command {
    let path = example_path(name);
    assert!(
        path.is_file(),
        "example binary {} not found: build the examples first with `cargo build --examples` \
         (plain `cargo test` builds them too)",
        path.display()
    );
    let mut command = Command::new(path);
    command.stdin(Stdio::null());
    command
}

/// A started process, killed (by its process id) and reaped when dropped, so that a failing
/// assertion does not leave it running.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Run an example with `args` until it exits (killed after [`START_TIMEOUT`]); its status,
/// stdout and stderr.
fn run_to_exit(name: &str, args: &[&str]) -> (ExitStatus, String, String) {
    let child = example_command(name)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start example {name}: {e}"));
    let mut guard = Guard(child);
    let stdout = read_all_in_background(guard.0.stdout.take().unwrap());
    let stderr = read_all_in_background(guard.0.stderr.take().unwrap());
    let deadline = Instant::now() + START_TIMEOUT;
    let status = loop {
        if let Some(status) = guard.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "{name} {args:?} did not exit within {START_TIMEOUT:?}"
        );
        thread::sleep(Duration::from_millis(10));
    };
    let stdout = stdout.join().unwrap();
    let stderr = stderr.join().unwrap();
    (status, stdout, stderr)
}

fn read_all_in_background(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// An example serving on 127.0.0.1 with a port of its choice; killed when dropped.
struct Example {
    name: &'static str,
    addr: SocketAddr,
    /// Lines the example wrote on stderr, as they come.
    stderr_lines: mpsc::Receiver<String>,
    /// Every line it wrote on stderr so far.
    stderr_seen: Arc<Mutex<Vec<String>>>,
    // Last: dropped (killing the process) after the rest.
    _process: Guard,
}

impl Example {
    /// Start the example `name` with `--listen 127.0.0.1:0` and wait for its `listening on` line.
    fn start(name: &'static str) -> Example {
        Example::start_with(name, &[])
    }

    /// As [`Example::start`], with more arguments after `--listen 127.0.0.1:0`.
    fn start_with(name: &'static str, args: &[&str]) -> Example {
        let child = example_command(name)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start example {name}: {e}"));
        let mut process = Guard(child);

        // Both pipes are read to the end by threads of their own, so the example never blocks
        // on a full pipe; the threads end when the process is killed.
        let (stdout_tx, stdout_lines) = mpsc::channel();
        let stdout = process.0.stdout.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = stdout_tx.send(line);
            }
        });
        let (stderr_tx, stderr_lines) = mpsc::channel();
        let stderr_seen = Arc::new(Mutex::new(Vec::new()));
        let seen = stderr_seen.clone();
        let stderr = process.0.stderr.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                seen.lock().unwrap().push(line.clone());
                let _ = stderr_tx.send(line);
            }
        });

        let first = stdout_lines.recv_timeout(START_TIMEOUT);
        let line = match first {
            Ok(line) => line,
            Err(e) => {
                thread::sleep(Duration::from_millis(100));
                panic!(
                    "{name} printed no `listening on` line ({e}); exit status {:?}; stderr:\n{}",
                    process.0.try_wait(),
                    stderr_seen.lock().unwrap().join("\n")
                );
            }
        };
        let addr: SocketAddr = line
            .strip_prefix("listening on http://")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{name}: unexpected first line {line:?}"));
        assert_eq!(addr.ip().to_string(), "127.0.0.1", "{name}: {line}");
        assert_ne!(addr.port(), 0, "{name} must print the bound port: {line}");
        Example {
            name,
            addr,
            stderr_lines,
            stderr_seen,
            _process: process,
        }
    }

    /// A new connection to the example, with a read timeout.
    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr)
            .unwrap_or_else(|e| panic!("{}: connect to {}: {e}", self.name, self.addr));
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
    }

    /// Send `GET target` on a connection of its own.
    fn send_get(&self, target: &str) -> TcpStream {
        let mut stream = self.connect();
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        stream.write_all(request.as_bytes()).unwrap();
        stream
    }

    /// `GET target`: the whole response.
    fn get(&self, target: &str) -> Response {
        self.get_timed(target).0
    }

    /// `GET target`: the whole response, and the time it took.
    fn get_timed(&self, target: &str) -> (Response, Duration) {
        let started = Instant::now();
        let stream = self.send_get(target);
        let response = Reader::new(stream)
            .response(false)
            .unwrap_or_else(|e| panic!("{}: GET {target}: {e}", self.name));
        (response, started.elapsed())
    }

    /// Wait for a line on stderr that contains `needle`; fail after `timeout`.
    fn expect_stderr(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr_lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "{}: no stderr line with {needle:?} within {timeout:?}; stderr:\n{}",
                    self.name,
                    self.stderr_seen.lock().unwrap().join("\n")
                ),
            }
        }
    }
}

/// Check a complete plain-text reply.
#[track_caller]
fn assert_text(response: &Response, status: u16, body: &str) {
    assert_eq!(response.status, status, "{response:?}");
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; charset=utf-8"),
        "{response:?}"
    );
    assert_eq!(response.text(), body);
}

#[track_caller]
fn assert_not_found(example: &Example) {
    assert_text(&example.get("/elsewhere"), 404, "404 Not Found\n");
}

// --- Every example: the command line. ---

#[test]
fn help_exits_0_and_unknown_flags_exit_2() {
    for name in EXAMPLES {
        let (status, stdout, _) = run_to_exit(name, &["--help"]);
        assert_eq!(status.code(), Some(0), "{name} --help");
        assert!(
            stdout.starts_with(&format!("usage: {name} [--listen HOST:PORT]")),
            "{name} --help printed {stdout:?}"
        );
        assert!(stdout.contains("--listen HOST:PORT"), "{stdout}");

        let (status, stdout, stderr) = run_to_exit(name, &["--bogus"]);
        assert_eq!(status.code(), Some(2), "{name} --bogus");
        assert!(stdout.is_empty(), "{name} --bogus printed {stdout:?}");
        assert!(
            stderr.contains("unknown argument \"--bogus\""),
            "{name} --bogus: {stderr}"
        );

        let (status, _, stderr) = run_to_exit(name, &["--listen"]);
        assert_eq!(status.code(), Some(2), "{name} --listen (no value)");
        assert!(stderr.contains("--listen needs HOST:PORT"), "{stderr}");
    }
}

// --- hello ---

#[test]
fn hello() {
    let hello = Example::start("hello");
    let response = hello.get("/hello");
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.header("content-type"), Some("text/plain"));
    assert_eq!(response.text(), "Hello, world!");
    assert_not_found(&hello);
}

// --- deferred ---

#[test]
fn deferred_replies_after_the_timer() {
    let deferred = Example::start("deferred");

    let (response, took) = deferred.get_timed("/wait?ms=500");
    assert_text(&response, 200, "waited 500 ms\n");
    assert!(took >= Duration::from_millis(500), "replied after {took:?}");
    assert!(took < Duration::from_secs(5), "replied after {took:?}");

    let (response, took) = deferred.get_timed("/wait");
    assert_text(&response, 200, "waited 1000 ms\n");
    assert!(
        took >= Duration::from_millis(1000),
        "replied after {took:?}"
    );

    let (response, took) = deferred.get_timed("/wait?ms=soon");
    assert_text(&response, 400, "ms must be a whole number, not \"soon\"\n");
    assert!(took < Duration::from_millis(500), "400 after {took:?}");

    assert_not_found(&deferred);
}

#[test]
fn deferred_waiters_wait_together_and_answer_in_timer_order() {
    let deferred = Example::start("deferred");
    let started = Instant::now();
    // All three are sent before any is answered: they wait at the same time.
    let streams: Vec<(u64, TcpStream)> = [900, 300, 600]
        .into_iter()
        .map(|ms| (ms, deferred.send_get(&format!("/wait?ms={ms}"))))
        .collect();
    let readers: Vec<_> = streams
        .into_iter()
        .map(|(ms, stream)| {
            thread::spawn(move || {
                let response = Reader::new(stream).response(false).unwrap();
                (ms, response, started.elapsed())
            })
        })
        .collect();
    let mut done: Vec<(u64, Response, Duration)> =
        readers.into_iter().map(|r| r.join().unwrap()).collect();
    done.sort_by_key(|(_, _, at)| *at);
    let order: Vec<u64> = done.iter().map(|(ms, _, _)| *ms).collect();
    assert_eq!(order, [300, 600, 900], "answered in this order: {done:?}");
    for (ms, response, at) in &done {
        assert_text(response, 200, &format!("waited {ms} ms\n"));
        assert!(
            *at >= Duration::from_millis(*ms),
            "{ms} ms answered at {at:?}"
        );
    }
    // One after the other would take 1.8 s.
    let last = done[2].2;
    assert!(
        last < Duration::from_millis(1700),
        "last answer at {last:?}"
    );
}

#[test]
fn deferred_drops_waiters_whose_client_hung_up() {
    let deferred = Example::start("deferred");
    let stream = deferred.send_get("/wait?ms=5000");
    let client = stream.local_addr().unwrap();
    thread::sleep(Duration::from_millis(200));
    drop(stream);
    let line = deferred.expect_stderr("hung up", Duration::from_secs(3));
    assert!(
        line.starts_with(&format!("deferred: client {client} hung up after ")),
        "{line}"
    );
    assert!(line.ends_with(" ms of 5000; waiter dropped"), "{line}");
    // The actor goes on serving.
    assert_text(&deferred.get("/wait?ms=10"), 200, "waited 10 ms\n");
}

// --- worker_thread ---

#[test]
fn worker_thread_replies_from_the_worker() {
    let worker = Example::start("worker_thread");
    for target in ["/fib?n=30", "/fib"] {
        let response = worker.get(target);
        assert_eq!(response.status, 200, "{response:?}");
        let text = response.text();
        assert!(
            text.starts_with("fib(30) = 832040\ncomputed on thread fib-worker in "),
            "GET {target}: {text:?}"
        );
        assert!(text.ends_with(" ms\n"), "{text:?}");
    }
    let text = worker.get("/fib?n=99").text();
    assert!(
        text.starts_with("fib(40) = 102334155\n"),
        "capped: {text:?}"
    );

    assert_text(
        &worker.get("/fib?n=x"),
        400,
        "n must be a whole number, not \"x\"\n",
    );
    assert_not_found(&worker);
}

#[test]
fn worker_thread_reply_blocking() {
    let worker = Example::start("worker_thread");
    let response = worker.get("/primes?below=1000000");
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let text = response.text();
    assert!(
        text.starts_with("78498 primes below 1000000\ncounted on thread blocking-"),
        "{text:?}"
    );
}

#[test]
fn worker_thread_skips_jobs_whose_client_hung_up() {
    let worker = Example::start("worker_thread");
    // Keep the worker busy (about a second), queue a job behind it, and hang up on that one.
    let slow = worker.send_get("/fib?n=40");
    thread::sleep(Duration::from_millis(100));
    let quick = worker.send_get("/fib?n=25");
    thread::sleep(Duration::from_millis(100));
    drop(quick);
    let line = worker.expect_stderr("fib(25)", Duration::from_secs(20));
    assert_eq!(line, "fib-worker: client of fib(25) hung up; job skipped");
    let text = Reader::new(slow).response(false).unwrap().text();
    assert!(text.starts_with("fib(40) = 102334155\n"), "{text:?}");
}

// --- own_executor ---

/// The seconds and requests counted by `own_executor`'s `/uptime`.
fn uptime(example: &Example) -> (u64, u64) {
    let response = example.get("/uptime");
    assert_eq!(response.status, 200, "{response:?}");
    let text = response.text();
    let number = |line: Option<&str>, prefix: &str, suffix: &str| -> u64 {
        line.and_then(|l| l.strip_prefix(prefix))
            .and_then(|l| l.strip_suffix(suffix))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected /uptime body {text:?}"))
    };
    let mut lines = text.lines();
    let seconds = number(lines.next(), "uptime: ", " s");
    let requests = number(lines.next(), "requests: ", "");
    assert_eq!(lines.next(), None, "{text:?}");
    (seconds, requests)
}

#[test]
fn own_executor_runs_a_ticker_beside_the_server() {
    let example = Example::start("own_executor");
    let (first, requests) = uptime(&example);
    assert!(first <= 1, "uptime {first} s just after the start");
    assert_eq!(requests, 1);
    assert_not_found(&example);
    thread::sleep(Duration::from_millis(2200));
    let (later, requests) = uptime(&example);
    assert!(
        later > first,
        "the ticker did not tick: {first} s, then {later} s"
    );
    assert!(later <= first + 4, "{first} s, then {later} s");
    assert_eq!(requests, 3, "requests of every path are counted");
}

// --- stream ---

/// Read a chunked reply chunk by chunk; the head, the chunks, and when the head and the end
/// arrived.
fn read_stream(stream: TcpStream) -> (Response, Vec<String>, Duration, Duration) {
    let started = Instant::now();
    let mut reader = Reader::new(stream);
    let head = reader.head().unwrap();
    let head_at = started.elapsed();
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(
        head.header("transfer-encoding"),
        Some("chunked"),
        "{head:?}"
    );
    let mut chunks = Vec::new();
    while let Some(chunk) = reader.chunk().unwrap() {
        chunks.push(String::from_utf8(chunk).unwrap());
    }
    (head, chunks, head_at, started.elapsed())
}

#[test]
fn stream_sends_a_line_every_250_ms() {
    let example = Example::start("stream");
    let (head, chunks, head_at, end_at) = read_stream(example.send_get("/stream?n=4"));
    assert_eq!(
        head.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        chunks,
        [
            "line 1 of 4\n",
            "line 2 of 4\n",
            "line 3 of 4\n",
            "line 4 of 4\n"
        ]
    );
    // Four ticks 250 ms apart after the head, which came at once.
    assert!(
        end_at >= head_at + Duration::from_millis(700),
        "head at {head_at:?}, end at {end_at:?}"
    );
    assert!(end_at < Duration::from_secs(5), "end at {end_at:?}");

    let (_, chunks, _, end_at) = read_stream(example.send_get("/stream"));
    let expected: Vec<String> = (1..=10).map(|k| format!("line {k} of 10\n")).collect();
    assert_eq!(chunks, expected);
    assert!(end_at >= Duration::from_millis(2200), "end at {end_at:?}");

    assert_text(
        &example.get("/stream?n=x"),
        400,
        "n must be a whole number, not \"x\"\n",
    );
    assert_not_found(&example);
}

#[test]
fn stream_events() {
    let example = Example::start("stream");

    // A bounded feed ends by itself.
    let response = example.get("/events?n=3");
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    assert_eq!(response.header("cache-control"), Some("no-cache"));
    assert_eq!(
        response.text(),
        ": one event every 250 ms\n\nid: 1\ndata: tick 1\n\nid: 2\ndata: tick 2\n\n\
         id: 3\ndata: tick 3\n\n"
    );

    // An endless one goes on until the client leaves; the server notices and says so.
    let stream = example.send_get("/events");
    let client = stream.local_addr().unwrap();
    let mut reader = Reader::new(stream);
    let head = reader.head().unwrap();
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    let first = reader.chunk().unwrap().unwrap();
    assert_eq!(first, b": one event every 250 ms\n\n");
    for k in 1..=3 {
        let event = reader.chunk().unwrap().unwrap();
        assert_eq!(
            String::from_utf8(event).unwrap(),
            format!("id: {k}\ndata: tick {k}\n\n")
        );
    }
    drop(reader);
    let line = example.expect_stderr("left /events", Duration::from_secs(3));
    assert!(
        line.starts_with(&format!("stream: client {client} left /events after ")),
        "{line}"
    );
}

// --- testsite ---

/// The test site's pages answer as its header says (cookies, sessions, redirect, Basic auth,
/// uploads, ranges and the two charsets are also covered with curl by the feature tests).
#[test]
fn testsite_pages() {
    let site = Example::start("testsite");
    let info = site.get("/info?a=1&a=2&b=%C3%A9");
    assert_eq!(info.status, 200, "{info:?}");
    assert_eq!(info.header("content-type"), Some("application/json"));
    let text = info.text();
    assert!(
        text.contains("\"get\": [[\"a\", \"1\"], [\"a\", \"2\"], [\"b\", \"é\"]]"),
        "{text}"
    );
    assert!(text.contains("\"method\": \"GET\""), "{text}");

    let cookie = site.get("/cookie?name=flavour&value=oat");
    assert_eq!(cookie.header("set-cookie"), Some("flavour=oat; Path=/"));

    let redirect = site.get("/redirect");
    assert_eq!(redirect.status, 302);
    let location = redirect.header("location").unwrap_or_default();
    assert!(location.ends_with("/info?from=redirect"), "{location}");

    let auth = site.get("/auth");
    assert_eq!(auth.status, 401);
    assert_eq!(
        auth.header("www-authenticate"),
        Some("Basic realm=\"iomux test site\"")
    );

    let first = site.get("/session");
    assert_text(&first, 200, "visits: 1\n");
    let id = first
        .header("set-cookie")
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    let mut s = site.connect();
    s.write_all(
        format!("GET /session HTTP/1.1\r\nHost: t\r\nCookie: {id}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    assert_text(
        &Reader::new(&s).response(false).unwrap(),
        200,
        "visits: 2\n",
    );

    assert_text(
        &site.get("/latin1?text=%E9t%E9"),
        200,
        "ISO-8859-1 parameter: été\n",
    );
    assert_text(
        &site.get("/utf8?text=%C3%A9t%C3%A9"),
        200,
        "UTF-8 parameter: été\n",
    );
    let image = site.get("/image");
    assert_eq!(
        (image.status, image.header("content-type")),
        (200, Some("image/png"))
    );
    assert_not_found(&site);
}

// --- workers ---

#[test]
fn workers_serve_hello_from_every_worker() {
    let workers = Example::start_with("workers", &["--workers", "2"]);
    let response = workers.get("/hello");
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.header("content-type"), Some("text/plain"));
    assert_eq!(response.text(), "Hello, world!");
    assert_not_found(&workers);

    // The kernel picks a worker by a hash of the client's port: within 200 connections both
    // answer (missing one has a probability of 2^-199).
    let mut seen = [false; 2];
    for _ in 0..200 {
        let response = workers.get("/worker");
        match response.text().as_str() {
            "worker 0 of 2\n" => seen[0] = true,
            "worker 1 of 2\n" => seen[1] = true,
            other => panic!("unexpected /worker reply {other:?}"),
        }
        if seen == [true, true] {
            break;
        }
    }
    assert_eq!(seen, [true, true], "both workers answer");

    // The hit counter is shared: it counts the requests of both workers.
    let hits = workers.get("/hits").text();
    let hits: u64 = hits
        .strip_prefix("hits: ")
        .and_then(|n| n.trim_end().parse().ok())
        .unwrap_or_else(|| panic!("unexpected /hits reply {hits:?}"));
    assert!(hits >= 5, "hits: {hits}");

    let (status, _, stderr) = run_to_exit("workers", &["--workers", "many"]);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("--workers needs a number"), "{stderr}");
}
