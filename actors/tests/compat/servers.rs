//! The two servers under comparison, each stopped by its PID when its guard is dropped (also
//! when the test fails): a private nginx + nchan started by `tests/nchan/start-nchan.sh`, and
//! the `iomux-pubsub` binary.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What a machine without nchan is told.
pub const NCHAN_REQUIRED: &str =
    "nchan is required: apt-get install nginx-light libnginx-mod-nchan";

/// Where Debian (and a few others) put the nchan module.
const MODULE_PATHS: &[&str] = &[
    "/usr/lib/nginx/modules/ngx_nchan_module.so",
    "/usr/lib64/nginx/modules/ngx_nchan_module.so",
    "/usr/share/nginx/modules/ngx_nchan_module.so",
];

/// `Err` with the reason if nginx or the nchan module is missing.
pub fn nchan_installed() -> Result<(), String> {
    let in_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join("nginx").is_file()))
        .unwrap_or(false);
    if !in_path && !Path::new("/usr/sbin/nginx").is_file() {
        return Err("no `nginx` binary".into());
    }
    if !MODULE_PATHS.iter().any(|p| Path::new(p).is_file()) {
        return Err(format!("no {}", MODULE_PATHS[0]));
    }
    Ok(())
}

/// A private nginx + nchan on 127.0.0.1.
pub struct Nchan {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The nginx master's PID.
    pid: u32,
    /// Its worker processes, found at start.
    workers: Vec<u32>,
    prefix: PathBuf,
}

impl Nchan {
    /// Start nchan with this subscriber timeout and EventSource ping interval (nginx time
    /// syntax, e.g. `2s`) and message buffer length. Panics with [`NCHAN_REQUIRED`] if nchan is
    /// not installed: on CI (`CI` set) and elsewhere alike, the comparison never passes silently.
    pub fn start(sub_timeout: &str, ping: &str, buffer_length: usize) -> Nchan {
        if let Err(missing) = nchan_installed() {
            if std::env::var_os("CI").is_some() {
                panic!("{NCHAN_REQUIRED} ({missing}; CI is set)");
            }
            panic!(
                "{NCHAN_REQUIRED} ({missing}); script/test installs them on a fresh machine. \
                 This test compares iomux-pubsub with nchan and cannot pass without it."
            );
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/nchan/start-nchan.sh");
        let mut failures = Vec::new();
        // A free port can be taken by someone else before nginx binds it: try a few.
        for attempt in 0..3 {
            let port = free_port();
            let prefix = std::env::temp_dir().join(format!(
                "iomux-nchan-compat-{}-{attempt}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos())
            ));
            let output = Command::new("bash")
                .arg(&script)
                .arg(&prefix)
                .arg(port.to_string())
                .arg(sub_timeout)
                .arg(ping)
                .env("BUFFER_LENGTH", buffer_length.to_string())
                .env("MESSAGE_TIMEOUT", "1h")
                .stdin(Stdio::null())
                .output()
                .expect("run tests/nchan/start-nchan.sh");
            let stdout = String::from_utf8_lossy(&output.stdout);
            let pid = stdout
                .lines()
                .find_map(|l| l.strip_prefix("PID "))
                .and_then(|p| p.trim().parse::<u32>().ok());
            match pid {
                Some(pid) if output.status.success() => {
                    return Nchan {
                        addr: SocketAddr::from(([127, 0, 0, 1], port)),
                        pid,
                        workers: children_of(pid),
                        prefix,
                    };
                }
                _ => {
                    // The script stops what it started when it fails.
                    failures.push(format!(
                        "port {port}: {}{}",
                        stdout,
                        String::from_utf8_lossy(&output.stderr)
                    ));
                    let _ = std::fs::remove_dir_all(&prefix);
                }
            }
        }
        panic!("nchan did not start:\n{}", failures.join("\n"));
    }

    /// The nginx error log (for failure reports).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.prefix.join("logs/error.log")).unwrap_or_default()
    }
}

impl Drop for Nchan {
    fn drop(&mut self) {
        // nginx: TERM = fast shutdown; the master stops its workers and exits.
        stop_pid(self.pid, Duration::from_secs(5));
        for &worker in &self.workers {
            stop_pid(worker, Duration::from_secs(2));
        }
        let _ = std::fs::remove_dir_all(&self.prefix);
    }
}

/// The `iomux-pubsub` binary of this package.
pub struct Iomux {
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
}

impl Iomux {
    /// Start it with these flags (`--listen 127.0.0.1:0` is added) and read its address from
    /// the `listening on http://…` line.
    pub fn start(flags: &[&str]) -> Iomux {
        let mut child = Command::new(env!("CARGO_BIN_EXE_iomux-pubsub"))
            .args(["--listen", "127.0.0.1:0"])
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn iomux-pubsub");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("listening on http://") {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
        });
        // From here on the guard kills the child, whatever happens.
        let mut guard = Iomux {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            child,
        };
        let addr = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("iomux-pubsub printed no `listening on http://…` line within 10 s");
        guard.addr = addr.parse().expect("iomux-pubsub's address");
        guard
    }
}

impl Drop for Iomux {
    fn drop(&mut self) {
        let _ = self.child.kill(); // SIGKILL to this child's PID
        let _ = self.child.wait();
    }
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// The PIDs whose parent is `pid` (nginx workers of a master).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| stat_of(p).is_some_and(|(_, ppid)| ppid == pid))
        .collect()
}

/// State letter and parent PID from `/proc/PID/stat`.
fn stat_of(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid ...": comm may contain spaces, so parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether `pid` still runs (a zombie waiting for its parent does not).
pub fn running(pid: u32) -> bool {
    stat_of(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// Whether `pid` is an nginx process (so a recycled PID is never signalled).
fn is_nginx(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"nginx"))
}

/// TERM `pid` (an nginx process), wait up to `grace` for it to exit, then KILL it.
fn stop_pid(pid: u32, grace: Duration) {
    if !running(pid) || !is_nginx(pid) {
        return;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let deadline = Instant::now() + grace;
    while running(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if running(pid) && is_nginx(pid) {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(1);
        while running(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Nchan {
    /// The nginx PIDs (master first), to check that none is left running.
    pub fn pids(&self) -> Vec<u32> {
        std::iter::once(self.pid)
            .chain(self.workers.iter().copied())
            .collect()
    }
}
