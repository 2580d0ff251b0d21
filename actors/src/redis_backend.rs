//! A hub across machines on Redis: several servers share channels through one Redis.
//!
//! Redis keeps, per channel (keys under a prefix, `iomux:` by default):
//!
//! | key | |
//! |---|---|
//! | `{prefix}m:{channel}` | a stream of the buffered messages: entry id `TIME-TAG` is message id `TIME:TAG`; fields `c` (content type), `e` (event name), `b` (body) |
//! | `{prefix}l:{channel}` | the last id given, `TIME-TAG`, so ids only grow |
//!
//! A publish is one Lua script, atomic in Redis: the next id from Redis's clock and the last id
//! (nchan's `time:tag`, so cursors work on every node), `XADD` trimmed to the buffer length and
//! age, expiry of idle channels, and a `PUBLISH` of the whole message on `{prefix}notify`. The
//! publisher's `201`/`202` comes once Redis has stored the message; if Redis cannot be reached
//! it is `503`, never a `2xx` for a message that was not stored.
//!
//! Each node keeps one subscription to `{prefix}notify` and delivers the messages of the
//! channels it has a replica of (the channels its subscribers asked for), in Redis's order. A
//! subscriber of a channel the node does not know yet waits while the node reads the channel's
//! buffer from Redis. When the subscription connection drops (Redis restarted), the node
//! reconnects with a bounded backoff, logged, and catches every replica up from the stored
//! buffer after its last id, merging what arrives meanwhile by id: nothing is delivered twice or
//! out of order. Subscribers waiting meanwhile keep waiting; a subscriber of a channel the node
//! could not read gets `503` with `Retry-After`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender};
use async_executor::LocalExecutor;
use async_io::Timer;
use futures_lite::{future, StreamExt};
use futures_util::future::LocalBoxFuture;
use futures_util::stream::FuturesUnordered;
use iomux::bytes::Bytes;
use iomux::http::header::RETRY_AFTER;
use iomux::http::{HeaderMap, HeaderValue, StatusCode};
use iomux::{Reply, SavedContext};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError, RedisResult, Script};

use crate::config::PubSubConfig;
use crate::hub::{
    publish_reply, refuse_unavailable, unix_now, Hub, HubMsg, NewMessage, Subscriber,
};
use crate::info::{ChannelInfo, Format};
use crate::msgid::MessageId;

/// The publish script. KEYS: stream, last id. ARGV: notification channel, channel id, content
/// type, event, body, buffer length, buffer age (s), expiry (s), and the last id the publishing
/// node has seen on the channel (`TIME-TAG`): ids never go back below it, even after Redis lost
/// its data. Returns `{id, buffered}`.
const PUBLISH: &str = r"
local now = tonumber(redis.call('TIME')[1])
local time, tag = now, 0
local function after(last)
  if not last then return end
  local lt, lg = string.match(last, '^(%d+)-(%d+)$')
  if not lt then return end
  lt, lg = tonumber(lt), tonumber(lg)
  if lt > time or (lt == time and lg >= tag) then time, tag = lt, lg + 1 end
end
after(redis.call('GET', KEYS[2]))
after(ARGV[9])
local id = string.format('%d-%d', time, tag)
local ttl = tonumber(ARGV[8])
redis.call('SET', KEYS[2], id, 'EX', ttl)
local maxlen = tonumber(ARGV[6])
if maxlen > 0 then
  redis.call('XADD', KEYS[1], 'MAXLEN', maxlen, id, 'c', ARGV[3], 'e', ARGV[4], 'b', ARGV[5])
  local minid = now - tonumber(ARGV[7]) + 1
  if minid > 0 then redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d-0', minid)) end
  redis.call('EXPIRE', KEYS[1], ttl)
end
local buffered = redis.call('XLEN', KEYS[1])
redis.call('PUBLISH', ARGV[1], 'm\n' .. id .. '\n' .. ARGV[3] .. '\n' .. ARGV[4] .. '\n'
  .. #ARGV[2] .. '\n' .. ARGV[2] .. ARGV[5])
return {id, buffered}
";

/// The delete script. KEYS: stream, last id. ARGV: notification channel, channel id. Returns
/// `{buffered, last id}` as they were, or nil for a channel never used.
const DELETE: &str = r"
local last = redis.call('GET', KEYS[2])
if not last then return false end
local buffered = redis.call('XLEN', KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], 'd\n' .. last .. '\n' .. #ARGV[2] .. '\n' .. ARGV[2])
return {buffered, last}
";

/// First wait before reconnecting the subscription; it doubles up to the backend's maximum.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// Messages from the subscription connection queued for the hub before it stops reading (Redis
/// then buffers them, and drops a subscriber that falls too far behind: it catches up).
const NOTICE_QUEUE: usize = 1024;

/// The Redis server of a [`Backend::Redis`](crate::Backend::Redis) hub, and how to use it.
///
/// ```
/// use std::time::Duration;
/// let backend = iomux_actors::RedisBackend::new("redis://127.0.0.1:6379")?
///     .key_prefix("chat:")
///     .timeout(Duration::from_secs(1))
///     .max_backoff(Duration::from_secs(2));
/// assert!(format!("{backend:?}").contains("127.0.0.1:6379"));
/// assert!(iomux_actors::RedisBackend::new("http://nope").is_err());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct RedisBackend {
    client: redis::Client,
    prefix: String,
    timeout: Duration,
    max_backoff: Duration,
    while_down: WhileDown,
    health_check: Duration,
}

/// What the subscribers of a Redis node get while Redis cannot be reached (publishes get `503`
/// either way: a message is never acknowledged unless Redis stored it).
///
/// ```
/// use iomux_actors::{RedisBackend, WhileDown};
/// let backend = RedisBackend::new("redis://127.0.0.1:6379")?.while_down(WhileDown::Refuse);
/// # drop(backend);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WhileDown {
    /// They keep waiting; what is published once Redis is back reaches them, in order (the
    /// default).
    #[default]
    Wait,
    /// Long-poll subscribers get `503` with `Retry-After: 1` when the node loses Redis, and so
    /// does every new subscriber until it is back; EventSource streams end. For clients that
    /// know other nodes: they move there and resume by cursor.
    Refuse,
}

impl RedisBackend {
    /// A Redis at `url` (`redis://[user:password@]host[:port][/db]`, `unix:///path`). Nothing
    /// is connected yet: each hub connects when it starts, and again whenever it must.
    ///
    /// # Errors
    /// `InvalidInput` for a URL that is not a Redis URL.
    pub fn new(url: &str) -> std::io::Result<RedisBackend> {
        let client = redis::Client::open(url).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("Redis URL {url:?}: {e}"),
            )
        })?;
        Ok(RedisBackend {
            client,
            prefix: "iomux:".into(),
            timeout: Duration::from_secs(2),
            max_backoff: Duration::from_secs(2),
            while_down: WhileDown::Wait,
            health_check: Duration::from_secs(5),
        })
    }

    /// After this long without a notification, the node sends `PING` on its subscription
    /// connection; no answer within the [`timeout`](RedisBackend::timeout) counts as Redis down
    /// (default 5 s): a connection can die without the operating system noticing for minutes.
    pub fn health_check(mut self, quiet: Duration) -> RedisBackend {
        self.health_check = quiet.max(Duration::from_millis(10));
        self
    }

    /// What subscribers get while Redis is down (default [`WhileDown::Wait`]).
    pub fn while_down(mut self, policy: WhileDown) -> RedisBackend {
        self.while_down = policy;
        self
    }

    /// The prefix of every key and of the notification channel (default `iomux:`), so that
    /// several applications can share one Redis.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> RedisBackend {
        self.prefix = prefix.into();
        self
    }

    /// Longest wait for a connection or a reply from Redis before the request it serves fails
    /// (default 2 s).
    pub fn timeout(mut self, timeout: Duration) -> RedisBackend {
        self.timeout = timeout;
        self
    }

    /// Longest wait between two attempts to reconnect the subscription (default 2 s; the wait
    /// starts at 50 ms and doubles).
    pub fn max_backoff(mut self, max_backoff: Duration) -> RedisBackend {
        self.max_backoff = max_backoff.max(FIRST_BACKOFF);
        self
    }
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field(
                "addr",
                &self.client.get_connection_info().addr().to_string(),
            )
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("max_backoff", &self.max_backoff)
            .field("while_down", &self.while_down)
            .field("health_check", &self.health_check)
            .finish()
    }
}

/// What a channel's replica waits for while it is filled from Redis.
#[derive(Default)]
pub(crate) struct Catchup {
    /// The replica has been read from Redis at least once; before, subscribers queue.
    seeded: bool,
    /// A read is under way.
    in_flight: bool,
    /// Messages notified meanwhile, merged by id with what the read returns.
    notices: Vec<(MessageId, NewMessage)>,
    /// Subscribers that came before the first read answered.
    queued: Vec<Subscriber>,
    /// A delete notified meanwhile: messages up to this id are gone.
    deleted_through: MessageId,
}

/// What a hub's Redis link has for it.
pub(crate) enum Event {
    /// The subscription is (again) in place: replicas catch up.
    Up,
    /// The subscription connection dropped; it is being reconnected.
    Down,
    /// A notification (a stored message or a delete).
    Notice(Vec<u8>),
    Published {
        ctx: SavedContext,
        format: Format,
        subscribers: usize,
        requested: Option<u64>,
        result: RedisResult<(String, usize)>,
    },
    Loaded {
        channel: String,
        result: RedisResult<Loaded>,
    },
    /// Channel information, or a delete (which answers the information it deleted).
    Channel {
        ctx: SavedContext,
        format: Format,
        subscribers: usize,
        requested: Option<u64>,
        delete: bool,
        /// `(buffered, last id)`; `None`: a channel never used.
        result: RedisResult<Option<(usize, String)>>,
    },
}

/// A channel as read from Redis: the buffered messages after a cursor and the last id.
pub(crate) struct Loaded {
    messages: Vec<(MessageId, NewMessage)>,
    last: MessageId,
}

/// What a hub's Redis commands share.
struct Shared {
    backend: RedisBackend,
    notify: String,
    publish: Script,
    delete: Script,
    /// The command connection (multiplexed), made when first needed and after it broke.
    conn: RefCell<Option<MultiplexedConnection>>,
    buffer_length: usize,
    buffer_age: u64,
    expiry: u64,
}

/// A running hub's link to Redis.
pub(crate) struct Link {
    shared: Rc<Shared>,
    /// Commands under way, all on this loop.
    in_flight: FuturesUnordered<LocalBoxFuture<'static, Event>>,
    /// From the subscription task.
    notices: Receiver<Event>,
    /// The subscription is in place.
    up: bool,
    /// The subscription was lost and is not back yet (unlike `!up`, not at startup).
    down: bool,
}

impl Link {
    pub(crate) fn start(
        backend: RedisBackend,
        executor: &LocalExecutor<'_>,
        config: &PubSubConfig,
    ) -> Link {
        let notify = format!("{}notify", backend.prefix);
        let age = config.buffer_age.as_secs().max(1);
        let shared = Rc::new(Shared {
            notify: notify.clone(),
            publish: Script::new(PUBLISH),
            delete: Script::new(DELETE),
            conn: RefCell::new(None),
            buffer_length: config.buffer_length,
            buffer_age: age,
            expiry: age.saturating_add(config.channel_idle_timeout.as_secs().max(1)),
            backend: backend.clone(),
        });
        let (tx, notices) = async_channel::bounded(NOTICE_QUEUE);
        executor.spawn(subscription(backend, notify, tx)).detach();
        Link {
            shared,
            in_flight: FuturesUnordered::new(),
            notices,
            up: false,
            down: false,
        }
    }

    pub(crate) async fn next(&mut self) -> Event {
        let notices = async {
            match self.notices.recv().await {
                Ok(event) => event,
                Err(_) => future::pending().await,
            }
        };
        let commands = async {
            match self.in_flight.next().await {
                Some(event) => event,
                None => future::pending().await,
            }
        };
        future::or(notices, commands).await
    }

    fn run(&mut self, command: impl std::future::Future<Output = Event> + 'static) {
        self.in_flight.push(Box::pin(command));
    }
}

/// Keep one subscription to the notification channel, reconnecting with a bounded backoff, and
/// pass what comes to the hub. Ends when the hub has gone.
async fn subscription(backend: RedisBackend, notify: String, tx: Sender<Event>) {
    let mut backoff = FIRST_BACKOFF;
    let mut failures = 0u32;
    let addr = backend.client.get_connection_info().addr().to_string();
    loop {
        let connect = async {
            let mut pubsub = backend.client.get_async_pubsub().await?;
            pubsub.subscribe(&notify).await?;
            Ok::<_, RedisError>(pubsub)
        };
        let timeout = async {
            Timer::after(backend.timeout).await;
            Err(RedisError::from(std::io::Error::from(
                std::io::ErrorKind::TimedOut,
            )))
        };
        match future::or(connect, timeout).await {
            Ok(pubsub) => {
                if failures > 0 {
                    log::info!("Redis at {addr} reached again after {failures} attempt(s)");
                } else {
                    log::info!("subscribed to {notify} on Redis at {addr}");
                }
                failures = 0;
                backoff = FIRST_BACKOFF;
                if tx.send(Event::Up).await.is_err() {
                    return;
                }
                let (mut sink, mut messages) = pubsub.split();
                loop {
                    // A notice, the end of the connection, or a quiet health-check period.
                    let next = future::or(async { Some(messages.next().await) }, async {
                        Timer::after(backend.health_check).await;
                        None
                    })
                    .await;
                    match next {
                        Some(Some(msg)) => {
                            let notice = Event::Notice(msg.get_payload_bytes().to_vec());
                            if tx.send(notice).await.is_err() {
                                return;
                            }
                        }
                        Some(None) => break,
                        // Quiet: is Redis still there? A connection can die without a FIN or
                        // RST (a host gone, a stopped process); only an answer tells.
                        None => {
                            let ping = async { sink.ping::<redis::Value>().await.is_ok() };
                            let timeout = async {
                                Timer::after(backend.timeout).await;
                                false
                            };
                            if !future::or(ping, timeout).await {
                                log::warn!("Redis at {addr} does not answer PING");
                                break;
                            }
                        }
                    }
                }
                log::warn!("lost the subscription connection to Redis at {addr}: reconnecting");
                if tx.send(Event::Down).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    log::warn!(
                        "cannot reach Redis at {addr}: {e}; retrying (backoff up to {:?})",
                        backend.max_backoff
                    );
                } else {
                    log::debug!("Redis at {addr}: attempt {failures}: {e}");
                }
            }
        }
        if tx.is_closed() {
            return;
        }
        Timer::after(backoff).await;
        backoff = (backoff * 2).min(backend.max_backoff);
    }
}

impl Shared {
    fn stream_key(&self, channel: &str) -> String {
        format!("{}m:{channel}", self.backend.prefix)
    }

    fn last_key(&self, channel: &str) -> String {
        format!("{}l:{channel}", self.backend.prefix)
    }

    /// The command connection, connecting if there is none.
    async fn conn(&self) -> RedisResult<MultiplexedConnection> {
        if let Some(conn) = self.conn.borrow().clone() {
            return Ok(conn);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.backend.timeout))
            .set_response_timeout(Some(self.backend.timeout));
        let conn = self
            .backend
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        *self.conn.borrow_mut() = Some(conn.clone());
        Ok(conn)
    }

    /// Drop the command connection after an error that may have broken it.
    fn check(&self, e: &RedisError) {
        if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
            self.conn.borrow_mut().take();
        }
    }

    /// Run a command that may be repeated (a read): once more on a new connection if the old
    /// one had broken (Redis restarted).
    async fn read<T>(
        &self,
        command: impl Fn(MultiplexedConnection) -> LocalBoxFuture<'static, RedisResult<T>>,
    ) -> RedisResult<T> {
        let had_conn = self.conn.borrow().is_some();
        let result = match self.conn().await {
            Ok(conn) => command(conn).await,
            Err(e) => Err(e),
        };
        match result {
            Err(e) if had_conn && (e.is_io_error() || e.is_connection_dropped()) => {
                self.check(&e);
                command(self.conn().await?).await
            }
            result => {
                if let Err(e) = &result {
                    self.check(e);
                }
                result
            }
        }
    }

    async fn publish(
        &self,
        channel: &str,
        message: &NewMessage,
        seen: MessageId,
    ) -> RedisResult<(String, usize)> {
        let text = |v: &Option<HeaderValue>| v.as_ref().map_or(&b""[..], |v| v.as_bytes()).to_vec();
        let mut conn = self.conn().await?;
        let result = self
            .publish
            .key(self.stream_key(channel))
            .key(self.last_key(channel))
            .arg(&self.notify)
            .arg(channel)
            .arg(text(&message.content_type))
            .arg(text(&message.event))
            .arg(message.body.as_ref())
            .arg(self.buffer_length)
            .arg(self.buffer_age)
            .arg(self.expiry)
            .arg(format!("{}-{}", seen.time, seen.tag))
            .invoke_async(&mut conn)
            .await;
        if let Err(e) = &result {
            self.check(e);
        }
        result
    }

    async fn delete(&self, channel: &str) -> RedisResult<Option<(usize, String)>> {
        let mut conn = self.conn().await?;
        let result = self
            .delete
            .key(self.stream_key(channel))
            .key(self.last_key(channel))
            .arg(&self.notify)
            .arg(channel)
            .invoke_async(&mut conn)
            .await;
        if let Err(e) = &result {
            self.check(e);
        }
        result
    }

    /// The buffered messages after `after` (all, from `0:0`) and the last id, read at once.
    async fn load(&self, channel: &str, after: MessageId) -> RedisResult<Loaded> {
        let start = if after == MessageId::ZERO {
            "-".to_string()
        } else {
            format!("({}-{}", after.time, after.tag)
        };
        let (stream, last) = (self.stream_key(channel), self.last_key(channel));
        type Entries = Vec<(String, HashMap<String, Vec<u8>>)>;
        let (entries, last): (Entries, Option<String>) = self
            .read(|mut conn| {
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .cmd("XRANGE")
                    .arg(&stream)
                    .arg(&start)
                    .arg("+")
                    .cmd("GET")
                    .arg(&last);
                Box::pin(async move { pipe.query_async(&mut conn).await })
            })
            .await?;
        let mut messages = Vec::with_capacity(entries.len());
        for (id, mut fields) in entries {
            let Some(id) = parse_id(id.as_bytes()) else {
                continue;
            };
            let mut header = |name: &str| {
                fields
                    .remove(name)
                    .filter(|v| !v.is_empty())
                    .and_then(|v| HeaderValue::from_bytes(&v).ok())
            };
            let message = NewMessage {
                content_type: header("c"),
                event: header("e"),
                body: Bytes::from(fields.remove("b").unwrap_or_default()),
            };
            messages.push((id, message));
        }
        let last = last
            .and_then(|l| parse_id(l.as_bytes()))
            .unwrap_or_default();
        Ok(Loaded { messages, last })
    }

    /// The number of buffered messages and the last id (`None`: never used).
    /// `(buffered, last id)`, or `None` for a channel never used (as `delete` answers).
    async fn info(&self, channel: &str) -> RedisResult<Option<(usize, String)>> {
        let (stream, last) = (self.stream_key(channel), self.last_key(channel));
        let (buffered, last): (usize, Option<String>) = self
            .read(|mut conn| {
                let mut pipe = redis::pipe();
                pipe.cmd("XLEN").arg(&stream).cmd("GET").arg(&last);
                Box::pin(async move { pipe.query_async(&mut conn).await })
            })
            .await?;
        Ok(last.map(|last| (buffered, last)))
    }
}

/// `TIME-TAG` (a stream entry id) as a message id.
fn parse_id(text: &[u8]) -> Option<MessageId> {
    let text = std::str::from_utf8(text).ok()?;
    let (time, tag) = text.split_once('-')?;
    Some(MessageId {
        time: time.parse().ok()?,
        tag: tag.parse().ok()?,
    })
}

/// A notification, as the scripts write it.
enum Notice {
    /// `m\nID\nCONTENT-TYPE\nEVENT\nLEN\nCHANNEL` then the body.
    Message {
        channel: String,
        id: MessageId,
        message: NewMessage,
    },
    /// `d\nLAST-ID\nLEN\nCHANNEL`.
    Delete { channel: String, through: MessageId },
}

fn parse_notice(payload: &[u8]) -> Option<Notice> {
    let mut rest = payload;
    let mut line = || {
        let end = rest.iter().position(|&b| b == b'\n')?;
        let (line, after) = rest.split_at(end);
        rest = &after[1..];
        Some(line)
    };
    let kind = line()?;
    match kind {
        b"m" => {
            let id = parse_id(line()?)?;
            let header = |v: &[u8]| {
                (!v.is_empty())
                    .then(|| HeaderValue::from_bytes(v).ok())
                    .flatten()
            };
            let content_type = header(line()?);
            let event = header(line()?);
            let len: usize = std::str::from_utf8(line()?).ok()?.parse().ok()?;
            let channel = String::from_utf8(rest.get(..len)?.to_vec()).ok()?;
            let body = Bytes::copy_from_slice(&rest[len..]);
            Some(Notice::Message {
                channel,
                id,
                message: NewMessage {
                    body,
                    content_type,
                    event,
                },
            })
        }
        b"d" => {
            let through = parse_id(line()?)?;
            let len: usize = std::str::from_utf8(line()?).ok()?.parse().ok()?;
            let channel = String::from_utf8(rest.get(..len)?.to_vec()).ok()?;
            Some(Notice::Delete { channel, through })
        }
        _ => None,
    }
}

/// When a message with this id was stored, on this machine's clock (for the buffer age).
fn stored_at(id: MessageId) -> Instant {
    let now = Instant::now();
    let age = Duration::from_secs(unix_now().saturating_sub(id.time));
    now.checked_sub(age).unwrap_or(now)
}

/// The `503` of a request Redis could not serve.
fn unavailable() -> Reply {
    Reply::text("Redis unavailable\n")
        .with_status(StatusCode::SERVICE_UNAVAILABLE)
        .header(RETRY_AFTER, HeaderValue::from_static("1"))
}

impl Hub {
    /// A message to the hub of a Redis node: Redis orders and stores, the hub delivers.
    pub(crate) fn handle_redis(&mut self, msg: HubMsg) {
        match msg {
            HubMsg::Subscribe {
                channel,
                cursor,
                mode,
                ctx,
            } => self.redis_subscribe(&channel, Subscriber { cursor, mode, ctx }),
            HubMsg::Publish {
                channel,
                message,
                format,
                ctx,
            } => self.redis_publish(channel, message, format, ctx),
            HubMsg::Info {
                channel,
                format,
                ctx,
            } => self.redis_channel(channel, format, ctx, false),
            HubMsg::Delete {
                channel,
                format,
                ctx,
            } => self.redis_channel(channel, format, ctx, true),
            // A Redis node reports its own figures.
            HubMsg::Status { format, ctx } => self.status(format, ctx),
        }
    }

    fn redis(&mut self) -> &mut Link {
        match &mut self.link {
            crate::backend::Link::Redis(link) => link,
            _ => unreachable!("a Redis message on a hub without Redis"),
        }
    }

    /// This node's subscribers of a channel and when one last asked (for the replies).
    fn local_share(&self, channel: &str) -> (usize, Option<u64>) {
        self.info_here(channel)
            .map_or((0, None), |info| (info.subscribers, info.requested))
    }

    /// A subscriber: served from the replica, or queued while the replica is first read.
    pub(crate) fn redis_subscribe(&mut self, name: &str, sub: Subscriber) {
        if self.redis().down && self.redis().shared.backend.while_down == WhileDown::Refuse {
            refuse_unavailable(&self.config, &sub.ctx, HeaderMap::new());
            return;
        }
        if let Some(channel) = self.channels.get(name).cloned() {
            let mut ch = channel.borrow_mut();
            if let Some(catchup) = ch.catchup.as_mut().filter(|c| !c.seeded) {
                catchup.queued.push(sub);
                return;
            }
            drop(ch);
            self.subscribe(name, sub.cursor, sub.mode, sub.ctx);
            return;
        }
        if sub.ctx.is_closed() {
            return;
        }
        let channel = self.channel(name);
        channel.borrow_mut().catchup = Some(Box::new(Catchup {
            queued: vec![sub],
            ..Catchup::default()
        }));
        self.load(name);
    }

    /// Read a replica's channel from Redis, after its last id.
    fn load(&mut self, name: &str) {
        let Some(channel) = self.channels.get(name) else {
            return;
        };
        let mut ch = channel.borrow_mut();
        let after = ch.last_id;
        let Some(catchup) = ch.catchup.as_mut() else {
            return;
        };
        if catchup.in_flight {
            return;
        }
        catchup.in_flight = true;
        drop(ch);
        let shared = self.redis().shared.clone();
        let channel = name.to_string();
        self.redis().run(async move {
            let result = shared.load(&channel, after).await;
            Event::Loaded { channel, result }
        });
    }

    pub(crate) fn redis_publish(
        &mut self,
        channel: String,
        message: NewMessage,
        format: Format,
        ctx: SavedContext,
    ) {
        // As nchan, the reply counts the subscribers the message finds (here, on this node).
        let (subscribers, requested) = self.local_share(&channel);
        let seen = self
            .channels
            .get(channel.as_str())
            .map_or(MessageId::ZERO, |ch| ch.borrow().last_id);
        let shared = self.redis().shared.clone();
        self.redis().run(async move {
            let result = shared.publish(&channel, &message, seen).await;
            Event::Published {
                ctx,
                format,
                subscribers,
                requested,
                result,
            }
        });
    }

    /// Channel information, or (`delete`) delete the channel: both answer its information.
    fn redis_channel(&mut self, channel: String, format: Format, ctx: SavedContext, delete: bool) {
        let (subscribers, requested) = self.local_share(&channel);
        let shared = self.redis().shared.clone();
        self.redis().run(async move {
            let result = if delete {
                shared.delete(&channel).await
            } else {
                shared.info(&channel).await
            };
            Event::Channel {
                ctx,
                format,
                subscribers,
                requested,
                delete,
                result,
            }
        });
    }

    /// Retry the reads of replicas still behind (after a failed read), while Redis is there.
    pub(crate) fn redis_tick(&mut self) {
        if !self.redis().up {
            return;
        }
        let due: Vec<String> = self
            .channels
            .iter()
            .filter(|(_, ch)| ch.borrow().catchup.as_ref().is_some_and(|c| !c.in_flight))
            .map(|(name, _)| name.to_string())
            .collect();
        for name in due {
            self.load(&name);
        }
    }

    pub(crate) fn on_redis(&mut self, event: Event) {
        match event {
            Event::Up => {
                self.redis().up = true;
                self.redis().down = false;
                // Whatever was published while the subscription was away is read from the
                // buffers; notices from now on wait to be merged with it.
                let names: Vec<String> = self.channels.keys().map(|n| n.to_string()).collect();
                for name in names {
                    if let Some(channel) = self.channels.get(name.as_str()) {
                        let mut ch = channel.borrow_mut();
                        if ch.catchup.is_none() {
                            ch.catchup = Some(Box::new(Catchup {
                                seeded: true,
                                ..Catchup::default()
                            }));
                        }
                    }
                    self.load(&name);
                }
            }
            Event::Down => {
                self.redis().up = false;
                self.redis().down = true;
                // The command connection went with it, most likely.
                self.redis().shared.conn.borrow_mut().take();
                if self.redis().shared.backend.while_down == WhileDown::Refuse {
                    log::warn!("Redis is down: subscribers are refused until it is back");
                    self.refuse_all_subscribers();
                }
            }
            Event::Notice(payload) => match parse_notice(&payload) {
                Some(Notice::Message {
                    channel,
                    id,
                    message,
                }) => self.on_stored(&channel, id, message),
                Some(Notice::Delete { channel, through }) => {
                    if let Some(ch) = self.channels.get(channel.as_str()) {
                        if let Some(catchup) = ch.borrow_mut().catchup.as_mut() {
                            catchup.deleted_through = catchup.deleted_through.max(through);
                            catchup.notices.retain(|(id, _)| *id > through);
                        }
                        self.delete_here(&channel);
                    }
                }
                None => log::warn!("a notification from Redis that is not iomux's: ignored"),
            },
            Event::Published {
                ctx,
                format,
                subscribers,
                requested,
                result,
            } => {
                let reply = match result {
                    Ok((id, messages)) => match parse_id(id.as_bytes()) {
                        Some(id) => {
                            self.published += 1;
                            let info = ChannelInfo {
                                messages,
                                requested,
                                subscribers,
                                last_message_id: id,
                            };
                            publish_reply(info, format)
                        }
                        None => {
                            log::error!("the publish script gave id {id:?}");
                            Reply::new(StatusCode::INTERNAL_SERVER_ERROR)
                        }
                    },
                    Err(e) => {
                        log::warn!("publish not stored: Redis: {e}");
                        unavailable()
                    }
                };
                self.answer(&ctx, reply);
            }
            Event::Loaded { channel, result } => self.on_loaded(&channel, result),
            Event::Channel {
                ctx,
                format,
                subscribers,
                requested,
                delete,
                result,
            } => {
                let reply = match result {
                    Ok(None) => Reply::new(StatusCode::NOT_FOUND),
                    Ok(Some((messages, last))) => ChannelInfo {
                        messages,
                        requested,
                        subscribers,
                        last_message_id: parse_id(last.as_bytes()).unwrap_or_default(),
                    }
                    .reply(StatusCode::OK, format),
                    Err(e) => {
                        let what = if delete {
                            "delete"
                        } else {
                            "channel information"
                        };
                        log::warn!("{what}: Redis: {e}");
                        unavailable()
                    }
                };
                self.answer(&ctx, reply);
            }
        }
    }

    /// A message stored in Redis: delivered if this node has the channel, held back while its
    /// replica catches up, ignored if it is a duplicate.
    fn on_stored(&mut self, name: &str, id: MessageId, message: NewMessage) {
        let Some(channel) = self.channels.get(name).cloned() else {
            return; // no subscriber here asked for it: read from Redis when one does
        };
        let mut ch = channel.borrow_mut();
        if let Some(catchup) = ch.catchup.as_mut() {
            catchup.notices.push((id, message));
            return;
        }
        if id <= ch.last_id {
            return;
        }
        drop(ch);
        self.deliver(&channel, name, id, message, stored_at(id));
    }

    /// A replica's read from Redis answered: merge it with the notices held meanwhile and deliver
    /// what is new in id order, then serve the subscribers that waited for it.
    fn on_loaded(&mut self, name: &str, result: RedisResult<Loaded>) {
        let Some(channel) = self.channels.get(name).cloned() else {
            return;
        };
        let Some(mut catchup) = channel.borrow_mut().catchup.take() else {
            return;
        };
        catchup.in_flight = false;
        let loaded = match result {
            Ok(loaded) => loaded,
            Err(e) => {
                log::warn!("cannot read channel {name} from Redis: {e}");
                if catchup.seeded {
                    // Still behind: read again on the next tick or reconnection.
                    channel.borrow_mut().catchup = Some(catchup);
                } else {
                    for sub in catchup.queued {
                        refuse_unavailable(&self.config, &sub.ctx, HeaderMap::new());
                    }
                    self.channels.remove(name);
                }
                return;
            }
        };
        let floor = channel.borrow().last_id;
        if loaded.last < floor {
            // Its buffer is gone; ids go on after the newest this node has seen (publishes
            // through this node tell Redis so).
            log::warn!(
                "channel {name}: Redis's last id {} is older than {floor} seen here: was Redis \
                 restarted without persistence? The buffered messages are lost",
                loaded.last
            );
            Hub::clear_buffer(&channel);
        }
        let floor = floor.max(catchup.deleted_through);
        let mut messages: Vec<(MessageId, NewMessage)> = loaded
            .messages
            .into_iter()
            .chain(catchup.notices)
            .filter(|(id, _)| *id > floor)
            .collect();
        messages.sort_by_key(|(id, _)| *id);
        messages.dedup_by_key(|(id, _)| *id);
        for (id, message) in messages {
            self.deliver(&channel, name, id, message, stored_at(id));
        }
        {
            let mut ch = channel.borrow_mut();
            ch.last_id = ch.last_id.max(loaded.last);
        }
        for sub in catchup.queued {
            self.subscribe(name, sub.cursor, sub.mode, sub.ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_parse_as_the_scripts_write_them() {
        let Some(Notice::Message {
            channel,
            id,
            message,
        }) = parse_notice(b"m\n17-2\ntext/plain\n\n5\na\nb:cbody\nwith lines")
        else {
            panic!("not a message");
        };
        assert_eq!(channel, "a\nb:c");
        assert_eq!(id, MessageId { time: 17, tag: 2 });
        assert_eq!(message.body, "body\nwith lines");
        assert_eq!(message.content_type.unwrap(), "text/plain");
        assert!(message.event.is_none());
        let Some(Notice::Delete { channel, through }) = parse_notice(b"d\n9-0\n3\nabc") else {
            panic!("not a delete");
        };
        assert_eq!(
            (channel.as_str(), through),
            ("abc", MessageId { time: 9, tag: 0 })
        );
        for bad in [
            &b""[..],
            b"x\n",
            b"m\n1-2\n",
            b"d\n1-0\n9\nab",
            b"m\nnope\n\n\n0\n",
        ] {
            assert!(
                parse_notice(bad).is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn stream_ids_are_message_ids() {
        assert_eq!(
            parse_id(b"1795791979-3"),
            Some(MessageId {
                time: 1795791979,
                tag: 3
            })
        );
        assert_eq!(parse_id(b"1795791979:3"), None);
    }
}
