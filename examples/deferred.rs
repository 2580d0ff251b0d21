//! `deferred`: a handler that does not answer; an application actor answers later, from a timer
//! event (IOMUX-ACCEPTOR's deferred reply).
//!
//! Shows: an executor created by the program and driven with
//! `async_io::block_on(ex.run(acceptor.serve(&ex)))`; an actor started on it with
//! [`iomux::spawn_actor_task`]; a handler that saves the request context with
//! [`iomux::with_saved_context!`], sends it to the actor and returns
//! [`iomux::Handled::Deferred`]; the actor replying inside [`iomux::with_restored_context!`] with
//! [`iomux::context::send_body`] when the request's timer is due. Many requests wait at once, each
//! with its own timer. The actor also drops the waiters whose client hung up
//! ([`iomux::SavedContext::is_closed`]) and logs them on stderr.
//!
//! Run:
//!
//! ```sh
//! cargo run --example deferred -- --listen 127.0.0.1:8080
//! ```
//!
//! Then, from a second terminal:
//!
//! ```sh
//! curl -i 'http://127.0.0.1:8080/wait?ms=500'  # after 0.5 s: 200 text/plain "waited 500 ms"
//! curl 'http://127.0.0.1:8080/wait'            # after 1 s (the default): "waited 1000 ms"
//! curl 'http://127.0.0.1:8080/wait?ms=99999'   # capped: after 10 s, "waited 10000 ms"
//! curl -i 'http://127.0.0.1:8080/wait?ms=soon' # 400 at once: ms must be a whole number
//! curl -i 'http://127.0.0.1:8080/elsewhere'    # 404
//!
//! # Three requests waiting at the same time; the answers come in timer order:
//! # "waited 300 ms", "waited 600 ms", "waited 900 ms", all within about 0.9 s.
//! for ms in 900 300 600; do curl -s "http://127.0.0.1:8080/wait?ms=$ms" & done; wait
//!
//! # A client that gives up (`-m 1`: after one second, or press Ctrl-C) is noticed within a
//! # quarter of a second; the server logs
//! # "deferred: client 127.0.0.1:PORT hung up after 1001 ms of 5000; waiter dropped".
//! curl -m 1 'http://127.0.0.1:8080/wait?ms=5000'
//! ```

mod common;

use std::time::{Duration, Instant};

use async_executor::LocalExecutor;
use async_io::Timer;
use futures_lite::future;
use iomux::http::header::CONTENT_TYPE;
use iomux::http::{HeaderValue, StatusCode};
use iomux::{
    context, spawn_actor_task, with_restored_context, with_saved_context, Acceptor, Handled,
    Mailbox, Reply, Request, SavedContext,
};

/// Wait when the request gives no `ms`.
const DEFAULT_MS: u64 = 1000;
/// Longest wait a request may ask for.
const MAX_MS: u64 = 10_000;
/// How often the actor looks for clients that hung up, when no timer or message wakes it sooner.
const SWEEP: Duration = Duration::from_millis(250);

/// A request waiting for its timer: the message the handler sends to the actor.
struct Waiter {
    ctx: SavedContext,
    ms: u64,
    since: Instant,
}

impl Waiter {
    fn due(&self) -> Instant {
        self.since + Duration::from_millis(self.ms)
    }
}

fn main() -> std::io::Result<()> {
    let addr = common::listen_addr("usage: deferred [--listen HOST:PORT]");

    // The program owns the executor: the actor and the server's connections all run on it.
    let ex = LocalExecutor::new();
    let waiters = spawn_actor_task(&ex, 1024, wait_actor);

    let acceptor = Acceptor::bind(addr, move |req: &Request| -> Handled {
        match (req.method(), req.path().as_ref()) {
            ("GET" | "HEAD", "/wait") => {
                let ms = match common::number_param(req, "ms", DEFAULT_MS, MAX_MS) {
                    Ok(ms) => ms,
                    Err(bad_request) => return bad_request.into(),
                };
                // The reply under construction is part of the context: this header is still
                // there when the actor answers.
                context::set_header(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                waiters.do_send(Waiter {
                    ctx: with_saved_context!(),
                    ms,
                    since: Instant::now(),
                });
                Handled::Deferred
            }
            _ => Reply::error(StatusCode::NOT_FOUND).into(),
        }
    })?;
    common::announce(&acceptor);
    async_io::block_on(ex.run(acceptor.serve(&ex)))
}

/// What woke the actor.
enum Woke {
    Message(Option<Waiter>),
    Timer,
}

/// The application actor: keeps every waiting request and answers each when its time is up.
async fn wait_actor(mut mailbox: Mailbox<Waiter>) {
    let mut waiting: Vec<Waiter> = Vec::new();
    loop {
        // Sleep until a message comes, the earliest timer is due, or the next sweep; with nobody
        // waiting, until a message comes.
        let wake_at = waiting.iter().map(Waiter::due).min();
        let timer = wake_at.map_or_else(Timer::never, |due| {
            Timer::at(due.min(Instant::now() + SWEEP))
        });
        let woke = future::or(async { Woke::Message(mailbox.recv().await) }, async {
            timer.await;
            Woke::Timer
        })
        .await;
        match woke {
            Woke::Message(Some(waiter)) => waiting.push(waiter),
            Woke::Message(None) => break, // the server is gone
            Woke::Timer => {}
        }

        let now = Instant::now();
        waiting.retain(|waiter| {
            if waiter.ctx.is_closed() {
                // Nobody to answer: forget the request (dropping its context costs nothing more).
                let peer = waiter.ctx.request().map(|r| r.peer_addr().to_string());
                eprintln!(
                    "deferred: client {} hung up after {} ms of {}; waiter dropped",
                    peer.as_deref().unwrap_or("?"),
                    waiter.since.elapsed().as_millis(),
                    waiter.ms
                );
                false
            } else if waiter.due() <= now {
                answer(waiter);
                false
            } else {
                true
            }
        });
    }
}

/// Reply to a waiter, with its request's context current again.
fn answer(waiter: &Waiter) {
    with_restored_context!(waiter.ctx, {
        // `send_body` takes the status and header fields the handler set (200, text/plain).
        if let Err(e) = context::send_body(format!("waited {} ms\n", waiter.ms)) {
            eprintln!(
                "deferred: reply to {} not sent: {e}",
                context::request().target()
            );
        }
    });
}
