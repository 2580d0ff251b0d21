//! [`Session`]: one client's session, a handle to its typed values and its clock.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use super::id::SessionId;
use super::store::Registry;

/// One client's session (Hunchentoot's session object): typed values by key, kept on the event
/// loop between the client's requests.
///
/// Get one from [`Sessions::start`](super::Sessions::start) or
/// [`Sessions::current`](super::Sessions::current). Cloning is cheap and gives another handle
/// to the same session; `==` tells whether two handles are the same session. A handle stays
/// usable after the session is removed or expires, but the session is no longer found by any
/// request ([`is_live`](Self::is_live) is false).
///
/// ```
/// # iomux::context::__with_test_request("GET / HTTP/1.1\r\nHost: x\r\n\r\n", || {
/// use iomux::session::Sessions;
/// let sessions = Sessions::new(Default::default()).unwrap();
/// let session = sessions.start().unwrap();
/// session.set("visits", 1u32);
/// assert_eq!(sessions.current(), Some(session.clone()));
/// assert_eq!(sessions.current().unwrap().get::<u32>("visits"), Some(1));
/// # });
/// ```
#[derive(Clone)]
pub struct Session(pub(super) Rc<SessionState>);

/// What a [`Session`] handle points to; also what the request context's session slot holds.
pub(crate) struct SessionState {
    /// The id the client presents; changed by regeneration.
    pub(super) id: Cell<SessionId>,
    /// The store it belongs to.
    store: Weak<Registry>,
    values: RefCell<HashMap<String, Rc<dyn Any>>>,
    created: Instant,
    last_access: Cell<Instant>,
    idle_timeout: Cell<Duration>,
    /// Registered in its store (neither removed nor expired).
    pub(super) live: Cell<bool>,
    /// The `User-Agent` it was created with, when the store binds sessions to it.
    pub(super) user_agent: Option<Box<[u8]>>,
    /// The address it was created from, when the store binds sessions to it.
    pub(super) remote_ip: Option<IpAddr>,
}

/// The identity of a new session.
pub(super) struct Origin {
    pub(super) id: SessionId,
    pub(super) store: Weak<Registry>,
    pub(super) now: Instant,
    pub(super) idle_timeout: Duration,
    pub(super) user_agent: Option<Box<[u8]>>,
    pub(super) remote_ip: Option<IpAddr>,
}

impl Session {
    pub(super) fn new(origin: Origin) -> Session {
        Session(Rc::new(SessionState {
            id: Cell::new(origin.id),
            store: origin.store,
            values: RefCell::new(HashMap::new()),
            created: origin.now,
            last_access: Cell::new(origin.now),
            idle_timeout: Cell::new(origin.idle_timeout),
            live: Cell::new(true),
            user_agent: origin.user_agent,
            remote_ip: origin.remote_ip,
        }))
    }

    /// The session's id as the client's cookie carries it (32 lowercase hex digits, 128 random
    /// bits). It is a secret that lets whoever has it act as the client: keep it out of logs,
    /// URLs and pages.
    ///
    /// ```
    /// # iomux::context::__with_test_request("GET / HTTP/1.1\r\nHost: x\r\n\r\n", || {
    /// let sessions = iomux::session::Sessions::new(Default::default()).unwrap();
    /// let id = sessions.start().unwrap().id();
    /// assert_eq!(id.len(), 32);
    /// assert!(id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    /// # });
    /// ```
    pub fn id(&self) -> String {
        self.0.id.get().to_hex()
    }

    /// A clone of the value under `key`, if there is one of type `T` (Hunchentoot's
    /// SESSION-VALUE).
    ///
    /// ```
    /// # iomux::context::__with_test_request("GET / HTTP/1.1\r\nHost: x\r\n\r\n", || {
    /// let sessions = iomux::session::Sessions::new(Default::default()).unwrap();
    /// let session = sessions.start().unwrap();
    /// session.set("user", String::from("alice"));
    /// assert_eq!(session.get::<String>("user").as_deref(), Some("alice"));
    /// assert_eq!(session.get::<u32>("user"), None); // another type
    /// assert_eq!(session.get::<String>("cart"), None);
    /// # });
    /// ```
    pub fn get<T: Clone + 'static>(&self, key: &str) -> Option<T> {
        self.with(key, T::clone)
    }

    /// Run `f` on the value under `key`, if there is one of type `T`: for values that are not
    /// `Clone`, or are costly to clone. `f` may use the session itself.
    ///
    /// ```
    /// # iomux::context::__with_test_request("GET / HTTP/1.1\r\nHost: x\r\n\r\n", || {
    /// let sessions = iomux::session::Sessions::new(Default::default()).unwrap();
    /// let session = sessions.start().unwrap();
    /// session.set("cart", vec!["tea", "cups"]);
    /// assert_eq!(session.with("cart", |cart: &Vec<&'static str>| cart.len()), Some(2));
    /// # });
    /// ```
    pub fn with<T: 'static, R>(&self, key: &str, f: impl FnOnce(&T) -> R) -> Option<R> {
        // The value is taken out of the map first: `f` may set or delete values.
        let value = self.0.values.borrow().get(key).cloned()?;
        value.downcast_ref::<T>().map(f)
    }

    /// Store `value` under `key`, replacing what was there (of any type).
    ///
    /// ```
    /// # iomux::context::__with_test_request("GET / HTTP/1.1\r\nHost: x\r\n\r\n", || {
    /// let sessions = iomux::session::Sessions::new(Default::default()).unwrap();
    /// let session = sessions.start().unwrap();
    /// session.set("n", 1u64);
    /// session.set("n", session.get::<u64>("n").unwrap() + 1);
    /// assert_eq!(session.get::<u64>("n"), Some(2));
    /// # });
    /// ```
    pub fn set<T: 'static>(&self, key: impl Into<String>, value: T) {
        let previous = self
            .0
            .values
            .borrow_mut()
            .insert(key.into(), Rc::new(value));
        // Dropped after the borrow ends: its drop may use the session.
        drop(previous);
    }

    /// Remove the value under `key` (Hunchentoot's DELETE-SESSION-VALUE); whether there was one.
    ///
    /// ```
    /// # iomux::context::__with_test_request("GET / HTTP/1.1\r\nHost: x\r\n\r\n", || {
    /// let sessions = iomux::session::Sessions::new(Default::default()).unwrap();
    /// let session = sessions.start().unwrap();
    /// session.set("flash", "saved");
    /// assert!(session.delete("flash"));
    /// assert!(!session.delete("flash"));
    /// assert_eq!(session.get::<&str>("flash"), None);
    /// # });
    /// ```
    pub fn delete(&self, key: &str) -> bool {
        let previous = self.0.values.borrow_mut().remove(key);
        previous.is_some()
    }

    /// Is the session still in its store: neither removed nor expired (as far as the store has
    /// seen: an expired session is removed when a request presents it or the collector runs)?
    ///
    /// ```
    /// # iomux::context::__with_test_request("GET / HTTP/1.1\r\nHost: x\r\n\r\n", || {
    /// let sessions = iomux::session::Sessions::new(Default::default()).unwrap();
    /// let session = sessions.start().unwrap();
    /// assert!(session.is_live());
    /// sessions.remove(&session);
    /// assert!(!session.is_live());
    /// # });
    /// ```
    pub fn is_live(&self) -> bool {
        self.0.live.get()
    }

    /// When the session was created.
    ///
    /// ```
    /// # iomux::context::__with_test_request("GET / HTTP/1.1\r\nHost: x\r\n\r\n", || {
    /// let sessions = iomux::session::Sessions::new(Default::default()).unwrap();
    /// let session = sessions.start().unwrap();
    /// assert!(session.created() <= std::time::Instant::now());
    /// # });
    /// ```
    pub fn created(&self) -> Instant {
        self.0.created
    }

    /// When a request last found the session (its idle time counts from here).
    ///
    /// ```
    /// # iomux::context::__with_test_request("GET / HTTP/1.1\r\nHost: x\r\n\r\n", || {
    /// let sessions = iomux::session::Sessions::new(Default::default()).unwrap();
    /// let session = sessions.start().unwrap();
    /// assert!(session.last_access() >= session.created());
    /// # });
    /// ```
    pub fn last_access(&self) -> Instant {
        self.0.last_access.get()
    }

    /// How long this session lives unused (the store's
    /// [`idle_timeout`](super::SessionConfig::idle_timeout) unless set for it).
    ///
    /// ```
    /// # iomux::context::__with_test_request("GET / HTTP/1.1\r\nHost: x\r\n\r\n", || {
    /// let sessions = iomux::session::Sessions::new(Default::default()).unwrap();
    /// let session = sessions.start().unwrap();
    /// assert_eq!(session.idle_timeout(), std::time::Duration::from_secs(1800));
    /// # });
    /// ```
    pub fn idle_timeout(&self) -> Duration {
        self.0.idle_timeout.get()
    }

    /// Give this session its own idle timeout (Hunchentoot's `(setf session-max-time)`), for
    /// example a longer one after "remember me"; it counts from the last access.
    ///
    /// ```
    /// # iomux::context::__with_test_request("GET / HTTP/1.1\r\nHost: x\r\n\r\n", || {
    /// use std::time::Duration;
    /// let sessions = iomux::session::Sessions::new(Default::default()).unwrap();
    /// let session = sessions.start().unwrap();
    /// session.set_idle_timeout(Duration::from_secs(7 * 24 * 3600));
    /// assert_eq!(session.idle_timeout(), Duration::from_secs(604_800));
    /// # });
    /// ```
    pub fn set_idle_timeout(&self, timeout: Duration) {
        self.0.idle_timeout.set(timeout);
    }

    /// Has the session been unused longer than its idle timeout at `now`?
    pub(super) fn expired_at(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.0.last_access.get()) > self.0.idle_timeout.get()
    }

    /// A request found the session at `now`.
    pub(super) fn touch(&self, now: Instant) {
        if now > self.0.last_access.get() {
            self.0.last_access.set(now);
        }
    }

    /// Does the session belong to `store`?
    pub(super) fn belongs_to(&self, store: &Rc<Registry>) -> bool {
        std::ptr::eq(self.0.store.as_ptr(), Rc::as_ptr(store))
    }

    /// The session as the request context's session slot holds it.
    pub(super) fn to_slot(&self) -> Rc<dyn Any> {
        self.0.clone()
    }

    /// The session in a session slot, if the slot holds one.
    pub(super) fn from_slot(slot: Rc<dyn Any>) -> Option<Session> {
        slot.downcast::<SessionState>().ok().map(Session)
    }
}

impl PartialEq for Session {
    fn eq(&self, other: &Session) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Session {}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The id is a secret: not shown.
        f.debug_struct("Session")
            .field("live", &self.is_live())
            .field("values", &self.0.values.borrow().len())
            .field("created", &self.0.created)
            .field("last_access", &self.0.last_access.get())
            .field("idle_timeout", &self.0.idle_timeout.get())
            .finish_non_exhaustive()
    }
}
