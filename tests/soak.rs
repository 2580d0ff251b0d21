//! Soak and abuse tests against the `iomux-pubsub` binary, run as a child process so that its
//! descriptors, memory and CPU time are measured alone (`/proc/PID/...`).
//!
//! - `hang_ups_leak_nothing`: N connect/request/hang-up cycles of every kind (below); before and
//!   after each kind, once `/status` reports only the control connection open and no
//!   subscriber left, the server's open descriptors must be back exactly to the baseline and its
//!   resident memory (`VmRSS`, and `Pss` from `smaps_rollup`) may not grow by more than
//!   [`MEMORY_BOUND_KB`].
//! - `emfile_backs_off_and_recovers`: a server with a 64-descriptor limit flooded with
//!   connections: while `accept` fails with `EMFILE` it must not spin (CPU < 20 % of a core over
//!   2 s), and once the flood hangs up a well-behaved client is served within 1 s.
//! - `torture_leaves_server_serving`: `examples/torture.rs` (included here as a module) against
//!   a server child: garbage floods, slowloris, half-open connections, resets while waiting and
//!   15,000 simultaneous long-polls; every check of its report must pass.
//! - `hang_up_noticed_behind_pipelined_overflow`: a client that pipelines more than a head's
//!   worth behind a waiting request, then hangs up, is dropped (it used to pin the connection).
//! - `stop_while_out_of_descriptors_exits`: a stop while `accept` fails with `EMFILE` ends the
//!   server (it used to spin).
//!
//! N is 20,000 cycles per kind by default (the CI run: about a minute in all, debug build); the
//! full soak, 100,000 cycles per kind, with the figures printed:
//!
//! ```sh
//! cargo build --release -p iomux-actors --bin iomux-pubsub
//! IOMUX_SOAK_CYCLES=100000 cargo test --release --test soak -- --nocapture
//! ```
//!
//! The `iomux-pubsub` binary is looked for next to this test's own, in `target/<profile>/`. A
//! workspace `cargo test` (or `cargo nextest run --workspace`) builds it; `cargo test --test soak`
//! alone does not, hence the first command. A missing binary, or one older than the sources
//! under `src/` and `actors/src/`, fails the tests with the command that builds it.
//!
//! The kinds of hang-up, each on a new connection:
//!
//! | kind | the client |
//! |---|---|
//! | connect-close | connects and sends its FIN at once |
//! | mid-header | sends half a request head, then its FIN |
//! | mid-body | sends a head with `Content-Length: 64` and 32 body bytes, then its FIN |
//! | while-waiting | `GET /sub/..` long-poll; once the server holds it (`/status`), closes |
//! | while-streaming | EventSource `GET /sub/..`; reads the stream's first bytes (`: hi`), closes |
//! | keep-alive | `POST /pub/..` then `GET /pub/..` on one connection, reads both replies, closes |
//! | reset-waiting | as while-waiting, but closes with `SO_LINGER` 0: a reset instead of a FIN |
//!
//! In the first three the client sends its FIN and then waits for the server's, so every cycle
//! is paced by the server and the listen backlog never overflows; the waiting kinds go in
//! batches of [`BATCH`] connections, closed together once `/status` shows all of them held.

mod soak_support;

#[allow(dead_code)]
#[path = "../examples/torture.rs"]
mod torture;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;
use async_io::Async;
use futures_lite::{AsyncReadExt, AsyncWriteExt};

use soak_support::{
    cpu_time, fd_count, fd_numbers, figures, soak_lock, Ctl, Figures, PubsubChild, Status,
};

/// Cycles per kind when `IOMUX_SOAK_CYCLES` is not set.
const DEFAULT_CYCLES: usize = 20_000;
/// Connections in flight at once (per-connection kinds).
const CONCURRENCY: usize = 128;
/// Connections held, then closed together (waiting kinds).
const BATCH: usize = 256;
/// Largest growth of `VmRSS` or `Pss` allowed over a kind, and over the whole run, in KiB.
///
/// Measured after a warm-up of every kind (so pools, tables and allocator caches start at their
/// working size): two release runs of 100,000 cycles per kind grew by -56..+60 KiB (`VmRSS`)
/// and -87..+105 KiB (`Pss`) over a kind, and by +28..+56 KiB (`VmRSS`) and -41..+148 KiB
/// (`Pss`) over all 700,000 cycles; a debug run of 20,000 per kind by at most +350 KiB over a
/// kind (the EventSource kind, once: the same at 2,000 cycles) and +192 KiB in all. That is
/// allocator state, not growth per cycle (glibc keeps freed memory below its trim threshold;
/// the order of frees decides which pages stay touched). 4 MiB is over ten times the most seen,
/// leaves room for one transparent huge page (2 MiB) where THP is `always`, and still catches a
/// leak of 42 bytes per cycle at 100,000 cycles (210 at the default 20,000).
const MEMORY_BOUND_KB: u64 = 4096;
/// Longest wait for the server to report the baseline again after a kind.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after the baseline is reported, before reading `/proc`.
const SETTLE: Duration = Duration::from_millis(500);
/// Longest a single cycle may take.
const CYCLE_TIMEOUT: Duration = Duration::from_secs(10);

fn cycles() -> usize {
    match std::env::var("IOMUX_SOAK_CYCLES") {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("IOMUX_SOAK_CYCLES={v:?}: not a whole number")),
        Err(_) => DEFAULT_CYCLES,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    ConnectClose,
    MidHeader,
    MidBody,
    WhileWaiting,
    WhileStreaming,
    KeepAlive,
    ResetWaiting,
}

impl Kind {
    const ALL: [Kind; 7] = [
        Kind::ConnectClose,
        Kind::MidHeader,
        Kind::MidBody,
        Kind::WhileWaiting,
        Kind::WhileStreaming,
        Kind::KeepAlive,
        Kind::ResetWaiting,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::ConnectClose => "(a) connect-close",
            Kind::MidHeader => "(b) mid-header",
            Kind::MidBody => "(c) mid-body",
            Kind::WhileWaiting => "(d) while-waiting",
            Kind::WhileStreaming => "(e) while-streaming",
            Kind::KeepAlive => "(f) keep-alive",
            Kind::ResetWaiting => "(g) reset-waiting",
        }
    }

    fn batched(self) -> bool {
        matches!(self, Kind::WhileWaiting | Kind::ResetWaiting)
    }
}

const MID_HEADER: &[u8] = b"GET /sub/soak-header HTTP/1.1\r\nHost: soak\r\nAcc";
const MID_BODY: &[u8] = b"POST /pub/soak-body HTTP/1.1\r\nHost: soak\r\nContent-Length: 64\r\n\r\n0123456789abcdef0123456789abcdef";
const LONG_POLL: &[u8] = b"GET /sub/soak-wait HTTP/1.1\r\nHost: soak\r\n\r\n";
const RESET_POLL: &[u8] = b"GET /sub/soak-reset HTTP/1.1\r\nHost: soak\r\n\r\n";
const EVENT_STREAM: &[u8] =
    b"GET /sub/soak-stream HTTP/1.1\r\nHost: soak\r\nAccept: text/event-stream\r\n\r\n";
const PUBLISH: &[u8] =
    b"POST /pub/soak-ka HTTP/1.1\r\nHost: soak\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
const CHANNEL_INFO: &[u8] = b"GET /pub/soak-ka HTTP/1.1\r\nHost: soak\r\n\r\n";

async fn write(s: &Async<TcpStream>, bytes: &[u8]) -> Result<(), String> {
    (&*s)
        .write_all(bytes)
        .await
        .map_err(|e| format!("write: {e}"))
}

/// Send our FIN, then wait for the server's: it must close when the client hangs up, and
/// send nothing.
async fn fin_and_wait(s: &Async<TcpStream>) -> Result<(), String> {
    s.get_ref()
        .shutdown(Shutdown::Write)
        .map_err(|e| format!("shutdown: {e}"))?;
    let mut buf = [0u8; 256];
    match (&*s).read(&mut buf).await {
        Ok(0) => Ok(()),
        // The server may reset rather than close: the connection is gone either way.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(()),
        Ok(n) => Err(format!(
            "the server sent {:?} to a client that hung up",
            String::from_utf8_lossy(&buf[..n])
        )),
        Err(e) => Err(format!("read: {e}")),
    }
}

/// One cycle of a per-connection kind.
async fn cycle(kind: Kind, addr: SocketAddr) -> Result<(), String> {
    let s = torture::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    match kind {
        Kind::ConnectClose => fin_and_wait(&s).await,
        Kind::MidHeader => {
            write(&s, MID_HEADER).await?;
            fin_and_wait(&s).await
        }
        Kind::MidBody => {
            write(&s, MID_BODY).await?;
            fin_and_wait(&s).await
        }
        Kind::WhileStreaming => {
            write(&s, EVENT_STREAM).await?;
            let first = torture::read_until(&s, b": hi")
                .await
                .map_err(|e| format!("stream: {e}"))?;
            if torture::status_of(&first) != Some(200) {
                return Err(format!(
                    "stream: {:?}",
                    String::from_utf8_lossy(&first[..first.len().min(80)])
                ));
            }
            Ok(()) // dropped: closed while streaming
        }
        Kind::KeepAlive => {
            let mut buf = Vec::new();
            write(&s, PUBLISH).await?;
            let r = torture::read_response(&s, &mut buf)
                .await
                .map_err(|e| format!("publish: {e}"))?;
            if r.status != 202 {
                return Err(format!("publish: {} (202 expected)", r.status));
            }
            write(&s, CHANNEL_INFO).await?;
            let r = torture::read_response(&s, &mut buf)
                .await
                .map_err(|e| format!("channel info: {e}"))?;
            if r.status != 200 {
                return Err(format!("channel info: {} (200 expected)", r.status));
            }
            Ok(())
        }
        Kind::WhileWaiting | Kind::ResetWaiting => unreachable!("batched"),
    }
}

/// Errors of a kind's cycles: how many, and the first few.
#[derive(Default)]
struct Errors {
    count: Cell<usize>,
    samples: RefCell<Vec<String>>,
}

impl Errors {
    fn add(&self, e: String) {
        self.count.set(self.count.get() + 1);
        let mut samples = self.samples.borrow_mut();
        if samples.len() < 5 {
            samples.push(e);
        }
    }
}

/// Run `n` cycles of `kind`; the errors.
fn run_kind(kind: Kind, addr: SocketAddr, n: usize, ctl: &mut Ctl) -> Errors {
    let ex = LocalExecutor::new();
    let errors = Rc::new(Errors::default());
    if kind.batched() {
        let request = if kind == Kind::WhileWaiting {
            LONG_POLL
        } else {
            RESET_POLL
        };
        let mut done = 0;
        while done < n {
            let size = BATCH.min(n - done);
            let opened = async_io::block_on(ex.run(async {
                let tasks: Vec<_> = (0..size)
                    .map(|_| {
                        ex.spawn(async move {
                            let s = torture::connect(addr)
                                .await
                                .map_err(|e| format!("connect: {e}"))?;
                            write(&s, request).await?;
                            Ok::<_, String>(s)
                        })
                    })
                    .collect();
                let mut opened = Vec::with_capacity(size);
                for t in tasks {
                    match t.await {
                        Ok(s) => opened.push(s),
                        Err(e) => errors.add(e),
                    }
                }
                opened
            }));
            let held = opened.len() as u64;
            ctl.wait_for("a batch of long-polls held", CYCLE_TIMEOUT, |st| {
                st.long_poll == held
            });
            for s in opened {
                if kind == Kind::ResetWaiting {
                    torture::set_reset_on_close(s.get_ref());
                }
            }
            ctl.wait_for("the batch's subscribers gone", CYCLE_TIMEOUT, |st| {
                st.long_poll == 0
            });
            done += size;
        }
    } else {
        let next = Rc::new(Cell::new(0usize));
        async_io::block_on(ex.run(async {
            let workers: Vec<_> = (0..CONCURRENCY.min(n))
                .map(|_| {
                    let (next, errors) = (next.clone(), errors.clone());
                    ex.spawn(async move {
                        while next.get() < n {
                            next.set(next.get() + 1);
                            let result = torture::with_timeout(CYCLE_TIMEOUT, cycle(kind, addr))
                                .await
                                .unwrap_or_else(|| {
                                    Err(format!("no progress in {CYCLE_TIMEOUT:?}"))
                                });
                            if let Err(e) = result {
                                errors.add(e);
                            }
                        }
                    })
                })
                .collect();
            for w in workers {
                w.await;
            }
        }));
    }
    Rc::try_unwrap(errors).unwrap_or_default()
}

/// Wait until the server reports only the control connection open and no subscriber, settle,
/// and read its figures.
fn at_rest(ctl: &mut Ctl, pid: u32) -> (Status, Figures) {
    ctl.wait_for(
        "only the control connection and no subscriber",
        SETTLE_TIMEOUT,
        |st| st.connections == 1 && st.long_poll == 0 && st.eventsource == 0,
    );
    std::thread::sleep(SETTLE);
    // The control connection is open (just used) while /proc is read, as at every reading.
    let st = ctl.status();
    (st, figures(pid))
}

struct Row {
    kind: Kind,
    cycles: usize,
    seconds: f64,
    before: Figures,
    after: Figures,
    errors: Errors,
}

fn grew(before: u64, after: u64) -> i64 {
    after as i64 - before as i64
}

#[test]
fn hang_ups_leak_nothing() {
    let _lock = soak_lock();
    let n = cycles();
    let warmup = (n / 10).clamp(1.min(n), 5_000);
    let mut server = PubsubChild::start(
        &[
            "--keep-alive-timeout",
            "2s",
            "--hold-timeout",
            "0",
            "--heartbeat",
            "0",
            "--log",
            "warn",
        ],
        None,
    );
    let (addr, pid) = (server.addr, server.pid());
    let mut ctl = Ctl::new(addr);
    let (start_st, start) = at_rest(&mut ctl, pid);

    // Warm-up: every kind once at full concurrency, so that pools, tables and allocator caches
    // are at their working size in the baseline.
    for kind in Kind::ALL {
        let errors = run_kind(kind, addr, warmup, &mut ctl);
        assert_eq!(
            errors.count.get(),
            0,
            "warm-up {}: {:?}",
            kind.name(),
            errors.samples.borrow()
        );
    }
    let (base_st, base) = at_rest(&mut ctl, pid);

    let mut rows = Vec::new();
    let mut before = base;
    for kind in Kind::ALL {
        let started = Instant::now();
        let errors = run_kind(kind, addr, n, &mut ctl);
        let seconds = started.elapsed().as_secs_f64();
        server.assert_alive();
        let (_, after) = at_rest(&mut ctl, pid);
        eprintln!(
            "soak: {} x{n} in {seconds:.1} s: fds {} -> {}, VmRSS {} -> {} KiB, Pss {} -> {} KiB",
            kind.name(),
            before.fds,
            after.fds,
            before.vm_rss_kb,
            after.vm_rss_kb,
            before.pss_kb,
            after.pss_kb
        );
        rows.push(Row {
            kind,
            cycles: n,
            seconds,
            before,
            after,
            errors,
        });
        before = after;
    }
    let (end_st, end) = at_rest(&mut ctl, pid);

    println!();
    println!(
        "soak: iomux-pubsub child (pid {pid}), {n} cycles per kind, {CONCURRENCY} connections in \
         flight ({BATCH} per batch for the waiting kinds), warm-up {warmup} per kind"
    );
    println!(
        "  at start: {} fds, VmRSS {} KiB, Pss {} KiB; after warm-up (baseline): {} fds, \
         VmRSS {} KiB, Pss {} KiB",
        start.fds, start.vm_rss_kb, start.pss_kb, base.fds, base.vm_rss_kb, base.pss_kb
    );
    println!(
        "  {:<20} {:>8} {:>8} {:>9} {:>11} {:>23} {:>23} {:>7}",
        "kind", "cycles", "secs", "cycles/s", "fds", "VmRSS KiB", "Pss KiB", "errors"
    );
    for r in &rows {
        println!(
            "  {:<20} {:>8} {:>8.1} {:>9.0} {:>11} {:>23} {:>23} {:>7}",
            r.kind.name(),
            r.cycles,
            r.seconds,
            r.cycles as f64 / r.seconds,
            format!("{} -> {}", r.before.fds, r.after.fds),
            format!(
                "{} -> {} ({:+})",
                r.before.vm_rss_kb,
                r.after.vm_rss_kb,
                grew(r.before.vm_rss_kb, r.after.vm_rss_kb)
            ),
            format!(
                "{} -> {} ({:+})",
                r.before.pss_kb,
                r.after.pss_kb,
                grew(r.before.pss_kb, r.after.pss_kb)
            ),
            r.errors.count.get()
        );
    }
    println!(
        "  whole run: fds {} -> {}, VmRSS {} -> {} KiB ({:+}), Pss {} -> {} KiB ({:+}); \
         bound {MEMORY_BOUND_KB} KiB",
        base.fds,
        end.fds,
        base.vm_rss_kb,
        end.vm_rss_kb,
        grew(base.vm_rss_kb, end.vm_rss_kb),
        base.pss_kb,
        end.pss_kb,
        grew(base.pss_kb, end.pss_kb)
    );
    println!("  /status at start {start_st:?}\n  baseline {base_st:?}\n  end {end_st:?}");

    for r in &rows {
        assert_eq!(
            r.errors.count.get(),
            0,
            "{}: {} cycles failed, e.g. {:?}",
            r.kind.name(),
            r.errors.count.get(),
            r.errors.samples.borrow()
        );
        assert_eq!(
            r.after.fds,
            r.before.fds,
            "{}: the server's descriptors did not return to baseline",
            r.kind.name()
        );
        for (what, b, a) in [
            ("VmRSS", r.before.vm_rss_kb, r.after.vm_rss_kb),
            ("Pss", r.before.pss_kb, r.after.pss_kb),
        ] {
            assert!(
                grew(b, a) <= MEMORY_BOUND_KB as i64,
                "{}: {what} grew from {b} to {a} KiB over {n} cycles",
                r.kind.name()
            );
        }
    }
    assert_eq!(end.fds, base.fds, "descriptors over the whole run");
    assert!(
        grew(base.vm_rss_kb, end.vm_rss_kb) <= MEMORY_BOUND_KB as i64
            && grew(base.pss_kb, end.pss_kb) <= MEMORY_BOUND_KB as i64,
        "memory over the whole run: VmRSS {} -> {} KiB, Pss {} -> {} KiB",
        base.vm_rss_kb,
        end.vm_rss_kb,
        base.pss_kb,
        end.pss_kb
    );
    // The hub forgot every subscriber and holds the same channels and messages.
    assert_eq!(
        (end_st.channels, end_st.stored_messages),
        (base_st.channels, base_st.stored_messages),
        "hub state changed: baseline {base_st:?}, end {end_st:?}"
    );
}

/// `GET /status` on a new connection with blocking I/O: status code and latency.
fn blocking_status(addr: SocketAddr, timeout: Duration) -> Result<(u16, Duration), String> {
    let started = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /status HTTP/1.1\r\nHost: soak\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let (code, _) = soak_support::read_response(&mut s).map_err(|e| format!("read: {e}"))?;
    Ok((code, started.elapsed()))
}

/// The EMFILE tests' server child: its descriptor limit.
const EMFILE_LIMIT: usize = 64;

/// Open twice [`EMFILE_LIMIT`] connections to `server` (so that many wait in the listen
/// backlog) and wait until its descriptor table is full and its log says `accept` failed with
/// `EMFILE`. Returns the flood, the server's open descriptors and its first such log line.
fn flood_until_emfile(server: &PubsubChild) -> (Vec<TcpStream>, usize, String) {
    let (addr, pid) = (server.addr, server.pid());
    let flood: Vec<TcpStream> = (0..2 * EMFILE_LIMIT)
        .map(|i| TcpStream::connect(addr).unwrap_or_else(|e| panic!("flood connect #{i}: {e}")))
        .collect();
    let emfile_line = || {
        server
            .log()
            .into_iter()
            .find(|l| l.contains("accept failed") && l.contains("os error 24"))
    };
    // Descriptors below the limit: the table is full when all of them are open. (The child may
    // also hold descriptors above the limit inherited from cargo, such as its jobserver pipe;
    // the limit only stops new ones.)
    let below_limit = || {
        fd_numbers(pid)
            .into_iter()
            .filter(|&fd| fd < EMFILE_LIMIT)
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while (below_limit() < EMFILE_LIMIT || emfile_line().is_none()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let open = fd_count(pid);
    assert_eq!(
        below_limit(),
        EMFILE_LIMIT,
        "the flood should fill the server's descriptor table ({open} open); its log: {:?}",
        server.log()
    );
    let line = emfile_line().unwrap_or_else(|| {
        panic!(
            "no `accept failed ... (os error 24)` in the log: {:?}",
            server.log()
        )
    });
    (flood, open, line)
}

#[test]
fn emfile_backs_off_and_recovers() {
    let _lock = soak_lock();
    const LIMIT: usize = EMFILE_LIMIT;
    const FLOOD: usize = 2 * LIMIT;
    let server = PubsubChild::start(
        &["--keep-alive-timeout", "60s", "--log", "warn"],
        Some(LIMIT as u64),
    );
    let (addr, pid) = (server.addr, server.pid());
    let base_fds = fd_count(pid);
    // A client connected before the flood: it must still be served while accept fails.
    let mut ctl = Ctl::new(addr);
    ctl.status();

    let (flood, exhausted_fds, first_line) = flood_until_emfile(&server);

    // While accept fails: CPU time and retries over 2 s.
    let (_, retries_before) = server.log_counts();
    let (cpu0, t0) = (cpu_time(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let (cpu1, wall) = (cpu_time(pid), t0.elapsed());
    let retries = server.log_counts().1 - retries_before;
    let share = (cpu1 - cpu0).as_secs_f64() / wall.as_secs_f64();

    // The client connected before the flood is served as usual.
    let started = Instant::now();
    let during = ctl.status();
    let existing_took = started.elapsed();
    // A new client meanwhile: its connection waits in the listen backlog, unanswered.
    let waiting = match blocking_status(addr, Duration::from_millis(300)) {
        Err(e) if e.contains("os error 11") => "no answer within 300 ms".to_string(),
        other => format!("{other:?}"),
    };

    drop(flood);
    drop(ctl);
    let served = blocking_status(addr, Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(5);
    while fd_count(pid) != base_fds && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let end_fds = fd_count(pid);

    println!();
    println!("emfile: iomux-pubsub child (pid {pid}) with RLIMIT_NOFILE {LIMIT}");
    println!(
        "  fds at start {base_fds}; with {FLOOD} flood connections {exhausted_fds} \
         (all {LIMIT} numbers below the limit in use)"
    );
    println!("  log: {first_line}");
    println!(
        "  over {:.2} s of EMFILE: CPU {:.1} ms ({:.1} % of a core), {retries} accept retries",
        wall.as_secs_f64(),
        (cpu1 - cpu0).as_secs_f64() * 1e3,
        share * 100.0
    );
    println!(
        "  a client connected before the flood, during it: GET /status in {existing_took:?} \
         ({} connections)",
        during.connections
    );
    println!("  a new client during the flood: {waiting} (it waits in the listen backlog)");
    println!("  a client after the flood hung up: {served:?}");
    println!("  fds after: {end_fds}");

    assert!(
        share < 0.20,
        "the accept loop spins while out of descriptors: {:.1} % CPU",
        share * 100.0
    );
    assert!(
        existing_took < Duration::from_secs(1),
        "a connection accepted before the flood waited {existing_took:?} during it"
    );
    // The backoff is 100 ms: about 20 attempts in 2 s, not thousands.
    assert!(
        retries <= 40,
        "{retries} accept retries in 2 s (backoff 100 ms)"
    );
    match served {
        Ok((200, took)) => assert!(
            took < Duration::from_secs(1),
            "served only after {took:?} once the flood hung up"
        ),
        other => panic!("a client after the flood: {other:?}"),
    }
    assert_eq!(end_fds, base_fds, "descriptors after the flood");
}

#[test]
fn torture_leaves_server_serving() {
    let _lock = soak_lock();
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the struct we own.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    #[allow(clippy::unnecessary_cast)] // rlim_t is u64 on Linux, not on every target
    let hard = lim.rlim_max as u64;
    // The server child and this process each need the mass phase's connections plus a margin.
    let connections = 15_000usize.min(hard.saturating_sub(1_000) as usize);
    if connections < 15_000 {
        eprintln!(
            "torture: the hard descriptor limit is {hard}: {connections} simultaneous \
             connections instead of 15,000"
        );
    }
    let mut server = PubsubChild::start(
        &[
            "--keep-alive-timeout",
            "2s",
            "--hold-timeout",
            "0",
            "--heartbeat",
            "0",
            "--log",
            "error",
        ],
        Some(hard),
    );
    let mut opts = torture::Options::new(server.addr);
    opts.connections = connections;
    opts.seconds = 5;
    opts.server_pid = Some(server.pid());
    opts.keep_alive_timeout = Duration::from_secs(2);
    // iomux-pubsub has no flag for it: Config's default.
    opts.head_timeout = iomux::Config::default().head_timeout;
    opts.slowloris = 300;
    opts.half_open = 600;
    let report = torture::run(&opts).unwrap_or_else(|e| panic!("torture: {e}"));
    println!("{}", report.render());
    server.assert_alive();
    assert!(
        report.passed(),
        "torture checks failed: {:#?}\n(the server's log: {:?})",
        report.failures(),
        server.log()
    );
}

/// Regression: while a request waits, the connection used to stop reading once `max_head_size`
/// pipelined bytes were buffered, so the client's FIN or RST was never seen, and with
/// `--hold-timeout 0` a client could pin server descriptors without keeping any of its own.
/// Such a client is now dropped.
#[test]
fn hang_up_noticed_behind_pipelined_overflow() {
    let _lock = soak_lock();
    let server = PubsubChild::start(
        &[
            "--keep-alive-timeout",
            "2s",
            "--hold-timeout",
            "0",
            "--log",
            "warn",
        ],
        None,
    );
    let (addr, pid) = (server.addr, server.pid());
    let mut ctl = Ctl::new(addr);
    let (_, base) = at_rest(&mut ctl, pid);
    let mut request = b"GET /sub/soak-zombie HTTP/1.1\r\nHost: soak\r\n\r\n".to_vec();
    request.extend_from_slice(b"GET /status HTTP/1.1\r\nHost: soak\r\nX-Pad: ");
    request.resize(request.len() + 16 * 1024, b'p');
    request.extend_from_slice(b"\r\n\r\n");
    let clients: Vec<TcpStream> = (0..20)
        .map(|i| {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.write_all(&request).expect("write");
            if i % 2 == 1 {
                torture::set_reset_on_close(&s);
            }
            s
        })
        .collect();
    // Each client is dropped by the server as soon as its pipelined bytes pass the limit.
    ctl.wait_for(
        "every over-pipelining client dropped",
        CYCLE_TIMEOUT,
        |st| st.long_poll == 0 && st.connections == 1,
    );
    for mut client in clients {
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut sink = Vec::new();
        // EOF or a reset: either way the server let go of the connection.
        let _ = client.read_to_end(&mut sink);
    }
    std::thread::sleep(Duration::from_millis(500));
    let st = ctl.status();
    let fds = fd_count(pid);
    println!(
        "after the hang-ups: {st:?}, {fds} fds (baseline {})",
        base.fds
    );
    assert_eq!(
        (st.long_poll, st.connections, fds),
        (0, 1, base.fds),
        "hang-ups behind 16 KiB of pipelined bytes were not noticed"
    );
}

/// Regression: a stop (SIGTERM, `StopHandle::stop`) while `accept` failed with `EMFILE` and
/// connections waited in the listen backlog made the accept loop spin without yielding (the
/// failing accept was polled before the stop, and the backoff no longer waited), so the
/// process took a core and never exited. The stop is now looked at first.
#[test]
fn stop_while_out_of_descriptors_exits() {
    let _lock = soak_lock();
    let mut server = PubsubChild::start(&["--log", "warn"], Some(EMFILE_LIMIT as u64));
    let pid = server.pid();
    let (flood, _, _) = flood_until_emfile(&server);
    server.terminate();
    std::thread::sleep(Duration::from_millis(200));
    let (lines0, cpu0, t0) = (server.log_counts().0, cpu_time(pid), Instant::now());
    let exited = server.exited_within(Duration::from_secs(2));
    let share = if exited.is_none() {
        (cpu_time(pid) - cpu0).as_secs_f64() / t0.elapsed().as_secs_f64()
    } else {
        0.0
    };
    let lines = server.log_counts().0 - lines0;
    drop(flood);
    println!(
        "after SIGTERM out of descriptors: exited {exited:?}; over the next 2 s {:.0} % CPU, \
         {lines} log lines",
        share * 100.0
    );
    assert!(
        exited.is_some() && lines < 100,
        "the server did not stop within 2 s of SIGTERM while out of descriptors \
         ({:.0} % CPU, {lines} log lines)",
        share * 100.0
    );
}
