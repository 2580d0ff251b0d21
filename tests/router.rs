//! The router over real TCP (literal request bytes) and with the real `curl`: route precedence,
//! method filters and 405, regex captures, the fallback, easy handlers' typed parameters and
//! their 400s, and an easy handler that defers its reply to an actor.

mod curl;
mod support;

use std::cell::RefCell;

use iomux::http::{Method, StatusCode};
use iomux::router::{self, Route, Router};
use iomux::{
    context, easy_handler, with_restored_context, with_saved_context, Addr, Handled, Mailbox,
    Reply, Request, SavedContext,
};
use support::{request, Response, Server};

thread_local! {
    /// The actor that answers deferred requests (an application's global, on the loop thread).
    static LATER: RefCell<Option<Addr<SavedContext>>> = const { RefCell::new(None) };
}

easy_handler! {
    /// Typed parameters with defaults.
    fn hello(name: String = "world", times: u32 = 1) -> String {
        format!("Hello, {name}!\n").repeat(times as usize)
    }
}

easy_handler! {
    /// No parameters at all.
    fn ping() -> &'static str {
        "pong\n"
    }
}

easy_handler! {
    /// A required parameter, an optional one, a repeated one and a flag.
    fn need(channel: String, limit: Option<u8>, tag: Vec<String>, verbose: bool = false) -> Reply {
        if channel.is_empty() {
            return Reply::error(StatusCode::UNPROCESSABLE_ENTITY);
        }
        Reply::text(format!(
            "channel={channel} limit={limit:?} tags={tag:?} verbose={verbose}\n"
        ))
    }
}

easy_handler! {
    /// Saves the context and lets the actor answer; the route's captures go along.
    fn later(word: String, delay_ms: u64 = 20) -> Handled {
        let _ = (word, delay_ms); // the actor reads the request again
        let saved = with_saved_context!();
        LATER.with(|l| l.borrow().as_ref().expect("actor started").do_send(saved));
        Handled::Deferred
    }
}

fn user_post(_: &Request) -> Reply {
    let c = router::captures();
    Reply::text(format!(
        "user={} post={} groups={} rest={:?}\n",
        c.name("id").unwrap_or("?"),
        c.get(2).unwrap_or("?"),
        c.len(),
        c.rest().unwrap_or("?"),
    ))
}

fn router() -> Router {
    Router::new()
        .exact("/a", |_: &Request| "exact /a\n")
        .prefix("/a", |_: &Request| {
            format!("prefix /a, rest {:?}\n", router::captures().rest().unwrap())
        })
        // Earlier routes win: the exact route below never gets /p/x.
        .prefix("/p/", |_: &Request| "prefix /p/\n")
        .exact("/p/x", |_: &Request| "exact /p/x\n")
        .get("/items", |_: &Request| "items\n")
        .post("/items", |r: &Request| {
            format!("created {} bytes\n", r.body().len())
        })
        .route(
            Route::regex(r"^/users/(?<id>\d+)/posts/(\d+)")
                .unwrap()
                .method(Method::GET),
            user_post,
        )
        .regex(r"^/users/", |_: &Request| "other user path\n")
        .unwrap()
        .get("/hello", hello)
        .get("/ping", ping)
        .route(
            Route::exact("/need").methods([Method::GET, Method::POST]),
            need,
        )
        .regex(r"^/later/(?<n>\d+)$", later)
        .unwrap()
        .prefix(
            "/nested/",
            Router::new().get("/nested/x", |_: &Request| "nested x\n"),
        )
        .fallback(|r: &Request| {
            Reply::text(format!("custom fallback for {}\n", r.path()))
                .with_status(StatusCode::NOT_FOUND)
        })
}

fn start() -> Server {
    Server::start(|ex| {
        let actor =
            iomux::spawn_actor_task(ex, 16, |mut mailbox: Mailbox<SavedContext>| async move {
                while let Some(ctx) = mailbox.recv().await {
                    async_io::Timer::after(std::time::Duration::from_millis(20)).await;
                    with_restored_context!(ctx, {
                        let req = context::request();
                        let n = router::captures().name("n").unwrap_or("?").to_string();
                        let word = req.parameter("word").unwrap_or("?").to_string();
                        context::send_reply(Reply::text(format!("later n={n} word={word}\n"))).ok();
                    });
                }
            });
        LATER.with(|l| *l.borrow_mut() = Some(actor));
        router()
    })
}

fn get(server: &Server, target: &str) -> Response {
    request(
        server,
        &format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
    )
}

fn send(server: &Server, method: &str, target: &str, body: &str, content_type: &str) -> Response {
    request(
        server,
        &format!(
            "{method} {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
             Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

fn ok(r: &Response) -> &str {
    assert_eq!(r.status, 200, "{r:?} {}", r.text());
    std::str::from_utf8(&r.body).unwrap()
}

#[test]
fn first_matching_route_wins_in_order() {
    let server = start();
    assert_eq!(ok(&get(&server, "/a")), "exact /a\n");
    assert_eq!(ok(&get(&server, "/abc")), "prefix /a, rest \"bc\"\n");
    assert_eq!(ok(&get(&server, "/a/b")), "prefix /a, rest \"/b\"\n");
    assert_eq!(ok(&get(&server, "/p/x")), "prefix /p/\n");
    assert_eq!(ok(&get(&server, "/p/")), "prefix /p/\n");
    // Paths are matched percent-decoded.
    assert_eq!(ok(&get(&server, "/%61")), "exact /a\n");
    // A nested router sees the whole path; its own fallback answers what it lacks.
    assert_eq!(ok(&get(&server, "/nested/x")), "nested x\n");
    let r = get(&server, "/nested/y");
    assert_eq!((r.status, r.text().as_str()), (404, "404 Not Found\n"));
}

#[test]
fn method_filters_and_405_with_allow() {
    let server = start();
    assert_eq!(ok(&get(&server, "/items")), "items\n");
    let r = send(&server, "POST", "/items", "abc", "text/plain");
    assert_eq!(ok(&r), "created 3 bytes\n");
    // HEAD is taken by GET routes, and has no body.
    let r = request(
        &server,
        "HEAD /items HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!((r.status, r.header("content-length")), (200, Some("6")));
    assert!(r.body.is_empty());

    let r = send(&server, "PUT", "/items", "x", "text/plain");
    assert_eq!(r.status, 405, "{r:?}");
    assert_eq!(r.header("allow"), Some("GET, HEAD, POST"));
    assert_eq!(r.text(), "405 Method Not Allowed\n");
    let r = send(&server, "DELETE", "/need", "", "text/plain");
    assert_eq!(
        (r.status, r.header("allow")),
        (405, Some("GET, HEAD, POST"))
    );
    // A later route without a method filter takes what an earlier filtered route refused.
    let r = send(&server, "POST", "/users/1/posts/2", "", "text/plain");
    assert_eq!(ok(&r), "other user path\n");
}

#[test]
fn regex_captures_by_number_and_name() {
    let server = start();
    assert_eq!(
        ok(&get(&server, "/users/42/posts/7/comments?x=1")),
        "user=42 post=7 groups=3 rest=\"/comments\"\n"
    );
    assert_eq!(ok(&get(&server, "/users/x")), "other user path\n");
}

#[test]
fn fallback_answers_what_no_route_takes() {
    let server = start();
    let r = get(&server, "/nowhere");
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "custom fallback for /nowhere\n");
    let server2 = Server::start(|_| Router::new());
    let r = get(&server2, "/x");
    assert_eq!((r.status, r.text().as_str()), (404, "404 Not Found\n"));
}

#[test]
fn easy_handler_typed_parameters_and_defaults() {
    let server = start();
    assert_eq!(ok(&get(&server, "/hello")), "Hello, world!\n");
    assert_eq!(ok(&get(&server, "/ping?x=1")), "pong\n");
    assert_eq!(
        ok(&get(&server, "/hello?name=Ada+L%C3%B6w&times=2")),
        "Hello, Ada Löw!\nHello, Ada Löw!\n"
    );
    assert_eq!(
        ok(&get(
            &server,
            "/need?channel=news&tag=a&tag=b&limit=5&verbose=true"
        )),
        "channel=news limit=Some(5) tags=[\"a\", \"b\"] verbose=true\n"
    );
    // From a form body too (the query's values come first).
    let r = send(
        &server,
        "POST",
        "/need?tag=q",
        "channel=f%26g&tag=b",
        "application/x-www-form-urlencoded; charset=utf-8",
    );
    assert_eq!(
        ok(&r),
        "channel=f&g limit=None tags=[\"q\", \"b\"] verbose=false\n"
    );
    // A body of another type is not read for parameters.
    let r = send(&server, "POST", "/need", "channel=x", "text/plain");
    assert_400_naming(&r, "channel");
    // The body's own early return.
    assert_eq!(get(&server, "/need?channel=").status, 422);
}

/// A `400 Bad Request` whose text names `param` (the wording is the `params` module's).
fn assert_400_naming(r: &Response, param: &str) {
    assert_eq!(r.status, 400, "{r:?}");
    let text = r.text();
    assert!(text.starts_with("400 Bad Request\n"), "{text}");
    assert!(
        text.contains(&format!("parameter \"{param}\"")),
        "{param}: {text}"
    );
}

#[test]
fn easy_handler_bad_or_missing_value_is_400_naming_the_parameter() {
    let server = start();
    for (target, param) in [
        ("/hello?times=many", "times"),
        ("/hello?times=-1", "times"),
        ("/hello?name=x&times=", "times"),
        ("/need", "channel"),
        ("/need?channel=c&limit=300", "limit"),
        ("/need?channel=c&tag=a&verbose=maybe", "verbose"),
    ] {
        assert_400_naming(&get(&server, target), param);
    }
    let r = get(&server, "/need?channel=c&limit=x");
    assert!(r.text().contains("invalid value \"x\""), "{}", r.text());
    assert!(get(&server, "/need").text().contains("missing"));
}

#[test]
fn easy_handler_defers_and_the_actor_replies_with_captures_and_params() {
    let server = start();
    let started = std::time::Instant::now();
    assert_eq!(
        ok(&get(&server, "/later/12?word=hi")),
        "later n=12 word=hi\n"
    );
    assert!(started.elapsed() >= std::time::Duration::from_millis(20));
    // A bad parameter is answered at once: nothing reaches the actor.
    assert_400_naming(&get(&server, "/later/12?delay_ms=soon"), "word");
    assert_400_naming(&get(&server, "/later/12?word=w&delay_ms=soon"), "delay_ms");
}

#[test]
fn the_same_over_curl() {
    if !curl::available() {
        return;
    }
    let server = start();
    let base = format!("http://{}", server.addr);
    let r = curl::include(&[&format!("{base}/hello?name=curl&times=2")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "Hello, curl!\nHello, curl!\n");

    let r = curl::include(&["-X", "PUT", &format!("{base}/items")]);
    assert_eq!(
        (r.status, r.header("allow")),
        (405, Some("GET, HEAD, POST"))
    );

    let r = curl::include(&["--data", "abcd", &format!("{base}/items")]);
    assert_eq!((r.status, r.text().as_str()), (200, "created 4 bytes\n"));

    let r = curl::include(&["--data-urlencode", "channel=a b", &format!("{base}/need")]);
    assert_eq!(r.text(), "channel=a b limit=None tags=[] verbose=false\n");

    let r = curl::include(&[&format!("{base}/hello?times=x")]);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("parameter \"times\""), "{}", r.text());

    let r = curl::include(&[&format!("{base}/users/9/posts/3")]);
    assert_eq!(r.text(), "user=9 post=3 groups=3 rest=\"\"\n");

    let r = curl::include(&[&format!("{base}/later/5?word=curl")]);
    assert_eq!(r.text(), "later n=5 word=curl\n");

    let r = curl::include(&[&format!("{base}/missing")]);
    assert_eq!(
        (r.status, r.text().as_str()),
        (404, "custom fallback for /missing\n")
    );
}
