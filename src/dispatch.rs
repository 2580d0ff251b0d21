//! The [`Handler`] trait and how handling ends: a reply now, [`Handled::Deferred`], or an
//! [`abort`] from anywhere below the handler (or an actor's message handler).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::AssertUnwindSafe;

use http::header::{HeaderValue, WWW_AUTHENTICATE};
use http::StatusCode;

use crate::context::SavedContext;
use crate::reply::Reply;
use crate::request::Request;

/// What a handler did with a request.
///
/// ```
/// use iomux::{Handled, Reply};
/// let now: Handled = Reply::text("at once").into();
/// let later = Handled::Deferred;
/// assert!(matches!(now, Handled::Reply(_)));
/// assert!(matches!(later, Handled::Deferred));
/// ```
#[derive(Debug)]
pub enum Handled {
    /// Answer with this reply now.
    Reply(Reply),
    /// The reply comes later, from whoever holds the request's context or
    /// [`Responder`](crate::Responder) (IOMUX-ACCEPTOR: the handler's return value is ignored).
    /// If nobody holds it any more, the client gets `500`.
    Deferred,
}

impl From<Reply> for Handled {
    fn from(reply: Reply) -> Handled {
        Handled::Reply(reply)
    }
}

impl From<&'static str> for Handled {
    fn from(body: &'static str) -> Handled {
        Handled::Reply(Reply::text(body))
    }
}

impl From<String> for Handled {
    fn from(body: String) -> Handled {
        Handled::Reply(Reply::text(body))
    }
}

/// Answers requests. Runs on the event loop with the request's context current (see
/// [`context`](crate::context)); it must not block.
///
/// Any `Fn(&Request) -> impl Into<Handled>` closure is a handler:
///
/// ```
/// use iomux::{Handled, Reply, Request};
/// let handler = |req: &Request| -> Handled {
///     match req.path().as_ref() {
///         "/hello" => Reply::text("Hello, world!").into(),
///         _ => Reply::error(iomux::http::StatusCode::NOT_FOUND).into(),
///     }
/// };
/// # fn is_handler(_: impl iomux::Handler) {}
/// is_handler(handler);
/// ```
pub trait Handler: 'static {
    /// Handle one request.
    fn handle(&self, request: &Request) -> Handled;
}

impl<F, R> Handler for F
where
    F: Fn(&Request) -> R + 'static,
    R: Into<Handled>,
{
    fn handle(&self, request: &Request) -> Handled {
        self(request).into()
    }
}

/// The panic payload of [`abort`]: the reply, sent when the payload is dropped (wherever the
/// unwinding was caught) to the request context that was current at the abort. The context
/// itself is `!Send` and cannot travel in a payload: it waits in [`PENDING`] under the
/// payload's number.
struct Abort {
    id: u64,
    reply: Option<Reply>,
}

thread_local! {
    /// Contexts of aborts still unwinding on this thread, by payload number.
    static PENDING: RefCell<Vec<(u64, SavedContext)>> = const { RefCell::new(Vec::new()) };
    /// The next payload number.
    static NEXT_ID: Cell<u64> = const { Cell::new(0) };
}

impl Drop for Abort {
    fn drop(&mut self) {
        let id = self.id;
        let context = PENDING
            .try_with(|pending| {
                let mut pending = pending.borrow_mut();
                let i = pending.iter().position(|(n, _)| *n == id)?;
                Some(pending.swap_remove(i).1)
            })
            .ok()
            .flatten();
        let (Some(context), Some(reply)) = (context, self.reply.take()) else {
            return;
        };
        match context.send_reply(reply) {
            Ok(()) => {}
            Err(e) => log::debug!("the reply of an abort was not sent: {e}"),
        }
    }
}

/// Was this panic payload an [`abort`]? Dropping it sends the abort's reply.
pub(crate) fn is_abort(payload: &(dyn Any + Send)) -> bool {
    payload.is::<Abort>()
}

/// Stop handling the request now and answer it with `reply` (Hunchentoot's
/// ABORT-REQUEST-HANDLER). Unwinds to where the work was started: the connection's handler
/// call, or the message handler of a [`spawn_actor`](crate::spawn_actor) actor, or
/// [`catch_abort`]; there the reply goes to the request context that was current at the abort
/// (the handler's, or the one [`with_restored_context!`](crate::with_restored_context) brought
/// back). Header fields set on the reply under construction go with it, as with
/// [`send_reply`](crate::send_reply). It is not a panic: it is not logged as one and runs no
/// panic hook (it unwinds with [`std::panic::resume_unwind`]).
///
/// Call it only under one of those three: an abort inside a
/// [`spawn_actor_task`](crate::spawn_actor_task) loop is caught where the task ends, so its
/// reply is sent but the actor stops (wrap the loop's work in [`catch_abort`]); on a task of
/// your own it unwinds through the executor. A build with `panic = "abort"` cannot unwind: there
/// an abort ends the process. If the request has been answered already, the reply is dropped.
///
/// ```
/// use iomux::{abort, Reply, Request};
/// use iomux::http::StatusCode;
///
/// fn load(id: &str) -> String {
///     if id.is_empty() {
///         abort(Reply::error(StatusCode::NOT_FOUND)); // from deep inside the handler
///     }
///     format!("item {id}\n")
/// }
/// let handler = |req: &Request| Reply::text(load(req.path().trim_start_matches('/')));
/// # fn is_handler(_: impl iomux::Handler) {}
/// # is_handler(handler);
/// ```
pub fn abort(reply: impl Into<Reply>) -> ! {
    let id = NEXT_ID.with(|n| {
        let id = n.get();
        n.set(id.wrapping_add(1));
        id
    });
    PENDING.with(|pending| pending.borrow_mut().push((id, SavedContext::capture())));
    std::panic::resume_unwind(Box::new(Abort {
        id,
        reply: Some(reply.into()),
    }))
}

/// [`abort`] with [`Reply::error`] of `status` (an error page where configured).
///
/// ```
/// use iomux::http::StatusCode;
/// let handler = |req: &iomux::Request| -> iomux::Reply {
///     if req.method() != "GET" {
///         iomux::abort_with(StatusCode::METHOD_NOT_ALLOWED);
///     }
///     iomux::Reply::text("ok")
/// };
/// # fn is_handler(_: impl iomux::Handler) {}
/// # is_handler(handler);
/// ```
pub fn abort_with(status: StatusCode) -> ! {
    abort(Reply::error(status))
}

/// Ask for credentials (Hunchentoot's REQUIRE-AUTHORIZATION): [`abort`] with
/// `401 Unauthorized` and `WWW-Authenticate: Basic realm="..."`. In the realm `"` and `\` are
/// escaped, and control bytes (which a header field cannot hold) are left out.
///
/// ```
/// let handler = |req: &iomux::Request| -> iomux::Reply {
///     if req.header("authorization") != Some("Basic YWxpY2U6c2VzYW1l") {
///         iomux::require_authorization("admin area");
///     }
///     iomux::Reply::text("welcome\n")
/// };
/// # fn is_handler(_: impl iomux::Handler) {}
/// # is_handler(handler);
/// ```
pub fn require_authorization(realm: &str) -> ! {
    let mut value = Vec::with_capacity(realm.len() + 16);
    value.extend_from_slice(b"Basic realm=\"");
    for &b in realm.as_bytes() {
        match b {
            b'"' | b'\\' => value.extend_from_slice(&[b'\\', b]),
            0..=0x1f | 0x7f => {}
            _ => value.push(b),
        }
    }
    value.push(b'"');
    let reply = Reply::error(StatusCode::UNAUTHORIZED);
    match HeaderValue::from_bytes(&value) {
        Ok(value) => abort(reply.header(WWW_AUTHENTICATE, value)),
        Err(_) => abort(reply),
    }
}

/// Run `f`, sending the reply of an [`abort`] inside it (to the context current at the abort)
/// and returning `None` instead of unwinding further. Other panics go on unwinding. For the
/// loop of a [`spawn_actor_task`](crate::spawn_actor_task) actor, which an abort would
/// otherwise stop.
///
/// ```
/// use iomux::http::StatusCode;
/// assert_eq!(iomux::catch_abort(|| 7), Some(7));
/// assert_eq!(iomux::catch_abort(|| -> u32 { iomux::abort_with(StatusCode::GONE) }), None);
/// ```
pub fn catch_abort<R>(f: impl FnOnce() -> R) -> Option<R> {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => Some(value),
        Err(payload) if is_abort(&*payload) => {
            drop(payload);
            None
        }
        Err(payload) => std::panic::resume_unwind(payload),
    }
}
