//! Reusable application actors for [`iomux`], and the nchan-compatible pub/sub server built
//! from them.
//!
//! An iomux application actor is a task on the server's `LocalExecutor` with a mailbox
//! ([`iomux::spawn_actor`], [`iomux::Addr`]). It receives messages that carry a request's
//! [`iomux::SavedContext`], keeps them while they wait for an event, and replies later. The
//! [`spawn_hub`] actor does this for pub/sub: channels, message buffers, long-poll waiters and
//! EventSource streams. [`PubSub`] puts nchan's HTTP protocol in front of it, and the
//! `iomux-pubsub` binary makes a ready server of that.
//!
//! ```
//! use std::io::{Read, Write};
//! use iomux_actors::{PubSub, PubSubConfig};
//!
//! let ex = async_executor::LocalExecutor::new();
//! let pubsub = PubSub::new(&ex, PubSubConfig::default());
//! let acceptor = iomux::Acceptor::bind("127.0.0.1:0", pubsub.handler())?;
//! let (addr, stop) = (acceptor.local_addr(), acceptor.stop_handle());
//!
//! let client = std::thread::spawn(move || {
//!     let exchange = |request: &str| {
//!         let mut s = std::net::TcpStream::connect(addr).unwrap();
//!         s.write_all(request.as_bytes()).unwrap();
//!         let mut reply = String::new();
//!         s.read_to_string(&mut reply).unwrap();
//!         reply
//!     };
//!     let published = exchange("POST /pub/news HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
//!     let received = exchange("GET /sub/news HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
//!     stop.stop();
//!     (published, received)
//! });
//! async_io::block_on(ex.run(acceptor.serve(&ex)))?;
//! let (published, received) = client.join().unwrap();
//! assert!(published.starts_with("HTTP/1.1 202 Accepted"));
//! assert!(received.starts_with("HTTP/1.1 200 OK") && received.ends_with("\r\n\r\nhello"));
//! # Ok::<(), std::io::Error>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod cors;
pub mod eventsource;
mod hub;
mod info;
mod msgid;
mod pubsub;

pub use config::{AllowOrigin, FirstMessage, PubSubConfig};
pub use hub::{spawn_hub, HubMsg, Mode, NewMessage};
pub use info::{resident_memory, ChannelInfo, Format, Status};
pub use msgid::{request_cursor, Cursor, InvalidMessageId, MessageId};
pub use pubsub::{PubSub, DEMO_PAGE};
