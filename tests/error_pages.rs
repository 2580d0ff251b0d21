//! Error pages over real TCP: the plain default, the built-in HTML page, pages from a template
//! directory, which replies get one (placeholders only, also the connection's own errors), and
//! panic details only with debug on.

mod reply_support;
mod support;

use iomux::error_pages::ErrorPages;
use iomux::http::{header, HeaderValue, StatusCode};
use iomux::{abort_with, spawn_actor, with_saved_context, Acceptor, Handled, Reply, Request};
use iomux::{context, SavedContext};
use reply_support::{body, header_values, mask_date, temp_dir, TestServer};

/// The application under test: each path makes one kind of reply.
fn app(req: &Request) -> Handled {
    match req.path().as_ref() {
        "/mine" => Reply::text("my own 404 page\n")
            .with_status(StatusCode::NOT_FOUND)
            .into(),
        "/bodiless" => Reply::new(StatusCode::FORBIDDEN).into(),
        "/empty-body" => Reply::text("").with_status(StatusCode::BAD_GATEWAY).into(),
        "/ok" => Reply::new(StatusCode::OK).into(),
        "/no-content" => Reply::new(StatusCode::NO_CONTENT).into(),
        "/method" => Reply::error(StatusCode::METHOD_NOT_ALLOWED)
            .header(header::ALLOW, HeaderValue::from_static("GET"))
            .into(),
        "/gone" => Reply::error(StatusCode::GONE).into(),
        "/unavailable" => abort_with(StatusCode::SERVICE_UNAVAILABLE),
        "/panic" => panic!("secret <b>details</b>"),
        "/abandon" => {
            // Nobody keeps the context: the connection answers 500.
            drop(with_saved_context!());
            Handled::Deferred
        }
        "/restyled" => {
            // The error text with a body of the application's own: not a placeholder.
            Reply::error(StatusCode::NOT_FOUND)
                .with_body("404 Not Found\n")
                .into()
        }
        _ => Reply::error(StatusCode::NOT_FOUND).into(),
    }
}

fn start(pages: ErrorPages, debug: bool) -> TestServer {
    TestServer::start(move |b| b.error_pages(pages).debug(debug), |_| app)
}

fn page(status: &str, path: Option<&str>) -> String {
    let path = path.map_or(String::new(), |p| {
        format!("<p>Path: <code>{p}</code></p>\n")
    });
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{status}</title></head>\n\
         <body><h1>{status}</h1>\n{path}</body></html>\n"
    )
}

#[test]
fn plain_by_default_changes_nothing() {
    let server = TestServer::start(|b| b, |_| app);
    let missing = server.get("/missing", "");
    assert_eq!(
        mask_date(&missing),
        "HTTP/1.1 404 Not Found\r\nDate: <DATE>\r\ncontent-type: text/plain; charset=utf-8\r\n\
         Content-Length: 14\r\nConnection: close\r\n\r\n404 Not Found\n"
    );
    let bodiless = server.get("/bodiless", "");
    assert_eq!(
        mask_date(&bodiless),
        "HTTP/1.1 403 Forbidden\r\nDate: <DATE>\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let bad = server.exchange("GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n");
    assert_eq!(
        mask_date(&bad),
        "HTTP/1.1 400 Bad Request\r\nDate: <DATE>\r\ncontent-type: text/plain; charset=utf-8\r\n\
         Content-Length: 16\r\nConnection: close\r\n\r\n400 Bad Request\n"
    );
}

#[test]
fn built_in_html_pages_for_placeholders_only() {
    let server = start(ErrorPages::html(), false);
    // The path is decoded and escaped.
    let missing = server.get("/%3Cscript%3Ealert(1)%3C/script%3E", "");
    let expected = page(
        "404 Not Found",
        Some("/&lt;script&gt;alert(1)&lt;/script&gt;"),
    );
    assert_eq!(
        mask_date(&missing),
        format!(
            "HTTP/1.1 404 Not Found\r\nDate: <DATE>\r\ncontent-type: text/html; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{expected}",
            expected.len()
        )
    );
    // Bodiless and empty-bodied error replies get the page too.
    assert_eq!(
        body(&server.get("/bodiless", "")),
        page("403 Forbidden", Some("/bodiless"))
    );
    assert_eq!(
        body(&server.get("/empty-body", "")),
        page("502 Bad Gateway", Some("/empty-body"))
    );
    // Header fields of the reply stay.
    let method = server.get("/method", "");
    assert_eq!(header_values(&method, "allow"), ["GET"]);
    assert_eq!(
        body(&method),
        page("405 Method Not Allowed", Some("/method"))
    );
    // An abort's Reply::error, and the connection's own 500 for an abandoned request.
    assert_eq!(
        body(&server.get("/unavailable", "")),
        page("503 Service Unavailable", Some("/unavailable"))
    );
    assert_eq!(
        body(&server.get("/abandon", "")),
        page("500 Internal Server Error", Some("/abandon"))
    );
    // Replies the application wrote are never changed.
    let mine = server.get("/mine", "");
    assert_eq!(
        header_values(&mine, "content-type"),
        ["text/plain; charset=utf-8"]
    );
    assert_eq!(body(&mine), "my own 404 page\n");
    let restyled = server.get("/restyled", "");
    assert_eq!(body(&restyled), "404 Not Found\n");
    assert!(server
        .get("/ok", "")
        .ends_with("Content-Length: 0\r\nConnection: close\r\n\r\n"));
    let no_content = server.get("/no-content", "");
    assert!(no_content.starts_with("HTTP/1.1 204 No Content\r\n"));
    assert!(no_content.ends_with("Connection: close\r\n\r\n"));
    // HEAD: the page's length, no body.
    let head = server.exchange("HEAD /missing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let length = page("404 Not Found", Some("/missing")).len().to_string();
    assert_eq!(header_values(&head, "content-length"), [length.as_str()]);
    assert!(head.ends_with("\r\n\r\n"));
}

#[test]
fn errors_the_connection_makes_get_pages() {
    let server = start(ErrorPages::html(), false);
    // Malformed: refused before any request exists (no path).
    let bad = server.exchange("GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n");
    assert!(bad.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{bad}");
    assert_eq!(
        header_values(&bad, "content-type"),
        ["text/html; charset=utf-8"]
    );
    assert_eq!(body(&bad), page("400 Bad Request", None));
    // A body over the limit.
    let large =
        server.exchange("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n");
    assert!(large.starts_with("HTTP/1.1 413 "), "{large}");
    assert!(
        body(&large).contains("<h1>413 Payload Too Large</h1>"),
        "{large}"
    );
    // HTTP/2 preface: 505.
    let version = server.exchange("GET / HTTP/2.0\r\nHost: x\r\n\r\n");
    assert!(version.starts_with("HTTP/1.1 505 "), "{version}");
    assert!(body(&version).starts_with("<!DOCTYPE html>"), "{version}");
}

#[test]
fn pages_from_a_template_directory() {
    let dir = temp_dir("error-pages");
    std::fs::write(
        dir.join("404.html"),
        "<h1>${status} ${reason}</h1><p>No ${path} here.</p>${unknown}\n",
    )
    .unwrap();
    std::fs::write(dir.join("4xx.html"), "client error ${status} (${reason})\n").unwrap();
    std::fs::write(
        dir.join("default.html"),
        "default ${status} ${reason} [${detail}]\n",
    )
    .unwrap();
    // Not page files: ignored.
    std::fs::write(dir.join("notes.txt"), [0xff, 0xfe]).unwrap();
    std::fs::write(dir.join("200.html"), "never").unwrap();
    let server = start(ErrorPages::templates(&dir), false);
    assert_eq!(
        body(&server.get("/a%20%3Cb%3E", "")),
        "<h1>404 Not Found</h1><p>No /a &lt;b&gt; here.</p>${unknown}\n"
    );
    let gone = server.get("/gone", "");
    assert_eq!(
        header_values(&gone, "content-type"),
        ["text/html; charset=utf-8"]
    );
    assert_eq!(body(&gone), "client error 410 (Gone)\n");
    assert_eq!(
        body(&server.get("/unavailable", "")),
        "default 503 Service Unavailable []\n"
    );
    // Without debug, no detail for a panic.
    assert_eq!(
        body(&server.get("/panic", "")),
        "default 500 Internal Server Error []\n"
    );
    assert_eq!(body(&server.get("/mine", "")), "my own 404 page\n");
    drop(server);

    // With debug on, the detail is there, escaped.
    let server = start(ErrorPages::templates(&dir), true);
    let panic = body(&server.get("/panic", "")).to_owned();
    assert!(
        panic.starts_with("default 500 Internal Server Error [panicked at tests/error_pages.rs:"),
        "{panic}"
    );
    assert!(
        panic.ends_with(":\nsecret &lt;b&gt;details&lt;/b&gt;]\n"),
        "{panic}"
    );
    drop(server);

    // An empty directory: the built-in page.
    let empty = temp_dir("error-pages-empty");
    let server = start(ErrorPages::templates(&empty), false);
    assert_eq!(
        body(&server.get("/gone", "")),
        page("410 Gone", Some("/gone"))
    );
    drop(server);
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&empty).unwrap();
}

#[test]
fn unreadable_template_directories_fail_the_bind() {
    let missing = std::env::temp_dir().join("iomux-no-such-error-pages-dir");
    let err = Acceptor::builder()
        .listen("127.0.0.1:0")
        .error_pages(ErrorPages::templates(&missing))
        .bind(|_: &Request| "x")
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    let dir = temp_dir("error-pages-bad");
    std::fs::write(dir.join("500.html"), [b'<', 0xff, b'>']).unwrap();
    let err = Acceptor::builder()
        .listen("127.0.0.1:0")
        .error_pages(ErrorPages::templates(&dir))
        .bind(|_: &Request| "x")
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("500.html"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn panic_details_only_with_debug() {
    // Built-in page, debug off: nothing of the panic.
    let server = start(ErrorPages::html(), false);
    let hidden = server.get("/panic", "");
    assert!(hidden.starts_with("HTTP/1.1 500 Internal Server Error\r\n"));
    assert_eq!(
        body(&hidden),
        page("500 Internal Server Error", Some("/panic"))
    );
    assert!(!hidden.contains("secret"));
    drop(server);

    // Built-in page, debug on: message (escaped) and location.
    let server = start(ErrorPages::html(), true);
    let shown = server.get("/panic", "");
    let shown = body(&shown);
    assert!(shown.contains("<h1>500 Internal Server Error</h1>\n<p>Path: <code>/panic</code></p>\n<pre>panicked at tests/error_pages.rs:"), "{shown}");
    assert!(
        shown.ends_with(":\nsecret &lt;b&gt;details&lt;/b&gt;</pre>\n</body></html>\n"),
        "{shown}"
    );
    drop(server);

    // Plain, debug off: the status line only; debug on: the panic after it.
    let server = start(ErrorPages::plain(), false);
    assert_eq!(
        body(&server.get("/panic", "")),
        "500 Internal Server Error\n"
    );
    drop(server);
    let server = start(ErrorPages::plain(), true);
    let plain = server.get("/panic", "");
    assert_eq!(
        header_values(&plain, "content-type"),
        ["text/plain; charset=utf-8"]
    );
    let plain = body(&plain);
    assert!(
        plain.starts_with("500 Internal Server Error\n\npanicked at tests/error_pages.rs:"),
        "{plain}"
    );
    assert!(plain.ends_with(":\nsecret <b>details</b>\n"), "{plain}");
}

/// A deferred reply the application built itself goes out as it is; an actor's Reply::error
/// gets the page.
#[test]
fn deferred_replies_follow_the_same_rule() {
    let server = TestServer::start(
        |b| b.error_pages(ErrorPages::html()),
        |ex| {
            let actor = spawn_actor(ex, 8, |ctx: SavedContext| {
                let reply = if ctx.request().is_some_and(|r| r.path() == "/own") {
                    Reply::text("own words\n").with_status(StatusCode::CONFLICT)
                } else {
                    Reply::error(StatusCode::CONFLICT)
                };
                ctx.send_reply(reply).unwrap();
            });
            move |_: &Request| {
                context::set_header(
                    header::HeaderName::from_static("x-draft"),
                    HeaderValue::from_static("1"),
                );
                actor.do_send(with_saved_context!());
                Handled::Deferred
            }
        },
    );
    let own = server.get("/own", "");
    assert_eq!(body(&own), "own words\n");
    let error = server.get("/other", "");
    // The header fields of the reply under construction were merged in: still a placeholder.
    assert_eq!(header_values(&error, "x-draft"), ["1"]);
    assert_eq!(body(&error), page("409 Conflict", Some("/other")));
}
