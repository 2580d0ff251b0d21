//! `hello`: the smallest iomux server; every reply is produced at once.
//!
//! Shows: an [`iomux::Acceptor`] with a closure handler that returns a [`iomux::Reply`].
//!
//! Run:
//!
//! ```sh
//! cargo run --example hello -- --listen 127.0.0.1:8080
//! ```
//!
//! Then, from a second terminal:
//!
//! ```sh
//! curl -i http://127.0.0.1:8080/hello      # 200 text/plain "Hello, world!"
//! curl -i http://127.0.0.1:8080/elsewhere  # 404
//! ```

mod common;

use iomux::http::StatusCode;
use iomux::{Acceptor, Handled, Reply, Request};

fn main() -> std::io::Result<()> {
    let addr = common::listen_addr("usage: hello [--listen HOST:PORT]");
    let acceptor = Acceptor::bind(addr, |req: &Request| -> Handled {
        match (req.method(), req.path().as_ref()) {
            ("GET" | "HEAD", "/hello") => Reply::with_type("text/plain", "Hello, world!").into(),
            _ => Reply::error(StatusCode::NOT_FOUND).into(),
        }
    })?;
    common::announce(&acceptor);
    acceptor.run()
}
