//! The seam between a hub's local delivery and where its channels are ordered and stored.
//!
//! A hub always delivers on its own loop (its replica of each channel's buffer, its long-poll
//! waiters and EventSource streams). The [`Backend`] decides who gives a message its id and
//! keeps it: the hub itself, the owner worker of the channel in a
//! [`HubGroup`](crate::HubGroup), or Redis. The backend hands every stored message back to each
//! hub in id order, and the hub delivers it.

use async_executor::LocalExecutor;

use crate::config::PubSubConfig;
use crate::group::{self, GroupMember};
#[cfg(feature = "redis")]
use crate::redis_backend::{self, RedisBackend};

/// Where a hub's messages are ordered and stored.
///
/// ```
/// use iomux_actors::{Backend, HubGroup};
/// // One hub, one loop (the default): no setup.
/// let _ = Backend::default();
/// // The hubs of two workers of one process (one `member` per worker thread).
/// let group = HubGroup::new(2);
/// let _ = Backend::Group(group.member(1));
/// // Several processes sharing channels through one Redis (feature `redis`).
/// #[cfg(feature = "redis")]
/// let _ = Backend::Redis(iomux_actors::RedisBackend::new("redis://127.0.0.1:6379")?);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Default)]
pub enum Backend {
    /// This hub alone: it gives ids, keeps the buffers and delivers, on its own loop.
    #[default]
    InProcess,
    /// One of the hubs of a [`HubGroup`](crate::HubGroup): each channel is ordered by one
    /// worker, chosen by the hash of its id, which sends every stored message to all the
    /// workers' hubs.
    Group(GroupMember),
    /// A Redis server shared with other processes: messages and ids live in Redis, and a Redis
    /// notification makes every node deliver to its subscribers. With the `redis` feature.
    #[cfg(feature = "redis")]
    Redis(RedisBackend),
}

/// A running hub's link to its backend.
pub(crate) enum Link {
    InProcess,
    Group(group::Link),
    #[cfg(feature = "redis")]
    Redis(redis_backend::Link),
}

/// Something the backend has for the hub.
pub(crate) enum Event {
    Group(group::PeerMsg),
    #[cfg(feature = "redis")]
    Redis(redis_backend::Event),
}

impl Link {
    // Only the Redis backend needs the executor and the configuration.
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    pub(crate) fn start(
        backend: Backend,
        executor: &LocalExecutor<'_>,
        config: &PubSubConfig,
    ) -> Link {
        match backend {
            Backend::InProcess => Link::InProcess,
            Backend::Group(member) => Link::Group(group::Link::new(member)),
            #[cfg(feature = "redis")]
            Backend::Redis(backend) => {
                Link::Redis(redis_backend::Link::start(backend, executor, config))
            }
        }
    }

    /// The next event (never, for the in-process backend). Cancel-safe: the hub drops it when
    /// another input comes first.
    pub(crate) async fn next_event(&mut self) -> Event {
        match self {
            Link::InProcess => futures_lite::future::pending().await,
            Link::Group(link) => Event::Group(link.next().await),
            #[cfg(feature = "redis")]
            Link::Redis(link) => Event::Redis(link.next().await),
        }
    }
}
