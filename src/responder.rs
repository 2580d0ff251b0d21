//! The single-use path from the application back to the waiting connection.
//!
//! Each connection owns one [`ConnCell`], shared (by `Rc`) with whatever holds the right to reply
//! to its current request. The cell is the reply channel of that request: the application puts
//! the reply in it and wakes the connection task; the connection marks it closed when the client
//! hangs up. Requests are numbered, so a late reply for an earlier request is refused instead of
//! answering the wrong one. The cell allocates nothing while a request waits.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use event_listener::Event;
use futures_lite::Stream;
use http::{HeaderMap, StatusCode};

use crate::error::{ChunkError, SendError};
use crate::reply::Reply;

/// What the application delivers for a request.
pub(crate) enum Delivery {
    /// A whole reply.
    Reply(Reply),
    /// Status and headers now (the reply's body, if any, is the first chunk), chunks later.
    Stream(Reply, async_channel::Receiver<StreamItem>),
}

/// An item of a streaming reply's queue. The sender's end closing finishes the stream.
pub(crate) enum StreamItem {
    Data(Bytes),
    Abort,
}

/// The state of the current request's reply.
#[derive(Default)]
enum Slot {
    /// Nothing delivered yet.
    #[default]
    Waiting,
    /// The reply has arrived.
    Delivered(Box<Delivery>),
    /// Every way to reply was dropped: the connection answers 500.
    Abandoned,
    /// The right to reply went to another thread: the reply arrives on this channel.
    Remote(std::pin::Pin<Box<async_channel::Receiver<Delivery>>>),
}

/// What a waiting connection learns from its cell.
pub(crate) enum Wake {
    Delivered(Box<Delivery>),
    Abandoned,
}

/// When a connection became idle, as nanoseconds after a process-wide epoch (8 bytes, where an
/// `Option<Instant>` takes 16, in every connection); 0 while it is active.
#[derive(Clone, Copy, Default)]
pub(crate) struct IdleSince(u64);

impl IdleSince {
    fn epoch() -> Instant {
        static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *EPOCH.get_or_init(Instant::now)
    }

    fn nanos(at: Instant) -> u64 {
        // Saturating: 584 years of uptime fit in u64 nanoseconds. An instant before the epoch
        // (none is: the epoch is set by the first idle connection, before any cutoff) counts as
        // the epoch itself.
        u64::try_from(at.saturating_duration_since(Self::epoch()).as_nanos()).unwrap_or(u64::MAX)
    }

    fn new(since: Option<Instant>) -> IdleSince {
        // 1 ns later than the truth at worst: "idle at the epoch" must not read as "active".
        IdleSince(since.map_or(0, |at| Self::nanos(at).max(1)))
    }

    fn is_at_or_before(self, cutoff: Instant) -> bool {
        self.0 != 0 && self.0 <= Self::nanos(cutoff)
    }
}

/// The two ends of a connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnAddrs {
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
}

impl Default for ConnAddrs {
    fn default() -> Self {
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        ConnAddrs {
            peer: unspecified,
            local: unspecified,
        }
    }
}

/// Per-connection reply channel, hang-up / shutdown flags and addresses.
#[derive(Default)]
pub(crate) struct ConnCell {
    /// Kept here, once per connection, for the connection task and every request on it.
    addrs: Cell<ConnAddrs>,
    /// Number of the request being handled.
    seq: Cell<u32>,
    slot: RefCell<Slot>,
    /// The connection task, while it waits.
    waker: Cell<Option<Waker>>,
    /// The client has gone: no reply can be sent any more.
    closed: Cell<bool>,
    /// Wakes the application's [`closed`](ConnCell::closed) futures.
    closed_event: Event,
    /// Called once if the client goes while the current request is unanswered.
    on_close: RefCell<Option<Box<dyn FnOnce()>>>,
    /// The acceptor is stopping.
    shutdown: Cell<bool>,
    /// The current request's reply is on its way: at shutdown, wait for it rather than answer
    /// the shutdown status.
    keep_on_shutdown: Cell<bool>,
    /// Since when the connection has been idle between requests.
    idle_since: Cell<IdleSince>,
    /// The acceptor's sweep found the connection idle past the keep-alive timeout.
    idle_expired: Cell<bool>,
}

impl ConnCell {
    /// A cell for a connection between `peer` and `local`.
    pub(crate) fn new(peer: SocketAddr, local: SocketAddr) -> ConnCell {
        let cell = ConnCell::default();
        cell.set_addrs(peer, local);
        cell
    }

    /// Record the connection's addresses (when its task starts).
    pub(crate) fn set_addrs(&self, peer: SocketAddr, local: SocketAddr) {
        self.addrs.set(ConnAddrs { peer, local });
    }

    pub(crate) fn addrs(&self) -> ConnAddrs {
        self.addrs.get()
    }

    /// Start request number `seq` (the previous one is over).
    pub(crate) fn begin(&self, seq: u32) {
        self.seq.set(seq);
        *self.slot.borrow_mut() = Slot::Waiting;
        self.keep_on_shutdown.set(false);
    }

    pub(crate) fn keep_on_shutdown(&self, seq: u32) {
        if self.seq.get() == seq {
            self.keep_on_shutdown.set(true);
        }
    }

    /// Should a waiting request be answered with the shutdown status now?
    pub(crate) fn interrupted_by_shutdown(&self) -> bool {
        self.shutdown.get() && !self.keep_on_shutdown.get()
    }

    pub(crate) fn seq(&self) -> u32 {
        self.seq.get()
    }

    /// Is request `seq` unable to receive a reply (client gone, or the request is over)?
    pub(crate) fn is_closed(&self, seq: u32) -> bool {
        self.closed.get() || self.seq.get() != seq
    }

    /// Complete once request `seq` can no longer be answered.
    pub(crate) fn closed(self: &Rc<Self>, seq: u32) -> impl Future<Output = ()> + 'static {
        let cell = self.clone();
        async move {
            loop {
                if cell.is_closed(seq) {
                    return;
                }
                let listener = cell.closed_event.listen();
                if cell.is_closed(seq) {
                    return;
                }
                listener.await;
            }
        }
    }

    /// The client hung up (or the connection ended): refuse further replies, wake watchers, drop
    /// what was delivered but not written (a remote sender then sees its channel closed).
    pub(crate) fn mark_closed(&self) {
        self.closed.set(true);
        let slot = std::mem::take(&mut *self.slot.borrow_mut());
        drop(slot);
        self.notify_closed();
        let callback = self.on_close.borrow_mut().take();
        if let Some(callback) = callback {
            callback();
        }
    }

    /// Run `f` if the client goes before request `seq` is answered. `false` (and `f` dropped)
    /// if that can no longer happen: the client has gone already or the request is over.
    pub(crate) fn on_close(&self, seq: u32, f: Box<dyn FnOnce()>) -> bool {
        if self.is_closed(seq) {
            return false;
        }
        let mut slot = self.on_close.borrow_mut();
        *slot = Some(match slot.take() {
            None => f,
            Some(earlier) => Box::new(move || {
                earlier();
                f();
            }),
        });
        true
    }

    /// The current request is answered and written: wake `closed()` watchers of it.
    pub(crate) fn finish_request(&self) {
        self.seq.set(self.seq.get().wrapping_add(1));
        self.on_close.borrow_mut().take();
        self.notify_closed();
    }

    /// Wake `closed()` watchers; the check keeps the event's list unallocated when nobody
    /// watches (most connections).
    fn notify_closed(&self) {
        if self.closed_event.total_listeners() > 0 {
            self.closed_event.notify(usize::MAX);
        }
    }

    pub(crate) fn start_shutdown(&self) {
        self.shutdown.set(true);
        self.wake();
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutdown.get()
    }

    /// The connection waits for a new request from now on (or, with `None`, no longer does).
    pub(crate) fn set_idle(&self, since: Option<Instant>) {
        self.idle_since.set(IdleSince::new(since));
        self.idle_expired.set(false);
    }

    /// Close the connection if it has been idle since before `cutoff`. One sweep of the
    /// acceptor does this for every connection, so idle connections arm no timer each.
    pub(crate) fn expire_idle(&self, cutoff: Instant) {
        if self.idle_since.get().is_at_or_before(cutoff) {
            self.idle_expired.set(true);
            self.wake();
        }
    }

    /// Idle between requests (see [`set_idle`](ConnCell::set_idle)).
    pub(crate) fn is_idle(&self) -> bool {
        self.idle_since.get().0 != 0
    }

    pub(crate) fn is_idle_expired(&self) -> bool {
        self.idle_expired.get()
    }

    fn wake(&self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Remember the connection task to wake.
    pub(crate) fn register(&self, cx: &Context<'_>) {
        let mut current = self.waker.take();
        match &mut current {
            Some(w) => w.clone_from(cx.waker()),
            None => current = Some(cx.waker().clone()),
        }
        self.waker.set(current);
    }

    /// Deliver for request `seq`, unless it can no longer be answered.
    pub(crate) fn deliver(&self, seq: u32, delivery: Delivery) -> Result<(), Delivery> {
        if self.is_closed(seq) {
            return Err(delivery);
        }
        *self.slot.borrow_mut() = Slot::Delivered(Box::new(delivery));
        self.wake();
        Ok(())
    }

    /// Every holder of request `seq`'s reply right has gone without replying.
    pub(crate) fn abandon(&self, seq: u32) {
        if !self.is_closed(seq) {
            *self.slot.borrow_mut() = Slot::Abandoned;
            self.wake();
        }
    }

    /// Hand request `seq`'s reply right to another thread; `None` if it cannot be answered.
    pub(crate) fn go_remote(&self, seq: u32) -> Option<async_channel::Sender<Delivery>> {
        if self.is_closed(seq) {
            return None;
        }
        let (tx, rx) = async_channel::bounded(1);
        *self.slot.borrow_mut() = Slot::Remote(Box::pin(rx));
        self.wake();
        Some(tx)
    }

    /// Has the current request been answered (or abandoned)? Registers the waker otherwise.
    pub(crate) fn poll_delivery(&self, cx: &mut Context<'_>) -> Poll<Wake> {
        let mut slot = self.slot.borrow_mut();
        match &mut *slot {
            Slot::Waiting => {
                self.register(cx);
                Poll::Pending
            }
            Slot::Remote(rx) => match rx.as_mut().poll_next(cx) {
                Poll::Ready(Some(d)) => {
                    *slot = Slot::Waiting;
                    Poll::Ready(Wake::Delivered(Box::new(d)))
                }
                Poll::Ready(None) => {
                    *slot = Slot::Waiting;
                    Poll::Ready(Wake::Abandoned)
                }
                Poll::Pending => {
                    self.register(cx);
                    Poll::Pending
                }
            },
            Slot::Delivered(_) | Slot::Abandoned => match std::mem::take(&mut *slot) {
                Slot::Delivered(d) => Poll::Ready(Wake::Delivered(d)),
                _ => Poll::Ready(Wake::Abandoned),
            },
        }
    }

    /// Take a delivery that is already there, without waiting.
    pub(crate) fn take_ready(&self) -> Option<Wake> {
        match &*self.slot.borrow() {
            Slot::Delivered(_) | Slot::Abandoned => {}
            Slot::Waiting | Slot::Remote(_) => return None,
        }
        match std::mem::take(&mut *self.slot.borrow_mut()) {
            Slot::Delivered(d) => Some(Wake::Delivered(d)),
            _ => Some(Wake::Abandoned),
        }
    }
}

/// The single-use right to answer one request (IOMUX-SEND-REPLY).
///
/// Taken from a request's context with [`SavedContext::responder`](crate::SavedContext::responder)
/// or [`context::responder`](crate::context::responder). Each method consumes it, so a request
/// cannot be answered twice; dropping it without replying answers `500 Internal Server Error`, so
/// a client never hangs on a forgotten request. It is `!Send`: for another thread use
/// [`Responder::remote`].
///
/// ```compile_fail
/// fn assert_send<T: Send>() {}
/// assert_send::<iomux::Responder>();
/// ```
pub struct Responder {
    cell: Option<Rc<ConnCell>>,
    seq: u32,
    draft: Draft,
}

/// What every reply right carries from its request: the header fields set on the reply under
/// construction, and the stream queue length. Local and remote rights differ only in how a
/// delivery reaches the connection.
#[derive(Default)]
struct Draft {
    headers: HeaderMap,
    queue_len: usize,
}

impl Draft {
    /// `reply` with the draft's fields added; the reply's own fields replace those of the same
    /// name, except `Set-Cookie`, whose fields add up (a session cookie set by the handler stays
    /// when the reply sets cookies of its own).
    fn merge(&mut self, reply: Reply) -> Reply {
        let mut headers = std::mem::take(&mut self.headers);
        if headers.is_empty() {
            return reply;
        }
        let (status, own, body) = reply.into_parts();
        let mut last = None;
        for (name, value) in own {
            if let Some(name) = name {
                if name != http::header::SET_COOKIE {
                    headers.remove(&name);
                }
                last = Some(name);
            }
            if let Some(name) = &last {
                headers.append(name.clone(), value);
            }
        }
        Reply::from_parts(status, headers, body)
    }

    /// Deliver a whole reply through `post`; what it refuses comes back as `ClientGone`.
    fn send(
        mut self,
        reply: Reply,
        post: impl FnOnce(Delivery) -> Result<(), Delivery>,
    ) -> Result<(), SendError<Reply>> {
        let reply = self.merge(reply);
        post(Delivery::Reply(reply)).map_err(|d| SendError::ClientGone(d.into_reply()))
    }

    /// Deliver a stream's head through `post`, with a new bounded queue for its chunks.
    fn start_stream(
        mut self,
        head: Reply,
        post: impl FnOnce(Delivery) -> Result<(), Delivery>,
    ) -> Result<BodySender, SendError<Reply>> {
        let head = self.merge(head);
        let (tx, rx) = async_channel::bounded(self.queue_len.max(1));
        post(Delivery::Stream(head, rx))
            .map(|()| BodySender { tx })
            .map_err(|d| SendError::ClientGone(d.into_reply()))
    }
}

impl Delivery {
    /// The reply (or stream head) of an undelivered delivery.
    fn into_reply(self) -> Reply {
        match self {
            Delivery::Reply(reply) | Delivery::Stream(reply, _) => reply,
        }
    }
}

impl Responder {
    pub(crate) fn new(
        cell: Rc<ConnCell>,
        seq: u32,
        draft: Option<(StatusCode, HeaderMap)>,
        queue_len: usize,
    ) -> Responder {
        let headers = draft.map(|(_, headers)| headers).unwrap_or_default();
        Responder {
            cell: Some(cell),
            seq,
            draft: Draft { headers, queue_len },
        }
    }

    /// The connection's cell (the right is used: dropping it no longer abandons the request).
    fn take_cell(&mut self) -> Rc<ConnCell> {
        self.cell.take().expect("a responder is used once")
    }

    /// Send the reply. Header fields set on the request's reply under construction (for example
    /// by the handler) are included; the reply's own fields replace fields of the same name.
    ///
    /// # Errors
    /// [`SendError::ClientGone`] with the reply if the client has hung up.
    ///
    /// ```no_run
    /// # fn f(responder: iomux::Responder) {
    /// if let Err(e) = responder.send(iomux::Reply::text("done\n")) {
    ///     eprintln!("{e}");
    ///     let undelivered: iomux::Reply = e.into_inner();
    ///     drop(undelivered);
    /// }
    /// # }
    /// ```
    pub fn send(mut self, reply: Reply) -> Result<(), SendError<Reply>> {
        let (cell, seq) = (self.take_cell(), self.seq);
        std::mem::take(&mut self.draft).send(reply, |d| cell.deliver(seq, d))
    }

    /// Send the status and header fields of `head` now and its body (if any) as the first chunk;
    /// further chunks go through the returned [`BodySender`]. On HTTP/1.1 the body is chunked;
    /// on HTTP/1.0 it ends when the connection closes. For a `HEAD` request (and a 204 or 304
    /// status) the head is the whole reply: the sender then reports the client gone.
    ///
    /// # Errors
    /// [`SendError::ClientGone`] with `head` if the client has hung up.
    ///
    /// ```no_run
    /// # async fn f(responder: iomux::Responder) -> Result<(), Box<dyn std::error::Error>> {
    /// let body = responder.start_stream(iomux::Reply::text("first\n"))?;
    /// body.send("second\n").await?;
    /// body.finish();
    /// # Ok(()) }
    /// ```
    pub fn start_stream(mut self, head: Reply) -> Result<BodySender, SendError<Reply>> {
        let (cell, seq) = (self.take_cell(), self.seq);
        std::mem::take(&mut self.draft).start_stream(head, |d| cell.deliver(seq, d))
    }

    /// Has the client gone (or the request otherwise ended)? A waiter whose client has gone can
    /// be dropped.
    pub fn is_closed(&self) -> bool {
        self.cell.as_ref().is_none_or(|c| c.is_closed(self.seq))
    }

    /// Completes when the client hangs up (or the request otherwise ends).
    pub fn closed(&self) -> impl Future<Output = ()> + 'static {
        let cell = self.cell.clone().unwrap_or_default();
        let seq = if self.cell.is_some() {
            self.seq
        } else {
            cell.seq().wrapping_add(1)
        };
        cell.closed(seq)
    }

    /// Move the right to reply to another thread. The connection keeps waiting and takes the
    /// reply from a channel into the event loop.
    ///
    /// ```no_run
    /// # fn f(responder: iomux::Responder) {
    /// let remote = responder.remote();
    /// std::thread::spawn(move || remote.send(iomux::Reply::text("from a thread\n")));
    /// # }
    /// ```
    pub fn remote(mut self) -> RemoteResponder {
        let seq = self.seq;
        let tx = self
            .take_cell()
            .go_remote(seq)
            .unwrap_or_else(|| async_channel::bounded(1).0);
        RemoteResponder {
            tx,
            draft: std::mem::take(&mut self.draft),
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let Some(cell) = self.cell.take() {
            cell.abandon(self.seq);
        }
    }
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// The right to answer one request, usable from any thread (`Send`).
///
/// Its reply travels over a channel into the event loop, where the connection writes it.
/// Dropping it without replying answers `500`.
///
/// ```
/// fn assert_send<T: Send + 'static>() {}
/// assert_send::<iomux::RemoteResponder>();
/// ```
pub struct RemoteResponder {
    tx: async_channel::Sender<Delivery>,
    draft: Draft,
}

impl RemoteResponder {
    /// Send the reply (see [`Responder::send`]).
    ///
    /// # Errors
    /// [`SendError::ClientGone`] with the reply if the client has hung up.
    pub fn send(self, reply: Reply) -> Result<(), SendError<Reply>> {
        let RemoteResponder { tx, draft } = self;
        draft.send(reply, |d| tx.try_send(d).map_err(|e| e.into_inner()))
    }

    /// Start a streaming reply (see [`Responder::start_stream`]); the [`BodySender`] is `Send`.
    ///
    /// # Errors
    /// [`SendError::ClientGone`] with `head` if the client has hung up.
    pub fn start_stream(self, head: Reply) -> Result<BodySender, SendError<Reply>> {
        let RemoteResponder { tx, draft } = self;
        draft.start_stream(head, |d| tx.try_send(d).map_err(|e| e.into_inner()))
    }

    /// Has the client gone?
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl std::fmt::Debug for RemoteResponder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteResponder")
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// The body of a streaming reply, fed chunk by chunk from any event or thread (`Send`).
///
/// Chunks are written in order. The queue between the sender and the connection holds
/// [`Config::stream_queue_len`](crate::Config::stream_queue_len) chunks: when a client reads
/// slowly, [`send`](BodySender::send) waits and [`try_send`](BodySender::try_send) fails with
/// [`ChunkError::Full`], so memory stays bounded. Dropping the sender (or
/// [`finish`](BodySender::finish)) ends the body properly after the queued chunks;
/// [`abort`](BodySender::abort) closes the connection without ending it, so the client can tell
/// the body is incomplete.
pub struct BodySender {
    tx: async_channel::Sender<StreamItem>,
}

impl BodySender {
    /// Queue a chunk, waiting while the queue is full. Empty chunks are skipped.
    ///
    /// # Errors
    /// [`ChunkError::ClientGone`] with the chunk if the client has gone.
    pub async fn send(&self, chunk: impl Into<Bytes>) -> Result<(), ChunkError<Bytes>> {
        let chunk = chunk.into();
        if chunk.is_empty() {
            return if self.is_closed() {
                Err(ChunkError::ClientGone(chunk))
            } else {
                Ok(())
            };
        }
        self.tx
            .send(StreamItem::Data(chunk))
            .await
            .map_err(|e| match e.into_inner() {
                StreamItem::Data(b) => ChunkError::ClientGone(b),
                StreamItem::Abort => ChunkError::ClientGone(Bytes::new()),
            })
    }

    /// Queue a chunk if there is room.
    ///
    /// # Errors
    /// [`ChunkError::Full`] or [`ChunkError::ClientGone`], with the chunk.
    ///
    /// ```no_run
    /// # fn f(body: &iomux::BodySender) {
    /// match body.try_send("tick\n") {
    ///     Ok(()) => {}
    ///     Err(iomux::ChunkError::Full(_)) => { /* slow client: skip or buffer */ }
    ///     Err(iomux::ChunkError::ClientGone(_)) => { /* drop this subscriber */ }
    /// }
    /// # }
    /// ```
    pub fn try_send(&self, chunk: impl Into<Bytes>) -> Result<(), ChunkError<Bytes>> {
        let chunk = chunk.into();
        if chunk.is_empty() {
            return if self.is_closed() {
                Err(ChunkError::ClientGone(chunk))
            } else {
                Ok(())
            };
        }
        self.tx.try_send(StreamItem::Data(chunk)).map_err(|e| {
            let full = e.is_full();
            let chunk = match e.into_inner() {
                StreamItem::Data(b) => b,
                StreamItem::Abort => Bytes::new(),
            };
            if full {
                ChunkError::Full(chunk)
            } else {
                ChunkError::ClientGone(chunk)
            }
        })
    }

    /// Has the client gone?
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// End the body after the queued chunks (the same as dropping the sender).
    pub fn finish(self) {}

    /// Close the connection without ending the body; queued chunks may be discarded.
    pub fn abort(self) {
        let _ = self.tx.force_send(StreamItem::Abort);
    }
}

impl std::fmt::Debug for BodySender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodySender")
            .field("queued", &self.tx.len())
            .finish()
    }
}
