//! The request-scoped context: what is "current" while a handler runs, its snapshot
//! [`SavedContext`], and user-declared [`ContextLocal`]s.
//!
//! Hunchentoot binds `*request*`, `*reply*`, `*session*` and `*acceptor*` while a handler runs;
//! IOMUX-ACCEPTOR saves them with `WITH-SAVED-SPECIALS` and brings them back later with
//! `WITH-RESTORED-SPECIALS`. Here the same roles are played by the functions of this module
//! (which read the current context), [`with_saved_context!`](crate::with_saved_context) and
//! [`with_restored_context!`](crate::with_restored_context).
//!
//! The current context lives in a thread-local slot: it belongs to the event loop's thread, and a
//! [`SavedContext`] is `!Send`. Asking for the current request where there is none is a
//! [`NoContextError`] from the `try_` functions, and a panic with that message from the others.
//!
//! ```
//! use iomux::{context, context_local, with_restored_context, with_saved_context};
//!
//! context_local! {
//!     /// The user name, like a special variable.
//!     static USER: String = String::from("anonymous");
//! }
//!
//! USER.set("alice".to_string());
//! let saved = with_saved_context!(USER => "bob".to_string());
//! assert_eq!(USER.get(), "alice");
//! with_restored_context!(saved, {
//!     assert_eq!(USER.get(), "bob");
//!     assert!(context::try_request().is_err()); // saved outside any request
//! });
//! assert_eq!(USER.get(), "alice");
//! ```

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, StatusCode};

use crate::error::{NoContextError, SendError};
use crate::reply::Reply;
use crate::request::Request;
use crate::responder::{BodySender, ConnCell, RemoteResponder, Responder};
use crate::server::AcceptorRef;

/// Content type of [`send_body`] when the handler set none (Hunchentoot's default).
pub const DEFAULT_CONTENT_TYPE: &str = "text/html; charset=utf-8";

/// Everything request-scoped: shared by the handler's frame and every snapshot of it.
pub(crate) struct RequestState {
    request: Request,
    /// Status of the reply under construction.
    status: Cell<StatusCode>,
    /// Header fields of the reply under construction; allocated when the first is set, since
    /// most waiting requests never set one.
    headers: RefCell<Option<Box<HeaderMap>>>,
    acceptor: AcceptorRef,
    seq: u32,
    /// The reply right has been used (sent, streamed, or handed out as a `Responder`).
    replied: Cell<bool>,
}

impl RequestState {
    /// The connection the request came on.
    fn cell(&self) -> &Rc<ConnCell> {
        self.request.conn()
    }

    pub(crate) fn new(request: Request, acceptor: AcceptorRef) -> Self {
        let seq = request.conn().seq();
        RequestState {
            request,
            status: Cell::new(StatusCode::OK),
            headers: RefCell::new(None),
            acceptor,
            seq,
            replied: Cell::new(false),
        }
    }

    pub(crate) fn request(&self) -> &Request {
        &self.request
    }

    fn headers_mut<R>(&self, f: impl FnOnce(&mut HeaderMap) -> R) -> R {
        f(self
            .headers
            .borrow_mut()
            .get_or_insert_with(Default::default))
    }

    /// Take the reply right, if still here.
    pub(crate) fn take_responder(&self) -> Option<Responder> {
        if self.replied.replace(true) {
            return None;
        }
        let headers = self
            .headers
            .borrow_mut()
            .take()
            .map_or_else(HeaderMap::new, |h| *h);
        let draft = Some((self.status.get(), headers));
        let queue = self.acceptor.config().stream_queue_len;
        Some(Responder::new(self.cell().clone(), self.seq, draft, queue))
    }

    pub(crate) fn send(&self, reply: Reply) -> Result<(), SendError<Reply>> {
        match self.take_responder() {
            Some(r) => r.send(reply),
            None => Err(SendError::AlreadyReplied(reply)),
        }
    }

    fn body_reply(&self, body: Bytes) -> Reply {
        let mut reply = Reply::new(self.status.get()).with_body(body);
        if !self
            .headers
            .borrow()
            .as_ref()
            .is_some_and(|h| h.contains_key(CONTENT_TYPE))
        {
            reply
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(DEFAULT_CONTENT_TYPE));
        }
        reply
    }
}

impl Drop for RequestState {
    fn drop(&mut self) {
        if !self.replied.get() {
            self.cell().abandon(self.seq);
        }
    }
}

/// One user-declared value per context, keyed by its declaration's address.
type Locals = Vec<(usize, Rc<dyn Any>)>;

/// What is current: the request (if any) and the context locals.
#[derive(Clone, Default)]
struct Frame {
    request: Option<Rc<RequestState>>,
    locals: Option<Rc<Locals>>,
}

thread_local! {
    static CURRENT: RefCell<Frame> = RefCell::new(Frame::default());
}

/// Puts the previous frame back when dropped, also while unwinding from a panic.
struct Restore(Option<Frame>);

impl Drop for Restore {
    fn drop(&mut self) {
        if let Some(prev) = self.0.take() {
            let _ = CURRENT.try_with(|c| *c.borrow_mut() = prev);
        }
    }
}

fn enter(frame: Frame) -> Restore {
    Restore(Some(CURRENT.with(|c| c.replace(frame))))
}

/// Run `f` with a fresh request context current (the connection's handler call).
pub(crate) fn run_handler<R>(state: Rc<RequestState>, f: impl FnOnce() -> R) -> R {
    let locals = CURRENT.with(|c| c.borrow().locals.clone());
    let _restore = enter(Frame {
        request: Some(state),
        locals,
    });
    f()
}

fn current_state() -> Result<Rc<RequestState>, NoContextError> {
    CURRENT
        .with(|c| c.borrow().request.clone())
        .ok_or(NoContextError)
}

fn state() -> Rc<RequestState> {
    current_state().unwrap_or_else(|e| panic!("iomux: {e}"))
}

/// A snapshot of the request context: the request, its reply under construction, session slot,
/// acceptor, and the values of all [`ContextLocal`]s at the time of capture.
///
/// Make one with [`with_saved_context!`](crate::with_saved_context); make it current again with
/// [`with_restored_context!`](crate::with_restored_context), [`SavedContext::restore`] or
/// [`SavedContext::scope`]. Cloning is cheap and shares the request. Holding a `SavedContext`
/// keeps the request waiting; when the last one is dropped without a reply the client gets
/// `500`. It is `!Send` (it belongs to the event loop); for another thread use
/// [`SavedContext::remote`].
///
/// ```compile_fail
/// fn assert_send<T: Send>(_: T) {}
/// assert_send(iomux::with_saved_context!());
/// ```
#[derive(Clone, Default)]
pub struct SavedContext {
    frame: Frame,
}

impl SavedContext {
    /// Snapshot the current context (what [`with_saved_context!`](crate::with_saved_context)
    /// expands to). Outside any request it captures the context locals only.
    ///
    /// ```
    /// let saved = iomux::SavedContext::capture();
    /// assert!(saved.request().is_none());
    /// ```
    pub fn capture() -> SavedContext {
        SavedContext {
            frame: CURRENT.with(|c| c.borrow().clone()),
        }
    }

    /// Override a context local's value in this snapshot.
    ///
    /// ```
    /// iomux::context_local! { static DEPTH: u32 = 0; }
    /// let saved = iomux::SavedContext::capture().with_local(&DEPTH, 3);
    /// assert_eq!(saved.restore(|| DEPTH.get()), 3);
    /// ```
    pub fn with_local<T: 'static>(mut self, local: &'static ContextLocal<T>, value: T) -> Self {
        set_in(&mut self.frame.locals, local.key(), Rc::new(value));
        self
    }

    /// Run `f` with this context current; the previous context is current again afterwards,
    /// also if `f` panics. Nests.
    ///
    /// ```
    /// iomux::context_local! { static N: u32 = 1; }
    /// let two = iomux::SavedContext::capture().with_local(&N, 2);
    /// let three = iomux::SavedContext::capture().with_local(&N, 3);
    /// two.restore(|| {
    ///     assert_eq!(three.restore(|| N.get()), 3);
    ///     assert_eq!(N.get(), 2);
    /// });
    /// assert_eq!(N.get(), 1);
    /// ```
    pub fn restore<R>(&self, f: impl FnOnce() -> R) -> R {
        let _restore = enter(self.frame.clone());
        f()
    }

    /// Wrap a future so that this context is current whenever it runs, across `.await`s.
    ///
    /// ```
    /// iomux::context_local! { static N: u32 = 0; }
    /// let ctx = iomux::SavedContext::capture().with_local(&N, 9);
    /// let seen = futures_lite::future::block_on(ctx.scope(async {
    ///     futures_lite::future::yield_now().await;
    ///     N.get()
    /// }));
    /// assert_eq!(seen, 9);
    /// assert_eq!(N.get(), 0);
    /// ```
    pub fn scope<F: Future>(&self, future: F) -> Scoped<F> {
        Scoped {
            ctx: self.clone(),
            future,
        }
    }

    /// A closure that runs `f` in this context on every call (the function form of
    /// [`safe_closure!`](crate::safe_closure), Hunchentoot's SAFE-LAMBDA).
    ///
    /// ```
    /// iomux::context_local! { static N: u32 = 0; }
    /// let f = iomux::SavedContext::capture().with_local(&N, 5).bind(|x: u32| x + N.get());
    /// assert_eq!(f(1), 6);
    /// ```
    pub fn bind<A, R>(self, f: impl Fn(A) -> R) -> impl Fn(A) -> R {
        move |a| self.restore(|| f(a))
    }

    fn state(&self) -> Result<&Rc<RequestState>, NoContextError> {
        self.frame.request.as_ref().ok_or(NoContextError)
    }

    /// The saved request, if the context was saved inside one.
    pub fn request(&self) -> Option<RequestRef> {
        self.frame.request.clone().map(RequestRef)
    }

    /// Send the reply to the saved request (see [`send_reply`]).
    ///
    /// # Errors
    /// [`SendError::ClientGone`], [`SendError::AlreadyReplied`] or [`SendError::NoRequest`],
    /// each with the reply.
    pub fn send_reply(&self, reply: impl Into<Reply>) -> Result<(), SendError<Reply>> {
        let reply = reply.into();
        match self.state() {
            Ok(state) => state.send(reply),
            Err(_) => Err(SendError::NoRequest(reply)),
        }
    }

    /// Take the single-use [`Responder`] of the saved request (`None` if already replied or
    /// saved outside a request).
    pub fn responder(&self) -> Option<Responder> {
        self.state().ok()?.take_responder()
    }

    /// Take the reply right as a `Send` handle for another thread.
    ///
    /// ```no_run
    /// # fn f(saved: iomux::SavedContext) {
    /// if let Some(remote) = saved.remote() {
    ///     std::thread::spawn(move || remote.send(iomux::Reply::text("42\n")));
    /// }
    /// # }
    /// ```
    pub fn remote(&self) -> Option<RemoteResponder> {
        self.responder().map(Responder::remote)
    }

    /// Run blocking work off the event loop (on smol's blocking thread pool) and send its
    /// result as the reply.
    ///
    /// # Errors
    /// [`SendError::AlreadyReplied`] or [`SendError::NoRequest`] with the work, if there is no
    /// reply right to give it.
    pub fn reply_blocking<F>(&self, work: F) -> Result<(), SendError<F>>
    where
        F: FnOnce() -> Reply + Send + 'static,
    {
        let remote = match self.state() {
            Err(_) => return Err(SendError::NoRequest(work)),
            Ok(state) => match state.take_responder() {
                Some(r) => r.remote(),
                None => return Err(SendError::AlreadyReplied(work)),
            },
        };
        smol::unblock(move || {
            if let Err(e) = remote.send(work()) {
                log::debug!("blocking reply not sent: {e}");
            }
        })
        .detach();
        Ok(())
    }

    /// Has the saved request's client gone (or the request been answered)? `true` outside a
    /// request.
    ///
    /// While a request waits, its connection keeps reading: end of stream (also a client's
    /// half-close, `shutdown(SHUT_WR)`, which HTTP/1.1 clients do not use while awaiting a
    /// reply) or a reset marks the request closed at once. Bytes of pipelined requests are kept
    /// for later, up to [`Config::max_head_size`](crate::Config::max_head_size); a client that
    /// sends more while its request waits is disconnected, as if it had hung up.
    pub fn is_closed(&self) -> bool {
        self.state().map_or(true, |s| s.cell().is_closed(s.seq))
    }

    /// Call `f` once if the saved request's client hangs up (or its connection is dropped) before
    /// the request is answered; it is dropped uncalled when the request is answered. This lets an
    /// actor forget a waiter the moment its client leaves, without a task or timer per waiter.
    /// Returns `false`, dropping `f`, if the client has gone already, the request was answered,
    /// or the context was saved outside a request. `f` runs on the event loop, from the
    /// connection task: it must not block, and should not assume it runs inside the actor.
    ///
    /// ```no_run
    /// # fn f(ctx: iomux::SavedContext) {
    /// use std::{cell::RefCell, rc::Rc};
    /// let waiters: Rc<RefCell<Vec<u64>>> = Rc::default();
    /// let (list, id) = (Rc::downgrade(&waiters), 7);
    /// ctx.on_close(move || {
    ///     if let Some(list) = list.upgrade() {
    ///         list.borrow_mut().retain(|&w| w != id);
    ///     }
    /// });
    /// # }
    /// ```
    pub fn on_close(&self, f: impl FnOnce() + 'static) -> bool {
        match self.state() {
            Ok(state) => state.cell().on_close(state.seq, Box::new(f)),
            Err(_) => false,
        }
    }

    /// Keep this request through a shutdown: when the acceptor stops while it waits for its
    /// deferred reply, its connection goes on waiting (within
    /// [`Config::shutdown_timeout`](crate::Config::shutdown_timeout)) instead of answering
    /// [`Config::shutdown_status`](crate::Config::shutdown_status). For requests whose reply is
    /// on its way, such as a publish being stored, so that a client never gets an error for work
    /// that was done; long-polls should be left to the shutdown status.
    pub fn keep_on_shutdown(&self) {
        if let Ok(state) = self.state() {
            state.cell().keep_on_shutdown(state.seq);
        }
    }

    /// Completes when the saved request's client hangs up or the request ends.
    pub fn closed(&self) -> impl Future<Output = ()> + 'static {
        let (cell, seq) = match self.state() {
            Ok(s) => (s.cell().clone(), s.seq),
            Err(_) => {
                let cell = Rc::new(ConnCell::default());
                let seq = cell.seq().wrapping_add(1);
                (cell, seq)
            }
        };
        cell.closed(seq)
    }
}

impl std::fmt::Debug for SavedContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SavedContext")
            .field("request", &self.frame.request.as_ref().map(|s| &s.request))
            .field("locals", &self.frame.locals.as_ref().map_or(0, |l| l.len()))
            .finish()
    }
}

pin_project_lite::pin_project! {
    /// A future that runs with a [`SavedContext`] current; see [`SavedContext::scope`].
    /// Context locals set inside it keep their values across `.await`s.
    #[must_use = "futures do nothing unless polled"]
    pub struct Scoped<F> {
        ctx: SavedContext,
        #[pin]
        future: F,
    }
}

/// While a [`Scoped`] future is polled, its frame is current; afterwards (also on panic) the
/// frame, with whatever was set in it, goes back into the future and the previous one is current.
struct ScopeGuard<'a> {
    slot: &'a mut Frame,
    prev: Option<Frame>,
}

impl Drop for ScopeGuard<'_> {
    fn drop(&mut self) {
        if let Some(prev) = self.prev.take() {
            if let Ok(frame) = CURRENT.try_with(|c| c.replace(prev)) {
                *self.slot = frame;
            }
        }
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let frame = std::mem::take(&mut this.ctx.frame);
        let prev = CURRENT.with(|c| c.replace(frame));
        let _guard = ScopeGuard {
            slot: &mut this.ctx.frame,
            prev: Some(prev),
        };
        this.future.poll(cx)
    }
}

/// A shared handle to the current (or a saved) request; dereferences to [`Request`].
#[derive(Clone)]
pub struct RequestRef(Rc<RequestState>);

impl std::ops::Deref for RequestRef {
    type Target = Request;
    fn deref(&self) -> &Request {
        &self.0.request
    }
}

impl std::fmt::Debug for RequestRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.request.fmt(f)
    }
}

/// The current request (Hunchentoot's `*request*`).
///
/// # Panics
/// Outside any request context; see [`try_request`].
pub fn request() -> RequestRef {
    RequestRef(state())
}

/// The current request, or [`NoContextError`] outside any request context.
///
/// ```
/// assert!(iomux::context::try_request().is_err());
/// ```
pub fn try_request() -> Result<RequestRef, NoContextError> {
    current_state().map(RequestRef)
}

/// The acceptor serving the current request (Hunchentoot's `*acceptor*`).
///
/// # Panics
/// Outside any request context.
pub fn acceptor() -> AcceptorRef {
    state().acceptor.clone()
}

/// Set the status of the reply under construction (default 200).
///
/// # Panics
/// Outside any request context.
pub fn set_status(status: StatusCode) {
    state().status.set(status);
}

/// The status of the reply under construction.
///
/// # Panics
/// Outside any request context.
pub fn status() -> StatusCode {
    state().status.get()
}

/// Set a header field of the reply under construction, replacing fields of that name.
///
/// # Panics
/// Outside any request context.
pub fn set_header(name: HeaderName, value: HeaderValue) {
    state().headers_mut(|h| h.insert(name, value));
}

/// Add a header field to the reply under construction, keeping fields of that name.
///
/// # Panics
/// Outside any request context.
pub fn append_header(name: HeaderName, value: HeaderValue) {
    state().headers_mut(|h| h.append(name, value));
}

/// Remove every header field of that name from the reply under construction.
///
/// # Panics
/// Outside any request context.
pub fn remove_header(name: &HeaderName) {
    state().headers_mut(|h| h.remove(name));
}

/// A copy of the header fields of the reply under construction.
///
/// # Panics
/// Outside any request context.
pub fn headers() -> HeaderMap {
    state()
        .headers
        .borrow()
        .as_deref()
        .cloned()
        .unwrap_or_default()
}

/// The current session slot (Hunchentoot's `*session*`), if one was set.
///
/// The slot belongs to the request, so every [`SavedContext`] of it sees the same value. A
/// [`Sessions`](crate::session::Sessions) store puts the request's
/// [`Session`](crate::session::Session) here; [`session_as`] gives it back typed.
///
/// ```
/// # iomux::context::__with_test_request("GET / HTTP/1.1\r\nHost: x\r\n\r\n", || {
/// use std::rc::Rc;
/// assert!(iomux::context::session().is_none());
/// iomux::context::set_session(Some(Rc::new(7u32)));
/// assert!(iomux::context::session().is_some());
/// # });
/// ```
///
/// # Panics
/// Outside any request context.
pub fn session() -> Option<Rc<dyn Any>> {
    state().request.session()
}

/// The current session slot, if it holds a `T`.
///
/// ```
/// # iomux::context::__with_test_request("GET / HTTP/1.1\r\nHost: x\r\n\r\n", || {
/// use std::rc::Rc;
/// iomux::context::set_session(Some(Rc::new(String::from("alice"))));
/// assert_eq!(iomux::context::session_as::<String>().as_deref().map(String::as_str), Some("alice"));
/// assert!(iomux::context::session_as::<u32>().is_none());
/// # });
/// ```
///
/// # Panics
/// Outside any request context.
pub fn session_as<T: Any>() -> Option<Rc<T>> {
    session()?.downcast::<T>().ok()
}

/// Set the current session slot.
///
/// ```
/// # iomux::context::__with_test_request("GET / HTTP/1.1\r\nHost: x\r\n\r\n", || {
/// use std::rc::Rc;
/// iomux::context::set_session(Some(Rc::new(1u8)));
/// iomux::context::set_session(None);
/// assert!(iomux::context::session().is_none());
/// # });
/// ```
///
/// # Panics
/// Outside any request context.
pub fn set_session(session: Option<Rc<dyn Any>>) {
    let previous = state().request.replace_session(session);
    drop(previous);
}

/// The current session slot, or [`NoContextError`] outside any request context.
pub(crate) fn try_session() -> Result<Option<Rc<dyn Any>>, NoContextError> {
    Ok(current_state()?.request.session())
}

/// Set the current session slot, or [`NoContextError`] outside any request context.
pub(crate) fn try_set_session(session: Option<Rc<dyn Any>>) -> Result<(), NoContextError> {
    let state = current_state()?;
    // The previous value is dropped after the borrow ends: its drop may look at the slot.
    let previous = state.request.replace_session(session);
    drop(previous);
    Ok(())
}

/// Has the current request's reply right been used (reply or head sent, responder taken)?
pub(crate) fn try_reply_started() -> Result<bool, NoContextError> {
    Ok(current_state()?.replied.get())
}

/// Edit the header fields of the current reply under construction; `Ok(None)` when the reply
/// right has been used already (the fields could no longer reach the client).
pub(crate) fn try_edit_headers<R>(
    f: impl FnOnce(&mut HeaderMap) -> R,
) -> Result<Option<R>, NoContextError> {
    let state = current_state()?;
    if state.replied.get() {
        return Ok(None);
    }
    Ok(Some(state.headers_mut(f)))
}

/// Run `f` with a request parsed from `head` current, as a handler would run, but with no
/// connection behind it (its reply goes nowhere). For examples and unit tests; not part of the
/// API.
///
/// # Panics
/// If `head` is not one complete, valid request head, or no loopback port can be bound for the
/// acceptor the context refers to.
#[doc(hidden)]
pub fn __with_test_request<R>(head: &str, f: impl FnOnce() -> R) -> R {
    use std::net::{Ipv4Addr, SocketAddr};
    let config = crate::Config::default();
    let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 50000));
    let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 8080));
    let cell = Rc::new(ConnCell::new(peer, local));
    let parsed = crate::parse::parse_head(head.as_bytes(), &config, &cell);
    let Ok(Some((head, _))) = parsed else {
        panic!("iomux: not a complete, valid request head: {head:?}");
    };
    let acceptor = crate::Acceptor::bind((Ipv4Addr::LOCALHOST, 0), |_: &Request| Reply::text(""))
        .expect("iomux: a loopback port for the test acceptor");
    let state = Rc::new(RequestState::new(head.request, acceptor.handle()));
    run_handler(state, f)
}

/// Send `reply` to the current request (IOMUX-SEND-REPLY). Header fields set on the reply under
/// construction are included; the reply's own fields replace fields of the same name.
///
/// # Errors
/// [`SendError::ClientGone`], [`SendError::AlreadyReplied`] or [`SendError::NoRequest`], each
/// with the reply.
pub fn send_reply(reply: impl Into<Reply>) -> Result<(), SendError<Reply>> {
    let reply = reply.into();
    match current_state() {
        Ok(state) => state.send(reply),
        Err(_) => Err(SendError::NoRequest(reply)),
    }
}

/// Send `body` with the status and header fields of the reply under construction (Hunchentoot's
/// handler return value); content type [`DEFAULT_CONTENT_TYPE`] unless one was set.
///
/// # Errors
/// As [`send_reply`].
pub fn send_body(body: impl Into<Bytes>) -> Result<(), SendError<Reply>> {
    let body = body.into();
    match current_state() {
        Ok(state) => {
            let reply = state.body_reply(body);
            state.send(reply)
        }
        Err(_) => Err(SendError::NoRequest(
            Reply::new(StatusCode::OK).with_body(body),
        )),
    }
}

/// Send the status and header fields of the reply under construction now and stream the body
/// (Hunchentoot's SEND-HEADERS); see [`Responder::start_stream`].
///
/// # Errors
/// As [`send_reply`], with the unsent head.
pub fn start_stream() -> Result<BodySender, SendError<Reply>> {
    let state = current_state().map_err(|_| SendError::NoRequest(Reply::default()))?;
    let head = state.body_reply(Bytes::new());
    match state.take_responder() {
        Some(r) => r.start_stream(head),
        None => Err(SendError::AlreadyReplied(head)),
    }
}

/// Take the single-use [`Responder`] of the current request (`None` if already replied).
///
/// # Panics
/// Outside any request context.
pub fn responder() -> Option<Responder> {
    state().take_responder()
}

/// Keep the current request through a shutdown (see [`SavedContext::keep_on_shutdown`]).
///
/// # Panics
/// Outside any request context.
pub fn keep_on_shutdown() {
    let s = state();
    s.cell().keep_on_shutdown(s.seq);
}

/// Has the current request's client gone?
///
/// # Panics
/// Outside any request context.
pub fn is_closed() -> bool {
    let s = state();
    s.cell().is_closed(s.seq)
}

/// A value that is part of the request context, like a Lisp special variable: each context has
/// its own binding, snapshots carry it, and outside any binding it has its initial value.
/// Declare with [`context_local!`](crate::context_local).
///
/// ```
/// iomux::context_local! { static THEME: &'static str = "light"; }
/// assert_eq!(THEME.get(), "light");
/// THEME.scope("dark", || assert_eq!(THEME.get(), "dark"));
/// assert_eq!(THEME.get(), "light");
/// ```
pub struct ContextLocal<T: 'static> {
    init: fn() -> T,
}

impl<T: 'static> ContextLocal<T> {
    /// A context local whose value, where it was never set, is `init()`.
    #[doc(hidden)]
    pub const fn new(init: fn() -> T) -> Self {
        ContextLocal { init }
    }

    fn key(&'static self) -> usize {
        self as *const Self as usize
    }

    /// Run `f` with a reference to the current value.
    ///
    /// ```
    /// iomux::context_local! { static NAME: String = "x".into(); }
    /// assert_eq!(NAME.with(|n| n.len()), 1);
    /// ```
    pub fn with<R>(&'static self, f: impl FnOnce(&T) -> R) -> R {
        let key = self.key();
        let found = CURRENT.with(|c| {
            let frame = c.borrow();
            let locals = frame.locals.as_ref()?;
            locals
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.clone())
        });
        match found.as_ref().and_then(|v| v.downcast_ref::<T>()) {
            Some(value) => f(value),
            None => f(&(self.init)()),
        }
    }

    /// Set the value in the current context (snapshots taken earlier keep theirs).
    ///
    /// ```
    /// iomux::context_local! { static N: u8 = 0; }
    /// N.set(4);
    /// assert_eq!(N.get(), 4);
    /// ```
    pub fn set(&'static self, value: T) {
        let key = self.key();
        CURRENT.with(|c| set_in(&mut c.borrow_mut().locals, key, Rc::new(value)));
    }

    /// Run `f` with the value bound to `value`, then put the previous binding back (Lisp's `let`
    /// of a special variable).
    pub fn scope<R>(&'static self, value: T, f: impl FnOnce() -> R) -> R {
        SavedContext::capture().with_local(self, value).restore(f)
    }
}

impl<T: Clone + 'static> ContextLocal<T> {
    /// A clone of the current value.
    ///
    /// ```
    /// iomux::context_local! { static N: u8 = 7; }
    /// assert_eq!(N.get(), 7);
    /// ```
    pub fn get(&'static self) -> T {
        self.with(T::clone)
    }
}

fn set_in(locals: &mut Option<Rc<Locals>>, key: usize, value: Rc<dyn Any>) {
    let locals = Rc::make_mut(locals.get_or_insert_with(Default::default));
    match locals.iter_mut().find(|(k, _)| *k == key) {
        Some(entry) => entry.1 = value,
        None => locals.push((key, value)),
    }
}
