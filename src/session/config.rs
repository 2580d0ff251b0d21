//! [`SessionConfig`]: the settings of one [`Sessions`](super::Sessions) store, and the checks
//! [`Sessions::new`](super::Sessions::new) makes of them.

use std::fmt;
use std::time::Duration;

use super::error::SessionConfigError;

/// The settings of a [`Sessions`](super::Sessions) store. Every field documents its default.
///
/// Build one with struct-update syntax from [`SessionConfig::default()`]:
///
/// ```
/// use std::time::Duration;
/// use iomux::session::{SameSite, SessionConfig};
/// let config = SessionConfig {
///     idle_timeout: Duration::from_secs(15 * 60),
///     secure: true,
///     same_site: SameSite::Strict,
///     ..SessionConfig::default()
/// };
/// assert_eq!(config.cookie_name, "iomux-session");
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Name of the session cookie. An RFC 6265 token (letters, digits and
    /// ``!#$%&'*+-.^_`|~``); a name starting with `__Host-` or `__Secure-` needs
    /// [`secure`](Self::secure). Default: `iomux-session`.
    pub cookie_name: String,
    /// How long a session lives without being used; every request that finds it (through
    /// [`Sessions::start`](super::Sessions::start) or
    /// [`Sessions::current`](super::Sessions::current)) starts the time again. One session can
    /// have its own with [`Session::set_idle_timeout`](super::Session::set_idle_timeout).
    /// Default: 30 minutes (Hunchentoot's `*session-max-time*`).
    pub idle_timeout: Duration,
    /// Add `Secure` to the cookie: browsers then send it over HTTPS only. Set it whenever the
    /// site is served over HTTPS (through a TLS-terminating proxy). Default: false.
    pub secure: bool,
    /// The cookie's `SameSite` attribute. Default: [`SameSite::Lax`].
    pub same_site: SameSite,
    /// A session is only found by requests with the `User-Agent` it was created with
    /// (Hunchentoot's `*use-user-agent-for-sessions*`); another agent presenting its id gets no
    /// session, and the session stays as it was. Default: false.
    pub bind_user_agent: bool,
    /// A session is only found by requests from the IP address it was created from
    /// (Hunchentoot's `*use-remote-addr-for-sessions*`). Off by default: clients behind NAT
    /// pools and mobile clients change address. Default: false.
    pub bind_remote_addr: bool,
    /// Most live sessions. When reached, expired sessions are collected at once; if the store is
    /// still full, [`Sessions::start`](super::Sessions::start) refuses to create one with
    /// [`SessionError::TooManySessions`](super::SessionError::TooManySessions) (existing
    /// sessions are never evicted for a newcomer). `None`: no limit. Default: `None`.
    pub max_sessions: Option<usize>,
    /// How often the collector started by
    /// [`Sessions::spawn_collector`](super::Sessions::spawn_collector) removes expired
    /// sessions. Default: 60 s.
    pub collect_interval: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            cookie_name: String::from("iomux-session"),
            idle_timeout: Duration::from_secs(30 * 60),
            secure: false,
            same_site: SameSite::Lax,
            bind_user_agent: false,
            bind_remote_addr: false,
            max_sessions: None,
            collect_interval: Duration::from_secs(60),
        }
    }
}

impl SessionConfig {
    /// Check the settings as [`Sessions::new`](super::Sessions::new) does.
    ///
    /// ```
    /// use iomux::session::{SessionConfig, SessionConfigError};
    /// let bad = SessionConfig { cookie_name: "my session".into(), ..Default::default() };
    /// assert_eq!(bad.validate(), Err(SessionConfigError::InvalidCookieName("my session".into())));
    /// ```
    ///
    /// # Errors
    /// The first setting that cannot work, as a [`SessionConfigError`].
    pub fn validate(&self) -> Result<(), SessionConfigError> {
        let name = &self.cookie_name;
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(SessionConfigError::InvalidCookieName(name.clone()));
        }
        if !self.secure && (name.starts_with("__Host-") || name.starts_with("__Secure-")) {
            return Err(SessionConfigError::PrefixNeedsSecure(name.clone()));
        }
        if self.same_site == SameSite::None && !self.secure {
            return Err(SessionConfigError::SameSiteNoneNeedsSecure);
        }
        if self.idle_timeout.is_zero() {
            return Err(SessionConfigError::ZeroIdleTimeout);
        }
        if self.collect_interval.is_zero() {
            return Err(SessionConfigError::ZeroCollectInterval);
        }
        if self.max_sessions == Some(0) {
            return Err(SessionConfigError::ZeroMaxSessions);
        }
        Ok(())
    }
}

/// An RFC 9110 token byte (RFC 6265's cookie-name).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The `SameSite` attribute of the session cookie: when a browser sends the cookie with
/// requests that another site started.
///
/// ```
/// assert_eq!(iomux::session::SameSite::Lax.to_string(), "Lax");
/// assert_eq!(iomux::session::SameSite::default(), iomux::session::SameSite::Lax);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SameSite {
    /// Only with requests from the site itself.
    Strict,
    /// Also with top-level navigations from other sites (following a link), not with their
    /// sub-requests or form posts. The default.
    #[default]
    Lax,
    /// With every request; browsers accept this only together with `Secure`, so it needs
    /// [`SessionConfig::secure`].
    None,
}

impl SameSite {
    /// The attribute value.
    ///
    /// ```
    /// assert_eq!(iomux::session::SameSite::Strict.as_str(), "Strict");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

impl fmt::Display for SameSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: impl FnOnce(&mut SessionConfig)) -> Result<(), SessionConfigError> {
        let mut config = SessionConfig::default();
        f(&mut config);
        config.validate()
    }

    #[test]
    fn the_default_is_valid() {
        assert_eq!(SessionConfig::default().validate(), Ok(()));
    }

    #[test]
    fn each_check() {
        for name in ["", "a b", "a;b", "a=b", "sé", "a\"b", "a,b"] {
            assert_eq!(
                with(|c| c.cookie_name = name.into()),
                Err(SessionConfigError::InvalidCookieName(name.into()))
            );
        }
        assert_eq!(
            with(|c| c.cookie_name = "__Host-sid".into()),
            Err(SessionConfigError::PrefixNeedsSecure("__Host-sid".into()))
        );
        assert_eq!(
            with(|c| {
                c.cookie_name = "__Host-sid".into();
                c.secure = true;
            }),
            Ok(())
        );
        assert_eq!(
            with(|c| c.same_site = SameSite::None),
            Err(SessionConfigError::SameSiteNoneNeedsSecure)
        );
        assert_eq!(
            with(|c| c.idle_timeout = Duration::ZERO),
            Err(SessionConfigError::ZeroIdleTimeout)
        );
        assert_eq!(
            with(|c| c.collect_interval = Duration::ZERO),
            Err(SessionConfigError::ZeroCollectInterval)
        );
        assert_eq!(
            with(|c| c.max_sessions = Some(0)),
            Err(SessionConfigError::ZeroMaxSessions)
        );
    }
}
