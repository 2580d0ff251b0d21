//! Static files: [`StaticFiles`] serves a folder (Hunchentoot's
//! `create-folder-dispatcher-and-handler`), [`StaticFile`] one file
//! (`create-static-file-dispatcher-and-handler`).
//!
//! Both answer `GET` and `HEAD` (other methods: `405` with `Allow: GET, HEAD`) with
//!
//! - `Content-Type` from the file name's extension ([`mime_type`]), `Last-Modified`, a strong
//!   `ETag` made of the size and modification time, and `Accept-Ranges: bytes`;
//! - `304 Not Modified` for a matching `If-None-Match`, or (without it) an `If-Modified-Since`
//!   no older than the file; `412` for a failed `If-Match` / `If-Unmodified-Since`;
//! - for a `GET` with `Range`: `206` with `Content-Range` for one range, `206`
//!   `multipart/byteranges` for several, `416` with `Content-Range: bytes */LENGTH` when none is
//!   in the file; `If-Range` with another version's validator gets the whole file. Invalid
//!   `Range` fields, more than 32 ranges, or overlapping ranges adding up to more than the file
//!   are ignored (`200`).
//!
//! The handler itself never touches the file system: it takes the request's reply right and
//! defers, and the work runs on smol's blocking pool. Bodies up to
//! [`max_buffered`](StaticFiles::max_buffered) bytes (default 1 MiB) are read whole and sent
//! with `Content-Length`; larger ones are streamed in 64 KiB slices, each read on the blocking
//! pool and queued to a [`BodySender`](crate::BodySender), so a client reading slowly holds
//! back the reading and the event loop never waits for the disk. The core's streams have no
//! declared length, so such a body is chunked on HTTP/1.1 (close-delimited on HTTP/1.0), and a
//! `HEAD` of such a file answers with the same `Transfer-Encoding: chunked` head.
//!
//! ## What a folder refuses
//!
//! A request path is split at `/` before percent-decoding, and each segment is decoded on its
//! own. These get `403 Forbidden`, whatever exists on disk: a `.` or `..` segment (also encoded,
//! `%2e%2e`), a segment containing `/`, `\` or NUL once decoded (`%2f`, `%5c`, `%00`), an empty
//! segment before the last (`//`: what follows would be an absolute path), a segment that is
//! not UTF-8 once decoded (`%c0%ae`), and a target that is not a path. A path that resolves,
//! through symbolic links, to somewhere outside the root's canonical path gets `404 Not Found`
//! (as if absent), and so do names that do not exist or are not regular files or directories.
//! A directory gets `403` unless [`listing`](StaticFiles::listing) is on. This protects against
//! what requests ask for; it does not guard against someone who can write into the root
//! swapping a path component for a link while a request is being resolved.
//!
//! ```
//! use std::io::{Read, Write};
//! use async_executor::LocalExecutor;
//! use iomux::router::Router;
//! use iomux::static_files::StaticFiles;
//! use iomux::Acceptor;
//!
//! let root = std::env::temp_dir().join(format!("iomux-doc-static-{}", std::process::id()));
//! std::fs::create_dir_all(&root)?;
//! std::fs::write(root.join("hello.txt"), "Hello from a file\n")?;
//!
//! let router = Router::new().prefix("/static/", StaticFiles::new(&root));
//! let acceptor = Acceptor::bind("127.0.0.1:0", router)?;
//! let (addr, stop) = (acceptor.local_addr(), acceptor.stop_handle());
//! let client = std::thread::spawn(move || {
//!     let mut s = std::net::TcpStream::connect(addr).unwrap();
//!     s.write_all(b"GET /static/hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
//!     let mut reply = String::new();
//!     s.read_to_string(&mut reply).unwrap();
//!     stop.stop();
//!     reply
//! });
//! let ex = LocalExecutor::new();
//! async_io::block_on(ex.run(acceptor.serve(&ex)))?;
//! let reply = client.join().unwrap();
//! assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"));
//! assert!(reply.contains("\r\ncontent-type: text/plain; charset=utf-8\r\n"));
//! assert!(reply.contains("\r\netag: \""));
//! assert!(reply.ends_with("\r\n\r\nHello from a file\n"));
//! std::fs::remove_dir_all(&root)?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::header::{
    HeaderName, HeaderValue, ACCEPT_RANGES, ALLOW, CONTENT_RANGE, CONTENT_TYPE, ETAG,
    LAST_MODIFIED, LOCATION,
};
use http::StatusCode;

use crate::context;
use crate::dispatch::{Handled, Handler};
use crate::reply::Reply;
use crate::request::Request;
use crate::router;

mod body;
mod conditional;
mod listing;
mod mime;

pub use mime::{mime_type, DEFAULT_TYPE};

use body::Pieces;
use conditional::{Conditions, Precondition, Ranges, Validators};

/// Default of [`StaticFiles::max_buffered`]: 1 MiB.
///
/// ```
/// assert_eq!(iomux::static_files::DEFAULT_MAX_BUFFERED, 1 << 20);
/// ```
pub const DEFAULT_MAX_BUFFERED: u64 = 1024 * 1024;

/// Serves the files under a folder; a [`Handler`] to mount on a
/// [`Router`](crate::router::Router) prefix, where it serves the rest of the path
/// ([`Captures::rest`](crate::router::Captures::rest)), or to use alone, where it serves the
/// whole path. See the [module documentation](self) for what it answers and refuses.
///
/// ```
/// use iomux::router::Router;
/// use iomux::static_files::StaticFiles;
/// let router = Router::new()
///     .prefix("/static/", StaticFiles::new("public"))
///     .prefix("/files/", StaticFiles::new("/srv/files").listing(true));
/// # let _ = router;
/// ```
#[derive(Debug, Clone)]
pub struct StaticFiles {
    root: PathBuf,
    listing: bool,
    max_buffered: u64,
}

impl StaticFiles {
    /// Serve the files under `root` (resolved, through symbolic links, at each request: it may
    /// be created later). Directory listing is off.
    ///
    /// ```
    /// let _ = iomux::static_files::StaticFiles::new("public");
    /// ```
    pub fn new(root: impl Into<PathBuf>) -> StaticFiles {
        StaticFiles {
            root: root.into(),
            listing: false,
            max_buffered: DEFAULT_MAX_BUFFERED,
        }
    }

    /// Answer a directory with an HTML index of its entries (off by default: `403`). A
    /// directory asked for without its trailing slash is redirected (`301`) to it, so that
    /// the index's relative links work. Entries that lead out of the root are not listed.
    ///
    /// ```
    /// let _ = iomux::static_files::StaticFiles::new("public").listing(true);
    /// ```
    pub fn listing(mut self, on: bool) -> StaticFiles {
        self.listing = on;
        self
    }

    /// Bodies up to this many bytes are read whole and sent with `Content-Length`; larger ones
    /// are streamed in slices. Default: [`DEFAULT_MAX_BUFFERED`].
    ///
    /// ```
    /// let _ = iomux::static_files::StaticFiles::new("public").max_buffered(256 * 1024);
    /// ```
    pub fn max_buffered(mut self, bytes: u64) -> StaticFiles {
        self.max_buffered = bytes;
        self
    }
}

impl Handler for StaticFiles {
    fn handle(&self, request: &Request) -> Handled {
        if let Some(refusal) = refuse_method(request) {
            return refusal.into();
        }
        let wanted = match Wanted::of(request) {
            Ok(wanted) => wanted,
            Err(status) => {
                log::debug!("static path refused ({status}): {}", request.target());
                return Reply::error(status).into();
            }
        };
        start(Job {
            source: Source::Folder {
                root: self.root.clone(),
                wanted,
                listing: self.listing,
            },
            conditions: Conditions::of(request),
            is_head: request.method() == "HEAD",
            max_buffered: self.max_buffered,
        })
    }
}

/// Serves one file, whatever the request's path; a [`Handler`] to give to a route.
///
/// ```
/// use iomux::router::Router;
/// use iomux::static_files::StaticFile;
/// let router = Router::new()
///     .get("/favicon.ico", StaticFile::new("public/favicon.ico"))
///     .get("/feed", StaticFile::new("data/feed.xml").content_type("application/atom+xml"));
/// # let _ = router;
/// ```
#[derive(Debug, Clone)]
pub struct StaticFile {
    path: PathBuf,
    content_type: Option<&'static str>,
    max_buffered: u64,
}

impl StaticFile {
    /// Serve the file at `path` (opened at each request), typed by its extension.
    ///
    /// ```
    /// let _ = iomux::static_files::StaticFile::new("public/index.html");
    /// ```
    pub fn new(path: impl Into<PathBuf>) -> StaticFile {
        StaticFile {
            path: path.into(),
            content_type: None,
            max_buffered: DEFAULT_MAX_BUFFERED,
        }
    }

    /// Send this `Content-Type` instead of the one the extension gives.
    ///
    /// ```
    /// let _ = iomux::static_files::StaticFile::new("VERSION").content_type("text/plain");
    /// ```
    pub fn content_type(mut self, content_type: &'static str) -> StaticFile {
        self.content_type = Some(content_type);
        self
    }

    /// As [`StaticFiles::max_buffered`].
    ///
    /// ```
    /// let _ = iomux::static_files::StaticFile::new("big.iso").max_buffered(0);
    /// ```
    pub fn max_buffered(mut self, bytes: u64) -> StaticFile {
        self.max_buffered = bytes;
        self
    }
}

impl Handler for StaticFile {
    fn handle(&self, request: &Request) -> Handled {
        if let Some(refusal) = refuse_method(request) {
            return refusal.into();
        }
        start(Job {
            source: Source::File {
                path: self.path.clone(),
                content_type: self.content_type,
            },
            conditions: Conditions::of(request),
            is_head: request.method() == "HEAD",
            max_buffered: self.max_buffered,
        })
    }
}

/// `405` for methods other than `GET` and `HEAD`.
fn refuse_method(request: &Request) -> Option<Reply> {
    match request.method() {
        "GET" | "HEAD" => None,
        _ => Some(
            Reply::error(StatusCode::METHOD_NOT_ALLOWED)
                .header(ALLOW, HeaderValue::from_static("GET, HEAD")),
        ),
    }
}

/// The part of a folder a request asks for, checked segment by segment.
#[derive(Debug, Clone)]
struct Wanted {
    /// Decoded path segments below the root; none for the root itself.
    segments: Vec<String>,
    /// The path ends with `/` (a directory is asked for).
    slash: bool,
    /// The request's decoded path, for a directory index's title.
    path: String,
    /// The request's path before decoding, for a redirect to the directory with its slash.
    raw_path: String,
}

impl Wanted {
    fn of(request: &Request) -> Result<Wanted, StatusCode> {
        let raw = request.raw_path();
        let after_root = raw.strip_prefix('/').ok_or(StatusCode::FORBIDDEN)?;
        let raw_segments: Vec<&str> = after_root.split('/').collect();
        let mut decoded = Vec::with_capacity(raw_segments.len());
        for (i, raw_segment) in raw_segments.iter().enumerate() {
            if raw_segment.is_empty() && i + 1 < raw_segments.len() {
                return Err(StatusCode::FORBIDDEN);
            }
            let bytes: Vec<u8> = percent_encoding::percent_decode_str(raw_segment).collect();
            let segment = String::from_utf8(bytes).map_err(|_| StatusCode::FORBIDDEN)?;
            if segment == "." || segment == ".." || segment.contains(['/', '\\', '\0']) {
                return Err(StatusCode::FORBIDDEN);
            }
            decoded.push(segment);
        }
        // The path as the router matched it; a route's rest is a suffix of it.
        let path = format!("/{}", decoded.join("/"));
        let captures = router::captures();
        let rest = captures.rest().unwrap_or(&path);
        if !path.ends_with(rest) {
            return Err(StatusCode::NOT_FOUND);
        }
        let below = &path[path.len() - rest.len()..];
        let below = below.strip_prefix('/').unwrap_or(below);
        Ok(Wanted {
            segments: below
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            slash: below.is_empty() || below.ends_with('/'),
            path,
            raw_path: raw.to_owned(),
        })
    }
}

/// Where the file comes from.
#[derive(Debug)]
enum Source {
    Folder {
        root: PathBuf,
        wanted: Wanted,
        listing: bool,
    },
    File {
        path: PathBuf,
        content_type: Option<&'static str>,
    },
}

/// Everything the off-loop work needs, taken from the request.
#[derive(Debug)]
struct Job {
    source: Source,
    conditions: Conditions,
    is_head: bool,
    max_buffered: u64,
}

/// What the off-loop work decided.
enum Plan {
    /// A whole reply.
    Reply(Reply),
    /// A head now and the pieces of the body streamed from the file (no file: head only).
    Stream {
        head: Reply,
        file: Option<File>,
        pieces: Pieces,
    },
}

/// Defer: take the reply right, and run the job on smol's blocking pool; a large body is then
/// streamed from a task on smol's global executor (it only moves buffers: the reads are on the
/// blocking pool too).
fn start(job: Job) -> Handled {
    if context::try_request().is_err() {
        log::warn!("static files: handler called outside a request context");
        return Reply::error(StatusCode::INTERNAL_SERVER_ERROR).into();
    }
    let Some(responder) = context::responder() else {
        return Handled::Deferred; // already answered by someone else
    };
    let remote = responder.remote();
    smol::spawn(async move {
        match smol::unblock(move || job.plan()).await {
            Plan::Reply(reply) => {
                let _ = remote.send(reply);
            }
            Plan::Stream { head, file, pieces } => {
                if let (Ok(body), Some(file)) = (remote.start_stream(head), file) {
                    pieces.stream(file, body).await;
                }
            }
        }
    })
    .detach();
    Handled::Deferred
}

impl Job {
    /// Resolve, open and decide (blocking).
    fn plan(self) -> Plan {
        match self.try_plan() {
            Ok(plan) => plan,
            Err(status) => Plan::Reply(Reply::error(status)),
        }
    }

    fn try_plan(self) -> Result<Plan, StatusCode> {
        let (path, content_type) = match &self.source {
            Source::File { path, content_type } => (
                path.clone(),
                content_type.unwrap_or_else(|| mime_type(path)),
            ),
            Source::Folder {
                root,
                wanted,
                listing,
            } => {
                let (path, root) = resolve(root, &wanted.segments)?;
                if path.is_dir() {
                    return directory(&path, &root, wanted, *listing).map(Plan::Reply);
                }
                if wanted.slash {
                    return Err(StatusCode::NOT_FOUND); // a file asked for as a directory
                }
                let name = wanted.segments.last().map_or(Path::new(""), Path::new);
                (path, mime_type(name))
            }
        };
        // Only regular files: a directory, device or pipe (whose opening alone could wait for
        // ever) is not found. Checked before opening, and again on what was opened.
        let regular = |meta: &std::fs::Metadata| meta.is_file().then_some(());
        let meta = std::fs::metadata(&path).map_err(|e| status_of(&e, &path))?;
        regular(&meta).ok_or(StatusCode::NOT_FOUND)?;
        let mut file = File::open(&path).map_err(|e| status_of(&e, &path))?;
        let meta = file.metadata().map_err(|e| status_of(&e, &path))?;
        regular(&meta).ok_or(StatusCode::NOT_FOUND)?;
        let validators = Validators::of(&meta);
        let len = meta.len();
        let mut head = Reply::new(StatusCode::OK);
        set(&mut head, ETAG, &validators.etag);
        if let Some(date) = validators.last_modified() {
            set(&mut head, LAST_MODIFIED, &date);
        }
        match conditional::precondition(&self.conditions, &validators) {
            Precondition::Proceed => {}
            Precondition::NotModified => {
                return Ok(Plan::Reply(head.with_status(StatusCode::NOT_MODIFIED)));
            }
            Precondition::Failed => {
                return Ok(Plan::Reply(Reply::error(StatusCode::PRECONDITION_FAILED)));
            }
        }
        head.headers_mut()
            .insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        let pieces = match conditional::ranges(&self.conditions, &validators, len) {
            Ranges::Full => {
                set(&mut head, CONTENT_TYPE, content_type);
                Pieces::range(0, len)
            }
            Ranges::Partial(ranges) if ranges.len() == 1 => {
                let (first, last) = ranges[0];
                head = head.with_status(StatusCode::PARTIAL_CONTENT);
                set(&mut head, CONTENT_TYPE, content_type);
                set(
                    &mut head,
                    CONTENT_RANGE,
                    &format!("bytes {first}-{last}/{len}"),
                );
                Pieces::range(first, last - first + 1)
            }
            Ranges::Partial(ranges) => {
                let boundary = body::boundary();
                head = head.with_status(StatusCode::PARTIAL_CONTENT);
                set(
                    &mut head,
                    CONTENT_TYPE,
                    &format!("multipart/byteranges; boundary={boundary}"),
                );
                Pieces::multipart(&ranges, len, content_type, &boundary)
            }
            Ranges::Unsatisfiable => {
                let mut refusal = Reply::error(StatusCode::RANGE_NOT_SATISFIABLE);
                set(&mut refusal, CONTENT_RANGE, &format!("bytes */{len}"));
                return Ok(Plan::Reply(refusal));
            }
        };
        if pieces.len <= self.max_buffered {
            let body = if self.is_head {
                // A HEAD is the GET's head: the connection sends this body's length, not it.
                Bytes::from(vec![0; usize::try_from(pieces.len).unwrap_or(0)])
            } else {
                pieces.read_all(&mut file).map_err(|e| {
                    log::warn!("static file {}: {e}", path.display());
                    StatusCode::INTERNAL_SERVER_ERROR
                })?
            };
            return Ok(Plan::Reply(head.with_body(body)));
        }
        let file = (!self.is_head).then_some(file);
        Ok(Plan::Stream { head, file, pieces })
    }
}

/// The canonical path of `segments` below the canonical `root`, refused (`404`) if it leads out
/// of the root through a symbolic link. Returns it with the canonical root.
fn resolve(root: &Path, segments: &[String]) -> Result<(PathBuf, PathBuf), StatusCode> {
    let root = root.canonicalize().map_err(|e| {
        log::warn!("static files root {}: {e}", root.display());
        StatusCode::NOT_FOUND
    })?;
    let mut path = root.clone();
    for segment in segments {
        path.push(segment);
    }
    let real = path.canonicalize().map_err(|e| match e.kind() {
        io::ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        _ => StatusCode::NOT_FOUND,
    })?;
    if !real.starts_with(&root) {
        log::debug!("static path {} leads out of the root", path.display());
        return Err(StatusCode::NOT_FOUND);
    }
    Ok((real, root))
}

/// A directory: its index, a redirect to it with its slash, or `403`.
fn directory(
    path: &Path,
    root: &Path,
    wanted: &Wanted,
    listing: bool,
) -> Result<Reply, StatusCode> {
    if !listing {
        return Err(StatusCode::FORBIDDEN);
    }
    if !wanted.slash {
        let location = HeaderValue::from_str(&format!("{}/", wanted.raw_path))
            .map_err(|_| StatusCode::NOT_FOUND)?;
        return Ok(Reply::error(StatusCode::MOVED_PERMANENTLY).header(LOCATION, location));
    }
    let page = listing::page(path, root, &wanted.path, wanted.segments.is_empty())
        .map_err(|e| status_of(&e, path))?;
    Ok(Reply::html(page))
}

fn status_of(e: &io::Error, path: &Path) -> StatusCode {
    match e.kind() {
        io::ErrorKind::NotFound => StatusCode::NOT_FOUND,
        io::ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        _ => {
            log::warn!("static file {}: {e}", path.display());
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

/// Set a header field whose value was made here (dates, tags, ranges, known types).
fn set(reply: &mut Reply, name: HeaderName, value: &str) {
    match HeaderValue::from_str(value) {
        Ok(value) => {
            reply.headers_mut().insert(name, value);
        }
        Err(_) => log::warn!("static files: unsendable {name} value {value:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_methods_get_405_with_allow() {
        let post = crate::__fuzz::request(b"POST /x HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
        let reply = refuse_method(&post).unwrap();
        assert_eq!(reply.status(), 405);
        assert_eq!(reply.headers()["allow"], "GET, HEAD");
        let head = crate::__fuzz::request(b"HEAD /x HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
        assert!(refuse_method(&head).is_none());
    }

    fn wanted(target: &str) -> Result<Wanted, StatusCode> {
        let head = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
        let request = crate::__fuzz::request(head.as_bytes()).expect("a valid request");
        Wanted::of(&request)
    }

    #[test]
    fn traversal_shapes_are_forbidden() {
        for target in [
            "/../etc/passwd",
            "/a/../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/%2E%2e/etc/passwd",
            "/.%2e/etc/passwd",
            "/./a",
            "/a/%2f..%2fetc",
            "/..%2fetc%2fpasswd",
            "/a%5c..%5cb",
            "/a\\..\\b",
            "/a%00.txt",
            "//etc/passwd",
            "/a//b",
            "/%c0%ae%c0%ae/etc/passwd",
            "*",
        ] {
            assert_eq!(
                wanted(target).map(|w| w.segments),
                Err(StatusCode::FORBIDDEN),
                "{target}"
            );
        }
    }

    #[test]
    fn clean_paths_are_segments() {
        let w = wanted("/a/b%20c/d.txt?x=1").unwrap();
        assert_eq!(w.segments, ["a", "b c", "d.txt"]);
        assert!(!w.slash);
        let w = wanted("/dir/").unwrap();
        assert_eq!(
            (w.segments.as_slice(), w.slash),
            (&["dir".to_string()][..], true)
        );
        let w = wanted("/").unwrap();
        assert!(w.segments.is_empty() && w.slash);
        let w = wanted("/...").unwrap();
        assert_eq!(w.segments, ["..."]);
    }
}
