//! `own_executor`: the server as one task among others on an executor the program owns.
//!
//! Shows: a [`async_executor::LocalExecutor`] created by the program, a task of the program's own
//! on it (a ticker counting seconds), and the acceptor served on the same executor with
//! [`iomux::Acceptor::serve`]. Everything runs on one thread, so the handler and the ticker share
//! state through `Rc<Cell<_>>`, without locks: `/uptime` reads the ticker's count of seconds and
//! the handler's count of requests (of every path).
//!
//! Run:
//!
//! ```sh
//! cargo run --example own_executor -- --listen 127.0.0.1:8080
//! ```
//!
//! Then, from a second terminal:
//!
//! ```sh
//! curl -i http://127.0.0.1:8080/uptime        # 200 text/plain "uptime: 0 s", "requests: 1"
//! curl -i http://127.0.0.1:8080/elsewhere     # 404 (requests are counted all the same)
//! sleep 3; curl http://127.0.0.1:8080/uptime  # "uptime: 3 s", "requests: 3"
//! ```

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use async_executor::LocalExecutor;
use async_io::Timer;
use futures_lite::StreamExt;
use iomux::http::StatusCode;
use iomux::{Acceptor, Handled, Reply, Request};

fn main() -> std::io::Result<()> {
    let addr = common::listen_addr("usage: own_executor [--listen HOST:PORT]");

    let ex = LocalExecutor::new();
    let seconds = Rc::new(Cell::new(0u64));
    let requests = Rc::new(Cell::new(0u64));

    // A task of our own, beside the server's: count seconds since the start.
    let ticks = seconds.clone();
    ex.spawn(async move {
        let mut every_second = Timer::interval(Duration::from_secs(1));
        while every_second.next().await.is_some() {
            ticks.set(ticks.get() + 1);
        }
    })
    .detach();

    let acceptor = Acceptor::bind(addr, move |req: &Request| -> Handled {
        requests.set(requests.get() + 1);
        match (req.method(), req.path().as_ref()) {
            ("GET" | "HEAD", "/uptime") => Reply::text(format!(
                "uptime: {} s\nrequests: {}\n",
                seconds.get(),
                requests.get()
            ))
            .into(),
            _ => Reply::error(StatusCode::NOT_FOUND).into(),
        }
    })?;
    common::announce(&acceptor);

    // The connections run as tasks on `ex` too; `ex.run` drives them all until the server stops.
    async_io::block_on(ex.run(acceptor.serve(&ex)))
}
