//! `worker_thread`: replies computed and sent from other threads, while the event loop goes on
//! serving.
//!
//! Shows: a handler that takes the request's reply right as a `Send` handle with
//! [`iomux::SavedContext::remote`] (the context itself is `!Send`) and queues it, with the work,
//! to a plain OS thread over a `std::sync::mpsc` channel; the thread computes and replies with
//! [`iomux::RemoteResponder::send`], and skips the jobs whose client hung up
//! ([`iomux::RemoteResponder::is_closed`], logged on stderr). A second route runs its work on
//! smol's blocking thread pool with [`iomux::SavedContext::reply_blocking`].
//!
//! Run:
//!
//! ```sh
//! cargo run --example worker_thread -- --listen 127.0.0.1:8080
//! ```
//!
//! Then, from a second terminal:
//!
//! ```sh
//! curl -i 'http://127.0.0.1:8080/fib?n=30'           # 200 "fib(30) = 832040", then
//!                                                    # "computed on thread fib-worker in 11 ms"
//! curl 'http://127.0.0.1:8080/fib'                   # n defaults to 30; capped at 40
//! curl 'http://127.0.0.1:8080/primes?below=1000000'  # "78498 primes below 1000000", then
//!                                                    # "counted on thread blocking-1"
//! curl -i 'http://127.0.0.1:8080/fib?n=x'            # 400 at once
//! curl -i 'http://127.0.0.1:8080/elsewhere'          # 404
//!
//! # The worker computes one job at a time. Keep it busy with fib(40) (a second in a debug
//! # build) and give up on a quick job queued behind it (`-m 0.5`: after half a second): the
//! # worker logs "fib-worker: client of fib(25) hung up; job skipped" instead of computing it.
//! curl -s 'http://127.0.0.1:8080/fib?n=40' &
//! sleep 0.1; curl -m 0.5 'http://127.0.0.1:8080/fib?n=25'
//! ```

mod common;

use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use iomux::http::StatusCode;
use iomux::{with_saved_context, Acceptor, Handled, RemoteResponder, Reply, Request};

/// `n` when the request gives none.
const DEFAULT_N: u64 = 30;
/// Largest `n`: the naive recursion below takes about a second for 40.
const MAX_N: u64 = 40;
/// Largest `below` for `/primes`.
const MAX_BELOW: u64 = 10_000_000;

/// Work for the worker thread, with the right to answer it.
struct Job {
    n: u64,
    reply: RemoteResponder,
}

fn main() -> std::io::Result<()> {
    let addr = common::listen_addr("usage: worker_thread [--listen HOST:PORT]");

    let (jobs, queue) = mpsc::channel::<Job>();
    thread::Builder::new()
        .name("fib-worker".into())
        .spawn(move || worker(queue))?;

    let acceptor = Acceptor::bind(addr, move |req: &Request| -> Handled {
        match (req.method(), req.path().as_ref()) {
            ("GET" | "HEAD", "/fib") => {
                let n = match common::number_param(req, "n", DEFAULT_N, MAX_N) {
                    Ok(n) => n,
                    Err(bad_request) => return bad_request.into(),
                };
                // A saved context stays on the event loop's thread; its reply right can travel.
                let Some(reply) = with_saved_context!().remote() else {
                    return Reply::error(StatusCode::INTERNAL_SERVER_ERROR).into();
                };
                if let Err(mpsc::SendError(job)) = jobs.send(Job { n, reply }) {
                    // The worker has died: say so rather than let the request wait.
                    let _ = job
                        .reply
                        .send(Reply::error(StatusCode::SERVICE_UNAVAILABLE));
                }
                Handled::Deferred
            }
            ("GET" | "HEAD", "/primes") => {
                let below = match common::number_param(req, "below", 100_000, MAX_BELOW) {
                    Ok(below) => below,
                    Err(bad_request) => return bad_request.into(),
                };
                let counted = with_saved_context!().reply_blocking(move || {
                    let count = count_primes(below);
                    let here = thread::current();
                    Reply::text(format!(
                        "{count} primes below {below}\ncounted on thread {}\n",
                        here.name().unwrap_or("(unnamed)")
                    ))
                });
                match counted {
                    Ok(()) => Handled::Deferred,
                    Err(e) => Reply::text(format!("{e}\n"))
                        .with_status(StatusCode::INTERNAL_SERVER_ERROR)
                        .into(),
                }
            }
            _ => Reply::error(StatusCode::NOT_FOUND).into(),
        }
    })?;
    common::announce(&acceptor);
    // No actor of ours on the loop: the acceptor's own executor will do.
    acceptor.run()
}

/// The worker thread: one job at a time, in arrival order, until the server is gone.
fn worker(queue: mpsc::Receiver<Job>) {
    let me = thread::current().name().unwrap_or("worker").to_string();
    for Job { n, reply } in queue {
        if reply.is_closed() {
            eprintln!("{me}: client of fib({n}) hung up; job skipped");
            continue;
        }
        let started = Instant::now();
        let value = fib(n);
        let body = format!(
            "fib({n}) = {value}\ncomputed on thread {me} in {} ms\n",
            started.elapsed().as_millis()
        );
        if let Err(e) = reply.send(Reply::text(body)) {
            eprintln!("{me}: fib({n}) not sent: {e}");
        }
    }
}

/// Fibonacci the slow way, to give the worker something to do.
fn fib(n: u64) -> u64 {
    if n < 2 {
        n
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

/// Primes below `limit`, by trial division.
fn count_primes(limit: u64) -> u64 {
    let is_prime = |k: u64| k >= 2 && (2..).take_while(|d| d * d <= k).all(|d| k % d != 0);
    (0..limit).filter(|&k| is_prime(k)).count() as u64
}
