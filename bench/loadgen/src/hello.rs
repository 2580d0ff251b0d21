//! `hello`: keep-alive `GET /hello` load with `--conns` connections (default 64) and
//! pipelining depth `--pipeline` (default 1: one request at a time per connection).
//!
//! Each connection writes `--pipeline` requests at once, reads as many replies (each must be
//! `200` with the body `Hello, world!`), and sends the next batch at once. After `--warmup`
//! seconds, replies read during `--duration` seconds are counted; latency is per batch (batch
//! written → its last reply read), which for `--pipeline 1` is per request, as wrk reports it.
//! A connection the server closes is counted and reopened.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::http::{parse_reply, Io, Parse};
use crate::util::{self, pct, Obj};

pub const USAGE: &str = "\
iomux-loadgen hello --addr HOST:PORT [--conns 64] [--pipeline 1] [--duration S] [--warmup S]
    [--path /hello] [--expect 'Hello, world!'] [--pids P1,P2] [--label NAME]";

struct Opts {
    addr: SocketAddr,
    conns: usize,
    pipeline: usize,
    duration: f64,
    warmup: f64,
    path: String,
    expect: String,
    pids: Vec<u32>,
    label: String,
}

fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        addr: "127.0.0.1:8080".parse().expect("an address"),
        conns: 64,
        pipeline: 1,
        duration: 10.0,
        warmup: 1.0,
        path: "/hello".into(),
        expect: "Hello, world!".into(),
        pids: vec![],
        label: String::new(),
    };
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        let v = args.get(i + 1).ok_or(format!("{a} needs a value"))?.clone();
        let bad = || format!("bad value for {a}: {v:?}");
        let f = |s: &str| -> Result<f64, String> { s.parse().map_err(|_| bad()) };
        match a {
            "--addr" => o.addr = util::parse_addr(&v).ok_or_else(bad)?,
            "--conns" => o.conns = (f(&v)? as usize).max(1),
            "--pipeline" => o.pipeline = (f(&v)? as usize).max(1),
            "--duration" => o.duration = f(&v)?,
            "--warmup" => o.warmup = f(&v)?,
            "--path" => o.path = v,
            "--expect" => o.expect = v,
            "--pids" => o.pids = util::parse_pids(&v).ok_or_else(bad)?,
            "--label" => o.label = v,
            _ => return Err(format!("unknown option {a}")),
        }
        i += 2;
    }
    Ok(o)
}

struct Conn {
    io: Io,
    /// replies still expected for the batch in flight
    inflight: usize,
    batch_sent: Instant,
    dead: bool,
}

#[derive(Default)]
struct Counters {
    replies: u64,
    batches: u64,
    reply: util::ReplyErrors,
    reconnects: u64,
}

struct Bench {
    o: Opts,
    poll: Poll,
    conns: Vec<Conn>,
    batch: Vec<u8>,
    window: (Instant, Instant),
    lat_us: Vec<u64>,
    c: Counters,
    err_samples: HashMap<String, usize>,
}

impl Bench {
    fn note(&mut self, what: impl Into<String>) {
        *self.err_samples.entry(what.into()).or_insert(0) += 1;
    }

    fn connect(&mut self, token: usize) -> io::Result<Io> {
        let s = std::net::TcpStream::connect_timeout(&self.o.addr, Duration::from_secs(5))?;
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
        let mut s = TcpStream::from_std(s);
        self.poll.registry().register(
            &mut s,
            Token(token),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        Ok(Io::new(s))
    }

    fn send_batch(&mut self, i: usize, now: Instant) {
        let c = &mut self.conns[i];
        c.inflight = self.o.pipeline;
        c.batch_sent = now;
        if let Err(e) = c.io.queue(&self.batch) {
            self.c.reply.io_errors += 1;
            self.note(format!("write: {e}"));
            self.reconnect(i, now);
        }
    }

    /// Replace connection i by a new one (after an error or a close), unless the run is over.
    fn reconnect(&mut self, i: usize, now: Instant) {
        let c = &mut self.conns[i];
        if !c.dead {
            c.dead = true;
            let _ = self.poll.registry().deregister(&mut c.io.sock);
            let _ = c.io.sock.shutdown(std::net::Shutdown::Both);
        }
        if now >= self.window.1 {
            return;
        }
        match self.connect(i) {
            Ok(io) => {
                self.c.reconnects += 1;
                self.conns[i] = Conn {
                    io,
                    inflight: 0,
                    batch_sent: now,
                    dead: false,
                };
                self.send_batch(i, now);
            }
            Err(e) => {
                self.c.reply.io_errors += 1;
                self.note(format!("reconnect: {e}"));
            }
        }
    }

    fn handle(&mut self, i: usize, ev: &mio::event::Event, now: Instant) {
        if self.conns[i].dead {
            return;
        }
        if ev.is_writable() && !self.conns[i].io.written() {
            if let Err(e) = self.conns[i].io.write_out() {
                self.c.reply.io_errors += 1;
                self.note(format!("write: {e}"));
                self.reconnect(i, now);
                return;
            }
        }
        if !(ev.is_readable() || ev.is_read_closed() || ev.is_error()) {
            return;
        }
        let eof = match self.conns[i]
            .io
            .read_in(ev.is_read_closed() || ev.is_error())
        {
            Ok(eof) => eof,
            Err(e) => {
                self.c.reply.io_errors += 1;
                self.note(format!("read: {e}"));
                self.reconnect(i, now);
                return;
            }
        };
        let counting = now >= self.window.0 && now < self.window.1;
        let mut close = false;
        while !self.conns[i].io.pending().is_empty() {
            let buf = self.conns[i].io.pending();
            match parse_reply(buf, false) {
                Parse::Partial => break,
                Parse::Bad(e) => {
                    self.c.reply.parse_errors += 1;
                    self.note(e);
                    self.reconnect(i, now);
                    return;
                }
                Parse::Done(r, used) => {
                    let ok_body = r.body(buf) == self.o.expect.as_bytes();
                    let c = &mut self.conns[i];
                    c.io.in_pos += used;
                    c.inflight = c.inflight.saturating_sub(1);
                    let batch_done = c.inflight == 0;
                    let batch_sent = c.batch_sent;
                    if r.status != 200 {
                        self.c.reply.bad_status += 1;
                        self.note(format!("status {}", r.status));
                    } else if !ok_body {
                        self.c.reply.bad_body += 1;
                        self.note("unexpected body");
                    } else if counting {
                        self.c.replies += 1;
                    }
                    if batch_done && counting {
                        self.c.batches += 1;
                        self.lat_us
                            .push(now.duration_since(batch_sent).as_micros() as u64);
                    }
                    if r.close {
                        close = true;
                        break;
                    }
                    if batch_done && now < self.window.1 {
                        self.send_batch(i, now);
                        if self.conns[i].dead {
                            return;
                        }
                    }
                }
            }
        }
        if close || eof {
            self.c.reply.closed_by_server += 1;
            self.note("connection closed by server");
            self.reconnect(i, now);
        }
    }
}

/// Run the load; the JSON line, or an error for bad options.
pub fn run(args: &[String]) -> Result<String, String> {
    let o = parse_opts(args)?;
    let nofile = util::raise_open_file_limit();
    let req = format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", o.path, o.addr);
    let batch = req.repeat(o.pipeline).into_bytes();
    let mut b = Bench {
        poll: Poll::new().map_err(|e| format!("epoll: {e}"))?,
        conns: Vec::new(),
        batch,
        window: (Instant::now(), Instant::now()),
        lat_us: Vec::with_capacity(1 << 20),
        c: Counters::default(),
        err_samples: HashMap::new(),
        o,
    };
    for i in 0..b.o.conns {
        match b.connect(i) {
            Ok(io) => b.conns.push(Conn {
                io,
                inflight: 0,
                batch_sent: Instant::now(),
                dead: false,
            }),
            Err(e) => {
                return Ok(Obj::new()
                    .str("mode", "hello")
                    .str("label", &b.o.label)
                    .str("fatal", &format!("connect: {e}"))
                    .end())
            }
        }
    }
    let start = Instant::now();
    b.window = (
        start + Duration::from_secs_f64(b.o.warmup),
        start + Duration::from_secs_f64(b.o.warmup + b.o.duration),
    );
    for i in 0..b.conns.len() {
        b.send_batch(i, start);
    }
    let pids = b.o.pids.clone();
    let mut events = Events::with_capacity(1024);
    // CPU of the server, of this client and of the rest of the machine over the window
    let snap = |pids: &[u32]| {
        (
            util::cpu_ms(pids),
            util::self_cpu_ms(),
            util::machine_busy_ms(),
            Instant::now(),
        )
    };
    let mut cpu0 = None;
    let mut cpu1 = None;
    let end = b.window.1;
    // after the window: wait a little for the batches in flight, so connections end cleanly
    let hard_end = end + Duration::from_millis(500);
    loop {
        let now = Instant::now();
        if cpu0.is_none() && now >= b.window.0 {
            cpu0 = Some(snap(&pids));
        }
        if cpu1.is_none() && now >= end {
            cpu1 = Some(snap(&pids));
        }
        if now >= hard_end || (now >= end && b.conns.iter().all(|c| c.dead || c.inflight == 0)) {
            break;
        }
        let wait = Duration::from_millis(10);
        if let Err(e) = b.poll.poll(&mut events, Some(wait)) {
            if e.kind() != io::ErrorKind::Interrupted {
                panic!("poll: {e}");
            }
        }
        for ev in events.iter() {
            let now = Instant::now();
            b.handle(ev.token().0, ev, now);
        }
    }
    let (srv0, cli0, mach0, t0) = cpu0.unwrap_or_else(|| snap(&pids));
    let (srv1, cli1, mach1, t1) = cpu1.unwrap_or_else(|| snap(&pids));
    let wall = t1.duration_since(t0).as_secs_f64();
    let srv_cpu = srv1 - srv0;
    let cli_cpu = cli1 - cli0;
    let other_cpu = mach1 - mach0 - srv_cpu - cli_cpu;
    let window_s = b.o.duration;
    b.lat_us.sort_unstable();
    let c = &b.c;
    let errors = c.reply.total();
    Ok(Obj::new()
        .str("mode", "hello")
        .str("label", &b.o.label)
        .str("path", &b.o.path)
        .int("conns", b.o.conns as u64)
        .int("pipeline", b.o.pipeline as u64)
        .int("client_nofile", nofile)
        .num("warmup_s", b.o.warmup)
        .num("duration_s", window_s)
        .int("requests", c.replies)
        .int("batches", c.batches)
        .num("rps", c.replies as f64 / window_s)
        .str(
            "latency_unit",
            if b.o.pipeline > 1 { "batch" } else { "request" },
        )
        .num("p50_ms", pct(&b.lat_us, 50.0))
        .num("p90_ms", pct(&b.lat_us, 90.0))
        .num("p99_ms", pct(&b.lat_us, 99.0))
        .num("max_ms", pct(&b.lat_us, 100.0))
        .num("cpu_wall_s", wall)
        .num("server_cpu_ms", srv_cpu)
        .num("client_cpu_ms", cli_cpu)
        .num("other_cpu_ms", other_cpu)
        .int("errors", errors)
        .raw(
            "error_counts",
            &c.reply
                .fields(Obj::new())
                .int("reconnects", c.reconnects)
                .end(),
        )
        .raw("error_samples", &util::samples_json(&b.err_samples))
        .end())
}
