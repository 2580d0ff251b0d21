//! Outgoing cookies: a checked [`Cookie`] and its `Set-Cookie` field (RFC 6265 §4.1), as
//! Hunchentoot's SET-COOKIE.
//!
//! Every part is checked when the cookie is built, so a `Cookie` that exists can always be
//! written: names are tokens, values `cookie-octet`s, and `Domain` and `Path` hold nothing that
//! would end the attribute or the field.
//!
//! ```
//! use std::time::Duration;
//! use iomux::cookie::{Cookie, SameSite};
//!
//! let sid = Cookie::new("sid", "31d4d96e407aad42")?
//!     .path("/")?
//!     .max_age(Duration::from_secs(3600))
//!     .secure(true)
//!     .http_only(true)
//!     .same_site(SameSite::Strict);
//! assert_eq!(
//!     sid.to_string(),
//!     "sid=31d4d96e407aad42; Max-Age=3600; Path=/; Secure; HttpOnly; SameSite=Strict"
//! );
//! let reply = iomux::Reply::text("hello").set_cookie(&sid);
//! assert_eq!(reply.headers().get_all("set-cookie").iter().count(), 1);
//! # Ok::<(), iomux::CookieError>(())
//! ```

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{HeaderValue, SET_COOKIE};

use crate::error::{CookieError, NoContextError};

/// The `SameSite` attribute: when a browser sends the cookie with cross-site requests.
///
/// ```
/// assert_eq!(iomux::cookie::SameSite::Lax.as_str(), "Lax");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SameSite {
    /// Only with same-site requests.
    Strict,
    /// With same-site requests and top-level cross-site navigations (browsers' default).
    Lax,
    /// With every request; browsers accept it only together with `Secure`.
    None,
}

impl SameSite {
    /// The attribute value as written.
    ///
    /// ```
    /// assert_eq!(iomux::cookie::SameSite::None.as_str(), "None");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

/// A cookie to set: name, value and attributes, written as one `Set-Cookie` field.
///
/// Attributes are written in a fixed order: `Expires`, `Max-Age`, `Domain`, `Path`, `Secure`,
/// `HttpOnly`, `SameSite`. Send it with [`Reply::set_cookie`](crate::Reply::set_cookie), or with
/// [`set_cookie`] on the reply under construction.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use iomux::cookie::Cookie;
/// let c = Cookie::new("lang", "fr")?
///     .domain("example.com")?
///     .expires(UNIX_EPOCH + Duration::from_secs(784111777));
/// assert_eq!(c.to_string(), "lang=fr; Expires=Sun, 06 Nov 1994 08:49:37 GMT; Domain=example.com");
/// # Ok::<(), iomux::CookieError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cookie {
    name: String,
    value: String,
    expires: Option<SystemTime>,
    max_age: Option<Duration>,
    domain: Option<String>,
    path: Option<String>,
    secure: bool,
    http_only: bool,
    same_site: Option<SameSite>,
}

impl Cookie {
    /// A session cookie (no `Expires`, no `Max-Age`) with this name and value.
    ///
    /// # Errors
    /// [`CookieError::Name`] if `name` is empty or not a token; [`CookieError::Value`] if
    /// `value` holds other than `cookie-octet`s (`%x21 / %x23-2B / %x2D-3A / %x3C-5B /
    /// %x5D-7E`), optionally inside one pair of double quotes. Encode other values first (for
    /// example percent- or base64-encode them).
    ///
    /// ```
    /// use iomux::{cookie::Cookie, CookieError};
    /// assert!(Cookie::new("id", "\"quoted\"").is_ok());
    /// assert!(Cookie::new("id", "").is_ok());
    /// assert_eq!(Cookie::new("", "x").unwrap_err(), CookieError::Name);
    /// assert_eq!(Cookie::new("id", "a b").unwrap_err(), CookieError::Value);
    /// assert_eq!(Cookie::new("id", "a\r\nSet-Cookie: x=y").unwrap_err(), CookieError::Value);
    /// ```
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Result<Cookie, CookieError> {
        let (name, value) = (name.into(), value.into());
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(CookieError::Name);
        }
        let inner = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(&value);
        if !inner.bytes().all(is_cookie_octet) {
            return Err(CookieError::Value);
        }
        Ok(Cookie {
            name,
            value,
            expires: None,
            max_age: None,
            domain: None,
            path: None,
            secure: false,
            http_only: false,
            same_site: None,
        })
    }

    /// The name.
    ///
    /// ```
    /// assert_eq!(iomux::cookie::Cookie::new("a", "1")?.name(), "a");
    /// # Ok::<(), iomux::CookieError>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value, as it will be written.
    ///
    /// ```
    /// assert_eq!(iomux::cookie::Cookie::new("a", "1")?.value(), "1");
    /// # Ok::<(), iomux::CookieError>(())
    /// ```
    pub fn value(&self) -> &str {
        &self.value
    }

    /// `Expires`: the cookie is dropped after this time (written as an IMF-fixdate, e.g.
    /// `Sun, 06 Nov 1994 08:49:37 GMT`; times before 1970 are written as 1970, after 9999 as
    /// 9999).
    ///
    /// ```
    /// let c = iomux::cookie::Cookie::new("a", "1")?.expires(std::time::UNIX_EPOCH);
    /// assert_eq!(c.to_string(), "a=1; Expires=Thu, 01 Jan 1970 00:00:00 GMT");
    /// # Ok::<(), iomux::CookieError>(())
    /// ```
    pub fn expires(mut self, at: SystemTime) -> Cookie {
        self.expires = Some(at);
        self
    }

    /// `Max-Age`: the cookie is dropped this long after it is received, in whole seconds (it
    /// takes precedence over `Expires` in browsers that know it; `0` drops it at once).
    ///
    /// ```
    /// let c = iomux::cookie::Cookie::new("a", "1")?.max_age(std::time::Duration::from_secs(60));
    /// assert_eq!(c.to_string(), "a=1; Max-Age=60");
    /// # Ok::<(), iomux::CookieError>(())
    /// ```
    pub fn max_age(mut self, age: Duration) -> Cookie {
        self.max_age = Some(age);
        self
    }

    /// `Domain`: the host and its subdomains receive the cookie (without it, only the host
    /// that set it).
    ///
    /// # Errors
    /// [`CookieError::Domain`] unless `domain` is ASCII letters, digits, `-` and `.` (an
    /// internationalised name must be given in its `xn--` form).
    ///
    /// ```
    /// use iomux::cookie::Cookie;
    /// assert!(Cookie::new("a", "1")?.domain("example.com").is_ok());
    /// assert!(Cookie::new("a", "1")?.domain("example.com; Secure").is_err());
    /// # Ok::<(), iomux::CookieError>(())
    /// ```
    pub fn domain(mut self, domain: &str) -> Result<Cookie, CookieError> {
        let valid = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'.';
        if domain.is_empty() || !domain.bytes().all(valid) {
            return Err(CookieError::Domain);
        }
        self.domain = Some(domain.to_owned());
        Ok(self)
    }

    /// `Path`: requests under this path receive the cookie.
    ///
    /// # Errors
    /// [`CookieError::Path`] if `path` holds `;`, a control byte or non-ASCII.
    ///
    /// ```
    /// use iomux::cookie::Cookie;
    /// assert_eq!(Cookie::new("a", "1")?.path("/app")?.to_string(), "a=1; Path=/app");
    /// assert!(Cookie::new("a", "1")?.path("/; Domain=evil").is_err());
    /// # Ok::<(), iomux::CookieError>(())
    /// ```
    pub fn path(mut self, path: &str) -> Result<Cookie, CookieError> {
        if !path.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b';') {
            return Err(CookieError::Path);
        }
        self.path = Some(path.to_owned());
        Ok(self)
    }

    /// `Secure`: sent over HTTPS only.
    ///
    /// ```
    /// let c = iomux::cookie::Cookie::new("a", "1")?.secure(true);
    /// assert_eq!(c.to_string(), "a=1; Secure");
    /// # Ok::<(), iomux::CookieError>(())
    /// ```
    pub fn secure(mut self, secure: bool) -> Cookie {
        self.secure = secure;
        self
    }

    /// `HttpOnly`: hidden from scripts in the page.
    ///
    /// ```
    /// let c = iomux::cookie::Cookie::new("a", "1")?.http_only(true);
    /// assert_eq!(c.to_string(), "a=1; HttpOnly");
    /// # Ok::<(), iomux::CookieError>(())
    /// ```
    pub fn http_only(mut self, http_only: bool) -> Cookie {
        self.http_only = http_only;
        self
    }

    /// `SameSite`; see [`SameSite`].
    ///
    /// ```
    /// use iomux::cookie::{Cookie, SameSite};
    /// let c = Cookie::new("a", "1")?.same_site(SameSite::None).secure(true);
    /// assert_eq!(c.to_string(), "a=1; Secure; SameSite=None");
    /// # Ok::<(), iomux::CookieError>(())
    /// ```
    pub fn same_site(mut self, same_site: SameSite) -> Cookie {
        self.same_site = Some(same_site);
        self
    }

    /// The cookie turned into its own removal: empty value, `Max-Age=0` and an `Expires` in
    /// the past; `Domain` and `Path` stay, as the browser matches them to find the cookie.
    ///
    /// ```
    /// let c = iomux::cookie::Cookie::new("sid", "abc")?.path("/")?.removal();
    /// assert_eq!(c.to_string(), "sid=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/");
    /// # Ok::<(), iomux::CookieError>(())
    /// ```
    pub fn removal(mut self) -> Cookie {
        self.value.clear();
        self.expires = Some(UNIX_EPOCH);
        self.max_age = Some(Duration::ZERO);
        self
    }

    /// The `Set-Cookie` field value.
    ///
    /// ```
    /// let c = iomux::cookie::Cookie::new("a", "1")?;
    /// assert_eq!(c.header_value(), "a=1");
    /// # Ok::<(), iomux::CookieError>(())
    /// ```
    pub fn header_value(&self) -> HeaderValue {
        // Every part was checked to be visible ASCII or space when it was set.
        HeaderValue::from_str(&self.to_string()).expect("cookie parts are checked when set")
    }
}

impl fmt::Display for Cookie {
    /// The `Set-Cookie` field value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.value)?;
        if let Some(at) = self.expires {
            /// 9999-12-31T23:59:59Z, the last time an IMF-fixdate can hold.
            const LAST: Duration = Duration::from_secs(253_402_300_799);
            let since = at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
            let at = UNIX_EPOCH + since.min(LAST);
            write!(f, "; Expires={}", httpdate::fmt_http_date(at))?;
        }
        if let Some(age) = self.max_age {
            write!(f, "; Max-Age={}", age.as_secs())?;
        }
        if let Some(domain) = &self.domain {
            write!(f, "; Domain={domain}")?;
        }
        if let Some(path) = &self.path {
            write!(f, "; Path={path}")?;
        }
        if self.secure {
            f.write_str("; Secure")?;
        }
        if self.http_only {
            f.write_str("; HttpOnly")?;
        }
        if let Some(same_site) = self.same_site {
            write!(f, "; SameSite={}", same_site.as_str())?;
        }
        Ok(())
    }
}

/// Add a `Set-Cookie` field for `cookie` to the reply under construction (Hunchentoot's
/// SET-COOKIE), with [`context::append_header`](crate::context::append_header): it goes out with
/// whatever reply the current request gets, also one sent later from a restored context, beside
/// the cookies that reply sets itself ([`Reply::set_cookie`](crate::Reply::set_cookie)).
///
/// # Errors
/// [`NoContextError`] outside any request context.
///
/// ```
/// let c = iomux::cookie::Cookie::new("a", "1")?;
/// assert!(iomux::cookie::set_cookie(&c).is_err()); // no current request here
/// # Ok::<(), iomux::CookieError>(())
/// ```
pub fn set_cookie(cookie: &Cookie) -> Result<(), NoContextError> {
    crate::context::try_request()?;
    crate::context::append_header(SET_COOKIE, cookie.header_value());
    Ok(())
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 6265 `cookie-octet`.
fn is_cookie_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e)
}
