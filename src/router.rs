//! Routing: a [`Router`] tries its routes in order and the first that matches the request's
//! path and method answers it (Hunchentoot's `*dispatch-table*` with its prefix, regex and exact
//! dispatchers), and [`easy_handler!`](crate::easy_handler) for handlers with typed parameters
//! (Hunchentoot's `define-easy-handler`).
//!
//! ```
//! use iomux::http::Method;
//! use iomux::router::{self, Route, Router};
//! use iomux::{easy_handler, Reply};
//!
//! easy_handler! {
//!     /// `GET /hello?name=Ada&times=2`: typed query parameters with defaults.
//!     fn hello(name: String = "world", times: u32 = 1) -> String {
//!         format!("Hello, {name}!\n").repeat(times as usize)
//!     }
//! }
//!
//! let router = Router::new()
//!     .get("/hello", hello)
//!     .route(Route::regex(r"^/users/(?<id>\d+)$")?.method(Method::GET), |_: &iomux::Request| {
//!         Reply::text(format!("user {}\n", router::captures().name("id").unwrap_or("?")))
//!     })
//!     .prefix("/api/", |_: &iomux::Request| "api\n")
//!     .fallback(|_: &iomux::Request| Reply::error(iomux::http::StatusCode::NOT_FOUND));
//! # fn is_handler(_: impl iomux::Handler) {}
//! is_handler(router);
//! # Ok::<(), iomux::router::RouteError>(())
//! ```
//!
//! What a request gets:
//!
//! - the first route whose path pattern and method filter both match handles it, with the
//!   route's [`Captures`] current ([`captures()`]);
//! - if no route matches but some route's path pattern does (with another method), `405 Method
//!   Not Allowed` with an `Allow` field listing the methods of those routes;
//! - otherwise the fallback handler (by default `404 Not Found`).
//!
//! Paths are matched percent-decoded ([`Request::path`](crate::Request::path)).

use std::fmt;
use std::rc::Rc;

use http::header::{HeaderValue, ALLOW};
use http::{Method, StatusCode};
use regex::Regex;

use crate::dispatch::{Handled, Handler};
use crate::reply::Reply;
use crate::request::Request;

mod easy;

pub use easy::EasyDefault;

crate::context_local! {
    /// The captures of the route that is handling the current request.
    static CAPTURES: Captures = Captures::default();
}

/// What the matching route found in the request's path: regex groups, or the matched prefix,
/// and the rest of the path after the match. It is part of the request context, so a handler
/// that defers keeps it in its [`SavedContext`](crate::SavedContext).
///
/// ```
/// let none = iomux::router::captures();
/// assert!(none.is_empty());
/// assert_eq!(none.rest(), None); // not inside a route
/// ```
#[derive(Clone, Default)]
pub struct Captures(Option<Rc<Found>>);

struct Found {
    /// Group 0 is the whole match: the path (exact route), the prefix, or the regex match.
    groups: Vec<Option<Box<str>>>,
    /// Group names of a regex route, by group index.
    names: Option<Rc<[Option<Box<str>>]>>,
    /// The path after the match.
    rest: Box<str>,
}

impl Captures {
    /// Group `i`: 0 is the whole match (the path for an exact route, the prefix for a prefix
    /// route), 1… the regex's groups. `None` for a group that did not take part in the match.
    ///
    /// ```
    /// assert_eq!(iomux::router::captures().get(0), None);
    /// ```
    pub fn get(&self, i: usize) -> Option<&str> {
        self.0.as_ref()?.groups.get(i)?.as_deref()
    }

    /// The regex group named `name` (`(?<name>…)`), if it took part in the match.
    ///
    /// ```
    /// assert_eq!(iomux::router::captures().name("id"), None);
    /// ```
    pub fn name(&self, name: &str) -> Option<&str> {
        let found = self.0.as_ref()?;
        let names = found.names.as_ref()?;
        let i = names.iter().position(|n| n.as_deref() == Some(name))?;
        found.groups.get(i)?.as_deref()
    }

    /// The path after the match: after the prefix of a prefix route (what a
    /// [`StaticFiles`](crate::static_files::StaticFiles) mounted there serves), after the end
    /// of a regex match, empty for an exact route. `None` outside any route.
    ///
    /// ```
    /// assert_eq!(iomux::router::captures().rest(), None);
    /// ```
    pub fn rest(&self) -> Option<&str> {
        self.0.as_ref().map(|f| &*f.rest)
    }

    /// Number of groups, including group 0; 0 outside any route.
    ///
    /// ```
    /// assert_eq!(iomux::router::captures().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |f| f.groups.len())
    }

    /// Outside any route?
    ///
    /// ```
    /// assert!(iomux::router::captures().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for Captures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        if let Some(found) = &self.0 {
            list.entries(found.groups.iter());
        }
        list.finish()
    }
}

/// The [`Captures`] of the route handling the current request (or of the saved context being
/// restored); empty outside a route.
///
/// ```
/// use iomux::router::{self, Route, Router};
/// let router = Router::new().route(Route::regex(r"^/items/(\d+)$")?, |_: &iomux::Request| {
///     format!("item {}\n", router::captures().get(1).unwrap_or_default())
/// });
/// # let _ = router;
/// # Ok::<(), iomux::router::RouteError>(())
/// ```
pub fn captures() -> Captures {
    CAPTURES.get()
}

/// A route pattern that could not be built.
///
/// ```
/// let err = iomux::router::Route::regex("(").unwrap_err();
/// assert!(err.to_string().starts_with("invalid route regex"));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RouteError {
    /// The regex does not compile.
    InvalidRegex(Box<regex::Error>),
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteError::InvalidRegex(e) => write!(f, "invalid route regex: {e}"),
        }
    }
}

impl std::error::Error for RouteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RouteError::InvalidRegex(e) => Some(&**e),
        }
    }
}

/// How a route matches a path.
#[derive(Clone)]
enum Pattern {
    Exact(Box<str>),
    Prefix(Box<str>),
    Regex(Regex, Rc<[Option<Box<str>>]>),
}

/// Which requests a route takes: a path pattern (exact, prefix or regex) and, optionally, the
/// methods it accepts. A route accepting `GET` also accepts `HEAD`.
///
/// ```
/// use iomux::http::Method;
/// use iomux::router::Route;
/// let items = Route::exact("/items").methods([Method::GET, Method::POST]);
/// let files = Route::prefix("/static/");
/// let user = Route::regex(r"^/users/(?<id>\d+)$")?.method(Method::GET);
/// # let _ = (items, files, user);
/// # Ok::<(), iomux::router::RouteError>(())
/// ```
#[derive(Clone)]
pub struct Route {
    pattern: Pattern,
    /// Empty: any method.
    methods: Vec<Method>,
}

impl Route {
    /// Paths equal to `path` (Hunchentoot's exact dispatch).
    ///
    /// ```
    /// let _ = iomux::router::Route::exact("/hello");
    /// ```
    pub fn exact(path: impl Into<String>) -> Route {
        Route::with(Pattern::Exact(path.into().into_boxed_str()))
    }

    /// Paths starting with `prefix`, compared as strings (`create-prefix-dispatcher`): give
    /// `"/static/"` rather than `"/static"`, which also takes `/staticky`.
    ///
    /// ```
    /// let _ = iomux::router::Route::prefix("/static/");
    /// ```
    pub fn prefix(prefix: impl Into<String>) -> Route {
        Route::with(Pattern::Prefix(prefix.into().into_boxed_str()))
    }

    /// Paths in which `pattern` finds a match (`create-regex-dispatcher`: a search, so anchor
    /// with `^…$` to match whole paths). Groups, numbered and named, are the
    /// [`Captures`]. Matching takes linear time in the path's length whatever the pattern.
    ///
    /// # Errors
    /// [`RouteError::InvalidRegex`] if the pattern does not compile.
    ///
    /// ```
    /// assert!(iomux::router::Route::regex(r"^/posts/(?<year>\d{4})/").is_ok());
    /// ```
    pub fn regex(pattern: &str) -> Result<Route, RouteError> {
        let regex = Regex::new(pattern).map_err(|e| RouteError::InvalidRegex(Box::new(e)))?;
        let names = regex.capture_names().map(|n| n.map(Box::from)).collect();
        Ok(Route::with(Pattern::Regex(regex, names)))
    }

    fn with(pattern: Pattern) -> Route {
        Route {
            pattern,
            methods: Vec::new(),
        }
    }

    /// Accept `method` (besides those already given); a route without any accepts all.
    ///
    /// ```
    /// let _ = iomux::router::Route::exact("/items").method(iomux::http::Method::POST);
    /// ```
    pub fn method(mut self, method: Method) -> Route {
        if !self.methods.contains(&method) {
            self.methods.push(method);
        }
        self
    }

    /// Accept each of `methods`.
    ///
    /// ```
    /// use iomux::http::Method;
    /// let _ = iomux::router::Route::exact("/items").methods([Method::GET, Method::PUT]);
    /// ```
    pub fn methods(self, methods: impl IntoIterator<Item = Method>) -> Route {
        methods.into_iter().fold(self, Route::method)
    }

    fn accepts(&self, method: &str) -> bool {
        self.methods.is_empty()
            || self
                .methods
                .iter()
                .any(|m| m == method || (method == "HEAD" && *m == Method::GET))
    }

    fn matches(&self, path: &str) -> bool {
        match &self.pattern {
            Pattern::Exact(p) => path == &**p,
            Pattern::Prefix(p) => path.starts_with(&**p),
            Pattern::Regex(r, _) => r.is_match(path),
        }
    }

    fn captures(&self, path: &str) -> Option<Found> {
        match &self.pattern {
            Pattern::Exact(p) => (path == &**p).then(|| Found {
                groups: vec![Some(path.into())],
                names: None,
                rest: "".into(),
            }),
            Pattern::Prefix(p) => path.strip_prefix(&**p).map(|rest| Found {
                groups: vec![Some(p.clone())],
                names: None,
                rest: rest.into(),
            }),
            Pattern::Regex(r, names) => r.captures(path).map(|c| Found {
                groups: c.iter().map(|g| g.map(|m| m.as_str().into())).collect(),
                names: Some(names.clone()),
                rest: path[c.get(0).map_or(path.len(), |m| m.end())..].into(),
            }),
        }
    }
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, pattern) = match &self.pattern {
            Pattern::Exact(p) => ("exact", &**p),
            Pattern::Prefix(p) => ("prefix", &**p),
            Pattern::Regex(r, _) => ("regex", r.as_str()),
        };
        f.debug_struct("Route")
            .field(kind, &pattern)
            .field("methods", &self.methods)
            .finish()
    }
}

/// A handler that dispatches to the first matching route, in the order they were added; see the
/// [module documentation](self) for what each request gets.
///
/// ```
/// use iomux::http::Method;
/// use iomux::router::{Route, Router};
/// use iomux::{Acceptor, Request};
///
/// let router = Router::new()
///     .get("/", |_: &Request| "home\n")
///     .route(Route::exact("/items").methods([Method::GET, Method::POST]), |r: &Request| {
///         format!("{} items\n", r.method())
///     });
/// let acceptor = Acceptor::bind("127.0.0.1:0", router)?;
/// # drop(acceptor);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Router {
    routes: Vec<(Route, Box<dyn Handler>)>,
    fallback: Box<dyn Handler>,
}

impl Default for Router {
    fn default() -> Router {
        Router::new()
    }
}

impl Router {
    /// A router without routes: every request gets the fallback (`404 Not Found`).
    ///
    /// ```
    /// let _ = iomux::router::Router::new();
    /// ```
    pub fn new() -> Router {
        Router {
            routes: Vec::new(),
            fallback: Box::new(not_found),
        }
    }

    /// Add a route, tried after those added before it.
    ///
    /// ```
    /// use iomux::router::{Route, Router};
    /// let _ = Router::new().route(Route::prefix("/a/"), |_: &iomux::Request| "a\n");
    /// ```
    pub fn route(mut self, route: Route, handler: impl Handler) -> Router {
        self.routes.push((route, Box::new(handler)));
        self
    }

    /// Requests for exactly `path`, any method.
    ///
    /// ```
    /// let _ = iomux::router::Router::new().exact("/ping", |_: &iomux::Request| "pong\n");
    /// ```
    pub fn exact(self, path: &str, handler: impl Handler) -> Router {
        self.route(Route::exact(path), handler)
    }

    /// Requests whose path starts with `prefix`, any method. A
    /// [`StaticFiles`](crate::static_files::StaticFiles) mounted here serves the rest of the
    /// path.
    ///
    /// ```
    /// let _ = iomux::router::Router::new().prefix("/api/", |_: &iomux::Request| "api\n");
    /// ```
    pub fn prefix(self, prefix: &str, handler: impl Handler) -> Router {
        self.route(Route::prefix(prefix), handler)
    }

    /// Requests whose path `pattern` matches, any method; see [`Route::regex`].
    ///
    /// # Errors
    /// [`RouteError::InvalidRegex`] if the pattern does not compile.
    ///
    /// ```
    /// let router = iomux::router::Router::new()
    ///     .regex(r"^/n/(\d+)$", |_: &iomux::Request| "number\n")?;
    /// # let _ = router;
    /// # Ok::<(), iomux::router::RouteError>(())
    /// ```
    pub fn regex(self, pattern: &str, handler: impl Handler) -> Result<Router, RouteError> {
        Ok(self.route(Route::regex(pattern)?, handler))
    }

    /// `GET` (and `HEAD`) requests for exactly `path`.
    ///
    /// ```
    /// let _ = iomux::router::Router::new().get("/", |_: &iomux::Request| "home\n");
    /// ```
    pub fn get(self, path: &str, handler: impl Handler) -> Router {
        self.route(Route::exact(path).method(Method::GET), handler)
    }

    /// `POST` requests for exactly `path`.
    ///
    /// ```
    /// let _ = iomux::router::Router::new().post("/items", |r: &iomux::Request| {
    ///     format!("{} bytes\n", r.body().len())
    /// });
    /// ```
    pub fn post(self, path: &str, handler: impl Handler) -> Router {
        self.route(Route::exact(path).method(Method::POST), handler)
    }

    /// `PUT` requests for exactly `path`.
    ///
    /// ```
    /// let _ = iomux::router::Router::new().put("/items/1", |_: &iomux::Request| "stored\n");
    /// ```
    pub fn put(self, path: &str, handler: impl Handler) -> Router {
        self.route(Route::exact(path).method(Method::PUT), handler)
    }

    /// `DELETE` requests for exactly `path`.
    ///
    /// ```
    /// let _ = iomux::router::Router::new().delete("/items/1", |_: &iomux::Request| "gone\n");
    /// ```
    pub fn delete(self, path: &str, handler: impl Handler) -> Router {
        self.route(Route::exact(path).method(Method::DELETE), handler)
    }

    /// The handler for requests no route takes (default: `404 Not Found`). It is not called for
    /// a path that routes take with other methods: that is `405`.
    ///
    /// ```
    /// use iomux::{http::StatusCode, Reply};
    /// let _ = iomux::router::Router::new()
    ///     .fallback(|_: &iomux::Request| Reply::text("nothing here\n").with_status(StatusCode::NOT_FOUND));
    /// ```
    pub fn fallback(mut self, handler: impl Handler) -> Router {
        self.fallback = Box::new(handler);
        self
    }

    /// The `405` reply for a path only routes with other methods take.
    fn method_not_allowed(&self, path: &str) -> Option<Reply> {
        let mut allow: Vec<&Method> = Vec::new();
        for (route, _) in &self.routes {
            if route.matches(path) {
                for m in &route.methods {
                    if !allow.contains(&m) {
                        allow.push(m);
                    }
                    if *m == Method::GET && !allow.contains(&&Method::HEAD) {
                        allow.push(&Method::HEAD);
                    }
                }
            }
        }
        if allow.is_empty() {
            return None;
        }
        let list: Vec<&str> = allow.iter().map(|m| m.as_str()).collect();
        let value = HeaderValue::from_str(&list.join(", ")).ok()?;
        Some(Reply::error(StatusCode::METHOD_NOT_ALLOWED).header(ALLOW, value))
    }
}

impl Handler for Router {
    fn handle(&self, request: &Request) -> Handled {
        let path = request.path();
        let method = request.method();
        for (route, handler) in &self.routes {
            if !route.accepts(method) {
                continue;
            }
            if let Some(found) = route.captures(&path) {
                let captures = Captures(Some(Rc::new(found)));
                return CAPTURES.scope(captures, || handler.handle(request));
            }
        }
        if let Some(reply) = self.method_not_allowed(&path) {
            return reply.into();
        }
        self.fallback.handle(request)
    }
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field(
                "routes",
                &self.routes.iter().map(|(r, _)| r).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn not_found(_: &Request) -> Reply {
    Reply::error(StatusCode::NOT_FOUND)
}
