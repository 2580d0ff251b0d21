//! Error types. Every error that stands for an undelivered value hands that value back.

use std::fmt;

/// A reply (or stream start) could not be delivered; the value comes back with the reason.
///
/// ```
/// let err = iomux::SendError::ClientGone("late reply");
/// assert_eq!(err.to_string(), "client has gone");
/// assert_eq!(err.into_inner(), "late reply");
/// ```
#[derive(PartialEq, Eq)]
pub enum SendError<T> {
    /// The client hung up (or the connection was dropped) before the reply was sent.
    ClientGone(T),
    /// This request was already answered; a request gets exactly one reply.
    AlreadyReplied(T),
    /// There is no request context to reply to (called outside any handler or restored context).
    NoRequest(T),
}

impl<T> SendError<T> {
    /// The value that was not delivered.
    pub fn into_inner(self) -> T {
        match self {
            SendError::ClientGone(t) | SendError::AlreadyReplied(t) | SendError::NoRequest(t) => t,
        }
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::ClientGone(_) => "client has gone",
            SendError::AlreadyReplied(_) => "request already replied to",
            SendError::NoRequest(_) => "no current request context",
        })
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            SendError::ClientGone(_) => "ClientGone",
            SendError::AlreadyReplied(_) => "AlreadyReplied",
            SendError::NoRequest(_) => "NoRequest",
        };
        write!(f, "{name}(..)")
    }
}

impl<T> std::error::Error for SendError<T> {}

/// A message could not be put into an actor's mailbox; the message comes back.
///
/// ```
/// let err = iomux::MailboxError::Full(7);
/// assert_eq!(err.to_string(), "mailbox full");
/// assert_eq!(err.into_inner(), 7);
/// ```
#[derive(PartialEq, Eq)]
pub enum MailboxError<M> {
    /// The mailbox holds its capacity of messages ([`Addr::try_send`](crate::Addr::try_send)).
    Full(M),
    /// The actor has stopped.
    Closed(M),
}

impl<M> MailboxError<M> {
    /// The message that was not delivered.
    pub fn into_inner(self) -> M {
        match self {
            MailboxError::Full(m) | MailboxError::Closed(m) => m,
        }
    }
}

impl<M> fmt::Display for MailboxError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MailboxError::Full(_) => "mailbox full",
            MailboxError::Closed(_) => "mailbox closed",
        })
    }
}

impl<M> fmt::Debug for MailboxError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MailboxError::Full(_) => "Full(..)",
            MailboxError::Closed(_) => "Closed(..)",
        })
    }
}

impl<M> std::error::Error for MailboxError<M> {}

/// A body chunk of a streaming reply could not be queued; the chunk comes back.
///
/// ```
/// let err = iomux::ChunkError::Full(bytes::Bytes::from_static(b"data"));
/// assert_eq!(err.to_string(), "stream queue full");
/// ```
#[derive(PartialEq, Eq)]
pub enum ChunkError<T> {
    /// The stream's queue holds [`Config::stream_queue_len`](crate::Config::stream_queue_len)
    /// chunks: the client reads slower than the producer writes.
    Full(T),
    /// The client has gone; the stream is over.
    ClientGone(T),
}

impl<T> ChunkError<T> {
    /// The chunk that was not queued.
    pub fn into_inner(self) -> T {
        match self {
            ChunkError::Full(t) | ChunkError::ClientGone(t) => t,
        }
    }
}

impl<T> fmt::Display for ChunkError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChunkError::Full(_) => "stream queue full",
            ChunkError::ClientGone(_) => "client has gone",
        })
    }
}

impl<T> fmt::Debug for ChunkError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChunkError::Full(_) => "Full(..)",
            ChunkError::ClientGone(_) => "ClientGone(..)",
        })
    }
}

impl<T> std::error::Error for ChunkError<T> {}

/// "Current" request state was asked for where there is none: outside any handler and outside
/// [`with_restored_context!`](crate::with_restored_context).
///
/// ```
/// let err = iomux::context::try_request().unwrap_err();
/// assert_eq!(err.to_string(), "no current request context");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoContextError;

impl fmt::Display for NoContextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no current request context")
    }
}

impl std::error::Error for NoContextError {}

/// A cookie that may not be sent: [`Cookie`](crate::cookie::Cookie) checks each part against
/// RFC 6265 §4.1.1 when it is built, so a cookie that exists can always be written.
///
/// ```
/// use iomux::cookie::Cookie;
/// use iomux::CookieError;
/// assert_eq!(Cookie::new("a b", "1").unwrap_err(), CookieError::Name);
/// assert_eq!(Cookie::new("a", "x;y").unwrap_err().to_string(), "invalid cookie value");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieError {
    /// The name is empty or not a token (RFC 9110 `tchar`s).
    Name,
    /// The value holds a byte other than a `cookie-octet` (no space, `"`, `,`, `;`, `\`,
    /// controls or non-ASCII), except for one pair of surrounding double quotes.
    Value,
    /// The `Domain` is empty or holds a byte other than an ASCII letter, digit, `-` or `.`.
    Domain,
    /// The `Path` holds `;`, a control byte or non-ASCII.
    Path,
}

impl fmt::Display for CookieError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CookieError::Name => "invalid cookie name",
            CookieError::Value => "invalid cookie value",
            CookieError::Domain => "invalid cookie Domain attribute",
            CookieError::Path => "invalid cookie Path attribute",
        })
    }
}

impl std::error::Error for CookieError {}

/// A redirect that cannot be made (see [`Reply::redirect`](crate::Reply::redirect)).
///
/// ```
/// use iomux::http::StatusCode;
/// let err = iomux::Reply::redirect(StatusCode::OK, "/").unwrap_err();
/// assert_eq!(err, iomux::RedirectError::Status(StatusCode::OK));
/// assert_eq!(err.to_string(), "200 is not a redirect status (301, 302, 303, 307 or 308)");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectError {
    /// The status is not 301, 302, 303, 307 or 308.
    Status(http::StatusCode),
    /// The target holds a control byte (CR, LF, NUL, ...): it could not be a `Location` value.
    Target,
}

impl fmt::Display for RedirectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedirectError::Status(status) => write!(
                f,
                "{} is not a redirect status (301, 302, 303, 307 or 308)",
                status.as_u16()
            ),
            RedirectError::Target => f.write_str("redirect target holds a control byte"),
        }
    }
}

impl std::error::Error for RedirectError {}
