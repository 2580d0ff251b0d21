//! Error pages: what the body of a 4xx or 5xx reply is when nobody wrote one (Hunchentoot's
//! ACCEPTOR-STATUS-MESSAGE and its error template directory).
//!
//! A reply gets an error page when its status is 4xx or 5xx and it is a placeholder: built by
//! [`Reply::error`] (as are the errors the connection makes itself: `400` for a malformed
//! request, `413`, `408`, the `500` of a handler that panicked or of a request nobody answered,
//! the shutdown `503`, ...) or sent with an empty body. A reply with a body the application
//! wrote is never changed, nor is a streamed one. Header fields of the reply (`Allow`,
//! `WWW-Authenticate`, `Set-Cookie`, ...) stay; `Content-Type` becomes the page's.
//!
//! Which page is chosen on the [`AcceptorBuilder`](crate::AcceptorBuilder):
//! [`ErrorPages::plain`] (the default: the `404 Not Found` text of [`Reply::error`], and
//! bodiless replies stay bodiless), [`ErrorPages::html`] (a minimal built-in HTML page) or
//! [`ErrorPages::templates`] (pages from a directory). With
//! [`AcceptorBuilder::debug`](crate::AcceptorBuilder::debug) on, the `500` of a handler that
//! panicked also shows the panic message and where it happened; never without it.
//!
//! ```
//! use iomux::error_pages::ErrorPages;
//! let acceptor = iomux::Acceptor::builder()
//!     .listen("127.0.0.1:0")
//!     .error_pages(ErrorPages::html())
//!     .bind(|_: &iomux::Request| iomux::Reply::error(iomux::http::StatusCode::NOT_FOUND))?;
//! # drop(acceptor);
//! # Ok::<(), std::io::Error>(())
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::path::PathBuf;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::StatusCode;

use crate::reply::{status_has_body, Reply};

/// Largest template file read, in bytes: a larger one fails the bind.
const MAX_TEMPLATE: u64 = 1024 * 1024;

/// Where error pages come from; set with
/// [`AcceptorBuilder::error_pages`](crate::AcceptorBuilder::error_pages).
///
/// ```
/// use iomux::error_pages::ErrorPages;
/// let pages = ErrorPages::templates("/srv/www/errors");
/// assert_ne!(pages, ErrorPages::default());
/// assert_eq!(ErrorPages::default(), ErrorPages::plain());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorPages {
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
enum Kind {
    #[default]
    Plain,
    Html,
    Templates(PathBuf),
}

impl ErrorPages {
    /// No pages (the default): [`Reply::error`] bodies stay the plain-text status line
    /// (`404 Not Found`), bodiless replies stay bodiless, so the bytes on the wire are those of
    /// earlier versions. With debug on, the `500` of a handler that panicked adds the panic
    /// after the status line.
    ///
    /// ```
    /// let pages = iomux::error_pages::ErrorPages::plain();
    /// # drop(pages);
    /// ```
    pub fn plain() -> ErrorPages {
        ErrorPages { kind: Kind::Plain }
    }

    /// A minimal built-in HTML page (`text/html; charset=utf-8`) with the status, its reason
    /// and the request's path (HTML-escaped).
    ///
    /// ```
    /// let pages = iomux::error_pages::ErrorPages::html();
    /// # drop(pages);
    /// ```
    pub fn html() -> ErrorPages {
        ErrorPages { kind: Kind::Html }
    }

    /// Pages from the files of `dir`, read once when the acceptor binds (bind fails if the
    /// directory or one of its page files cannot be read, is not UTF-8 or is over 1 MiB). For a
    /// status the first file found of `404.html`, `4xx.html` and `default.html` is used (with
    /// `5` for 5xx statuses), and the built-in HTML page when there is none. Other files are
    /// ignored.
    ///
    /// In a page, `${status}` becomes the status code, `${reason}` its reason phrase, `${path}`
    /// the request's decoded path, and `${detail}` the panic message of a `500` when debug is
    /// on (empty otherwise), each HTML-escaped; other `${...}` stay as they are.
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("iomux-doc-pages-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// std::fs::write(dir.join("404.html"), "<h1>${status}: no ${path} here</h1>")?;
    /// let acceptor = iomux::Acceptor::builder()
    ///     .listen("127.0.0.1:0")
    ///     .error_pages(iomux::error_pages::ErrorPages::templates(&dir))
    ///     .bind(|_: &iomux::Request| iomux::Reply::error(iomux::http::StatusCode::NOT_FOUND))?;
    /// # drop(acceptor);
    /// std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn templates(dir: impl Into<PathBuf>) -> ErrorPages {
        ErrorPages {
            kind: Kind::Templates(dir.into()),
        }
    }

    /// Read the templates, if any: what the acceptor keeps.
    pub(crate) fn load(&self) -> io::Result<Pages> {
        let templates = match &self.kind {
            Kind::Plain => return Ok(Pages::Plain),
            Kind::Html => HashMap::new(),
            Kind::Templates(dir) => read_templates(dir)?,
        };
        Ok(Pages::Html(templates))
    }
}

/// Files named `NNN.html` (a 4xx or 5xx status), `4xx.html`, `5xx.html` or `default.html`.
fn read_templates(dir: &std::path::Path) -> io::Result<HashMap<String, String>> {
    let mut templates = HashMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(stem) = file_name.to_str().and_then(|n| n.strip_suffix(".html")) else {
            continue;
        };
        let wanted = stem == "default"
            || stem == "4xx"
            || stem == "5xx"
            || stem.parse::<u16>().is_ok_and(|c| (400..600).contains(&c)) && stem.len() == 3;
        if !wanted {
            continue;
        }
        let path = entry.path();
        if std::fs::metadata(&path)?.len() > MAX_TEMPLATE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("error page {} is over 1 MiB", path.display()),
            ));
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("error page {}: {e}", path.display())))?;
        templates.insert(stem.to_owned(), text);
    }
    Ok(templates)
}

/// The error pages an acceptor serves.
#[derive(Debug)]
pub(crate) enum Pages {
    Plain,
    /// Templates by file stem (`404`, `4xx`, `default`); the built-in page where none applies.
    Html(HashMap<String, String>),
}

impl Pages {
    /// Does a reply need a request's path (so that the connection keeps it)?
    pub(crate) fn uses_path(&self) -> bool {
        matches!(self, Pages::Html(_))
    }

    /// The reply to send for `reply`: with the error page if it is a placeholder.
    pub(crate) fn apply(&self, reply: Reply, path: &str) -> Reply {
        let status = reply.status();
        let placeholder = (status.is_client_error() || status.is_server_error())
            && status_has_body(status)
            && (reply.body().is_empty() || reply.is_error_placeholder());
        match self {
            Pages::Html(templates) if placeholder => {
                let page = html_page(templates, status, path, None);
                with_page(reply, page)
            }
            _ => reply,
        }
    }

    /// The `500` reply for a handler that panicked; `detail` (the panic, shown only with debug
    /// on) is `None` without debug.
    pub(crate) fn panic_reply(&self, path: &str, detail: Option<&str>) -> Reply {
        let status = StatusCode::INTERNAL_SERVER_ERROR;
        match (self, detail) {
            (Pages::Plain, None) => Reply::error(status),
            (Pages::Plain, Some(detail)) => {
                let body = format!("500 Internal Server Error\n\n{detail}\n");
                Reply::text(body).with_status(status)
            }
            (Pages::Html(templates), detail) => {
                let page = html_page(templates, status, path, detail);
                with_page(Reply::new(status), page)
            }
        }
    }
}

/// `reply` with `page` as its body, in HTML.
fn with_page(reply: Reply, page: String) -> Reply {
    let mut reply = reply.with_body(page);
    reply.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    reply
}

/// The page for `status`: the template that applies, or the built-in one.
fn html_page(
    templates: &HashMap<String, String>,
    status: StatusCode,
    path: &str,
    detail: Option<&str>,
) -> String {
    let code = status.as_str();
    let class = format!("{}xx", &code[..1]);
    let template = [code, class.as_str(), "default"]
        .into_iter()
        .find_map(|stem| templates.get(stem));
    match template {
        Some(template) => substitute(template, status, path, detail.unwrap_or("")),
        None => substitute(&built_in(path, detail), status, path, detail.unwrap_or("")),
    }
}

/// The built-in page, as a template: without the path's paragraph when there is no path (a
/// request refused before its head was read), without `<pre>` when there is no detail.
fn built_in(path: &str, detail: Option<&str>) -> String {
    let mut page = String::from(
        "<!DOCTYPE html>\n\
         <html><head><meta charset=\"utf-8\"><title>${status} ${reason}</title></head>\n\
         <body><h1>${status} ${reason}</h1>\n",
    );
    if !path.is_empty() {
        page.push_str("<p>Path: <code>${path}</code></p>\n");
    }
    if detail.is_some() {
        page.push_str("<pre>${detail}</pre>\n");
    }
    page.push_str("</body></html>\n");
    page
}

/// Fill in `${status}`, `${reason}`, `${path}` and `${detail}`, HTML-escaped.
fn substitute(template: &str, status: StatusCode, path: &str, detail: &str) -> String {
    let reason = status.canonical_reason().unwrap_or("Error");
    let mut out = String::with_capacity(template.len() + path.len() + detail.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            rest = &rest[start..];
            break;
        };
        match &after[..end] {
            "status" => out.push_str(status.as_str()),
            "reason" => escape_into(&mut out, reason),
            "path" => escape_into(&mut out, path),
            "detail" => escape_into(&mut out, detail),
            _ => out.push_str(&rest[start..start + 2 + end + 1]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Append `text` with `&`, `<`, `>`, `"` and `'` escaped.
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

thread_local! {
    /// Where the last panic on this thread happened, when the debug hook is installed.
    static PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Install, once per process, a panic hook that notes where each panic happens (for the debug
/// `500` page) and then calls the hook that was there before. Only acceptors with debug on
/// install it; a hook set later by the application replaces it (the page then has the message
/// without the location).
pub(crate) fn note_panic_locations() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some(location) = info.location() {
                let _ = PANIC_LOCATION.try_with(|l| *l.borrow_mut() = Some(location.to_string()));
            }
            previous(info);
        }));
    });
}

/// Where the last panic on this thread happened, if noted (and forget it).
pub(crate) fn take_panic_location() -> Option<String> {
    PANIC_LOCATION.try_with(|l| l.borrow_mut().take()).ok()?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution_escapes_and_keeps_unknown_names() {
        let out = substitute(
            "${status} ${reason} ${path} ${nope} ${detail} ${",
            StatusCode::NOT_FOUND,
            "/<a href=\"x\">&'",
            "",
        );
        assert_eq!(
            out,
            "404 Not Found /&lt;a href=&quot;x&quot;&gt;&amp;&#39; ${nope}  ${"
        );
    }

    #[test]
    fn fallbacks_in_order() {
        let mut t = HashMap::new();
        t.insert("default".to_string(), "d ${status}".to_string());
        assert_eq!(html_page(&t, StatusCode::GONE, "", None), "d 410");
        t.insert("4xx".to_string(), "c ${status}".to_string());
        assert_eq!(html_page(&t, StatusCode::GONE, "", None), "c 410");
        assert_eq!(html_page(&t, StatusCode::BAD_GATEWAY, "", None), "d 502");
        t.insert("410".to_string(), "s ${status}".to_string());
        assert_eq!(html_page(&t, StatusCode::GONE, "", None), "s 410");
    }

    #[test]
    fn built_in_page_shows_detail_only_when_given() {
        let t = HashMap::new();
        let plain = html_page(&t, StatusCode::INTERNAL_SERVER_ERROR, "/x", None);
        assert!(!plain.contains("<pre>"), "{plain}");
        let debug = html_page(&t, StatusCode::INTERNAL_SERVER_ERROR, "/x", Some("a<b"));
        assert!(debug.contains("<pre>a&lt;b</pre>"), "{debug}");
    }

    #[test]
    fn only_placeholders_get_pages() {
        let pages = Pages::Html(HashMap::new());
        let own = Reply::text("mine").with_status(StatusCode::NOT_FOUND);
        assert_eq!(pages.apply(own, "/").body(), "mine");
        let ok = Reply::new(StatusCode::OK);
        assert!(pages.apply(ok, "/").body().is_empty());
        let bodiless = Reply::new(StatusCode::FORBIDDEN);
        assert!(pages
            .apply(bodiless, "/")
            .body()
            .starts_with(b"<!DOCTYPE html>"));
        let error = Reply::error(StatusCode::NOT_FOUND);
        let page = pages.apply(error, "/p");
        assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
        assert!(page.body().starts_with(b"<!DOCTYPE html>"));
        let plain = Pages::Plain.apply(Reply::error(StatusCode::NOT_FOUND), "/");
        assert_eq!(plain.body(), "404 Not Found\n");
    }
}
