//! What a handler reads from a request, over real TCP with literal bytes: the accessors (host,
//! protocol, cookies, Basic credentials, body text by charset, the client behind trusted
//! proxies), GET and urlencoded POST parameters, typed parameters and their 400 replies, form
//! limits, and per-request data seen again in a restored context.

mod support;

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use iomux::params::ParamError;
use iomux::{
    context, with_restored_context, with_saved_context, Config, Handled, Mailbox, Reply, Request,
    SavedContext,
};
use support::{Reader, Response, Server};

// In the expected texts below, `�` is U+FFFD REPLACEMENT CHARACTER: what bytes that are not
// UTF-8 become.

/// Send `raw` on a fresh connection and read one response.
fn send(server: &Server, raw: &[u8]) -> Response {
    let mut stream = server.connect();
    stream.write_all(raw).unwrap();
    Reader::new(stream).response(false).unwrap()
}

/// Every accessor of the request, one per line.
fn describe(req: &Request) -> String {
    let mut out = String::new();
    let mut line = |name: &str, value: &dyn std::fmt::Debug| {
        writeln!(out, "{name}: {value:?}").unwrap();
    };
    line("method", &req.method());
    line("target", &req.target());
    line("path", &req.path());
    line("query", &req.query());
    line("protocol", &req.protocol());
    line("host", &req.host());
    line("user_agent", &req.user_agent());
    line("referer", &req.referer());
    line("content_type", &req.content_type());
    line("peer_ip", &req.peer_addr().ip());
    line("local_port", &req.local_addr().port());
    line("real_remote_addr", &req.real_remote_addr());
    line("cookies", &req.cookies());
    line("cookie_sid", &req.cookie("sid"));
    line("authorization", &req.authorization());
    line("body_text", &req.body_text());
    out
}

fn describe_server() -> Server {
    Server::start(|_| |req: &Request| Reply::text(describe(req)))
}

fn lines(r: &Response) -> Vec<String> {
    assert_eq!(r.status, 200, "{r:?}");
    r.text().lines().map(str::to_string).collect()
}

fn has(r: &Response, line: &str) {
    let lines = lines(r);
    assert!(
        lines.iter().any(|l| l == line),
        "{line:?} not in {lines:#?}"
    );
}

#[test]
fn accessors_of_an_origin_form_request() {
    let server = describe_server();
    let port = server.addr.port();
    let r = send(
        &server,
        b"POST /a%20b/c?x=1&y=%41 HTTP/1.1\r\n\
          Host: example.test:8080\r\n\
          User-Agent: iomux-test/1.0\r\n\
          Referer: http://example.test/from\r\n\
          Content-Type: text/plain; charset=utf-8\r\n\
          Cookie: sid=abc123; theme=\"dark\"\r\n\
          Cookie: lang=en\r\n\
          Authorization: Basic YWxpY2U6c2VzYW1lOm9wZW4=\r\n\
          Content-Length: 6\r\n\r\ncaf\xc3\xa9!",
    );
    has(&r, r#"method: "POST""#);
    has(&r, r#"target: "/a%20b/c?x=1&y=%41""#);
    has(&r, r#"path: "/a b/c""#);
    has(&r, r#"query: Some("x=1&y=%41")"#);
    has(&r, r#"protocol: "HTTP/1.1""#);
    has(&r, r#"host: Some("example.test:8080")"#);
    has(&r, r#"user_agent: Some("iomux-test/1.0")"#);
    has(&r, r#"referer: Some("http://example.test/from")"#);
    has(&r, r#"content_type: Some("text/plain; charset=utf-8")"#);
    has(&r, "peer_ip: 127.0.0.1");
    has(&r, &format!("local_port: {port}"));
    has(&r, "real_remote_addr: 127.0.0.1");
    has(
        &r,
        r#"cookies: [("sid", "abc123"), ("theme", "dark"), ("lang", "en")]"#,
    );
    has(&r, r#"cookie_sid: Some("abc123")"#);
    has(&r, r#"authorization: Some(("alice", "sesame:open"))"#);
    has(&r, r#"body_text: "café!""#);
}

#[test]
fn accessors_of_absolute_form_and_http10_requests() {
    let server = describe_server();
    let r = send(
        &server,
        b"GET http://origin.test:81/p%2Fq?k=v HTTP/1.1\r\nHost: proxy.test\r\n\r\n",
    );
    has(&r, r#"host: Some("origin.test:81")"#);
    has(&r, r#"path: "/p/q""#);
    has(&r, r#"query: Some("k=v")"#);
    has(&r, "cookies: []");
    has(&r, "authorization: None");
    has(&r, "user_agent: None");

    let r = send(&server, b"GET /old HTTP/1.0\r\n\r\n");
    has(&r, r#"protocol: "HTTP/1.0""#);
    has(&r, "host: None");
    let r = send(&server, b"GET /later HTTP/1.7\r\nHost: h\r\n\r\n");
    has(&r, r#"protocol: "HTTP/1.1""#);
}

#[test]
fn cookies_and_credentials_are_parsed_tolerantly() {
    let server = describe_server();
    let r = send(
        &server,
        b"GET / HTTP/1.1\r\nHost: h\r\nCookie: ;a=1;; b = two ;flag; c=x=y; sid=\xff\r\n\
          Authorization: Basic !!notbase64!!\r\n\r\n",
    );
    has(
        &r,
        r#"cookies: [("a", "1"), ("b", "two"), ("", "flag"), ("c", "x=y"), ("sid", "�")]"#,
    );
    has(&r, r#"cookie_sid: Some("�")"#);
    has(&r, "authorization: None");
    for value in ["Bearer YWxpY2U6c2VzYW1l", "Basic", "Basic bm9jb2xvbg=="] {
        let raw = format!("GET / HTTP/1.1\r\nHost: h\r\nAuthorization: {value}\r\n\r\n");
        has(&send(&server, raw.as_bytes()), "authorization: None");
    }
    // Unpadded base64 and an empty password.
    let r = send(
        &server,
        b"GET / HTTP/1.1\r\nHost: h\r\nAuthorization: basic Ym9iOg\r\n\r\n",
    );
    has(&r, r#"authorization: Some(("bob", ""))"#);
}

#[test]
fn body_text_follows_the_charset() {
    let server = describe_server();
    let body = |content_type: &str, body: &[u8]| {
        let mut raw = format!(
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(body);
        send(&server, &raw)
    };
    has(
        &body("text/plain; charset=ISO-8859-1", b"caf\xe9 \xa3"),
        r#"body_text: "café £""#,
    );
    has(
        &body("text/plain;charset=\"latin1\"", b"\xfcber"),
        r#"body_text: "über""#,
    );
    has(&body("text/plain", b"caf\xc3\xa9"), r#"body_text: "café""#);
    has(
        &body("text/plain; charset=utf-8", b"bad \xe9"),
        r#"body_text: "bad �""#,
    );
    has(
        &body("text/plain; charset=x-klingon", b"\xe9t\xe9"),
        r#"body_text: "�t�""#,
    );
}

#[test]
fn real_remote_addr_believes_only_trusted_proxies() {
    let forwarded = b"GET / HTTP/1.1\r\nHost: h\r\n\
        X-Forwarded-For: 6.6.6.6, 203.0.113.9\r\n\
        X-Forwarded-For: 10.0.0.2\r\n\r\n";

    // Nobody trusted (the default): the peer, whatever the headers say.
    let server = describe_server();
    has(&send(&server, forwarded), "real_remote_addr: 127.0.0.1");
    drop(server);

    let trusting = |proxies: &[&str]| {
        let config = Config {
            trusted_proxies: proxies.iter().map(|p| p.parse().unwrap()).collect(),
            ..Config::default()
        };
        Server::start_with("127.0.0.1:0", config, |_| {
            |req: &Request| Reply::text(describe(req))
        })
    };
    let server = trusting(&["127.0.0.1"]);
    has(&send(&server, forwarded), "real_remote_addr: 10.0.0.2");
    has(
        &send(&server, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"),
        "real_remote_addr: 127.0.0.1",
    );
    drop(server);

    let server = trusting(&["127.0.0.1", "10.0.0.2"]);
    // The rightmost untrusted hop: 203.0.113.9, not what the client wrote (6.6.6.6).
    has(&send(&server, forwarded), "real_remote_addr: 203.0.113.9");
    // Forwarded (RFC 7239) is preferred to X-Forwarded-For.
    let r = send(
        &server,
        b"GET / HTTP/1.1\r\nHost: h\r\n\
          Forwarded: for=6.6.6.6, for=\"[2001:db8::7]:4711\";proto=https, For=10.0.0.2\r\n\
          X-Forwarded-For: 198.51.100.1\r\n\r\n",
    );
    has(&r, "real_remote_addr: 2001:db8::7");
    // A hop that is no address ends the walk at the last trusted one.
    let r = send(
        &server,
        b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 6.6.6.6, unknown, 10.0.0.2\r\n\r\n",
    );
    has(&r, "real_remote_addr: 10.0.0.2");
}

/// Parameters as `name=value` lines, then the typed ones.
fn params_handler(req: &Request) -> Result<Handled, ParamError> {
    let mut out = String::new();
    for (source, pairs) in [
        ("get", req.get_parameters()),
        ("post", req.post_parameters()),
    ] {
        for (name, value) in pairs {
            writeln!(out, "{source} {name:?}={value:?}").unwrap();
        }
    }
    for name in ["a", "b", "only_post"] {
        writeln!(
            out,
            "get_parameter({name}) {:?} post_parameter({name}) {:?} parameter({name}) {:?}",
            req.get_parameter(name),
            req.post_parameter(name),
            req.parameter(name)
        )
        .unwrap();
    }
    if req.path() == "/typed" {
        let n: u32 = req.param_or("n", 10)?;
        let id: u64 = req.param_required("id")?;
        let ids: Vec<i32> = req.param_list("ids")?;
        let ratio: Option<f64> = req.param("ratio")?;
        writeln!(out, "n={n} id={id} ids={ids:?} ratio={ratio:?}").unwrap();
    }
    Ok(Reply::text(out).into())
}

fn params_server(config: Config) -> Server {
    Server::start_with("127.0.0.1:0", config, |_| params_handler)
}

#[test]
fn get_parameters_are_decoded_in_order_with_duplicates() {
    let server = params_server(Config::default());
    let r = send(
        &server,
        b"GET /?a=1&b=x+y%2Bz&a=%C3%A9t%C3%A9&bad=%FF%41&empty=&flag&%3D=%26&a=3 HTTP/1.1\r\n\
          Host: h\r\n\r\n",
    );
    let want = [
        r#"get "a"="1""#,
        r#"get "b"="x y+z""#,
        r#"get "a"="été""#,
        r#"get "bad"="�A""#,
        r#"get "empty"="""#,
        r#"get "flag"="""#,
        r#"get "="="&""#,
        r#"get "a"="3""#,
        r#"get_parameter(a) Some("1") post_parameter(a) None parameter(a) Some("1")"#,
        r#"get_parameter(b) Some("x y+z") post_parameter(b) None parameter(b) Some("x y+z")"#,
    ];
    assert_eq!(&lines(&r)[..want.len()], want);
}

#[test]
fn urlencoded_post_parameters_and_get_before_post() {
    let server = params_server(Config::default());
    let body = "a=post&only_post=hello+world&only_post=2nd&u=%E2%82%AC";
    let raw = format!(
        "POST /?a=get HTTP/1.1\r\nHost: h\r\n\
         Content-Type: application/x-www-form-urlencoded; charset=UTF-8\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let r = send(&server, raw.as_bytes());
    let want = [
        r#"get "a"="get""#,
        r#"post "a"="post""#,
        r#"post "only_post"="hello world""#,
        r#"post "only_post"="2nd""#,
        r#"post "u"="€""#,
        r#"get_parameter(a) Some("get") post_parameter(a) Some("post") parameter(a) Some("get")"#,
        r#"get_parameter(b) None post_parameter(b) None parameter(b) None"#,
        r#"get_parameter(only_post) None post_parameter(only_post) Some("hello world") parameter(only_post) Some("hello world")"#,
    ];
    assert_eq!(lines(&r), want);

    // Another content type: the body is no form.
    let raw = format!(
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let r = send(&server, raw.as_bytes());
    assert!(lines(&r).iter().all(|l| !l.starts_with("post ")), "{r:?}");
}

#[test]
fn typed_parameters_answer_400_naming_the_parameter() {
    let server = params_server(Config::default());
    let get = |query: &str| {
        send(
            &server,
            format!("GET /typed?{query} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes(),
        )
    };
    let r = get("id=7&ids=1&ids=-2&ratio=0.5");
    assert_eq!(
        lines(&r).last().unwrap(),
        "n=10 id=7 ids=[1, -2] ratio=Some(0.5)"
    );
    assert_eq!(
        lines(&get("n=3&id=1")).last().unwrap(),
        "n=3 id=1 ids=[] ratio=None"
    );

    for (query, want) in [
        (
            "n=abc&id=1",
            r#"parameter "n": invalid value "abc" (invalid digit found in string)"#,
        ),
        (
            "n=&id=1",
            r#"parameter "n": invalid value "" (cannot parse integer from empty string)"#,
        ),
        ("n=1", r#"parameter "id" is missing"#),
        (
            "id=1&ids=1&ids=x",
            r#"parameter "ids": invalid value "x" (invalid digit found in string)"#,
        ),
        (
            "id=1&ratio=%3Cscript%3E",
            r#"parameter "ratio": invalid value "<script>" (invalid float literal)"#,
        ),
    ] {
        let r = get(query);
        assert_eq!(r.status, 400, "{query}: {r:?}");
        assert_eq!(r.text(), format!("400 Bad Request\n{want}\n"), "{query}");
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    }

    // A long bad value is quoted shortened.
    let r = get(&format!("id={}", "9".repeat(100)));
    assert_eq!(r.status, 400);
    assert!(
        r.text()
            .contains(&format!("invalid value \"{}\"… (", "9".repeat(64))),
        "{}",
        r.text()
    );

    // Typed parameters are also read from the form body.
    let body = "id=5&ids=4&ids=x";
    let raw = format!(
        "POST /typed?ids=3 HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let r = send(&server, raw.as_bytes());
    assert_eq!(r.status, 400);
    assert!(r.text().contains(r#"parameter "ids": invalid value "x""#));
}

#[test]
fn form_limits_answer_413() {
    let config = Config {
        max_form_fields: 3,
        max_body_size: 512,
        ..Config::default()
    };
    let server = params_server(config);
    let post = |content_type: &str, body: &str| {
        send(
            &server,
            format!(
                "POST /typed?id=1 HTTP/1.1\r\nHost: h\r\nContent-Type: {content_type}\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
    };
    let form = "application/x-www-form-urlencoded";
    assert_eq!(post(form, "a=1&b=2&c=3").status, 200);
    let r = post(form, "a=1&b=2&c=3&d=4");
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(
        r.text(),
        "413 Payload Too Large\nthe form has more than 3 fields\n"
    );

    let multipart = "multipart/form-data; boundary=XX";
    let part = |name: &str| {
        format!("--XX\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\nv\r\n")
    };
    let three = format!("{}{}{}--XX--\r\n", part("a"), part("b"), part("c"));
    assert_eq!(post(multipart, &three).status, 200);
    let four = format!(
        "{}{}{}{}--XX--\r\n",
        part("a"),
        part("b"),
        part("c"),
        part("d")
    );
    assert_eq!(post(multipart, &four).status, 413);

    // A malformed multipart body is a 400 that says why.
    let r = post(
        multipart,
        "--XX\r\nContent-Disposition: form-data; name=a\r\n\r\nv",
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        r.text(),
        "400 Bad Request\nmalformed multipart/form-data body: no close delimiter\n"
    );
    let r = post("multipart/form-data", &three);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("no boundary parameter"), "{}", r.text());

    // The whole body is limited before it is read (Config::max_body_size).
    let r = post(form, &format!("a={}", "x".repeat(600)));
    assert_eq!(r.status, 413);
}

/// The handler's own type, kept with the request.
struct Visitor {
    name: String,
}

#[test]
fn request_data_and_parameters_are_seen_in_a_restored_context() {
    let server = Server::start(|ex| {
        let actor =
            iomux::spawn_actor_task(ex, 8, |mut mailbox: Mailbox<SavedContext>| async move {
                while let Some(ctx) = mailbox.recv().await {
                    async_io::Timer::after(Duration::from_millis(50)).await;
                    with_restored_context!(ctx, {
                        let req = context::request();
                        let visitor = req.data::<Visitor>().map(|v| v.name.clone());
                        let count = req.data::<u32>();
                        let body = format!(
                            "visitor={visitor:?} count={count:?} q={:?} form={:?} real={}\n",
                            req.get_parameter("q"),
                            req.post_parameter("f"),
                            req.real_remote_addr(),
                        );
                        context::send_body(body).unwrap();
                    });
                }
            });
        move |req: &Request| {
            req.set_data(Visitor {
                name: req.cookie("user").unwrap_or("anonymous").to_string(),
            });
            req.set_data(1u32);
            req.set_data(2u32);
            assert!(req.data::<IpAddr>().is_none());
            actor.do_send(with_saved_context!());
            Handled::Deferred
        }
    });
    let body = "f=%C3%A9";
    let raw = format!(
        "POST /?q=deferred HTTP/1.1\r\nHost: h\r\nCookie: user=alice\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let r = send(&server, raw.as_bytes());
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.text(),
        "visitor=Some(\"alice\") count=Some(2) q=Some(\"deferred\") form=Some(\"é\") real=127.0.0.1\n"
    );
}

#[test]
fn a_handler_returning_result_replies_with_the_error() {
    let server = Server::start(|_| {
        |req: &Request| -> Result<Reply, ParamError> {
            let name: String = req.param_required("name")?;
            req.check_form()?;
            Ok(Reply::text(format!("hello {name}\n")))
        }
    });
    let r = send(&server, b"GET /?name=Ada HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, "hello Ada\n"));
    let r = send(&server, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "400 Bad Request\nparameter \"name\" is missing\n")
    );
}
