//! The connection actor: one task per socket, from the first byte to the close.
//!
//! Requests on a connection are served one after the other, so replies leave in request order
//! (pipelining); replies to requests already buffered are batched into one write. While a
//! request waits for a deferred reply the task holds no buffers and keeps watching the socket,
//! so a client that hangs up is noticed at once.

use std::future::Future;
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

use async_io::{Async, Timer};
use bytes::Bytes;
use futures_lite::{future, AsyncReadExt, AsyncWriteExt, StreamExt};
use http::StatusCode;

use crate::access_log::Entry;
use crate::context::{self, RequestState};
use crate::dispatch::{is_abort, Handled, Handler};
use crate::error::SendError;
use crate::error_pages;
use crate::parse::{parse_head, ChunkedDecoder, Framing, Head};
use crate::reply::{
    self, encode_chunk_size, encode_head, status_has_body, wants_close, BodyFraming, Reply,
    LAST_CHUNK,
};
use crate::request::{Request, Version};
use crate::responder::{ConnCell, Delivery, StreamItem, Wake};
use crate::server::{AcceptorRef, ConnGuard};
use crate::Config;

/// The interim reply to `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Serve one connection until it closes.
///
/// The task alternates between phases. The *active* phase reads, parses, dispatches and
/// writes, for as many requests as arrive without waiting; it is the larger state, so it lives
/// in a box that exists only while the connection is active. The *waiting* phase, where a
/// long-poll request spends its life, and the *idle* phase between keep-alive requests are small
/// and inline, and hold no buffers (read buffers go back to the acceptor's pool): the task's
/// future stays a few hundred bytes.
pub(crate) fn serve(
    stream: Async<TcpStream>,
    peer: SocketAddr,
    guard: ConnGuard,
    cell: Rc<ConnCell>,
    handler: Rc<dyn Handler>,
) -> impl Future<Output = ()> {
    let local = stream
        .get_ref()
        .local_addr()
        .unwrap_or_else(|_| guard.acceptor().local_addr());
    cell.set_addrs(peer, local);
    // Used in place inside the task (not moved into a second local: a generator keeps the
    // captured value and such a copy in separate slots, doubling the waiting task's size).
    let mut conn = Conn {
        stream,
        cell,
        rbuf: Vec::new(),
        wbuf: Vec::new(),
        served: 0,
        record: None,
        guard,
    };
    async move {
        let mut resume = None;
        let end = loop {
            // The active phase's result is taken apart before the wait, so that the task does
            // not keep it (nor the `match` on it) alive while it waits: every byte held across
            // these two waits is in every waiting connection.
            let phase = match Box::pin(conn.active(&*handler, resume.take())).await {
                Ok(Phase::End(end)) => break Ok(end),
                Ok(phase) => phase,
                Err(e) => break Err(e),
            };
            if let Phase::Deferred(exchange) = phase {
                resume = Some(match conn.wait_reply().await {
                    Waited::Ready(wake) => Resume::Reply(exchange, wake),
                    Waited::Shutdown => Resume::Shutdown(exchange),
                    Waited::Gone => break Ok(End::Close),
                });
            } else if !conn.wait_idle().await {
                break Ok(End::Close);
            }
        };
        match end {
            Ok(End::Close) => {}
            // Rare, and a large state: boxed so that it does not size every connection's task.
            Ok(End::Linger) => Box::pin(conn.linger()).await,
            Err(e) => log::debug!("connection from {}: {e}", conn.peer()),
        }
    }
}

/// Where the active phase stopped.
enum Phase {
    /// A request waits for its deferred reply.
    Deferred(Exchange),
    /// The connection is idle between requests.
    Idle,
    /// The connection is over.
    End(End),
}

/// How the active phase resumes after a wait.
enum Resume {
    /// The deferred reply arrived (or was abandoned).
    Reply(Exchange, Wake),
    /// The acceptor is stopping: answer the waiting request and close.
    Shutdown(Exchange),
}

/// How a connection ends.
enum End {
    /// Close at once.
    Close,
    /// An error reply was sent with request bytes possibly unread: read and discard them for a
    /// while so the client gets the reply rather than a reset.
    Linger,
}

/// What the connection must remember about the request being answered.
#[derive(Clone, Copy)]
struct Exchange {
    version: Version,
    /// A HEAD request: the reply's head only.
    is_head: bool,
    /// The connection may serve another request after this one.
    keep_alive: bool,
}

/// The outcome of reading a request.
enum Next {
    /// Handed to the handler; the reply is there already, or deferred (`None`).
    Dispatched(Exchange, Option<Wake>),
    /// The request cannot be served: answer with this status and close.
    Refused(StatusCode),
    /// Nothing to read between requests.
    Idle,
    /// The connection ends quietly (EOF, shutdown between requests).
    End,
}

/// What ended a wait for more input.
enum Fill {
    Data,
    Eof,
    TimedOut,
}

/// What reading a request head gave.
enum HeadRead {
    Head(Head),
    /// Refuse with this status and close.
    Refused(StatusCode),
    /// Nothing to read between requests: wait outside the active phase.
    Idle,
    /// The connection ends quietly (EOF, shutdown between requests).
    End,
}

/// What ended a wait for a deferred reply or the next stream chunk.
enum Waited<T> {
    Ready(T),
    Gone,
    Shutdown,
}

struct Conn {
    stream: Async<TcpStream>,
    /// Also holds the connection's addresses.
    cell: Rc<ConnCell>,
    /// Bytes read and not yet parsed.
    rbuf: Vec<u8>,
    /// Encoded replies not yet written.
    wbuf: Vec<u8>,
    /// Requests read on this connection.
    served: usize,
    /// What the access log and error pages need of the request being answered; only when one
    /// of them is on.
    record: Option<Box<Record>>,
    /// The acceptor, and the connection's place in its registry (dropped last: the socket is
    /// closed before the acceptor learns the connection is gone).
    guard: ConnGuard,
}

/// What the access log and the error pages need to know of a request once its reply is written
/// (the request itself may be gone by then: its context is dropped when the handler returns or
/// the reply is sent).
struct Record {
    /// The access log line, less status and size; `None` without an access log.
    entry: Option<Entry>,
    /// The decoded path, for error pages (empty when they do not need it).
    path: Box<str>,
    /// Body bytes of a streamed reply written so far.
    streamed: u64,
}

impl Record {
    fn new(request: &Request, acceptor: &AcceptorRef) -> Option<Box<Record>> {
        let log = acceptor.logs_access();
        let pages = acceptor.error_pages().uses_path();
        (log || pages).then(|| {
            Box::new(Record {
                entry: log.then(|| Entry::new(request)),
                path: if pages {
                    request.path().into()
                } else {
                    Box::default()
                },
                streamed: 0,
            })
        })
    }
}

/// Keeps the acceptor's count of waiting requests right however the wait ends.
struct Waiting(AcceptorRef);

impl Waiting {
    fn new(acceptor: &AcceptorRef) -> Self {
        acceptor.waiting_changed(1);
        Waiting(acceptor.clone())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.waiting_changed(-1);
    }
}

impl Conn {
    fn peer(&self) -> SocketAddr {
        self.cell.addrs().peer
    }

    fn config(&self) -> &Config {
        self.guard.acceptor().config()
    }

    /// Serve requests until one is deferred or the connection ends.
    async fn active(
        &mut self,
        handler: &dyn Handler,
        mut resume: Option<Resume>,
    ) -> io::Result<Phase> {
        reply::date_may_have_changed();
        if self.wbuf.capacity() == 0 {
            // A write buffer from the pool, for this active phase (no growth by reallocation).
            self.wbuf = self.guard.acceptor().take_buffer();
        }
        loop {
            let (exchange, wake) = match resume.take() {
                Some(Resume::Reply(exchange, wake)) => (exchange, wake),
                Some(Resume::Shutdown(exchange)) => {
                    self.cell.finish_request();
                    let reply = shutdown_reply(self.config().shutdown_status);
                    self.encode_reply(
                        reply,
                        Exchange {
                            keep_alive: false,
                            ..exchange
                        },
                    );
                    self.flush().await?;
                    return Ok(Phase::End(End::Close));
                }
                None => match self.next_request(handler).await? {
                    Next::Dispatched(exchange, Some(wake)) => (exchange, wake),
                    Next::Dispatched(exchange, None) => {
                        self.flush().await?;
                        self.release_buffers();
                        return Ok(Phase::Deferred(exchange));
                    }
                    Next::Idle => {
                        self.release_buffers();
                        return Ok(Phase::Idle);
                    }
                    Next::Refused(status) => return self.refuse(status).await.map(Phase::End),
                    Next::End => {
                        self.flush().await?;
                        return Ok(Phase::End(End::Close));
                    }
                },
            };
            let (keep_alive, large_body) = match wake {
                Wake::Delivered(delivery) => match *delivery {
                    Delivery::Reply(reply) => {
                        self.cell.finish_request();
                        self.encode_reply(reply, exchange)
                    }
                    Delivery::Stream(head, chunks) => {
                        // Streams hold more state and are rarer: boxed, so the active phase's
                        // own box stays small (and cheap to allocate per request).
                        let status = head.status();
                        let stream = self.write_stream(head, chunks, exchange);
                        let keep_alive = Box::pin(stream).await;
                        self.cell.finish_request();
                        let record = self.record.take();
                        let streamed = record.as_ref().map_or(0, |r| r.streamed);
                        self.log_access(record.as_deref(), status, streamed);
                        (keep_alive?, None)
                    }
                },
                Wake::Abandoned => {
                    log::warn!("request from {} dropped without a reply: 500", self.peer());
                    self.cell.finish_request();
                    self.encode_reply(Reply::error(StatusCode::INTERNAL_SERVER_ERROR), exchange)
                }
            };
            if let Some(body) = large_body {
                self.flush().await?;
                self.write_all(&body).await?;
            }
            if !keep_alive {
                self.flush().await?;
                return Ok(Phase::End(End::Close));
            }
            // Every request read has its reply: the client rarely has sent more yet (it waits
            // for the reply, and a long-poll client re-polls once it has it), so wait for
            // readiness rather than try a read that would only say `WouldBlock`.
            if self.rbuf.is_empty() {
                self.flush().await?;
                self.release_buffers();
                return Ok(Phase::Idle);
            }
            if self.wbuf.len() >= self.config().coalesce_limit {
                self.flush().await?;
            }
        }
    }

    /// Read the next request, head and body, and hand it to the handler.
    async fn next_request(&mut self, handler: &dyn Handler) -> io::Result<Next> {
        let head = match self.read_head().await? {
            HeadRead::Head(head) => head,
            HeadRead::Refused(status) => return Ok(Next::Refused(status)),
            HeadRead::Idle => return Ok(Next::Idle),
            HeadRead::End => return Ok(Next::End),
        };
        let body = match self.buffered_body(head.framing) {
            Some(body) => body,
            // Bodies still on the wire take the slow path, boxed to keep the task small.
            None => match Box::pin(self.read_body(head.framing, head.expect_continue)).await? {
                Ok(body) => body,
                Err(status) => {
                    // The head was read: the access log can show its request line.
                    self.record = Record::new(&head.request, self.guard.acceptor());
                    return Ok(Next::Refused(status));
                }
            },
        };
        self.served += 1;
        let limit = self.config().max_requests_per_connection;
        let exchange = Exchange {
            version: head.request.version(),
            is_head: head.is_head,
            keep_alive: head.keep_alive
                && !self.cell.is_shutting_down()
                && (limit == 0 || self.served < limit),
        };
        Ok(Next::Dispatched(
            exchange,
            self.dispatch(handler, head, body),
        ))
    }

    /// Run the handler with the request's context current. `Some` if the reply is already
    /// there, `None` if it was deferred.
    fn dispatch(&mut self, handler: &dyn Handler, head: Head, body: Bytes) -> Option<Wake> {
        let mut request = head.request;
        request.set_body(body);
        self.record = Record::new(&request, self.guard.acceptor());
        self.cell.begin(self.cell.seq());
        let state = Rc::new(RequestState::new(request, self.guard.acceptor().clone()));
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            context::run_handler(state.clone(), || handler.handle(state.request()))
        }));
        match outcome {
            Ok(Handled::Reply(reply)) => {
                if let Err(SendError::AlreadyReplied(_)) = state.send(reply) {
                    log::warn!(
                        "handler replied and also returned a reply; the returned one is dropped"
                    );
                }
            }
            Ok(Handled::Deferred) => {}
            // Not a panic: dropping the payload sends the abort's reply.
            Err(payload) if is_abort(&*payload) => {
                log::debug!(
                    "handler aborted on {} {}",
                    state.request().method(),
                    state.request().target()
                );
                drop(payload);
            }
            Err(panic) => {
                let what = panic_message(&*panic);
                let location = error_pages::take_panic_location();
                let at = location.as_deref().map(|l| format!(" at {l}"));
                log::error!(
                    "handler panicked on {} {}{}: {what}",
                    state.request().method(),
                    state.request().target(),
                    at.as_deref().unwrap_or("")
                );
                let detail = self.guard.acceptor().debug().then(|| match &location {
                    Some(location) => format!("panicked at {location}:\n{what}"),
                    None => what.to_owned(),
                });
                let path = state.request().path();
                let reply = self
                    .guard
                    .acceptor()
                    .error_pages()
                    .panic_reply(&path, detail.as_deref());
                let _ = state.send(reply);
            }
        }
        // If nobody kept the context, dropping it here abandons the request (500).
        drop(state);
        self.cell.take_ready()
    }

    /// Read until one request head is parsed, or until the connection is idle between requests
    /// with nothing to read (then the task waits outside the active phase).
    async fn read_head(&mut self) -> io::Result<HeadRead> {
        let mut deadline = None;
        loop {
            if !self.rbuf.is_empty() {
                let config = self.guard.acceptor().config();
                match parse_head(&self.rbuf, config, &self.cell) {
                    Ok(Some((head, len))) => {
                        self.rbuf.drain(..len);
                        return Ok(HeadRead::Head(head));
                    }
                    Ok(None) => {}
                    Err(status) => return Ok(HeadRead::Refused(status)),
                }
                deadline.get_or_insert_with(|| Instant::now() + config.head_timeout);
            }
            // Replies to earlier pipelined requests go out before waiting for more input.
            self.flush().await?;
            let Some(until) = deadline else {
                // Between requests: take what has arrived, or go idle.
                if self.cell.is_shutting_down() {
                    return Ok(HeadRead::End);
                }
                match self.try_read() {
                    Ok(0) => return Ok(HeadRead::End),
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(HeadRead::Idle),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            match self.fill(until).await? {
                Fill::Data => {}
                Fill::Eof => return Ok(HeadRead::End),
                Fill::TimedOut => return Ok(HeadRead::Refused(StatusCode::REQUEST_TIMEOUT)),
            }
        }
    }

    /// The body, if it needs no more reading: none, or all of it already buffered.
    fn buffered_body(&mut self, framing: Framing) -> Option<Bytes> {
        match framing {
            Framing::Empty => Some(Bytes::new()),
            Framing::Length(len) if self.rbuf.len() as u64 >= len => {
                Some(self.take_body(len as usize))
            }
            Framing::Length(_) | Framing::Chunked => None,
        }
    }

    /// The first `len` buffered bytes, without copying when they are all the buffer holds.
    fn take_body(&mut self, len: usize) -> Bytes {
        if self.rbuf.len() == len {
            Bytes::from(std::mem::take(&mut self.rbuf))
        } else {
            Bytes::from(self.rbuf.drain(..len).collect::<Vec<u8>>())
        }
    }

    /// Read the body the head announces. `Err(status)`: refuse the request.
    async fn read_body(
        &mut self,
        framing: Framing,
        expect_continue: bool,
    ) -> io::Result<Result<Bytes, StatusCode>> {
        let deadline = Instant::now() + self.config().body_timeout;
        match framing {
            Framing::Empty => Ok(Ok(Bytes::new())),
            Framing::Length(len) => {
                // The parser refused lengths over max_body_size, so this fits in memory.
                let len = len as usize;
                if expect_continue && self.rbuf.len() < len {
                    self.wbuf.extend_from_slice(CONTINUE);
                    self.flush().await?;
                }
                self.rbuf.reserve(len.saturating_sub(self.rbuf.len()));
                while self.rbuf.len() < len {
                    match self.fill(deadline).await? {
                        Fill::Data => {}
                        Fill::Eof => return Err(io::ErrorKind::UnexpectedEof.into()),
                        Fill::TimedOut => return Ok(Err(StatusCode::REQUEST_TIMEOUT)),
                    }
                }
                Ok(Ok(self.take_body(len)))
            }
            Framing::Chunked => {
                if expect_continue && self.rbuf.is_empty() {
                    self.wbuf.extend_from_slice(CONTINUE);
                    self.flush().await?;
                }
                let config = self.config();
                let (limit, max_trailer) = (config.max_body_size, config.max_head_size);
                let mut decoder = ChunkedDecoder::new(max_trailer);
                let mut body = Vec::new();
                loop {
                    match decoder.decode(&self.rbuf, &mut body, limit) {
                        Ok(used) => drop(self.rbuf.drain(..used)),
                        Err(e) => return Ok(Err(e.status())),
                    }
                    if decoder.is_done() {
                        return Ok(Ok(Bytes::from(body)));
                    }
                    match self.fill(deadline).await? {
                        Fill::Data => {}
                        Fill::Eof => return Err(io::ErrorKind::UnexpectedEof.into()),
                        Fill::TimedOut => return Ok(Err(StatusCode::REQUEST_TIMEOUT)),
                    }
                }
            }
        }
    }

    /// Read more bytes into the read buffer, waiting until `deadline`.
    async fn fill(&mut self, deadline: Instant) -> io::Result<Fill> {
        loop {
            match self.try_read() {
                Ok(0) => return Ok(Fill::Eof),
                Ok(_) => return Ok(Fill::Data),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let readable = async { self.stream.readable().await.map(|()| Fill::Data) };
            let timeout = async {
                Timer::at(deadline).await;
                Ok(Fill::TimedOut)
            };
            match future::or(readable, timeout).await? {
                Fill::Data => {}
                other => return Ok(other),
            }
        }
    }

    /// A connection that waits holds no buffers (unless pipelined bytes are kept).
    fn release_buffers(&mut self) {
        if self.rbuf.is_empty() {
            self.guard
                .acceptor()
                .recycle_buffer(std::mem::take(&mut self.rbuf));
        }
        self.guard
            .acceptor()
            .recycle_buffer(std::mem::take(&mut self.wbuf));
    }

    /// Wait, holding no buffers, for the next request's first bytes; `false` when the
    /// connection should close instead (keep-alive timeout, shutdown, socket error).
    async fn wait_idle(&mut self) -> bool {
        // The keep-alive timeout is kept by the acceptor's sweep (see `ConnCell::expire_idle`):
        // a timer per idle wait would cost a reactor wake-up per request.
        // Counted as idle while here (the connection guard uncounts it if the task is dropped).
        self.cell.set_idle(Some(Instant::now()));
        self.guard.acceptor().idle_changed(1);
        let readable = future::poll_fn(|cx| {
            if self.cell.is_shutting_down() || self.cell.is_idle_expired() {
                return Poll::Ready(false);
            }
            self.cell.register(cx);
            self.stream.poll_readable(cx).map(|result| result.is_ok())
        })
        .await;
        self.cell.set_idle(None);
        self.guard.acceptor().idle_changed(-1);
        readable
    }

    /// One non-blocking read into the read buffer's free space.
    fn try_read(&mut self) -> io::Result<usize> {
        if self.rbuf.capacity() == 0 {
            self.rbuf = self.guard.acceptor().take_buffer();
        }
        let start = self.rbuf.len();
        self.rbuf.resize(
            start + self.guard.acceptor().config().read_buffer_size.max(1),
            0,
        );
        let result = self.stream.get_ref().read(&mut self.rbuf[start..]);
        self.rbuf.truncate(start + *result.as_ref().unwrap_or(&0));
        if matches!(result, Ok(1..)) {
            reply::date_may_have_changed();
        }
        result
    }

    /// Wait for the deferred reply, watching the socket: a client that hangs up is noticed at
    /// once and the request's context marked closed.
    async fn wait_reply(&mut self) -> Waited<Wake> {
        let waiting = Waiting::new(self.guard.acceptor());
        // One reference held while waiting (the future is part of every waiting connection).
        let waited = future::poll_fn(|cx| self.poll_reply(cx)).await;
        drop(waiting);
        if let Waited::Gone = waited {
            log::debug!("client {} hung up while waiting", self.peer());
            self.cell.mark_closed();
        }
        waited
    }

    fn poll_reply(&mut self, cx: &mut Context<'_>) -> Poll<Waited<Wake>> {
        if let Poll::Ready(wake) = self.cell.poll_delivery(cx) {
            return Poll::Ready(Waited::Ready(wake));
        }
        if self.cell.interrupted_by_shutdown() {
            return Poll::Ready(Waited::Shutdown);
        }
        let limit = self.guard.acceptor().config().max_head_size;
        if poll_hangup(&self.stream, &mut self.rbuf, limit, cx).is_ready() {
            return Poll::Ready(Waited::Gone);
        }
        Poll::Pending
    }

    /// Encode a whole reply into the write buffer; a body larger than
    /// [`Config::coalesce_limit`] is returned, to be written after the buffer. Also returns
    /// whether the connection stays open.
    fn encode_reply(&mut self, reply: Reply, exchange: Exchange) -> (bool, Option<Bytes>) {
        let Exchange {
            version,
            is_head,
            keep_alive,
        } = exchange;
        let record = self.record.take();
        let path = record.as_ref().map_or("", |r| &r.path);
        let reply = self.guard.acceptor().error_pages().apply(reply, path);
        let (status, headers, body) = reply.into_parts();
        let keep_alive = keep_alive && !wants_close(&headers) && !self.cell.is_shutting_down();
        let with_body = status_has_body(status);
        let sent = if with_body && !is_head { body.len() } else { 0 };
        self.log_access(record.as_deref(), status, sent as u64);
        let framing = if with_body {
            BodyFraming::Length(body.len() as u64)
        } else {
            BodyFraming::None
        };
        encode_head(
            &mut self.wbuf,
            status,
            &headers,
            framing,
            version,
            keep_alive,
        );
        if !with_body || is_head {
            return (keep_alive, None);
        }
        if body.len() <= self.config().coalesce_limit {
            self.wbuf.extend_from_slice(&body);
            return (keep_alive, None);
        }
        (keep_alive, Some(body))
    }

    /// Append a body to the write buffer, or write it as it is when large.
    async fn push_body(&mut self, body: Bytes) -> io::Result<()> {
        if body.len() <= self.config().coalesce_limit {
            self.wbuf.extend_from_slice(&body);
            Ok(())
        } else {
            self.flush().await?;
            self.write_all(&body).await
        }
    }

    /// Send a streaming reply: head now, chunks as they come, until the sender finishes.
    async fn write_stream(
        &mut self,
        head: Reply,
        chunks: async_channel::Receiver<StreamItem>,
        exchange: Exchange,
    ) -> io::Result<bool> {
        let Exchange {
            version,
            is_head,
            keep_alive,
        } = exchange;
        let (status, headers, first) = head.into_parts();
        let framing = match (status_has_body(status), version) {
            (false, _) => BodyFraming::None,
            (true, Version::Http11) => BodyFraming::Chunked,
            (true, Version::Http10) => BodyFraming::UntilClose,
        };
        let mut keep_alive =
            keep_alive && framing != BodyFraming::UntilClose && !wants_close(&headers);
        let with_body = framing != BodyFraming::None && !is_head;
        encode_head(
            &mut self.wbuf,
            status,
            &headers,
            framing,
            version,
            keep_alive,
        );
        if !with_body {
            // HEAD, 204, 304: the head is the whole reply. Dropping the queue tells the producer
            // (its sender reports the client gone) instead of waiting for a body nobody reads.
            drop(chunks);
            self.flush().await?;
            return Ok(keep_alive);
        }
        self.push_chunk(first, framing).await?;
        self.flush().await?;
        let mut chunks = std::pin::pin!(chunks);
        loop {
            let limit = self.guard.acceptor().config().max_head_size;
            let Conn {
                stream, rbuf, cell, ..
            } = self;
            let next = future::poll_fn(|cx| {
                if let Poll::Ready(item) = chunks.as_mut().poll_next(cx) {
                    return Poll::Ready(Waited::Ready(item));
                }
                if cell.is_shutting_down() {
                    return Poll::Ready(Waited::Shutdown);
                }
                if poll_hangup(stream, rbuf, limit, cx).is_ready() {
                    return Poll::Ready(Waited::Gone);
                }
                cell.register(cx);
                Poll::Pending
            })
            .await;
            match next {
                Waited::Ready(Some(StreamItem::Data(data))) => {
                    self.push_chunk(data, framing).await?;
                    // Batch whatever else is already queued into the same write.
                    while self.wbuf.len() < self.config().coalesce_limit {
                        match chunks.try_recv() {
                            Ok(StreamItem::Data(more)) => self.push_chunk(more, framing).await?,
                            Ok(StreamItem::Abort) => return self.abort_stream().await,
                            Err(_) => break,
                        }
                    }
                    self.flush().await?;
                }
                Waited::Ready(Some(StreamItem::Abort)) => return self.abort_stream().await,
                Waited::Ready(None) | Waited::Shutdown => {
                    if matches!(next, Waited::Shutdown) {
                        keep_alive = false;
                    }
                    if framing == BodyFraming::Chunked {
                        self.wbuf.extend_from_slice(LAST_CHUNK);
                    }
                    self.flush().await?;
                    return Ok(keep_alive && framing != BodyFraming::UntilClose);
                }
                Waited::Gone => {
                    log::debug!("client {} hung up during a stream", self.peer());
                    self.cell.mark_closed();
                    return Err(io::ErrorKind::ConnectionAborted.into());
                }
            }
        }
    }

    async fn abort_stream(&mut self) -> io::Result<bool> {
        self.flush().await?;
        self.cell.mark_closed();
        Ok(false)
    }

    /// Append one body chunk in the stream's framing.
    async fn push_chunk(&mut self, data: Bytes, framing: BodyFraming) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if let Some(record) = &mut self.record {
            record.streamed += data.len() as u64;
        }
        if framing == BodyFraming::Chunked {
            encode_chunk_size(&mut self.wbuf, data.len());
            self.push_body(data).await?;
            self.wbuf.extend_from_slice(b"\r\n");
            Ok(())
        } else {
            self.push_body(data).await
        }
    }

    /// Answer a request that cannot be served with `status`, and close.
    async fn refuse(&mut self, status: StatusCode) -> io::Result<End> {
        log::debug!("refusing request from {}: {status}", self.peer());
        let exchange = Exchange {
            version: Version::Http11,
            is_head: false,
            keep_alive: false,
        };
        if self.record.is_none() && self.guard.acceptor().logs_access() {
            self.record = Some(Box::new(Record {
                entry: Some(Entry::refused(self.peer())),
                path: Box::default(),
                streamed: 0,
            }));
        }
        self.encode_reply(Reply::error(status), exchange);
        self.flush().await?;
        Ok(End::Linger)
    }

    /// Write the access log line of a reply, if there is an access log.
    fn log_access(&self, record: Option<&Record>, status: StatusCode, bytes: u64) {
        if let Some(entry) = record.and_then(|r| r.entry.as_ref()) {
            self.guard.acceptor().log_access(entry.line(status, bytes));
        }
    }

    /// Half-close, then read and discard what the client still sends, for a bounded time.
    async fn linger(&mut self) {
        if self.stream.get_ref().shutdown(Shutdown::Write).is_err() {
            return;
        }
        let deadline = Instant::now() + self.config().lingering_time;
        let mut sink = std::mem::take(&mut self.rbuf);
        sink.resize(self.config().read_buffer_size.max(1), 0);
        let drain = async { while let Ok(1..) = (&self.stream).read(&mut sink).await {} };
        future::or(drain, async {
            Timer::at(deadline).await;
        })
        .await;
    }

    async fn flush(&mut self) -> io::Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.wbuf);
        let result = self.write_all(&buf).await;
        self.wbuf = buf;
        self.wbuf.clear();
        result
    }

    async fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        let timeout = self.config().write_timeout;
        future::or((&self.stream).write_all(bytes), async {
            Timer::after(timeout).await;
            Err(io::ErrorKind::TimedOut.into())
        })
        .await
    }
}

/// Read whatever the client sent while no request is being read (pipelined requests, kept for
/// later), up to `limit` bytes; `Ready` when the client has closed or reset the connection, or
/// sent more than `limit` (the connection is then dropped).
fn poll_hangup(
    stream: &Async<TcpStream>,
    rbuf: &mut Vec<u8>,
    limit: usize,
    cx: &mut Context<'_>,
) -> Poll<()> {
    let mut scratch = [0u8; 512];
    loop {
        if rbuf.len() >= limit {
            // More pipelined than a request head may hold, while a request waits: the client
            // is misbehaving. Dropping it keeps it from pinning the connection (no reading
            // means no hang-up detection).
            log::debug!(
                "client pipelined {} bytes behind a waiting request: dropped",
                rbuf.len()
            );
            return Poll::Ready(());
        }
        // Readiness first: no read is tried (and fails) until the socket has something.
        match stream.poll_readable(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(_)) => return Poll::Ready(()),
            Poll::Pending => return Poll::Pending,
        }
        let room = (limit - rbuf.len()).min(scratch.len());
        match stream.get_ref().read(&mut scratch[..room]) {
            Ok(0) => return Poll::Ready(()),
            Ok(n) => rbuf.extend_from_slice(&scratch[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return Poll::Ready(()),
        }
    }
}

/// The reply to a request still waiting when the acceptor stops.
fn shutdown_reply(status: u16) -> Reply {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    Reply::error(status).header(
        http::header::RETRY_AFTER,
        http::HeaderValue::from_static("1"),
    )
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(non-string panic)")
}

/// Size in bytes of a connection task's future before its first poll (the largest state it can
/// be in, since a future's size is fixed). For benches and the size test.
#[doc(hidden)]
pub fn connection_future_size() -> usize {
    let handler: Rc<dyn Handler> = Rc::new(|_: &crate::Request| Handled::Deferred);
    let acceptor = crate::Acceptor::bind("127.0.0.1:0", |_: &crate::Request| Handled::Deferred)
        .expect("bind a loopback listener");
    let client = TcpStream::connect(acceptor.local_addr()).expect("connect to own listener");
    let stream = Async::new(client).expect("register socket");
    let peer = acceptor.local_addr();
    let (guard, cell) = acceptor.handle().register_connection();
    let future = serve(stream, peer, guard, cell, handler);
    std::mem::size_of_val(&future)
}

#[cfg(test)]
mod tests {
    /// The connection task must stay small: it is most of what a waiting request costs.
    /// Raise this bound only with a measured reason (see benches/waiting_memory.rs).
    const MAX_CONNECTION_FUTURE: usize = 192;

    #[test]
    fn connection_future_is_small() {
        let size = super::connection_future_size();
        eprintln!("connection future: {size} bytes");
        assert!(
            size <= MAX_CONNECTION_FUTURE,
            "connection future is {size} bytes"
        );
    }
}
