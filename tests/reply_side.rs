//! The reply side over real TCP, in literal bytes: cookies, header fields refused for CR, LF and
//! NUL, redirects resolved against the request, `abort` from a handler and from an actor inside
//! `with_restored_context!`, `require_authorization`, and `no_cache`.

mod reply_support;
mod support;

use std::time::{Duration, UNIX_EPOCH};

use iomux::cookie::{self, Cookie, SameSite};
use iomux::http::{header, HeaderValue, StatusCode};
use iomux::{
    abort, abort_with, catch_abort, context, require_authorization, spawn_actor, spawn_actor_task,
    with_restored_context, with_saved_context, CookieError, Handled, InvalidHeader, Mailbox,
    RedirectError, Reply, Request, SavedContext,
};
use reply_support::{body, capture_logs, header_values, logged, mask_date, TestServer};

fn full_cookie() -> Cookie {
    Cookie::new("sid", "31d4d96e407aad42")
        .unwrap()
        .expires(UNIX_EPOCH + Duration::from_secs(784_111_777))
        .max_age(Duration::from_secs(3600))
        .domain("example.com")
        .unwrap()
        .path("/app")
        .unwrap()
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Strict)
}

const FULL_COOKIE: &str = "sid=31d4d96e407aad42; Expires=Sun, 06 Nov 1994 08:49:37 GMT; \
                           Max-Age=3600; Domain=example.com; Path=/app; Secure; HttpOnly; \
                           SameSite=Strict";

#[test]
fn cookies_on_a_reply_in_exact_bytes() {
    let server = TestServer::start(
        |b| b,
        |_| {
            |_: &Request| {
                let lax = Cookie::new("theme", "\"dark\"")
                    .unwrap()
                    .same_site(SameSite::Lax);
                let gone = Cookie::new("old", "x")
                    .unwrap()
                    .path("/")
                    .unwrap()
                    .removal();
                Reply::text("ok")
                    .set_cookie(&full_cookie())
                    .set_cookie(&lax)
                    .set_cookie(&gone)
            }
        },
    );
    let response = server.get("/", "");
    assert_eq!(
        mask_date(&response),
        format!(
            "HTTP/1.1 200 OK\r\nDate: <DATE>\r\ncontent-type: text/plain; charset=utf-8\r\n\
             set-cookie: {FULL_COOKIE}\r\n\
             set-cookie: theme=\"dark\"; SameSite=Lax\r\n\
             set-cookie: old=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/\r\n\
             Content-Length: 2\r\nConnection: close\r\n\r\nok"
        )
    );
}

#[test]
fn cookies_on_the_reply_under_construction() {
    let server = TestServer::start(
        |b| b,
        |ex| {
            // The second cookie is set from an actor, inside the restored context.
            let actor = spawn_actor(ex, 8, |ctx: SavedContext| {
                with_restored_context!(ctx, {
                    let late = Cookie::new("late", "2").unwrap().http_only(true);
                    cookie::set_cookie(&late).unwrap();
                    context::send_body("deferred").unwrap();
                });
            });
            move |req: &Request| -> Handled {
                cookie::set_cookie(&full_cookie()).unwrap();
                if req.path() == "/both" {
                    let own = Cookie::new("own", "3").unwrap();
                    return Reply::text("both").set_cookie(&own).into();
                }
                if req.path() == "/defer" {
                    actor.do_send(with_saved_context!());
                    return Handled::Deferred;
                }
                Reply::text("now").into()
            }
        },
    );
    let now = server.get("/", "");
    assert_eq!(header_values(&now, "set-cookie"), [FULL_COOKIE]);
    assert_eq!(body(&now), "now");
    let later = server.get("/defer", "");
    assert_eq!(
        header_values(&later, "set-cookie"),
        [FULL_COOKIE, "late=2; HttpOnly"]
    );
    assert_eq!(
        header_values(&later, "content-type"),
        ["text/html; charset=utf-8"]
    );
    assert_eq!(body(&later), "deferred");
    // The reply's own cookies add to those of the reply under construction.
    let both = server.get("/both", "");
    assert_eq!(header_values(&both, "set-cookie"), [FULL_COOKIE, "own=3"]);
    // Outside any request there is no reply under construction.
    assert!(cookie::set_cookie(&full_cookie()).is_err());
}

#[test]
fn cookie_validation() {
    for name in ["", "a b", "a;b", "a=b", "a\r\nb", "ä", "(x)", "a\0"] {
        assert_eq!(
            Cookie::new(name, "v").unwrap_err(),
            CookieError::Name,
            "{name:?}"
        );
    }
    for value in [
        "a b",
        "a;b",
        "a,b",
        "a\"b",
        "a\\b",
        "a\r\nSet-Cookie: x=y",
        "é",
        "\"a",
        "a\0",
    ] {
        assert_eq!(
            Cookie::new("n", value).unwrap_err(),
            CookieError::Value,
            "{value:?}"
        );
    }
    for value in ["", "\"\"", "\"abc\"", "!#$%&'()*+-./:<=>?@[]^_`{|}~"] {
        assert!(Cookie::new("n", value).is_ok(), "{value:?}");
    }
    let c = || Cookie::new("n", "v").unwrap();
    for domain in ["", "a b", "a;b", "ex\r\nample", "é.com", "a_b.com"] {
        assert_eq!(
            c().domain(domain).unwrap_err(),
            CookieError::Domain,
            "{domain:?}"
        );
    }
    for path in ["/a;b", "/a\r\nb", "/\0", "/é", "/\x7f"] {
        assert_eq!(c().path(path).unwrap_err(), CookieError::Path, "{path:?}");
    }
    assert!(c().path("/a b/~x").is_ok());
    assert_eq!(
        CookieError::Domain.to_string(),
        "invalid cookie Domain attribute"
    );
    // Times out of an IMF-fixdate's range are clamped, not a panic.
    let early = c().expires(UNIX_EPOCH - Duration::from_secs(10));
    assert_eq!(
        early.to_string(),
        "n=v; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
    );
    let late = c().expires(UNIX_EPOCH + Duration::from_secs(400_000_000_000));
    assert_eq!(
        late.to_string(),
        "n=v; Expires=Fri, 31 Dec 9999 23:59:59 GMT"
    );
}

/// Header fields from strings: CR, LF and NUL are refused with a typed error and never written;
/// set, append and remove behave as named.
#[test]
fn header_fields_refuse_cr_lf_nul() {
    let server = TestServer::start(
        |b| b,
        |_| {
            |_: &Request| {
                let mut results = Vec::new();
                for (name, value) in [
                    ("X-A", "a\r\nX-Injected: 1"),
                    ("X-A", "a\nX-Injected: 1"),
                    ("X-A", "a\rX-Injected: 1"),
                    ("X-A", "a\0b"),
                    ("X-A\r\nX-Injected", "1"),
                    ("X-A\0", "1"),
                    ("", "1"),
                ] {
                    let set = Reply::text("").try_header(name, value).unwrap_err();
                    let add = Reply::text("").try_append_header(name, value).unwrap_err();
                    assert_eq!(set, add);
                    results.push(format!("{set:?}"));
                }
                let reply = Reply::text(results.join(","))
                    .try_header("X-Set", "1")
                    .unwrap()
                    .try_header("X-Set", "2")
                    .unwrap()
                    .try_append_header("X-List", "a")
                    .unwrap()
                    .append_header(
                        header::HeaderName::from_static("x-list"),
                        HeaderValue::from_static("b"),
                    )
                    .try_header("X-Gone", "1")
                    .unwrap()
                    .remove_header("x-gone")
                    .remove_header("x-never-set");
                // A refused field leaves the reply as it was: nothing half-set.
                match reply.clone().try_append_header("X-List", "c\r\n") {
                    Err(InvalidHeader::Value) => reply,
                    other => panic!("{other:?}"),
                }
            }
        },
    );
    let response = server.get("/", "");
    assert_eq!(
        mask_date(&response),
        "HTTP/1.1 200 OK\r\nDate: <DATE>\r\ncontent-type: text/plain; charset=utf-8\r\n\
         x-set: 2\r\nx-list: a\r\nx-list: b\r\nContent-Length: 38\r\nConnection: close\r\n\r\n\
         Value,Value,Value,Value,Name,Name,Name"
    );
    assert!(!response.contains("X-Injected") && !response.contains("x-injected"));
}

/// `Reply::redirect` with each redirect status; relative targets resolved against the request.
#[test]
fn redirects_resolve_against_the_request() {
    let server = TestServer::start(
        |b| b,
        |_| {
            |req: &Request| -> Reply {
                let status: u16 = req.header("x-status").unwrap().parse().unwrap();
                let status = StatusCode::from_u16(status).unwrap();
                let target = req.header("x-target").unwrap_or("");
                match Reply::redirect(status, target) {
                    Ok(reply) => reply,
                    Err(e) => Reply::text(format!("{e:?}")),
                }
            }
        },
    );
    let statuses = [
        (301, "Moved Permanently"),
        (302, "Found"),
        (303, "See Other"),
        (307, "Temporary Redirect"),
        (308, "Permanent Redirect"),
    ];
    let base = "http://test.example";
    let cases = [
        ("/abs/path", format!("{base}/abs/path")),
        ("next", format!("{base}/dir/next")),
        ("./next?a=1", format!("{base}/dir/next?a=1")),
        ("../up?q=2#frag", format!("{base}/up?q=2#frag")),
        ("../../../../top", format!("{base}/top")),
        ("?y=2", format!("{base}/dir/page?y=2")),
        ("#f", format!("{base}/dir/page?x=1#f")),
        ("", format!("{base}/dir/page?x=1")),
        ("sub/", format!("{base}/dir/sub/")),
        ("/a/./b/../c", format!("{base}/a/c")),
        (
            "//other.example:81/p",
            "http://other.example:81/p".to_owned(),
        ),
        (
            "https://secure.example/x?y",
            "https://secure.example/x?y".to_owned(),
        ),
        (
            "mailto:someone@example.com",
            "mailto:someone@example.com".to_owned(),
        ),
        ("a b/\u{e9}", format!("{base}/dir/a%20b/%C3%A9")),
    ];
    for (code, reason) in statuses {
        for (target, location) in &cases {
            let response = server.get(
                "/dir/page?x=1",
                &format!("X-Status: {code}\r\nX-Target: {target}\r\n"),
            );
            assert_eq!(
                mask_date(&response),
                format!(
                    "HTTP/1.1 {code} {reason}\r\nDate: <DATE>\r\nlocation: {location}\r\n\
                     Content-Length: 0\r\nConnection: close\r\n\r\n"
                ),
                "{code} {target:?}"
            );
        }
    }
    // Not a redirect status.
    let response = server.get("/", "X-Status: 200\r\nX-Target: /x\r\n");
    assert_eq!(body(&response), "Status(200)");
    // HTTP/1.0 without Host: the local address is the authority.
    let response = server.exchange("GET /d/e HTTP/1.0\r\nX-Status: 302\r\nX-Target: f\r\n\r\n");
    assert_eq!(
        header_values(&response, "location"),
        [format!("http://{}/d/f", server.addr)]
    );
    // A control byte in the target is refused, not written.
    assert_eq!(
        Reply::redirect(StatusCode::FOUND, "/x\r\nSet-Cookie: a=b").unwrap_err(),
        RedirectError::Target
    );
    assert_eq!(
        Reply::redirect(StatusCode::FOUND, "/x\0").unwrap_err(),
        RedirectError::Target
    );
    // Outside a request context a relative target stays relative (RFC 9110 allows it).
    let outside = Reply::redirect(StatusCode::SEE_OTHER, "../x").unwrap();
    assert_eq!(outside.headers()["location"], "../x");
}

/// `abort` from deep inside a handler: its reply is sent (with the fields set on the reply under
/// construction), it is not logged as a panic, and the connection goes on.
#[test]
fn abort_from_a_handler() {
    capture_logs();
    fn check(req: &Request) {
        if req.path() == "/abort-handler/forbidden" {
            context::set_header(
                header::HeaderName::from_static("x-before-abort"),
                HeaderValue::from_static("kept"),
            );
            abort(Reply::text("not for you\n").with_status(StatusCode::FORBIDDEN));
        }
        if req.path() == "/abort-handler/missing" {
            abort_with(StatusCode::NOT_FOUND);
        }
    }
    let server = TestServer::start(
        |b| b,
        |_| {
            |req: &Request| {
                check(req);
                Reply::text("passed\n")
            }
        },
    );
    let stream = server.connect();
    let mut reader = support::Reader::new(&stream);
    for path in [
        "/abort-handler/forbidden",
        "/abort-handler/missing",
        "/abort-handler/ok",
    ] {
        use std::io::Write;
        (&stream)
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .unwrap();
    }
    let forbidden = reader.response(false).unwrap();
    assert_eq!(forbidden.status, 403);
    assert_eq!(forbidden.header("x-before-abort"), Some("kept"));
    assert_eq!(forbidden.text(), "not for you\n");
    let missing = reader.response(false).unwrap();
    assert_eq!(
        (missing.status, missing.text().as_str()),
        (404, "404 Not Found\n")
    );
    let ok = reader.response(false).unwrap();
    assert_eq!((ok.status, ok.text().as_str()), (200, "passed\n"));
    assert!(logged("handler panicked on GET /abort-handler").is_empty());
    assert_eq!(logged("handler aborted on GET /abort-handler").len(), 2);
}

/// `abort` inside `with_restored_context!` in an actor: the reply goes to the restored request,
/// and the actor goes on with its next message. In a `spawn_actor_task` loop, `catch_abort`
/// keeps the actor going.
#[test]
fn abort_from_an_actor_inside_a_restored_context() {
    capture_logs();
    let server = TestServer::start(
        |b| b,
        |ex| {
            let actor = spawn_actor(ex, 8, |ctx: SavedContext| {
                with_restored_context!(ctx, {
                    let path = context::request().path().into_owned();
                    if path.ends_with("/conflict") {
                        abort_with(StatusCode::CONFLICT);
                    }
                    if path.ends_with("/teapot") {
                        context::set_header(
                            header::HeaderName::from_static("x-set-in-actor"),
                            HeaderValue::from_static("yes"),
                        );
                        abort(
                            Reply::text("short and stout\n").with_status(StatusCode::IM_A_TEAPOT),
                        );
                    }
                    context::send_body(format!("actor answered {path}\n")).unwrap();
                });
            });
            let looping =
                spawn_actor_task(ex, 8, |mut mailbox: Mailbox<SavedContext>| async move {
                    while let Some(ctx) = mailbox.recv().await {
                        async_io::Timer::after(Duration::from_millis(5)).await;
                        let sent = catch_abort(|| {
                            with_restored_context!(ctx, {
                                if context::request().path().ends_with("/gone") {
                                    abort_with(StatusCode::GONE);
                                }
                                context::send_body("looped\n").unwrap();
                            })
                        });
                        let _ = sent;
                    }
                });
            move |req: &Request| -> Handled {
                if req.path().starts_with("/actor-abort/task") {
                    looping.do_send(with_saved_context!());
                } else {
                    actor.do_send(with_saved_context!());
                }
                Handled::Deferred
            }
        },
    );
    let conflict = server.get("/actor-abort/conflict", "");
    assert_eq!(
        mask_date(&conflict),
        "HTTP/1.1 409 Conflict\r\nDate: <DATE>\r\ncontent-type: text/plain; charset=utf-8\r\n\
         Content-Length: 13\r\nConnection: close\r\n\r\n409 Conflict\n"
    );
    let teapot = server.get("/actor-abort/teapot", "");
    assert!(
        teapot.starts_with("HTTP/1.1 418 I'm a teapot\r\n"),
        "{teapot}"
    );
    assert_eq!(header_values(&teapot, "x-set-in-actor"), ["yes"]);
    assert_eq!(body(&teapot), "short and stout\n");
    // The actor is still there.
    let fine = server.get("/actor-abort/fine", "");
    assert_eq!(body(&fine), "actor answered /actor-abort/fine\n");
    // The looping actor: an abort, then it still serves.
    let gone = server.get("/actor-abort/task/gone", "");
    assert!(gone.starts_with("HTTP/1.1 410 Gone\r\n"), "{gone}");
    let looped = server.get("/actor-abort/task/next", "");
    assert_eq!(body(&looped), "looped\n");
    assert!(logged("panicked")
        .iter()
        .all(|l| !l.contains("actor-abort")));
    assert!(logged("actor panicked on a message").is_empty());
    assert!(logged("actor task stopped").is_empty());
}

#[test]
fn require_authorization_asks_for_basic_credentials() {
    let server = TestServer::start(
        |b| b,
        |_| {
            |req: &Request| {
                // "alice:sesame"
                if req.header("authorization") != Some("Basic YWxpY2U6c2VzYW1l") {
                    require_authorization("Admin \"area\"\r\n\\");
                }
                Reply::text("welcome\n")
            }
        },
    );
    let refused = server.get("/admin", "");
    assert_eq!(
        mask_date(&refused),
        "HTTP/1.1 401 Unauthorized\r\nDate: <DATE>\r\n\
         content-type: text/plain; charset=utf-8\r\n\
         www-authenticate: Basic realm=\"Admin \\\"area\\\"\\\\\"\r\n\
         Content-Length: 17\r\nConnection: close\r\n\r\n401 Unauthorized\n"
    );
    let wrong = server.get("/admin", "Authorization: Basic YWxpY2U6d3Jvbmc=\r\n");
    assert!(wrong.starts_with("HTTP/1.1 401 "), "{wrong}");
    let allowed = server.get("/admin", "Authorization: Basic YWxpY2U6c2VzYW1l\r\n");
    assert!(allowed.starts_with("HTTP/1.1 200 OK\r\n"), "{allowed}");
    assert_eq!(body(&allowed), "welcome\n");
}

#[test]
fn no_cache_on_a_reply_and_on_the_reply_under_construction() {
    let server = TestServer::start(
        |b| b,
        |_| {
            |req: &Request| -> Handled {
                if req.path() == "/reply" {
                    return Reply::text("r").no_cache().into();
                }
                iomux::no_cache().unwrap();
                context::send_body("c").unwrap();
                Handled::Deferred
            }
        },
    );
    for (path, content_type, body_text) in [
        ("/reply", "text/plain; charset=utf-8", "r"),
        ("/current", "text/html; charset=utf-8", "c"),
    ] {
        let response = server.get(path, "");
        for (name, value) in [
            ("cache-control", "no-cache, no-store, must-revalidate"),
            ("pragma", "no-cache"),
            ("expires", "Thu, 01 Jan 1970 00:00:00 GMT"),
            ("content-type", content_type),
        ] {
            assert_eq!(header_values(&response, name), [value], "{path} {name}");
        }
        assert_eq!(body(&response), body_text);
    }
    assert!(iomux::no_cache().is_err());
}
