//! A private `redis-server` for one test (loopback, a free port, its own temporary directory),
//! and `iomux-pubsub` nodes pointed at it. Every process is stopped by its PID when its guard
//! is dropped, also when the test fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What a machine without Redis is told.
pub const REDIS_REQUIRED: &str = "redis-server is required: apt-get install redis-server";

/// Whether `redis-server` is on `PATH`.
fn redis_installed() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join("redis-server").is_file()))
}

/// A redis-server of this test.
pub struct Redis {
    pub port: u16,
    dir: PathBuf,
    persistent: bool,
    child: Option<Child>,
}

impl Redis {
    /// A Redis without persistence (`--save "" --appendonly no`).
    pub fn start() -> Redis {
        Redis::start_with(false)
    }

    /// A Redis whose data survives a restart (append-only file, fsync at every write).
    pub fn start_persistent() -> Redis {
        Redis::start_with(true)
    }

    fn start_with(persistent: bool) -> Redis {
        // Like the nchan comparison: a test that cannot run fails, on CI and elsewhere, rather
        // than pass without testing (script/test installs redis-server on a fresh machine).
        if !redis_installed() {
            let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
            panic!(
                "{REDIS_REQUIRED}{}",
                if ci {
                    " (CI is set, so this is an error)"
                } else {
                    "; script/test installs it"
                }
            );
        }
        let mut failures = Vec::new();
        // A free port can be taken by someone else before redis binds it: try a few.
        for attempt in 0..3 {
            let port = free_port();
            let dir = std::env::temp_dir().join(format!(
                "iomux-redis-{}-{port}-{attempt}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let mut redis = Redis {
                port,
                dir,
                persistent,
                child: None,
            };
            match redis.spawn() {
                Ok(()) => return redis,
                Err(e) => failures.push(format!("port {port}: {e}")),
            }
        }
        panic!("redis-server did not start:\n{}", failures.join("\n"));
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .arg("--dir")
            .arg(&self.dir)
            .args(["--logfile", "redis.log", "--daemonize", "no", "--save", ""]);
        if self.persistent {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn redis-server: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if self.ping() {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!("redis-server exited ({status}): {}", self.log()));
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(format!("redis-server not ready within 5 s: {}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the server answers `PING`.
    pub fn ping(&self) -> bool {
        self.command("PING").is_some_and(|r| r.starts_with("+PONG"))
    }

    /// One inline command, its raw reply (`None` if the server cannot be reached).
    pub fn command(&self, line: &str) -> Option<String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(format!("{line}\r\n").as_bytes()).ok()?;
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// The server's log (for failure reports).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }

    /// Stop the server (SIGKILL to its PID; with persistence every write is already on disk).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freeze (`SIGSTOP`) or thaw (`SIGCONT`) the server, by its PID: its connections stay open
    /// but nothing answers, as with a host that vanished.
    pub fn freeze(&self, frozen: bool) {
        let pid = self.child.as_ref().expect("redis-server running").id();
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Start it again on the same port and directory.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.spawn() {
                Ok(()) => return,
                // The port may linger a moment.
                Err(e) if Instant::now() > deadline => panic!("redis-server did not restart: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// An `iomux-pubsub` process, killed (by its PID) on drop.
pub struct Node {
    pub addr: SocketAddr,
    child: Child,
    /// Its stderr, collected by a thread.
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Node {
    /// Start the binary with these flags (`--listen 127.0.0.1:0` is added; `IOMUX_*` variables
    /// of the test's environment are removed) and read its address.
    pub fn start(flags: &[&str]) -> Node {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_iomux-pubsub"));
        for (name, _) in std::env::vars() {
            if name.starts_with("IOMUX_") {
                cmd.env_remove(name);
            }
        }
        let mut child = cmd
            .args(["--listen", "127.0.0.1:0"])
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn iomux-pubsub");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("listening on http://") {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
        });
        let mut node = Node {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            child,
            log,
        };
        let addr = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("iomux-pubsub did not start: {}", node.log()));
        node.addr = addr.parse().unwrap();
        node
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Kill it at once (SIGKILL to its PID), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}
