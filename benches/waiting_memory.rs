//! `waiting_memory`: resident memory of an iomux server holding N deferred requests, against a
//! naive smol peer measured in the same run.
//!
//! Run:
//!
//! ```sh
//! cargo bench --bench waiting_memory -- --n 10000   # N waiting requests (at most 15000)
//! cargo bench --bench waiting_memory -- --quick     # N = 1000, a fast smoke run
//! ```
//!
//! Other flags: `--servers iomux,naive` (default both), `--settle-ms MS` (pause before each
//! memory reading, default 1000).
//!
//! What it does, for each server in turn: the bench re-executes itself with `--serve KIND`, so the
//! server runs alone in a child process (pinned to CPU 0; the load generator to CPU 1, when the
//! machine has two). The child prints its port. The parent then
//!
//! 1. reads the child's memory after startup and one warm-up request (baseline): `Pss`, `Pss_Anon`
//!    and `Rss` from `/proc/PID/smaps_rollup`, `VmRSS`, `VmHWM` and `Threads` from
//!    `/proc/PID/status`, open fds from `/proc/PID/fd`, and live malloc bytes, which the server
//!    itself reports from glibc's `mallinfo2` on `GET /status`;
//! 2. opens N client connections in batches of 500, each sending `GET /wait/{i}`, and after each
//!    batch waits until the server reports every request so far waiting (so the listen backlog is
//!    never overrun); settles, and reads memory again: (waiting − baseline) / N is the cost of one
//!    waiting request;
//! 3. `POST /release`: the server answers every waiter with `waited /wait/{i}`; every client
//!    must read `200` with its own body (no loss);
//! 4. reads memory with the N connections idle in keep-alive, and again after the clients closed
//!    them (does the memory come back?).
//!
//! The servers:
//!
//! - `iomux`: an [`Acceptor`] whose handler saves the request context (`with_saved_context!`)
//!   and hands it to an application actor that keeps every saved context in a `Vec` (a waiter
//!   list) until the release, when it answers each inside `with_restored_context!`.
//! - `naive`: the "naive async" design of DESIGN.md's budget table, written here in ~100 lines:
//!   one `LocalExecutor`, `Async<TcpStream>`, a task per connection that reads the request head
//!   into a 4 KiB buffer and keeps it, and an `async_channel::bounded(1)` per waiting request
//!   whose sender sits in a `Vec` of waiters; the task awaits the reply while watching the socket
//!   for hang-up. Both are driven by `async_io::block_on(ex.run(..))`.
//!
//! Where the bytes go: the bench installs a counting global allocator (a wrapper over the system
//! allocator that adds nothing to any allocation), and each server reports its live allocations
//! by requested size on `GET /allocs`; the report lists what one waiting request (and one idle
//! keep-alive connection) adds, by size, next to the totals.
//!
//! Output: a table, then one line `RESULT {json}` with every figure, including the ratio naive /
//! iomux of Pss per waiting request. Kernel memory of the sockets (a few KiB per connection on
//! loopback) is outside Pss and the same for both servers. The bench exits non-zero if any reply
//! was lost or wrong.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;
use async_io::{Async, Timer};
use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use iomux::http::StatusCode;
use iomux::{
    context, with_restored_context, with_saved_context, Acceptor, Handled, Reply, Request,
    SavedContext,
};

const USAGE: &str =
    "usage: waiting_memory [--n N | --quick] [--servers iomux,naive] [--settle-ms MS]";
const DEFAULT_N: usize = 10_000;
const QUICK_N: usize = 1_000;
/// The open-file limit is 20,000 per process, for the client as for the server.
const MAX_N: usize = 15_000;
/// Connections opened before waiting for the server to report them all waiting.
const BATCH: usize = 500;
const SERVER_CPU: usize = 0;
const CLIENT_CPU: usize = 1;
/// Listen backlog of the naive peer, as iomux's default.
const BACKLOG: i32 = 4096;
/// Longest wait for the server to reach a state (all of a batch waiting, all closed).
const PHASE_TIMEOUT: Duration = Duration::from_secs(60);
/// Read timeout of every client socket.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Counts live heap allocations by requested size, so the report can say where the bytes of a
/// waiting request go. A thin wrapper over the system allocator: it adds no memory to any
/// allocation (malloc sees the same requests), so Pss is measured as without it.
mod allocs {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    /// Sizes up to this are counted one by one; larger ones (growing tables) together.
    pub const EXACT: usize = 4096;
    static LIVE: [AtomicUsize; EXACT + 1] = [const { AtomicUsize::new(0) }; EXACT + 1];
    static BIG_COUNT: AtomicUsize = AtomicUsize::new(0);
    static BIG_BYTES: AtomicUsize = AtomicUsize::new(0);

    fn add(size: usize) {
        match LIVE.get(size) {
            Some(count) => {
                count.fetch_add(1, Relaxed);
            }
            None => {
                BIG_COUNT.fetch_add(1, Relaxed);
                BIG_BYTES.fetch_add(size, Relaxed);
            }
        }
    }

    fn sub(size: usize) {
        match LIVE.get(size) {
            Some(count) => {
                count.fetch_sub(1, Relaxed);
            }
            None => {
                BIG_COUNT.fetch_sub(1, Relaxed);
                BIG_BYTES.fetch_sub(size, Relaxed);
            }
        }
    }

    pub struct Counting;

    // SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
    // counters are bookkeeping only.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller's contract is passed on unchanged.
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                add(layout.size());
            }
            p
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller's contract is passed on unchanged.
            let p = unsafe { System.alloc_zeroed(layout) };
            if !p.is_null() {
                add(layout.size());
            }
            p
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: the caller's contract is passed on unchanged.
            unsafe { System.dealloc(ptr, layout) };
            sub(layout.size());
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: the caller's contract is passed on unchanged.
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                sub(layout.size());
                add(new_size);
            }
            p
        }
    }

    /// Live allocations: `size:count` for every size up to [`EXACT`] that has some, then
    /// `big:count:bytes` for the larger ones.
    pub fn report() -> String {
        let mut out = String::new();
        for (size, count) in LIVE.iter().enumerate() {
            let count = count.load(Relaxed);
            if count > 0 {
                out.push_str(&format!("{size}:{count} "));
            }
        }
        let (count, bytes) = (BIG_COUNT.load(Relaxed), BIG_BYTES.load(Relaxed));
        out.push_str(&format!("big:{count}:{bytes}\n"));
        out
    }
}

#[global_allocator]
static ALLOCATOR: allocs::Counting = allocs::Counting;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Iomux,
    Naive,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Iomux => "iomux",
            Kind::Naive => "naive",
        }
    }

    fn parse(name: &str) -> Option<Kind> {
        match name {
            "iomux" => Some(Kind::Iomux),
            "naive" => Some(Kind::Naive),
            _ => None,
        }
    }
}

struct Options {
    n: usize,
    servers: Vec<Kind>,
    settle: Duration,
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut opts = Options {
        n: DEFAULT_N,
        servers: vec![Kind::Iomux, Kind::Naive],
        settle: Duration::from_millis(1000),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| {
            args.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match arg.as_str() {
            "--n" => {
                let v = value("--n")?;
                opts.n = v.parse().map_err(|_| format!("--n: not a number: {v}"))?;
            }
            "--quick" => opts.n = QUICK_N,
            "--servers" => {
                let v = value("--servers")?;
                opts.servers = v
                    .split(',')
                    .map(|s| Kind::parse(s.trim()).ok_or_else(|| format!("unknown server {s}")))
                    .collect::<Result<_, _>>()?;
            }
            "--settle-ms" => {
                let v = value("--settle-ms")?;
                let ms = v
                    .parse()
                    .map_err(|_| format!("--settle-ms: not a number: {v}"))?;
                opts.settle = Duration::from_millis(ms);
            }
            // `cargo bench` passes `--bench` to harness-less benches.
            "--bench" => {}
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if opts.n == 0 || opts.n > MAX_N {
        return Err(format!(
            "--n must be between 1 and {MAX_N} (open-file limit)"
        ));
    }
    if opts.servers.is_empty() {
        return Err("no server to measure".into());
    }
    Ok(opts)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(pos) = args.iter().position(|a| a == "--serve") {
        let Some(kind) = args.get(pos + 1).and_then(|k| Kind::parse(k)) else {
            eprintln!("--serve needs iomux or naive");
            std::process::exit(2);
        };
        if let Err(e) = serve(kind) {
            eprintln!("waiting_memory {} server: {e}", kind.name());
            std::process::exit(1);
        }
        return;
    }
    let opts = match parse_options(&args) {
        Ok(opts) => opts,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("waiting_memory: {e}");
            }
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    match run(&opts) {
        Ok(true) => {}
        Ok(false) => {
            eprintln!("waiting_memory: some replies were lost or wrong (see above)");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("waiting_memory: {e}");
            std::process::exit(1);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Process helpers (Linux).

/// Pin the calling process to one CPU, if the machine has more than one. Returns whether it did.
fn pin_to_cpu(cpu: usize) -> bool {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 || cpu >= cpus {
        return false;
    }
    // SAFETY: `cpu_set_t` is plain data (all zeroes is the empty set); CPU_SET writes inside it
    // for `cpu` < CPU_SETSIZE; sched_setaffinity reads `size_of::<cpu_set_t>()` bytes from it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// The server child is killed when the bench process dies, however it dies.
fn die_with_parent() {
    // SAFETY: prctl(PR_SET_PDEATHSIG, sig) takes plain integers.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
    }
}

/// Live malloc bytes (in use, total obtained from the system), from glibc's `mallinfo2`.
fn heap_figures() -> (u64, u64) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 takes no arguments and returns a plain struct.
        let mi = unsafe { libc::mallinfo2() };
        (
            (mi.uordblks + mi.hblkhd) as u64,
            (mi.arena + mi.hblkhd) as u64,
        )
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        (0, 0)
    }
}

fn status_body(waiting: usize, held: usize, open: usize) -> String {
    let (heap, heap_total) = heap_figures();
    format!("waiting={waiting} held={held} open={open} heap={heap} heap_total={heap_total}\n")
}

fn announce(port: u16) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "PORT {port}")?;
    out.flush()
}

// ---------------------------------------------------------------------------------------------
// Serve mode (the child process).

fn serve(kind: Kind) -> io::Result<()> {
    die_with_parent();
    pin_to_cpu(SERVER_CPU);
    match kind {
        Kind::Iomux => serve_iomux(),
        Kind::Naive => serve_naive(),
    }
}

/// Messages of the iomux application actor.
enum Msg {
    /// A deferred `GET /wait/{i}`: keep it until the release.
    Wait(SavedContext),
    /// `POST /release`: answer every waiter, then this request.
    Release(SavedContext),
}

fn serve_iomux() -> io::Result<()> {
    let ex = LocalExecutor::new();
    let held = Rc::new(Cell::new(0usize));
    let app = {
        let held = held.clone();
        let mut waiters: Vec<SavedContext> = Vec::new();
        iomux::spawn_actor(&ex, 1024, move |msg: Msg| match msg {
            Msg::Wait(ctx) => {
                waiters.push(ctx);
                held.set(waiters.len());
            }
            Msg::Release(release) => {
                let (mut sent, mut gone) = (0usize, 0usize);
                for ctx in std::mem::take(&mut waiters) {
                    let ok = with_restored_context!(ctx, {
                        let body = format!("waited {}\n", context::request().path());
                        context::send_reply(Reply::text(body)).is_ok()
                    });
                    if ok {
                        sent += 1;
                    } else {
                        gone += 1;
                    }
                }
                held.set(0);
                let body = format!("released {sent} gone {gone}\n");
                if release.send_reply(Reply::text(body)).is_err() {
                    eprintln!("iomux server: release request gone");
                }
            }
        })
    };
    let acceptor =
        Acceptor::builder()
            .listen("127.0.0.1:0")
            .bind(move |req: &Request| -> Handled {
                let path = req.path();
                if path.starts_with("/wait/") {
                    app.do_send(Msg::Wait(with_saved_context!()));
                    return Handled::Deferred;
                }
                match (req.method(), path.as_ref()) {
                    ("GET", "/status") => {
                        let acceptor = context::acceptor();
                        let body = status_body(
                            acceptor.waiting_requests(),
                            held.get(),
                            acceptor.open_connections(),
                        );
                        Reply::text(body).into()
                    }
                    ("POST", "/release") => {
                        app.do_send(Msg::Release(with_saved_context!()));
                        Handled::Deferred
                    }
                    ("GET", "/allocs") => Reply::text(allocs::report()).into(),
                    _ => Reply::error(StatusCode::NOT_FOUND).into(),
                }
            })?;
    announce(acceptor.local_addr().port())?;
    async_io::block_on(ex.run(acceptor.serve(&ex)))
}

/// State of the naive peer: the waiter list and two counters.
#[derive(Default)]
struct Naive {
    /// Waiting requests: the path, and the sending end of the request's reply channel.
    waiters: RefCell<Vec<(String, async_channel::Sender<String>)>>,
    /// Connection tasks waiting for their reply.
    waiting: Cell<usize>,
    open: Cell<usize>,
}

/// Counts while alive.
struct Counted<'a>(&'a Cell<usize>);

impl<'a> Counted<'a> {
    fn new(count: &'a Cell<usize>) -> Self {
        count.set(count.get() + 1);
        Counted(count)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

fn bind_listener(backlog: i32) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

fn serve_naive() -> io::Result<()> {
    let ex = LocalExecutor::new();
    let listener = Async::new(bind_listener(BACKLOG)?)?;
    announce(listener.get_ref().local_addr()?.port())?;
    let state = Rc::new(Naive::default());
    async_io::block_on(ex.run(async {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.get_ref().set_nodelay(true);
                    ex.spawn(naive_conn(stream, state.clone())).detach();
                }
                Err(e) => {
                    eprintln!("naive server: accept: {e}");
                    Timer::after(Duration::from_millis(100)).await;
                }
            }
        }
    }))
}

async fn naive_conn(stream: Async<TcpStream>, state: Rc<Naive>) {
    let _open = Counted::new(&state.open);
    let _ = naive_serve(&stream, &state).await;
}

/// What ended a naive wait.
enum Woke {
    Reply(Option<String>),
    Read(io::Result<usize>),
}

async fn naive_serve(stream: &Async<TcpStream>, state: &Naive) -> io::Result<()> {
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        let end = loop {
            if let Some(i) = find(&buf[..len], b"\r\n\r\n") {
                break i + 4;
            }
            if len == buf.len() {
                return Ok(());
            }
            let mut s = stream;
            let n = s.read(&mut buf[len..]).await?;
            if n == 0 {
                return Ok(());
            }
            len += n;
        };
        let (is_post, path) = {
            let line = buf[..end].split(|&b| b == b'\r').next().unwrap_or_default();
            let mut parts = line.split(|&b| b == b' ');
            let method = parts.next().unwrap_or_default();
            let target = parts.next().unwrap_or_default();
            (
                method == b"POST",
                String::from_utf8_lossy(target).into_owned(),
            )
        };
        // Requests carry no body here; keep what follows the head (a pipelined request).
        buf.copy_within(end..len, 0);
        len -= end;
        let (status, body) = if path.starts_with("/wait/") {
            let (tx, rx) = async_channel::bounded(1);
            state.waiters.borrow_mut().push((path, tx));
            let _waiting = Counted::new(&state.waiting);
            let body = loop {
                let room = &mut buf[len..];
                let reply = async { Woke::Reply(rx.recv().await.ok()) };
                let hangup = async {
                    if room.is_empty() {
                        future::pending::<()>().await;
                    }
                    let mut s = stream;
                    Woke::Read(s.read(room).await)
                };
                let woke = future::or(reply, hangup).await;
                match woke {
                    Woke::Reply(Some(body)) => break body,
                    // The waiter list dropped the request, or the client hung up.
                    Woke::Reply(None) | Woke::Read(Ok(0) | Err(_)) => return Ok(()),
                    Woke::Read(Ok(n)) => len += n,
                }
            };
            ("200 OK", body)
        } else if path == "/status" {
            let held = state.waiters.borrow().len();
            let body = status_body(state.waiting.get(), held, state.open.get());
            ("200 OK", body)
        } else if path == "/allocs" {
            ("200 OK", allocs::report())
        } else if is_post && path == "/release" {
            let waiters = std::mem::take(&mut *state.waiters.borrow_mut());
            let (mut sent, mut gone) = (0usize, 0usize);
            for (path, tx) in waiters {
                if tx.try_send(format!("waited {path}\n")).is_ok() {
                    sent += 1;
                } else {
                    gone += 1;
                }
            }
            ("200 OK", format!("released {sent} gone {gone}\n"))
        } else {
            ("404 Not Found", "404 Not Found\n".to_string())
        };
        let reply = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut s = stream;
        s.write_all(reply.as_bytes()).await?;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Size of the naive peer's connection future (its task holds this plus a header).
fn naive_future_size() -> io::Result<usize> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let stream = Async::new(TcpStream::connect(listener.local_addr()?)?)?;
    let future = naive_conn(stream, Rc::new(Naive::default()));
    Ok(std::mem::size_of_val(&future))
}

// ---------------------------------------------------------------------------------------------
// The load generator (the parent process).

/// A server child; killed (by its PID) and reaped when dropped, also on error paths.
struct Server {
    kind: Kind,
    child: Child,
    port: u16,
    _stdout: BufReader<ChildStdout>,
}

impl Server {
    fn start(kind: Kind) -> Result<Server, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut child = Command::new(exe)
            .args(["--serve", kind.name()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting the {} server: {e}", kind.name()))?;
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut server = Server {
            kind,
            child,
            port: 0,
            _stdout: stdout,
        };
        let mut line = String::new();
        server
            ._stdout
            .read_line(&mut line)
            .map_err(|e| format!("reading the {} server's port: {e}", kind.name()))?;
        server.port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("{} server announced no port ({line:?})", kind.name()))?;
        Ok(server)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Add the child's exit status to an error, if it has exited.
    fn explain(&mut self, e: String) -> String {
        match self.child.try_wait() {
            Ok(Some(status)) => format!("{e} (the {} server exited: {status})", self.kind.name()),
            _ => e,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Memory figures of a process, in KiB, and its thread and fd counts.
#[derive(Clone, Copy, Default, Debug)]
struct Mem {
    pss_kb: u64,
    pss_anon_kb: u64,
    rss_kb: u64,
    vm_rss_kb: u64,
    vm_hwm_kb: u64,
    threads: u64,
    fds: u64,
}

fn field_kb(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

fn read_mem(pid: u32) -> Result<Mem, String> {
    let read = |file: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/{file}"))
            .map_err(|e| format!("/proc/{pid}/{file}: {e}"))
    };
    let rollup = read("smaps_rollup")?;
    let status = read("status")?;
    let missing = |what: &str| format!("/proc/{pid}: no {what}");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map_err(|e| format!("/proc/{pid}/fd: {e}"))?
        .count() as u64;
    Ok(Mem {
        pss_kb: field_kb(&rollup, "Pss").ok_or_else(|| missing("Pss"))?,
        pss_anon_kb: field_kb(&rollup, "Pss_Anon").unwrap_or(0),
        rss_kb: field_kb(&rollup, "Rss").ok_or_else(|| missing("Rss"))?,
        vm_rss_kb: field_kb(&status, "VmRSS").ok_or_else(|| missing("VmRSS"))?,
        vm_hwm_kb: field_kb(&status, "VmHWM").ok_or_else(|| missing("VmHWM"))?,
        threads: field_kb(&status, "Threads").unwrap_or(0),
        fds,
    })
}

/// What a server reports on `GET /status`.
#[derive(Clone, Copy, Default, Debug)]
struct Status {
    /// Requests waiting for their deferred reply (connection side).
    waiting: usize,
    /// Entries in the application's waiter list.
    held: usize,
    open: usize,
    /// Live malloc bytes.
    heap: u64,
    heap_total: u64,
}

fn parse_status(body: &str) -> Result<Status, String> {
    let mut st = Status::default();
    for pair in body.split_whitespace() {
        let (k, v) = pair.split_once('=').ok_or(format!("bad status {body:?}"))?;
        let v: u64 = v.parse().map_err(|_| format!("bad status {body:?}"))?;
        match k {
            "waiting" => st.waiting = v as usize,
            "held" => st.held = v as usize,
            "open" => st.open = v as usize,
            "heap" => st.heap = v,
            "heap_total" => st.heap_total = v,
            _ => {}
        }
    }
    Ok(st)
}

/// Read one response with a `Content-Length` body: status code and body.
fn read_response(s: &mut TcpStream) -> io::Result<(u16, String)> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let mut fill = |buf: &mut Vec<u8>| -> io::Result<()> {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        Ok(())
    };
    let end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        fill(&mut buf)?;
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| invalid("non-UTF-8 head"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| invalid("bad status line"))?;
    let len: usize = head
        .lines()
        .skip(1)
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .ok_or_else(|| invalid("no Content-Length"))?;
    let start = end + 4;
    while buf.len() < start + len {
        fill(&mut buf)?;
    }
    Ok((
        status,
        String::from_utf8_lossy(&buf[start..start + len]).into_owned(),
    ))
}

/// The control connection: status polls and the release, on one keep-alive connection.
struct Ctl {
    addr: SocketAddr,
    stream: Option<TcpStream>,
}

impl Ctl {
    fn new(addr: SocketAddr) -> Ctl {
        Ctl { addr, stream: None }
    }

    fn exchange(&mut self, request: &str) -> io::Result<(u16, String)> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(READ_TIMEOUT))?;
            self.stream = Some(s);
        }
        let s = self.stream.as_mut().expect("connected");
        let result = s
            .write_all(request.as_bytes())
            .and_then(|()| read_response(s));
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    fn get(&mut self, path: &str) -> Result<String, String> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        // One retry: the server may have closed the idle control connection (keep-alive timeout).
        let (code, body) = self
            .exchange(&request)
            .or_else(|_| self.exchange(&request))
            .map_err(|e| format!("GET {path}: {e}"))?;
        if code != 200 {
            return Err(format!("GET {path}: {code} {body}"));
        }
        Ok(body)
    }

    fn status(&mut self) -> Result<Status, String> {
        parse_status(&self.get("/status")?)
    }

    fn release(&mut self) -> Result<String, String> {
        let request = "POST /release HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
        match self.exchange(request) {
            Ok((200, body)) => Ok(body.trim().to_string()),
            Ok((code, body)) => Err(format!("POST /release: {code} {body}")),
            Err(e) => Err(format!("POST /release: {e}")),
        }
    }

    fn wait_for(
        &mut self,
        what: &str,
        mut done: impl FnMut(&Status) -> bool,
    ) -> Result<Status, String> {
        let deadline = Instant::now() + PHASE_TIMEOUT;
        loop {
            let st = self.status()?;
            if done(&st) {
                return Ok(st);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "timed out waiting for {what}; server reports {st:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Live heap allocations of a server by requested size (`GET /allocs`).
#[derive(Clone, Default, Debug)]
struct Allocs {
    by_size: BTreeMap<usize, i64>,
    big_count: i64,
    big_bytes: i64,
}

fn parse_allocs(body: &str) -> Result<Allocs, String> {
    let bad = || format!("bad allocation report {:?}", &body[..body.len().min(80)]);
    let mut allocs = Allocs::default();
    for item in body.split_whitespace() {
        let parts: Vec<&str> = item.split(':').collect();
        match parts[..] {
            ["big", count, bytes] => {
                allocs.big_count = count.parse().map_err(|_| bad())?;
                allocs.big_bytes = bytes.parse().map_err(|_| bad())?;
            }
            [size, count] => {
                let size = size.parse().map_err(|_| bad())?;
                allocs
                    .by_size
                    .insert(size, count.parse().map_err(|_| bad())?);
            }
            _ => return Err(bad()),
        }
    }
    Ok(allocs)
}

/// Size of the glibc malloc chunk that serves a request of `size` bytes (8-byte header, 16-byte
/// alignment, 32 bytes at least).
fn malloc_chunk(size: usize) -> usize {
    ((size + 8 + 15) & !15).max(32)
}

/// Live allocations added per request between two moments.
struct Breakdown {
    /// Requested size, allocations per request; the frequent ones, most bytes first.
    rows: Vec<(usize, f64)>,
    /// Chunk bytes per request of the sizes not listed.
    rest_bytes: f64,
    /// Bytes per request of allocations over 4 KiB (tables that grow by doubling).
    big_bytes: f64,
}

impl Breakdown {
    fn new(base: &Allocs, at: &Allocs, n: usize) -> Breakdown {
        let n = n as f64;
        let sizes: BTreeSet<usize> = base
            .by_size
            .keys()
            .chain(at.by_size.keys())
            .copied()
            .collect();
        let mut rows = Vec::new();
        let mut rest_bytes = 0.0;
        for size in sizes {
            let count = |a: &Allocs| a.by_size.get(&size).copied().unwrap_or(0) as f64;
            let per = (count(at) - count(base)) / n;
            if per.abs() >= 0.05 {
                rows.push((size, per));
            } else {
                rest_bytes += per * malloc_chunk(size) as f64;
            }
        }
        rows.sort_by(|a, b| {
            let bytes = |r: &(usize, f64)| r.1 * malloc_chunk(r.0) as f64;
            bytes(b).total_cmp(&bytes(a))
        });
        Breakdown {
            rows,
            rest_bytes,
            big_bytes: (at.big_bytes - base.big_bytes) as f64 / n,
        }
    }

    fn chunk_total(&self) -> f64 {
        let listed: f64 = self
            .rows
            .iter()
            .map(|&(size, per)| per * malloc_chunk(size) as f64)
            .sum();
        listed + self.rest_bytes + self.big_bytes
    }

    fn json(&self) -> String {
        let rows: Vec<String> = self
            .rows
            .iter()
            .map(|&(size, per)| {
                json_obj(&[
                    ("size", size.to_string()),
                    ("per_request", format!("{per:.3}")),
                    ("chunk_bytes", json_num(per * malloc_chunk(size) as f64)),
                ])
            })
            .collect();
        json_obj(&[
            ("by_size", format!("[{}]", rows.join(","))),
            ("other_chunk_bytes", json_num(self.rest_bytes)),
            ("over_4k_bytes", json_num(self.big_bytes)),
            ("chunk_bytes_total", json_num(self.chunk_total())),
        ])
    }
}

/// Server-reported state and process memory at one moment.
#[derive(Clone, Default, Debug)]
struct Snap {
    st: Status,
    mem: Mem,
    allocs: Allocs,
}

fn snapshot(ctl: &mut Ctl, pid: u32, settle: Duration) -> Result<Snap, String> {
    std::thread::sleep(settle);
    let st = ctl.status()?;
    let mem = read_mem(pid)?;
    let allocs = parse_allocs(&ctl.get("/allocs")?)?;
    Ok(Snap { st, mem, allocs })
}

/// Everything measured on one server.
struct Outcome {
    kind: Kind,
    n: usize,
    base: Snap,
    waiting: Snap,
    released: Snap,
    closed: Snap,
    connect_ms: f64,
    release_ms: f64,
    release_body: String,
    replies_ok: usize,
    replies_bad: usize,
    reply_errors: usize,
    samples: Vec<String>,
}

impl Outcome {
    /// Bytes per request of a KiB figure's growth over the baseline.
    fn per_req_kb(&self, at: &Snap, field: impl Fn(&Mem) -> u64) -> f64 {
        (field(&at.mem) as f64 - field(&self.base.mem) as f64) * 1024.0 / self.n as f64
    }

    fn heap_per_req(&self, at: &Snap) -> f64 {
        (at.st.heap as f64 - self.base.st.heap as f64) / self.n as f64
    }

    fn pss_per_waiting(&self) -> f64 {
        self.per_req_kb(&self.waiting, |m| m.pss_kb)
    }

    fn breakdown(&self, at: &Snap) -> Breakdown {
        Breakdown::new(&self.base.allocs, &at.allocs, self.n)
    }

    fn lossless(&self) -> bool {
        self.replies_ok == self.n && self.replies_bad == 0 && self.reply_errors == 0
    }
}

fn measure(kind: Kind, n: usize, settle: Duration) -> Result<Outcome, String> {
    let mut server = Server::start(kind)?;
    let result = scenario(&server, n, settle);
    result.map_err(|e| server.explain(e))
}

fn scenario(server: &Server, n: usize, settle: Duration) -> Result<Outcome, String> {
    let (pid, addr) = (server.pid(), server.addr());
    let mut ctl = Ctl::new(addr);
    ctl.status()?; // warm-up: the control connection and the first request are in the baseline
    let base = snapshot(&mut ctl, pid, settle)?;

    let started = Instant::now();
    let mut clients: Vec<TcpStream> = Vec::with_capacity(n);
    while clients.len() < n {
        let batch_end = (clients.len() + BATCH).min(n);
        for i in clients.len()..batch_end {
            let mut s = TcpStream::connect(addr).map_err(|e| format!("connect #{i}: {e}"))?;
            s.set_nodelay(true).map_err(|e| e.to_string())?;
            let request = format!("GET /wait/{i} HTTP/1.1\r\nHost: x\r\n\r\n");
            s.write_all(request.as_bytes())
                .map_err(|e| format!("request #{i}: {e}"))?;
            clients.push(s);
        }
        let want = clients.len();
        ctl.wait_for(&format!("{want} waiting requests"), |st| {
            st.waiting >= want && st.held >= want
        })?;
    }
    let connect_ms = started.elapsed().as_secs_f64() * 1e3;
    let waiting = snapshot(&mut ctl, pid, settle)?;
    if waiting.st.waiting != n || waiting.st.held != n {
        return Err(format!(
            "expected {n} waiting, server reports {:?}",
            waiting.st
        ));
    }

    let started = Instant::now();
    let release_body = ctl.release()?;
    let (mut replies_ok, mut replies_bad, mut reply_errors) = (0, 0, 0);
    let mut samples = Vec::new();
    for (i, s) in clients.iter_mut().enumerate() {
        let expected = format!("waited /wait/{i}\n");
        let got = s
            .set_read_timeout(Some(READ_TIMEOUT))
            .and_then(|()| read_response(s));
        match got {
            Ok((200, body)) if body == expected => replies_ok += 1,
            Ok((code, body)) => {
                replies_bad += 1;
                if samples.len() < 5 {
                    samples.push(format!("#{i}: {code} {body:?}"));
                }
            }
            Err(e) => {
                reply_errors += 1;
                if samples.len() < 5 {
                    samples.push(format!("#{i}: {e}"));
                }
            }
        }
    }
    let release_ms = started.elapsed().as_secs_f64() * 1e3;
    ctl.wait_for("no waiting request", |st| st.waiting == 0 && st.held == 0)?;
    let released = snapshot(&mut ctl, pid, settle)?;

    drop(clients);
    ctl.wait_for("the clients' connections to close", |st| st.open <= 1)?;
    let closed = snapshot(&mut ctl, pid, settle)?;

    Ok(Outcome {
        kind: server.kind,
        n,
        base,
        waiting,
        released,
        closed,
        connect_ms,
        release_ms,
        release_body,
        replies_ok,
        replies_bad,
        reply_errors,
        samples,
    })
}

// ---------------------------------------------------------------------------------------------
// Report.

fn json_num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.1}")
    } else {
        "null".into()
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_obj(fields: &[(&str, String)]) -> String {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}:{v}", json_str(k)))
        .collect();
    format!("{{{}}}", body.join(","))
}

fn snap_json(s: &Snap) -> String {
    json_obj(&[
        ("pss_kb", s.mem.pss_kb.to_string()),
        ("pss_anon_kb", s.mem.pss_anon_kb.to_string()),
        ("rss_kb", s.mem.rss_kb.to_string()),
        ("vm_rss_kb", s.mem.vm_rss_kb.to_string()),
        ("vm_hwm_kb", s.mem.vm_hwm_kb.to_string()),
        ("threads", s.mem.threads.to_string()),
        ("fds", s.mem.fds.to_string()),
        ("heap_bytes", s.st.heap.to_string()),
        ("heap_total_bytes", s.st.heap_total.to_string()),
        ("waiting", s.st.waiting.to_string()),
        ("held", s.st.held.to_string()),
        ("open", s.st.open.to_string()),
    ])
}

fn outcome_json(o: &Outcome) -> String {
    let samples: Vec<String> = o.samples.iter().map(|s| json_str(s)).collect();
    json_obj(&[
        ("waiting_reached", o.waiting.st.waiting.to_string()),
        ("connect_ms", json_num(o.connect_ms)),
        ("release_ms", json_num(o.release_ms)),
        ("release_reply", json_str(&o.release_body)),
        ("replies_ok", o.replies_ok.to_string()),
        ("replies_bad", o.replies_bad.to_string()),
        ("reply_errors", o.reply_errors.to_string()),
        ("error_samples", format!("[{}]", samples.join(","))),
        ("pss_per_waiting_bytes", json_num(o.pss_per_waiting())),
        (
            "pss_anon_per_waiting_bytes",
            json_num(o.per_req_kb(&o.waiting, |m| m.pss_anon_kb)),
        ),
        (
            "rss_per_waiting_bytes",
            json_num(o.per_req_kb(&o.waiting, |m| m.rss_kb)),
        ),
        (
            "heap_per_waiting_bytes",
            json_num(o.heap_per_req(&o.waiting)),
        ),
        (
            "pss_per_conn_after_release_bytes",
            json_num(o.per_req_kb(&o.released, |m| m.pss_kb)),
        ),
        (
            "heap_per_conn_after_release_bytes",
            json_num(o.heap_per_req(&o.released)),
        ),
        (
            "pss_per_conn_after_close_bytes",
            json_num(o.per_req_kb(&o.closed, |m| m.pss_kb)),
        ),
        (
            "heap_per_conn_after_close_bytes",
            json_num(o.heap_per_req(&o.closed)),
        ),
        (
            "fds_per_waiting",
            json_num((o.waiting.mem.fds as f64 - o.base.mem.fds as f64) / o.n as f64),
        ),
        ("allocs_per_waiting", o.breakdown(&o.waiting).json()),
        (
            "allocs_per_conn_after_release",
            o.breakdown(&o.released).json(),
        ),
        (
            "phases",
            json_obj(&[
                ("base", snap_json(&o.base)),
                ("waiting", snap_json(&o.waiting)),
                ("released", snap_json(&o.released)),
                ("closed", snap_json(&o.closed)),
            ]),
        ),
    ])
}

fn row(label: &str, cells: &[String]) {
    let mut line = format!("{label:<44}");
    for c in cells {
        line.push_str(&format!("{c:>16}"));
    }
    println!("{}", line.trim_end());
}

fn report(
    opts: &Options,
    pinned: bool,
    future_size: usize,
    context_size: usize,
    naive_size: usize,
    outcomes: &[Outcome],
) {
    let per = |f: &dyn Fn(&Outcome) -> String| outcomes.iter().map(f).collect::<Vec<_>>();
    let b = |x: f64| format!("{x:.0}");
    println!();
    println!("waiting_memory: memory of a server process holding N deferred requests");
    println!(
        "  N = {} per server; {}",
        opts.n,
        if pinned {
            format!("server child on CPU {SERVER_CPU}, client on CPU {CLIENT_CPU}")
        } else {
            "not pinned (fewer than 2 CPUs)".to_string()
        }
    );
    println!("  Pss/Rss: /proc/PID/smaps_rollup of the server child alone; heap: its glibc mallinfo2 (in-use bytes)");
    println!(
        "  iomux connection future {future_size} B, SavedContext {context_size} B; naive connection future {naive_size} B"
    );
    println!();
    row("", &per(&|o: &Outcome| o.kind.name().to_string()));
    row(
        "waiting requests reached",
        &per(&|o| o.waiting.st.waiting.to_string()),
    );
    row("connect N + all waiting (ms)", &per(&|o| b(o.connect_ms)));
    row(
        "Pss base -> N waiting (KiB)",
        &per(&|o| format!("{} -> {}", o.base.mem.pss_kb, o.waiting.mem.pss_kb)),
    );
    row(
        "heap base -> N waiting (KiB)",
        &per(&|o| format!("{} -> {}", o.base.st.heap / 1024, o.waiting.st.heap / 1024)),
    );
    println!("bytes per waiting request");
    row("  Pss", &per(&|o| b(o.pss_per_waiting())));
    row(
        "  Pss_Anon",
        &per(&|o| b(o.per_req_kb(&o.waiting, |m| m.pss_anon_kb))),
    );
    row(
        "  Rss",
        &per(&|o| b(o.per_req_kb(&o.waiting, |m| m.rss_kb))),
    );
    row(
        "  heap in use (malloc)",
        &per(&|o| b(o.heap_per_req(&o.waiting))),
    );
    row(
        "fds base / waiting",
        &per(&|o| format!("{} / {}", o.base.mem.fds, o.waiting.mem.fds)),
    );
    row("threads", &per(&|o| o.waiting.mem.threads.to_string()));
    row(
        "VmHWM while waiting (KiB)",
        &per(&|o| o.waiting.mem.vm_hwm_kb.to_string()),
    );
    println!("release (POST /release answers all N)");
    row(
        "  replies 200 + right body / bad / errors",
        &per(&|o| format!("{}/{}/{}", o.replies_ok, o.replies_bad, o.reply_errors)),
    );
    row(
        "  release -> all N replies read (ms)",
        &per(&|o| b(o.release_ms)),
    );
    println!("after release, N connections idle in keep-alive: bytes per connection over base");
    row(
        "  Pss",
        &per(&|o| b(o.per_req_kb(&o.released, |m| m.pss_kb))),
    );
    row("  heap in use", &per(&|o| b(o.heap_per_req(&o.released))));
    println!("after the clients closed: bytes per former connection over base");
    row("  Pss", &per(&|o| b(o.per_req_kb(&o.closed, |m| m.pss_kb))));
    row("  heap in use", &per(&|o| b(o.heap_per_req(&o.closed))));
    row("  fds", &per(&|o| o.closed.mem.fds.to_string()));
    for o in outcomes {
        for s in &o.samples {
            println!("  {} error sample: {s}", o.kind.name());
        }
    }
    println!();
    println!("where the heap goes: live allocations over base per request, by requested size");
    println!(
        "(count per request; bytes = count x glibc chunk size = requested + 8, rounded up to 16)"
    );
    for o in outcomes {
        for (phase, at) in [
            ("waiting", &o.waiting),
            ("idle keep-alive after release", &o.released),
        ] {
            let d = o.breakdown(at);
            println!(
                "  {} {phase}: {:.0} B/request in chunks (mallinfo2 says {:.0})",
                o.kind.name(),
                d.chunk_total(),
                o.heap_per_req(at)
            );
            for &(size, per) in &d.rows {
                println!(
                    "    {size:>6} B x {per:>5.2} = {:>6.0} B",
                    per * malloc_chunk(size) as f64
                );
            }
            println!("    other sizes      = {:>6.0} B", d.rest_bytes);
            println!(
                "    over 4 KiB       = {:>6.0} B  (tables grown by doubling)",
                d.big_bytes
            );
        }
    }

    let find = |k: Kind| outcomes.iter().find(|o| o.kind == k);
    let (ratio_pss, ratio_heap) = match (find(Kind::Iomux), find(Kind::Naive)) {
        (Some(i), Some(n)) => {
            let pss = n.pss_per_waiting() / i.pss_per_waiting();
            let heap = n.heap_per_req(&n.waiting) / i.heap_per_req(&i.waiting);
            println!();
            println!(
                "ratio naive / iomux, bytes per waiting request: Pss {pss:.2}x, heap {heap:.2}x"
            );
            (pss, heap)
        }
        _ => (f64::NAN, f64::NAN),
    };
    let servers: Vec<(&str, String)> = outcomes
        .iter()
        .map(|o| (o.kind.name(), outcome_json(o)))
        .collect();
    let result = json_obj(&[
        ("bench", json_str("waiting_memory")),
        ("n", opts.n.to_string()),
        ("pinned", pinned.to_string()),
        ("server_cpu", SERVER_CPU.to_string()),
        ("client_cpu", CLIENT_CPU.to_string()),
        ("connection_future_size", future_size.to_string()),
        ("saved_context_size", context_size.to_string()),
        ("naive_future_size", naive_size.to_string()),
        ("servers", json_obj(&servers)),
        (
            "ratio_pss_per_waiting_naive_over_iomux",
            json_ratio(ratio_pss),
        ),
        (
            "ratio_heap_per_waiting_naive_over_iomux",
            json_ratio(ratio_heap),
        ),
    ]);
    println!("RESULT {result}");
}

fn json_ratio(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "null".into()
    }
}

fn run(opts: &Options) -> Result<bool, String> {
    let pinned = pin_to_cpu(CLIENT_CPU);
    let future_size = iomux::__measure::connection_future_size();
    let context_size = iomux::__measure::saved_context_size();
    let naive_size = naive_future_size().map_err(|e| format!("naive future size: {e}"))?;
    let mut outcomes = Vec::new();
    for &kind in &opts.servers {
        eprintln!(
            "waiting_memory: {} with {} waiting requests ...",
            kind.name(),
            opts.n
        );
        outcomes.push(measure(kind, opts.n, opts.settle)?);
    }
    report(
        opts,
        pinned,
        future_size,
        context_size,
        naive_size,
        &outcomes,
    );
    Ok(outcomes.iter().all(Outcome::lossless))
}
