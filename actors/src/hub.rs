//! The hub actor: channels by id, their message buffers, and their subscribers.
//!
//! Long-poll subscribers wait as a [`SavedContext`] and the cursor they want to pass; a publish
//! answers every waiter the new message satisfies, with one reply built for the message and
//! shared (its body is reference-counted bytes). EventSource subscribers are streams that get
//! the message's event, encoded once. A subscriber whose client hangs up is removed at once
//! through [`SavedContext::on_close`]; one timer per hub (not per subscriber) expires held
//! long-polls, sends heartbeats and forgets idle channels.
//!
//! The hub is *local delivery*: a replica of each channel's buffer, and the waiters and streams
//! of this loop. Where messages get their ids and are stored is its [`Backend`]: this hub alone
//! (the default, [`Backend::InProcess`]), the owner worker of a [`HubGroup`](crate::HubGroup),
//! or Redis ([`RedisBackend`](crate::RedisBackend)). Every backend hands the stored messages back
//! to `Hub::deliver`, in id order.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::{Rc, Weak};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use async_executor::LocalExecutor;
use async_io::Timer;
use futures_lite::future;
use iomux::bytes::Bytes;
use iomux::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, LAST_MODIFIED, VARY};
use iomux::http::{HeaderMap, HeaderValue, StatusCode};
use iomux::{AcceptorRef, Addr, BodySender, ChunkError, Mailbox, Reply, SavedContext};
use slab::Slab;

use crate::backend::{Backend, Link};
use crate::config::{FirstMessage, PubSubConfig};
use crate::info::{ChannelInfo, Format, Status};
use crate::msgid::{Cursor, MessageId};
use crate::{cors, eventsource};

/// The `Vary` of subscriber replies: they depend on the cursor headers.
const VARY_CURSOR: &str = "If-None-Match, If-Modified-Since";

/// How a subscriber receives messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One message per request (nchan's long-poll).
    LongPoll,
    /// A `text/event-stream` of messages.
    EventSource,
}

/// A message for the hub. Each carries the [`SavedContext`] of the request it answers.
pub enum HubMsg {
    /// A subscriber wants the next message after `cursor` on `channel`.
    Subscribe {
        /// Channel id.
        channel: String,
        /// Where the subscriber resumes.
        cursor: Cursor,
        /// Long-poll or EventSource.
        mode: Mode,
        /// The subscriber's request.
        ctx: SavedContext,
    },
    /// Publish a message; the publisher gets `201` if subscribers were there, else `202`,
    /// with the channel's information.
    Publish {
        /// Channel id.
        channel: String,
        /// The message.
        message: NewMessage,
        /// Representation of the channel information in the reply.
        format: Format,
        /// The publisher's request.
        ctx: SavedContext,
    },
    /// Channel information (`404` if the channel was never used).
    Info {
        /// Channel id.
        channel: String,
        /// Representation.
        format: Format,
        /// The request.
        ctx: SavedContext,
    },
    /// Delete the channel's messages; its subscribers get `410` (`404` if it was never used).
    Delete {
        /// Channel id.
        channel: String,
        /// Representation of the information (as it was before deleting).
        format: Format,
        /// The request.
        ctx: SavedContext,
    },
    /// The server's figures.
    Status {
        /// Representation.
        format: Format,
        /// The request.
        ctx: SavedContext,
    },
}

/// A message as published.
#[derive(Debug, Clone, Default)]
pub struct NewMessage {
    /// The body, delivered as it is.
    pub body: Bytes,
    /// The publisher's `Content-Type`, given to long-poll subscribers.
    pub content_type: Option<HeaderValue>,
    /// The publisher's `X-EventSource-Event`: the event name on EventSource streams.
    pub event: Option<HeaderValue>,
}

/// A published message, with its two encodings made once for every subscriber.
struct Message {
    id: MessageId,
    published: Instant,
    /// The long-poll reply, without the per-request CORS headers.
    reply: Reply,
    /// The EventSource event.
    event: Bytes,
}

impl Message {
    fn new(id: MessageId, message: NewMessage, published: Instant) -> Message {
        let mut headers = cursor_headers(id);
        if let Some(content_type) = message.content_type {
            headers.insert(CONTENT_TYPE, content_type);
        }
        let event = eventsource::encode(
            id,
            message.event.as_ref().map(HeaderValue::as_bytes),
            &message.body,
        );
        let mut reply = Reply::new(StatusCode::OK).with_body(message.body);
        *reply.headers_mut() = headers;
        Message {
            id,
            published,
            reply,
            event,
        }
    }
}

/// `Last-Modified` and `Etag` telling a long-poll client its cursor, and `Vary`.
fn cursor_headers(id: MessageId) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if id != MessageId::ZERO {
        let date = httpdate::fmt_http_date(id.system_time());
        if let Ok(date) = HeaderValue::from_str(&date) {
            headers.insert(LAST_MODIFIED, date);
        }
        headers.insert(ETAG, HeaderValue::from(id.tag));
    }
    headers.insert(VARY, HeaderValue::from_static(VARY_CURSOR));
    headers
}

/// A long-poll subscriber waiting for a message newer than `cursor`.
struct Waiter {
    ctx: SavedContext,
    cursor: MessageId,
    uid: u64,
}

/// An EventSource subscriber.
struct Stream {
    body: BodySender,
    /// When the last message was sent (the hold timeout restarts there, as nchan).
    last_sent: Instant,
    uid: u64,
}

/// A subscriber request on its way to a channel (while a Redis node reads the channel).
#[cfg(feature = "redis")]
pub(crate) struct Subscriber {
    pub(crate) cursor: Cursor,
    pub(crate) mode: Mode,
    pub(crate) ctx: SavedContext,
}

/// One channel's replica on this loop: its buffered messages and its local subscribers.
pub(crate) struct Channel {
    messages: VecDeque<Rc<Message>>,
    /// The newest id delivered here (ids below it are duplicates).
    pub(crate) last_id: MessageId,
    waiters: Slab<Waiter>,
    streams: Slab<Stream>,
    last_requested: Option<Instant>,
    /// Last publish, subscribe or delete: idle channels are forgotten after a while.
    last_active: Instant,
    /// Redis backend only: the replica is being filled from the store (see `redis_backend.rs`).
    #[cfg(feature = "redis")]
    pub(crate) catchup: Option<Box<crate::redis_backend::Catchup>>,
}

impl Channel {
    /// Being filled from the backend's store (Redis), so not idle however empty.
    fn catching_up(&self) -> bool {
        #[cfg(feature = "redis")]
        return self.catchup.is_some();
        #[cfg(not(feature = "redis"))]
        false
    }

    fn new() -> Channel {
        Channel {
            messages: VecDeque::new(),
            last_id: MessageId::ZERO,
            waiters: Slab::new(),
            streams: Slab::new(),
            last_requested: None,
            last_active: Instant::now(),
            #[cfg(feature = "redis")]
            catchup: None,
        }
    }

    /// Take long-poll waiter `key` if it is still subscriber `uid` (slots are reused).
    fn take_waiter(&mut self, key: usize, uid: u64) -> Option<Waiter> {
        let current = self.waiters.get(key).is_some_and(|w| w.uid == uid);
        current.then(|| self.waiters.remove(key))
    }

    fn forget_waiter(&mut self, key: usize, uid: u64) {
        self.take_waiter(key, uid);
    }

    /// Remove stream `key` if it is still subscriber `uid`.
    fn forget_stream(&mut self, key: usize, uid: u64) {
        if self.streams.get(key).is_some_and(|s| s.uid == uid) {
            self.streams.remove(key);
        }
    }

    pub(crate) fn subscribers(&self) -> usize {
        self.waiters.len() + self.streams.len()
    }

    pub(crate) fn info(&self) -> ChannelInfo {
        ChannelInfo {
            messages: self.messages.len(),
            requested: self.last_requested.map(|t| t.elapsed().as_secs()),
            subscribers: self.subscribers(),
            last_message_id: self.last_id,
        }
    }

    /// The first buffered message a subscriber at `cursor` has not seen, and the cursor it
    /// waits at when there is none.
    fn next_for(&self, cursor: Cursor, rule: FirstMessage) -> Result<Rc<Message>, MessageId> {
        let index = match cursor {
            Cursor::After(id) => self.messages.partition_point(|m| m.id <= id),
            Cursor::Fresh => match rule {
                FirstMessage::Oldest => 0,
                FirstMessage::Newest => self.messages.len(),
                FirstMessage::Nth(n) if n > 0 => usize::try_from(n - 1)
                    .unwrap_or(usize::MAX)
                    .min(self.messages.len().saturating_sub(1)),
                FirstMessage::Nth(n) => self
                    .messages
                    .len()
                    .saturating_sub(usize::try_from(n.unsigned_abs()).unwrap_or(usize::MAX)),
            },
        };
        match self.messages.get(index) {
            Some(message) => Ok(message.clone()),
            None => Err(match cursor {
                Cursor::After(id) => id.max(self.last_id),
                Cursor::Fresh => self.last_id,
            }),
        }
    }

    /// Drop messages over the length or age limit.
    fn trim(&mut self, config: &PubSubConfig, now: Instant) {
        while self.messages.len() > config.buffer_length {
            self.messages.pop_front();
        }
        while self
            .messages
            .front()
            .is_some_and(|m| now.duration_since(m.published) >= config.buffer_age)
        {
            self.messages.pop_front();
        }
    }
}

/// A held long-poll's deadline. Deadlines are queued in order (the hold timeout is the same for
/// all), so one timer serves every subscriber.
struct Deadline {
    at: Instant,
    channel: Weak<RefCell<Channel>>,
    key: usize,
    uid: u64,
}

/// The hub's state, owned by its actor task.
pub(crate) struct Hub {
    pub(crate) config: Rc<PubSubConfig>,
    pub(crate) channels: HashMap<Rc<str>, Rc<RefCell<Channel>>>,
    deadlines: VecDeque<Deadline>,
    next_uid: u64,
    pub(crate) published: u64,
    delivered: u64,
    next_heartbeat: Option<Instant>,
    /// Channels that have (or recently had) EventSource streams: the tick visits only these.
    stream_channels: Vec<Weak<RefCell<Channel>>>,
    /// When buffers are next trimmed by age and idle channels forgotten (a sweep of all).
    next_sweep: Instant,
    /// The next regular tick, while something needs one (streams to heartbeat and time out, a
    /// Redis link to retry): see [`Hub::next_wake`].
    next_tick: Instant,
    /// Where messages are ordered and stored.
    pub(crate) link: Link,
    /// The acceptor of this loop, kept from a request (for `/status` figures asked by another
    /// worker's hub).
    pub(crate) acceptor: Option<AcceptorRef>,
}

/// Spawn the hub actor on `executor`; its address is what handlers send [`HubMsg`]s to.
///
/// ```
/// let ex = async_executor::LocalExecutor::new();
/// let hub = iomux_actors::spawn_hub(&ex, iomux_actors::PubSubConfig::default());
/// assert!(!hub.is_closed());
/// ```
pub fn spawn_hub(executor: &LocalExecutor<'_>, config: PubSubConfig) -> Addr<HubMsg> {
    spawn_hub_with(executor, config, Backend::InProcess)
}

/// Spawn the hub actor on `executor` with messages ordered and stored by `backend`.
///
/// ```
/// use iomux_actors::{spawn_hub_with, Backend, HubGroup, PubSubConfig};
/// let group = HubGroup::new(1);
/// let ex = async_executor::LocalExecutor::new();
/// let hub = spawn_hub_with(&ex, PubSubConfig::default(), Backend::Group(group.member(0)));
/// assert!(!hub.is_closed());
/// ```
pub fn spawn_hub_with(
    executor: &LocalExecutor<'_>,
    config: PubSubConfig,
    backend: Backend,
) -> Addr<HubMsg> {
    /// Messages queued for the hub before `send` waits (publishers and subscribers alike).
    const MAILBOX: usize = 4096;
    let config = Rc::new(config);
    let link = Link::start(backend, executor, &config);
    iomux::spawn_actor_task(
        executor,
        MAILBOX,
        move |mut mailbox: Mailbox<HubMsg>| async move {
            let mut hub = Hub {
                next_heartbeat: (!config.heartbeat_interval.is_zero())
                    .then(|| Instant::now() + config.heartbeat_interval),
                config,
                channels: HashMap::new(),
                deadlines: VecDeque::new(),
                next_uid: 0,
                published: 0,
                delivered: 0,
                stream_channels: Vec::new(),
                next_sweep: Instant::now(),
                next_tick: Instant::now(),
                link,
                acceptor: None,
            };
            // One timer, set to the next thing that is due and moved only when that changes: a
            // hub whose subscribers simply wait (no hold timeout, no streams) sleeps between
            // sweeps, so the process has no wake-ups while idle.
            let mut wake_at = hub.next_wake();
            let mut timer = Timer::at(wake_at);
            loop {
                let next = future::or(
                    async { Input::Msg(mailbox.recv().await) },
                    future::or(
                        async {
                            (&mut timer).await;
                            Input::Tick
                        },
                        async { Input::Backend(hub.link.next_event().await) },
                    ),
                )
                .await;
                let ticked = matches!(next, Input::Tick);
                match next {
                    Input::Msg(Some(msg)) => hub.handle(msg),
                    Input::Msg(None) => break,
                    Input::Tick => hub.tick(Instant::now()),
                    Input::Backend(event) => {
                        hub.on_event(event);
                        // Backend events come in bursts (a Redis notification per message, a
                        // peer hub's messages): let the connections write between two, so the
                        // streams' queues drain as they would between publish requests.
                        future::yield_now().await;
                    }
                }
                let due = hub.next_wake();
                if due != wake_at || ticked {
                    wake_at = due;
                    timer.set_at(due);
                }
            }
        },
    )
}

/// What wakes the hub.
enum Input {
    Msg(Option<HubMsg>),
    Tick,
    Backend(crate::backend::Event),
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Hub {
    fn handle(&mut self, msg: HubMsg) {
        let group = matches!(self.link, Link::Group(_));
        #[cfg(feature = "redis")]
        if matches!(self.link, Link::Redis(_)) {
            return self.handle_redis(msg);
        }
        if group && self.acceptor.is_none() {
            self.keep_acceptor(&msg);
        }
        match msg {
            HubMsg::Subscribe {
                channel,
                cursor,
                mode,
                ctx,
            } => {
                self.subscribe(&channel, cursor, mode, ctx);
            }
            HubMsg::Publish {
                channel,
                message,
                format,
                ctx,
            } => {
                if group {
                    self.group_publish(channel, message, format, ctx);
                } else {
                    let info = self.publish_here(&channel, message);
                    self.answer(&ctx, publish_reply(info, format));
                }
            }
            HubMsg::Info {
                channel,
                format,
                ctx,
            } => {
                if group {
                    self.group_info(channel, format, ctx);
                } else {
                    let reply = match self.info_here(&channel) {
                        Some(info) => info.reply(StatusCode::OK, format),
                        None => Reply::new(StatusCode::NOT_FOUND),
                    };
                    self.answer(&ctx, reply);
                }
            }
            HubMsg::Delete {
                channel,
                format,
                ctx,
            } => {
                if group {
                    self.group_delete(channel, format, ctx);
                } else {
                    let reply = match self.delete_here(&channel) {
                        Some(info) => info.reply(StatusCode::OK, format),
                        None => Reply::new(StatusCode::NOT_FOUND),
                    };
                    self.answer(&ctx, reply);
                }
            }
            // A group adds up every worker's figures; a Redis node reports its own.
            HubMsg::Status { format, ctx } if group => self.group_status(format, ctx),
            HubMsg::Status { format, ctx } => self.status(format, ctx),
        }
    }

    /// Answer `/status` with this loop's figures.
    pub(crate) fn status(&mut self, format: Format, ctx: SavedContext) {
        if ctx.request().is_some() {
            self.acceptor = Some(ctx.restore(iomux::context::acceptor));
        }
        let status = self.status_here();
        let _ = ctx.send_reply(status.reply(format));
    }

    /// Keep the acceptor of the loop from the first request (a group hub reports its figures to
    /// the others).
    fn keep_acceptor(&mut self, msg: &HubMsg) {
        let (HubMsg::Subscribe { ctx, .. }
        | HubMsg::Publish { ctx, .. }
        | HubMsg::Info { ctx, .. }
        | HubMsg::Delete { ctx, .. }
        | HubMsg::Status { ctx, .. }) = msg;
        if ctx.request().is_some() {
            self.acceptor = Some(ctx.restore(iomux::context::acceptor));
        }
    }

    fn on_event(&mut self, event: crate::backend::Event) {
        match event {
            crate::backend::Event::Group(msg) => self.on_peer(msg),
            #[cfg(feature = "redis")]
            crate::backend::Event::Redis(event) => self.on_redis(event),
        }
    }

    /// Send a publisher-side reply with its CORS headers.
    pub(crate) fn answer(&self, ctx: &SavedContext, mut reply: Reply) {
        if let Some(request) = ctx.request() {
            let origin = cors::allowed_origin(&self.config.allow_origin, &request);
            cors::add(reply.headers_mut(), origin, false);
        }
        let _ = ctx.send_reply(reply);
    }

    pub(crate) fn channel(&mut self, name: &str) -> Rc<RefCell<Channel>> {
        if let Some(ch) = self.channels.get(name) {
            return ch.clone();
        }
        let ch = Rc::new(RefCell::new(Channel::new()));
        self.channels.insert(Rc::from(name), ch.clone());
        ch
    }

    fn uid(&mut self) -> u64 {
        self.next_uid += 1;
        self.next_uid
    }

    pub(crate) fn subscribe(&mut self, name: &str, cursor: Cursor, mode: Mode, ctx: SavedContext) {
        if ctx.is_closed() {
            return;
        }
        let channel = self.channel(name);
        let mut ch = channel.borrow_mut();
        let now = Instant::now();
        ch.last_requested = Some(now);
        ch.last_active = now;
        let limit = self.config.max_subscribers_per_channel;
        if limit != 0 && ch.subscribers() >= limit {
            let reply =
                subscriber_reply(&self.config, &ctx, StatusCode::FORBIDDEN, HeaderMap::new());
            let _ = ctx.send_reply(reply);
            return;
        }
        match mode {
            Mode::LongPoll => match ch.next_for(cursor, self.config.first_message) {
                Ok(message) => {
                    if deliver(&self.config, &ctx, &message) {
                        self.delivered += 1;
                    }
                }
                Err(cursor) => {
                    let uid = self.uid();
                    let key = ch.waiters.vacant_key();
                    if !forget_on_hang_up(&ctx, &channel, key, uid, Channel::forget_waiter) {
                        return; // the client left meanwhile
                    }
                    ch.waiters.insert(Waiter { ctx, cursor, uid });
                    if !self.config.hold_timeout.is_zero() {
                        let at = now + self.config.hold_timeout;
                        self.deadlines.push_back(Deadline {
                            at,
                            channel: Rc::downgrade(&channel),
                            key,
                            uid,
                        });
                    }
                }
            },
            Mode::EventSource => {
                let Some(request) = ctx.request() else { return };
                let origin = cors::allowed_origin(&self.config.allow_origin, &request);
                let mut head = Reply::with_type("text/event-stream; charset=utf-8", Bytes::new())
                    .header(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                cors::add(head.headers_mut(), origin, false);
                // The stream opens with the catch-up: every buffered message after the cursor.
                let mut first = eventsource::HELLO.to_vec();
                let mut cursor = cursor;
                while let Ok(message) = ch.next_for(cursor, self.config.first_message) {
                    first.extend_from_slice(&message.event);
                    cursor = Cursor::After(message.id);
                    self.delivered += 1;
                }
                let Some(responder) = ctx.responder() else {
                    return;
                };
                let Ok(body) = responder.start_stream(head.with_body(first)) else {
                    return;
                };
                let uid = self.uid();
                let key = ch.streams.vacant_key();
                if !forget_on_hang_up(&ctx, &channel, key, uid, Channel::forget_stream) {
                    return; // the client left meanwhile
                }
                let weak = Rc::downgrade(&channel);
                if !self.stream_channels.iter().any(|c| c.ptr_eq(&weak)) {
                    self.stream_channels.push(weak);
                }
                ch.streams.insert(Stream {
                    body,
                    last_sent: now,
                    uid,
                });
            }
        }
    }

    /// Order a message here (in-process backend, or the owner of a group channel): give it the
    /// channel's next id and deliver it. The channel information, with the subscribers the
    /// message found.
    pub(crate) fn publish_here(&mut self, name: &str, message: NewMessage) -> ChannelInfo {
        let channel = self.channel(name);
        let id = MessageId::next(channel.borrow().last_id, unix_now());
        self.published += 1;
        self.deliver(&channel, name, id, message, Instant::now())
    }

    /// Deliver a stored message to this loop: the waiters whose cursor it passes, the streams,
    /// the buffer. Messages come in id order; `published` is when it was stored (buffer age).
    /// The channel information after it, with the subscribers it found (before they were
    /// answered, as nchan counts them).
    pub(crate) fn deliver(
        &mut self,
        channel: &Rc<RefCell<Channel>>,
        name: &str,
        id: MessageId,
        message: NewMessage,
        published: Instant,
    ) -> ChannelInfo {
        let mut ch = channel.borrow_mut();
        let subscribers = ch.subscribers();
        let message = Rc::new(Message::new(id, message, published));
        ch.last_id = ch.last_id.max(id);
        let now = Instant::now();
        ch.last_active = now;

        // Long-poll waiters whose cursor the message passes (all but those from the future).
        let ready: Vec<usize> = ch
            .waiters
            .iter()
            .filter(|(_, w)| w.cursor < id)
            .map(|(k, _)| k)
            .collect();
        for key in ready {
            let waiter = ch.waiters.remove(key);
            if deliver(&self.config, &waiter.ctx, &message) {
                self.delivered += 1;
            }
        }
        // EventSource streams share the encoded event.
        let mut dropped = Vec::new();
        for (key, stream) in ch.streams.iter_mut() {
            match stream.body.try_send(message.event.clone()) {
                Ok(()) => {
                    stream.last_sent = now;
                    self.delivered += 1;
                }
                Err(ChunkError::Full(_)) => {
                    log::warn!("eventsource subscriber of {name} too slow: dropped; it resumes from its last id");
                    dropped.push(key);
                }
                Err(ChunkError::ClientGone(_)) => dropped.push(key),
            }
        }
        for key in dropped {
            ch.streams.remove(key).body.abort();
        }
        if self.config.buffer_length > 0 {
            ch.messages.push_back(message);
        }
        ch.trim(&self.config, now);
        ChannelInfo {
            subscribers,
            ..ch.info()
        }
    }

    /// The information of a channel of this loop (`None`: never used here).
    pub(crate) fn info_here(&self, name: &str) -> Option<ChannelInfo> {
        self.channels.get(name).map(|ch| ch.borrow().info())
    }

    /// Delete a channel's messages on this loop: its waiters get `410`, its streams end. The
    /// information as it was before (`None`: never used here).
    pub(crate) fn delete_here(&mut self, name: &str) -> Option<ChannelInfo> {
        let channel = self.channels.get(name).cloned()?;
        let mut ch = channel.borrow_mut();
        let info = ch.info();
        ch.messages.clear();
        ch.last_active = Instant::now();
        for (_, waiter) in std::mem::take(&mut ch.waiters) {
            let reply = subscriber_reply(
                &self.config,
                &waiter.ctx,
                StatusCode::GONE,
                cursor_headers(waiter.cursor),
            );
            let _ = waiter.ctx.send_reply(reply);
        }
        for (_, stream) in std::mem::take(&mut ch.streams) {
            let _ = stream.body.try_send(eventsource::GONE);
        }
        Some(info)
    }

    /// Answer every subscriber of this loop `503` with `Retry-After: 1` and end its streams (a
    /// Redis node set to refuse subscribers while Redis is down); their clients go elsewhere or
    /// come back later, and resume by cursor.
    #[cfg(feature = "redis")]
    pub(crate) fn refuse_all_subscribers(&mut self) {
        for channel in self.channels.values() {
            let mut ch = channel.borrow_mut();
            for (_, waiter) in std::mem::take(&mut ch.waiters) {
                refuse_unavailable(&self.config, &waiter.ctx, cursor_headers(waiter.cursor));
            }
            // Dropping a stream's sender ends its body: the EventSource reconnects.
            ch.streams.clear();
        }
    }

    /// Forget the buffer of a replica whose store lost it (Redis restarted empty).
    #[cfg(feature = "redis")]
    pub(crate) fn clear_buffer(channel: &Rc<RefCell<Channel>>) {
        channel.borrow_mut().messages.clear();
    }

    /// The figures of this loop.
    pub(crate) fn status_here(&self) -> Status {
        let mut status = Status {
            channels: self.channels.len(),
            published_messages: self.published,
            delivered_messages: self.delivered,
            resident_memory: crate::info::resident_memory(),
            ..Status::default()
        };
        for ch in self.channels.values() {
            let ch = ch.borrow();
            status.long_poll_subscribers += ch.waiters.len();
            status.eventsource_subscribers += ch.streams.len();
            status.stored_messages += ch.messages.len();
        }
        if let Some(acceptor) = &self.acceptor {
            status.connections = acceptor.open_connections();
            status.waiting_requests = acceptor.waiting_requests();
        }
        status
    }

    /// Expire held long-polls, time out and heartbeat streams, trim buffers, forget idle
    /// channels.
    /// When the hub must next look at the time: the next hold timeout, the next sweep, and a
    /// regular tick only while streams or a Redis link need one. Stable between two ticks unless
    /// a deadline is added, so the timer is rarely moved.
    fn next_wake(&self) -> Instant {
        let mut at = self.next_sweep;
        if let Some(deadline) = self.deadlines.front() {
            at = at.min(deadline.at);
        }
        #[cfg(feature = "redis")]
        let redis = matches!(self.link, Link::Redis(_));
        #[cfg(not(feature = "redis"))]
        let redis = false;
        if !self.stream_channels.is_empty() || redis {
            at = at.min(self.next_tick);
        }
        at
    }

    fn tick(&mut self, now: Instant) {
        self.next_tick = now + self.config.tick;
        #[cfg(feature = "redis")]
        if matches!(self.link, Link::Redis(_)) {
            self.redis_tick();
        }
        while self.deadlines.front().is_some_and(|d| d.at <= now) {
            let Some(deadline) = self.deadlines.pop_front() else {
                break;
            };
            let Some(channel) = deadline.channel.upgrade() else {
                continue;
            };
            let mut ch = channel.borrow_mut();
            if let Some(waiter) = ch.take_waiter(deadline.key, deadline.uid) {
                let reply = subscriber_reply(
                    &self.config,
                    &waiter.ctx,
                    StatusCode::REQUEST_TIMEOUT,
                    cursor_headers(waiter.cursor),
                );
                let _ = waiter.ctx.send_reply(reply);
            }
        }
        // Half a tick of slack: the timer fires a hair early or late, and a heartbeat due within the
        // next half tick goes now rather than a whole tick late.
        let slack = self.config.tick / 2;
        let heartbeat = self.next_heartbeat.is_some_and(|at| at <= now + slack);
        if heartbeat {
            let interval = self.config.heartbeat_interval;
            let due = self.next_heartbeat.map_or(now, |at| at + interval);
            // Scheduled from the previous due time, so heartbeats keep their rhythm.
            self.next_heartbeat = Some(if due > now { due } else { now + interval });
        }
        let hold = self.config.hold_timeout;
        self.stream_channels.retain(|channel| {
            let Some(channel) = channel.upgrade() else {
                return false;
            };
            let mut ch = channel.borrow_mut();
            ch.streams.retain(|_, stream| {
                if !hold.is_zero() && now.duration_since(stream.last_sent) >= hold {
                    let _ = stream.body.try_send(eventsource::TIMEOUT);
                    return false;
                }
                if heartbeat {
                    let sent = stream.body.try_send(eventsource::HEARTBEAT);
                    return !matches!(sent, Err(ChunkError::ClientGone(_)));
                }
                !stream.body.is_closed()
            });
            !ch.streams.is_empty()
        });
        if now >= self.next_sweep {
            self.sweep(now);
        }
    }

    /// Trim buffers by age and forget idle channels. Runs a few times per the shorter of the
    /// two limits, so a hub of many quiet channels costs next to nothing between sweeps.
    fn sweep(&mut self, now: Instant) {
        /// Sweeps per limit period: limits are kept within a quarter of their length.
        const SWEEPS_PER_PERIOD: u32 = 4;
        let config = self.config.clone();
        let period = config.channel_idle_timeout.min(config.buffer_age) / SWEEPS_PER_PERIOD;
        self.next_sweep = now + period.max(config.tick);
        self.channels.retain(|_, channel| {
            let mut ch = channel.borrow_mut();
            ch.trim(&config, now);
            let idle = ch.messages.is_empty() && ch.subscribers() == 0 && !ch.catching_up();
            !(idle && now.duration_since(ch.last_active) >= config.channel_idle_timeout)
        });
    }
}

/// Have `forget(channel, key, uid)` run when the client of `ctx` hangs up, so its entry goes at
/// once (if the channel still exists and is not busy; otherwise the next publish or tick finds
/// the entry closed). `false` if the client has gone already. `forget` is a function item, not a
/// pointer: it adds nothing to the closure each subscriber keeps.
fn forget_on_hang_up(
    ctx: &SavedContext,
    channel: &Rc<RefCell<Channel>>,
    key: usize,
    uid: u64,
    forget: impl Fn(&mut Channel, usize, u64) + 'static,
) -> bool {
    let channel = Rc::downgrade(channel);
    ctx.on_close(move || {
        if let Some(channel) = channel.upgrade() {
            if let Ok(mut ch) = channel.try_borrow_mut() {
                forget(&mut ch, key, uid);
            }
        }
    })
}

/// The publisher's reply: `201` if the message found subscribers, else `202`, with the channel's
/// information.
pub(crate) fn publish_reply(info: ChannelInfo, format: Format) -> Reply {
    let status = if info.subscribers > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::ACCEPTED
    };
    info.reply(status, format)
}

/// Answer a long-poll subscriber with `message`; `false` if its client has gone.
fn deliver(config: &PubSubConfig, ctx: &SavedContext, message: &Message) -> bool {
    let mut reply = message.reply.clone();
    if let Some(request) = ctx.request() {
        let origin = cors::allowed_origin(&config.allow_origin, &request);
        cors::add(reply.headers_mut(), origin, true);
    }
    ctx.send_reply(reply).is_ok()
}

/// Answer a subscriber `503` with `Retry-After: 1` (and `headers`): the store of its channel
/// cannot be reached.
#[cfg(feature = "redis")]
pub(crate) fn refuse_unavailable(
    config: &PubSubConfig,
    ctx: &SavedContext,
    mut headers: HeaderMap,
) {
    headers.insert(
        iomux::http::header::RETRY_AFTER,
        HeaderValue::from_static("1"),
    );
    let reply = subscriber_reply(config, ctx, StatusCode::SERVICE_UNAVAILABLE, headers);
    let _ = ctx.send_reply(reply);
}

/// A body-less subscriber reply (403, 408, 410, 503) with the given headers and CORS.
pub(crate) fn subscriber_reply(
    config: &PubSubConfig,
    ctx: &SavedContext,
    status: StatusCode,
    mut headers: HeaderMap,
) -> Reply {
    if !headers.contains_key(VARY) {
        headers.insert(VARY, HeaderValue::from_static(VARY_CURSOR));
    }
    if let Some(request) = ctx.request() {
        let origin = cors::allowed_origin(&config.allow_origin, &request);
        cors::add(&mut headers, origin, true);
    }
    let mut reply = Reply::new(status);
    *reply.headers_mut() = headers;
    reply
}
