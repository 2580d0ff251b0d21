//! The hub across workers: the hubs of a `HubGroup`, each on its own loop and thread with its
//! own acceptor (so the test decides which worker each client talks to), and the binary with
//! `--workers 2`. One order and one id sequence per channel, whichever worker publishes or
//! subscribes; cursors resume on any worker; information, delete and `/status` count every
//! worker.

mod support;

use std::time::{Duration, Instant};

use iomux_actors::{Backend, HubGroup, PubSubConfig};
use support::redis::Node;
use support::*;

/// Two workers of one group, each with its own address.
fn two_workers(config: PubSubConfig) -> (Server, Server) {
    let group = HubGroup::new(2);
    let a = Server::start_backend(config.clone(), Backend::Group(group.member(0)));
    let b = Server::start_backend(config, Backend::Group(group.member(1)));
    (a, b)
}

fn no_hold() -> PubSubConfig {
    PubSubConfig {
        hold_timeout: Duration::ZERO,
        buffer_length: 1000,
        ..pubsub_config()
    }
}

#[test]
fn a_publish_on_one_worker_reaches_subscribers_on_both_in_one_order() {
    const N: usize = 60;
    let (a, b) = two_workers(no_hold());
    // Several channels, so that some are ordered by each worker.
    let channels = ["alpha", "beta", "gamma", "delta"];
    for channel in channels {
        let subscribers = [
            repoll(a.addr, channel, String::new(), N),
            repoll(b.addr, channel, String::new(), N),
            repoll(b.addr, channel, String::new(), N),
        ];
        let mut stream = EventStream::open(&b, &es(channel, ""));
        assert!(stream.read_until_contains(Duration::from_secs(2), ": hi\n\n"));
        // Every subscriber waits (3 long-polls and a stream, over both workers).
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let r = a.request(&format!("GET /pub/{channel} HTTP/1.1\r\nHost: t\r\n\r\n"));
            if r.status == 200 && r.text().contains("active subscribers: 4") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "subscribers not all waiting: {r:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // One publisher connection, on worker A.
        let mut publisher = a.client();
        let mut ids = Vec::new();
        for i in 0..N {
            let body = format!("{channel} {i:03}");
            let r =
                publisher.exchange_bytes(&publish_request("POST", channel, body.as_bytes(), ""));
            assert!(r.status == 201 || r.status == 202, "{r:?}");
            ids.push(last_message_id(&r));
        }
        let parsed: Vec<(u64, u32)> = ids.iter().map(|i| split_id(i)).collect();
        assert!(parsed.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        let expected: Vec<String> = (0..N).map(|i| format!("{channel} {i:03}")).collect();
        let tags: Vec<String> = ids.iter().map(|i| split_id(i).1.to_string()).collect();
        for subscriber in subscribers {
            let got = subscriber.join().unwrap();
            let bodies: Vec<String> = got.iter().map(Response::text).collect();
            assert_eq!(bodies, expected, "{channel}: lost, repeated or reordered");
            let etags: Vec<String> = got
                .iter()
                .map(|r| r.header("etag").unwrap().into())
                .collect();
            assert_eq!(etags, tags, "{channel}: the ids of the publisher replies");
        }
        let last = format!("id: {}\ndata: {channel} {:03}\n\n", ids[N - 1], N - 1);
        assert!(
            stream.read_until_contains(Duration::from_secs(5), &last),
            "{}",
            stream.text()
        );
        let events: Vec<String> = stream
            .text()
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("id: "))
            .map(|e| e.split('\n').next().unwrap().to_string())
            .collect();
        assert_eq!(events, ids, "{channel}: the stream's events");
    }
}

#[test]
fn a_cursor_from_one_worker_resumes_on_the_other() {
    let (a, b) = two_workers(no_hold());
    let ids: Vec<String> = (0..3)
        .map(|i| a.publish_id("resume", &format!("m{i}")))
        .collect();
    let r0 = a.request(&sub("resume", ""));
    assert_eq!((r0.status, r0.text().as_str()), (200, "m0"), "{r0:?}");
    let r1 = b.request(&sub("resume", &cursor_of(&r0)));
    assert_eq!(r1.text(), "m1", "{r1:?}");
    assert_eq!(
        r1.header("etag"),
        Some(split_id(&ids[1]).1.to_string().as_str())
    );
    let r2 = b.request(&sub("resume", &format!("Last-Event-ID: {}\r\n", ids[1])));
    assert_eq!(r2.text(), "m2", "{r2:?}");
    // Nothing newer: it waits on B for a publish on A.
    let mut waiting = b.client();
    waiting.send_str(&sub("resume", &cursor_of(&r2)));
    b.wait_status("long-poll subscribers", 1, Duration::from_secs(2))
        .expect("the poll on B should wait");
    let p = a.publish("resume", b"m3", "");
    assert_eq!(p.status, 201, "{p:?}");
    let r3 = waiting.response().unwrap();
    assert_eq!(r3.text(), "m3", "{r3:?}");
    assert_eq!(
        r3.header("etag"),
        Some(split_id(&last_message_id(&p)).1.to_string().as_str())
    );
}

#[test]
fn information_delete_and_status_count_every_worker() {
    let (a, b) = two_workers(no_hold());
    assert_eq!(
        a.request("GET /pub/gone HTTP/1.1\r\nHost: t\r\n\r\n")
            .status,
        404
    );
    let id = a.publish_id("counted", "m0");
    let mut on_a = a.client();
    let mut on_b = b.client();
    on_a.send_str(&sub("counted", &format!("If-None-Match: {id}\r\n")));
    on_b.send_str(&sub("counted", &format!("If-None-Match: {id}\r\n")));
    let deadline = Instant::now() + Duration::from_secs(3);
    while a.status_field("long-poll subscribers") != 2 {
        assert!(
            Instant::now() < deadline,
            "/status should count both workers' subscribers"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(b.status_field("long-poll subscribers"), 2);
    assert_eq!(a.status_field("total published messages"), 1);
    let info = b.request("GET /pub/counted HTTP/1.1\r\nHost: t\r\nAccept: text/json\r\n\r\n");
    assert_eq!(info.status, 200, "{info:?}");
    let fields = flat_json(&info.text());
    let field = |n: &str| fields.iter().find(|(k, _)| k == n).unwrap().1.clone();
    assert_eq!(field("subscribers"), "2", "{info:?}");
    assert_eq!(field("messages"), "1", "{info:?}");
    assert_eq!(field("last_message_id"), format!("\"{id}\""), "{info:?}");
    // Delete on B: the waiters of both workers get 410; the reply is the information before.
    let del = b.request("DELETE /pub/counted HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(del.status, 200, "{del:?}");
    assert!(del.text().contains("queued messages: 1\r\n"), "{del:?}");
    assert!(del.text().contains("active subscribers: 2\r\n"), "{del:?}");
    assert_eq!(on_a.response().unwrap().status, 410);
    assert_eq!(on_b.response().unwrap().status, 410);
    // Deleted everywhere: no buffered message on either worker.
    let info = a.request("GET /pub/counted HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(info.text().contains("queued messages: 0\r\n"), "{info:?}");
    // A publish with nobody waiting: 202, and both workers' buffers have it.
    let p = a.publish("counted", b"again", "");
    assert_eq!(p.status, 202, "{p:?}");
    assert_eq!(b.request(&sub("counted", "")).text(), "again");
    assert_eq!(a.request(&sub("counted", "")).text(), "again");
}

/// The binary with `--workers 2`: one port, both loops; whichever worker the kernel gives each
/// connection, everything is in one order.
#[test]
fn binary_with_two_workers_keeps_one_order() {
    const N: usize = 40;
    let node = Node::start(&["--workers", "2", "--buffer-length", "100"]);
    let server = Server::at(node.addr);
    // Many subscribers on many connections: the kernel spreads them over both workers.
    let subscribers: Vec<_> = (0..8)
        .map(|_| repoll(node.addr, "bin", String::new(), N))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.status_field("long-poll subscribers") != 8 {
        assert!(Instant::now() < deadline, "subscribers not waiting");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut ids = Vec::new();
    for i in 0..N {
        // A new connection per publish: they land on both workers too.
        ids.push(server.publish_id("bin", &format!("m{i:02}")));
    }
    let expected: Vec<String> = (0..N).map(|i| format!("m{i:02}")).collect();
    for s in subscribers {
        let got: Vec<String> = s.join().unwrap().iter().map(Response::text).collect();
        assert_eq!(got, expected);
    }
    let parsed: Vec<(u64, u32)> = ids.iter().map(|i| split_id(i)).collect();
    assert!(parsed.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_eq!(server.status_field("total published messages"), N as u64);
}
