//! Streaming replies over real TCP: `context::start_stream()` / `Responder::start_stream` and
//! `BodySender`, chunked on HTTP/1.1 and close-delimited on HTTP/1.0.

mod support;

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use async_io::Timer;
use iomux::bytes::Bytes;
use iomux::http::{header, HeaderValue};
use iomux::{
    context, with_restored_context, with_saved_context, BodySender, ChunkError, Config, Handled,
    Mailbox, Reply, Request, SavedContext,
};
use support::{connect, get, write, Reader, Server};

const REPORT_TIMEOUT: Duration = Duration::from_secs(3);

fn is_chunked(r: &support::Response) -> bool {
    r.header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
}

/// Read chunks until the last chunk; fails on EOF or a malformed chunk.
fn read_chunks<R: Read>(reader: &mut Reader<R>) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(c) = reader.chunk().unwrap() {
        out.push(String::from_utf8(c).unwrap());
    }
    out
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

/// Expect the server to have closed the connection.
fn assert_closed(stream: &TcpStream) {
    let mut byte = [0u8; 1];
    match (&*stream).read(&mut byte) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("connection still open: {other:?}"),
    }
}

/// A server whose handler answers `/ping` at once and hands every other request to a streaming
/// actor running `stream(path, ctx)` for each, one after the other.
fn streaming_server<F, Fut>(config: Config, stream: F) -> Server
where
    F: Fn(String, SavedContext) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    Server::start_with("127.0.0.1:0", config, move |ex| {
        let streamer = iomux::spawn_actor_task(
            ex,
            16,
            move |mut mailbox: Mailbox<SavedContext>| async move {
                while let Some(ctx) = mailbox.recv().await {
                    let path = ctx.request().unwrap().path().into_owned();
                    stream(path, ctx).await;
                }
            },
        );
        move |req: &Request| -> Handled {
            if req.path() == "/ping" {
                return Reply::text("pong").into();
            }
            streamer.do_send(with_saved_context!());
            Handled::Deferred
        }
    })
}

/// Start a stream with the context's reply under construction (text/plain).
fn start_text_stream(ctx: &SavedContext) -> BodySender {
    with_restored_context!(ctx, {
        context::set_header(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        context::start_stream().unwrap()
    })
}

async fn ticks(ctx: SavedContext, n: usize, every: Duration) {
    let body = start_text_stream(&ctx);
    for i in 0..n {
        Timer::after(every).await;
        body.send(format!("tick {i}\n")).await.unwrap();
    }
    body.finish();
}

fn pong<R: Read>(stream: &TcpStream, reader: &mut Reader<R>) {
    write(stream, &get("/ping"));
    let r = reader.response(false).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "pong"));
}

#[test]
fn http11_stream_is_chunked_and_each_chunk_arrives_when_sent() {
    let server = streaming_server(Config::default(), |_path, ctx| {
        ticks(ctx, 3, Duration::from_millis(150))
    });
    let stream = connect(&server);
    let mut reader = Reader::new(&stream);
    let start = Instant::now();
    write(&stream, &get("/ticks"));
    let head = reader.head().unwrap();
    let head_at = start.elapsed();
    assert_eq!(head.status, 200);
    assert!(is_chunked(&head), "{head:?}");
    assert_eq!(head.header("content-length"), None);
    assert_eq!(head.header("connection"), None);
    assert_eq!(head.header("content-type"), Some("text/plain"));
    assert!(
        head_at < Duration::from_millis(140),
        "the head waited for the body: {head_at:?}"
    );

    let mut arrivals = Vec::new();
    while let Some(chunk) = reader.chunk().unwrap() {
        arrivals.push((String::from_utf8(chunk).unwrap(), start.elapsed()));
    }
    let bodies: Vec<&str> = arrivals.iter().map(|(b, _)| b.as_str()).collect();
    assert_eq!(bodies, ["tick 0\n", "tick 1\n", "tick 2\n"]);
    for pair in arrivals.windows(2) {
        let gap = pair[1].1 - pair[0].1;
        assert!(
            gap >= Duration::from_millis(100),
            "chunks were not sent as produced: {arrivals:?}"
        );
    }
    // The connection stays usable after the last chunk.
    pong(&stream, &mut reader);
}

#[test]
fn finish_and_drop_end_the_body_and_the_connection_stays_usable() {
    let server = streaming_server(Config::default(), |path, ctx| async move {
        match path.as_str() {
            "/finish" => {
                let body = start_text_stream(&ctx);
                body.send("one\n").await.unwrap();
                body.try_send("two\n").unwrap();
                body.finish();
            }
            "/drop" => {
                let body = start_text_stream(&ctx);
                body.send("dropped\n").await.unwrap();
                Timer::after(Duration::from_millis(30)).await;
                drop(body);
            }
            "/responder" => {
                let responder = ctx.responder().unwrap();
                let body = responder.start_stream(Reply::text("first\n")).unwrap();
                Timer::after(Duration::from_millis(30)).await;
                body.send("second\n").await.unwrap();
                // Empty chunks are skipped (they would end the body).
                body.send("").await.unwrap();
                body.try_send(Bytes::new()).unwrap();
                body.send(Bytes::from_static(b"third\n")).await.unwrap();
            }
            _ => unreachable!(),
        }
    });
    let stream = connect(&server);
    let mut reader = Reader::new(&stream);
    for (path, expected) in [
        ("/finish", vec!["one\n", "two\n"]),
        ("/drop", vec!["dropped\n"]),
        ("/responder", vec!["first\n", "second\n", "third\n"]),
    ] {
        write(&stream, &get(path));
        let head = reader.head().unwrap();
        assert_eq!(head.status, 200, "{path}");
        assert!(is_chunked(&head), "{path}: {head:?}");
        assert_eq!(read_chunks(&mut reader), expected, "{path}");
        pong(&stream, &mut reader);
    }
    assert!(reader.leftover().is_empty());
}

#[test]
fn http10_stream_is_close_delimited() {
    let server = streaming_server(Config::default(), |_path, ctx| async move {
        let body = start_text_stream(&ctx);
        for part in ["a\n", "b\n", "c\n"] {
            Timer::after(Duration::from_millis(30)).await;
            body.send(part).await.unwrap();
        }
    });
    for request in [
        "GET /ten HTTP/1.0\r\n\r\n",
        "GET /ten HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    ] {
        let stream = connect(&server);
        write(&stream, request);
        let mut raw = Vec::new();
        (&stream).read_to_end(&mut raw).unwrap();
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        let lower = head.to_ascii_lowercase();
        assert!(!lower.contains("transfer-encoding"), "{head}");
        assert!(!lower.contains("content-length"), "{head}");
        assert!(lower.contains("\r\nconnection: close"), "{head}");
        assert_eq!(body, "a\nb\nc\n", "{request:?}");
    }
}

#[test]
fn head_request_to_a_stream_gets_headers_only() {
    // For HEAD the head is the whole reply: the producer is told at once that nobody reads the
    // body (its sends fail with ClientGone) instead of holding the connection until it finishes.
    let (done_tx, done_rx) = mpsc::channel::<bool>();
    let server = streaming_server(Config::default(), move |_path, ctx| {
        let done = done_tx.clone();
        async move {
            let body = start_text_stream(&ctx);
            Timer::after(Duration::from_millis(20)).await;
            let refused = matches!(body.send("body\n").await, Err(ChunkError::ClientGone(_)));
            done.send(refused && body.is_closed()).unwrap();
        }
    });
    let stream = connect(&server);
    let mut reader = Reader::new(&stream);
    write(&stream, "HEAD /ticks HTTP/1.1\r\nHost: test\r\n\r\n");
    let head = reader.response(true).unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/plain"));
    assert!(
        done_rx.recv_timeout(REPORT_TIMEOUT).unwrap(),
        "the producer was not told"
    );
    thread::sleep(Duration::from_millis(50));
    // No body bytes: the next thing on the connection is the next response.
    pong(&stream, &mut reader);
    assert!(reader.leftover().is_empty());
}

#[test]
fn abort_closes_the_connection_without_the_last_chunk() {
    let server = streaming_server(Config::default(), |_path, ctx| async move {
        let body = start_text_stream(&ctx);
        body.send("partial\n").await.unwrap();
        Timer::after(Duration::from_millis(50)).await;
        body.abort();
    });
    let stream = connect(&server);
    let mut reader = Reader::new(&stream);
    write(&stream, &get("/abort"));
    let head = reader.head().unwrap();
    assert_eq!(head.status, 200);
    assert!(is_chunked(&head));
    assert_eq!(reader.chunk().unwrap().unwrap(), b"partial\n");
    match reader.chunk() {
        Err(e) => assert_eq!(e.kind(), ErrorKind::UnexpectedEof, "{e}"),
        Ok(c) => panic!("expected the connection to close, got chunk {c:?}"),
    }
    assert_closed(&stream);
}

#[test]
fn stream_fed_from_another_thread() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<BodySender>();

    let server = Server::start(|_ex| {
        |req: &Request| -> Handled {
            let body = match req.path().as_ref() {
                // Stream started on the loop, fed from a thread.
                "/local" => context::start_stream().unwrap(),
                // Stream started from a thread through the remote right.
                _ => {
                    let remote = context::responder().unwrap().remote();
                    let (tx, rx) = mpsc::channel();
                    thread::spawn(move || {
                        let body = remote.start_stream(Reply::text("head body\n")).unwrap();
                        tx.send(body).unwrap();
                    });
                    rx.recv().unwrap()
                }
            };
            thread::spawn(move || {
                for i in 0..3 {
                    thread::sleep(Duration::from_millis(30));
                    futures_lite::future::block_on(body.send(format!("thread {i}\n"))).unwrap();
                }
                body.try_send("end\n").unwrap();
                body.finish();
            });
            Handled::Deferred
        }
    });
    let stream = connect(&server);
    let mut reader = Reader::new(&stream);
    write(&stream, &get("/local"));
    let head = reader.head().unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-type"),
        Some(context::DEFAULT_CONTENT_TYPE)
    );
    assert_eq!(
        read_chunks(&mut reader),
        ["thread 0\n", "thread 1\n", "thread 2\n", "end\n"]
    );

    write(&stream, &get("/remote"));
    let head = reader.head().unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        read_chunks(&mut reader),
        [
            "head body\n",
            "thread 0\n",
            "thread 1\n",
            "thread 2\n",
            "end\n"
        ]
    );
}

/// What the producer saw when the stream's queue filled up.
#[derive(Debug)]
struct Backpressure {
    accepted: usize,
    refused_len: usize,
    queued: String,
    still_full: bool,
}

const CHUNK: usize = 64 * 1024;
const MAX_CHUNKS: usize = 1024;

fn chunk_byte(i: usize) -> u8 {
    (i % 251) as u8
}

#[test]
fn slow_client_fills_the_stream_queue_and_try_send_reports_full() {
    let (full_tx, full_rx) = mpsc::channel::<Backpressure>();
    let (sent_tx, sent_rx) = mpsc::channel::<Instant>();
    let config = Config {
        stream_queue_len: 4,
        ..Config::default()
    };
    let server = streaming_server(config, move |_path, ctx| {
        let full_tx = full_tx.clone();
        let sent_tx = sent_tx.clone();
        async move {
            let body = ctx
                .responder()
                .unwrap()
                .start_stream(Reply::with_type("application/octet-stream", ""))
                .unwrap();
            let mut accepted = 0;
            let mut refused = None;
            while accepted < MAX_CHUNKS {
                let chunk = Bytes::from(vec![chunk_byte(accepted); CHUNK]);
                match body.try_send(chunk) {
                    Ok(()) => accepted += 1,
                    Err(ChunkError::Full(back)) => {
                        refused = Some(back);
                        break;
                    }
                    Err(e) => panic!("unexpected {e:?}"),
                }
                // Let the connection write what it can.
                Timer::after(Duration::from_millis(1)).await;
            }
            let refused_len = refused.as_ref().map_or(0, Bytes::len);
            let queued = format!("{body:?}");
            Timer::after(Duration::from_millis(50)).await;
            let still_full = matches!(body.try_send(vec![0u8; CHUNK]), Err(ChunkError::Full(_)));
            full_tx
                .send(Backpressure {
                    accepted,
                    refused_len,
                    queued,
                    still_full,
                })
                .unwrap();
            // `send` waits for room, that is for the client to read.
            body.send(vec![chunk_byte(accepted); CHUNK]).await.unwrap();
            sent_tx.send(Instant::now()).unwrap();
            body.finish();
        }
    });

    let stream = connect(&server);
    write(&stream, &get("/firehose"));
    let report = full_rx
        .recv_timeout(Duration::from_secs(4))
        .expect("try_send never reported Full");
    assert!(
        report.accepted < MAX_CHUNKS,
        "queue never filled: {report:?}"
    );
    assert_eq!(report.refused_len, CHUNK, "the refused chunk comes back");
    assert_eq!(report.queued, "BodySender { queued: 4 }");
    assert!(report.still_full, "{report:?}");
    // The producer is blocked in `send` while the client does not read.
    thread::sleep(Duration::from_millis(200));
    assert!(
        sent_rx.try_recv().is_err(),
        "send did not wait for the slow client"
    );

    let read_from = Instant::now();
    let mut reader = Reader::new(&stream);
    let head = reader.head().unwrap();
    assert_eq!(head.status, 200);
    assert!(is_chunked(&head));
    let mut chunks = 0;
    while let Some(c) = reader.chunk().unwrap() {
        assert_eq!(c.len(), CHUNK, "chunk {chunks}");
        assert!(c.iter().all(|&b| b == chunk_byte(chunks)), "chunk {chunks}");
        chunks += 1;
    }
    assert_eq!(chunks, report.accepted + 1);
    let sent_at = sent_rx.recv_timeout(REPORT_TIMEOUT).unwrap();
    assert!(sent_at > read_from, "send completed before the client read");
}

#[test]
fn hang_up_during_a_stream_is_seen_by_the_producer() {
    let (report_tx, report_rx) = mpsc::channel::<(Instant, String)>();
    let server = streaming_server(Config::default(), move |_path, ctx| {
        let report_tx = report_tx.clone();
        async move {
            let body = start_text_stream(&ctx);
            body.send("first\n").await.unwrap();
            let deadline = Instant::now() + Duration::from_secs(3);
            while !body.is_closed() && Instant::now() < deadline {
                Timer::after(Duration::from_millis(5)).await;
                if let Err(e) = body.send("tick\n").await {
                    assert!(matches!(e, ChunkError::ClientGone(_)), "{e:?}");
                    break;
                }
            }
            let detected = Instant::now();
            let closed = body.is_closed();
            let send = match body.send("after\n").await {
                Err(ChunkError::ClientGone(b)) => format!("ClientGone({b:?})"),
                other => format!("{other:?}"),
            };
            let try_send = match body.try_send("again\n") {
                Err(ChunkError::ClientGone(b)) => format!("ClientGone({b:?})"),
                other => format!("{other:?}"),
            };
            let empty = format!("{:?}", body.try_send(""));
            report_tx
                .send((
                    detected,
                    format!("closed={closed} {send} {try_send} {empty}"),
                ))
                .unwrap();
        }
    });
    let stream = connect(&server);
    let mut reader = Reader::new(&stream);
    write(&stream, &get("/stream"));
    assert_eq!(reader.head().unwrap().status, 200);
    assert_eq!(reader.chunk().unwrap().unwrap(), b"first\n");
    thread::sleep(Duration::from_millis(50));
    let closed_at = Instant::now();
    drop(reader);
    drop(stream);
    let (detected, text) = report_rx.recv_timeout(REPORT_TIMEOUT).unwrap();
    assert_eq!(
        text,
        "closed=true ClientGone(b\"after\\n\") ClientGone(b\"again\\n\") Err(ClientGone(..))"
    );
    let delay = detected.saturating_duration_since(closed_at);
    assert!(
        delay < Duration::from_millis(500),
        "noticed after {delay:?}"
    );
}

#[test]
fn stopping_the_server_ends_open_streams_with_the_last_chunk() {
    let (report_tx, report_rx) = mpsc::channel::<String>();
    let server = streaming_server(Config::default(), move |_path, ctx| {
        let report_tx = report_tx.clone();
        async move {
            let body = start_text_stream(&ctx);
            body.send("live\n").await.unwrap();
            // Keep the stream open until the connection goes.
            let deadline = Instant::now() + Duration::from_secs(3);
            while !body.is_closed() && Instant::now() < deadline {
                Timer::after(Duration::from_millis(5)).await;
            }
            let outcome = match body.try_send("after stop\n") {
                Err(ChunkError::ClientGone(_)) => "ClientGone".to_string(),
                other => format!("{other:?}"),
            };
            let _ = report_tx.send(outcome);
        }
    });
    let stream = connect(&server);
    let mut reader = Reader::new(&stream);
    write(&stream, &get("/live"));
    assert_eq!(reader.head().unwrap().status, 200);
    assert_eq!(reader.chunk().unwrap().unwrap(), b"live\n");

    let stopped_at = Instant::now();
    server.stop_handle().stop();
    // The body ends properly (last chunk), then the connection closes.
    assert_eq!(reader.chunk().unwrap(), None);
    assert!(stopped_at.elapsed() < Duration::from_secs(1));
    assert!(reader.leftover().is_empty());
    assert_closed(&stream);
    // The producer learns that the stream is over (if it ran before the loop ended).
    if let Ok(outcome) = report_rx.recv_timeout(Duration::from_millis(500)) {
        assert_eq!(outcome, "ClientGone");
    }
    shutdown_within(server, Duration::from_secs(3));
}
