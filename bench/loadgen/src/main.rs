//! `iomux-loadgen`: the load generator of the iomux benchmark (bench/README.md). One thread,
//! one mio/epoll loop; every mode prints ONE JSON line on stdout with all its figures.
//!
//! ```sh
//! iomux-loadgen fanout     --addr 127.0.0.1:8080 --n 10000 --rounds 3 --pids 1234
//! iomux-loadgen throughput --addr 127.0.0.1:8080 --channels 10 --subs 100 --duration 10
//! iomux-loadgen hello      --addr 127.0.0.1:8080 --conns 64 --pipeline 16 --duration 10
//! ```
//!
//! Modes:
//! - `fanout`: N waiting long-poll subscribers on one channel: server memory before/after,
//!   idle CPU, rounds of one publish with the delivery time of every subscriber, re-polls with
//!   cursors, a buffer check, loss and duplicates (adapted from the shared bench harness,
//!   lpbench).
//! - `throughput`: subscribers on several channels re-poll continuously while publishers
//!   publish as fast as the server accepts: delivered messages per second, latency, loss.
//! - `hello`: keep-alive `GET /hello` load, optionally pipelined: requests per second, latency.

mod fanout;
mod hello;
mod http;
mod throughput;
mod util;

fn usage() -> String {
    format!(
        "usage:\n  {}\n  {}\n  {}",
        fanout::USAGE,
        throughput::USAGE,
        hello::USAGE
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, rest) = match args.split_first() {
        Some((mode, rest)) => (mode.as_str(), rest),
        None => ("", &[][..]),
    };
    let result = match mode {
        "fanout" => fanout::run(rest),
        "throughput" => throughput::run(rest),
        "hello" => hello::run(rest),
        "-h" | "--help" | "help" => {
            println!("{}", usage());
            return;
        }
        _ => Err(format!("unknown mode {mode:?}")),
    };
    match result {
        Ok(json) => println!("{json}"),
        Err(e) => {
            eprintln!("iomux-loadgen: {e}\n{}", usage());
            std::process::exit(2);
        }
    }
}
