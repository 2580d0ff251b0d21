//! Per-core workers: several event loops, one per OS thread, each with its own
//! [`LocalExecutor`], its own listening socket on the shared address (`SO_REUSEPORT`) and its own
//! connection actors. Started by [`AcceptorBuilder::bind_workers`](crate::AcceptorBuilder::bind_workers).

use std::any::Any;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;

use async_executor::LocalExecutor;

use crate::dispatch::Handler;
use crate::server::{bind_listener, Prepared, StopHandle};

/// One worker, as its handler factory sees it on the worker's own thread (see
/// [`AcceptorBuilder::bind_workers`](crate::AcceptorBuilder::bind_workers)): which worker it is,
/// and the executor its connections and actors run on.
///
/// ```
/// use iomux::{Mailbox, Request, SavedContext, Worker};
///
/// let workers = iomux::Acceptor::builder()
///     .listen("127.0.0.1:0")
///     .workers(2)
///     .bind_workers(|worker: &Worker<'_>| {
///         assert!(worker.index() < worker.count());
///         // An actor of this worker: it lives on the worker's thread, as the handler does.
///         let replier = iomux::spawn_actor(worker.executor(), 64, |ctx: SavedContext| {
///             let _ = ctx.send_reply("answered by this worker's actor\n");
///         });
///         move |_: &Request| {
///             replier.do_send(iomux::with_saved_context!());
///             iomux::Handled::Deferred
///         }
///     })?;
/// # workers.stop_handle().stop();
/// # workers.join()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Worker<'a> {
    index: usize,
    count: usize,
    local_addr: SocketAddr,
    executor: &'a LocalExecutor<'static>,
    stop: &'a StopHandle,
}

impl<'a> Worker<'a> {
    /// This worker's number, from 0 to [`count`](Worker::count) − 1 (its thread is named
    /// `iomux-worker-{index}`).
    ///
    /// ```
    /// # let workers = iomux::Acceptor::builder().listen("127.0.0.1:0").workers(3)
    /// #     .bind_workers(|worker: &iomux::Worker<'_>| {
    /// let name = std::thread::current().name().map(str::to_owned);
    /// assert_eq!(name, Some(format!("iomux-worker-{}", worker.index())));
    /// #     |_: &iomux::Request| "hi" })?;
    /// # workers.stop_handle().stop();
    /// # workers.join()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn index(&self) -> usize {
        self.index
    }

    /// How many workers there are.
    ///
    /// ```
    /// # let workers = iomux::Acceptor::builder().listen("127.0.0.1:0").workers(3)
    /// #     .bind_workers(|worker: &iomux::Worker<'_>| {
    /// assert_eq!(worker.count(), 3);
    /// #     |_: &iomux::Request| "hi" })?;
    /// # workers.stop_handle().stop();
    /// # workers.join()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn count(&self) -> usize {
        self.count
    }

    /// The executor of this worker's thread: spawn the worker's actors and tasks on it
    /// ([`spawn_actor`](crate::spawn_actor), [`spawn_actor_task`](crate::spawn_actor_task),
    /// `executor().spawn(..).detach()`). They run until the worker's loop ends, and are dropped
    /// with it.
    ///
    /// ```
    /// # let workers = iomux::Acceptor::builder().listen("127.0.0.1:0").workers(1)
    /// #     .bind_workers(|worker: &iomux::Worker<'_>| {
    /// worker.executor().spawn(async { /* a background task of this worker */ }).detach();
    /// #     |_: &iomux::Request| "hi" })?;
    /// # workers.stop_handle().stop();
    /// # workers.join()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn executor(&self) -> &'a LocalExecutor<'static> {
        self.executor
    }

    /// The address every worker listens on (with the real port when port 0 was asked for).
    ///
    /// ```
    /// # let workers = iomux::Acceptor::builder().listen("127.0.0.1:0").workers(1)
    /// #     .bind_workers(|worker: &iomux::Worker<'_>| {
    /// assert_ne!(worker.local_addr().port(), 0);
    /// #     |_: &iomux::Request| "hi" })?;
    /// # workers.stop_handle().stop();
    /// # workers.join()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The handle that stops every worker (the same as [`Workers::stop_handle`]).
    ///
    /// ```
    /// # let workers = iomux::Acceptor::builder().listen("127.0.0.1:0").workers(2)
    /// #     .bind_workers(|worker: &iomux::Worker<'_>| {
    /// let stop = worker.stop_handle();
    /// move |_: &iomux::Request| {
    ///     stop.stop(); // a request that shuts the whole server down
    ///     "bye\n"
    /// }
    /// # })?;
    /// # workers.stop_handle().stop();
    /// # workers.join()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }
}

impl std::fmt::Debug for Worker<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("index", &self.index)
            .field("count", &self.count)
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

/// The running workers of [`AcceptorBuilder::bind_workers`](crate::AcceptorBuilder::bind_workers)
/// (`Send`: stop and join them from any thread).
///
/// Dropping it without [`join`](Workers::join) stops the workers (gracefully, in the
/// background) rather than leave them serving with nobody to stop them.
///
/// ```
/// use std::io::{Read, Write};
///
/// let workers = iomux::Acceptor::builder()
///     .listen("127.0.0.1:0")
///     .workers(0) // one per core
///     .bind_workers(|_: &iomux::Worker<'_>| |_: &iomux::Request| "Hello, world!")?;
/// let cores = std::thread::available_parallelism()?.get();
/// assert_eq!(workers.count(), cores);
///
/// let addr = workers.local_addr();
/// let stop = workers.stop_handle();
/// let client = std::thread::spawn(move || {
///     let mut s = std::net::TcpStream::connect(addr).unwrap();
///     s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
///     let mut reply = String::new();
///     s.read_to_string(&mut reply).unwrap();
///     stop.stop();
///     reply
/// });
/// workers.join()?; // until stopped
/// assert!(client.join().unwrap().ends_with("\r\n\r\nHello, world!"));
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Workers {
    local_addr: SocketAddr,
    stop: StopHandle,
    threads: Vec<JoinHandle<io::Result<()>>>,
}

impl Workers {
    /// The address the workers listen on (with the real port when port 0 was asked for).
    ///
    /// ```
    /// let workers = iomux::Acceptor::builder()
    ///     .listen("127.0.0.1:0")
    ///     .bind_workers(|_: &iomux::Worker<'_>| |_: &iomux::Request| "hi")?;
    /// assert_ne!(workers.local_addr().port(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// How many workers were started.
    ///
    /// ```
    /// let workers = iomux::Acceptor::builder()
    ///     .listen("127.0.0.1:0")
    ///     .workers(2)
    ///     .bind_workers(|_: &iomux::Worker<'_>| |_: &iomux::Request| "hi")?;
    /// assert_eq!(workers.count(), 2);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn count(&self) -> usize {
        self.threads.len()
    }

    /// A `Send` handle that stops every worker, with the graceful shutdown of one acceptor
    /// (see [`StopHandle`]) on each.
    ///
    /// ```
    /// let workers = iomux::Acceptor::builder()
    ///     .listen("127.0.0.1:0")
    ///     .workers(2)
    ///     .bind_workers(|_: &iomux::Worker<'_>| |_: &iomux::Request| "hi")?;
    /// let stop = workers.stop_handle();
    /// std::thread::spawn(move || stop.stop());
    /// workers.join()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Wait until every worker's thread has ended: after a [stop](Workers::stop_handle), or
    /// after one worker failed or panicked (which stops the others).
    ///
    /// # Errors
    /// What went wrong in each worker that failed, by worker: an error serving
    /// (`worker 1: ...`, with that error's kind), or a panic of the handler factory or the
    /// loop (`worker 1 panicked: ...`, kind `Other`).
    ///
    /// ```
    /// let workers = iomux::Acceptor::builder()
    ///     .listen("127.0.0.1:0")
    ///     .workers(2)
    ///     .bind_workers(|worker: &iomux::Worker<'_>| {
    ///         if worker.index() == 1 {
    ///             panic!("no handler for you");
    ///         }
    ///         |_: &iomux::Request| "hi"
    ///     })?;
    /// // Worker 1 panicked, so worker 0 was stopped too, and join returns.
    /// let error = workers.join().unwrap_err();
    /// assert_eq!(error.to_string(), "worker 1 panicked: no handler for you");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn join(mut self) -> io::Result<()> {
        let mut failures = Vec::new();
        let mut kind = None;
        for (index, thread) in std::mem::take(&mut self.threads).into_iter().enumerate() {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    kind.get_or_insert(e.kind());
                    failures.push(format!("worker {index}: {e}"));
                }
                Err(payload) => {
                    kind.get_or_insert(io::ErrorKind::Other);
                    failures.push(format!(
                        "worker {index} panicked: {}",
                        panic_message(&*payload)
                    ));
                }
            }
        }
        match kind {
            None => Ok(()),
            Some(kind) => Err(io::Error::new(kind, failures.join("; "))),
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.stop.stop();
        }
    }
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("local_addr", &self.local_addr)
            .field("count", &self.threads.len())
            .field("stopped", &self.stop.is_stopped())
            .finish()
    }
}

/// `count` listening sockets on `addr` with `SO_REUSEPORT` (only one, without it, when
/// `count` is 1); with port 0, the first picks the port for all.
pub(crate) fn bind_listeners(
    addr: SocketAddr,
    count: usize,
    backlog: i32,
) -> io::Result<Vec<TcpListener>> {
    let reuse_port = count > 1;
    let first = bind_listener(addr, backlog, reuse_port)?;
    let addr = first.local_addr()?;
    let mut listeners = Vec::with_capacity(count);
    listeners.push(first);
    for _ in 1..count {
        listeners.push(bind_listener(addr, backlog, reuse_port)?);
    }
    Ok(listeners)
}

/// Start one worker thread per listener.
pub(crate) fn start<F, H>(
    listeners: Vec<TcpListener>,
    prepared: Prepared,
    make: F,
) -> io::Result<Workers>
where
    F: Fn(&Worker<'_>) -> H + Send + Sync + 'static,
    H: Handler,
{
    let local_addr = listeners[0].local_addr()?;
    let count = listeners.len();
    let make = Arc::new(make);
    let mut workers = Workers {
        local_addr,
        stop: prepared.stop.clone(),
        threads: Vec::with_capacity(count),
    };
    for (index, listener) in listeners.into_iter().enumerate() {
        let prepared = prepared.clone();
        let make = make.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("iomux-worker-{index}"))
            .spawn(move || {
                // However this worker ends, the others end too.
                let _stop_all = StopOnDrop(prepared.stop.clone());
                let stop = prepared.stop.clone();
                let executor = LocalExecutor::new();
                let worker = Worker {
                    index,
                    count,
                    local_addr,
                    executor: &executor,
                    stop: &stop,
                };
                let handler = make(&worker);
                drop(make);
                let acceptor = prepared.into_acceptor(listener, Rc::new(handler))?;
                async_io::block_on(executor.run(acceptor.serve(&executor)))
            });
        match spawned {
            Ok(thread) => workers.threads.push(thread),
            Err(e) => {
                // Stop and wait for those already started.
                workers.stop.stop();
                let _ = workers.join();
                return Err(e);
            }
        }
    }
    Ok(workers)
}

/// Stops every worker when dropped: when its worker's thread ends, even by a panic.
struct StopOnDrop(StopHandle);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// The message of a panic payload (`&str` or `String`), as `std` prints it.
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "Box<dyn Any>"
    }
}
