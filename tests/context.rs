//! The request context: `with_saved_context!`, `with_restored_context!`, context locals,
//! `safe_closure!`, `SavedContext::scope`, and the current request inside a server.

mod support;

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

use async_executor::LocalExecutor;
use async_io::Timer;
use futures_lite::future::{self, yield_now};
use iomux::http::StatusCode;
use iomux::{
    context, context_local, safe_closure, with_restored_context, with_saved_context, Handled,
    Mailbox, NoContextError, Reply, Request, SavedContext, SendError,
};
use support::{connect, get, write, Reader, Server};

context_local! {
    /// Who is asking, like a special variable.
    static USER: String = String::from("anonymous");
    static DEPTH: u32 = 0;
}

const READ_TIMEOUT: Duration = Duration::from_secs(4);

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Restoring, nesting, panics
// ---------------------------------------------------------------------------------------------

#[test]
fn restored_context_is_current_inside_and_the_previous_one_after() {
    let outer = with_saved_context!(USER => "outer".to_string(), DEPTH => 1);
    let inner = with_saved_context!(USER => "inner".to_string());
    assert_eq!(USER.get(), "anonymous");
    assert_eq!(DEPTH.get(), 0);

    let value = with_restored_context!(outer, {
        assert_eq!(USER.get(), "outer");
        assert_eq!(DEPTH.get(), 1);
        let nested = with_restored_context!(inner, { (USER.get(), DEPTH.get()) });
        // `inner` was saved where DEPTH had its initial value.
        assert_eq!(nested, ("inner".to_string(), 0));
        assert_eq!(USER.get(), "outer");
        assert_eq!(DEPTH.get(), 1);
        let deeper = with_restored_context!(outer, {
            with_restored_context!(inner, {
                with_restored_context!(outer, { format!("{}/{}", USER.get(), DEPTH.get()) })
            })
        });
        assert_eq!(deeper, "outer/1");
        assert_eq!(USER.get(), "outer");
        42
    });
    assert_eq!(value, 42);
    assert_eq!(USER.get(), "anonymous");
    assert_eq!(DEPTH.get(), 0);
    assert!(context::try_request().is_err());
}

#[test]
fn previous_context_is_back_when_the_restored_block_panics() {
    let saved = with_saved_context!(USER => "panicky".to_string());
    let outer = with_saved_context!(USER => "outer".to_string());

    let caught = catch_unwind(AssertUnwindSafe(|| {
        with_restored_context!(saved, {
            assert_eq!(USER.get(), "panicky");
            panic!("panic inside a restored context");
        })
    }));
    assert_eq!(
        panic_text(&*caught.unwrap_err()),
        "panic inside a restored context"
    );
    assert_eq!(USER.get(), "anonymous");

    // Nested: the inner block panics, the outer one catches and is current again.
    with_restored_context!(outer, {
        let caught = catch_unwind(AssertUnwindSafe(|| {
            with_restored_context!(saved, {
                with_restored_context!(outer, {
                    with_restored_context!(saved, {
                        panic!("deep panic");
                    })
                })
            })
        }));
        assert!(caught.is_err());
        assert_eq!(USER.get(), "outer");
    });
    assert_eq!(USER.get(), "anonymous");

    // The same through the method form.
    let caught = catch_unwind(AssertUnwindSafe(|| {
        saved.restore(|| -> u32 { panic!("method form") })
    }));
    assert!(caught.is_err());
    assert_eq!(USER.get(), "anonymous");
}

// ---------------------------------------------------------------------------------------------
// Context locals
// ---------------------------------------------------------------------------------------------

#[test]
fn context_locals_are_captured_and_overridden_by_with_saved_context() {
    USER.set("alice".to_string());
    let plain = with_saved_context!();
    let overridden = with_saved_context!(USER => "bob".to_string(), DEPTH => 7);
    let trailing_comma = with_saved_context!(DEPTH => 8,);
    USER.set("carol".to_string());
    DEPTH.set(3);

    assert_eq!(with_restored_context!(plain, { USER.get() }), "alice");
    assert_eq!(with_restored_context!(plain, { DEPTH.get() }), 0);
    assert_eq!(
        with_restored_context!(overridden, { (USER.get(), DEPTH.get()) }),
        ("bob".to_string(), 7)
    );
    assert_eq!(
        with_restored_context!(trailing_comma, { (USER.get(), DEPTH.get()) }),
        ("alice".to_string(), 8)
    );
    assert_eq!((USER.get(), DEPTH.get()), ("carol".to_string(), 3));

    // Setting inside a restored context changes neither the snapshot nor the outside.
    with_restored_context!(plain, {
        USER.set("dave".to_string());
        assert_eq!(USER.get(), "dave");
        assert_eq!(USER.with(|u| u.len()), 4);
    });
    assert_eq!(with_restored_context!(plain, { USER.get() }), "alice");
    assert_eq!(USER.get(), "carol");

    // `scope` binds like a `let` of a special variable.
    let seen = USER.scope("erin".to_string(), || {
        let snap = with_saved_context!();
        (USER.get(), snap)
    });
    assert_eq!(seen.0, "erin");
    assert_eq!(USER.get(), "carol");
    assert_eq!(with_restored_context!(seen.1, { USER.get() }), "erin");
}

#[test]
fn safe_closure_runs_in_the_context_of_its_creation() {
    let add = DEPTH.scope(5, || safe_closure!(|n: u32| n + DEPTH.get()));
    let who = USER.scope("creator".to_string(), || {
        safe_closure!(move |suffix: u32| format!("{}{suffix}", USER.get()))
    });
    assert_eq!(DEPTH.get(), 0);
    assert_eq!(add(1), 6);
    assert_eq!(who(2), "creator2");

    // Called inside another context: its own context while it runs, the other one after.
    let other = with_saved_context!(DEPTH => 100, USER => "other".to_string());
    with_restored_context!(other, {
        assert_eq!(add(1), 6);
        assert_eq!(who(3), "creator3");
        assert_eq!(DEPTH.get(), 100);
        assert_eq!(USER.get(), "other");
    });

    // A panic inside does not leave its context current.
    let boom = DEPTH.scope(9, || {
        safe_closure!(|n: u32| {
            assert_eq!(DEPTH.get(), 9);
            if n > 0 {
                panic!("safe closure panic");
            }
            n
        })
    });
    assert!(catch_unwind(AssertUnwindSafe(|| boom(1))).is_err());
    assert_eq!(DEPTH.get(), 0);
    assert_eq!(boom(0), 0);

    // The function form.
    let bound = with_saved_context!(DEPTH => 2).bind(|n: u32| n * DEPTH.get());
    assert_eq!(bound(21), 42);
}

// ---------------------------------------------------------------------------------------------
// SavedContext::scope across .await
// ---------------------------------------------------------------------------------------------

#[test]
fn scope_keeps_each_tasks_context_across_awaits_while_tasks_interleave() {
    let ex = LocalExecutor::new();
    let log: Rc<RefCell<Vec<(u32, u32, String)>>> = Rc::default();
    let tasks: Vec<_> = [1u32, 2]
        .into_iter()
        .map(|task| {
            let ctx = with_saved_context!(DEPTH => task * 10, USER => format!("task{task}"));
            let log = log.clone();
            ex.spawn(ctx.scope(async move {
                for _ in 0..4 {
                    log.borrow_mut().push((task, DEPTH.get(), USER.get()));
                    yield_now().await;
                }
                DEPTH.get()
            }))
        })
        .collect();
    let results = future::block_on(ex.run(async {
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await);
        }
        out
    }));
    assert_eq!(results, [10, 20]);
    let log = log.borrow();
    assert_eq!(log.len(), 8);
    for (task, depth, user) in log.iter() {
        assert_eq!(*depth, task * 10, "{log:?}");
        assert_eq!(*user, format!("task{task}"), "{log:?}");
    }
    // They really interleaved: task 2 ran before task 1 was done.
    let first_of_2 = log.iter().position(|e| e.0 == 2).unwrap();
    let last_of_1 = log.iter().rposition(|e| e.0 == 1).unwrap();
    assert!(first_of_2 < last_of_1, "{log:?}");
    // Outside the tasks, nothing leaked.
    assert_eq!((DEPTH.get(), USER.get()), (0, "anonymous".to_string()));
}

#[test]
fn scope_future_sees_no_context_of_a_scope_polled_in_another_task() {
    // A plain (unscoped) task interleaving with a scoped one sees the outer context.
    let ex = LocalExecutor::new();
    let seen: Rc<RefCell<Vec<u32>>> = Rc::default();
    let scoped = with_saved_context!(DEPTH => 7).scope({
        let seen = seen.clone();
        async move {
            for _ in 0..3 {
                seen.borrow_mut().push(DEPTH.get());
                yield_now().await;
            }
        }
    });
    let plain = {
        let seen = seen.clone();
        async move {
            for _ in 0..3 {
                seen.borrow_mut().push(DEPTH.get());
                yield_now().await;
            }
        }
    };
    let a = ex.spawn(scoped);
    let b = ex.spawn(plain);
    future::block_on(ex.run(async {
        a.await;
        b.await;
    }));
    let mut seen = seen.borrow().clone();
    seen.sort_unstable();
    assert_eq!(seen, [0, 0, 0, 7, 7, 7]);
}

#[test]
fn context_local_set_inside_a_scoped_future_survives_an_await() {
    // `ContextLocal::set` sets "the value in the current context". Inside `SavedContext::scope`
    // the current context is the scope's, so the value must still be there after an `.await`,
    // exactly as it is when no `.await` comes in between.
    let ctx = with_saved_context!(DEPTH => 1);
    let (before_await, after_await) = future::block_on(ctx.scope(async {
        DEPTH.set(2);
        let before = DEPTH.get();
        yield_now().await;
        (before, DEPTH.get())
    }));
    assert_eq!(before_await, 2);
    assert_eq!(
        after_await, 2,
        "a context local set inside SavedContext::scope reverted at the next .await"
    );
    assert_eq!(DEPTH.get(), 0);
}

// ---------------------------------------------------------------------------------------------
// No current request
// ---------------------------------------------------------------------------------------------

#[test]
fn outside_any_context_request_panics_and_try_request_errs() {
    let caught = catch_unwind(|| {
        let _ = context::request();
    });
    let text = panic_text(&*caught.unwrap_err());
    assert!(text.contains("no current request context"), "{text:?}");
    assert_eq!(context::try_request().unwrap_err(), NoContextError);
    assert_eq!(NoContextError.to_string(), "no current request context");

    for (what, f) in [
        ("acceptor", (|| drop(context::acceptor())) as fn()),
        ("status", || {
            let _ = context::status();
        }),
        ("set_status", || context::set_status(StatusCode::OK)),
        ("headers", || drop(context::headers())),
        ("session", || drop(context::session())),
        ("responder", || drop(context::responder())),
        ("is_closed", || {
            let _ = context::is_closed();
        }),
    ] {
        let caught = catch_unwind(f);
        let text = panic_text(&*caught.expect_err(what));
        assert!(
            text.contains("no current request context"),
            "{what}: {text:?}"
        );
    }

    // The sending functions return NoRequest with the value.
    match context::send_reply(Reply::text("nobody")) {
        Err(SendError::NoRequest(r)) => assert_eq!(r.body(), "nobody"),
        other => panic!("{other:?}"),
    }
    match context::send_body("body") {
        Err(SendError::NoRequest(r)) => assert_eq!(r.body(), "body"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        context::start_stream(),
        Err(SendError::NoRequest(_))
    ));

    // A snapshot taken outside a request carries no request.
    let saved = SavedContext::capture();
    assert!(saved.request().is_none());
    assert!(saved.responder().is_none());
    assert!(saved.remote().is_none());
    assert!(saved.is_closed());
    assert!(matches!(
        saved.send_reply("x"),
        Err(SendError::NoRequest(_))
    ));
    assert!(matches!(
        saved.reply_blocking(|| Reply::text("x")),
        Err(SendError::NoRequest(_))
    ));
    future::block_on(future::or(saved.closed(), async {
        Timer::after(Duration::from_secs(2)).await;
        panic!("closed() of a request-less context never completed");
    }));
    with_restored_context!(saved, {
        assert_eq!(context::try_request().unwrap_err(), NoContextError);
    });
}

// ---------------------------------------------------------------------------------------------
// Inside a server
// ---------------------------------------------------------------------------------------------

/// What the current context says, as text.
fn describe_current() -> String {
    let req = context::request();
    format!(
        "path={} peer={} local={} acceptor={} user={}",
        req.path(),
        req.peer_addr(),
        req.local_addr(),
        context::acceptor().local_addr(),
        USER.get()
    )
}

#[test]
fn handler_sees_its_own_request_and_acceptor() {
    let server = Server::start(|_ex| {
        |req: &Request| -> Handled {
            match req.path().as_ref() {
                "/set-local" => {
                    USER.set("set in handler".to_string());
                    Reply::text(USER.get()).into()
                }
                _ => {
                    let current = context::request();
                    assert_eq!(current.path(), req.path());
                    assert_eq!(current.target(), req.target());
                    Reply::text(describe_current()).into()
                }
            }
        }
    });
    let stream = connect(&server);
    let mut reader = Reader::new(&stream);
    let me = stream.local_addr().unwrap();
    let expected = |path: &str| {
        format!(
            "path={path} peer={me} local={} acceptor={} user=anonymous",
            server.addr, server.addr
        )
    };
    write(&stream, &get("/first?q=1"));
    assert_eq!(reader.response(false).unwrap().text(), expected("/first"));
    write(&stream, &get("/set-local"));
    assert_eq!(reader.response(false).unwrap().text(), "set in handler");
    // A local set by one handler does not leak into the next request.
    write(&stream, &get("/second"));
    assert_eq!(reader.response(false).unwrap().text(), expected("/second"));
}

#[test]
fn actor_restoring_saved_contexts_gets_the_right_request() {
    let (saved_tx, saved_rx) = mpsc::channel::<()>();
    let server = Server::start(move |ex| {
        let actor =
            iomux::spawn_actor_task(ex, 16, |mut mailbox: Mailbox<SavedContext>| async move {
                // Collect two waiting requests, then answer them in reverse order.
                let first = mailbox.recv().await.unwrap();
                let second = mailbox.recv().await.unwrap();
                for ctx in [second, first] {
                    // Outside the restored context there is no current request.
                    let outside = format!("{:?}/{}", context::try_request().err(), USER.get());
                    with_restored_context!(ctx, {
                        let text = format!("{} outside={outside}", describe_current());
                        context::send_body(text).unwrap();
                    });
                }
            });
        move |req: &Request| {
            let user = format!("user of {}", req.path());
            actor.do_send(with_saved_context!(USER => user));
            saved_tx.send(()).unwrap();
            Handled::Deferred
        }
    });
    let alpha = connect(&server);
    write(&alpha, &get("/alpha"));
    saved_rx.recv_timeout(READ_TIMEOUT).unwrap();
    let beta = connect(&server);
    write(&beta, &get("/beta"));

    for (stream, path) in [(&beta, "/beta"), (&alpha, "/alpha")] {
        let r = Reader::new(stream).response(false).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(
            r.text(),
            format!(
                "path={path} peer={} local={} acceptor={} user=user of {path} \
                 outside=Some(NoContextError)/anonymous",
                stream.local_addr().unwrap(),
                server.addr,
                server.addr
            )
        );
    }
}

#[test]
fn nested_and_panicking_restores_of_request_contexts_in_an_actor() {
    let (saved_tx, saved_rx) = mpsc::channel::<()>();
    let server = Server::start(move |ex| {
        let actor =
            iomux::spawn_actor_task(ex, 16, |mut mailbox: Mailbox<SavedContext>| async move {
                let outer = mailbox.recv().await.unwrap();
                let inner = mailbox.recv().await.unwrap();
                let mut steps = Vec::new();
                with_restored_context!(outer, {
                    steps.push(context::request().path().into_owned());
                    with_restored_context!(inner, {
                        steps.push(context::request().path().into_owned());
                    });
                    steps.push(context::request().path().into_owned());
                    let caught = catch_unwind(AssertUnwindSafe(|| {
                        with_restored_context!(inner, {
                            steps.push(context::request().path().into_owned());
                            panic!("panic in the inner context");
                        })
                    }));
                    steps.push(format!("caught={}", caught.is_err()));
                    steps.push(context::request().path().into_owned());
                });
                steps.push(format!("after={:?}", context::try_request().err()));
                let report = steps.join(" ");
                inner
                    .send_reply(Reply::text(format!("inner: {report}")))
                    .unwrap();
                outer
                    .send_reply(Reply::text(format!("outer: {report}")))
                    .unwrap();
            });
        move |_req: &Request| {
            actor.do_send(with_saved_context!());
            saved_tx.send(()).unwrap();
            Handled::Deferred
        }
    });
    let outer = connect(&server);
    write(&outer, &get("/outer"));
    saved_rx.recv_timeout(READ_TIMEOUT).unwrap();
    let inner = connect(&server);
    write(&inner, &get("/inner"));
    let report = "/outer /inner /outer /inner caught=true /outer after=Some(NoContextError)";
    let r = Reader::new(&inner).response(false).unwrap();
    assert_eq!(r.text(), format!("inner: {report}"));
    let r = Reader::new(&outer).response(false).unwrap();
    assert_eq!(r.text(), format!("outer: {report}"));
}

#[test]
fn scoped_request_contexts_interleave_across_awaits_in_an_actor() {
    let (saved_tx, saved_rx) = mpsc::channel::<()>();
    let server = Server::start(move |ex| {
        let actor =
            iomux::spawn_actor_task(ex, 16, |mut mailbox: Mailbox<SavedContext>| async move {
                let a = mailbox.recv().await.unwrap();
                let b = mailbox.recv().await.unwrap();
                let log: RefCell<Vec<String>> = RefCell::default();
                let work = |ctx: &SavedContext, every: u64| {
                    let log = &log;
                    ctx.scope(async move {
                        let mut seen = Vec::new();
                        for _ in 0..3 {
                            let path = context::request().path().into_owned();
                            log.borrow_mut().push(path.clone());
                            seen.push(path);
                            Timer::after(Duration::from_millis(every)).await;
                        }
                        // Reply from inside the scope, after the awaits.
                        context::send_body(seen.join(",")).unwrap();
                    })
                };
                future::zip(work(&a, 10), work(&b, 15)).await;
                // Both interleaved: the log is not all of one then all of the other.
                let log = log.into_inner();
                assert_ne!(log[..3], log[3..], "{log:?}");
            });
        move |_req: &Request| {
            actor.do_send(with_saved_context!());
            saved_tx.send(()).unwrap();
            Handled::Deferred
        }
    });
    let a = connect(&server);
    write(&a, &get("/a"));
    saved_rx.recv_timeout(READ_TIMEOUT).unwrap();
    let b = connect(&server);
    write(&b, &get("/b"));
    assert_eq!(Reader::new(&a).response(false).unwrap().text(), "/a,/a,/a");
    assert_eq!(Reader::new(&b).response(false).unwrap().text(), "/b,/b,/b");
}

#[test]
fn safe_closure_made_in_a_handler_replies_later_from_an_actor() {
    type Job = Box<dyn Fn(u32) -> bool>;
    let server = Server::start(|ex| {
        let actor = iomux::spawn_actor_task(ex, 16, |mut mailbox: Mailbox<Job>| async move {
            while let Some(job) = mailbox.recv().await {
                Timer::after(Duration::from_millis(20)).await;
                assert!(context::try_request().is_err());
                assert!(job(7));
            }
        });
        move |_req: &Request| {
            let job = safe_closure!(|n: u32| {
                let text = format!("{} #{n} user={}", context::request().path(), USER.get());
                context::send_body(text).is_ok()
            });
            let job = USER.scope("closure user".to_string(), || {
                // Made where USER is bound: the closure keeps that binding too.
                let inner = safe_closure!(move |n: u32| job(n) && USER.get() == "closure user");
                Box::new(inner) as Job
            });
            actor.do_send(job);
            Handled::Deferred
        }
    });
    let stream = connect(&server);
    write(&stream, &get("/safe"));
    let r = Reader::new(&stream).response(false).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "/safe #7 user=anonymous");
}
