//! `iomux-bench-peer`: the server the bench drives for iomux.
//!
//! Usage: `iomux-bench-peer PORT` (the port is the last argument; the address is 127.0.0.1).
//!
//! The bench URL contract (bench/README.md) as an iomux user would write it: `GET /hello`
//! answers `Hello, world!` as text/plain; everything else goes to the nchan-compatible
//! [`PubSub`] of iomux-actors (`POST /pub/{channel}`, long-poll `GET /sub/{channel}` with
//! Etag / If-None-Match cursors), with a buffer of 10 messages per channel like the peers. One
//! `LocalExecutor` on the main thread runs the connections and the hub; default `iomux::Config`.

use async_executor::LocalExecutor;
use iomux::{Acceptor, Handled, Reply, Request};
use iomux_actors::{PubSub, PubSubConfig};

fn main() -> std::io::Result<()> {
    raise_open_file_limit();
    let port: u16 = match std::env::args().skip(1).last() {
        Some(port) => port.parse().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "usage: iomux-bench-peer PORT",
            )
        })?,
        None => 8080,
    };

    let ex = LocalExecutor::new();
    let pubsub = PubSub::new(
        &ex,
        PubSubConfig {
            buffer_length: 10,
            ..PubSubConfig::default()
        },
    );
    let pubsub = pubsub.handler();
    let acceptor = Acceptor::bind(("127.0.0.1", port), move |req: &Request| -> Handled {
        if req.path() == "/hello" {
            Reply::text("Hello, world!").into()
        } else {
            pubsub(req)
        }
    })?;
    eprintln!("iomux-bench-peer listening on {}", acceptor.local_addr());
    async_io::block_on(ex.run(acceptor.serve(&ex)))
}

/// 15,000 waiting subscribers need more than the usual soft limit of 1024 open files: raise the
/// soft limit to the hard one.
fn raise_open_file_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        let mut limit = std::mem::zeroed::<libc::rlimit>();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
