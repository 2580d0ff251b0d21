//! `workers`: the hello server on several cores, one event loop per worker thread.
//!
//! Shows: [`iomux::AcceptorBuilder::workers`] and
//! [`iomux::AcceptorBuilder::bind_workers`]: n threads (`iomux-worker-0`, ...), each with its
//! own executor, its own listening socket on the one port (`SO_REUSEPORT`; the kernel spreads
//! connections over them) and its own handler, built on that thread from the
//! [`iomux::Worker`] it is given. The handlers share one thing, a hit counter, the way workers
//! share state: something `Send + Sync` (here an `Arc<AtomicU64>`; for more, a channel to an
//! owner whose messages carry `Send` data). Everything else stays single-threaded per worker.
//!
//! Run:
//!
//! ```sh
//! cargo run --release --example workers -- --listen 127.0.0.1:8080 --workers 2
//! ```
//!
//! Then, from a second terminal:
//!
//! ```sh
//! curl -i http://127.0.0.1:8080/hello      # 200 text/plain "Hello, world!"
//! curl http://127.0.0.1:8080/worker        # "worker 1 of 2": which worker answered (try a few)
//! curl http://127.0.0.1:8080/hits          # "hits: 3": requests to every worker, counted together
//! curl -i http://127.0.0.1:8080/elsewhere  # 404
//! ```
//!
//! `--workers 0` (the default) starts one worker per core.

use std::process::exit;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use iomux::http::StatusCode;
use iomux::{Acceptor, Handled, Reply, Request, Worker};

const USAGE: &str = "usage: workers [--listen HOST:PORT] [--workers N]";

fn main() -> std::io::Result<()> {
    let (addr, workers) = args();
    let hits = Arc::new(AtomicU64::new(0));

    let workers = Acceptor::builder()
        .listen(addr)
        .workers(workers)
        .bind_workers(move |worker: &Worker<'_>| {
            // On the worker's own thread: this handler serves this worker's connections only.
            let whoami = format!("worker {} of {}\n", worker.index(), worker.count());
            let hits = hits.clone();
            move |req: &Request| -> Handled {
                let hits = hits.fetch_add(1, Ordering::Relaxed) + 1;
                match (req.method(), req.path().as_ref()) {
                    ("GET" | "HEAD", "/hello") => {
                        Reply::with_type("text/plain", "Hello, world!").into()
                    }
                    ("GET" | "HEAD", "/worker") => Reply::text(whoami.clone()).into(),
                    ("GET" | "HEAD", "/hits") => Reply::text(format!("hits: {hits}\n")).into(),
                    _ => Reply::error(StatusCode::NOT_FOUND).into(),
                }
            }
        })?;
    println!("listening on http://{}", workers.local_addr());
    println!("{} workers", workers.count());
    workers.join()
}

/// `--listen HOST:PORT` (default `127.0.0.1:8080`) and `--workers N` (default 0: one per core),
/// also as `--flag=value`. `--help` prints the usage; anything else exits with status 2.
fn args() -> (String, usize) {
    let mut addr = String::from("127.0.0.1:8080");
    let mut workers = 0;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_string(), Some(value.to_string()))
            }
            _ => (arg.clone(), None),
        };
        match flag.as_str() {
            "-h" | "--help" => {
                println!(
                    "{USAGE}\n\n  --listen HOST:PORT   address to listen on (default 127.0.0.1:8080; port 0 picks one)\
                     \n  --workers N          event loops, one thread each (default 0: one per core)"
                );
                exit(0);
            }
            "--listen" => match inline.or_else(|| args.next()) {
                Some(value) => addr = value,
                None => fail("--listen needs HOST:PORT"),
            },
            "--workers" => match inline.or_else(|| args.next()).map(|v| v.parse()) {
                Some(Ok(n)) => workers = n,
                _ => fail("--workers needs a number (0: one per core)"),
            },
            _ => fail(&format!("unknown argument {arg:?}")),
        }
    }
    (addr, workers)
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}\n{USAGE}\n(try --help)");
    exit(2)
}
