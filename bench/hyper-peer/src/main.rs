//! `iomux-hyper-peer`: the bench URL contract on hyper 1.x and a tokio current_thread runtime
//! (adapted from the shared bench harness, peers/hyper_lp).
//!
//! Usage: `iomux-hyper-peer PORT` (the port is the last argument; the address is 127.0.0.1).
//!
//! - `GET /hello` → `Hello, world!`, text/plain.
//! - `POST /pub/{channel}` → publish the body; `202` at once.
//! - `GET /sub/{channel}` → nchan-style long poll: the first buffered message newer than the
//!   cursor (`If-None-Match` = the `Etag` of the previous reply), or, without a cursor, the
//!   oldest buffered one; if there is none, wait for the next publish.
//!
//! Pub/sub: one `Channel` per name holding the last `BUF_LEN` messages and a
//! `tokio::sync::watch` carrying the newest message id. Everything lives on one thread
//! (`LocalSet` + `Rc<RefCell<..>>`). Dev-only: tokio and hyper are dependencies of this crate
//! alone.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::rc::Rc;
use std::time::SystemTime;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, ETAG, IF_NONE_MATCH, LAST_MODIFIED};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;
use tokio::sync::watch;

/// Messages kept per channel, as nchan's `nchan_message_buffer_length 10` and iomux's peer.
const BUF_LEN: usize = 10;

struct Msg {
    id: u64,
    last_modified: String,
    body: Bytes,
}

struct Channel {
    last_id: u64,
    buf: VecDeque<Rc<Msg>>,
    tx: watch::Sender<u64>,
}

impl Channel {
    fn new() -> Self {
        Channel {
            last_id: 0,
            buf: VecDeque::with_capacity(BUF_LEN + 1),
            tx: watch::Sender::new(0),
        }
    }

    /// First buffered message newer than `cursor`; with no cursor the oldest buffered one
    /// (nchan's default `nchan_subscriber_first_message oldest`).
    fn next_after(&self, cursor: Option<u64>) -> Option<Rc<Msg>> {
        match cursor {
            None => self.buf.front().cloned(),
            Some(c) => self.buf.iter().find(|m| m.id > c).cloned(),
        }
    }

    fn publish(&mut self, body: Bytes) -> u64 {
        self.last_id += 1;
        let id = self.last_id;
        let last_modified = httpdate::fmt_http_date(SystemTime::now());
        self.buf.push_back(Rc::new(Msg {
            id,
            last_modified,
            body,
        }));
        if self.buf.len() > BUF_LEN {
            self.buf.pop_front();
        }
        self.tx.send_replace(id);
        id
    }
}

#[derive(Default)]
struct Hub {
    channels: HashMap<String, Channel>,
}

impl Hub {
    fn channel(&mut self, name: &str) -> &mut Channel {
        self.channels
            .entry(name.to_owned())
            .or_insert_with(Channel::new)
    }
}

type Body = Full<Bytes>;

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "text/plain")
        .body(Full::new(body.into()))
        .expect("a valid response")
}

fn parse_cursor(req: &Request<Incoming>) -> Option<u64> {
    let v = req.headers().get(IF_NONE_MATCH)?.to_str().ok()?;
    v.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .ok()
}

async fn subscribe(hub: Rc<RefCell<Hub>>, chan: String, cursor: Option<u64>) -> Response<Body> {
    loop {
        let mut rx = {
            let mut hub = hub.borrow_mut();
            let ch = hub.channel(&chan);
            if let Some(m) = ch.next_after(cursor) {
                return Response::builder()
                    .header(CONTENT_TYPE, "text/plain")
                    .header(ETAG, format!("\"{}\"", m.id))
                    .header(LAST_MODIFIED, m.last_modified.as_str())
                    .body(Full::new(m.body.clone()))
                    .expect("a valid response");
            }
            ch.tx.subscribe()
        };
        // The sender lives as long as the hub; an error here cannot happen.
        let _ = rx.changed().await;
    }
}

async fn handle(
    hub: Rc<RefCell<Hub>>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let resp = match (req.method(), path.as_str()) {
        (&Method::GET, "/hello") => text(StatusCode::OK, "Hello, world!"),
        (&Method::GET, p) if p.starts_with("/sub/") => {
            let cursor = parse_cursor(&req);
            subscribe(hub, p[5..].to_owned(), cursor).await
        }
        (&Method::POST, p) if p.starts_with("/pub/") => match req.into_body().collect().await {
            Ok(body) => {
                let id = hub.borrow_mut().channel(&p[5..]).publish(body.to_bytes());
                text(StatusCode::ACCEPTED, format!("queued {id}\n"))
            }
            Err(_) => text(StatusCode::BAD_REQUEST, "bad body\n"),
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    };
    Ok(resp)
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

fn main() -> std::io::Result<()> {
    raise_open_file_limit();
    let port: u16 = match std::env::args().skip(1).last() {
        Some(port) => port.parse().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "usage: iomux-hyper-peer PORT",
            )
        })?,
        None => 8080,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let sock = TcpSocket::new_v4()?;
        sock.set_reuseaddr(true)?;
        sock.bind(([127, 0, 0, 1], port).into())?;
        let listener = sock.listen(4096)?;
        eprintln!("iomux-hyper-peer listening on 127.0.0.1:{port}");
        let hub = Rc::new(RefCell::new(Hub::default()));
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    // e.g. EMFILE: back off briefly instead of spinning
                    eprintln!("accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let hub = hub.clone();
            tokio::task::spawn_local(async move {
                let svc = service_fn(move |req| handle(hub.clone(), req));
                // pipeline_flush: one write for the replies to a pipelined batch (hyper's own
                // setting for pipelining; off by default).
                let _ = http1::Builder::new()
                    .pipeline_flush(true)
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}
