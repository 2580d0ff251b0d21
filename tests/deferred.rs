//! Deferred replies over real TCP: a handler saves its context and returns
//! `Handled::Deferred`; an application actor (or another thread) replies later.

mod support;

use std::cell::RefCell;
use std::io::{ErrorKind, Read};
use std::rc::Rc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;
use async_io::Timer;
use iomux::http::{header, HeaderName, HeaderValue, StatusCode};
use iomux::{
    context, with_restored_context, with_saved_context, Handled, Mailbox, MailboxError,
    RemoteResponder, Reply, Request, Responder, SavedContext, SendError,
};
use support::{connect, get, write, Reader, Response, Server};

/// Longest the test waits for a report from the server side.
const REPORT_TIMEOUT: Duration = Duration::from_secs(3);

/// One request on a fresh connection, one response.
fn fetch(server: &Server, path: &str) -> Response {
    let stream = connect(server);
    write(&stream, &get(path));
    Reader::new(&stream).response(false).unwrap()
}

fn x_name(name: &'static str) -> HeaderName {
    HeaderName::from_static(name)
}

/// Stop the server and wait (bounded) for its thread to end.
fn shutdown_within(server: Server, limit: Duration) {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        server.shutdown();
        let _ = tx.send(());
    });
    rx.recv_timeout(limit)
        .expect("the server thread did not end after stop");
}

fn assert_500(r: &Response) {
    assert_eq!(r.status, 500, "{r:?}");
    assert_eq!(r.text(), "500 Internal Server Error\n");
}

// ---------------------------------------------------------------------------------------------
// Replies from an actor, from another thread, from the blocking pool
// ---------------------------------------------------------------------------------------------

#[test]
fn deferred_reply_from_a_timer_actor_arrives_after_the_timer() {
    let server = Server::start(|ex| {
        let waiter =
            iomux::spawn_actor_task(ex, 16, |mut mailbox: Mailbox<SavedContext>| async move {
                while let Some(ctx) = mailbox.recv().await {
                    Timer::after(Duration::from_millis(200)).await;
                    with_restored_context!(ctx, {
                        let path = context::request().path().into_owned();
                        context::send_body(format!("event for {path}\n")).unwrap();
                    });
                }
            });
        move |_req: &Request| {
            waiter.do_send(with_saved_context!());
            Handled::Deferred
        }
    });

    let stream = connect(&server);
    let start = Instant::now();
    write(&stream, "GET /news HTTP/1.1\r\nHost: test\r\n\r\n");
    let resp = Reader::new(&stream).response(false).unwrap();
    let elapsed = start.elapsed();

    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "event for /news\n");
    assert_eq!(
        resp.header("content-type"),
        Some(context::DEFAULT_CONTENT_TYPE)
    );
    assert_eq!(resp.header("content-length"), Some("16"));
    assert!(
        elapsed >= Duration::from_millis(200),
        "reply came after {elapsed:?}, before the 200 ms timer fired"
    );
    assert!(elapsed < Duration::from_secs(2), "reply took {elapsed:?}");
}

#[test]
fn reply_from_another_thread_via_remote_responder() {
    let (report_tx, report_rx) = mpsc::channel::<String>();
    let server = Server::start(move |ex| {
        let actor = iomux::spawn_actor(ex, 16, move |ctx: SavedContext| {
            let path = ctx.request().unwrap().path().into_owned();
            let remote: RemoteResponder = ctx.remote().expect("the reply right is still here");
            // The right has moved to the remote handle.
            let local = match ctx.send_reply("not me") {
                Err(SendError::AlreadyReplied(r)) => format!("AlreadyReplied({:?})", r.body()),
                other => format!("{other:?}"),
            };
            let loop_thread = thread::current().id();
            let report_tx = report_tx.clone();
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(50));
                let other_thread = thread::current().id() != loop_thread;
                let closed = remote.is_closed();
                let sent = remote.send(Reply::text(format!("from a thread for {path}\n")));
                report_tx
                    .send(format!(
                        "{local} other_thread={other_thread} closed={closed} sent={:?}",
                        sent.map_err(|e| e.to_string())
                    ))
                    .unwrap();
            });
        });
        move |_req: &Request| {
            actor.do_send(with_saved_context!());
            Handled::Deferred
        }
    });

    let resp = fetch(&server, "/remote");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "from a thread for /remote\n");
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        report_rx.recv_timeout(REPORT_TIMEOUT).unwrap(),
        "AlreadyReplied(b\"not me\") other_thread=true closed=false sent=Ok(())"
    );
}

#[test]
fn reply_from_the_blocking_pool_via_reply_blocking() {
    let (report_tx, report_rx) = mpsc::channel::<String>();
    let server = Server::start(move |ex| {
        let actor = iomux::spawn_actor(ex, 16, move |ctx: SavedContext| {
            let path = ctx.request().unwrap().path().into_owned();
            let loop_thread = thread::current().id();
            let first = ctx.reply_blocking(move || {
                thread::sleep(Duration::from_millis(50));
                let off_loop = thread::current().id() != loop_thread;
                Reply::text(format!("blocking work for {path}, off loop: {off_loop}\n"))
            });
            let second = ctx.reply_blocking(|| Reply::text("twice\n"));
            let second = match second {
                Err(SendError::AlreadyReplied(work)) => {
                    format!("AlreadyReplied({:?})", work().body())
                }
                Err(e) => format!("{e:?}"),
                Ok(()) => "Ok".to_string(),
            };
            report_tx
                .send(format!("first={:?} second={second}", first.is_ok()))
                .unwrap();
        });
        move |_req: &Request| {
            actor.do_send(with_saved_context!());
            Handled::Deferred
        }
    });

    let resp = fetch(&server, "/slow");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "blocking work for /slow, off loop: true\n");
    assert_eq!(
        report_rx.recv_timeout(REPORT_TIMEOUT).unwrap(),
        "first=true second=AlreadyReplied(b\"twice\\n\")"
    );
}

// ---------------------------------------------------------------------------------------------
// Hang-up of a waiting client
// ---------------------------------------------------------------------------------------------

/// What the server side saw of a client that hung up.
struct HangupReport {
    closed_before: bool,
    detected: Instant,
    closed_after: bool,
    outcome: String,
}

fn describe_send(result: Result<(), SendError<Reply>>) -> String {
    match result {
        Err(SendError::ClientGone(back)) => format!(
            "ClientGone({} {:?} x-mark={:?} type={:?})",
            back.status().as_u16(),
            back.body(),
            back.headers().get("x-mark"),
            back.headers().get(header::CONTENT_TYPE),
        ),
        Err(e) => format!("{e:?}"),
        Ok(()) => "Ok".to_string(),
    }
}

fn late_reply() -> Reply {
    Reply::text("too late\n")
        .with_status(StatusCode::ACCEPTED)
        .header(x_name("x-mark"), HeaderValue::from_static("kept"))
}

const LATE_REPLY_BACK: &str = "ClientGone(202 b\"too late\\n\" x-mark=Some(\"kept\") \
                               type=Some(\"text/plain; charset=utf-8\"))";

/// Send a request that will be deferred, wait until the handler has run, let the server settle,
/// close the socket; returns the time of the close.
fn send_then_hang_up(server: &Server, path: &str, handled: &mpsc::Receiver<()>) -> Instant {
    let stream = connect(server);
    write(&stream, &get(path));
    handled
        .recv_timeout(REPORT_TIMEOUT)
        .expect("the handler did not run");
    thread::sleep(Duration::from_millis(100));
    let closed_at = Instant::now();
    drop(stream);
    closed_at
}

#[test]
fn hang_up_of_a_waiting_client_is_seen_at_once_by_closed_future() {
    let (handled_tx, handled_rx) = mpsc::channel::<()>();
    let (report_tx, report_rx) = mpsc::channel::<HangupReport>();
    let server = Server::start(move |ex| {
        let watcher = iomux::spawn_actor_task(
            ex,
            16,
            move |mut mailbox: Mailbox<SavedContext>| async move {
                while let Some(ctx) = mailbox.recv().await {
                    let closed_before = ctx.is_closed();
                    ctx.closed().await;
                    let detected = Instant::now();
                    let closed_after = ctx.is_closed();
                    let outcome = with_restored_context!(ctx, {
                        describe_send(context::send_reply(late_reply()))
                    });
                    report_tx
                        .send(HangupReport {
                            closed_before,
                            detected,
                            closed_after,
                            outcome,
                        })
                        .unwrap();
                }
            },
        );
        move |_req: &Request| {
            watcher.do_send(with_saved_context!());
            handled_tx.send(()).unwrap();
            Handled::Deferred
        }
    });

    let closed_at = send_then_hang_up(&server, "/wait", &handled_rx);
    let report = report_rx
        .recv_timeout(REPORT_TIMEOUT)
        .expect("the server never noticed the hang-up");
    let delay = report.detected.saturating_duration_since(closed_at);
    assert!(!report.closed_before, "closed before the client hung up");
    assert!(report.closed_after);
    assert!(
        delay < Duration::from_millis(500),
        "hang-up noticed {delay:?} after the close"
    );
    assert_eq!(report.outcome, LATE_REPLY_BACK);

    // The server still serves others.
    let stream = connect(&server);
    write(&stream, &get("/next"));
    handled_rx.recv_timeout(REPORT_TIMEOUT).unwrap();
    drop(stream);
    let report = report_rx.recv_timeout(REPORT_TIMEOUT).unwrap();
    assert_eq!(report.outcome, LATE_REPLY_BACK);
}

/// `SavedContext::on_close` runs its callback once when a waiting client hangs up, and never for
/// a request that was answered.
#[test]
fn on_close_runs_at_hang_up_and_not_after_a_reply() {
    let (handled_tx, handled_rx) = mpsc::channel::<()>();
    let (closed_tx, closed_rx) = mpsc::channel::<(String, Instant)>();
    let server = Server::start(move |_ex| {
        let kept: RefCell<Vec<SavedContext>> = RefCell::default();
        move |req: &Request| -> Handled {
            let ctx = with_saved_context!();
            let path = req.path().into_owned();
            let tx = closed_tx.clone();
            assert!(ctx.on_close(move || tx.send((path, Instant::now())).unwrap()));
            handled_tx.send(()).unwrap();
            if req.path() == "/answered" {
                // Answered at once: the callback must be dropped, not called.
                return Reply::text("done\n").into();
            }
            // Keep the context (the request waits) until the client leaves.
            kept.borrow_mut().push(ctx);
            Handled::Deferred
        }
    });
    let answered = fetch(&server, "/answered");
    assert_eq!(answered.text(), "done\n");
    handled_rx.recv_timeout(REPORT_TIMEOUT).unwrap();

    let closed_at = send_then_hang_up(&server, "/wait", &handled_rx);
    let (path, at) = closed_rx
        .recv_timeout(REPORT_TIMEOUT)
        .expect("on_close was not called");
    assert_eq!(path, "/wait", "the answered request's callback ran");
    let delay = at.saturating_duration_since(closed_at);
    assert!(
        delay < Duration::from_millis(500),
        "on_close ran {delay:?} after the close"
    );
    assert!(
        closed_rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "called twice"
    );
}

#[test]
fn hang_up_of_a_waiting_client_is_seen_by_polling_is_closed() {
    let (handled_tx, handled_rx) = mpsc::channel::<()>();
    let (report_tx, report_rx) = mpsc::channel::<HangupReport>();
    let server = Server::start(move |ex| {
        let poller = iomux::spawn_actor_task(
            ex,
            16,
            move |mut mailbox: Mailbox<SavedContext>| async move {
                while let Some(ctx) = mailbox.recv().await {
                    let closed_before = ctx.is_closed();
                    let deadline = Instant::now() + Duration::from_secs(3);
                    while !ctx.is_closed() && Instant::now() < deadline {
                        Timer::after(Duration::from_millis(5)).await;
                    }
                    let detected = Instant::now();
                    let closed_after = ctx.is_closed();
                    let result = ctx.send_reply(late_reply());
                    report_tx
                        .send(HangupReport {
                            closed_before,
                            detected,
                            closed_after,
                            outcome: describe_send(result),
                        })
                        .unwrap();
                }
            },
        );
        move |_req: &Request| {
            poller.do_send(with_saved_context!());
            handled_tx.send(()).unwrap();
            Handled::Deferred
        }
    });

    let closed_at = send_then_hang_up(&server, "/poll", &handled_rx);
    let report = report_rx.recv_timeout(REPORT_TIMEOUT).unwrap();
    assert!(!report.closed_before);
    assert!(report.closed_after, "is_closed() never became true");
    let delay = report.detected.saturating_duration_since(closed_at);
    assert!(
        delay < Duration::from_millis(500),
        "noticed after {delay:?}"
    );
    assert_eq!(report.outcome, LATE_REPLY_BACK);
}

#[test]
fn remote_responder_of_a_hung_up_client_is_closed_and_refuses() {
    let (handled_tx, handled_rx) = mpsc::channel::<()>();
    let (report_tx, report_rx) = mpsc::channel::<(String, Option<Instant>)>();
    let server = Server::start(move |ex| {
        let report = report_tx.clone();
        // Takes the remote right only after the client has gone.
        let after = iomux::spawn_actor_task(
            ex,
            16,
            move |mut mailbox: Mailbox<SavedContext>| async move {
                while let Some(ctx) = mailbox.recv().await {
                    ctx.closed().await;
                    let text = match ctx.remote() {
                        None => "remote() = None".to_string(),
                        Some(remote) => {
                            let closed = remote.is_closed();
                            format!(
                                "after: closed={closed} {}",
                                describe_send(remote.send(late_reply()))
                            )
                        }
                    };
                    report.send((text, None)).unwrap();
                }
            },
        );
        move |req: &Request| {
            if req.path() == "/remote-before" {
                // The remote right goes to a thread while the client still waits.
                let remote = context::responder().unwrap().remote();
                let report = report_tx.clone();
                thread::spawn(move || {
                    let closed_at_start = remote.is_closed();
                    let deadline = Instant::now() + Duration::from_secs(3);
                    while !remote.is_closed() && Instant::now() < deadline {
                        thread::sleep(Duration::from_millis(5));
                    }
                    let detected = Instant::now();
                    let text = format!(
                        "before: at_start={closed_at_start} closed={} {}",
                        remote.is_closed(),
                        describe_send(remote.send(late_reply()))
                    );
                    report.send((text, Some(detected))).unwrap();
                });
            } else {
                after.do_send(with_saved_context!());
            }
            handled_tx.send(()).unwrap();
            Handled::Deferred
        }
    });

    let closed_at = send_then_hang_up(&server, "/remote-before", &handled_rx);
    let (text, detected) = report_rx.recv_timeout(REPORT_TIMEOUT).unwrap();
    assert_eq!(
        text,
        format!("before: at_start=false closed=true {LATE_REPLY_BACK}")
    );
    let delay = detected.unwrap().saturating_duration_since(closed_at);
    assert!(
        delay < Duration::from_millis(500),
        "noticed after {delay:?}"
    );

    send_then_hang_up(&server, "/remote-after", &handled_rx);
    let (text, _) = report_rx.recv_timeout(REPORT_TIMEOUT).unwrap();
    assert_eq!(text, format!("after: closed=true {LATE_REPLY_BACK}"));
}

// ---------------------------------------------------------------------------------------------
// Forgotten requests, double replies, headers set before deferring
// ---------------------------------------------------------------------------------------------

#[test]
fn request_whose_reply_rights_are_all_dropped_gets_500() {
    let server = Server::start(|ex| {
        // Drops every context it gets, after a while.
        let dropper =
            iomux::spawn_actor_task(ex, 16, |mut mailbox: Mailbox<SavedContext>| async move {
                let mut kept = Vec::new();
                while let Some(ctx) = mailbox.recv().await {
                    Timer::after(Duration::from_millis(50)).await;
                    match ctx.request().unwrap().path().as_ref() {
                        "/drop-responder" => {
                            // Take the right and drop it; the context itself stays alive.
                            let responder: Responder = ctx.responder().unwrap();
                            drop(responder);
                            kept.push(ctx);
                        }
                        "/drop-clones" => {
                            let clones = vec![ctx.clone(), ctx.clone()];
                            drop(ctx);
                            Timer::after(Duration::from_millis(20)).await;
                            drop(clones);
                        }
                        _ => drop(ctx),
                    }
                }
            });
        let stopped =
            iomux::spawn_actor_task(ex, 16, |mailbox: Mailbox<SavedContext>| async move {
                drop(mailbox);
            });
        move |req: &Request| {
            match req.path().as_ref() {
                "/no-save" => {}
                "/drop-remote" => {
                    let remote = context::responder().unwrap().remote();
                    thread::spawn(move || {
                        thread::sleep(Duration::from_millis(50));
                        drop(remote);
                    });
                }
                "/stopped-actor" => match stopped.try_send(with_saved_context!()) {
                    Err(MailboxError::Closed(ctx)) => drop(ctx),
                    Err(MailboxError::Full(_)) => return Reply::text("full").into(),
                    Ok(()) => return Reply::text("the stopped actor took it").into(),
                },
                "/ping" => return Reply::text("pong").into(),
                _ => {
                    dropper.do_send(with_saved_context!());
                }
            }
            Handled::Deferred
        }
    });

    let stream = connect(&server);
    let mut reader = Reader::new(&stream);
    for path in [
        "/no-save",
        "/drop-ctx",
        "/drop-clones",
        "/drop-responder",
        "/drop-remote",
        "/stopped-actor",
    ] {
        write(&stream, &get(path));
        let r = reader
            .response(false)
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_500(&r);
        assert_eq!(r.header("connection"), None, "{path}: keep-alive expected");
    }
    // The connection is still good.
    write(&stream, &get("/ping"));
    let r = reader.response(false).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "pong"));
}

#[test]
fn second_send_reply_is_already_replied_and_never_reaches_the_client() {
    // Responder methods take `self`: a Responder can be used only once (checked at compile time).
    let _send: fn(Responder, Reply) -> Result<(), SendError<Reply>> = Responder::send;
    let _stream: fn(Responder, Reply) -> Result<iomux::BodySender, SendError<Reply>> =
        Responder::start_stream;
    let _remote: fn(Responder) -> RemoteResponder = Responder::remote;
    let _remote_send: fn(RemoteResponder, Reply) -> Result<(), SendError<Reply>> =
        RemoteResponder::send;

    let (report_tx, report_rx) = mpsc::channel::<Vec<String>>();
    let server = Server::start(move |ex| {
        let actor = iomux::spawn_actor(ex, 16, move |ctx: SavedContext| {
            let mut seen = Vec::new();
            with_restored_context!(ctx, {
                seen.push(format!("{:?}", context::send_reply(Reply::text("first\n"))));
                match context::send_reply(
                    Reply::text("second\n")
                        .header(x_name("x-second"), HeaderValue::from_static("1")),
                ) {
                    Err(SendError::AlreadyReplied(back)) => seen.push(format!(
                        "AlreadyReplied({:?} {:?})",
                        back.body(),
                        back.headers().get("x-second")
                    )),
                    other => seen.push(format!("{other:?}")),
                }
                seen.push(format!("{:?}", context::send_body("third")));
                seen.push(format!("{:?}", context::start_stream().map(|_| ())));
                seen.push(format!("{:?}", context::responder()));
            });
            seen.push(format!("{:?}", ctx.send_reply("fourth")));
            seen.push(format!("{:?}", ctx.responder()));
            seen.push(format!("{:?}", ctx.remote()));
            seen.push(format!(
                "{:?}",
                ctx.reply_blocking(|| Reply::text("fifth"))
                    .map_err(|e| e.to_string())
            ));
            report_tx.send(seen).unwrap();
        });
        move |req: &Request| {
            if req.path() == "/ping" {
                return Reply::text("pong").into();
            }
            actor.do_send(with_saved_context!());
            Handled::Deferred
        }
    });

    let stream = connect(&server);
    let mut reader = Reader::new(&stream);
    write(&stream, &get("/twice"));
    let r = reader.response(false).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "first\n"));
    assert_eq!(r.header("x-second"), None);
    assert_eq!(
        report_rx.recv_timeout(REPORT_TIMEOUT).unwrap(),
        vec![
            "Ok(())",
            "AlreadyReplied(b\"second\\n\" Some(\"1\"))",
            "Err(AlreadyReplied(..))",
            "Err(AlreadyReplied(..))",
            "None",
            "Err(AlreadyReplied(..))",
            "None",
            "None",
            "Err(\"request already replied to\")",
        ]
    );
    // Nothing else was written for that request: the next reply on the connection is the next one.
    write(&stream, &get("/ping"));
    let r = reader.response(false).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "pong"));
    assert!(reader.leftover().is_empty());
}

#[test]
fn header_set_by_the_handler_before_deferring_is_in_the_later_reply() {
    let server = Server::start(|ex| {
        let actor =
            iomux::spawn_actor_task(ex, 16, |mut mailbox: Mailbox<SavedContext>| async move {
                while let Some(ctx) = mailbox.recv().await {
                    Timer::after(Duration::from_millis(20)).await;
                    let path = ctx.request().unwrap().path().into_owned();
                    match path.as_str() {
                        "/body" => with_restored_context!(ctx, {
                            context::send_body("body\n").unwrap();
                        }),
                        "/reply" => with_restored_context!(ctx, {
                            let reply = Reply::text("reply\n").header(
                                header::CACHE_CONTROL,
                                HeaderValue::from_static("max-age=5"),
                            );
                            context::send_reply(reply).unwrap();
                        }),
                        "/responder" => {
                            let responder = ctx.responder().unwrap();
                            responder.send(Reply::text("responder\n")).unwrap();
                        }
                        "/remote" => {
                            let remote = ctx.remote().unwrap();
                            thread::spawn(move || remote.send(Reply::text("remote\n")).unwrap());
                        }
                        _ => unreachable!(),
                    }
                }
            });
        move |req: &Request| {
            context::set_header(
                x_name("x-handler"),
                HeaderValue::from_static("set before deferring"),
            );
            context::set_header(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            if req.path() == "/body" {
                context::set_status(StatusCode::ACCEPTED);
                context::set_header(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/x-test"),
                );
            }
            actor.do_send(with_saved_context!());
            Handled::Deferred
        }
    });

    let stream = connect(&server);
    let mut reader = Reader::new(&stream);
    let mut check = |path: &str, status: u16, body: &str, cache: &str, ctype: &str| {
        write(&stream, &get(path));
        let r = reader.response(false).unwrap();
        assert_eq!((r.status, r.text().as_str()), (status, body), "{path}");
        assert_eq!(
            r.header("x-handler"),
            Some("set before deferring"),
            "{path}"
        );
        assert_eq!(r.header("cache-control"), Some(cache), "{path}");
        assert_eq!(r.header("content-type"), Some(ctype), "{path}");
        let cache_fields = r
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("cache-control"))
            .count();
        assert_eq!(cache_fields, 1, "{path}: {:?}", r.headers);
    };
    check("/body", 202, "body\n", "no-store", "application/x-test");
    let text = "text/plain; charset=utf-8";
    check("/reply", 200, "reply\n", "max-age=5", text);
    check("/responder", 200, "responder\n", "no-store", text);
    check("/remote", 200, "remote\n", "no-store", text);
}

// ---------------------------------------------------------------------------------------------
// Panics
// ---------------------------------------------------------------------------------------------

#[test]
fn panicking_handler_gets_500_and_other_clients_are_unaffected() {
    let (waiting_tx, waiting_rx) = mpsc::channel::<()>();
    let server = Server::start(move |ex| {
        let waiters: Rc<RefCell<Vec<SavedContext>>> = Rc::default();
        let held = waiters.clone();
        let releaser = iomux::spawn_actor(ex, 16, move |()| {
            for ctx in held.borrow_mut().drain(..) {
                with_restored_context!(ctx, {
                    let path = context::request().path().into_owned();
                    context::send_reply(Reply::text(format!("released {path}\n"))).unwrap();
                });
            }
        });
        move |req: &Request| -> Handled {
            match req.path().as_ref() {
                "/panic" => panic!("handler panic on purpose"),
                "/wait" => {
                    waiters.borrow_mut().push(with_saved_context!());
                    waiting_tx.send(()).unwrap();
                    Handled::Deferred
                }
                "/release" => {
                    releaser.do_send(());
                    Reply::text("releasing\n").into()
                }
                path => Reply::text(format!("ok {path}\n")).into(),
            }
        }
    });

    // A client waits on a deferred request.
    let waiter = connect(&server);
    write(&waiter, &get("/wait"));
    waiting_rx.recv_timeout(REPORT_TIMEOUT).unwrap();

    // A keep-alive client works before and after panics, including its own.
    let keep = connect(&server);
    let mut keep_reader = Reader::new(&keep);
    for (path, status, body) in [
        ("/a", 200, "ok /a\n"),
        ("/panic", 500, "500 Internal Server Error\n"),
        ("/b", 200, "ok /b\n"),
    ] {
        write(&keep, &get(path));
        let r = keep_reader.response(false).unwrap();
        assert_eq!((r.status, r.text().as_str()), (status, body), "{path}");
    }
    // Panics on other connections, in parallel.
    let panickers: Vec<_> = (0..3)
        .map(|_| {
            let s = connect(&server);
            write(&s, &get("/panic"));
            s
        })
        .collect();
    for s in &panickers {
        assert_500(&Reader::new(s).response(false).unwrap());
    }
    write(&keep, &get("/c"));
    let r = keep_reader.response(false).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "ok /c\n"));

    // The waiting client is still waiting, and gets its reply when released.
    let r = fetch(&server, "/release");
    assert_eq!(r.text(), "releasing\n");
    let r = Reader::new(&waiter).response(false).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "released /wait\n"));
}

#[test]
fn panicking_actor_closure_gets_500_and_the_actor_goes_on() {
    let server = Server::start(|ex| {
        let actor = iomux::spawn_actor(ex, 16, |ctx: SavedContext| {
            with_restored_context!(ctx, {
                let path = context::request().path().into_owned();
                if path.starts_with("/boom") {
                    panic!("actor panic on purpose");
                }
                context::send_body(format!("actor served {path}\n")).unwrap();
            });
        });
        move |_req: &Request| {
            actor.do_send(with_saved_context!());
            Handled::Deferred
        }
    });

    let stream = connect(&server);
    let mut reader = Reader::new(&stream);
    for (path, status, body) in [
        ("/fine1", 200, "actor served /fine1\n"),
        ("/boom1", 500, "500 Internal Server Error\n"),
        ("/fine2", 200, "actor served /fine2\n"),
        ("/boom2", 500, "500 Internal Server Error\n"),
        ("/fine3", 200, "actor served /fine3\n"),
    ] {
        write(&stream, &get(path));
        let r = reader.response(false).unwrap();
        assert_eq!((r.status, r.text().as_str()), (status, body), "{path}");
    }
}

// ---------------------------------------------------------------------------------------------
// Keep-alive: order, and no late reply leaking into the next request
// ---------------------------------------------------------------------------------------------

#[test]
fn keep_alive_deferred_replies_in_order_and_late_replies_are_refused() {
    let (report_tx, report_rx) = mpsc::channel::<Vec<String>>();
    let server = Server::start(move |ex| {
        let actor = iomux::spawn_actor_task(
            ex,
            16,
            move |mut mailbox: Mailbox<SavedContext>| async move {
                // Contexts of requests already answered, kept on purpose.
                let mut stale: Vec<SavedContext> = Vec::new();
                while let Some(ctx) = mailbox.recv().await {
                    let path = ctx.request().unwrap().path().into_owned();
                    match path.as_str() {
                        "/first" => {
                            stale.push(ctx.clone());
                            Timer::after(Duration::from_millis(100)).await;
                            ctx.send_reply(Reply::text("first\n")).unwrap();
                        }
                        // Its handler panicked after saving: it was answered 500 already.
                        "/panic-after-save" => stale.push(ctx),
                        "/second" => {
                            let mut seen = Vec::new();
                            for old in stale.drain(..) {
                                let path = old.request().unwrap().path().into_owned();
                                let closed = old.is_closed();
                                let res = old.send_reply(Reply::text("LATE\n"));
                                let res = match res {
                                    Err(SendError::AlreadyReplied(r)) => {
                                        format!("AlreadyReplied({:?})", r.body())
                                    }
                                    other => format!("{other:?}"),
                                };
                                let late_body = with_restored_context!(old, {
                                    format!("{:?}", context::send_body("LATE BODY\n"))
                                });
                                seen.push(format!(
                                    "{path}: closed={closed} {res} {late_body} responder={:?} remote={:?}",
                                    old.responder(),
                                    old.remote()
                                ));
                            }
                            report_tx.send(seen).unwrap();
                            Timer::after(Duration::from_millis(50)).await;
                            ctx.send_reply(Reply::text("second\n")).unwrap();
                        }
                        _ => unreachable!(),
                    }
                }
            },
        );
        move |req: &Request| -> Handled {
            match req.path().as_ref() {
                "/now" => Reply::text("now\n").into(),
                "/panic-after-save" => {
                    actor.do_send(with_saved_context!());
                    panic!("handler panic after saving its context");
                }
                _ => {
                    actor.do_send(with_saved_context!());
                    Handled::Deferred
                }
            }
        }
    });

    let stream = connect(&server);
    let mut reader = Reader::new(&stream);
    // Pipelined: the deferred reply comes first, then the immediate one.
    write(&stream, &format!("{}{}", get("/first"), get("/now")));
    let r = reader.response(false).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "first\n"));
    let r = reader.response(false).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "now\n"));

    write(&stream, &get("/panic-after-save"));
    assert_500(&reader.response(false).unwrap());

    // The actor tries late replies on both old requests while /second waits.
    write(&stream, &get("/second"));
    let r = reader.response(false).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "second\n"));
    assert_eq!(
        report_rx.recv_timeout(REPORT_TIMEOUT).unwrap(),
        vec![
            "/first: closed=true AlreadyReplied(b\"LATE\\n\") Err(AlreadyReplied(..)) \
             responder=None remote=None",
            "/panic-after-save: closed=true AlreadyReplied(b\"LATE\\n\") \
             Err(AlreadyReplied(..)) responder=None remote=None",
        ]
    );
    write(&stream, &get("/now"));
    let r = reader.response(false).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "now\n"));
    assert!(
        reader.leftover().is_empty(),
        "extra bytes: {:?}",
        String::from_utf8_lossy(reader.leftover())
    );
}

// ---------------------------------------------------------------------------------------------
// Mailboxes
// ---------------------------------------------------------------------------------------------

/// Run `ex` until `fut` completes, failing after `limit`.
fn run_bounded<T>(
    ex: &LocalExecutor<'_>,
    limit: Duration,
    fut: impl std::future::Future<Output = T>,
) -> T {
    async_io::block_on(ex.run(futures_lite::future::or(fut, async {
        Timer::after(limit).await;
        panic!("timed out after {limit:?}");
    })))
}

#[test]
fn mailbox_try_send_on_full_mailbox_hands_the_message_back() {
    let ex = LocalExecutor::new();
    let got: Rc<RefCell<Vec<String>>> = Rc::default();
    let sink = got.clone();
    let addr = iomux::spawn_actor(&ex, 2, move |m: String| sink.borrow_mut().push(m));
    assert_eq!(addr.try_send("a".to_string()), Ok(()));
    assert_eq!(addr.try_send("b".to_string()), Ok(()));
    assert_eq!(
        addr.try_send("c".to_string()),
        Err(MailboxError::Full("c".to_string()))
    );
    assert_eq!(addr.len(), 2);
    while ex.try_tick() {}
    assert_eq!(*got.borrow(), ["a", "b"]);
    assert!(addr.is_empty());
    assert_eq!(addr.try_send("c".to_string()), Ok(()));
    while ex.try_tick() {}
    assert_eq!(*got.borrow(), ["a", "b", "c"]);
}

#[test]
fn mailbox_of_a_stopped_actor_is_closed() {
    let ex = LocalExecutor::new();
    // An actor whose loop ends.
    let ended = iomux::spawn_actor_task(&ex, 4, |mut mailbox: Mailbox<String>| async move {
        let _ = mailbox.recv().await;
    });
    ended.do_send("only one".to_string());
    while ex.try_tick() {}
    assert!(ended.is_closed());
    assert_eq!(
        ended.try_send("hello".to_string()),
        Err(MailboxError::Closed("hello".to_string()))
    );
    let sent = run_bounded(&ex, Duration::from_secs(2), ended.send("x".to_string()));
    assert_eq!(sent, Err(MailboxError::Closed("x".to_string())));

    // An actor task that panics stops too.
    let crashed = iomux::spawn_actor_task(&ex, 4, |mut mailbox: Mailbox<u32>| async move {
        while let Some(n) = mailbox.recv().await {
            if n == 13 {
                panic!("actor task panic on purpose");
            }
        }
    });
    crashed.try_send(1).unwrap();
    crashed.try_send(13).unwrap();
    while ex.try_tick() {}
    assert_eq!(crashed.try_send(14), Err(MailboxError::Closed(14)));

    // A closure actor survives panics.
    let got: Rc<RefCell<Vec<u32>>> = Rc::default();
    let sink = got.clone();
    let sturdy = iomux::spawn_actor(&ex, 4, move |n: u32| {
        if n == 0 {
            panic!("closure actor panic on purpose");
        }
        sink.borrow_mut().push(n);
    });
    for n in [1, 0, 2] {
        sturdy.try_send(n).unwrap();
    }
    while ex.try_tick() {}
    assert_eq!(*got.borrow(), [1, 2]);
    assert!(!sturdy.is_closed());
}

#[test]
fn mailbox_send_waits_for_room() {
    let ex = LocalExecutor::new();
    let (gate_tx, gate_rx) = async_channel::bounded::<()>(1);
    let got: Rc<RefCell<Vec<u32>>> = Rc::default();
    let sink = got.clone();
    let addr = iomux::spawn_actor_task(&ex, 1, move |mut mailbox: Mailbox<u32>| async move {
        // Does not read until the gate opens.
        gate_rx.recv().await.unwrap();
        while let Some(n) = mailbox.recv().await {
            sink.borrow_mut().push(n);
        }
    });
    run_bounded(&ex, Duration::from_secs(2), async {
        addr.send(1).await.unwrap();
        let mut second = std::pin::pin!(addr.send(2));
        for _ in 0..5 {
            assert!(
                futures_lite::future::poll_once(second.as_mut())
                    .await
                    .is_none(),
                "send completed on a full mailbox"
            );
            futures_lite::future::yield_now().await;
        }
        assert_eq!(addr.len(), 1);
        gate_tx.send(()).await.unwrap();
        second.await.unwrap();
        addr.send(3).await.unwrap();
        while got.borrow().len() < 3 {
            Timer::after(Duration::from_millis(1)).await;
        }
    });
    assert_eq!(*got.borrow(), [1, 2, 3]);
}

#[test]
fn mailbox_send_waiting_for_room_fails_when_the_actor_stops() {
    let ex = LocalExecutor::new();
    let (gate_tx, gate_rx) = async_channel::bounded::<()>(1);
    let addr = iomux::spawn_actor_task(&ex, 1, move |mailbox: Mailbox<u32>| async move {
        gate_rx.recv().await.unwrap();
        drop(mailbox);
    });
    let result = run_bounded(&ex, Duration::from_secs(2), async {
        addr.send(1).await.unwrap();
        let mut second = std::pin::pin!(addr.send(2));
        assert!(futures_lite::future::poll_once(second.as_mut())
            .await
            .is_none());
        gate_tx.send(()).await.unwrap();
        second.await
    });
    assert_eq!(result, Err(MailboxError::Closed(2)));
}

#[test]
fn mailbox_do_send_ignores_capacity() {
    let ex = LocalExecutor::new();
    let got: Rc<RefCell<Vec<u32>>> = Rc::default();
    let sink = got.clone();
    let addr = iomux::spawn_actor(&ex, 1, move |n: u32| sink.borrow_mut().push(n));
    for n in 0..5 {
        addr.do_send(n);
    }
    assert_eq!(addr.len(), 5);
    assert_eq!(addr.try_send(99), Err(MailboxError::Full(99)));
    while ex.try_tick() {}
    assert_eq!(*got.borrow(), [0, 1, 2, 3, 4]);
}

#[test]
fn mailbox_addr_is_send_and_works_from_another_thread() {
    fn assert_send<T: Send + 'static>(_: &T) {}
    let ex = LocalExecutor::new();
    let got: Rc<RefCell<Vec<u32>>> = Rc::default();
    let sink = got.clone();
    let addr = iomux::spawn_actor(&ex, 2, move |n: u32| sink.borrow_mut().push(n));
    assert_send(&addr);
    let remote = addr.clone();
    let sender = thread::spawn(move || {
        remote.try_send(1).unwrap();
        remote.do_send(2);
        // Capacity 2: this one waits until the loop thread's actor makes room.
        futures_lite::future::block_on(remote.send(3)).unwrap();
        futures_lite::future::block_on(remote.send(4)).unwrap();
    });
    run_bounded(&ex, Duration::from_secs(3), async {
        while got.borrow().len() < 4 {
            Timer::after(Duration::from_millis(1)).await;
        }
    });
    sender.join().unwrap();
    assert_eq!(*got.borrow(), [1, 2, 3, 4]);
}

// ---------------------------------------------------------------------------------------------
// Graceful stop
// ---------------------------------------------------------------------------------------------

#[test]
fn stop_answers_a_waiting_request_with_503_and_the_server_thread_ends() {
    let (waiting_tx, waiting_rx) = mpsc::channel::<()>();
    let server = Server::start(move |ex| {
        // Holds contexts forever.
        let hoarder =
            iomux::spawn_actor_task(ex, 16, |mut mailbox: Mailbox<SavedContext>| async move {
                let mut kept = Vec::new();
                while let Some(ctx) = mailbox.recv().await {
                    kept.push(ctx);
                }
            });
        move |req: &Request| -> Handled {
            if req.path() == "/ping" {
                return Reply::text("pong").into();
            }
            hoarder.do_send(with_saved_context!());
            waiting_tx.send(()).unwrap();
            Handled::Deferred
        }
    });

    let waiting = connect(&server);
    write(&waiting, &get("/wait"));
    waiting_rx.recv_timeout(REPORT_TIMEOUT).unwrap();
    // An idle keep-alive connection as well.
    let idle = connect(&server);
    let mut idle_reader = Reader::new(&idle);
    write(&idle, &get("/ping"));
    assert_eq!(idle_reader.response(false).unwrap().text(), "pong");

    let stopped_at = Instant::now();
    server.stop_handle().stop();
    let mut reader = Reader::new(&waiting);
    let r = reader.response(false).unwrap();
    assert!(stopped_at.elapsed() < Duration::from_secs(1));
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.text(), "503 Service Unavailable\n");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.header("connection"), Some("close"));
    let mut rest = Vec::new();
    (&waiting).read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");

    // The idle connection is closed.
    let mut byte = [0u8; 1];
    match (&idle).read(&mut byte) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("idle connection not closed: {other:?}"),
    }
    shutdown_within(server, Duration::from_secs(3));
}

/// A request marked `keep_on_shutdown` (a reply on its way, such as a publish being stored)
/// gets its real reply after the stop, not the shutdown status; a plain waiting request beside
/// it gets 503.
#[test]
fn stop_lets_a_kept_request_finish_with_its_reply() {
    let (waiting_tx, waiting_rx) = mpsc::channel::<()>();
    let server = Server::start(move |ex| {
        let slow =
            iomux::spawn_actor_task(ex, 16, |mut mailbox: Mailbox<SavedContext>| async move {
                while let Some(ctx) = mailbox.recv().await {
                    Timer::after(Duration::from_millis(300)).await;
                    let _ = ctx.send_reply(Reply::text("stored\n"));
                }
            });
        move |req: &Request| -> Handled {
            if req.path() == "/publish" {
                context::keep_on_shutdown();
            }
            slow.do_send(with_saved_context!());
            waiting_tx.send(()).unwrap();
            Handled::Deferred
        }
    });
    let kept = connect(&server);
    write(&kept, &get("/publish"));
    let plain = connect(&server);
    write(&plain, &get("/poll"));
    for _ in 0..2 {
        waiting_rx.recv_timeout(REPORT_TIMEOUT).unwrap();
    }
    server.stop_handle().stop();
    let r = Reader::new(&plain).response(false).unwrap();
    assert_eq!(r.status, 503, "{r:?}");
    let r = Reader::new(&kept).response(false).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "stored\n"), "{r:?}");
    assert_eq!(r.header("connection"), Some("close"));
    shutdown_within(server, Duration::from_secs(3));
}
