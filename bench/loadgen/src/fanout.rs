//! `fanout`: the long-poll scenario (adapted from the shared bench harness, lpbench).
//!
//!  1. baseline server memory (sum of Pss/Rss from /proc/PID/smaps_rollup over --pids)
//!  2. open N keep-alive connections, each sends `GET /sub/{chan}`; wait until every request is
//!     written, settle (longer, up to --max-settle, until the server holds an fd per connection)
//!  3. server memory with N waiting; server CPU over --idle seconds of idling
//!  4. R rounds: publish one message on a separate connection, time publish-sent -> each
//!     subscriber's full reply, check the body; subscribers then re-poll with the cursor headers
//!     (If-None-Match / If-Modified-Since) of their reply
//!  5. buffer check: publish two messages back to back; each subscriber must get both, in order
//!     (the second arrives while it is between polls, so it must come from the channel buffer)
//!  6. print one JSON line.
//!
//! Every phase has a deadline; failures are counted, never fatal.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::http::{parse_reply, Io, Parse};
use crate::util::{self, jarr, pct, Obj};

const PUB: Token = Token(usize::MAX - 1);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Repoll {
    /// re-poll only when the whole round is over (keeps the client quiet during the fan-out)
    Deferred,
    /// re-poll as soon as a reply arrives (like a browser)
    Immediate,
}

struct Opts {
    addr: SocketAddr,
    n: usize,
    rounds: usize,
    chan: String,
    pids: Vec<u32>,
    label: String,
    settle: f64,
    max_settle: f64,
    idle: f64,
    round_settle: f64,
    body_size: usize,
    timeout: f64,
    connect_timeout: f64,
    connect_rate: f64,
    connect_batch: usize,
    repoll: Repoll,
    buffer_check: bool,
}

pub const USAGE: &str = "\
iomux-loadgen fanout --addr HOST:PORT --n N [--rounds R] [--chan NAME] [--pids P1,P2]
    [--label NAME] [--settle S] [--max-settle S] [--idle S] [--round-settle S] [--body-size B]
    [--timeout S] [--connect-timeout S] [--connect-rate CONN_PER_S] [--connect-batch K]
    [--repoll deferred|immediate] [--no-buffer-check]";

fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        addr: "127.0.0.1:8080".parse().expect("an address"),
        n: 1000,
        rounds: 3,
        chan: String::new(),
        pids: vec![],
        label: String::new(),
        settle: 2.0,
        max_settle: 30.0,
        idle: 10.0,
        round_settle: 1.0,
        body_size: 100,
        timeout: 30.0,
        connect_timeout: 60.0,
        connect_rate: 10000.0,
        connect_batch: 500,
        repoll: Repoll::Deferred,
        buffer_check: true,
    };
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "--no-buffer-check" {
            o.buffer_check = false;
            i += 1;
            continue;
        }
        let v = args.get(i + 1).ok_or(format!("{a} needs a value"))?.clone();
        let bad = || format!("bad value for {a}: {v:?}");
        let f = |s: &str| -> Result<f64, String> { s.parse().map_err(|_| bad()) };
        match a {
            "--addr" => o.addr = util::parse_addr(&v).ok_or_else(bad)?,
            "--n" => o.n = f(&v)? as usize,
            "--rounds" => o.rounds = f(&v)? as usize,
            "--chan" => o.chan = v,
            "--pids" => o.pids = util::parse_pids(&v).ok_or_else(bad)?,
            "--label" => o.label = v,
            "--settle" => o.settle = f(&v)?,
            "--max-settle" => o.max_settle = f(&v)?,
            "--idle" => o.idle = f(&v)?,
            "--round-settle" => o.round_settle = f(&v)?,
            "--body-size" => o.body_size = f(&v)? as usize,
            "--timeout" => o.timeout = f(&v)?,
            "--connect-timeout" => o.connect_timeout = f(&v)?,
            "--connect-rate" => o.connect_rate = f(&v)?,
            "--connect-batch" => o.connect_batch = (f(&v)? as usize).max(1),
            "--repoll" => {
                o.repoll = match v.as_str() {
                    "deferred" => Repoll::Deferred,
                    "immediate" => Repoll::Immediate,
                    _ => return Err(bad()),
                }
            }
            _ => return Err(format!("unknown option {a}")),
        }
        i += 2;
    }
    if o.chan.is_empty() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        o.chan = format!("lp{}x{}", t.as_secs(), std::process::id());
    }
    Ok(o)
}

#[derive(PartialEq, Eq, Clone, Copy, Debug)]
enum St {
    Connecting,
    /// request (partly) queued / written, waiting for the reply
    Waiting,
    /// got a reply, re-poll deferred to the end of the round
    Idle,
    /// failed or closed; excluded from further phases
    Dead,
}

struct Conn {
    io: Io,
    st: St,
    etag: Option<String>,
    last_modified: Option<String>,
    /// index (into Bench::msgs) of the next message this subscriber should get
    expected: usize,
}

impl Conn {
    fn new(sock: TcpStream, st: St) -> Conn {
        Conn {
            io: Io::new(sock),
            st,
            etag: None,
            last_modified: None,
            expected: 0,
        }
    }
}

#[derive(Default)]
struct Counters {
    connect_errors: usize,
    reply: util::ReplyErrors,
    unexpected_replies: usize,
    timeouts: usize,
    lost: usize,
    dup: usize,
}

impl Counters {
    fn errors(&self) -> usize {
        self.connect_errors + self.reply.total() as usize + self.unexpected_replies + self.timeouts
    }
}

/// What a subscriber's reply said, taken out of its buffer.
struct SubReply {
    status: u16,
    etag: Option<String>,
    last_modified: Option<String>,
    close: bool,
    /// index of the published message it carried, or a snippet of an unknown body
    msg: Result<usize, String>,
}

struct Bench {
    o: Opts,
    poll: Poll,
    conns: Vec<Conn>,
    pubc: Option<Conn>,
    pub_replies: Vec<(u16, Instant)>,
    msgs: Vec<Vec<u8>>,
    /// the message whose delivery times are being recorded
    measuring_idx: Option<usize>,
    t_pub: Instant,
    lat_us: Vec<u64>,
    written: usize,
    connecting: usize,
    /// sample server threads/fds while connecting and settling
    sampling: bool,
    last_sample: Instant,
    peak_threads: u64,
    peak_fds: u64,
    c: Counters,
    err_samples: HashMap<String, usize>,
    host_hdr: String,
}

impl Bench {
    fn note(&mut self, what: impl Into<String>) {
        *self.err_samples.entry(what.into()).or_insert(0) += 1;
    }

    fn sub_request(&self, etag: &Option<String>, lm: &Option<String>) -> Vec<u8> {
        let mut s = format!(
            "GET /sub/{} HTTP/1.1\r\nHost: {}\r\n",
            self.o.chan, self.host_hdr
        );
        if let Some(e) = etag {
            let _ = write!(s, "If-None-Match: {e}\r\n");
        }
        if let Some(l) = lm {
            let _ = write!(s, "If-Modified-Since: {l}\r\n");
        }
        s.push_str("\r\n");
        s.into_bytes()
    }

    fn kill(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if c.st == St::Connecting {
            self.connecting -= 1;
        }
        if c.st != St::Dead {
            c.st = St::Dead;
            let _ = self.poll.registry().deregister(&mut c.io.sock);
            let _ = c.io.sock.shutdown(std::net::Shutdown::Both);
        }
    }

    /// queue a (re-)poll request on subscriber i and try to write it
    fn send_poll(&mut self, i: usize) {
        let req = self.sub_request(&self.conns[i].etag, &self.conns[i].last_modified);
        let c = &mut self.conns[i];
        c.st = St::Waiting;
        match c.io.queue(&req) {
            Ok(true) => self.written += 1,
            Ok(false) => {}
            Err(e) => {
                self.c.reply.io_errors += 1;
                self.note(format!("write: {e}"));
                self.kill(i);
            }
        }
    }

    fn publish(&mut self) -> usize {
        let idx = self.msgs.len();
        let mut body = format!("msg {idx:04} {} ", self.o.chan).into_bytes();
        while body.len() < self.o.body_size {
            body.push(b'a' + (body.len() % 26) as u8);
        }
        body.truncate(self.o.body_size.max(16));
        let mut req = format!(
            "POST /pub/{} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            self.o.chan,
            self.host_hdr,
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(&body);
        self.msgs.push(body);
        let p = self.pubc.as_mut().expect("publisher");
        self.t_pub = Instant::now();
        if let Err(e) = p.io.queue(&req) {
            self.note(format!("publish write: {e}"));
            self.c.reply.io_errors += 1;
        }
        idx
    }

    fn on_sub_reply(&mut self, i: usize, r: SubReply, now: Instant) {
        if self.conns[i].st != St::Waiting {
            self.c.unexpected_replies += 1;
            self.note("reply while not polling");
        }
        self.conns[i].st = St::Idle;
        if r.status != 200 {
            self.c.reply.bad_status += 1;
            self.note(format!("status {}", r.status));
            self.kill(i);
            return;
        }
        if r.etag.is_some() || r.last_modified.is_some() {
            self.conns[i].etag = r.etag;
            self.conns[i].last_modified = r.last_modified;
        }
        match r.msg {
            Err(snippet) => {
                self.c.reply.bad_body += 1;
                self.note(format!("unknown body {snippet:?}"));
            }
            Ok(j) => {
                let exp = self.conns[i].expected;
                if j >= exp {
                    if j > exp {
                        self.c.lost += j - exp;
                    }
                    self.conns[i].expected = j + 1;
                    if Some(j) == self.measuring_idx {
                        self.lat_us
                            .push(now.duration_since(self.t_pub).as_micros() as u64);
                    }
                } else {
                    self.c.dup += 1;
                }
            }
        }
        if r.close {
            self.c.reply.closed_by_server += 1;
            self.note("server sent Connection: close");
            self.kill(i);
            return;
        }
        if self.conns[i].expected < self.msgs.len() || self.o.repoll == Repoll::Immediate {
            self.send_poll(i);
        }
    }

    fn handle_sub_event(&mut self, i: usize, ev: &mio::event::Event, now: Instant) {
        if self.conns[i].st == St::Dead {
            return;
        }
        if self.conns[i].st == St::Connecting {
            if !(ev.is_writable() || ev.is_error() || ev.is_write_closed()) {
                return;
            }
            let c = &mut self.conns[i];
            match c.io.sock.take_error() {
                Ok(Some(e)) | Err(e) => {
                    self.c.connect_errors += 1;
                    self.note(format!("connect: {e}"));
                    self.kill(i);
                    return;
                }
                Ok(None) => {}
            }
            match c.io.sock.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return, // spurious
                Err(e) => {
                    self.c.connect_errors += 1;
                    self.note(format!("connect: {e}"));
                    self.kill(i);
                    return;
                }
            }
            let _ = c.io.sock.set_nodelay(true);
            self.connecting -= 1;
            self.send_poll(i);
            return;
        }
        if ev.is_writable() && !self.conns[i].io.written() {
            match self.conns[i].io.write_out() {
                Ok(true) => self.written += 1,
                Ok(false) => {}
                Err(e) => {
                    self.c.reply.io_errors += 1;
                    self.note(format!("write: {e}"));
                    self.kill(i);
                    return;
                }
            }
        }
        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
            let eof = match self.conns[i]
                .io
                .read_in(ev.is_read_closed() || ev.is_error())
            {
                Ok(eof) => eof,
                Err(e) => {
                    self.c.reply.io_errors += 1;
                    self.note(format!("read: {e}"));
                    self.kill(i);
                    return;
                }
            };
            while !self.conns[i].io.pending().is_empty() {
                let io = &self.conns[i].io;
                let buf = io.pending();
                match parse_reply(buf, true) {
                    Parse::Partial => break,
                    Parse::Bad(e) => {
                        self.c.reply.parse_errors += 1;
                        self.note(e);
                        self.kill(i);
                        return;
                    }
                    Parse::Done(r, used) => {
                        let body = r.body(buf);
                        let msg = self.msgs.iter().position(|m| m == body).ok_or_else(|| {
                            String::from_utf8_lossy(body).chars().take(40).collect()
                        });
                        let reply = SubReply {
                            status: r.status,
                            etag: r.etag,
                            last_modified: r.last_modified,
                            close: r.close,
                            msg,
                        };
                        self.conns[i].io.in_pos += used;
                        self.on_sub_reply(i, reply, now);
                        if self.conns[i].st == St::Dead {
                            return;
                        }
                    }
                }
            }
            if eof {
                self.c.reply.closed_by_server += 1;
                self.note("connection closed by server");
                self.kill(i);
            }
        }
    }

    fn handle_pub_event(&mut self, ev: &mio::event::Event, now: Instant) {
        let Some(p) = self.pubc.as_mut() else { return };
        if ev.is_writable() && !p.io.written() {
            if let Err(e) = p.io.write_out() {
                self.pubc = None;
                self.note(format!("publish write: {e}"));
                return;
            }
        }
        if ev.is_readable() || ev.is_read_closed() {
            let eof = match p.io.read_in(ev.is_read_closed() || ev.is_error()) {
                Ok(e) => e,
                Err(e) => {
                    self.pubc = None;
                    self.note(format!("publish read: {e}"));
                    return;
                }
            };
            loop {
                let Some(p) = self.pubc.as_mut() else { return };
                if p.io.pending().is_empty() {
                    break;
                }
                match parse_reply(p.io.pending(), false) {
                    Parse::Partial => break,
                    Parse::Bad(e) => {
                        self.pubc = None;
                        self.note(format!("publish reply: {e}"));
                        return;
                    }
                    Parse::Done(r, used) => {
                        p.io.in_pos += used;
                        self.pub_replies.push((r.status, now));
                        if !(200..300).contains(&r.status) {
                            self.note(format!("publish status {}", r.status));
                        }
                        if r.close {
                            self.note("publisher connection closed by server");
                            self.pubc = None;
                            return;
                        }
                    }
                }
            }
            if eof {
                self.note("publisher connection closed by server");
                self.pubc = None;
            }
        }
    }

    /// run the event loop until `done` or the deadline; true if done
    fn pump(&mut self, deadline: Instant, done: &dyn Fn(&Bench) -> bool) -> bool {
        let mut events = Events::with_capacity(4096);
        loop {
            if done(self) {
                return true;
            }
            self.sample();
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let wait = (deadline - now).min(Duration::from_millis(100));
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    panic!("poll: {e}");
                }
            }
            for ev in events.iter() {
                // per event: a reply counts as received when this client gets to read it
                let now = Instant::now();
                if ev.token() == PUB {
                    self.handle_pub_event(ev, now);
                } else {
                    self.handle_sub_event(ev.token().0, ev, now);
                }
            }
        }
    }

    fn sample(&mut self) {
        if self.sampling && self.last_sample.elapsed() >= Duration::from_millis(250) {
            self.last_sample = Instant::now();
            let (mut th, mut fds) = (0u64, 0u64);
            for pid in &self.o.pids {
                let (t, f) = util::threads_fds(*pid);
                th += t;
                fds += f;
            }
            self.peak_threads = self.peak_threads.max(th);
            self.peak_fds = self.peak_fds.max(fds);
        }
    }

    fn live(&self) -> usize {
        self.conns.iter().filter(|c| c.st != St::Dead).count()
    }

    fn all_caught_up(&self) -> bool {
        let n = self.msgs.len();
        self.conns
            .iter()
            .all(|c| c.st == St::Dead || c.expected >= n)
    }

    /// open the N subscriber connections (paced) and send their first poll
    fn connect_all(&mut self) {
        let start = Instant::now();
        let deadline = start + Duration::from_secs_f64(self.o.connect_timeout);
        let mut events = Events::with_capacity(4096);
        let mut started = 0usize;
        while Instant::now() < deadline {
            let allowed = if self.o.connect_rate > 0.0 {
                ((start.elapsed().as_secs_f64() * self.o.connect_rate) as usize + 1).min(self.o.n)
            } else {
                self.o.n
            };
            // at most connect_batch handshakes in flight, at most connect_rate per second
            while started < allowed && self.connecting < self.o.connect_batch {
                started += 1;
                match TcpStream::connect(self.o.addr) {
                    Ok(mut s) => {
                        let tok = Token(self.conns.len());
                        if let Err(e) = self.poll.registry().register(
                            &mut s,
                            tok,
                            Interest::READABLE | Interest::WRITABLE,
                        ) {
                            self.c.connect_errors += 1;
                            self.note(format!("register: {e}"));
                            continue;
                        }
                        self.connecting += 1;
                        self.conns.push(Conn::new(s, St::Connecting));
                    }
                    Err(e) => {
                        self.c.connect_errors += 1;
                        self.note(format!("connect: {e}"));
                    }
                }
            }
            if started >= self.o.n
                && self.connecting == 0
                && !self
                    .conns
                    .iter()
                    .any(|c| c.st == St::Waiting && !c.io.written())
            {
                break;
            }
            self.sample();
            if let Err(e) = self.poll.poll(&mut events, Some(Duration::from_millis(1))) {
                if e.kind() != io::ErrorKind::Interrupted {
                    panic!("poll: {e}");
                }
            }
            let now = Instant::now();
            for ev in events.iter() {
                if ev.token() == PUB {
                    self.handle_pub_event(ev, now);
                } else {
                    self.handle_sub_event(ev.token().0, ev, now);
                }
            }
        }
        // anything still connecting at the deadline counts as a connect error
        for i in 0..self.conns.len() {
            if self.conns[i].st == St::Connecting {
                self.c.connect_errors += 1;
                self.note("connect timeout");
                self.kill(i);
            }
        }
        if started < self.o.n {
            self.c.connect_errors += self.o.n - started;
            self.note("connect phase deadline before all connections were started");
        }
    }

    fn connect_publisher(&mut self) -> io::Result<()> {
        let s = std::net::TcpStream::connect_timeout(&self.o.addr, Duration::from_secs(5))?;
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
        let mut s = TcpStream::from_std(s);
        self.poll
            .registry()
            .register(&mut s, PUB, Interest::READABLE | Interest::WRITABLE)?;
        self.pubc = Some(Conn::new(s, St::Idle));
        Ok(())
    }

    fn wait_pub_replies(&mut self, k: usize, deadline: Instant) -> bool {
        self.pump(deadline, &|b: &Bench| {
            b.pub_replies.len() >= k || b.pubc.is_none()
        })
    }

    /// send deferred re-polls, wait until they are written, settle
    fn repoll_and_settle(&mut self, settle: f64) {
        self.written = 0;
        let mut want = 0;
        for i in 0..self.conns.len() {
            if self.conns[i].st == St::Idle {
                want += 1;
                self.send_poll(i);
            }
        }
        let deadline = Instant::now() + Duration::from_secs_f64(self.o.timeout);
        self.pump(deadline, &|b: &Bench| {
            b.written >= want
                || b.conns
                    .iter()
                    .all(|c| c.st != St::Waiting || c.io.written())
        });
        let d = Instant::now() + Duration::from_secs_f64(settle);
        self.pump(d, &|_| false);
    }

    /// give up on subscribers that did not catch up by the deadline
    fn expire_laggards(&mut self) -> usize {
        let n = self.msgs.len();
        let mut k = 0;
        for i in 0..self.conns.len() {
            if self.conns[i].st != St::Dead && self.conns[i].expected < n {
                k += 1;
                self.kill(i);
            }
        }
        if k > 0 {
            self.c.timeouts += k;
            self.note("timed out waiting for a message");
        }
        k
    }
}

/// Run the scenario; the JSON line, or an error for bad options.
pub fn run(args: &[String]) -> Result<String, String> {
    let o = parse_opts(args)?;
    let nofile = util::raise_open_file_limit();
    let host_hdr = o.addr.to_string();
    let mut b = Bench {
        poll: Poll::new().map_err(|e| format!("epoll: {e}"))?,
        conns: Vec::with_capacity(o.n),
        pubc: None,
        pub_replies: Vec::new(),
        msgs: Vec::new(),
        measuring_idx: None,
        t_pub: Instant::now(),
        lat_us: Vec::new(),
        written: 0,
        connecting: 0,
        sampling: false,
        last_sample: Instant::now(),
        peak_threads: 0,
        peak_fds: 0,
        c: Counters::default(),
        err_samples: HashMap::new(),
        host_hdr,
        o,
    };
    let t_start = Instant::now();
    let pids = b.o.pids.clone();

    if let Err(e) = b.connect_publisher() {
        return Ok(Obj::new()
            .str("mode", "fanout")
            .str("label", &b.o.label)
            .str("fatal", &format!("publisher connect: {e}"))
            .end());
    }

    // ---- 1. baseline
    let mem0 = util::read_mem(&pids);
    let (lo0, ld0) = util::listen_overflows();

    // ---- 2. connect N subscribers, first poll
    let t_conn = Instant::now();
    b.written = 0;
    b.sampling = true;
    b.connect_all();
    let connect_s = t_conn.elapsed().as_secs_f64();
    let requests_written = b.written;
    let t_settle = Instant::now();
    let settle_deadline = t_settle + Duration::from_secs_f64(b.o.settle);
    b.pump(settle_deadline, &|_| false);
    // then keep settling (up to --max-settle) until the server holds an open fd for every live
    // connection, i.e. it has accepted them all
    let max_settle = t_settle + Duration::from_secs_f64(b.o.max_settle.max(b.o.settle));
    loop {
        let fds = util::read_mem(&pids).fds;
        if pids.is_empty() || fds >= mem0.fds + b.live() as u64 || Instant::now() >= max_settle {
            break;
        }
        let d = (Instant::now() + Duration::from_millis(250)).min(max_settle);
        b.pump(d, &|_| false);
    }
    let settle_s = t_settle.elapsed().as_secs_f64();
    b.sampling = false;
    let (lo1, ld1) = util::listen_overflows();
    let waiting = b.live();

    // ---- 3. memory with N waiting, idle CPU
    let mem1 = util::read_mem(&pids);
    let cpu0 = util::cpu_ms(&pids);
    let (sched0, switches0) = util::cpu_ns_and_switches(&pids);
    let mach0 = util::machine_busy_ms();
    let cli0 = util::self_cpu_ms();
    let t_idle = Instant::now();
    let idle_deadline = t_idle + Duration::from_secs_f64(b.o.idle);
    b.pump(idle_deadline, &|_| false);
    let idle_cpu_ms = util::cpu_ms(&pids) - cpu0;
    let (sched1, switches1) = util::cpu_ns_and_switches(&pids);
    let idle_cpu_us = sched1.saturating_sub(sched0) / 1000;
    let idle_wakeups = switches1.saturating_sub(switches0);
    let idle_other_cpu_ms =
        util::machine_busy_ms() - mach0 - idle_cpu_ms - (util::self_cpu_ms() - cli0);
    let idle_wall_s = t_idle.elapsed().as_secs_f64();
    let waiting_after_idle = b.live();
    let mem_idle = util::read_mem(&pids);

    // ---- 4. rounds
    let mut rounds_json = Vec::new();
    let mut all_lat: Vec<u64> = Vec::new();
    for r in 0..b.o.rounds {
        if b.pubc.is_none() {
            if let Err(e) = b.connect_publisher() {
                b.note(format!("publisher reconnect: {e}"));
                break;
            }
        }
        let live_before = b.live();
        b.lat_us.clear();
        let srv_cpu0 = util::cpu_ms(&pids);
        let cli_cpu0 = util::self_cpu_ms();
        let mach_cpu0 = util::machine_busy_ms();
        let npub = b.pub_replies.len();
        let idx = b.publish();
        b.measuring_idx = Some(idx);
        let t0 = b.t_pub;
        let deadline = t0 + Duration::from_secs_f64(b.o.timeout);
        b.pump(deadline, &|b: &Bench| {
            b.all_caught_up() && b.pub_replies.len() > npub
        });
        let elapsed_ms = t0.elapsed().as_secs_f64() * 1000.0;
        let srv_cpu = util::cpu_ms(&pids) - srv_cpu0;
        let cli_cpu = util::self_cpu_ms() - cli_cpu0;
        let other_cpu = util::machine_busy_ms() - mach_cpu0 - srv_cpu - cli_cpu;
        let pub_ms = b
            .pub_replies
            .get(npub)
            .map(|(_, t)| t.duration_since(t0).as_secs_f64() * 1000.0)
            .unwrap_or(-1.0);
        let expired = b.expire_laggards();
        let mut lat = b.lat_us.clone();
        lat.sort_unstable();
        all_lat.extend_from_slice(&lat);
        rounds_json.push(
            Obj::new()
                .int("round", (r + 1) as u64)
                .int("subscribers", live_before as u64)
                .int("received", lat.len() as u64)
                .int("timed_out", expired as u64)
                .num("p50_ms", pct(&lat, 50.0))
                .num("p99_ms", pct(&lat, 99.0))
                .num("max_ms", pct(&lat, 100.0))
                .num("publish_reply_ms", pub_ms)
                .num("done_ms", elapsed_ms)
                .num("server_cpu_ms", srv_cpu)
                .num("client_cpu_ms", cli_cpu)
                .num("other_cpu_ms", other_cpu)
                .end(),
        );
        b.measuring_idx = None;
        let settle = b.o.round_settle;
        b.repoll_and_settle(settle);
    }

    // ---- 5. buffer check: two messages back to back
    let mut buffer_check = String::from("null");
    if b.o.buffer_check && b.pubc.is_some() {
        let live_before = b.live();
        let (lost0, dup0) = (b.c.lost, b.c.dup);
        let npub = b.pub_replies.len();
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs_f64(b.o.timeout);
        b.publish();
        b.wait_pub_replies(npub + 1, deadline);
        b.publish();
        // subscribers that got the first message before it was acknowledged are idle now
        // (between polls): re-poll them; the second message must come from the server's buffer
        // or the next publish, never be skipped
        for i in 0..b.conns.len() {
            if b.conns[i].st == St::Idle && b.conns[i].expected < b.msgs.len() {
                b.send_poll(i);
            }
        }
        b.pump(deadline, &|b: &Bench| {
            b.all_caught_up() && b.pub_replies.len() >= npub + 2
        });
        let done_ms = t0.elapsed().as_secs_f64() * 1000.0;
        let expired = b.expire_laggards();
        let ok = b
            .conns
            .iter()
            .filter(|c| c.st != St::Dead && c.expected >= b.msgs.len())
            .count();
        buffer_check = Obj::new()
            .int("subscribers", live_before as u64)
            .int("got_both", ok as u64)
            .int("timed_out", expired as u64)
            .int("lost", (b.c.lost - lost0) as u64)
            .int("dup", (b.c.dup - dup0) as u64)
            .num("done_ms", done_ms)
            .end();
        let settle = b.o.round_settle;
        b.repoll_and_settle(settle);
    }
    let mem2 = util::read_mem(&pids);
    let waiting_end = b.live();

    all_lat.sort_unstable();
    let per_conn = |after: u64, before: u64, n: usize| -> f64 {
        if n == 0 {
            return -1.0;
        }
        (after as f64 - before as f64) * 1024.0 / n as f64
    };
    let pub_statuses: Vec<String> = {
        let mut by: HashMap<u16, usize> = HashMap::new();
        for (s, _) in &b.pub_replies {
            *by.entry(*s).or_insert(0) += 1;
        }
        let mut v: Vec<_> = by.into_iter().collect();
        v.sort_unstable();
        v.into_iter().map(|(s, n)| format!("\"{s}\":{n}")).collect()
    };
    let c = &b.c;
    let u = |x: usize| x as u64;
    let json = Obj::new()
        .str("mode", "fanout")
        .str("label", &b.o.label)
        .str("chan", &b.o.chan)
        .int("n", u(b.o.n))
        .int("rounds", u(b.o.rounds))
        .str("repoll", &format!("{:?}", b.o.repoll).to_lowercase())
        .raw("pids", &jarr(pids.iter().map(|p| p.to_string())))
        .int("client_nofile", nofile)
        .int("server_procs_alive", u(mem2.alive))
        .num("connect_s", connect_s)
        .num("settle_s", settle_s)
        .int("requests_written", u(requests_written))
        .int("waiting", u(waiting))
        .int("waiting_after_idle", u(waiting_after_idle))
        .int("idle_cpu_us", idle_cpu_us)
        .int("idle_wakeups", idle_wakeups)
        .int("waiting_end", u(waiting_end))
        .int("listen_overflows", lo1.saturating_sub(lo0))
        .int("listen_drops", ld1.saturating_sub(ld0))
        .int("baseline_pss_kb", mem0.pss_kb)
        .int("baseline_rss_kb", mem0.rss_kb)
        .int("loaded_pss_kb", mem1.pss_kb)
        .int("loaded_rss_kb", mem1.rss_kb)
        .int("end_pss_kb", mem2.pss_kb)
        .int("end_rss_kb", mem2.rss_kb)
        .int("peak_server_threads", b.peak_threads)
        .int("peak_server_fds", b.peak_fds)
        .raw(
            "server_threads",
            &jarr(
                [mem0, mem1, mem_idle, mem2]
                    .iter()
                    .map(|m| m.threads.to_string()),
            ),
        )
        .raw(
            "server_fds",
            &jarr(
                [mem0, mem1, mem_idle, mem2]
                    .iter()
                    .map(|m| m.fds.to_string()),
            ),
        )
        .raw(
            "server_procs_alive_phases",
            &jarr(
                [mem0, mem1, mem_idle, mem2]
                    .iter()
                    .map(|m| m.alive.to_string()),
            ),
        )
        .num(
            "pss_per_conn_bytes",
            per_conn(mem1.pss_kb, mem0.pss_kb, waiting).round(),
        )
        .num(
            "rss_per_conn_bytes",
            per_conn(mem1.rss_kb, mem0.rss_kb, waiting).round(),
        )
        .num(
            "end_pss_per_conn_bytes",
            per_conn(mem2.pss_kb, mem0.pss_kb, waiting_end).round(),
        )
        .num("idle_cpu_ms", idle_cpu_ms)
        .num("idle_other_cpu_ms", idle_other_cpu_ms)
        .num("idle_wall_s", idle_wall_s)
        .int("fanout_samples", u(all_lat.len()))
        .num("fanout_p50_ms", pct(&all_lat, 50.0))
        .num("fanout_p99_ms", pct(&all_lat, 99.0))
        .num("fanout_max_ms", pct(&all_lat, 100.0))
        .raw("round_details", &jarr(rounds_json))
        .raw("buffer_check", &buffer_check)
        .raw(
            "publish_statuses",
            &format!("{{{}}}", pub_statuses.join(",")),
        )
        .int("lost", u(c.lost))
        .int("dup", u(c.dup))
        .int("errors", u(c.errors()))
        .raw(
            "error_counts",
            &c.reply
                .fields(Obj::new().int("connect", u(c.connect_errors)))
                .int("unexpected", u(c.unexpected_replies))
                .int("timeouts", u(c.timeouts))
                .end(),
        )
        .raw("error_samples", &util::samples_json(&b.err_samples))
        .num("total_s", t_start.elapsed().as_secs_f64())
        .end();
    Ok(json)
}
