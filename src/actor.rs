//! Application actors: tasks on the event loop with a mailbox and a clonable address.
//!
//! An actor owns its state and receives messages one at a time; messages typically carry a
//! [`SavedContext`](crate::SavedContext) to reply to later. Addresses are `Send` when the message
//! type is, so other threads can post to an actor on the loop.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use async_executor::LocalExecutor;
use event_listener::Event;
use futures_lite::FutureExt;

use crate::dispatch::is_abort;
use crate::error::MailboxError;

/// The address of an actor: clone it freely; it is `Send` if `M` is.
///
/// The mailbox holds up to its capacity: [`send`](Addr::send) waits for room,
/// [`try_send`](Addr::try_send) fails fast and hands the message back, and
/// [`do_send`](Addr::do_send) queues regardless of capacity (as actix).
pub struct Addr<M> {
    tx: async_channel::Sender<M>,
    room: Arc<Event>,
    capacity: usize,
}

impl<M> Clone for Addr<M> {
    fn clone(&self) -> Self {
        Addr {
            tx: self.tx.clone(),
            room: self.room.clone(),
            capacity: self.capacity,
        }
    }
}

impl<M> std::fmt::Debug for Addr<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Addr")
            .field("queued", &self.tx.len())
            .field("capacity", &self.capacity)
            .field("closed", &self.tx.is_closed())
            .finish()
    }
}

impl<M> Addr<M> {
    /// Queue a message, waiting while the mailbox is full.
    ///
    /// # Errors
    /// [`MailboxError::Closed`] with the message if the actor has stopped.
    ///
    /// ```
    /// let ex = async_executor::LocalExecutor::new();
    /// let addr = iomux::spawn_actor(&ex, 1, |n: u32| println!("got {n}"));
    /// futures_lite::future::block_on(ex.run(async {
    ///     addr.send(1).await.unwrap();
    ///     addr.send(2).await.unwrap(); // waits until the actor took 1
    /// }));
    /// ```
    pub async fn send(&self, mut msg: M) -> Result<(), MailboxError<M>> {
        loop {
            match self.try_send(msg) {
                Err(MailboxError::Full(m)) => msg = m,
                other => return other,
            }
            let listener = self.room.listen();
            if self.tx.len() < self.capacity || self.tx.is_closed() {
                continue;
            }
            listener.await;
        }
    }

    /// Queue a message if the mailbox has room.
    ///
    /// # Errors
    /// [`MailboxError::Full`] or [`MailboxError::Closed`], with the message.
    ///
    /// ```
    /// let ex = async_executor::LocalExecutor::new();
    /// let addr = iomux::spawn_actor(&ex, 1, |_: u32| {});
    /// addr.try_send(1).unwrap();
    /// assert_eq!(addr.try_send(2), Err(iomux::MailboxError::Full(2)));
    /// ```
    pub fn try_send(&self, msg: M) -> Result<(), MailboxError<M>> {
        if self.tx.is_closed() {
            return Err(MailboxError::Closed(msg));
        }
        if self.tx.len() >= self.capacity {
            return Err(MailboxError::Full(msg));
        }
        self.tx
            .try_send(msg)
            .map_err(|e| MailboxError::Closed(e.into_inner()))
    }

    /// Queue a message even if the mailbox is full; never waits. A message for a stopped actor
    /// is dropped (a [`SavedContext`](crate::SavedContext) in it then answers `500`).
    ///
    /// ```
    /// let ex = async_executor::LocalExecutor::new();
    /// let addr = iomux::spawn_actor(&ex, 1, |_: u32| {});
    /// addr.do_send(1);
    /// addr.do_send(2);
    /// assert_eq!(addr.len(), 2);
    /// ```
    pub fn do_send(&self, msg: M) {
        if self.tx.try_send(msg).is_err() {
            log::debug!("message to a stopped actor dropped");
        }
    }

    /// Messages waiting in the mailbox.
    pub fn len(&self) -> usize {
        self.tx.len()
    }

    /// Is the mailbox empty?
    pub fn is_empty(&self) -> bool {
        self.tx.is_empty()
    }

    /// Has the actor stopped?
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// The receiving end of an actor's mailbox, for actors written as a loop (see
/// [`spawn_actor_task`]).
pub struct Mailbox<M> {
    rx: async_channel::Receiver<M>,
    room: Arc<Event>,
}

impl<M> Mailbox<M> {
    /// The next message; `None` once every [`Addr`] is dropped and the mailbox is empty.
    pub async fn recv(&mut self) -> Option<M> {
        let msg = self.rx.recv().await.ok();
        self.room.notify(1);
        msg
    }

    /// The next message if one is queued.
    pub fn try_recv(&mut self) -> Option<M> {
        let msg = self.rx.try_recv().ok();
        if msg.is_some() {
            self.room.notify(1);
        }
        msg
    }
}

impl<M> Drop for Mailbox<M> {
    fn drop(&mut self) {
        self.rx.close();
        self.room.notify(usize::MAX);
    }
}

fn mailbox<M>(capacity: usize) -> (Addr<M>, Mailbox<M>) {
    let (tx, rx) = async_channel::unbounded();
    let room = Arc::new(Event::new());
    (
        Addr {
            tx,
            room: room.clone(),
            capacity: capacity.max(1),
        },
        Mailbox { rx, room },
    )
}

/// Spawn an actor that handles each message with `handler`, on `executor`.
///
/// A panic in `handler` is logged and the actor goes on with the next message; the message is
/// dropped (a [`SavedContext`](crate::SavedContext) in it answers `500`). An
/// [`abort`](crate::abort) in `handler` is no panic: its reply goes to the request context
/// current at the abort (the one brought back by
/// [`with_restored_context!`](crate::with_restored_context)), and the actor goes on. The actor
/// stops when every [`Addr`] is dropped.
///
/// ```
/// let ex = async_executor::LocalExecutor::new();
/// let mut total = 0;
/// let adder = iomux::spawn_actor(&ex, 16, move |n: u64| { total += n; println!("{total}") });
/// adder.do_send(2);
/// while ex.try_tick() {}
/// ```
pub fn spawn_actor<M, F>(executor: &LocalExecutor<'_>, capacity: usize, mut handler: F) -> Addr<M>
where
    M: 'static,
    F: FnMut(M) + 'static,
{
    spawn_actor_task(
        executor,
        capacity,
        move |mut mailbox: Mailbox<M>| async move {
            while let Some(msg) = mailbox.recv().await {
                match std::panic::catch_unwind(AssertUnwindSafe(|| handler(msg))) {
                    Ok(()) => {}
                    // Dropping the payload sends the abort's reply.
                    Err(payload) if is_abort(&*payload) => {
                        log::debug!("actor message handler aborted");
                    }
                    Err(_) => {
                        log::error!("actor panicked on a message; its reply (if any) is a 500")
                    }
                }
            }
        },
    )
}

/// Spawn an actor written as an async loop over its [`Mailbox`], on `executor`. It can await
/// timers and other events between messages. A panic stops the actor and is logged; senders
/// then see [`MailboxError::Closed`]. So does an [`abort`](crate::abort) that reaches the end of
/// the task (its reply is sent all the same): catch aborts inside the loop with
/// [`catch_abort`](crate::catch_abort) to keep the actor going.
///
/// ```
/// use std::time::Duration;
/// let ex = async_executor::LocalExecutor::new();
/// let ticker = iomux::spawn_actor_task(&ex, 16, |mut mailbox: iomux::Mailbox<String>| async move {
///     while let Some(line) = mailbox.recv().await {
///         async_io::Timer::after(Duration::from_millis(1)).await;
///         println!("{line}");
///     }
/// });
/// ticker.do_send("tick".to_string());
/// ```
pub fn spawn_actor_task<M, F, Fut>(
    executor: &LocalExecutor<'_>,
    capacity: usize,
    body: F,
) -> Addr<M>
where
    M: 'static,
    F: FnOnce(Mailbox<M>) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    let (addr, mailbox) = mailbox(capacity);
    let task = AssertUnwindSafe(body(mailbox)).catch_unwind();
    executor
        .spawn(async move {
            match task.await {
                Ok(()) => {}
                // Dropping the payload sends the abort's reply.
                Err(payload) if is_abort(&*payload) => {
                    log::warn!("actor task stopped by an abort (use catch_abort in its loop)")
                }
                Err(_) => log::error!("actor task panicked and stopped"),
            }
        })
        .detach();
    addr
}
