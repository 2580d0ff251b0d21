//! The connection actor: one task per socket, from the first byte to the close.
//!
//! Requests on a connection are served one after the other, so replies leave in request order
//! (pipelining); replies to requests already buffered are batched into one write. While a
//! request waits for a deferred reply the task holds no buffers and keeps watching the socket,
//! so a client that hangs up is noticed at once.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

use async_io::{Async, Timer};
use bytes::Bytes;
use futures_lite::{future, AsyncRead, AsyncReadExt, AsyncWriteExt, StreamExt};
use http::StatusCode;

use crate::context::{self, RequestState};
use crate::dispatch::{Handled, Handler};
use crate::error::SendError;
use crate::parse::{parse_head, ChunkedDecoder, Framing, Head};
use crate::reply::{
    encode_chunk_size, encode_head, status_has_body, wants_close, BodyFraming, Reply, LAST_CHUNK,
};
use crate::request::Version;
use crate::responder::{ConnCell, Delivery, StreamItem, Wake};
use crate::server::{AcceptorRef, ConnGuard};
use crate::Config;

/// The interim reply to `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Serve one connection until it closes.
pub(crate) async fn serve(
    stream: Async<TcpStream>,
    peer: SocketAddr,
    guard: ConnGuard,
    cell: Rc<ConnCell>,
    handler: Rc<dyn Handler>,
) {
    let acceptor = guard.acceptor().clone();
    let local = stream
        .get_ref()
        .local_addr()
        .unwrap_or_else(|_| acceptor.local_addr());
    let mut conn = Conn {
        stream,
        peer,
        local,
        cell,
        acceptor,
        rbuf: Vec::new(),
        wbuf: Vec::new(),
        served: 0,
    };
    match conn.run(&*handler).await {
        Ok(End::Close) => {}
        Ok(End::Linger) => conn.linger().await,
        Err(e) => log::debug!("connection from {peer}: {e}"),
    }
    drop(guard);
}

/// How a connection ends.
enum End {
    /// Close at once.
    Close,
    /// An error reply was sent with request bytes possibly unread: read and discard them for a
    /// while so the client gets the reply rather than a reset.
    Linger,
}

/// What ended a wait for more input.
enum Fill {
    Data,
    Eof,
    TimedOut,
    Shutdown,
}

/// What ended a wait for a deferred reply or the next stream chunk.
enum Waited<T> {
    Ready(T),
    Gone,
    Shutdown,
}

struct Conn {
    stream: Async<TcpStream>,
    peer: SocketAddr,
    local: SocketAddr,
    cell: Rc<ConnCell>,
    acceptor: AcceptorRef,
    /// Bytes read and not yet parsed.
    rbuf: Vec<u8>,
    /// Encoded replies not yet written.
    wbuf: Vec<u8>,
    /// Requests read on this connection.
    served: usize,
}

/// Keeps the acceptor's count of waiting requests right however the wait ends.
struct Waiting<'a>(&'a AcceptorRef);

impl<'a> Waiting<'a> {
    fn new(acceptor: &'a AcceptorRef) -> Self {
        acceptor.waiting_changed(1);
        Waiting(acceptor)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting_changed(-1);
    }
}

impl Conn {
    fn config(&self) -> &Config {
        self.acceptor.config()
    }

    async fn run(&mut self, handler: &dyn Handler) -> io::Result<End> {
        loop {
            let head = match self.read_head().await? {
                None => {
                    self.flush().await?;
                    return Ok(End::Close);
                }
                Some(Err(status)) => return self.refuse(status).await,
                Some(Ok(head)) => head,
            };
            let body = match self.read_body(&head).await? {
                Ok(body) => body,
                Err(status) => return self.refuse(status).await,
            };
            self.served += 1;
            let limit = self.config().max_requests_per_connection;
            let keep_alive = head.keep_alive
                && !self.cell.is_shutting_down()
                && (limit == 0 || self.served < limit);
            let version = head.request.version();
            let is_head = head.is_head;

            let wake = match self.dispatch(handler, head, body) {
                Some(wake) => wake,
                None => match self.wait_reply().await? {
                    Waited::Ready(wake) => wake,
                    Waited::Gone => return Ok(End::Close),
                    Waited::Shutdown => {
                        let reply = shutdown_reply(self.config().shutdown_status);
                        self.cell.finish_request();
                        self.write_reply(reply, is_head, version, false).await?;
                        self.flush().await?;
                        return Ok(End::Close);
                    }
                },
            };
            let keep_alive = match wake {
                Wake::Delivered(Delivery::Reply(reply)) => {
                    self.cell.finish_request();
                    self.write_reply(reply, is_head, version, keep_alive)
                        .await?
                }
                Wake::Delivered(Delivery::Stream(head, chunks)) => {
                    let keep_alive = self
                        .write_stream(head, chunks, is_head, version, keep_alive)
                        .await;
                    self.cell.finish_request();
                    keep_alive?
                }
                Wake::Abandoned => {
                    log::warn!("request from {} dropped without a reply: 500", self.peer);
                    self.cell.finish_request();
                    let reply = Reply::error(StatusCode::INTERNAL_SERVER_ERROR);
                    self.write_reply(reply, is_head, version, keep_alive)
                        .await?
                }
            };
            if !keep_alive {
                self.flush().await?;
                return Ok(End::Close);
            }
        }
    }

    /// Run the handler with the request's context current. `Some` if the reply is already
    /// there, `None` if it was deferred.
    fn dispatch(&mut self, handler: &dyn Handler, head: Head, body: Bytes) -> Option<Wake> {
        let mut request = head.request;
        request.set_body(body);
        self.cell.begin(self.cell.seq());
        let state = Rc::new(RequestState::new(
            request,
            self.acceptor.clone(),
            self.cell.clone(),
        ));
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
            Err(panic) => {
                let what = panic_message(&*panic);
                log::error!(
                    "handler panicked on {} {}: {what}",
                    state.request().method(),
                    state.request().target()
                );
                let _ = state.send(Reply::error(StatusCode::INTERNAL_SERVER_ERROR));
            }
        }
        // If nobody kept the context, dropping it here abandons the request (500).
        drop(state);
        self.cell.take_ready()
    }

    /// Read until one request head is parsed. `None`: the connection ends quietly (EOF, idle
    /// timeout, shutdown between requests).
    async fn read_head(&mut self) -> io::Result<Option<Result<Head, StatusCode>>> {
        let mut deadline = None;
        loop {
            if !self.rbuf.is_empty() {
                let config = self.acceptor.config();
                match parse_head(&self.rbuf, config, self.peer, self.local) {
                    Ok(Some((head, len))) => {
                        self.rbuf.drain(..len);
                        return Ok(Some(Ok(head)));
                    }
                    Ok(None) => {}
                    Err(status) => return Ok(Some(Err(status))),
                }
                deadline.get_or_insert_with(|| Instant::now() + config.head_timeout);
            }
            // Replies to earlier pipelined requests go out before waiting for more input.
            self.flush().await?;
            let idle = self.rbuf.is_empty();
            if idle && self.cell.is_shutting_down() {
                return Ok(None);
            }
            let until =
                deadline.unwrap_or_else(|| Instant::now() + self.config().keep_alive_timeout);
            match self.fill(until, idle).await? {
                Fill::Data => {}
                Fill::Eof | Fill::Shutdown => return Ok(None),
                Fill::TimedOut if idle => return Ok(None),
                Fill::TimedOut => return Ok(Some(Err(StatusCode::REQUEST_TIMEOUT))),
            }
        }
    }

    /// Read the body the head announces. `Err(status)`: refuse the request.
    async fn read_body(&mut self, head: &Head) -> io::Result<Result<Bytes, StatusCode>> {
        let deadline = Instant::now() + self.config().body_timeout;
        match head.framing {
            Framing::Empty => Ok(Ok(Bytes::new())),
            Framing::Length(len) => {
                // The parser refused lengths over max_body_size, so this fits in memory.
                let len = len as usize;
                if head.expect_continue && self.rbuf.len() < len {
                    self.wbuf.extend_from_slice(CONTINUE);
                    self.flush().await?;
                }
                self.rbuf.reserve(len.saturating_sub(self.rbuf.len()));
                while self.rbuf.len() < len {
                    match self.fill(deadline, false).await? {
                        Fill::Data | Fill::Shutdown => {}
                        Fill::Eof => return Err(io::ErrorKind::UnexpectedEof.into()),
                        Fill::TimedOut => return Ok(Err(StatusCode::REQUEST_TIMEOUT)),
                    }
                }
                let body = if self.rbuf.len() == len {
                    Bytes::from(std::mem::take(&mut self.rbuf))
                } else {
                    Bytes::from(self.rbuf.drain(..len).collect::<Vec<u8>>())
                };
                Ok(Ok(body))
            }
            Framing::Chunked => {
                if head.expect_continue && self.rbuf.is_empty() {
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
                    match self.fill(deadline, false).await? {
                        Fill::Data | Fill::Shutdown => {}
                        Fill::Eof => return Err(io::ErrorKind::UnexpectedEof.into()),
                        Fill::TimedOut => return Ok(Err(StatusCode::REQUEST_TIMEOUT)),
                    }
                }
            }
        }
    }

    /// Read more bytes into the read buffer, until `deadline`; with `watch_shutdown`, also
    /// return when the acceptor stops.
    async fn fill(&mut self, deadline: Instant, watch_shutdown: bool) -> io::Result<Fill> {
        let chunk = self.acceptor.config().read_buffer_size.max(1);
        let start = self.rbuf.len();
        self.rbuf.resize(start + chunk, 0);
        let Conn {
            stream, rbuf, cell, ..
        } = self;
        let read = async {
            (&*stream)
                .read(&mut rbuf[start..])
                .await
                .map(|n| (n, Fill::Data))
        };
        let timeout = async {
            Timer::at(deadline).await;
            Ok((0, Fill::TimedOut))
        };
        let shutdown = future::poll_fn(|cx| {
            if watch_shutdown && cell.is_shutting_down() {
                return Poll::Ready(Ok((0, Fill::Shutdown)));
            }
            if watch_shutdown {
                cell.register(cx);
            }
            Poll::Pending
        });
        let result = future::or(read, future::or(timeout, shutdown)).await;
        let (n, what) = match result {
            Ok(r) => r,
            Err(e) => {
                self.rbuf.truncate(start);
                return Err(e);
            }
        };
        self.rbuf.truncate(start + n);
        Ok(match what {
            Fill::Data if n == 0 => Fill::Eof,
            other => other,
        })
    }

    /// Wait for the deferred reply, watching the socket: a client that hangs up is noticed at
    /// once and the request's context marked closed.
    async fn wait_reply(&mut self) -> io::Result<Waited<Wake>> {
        self.flush().await?;
        // A waiting connection holds no buffers.
        if self.rbuf.is_empty() {
            self.rbuf = Vec::new();
        }
        self.wbuf = Vec::new();
        let _waiting = Waiting::new(&self.acceptor);
        let limit = self.acceptor.config().max_head_size;
        let Conn {
            stream, rbuf, cell, ..
        } = self;
        let waited = future::poll_fn(|cx| {
            if let Poll::Ready(wake) = cell.poll_delivery(cx) {
                return Poll::Ready(Waited::Ready(wake));
            }
            if cell.is_shutting_down() {
                return Poll::Ready(Waited::Shutdown);
            }
            if poll_hangup(stream, rbuf, limit, cx).is_ready() {
                return Poll::Ready(Waited::Gone);
            }
            Poll::Pending
        })
        .await;
        if let Waited::Gone = waited {
            log::debug!("client {} hung up while waiting", self.peer);
            self.cell.mark_closed();
        }
        Ok(waited)
    }

    /// Encode a whole reply; write it unless more pipelined requests may follow it in the same
    /// write. Returns whether the connection stays open.
    async fn write_reply(
        &mut self,
        reply: Reply,
        is_head: bool,
        version: Version,
        keep_alive: bool,
    ) -> io::Result<bool> {
        let (status, headers, body) = reply.into_parts();
        let keep_alive = keep_alive && !wants_close(&headers);
        let with_body = status_has_body(status);
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
        if with_body && !is_head {
            self.push_body(body).await?;
        }
        if self.wbuf.len() >= self.config().coalesce_limit {
            self.flush().await?;
        }
        Ok(keep_alive)
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
        is_head: bool,
        version: Version,
        keep_alive: bool,
    ) -> io::Result<bool> {
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
        if with_body {
            self.push_chunk(first, framing).await?;
        }
        self.flush().await?;
        let mut chunks = std::pin::pin!(chunks);
        loop {
            let limit = self.acceptor.config().max_head_size;
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
                    if with_body {
                        self.push_chunk(data, framing).await?;
                        // Batch whatever else is already queued into the same write.
                        while self.wbuf.len() < self.config().coalesce_limit {
                            match chunks.try_recv() {
                                Ok(StreamItem::Data(more)) => {
                                    self.push_chunk(more, framing).await?
                                }
                                Ok(StreamItem::Abort) => return self.abort_stream().await,
                                Err(_) => break,
                            }
                        }
                        self.flush().await?;
                    }
                }
                Waited::Ready(Some(StreamItem::Abort)) => return self.abort_stream().await,
                Waited::Ready(None) | Waited::Shutdown => {
                    if matches!(next, Waited::Shutdown) {
                        keep_alive = false;
                    }
                    if with_body && framing == BodyFraming::Chunked {
                        self.wbuf.extend_from_slice(LAST_CHUNK);
                    }
                    self.flush().await?;
                    return Ok(keep_alive && framing != BodyFraming::UntilClose);
                }
                Waited::Gone => {
                    log::debug!("client {} hung up during a stream", self.peer);
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
        log::debug!("refusing request from {}: {status}", self.peer);
        let reply = Reply::error(status);
        self.write_reply(reply, false, Version::Http11, false)
            .await?;
        self.flush().await?;
        Ok(End::Linger)
    }

    /// Half-close, then read and discard what the client still sends, for a bounded time.
    async fn linger(&mut self) {
        if self.stream.get_ref().shutdown(Shutdown::Write).is_err() {
            return;
        }
        let deadline = Instant::now() + self.config().lingering_time;
        let mut sink = [0u8; 512];
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
/// later), up to `limit` bytes; `Ready` when the client has closed or reset the connection.
fn poll_hangup(
    stream: &Async<TcpStream>,
    rbuf: &mut Vec<u8>,
    limit: usize,
    cx: &mut Context<'_>,
) -> Poll<()> {
    let mut scratch = [0u8; 512];
    loop {
        if rbuf.len() >= limit {
            // Enough is buffered; stop reading until the current request is done.
            return Poll::Pending;
        }
        let room = (limit - rbuf.len()).min(scratch.len());
        match Pin::new(&mut &*stream).poll_read(cx, &mut scratch[..room]) {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(()),
            Poll::Ready(Ok(n)) => rbuf.extend_from_slice(&scratch[..n]),
            Poll::Pending => return Poll::Pending,
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
    const MAX_CONNECTION_FUTURE: usize = 1024;

    #[test]
    fn connection_future_is_small() {
        let size = super::connection_future_size();
        assert!(size <= MAX_CONNECTION_FUTURE, "connection future is {size} bytes");
    }
}
#[cfg(test)]
mod sizes_tmp {
    use super::*;
    #[test]
    fn print_sizes() {
        let acceptor = crate::Acceptor::bind("127.0.0.1:0", |_: &crate::Request| Handled::Deferred).unwrap();
        let client = TcpStream::connect(acceptor.local_addr()).unwrap();
        let stream = Async::new(client).unwrap();
        let (_guard, cell) = acceptor.handle().register_connection();
        let mut conn = Conn { stream, peer: acceptor.local_addr(), local: acceptor.local_addr(), cell, acceptor: acceptor.handle(), rbuf: Vec::new(), wbuf: Vec::new(), served: 0 };
        let h: &dyn Handler = &|_: &crate::Request| Handled::Deferred;
        eprintln!("conn {}", std::mem::size_of::<Conn>());
        eprintln!("run {}", std::mem::size_of_val(&conn.run(h)));
        eprintln!("read_head {}", std::mem::size_of_val(&conn.read_head()));
        eprintln!("fill {}", std::mem::size_of_val(&conn.fill(Instant::now(), true)));
        eprintln!("wait_reply {}", std::mem::size_of_val(&conn.wait_reply()));
        eprintln!("flush {}", std::mem::size_of_val(&conn.flush()));
        eprintln!("write_all {}", std::mem::size_of_val(&conn.write_all(b"")));
        eprintln!("write_reply {}", std::mem::size_of_val(&conn.write_reply(Reply::default(), false, Version::Http11, true)));
        let (_tx, rx) = async_channel::bounded(1);
        eprintln!("write_stream {}", std::mem::size_of_val(&conn.write_stream(Reply::default(), rx, false, Version::Http11, true)));
        eprintln!("push_body {}", std::mem::size_of_val(&conn.push_body(Bytes::new())));
        eprintln!("refuse {}", std::mem::size_of_val(&conn.refuse(StatusCode::OK)));
        eprintln!("linger {}", std::mem::size_of_val(&conn.linger()));
        eprintln!("timer {}", std::mem::size_of::<Timer>());
        eprintln!("head {}", std::mem::size_of::<Head>());
        eprintln!("wake {}", std::mem::size_of::<Wake>());
        eprintln!("request {}", std::mem::size_of::<crate::Request>());
    }
}
