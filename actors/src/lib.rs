//! Reusable application actors for [`iomux`].
//!
//! An iomux application actor is a task on the server's `LocalExecutor` with a mailbox
//! ([`iomux::spawn_actor`], [`iomux::Addr`]). It receives messages that carry a request's
//! [`iomux::SavedContext`], keeps them while they wait for an event, and replies from inside
//! [`iomux::with_restored_context!`]. This crate collects such actors so that applications do
//! not have to write them again: the pub/sub hub with its nchan-compatible long-poll and
//! EventSource front ends is the first planned here.
//!
//! Until then, this is what an application actor looks like: a "wait for the next event"
//! actor that answers every waiting request when an event is posted.
//!
//! ```
//! use iomux::{context, with_restored_context, SavedContext};
//!
//! enum Msg {
//!     Wait(SavedContext),
//!     Event(String),
//! }
//!
//! let ex = async_executor::LocalExecutor::new();
//! let mut waiting: Vec<SavedContext> = Vec::new();
//! let events = iomux::spawn_actor(&ex, 1024, move |msg: Msg| match msg {
//!     Msg::Wait(ctx) => waiting.push(ctx),
//!     Msg::Event(text) => {
//!         for ctx in waiting.drain(..).filter(|c| !c.is_closed()) {
//!             with_restored_context!(ctx, { context::send_body(text.clone()).ok() });
//!         }
//!     }
//! });
//! events.do_send(Msg::Event("nobody is waiting yet".into()));
//! while ex.try_tick() {}
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
