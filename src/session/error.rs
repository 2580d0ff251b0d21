//! What can go wrong with sessions: a store's settings ([`SessionConfigError`]) and a session
//! operation ([`SessionError`]).

use std::fmt;

/// A [`SessionConfig`](super::SessionConfig) setting that cannot work; from
/// [`Sessions::new`](super::Sessions::new) and
/// [`SessionConfig::validate`](super::SessionConfig::validate).
///
/// ```
/// use iomux::session::SessionConfigError;
/// assert_eq!(
///     SessionConfigError::ZeroIdleTimeout.to_string(),
///     "the session idle timeout is zero: every session would expire at once"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionConfigError {
    /// The cookie name is empty or not an RFC 6265 token.
    InvalidCookieName(String),
    /// A `__Host-` or `__Secure-` cookie name without `secure`: browsers would refuse the cookie.
    PrefixNeedsSecure(String),
    /// `SameSite=None` without `secure`: browsers would refuse the cookie.
    SameSiteNoneNeedsSecure,
    /// An idle timeout of zero.
    ZeroIdleTimeout,
    /// A collection interval of zero (the collector would never sleep).
    ZeroCollectInterval,
    /// `max_sessions` of `Some(0)`: no session could ever start.
    ZeroMaxSessions,
}

impl fmt::Display for SessionConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionConfigError::InvalidCookieName(name) => write!(
                f,
                "session cookie name {name:?} is not a token (letters, digits and !#$%&'*+-.^_`|~)"
            ),
            SessionConfigError::PrefixNeedsSecure(name) => write!(
                f,
                "session cookie name {name:?} has a __Host-/__Secure- prefix, which needs `secure`"
            ),
            SessionConfigError::SameSiteNoneNeedsSecure => {
                f.write_str("SameSite=None needs `secure`: browsers refuse the cookie otherwise")
            }
            SessionConfigError::ZeroIdleTimeout => {
                f.write_str("the session idle timeout is zero: every session would expire at once")
            }
            SessionConfigError::ZeroCollectInterval => {
                f.write_str("the session collection interval is zero")
            }
            SessionConfigError::ZeroMaxSessions => {
                f.write_str("max_sessions is 0: no session could start")
            }
        }
    }
}

impl std::error::Error for SessionConfigError {}

/// A session operation that could not be done; nothing was changed.
///
/// ```
/// use iomux::session::SessionError;
/// assert_eq!(SessionError::NoRequest.to_string(), "no current request context");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// Called outside any request context (neither in a handler nor inside
    /// [`with_restored_context!`](crate::with_restored_context)).
    NoRequest,
    /// The reply right of the request has been used (the reply or its head was sent, or its
    /// [`Responder`](crate::Responder) taken), so a `Set-Cookie` could no longer reach the
    /// client.
    ReplyStarted,
    /// [`SessionConfig::max_sessions`](super::SessionConfig::max_sessions) live sessions exist.
    TooManySessions {
        /// The limit.
        max: usize,
    },
    /// The session was removed or has expired.
    Removed,
    /// The session is not the current request's, so its new cookie would go to someone else.
    NotCurrent,
    /// The operating system's random source failed (no id could be made).
    Random,
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::NoRequest => f.write_str("no current request context"),
            SessionError::ReplyStarted => {
                f.write_str("the reply has been sent already: no cookie can be set")
            }
            SessionError::TooManySessions { max } => {
                write!(f, "too many sessions (the limit is {max})")
            }
            SessionError::Removed => f.write_str("the session was removed or has expired"),
            SessionError::NotCurrent => f.write_str("the session is not the current request's"),
            SessionError::Random => f.write_str("the operating system's random source failed"),
        }
    }
}

impl std::error::Error for SessionError {}
