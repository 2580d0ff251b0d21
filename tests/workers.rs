//! Per-core workers over real TCP: several event loops on one port (`SO_REUSEPORT`), each with
//! its own handler and actors; one stop for all; errors at bind time; a failing worker stops
//! the others; the access log, error pages and debug shared by all workers.

mod support;

use std::cell::RefCell;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use iomux::access_log::AccessLog;
use iomux::error_pages::ErrorPages;
use iomux::http::StatusCode;
use iomux::{Acceptor, Handled, Reply, Request, SavedContext, Worker, Workers};
use support::{Reader, Response};

/// Connections opened at most while waiting to see every worker answer. The kernel picks a
/// worker by a hash of the client's port, so each new connection has a 1/n chance per worker:
/// for 2 workers, missing one in 200 tries has a probability of 2^-199.
const MAX_TRIES: usize = 200;

/// Longest a test waits for the workers to end.
const JOIN_TIMEOUT: Duration = Duration::from_secs(20);

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// `GET path` on a connection of its own.
fn get(addr: SocketAddr, path: &str) -> Response {
    let mut s = connect(addr);
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    Reader::new(s).response(false).unwrap()
}

/// Join the workers in a thread of their own: their result, or a failed test after
/// [`JOIN_TIMEOUT`].
fn join_within(workers: Workers) -> io::Result<()> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(workers.join());
    });
    rx.recv_timeout(JOIN_TIMEOUT)
        .expect("the workers did not end in time")
}

/// A handler factory whose handler answers `worker {index} on {thread name}`.
fn who(worker: &Worker<'_>) -> impl Fn(&Request) -> String {
    let index = worker.index();
    move |_: &Request| {
        let thread = thread::current();
        format!("worker {index} on {}", thread.name().unwrap_or("?"))
    }
}

#[test]
fn two_workers_share_the_port_and_each_gets_connections() {
    let workers = Acceptor::builder()
        .listen("127.0.0.1:0")
        .workers(2)
        .bind_workers(who)
        .unwrap();
    assert_eq!(workers.count(), 2);
    let addr = workers.local_addr();
    assert_ne!(addr.port(), 0, "port 0 gives the real port");

    let mut seen = [0usize; 2];
    let mut tries = 0;
    while seen.contains(&0) && tries < MAX_TRIES {
        tries += 1;
        let response = get(addr, "/");
        assert_eq!(response.status, 200, "{response:?}");
        match response.text().as_str() {
            "worker 0 on iomux-worker-0" => seen[0] += 1,
            "worker 1 on iomux-worker-1" => seen[1] += 1,
            other => panic!("unexpected reply {other:?}"),
        }
    }
    assert!(
        !seen.contains(&0),
        "after {tries} connections, replies by worker: {seen:?}"
    );

    workers.stop_handle().stop();
    join_within(workers).unwrap();
    assert!(
        TcpStream::connect(addr).is_err(),
        "no worker listens after join"
    );
}

#[test]
fn workers_all_listen_on_the_reported_address() {
    let workers = Acceptor::builder()
        .listen("127.0.0.1:0")
        .workers(2)
        .bind_workers(|worker: &Worker<'_>| {
            let addr = worker.local_addr();
            move |req: &Request| format!("{addr} {}", req.local_addr())
        })
        .unwrap();
    let addr = workers.local_addr();
    for _ in 0..10 {
        assert_eq!(get(addr, "/").text(), format!("{addr} {addr}"));
    }
}

#[test]
fn one_stop_ends_every_worker_gracefully() {
    // Every request waits for a reply that never comes: the shutdown answers it.
    let made = Arc::new(AtomicUsize::new(0));
    let counter = made.clone();
    let workers = Acceptor::builder()
        .listen("127.0.0.1:0")
        .workers(3)
        .bind_workers(move |_: &Worker<'_>| {
            counter.fetch_add(1, Ordering::SeqCst);
            let kept: RefCell<Vec<SavedContext>> = RefCell::new(Vec::new());
            move |_: &Request| {
                kept.borrow_mut().push(iomux::with_saved_context!());
                Handled::Deferred
            }
        })
        .unwrap();
    let addr = workers.local_addr();

    // Enough waiting requests that every worker very likely holds some.
    let mut waiting = Vec::new();
    for _ in 0..30 {
        let mut s = connect(addr);
        s.write_all(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        waiting.push(s);
    }
    // Wait until all three handlers exist and the requests have had time to arrive.
    let deadline = Instant::now() + Duration::from_secs(10);
    while made.load(Ordering::SeqCst) < 3 {
        assert!(
            Instant::now() < deadline,
            "not every worker made its handler"
        );
        thread::sleep(Duration::from_millis(5));
    }
    thread::sleep(Duration::from_millis(200));

    let stop = workers.stop_handle();
    assert!(!stop.is_stopped());
    stop.stop();
    let started = Instant::now();
    join_within(workers).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    for s in waiting {
        let response = Reader::new(s).response(false).unwrap();
        assert_eq!(response.status, 503, "{response:?}");
        assert_eq!(response.header("retry-after"), Some("1"));
    }
}

#[test]
fn binding_errors_come_back_from_bind_workers() {
    // A socket without SO_REUSEPORT holds the port: no worker may share it.
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap();
    for n in [1, 2] {
        let made = Arc::new(AtomicUsize::new(0));
        let counter = made.clone();
        let error = Acceptor::builder()
            .listen(taken)
            .workers(n)
            .bind_workers(move |worker: &Worker<'_>| {
                counter.fetch_add(1, Ordering::SeqCst);
                who(worker)
            })
            .unwrap_err();
        assert_eq!(
            error.kind(),
            io::ErrorKind::AddrInUse,
            "workers({n}): {error}"
        );
        thread::sleep(Duration::from_millis(50));
        assert_eq!(made.load(Ordering::SeqCst), 0, "no worker was started");
    }

    // bind (one loop) refuses a builder set up for several.
    let error = Acceptor::builder()
        .listen("127.0.0.1:0")
        .workers(2)
        .bind(|_: &Request| "hi")
        .unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
}

#[test]
fn workers_0_is_one_per_core() {
    let cores = thread::available_parallelism().unwrap().get();
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let workers = Acceptor::builder()
        .listen("127.0.0.1:0")
        .workers(0)
        .bind_workers(move |worker: &Worker<'_>| {
            tx.lock()
                .unwrap()
                .send((worker.index(), worker.count()))
                .unwrap();
            who(worker)
        })
        .unwrap();
    assert_eq!(workers.count(), cores);
    let mut made: Vec<(usize, usize)> = (0..cores)
        .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
        .collect();
    made.sort_unstable();
    let expected: Vec<(usize, usize)> = (0..cores).map(|i| (i, cores)).collect();
    assert_eq!(made, expected);
    assert_eq!(get(workers.local_addr(), "/").status, 200);
}

#[test]
fn one_worker_still_works() {
    let workers = Acceptor::builder()
        .listen("127.0.0.1:0")
        .bind_workers(who)
        .unwrap();
    assert_eq!(workers.count(), 1);
    assert_eq!(
        get(workers.local_addr(), "/").text(),
        "worker 0 on iomux-worker-0"
    );
    let stop = workers.stop_handle();
    thread::spawn(move || stop.stop());
    join_within(workers).unwrap();
}

#[test]
fn a_panicking_handler_is_answered_500_and_the_other_worker_goes_on() {
    let workers = Acceptor::builder()
        .listen("127.0.0.1:0")
        .workers(2)
        .debug(true)
        .error_pages(ErrorPages::html())
        .bind_workers(|worker: &Worker<'_>| {
            let index = worker.index();
            move |_: &Request| -> Reply {
                if index == 0 {
                    panic!("boom on worker 0");
                }
                Reply::text(format!("worker {index}"))
            }
        })
        .unwrap();
    let addr = workers.local_addr();

    // Until a 500 of worker 0, then a reply of worker 1, then a 500 again: worker 1 serves
    // after worker 0's handler panicked, and worker 0 survived its panic.
    let wanted = [500, 200, 500];
    let mut matched = 0;
    let mut tries = 0;
    while matched < wanted.len() && tries < MAX_TRIES {
        tries += 1;
        let response = get(addr, "/x");
        match response.status {
            500 => {
                let page = response.text();
                assert!(
                    page.contains("<h1>500 Internal Server Error</h1>"),
                    "{page}"
                );
                assert!(page.contains("panicked at tests/workers.rs:"), "{page}");
                assert!(page.contains("boom on worker 0"), "{page}");
            }
            200 => assert_eq!(response.text(), "worker 1"),
            _ => panic!("{response:?}"),
        }
        if response.status == wanted[matched] {
            matched += 1;
        }
    }
    assert_eq!(matched, wanted.len(), "after {tries} requests");
    workers.stop_handle().stop();
    join_within(workers).unwrap();
}

#[test]
fn a_worker_that_panics_stops_the_others_and_join_reports_it() {
    let workers = Acceptor::builder()
        .listen("127.0.0.1:0")
        .workers(3)
        .bind_workers(|worker: &Worker<'_>| {
            if worker.index() == 2 {
                panic!("worker 2 cannot start");
            }
            who(worker)
        })
        .unwrap();
    let stop = workers.stop_handle();
    let error = join_within(workers).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::Other);
    assert_eq!(
        error.to_string(),
        "worker 2 panicked: worker 2 cannot start"
    );
    assert!(stop.is_stopped(), "the panic stopped every worker");
}

#[test]
fn deferred_replies_on_a_worker() {
    // An actor of each worker answers its requests later, from that worker's loop; requests to
    // `/shared` go to one thread owning a counter, which answers through a `RemoteResponder`.
    let (to_owner, from_workers) = async_channel::unbounded::<(usize, iomux::RemoteResponder)>();
    let owner = thread::spawn(move || {
        let mut count = 0;
        while let Ok((index, remote)) = from_workers.recv_blocking() {
            count += 1;
            let _ = remote.send(Reply::text(format!("shared {count} via worker {index}")));
        }
    });
    let workers = Acceptor::builder()
        .listen("127.0.0.1:0")
        .workers(2)
        .bind_workers(move |worker: &Worker<'_>| {
            let index = worker.index();
            let actor = iomux::spawn_actor_task(
                worker.executor(),
                64,
                move |mut mailbox: iomux::Mailbox<SavedContext>| async move {
                    while let Some(ctx) = mailbox.recv().await {
                        async_io::Timer::after(Duration::from_millis(20)).await;
                        let thread = thread::current().name().unwrap_or("?").to_owned();
                        let _ = ctx.send_reply(format!("later from worker {index} on {thread}"));
                    }
                },
            );
            let to_owner = to_owner.clone();
            move |req: &Request| -> Handled {
                if req.path() == "/shared" {
                    let remote = iomux::context::responder().unwrap().remote();
                    to_owner.try_send((index, remote)).unwrap();
                } else {
                    actor.do_send(iomux::with_saved_context!());
                }
                Handled::Deferred
            }
        })
        .unwrap();
    let addr = workers.local_addr();

    let mut seen = [false; 2];
    let mut tries = 0;
    while seen.contains(&false) && tries < MAX_TRIES {
        tries += 1;
        let response = get(addr, "/later");
        assert_eq!(response.status, 200, "{response:?}");
        let text = response.text();
        let index = match text.as_str() {
            "later from worker 0 on iomux-worker-0" => 0,
            "later from worker 1 on iomux-worker-1" => 1,
            other => panic!("unexpected reply {other:?}"),
        };
        seen[index] = true;
    }
    assert!(!seen.contains(&false), "after {tries} requests: {seen:?}");

    for n in 1..=10 {
        let response = get(addr, "/shared");
        assert_eq!(response.status, 200, "{response:?}");
        let text = response.text();
        assert!(
            text == format!("shared {n} via worker 0")
                || text == format!("shared {n} via worker 1"),
            "{text}"
        );
    }

    workers.stop_handle().stop();
    join_within(workers).unwrap();
    owner.join().unwrap(); // every sender (one per handler) is gone with its worker
}

/// A writer shared with the test, for the access log.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Threads of this process whose name starts with `prefix` (names are cut at 15 bytes).
#[cfg(target_os = "linux")]
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

#[test]
fn the_workers_share_one_access_log_writer() {
    let out = Shared::default();
    let workers = Acceptor::builder()
        .listen("127.0.0.1:0")
        .workers(3)
        .access_log(AccessLog::writer(out.clone()))
        .bind_workers(|worker: &Worker<'_>| {
            let index = worker.index();
            move |req: &Request| -> Reply {
                if req.path() == "/dropped" {
                    let dropped = iomux::context::acceptor().access_log_dropped();
                    return Reply::text(dropped.to_string());
                }
                Reply::text(format!("{index}")).with_status(StatusCode::ACCEPTED)
            }
        })
        .unwrap();
    let addr = workers.local_addr();
    let mut by_worker = [0usize; 3];
    let requests = 60;
    for i in 0..requests {
        let response = get(addr, &format!("/r{i}"));
        assert_eq!(response.status, 202);
        by_worker[response.text().parse::<usize>().unwrap()] += 1;
    }
    assert_eq!(get(addr, "/dropped").text(), "0");
    // (A thread names itself once it runs: by now it has.)
    #[cfg(target_os = "linux")]
    assert_eq!(
        threads_named("iomux-access"),
        1,
        "one writer for all workers"
    );
    workers.stop_handle().stop();
    join_within(workers).unwrap();

    // join waited for the writer: every line is there, whichever worker logged it.
    let log = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), requests + 1, "{log}");
    for i in 0..requests {
        let request = format!("\"GET /r{i} HTTP/1.1\" 202 1 ");
        assert_eq!(
            lines.iter().filter(|l| l.contains(&request)).count(),
            1,
            "{request} in\n{log}"
        );
    }
    assert!(
        by_worker.iter().filter(|&&n| n > 0).count() >= 2,
        "lines came from several workers: {by_worker:?}"
    );
    #[cfg(target_os = "linux")]
    {
        // The writer thread ended with the last worker.
        let deadline = Instant::now() + Duration::from_secs(5);
        while threads_named("iomux-access") > 0 {
            assert!(
                Instant::now() < deadline,
                "the access log writer still runs"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
fn dropping_workers_without_join_stops_them() {
    let workers = Acceptor::builder()
        .listen("127.0.0.1:0")
        .workers(2)
        .bind_workers(who)
        .unwrap();
    let addr = workers.local_addr();
    let stop = workers.stop_handle();
    assert_eq!(get(addr, "/").status, 200);
    drop(workers);
    assert!(stop.is_stopped());
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < deadline, "still listening");
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn workers_is_send_and_sync() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Workers>();
    send_sync::<iomux::StopHandle>();
}
