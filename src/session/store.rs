//! [`Sessions`]: the store of an application's sessions on the event loop, and what a request
//! does with it (start, find, remove, regenerate), plus expiry and its collector.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::{Rc, Weak};
use std::time::Instant;

use async_executor::LocalExecutor;
use async_io::Timer;

use super::config::SessionConfig;
use super::cookie_header::{cookie_values, replace_set_cookie, set_cookie};
use super::error::{SessionConfigError, SessionError};
use super::handle::{Origin, Session};
use super::id::SessionId;
use crate::context::{self, RequestRef};

type Callback = Rc<dyn Fn(&Session)>;

/// The shared state behind every clone of a [`Sessions`] handle.
pub(crate) struct Registry {
    config: SessionConfig,
    sessions: RefCell<HashMap<SessionId, Session>>,
    on_create: RefCell<Vec<Callback>>,
    on_remove: RefCell<Vec<Callback>>,
    /// A collector task is running.
    collecting: Cell<bool>,
}

/// The sessions of an application (Hunchentoot's session database), on the event loop.
///
/// Make one per application with [`Sessions::new`], clone it (cheaply: the clones share the
/// store) into the handler and into the actors that reply later, and start its collector with
/// [`spawn_collector`](Self::spawn_collector). Every method that needs the request —
/// [`start`](Self::start), [`current`](Self::current), and the cookie of
/// [`remove`](Self::remove) and [`regenerate`](Self::regenerate) — works in a handler and inside
/// [`with_restored_context!`](crate::with_restored_context) alike.
///
/// The client's cookie carries a 128-bit random id, looked up in constant time. An id that is
/// malformed, unknown, or presented with another `User-Agent` or address than the session's
/// (when [`SessionConfig`] binds them) is ignored: it never reaches, changes or removes a
/// session, and a session started then gets a fresh id, never the one presented. An expired
/// session's id finds nothing either (the expired session is removed then).
///
/// ```
/// # iomux::context::__with_test_request("GET / HTTP/1.1\r\nHost: x\r\n\r\n", || {
/// use iomux::session::Sessions;
/// let sessions = Sessions::new(Default::default()).unwrap();
/// assert_eq!(sessions.current(), None);
/// let session = sessions.start().unwrap(); // a new one: the reply gets its cookie
/// assert_eq!(sessions.start().unwrap(), session); // the same one
/// let cookie = iomux::context::headers()["set-cookie"].to_str().unwrap().to_owned();
/// assert_eq!(cookie, format!("iomux-session={}; Path=/; HttpOnly; SameSite=Lax", session.id()));
/// assert_eq!(sessions.len(), 1);
/// # });
/// ```
#[derive(Clone)]
pub struct Sessions(Rc<Registry>);

impl Sessions {
    /// A store with these settings.
    ///
    /// ```
    /// use iomux::session::{SessionConfig, Sessions};
    /// let sessions = Sessions::new(SessionConfig { secure: true, ..Default::default() })?;
    /// assert!(sessions.is_empty());
    /// # Ok::<(), iomux::session::SessionConfigError>(())
    /// ```
    ///
    /// # Errors
    /// A setting that cannot work (see [`SessionConfig::validate`]).
    pub fn new(config: SessionConfig) -> Result<Sessions, SessionConfigError> {
        config.validate()?;
        Ok(Sessions(Rc::new(Registry {
            config,
            sessions: RefCell::new(HashMap::new()),
            on_create: RefCell::new(Vec::new()),
            on_remove: RefCell::new(Vec::new()),
            collecting: Cell::new(false),
        })))
    }

    /// The settings.
    ///
    /// ```
    /// let sessions = iomux::session::Sessions::new(Default::default()).unwrap();
    /// assert_eq!(sessions.config().cookie_name, "iomux-session");
    /// ```
    pub fn config(&self) -> &SessionConfig {
        &self.0.config
    }

    /// The session of the current request, started if it has none (Hunchentoot's
    /// START-SESSION). A new session gets a fresh id, goes into the request's session slot and
    /// its cookie into the reply under construction (`Set-Cookie`), and the
    /// [`on_create`](Self::on_create) callbacks run. If the handler's reply sets `Set-Cookie`
    /// itself, that replaces the session's; add cookies with
    /// [`context::append_header`](crate::context::append_header) instead.
    ///
    /// ```
    /// # iomux::context::__with_test_request("GET / HTTP/1.1\r\nHost: x\r\n\r\n", || {
    /// let sessions = iomux::session::Sessions::new(Default::default()).unwrap();
    /// let session = sessions.start()?;
    /// session.set("visits", session.get::<u32>("visits").unwrap_or(0) + 1);
    /// # Ok::<(), iomux::session::SessionError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// With nothing changed: [`SessionError::NoRequest`] outside a request context;
    /// to create a session, [`SessionError::ReplyStarted`] when the cookie could no longer be
    /// sent, [`SessionError::TooManySessions`] at
    /// [`max_sessions`](SessionConfig::max_sessions), [`SessionError::Random`] if the
    /// operating system gives no random bytes.
    pub fn start(&self) -> Result<Session, SessionError> {
        match self.find()? {
            Some(session) => Ok(session),
            None => self.create(),
        }
    }

    /// The session of the current request, if it has one; `None` also outside any request
    /// context. Finding it counts as an access (its idle time starts again).
    ///
    /// ```
    /// # iomux::context::__with_test_request("GET / HTTP/1.1\r\nHost: x\r\nCookie: iomux-session=00000000000000000000000000000000\r\n\r\n", || {
    /// let sessions = iomux::session::Sessions::new(Default::default()).unwrap();
    /// assert_eq!(sessions.current(), None); // an id the store never gave out
    /// # });
    /// ```
    pub fn current(&self) -> Option<Session> {
        self.find().ok().flatten()
    }

    /// Remove a session (Hunchentoot's REMOVE-SESSION): no request finds it any more, the
    /// [`on_remove`](Self::on_remove) callbacks run, and if it is the current request's session
    /// the reply under construction deletes the client's cookie (`Max-Age=0`). Whether it was
    /// live. Works outside a request context too (an administrator ending someone's session).
    ///
    /// ```
    /// # iomux::context::__with_test_request("GET / HTTP/1.1\r\nHost: x\r\n\r\n", || {
    /// let sessions = iomux::session::Sessions::new(Default::default()).unwrap();
    /// let session = sessions.start().unwrap();
    /// assert!(sessions.remove(&session));
    /// assert!(!sessions.remove(&session));
    /// assert_eq!(sessions.current(), None);
    /// let cookie = iomux::context::headers()["set-cookie"].to_str().unwrap().to_owned();
    /// assert_eq!(cookie, "iomux-session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax");
    /// # });
    /// ```
    pub fn remove(&self, session: &Session) -> bool {
        if !session.belongs_to(&self.0) || !session.is_live() {
            return false;
        }
        let is_current = self.current().as_ref() == Some(session);
        if !self.unregister(session) {
            return false; // removed by a callback of the lookup above
        }
        if is_current {
            let _ = context::try_set_session(None);
            self.send_cookie(None);
        }
        self.notify(&self.0.on_remove, session, "on_remove");
        true
    }

    /// Give the current request's session a new id, keeping its values (Hunchentoot's
    /// REGENERATE-SESSION-COOKIE-VALUE): call it when the user logs in, so that an id someone
    /// planted beforehand (session fixation) is worth nothing. The old id stops working at once;
    /// the reply under construction carries the new cookie. Returns the new id.
    ///
    /// ```
    /// # iomux::context::__with_test_request("GET / HTTP/1.1\r\nHost: x\r\n\r\n", || {
    /// let sessions = iomux::session::Sessions::new(Default::default()).unwrap();
    /// let session = sessions.start()?;
    /// let old = session.id();
    /// let new = sessions.regenerate(&session)?;
    /// assert_ne!(old, new);
    /// assert_eq!(session.id(), new);
    /// # Ok::<(), iomux::session::SessionError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// With nothing changed: [`SessionError::NoRequest`] outside a request context,
    /// [`SessionError::Removed`] for a session no longer live, [`SessionError::NotCurrent`] for
    /// another request's session (its cookie cannot be given to this client),
    /// [`SessionError::ReplyStarted`] when the cookie could no longer be sent,
    /// [`SessionError::Random`] if the operating system gives no random bytes.
    pub fn regenerate(&self, session: &Session) -> Result<String, SessionError> {
        let current = self.find()?;
        if !session.belongs_to(&self.0) || !session.is_live() {
            return Err(SessionError::Removed);
        }
        if current.as_ref() != Some(session) {
            return Err(SessionError::NotCurrent);
        }
        if context::try_reply_started().map_err(|_| SessionError::NoRequest)? {
            return Err(SessionError::ReplyStarted);
        }
        let id = self.fresh_id()?;
        {
            let mut map = self.0.sessions.borrow_mut();
            map.remove(&session.0.id.get());
            session.0.id.set(id);
            map.insert(id, session.clone());
        }
        let hex = id.to_hex();
        self.send_cookie(Some(&hex));
        Ok(hex)
    }

    /// Run `f` on every session created, after it is registered and its cookie set (for
    /// example to give it initial values). Callbacks run in the order added; one that panics
    /// is logged and the others still run.
    ///
    /// ```
    /// # iomux::context::__with_test_request("GET / HTTP/1.1\r\nHost: x\r\n\r\n", || {
    /// let sessions = iomux::session::Sessions::new(Default::default()).unwrap();
    /// sessions.on_create(|session| session.set("cart", Vec::<String>::new()));
    /// let session = sessions.start().unwrap();
    /// assert_eq!(session.get::<Vec<String>>("cart"), Some(vec![]));
    /// # });
    /// ```
    pub fn on_create(&self, f: impl Fn(&Session) + 'static) {
        self.0.on_create.borrow_mut().push(Rc::new(f));
    }

    /// Run `f` on every session that ends: removed with [`remove`](Self::remove), or expired
    /// (found expired by a request, or by [`collect`](Self::collect)). It is no longer in the
    /// store when `f` runs, but its values are still there to read. Callbacks run in the order
    /// added; one that panics is logged and the others still run.
    ///
    /// ```
    /// # iomux::context::__with_test_request("GET / HTTP/1.1\r\nHost: x\r\n\r\n", || {
    /// use std::{cell::Cell, rc::Rc};
    /// let sessions = iomux::session::Sessions::new(Default::default()).unwrap();
    /// let ended = Rc::new(Cell::new(0));
    /// let count = ended.clone();
    /// sessions.on_remove(move |_| count.set(count.get() + 1));
    /// sessions.remove(&sessions.start().unwrap());
    /// assert_eq!(ended.get(), 1);
    /// # });
    /// ```
    pub fn on_remove(&self, f: impl Fn(&Session) + 'static) {
        self.0.on_remove.borrow_mut().push(Rc::new(f));
    }

    /// Remove every expired session now (the collector's work); how many were removed. Their
    /// [`on_remove`](Self::on_remove) callbacks run.
    ///
    /// ```
    /// let sessions = iomux::session::Sessions::new(Default::default()).unwrap();
    /// assert_eq!(sessions.collect(), 0);
    /// ```
    pub fn collect(&self) -> usize {
        let now = Instant::now();
        let mut expired = Vec::new();
        self.0.sessions.borrow_mut().retain(|_, session| {
            let keep = !session.expired_at(now);
            if !keep {
                expired.push(session.clone());
            }
            keep
        });
        for session in &expired {
            session.0.live.set(false);
        }
        for session in &expired {
            self.notify(&self.0.on_remove, session, "on_remove");
        }
        expired.len()
    }

    /// Start the collector on `ex`: one timer for the whole store that runs
    /// [`collect`](Self::collect) every [`collect_interval`](SessionConfig::collect_interval).
    /// It holds the store weakly and ends once every `Sessions` handle is gone (or with the
    /// executor). `false`, and nothing done, if a collector is running already.
    ///
    /// ```
    /// let ex = async_executor::LocalExecutor::new();
    /// let sessions = iomux::session::Sessions::new(Default::default()).unwrap();
    /// assert!(sessions.spawn_collector(&ex));
    /// assert!(!sessions.spawn_collector(&ex));
    /// ```
    pub fn spawn_collector(&self, ex: &LocalExecutor<'_>) -> bool {
        if self.0.collecting.replace(true) {
            return false;
        }
        let running = Running(Rc::downgrade(&self.0));
        let interval = self.0.config.collect_interval;
        ex.spawn(async move {
            loop {
                Timer::after(interval).await;
                let Some(registry) = running.0.upgrade() else {
                    break;
                };
                Sessions(registry).collect();
            }
        })
        .detach();
        true
    }

    /// Sessions in the store, counting expired ones not yet collected.
    ///
    /// ```
    /// let sessions = iomux::session::Sessions::new(Default::default()).unwrap();
    /// assert_eq!(sessions.len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.0.sessions.borrow().len()
    }

    /// Is the store empty?
    ///
    /// ```
    /// let sessions = iomux::session::Sessions::new(Default::default()).unwrap();
    /// assert!(sessions.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.0.sessions.borrow().is_empty()
    }

    /// The current request's session: from the session slot if this store put it there, else
    /// from the request's cookie (then put in the slot).
    fn find(&self) -> Result<Option<Session>, SessionError> {
        let slot = context::try_session().map_err(|_| SessionError::NoRequest)?;
        let now = Instant::now();
        let slot_is_free = match slot.map(Session::from_slot) {
            None => true,
            Some(Some(session)) if session.belongs_to(&self.0) => {
                if !session.is_live() {
                    // Removed (or regenerated away) by another request; the cookie's id is no
                    // better.
                    let _ = context::try_set_session(None);
                    return Ok(None);
                }
                if session.expired_at(now) {
                    let _ = context::try_set_session(None);
                    self.expire(&session);
                    return Ok(None);
                }
                session.touch(now);
                return Ok(Some(session));
            }
            Some(_) => false, // someone else's value: leave it
        };
        let request = context::try_request().map_err(|_| SessionError::NoRequest)?;
        let found = self.lookup(&request, now);
        if let (Some(session), true) = (&found, slot_is_free) {
            let _ = context::try_set_session(Some(session.to_slot()));
        }
        Ok(found)
    }

    /// The live session whose id the request's cookie carries, checked against the bindings.
    fn lookup(&self, request: &RequestRef, now: Instant) -> Option<Session> {
        let name = self.0.config.cookie_name.as_str();
        for value in cookie_values(request.header_all("cookie"), name) {
            let Some(id) = SessionId::parse(value) else {
                continue;
            };
            let found = self.0.sessions.borrow().get(&id).cloned();
            let Some(session) = found else {
                continue;
            };
            if session.expired_at(now) {
                self.expire(&session);
                continue;
            }
            if !self.bindings_hold(&session, request) {
                log::warn!(
                    "a session id came from {} with another User-Agent or address than its \
                     session's; ignored",
                    request.peer_addr()
                );
                continue;
            }
            session.touch(now);
            return Some(session);
        }
        None
    }

    fn bindings_hold(&self, session: &Session, request: &RequestRef) -> bool {
        let config = &self.0.config;
        (!config.bind_user_agent
            || session.0.user_agent.as_deref() == request.header_bytes("user-agent"))
            && (!config.bind_remote_addr || session.0.remote_ip == Some(request.peer_addr().ip()))
    }

    /// A new session for the current request.
    fn create(&self) -> Result<Session, SessionError> {
        let request = context::try_request().map_err(|_| SessionError::NoRequest)?;
        if context::try_reply_started().map_err(|_| SessionError::NoRequest)? {
            return Err(SessionError::ReplyStarted);
        }
        if let Some(max) = self.0.config.max_sessions {
            if self.len() >= max {
                self.collect();
            }
            if self.len() >= max {
                return Err(SessionError::TooManySessions { max });
            }
        }
        let config = &self.0.config;
        let id = self.fresh_id()?;
        let session = Session::new(Origin {
            id,
            store: Rc::downgrade(&self.0),
            now: Instant::now(),
            idle_timeout: config.idle_timeout,
            user_agent: config
                .bind_user_agent
                .then(|| request.header_bytes("user-agent").map(Box::from))
                .flatten(),
            remote_ip: config.bind_remote_addr.then(|| request.peer_addr().ip()),
        });
        self.0.sessions.borrow_mut().insert(id, session.clone());
        let _ = context::try_set_session(Some(session.to_slot()));
        self.send_cookie(Some(&id.to_hex()));
        self.notify(&self.0.on_create, &session, "on_create");
        Ok(session)
    }

    /// An id no session has.
    fn fresh_id(&self) -> Result<SessionId, SessionError> {
        loop {
            let id = SessionId::random().map_err(|e| {
                log::error!("no session id: the operating system's random source failed: {e}");
                SessionError::Random
            })?;
            if !self.0.sessions.borrow().contains_key(&id) {
                return Ok(id);
            }
        }
    }

    /// Take a session out of the store; `false` if it was not in it.
    fn unregister(&self, session: &Session) -> bool {
        let id = session.0.id.get();
        let mut map = self.0.sessions.borrow_mut();
        match map.get(&id) {
            Some(found) if found == session => {
                map.remove(&id);
                session.0.live.set(false);
                true
            }
            _ => false,
        }
    }

    /// Remove an expired session found by a request.
    fn expire(&self, session: &Session) {
        if self.unregister(session) {
            self.notify(&self.0.on_remove, session, "on_remove");
        }
    }

    /// Set (or with `None` delete) the session cookie in the current reply under construction,
    /// if there is one that can still be sent.
    fn send_cookie(&self, id: Option<&str>) {
        let name = self.0.config.cookie_name.as_str();
        if let Some(value) = set_cookie(&self.0.config, id) {
            let _ = context::try_edit_headers(|headers| replace_set_cookie(headers, name, value));
        }
    }

    fn notify(&self, callbacks: &RefCell<Vec<Callback>>, session: &Session, what: &str) {
        // A copy, so that a callback may add callbacks or use the store.
        let callbacks = callbacks.borrow().clone();
        for callback in callbacks {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| callback(session))) {
                log::error!("session {what} callback panicked: {}", panic_text(&*panic));
            }
        }
    }
}

fn panic_text(panic: &(dyn Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

/// The collector task's hold on its store; lets another collector start once it ends.
struct Running(Weak<Registry>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(registry) = self.0.upgrade() {
            registry.collecting.set(false);
        }
    }
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("len", &self.len())
            .field("config", &self.0.config)
            .finish()
    }
}
