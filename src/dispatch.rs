//! The [`Handler`] trait and what a handler returns: a reply now, or [`Handled::Deferred`].

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
