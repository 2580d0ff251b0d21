//! `stream`: chunked replies fed by a timer, and an EventSource (`text/event-stream`) feed.
//!
//! Shows: a handler that sends the status and header fields at once with
//! [`iomux::context::start_stream`] (or [`iomux::Responder::start_stream`]) and hands the
//! [`iomux::BodySender`] to an actor; the actor has one timer that feeds every open stream a
//! chunk each 250 ms with [`iomux::BodySender::try_send`], ends a stream by dropping its sender
//! (the last chunk goes out), skips a tick for a client that reads too slowly
//! ([`iomux::ChunkError::Full`]) and forgets the clients that left
//! ([`iomux::ChunkError::ClientGone`], logged on stderr).
//!
//! Run:
//!
//! ```sh
//! cargo run --example stream -- --listen 127.0.0.1:8080
//! ```
//!
//! Then, from a second terminal (`-N`: print each chunk as it arrives):
//!
//! ```sh
//! curl -vN 'http://127.0.0.1:8080/stream?n=4'  # the head at once ("< HTTP/1.1 200 OK",
//!                                              # text/plain, Transfer-Encoding: chunked), then
//!                                              # "line 1 of 4" ... "line 4 of 4", one every
//!                                              # 250 ms, and the reply ends (`curl -i` shows
//!                                              # the head only with the first line)
//! curl -N 'http://127.0.0.1:8080/stream'       # 10 lines (the default; at most 1000)
//! curl -iN 'http://127.0.0.1:8080/events'      # text/event-stream: ": one event every 250 ms",
//!                                              # then "id: 1" "data: tick 1", "id: 2" ...
//!                                              # until Ctrl-C; the server then logs
//!                                              # "stream: client 127.0.0.1:PORT left /events
//!                                              # after 7 chunks"
//! curl -N 'http://127.0.0.1:8080/events?n=3'   # three events, then the feed ends
//! curl -i 'http://127.0.0.1:8080/stream?n=x'   # 400 at once
//! curl -i 'http://127.0.0.1:8080/elsewhere'    # 404
//! ```
//!
//! In a browser console: `new EventSource("/events").onmessage = e => console.log(e.data)`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use async_executor::LocalExecutor;
use async_io::Timer;
use futures_lite::{future, StreamExt};
use iomux::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use iomux::http::{HeaderValue, StatusCode};
use iomux::{
    context, spawn_actor_task, Acceptor, BodySender, ChunkError, Handled, Mailbox, Reply, Request,
};

/// Time between two chunks.
const PERIOD: Duration = Duration::from_millis(250);
/// Lines of `/stream` when the request gives no `n`.
const DEFAULT_LINES: u64 = 10;
/// Most lines of `/stream`.
const MAX_LINES: u64 = 1000;

/// What a stream sends.
#[derive(Clone, Copy)]
enum Kind {
    /// `/stream`: "line K of N" lines.
    Lines,
    /// `/events`: server-sent events.
    Events,
}

/// An open stream: the message the handler sends to the actor.
struct Subscriber {
    body: BodySender,
    kind: Kind,
    /// Chunks sent so far.
    sent: u64,
    /// Chunks to send before the stream ends.
    limit: u64,
    peer: SocketAddr,
}

fn main() -> std::io::Result<()> {
    let addr = common::listen_addr("usage: stream [--listen HOST:PORT]");

    let ex = LocalExecutor::new();
    let clock = spawn_actor_task(&ex, 1024, clock_actor);

    let acceptor = Acceptor::bind(addr, move |req: &Request| -> Handled {
        let (kind, limit) = match (req.method(), req.path().as_ref()) {
            ("GET", "/stream") => match common::number_param(req, "n", DEFAULT_LINES, MAX_LINES) {
                Ok(n) => (Kind::Lines, n),
                Err(bad_request) => return bad_request.into(),
            },
            ("GET", "/events") => match common::number_param(req, "n", u64::MAX, u64::MAX) {
                Ok(n) => (Kind::Events, n),
                Err(bad_request) => return bad_request.into(),
            },
            _ => return Reply::error(StatusCode::NOT_FOUND).into(),
        };
        let started = match kind {
            // Status and header fields of the reply under construction, sent now.
            Kind::Lines => {
                context::set_header(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                context::start_stream()
            }
            // The same with an explicit head, whose body is the first chunk.
            Kind::Events => {
                let head = Reply::with_type("text/event-stream", ": one event every 250 ms\n\n")
                    .header(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                match context::responder() {
                    Some(responder) => responder.start_stream(head),
                    None => return Handled::Deferred, // already answered
                }
            }
        };
        match started {
            Ok(body) => clock.do_send(Subscriber {
                body,
                kind,
                sent: 0,
                limit,
                peer: req.peer_addr(),
            }),
            Err(e) => eprintln!("stream: {} not started: {e}", req.target()),
        }
        // The reply (its head, and the body to come) is already on its way.
        Handled::Deferred
    })?;
    common::announce(&acceptor);
    async_io::block_on(ex.run(acceptor.serve(&ex)))
}

/// What woke the actor.
enum Woke {
    Subscriber(Option<Subscriber>),
    Tick,
}

/// The application actor: one timer for every open stream, running only while there is one.
async fn clock_actor(mut mailbox: Mailbox<Subscriber>) {
    let mut streams: Vec<Subscriber> = Vec::new();
    let mut tick = Timer::never();
    loop {
        let woke = future::or(async { Woke::Subscriber(mailbox.recv().await) }, async {
            tick.next().await;
            Woke::Tick
        })
        .await;
        match woke {
            Woke::Subscriber(Some(subscriber)) => {
                if subscriber.limit == 0 {
                    continue; // dropping the sender ends the (empty) body
                }
                if streams.is_empty() {
                    tick.set_interval(PERIOD);
                }
                streams.push(subscriber);
            }
            Woke::Subscriber(None) => break, // the server is gone
            Woke::Tick => {
                streams.retain_mut(feed);
                if streams.is_empty() {
                    tick.clear();
                }
            }
        }
    }
}

/// Send a stream its next chunk; `false` when the stream is over (its sender is then dropped,
/// which ends the reply).
fn feed(stream: &mut Subscriber) -> bool {
    let k = stream.sent + 1;
    let chunk = match stream.kind {
        Kind::Lines => format!("line {k} of {}\n", stream.limit),
        Kind::Events => format!("id: {k}\ndata: tick {k}\n\n"),
    };
    match stream.body.try_send(chunk) {
        Ok(()) => {
            stream.sent = k;
            stream.sent < stream.limit
        }
        // The client reads more slowly than we write: try again at the next tick.
        Err(ChunkError::Full(_)) => true,
        Err(ChunkError::ClientGone(_)) => {
            let path = match stream.kind {
                Kind::Lines => "/stream",
                Kind::Events => "/events",
            };
            eprintln!(
                "stream: client {} left {path} after {} chunks",
                stream.peer, stream.sent
            );
            false
        }
    }
}
