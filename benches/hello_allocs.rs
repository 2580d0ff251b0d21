//! `hello_allocs`: heap allocations the server makes per `GET /hello` request, one request at a
//! time and pipelined.
//!
//! Run:
//!
//! ```sh
//! cargo bench --bench hello_allocs                 # 20,000 requests per mode
//! cargo bench --bench hello_allocs -- --n 100000
//! ```
//!
//! A counting global allocator (a wrapper over the system allocator) counts the calls made on
//! the server's thread only: the client runs on another thread and is not counted. The server is
//! the `hello` example's handler on an [`Acceptor`]; a client on one keep-alive connection sends
//! `--n` requests, first one at a time (each reply read before the next request is written), then
//! in pipelined batches of 16 written at once. After a warm-up, the counts over the measured
//! requests divided by their number are printed, then one line `RESULT {json}`.
//!
//! What counts as unavoidable per request: the request head (one allocation: the head bytes and
//! their field index are one compact request) and the reply's header map.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};

use iomux::http::StatusCode;
use iomux::{Acceptor, Handled, Reply, Request};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static REALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
/// Allocations by requested size (the last slot: larger), for the `--sizes` report.
static BY_SIZE: [AtomicU64; SIZES] = [const { AtomicU64::new(0) }; SIZES];
const SIZES: usize = 4097;

thread_local! {
    /// Set on the server's thread: only its allocations are counted.
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn counted() -> bool {
    COUNTED.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counted() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
            BY_SIZE[layout.size().min(SIZES - 1)].fetch_add(1, Ordering::Relaxed);
        }
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counted() {
            REALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const REQUEST: &[u8] = b"GET /hello HTTP/1.1\r\nHost: bench\r\nUser-Agent: hello_allocs\r\n\r\n";
const PIPELINE: usize = 16;
const WARM_UP: usize = 1000;

/// Counts per request over `n` requests.
#[derive(Debug)]
struct Figures {
    allocs: f64,
    reallocs: f64,
    bytes: f64,
}

fn by_size() -> Vec<u64> {
    BY_SIZE.iter().map(|c| c.load(Ordering::Relaxed)).collect()
}

/// Run `measure`, and count its allocations by size per request (warm-up included).
fn with_sizes(measure: impl FnOnce() -> Figures, n: usize) -> (Figures, Vec<(usize, f64)>) {
    let before = by_size();
    let figures = measure();
    let sizes = by_size()
        .iter()
        .zip(&before)
        .enumerate()
        .filter(|(_, (a, b))| *a > *b)
        .map(|(size, (a, b))| (size, (a - b) as f64 / (n + WARM_UP) as f64))
        .filter(|(_, per)| *per >= 0.01)
        .collect();
    (figures, sizes)
}

fn snapshot() -> [u64; 3] {
    [&ALLOCS, &REALLOCS, &BYTES].map(|c| c.load(Ordering::Relaxed))
}

/// Send `n` requests in batches of `depth`, reading every reply; the counts per request.
fn measure(stream: &mut TcpStream, n: usize, depth: usize) -> Figures {
    let exchange = |stream: &mut TcpStream, count: usize| {
        let batch = REQUEST.repeat(depth);
        let mut buf = vec![0; 64 * 1024];
        let mut sent = 0;
        while sent < count {
            stream.write_all(&batch).unwrap();
            sent += depth;
            let mut replies = 0;
            let mut pending = Vec::new();
            while replies < depth {
                let got = stream.read(&mut buf).unwrap();
                assert!(got > 0, "server closed the connection");
                pending.extend_from_slice(&buf[..got]);
                // Every reply ends with the body `Hello, world!`.
                while let Some(at) = find(&pending, b"Hello, world!") {
                    assert!(pending.starts_with(b"HTTP/1.1 200 OK\r\n"));
                    pending.drain(..at + 13);
                    replies += 1;
                }
            }
        }
    };
    exchange(stream, WARM_UP);
    let before = snapshot();
    exchange(stream, n);
    let after = snapshot();
    let per = |i: usize| (after[i] - before[i]) as f64 / n as f64;
    Figures {
        allocs: per(0),
        reallocs: per(1),
        bytes: per(2),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn main() {
    let mut n: usize = 20_000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--n" => n = args.next().and_then(|v| v.parse().ok()).expect("--n COUNT"),
            "--bench" => {}
            other => panic!("unknown argument {other}; usage: hello_allocs [--n COUNT]"),
        }
    }
    n = n.div_ceil(PIPELINE) * PIPELINE;
    // The acceptor is `!Send`: it is made on the server's thread, which hands back its address
    // and a stop handle.
    let (tx, rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        COUNTED.with(|c| c.set(true));
        let acceptor = Acceptor::bind("127.0.0.1:0", |req: &Request| -> Handled {
            match (req.method(), req.path().as_ref()) {
                ("GET" | "HEAD", "/hello") => {
                    Reply::with_type("text/plain", "Hello, world!").into()
                }
                _ => Reply::error(StatusCode::NOT_FOUND).into(),
            }
        })?;
        tx.send((acceptor.local_addr(), acceptor.stop_handle()))
            .unwrap();
        acceptor.run()
    });
    let (addr, stop) = rx.recv().expect("server started");
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).unwrap();
    let (single, sizes_single) = with_sizes(|| measure(&mut stream, n, 1), n);
    let (pipelined, sizes_pipelined) = with_sizes(|| measure(&mut stream, n, PIPELINE), n);
    drop(stream);
    stop.stop();
    server.join().unwrap().unwrap();

    println!("server-thread heap calls per GET /hello ({n} requests per mode)");
    println!(
        "{:<14} {:>8} {:>9} {:>12}",
        "mode", "allocs", "reallocs", "bytes"
    );
    for (mode, f) in [("one at a time", &single), ("pipelined 16", &pipelined)] {
        println!(
            "{mode:<14} {:>8.2} {:>9.2} {:>12.1}",
            f.allocs, f.reallocs, f.bytes
        );
    }
    for (mode, sizes) in [
        ("one at a time", &sizes_single),
        ("pipelined 16", &sizes_pipelined),
    ] {
        println!("allocations per request by requested size, {mode}:");
        for (size, per) in sizes {
            let size = if *size == SIZES - 1 {
                format!(">{}", SIZES - 2)
            } else {
                size.to_string()
            };
            println!("  {size:>6} B  {per:.2}");
        }
    }
    println!(
        "RESULT {{\"requests\":{n},\"single\":{{\"allocs\":{:.3},\"reallocs\":{:.3},\"bytes\":{:.1}}},\"pipelined16\":{{\"allocs\":{:.3},\"reallocs\":{:.3},\"bytes\":{:.1}}}}}",
        single.allocs, single.reallocs, single.bytes, pipelined.allocs, pipelined.reallocs, pipelined.bytes
    );
}
