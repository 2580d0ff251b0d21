//! Shared by `tests/soak.rs`: the `iomux-pubsub` binary started as a child process (so that its
//! descriptors and memory are measured alone), its figures from `/proc`, a keep-alive control
//! connection for `GET /status`, and a lock that keeps the soak tests from running together.
#![allow(dead_code)]

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Read timeout of the control connection.
const CTL_TIMEOUT: Duration = Duration::from_secs(10);

/// The soak tests measure a server's CPU, descriptors and memory, and open thousands of
/// sockets: they must not run together. cargo test runs tests as threads of one process,
/// nextest as separate processes, so the lock is a file lock (`flock`), held until dropped.
pub struct SoakLock(File);

pub fn soak_lock() -> SoakLock {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("iomux-soak.lock");
    let file = File::create(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor we own; it blocks until the lock is ours.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(
        rc,
        0,
        "flock {}: {}",
        path.display(),
        io::Error::last_os_error()
    );
    SoakLock(file)
}

/// `target/<profile>/iomux-pubsub`, found from this test binary (`target/<profile>/deps/`).
/// Fails the test, saying how to build it, when it is missing or older than the sources.
pub fn pubsub_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test binary");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary is in target/<profile>/deps/");
    let profile = profile_dir
        .file_name()
        .map_or("debug".into(), |p| p.to_string_lossy().into_owned());
    let flag = if profile == "release" {
        " --release"
    } else {
        ""
    };
    let path = profile_dir.join(format!("iomux-pubsub{}", std::env::consts::EXE_SUFFIX));
    let build = format!("cargo build{flag} -p iomux-actors --bin iomux-pubsub");
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "the iomux-pubsub binary is not at {}: build it with `{build}` \
                 (a plain `cargo test` of the workspace builds it too)",
                path.display()
            )
        });
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let newest = [root.join("src"), root.join("actors/src")]
        .iter()
        .filter_map(|dir| newest_source(dir))
        .max_by_key(|(time, _)| *time);
    if let Some((time, file)) = newest {
        assert!(
            time <= built,
            "the iomux-pubsub binary at {} is older than {}: rebuild it with `{build}`",
            path.display(),
            file.display()
        );
    }
    path
}

/// The most recently modified file under `dir`.
fn newest_source(dir: &Path) -> Option<(SystemTime, PathBuf)> {
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let candidate = if path.is_dir() {
            newest_source(&path)
        } else {
            entry.metadata().ok()?.modified().ok().map(|t| (t, path))
        };
        if let Some(c) = candidate {
            if newest.as_ref().is_none_or(|n| c.0 > n.0) {
                newest = Some(c);
            }
        }
    }
    newest
}

/// Log lines kept of a child (a spinning server may write millions).
const LOG_KEPT: usize = 2_000;

/// What a child wrote to stderr: the first [`LOG_KEPT`] lines, and counts of all.
#[derive(Default)]
struct Log {
    kept: Vec<String>,
    lines: usize,
    accept_failures: usize,
}

/// An `iomux-pubsub` child process on 127.0.0.1 (port chosen by the kernel); killed by its
/// process id and reaped when dropped. Its stderr (the log) is collected.
pub struct PubsubChild {
    child: Child,
    pub addr: SocketAddr,
    _stdout: BufReader<ChildStdout>,
    log: Arc<Mutex<Log>>,
}

impl PubsubChild {
    /// Start `iomux-pubsub --listen 127.0.0.1:0 ARGS`, with `RLIMIT_NOFILE` set to `nofile`
    /// (soft and hard) when given.
    pub fn start(args: &[&str], nofile: Option<u64>) -> PubsubChild {
        let mut command = Command::new(pubsub_binary());
        command
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec the closure only makes async-signal-safe system calls
        // (prctl, setrlimit) on plain values, and allocates nothing.
        unsafe {
            command.pre_exec(move || {
                // The server dies with the test, however the test dies.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                if let Some(n) = nofile {
                    let lim = libc::rlimit {
                        rlim_cur: n as libc::rlim_t,
                        rlim_max: n as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = command.spawn().expect("start iomux-pubsub");
        let log = Arc::new(Mutex::new(Log::default()));
        let stderr = child.stderr.take().expect("piped stderr");
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                    log.lines += 1;
                    if line.contains("accept failed") {
                        log.accept_failures += 1;
                    }
                    if log.kept.len() < LOG_KEPT {
                        log.kept.push(line);
                    }
                }
            });
        }
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        let read = stdout.read_line(&mut line);
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .and_then(|a| a.parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "iomux-pubsub announced no address ({read:?}, {line:?}); its log: {:?}",
                log.lock().unwrap_or_else(|e| e.into_inner()).kept
            );
        };
        PubsubChild {
            child,
            addr,
            _stdout: stdout,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log lines so far (the first [`LOG_KEPT`]).
    pub fn log(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .kept
            .clone()
    }

    /// Log lines so far, and those of them saying `accept failed`.
    pub fn log_counts(&self) -> (usize, usize) {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        (log.lines, log.accept_failures)
    }

    /// Send SIGTERM (a graceful stop).
    pub fn terminate(&self) {
        // SAFETY: kill takes plain integers; the pid is our own child's, not yet reaped.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill: {}", io::Error::last_os_error());
    }

    /// Wait up to `timeout` for the child to exit; its status, if it did.
    pub fn exited_within(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Fails the test if the child has exited.
    pub fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("iomux-pubsub exited: {status}; its log: {:?}", self.log());
        }
    }
}

impl Drop for PubsubChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Descriptors and memory of a process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    pub fds: usize,
    pub vm_rss_kb: u64,
    pub pss_kb: u64,
}

fn field_kb(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
        .count()
}

/// The descriptor numbers open in process `pid`.
pub fn fd_numbers(pid: u32) -> Vec<usize> {
    let mut fds: Vec<usize> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    fds
}

pub fn figures(pid: u32) -> Figures {
    let read = |file: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/{file}"))
            .unwrap_or_else(|e| panic!("/proc/{pid}/{file}: {e}"))
    };
    let status = read("status");
    let rollup = read("smaps_rollup");
    Figures {
        fds: fd_count(pid),
        vm_rss_kb: field_kb(&status, "VmRSS").expect("VmRSS"),
        pss_kb: field_kb(&rollup, "Pss").expect("Pss"),
    }
}

/// CPU time (user + system) of process `pid` so far.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e}"));
    // The command name, in parentheses, may hold spaces: count fields after its end.
    let rest = &stat[stat.rfind(')').expect("comm field") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state (field 3) ... utime is field 14, stime field 15 (1-based).
    let utime: u64 = fields[11].parse().expect("utime");
    let stime: u64 = fields[12].parse().expect("stime");
    // SAFETY: sysconf takes a plain integer.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_micros((utime + stime) * 1_000_000 / hz)
}

/// What `GET /status` of iomux-pubsub reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Status {
    pub connections: u64,
    pub waiting_requests: u64,
    pub long_poll: u64,
    pub eventsource: u64,
    pub channels: u64,
    pub stored_messages: u64,
}

fn status_field(body: &str, name: &str) -> u64 {
    body.lines()
        .find_map(|line| {
            let (n, v) = line.split_once(':')?;
            (n.trim() == name).then(|| v.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("no {name:?} in /status: {body:?}"))
}

pub fn parse_status(body: &str) -> Status {
    Status {
        connections: status_field(body, "connections"),
        waiting_requests: status_field(body, "waiting requests"),
        long_poll: status_field(body, "long-poll subscribers"),
        eventsource: status_field(body, "eventsource subscribers"),
        channels: status_field(body, "channels"),
        stored_messages: status_field(body, "stored messages"),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One response with a `Content-Length` body: status and body.
pub fn read_response(s: &mut TcpStream) -> io::Result<(u16, String)> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let status: u16 = head
                .get(9..12)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| invalid(format!("bad status line {head:?}")))?;
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .ok_or_else(|| invalid(format!("no Content-Length in {head:?}")))?;
            if buf.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                return Ok((status, body));
            }
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The control connection: `GET /status` on one keep-alive connection, reopened when the
/// server has closed it (keep-alive timeout).
pub struct Ctl {
    addr: SocketAddr,
    stream: Option<TcpStream>,
}

impl Ctl {
    pub fn new(addr: SocketAddr) -> Ctl {
        Ctl { addr, stream: None }
    }

    fn exchange(&mut self, request: &[u8]) -> io::Result<(u16, String)> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(CTL_TIMEOUT))?;
            self.stream = Some(s);
        }
        let s = self.stream.as_mut().expect("connected");
        let result = s.write_all(request).and_then(|()| read_response(s));
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    pub fn get(&mut self, path: &str) -> (u16, String) {
        let request = format!("GET {path} HTTP/1.1\r\nHost: soak-ctl\r\n\r\n");
        // One retry: the server may have closed the idle connection (keep-alive timeout).
        self.exchange(request.as_bytes())
            .or_else(|_| self.exchange(request.as_bytes()))
            .unwrap_or_else(|e| panic!("GET {path} on the control connection: {e}"))
    }

    pub fn status(&mut self) -> Status {
        let (code, body) = self.get("/status");
        assert_eq!(code, 200, "GET /status: {body}");
        parse_status(&body)
    }

    /// Poll `/status` until `done`; fails the test after `timeout`.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Status) -> bool,
    ) -> Status {
        let deadline = Instant::now() + timeout;
        loop {
            let st = self.status();
            if done(&st) {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; the server reports {st:?}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}
