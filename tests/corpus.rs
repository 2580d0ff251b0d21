//! The golden corpus of HTTP/1.1 wire transcripts in `tests/corpus/`, replayed over real TCP.
//!
//! Each case `NAME` is `NAME.request` (the exact bytes sent, in one write), `NAME.response` (the
//! exact bytes expected back, Date values written `<DATE>`, then a last line `-- close` or
//! `-- open`) and optionally `NAME.config` (`key=value` lines overriding [`Config`]). The files
//! are written by `tests/corpus/generate.py`; `tests/corpus/INDEX.md` lists the cases and the
//! rule each one checks.
//!
//! A case is run on a fresh connection to a server on 127.0.0.1 with that case's config. The
//! client reads until the server closes, or until nothing has arrived for [`IDLE`]; in the
//! second case it sends `GET /probe` on the same connection, and the connection counts as open
//! only if the probe gets its exact reply. Every mismatching case is reported in one failure,
//! with a line diff of expected and actual bytes.

mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use iomux::Config;
use support::{echo, echo_body, Server};

/// Silence after which a connection the server did not close is taken as kept open.
const IDLE: Duration = Duration::from_millis(500);
/// Longest a case may read before it is cut (a server that keeps sending).
const CASE_LIMIT: Duration = Duration::from_secs(5);
/// Longest the probe may wait for its reply.
const PROBE_LIMIT: Duration = Duration::from_secs(2);
/// Cases run at the same time (each on its own connection).
const WORKERS: usize = 16;

const PROBE: &[u8] = b"GET /probe HTTP/1.1\r\nHost: probe\r\n\r\n";

/// The exact reply to [`PROBE`] (Date masked).
fn probe_reply() -> Vec<u8> {
    let body = echo_body("GET", "/probe", "HTTP/1.1", b"");
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nDate: <DATE>\r\ncontent-type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// File stems in the corpus folder with this extension, sorted.
fn stems(ext: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(corpus_dir())
        .expect("tests/corpus exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// The config of a case: `key=value` lines (blank lines and `#` comments ignored).
fn parse_config(text: &str) -> Result<Config, String> {
    let mut config = Config::default();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("config line without `=`: {line:?}"))?;
        let (key, value) = (key.trim(), value.trim());
        let n: u64 = value
            .parse()
            .map_err(|e| format!("config {key}: {value:?} is not a number: {e}"))?;
        let ms = Duration::from_millis(n);
        match key {
            "max_head_size" => config.max_head_size = n as usize,
            "max_headers" => config.max_headers = n as usize,
            "max_body_size" => config.max_body_size = n as usize,
            "read_buffer_size" => config.read_buffer_size = n as usize,
            "max_requests_per_connection" => config.max_requests_per_connection = n as usize,
            "head_timeout_ms" => config.head_timeout = ms,
            "body_timeout_ms" => config.body_timeout = ms,
            "keep_alive_timeout_ms" => config.keep_alive_timeout = ms,
            "lingering_time_ms" => config.lingering_time = ms,
            _ => return Err(format!("unknown config key {key:?}")),
        }
    }
    Ok(config)
}

/// Replace every Date field value that is an HTTP-date close to now with `<DATE>`; any other
/// value is left as it is, so that the comparison shows it.
fn mask_dates(wire: &[u8]) -> Vec<u8> {
    const FIELD: &[u8] = b"\r\nDate: ";
    let mut out = Vec::with_capacity(wire.len());
    let mut i = 0;
    while i < wire.len() {
        if wire[i..].starts_with(FIELD) {
            let start = i + FIELD.len();
            if let Some(len) = wire[start..].windows(2).position(|w| w == b"\r\n") {
                let value = &wire[start..start + len];
                let recent = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| httpdate::parse_http_date(v).ok())
                    .is_some_and(|when| {
                        let now = SystemTime::now();
                        let skew = now.duration_since(when).unwrap_or_else(|e| e.duration());
                        skew < Duration::from_secs(60)
                    });
                if recent && value.len() == 29 {
                    out.extend_from_slice(FIELD);
                    out.extend_from_slice(b"<DATE>");
                    i = start + len;
                    continue;
                }
            }
        }
        out.push(wire[i]);
        i += 1;
    }
    out
}

/// How the connection ended, as the last line of a transcript.
fn end_line(end: &str) -> Vec<u8> {
    format!("-- {end}\n").into_bytes()
}

/// Send `request` in one write and return the transcript: the masked reply bytes and the line
/// telling whether the server closed the connection or kept it open.
fn run_case(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let started = Instant::now();
    let mut stream = match TcpStream::connect(addr) {
        Ok(s) => s,
        Err(e) => return end_line(&format!("connect failed: {e}")),
    };
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(IDLE)).unwrap();
    if let Err(e) = stream.write_all(request) {
        return end_line(&format!("write failed: {e}"));
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let end = loop {
        if started.elapsed() > CASE_LIMIT {
            break format!("still sending after {CASE_LIMIT:?}");
        }
        match stream.read(&mut buf) {
            Ok(0) => break "close".to_string(),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break probe(&mut stream);
            }
            Err(e) => break format!("close (reset: {e})"),
        }
    };
    let mut transcript = mask_dates(&got);
    transcript.extend_from_slice(&end_line(&end));
    transcript
}

/// The connection is idle: is it open and still serving requests? `open` only if [`PROBE`]
/// gets its exact reply.
fn probe(stream: &mut TcpStream) -> String {
    if let Err(e) = stream.write_all(PROBE) {
        return format!("close (probe not sent: {e})");
    }
    let want = probe_reply();
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < PROBE_LIMIT {
        match stream.read(&mut buf) {
            Ok(0) if got.is_empty() => return "close".to_string(),
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if mask_dates(&got).len() >= want.len() {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if got.is_empty() => return format!("close (reset on probe: {e})"),
            Err(_) => break,
        }
    }
    let got = mask_dates(&got);
    if got == want {
        "open".to_string()
    } else {
        format!(
            "open? the probe GET /probe got {:?} instead of its reply",
            String::from_utf8_lossy(&got)
        )
    }
}

/// One line of a transcript for display: printable ASCII as it is, CR as `\r`, LF as `\n`
/// (ending the line), anything else as `\xNN`.
fn show(line: &[u8]) -> String {
    let mut out = String::new();
    for &b in line {
        match b {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out
}

fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    bytes.split_inclusive(|&b| b == b'\n').collect()
}

/// A line diff (longest common subsequence): `-` expected only, `+` actual only.
fn diff(expected: &[u8], actual: &[u8]) -> String {
    let (a, b) = (lines(expected), lines(actual));
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            let _ = writeln!(out, "      {}", show(a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            let _ = writeln!(out, "    - {}", show(a[i]));
            i += 1;
        } else {
            let _ = writeln!(out, "    + {}", show(b[j]));
            j += 1;
        }
    }
    out
}

/// The request for a failure message, long runs cut.
fn show_request(raw: &[u8]) -> String {
    let text = show(raw);
    if text.len() <= 300 {
        return text;
    }
    let cut = |s: &str, n: usize, from_end: bool| -> String {
        let chars: Vec<char> = s.chars().collect();
        if from_end {
            chars[chars.len() - n..].iter().collect()
        } else {
            chars[..n].iter().collect()
        }
    };
    format!(
        "{} ...({} bytes)... {}",
        cut(&text, 160, false),
        raw.len(),
        cut(&text, 80, true)
    )
}

struct Case {
    name: String,
    request: Vec<u8>,
    expected: Vec<u8>,
    config: String,
}

/// Check the shape of a `.response` file: the reply bytes, then `-- close` or `-- open`.
fn check_response_file(expected: &[u8]) -> Result<(), String> {
    let body = expected
        .strip_suffix(b"-- close\n")
        .or_else(|| expected.strip_suffix(b"-- open\n"))
        .ok_or("the .response file does not end with a line `-- close` or `-- open`")?;
    if !body.is_empty() && !body.ends_with(b"\n") {
        return Err("the `-- close`/`-- open` marker does not start a line".into());
    }
    Ok(())
}

#[test]
fn corpus_replies_match_byte_for_byte() {
    let dir = corpus_dir();
    let cases: Vec<Case> = stems("request")
        .into_iter()
        .map(|name| {
            let read = |ext: &str| std::fs::read(dir.join(format!("{name}.{ext}")));
            Case {
                request: read("request").unwrap(),
                expected: read("response").unwrap_or_default(),
                config: read("config")
                    .map(|c| String::from_utf8_lossy(&c).into_owned())
                    .unwrap_or_default(),
                name,
            }
        })
        .collect();
    assert!(!cases.is_empty(), "no .request files in {}", dir.display());

    // One server per distinct config, shared by its cases.
    let mut failures: BTreeMap<String, String> = BTreeMap::new();
    let mut servers: BTreeMap<String, Server> = BTreeMap::new();
    for case in &cases {
        if servers.contains_key(&case.config) {
            continue;
        }
        match parse_config(&case.config) {
            Ok(config) => {
                let server = Server::start_with("127.0.0.1:0", config, |_| echo);
                servers.insert(case.config.clone(), server);
            }
            Err(e) => {
                failures.insert(
                    case.name.clone(),
                    format!("bad {}.config: {e}\n", case.name),
                );
            }
        }
    }

    let addrs: BTreeMap<&str, SocketAddr> =
        servers.iter().map(|(k, s)| (k.as_str(), s.addr)).collect();
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(case) = cases.get(i) else { break };
                let Some(&addr) = addrs.get(case.config.as_str()) else {
                    continue;
                };
                let actual = run_case(addr, &case.request);
                results.lock().unwrap().push((i, actual));
            });
        }
    });
    let elapsed = started.elapsed();

    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(i, _)| *i);
    let mut passed = 0;
    for (i, actual) in results {
        let case = &cases[i];
        if let Err(e) = check_response_file(&case.expected) {
            failures.insert(case.name.clone(), format!("{}.response: {e}\n", case.name));
        } else if actual == case.expected {
            passed += 1;
        } else {
            failures.insert(
                case.name.clone(),
                format!(
                    "request  {}\n  diff (- expected, + actual):\n{}",
                    show_request(&case.request),
                    diff(&case.expected, &actual)
                ),
            );
        }
    }
    eprintln!(
        "corpus: {passed} of {} cases match ({elapsed:.2?})",
        cases.len()
    );
    if !failures.is_empty() {
        let mut msg = format!(
            "{} of {} corpus case(s) differ from tests/corpus/*.response: {}\n\n",
            failures.len(),
            cases.len(),
            failures.keys().cloned().collect::<Vec<_>>().join(", ")
        );
        for (name, detail) in &failures {
            let _ = writeln!(msg, "=== {name}\n  {detail}");
        }
        panic!("{msg}");
    }
}

#[test]
fn every_request_has_a_response_and_the_reverse() {
    let requests = stems("request");
    let responses = stems("response");
    let configs = stems("config");
    let mut problems = Vec::new();
    for name in &requests {
        if !responses.contains(name) {
            problems.push(format!("{name}.request has no {name}.response"));
        }
    }
    for name in &responses {
        if !requests.contains(name) {
            problems.push(format!("{name}.response has no {name}.request"));
        }
        let expected = std::fs::read(corpus_dir().join(format!("{name}.response"))).unwrap();
        if let Err(e) = check_response_file(&expected) {
            problems.push(format!("{name}.response: {e}"));
        }
    }
    for name in &configs {
        if !requests.contains(name) {
            problems.push(format!("{name}.config has no {name}.request"));
        }
        let text = std::fs::read_to_string(corpus_dir().join(format!("{name}.config"))).unwrap();
        if let Err(e) = parse_config(&text) {
            problems.push(format!("{name}.config: {e}"));
        }
    }
    assert!(!requests.is_empty(), "the corpus is empty");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The harness itself: masking, markers and the diff must be able to tell cases apart.
#[test]
fn harness_masks_dates_and_diffs() {
    let date = httpdate::fmt_http_date(SystemTime::now());
    let wire = format!("HTTP/1.1 200 OK\r\nDate: {date}\r\nX: y\r\n\r\n");
    assert_eq!(
        mask_dates(wire.as_bytes()),
        b"HTTP/1.1 200 OK\r\nDate: <DATE>\r\nX: y\r\n\r\n"
    );
    // An old or malformed date is not masked: the comparison shows it.
    let old = b"HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n";
    assert_eq!(mask_dates(old), old);
    assert!(check_response_file(b"HTTP/1.1 200 OK\r\n\r\nx\n-- open\n").is_ok());
    assert!(check_response_file(b"HTTP/1.1 200 OK\r\n\r\nx-- open\n").is_err());
    assert!(check_response_file(b"HTTP/1.1 200 OK\r\n\r\nx\n").is_err());
    let d = diff(b"a\r\nb\n-- open\n", b"a\r\nc\x00\n-- close\n");
    assert_eq!(
        d,
        "      a\\r\\n\n    - b\\n\n    - -- open\\n\n    + c\\x00\\n\n    + -- close\\n\n"
    );
    assert_eq!(
        parse_config("max_head_size=256\n# note\nbody_timeout_ms = 100\n")
            .map(|c| (c.max_head_size, c.body_timeout)),
        Ok((256, Duration::from_millis(100)))
    );
    assert!(parse_config("nonsense=1").is_err());
}
