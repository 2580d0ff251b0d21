//! The pub/sub server over real sockets: literal request bytes in, exact statuses, headers and
//! bodies out. Each test starts its own server on 127.0.0.1:0 (see `support`).

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use iomux_actors::{FirstMessage, PubSubConfig};
use support::*;

const VARY: &str = "vary: If-None-Match, If-Modified-Since";
const ORIGIN: &str = "https://app.example";

/// A long-poll reply carrying message `id` with `body`.
#[track_caller]
fn assert_message(r: &Response, body: &[u8], id: &str) {
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.body,
        body,
        "body {:?} instead of {:?}",
        r.text(),
        String::from_utf8_lossy(body)
    );
    let (_, tag) = split_id(id);
    assert_eq!(r.header("etag"), Some(tag.to_string().as_str()), "{r:?}");
    assert_eq!(
        r.header("last-modified"),
        Some(id_date(id).as_str()),
        "{r:?}"
    );
    assert_eq!(
        r.header("vary"),
        Some("If-None-Match, If-Modified-Since"),
        "{r:?}"
    );
}

/// The headers a body-less 408/410 carries for a subscriber whose cursor is `id`.
fn cursor_reply_lines(id: &str) -> Vec<String> {
    vec![
        format!("last-modified: {}", id_date(id)),
        format!("etag: {}", split_id(id).1),
        VARY.to_string(),
        "content-length: 0".to_string(),
    ]
}

/// A config of the test defaults with another hold timeout.
fn hold(timeout: Duration) -> PubSubConfig {
    PubSubConfig {
        hold_timeout: timeout,
        ..pubsub_config()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ---------------------------------------------------------------------------------------------
// Cursor semantics
// ---------------------------------------------------------------------------------------------

#[test]
fn rapid_publishes_reach_a_repolling_subscriber_exactly_once_in_order() {
    const N: usize = 200;
    let server = Server::start(PubSubConfig {
        buffer_length: 1000,
        ..pubsub_config()
    });
    let addr = server.addr;
    let subscriber = std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        let mut got: Vec<Response> = Vec::new();
        let mut cursor = String::new();
        let deadline = Instant::now() + Duration::from_secs(8);
        while got.len() < N && Instant::now() < deadline {
            let r = c.exchange(&sub("rapid", &cursor));
            match r.status {
                200 => {
                    cursor = cursor_of(&r);
                    got.push(r);
                }
                // A poll before the first publish times out without a cursor.
                408 if r.header("etag").is_none() => assert!(got.is_empty(), "{r:?}"),
                408 => cursor = cursor_of(&r),
                _ => panic!("subscriber got {r:?}"),
            }
        }
        got
    });
    std::thread::sleep(Duration::from_millis(50));
    let mut publisher = server.client();
    let mut ids = Vec::new();
    for i in 0..N {
        let r = publisher.exchange_bytes(&publish_request(
            "POST",
            "rapid",
            format!("message {i:03}").as_bytes(),
            "",
        ));
        assert!(r.status == 201 || r.status == 202, "{r:?}");
        ids.push(last_message_id(&r));
    }
    let got = subscriber.join().unwrap();
    let bodies: Vec<String> = got.iter().map(Response::text).collect();
    let expected: Vec<String> = (0..N).map(|i| format!("message {i:03}")).collect();
    assert_eq!(bodies, expected, "lost, repeated or reordered messages");
    for (r, id) in got.iter().zip(&ids) {
        assert_message(r, r.body.as_slice(), id);
    }
    // Ids strictly increase.
    let parsed: Vec<(u64, u32)> = ids.iter().map(|i| split_id(i)).collect();
    assert!(parsed.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
}

#[test]
fn messages_published_between_polls_arrive_on_the_next_polls() {
    let server = Server::start(pubsub_config());
    let id0 = server.publish_id("between", "m0");
    let mut c = server.client();
    let r0 = c.exchange(&sub("between", ""));
    assert_message(&r0, b"m0", &id0);
    let id1 = server.publish_id("between", "m1");
    let id2 = server.publish_id("between", "m2");
    let r1 = c.exchange(&sub("between", &cursor_of(&r0)));
    assert_message(&r1, b"m1", &id1);
    let r2 = c.exchange(&sub("between", &cursor_of(&r1)));
    assert_message(&r2, b"m2", &id2);
    // Nothing newer: the next poll waits for the next publish.
    c.send_str(&sub("between", &cursor_of(&r2)));
    server
        .wait_status("long-poll subscribers", 1, Duration::from_secs(2))
        .expect("the third poll should wait");
    let p = server.publish("between", b"m3", "");
    assert_eq!(p.status, 201, "{p:?}");
    let r3 = c.response().unwrap();
    assert_message(&r3, b"m3", &last_message_id(&p));
}

#[test]
fn cursor_older_than_the_buffer_gets_the_oldest_buffered_message() {
    let server = Server::start(PubSubConfig {
        buffer_length: 3,
        ..pubsub_config()
    });
    let ids: Vec<String> = (0..5)
        .map(|i| server.publish_id("old", &format!("m{i}")))
        .collect();
    // m0 and m1 were evicted: the buffer is m2, m3, m4.
    let cases = [
        format!("If-None-Match: {}\r\n", ids[0]),
        format!(
            "If-Modified-Since: {}\r\nIf-None-Match: {}\r\n",
            id_date(&ids[0]),
            split_id(&ids[0]).1
        ),
        format!("Last-Event-ID: {}\r\n", ids[1]),
        "Last-Event-ID: 1:0\r\n".to_string(),
        "If-Modified-Since: Thu, 01 Jan 1970 00:00:01 GMT\r\nIf-None-Match: 0\r\n".to_string(),
    ];
    for headers in &cases {
        let r = server.request(&sub("old", headers));
        assert_message(&r, b"m2", &ids[2]);
    }
    let r = server.request(&sub("old?last_event_id=5:0", ""));
    assert_message(&r, b"m2", &ids[2]);
    // The oldest buffered id as cursor: the one after it.
    let r = server.request(&sub("old", &format!("If-None-Match: {}\r\n", ids[2])));
    assert_message(&r, b"m3", &ids[3]);
}

#[test]
fn cursor_forms_and_their_precedence() {
    let server = Server::start(pubsub_config());
    let ids: Vec<String> = (0..3)
        .map(|i| server.publish_id("forms", &format!("m{i}")))
        .collect();
    let (t0, g0) = split_id(&ids[0]);
    let ims = |id: &str| {
        format!(
            "If-Modified-Since: {}\r\nIf-None-Match: {}\r\n",
            id_date(id),
            split_id(id).1
        )
    };
    let cases: Vec<(String, String, usize)> = vec![
        // (target, headers, index of the message expected)
        ("forms".into(), ims(&ids[0]), 1),
        ("forms".into(), ims(&ids[1]), 2),
        ("forms".into(), format!("If-None-Match: {}\r\n", ids[0]), 1),
        ("forms".into(), format!("Etag: {}\r\n", ids[0]), 1),
        ("forms".into(), format!("Last-Event-ID: {}\r\n", ids[0]), 1),
        (format!("forms?last_event_id={}", ids[0]), String::new(), 1),
        (format!("forms?last_event_id={t0}%3A{g0}"), String::new(), 1),
        (
            format!("forms?a=b&last_event_id={}", ids[1]),
            String::new(),
            2,
        ),
        // If-None-Match (with or without the date) wins over Last-Event-ID.
        (
            "forms".into(),
            format!("If-None-Match: {}\r\nLast-Event-ID: {}\r\n", ids[1], ids[0]),
            2,
        ),
        (
            "forms".into(),
            format!("Last-Event-ID: {}\r\nIf-None-Match: {}\r\n", ids[1], ids[0]),
            1,
        ),
        (
            "forms".into(),
            format!("{}Last-Event-ID: {}\r\n", ims(&ids[1]), ids[0]),
            2,
        ),
        // Last-Event-ID wins over ?last_event_id=.
        (
            format!("forms?last_event_id={}", ids[0]),
            format!("Last-Event-ID: {}\r\n", ids[1]),
            2,
        ),
        (
            format!("forms?last_event_id={}", ids[1]),
            format!("Last-Event-ID: {}\r\n", ids[0]),
            1,
        ),
        // The Etag request header: after If-None-Match, before Last-Event-ID.
        (
            "forms".into(),
            format!("If-None-Match: {}\r\nEtag: {}\r\n", ids[1], ids[0]),
            2,
        ),
        (
            "forms".into(),
            format!("If-None-Match: {}\r\nEtag: {}\r\n", ids[0], ids[1]),
            1,
        ),
        (
            "forms".into(),
            format!("Etag: {}\r\nLast-Event-ID: {}\r\n", ids[1], ids[0]),
            2,
        ),
        (
            format!("forms?last_event_id={}", ids[0]),
            format!("Etag: {}\r\n", ids[1]),
            2,
        ),
    ];
    for (target, headers, want) in &cases {
        let r = server.request(&sub(target, headers));
        assert!(
            r.status == 200 && r.body == format!("m{want}").as_bytes(),
            "GET /sub/{target} with {headers:?}: expected m{want}, got {} {:?}",
            r.status,
            r.text()
        );
        assert_message(&r, format!("m{want}").as_bytes(), &ids[*want]);
    }
}

#[test]
fn malformed_cursors_are_400_message_id_invalid() {
    let server = Server::start(pubsub_config());
    server.publish_id("bad", "m0");
    let date = httpdate::fmt_http_date(SystemTime::now());
    let cases: Vec<(String, String)> = vec![
        ("bad".into(), "If-None-Match: abc:def\r\n".into()),
        ("bad".into(), "If-None-Match: :1\r\n".into()),
        ("bad".into(), "If-None-Match: :\r\n".into()),
        ("bad".into(), "If-None-Match: 1:\r\n".into()),
        ("bad".into(), "If-None-Match: 1:2:3\r\n".into()),
        ("bad".into(), "If-None-Match: -1:0\r\n".into()),
        (
            "bad".into(),
            "If-None-Match: 99999999999999999999:0\r\n".into(),
        ),
        ("bad".into(), "If-None-Match: \"1:2\"\r\n".into()),
        ("bad".into(), "If-None-Match: W/\"1:2\"\r\n".into()),
        ("bad".into(), "If-None-Match: 1:2,3\r\n".into()),
        ("bad".into(), "If-None-Match: [1:2]\r\n".into()),
        ("bad".into(), "Last-Event-ID: abc:def\r\n".into()),
        ("bad".into(), "Last-Event-ID: 1:\r\n".into()),
        ("bad".into(), "Etag: 1:2:3\r\n".into()),
        ("bad?last_event_id=abc:def".into(), String::new()),
        ("bad?last_event_id=1%3A".into(), String::new()),
        // If-Modified-Since without a tag, or with an unparsable date.
        ("bad".into(), format!("If-Modified-Since: {date}\r\n")),
        (
            "bad".into(),
            "If-Modified-Since: yesterday\r\nIf-None-Match: 0\r\n".into(),
        ),
        // EventSource too: a plain 400, no stream.
        (
            "bad".into(),
            "Accept: text/event-stream\r\nLast-Event-ID: abc:def\r\n".into(),
        ),
    ];
    for (target, headers) in &cases {
        let r = server.request(&sub(target, headers));
        assert_eq!(
            (r.status, r.text().as_str()),
            (400, "Message ID invalid"),
            "GET /sub/{target} with {headers:?}: {r:?}"
        );
        assert_eq!(
            r.header_lines(),
            ["content-type: text/plain", "content-length: 18"],
            "{target} {headers:?}"
        );
    }
}

#[test]
fn unparsable_or_missing_cursor_gets_the_oldest_message() {
    let server = Server::start(pubsub_config());
    let id0 = server.publish_id("lax", "m0");
    let id1 = server.publish_id("lax", "m1");
    for (target, headers) in [
        ("lax", ""),
        ("lax", "If-None-Match: garbage\r\n"),
        ("lax", "If-None-Match: 0\r\n"),
        ("lax", "If-None-Match: 0:0\r\n"),
        ("lax", "If-None-Match: 5\r\n"),
        ("lax", "Last-Event-ID: garbage\r\n"),
        ("lax", "Last-Event-ID: 12abc\r\n"),
        ("lax", "Last-Event-ID: -1\r\n"),
        ("lax", "Etag: garbage\r\n"),
        ("lax?last_event_id=garbage", ""),
        ("lax?last_event_id=", ""),
    ] {
        let r = server.request(&sub(target, headers));
        assert!(
            r.status == 200 && r.body == b"m0",
            "GET /sub/{target} with {headers:?}: expected the oldest, got {} {:?}",
            r.status,
            r.text()
        );
        assert_message(&r, b"m0", &id0);
    }
    // A valid date with a garbage tag: the tag is 0 (as nchan), so the cursor is T0:0 = id0.
    assert_eq!(split_id(&id0).1, 0);
    let r = server.request(&sub(
        "lax",
        &format!(
            "If-Modified-Since: {}\r\nIf-None-Match: garbage\r\n",
            id_date(&id0)
        ),
    ));
    if split_id(&id1).0 == split_id(&id0).0 {
        assert_message(&r, b"m1", &id1);
    } else {
        assert!(r.status == 200 && r.body == b"m1", "{r:?}");
    }
}

#[test]
fn first_message_newest_waits_for_the_next_publish() {
    let server = Server::start(PubSubConfig {
        first_message: FirstMessage::Newest,
        ..hold(Duration::from_secs(5))
    });
    let id0 = server.publish_id("newest", "m0");
    let id1 = server.publish_id("newest", "m1");
    let mut c = server.client();
    c.send_str(&sub("newest", ""));
    server
        .wait_status("long-poll subscribers", 1, Duration::from_secs(2))
        .expect("a cursor-less subscriber waits with first_message newest");
    let p = server.publish("newest", b"m2", "");
    assert_eq!(p.status, 201, "{p:?}");
    assert_message(&c.response().unwrap(), b"m2", &last_message_id(&p));
    // A cursor is still honoured.
    let r = server.request(&sub("newest", &format!("If-None-Match: {id0}\r\n")));
    assert_message(&r, b"m1", &id1);
}

#[test]
fn first_message_nth_counts_from_either_end() {
    for (n, want) in [
        (1, 0),
        (2, 1),
        (3, 2),
        (5, 2),
        (-1, 2),
        (-2, 1),
        (-3, 0),
        (-9, 0),
    ] {
        let server = Server::start(PubSubConfig {
            first_message: FirstMessage::Nth(n),
            ..pubsub_config()
        });
        let ids: Vec<String> = (0..3)
            .map(|i| server.publish_id("nth", &format!("m{i}")))
            .collect();
        let r = server.request(&sub("nth", ""));
        assert!(
            r.status == 200 && r.body == format!("m{want}").as_bytes(),
            "Nth({n}): expected m{want}, got {} {:?}",
            r.status,
            r.text()
        );
        assert_message(&r, format!("m{want}").as_bytes(), &ids[want]);
    }
    // The default is the oldest.
    assert_eq!(PubSubConfig::default().first_message, FirstMessage::Oldest);
}

#[test]
fn hold_timeout_408_carries_the_cursor_and_a_repoll_gets_the_next_message() {
    let server = Server::start(hold(Duration::from_secs(1)));
    let id0 = server.publish_id("hold", "m0");
    let mut c = server.client();
    let r0 = c.exchange(&sub("hold", ""));
    assert_message(&r0, b"m0", &id0);

    // Both wait together: a cursor-less poll of an empty channel, and the re-poll after m0.
    let mut empty = server.client();
    let start = Instant::now();
    empty.send_str(&sub("hold-empty", &format!("Origin: {ORIGIN}\r\n")));
    c.send_str(&sub("hold", &cursor_of(&r0)));

    let timeout = c.response().unwrap();
    let elapsed = start.elapsed();
    assert_eq!(timeout.status, 408, "{timeout:?}");
    assert_eq!(timeout.reason, "Request Timeout");
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(2500),
        "408 after {elapsed:?} with hold_timeout 1s"
    );
    assert_eq!(timeout.header_lines(), cursor_reply_lines(&id0));
    assert!(timeout.body.is_empty());

    let fresh = empty.response().unwrap();
    assert_eq!(fresh.status, 408, "{fresh:?}");
    assert_eq!(
        fresh.header_lines(),
        [
            VARY.to_string(),
            "access-control-expose-headers: Last-Modified, Etag, Content-Type".to_string(),
            "access-control-allow-credentials: true".to_string(),
            format!("access-control-allow-origin: {ORIGIN}"),
            "content-length: 0".to_string(),
        ]
    );

    // Re-poll with the 408's headers on the same connection: it waits (m0 is not repeated) and
    // gets m1 once published.
    c.send_str(&sub("hold", &cursor_of(&timeout)));
    server
        .wait_status("long-poll subscribers", 1, Duration::from_secs(2))
        .expect("the re-poll after 408 should wait, not get m0 again");
    let p = server.publish("hold", b"m1", "");
    assert_eq!(p.status, 201, "{p:?}");
    assert_message(&c.response().unwrap(), b"m1", &last_message_id(&p));
}

// ---------------------------------------------------------------------------------------------
// Many subscribers
// ---------------------------------------------------------------------------------------------

#[test]
fn two_thousand_long_polls_all_receive_one_publish() {
    const N: usize = 2000;
    let _heavy = heavy();
    let started = Instant::now();
    let server = Server::start(hold(Duration::ZERO));
    let mut clients: Vec<Client> = (0..N)
        .map(|_| {
            let mut c = server.client();
            c.send_str(&sub("crowd", ""));
            c
        })
        .collect();
    server
        .wait_status("long-poll subscribers", N as u64, Duration::from_secs(5))
        .unwrap_or_else(|seen| panic!("only {seen} of {N} subscribers waiting"));
    let info = server.request("GET /pub/crowd HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(info.status, 200, "{info:?}");
    assert!(
        info.text().contains("\r\nactive subscribers: 2000\r\n"),
        "{:?}",
        info.text()
    );

    let body: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 256) as u8).collect();
    let p = server.publish("crowd", &body, "Content-Type: application/octet-stream\r\n");
    assert_eq!(p.status, 201, "{p:?}");
    let id = last_message_id(&p);
    assert_eq!(
        p.text(),
        format!(
            "queued messages: 1\r\nlast requested: {} sec. ago\r\nactive subscribers: 2000\r\nlast message id: {id}",
            requested_secs(&p)
        )
    );
    for (i, c) in clients.iter_mut().enumerate() {
        let r = c
            .response()
            .unwrap_or_else(|e| panic!("subscriber {i}: {e}"));
        assert_message(&r, &body, &id);
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    }
    assert_eq!(server.status_field("total delivered messages"), N as u64);
    assert_eq!(server.status_field("long-poll subscribers"), 0);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

/// The `last requested: N sec. ago` of a text channel info.
fn requested_secs(r: &Response) -> i64 {
    r.text()
        .split("\r\n")
        .find_map(|l| l.strip_prefix("last requested: "))
        .and_then(|l| l.strip_suffix(" sec. ago"))
        .unwrap_or_else(|| panic!("no last requested in {r:?}"))
        .parse()
        .unwrap()
}

#[test]
fn hang_up_of_half_the_subscribers_spares_the_others_and_frees_their_entries() {
    const N: usize = 1000;
    let _heavy = heavy();
    let server = Server::start(hold(Duration::ZERO));
    let clients: Vec<Client> = (0..N)
        .map(|_| {
            let mut c = server.client();
            c.send_str(&sub("half", ""));
            c
        })
        .collect();
    server
        .wait_status("long-poll subscribers", N as u64, Duration::from_secs(5))
        .unwrap_or_else(|seen| panic!("only {seen} of {N} subscribers waiting"));
    type Numbered = Vec<(usize, Client)>;
    let (mut kept, gone): (Numbered, Numbered) = clients
        .into_iter()
        .enumerate()
        .partition(|(i, _)| i % 2 == 0);
    let hung_up = Instant::now();
    drop(gone);
    server
        .wait_status("long-poll subscribers", 500, Duration::from_millis(1000))
        .unwrap_or_else(|seen| {
            panic!(
                "{seen} long-poll subscribers {:?} after 500 hung up (expected 500)",
                hung_up.elapsed()
            )
        });
    let info = server.request("GET /pub/half HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(
        info.text().contains("\r\nactive subscribers: 500\r\n"),
        "{:?}",
        info.text()
    );
    let p = server.publish("half", b"still here", "Content-Type: text/plain\r\n");
    assert_eq!(p.status, 201, "{p:?}");
    assert!(
        p.text().contains("\r\nactive subscribers: 500\r\n"),
        "{:?}",
        p.text()
    );
    let id = last_message_id(&p);
    for (i, c) in kept.iter_mut() {
        let r = c
            .response()
            .unwrap_or_else(|e| panic!("subscriber {i}: {e}"));
        assert_message(&r, b"still here", &id);
    }
    assert_eq!(server.status_field("total delivered messages"), 500);
}

// ---------------------------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------------------------

#[test]
fn binary_and_64k_bodies_round_trip_with_their_content_type() {
    let server = Server::start(hold(Duration::from_secs(5)));
    // All 256 byte values, buffered then fetched.
    let binary: Vec<u8> = (0..=255u8).collect();
    let p = server.publish("bin", &binary, "Content-Type: application/octet-stream\r\n");
    assert_eq!(p.status, 202, "{p:?}");
    let r = server.request(&sub("bin", ""));
    assert_message(&r, &binary, &last_message_id(&p));
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.header("content-length"), Some("256"));

    // 64 KiB to a waiting subscriber.
    let big: Vec<u8> = (0..65536u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut c = server.client();
    c.send_str(&sub("big", ""));
    server
        .wait_status("long-poll subscribers", 1, Duration::from_secs(2))
        .unwrap();
    let p = server.publish("big", &big, "Content-Type: image/x-test; q=\"1\"\r\n");
    assert_eq!(p.status, 201, "{p:?}");
    let r = c.response().unwrap();
    assert_message(&r, &big, &last_message_id(&p));
    assert_eq!(r.header("content-type"), Some("image/x-test; q=\"1\""));
    // And buffered, to a later subscriber.
    let r = server.request(&sub("big", ""));
    assert_message(&r, &big, &last_message_id(&p));

    // Without a Content-Type at publish, the message has none (as nchan).
    let p = server.publish("untyped", b"plain", "");
    let r = server.request(&sub("untyped", ""));
    assert_message(&r, b"plain", &last_message_id(&p));
    assert_eq!(r.header("content-type"), None, "{r:?}");
}

#[test]
fn body_over_the_max_message_size_is_413() {
    let server = Server::start_with(
        pubsub_config(),
        iomux::Config {
            max_body_size: 1000,
            ..server_config()
        },
    );
    let r = server.publish("limit", &[b'x'; 1001], "");
    assert_eq!(r.status, 413, "{r:?}");
    // Declared too large, body not sent.
    let r =
        server.request("POST /pub/limit HTTP/1.1\r\nHost: t\r\nContent-Length: 5000000\r\n\r\n");
    assert_eq!(r.status, 413, "{r:?}");
    // Chunked over the limit.
    let mut chunked =
        b"POST /pub/limit HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        chunked.extend_from_slice(b"190\r\n");
        chunked.extend_from_slice(&[b'y'; 400]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let r = server.request_bytes(&chunked);
    assert_eq!(r.status, 413, "{r:?}");
    // Exactly the limit is accepted.
    let r = server.publish("limit", &[b'z'; 1000], "");
    assert_eq!(r.status, 202, "{r:?}");
    assert!(r.text().starts_with("queued messages: 1\r\n"), "{r:?}");
    let m = server.request(&sub("limit", ""));
    assert_eq!((m.status, m.body.len()), (200, 1000));
    assert!(m.body.iter().all(|&b| b == b'z'));
}

// ---------------------------------------------------------------------------------------------
// DELETE, channel info, publisher replies
// ---------------------------------------------------------------------------------------------

#[test]
fn delete_answers_the_info_before_and_ends_every_subscriber() {
    let server = Server::start(hold(Duration::from_secs(5)));
    let id0 = server.publish_id("del", "m0");
    let mut plain = server.client();
    plain.send_str(&sub("del", &format!("If-None-Match: {id0}\r\n")));
    let mut cors = server.client();
    cors.send_str(&sub(
        "del",
        &format!("Origin: {ORIGIN}\r\nIf-None-Match: {id0}\r\n"),
    ));
    let mut stream = EventStream::open(&server, &es("del", &format!("Last-Event-ID: {id0}\r\n")));
    assert_eq!(stream.head.status, 200);
    assert!(stream.read_until_contains(Duration::from_secs(2), ": hi\n\n"));
    server
        .wait_status("long-poll subscribers", 2, Duration::from_secs(2))
        .unwrap();
    server
        .wait_status("eventsource subscribers", 1, Duration::from_secs(2))
        .unwrap();

    let r = server.request("DELETE /pub/del HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    let secs = requested_secs(&r);
    assert!((0..=1).contains(&secs), "{r:?}");
    assert_eq!(
        r.text(),
        format!(
            "queued messages: 1\r\nlast requested: {secs} sec. ago\r\nactive subscribers: 3\r\nlast message id: {id0}"
        )
    );

    let gone = plain.response().unwrap();
    assert_eq!((gone.status, gone.reason.as_str()), (410, "Gone"));
    assert_eq!(gone.header_lines(), cursor_reply_lines(&id0));
    let gone = cors.response().unwrap();
    assert_eq!(gone.status, 410, "{gone:?}");
    assert_eq!(
        gone.cors_lines(),
        [
            "access-control-expose-headers: Last-Modified, Etag, Content-Type".to_string(),
            "access-control-allow-credentials: true".to_string(),
            format!("access-control-allow-origin: {ORIGIN}"),
        ]
    );
    assert_eq!(
        gone.header("etag"),
        Some(split_id(&id0).1.to_string().as_str())
    );
    assert_eq!(gone.header("last-modified"), Some(id_date(&id0).as_str()));

    assert!(
        stream.read_to_end(Duration::from_secs(2)),
        "eventsource stream not ended after DELETE: {:?}",
        stream.text()
    );
    assert_eq!(stream.text(), ": hi\n\n:410: 410 Gone\n\n");

    // The deleted channel is remembered, empty, with its last id.
    let info = server.request("GET /pub/del HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(info.status, 200, "{info:?}");
    let secs = requested_secs(&info);
    assert_eq!(
        info.text(),
        format!(
            "queued messages: 0\r\nlast requested: {secs} sec. ago\r\nactive subscribers: 0\r\nlast message id: {id0}"
        )
    );
    server
        .wait_status("eventsource subscribers", 0, Duration::from_secs(1))
        .unwrap();
    assert_eq!(server.status_field("long-poll subscribers"), 0);
    // Deleting again: 200 with no message.
    let again = server.request("DELETE /pub/del HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(again.status, 200, "{again:?}");
    assert!(
        again.text().starts_with("queued messages: 0\r\n"),
        "{again:?}"
    );
    // A new subscriber waits like on an empty channel and gets the next message.
    let mut next = server.client();
    next.send_str(&sub("del", ""));
    server
        .wait_status("long-poll subscribers", 1, Duration::from_secs(2))
        .unwrap();
    let p = server.publish("del", b"m1", "");
    assert_eq!(p.status, 201, "{p:?}");
    let id1 = last_message_id(&p);
    assert!(split_id(&id1) > split_id(&id0));
    assert_message(&next.response().unwrap(), b"m1", &id1);
}

#[test]
fn never_used_channel_is_404_for_get_and_delete() {
    let server = Server::start(pubsub_config());
    for method in ["GET", "DELETE"] {
        let r = server.request(&format!(
            "{method} /pub/nothing HTTP/1.1\r\nHost: t\r\n\r\n"
        ));
        assert_eq!((r.status, r.reason.as_str()), (404, "Not Found"), "{r:?}");
        assert_eq!(r.header_lines(), ["content-length: 0"], "{method}");
        assert!(r.body.is_empty());
        let r = server.request(&format!(
            "{method} /pub/nothing HTTP/1.1\r\nHost: t\r\nOrigin: {ORIGIN}\r\n\r\n"
        ));
        assert_eq!(r.status, 404);
        assert_eq!(
            r.cors_lines(),
            [
                "access-control-allow-credentials: true".to_string(),
                format!("access-control-allow-origin: {ORIGIN}"),
            ]
        );
    }
    // Neither request created the channel.
    assert_eq!(server.status_field("channels"), 0);
}

#[test]
fn publisher_replies_in_nchan_text_and_json() {
    let server = Server::start(hold(Duration::from_secs(5)));
    let before = unix_now();
    let r = server.publish("info", b"one", "");
    let after = unix_now();
    assert_eq!((r.status, r.reason.as_str()), (202, "Accepted"), "{r:?}");
    let id = last_message_id(&r);
    let (t, g) = split_id(&id);
    assert!((before..=after).contains(&t) && g == 0, "{id}");
    assert_eq!(
        r.header_lines(),
        [
            "content-type: text/plain".to_string(),
            format!("content-length: {}", r.body.len())
        ]
    );
    assert_eq!(
        r.text(),
        format!("queued messages: 1\r\nlast requested: -1 sec. ago\r\nactive subscribers: 0\r\nlast message id: {id}")
    );

    for accept in [
        "application/json",
        "text/json",
        "application/json;q=0.1, text/plain",
    ] {
        let r = server.publish("info", b"more", &format!("Accept: {accept}\r\n"));
        assert_eq!(r.status, 202, "{r:?}");
        assert_eq!(r.header("content-type"), Some("text/json"), "{accept}");
        let id = last_message_id_json(&r);
        let n = r.text()[r.text().find(": ").unwrap() + 2..]
            .split(',')
            .next()
            .unwrap()
            .to_string();
        assert_eq!(
            r.text(),
            format!(
                r#"{{"messages": {n}, "requested": -1, "subscribers": 0, "last_message_id": "{id}" }}"#
            ),
            "{accept}"
        );
    }
    for accept in ["text/plain, application/json", "*/*", "text/html"] {
        let r = server.publish("info", b"more", &format!("Accept: {accept}\r\n"));
        assert_eq!(r.header("content-type"), Some("text/plain"), "{accept}");
        assert!(r.text().starts_with("queued messages: "), "{accept}");
    }

    // GET /pub: the same information, 200.
    let r = server.request("GET /pub/info HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 200);
    let last = last_message_id(&r);
    assert_eq!(
        r.text(),
        format!("queued messages: 7\r\nlast requested: -1 sec. ago\r\nactive subscribers: 0\r\nlast message id: {last}")
    );
    let r = server.request("GET /pub/info HTTP/1.1\r\nHost: t\r\nAccept: application/json\r\n\r\n");
    assert_eq!(r.header("content-type"), Some("text/json"));
    assert_eq!(
        r.text(),
        format!(
            r#"{{"messages": 7, "requested": -1, "subscribers": 0, "last_message_id": "{last}" }}"#
        )
    );
    // HEAD /pub: the head of the same reply.
    let h = server.request("HEAD /pub/info HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(h.status, 200, "{h:?}");
    assert_eq!(h.header("content-type"), Some("text/plain"));

    // With a subscriber waiting: 201 and the subscriber counted.
    let mut c = server.client();
    c.send_str(&sub("info", &format!("If-None-Match: {last}\r\n")));
    server
        .wait_status("long-poll subscribers", 1, Duration::from_secs(2))
        .unwrap();
    let r = server.publish("info", b"two", "");
    assert_eq!((r.status, r.reason.as_str()), (201, "Created"), "{r:?}");
    let id = last_message_id(&r);
    let secs = requested_secs(&r);
    assert!((0..=1).contains(&secs), "{r:?}");
    assert_eq!(
        r.text(),
        format!("queued messages: 8\r\nlast requested: {secs} sec. ago\r\nactive subscribers: 1\r\nlast message id: {id}")
    );
    assert_message(&c.response().unwrap(), b"two", &id);
}

fn last_message_id_json(r: &Response) -> String {
    let text = r.text();
    let start = text
        .find("\"last_message_id\": \"")
        .unwrap_or_else(|| panic!("{text:?}"))
        + "\"last_message_id\": \"".len();
    text[start..].split('"').next().unwrap().to_string()
}

#[test]
fn put_publishes_like_post() {
    let server = Server::start(pubsub_config());
    let post = server.request_bytes(&publish_request("POST", "via-post", b"same", ""));
    let put = server.request_bytes(&publish_request("PUT", "via-put", b"same", ""));
    assert_eq!(put.status, 202, "{put:?}");
    assert_eq!(put.header_lines(), post.header_lines());
    assert_eq!(
        put.text().replace(&last_message_id(&put), "ID"),
        post.text().replace(&last_message_id(&post), "ID")
    );
    let r = server.request(&sub("via-put", ""));
    assert_message(&r, b"same", &last_message_id(&put));
    // PUT with a subscriber waiting: 201.
    let mut c = server.client();
    c.send_str(&sub("via-put", &cursor_of(&r)));
    server
        .wait_status("long-poll subscribers", 1, Duration::from_secs(2))
        .unwrap();
    let put = server.request_bytes(&publish_request("PUT", "via-put", b"again", ""));
    assert_eq!(put.status, 201, "{put:?}");
    assert_message(&c.response().unwrap(), b"again", &last_message_id(&put));
}

#[test]
fn options_preflight_headers_with_and_without_origin() {
    let server = Server::start(pubsub_config());
    let publisher = "GET, POST, PUT, DELETE";
    let r = server.request("OPTIONS /pub/ch HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header_lines(),
        [format!("allow: {publisher}"), "content-length: 0".into()]
    );
    assert!(r.body.is_empty());
    let with_origin = [
        format!("allow: {publisher}"),
        "access-control-allow-headers: Content-Type, X-EventSource-Event".into(),
        format!("access-control-allow-methods: {publisher}"),
        "access-control-allow-credentials: true".into(),
        format!("access-control-allow-origin: {ORIGIN}"),
        "content-length: 0".into(),
    ];
    for extra in [
        "",
        "Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: X-Foo\r\n",
    ] {
        let r = server.request(&format!(
            "OPTIONS /pub/ch HTTP/1.1\r\nHost: t\r\nOrigin: {ORIGIN}\r\n{extra}\r\n"
        ));
        assert_eq!(r.status, 200);
        assert_eq!(r.header_lines(), with_origin);
    }

    let subscriber = "GET";
    let r = server.request("OPTIONS /sub/ch HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header_lines(),
        [format!("allow: {subscriber}"), "content-length: 0".into()]
    );
    let r = server.request(&format!(
        "OPTIONS /sub/ch HTTP/1.1\r\nHost: t\r\nOrigin: {ORIGIN}\r\nAccess-Control-Request-Headers: If-None-Match\r\n\r\n"
    ));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header_lines(),
        [
            format!("allow: {subscriber}"),
            "access-control-allow-headers: If-None-Match, If-Modified-Since, Content-Type, Cache-Control, X-EventSource-Event, Etag, Last-Event-ID".into(),
            format!("access-control-allow-methods: {subscriber}"),
            "access-control-allow-credentials: true".into(),
            format!("access-control-allow-origin: {ORIGIN}"),
            "content-length: 0".into(),
        ]
    );
    // A preflight creates no channel.
    assert_eq!(server.status_field("channels"), 0);
}

#[test]
fn cors_headers_echo_the_origin_on_subscriber_and_publisher_replies() {
    let server = Server::start(pubsub_config());
    let expose = "access-control-expose-headers: Last-Modified, Etag, Content-Type".to_string();
    let credentials = "access-control-allow-credentials: true".to_string();
    for (n, origin) in [ORIGIN, "null"].into_iter().enumerate() {
        // A channel per origin: the stream of the previous round may still be counted.
        let ch = format!("cors{n}");
        let allow = format!("access-control-allow-origin: {origin}");
        let p = server.publish(&ch, b"m", &format!("Origin: {origin}\r\n"));
        assert_eq!(p.status, 202);
        assert_eq!(p.cors_lines(), [credentials.clone(), allow.clone()]);
        let r = server.request(&sub(&ch, &format!("Origin: {origin}\r\n")));
        assert_eq!(r.status, 200);
        assert_eq!(
            r.cors_lines(),
            [expose.clone(), credentials.clone(), allow.clone()]
        );
        let i = server.request(&format!(
            "GET /pub/{ch} HTTP/1.1\r\nHost: t\r\nOrigin: {origin}\r\n\r\n"
        ));
        assert_eq!(i.status, 200);
        assert_eq!(i.cors_lines(), [credentials.clone(), allow.clone()]);
        let s = EventStream::open(&server, &es(&ch, &format!("Origin: {origin}\r\n")));
        assert_eq!(s.head.status, 200);
        assert_eq!(s.head.cors_lines(), [credentials.clone(), allow.clone()]);
    }
    // Without Origin: no CORS header at all.
    let p = server.publish("cors-plain", b"m", "");
    assert_eq!(p.status, 202);
    assert_eq!(p.cors_lines(), Vec::<String>::new());
    let r = server.request(&sub("cors-plain", ""));
    assert_eq!(r.status, 200);
    assert_eq!(r.cors_lines(), Vec::<String>::new());
    let i = server.request("GET /pub/cors-plain HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(i.cors_lines(), Vec::<String>::new());
    let s = EventStream::open(&server, &es("cors-plain", ""));
    assert_eq!(s.head.cors_lines(), Vec::<String>::new());
}

/// nchan answers a malformed cursor with the CORS headers when the request has an `Origin`
/// (TRANSCRIPTS.md: "with `Origin: O` (200/408/410/403/400) ... not [Expose] on 400").
#[test]
fn cors_headers_on_the_400_of_a_malformed_cursor() {
    let server = Server::start(pubsub_config());
    let r = server.request(&sub(
        "cors400",
        &format!("Origin: {ORIGIN}\r\nIf-None-Match: abc:def\r\n"),
    ));
    assert_eq!((r.status, r.text().as_str()), (400, "Message ID invalid"));
    assert_eq!(
        r.cors_lines(),
        [
            "access-control-allow-credentials: true".to_string(),
            format!("access-control-allow-origin: {ORIGIN}"),
        ],
        "{r:?}"
    );
}

#[test]
fn wrong_methods_get_405_with_allow() {
    let server = Server::start(pubsub_config());
    for (request, allow) in [
        (
            "POST /sub/ch HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
            "GET",
        ),
        ("DELETE /sub/ch HTTP/1.1\r\nHost: t\r\n\r\n", "GET"),
        (
            "PUT /sub/ch HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx",
            "GET",
        ),
        (
            "PATCH /pub/ch HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx",
            "GET, POST, PUT, DELETE",
        ),
        (
            "TRACE /pub/ch HTTP/1.1\r\nHost: t\r\n\r\n",
            "GET, POST, PUT, DELETE",
        ),
        (
            "POST /status HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
            "GET, HEAD",
        ),
        ("DELETE / HTTP/1.1\r\nHost: t\r\n\r\n", "GET, HEAD"),
    ] {
        let r = server.request(request);
        assert_eq!(
            (r.status, r.reason.as_str()),
            (405, "Method Not Allowed"),
            "{request:?}"
        );
        assert_eq!(
            r.header_lines(),
            [
                "content-type: text/plain; charset=utf-8".to_string(),
                format!("allow: {allow}"),
                "content-length: 23".to_string(),
            ],
            "{request:?}"
        );
        assert_eq!(r.text(), "405 Method Not Allowed\n");
    }
    // Nothing was published or created.
    assert_eq!(server.status_field("channels"), 0);
    assert_eq!(server.status_field("total published messages"), 0);
}

#[test]
fn channel_ids_are_checked_and_other_paths_answered() {
    let server = Server::start(pubsub_config());
    let long = "x".repeat(1025);
    for request in [
        "GET /sub/ HTTP/1.1\r\nHost: t\r\n\r\n".to_string(),
        "POST /pub/ HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx".to_string(),
        format!("GET /sub/{long} HTTP/1.1\r\nHost: t\r\n\r\n"),
        format!("POST /pub/{long} HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx"),
        "GET /sub/a%0Ab HTTP/1.1\r\nHost: t\r\n\r\n".to_string(),
        "DELETE /pub/a%00b HTTP/1.1\r\nHost: t\r\n\r\n".to_string(),
    ] {
        let r = server.request(&request);
        assert_eq!(
            (r.status, r.text().as_str()),
            (400, "invalid channel id\n"),
            "{request:?}"
        );
    }
    // The longest id allowed works.
    let id = "y".repeat(1024);
    let p = server.publish(&id, b"fits", "");
    assert_eq!(p.status, 202, "{p:?}");
    let r = server.request(&sub(&id, ""));
    assert_message(&r, b"fits", &last_message_id(&p));
    // Percent-decoded: /sub/a%20b is the channel "a b".
    let p = server.publish("a%20b", b"spaced", "");
    assert_eq!(p.status, 202, "{p:?}");
    let r = server.request(&sub("a b", "").replacen("a b", "a%20b", 1));
    assert_message(&r, b"spaced", &last_message_id(&p));
    // Other paths.
    let r = server.request("GET /nothing HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((r.status, r.text().as_str()), (404, "404 Not Found\n"));
    let r = server.request("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.body, iomux_actors::DEMO_PAGE.as_bytes());
    assert_eq!(server.status_field("channels"), 2);
}

// ---------------------------------------------------------------------------------------------
// Message ids
// ---------------------------------------------------------------------------------------------

#[test]
fn three_publishes_in_one_second_have_tags_0_1_2() {
    let server = Server::start(hold(Duration::ZERO));
    let mut attempt = 0;
    let (channel, ids) = loop {
        attempt += 1;
        assert!(
            attempt <= 5,
            "could not publish 3 messages within one second"
        );
        let channel = format!("ids{attempt}");
        let ids: Vec<String> = (0..3)
            .map(|i| server.publish_id(&channel, &format!("m{i}")))
            .collect();
        let times: Vec<u64> = ids.iter().map(|i| split_id(i).0).collect();
        if times.iter().all(|&t| t == times[0]) {
            break (channel, ids);
        }
    };
    let t = split_id(&ids[0]).0;
    assert_eq!(ids, [format!("{t}:0"), format!("{t}:1"), format!("{t}:2")]);
    // The same ids as Etag / Last-Modified on long-polls...
    let mut c = server.client();
    let mut cursor = String::new();
    for (i, id) in ids.iter().enumerate() {
        let r = c.exchange(&sub(&channel, &cursor));
        assert_message(&r, format!("m{i}").as_bytes(), id);
        assert_eq!(r.header("etag"), Some(i.to_string().as_str()));
        cursor = cursor_of(&r);
    }
    // ... and as EventSource ids.
    let mut s = EventStream::open(&server, &es(&channel, ""));
    assert!(s.read_until_contains(Duration::from_secs(2), "data: m2\n\n"));
    assert_eq!(
        s.text(),
        format!(": hi\n\nid: {t}:0\ndata: m0\n\nid: {t}:1\ndata: m1\n\nid: {t}:2\ndata: m2\n\n")
    );
    // The next second starts again at tag 0.
    loop {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        if now.as_secs() > t {
            break;
        }
        std::thread::sleep(
            Duration::from_millis(1000 - u64::from(now.subsec_millis()))
                + Duration::from_millis(20),
        );
    }
    let next = server.publish_id(&channel, "m3");
    let (t2, g2) = split_id(&next);
    assert!(t2 > t && g2 == 0, "{next} after {t}:2");
    assert!(s.read_until_contains(Duration::from_secs(2), "data: m3\n\n"));
    assert!(
        s.text().ends_with(&format!("id: {next}\ndata: m3\n\n")),
        "{:?}",
        s.text()
    );
}

// ---------------------------------------------------------------------------------------------
// EventSource
// ---------------------------------------------------------------------------------------------

#[test]
fn eventsource_head_catch_up_and_live_events() {
    let server = Server::start(hold(Duration::ZERO));
    let id0 = server.publish_id("es", "first");
    let p = server.publish("es", b"second", "X-EventSource-Event: chat\r\n");
    let id1 = last_message_id(&p);

    let mut s = EventStream::open(&server, &es("es", ""));
    assert_eq!((s.head.status, s.head.reason.as_str()), (200, "OK"));
    assert_eq!(
        s.head.header_lines(),
        [
            "content-type: text/event-stream; charset=utf-8",
            "cache-control: no-cache",
            "transfer-encoding: chunked"
        ]
    );
    let catch_up =
        format!(": hi\n\nid: {id0}\ndata: first\n\nevent: chat\nid: {id1}\ndata: second\n\n");
    assert!(
        s.read_until(Duration::from_secs(2), |t| t.len() >= catch_up.len()),
        "{:?}",
        s.text()
    );
    assert!(s.chunks[0].starts_with(b": hi\n\n"), "{:?}", s.chunks);
    assert_eq!(s.text(), catch_up);
    server
        .wait_status("eventsource subscribers", 1, Duration::from_secs(2))
        .unwrap();

    // Live events: named, multi-line (LF, CRLF and CR all end lines), trailing LF, empty.
    let mut expected = catch_up;
    for (body, headers, data) in [
        (
            &b"a\nb\r\nc\rd"[..],
            "X-EventSource-Event: multi\r\n",
            "data: a\ndata: b\ndata: c\ndata: d\n",
        ),
        (b"x\n", "", "data: x\ndata: \n"),
        (b"", "", "data: \n"),
        (b"\r\n\r", "", "data: \ndata: \ndata: \n"),
        (
            b"one line",
            "Content-Type: text/plain\r\n",
            "data: one line\n",
        ),
    ] {
        let p = server.publish("es", body, headers);
        assert_eq!(p.status, 201, "{p:?}");
        assert!(p.text().contains("\r\nactive subscribers: 1\r\n"), "{p:?}");
        let id = last_message_id(&p);
        let event = headers
            .strip_prefix("X-EventSource-Event: ")
            .map(|e| format!("event: {}\n", e.trim_end()))
            .unwrap_or_default();
        expected.push_str(&format!("{event}id: {id}\n{data}\n"));
        assert!(
            s.read_until(Duration::from_secs(2), |t| t.len() >= expected.len()),
            "{:?}",
            s.text()
        );
        assert_eq!(s.text(), expected, "after publishing {body:?}");
    }

    // A fresh channel: the first chunk is exactly the hello; Accept is matched as a substring.
    let mut empty = EventStream::open(
        &server,
        "GET /sub/es-empty HTTP/1.1\r\nHost: t\r\nAccept: text/html, text/event-stream;q=0.5\r\n\r\n",
    );
    assert_eq!(
        empty.head.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    assert!(empty.read_until(Duration::from_secs(2), |t| !t.is_empty()));
    assert_eq!(empty.chunks, [b": hi\n\n".to_vec()]);
    assert!(!empty.read_until(Duration::from_millis(300), |t| t.len() > 6));
    let p = server.publish("es-empty", b"live", "");
    let id = last_message_id(&p);
    assert!(empty.read_until_contains(Duration::from_secs(2), "data: live\n\n"));
    assert_eq!(empty.text(), format!(": hi\n\nid: {id}\ndata: live\n\n"));
}

#[test]
fn eventsource_resumes_after_last_event_id() {
    let server = Server::start(hold(Duration::ZERO));
    let ids: Vec<String> = (0..3)
        .map(|i| server.publish_id("resume", &format!("m{i}")))
        .collect();
    let mut s = EventStream::open(
        &server,
        &es("resume", &format!("Last-Event-ID: {}\r\n", ids[1])),
    );
    assert!(s.read_until_contains(Duration::from_secs(2), "data: m2\n\n"));
    assert!(!s.read_until(Duration::from_millis(300), |t| t.contains("m3")));
    assert_eq!(s.text(), format!(": hi\n\nid: {}\ndata: m2\n\n", ids[2]));
    let id3 = server.publish_id("resume", "m3");
    assert!(s.read_until_contains(Duration::from_secs(2), "data: m3\n\n"));
    assert_eq!(
        s.text(),
        format!(
            ": hi\n\nid: {}\ndata: m2\n\nid: {id3}\ndata: m3\n\n",
            ids[2]
        )
    );

    // The query parameter and If-None-Match work as well.
    for request in [
        es(&format!("resume?last_event_id={}", ids[0]), ""),
        es("resume", &format!("If-None-Match: {}\r\n", ids[0])),
    ] {
        let mut s = EventStream::open(&server, &request);
        let want = format!(
            ": hi\n\nid: {}\ndata: m1\n\nid: {}\ndata: m2\n\nid: {id3}\ndata: m3\n\n",
            ids[1], ids[2]
        );
        assert!(s.read_until(Duration::from_secs(2), |t| t.len() >= want.len()));
        assert_eq!(s.text(), want, "{request:?}");
    }
    // Resuming at the newest id: only the hello.
    let mut s = EventStream::open(&server, &es("resume", &format!("Last-Event-ID: {id3}\r\n")));
    assert!(!s.read_until(Duration::from_millis(300), |t| t.len() > 6));
    assert_eq!(s.text(), ": hi\n\n");
}

#[test]
fn eventsource_heartbeat_comment_arrives() {
    let server = Server::start(PubSubConfig {
        heartbeat_interval: Duration::from_millis(300),
        ..hold(Duration::ZERO)
    });
    let mut s = EventStream::open(&server, &es("beat", ""));
    assert!(
        s.read_until_contains(Duration::from_secs(2), ": ping\n\n"),
        "no heartbeat: {:?}",
        s.text()
    );
    assert_eq!(s.text(), ": hi\n\n: ping\n\n");
    assert!(
        s.read_until_contains(Duration::from_secs(2), ": ping\n\n: ping\n\n"),
        "no second heartbeat: {:?}",
        s.text()
    );
    // Messages still flow between heartbeats.
    let id = server.publish_id("beat", "between");
    assert!(s.read_until_contains(Duration::from_secs(2), "data: between\n\n"));
    assert!(s.text().contains(&format!("id: {id}\ndata: between\n\n")));
    let stripped = s.text().replace(": ping\n\n", "");
    assert_eq!(stripped, format!(": hi\n\nid: {id}\ndata: between\n\n"));
}

#[test]
fn eventsource_hold_timeout_ends_the_stream_with_408() {
    let server = Server::start(hold(Duration::from_secs(1)));
    let start = Instant::now();
    let mut idle = EventStream::open(&server, &es("es-idle", ""));
    let mut busy = EventStream::open(&server, &es("es-busy", ""));
    std::thread::sleep(Duration::from_millis(600));
    let id = server.publish_id("es-busy", "keeps it open");

    assert!(
        idle.read_to_end(Duration::from_secs(3)),
        "{:?}",
        idle.text()
    );
    let idle_end = start.elapsed();
    assert_eq!(idle.text(), ": hi\n\n:408: 408 Request Timeout\n\n");
    assert!(
        idle_end >= Duration::from_millis(900) && idle_end < Duration::from_millis(2500),
        "idle stream ended after {idle_end:?}"
    );

    // The timer restarts at every message: the busy stream lasts until ~1.6 s.
    assert!(
        busy.read_to_end(Duration::from_secs(3)),
        "{:?}",
        busy.text()
    );
    let busy_end = start.elapsed();
    assert_eq!(
        busy.text(),
        format!(": hi\n\nid: {id}\ndata: keeps it open\n\n:408: 408 Request Timeout\n\n")
    );
    assert!(
        busy_end >= Duration::from_millis(1500),
        "stream with a message at 0.6 s ended after {busy_end:?}"
    );
    assert_eq!(server.status_field("eventsource subscribers"), 0);
}

#[test]
fn eventsource_client_hanging_up_is_removed() {
    let server = Server::start(hold(Duration::ZERO));
    let mut s = EventStream::open(&server, &es("leave", ""));
    assert!(s.read_until_contains(Duration::from_secs(2), ": hi\n\n"));
    server
        .wait_status("eventsource subscribers", 1, Duration::from_secs(2))
        .unwrap();
    drop(s);
    server
        .wait_status("eventsource subscribers", 0, Duration::from_millis(1500))
        .unwrap_or_else(|n| panic!("{n} eventsource subscribers after the client left"));
    let p = server.publish("leave", b"nobody", "");
    assert_eq!(p.status, 202, "{p:?}");
    assert!(p.text().contains("\r\nactive subscribers: 0\r\n"), "{p:?}");
}

// ---------------------------------------------------------------------------------------------
// Limits and housekeeping
// ---------------------------------------------------------------------------------------------

#[test]
fn third_subscriber_over_the_limit_gets_403() {
    let server = Server::start(PubSubConfig {
        max_subscribers_per_channel: 2,
        ..hold(Duration::from_secs(5))
    });
    let mut first = server.client();
    first.send_str(&sub("limited", ""));
    let mut second = server.client();
    second.send_str(&sub("limited", ""));
    server
        .wait_status("long-poll subscribers", 2, Duration::from_secs(2))
        .unwrap();
    let r = server.request(&sub("limited", ""));
    assert_eq!((r.status, r.reason.as_str()), (403, "Forbidden"), "{r:?}");
    assert_eq!(r.header_lines(), [VARY, "content-length: 0"]);
    let r = server.request(&sub("limited", &format!("Origin: {ORIGIN}\r\n")));
    assert_eq!(r.status, 403);
    assert_eq!(
        r.cors_lines(),
        [
            "access-control-expose-headers: Last-Modified, Etag, Content-Type".to_string(),
            "access-control-allow-credentials: true".to_string(),
            format!("access-control-allow-origin: {ORIGIN}"),
        ]
    );
    // EventSource counts against the same limit.
    let r = server.request(&es("limited", ""));
    assert_eq!(r.status, 403, "{r:?}");
    // Another channel is not affected.
    let mut other = server.client();
    other.send_str(&sub("unlimited", ""));
    server
        .wait_status("long-poll subscribers", 3, Duration::from_secs(2))
        .unwrap();
    // When one leaves, a new subscriber (here EventSource) gets in, and then the limit holds again.
    drop(first);
    server
        .wait_status("long-poll subscribers", 2, Duration::from_secs(2))
        .unwrap();
    let mut s = EventStream::open(&server, &es("limited", ""));
    assert_eq!(s.head.status, 200);
    assert!(s.read_until_contains(Duration::from_secs(2), ": hi\n\n"));
    let r = server.request(&sub("limited", ""));
    assert_eq!(r.status, 403, "{r:?}");
    let p = server.publish("limited", b"to both", "");
    assert_eq!(p.status, 201);
    assert!(p.text().contains("\r\nactive subscribers: 2\r\n"), "{p:?}");
    assert_eq!(second.response().unwrap().body, b"to both");
    assert!(s.read_until_contains(Duration::from_secs(2), "data: to both\n\n"));
}

#[test]
fn idle_channels_are_forgotten() {
    let server = Server::start(PubSubConfig {
        channel_idle_timeout: Duration::from_millis(300),
        tick: Duration::from_millis(100),
        ..hold(Duration::from_secs(1))
    });
    server.publish_id("kept", "a buffered message keeps its channel");
    let mut c = server.client();
    let start = Instant::now();
    c.send_str(&sub("idle", ""));
    server
        .wait_status("long-poll subscribers", 1, Duration::from_secs(1))
        .unwrap();
    assert_eq!(server.status_field("channels"), 2);
    // Past the idle timeout, but a subscriber is waiting: the channel stays.
    std::thread::sleep(Duration::from_millis(500).saturating_sub(start.elapsed()));
    let r = server.request("GET /pub/idle HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(
        r.status, 200,
        "channel with a waiting subscriber was forgotten: {r:?}"
    );
    assert_eq!(
        r.text(),
        "queued messages: 0\r\nlast requested: 0 sec. ago\r\nactive subscribers: 1\r\nlast message id: 0:0"
    );
    // The subscriber times out; then the channel is empty and idle, and goes.
    let timeout = c.response().unwrap();
    assert_eq!(timeout.status, 408);
    let timed_out = Instant::now();
    let gone = loop {
        let r = server.request("GET /pub/idle HTTP/1.1\r\nHost: t\r\n\r\n");
        if r.status == 404 {
            break timed_out.elapsed();
        }
        assert_eq!(r.status, 200, "{r:?}");
        assert!(
            timed_out.elapsed() < Duration::from_millis(1500),
            "idle channel still there {:?} after its subscriber left",
            timed_out.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        gone < Duration::from_millis(1000),
        "forgotten after {gone:?}"
    );
    assert_eq!(server.status_field("channels"), 1);
    let kept = server.request("GET /pub/kept HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(kept.status, 200);
    assert!(
        kept.text().starts_with("queued messages: 1\r\n"),
        "{kept:?}"
    );
}

#[test]
fn status_in_text_and_json() {
    let server = Server::start(hold(Duration::from_secs(5)));
    let names = [
        "connections",
        "waiting requests",
        "long-poll subscribers",
        "eventsource subscribers",
        "channels",
        "stored messages",
        "total published messages",
        "total delivered messages",
        "resident memory bytes",
        "iomux version",
    ];
    let r = server.request("GET /status HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert!(r.text().ends_with('\n'));
    let status = server.status();
    assert_eq!(
        status.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        names
    );
    let value = |status: &[(String, String)], name: &str| -> u64 {
        status
            .iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1
            .parse()
            .unwrap()
    };
    for name in [
        "long-poll subscribers",
        "eventsource subscribers",
        "channels",
        "stored messages",
        "total published messages",
        "total delivered messages",
    ] {
        assert_eq!(value(&status, name), 0, "{name} at start");
    }
    assert!(value(&status, "connections") >= 1);
    assert!(value(&status, "resident memory bytes") > 1_000_000);
    assert_eq!(status[9].1, env!("CARGO_PKG_VERSION"));

    // Two messages published, both delivered to one long-poll subscriber.
    let id0 = server.publish_id("a", "m0");
    let id1 = server.publish_id("a", "m1");
    let mut c = server.client();
    let r0 = c.exchange(&sub("a", ""));
    assert_message(&r0, b"m0", &id0);
    assert_message(&c.exchange(&sub("a", &cursor_of(&r0))), b"m1", &id1);
    drop(c);
    // One long-poll waiting on b, one stream on c that gets a third message.
    let mut waiting = server.client();
    waiting.send_str(&sub("b", ""));
    let mut s = EventStream::open(&server, &es("c", ""));
    server
        .wait_status("eventsource subscribers", 1, Duration::from_secs(2))
        .unwrap();
    server.publish_id("c", "m2");
    assert!(s.read_until_contains(Duration::from_secs(2), "data: m2\n\n"));
    server
        .wait_status("long-poll subscribers", 1, Duration::from_secs(2))
        .unwrap();

    let expected = [
        ("long-poll subscribers", 1),
        ("eventsource subscribers", 1),
        ("channels", 3),
        ("stored messages", 3),
        ("total published messages", 3),
        ("total delivered messages", 3),
    ];
    let status = server.status();
    for (name, want) in expected {
        assert_eq!(value(&status, name), want, "{name}: {status:?}");
    }
    let connections = value(&status, "connections");
    let waiting_requests = value(&status, "waiting requests");
    assert!(connections >= 3, "{status:?}");
    assert!((1..=connections).contains(&waiting_requests), "{status:?}");

    // JSON: by Accept and by ?format=json, snake-case names in the same order.
    for request in [
        "GET /status HTTP/1.1\r\nHost: t\r\nAccept: application/json\r\n\r\n",
        "GET /status?format=json HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /status?x=1&format=json HTTP/1.1\r\nHost: t\r\n\r\n",
    ] {
        let r = server.request(request);
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "{request:?}"
        );
        let text = r.text();
        assert!(text.ends_with("}\n"), "{text:?}");
        let json = flat_json(&text);
        let json_names: Vec<String> = names.iter().map(|n| n.replace([' ', '-'], "_")).collect();
        assert_eq!(
            json.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
            json_names
        );
        let get = |name: &str| json.iter().find(|(n, _)| n == name).unwrap().1.clone();
        for (name, want) in expected {
            assert_eq!(
                get(&name.replace([' ', '-'], "_")),
                want.to_string(),
                "{name}"
            );
        }
        assert!(get("connections").parse::<u64>().unwrap() >= 3);
        assert!(get("resident_memory_bytes").parse::<u64>().unwrap() > 1_000_000);
        assert_eq!(
            get("iomux_version"),
            format!("\"{}\"", env!("CARGO_PKG_VERSION"))
        );
    }
    // HEAD: the head only.
    let h = server.request("HEAD /status HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(h.status, 200);
    assert_eq!(h.header("content-type"), Some("text/plain; charset=utf-8"));
    drop(waiting);
}

// ---------------------------------------------------------------------------------------------
// The iomux-pubsub binary
// ---------------------------------------------------------------------------------------------

const BIN: &str = env!("CARGO_BIN_EXE_iomux-pubsub");

/// The binary with the `IOMUX_*` variables of the test's own environment removed.
fn bin() -> Command {
    let mut cmd = Command::new(BIN);
    for (name, _) in std::env::vars() {
        if name.starts_with("IOMUX_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// A running binary, killed on drop if still running.
struct Running {
    child: Child,
    addr: std::net::SocketAddr,
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("iomux-pubsub printed nothing within 5 s");
            }
        };
        let addr = line
            .strip_prefix("listening on http://")
            .and_then(|a| a.trim_end().parse::<std::net::SocketAddr>().ok())
            .unwrap_or_else(|| panic!("first line {line:?}"));
        assert_eq!(line, format!("listening on http://{addr}\n"));
        assert_eq!(addr.ip().to_string(), "127.0.0.1");
        assert_ne!(addr.port(), 0);
        Running { child, addr }
    }

    fn request(&self, raw: &str) -> Response {
        let mut c = Client::connect(self.addr);
        c.exchange(raw)
    }

    fn status_field(&self, name: &str) -> u64 {
        let r = self.request("GET /status HTTP/1.1\r\nHost: t\r\n\r\n");
        r.text()
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("{r:?}"))
            .parse()
            .unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn binary_help_and_bad_flags() {
    let out = bin().arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.starts_with("usage: iomux-pubsub"), "{help}");
    for flag in [
        "--listen",
        "--buffer-length",
        "--buffer-age",
        "--hold-timeout",
        "--first-message",
        "--heartbeat",
        "--max-subscribers",
        "--channel-idle-timeout",
        "--allow-origin",
        "--max-message-size",
        "--max-connections",
        "--keep-alive-timeout",
        "--workers",
        "--redis",
        "--redis-down",
        "--log",
        "--help",
    ] {
        assert!(help.contains(flag), "--help does not list {flag}:\n{help}");
    }
    assert_eq!(bin().arg("-h").output().unwrap().status.code(), Some(0));

    for args in [
        &["--bogus", "1"][..],
        &["--bogus=1"],
        &["stray"],
        &["--hold-timeout", "5x"],
        &["--buffer-length", "many"],
        &["--listen"],
        &["--workers", "two"],
        &["--redis", "http://127.0.0.1:6379"],
        &["--redis-down", "maybe"],
    ] {
        let out = bin().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("iomux-pubsub: "), "{args:?}: {err}");
    }
    let err = bin().args(["--bogus", "1"]).output().unwrap().stderr;
    assert!(
        String::from_utf8_lossy(&err).contains("unknown flag --bogus"),
        "{}",
        String::from_utf8_lossy(&err)
    );
}

#[test]
fn binary_honours_iomux_hold_timeout_from_the_environment() {
    let mut cmd = bin();
    cmd.env("IOMUX_HOLD_TIMEOUT", "1s");
    let server = Running::start(cmd);
    let start = Instant::now();
    let r = server.request("GET /sub/env HTTP/1.1\r\nHost: t\r\n\r\n");
    let elapsed = start.elapsed();
    assert_eq!(r.status, 408, "{r:?}");
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(2600),
        "408 after {elapsed:?} with IOMUX_HOLD_TIMEOUT=1s"
    );
    // The flag wins over the environment: --hold-timeout 0 waits (no 408 within 2.5 s).
    let mut cmd = bin();
    cmd.env("IOMUX_HOLD_TIMEOUT", "1s")
        .args(["--hold-timeout", "0"]);
    let server = Running::start(cmd);
    let mut c = Client::connect(server.addr);
    c.send_str("GET /sub/env HTTP/1.1\r\nHost: t\r\n\r\n");
    c.set_timeout(Duration::from_millis(2500));
    let e = c
        .response()
        .expect_err("--hold-timeout 0 should wait forever");
    assert!(
        matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{e}"
    );
}

#[test]
fn binary_stops_on_sigterm_answering_waiting_long_polls_503() {
    let mut server = Running::start(bin());
    let r = server.request("POST /pub/x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi");
    assert_eq!(r.status, 202, "{r:?}");
    let mut waiting = Client::connect(server.addr);
    waiting.send_str("GET /sub/y HTTP/1.1\r\nHost: t\r\n\r\n");
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.status_field("long-poll subscribers") != 1 {
        assert!(Instant::now() < deadline, "the long-poll is not waiting");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = server.child.id().to_string();
    let signalled = Instant::now();
    let kill = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(kill.success());
    let r = waiting
        .response()
        .expect("a reply to the waiting long-poll");
    assert_eq!(
        (r.status, r.reason.as_str()),
        (503, "Service Unavailable"),
        "{r:?}"
    );
    assert_eq!(r.header("retry-after"), Some("1"), "{r:?}");
    assert!(waiting.closed_within(Duration::from_secs(2)));
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(2),
            "still running 2 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "{status:?}");
}

/// A stalled EventSource subscriber (it stops reading) must not make the server's memory grow:
/// once its socket buffers and its stream queue are full, the hub drops it, and a subscriber
/// that reads goes on receiving everything.
#[test]
fn stalled_eventsource_subscriber_is_dropped() {
    let server = Server::start(PubSubConfig {
        stream_queue_len: 4,
        ..hold(Duration::ZERO)
    });
    let mut stalled = EventStream::open(&server, &es("stall", ""));
    assert!(stalled.read_until_contains(Duration::from_secs(2), ": hi\n\n"));
    let mut reader = EventStream::open(&server, &es("stall", ""));
    assert!(reader.read_until_contains(Duration::from_secs(2), ": hi\n\n"));
    server
        .wait_status("eventsource subscribers", 2, Duration::from_secs(2))
        .unwrap();
    // 64 KiB messages; the stalled client's kernel buffers hold a few MiB at most.
    let body = vec![b'x'; 64 * 1024];
    let mut published = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.status_field("eventsource subscribers") == 2 {
        assert!(
            Instant::now() < deadline,
            "the stalled subscriber was never dropped"
        );
        let p = server.publish("stall", &body, "");
        assert_eq!(p.status, 201, "{p:?}");
        published += 1;
        // The reading subscriber keeps up.
        assert!(reader.read_until_contains(Duration::from_secs(5), "id: "));
        reader.chunks.clear();
    }
    assert!(published > 4, "dropped after only {published} messages");
    assert_eq!(server.status_field("eventsource subscribers"), 1);
    // The one that reads still gets the next message.
    server.publish("stall", b"after", "");
    assert!(reader.read_until_contains(Duration::from_secs(2), "data: after\n"));
}
