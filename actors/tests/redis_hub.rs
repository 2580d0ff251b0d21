//! The hub across machines, on Redis: several servers, one private `redis-server` per test
//! (see `support::redis`). Nodes are `iomux-pubsub` processes (`--redis`), or servers on
//! threads of the test where the test needs a setting the binary does not expose (a short
//! reconnection backoff).
//!
//! A subscriber on node A gets, in order and without loss, what was published on node B; a
//! cursor resumes on node C; a Redis restart while subscribers wait delivers what was
//! published meanwhile, once; with Redis down, publishes answer 503 and waiters keep waiting;
//! the subscribers of a killed node resume on another by cursor.

mod support;

use std::time::{Duration, Instant};

use iomux_actors::{Backend, PubSubConfig, RedisBackend, WhileDown};
use support::redis::{Node, Redis};
use support::*;

/// A node on a thread of the test, with a short reconnection backoff.
fn thread_node(redis: &Redis, config: PubSubConfig) -> Server {
    let backend = RedisBackend::new(&redis.url())
        .unwrap()
        .timeout(Duration::from_millis(500))
        .max_backoff(Duration::from_millis(400));
    Server::start_backend(config, Backend::Redis(backend))
}

fn waiting_forever() -> PubSubConfig {
    PubSubConfig {
        hold_timeout: Duration::ZERO,
        buffer_length: 100,
        ..pubsub_config()
    }
}

/// Poll until `server` counts `n` subscribers (long-poll and EventSource) waiting.
fn wait_subscribers(server: &Server, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let seen = server.status_field("long-poll subscribers")
            + server.status_field("eventsource subscribers");
        if seen == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{seen} subscribers instead of {n}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `id:` lines of an EventSource text, in order.
fn event_ids(text: &str) -> Vec<String> {
    text.split("\n\n")
        .flat_map(|e| e.lines())
        .filter_map(|l| l.strip_prefix("id: "))
        .map(str::to_string)
        .collect()
}

/// Publish until Redis takes it (a publish refused with 503 was not stored); the id.
fn publish_stored(server: &Server, channel: &str, body: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = server.publish(channel, body.as_bytes(), "");
        match r.status {
            201 | 202 => return last_message_id(&r),
            503 if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => panic!("publish {body}: {r:?}"),
        }
    }
}

#[test]
fn a_subscriber_on_one_node_gets_what_another_published_in_order() {
    const N: usize = 100;
    let redis = Redis::start();
    let flags = ["--redis", &redis.url(), "--buffer-length", "1000"];
    let a = Node::start(&flags);
    let b = Node::start(&flags);
    let (sa, sb) = (Server::at(a.addr), Server::at(b.addr));
    let pollers = [
        repoll(a.addr, "cross", String::new(), N),
        repoll(a.addr, "cross", String::new(), N),
    ];
    let mut stream = EventStream::open(&sa, &es("cross", ""));
    assert!(stream.read_until_contains(Duration::from_secs(2), ": hi\n\n"));
    wait_subscribers(&sa, 3);
    let mut publisher = sb.client();
    let mut ids = Vec::new();
    for i in 0..N {
        let body = format!("message {i:03}");
        let r = publisher.exchange_bytes(&publish_request(
            "POST",
            "cross",
            body.as_bytes(),
            "Content-Type: text/x-test\r\n",
        ));
        assert_eq!(r.status, 202, "B has no subscriber of its own: {r:?}");
        ids.push(last_message_id(&r));
    }
    let parsed: Vec<(u64, u32)> = ids.iter().map(|i| split_id(i)).collect();
    assert!(parsed.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let expected: Vec<String> = (0..N).map(|i| format!("message {i:03}")).collect();
    for poller in pollers {
        let got = poller.join().unwrap();
        let bodies: Vec<String> = got.iter().map(Response::text).collect();
        assert_eq!(bodies, expected, "lost, repeated or reordered: {}", a.log());
        for (r, id) in got.iter().zip(&ids) {
            assert_eq!(r.header("etag"), Some(split_id(id).1.to_string().as_str()));
            assert_eq!(r.header("last-modified"), Some(id_date(id).as_str()));
            assert_eq!(r.header("content-type"), Some("text/x-test"));
        }
    }
    let last = format!("id: {}\ndata: message {:03}\n\n", ids[N - 1], N - 1);
    assert!(
        stream.read_until_contains(Duration::from_secs(5), &last),
        "{}",
        stream.text()
    );
    assert_eq!(event_ids(&stream.text()), ids);
    // Channel information on either node: the buffer and the last id are Redis's.
    for s in [&sa, &sb] {
        let info = s.request("GET /pub/cross HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(info.status, 200, "{info:?}");
        assert!(
            info.text().contains(&format!("queued messages: {N}\r\n")),
            "{info:?}"
        );
        assert!(
            info.text()
                .ends_with(&format!("last message id: {}", ids[N - 1])),
            "{info:?}"
        );
    }
}

#[test]
fn three_nodes_a_cursor_from_one_resumes_on_another() {
    let redis = Redis::start();
    let flags = ["--redis", &redis.url(), "--hold-timeout", "0"];
    // C runs two workers, each a node of the Redis.
    let c_flags = [&flags[..], &["--workers", "2"]].concat();
    let nodes = [
        Node::start(&flags),
        Node::start(&flags),
        Node::start(&c_flags),
    ];
    let [a, b, c] = nodes.each_ref().map(|n| Server::at(n.addr));
    let ids: Vec<String> = (0..5)
        .map(|i| a.publish_id("three", &format!("m{i}")))
        .collect();
    // B has never seen the channel: it reads it from Redis.
    let r0 = b.request(&sub("three", ""));
    assert_eq!((r0.status, r0.text().as_str()), (200, "m0"), "{r0:?}");
    let r1 = b.request(&sub("three", &cursor_of(&r0)));
    assert_eq!(r1.text(), "m1");
    // The cursor B gave resumes on C (which has not seen the channel either), in each form.
    let r2 = c.request(&sub("three", &cursor_of(&r1)));
    assert_eq!(r2.text(), "m2");
    assert_eq!(
        r2.header("etag"),
        Some(split_id(&ids[2]).1.to_string().as_str())
    );
    let r3 = c.request(&sub("three", &format!("Last-Event-ID: {}\r\n", ids[2])));
    assert_eq!(r3.text(), "m3");
    let mut stream = EventStream::open(&c, &es("three", &format!("Last-Event-ID: {}\r\n", ids[3])));
    assert!(stream.read_until_contains(Duration::from_secs(2), "data: m4\n"));
    // Waiting on C and on A for what B publishes next.
    let mut on_c = c.client();
    on_c.send_str(&sub("three", &format!("If-None-Match: {}\r\n", ids[4])));
    let mut on_a = a.client();
    on_a.send_str(&sub("three", &format!("If-None-Match: {}\r\n", ids[4])));
    // (C's `/status` is one worker's: with a cursor, a poll that comes late gets m5 all the same.)
    wait_subscribers(&a, 1);
    let id5 = b.publish_id("three", "m5");
    for r in [on_c.response().unwrap(), on_a.response().unwrap()] {
        assert_eq!((r.status, r.text().as_str()), (200, "m5"), "{r:?}");
        assert_eq!(
            r.header("etag"),
            Some(split_id(&id5).1.to_string().as_str())
        );
    }
    let m5 = format!("id: {id5}\ndata: m5\n\n");
    assert!(stream.read_until_contains(Duration::from_secs(2), &m5));
    assert_eq!(event_ids(&stream.text()), [ids[4].clone(), id5]);
    // Deleted through B: the waiters of every node get 410.
    let mut on_a = a.client();
    on_a.send_str(&sub("three", &format!("Last-Event-ID: {}\r\n", ids[4])));
    let r = on_a.response().unwrap();
    assert_eq!(r.text(), "m5");
    on_a.send_str(&sub("three", &cursor_of(&r)));
    wait_subscribers(&a, 1);
    let del = b.request("DELETE /pub/three HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(del.status, 200, "{del:?}");
    assert_eq!(on_a.response().unwrap().status, 410);
    assert!(stream.read_until_contains(Duration::from_secs(2), ":410: 410 Gone"));
    assert_eq!(
        b.request("GET /pub/never HTTP/1.1\r\nHost: t\r\n\r\n")
            .status,
        404
    );
}

#[test]
fn redis_restarted_while_subscribers_wait_delivers_what_was_published_meanwhile_once() {
    let mut redis = Redis::start_persistent();
    let a = thread_node(&redis, waiting_forever());
    let b = thread_node(&redis, waiting_forever());
    let id0 = b.publish_id("restart", "m0");
    // On A: a long-poll waiting after m0 and a stream that has m0.
    let mut waiting = a.client();
    waiting.send_str(&sub("restart", &format!("If-None-Match: {id0}\r\n")));
    let mut stream = EventStream::open(&a, &es("restart", ""));
    assert!(stream.read_until_contains(Duration::from_secs(2), "data: m0\n"));
    wait_subscribers(&a, 2);

    redis.stop();
    // A's subscription is gone; its subscribers keep waiting.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(a.status_field("long-poll subscribers"), 1);
    redis.restart();
    // Published on B as soon as Redis takes it, while A may still be reconnecting.
    let id1 = publish_stored(&b, "restart", "m1");
    let id2 = publish_stored(&b, "restart", "m2");
    let r = waiting.response().expect("the waiting long-poll gets m1");
    assert_eq!((r.status, r.text().as_str()), (200, "m1"), "{r:?}");
    assert_eq!(
        r.header("etag"),
        Some(split_id(&id1).1.to_string().as_str())
    );
    let r = waiting.exchange(&sub("restart", &cursor_of(&r)));
    assert_eq!(r.text(), "m2");
    let m2 = format!("id: {id2}\ndata: m2\n\n");
    assert!(
        stream.read_until_contains(Duration::from_secs(5), &m2),
        "{}",
        stream.text()
    );
    // A little longer: nothing arrives twice.
    stream.read_until(Duration::from_millis(500), |_| false);
    assert_eq!(
        event_ids(&stream.text()),
        [id0, id1, id2.clone()],
        "{}",
        stream.text()
    );
    // And on after the restart, both ways.
    let mut waiting = b.client();
    waiting.send_str(&sub("restart", &format!("If-None-Match: {id2}\r\n")));
    wait_subscribers(&b, 1);
    a.publish_id("restart", "m3");
    assert_eq!(waiting.response().unwrap().text(), "m3");
    assert!(stream.read_until_contains(Duration::from_secs(2), "data: m3\n"));
}

#[test]
fn redis_down_publishes_get_503_and_waiters_keep_waiting() {
    let mut redis = Redis::start();
    let a = thread_node(&redis, waiting_forever());
    let id0 = a.publish_id("down", "m0");
    let mut waiting = a.client();
    waiting.send_str(&sub("down", &format!("If-None-Match: {id0}\r\n")));
    wait_subscribers(&a, 1);
    redis.stop();
    for _ in 0..3 {
        let r = a.publish("down", b"lost", "");
        assert_eq!(r.status, 503, "never a 2xx for a message not stored: {r:?}");
        assert_eq!(r.header("retry-after"), Some("1"), "{r:?}");
    }
    let info = a.request("GET /pub/down HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(info.status, 503, "{info:?}");
    // A channel this node has not read yet cannot be served.
    let r = a.request(&sub("unknown", ""));
    assert_eq!(r.status, 503, "{r:?}");
    // The waiter is still waiting, and the buffered message is still served from the replica.
    assert_eq!(a.status_field("long-poll subscribers"), 1);
    assert_eq!(a.request(&sub("down", "")).text(), "m0");
    waiting.set_timeout(Duration::from_millis(300));
    assert!(
        waiting.response().is_err(),
        "the waiter got a reply while Redis was down"
    );
    waiting.set_timeout(READ_TIMEOUT);
    // Redis back (empty: it had no persistence): the next publish is stored and delivered.
    redis.restart();
    let id = publish_stored(&a, "down", "back");
    let r = waiting.response().unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "back"), "{r:?}");
    assert_eq!(r.header("etag"), Some(split_id(&id).1.to_string().as_str()));
}

#[test]
fn redis_down_with_refuse_answers_the_subscribers_503() {
    let mut redis = Redis::start();
    let a = Node::start(&["--redis", &redis.url(), "--redis-down", "refuse"]);
    let sa = Server::at(a.addr);
    let id0 = sa.publish_id("refuse", "m0");
    let mut waiting = sa.client();
    waiting.send_str(&sub("refuse", &format!("If-None-Match: {id0}\r\n")));
    wait_subscribers(&sa, 1);
    let mut stream = EventStream::open(&sa, &es("refuse", ""));
    assert!(stream.read_until_contains(Duration::from_secs(2), "data: m0\n"));
    redis.stop();
    // The waiter is told at once, with its cursor, to come back later (or go elsewhere).
    let r = waiting.response().unwrap();
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.header("retry-after"), Some("1"), "{r:?}");
    assert_eq!(
        r.header("etag"),
        Some(split_id(&id0).1.to_string().as_str())
    );
    // The stream ends; new subscribers are refused while Redis is down; publishes too.
    assert!(
        stream.read_to_end(Duration::from_secs(2)),
        "the stream did not end"
    );
    let r = sa.request(&sub("refuse", &format!("If-None-Match: {id0}\r\n")));
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(sa.publish("refuse", b"lost", "").status, 503);
    // Redis back: once the node's subscription is back, subscribers are served again.
    redis.restart();
    let id1 = publish_stored(&sa, "refuse", "back");
    let deadline = Instant::now() + Duration::from_secs(5);
    let r = loop {
        let r = sa.request(&sub("refuse", &format!("If-None-Match: {id0}\r\n")));
        if r.status != 503 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!((r.status, r.text().as_str()), (200, "back"), "{r:?}");
    assert_eq!(
        r.header("etag"),
        Some(split_id(&id1).1.to_string().as_str())
    );
}

#[test]
fn a_redis_that_stops_answering_is_noticed_by_the_health_check() {
    let redis = Redis::start();
    let backend = RedisBackend::new(&redis.url())
        .unwrap()
        .timeout(Duration::from_millis(300))
        .max_backoff(Duration::from_millis(200))
        .health_check(Duration::from_millis(200))
        .while_down(WhileDown::Refuse);
    let a = Server::start_backend(waiting_forever(), Backend::Redis(backend));
    let id0 = a.publish_id("frozen", "m0");
    let mut waiting = a.client();
    waiting.send_str(&sub("frozen", &format!("If-None-Match: {id0}\r\n")));
    wait_subscribers(&a, 1);
    // No FIN, no RST: only the unanswered PING tells the node, which refuses its waiter.
    redis.freeze(true);
    waiting.set_timeout(Duration::from_secs(5));
    let r = waiting.response().unwrap();
    redis.freeze(false);
    assert_eq!(r.status, 503, "{r:?}");
    // Thawed: the node subscribes again and serves.
    let id1 = publish_stored(&a, "frozen", "thawed");
    let deadline = Instant::now() + Duration::from_secs(5);
    let r = loop {
        let r = a.request(&sub("frozen", &format!("If-None-Match: {id0}\r\n")));
        if r.status != 503 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!((r.status, r.text().as_str()), (200, "thawed"), "{r:?}");
    assert_eq!(
        r.header("etag"),
        Some(split_id(&id1).1.to_string().as_str())
    );
}

#[test]
fn the_subscribers_of_a_killed_node_resume_on_another() {
    let redis = Redis::start();
    let flags = ["--redis", &redis.url(), "--hold-timeout", "0"];
    let mut a = Node::start(&flags);
    let b = Node::start(&flags);
    let (sa, sb) = (Server::at(a.addr), Server::at(b.addr));
    let mut stream = EventStream::open(&sa, &es("failover", ""));
    assert!(stream.read_until_contains(Duration::from_secs(2), ": hi\n\n"));
    let mut poller = sa.client();
    poller.send_str(&sub("failover", ""));
    wait_subscribers(&sa, 2);
    let id0 = sb.publish_id("failover", "m0");
    let first = poller.response().unwrap();
    assert_eq!(first.text(), "m0");
    assert!(stream.read_until_contains(Duration::from_secs(2), "data: m0\n"));
    a.kill();
    // Published while the subscribers have no node.
    let id1 = sb.publish_id("failover", "m1");
    let id2 = sb.publish_id("failover", "m2");
    // They reconnect to B with their cursors.
    let r = sb.request(&sub("failover", &cursor_of(&first)));
    assert_eq!(r.text(), "m1");
    assert_eq!(
        r.header("etag"),
        Some(split_id(&id1).1.to_string().as_str())
    );
    let last_seen = event_ids(&stream.text()).pop().unwrap();
    assert_eq!(last_seen, id0);
    let mut resumed = EventStream::open(
        &sb,
        &es("failover", &format!("Last-Event-ID: {last_seen}\r\n")),
    );
    let m2 = format!("id: {id2}\ndata: m2\n\n");
    assert!(
        resumed.read_until_contains(Duration::from_secs(2), &m2),
        "{}",
        resumed.text()
    );
    assert_eq!(event_ids(&resumed.text()), [id1, id2]);
}
