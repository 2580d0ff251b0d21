//! `throughput`: messages per second delivered to subscribers that re-poll continuously.
//!
//! `--subs` long-poll subscribers (default 100) spread evenly over `--channels` channels
//! (default 10) each re-poll immediately with the cursor of the reply they got
//! (`If-None-Match` / `If-Modified-Since`). `--publishers` keep-alive connections (default 5)
//! publish 100-byte messages on the channels as fast as the server accepts them: each channel
//! belongs to one publisher connection (so its messages are published in order), a connection
//! cycles over its channels with `--pub-depth` publishes in flight (default 1: the next one is
//! sent when the previous is answered). After `--warmup` seconds, `--duration` seconds are
//! measured; then publishing stops and the subscribers get `--drain` seconds to catch up.
//!
//! Every message body carries its channel, its sequence number in the channel and the time its
//! publish was sent, so each delivery has a latency (publish sent → reply read) and each
//! subscriber checks its channel's sequence:
//!
//! - an older or repeated message is a duplicate;
//! - a gap (messages skipped) is a *loss* only if the skipped message was certainly still in the
//!   channel's buffer (`--buffer`, 10) when the server answered: fewer than `buffer` messages
//!   newer than it had even been sent when the reply was read. It fell *out of the buffer* if
//!   at least `buffer` newer messages had been acknowledged before the poll was sent (the
//!   subscriber was too slow for the publish rate); anything in between is counted as
//!   `gap_uncertain` (a race between the poll and the publishes in flight).

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::http::{parse_reply, Io, Parse};
use crate::util::{self, pct, Obj};

pub const USAGE: &str = "\
iomux-loadgen throughput --addr HOST:PORT [--channels 10] [--subs 100] [--publishers 5]
    [--pub-depth 1] [--duration S] [--warmup S] [--drain S] [--buffer 10] [--body-size 100]
    [--prefix NAME] [--pids P1,P2] [--label NAME]";

struct Opts {
    addr: SocketAddr,
    channels: usize,
    subs: usize,
    publishers: usize,
    pub_depth: usize,
    duration: f64,
    warmup: f64,
    drain: f64,
    buffer: u64,
    body_size: usize,
    prefix: String,
    pids: Vec<u32>,
    label: String,
}

fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        addr: "127.0.0.1:8080".parse().expect("an address"),
        channels: 10,
        subs: 100,
        publishers: 5,
        pub_depth: 1,
        duration: 10.0,
        warmup: 1.0,
        drain: 5.0,
        buffer: 10,
        body_size: 100,
        prefix: String::new(),
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
            "--channels" => o.channels = (f(&v)? as usize).max(1),
            "--subs" => o.subs = f(&v)? as usize,
            "--publishers" => o.publishers = (f(&v)? as usize).max(1),
            "--pub-depth" => o.pub_depth = (f(&v)? as usize).max(1),
            "--duration" => o.duration = f(&v)?,
            "--warmup" => o.warmup = f(&v)?,
            "--drain" => o.drain = f(&v)?,
            "--buffer" => o.buffer = f(&v)? as u64,
            "--body-size" => o.body_size = f(&v)? as usize,
            "--prefix" => o.prefix = v,
            "--pids" => o.pids = util::parse_pids(&v).ok_or_else(bad)?,
            "--label" => o.label = v,
            _ => return Err(format!("unknown option {a}")),
        }
        i += 2;
    }
    o.publishers = o.publishers.min(o.channels);
    if o.prefix.is_empty() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        o.prefix = format!("tp{}x{}", t.as_secs(), std::process::id());
    }
    if !o
        .prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err("--prefix: letters, digits and _ only (nchan's \\w+ channel ids)".into());
    }
    Ok(o)
}

#[derive(Default)]
struct Channel {
    /// publishes sent (= the sequence number of the newest one)
    sent: u64,
    /// publishes answered 2xx
    acked: u64,
}

struct Sub {
    io: Io,
    ch: usize,
    /// the sequence number this subscriber should get next
    expected: u64,
    etag: Option<String>,
    last_modified: Option<String>,
    /// acknowledged publishes on its channel when the current poll was sent
    acked_at_poll: u64,
    dead: bool,
}

struct Publisher {
    io: Io,
    chans: Vec<usize>,
    next: usize,
    /// channels of the publishes in flight, oldest first
    inflight: VecDeque<usize>,
    dead: bool,
}

#[derive(Default)]
struct Counters {
    delivered: u64,
    delivered_in_window: u64,
    published_in_window: u64,
    lost: u64,
    out_of_buffer: u64,
    gap_uncertain: u64,
    dup: u64,
    reply: util::ReplyErrors,
    publish_errors: u64,
}

struct Bench {
    o: Opts,
    poll: Poll,
    subs: Vec<Sub>,
    pubs: Vec<Publisher>,
    chans: Vec<Channel>,
    host: String,
    t0: Instant,
    window: (Instant, Instant),
    publishing: bool,
    lat_us: Vec<u64>,
    c: Counters,
    err_samples: HashMap<String, usize>,
}

/// `tp {channel} {seq} {micros since start} ` padded with letters.
fn message(ch: usize, seq: u64, t_us: u64, size: usize) -> Vec<u8> {
    let mut body = format!("tp {ch} {seq} {t_us} ").into_bytes();
    while body.len() < size {
        body.push(b'a' + (body.len() % 26) as u8);
    }
    body
}

/// (channel, seq, t_us) of a message body.
fn parse_message(body: &[u8]) -> Option<(usize, u64, u64)> {
    let mut it = body.split(|&b| b == b' ');
    if it.next()? != b"tp" {
        return None;
    }
    let mut num = || -> Option<u64> { std::str::from_utf8(it.next()?).ok()?.parse().ok() };
    Some((num()? as usize, num()?, num()?))
}

impl Bench {
    fn note(&mut self, what: impl Into<String>) {
        *self.err_samples.entry(what.into()).or_insert(0) += 1;
    }

    fn chan_name(&self, ch: usize) -> String {
        format!("{}c{ch}", self.o.prefix)
    }

    fn send_poll(&mut self, i: usize) {
        let s = &self.subs[i];
        let mut req = format!(
            "GET /sub/{} HTTP/1.1\r\nHost: {}\r\n",
            self.chan_name(s.ch),
            self.host
        );
        if let Some(e) = &s.etag {
            let _ = write!(req, "If-None-Match: {e}\r\n");
        }
        if let Some(l) = &s.last_modified {
            let _ = write!(req, "If-Modified-Since: {l}\r\n");
        }
        req.push_str("\r\n");
        let acked = self.chans[s.ch].acked;
        let s = &mut self.subs[i];
        s.acked_at_poll = acked;
        if let Err(e) = s.io.queue(req.as_bytes()) {
            self.c.reply.io_errors += 1;
            self.note(format!("write: {e}"));
            self.kill_sub(i);
        }
    }

    fn kill_sub(&mut self, i: usize) {
        let s = &mut self.subs[i];
        if !s.dead {
            s.dead = true;
            let _ = self.poll.registry().deregister(&mut s.io.sock);
            let _ = s.io.sock.shutdown(std::net::Shutdown::Both);
        }
    }

    fn kill_pub(&mut self, j: usize, why: String) {
        self.c.publish_errors += 1;
        self.note(why);
        let p = &mut self.pubs[j];
        if !p.dead {
            p.dead = true;
            let _ = self.poll.registry().deregister(&mut p.io.sock);
            let _ = p.io.sock.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Send publishes on connection j until `pub_depth` are in flight.
    fn fill_publisher(&mut self, j: usize) {
        while self.publishing
            && !self.pubs[j].dead
            && self.pubs[j].inflight.len() < self.o.pub_depth
        {
            let p = &mut self.pubs[j];
            let ch = p.chans[p.next % p.chans.len()];
            p.next += 1;
            self.chans[ch].sent += 1;
            let seq = self.chans[ch].sent;
            let t_us = self.t0.elapsed().as_micros() as u64;
            let body = message(ch, seq, t_us, self.o.body_size);
            let mut req = format!(
                "POST /pub/{} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                self.chan_name(ch),
                self.host,
                body.len()
            )
            .into_bytes();
            req.extend_from_slice(&body);
            let p = &mut self.pubs[j];
            p.inflight.push_back(ch);
            if let Err(e) = p.io.queue(&req) {
                self.kill_pub(j, format!("publish write: {e}"));
            }
        }
    }

    fn in_window(&self, t: Instant) -> bool {
        t >= self.window.0 && t < self.window.1
    }

    fn on_delivery(&mut self, i: usize, body: Result<(usize, u64, u64), String>, now: Instant) {
        let (ch, seq, t_us) = match body {
            Ok(m) if m.0 == self.subs[i].ch => m,
            Ok(m) => {
                self.c.reply.bad_body += 1;
                self.note(format!(
                    "message of channel {} on channel {}",
                    m.0, self.subs[i].ch
                ));
                return;
            }
            Err(snippet) => {
                self.c.reply.bad_body += 1;
                self.note(format!("unknown body {snippet:?}"));
                return;
            }
        };
        self.c.delivered += 1;
        if self.in_window(now) {
            self.c.delivered_in_window += 1;
            let sent_at = self.t0 + Duration::from_micros(t_us);
            self.lat_us
                .push(now.saturating_duration_since(sent_at).as_micros() as u64);
        }
        let s = &self.subs[i];
        if seq < s.expected {
            self.c.dup += 1;
            return;
        }
        let sent_now = self.chans[ch].sent;
        for m in s.expected..seq {
            if m + self.o.buffer <= s.acked_at_poll {
                self.c.out_of_buffer += 1;
            } else if m + self.o.buffer > sent_now {
                self.c.lost += 1;
            } else {
                self.c.gap_uncertain += 1;
            }
        }
        self.subs[i].expected = seq + 1;
    }

    fn handle_sub(&mut self, i: usize, ev: &mio::event::Event, now: Instant) {
        if self.subs[i].dead {
            return;
        }
        if ev.is_writable() && !self.subs[i].io.written() {
            if let Err(e) = self.subs[i].io.write_out() {
                self.c.reply.io_errors += 1;
                self.note(format!("write: {e}"));
                self.kill_sub(i);
                return;
            }
        }
        if !(ev.is_readable() || ev.is_read_closed() || ev.is_error()) {
            return;
        }
        let eof = match self.subs[i]
            .io
            .read_in(ev.is_read_closed() || ev.is_error())
        {
            Ok(eof) => eof,
            Err(e) => {
                self.c.reply.io_errors += 1;
                self.note(format!("read: {e}"));
                self.kill_sub(i);
                return;
            }
        };
        while !self.subs[i].io.pending().is_empty() {
            let buf = self.subs[i].io.pending();
            match parse_reply(buf, true) {
                Parse::Partial => break,
                Parse::Bad(e) => {
                    self.c.reply.parse_errors += 1;
                    self.note(e);
                    self.kill_sub(i);
                    return;
                }
                Parse::Done(r, used) => {
                    let body = r.body(buf);
                    let msg = parse_message(body).ok_or_else(|| {
                        String::from_utf8_lossy(body)
                            .chars()
                            .take(40)
                            .collect::<String>()
                    });
                    self.subs[i].io.in_pos += used;
                    if r.status != 200 {
                        self.c.reply.bad_status += 1;
                        self.note(format!("subscriber status {}", r.status));
                        self.kill_sub(i);
                        return;
                    }
                    if r.etag.is_some() || r.last_modified.is_some() {
                        self.subs[i].etag = r.etag;
                        self.subs[i].last_modified = r.last_modified;
                    }
                    self.on_delivery(i, msg, now);
                    if r.close {
                        self.c.reply.closed_by_server += 1;
                        self.note("server sent Connection: close");
                        self.kill_sub(i);
                        return;
                    }
                    self.send_poll(i);
                    if self.subs[i].dead {
                        return;
                    }
                }
            }
        }
        if eof {
            self.c.reply.closed_by_server += 1;
            self.note("subscriber connection closed by server");
            self.kill_sub(i);
        }
    }

    fn handle_pub(&mut self, j: usize, ev: &mio::event::Event, now: Instant) {
        if self.pubs[j].dead {
            return;
        }
        if ev.is_writable() && !self.pubs[j].io.written() {
            if let Err(e) = self.pubs[j].io.write_out() {
                self.kill_pub(j, format!("publish write: {e}"));
                return;
            }
        }
        if !(ev.is_readable() || ev.is_read_closed() || ev.is_error()) {
            return;
        }
        let eof = match self.pubs[j]
            .io
            .read_in(ev.is_read_closed() || ev.is_error())
        {
            Ok(eof) => eof,
            Err(e) => {
                self.kill_pub(j, format!("publish read: {e}"));
                return;
            }
        };
        while !self.pubs[j].io.pending().is_empty() {
            match parse_reply(self.pubs[j].io.pending(), false) {
                Parse::Partial => break,
                Parse::Bad(e) => {
                    self.kill_pub(j, format!("publish reply: {e}"));
                    return;
                }
                Parse::Done(r, used) => {
                    let p = &mut self.pubs[j];
                    p.io.in_pos += used;
                    let Some(ch) = p.inflight.pop_front() else {
                        self.kill_pub(j, "publish reply without a publish".into());
                        return;
                    };
                    if (200..300).contains(&r.status) {
                        self.chans[ch].acked += 1;
                        if self.in_window(now) {
                            self.c.published_in_window += 1;
                        }
                    } else {
                        self.c.publish_errors += 1;
                        self.note(format!("publish status {}", r.status));
                    }
                    if r.close {
                        self.kill_pub(j, "publisher connection closed by server".into());
                        return;
                    }
                }
            }
        }
        if eof {
            self.kill_pub(j, "publisher connection closed by server".into());
            return;
        }
        self.fill_publisher(j);
    }

    fn pump(&mut self, deadline: Instant, done: &dyn Fn(&Bench) -> bool) -> bool {
        let mut events = Events::with_capacity(1024);
        let nsubs = self.subs.len();
        loop {
            if done(self) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let wait = (deadline - now).min(Duration::from_millis(50));
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    panic!("poll: {e}");
                }
            }
            for ev in events.iter() {
                let now = Instant::now();
                let t = ev.token().0;
                if t < nsubs {
                    self.handle_sub(t, ev, now);
                } else if t - nsubs < self.pubs.len() {
                    self.handle_pub(t - nsubs, ev, now);
                }
            }
        }
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

    fn caught_up(&self) -> bool {
        self.pubs.iter().all(|p| p.dead || p.inflight.is_empty())
            && self
                .subs
                .iter()
                .all(|s| s.dead || s.expected > self.chans[s.ch].sent)
    }
}

/// Run the scenario; the JSON line, or an error for bad options.
pub fn run(args: &[String]) -> Result<String, String> {
    let o = parse_opts(args)?;
    let nofile = util::raise_open_file_limit();
    let mut b = Bench {
        poll: Poll::new().map_err(|e| format!("epoll: {e}"))?,
        subs: Vec::new(),
        pubs: Vec::new(),
        chans: (0..o.channels).map(|_| Channel::default()).collect(),
        host: o.addr.to_string(),
        t0: Instant::now(),
        window: (Instant::now(), Instant::now()),
        publishing: false,
        lat_us: Vec::new(),
        c: Counters::default(),
        err_samples: HashMap::new(),
        o,
    };
    let fatal = |b: &Bench, e: String| {
        Ok(Obj::new()
            .str("mode", "throughput")
            .str("label", &b.o.label)
            .str("fatal", &e)
            .end())
    };

    // subscribers: first poll without a cursor on fresh channels, so they wait
    for i in 0..b.o.subs {
        match b.connect(i) {
            Ok(io) => b.subs.push(Sub {
                io,
                ch: i % b.o.channels,
                expected: 1,
                etag: None,
                last_modified: None,
                acked_at_poll: 0,
                dead: false,
            }),
            Err(e) => return fatal(&b, format!("subscriber connect: {e}")),
        }
        b.send_poll(i);
    }
    let settle = Instant::now() + Duration::from_millis(500);
    b.pump(settle, &|_| false);

    for j in 0..b.o.publishers {
        let io = match b.connect(b.o.subs + j) {
            Ok(io) => io,
            Err(e) => return fatal(&b, format!("publisher connect: {e}")),
        };
        let chans = (j..b.o.channels).step_by(b.o.publishers).collect();
        b.pubs.push(Publisher {
            io,
            chans,
            next: 0,
            inflight: VecDeque::new(),
            dead: false,
        });
    }

    // warm-up, then the measured window
    let start = Instant::now();
    b.window = (
        start + Duration::from_secs_f64(b.o.warmup),
        start + Duration::from_secs_f64(b.o.warmup + b.o.duration),
    );
    b.publishing = true;
    for j in 0..b.pubs.len() {
        b.fill_publisher(j);
    }
    let window_start = b.window.0;
    b.pump(window_start, &|_| false);
    let pids = b.o.pids.clone();
    let srv0 = util::cpu_ms(&pids);
    let cli0 = util::self_cpu_ms();
    let mach0 = util::machine_busy_ms();
    let window_end = b.window.1;
    b.pump(window_end, &|_| false);
    let wall = window_start.elapsed().as_secs_f64();
    let srv_cpu = util::cpu_ms(&pids) - srv0;
    let cli_cpu = util::self_cpu_ms() - cli0;
    let other_cpu = util::machine_busy_ms() - mach0 - srv_cpu - cli_cpu;

    // drain: no more publishes; every subscriber must reach its channel's last message
    b.publishing = false;
    let t_drain = Instant::now();
    let caught_up = b.pump(t_drain + Duration::from_secs_f64(b.o.drain), &|b| {
        b.caught_up()
    });
    let drain_s = t_drain.elapsed().as_secs_f64();
    let stalled = b
        .subs
        .iter()
        .filter(|s| !s.dead && s.expected <= b.chans[s.ch].sent)
        .count();

    b.lat_us.sort_unstable();
    let c = &b.c;
    let sent: u64 = b.chans.iter().map(|c| c.sent).sum();
    let acked: u64 = b.chans.iter().map(|c| c.acked).sum();
    let alive = b.subs.iter().filter(|s| !s.dead).count() as u64;
    let errors = c.reply.total() + c.publish_errors;
    Ok(Obj::new()
        .str("mode", "throughput")
        .str("label", &b.o.label)
        .str("prefix", &b.o.prefix)
        .int("channels", b.o.channels as u64)
        .int("subscribers", b.o.subs as u64)
        .int("subscribers_alive", alive)
        .int("publishers", b.o.publishers as u64)
        .int("pub_depth", b.o.pub_depth as u64)
        .int("buffer", b.o.buffer)
        .int("client_nofile", nofile)
        .num("warmup_s", b.o.warmup)
        .num("duration_s", wall)
        .num("delivered_per_s", c.delivered_in_window as f64 / wall)
        .num("published_per_s", c.published_in_window as f64 / wall)
        .int("delivered_in_window", c.delivered_in_window)
        .int("published_in_window", c.published_in_window)
        .int("delivered_total", c.delivered)
        .int("published_total", sent)
        .int("acked_total", acked)
        .int("latency_samples", b.lat_us.len() as u64)
        .num("latency_p50_ms", pct(&b.lat_us, 50.0))
        .num("latency_p90_ms", pct(&b.lat_us, 90.0))
        .num("latency_p99_ms", pct(&b.lat_us, 99.0))
        .num("latency_max_ms", pct(&b.lat_us, 100.0))
        .int("lost", c.lost)
        .int("out_of_buffer", c.out_of_buffer)
        .int("gap_uncertain", c.gap_uncertain)
        .int("dup", c.dup)
        .raw("caught_up", if caught_up { "true" } else { "false" })
        .int("stalled_subscribers", stalled as u64)
        .num("drain_s", drain_s)
        .num("server_cpu_ms", srv_cpu)
        .num("client_cpu_ms", cli_cpu)
        .num("other_cpu_ms", other_cpu)
        .int("errors", errors)
        .raw(
            "error_counts",
            &c.reply
                .fields(Obj::new())
                .int("publish", c.publish_errors)
                .end(),
        )
        .raw("error_samples", &util::samples_json(&b.err_samples))
        .end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_round_trip() {
        let m = message(7, 42, 123456, 100);
        assert_eq!(m.len(), 100);
        assert_eq!(parse_message(&m), Some((7, 42, 123456)));
        assert_eq!(parse_message(b"hello"), None);
    }
}
