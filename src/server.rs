//! Accept: the [`Acceptor`] binds a listening socket and spawns one connection actor per client
//! on the user's [`LocalExecutor`]; [`AcceptorBuilder::bind_workers`] starts several of them, one
//! per thread (see [`Workers`]).

use std::cell::{Cell, RefCell};
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;
use async_io::{Async, Timer};
use event_listener::Event;
use futures_lite::future;
use slab::Slab;

use crate::access_log::{AccessLog, Logger};
use crate::conn;
use crate::dispatch::Handler;
use crate::error_pages::{self, ErrorPages, Pages};
use crate::responder::ConnCell;
use crate::workers::{Worker, Workers};
use crate::Config;

/// Builds an [`Acceptor`]: where to listen, with which [`Config`], error pages, access log and
/// debug flag; or, with [`workers`](AcceptorBuilder::workers) and
/// [`bind_workers`](AcceptorBuilder::bind_workers), several event loops on threads of their own.
///
/// ```
/// let acceptor = iomux::Acceptor::builder()
///     .listen("127.0.0.1:0")
///     .config(iomux::Config { max_connections: 100, ..Default::default() })
///     .bind(|_req: &iomux::Request| iomux::Reply::text("hi"))?;
/// assert_ne!(acceptor.local_addr().port(), 0);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct AcceptorBuilder {
    addrs: io::Result<Vec<SocketAddr>>,
    config: Config,
    error_pages: ErrorPages,
    access_log: AccessLog,
    debug: bool,
    workers: usize,
}

impl AcceptorBuilder {
    /// The address to listen on (`127.0.0.1:8080` by default); port 0 picks a free port, see
    /// [`Acceptor::local_addr`]. IPv6 addresses (`[::1]:0`) work as well. When the name resolves
    /// to several addresses the first that binds is used.
    pub fn listen(mut self, addr: impl ToSocketAddrs) -> Self {
        self.addrs = addr.to_socket_addrs().map(Iterator::collect);
        self
    }

    /// The limits and timeouts.
    ///
    /// ```
    /// let builder = iomux::Acceptor::builder().config(iomux::Config::default());
    /// # drop(builder);
    /// ```
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The bodies of error replies nobody wrote a body for (see
    /// [`error_pages`](crate::error_pages)); [`ErrorPages::plain`] by default.
    ///
    /// ```
    /// use iomux::error_pages::ErrorPages;
    /// let builder = iomux::Acceptor::builder().error_pages(ErrorPages::html());
    /// # drop(builder);
    /// ```
    pub fn error_pages(mut self, pages: ErrorPages) -> Self {
        self.error_pages = pages;
        self
    }

    /// Where the access log goes (see [`access_log`](crate::access_log)); off by default.
    ///
    /// ```
    /// use iomux::access_log::AccessLog;
    /// let builder = iomux::Acceptor::builder().access_log(AccessLog::stderr());
    /// # drop(builder);
    /// ```
    pub fn access_log(mut self, log: AccessLog) -> Self {
        self.access_log = log;
        self
    }

    /// Show what went wrong to the client (Hunchentoot's `*SHOW-LISP-ERRORS-P*`): the `500`
    /// of a handler that panicked then carries the panic message and, where known, its
    /// location. Off by default; never turn it on where clients are not trusted. Turning it on
    /// installs, once per process, a panic hook that notes panic locations before calling the
    /// hook that was set.
    ///
    /// ```
    /// let builder = iomux::Acceptor::builder().debug(cfg!(debug_assertions));
    /// # drop(builder);
    /// ```
    pub fn debug(mut self, on: bool) -> Self {
        self.debug = on;
        self
    }

    /// How many event loops [`bind_workers`](AcceptorBuilder::bind_workers) starts: `n` OS
    /// threads, each with its own [`LocalExecutor`], its own listening socket on the same
    /// address (`SO_REUSEPORT`: the kernel spreads new connections over them by a hash of the
    /// client's address and port) and its own connection actors. Default 1; `0` means one per
    /// core ([`std::thread::available_parallelism`]). The spreading is Linux's (3.9 and later);
    /// other systems may accept several `SO_REUSEPORT` sockets without spreading connections
    /// over them. A connection stays with the worker that accepted it.
    ///
    /// Nothing is shared between workers unless you share it: each worker builds its own handler
    /// (and its actors) on its own thread, so handlers, actors and
    /// [`SavedContext`](crate::SavedContext)s stay single-threaded, as with one loop. To share
    /// state across workers, give each handler a `Send` handle to its owner, whose messages carry
    /// `Send` data: an `async_channel::Sender` (or `std::sync::mpsc::Sender`) to one owning
    /// thread or worker, a [`RemoteResponder`](crate::RemoteResponder) so that the owner can
    /// answer the request itself, or an `Arc` of atomics or a `Mutex` for plain figures. Each
    /// worker has its own [`Config`] limits (see [`bind_workers`](AcceptorBuilder::bind_workers)).
    ///
    /// [`bind`](AcceptorBuilder::bind) serves one loop and refuses a builder with `workers(n)`
    /// other than 1.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    ///
    /// // Shared by every worker: `Send + Sync` behind an `Arc`.
    /// let hits = Arc::new(AtomicUsize::new(0));
    /// let counted = hits.clone();
    /// let workers = iomux::Acceptor::builder()
    ///     .listen("127.0.0.1:0")
    ///     .workers(2)
    ///     .bind_workers(move |worker: &iomux::Worker<'_>| {
    ///         // On the worker's own thread: the handler is not `Send`, and need not be.
    ///         let index = worker.index();
    ///         let hits = counted.clone();
    ///         move |_: &iomux::Request| {
    ///             hits.fetch_add(1, Ordering::Relaxed);
    ///             format!("worker {index}\n")
    ///         }
    ///     })?;
    /// assert_eq!(workers.count(), 2);
    ///
    /// use std::io::{Read, Write};
    /// let mut s = std::net::TcpStream::connect(workers.local_addr())?;
    /// s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    /// let mut reply = String::new();
    /// s.read_to_string(&mut reply)?;
    /// assert!(reply.ends_with("\r\n\r\nworker 0\n") || reply.ends_with("\r\n\r\nworker 1\n"));
    ///
    /// workers.stop_handle().stop();
    /// workers.join()?;
    /// assert_eq!(hits.load(Ordering::Relaxed), 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Bind the listening socket; requests will go to `handler`. The error page templates are
    /// read and the access log file opened (and its writer thread started) here.
    ///
    /// # Errors
    /// The address does not resolve or cannot be bound; the error page directory or the access
    /// log cannot be opened; [`workers`](AcceptorBuilder::workers) was set to other than 1
    /// (`InvalidInput`: use [`bind_workers`](AcceptorBuilder::bind_workers)).
    pub fn bind(self, handler: impl Handler) -> io::Result<Acceptor> {
        if self.workers != 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "workers({}) needs AcceptorBuilder::bind_workers; bind serves one loop",
                    self.workers
                ),
            ));
        }
        let backlog = self.config.listen_backlog;
        let listener = bind_first(self.addrs?, |addr| bind_listener(addr, backlog, false))?;
        let prepared = Prepared::new(self.config, self.error_pages, self.access_log, self.debug)?;
        prepared.into_acceptor(listener, Rc::new(handler))
    }

    /// Bind one listening socket per [worker](AcceptorBuilder::workers), all on the same
    /// address with `SO_REUSEPORT`, and start the workers: OS threads named `iomux-worker-{i}`,
    /// each running its own [`LocalExecutor`]. On each worker's thread, `make(&worker)` builds
    /// that worker's handler (and spawns its actors on [`Worker::executor`]); the worker then
    /// serves its socket as [`Acceptor::serve`] does, until the [`StopHandle`] of
    /// [`Workers::stop_handle`] stops them all, gracefully.
    ///
    /// The sockets are bound here, on the calling thread, with the configured
    /// [`listen_backlog`](Config::listen_backlog) each, so that binding errors come back at once;
    /// with port 0 the first socket picks the port and the others take the same. Here too the
    /// error pages are read, and the access log opened with one writer thread for all workers.
    ///
    /// Each worker applies the whole [`Config`] to its own connections: with n workers up to
    /// n × [`max_connections`](Config::max_connections) connections are open, and each keeps its
    /// own pool of [`buffer_pool_len`](Config::buffer_pool_len) buffers. The kernel spreads
    /// connections by a hash, not by load: a worker at its `max_connections` leaves the
    /// connections hashed to it waiting in its backlog even if another worker has room.
    /// [`AcceptorRef`]'s figures ([`context::acceptor`](crate::context::acceptor)) are those of
    /// the request's worker, except [`access_log_dropped`](AcceptorRef::access_log_dropped),
    /// which counts for all.
    ///
    /// When a worker ends, all end: if `make` panics, or a worker fails, every other worker is
    /// stopped (gracefully) and [`Workers::join`] reports it. A handler that panics is not a
    /// worker that panics: its request is answered `500` and its worker goes on.
    ///
    /// ```
    /// let workers = iomux::Acceptor::builder()
    ///     .listen("127.0.0.1:0")
    ///     .workers(2)
    ///     .bind_workers(|worker: &iomux::Worker<'_>| {
    ///         let reply = format!("hello from worker {} of {}\n", worker.index(), worker.count());
    ///         move |_: &iomux::Request| reply.clone()
    ///     })?;
    /// println!("listening on http://{}", workers.local_addr());
    /// let stop = workers.stop_handle(); // for a signal handler, say
    /// stop.stop();
    /// workers.join()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// The address does not resolve or cannot be bound (for example `AddrInUse` when a socket
    /// without `SO_REUSEPORT` holds it; a socket *with* it, of the same user, would share the
    /// connections instead); the error page directory or the access log cannot be opened; a
    /// thread cannot be started; `Unsupported` for more than one worker where the system has
    /// no `SO_REUSEPORT`.
    pub fn bind_workers<F, H>(self, make: F) -> io::Result<Workers>
    where
        F: Fn(&Worker<'_>) -> H + Send + Sync + 'static,
        H: Handler,
    {
        let count = match self.workers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let backlog = self.config.listen_backlog;
        let listeners = bind_first(self.addrs?, |addr| {
            crate::workers::bind_listeners(addr, count, backlog)
        })?;
        let prepared = Prepared::new(self.config, self.error_pages, self.access_log, self.debug)?;
        crate::workers::start(listeners, prepared, make)
    }
}

/// Bind the first address that binds, else fail with the last error.
fn bind_first<T>(
    addrs: Vec<SocketAddr>,
    mut bind: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last_err = io::Error::new(io::ErrorKind::InvalidInput, "no address to listen on");
    for addr in addrs {
        match bind(addr) {
            Ok(bound) => return Ok(bound),
            Err(e) => last_err = e,
        }
    }
    Err(last_err)
}

/// A listening socket on `addr` (`SO_REUSEADDR`; `SO_REUSEPORT` too with `reuse_port`).
pub(crate) fn bind_listener(
    addr: SocketAddr,
    backlog: i32,
    reuse_port: bool,
) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        set_reuse_port(&socket)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    note_backlog_cap(backlog);
    socket.listen(backlog)?;
    Ok(socket.into())
}

#[cfg(all(
    unix,
    not(any(target_os = "solaris", target_os = "illumos", target_os = "cygwin"))
))]
fn set_reuse_port(socket: &socket2::Socket) -> io::Result<()> {
    socket.set_reuse_port(true)
}

#[cfg(not(all(
    unix,
    not(any(target_os = "solaris", target_os = "illumos", target_os = "cygwin"))
)))]
fn set_reuse_port(_: &socket2::Socket) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "SO_REUSEPORT is not available here: use one worker",
    ))
}

/// The kernel silently caps a listen backlog at `net.core.somaxconn`: say so (once per
/// process) when it does.
fn note_backlog_cap(backlog: i32) {
    #[cfg(target_os = "linux")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        let cap = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        if let Some(cap) = cap.filter(|&cap| cap < backlog) {
            ONCE.call_once(|| {
                log::info!(
                    "listen backlog {backlog} is capped at net.core.somaxconn = {cap}; \
                     raise it (sysctl net.core.somaxconn={backlog}) to absorb larger bursts"
                );
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = backlog;
}

/// What every acceptor of one builder shares, made on the binding thread: one [`Config`],
/// the error pages as read once, one access log writer, one stop handle.
#[derive(Clone)]
pub(crate) struct Prepared {
    config: Config,
    error_pages: Arc<Pages>,
    access_log: Option<Arc<Logger>>,
    access_log_dropped: Arc<AtomicU64>,
    debug: bool,
    pub(crate) stop: StopHandle,
}

impl Prepared {
    /// Read the error pages, open the access log (starting its writer thread), note panic
    /// locations if debugging.
    fn new(
        config: Config,
        error_pages: ErrorPages,
        access_log: AccessLog,
        debug: bool,
    ) -> io::Result<Prepared> {
        let error_pages = Arc::new(error_pages.load()?);
        let access_log_dropped = Arc::new(AtomicU64::new(0));
        let access_log = access_log.start(access_log_dropped.clone())?.map(Arc::new);
        if debug {
            error_pages::note_panic_locations();
        }
        Ok(Prepared {
            config,
            error_pages,
            access_log,
            access_log_dropped,
            debug,
            stop: StopHandle::default(),
        })
    }

    /// An acceptor on `listener` (registered with the reactor here) serving `handler`.
    pub(crate) fn into_acceptor(
        self,
        listener: TcpListener,
        handler: Rc<dyn Handler>,
    ) -> io::Result<Acceptor> {
        let listener = Async::new(listener)?;
        let local_addr = listener.get_ref().local_addr()?;
        let shared = Rc::new(Shared {
            config: self.config,
            local_addr,
            stop: self.stop,
            conns: RefCell::new(Slab::new()),
            conn_closed: Event::new(),
            waiting: Cell::new(0),
            idle: Cell::new(0),
            became_idle: Event::new(),
            buffers: RefCell::new(Vec::new()),
            error_pages: self.error_pages,
            access_log: RefCell::new(self.access_log),
            access_log_dropped: self.access_log_dropped,
            debug: self.debug,
        });
        Ok(Acceptor {
            listener,
            shared: AcceptorRef(shared),
            handler,
        })
    }
}

/// State shared by the acceptor and its connections.
pub(crate) struct Shared {
    config: Config,
    local_addr: SocketAddr,
    stop: StopHandle,
    /// Every open connection's cell, to tell them about shutdown.
    conns: RefCell<Slab<Rc<ConnCell>>>,
    /// Notified whenever a connection closes.
    conn_closed: Event,
    /// Requests waiting for a deferred reply.
    waiting: Cell<usize>,
    /// Keep-alive connections idle between requests: the idle sweep runs only while there are.
    idle: Cell<usize>,
    /// Wakes the idle sweep when a first connection goes idle.
    became_idle: Event,
    /// Buffers given back by connections that went idle or started waiting.
    buffers: RefCell<Vec<Vec<u8>>>,
    /// Shared by the workers of one builder.
    error_pages: Arc<Pages>,
    /// The access log's queue, shared by the workers of one builder; taken when `serve` ends,
    /// and closed by the last acceptor to end.
    access_log: RefCell<Option<Arc<Logger>>>,
    /// Access log lines dropped (queue full, destination failing), by all workers.
    access_log_dropped: Arc<AtomicU64>,
    /// Show panic details in `500` pages.
    debug: bool,
}

/// A handle to the acceptor serving a request, from [`context::acceptor`](crate::context::acceptor)
/// (Hunchentoot's `*acceptor*`): its configuration, address, figures and stop handle.
#[derive(Clone)]
pub struct AcceptorRef(Rc<Shared>);

impl AcceptorRef {
    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.0.config
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.0.local_addr
    }

    /// A `Send` handle that stops the acceptor.
    pub fn stop_handle(&self) -> StopHandle {
        self.0.stop.clone()
    }

    /// Open connections.
    pub fn open_connections(&self) -> usize {
        self.0.conns.borrow().len()
    }

    /// Requests waiting for a deferred reply.
    pub fn waiting_requests(&self) -> usize {
        self.0.waiting.get()
    }

    /// Is debug on (see [`AcceptorBuilder::debug`])?
    ///
    /// ```
    /// let acceptor = iomux::Acceptor::bind("127.0.0.1:0", |_: &iomux::Request| "hi")?;
    /// assert!(!acceptor.handle().debug());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn debug(&self) -> bool {
        self.0.debug
    }

    /// Access log lines dropped so far: the queue to the writer thread was full (the
    /// destination is slow or blocked) or the destination failed. With
    /// [workers](AcceptorBuilder::workers), the lines of all workers (they share the writer).
    ///
    /// ```
    /// let acceptor = iomux::Acceptor::bind("127.0.0.1:0", |_: &iomux::Request| "hi")?;
    /// assert_eq!(acceptor.handle().access_log_dropped(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn access_log_dropped(&self) -> u64 {
        self.0.access_log_dropped.load(Ordering::Relaxed)
    }

    pub(crate) fn error_pages(&self) -> &Pages {
        &self.0.error_pages
    }

    /// Is there an access log to write to?
    pub(crate) fn logs_access(&self) -> bool {
        self.0.access_log.borrow().is_some()
    }

    /// Queue an access log line (dropped and counted if the queue is full).
    pub(crate) fn log_access(&self, line: String) {
        if let Some(logger) = &*self.0.access_log.borrow() {
            logger.log(line);
        }
    }

    /// Add a connection to the registry; the guard removes it.
    pub(crate) fn register_connection(&self) -> (ConnGuard, Rc<ConnCell>) {
        let cell = Rc::new(ConnCell::default());
        let key = self.0.conns.borrow_mut().insert(cell.clone());
        (
            ConnGuard {
                shared: self.clone(),
                key,
            },
            cell,
        )
    }

    /// An empty buffer with room for one read (a connection's read buffer, or the one it encodes
    /// replies into).
    pub(crate) fn take_buffer(&self) -> Vec<u8> {
        let size = self.0.config.read_buffer_size;
        self.0
            .buffers
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(size))
    }

    /// Give back a buffer; it is kept for reuse if it is of the usual size and the pool has room,
    /// else freed.
    pub(crate) fn recycle_buffer(&self, mut buf: Vec<u8>) {
        let config = &self.0.config;
        let mut pool = self.0.buffers.borrow_mut();
        if buf.capacity() >= config.read_buffer_size
            && buf.capacity() <= 2 * config.read_buffer_size
            && pool.len() < config.buffer_pool_len
        {
            buf.clear();
            pool.push(buf);
        }
    }

    pub(crate) fn waiting_changed(&self, delta: isize) {
        self.0
            .waiting
            .set(self.0.waiting.get().saturating_add_signed(delta));
    }

    pub(crate) fn idle_changed(&self, delta: isize) {
        let before = self.0.idle.get();
        self.0.idle.set(before.saturating_add_signed(delta));
        if before == 0 && delta > 0 {
            self.0.became_idle.notify(1);
        }
    }
}

impl std::fmt::Debug for AcceptorRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor")
            .field("local_addr", &self.0.local_addr)
            .field("open_connections", &self.open_connections())
            .field("waiting_requests", &self.waiting_requests())
            .finish()
    }
}

/// Removes a connection from the registry when its task ends, however it ends.
pub(crate) struct ConnGuard {
    shared: AcceptorRef,
    key: usize,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let shared = &self.shared.0;
        if let Some(cell) = shared.conns.borrow_mut().try_remove(self.key) {
            // A connection dropped while idle (its task dropped with the executor) leaves the
            // idle count.
            if cell.is_idle() {
                self.shared.idle_changed(-1);
            }
            cell.mark_closed();
        }
        shared.conn_closed.notify(usize::MAX);
    }
}

/// Stops an acceptor from any thread: it stops accepting, closes idle connections, answers
/// waiting requests with [`Config::shutdown_status`], lets in-flight replies finish within
/// [`Config::shutdown_timeout`], and then [`Acceptor::serve`] returns. The handle of
/// [`Workers::stop_handle`] does so on every worker at once, and then [`Workers::join`]
/// returns.
///
/// ```
/// let acceptor = iomux::Acceptor::bind("127.0.0.1:0", |_: &iomux::Request| "hi")?;
/// let stop = acceptor.stop_handle();
/// stop.stop();
/// acceptor.run()?; // returns at once: already stopped
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct StopHandle(Arc<StopInner>);

#[derive(Default)]
struct StopInner {
    stopped: AtomicBool,
    event: Event,
}

impl StopHandle {
    /// Ask the acceptor to stop.
    pub fn stop(&self) {
        self.0.stopped.store(true, Ordering::SeqCst);
        self.0.event.notify(usize::MAX);
    }

    /// Has [`stop`](StopHandle::stop) been called?
    pub fn is_stopped(&self) -> bool {
        self.0.stopped.load(Ordering::SeqCst)
    }

    /// Completes once [`stop`](StopHandle::stop) has been called.
    pub async fn stopped(&self) {
        loop {
            if self.is_stopped() {
                return;
            }
            let listener = self.0.event.listen();
            if self.is_stopped() {
                return;
            }
            listener.await;
        }
    }
}

impl std::fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StopHandle")
            .field("stopped", &self.is_stopped())
            .finish()
    }
}

/// An HTTP/1.1 acceptor bound to a listening socket (Hunchentoot's acceptor).
///
/// [`serve`](Acceptor::serve) runs it on an executor you own; [`run`](Acceptor::run) makes one.
/// Each connection is served by its own task (a connection actor) on that executor.
///
/// ```
/// use async_executor::LocalExecutor;
/// let acceptor = iomux::Acceptor::bind("127.0.0.1:0", |_: &iomux::Request| "Hello, world!")?;
/// let addr = acceptor.local_addr();
/// let stop = acceptor.stop_handle();
/// let client = std::thread::spawn(move || {
///     use std::io::{Read, Write};
///     let mut s = std::net::TcpStream::connect(addr).unwrap();
///     s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
///     let mut reply = String::new();
///     s.read_to_string(&mut reply).unwrap();
///     stop.stop();
///     reply
/// });
/// let ex = LocalExecutor::new();
/// async_io::block_on(ex.run(acceptor.serve(&ex)))?;
/// assert!(client.join().unwrap().ends_with("\r\n\r\nHello, world!"));
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Acceptor {
    listener: Async<TcpListener>,
    shared: AcceptorRef,
    handler: Rc<dyn Handler>,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.shared.fmt(f)
    }
}

impl Acceptor {
    /// A builder, to set the address, [`Config`], error pages, access log and debug flag.
    ///
    /// ```
    /// let acceptor = iomux::Acceptor::builder()
    ///     .listen("127.0.0.1:0")
    ///     .error_pages(iomux::error_pages::ErrorPages::html())
    ///     .access_log(iomux::access_log::AccessLog::off())
    ///     .debug(false)
    ///     .bind(|_: &iomux::Request| "hi")?;
    /// # drop(acceptor);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn builder() -> AcceptorBuilder {
        AcceptorBuilder {
            addrs: Ok(vec![SocketAddr::from(([127, 0, 0, 1], 8080))]),
            config: Config::default(),
            error_pages: ErrorPages::default(),
            access_log: AccessLog::default(),
            debug: false,
            workers: 1,
        }
    }

    /// Bind `addr` with the default [`Config`].
    ///
    /// # Errors
    /// The address does not resolve or cannot be bound.
    pub fn bind(addr: impl ToSocketAddrs, handler: impl Handler) -> io::Result<Acceptor> {
        Acceptor::builder().listen(addr).bind(handler)
    }

    /// The bound address (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr()
    }

    /// A `Send` handle that stops the acceptor.
    pub fn stop_handle(&self) -> StopHandle {
        self.shared.stop_handle()
    }

    /// A handle to the acceptor's configuration and figures, as handlers see it.
    pub fn handle(&self) -> AcceptorRef {
        self.shared.clone()
    }

    /// Accept connections and serve each on its own task on `executor`, until stopped; then
    /// shut down gracefully (see [`StopHandle`]). Drive the executor with
    /// `async_io::block_on(executor.run(acceptor.serve(&executor)))`, so that the reactor runs on
    /// the loop thread.
    ///
    /// # Errors
    /// Only setup errors; failed `accept`s are logged and retried after
    /// [`Config::accept_error_backoff`].
    pub async fn serve(self, executor: &LocalExecutor<'_>) -> io::Result<()> {
        let Acceptor {
            listener,
            shared,
            handler,
        } = self;
        let stop = shared.stop_handle();
        let config = &shared.0.config;
        log::debug!("accepting on {}", shared.local_addr());
        let accept = async {
            /// Connections accepted in a row before the loop lets other tasks run.
            const ACCEPT_BURST: usize = 64;
            let mut burst = 0;
            while !stop.is_stopped() {
                while shared.open_connections() >= config.max_connections && !stop.is_stopped() {
                    let closed = shared.0.conn_closed.listen();
                    if shared.open_connections() < config.max_connections {
                        break;
                    }
                    future::or(closed, stop.stopped()).await;
                }
                // The stop is looked at first: an accept that fails at once (EMFILE) must not
                // keep the loop from seeing it.
                let accepted = future::or(
                    async {
                        stop.stopped().await;
                        None
                    },
                    async { Some(listener.accept().await) },
                )
                .await;
                match accepted {
                    None => break,
                    Some(Ok((stream, peer))) => {
                        spawn_connection(executor, &shared, &handler, stream, peer);
                        burst += 1;
                        if burst == ACCEPT_BURST {
                            burst = 0;
                            future::yield_now().await;
                        }
                    }
                    Some(Err(e)) => {
                        log::warn!(
                            "accept failed: {e}; retrying in {:?} or when a connection closes",
                            config.accept_error_backoff
                        );
                        // Out of descriptors (or buffers): wait, without spinning, until one
                        // is likely free again.
                        let closed = shared.0.conn_closed.listen();
                        let backoff = async {
                            Timer::after(config.accept_error_backoff).await;
                        };
                        future::or(future::or(backoff, closed), stop.stopped()).await;
                    }
                }
            }
        };
        // The idle sweep runs as long as the acceptor accepts (it never ends by itself).
        future::or(accept, Self::sweep_idle(&shared)).await;
        drop(listener);
        shutdown(&shared).await;
        let access_log = shared.0.access_log.borrow_mut().take();
        // Workers share the writer: the last to end closes its queue and waits for it.
        if let Some(access_log) = access_log.and_then(Arc::into_inner) {
            access_log.close().await;
        }
        Ok(())
    }

    /// Close connections idle past the keep-alive timeout, a few times per timeout period; no
    /// timer at all while no connection is idle (a server of waiting long-polls has no wake-ups).
    async fn sweep_idle(shared: &AcceptorRef) {
        /// Sweeps per keep-alive period: an idle connection closes within 1.25 times it.
        const SWEEPS_PER_PERIOD: u32 = 4;
        /// The sweep period's bounds. A sweep visits every connection, so with the default
        /// 60 s keep-alive it runs every 15 s (not every second: an idle keep-alive connection
        /// beside 10,000 waiting ones then costs no measurable CPU).
        const FASTEST: Duration = Duration::from_millis(10);
        const SLOWEST: Duration = Duration::from_secs(60);
        let timeout = shared.config().keep_alive_timeout;
        let period = (timeout / SWEEPS_PER_PERIOD).clamp(FASTEST, SLOWEST);
        loop {
            while shared.0.idle.get() == 0 {
                let became_idle = shared.0.became_idle.listen();
                if shared.0.idle.get() == 0 {
                    became_idle.await;
                }
            }
            Timer::after(period).await;
            if let Some(cutoff) = Instant::now().checked_sub(timeout) {
                for (_, cell) in shared.0.conns.borrow().iter() {
                    cell.expire_idle(cutoff);
                }
            }
        }
    }

    /// Serve on a new [`LocalExecutor`] on this thread until stopped.
    ///
    /// # Errors
    /// As [`serve`](Acceptor::serve).
    pub fn run(self) -> io::Result<()> {
        let executor = LocalExecutor::new();
        async_io::block_on(executor.run(self.serve(&executor)))
    }
}

fn spawn_connection(
    executor: &LocalExecutor<'_>,
    shared: &AcceptorRef,
    handler: &Rc<dyn Handler>,
    stream: Async<TcpStream>,
    peer: SocketAddr,
) {
    if shared.config().tcp_nodelay {
        if let Err(e) = stream.get_ref().set_nodelay(true) {
            log::debug!("TCP_NODELAY on {peer}: {e}");
        }
    }
    let cell = Rc::new(ConnCell::default());
    let key = shared.0.conns.borrow_mut().insert(cell.clone());
    let guard = ConnGuard {
        shared: shared.clone(),
        key,
    };
    let handler = handler.clone();
    executor
        .spawn(conn::serve(stream, peer, guard, cell, handler))
        .detach();
}

impl ConnGuard {
    pub(crate) fn acceptor(&self) -> &AcceptorRef {
        &self.shared
    }
}

/// Tell every connection to finish, then wait for them within the shutdown timeout.
async fn shutdown(shared: &AcceptorRef) {
    let config = &shared.0.config;
    let deadline = Instant::now() + config.shutdown_timeout;
    let cells: Vec<Rc<ConnCell>> = shared
        .0
        .conns
        .borrow()
        .iter()
        .map(|(_, c)| c.clone())
        .collect();
    log::info!("stopping: {} open connections", cells.len());
    for cell in cells {
        cell.start_shutdown();
    }
    while shared.open_connections() > 0 {
        let closed = shared.0.conn_closed.listen();
        if shared.open_connections() == 0 {
            break;
        }
        let timed_out = future::or(
            async {
                closed.await;
                false
            },
            async {
                Timer::at(deadline).await;
                true
            },
        )
        .await;
        if timed_out {
            log::warn!(
                "shutdown timeout: dropping {} connections",
                shared.open_connections()
            );
            break;
        }
    }
}
