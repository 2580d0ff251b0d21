//! A hub across the workers of one process: one hub per worker loop, each channel ordered by one
//! of them.
//!
//! The owner of a channel is chosen by the hash of its id. A publish on any worker goes to the
//! owner, which gives the message the channel's next id (one order per channel), delivers it on
//! its own loop and sends it to every other worker's hub, in order, over a `Send` queue; each
//! delivers it to its own subscribers and keeps it in its replica of the buffer, so a subscriber
//! on any worker resumes by cursor as with one hub. The hub that took the request answers it
//! once every hub has its share of the answer (the subscribers each one found, for `201`/`202`);
//! channel information, delete and `/status` gather every hub's share the same way.

use std::collections::HashMap;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

use async_channel::{Receiver, Sender};
use iomux::http::StatusCode;
use iomux::{Reply, SavedContext};

use crate::hub::{publish_reply, unix_now, Hub, NewMessage};
use crate::info::{ChannelInfo, Format, Status};
use crate::msgid::MessageId;

/// The hubs of the workers of one process. Make it before the workers start (it is `Send` and
/// cheap to clone) and give each worker's hub its [`member`](HubGroup::member).
///
/// ```
/// use iomux_actors::{Backend, HubGroup, PubSub, PubSubConfig};
/// let group = HubGroup::new(2);
/// let workers: Vec<_> = (0..2)
///     .map(|index| {
///         let member = group.member(index);
///         std::thread::spawn(move || {
///             let ex = async_executor::LocalExecutor::new();
///             let backend = Backend::Group(member);
///             let pubsub = PubSub::with_backend(&ex, PubSubConfig::default(), backend);
///             // ... bind this worker's acceptor with pubsub.handler() and run it on `ex`
///             # drop(pubsub);
///         })
///     })
///     .collect();
/// for worker in workers {
///     worker.join().unwrap();
/// }
/// ```
#[derive(Clone)]
pub struct HubGroup {
    inboxes: Arc<[(Sender<PeerMsg>, Receiver<PeerMsg>)]>,
}

impl HubGroup {
    /// A group of `workers` hubs (at least 1).
    ///
    /// # Panics
    /// If `workers` is 0.
    pub fn new(workers: usize) -> HubGroup {
        assert!(workers > 0, "a hub group needs at least one worker");
        HubGroup {
            inboxes: (0..workers).map(|_| async_channel::unbounded()).collect(),
        }
    }

    /// The number of hubs.
    pub fn workers(&self) -> usize {
        self.inboxes.len()
    }

    /// The membership of hub `index` (`0..workers`), for [`Backend::Group`](crate::Backend::Group).
    ///
    /// # Panics
    /// If `index` is out of range.
    ///
    /// ```
    /// let group = iomux_actors::HubGroup::new(3);
    /// assert_eq!(group.member(2).index(), 2);
    /// ```
    pub fn member(&self, index: usize) -> GroupMember {
        assert!(
            index < self.inboxes.len(),
            "no worker {index} in a group of {}",
            self.inboxes.len()
        );
        GroupMember {
            index,
            peers: self.inboxes.iter().map(|(tx, _)| tx.clone()).collect(),
            inbox: self.inboxes[index].1.clone(),
        }
    }
}

impl fmt::Debug for HubGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubGroup")
            .field("workers", &self.workers())
            .finish()
    }
}

/// One worker's place in a [`HubGroup`] (`Send`: made anywhere, used on the worker's thread).
pub struct GroupMember {
    index: usize,
    peers: Vec<Sender<PeerMsg>>,
    inbox: Receiver<PeerMsg>,
}

impl GroupMember {
    /// This worker's index in the group.
    pub fn index(&self) -> usize {
        self.index
    }
}

impl fmt::Debug for GroupMember {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupMember")
            .field("index", &self.index)
            .field("workers", &self.peers.len())
            .finish()
    }
}

/// What the hubs of a group tell each other (all `Send`).
pub(crate) enum PeerMsg {
    /// To the owner: order, store and spread this message.
    Publish {
        channel: String,
        message: NewMessage,
        origin: Origin,
    },
    /// From the owner to every other hub: a stored message, in the channel's order.
    Stored {
        channel: String,
        id: MessageId,
        message: NewMessage,
        origin: Origin,
    },
    /// To the owner: delete the channel's messages on every hub.
    Delete { channel: String, origin: Origin },
    /// From the owner to every other hub.
    Deleted { channel: String, origin: Origin },
    /// To every hub: its information on the channel.
    Info { channel: String, origin: Origin },
    /// To every hub: its figures.
    Status { origin: Origin },
    /// To the origin: one hub's share of the answer to its request.
    Part { request: u64, part: Part },
}

/// The hub that took a request, and the request's number there.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin {
    worker: usize,
    request: u64,
}

/// One hub's share of an answer.
pub(crate) enum Part {
    Channel(Option<ChannelInfo>),
    Status(Status),
    /// The hub has stopped.
    Gone,
}

/// A request waiting for the shares of every hub.
struct Gather {
    ctx: SavedContext,
    format: Format,
    kind: Kind,
    remaining: usize,
    channel: Option<ChannelInfo>,
    status: Status,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Publish,
    Info,
    Delete,
    Status,
}

/// A running hub's place in its group.
pub(crate) struct Link {
    index: usize,
    peers: Vec<Sender<PeerMsg>>,
    inbox: Receiver<PeerMsg>,
    pending: HashMap<u64, Gather>,
    next_request: u64,
}

impl Link {
    pub(crate) fn new(member: GroupMember) -> Link {
        Link {
            index: member.index,
            peers: member.peers,
            inbox: member.inbox,
            pending: HashMap::new(),
            next_request: 0,
        }
    }

    pub(crate) async fn next(&mut self) -> PeerMsg {
        match self.inbox.recv().await {
            Ok(msg) => msg,
            // Never closed while this hub holds a sender to itself.
            Err(_) => futures_lite::future::pending().await,
        }
    }
}

/// The worker that orders `channel` among `workers`.
fn owner_of(channel: &str, workers: usize) -> usize {
    // `DefaultHasher::new()` has fixed keys: every worker of the process finds the same owner.
    let mut hasher = DefaultHasher::new();
    channel.hash(&mut hasher);
    (hasher.finish() % workers as u64) as usize
}

/// Two hubs' information on one channel: subscribers add up; buffers are replicas.
fn combine(a: Option<ChannelInfo>, b: Option<ChannelInfo>) -> Option<ChannelInfo> {
    match (a, b) {
        (Some(a), Some(b)) => Some(ChannelInfo {
            messages: a.messages.max(b.messages),
            requested: match (a.requested, b.requested) {
                (Some(x), Some(y)) => Some(x.min(y)),
                (x, y) => x.or(y),
            },
            subscribers: a.subscribers + b.subscribers,
            last_message_id: a.last_message_id.max(b.last_message_id),
        }),
        (x, y) => x.or(y),
    }
}

/// Two hubs' figures: connections, subscribers and counters add up; channels and stored
/// messages are replicas; memory is the process's.
fn add_status(a: &mut Status, b: Status) {
    a.connections += b.connections;
    a.waiting_requests += b.waiting_requests;
    a.long_poll_subscribers += b.long_poll_subscribers;
    a.eventsource_subscribers += b.eventsource_subscribers;
    a.channels = a.channels.max(b.channels);
    a.stored_messages = a.stored_messages.max(b.stored_messages);
    a.published_messages += b.published_messages;
    a.delivered_messages += b.delivered_messages;
    a.resident_memory = a.resident_memory.max(b.resident_memory);
}

impl Hub {
    fn group(&mut self) -> &mut Link {
        match &mut self.link {
            crate::backend::Link::Group(link) => link,
            _ => unreachable!("a group message on a hub outside a group"),
        }
    }

    /// Register a request that waits for every hub's share.
    fn gather(&mut self, ctx: SavedContext, format: Format, kind: Kind) -> Origin {
        let link = self.group();
        link.next_request += 1;
        let request = link.next_request;
        let remaining = link.peers.len();
        link.pending.insert(
            request,
            Gather {
                ctx,
                format,
                kind,
                remaining,
                channel: None,
                status: Status::default(),
            },
        );
        Origin {
            worker: link.index,
            request,
        }
    }

    pub(crate) fn group_publish(
        &mut self,
        channel: String,
        message: NewMessage,
        format: Format,
        ctx: SavedContext,
    ) {
        let origin = self.gather(ctx, format, Kind::Publish);
        let owner = owner_of(&channel, self.group().peers.len());
        self.send_to(
            owner,
            origin,
            PeerMsg::Publish {
                channel,
                message,
                origin,
            },
        );
    }

    pub(crate) fn group_delete(&mut self, channel: String, format: Format, ctx: SavedContext) {
        let origin = self.gather(ctx, format, Kind::Delete);
        let owner = owner_of(&channel, self.group().peers.len());
        self.send_to(owner, origin, PeerMsg::Delete { channel, origin });
    }

    pub(crate) fn group_info(&mut self, channel: String, format: Format, ctx: SavedContext) {
        let origin = self.gather(ctx, format, Kind::Info);
        self.broadcast(origin, || PeerMsg::Info {
            channel: channel.clone(),
            origin,
        });
        let info = self.info_here(&channel);
        self.part(origin, Part::Channel(info));
    }

    pub(crate) fn group_status(&mut self, format: Format, ctx: SavedContext) {
        if ctx.request().is_some() {
            self.acceptor = Some(ctx.restore(iomux::context::acceptor));
        }
        let origin = self.gather(ctx, format, Kind::Status);
        self.broadcast(origin, || PeerMsg::Status { origin });
        let status = self.status_here();
        self.part(origin, Part::Status(status));
    }

    /// Send `msg` to hub `worker` (or handle it here); a hub that has stopped counts as one
    /// whose share is empty.
    fn send_to(&mut self, worker: usize, origin: Origin, msg: PeerMsg) {
        if worker == self.group().index {
            self.on_peer(msg);
        } else if self.group().peers[worker].try_send(msg).is_err() {
            // The owner has stopped: the request cannot be ordered.
            if let Some(gather) = self.group().pending.remove(&origin.request) {
                let reply = Reply::new(StatusCode::SERVICE_UNAVAILABLE);
                self.answer(&gather.ctx, reply);
            }
        }
    }

    /// Send `make()` to every other hub, in order after what this hub sent them before.
    fn broadcast(&mut self, origin: Origin, make: impl Fn() -> PeerMsg) {
        let index = self.group().index;
        let mut gone = 0;
        for (worker, peer) in self.group().peers.iter().enumerate() {
            if worker != index && peer.try_send(make()).is_err() {
                gone += 1;
            }
        }
        for _ in 0..gone {
            self.part(origin, Part::Gone);
        }
    }

    /// Give this hub's share of the answer to the request's origin.
    fn part(&mut self, origin: Origin, part: Part) {
        if origin.worker == self.group().index {
            self.on_part(origin.request, part);
        } else {
            let msg = PeerMsg::Part {
                request: origin.request,
                part,
            };
            // An origin that has stopped no longer waits for it.
            let _ = self.group().peers[origin.worker].try_send(msg);
        }
    }

    fn on_part(&mut self, request: u64, part: Part) {
        let link = self.group();
        let Some(gather) = link.pending.get_mut(&request) else {
            return;
        };
        match part {
            Part::Channel(info) => gather.channel = combine(gather.channel, info),
            Part::Status(status) => add_status(&mut gather.status, status),
            Part::Gone => {}
        }
        gather.remaining -= 1;
        if gather.remaining == 0 {
            if let Some(gather) = link.pending.remove(&request) {
                self.finish(gather);
            }
        }
    }

    /// Every hub has given its share: answer.
    fn finish(&mut self, gather: Gather) {
        let Gather {
            ctx,
            format,
            kind,
            channel,
            status,
            ..
        } = gather;
        let reply = match (kind, channel) {
            (Kind::Status, _) => {
                let _ = ctx.send_reply(status.reply(format));
                return;
            }
            (Kind::Publish, Some(info)) => publish_reply(info, format),
            (Kind::Publish, None) => Reply::new(StatusCode::SERVICE_UNAVAILABLE),
            (Kind::Info | Kind::Delete, Some(info)) => info.reply(StatusCode::OK, format),
            (Kind::Info | Kind::Delete, None) => Reply::new(StatusCode::NOT_FOUND),
        };
        self.answer(&ctx, reply);
    }

    pub(crate) fn on_peer(&mut self, msg: PeerMsg) {
        match msg {
            PeerMsg::Publish {
                channel,
                message,
                origin,
            } => {
                // This hub owns the channel: the next id is its own.
                let ch = self.channel(&channel);
                let id = MessageId::next(ch.borrow().last_id, unix_now());
                self.published += 1;
                self.broadcast(origin, || PeerMsg::Stored {
                    channel: channel.clone(),
                    id,
                    message: message.clone(),
                    origin,
                });
                let info = self.deliver(&ch, &channel, id, message, Instant::now());
                self.part(origin, Part::Channel(Some(info)));
            }
            PeerMsg::Stored {
                channel,
                id,
                message,
                origin,
            } => {
                let ch = self.channel(&channel);
                let info = self.deliver(&ch, &channel, id, message, Instant::now());
                self.part(origin, Part::Channel(Some(info)));
            }
            PeerMsg::Delete { channel, origin } => {
                self.broadcast(origin, || PeerMsg::Deleted {
                    channel: channel.clone(),
                    origin,
                });
                let info = self.delete_here(&channel);
                self.part(origin, Part::Channel(info));
            }
            PeerMsg::Deleted { channel, origin } => {
                let info = self.delete_here(&channel);
                self.part(origin, Part::Channel(info));
            }
            PeerMsg::Info { channel, origin } => {
                let info = self.info_here(&channel);
                self.part(origin, Part::Channel(info));
            }
            PeerMsg::Status { origin } => {
                let status = self.status_here();
                self.part(origin, Part::Status(status));
            }
            PeerMsg::Part { request, part } => self.on_part(request, part),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_worker_finds_the_same_owner_and_channels_spread() {
        let owners: Vec<usize> = (0..100).map(|i| owner_of(&format!("ch{i}"), 4)).collect();
        let again: Vec<usize> = (0..100).map(|i| owner_of(&format!("ch{i}"), 4)).collect();
        assert_eq!(owners, again);
        for w in 0..4 {
            assert!(
                owners.iter().filter(|&&o| o == w).count() > 10,
                "{owners:?}"
            );
        }
    }

    #[test]
    fn shares_combine() {
        let a = ChannelInfo {
            messages: 3,
            requested: Some(5),
            subscribers: 2,
            last_message_id: MessageId { time: 9, tag: 1 },
        };
        let b = ChannelInfo {
            messages: 3,
            requested: None,
            subscribers: 1,
            last_message_id: MessageId { time: 9, tag: 0 },
        };
        let c = combine(Some(a), Some(b)).unwrap();
        assert_eq!((c.messages, c.requested, c.subscribers), (3, Some(5), 3));
        assert_eq!(c.last_message_id, a.last_message_id);
        assert_eq!(combine(None, None), None);
    }
}
