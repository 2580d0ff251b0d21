//! Sessions (Hunchentoot's sessions): typed per-client values kept on the event loop between
//! requests, found again through a cookie.
//!
//! A [`Sessions`] store (one per application, configured by [`SessionConfig`]) hands out
//! [`Session`]s: [`Sessions::start`] in a handler gives the current request's session, creating
//! it (and its `Set-Cookie`) if needed; the session also goes into the request context's session
//! slot ([`context::session`](crate::context::session)), so it travels with
//! [`with_saved_context!`](crate::with_saved_context) and [`Sessions::current`] finds it again
//! inside [`with_restored_context!`](crate::with_restored_context) when an actor replies later.
//!
//! What is kept from Hunchentoot, and what is done better:
//!
//! - ids are 128 bits from the operating system's random source, compared in constant time;
//!   an unknown, malformed or forged id is ignored and never becomes a session's id (no
//!   session fixation through the cookie); [`Sessions::regenerate`] changes the id at login;
//! - the cookie is `HttpOnly` and `SameSite=Lax` by default, `Secure` when configured;
//! - sessions expire after an idle time that each access starts again; one timer per store
//!   collects expired ones ([`Sessions::spawn_collector`]), not one per session;
//! - optional binding to the `User-Agent` and the client address: a request presenting a bound
//!   session's id with another agent or address does not get the session, and the session is
//!   left as it was;
//! - [`Sessions::on_create`] and [`Sessions::on_remove`] callbacks, and a
//!   [`max_sessions`](SessionConfig::max_sessions) limit that refuses newcomers rather than
//!   evicting anyone.
//!
//! ```
//! use async_executor::LocalExecutor;
//! use iomux::session::{SessionConfig, Sessions};
//! use iomux::{Acceptor, Reply, Request};
//!
//! let ex = LocalExecutor::new();
//! let sessions = Sessions::new(SessionConfig::default()).unwrap();
//! sessions.spawn_collector(&ex);
//! let store = sessions.clone();
//! let acceptor = Acceptor::bind("127.0.0.1:0", move |_req: &Request| match store.start() {
//!     Ok(session) => {
//!         let visits = session.get::<u32>("visits").unwrap_or(0) + 1;
//!         session.set("visits", visits);
//!         Reply::text(format!("visit {visits}\n"))
//!     }
//!     Err(e) => Reply::error(iomux::http::StatusCode::SERVICE_UNAVAILABLE).with_body(e.to_string()),
//! })?;
//!
//! let addr = acceptor.local_addr();
//! let stop = acceptor.stop_handle();
//! let client = std::thread::spawn(move || {
//!     use std::io::{Read, Write};
//!     let get = |cookie: &str| {
//!         let mut s = std::net::TcpStream::connect(addr).unwrap();
//!         let request = format!("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{cookie}\r\n");
//!         s.write_all(request.as_bytes()).unwrap();
//!         let mut reply = String::new();
//!         s.read_to_string(&mut reply).unwrap();
//!         reply
//!     };
//!     let first = get("");
//!     let set_cookie = first
//!         .lines()
//!         .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
//!         .unwrap();
//!     // "iomux-session=<32 hex digits>; Path=/; HttpOnly; SameSite=Lax": send back the pair.
//!     let cookie = set_cookie[11..].split(';').next().unwrap().trim().to_owned();
//!     let second = get(&format!("Cookie: {cookie}\r\n"));
//!     stop.stop();
//!     (first, second)
//! });
//! async_io::block_on(ex.run(acceptor.serve(&ex)))?;
//! let (first, second) = client.join().unwrap();
//! assert!(first.ends_with("visit 1\n"));
//! assert!(second.ends_with("visit 2\n"));
//! assert_eq!(sessions.len(), 1);
//! # Ok::<(), std::io::Error>(())
//! ```

mod config;
mod cookie_header;
mod error;
mod handle;
mod id;
mod store;

pub use config::{SameSite, SessionConfig};
pub use error::{SessionConfigError, SessionError};
pub use handle::Session;
pub use store::Sessions;
