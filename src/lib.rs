//! Evented HTTP/1.1 for long-poll, Comet and server-push applications.
//!
//! iomux serves every connection as a small task (a *connection actor*) on one single-threaded
//! [`async_executor::LocalExecutor`], so thousands of requests can wait for an event at the cost
//! of a few hundred bytes each. It follows IOMUX-ACCEPTOR for Hunchentoot: a handler need not
//! return the reply. It saves the request's context with [`with_saved_context!`], hands it to an
//! application actor, and later, from any event, the reply is sent inside
//! [`with_restored_context!`]; the connection writes it when it arrives.
//!
//! ```
//! use std::time::Duration;
//! use async_executor::LocalExecutor;
//! use iomux::{context, with_restored_context, with_saved_context, Acceptor, Handled, Mailbox, Request, SavedContext};
//!
//! let ex = LocalExecutor::new();
//!
//! // An application actor: it receives saved contexts and replies after an event (a timer).
//! let waiter = iomux::spawn_actor_task(&ex, 64, |mut mailbox: Mailbox<SavedContext>| async move {
//!     while let Some(ctx) = mailbox.recv().await {
//!         async_io::Timer::after(Duration::from_millis(50)).await;
//!         with_restored_context!(ctx, {
//!             let path = context::request().path().into_owned();
//!             context::send_body(format!("event for {path}\n")).ok();
//!         });
//!     }
//! });
//!
//! // The handler saves the context and defers: its reply comes from the actor.
//! let acceptor = Acceptor::bind("127.0.0.1:0", move |_req: &Request| {
//!     waiter.do_send(with_saved_context!());
//!     Handled::Deferred
//! })?;
//!
//! let addr = acceptor.local_addr();
//! let stop = acceptor.stop_handle();
//! let client = std::thread::spawn(move || {
//!     use std::io::{Read, Write};
//!     let mut s = std::net::TcpStream::connect(addr).unwrap();
//!     s.write_all(b"GET /news HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n").unwrap();
//!     let mut reply = String::new();
//!     s.read_to_string(&mut reply).unwrap();
//!     stop.stop();
//!     reply
//! });
//! async_io::block_on(ex.run(acceptor.serve(&ex)))?;
//! assert!(client.join().unwrap().ends_with("\r\n\r\nevent for /news\n"));
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! The data path, one module per step: [`Acceptor`] (accept) → connection actor (read, parse,
//! body) → [`Handler`] (dispatch, with the [`context`] current) → [`Handled::Deferred`] and a
//! [`SavedContext`] to an actor ([`spawn_actor`], [`Addr`]) → [`Responder`] / [`send_reply`]
//! back over the request's reply channel → the connection writes.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod actor;
mod config;
mod conn;
pub mod context;
mod dispatch;
mod error;
mod macros;
mod parse;
mod reply;
mod request;
mod responder;
mod server;

pub use actor::{spawn_actor, spawn_actor_task, Addr, Mailbox};
pub use config::Config;
pub use context::{send_body, send_reply, ContextLocal, RequestRef, SavedContext, Scoped};
pub use dispatch::{Handled, Handler};
pub use error::{ChunkError, MailboxError, NoContextError, SendError};
pub use reply::{InvalidHeader, Reply};
pub use request::{Request, Version};
pub use responder::{BodySender, RemoteResponder, Responder};
pub use server::{Acceptor, AcceptorBuilder, AcceptorRef, StopHandle};

/// Re-export of `bytes`: reply bodies are [`bytes::Bytes`], shared without copying.
pub use bytes;
/// The README's code, compiled as a doc test so that the tour stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// Measurements for benches and tests; not part of the API.
#[doc(hidden)]
pub mod __measure {
    pub use crate::conn::connection_future_size;

    /// Size in bytes of a [`SavedContext`](crate::SavedContext) value (its heap part is the
    /// request state it shares).
    pub fn saved_context_size() -> usize {
        std::mem::size_of::<crate::SavedContext>()
    }
}

/// Re-export of the `http` crate, whose status codes and header types replies use.
pub use http;
