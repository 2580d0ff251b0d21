//! Cross-node delivery latency: publish on node A, an EventSource subscriber on node B, one
//! message at a time (the next is published once the last has arrived), p50 / p99 / max over
//! 200 messages. Three setups on loopback, for comparison:
//!
//! - `in-process`: one hub, publisher and subscriber on the same server;
//! - `workers`: two hubs of a `HubGroup` (two loops, two threads), publish on one, subscribe on
//!   the other;
//! - `redis`: two servers sharing channels through Redis.
//!
//! ```sh
//! cargo run --release -p iomux-actors --example redis_latency            # starts a private redis-server
//! cargo run --release -p iomux-actors --example redis_latency -- redis://127.0.0.1:6379
//! ```

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;
use iomux_actors::{Backend, HubGroup, PubSub, PubSubConfig, RedisBackend};

const MESSAGES: usize = 200;

fn main() -> std::io::Result<()> {
    let mut private = None;
    let url = match std::env::args().nth(1) {
        Some(url) => url,
        None => {
            let redis = PrivateRedis::start()?;
            let url = format!("redis://127.0.0.1:{}", redis.port);
            private = Some(redis);
            url
        }
    };
    println!("{MESSAGES} messages, one at a time, publish on A -> EventSource on B");
    println!("{:<12} {:>10} {:>10} {:>10}", "setup", "p50", "p99", "max");

    let single = Node::start(Backend::InProcess)?;
    report("in-process", measure(single.addr, single.addr)?);

    let group = HubGroup::new(2);
    let a = Node::start(Backend::Group(group.member(0)))?;
    let b = Node::start(Backend::Group(group.member(1)))?;
    report("workers", measure(a.addr, b.addr)?);

    let a = Node::start(Backend::Redis(RedisBackend::new(&url)?))?;
    let b = Node::start(Backend::Redis(RedisBackend::new(&url)?))?;
    report("redis", measure(a.addr, b.addr)?);
    drop(private);
    Ok(())
}

fn report(setup: &str, mut latencies: Vec<Duration>) {
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    let us = |d: Duration| format!("{:.0} µs", d.as_secs_f64() * 1e6);
    println!(
        "{setup:<12} {:>10} {:>10} {:>10}",
        us(at(0.5)),
        us(at(0.99)),
        us(at(1.0))
    );
}

/// Subscribe on `sub`, then publish each message on `publish` once the last one arrived.
fn measure(publish: SocketAddr, sub: SocketAddr) -> std::io::Result<Vec<Duration>> {
    let channel = format!("latency{}", publish.port());
    let mut stream = TcpStream::connect(sub)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET /sub/{channel} HTTP/1.1\r\nHost: b\r\nAccept: text/event-stream\r\n\r\n"
    )?;
    let mut seen = Vec::new();
    read_until(&mut stream, &mut seen, b": hi\n\n")?;
    std::thread::sleep(Duration::from_millis(100)); // the subscription is in place everywhere
    let mut publisher = TcpStream::connect(publish)?;
    publisher.set_nodelay(true)?;
    publisher.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut replies = Vec::new();
    let mut latencies = Vec::with_capacity(MESSAGES);
    for i in 0..MESSAGES {
        let body = format!("message-{i:05}");
        let request = format!(
            "POST /pub/{channel} HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let start = Instant::now();
        publisher.write_all(request.as_bytes())?;
        read_until(&mut stream, &mut seen, format!("data: {body}\n").as_bytes())?;
        latencies.push(start.elapsed());
        // The publisher's reply (201: it found the subscriber), before the next publish.
        read_until(&mut publisher, &mut replies, b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&replies).into_owned();
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(str::to_owned)
            })
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0);
        replies.clear();
        let mut body = vec![0; length];
        publisher.read_exact(&mut body)?;
    }
    Ok(latencies)
}

/// Read from `from` into `buf` until `needle` is in it; drop what comes before its end.
fn read_until(from: &mut TcpStream, buf: &mut Vec<u8>, needle: &[u8]) -> std::io::Result<()> {
    loop {
        if let Some(i) = buf.windows(needle.len()).position(|w| w == needle) {
            buf.drain(..i + needle.len());
            return Ok(());
        }
        let mut chunk = [0u8; 8192];
        let n = from.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A pub/sub server on a thread of its own, stopped on drop.
struct Node {
    addr: SocketAddr,
    stop: iomux::StopHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Node {
    fn start(backend: Backend) -> std::io::Result<Node> {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let ex = LocalExecutor::new();
            let config = PubSubConfig {
                heartbeat_interval: Duration::ZERO,
                ..PubSubConfig::default()
            };
            let pubsub = PubSub::with_backend(&ex, config, backend);
            let acceptor = match iomux::Acceptor::bind("127.0.0.1:0", pubsub.handler()) {
                Ok(acceptor) => acceptor,
                Err(e) => return drop(tx.send(Err(e))),
            };
            let _ = tx.send(Ok((acceptor.local_addr(), acceptor.stop_handle())));
            let _ = async_io::block_on(ex.run(acceptor.serve(&ex)));
        });
        let (addr, stop) = rx
            .recv()
            .map_err(|_| std::io::Error::other("server thread died"))??;
        Ok(Node {
            addr,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A redis-server on a free loopback port, without persistence, in a directory of its own;
/// stopped by its PID on drop.
struct PrivateRedis {
    port: u16,
    child: Child,
    dir: std::path::PathBuf,
}

impl PrivateRedis {
    fn start() -> std::io::Result<PrivateRedis> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = std::env::temp_dir().join(format!("iomux-redis-latency-{port}"));
        std::fs::create_dir_all(&dir)?;
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .arg("--dir")
            .arg(&dir)
            .args(["--save", "", "--appendonly", "no", "--logfile", "redis.log"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| std::io::Error::new(e.kind(), format!("redis-server: {e}")))?;
        let redis = PrivateRedis { port, child, dir };
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(std::io::Error::other("redis-server did not start"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(redis)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
