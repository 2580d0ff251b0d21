//! Sessions over real TCP: literal request bytes, and the real `curl` with a cookie jar across
//! requests (`curl -c jar -b jar`). Without curl the curl tests are skipped with a message,
//! unless `CI` is set: then they fail.

mod support;

use std::cell::Cell;
use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use async_io::Timer;
use iomux::http::header::SET_COOKIE;
use iomux::http::{HeaderValue, StatusCode};
use iomux::session::{SameSite, SessionConfig, Sessions};
use iomux::{
    context, spawn_actor_task, with_restored_context, with_saved_context, Addr, Handled, Mailbox,
    Reply, Request, SavedContext,
};
use support::{Reader, Response, Server};

// ---------------------------------------------------------------------------------------------
// The application under test
// ---------------------------------------------------------------------------------------------

/// What the deferred-reply actor does in the restored context.
#[derive(Clone, Copy)]
enum Later {
    /// `sessions.current()`: the handler's session, if it is still there.
    Current,
    /// `sessions.start()`: the session is started from the actor.
    Start,
}

/// A small application: a visit counter and the session operations, one path each.
///
/// | path | does |
/// |---|---|
/// | `/count` | `start()`, `n += 1`, `n=N` |
/// | `/peek` | `current()` (never creates): `n=N` or `none` |
/// | `/login` | `start()` then `regenerate()`: `n=N` |
/// | `/logout` | `current()` then `remove()`: `removed` or `none` |
/// | `/greeting` | the value `on_create` put in the session |
/// | `/other-cookie` | another `Set-Cookie` from the handler, then `start()` |
/// | `/later`, `/later-start` | defer; an actor answers 300 ms later with `actor n=N` / `actor none` |
/// | `/len`, `/stats` | `sessions.len()`; `created=C removed=R` from the callbacks |
fn app(config: SessionConfig, collector: bool) -> Server {
    Server::start(move |ex| {
        let sessions = Sessions::new(config).expect("a valid SessionConfig");
        if collector {
            assert!(sessions.spawn_collector(ex));
        }
        let created = Rc::new(Cell::new(0usize));
        let removed = Rc::new(Cell::new(0usize));
        let c = created.clone();
        sessions.on_create(move |session| {
            c.set(c.get() + 1);
            session.set("greeting", format!("hello #{}", c.get()));
        });
        let r = removed.clone();
        sessions.on_remove(move |_| r.set(r.get() + 1));

        let store = sessions.clone();
        let later: Addr<(SavedContext, Later)> = spawn_actor_task(
            ex,
            64,
            move |mut mailbox: Mailbox<(SavedContext, Later)>| async move {
                while let Some((ctx, what)) = mailbox.recv().await {
                    Timer::after(Duration::from_millis(300)).await;
                    with_restored_context!(ctx, {
                        let session = match what {
                            Later::Current => store.current(),
                            Later::Start => store.start().ok(),
                        };
                        let body = match session {
                            Some(session) => format!("actor n={}", bump(&session)),
                            None => "actor none".to_string(),
                        };
                        context::send_body(body).unwrap();
                    });
                }
            },
        );

        move |req: &Request| -> Handled {
            let text = |body: String| Handled::Reply(Reply::text(body));
            match req.path().as_ref() {
                "/count" => match sessions.start() {
                    Ok(session) => text(format!("n={}", bump(&session))),
                    Err(e) => Reply::error(StatusCode::SERVICE_UNAVAILABLE)
                        .with_body(e.to_string())
                        .into(),
                },
                "/peek" => text(match sessions.current() {
                    Some(session) => format!("n={}", session.get::<u32>("n").unwrap_or(0)),
                    None => "none".into(),
                }),
                "/login" => {
                    let session = sessions.start().unwrap();
                    sessions.regenerate(&session).unwrap();
                    text(format!("n={}", session.get::<u32>("n").unwrap_or(0)))
                }
                "/logout" => text(match sessions.current() {
                    Some(session) => {
                        assert!(sessions.remove(&session));
                        "removed".into()
                    }
                    None => "none".into(),
                }),
                "/greeting" => text(
                    sessions
                        .current()
                        .and_then(|s| s.get::<String>("greeting"))
                        .unwrap_or_default(),
                ),
                "/other-cookie" => {
                    context::append_header(SET_COOKIE, HeaderValue::from_static("theme=dark"));
                    sessions.start().unwrap();
                    text("ok".into())
                }
                "/later" => {
                    bump(&sessions.start().unwrap());
                    later.do_send((with_saved_context!(), Later::Current));
                    Handled::Deferred
                }
                "/later-start" => {
                    later.do_send((with_saved_context!(), Later::Start));
                    Handled::Deferred
                }
                "/len" => text(sessions.len().to_string()),
                "/stats" => text(format!(
                    "created={} removed={}",
                    created.get(),
                    removed.get()
                )),
                _ => Reply::error(StatusCode::NOT_FOUND).into(),
            }
        }
    })
}

/// `n += 1` in the session; the new `n`.
fn bump(session: &iomux::session::Session) -> u32 {
    let n = session.get::<u32>("n").unwrap_or(0) + 1;
    session.set("n", n);
    n
}

fn default_app() -> Server {
    app(SessionConfig::default(), false)
}

// ---------------------------------------------------------------------------------------------
// Literal bytes
// ---------------------------------------------------------------------------------------------

/// `GET path` on a fresh connection with these extra header lines (each ending in CRLF).
fn get(server: &Server, path: &str, extra: &str) -> Response {
    support::request(
        server,
        &format!("GET {path} HTTP/1.1\r\nHost: test\r\n{extra}Connection: close\r\n\r\n"),
    )
}

/// `GET path` with `Cookie: iomux-session=ID`.
fn get_with(server: &Server, path: &str, id: &str) -> Response {
    get(server, path, &format!("Cookie: iomux-session={id}\r\n"))
}

/// Every `Set-Cookie` field of a response.
fn set_cookies(r: &Response) -> Vec<&str> {
    r.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The session id a response's `Set-Cookie` gives (the only session cookie it sets).
fn new_id(r: &Response) -> String {
    let ours: Vec<&str> = set_cookies(r)
        .into_iter()
        .filter(|c| c.starts_with("iomux-session="))
        .collect();
    assert_eq!(ours.len(), 1, "one session cookie in {r:?}");
    let id = ours[0]["iomux-session=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert_id(&id);
    id
}

fn assert_id(id: &str) {
    assert_eq!(id.len(), 32, "{id:?}");
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{id:?}"
    );
}

fn text(server: &Server, path: &str) -> String {
    get(server, path, "").text()
}

/// An id of the right form that the server never gave out.
fn unknown_id(real: &str) -> String {
    let flipped = if real.starts_with('0') { '1' } else { '0' };
    format!("{flipped}{}", &real[1..])
}

#[test]
fn counter_over_literal_bytes_on_one_connection() {
    let server = default_app();
    let stream = server.connect();
    let mut reader = Reader::new(&stream);
    let mut ask = |extra: &str| {
        (&stream)
            .write_all(format!("GET /count HTTP/1.1\r\nHost: test\r\n{extra}\r\n").as_bytes())
            .unwrap();
        reader.response(false).unwrap()
    };
    let first = ask("");
    assert_eq!(first.text(), "n=1");
    let id = new_id(&first);
    for n in 2..=4 {
        let r = ask(&format!("Cookie: iomux-session={id}\r\n"));
        assert_eq!(r.text(), format!("n={n}"));
        assert!(
            set_cookies(&r).is_empty(),
            "no new cookie for a known session"
        );
    }
    // Cookie headers however clients write them.
    for cookie in [
        format!("Cookie: a=1;iomux-session={id};b=2\r\n"),
        format!("Cookie: a=1 ;  iomux-session = \"{id}\" ; b\r\n"),
        format!("Cookie: $Version=1, iomux-session={id}, $Path=/\r\n"),
        format!("Cookie: iomux-session=junk\r\nCookie: x=y; iomux-session={id}\r\n"),
        format!(
            "Cookie: iomux-session={}; iomux-session={id}\r\n",
            unknown_id(&id)
        ),
    ] {
        let before: u32 = ask(&format!("Cookie: iomux-session={id}\r\n")).text()[2..]
            .parse()
            .unwrap();
        let r = ask(&cookie);
        assert_eq!(r.text(), format!("n={}", before + 1), "{cookie:?}");
        assert!(set_cookies(&r).is_empty(), "{cookie:?}");
    }
    assert_eq!(text(&server, "/len"), "1");
}

#[test]
fn forged_or_unknown_ids_are_ignored_and_the_real_session_is_untouched() {
    let server = default_app();
    let real = new_id(&get(&server, "/count", ""));
    assert_eq!(get_with(&server, "/count", &real).text(), "n=2");

    let mut upper = real.to_uppercase();
    if upper == real {
        upper = format!("A{}", &real[1..]); // all digits: make it differ by case anyway
    }
    let forged = [
        unknown_id(&real),
        upper,
        format!("{real}0"),
        real[..31].to_string(),
        format!("{}g", &real[..31]),
        String::new(),
        "../../etc/passwd".to_string(),
        "a".repeat(4000),
        format!("{real}{real}"),
    ];
    let mut ids = HashSet::from([real.clone()]);
    for (i, bad) in forged.iter().enumerate() {
        // Found nothing, changed nothing.
        let peek = get_with(&server, "/peek", bad);
        assert_eq!(peek.text(), "none", "{bad:?}");
        assert!(set_cookies(&peek).is_empty());
        assert_eq!(get_with(&server, "/logout", bad).text(), "none");
        // Starting a session gives a fresh id, never the one presented.
        let start = get_with(&server, "/count", bad);
        assert_eq!(start.text(), "n=1", "{bad:?}");
        let id = new_id(&start);
        assert_ne!(&id, bad);
        assert!(ids.insert(id), "a fresh id");
        assert_eq!(text(&server, "/len"), (i + 2).to_string());
    }
    // The real session is as it was.
    assert_eq!(get_with(&server, "/peek", &real).text(), "n=2");
    assert_eq!(get_with(&server, "/count", &real).text(), "n=3");
}

#[test]
fn regenerate_gives_a_new_id_with_the_same_data_and_kills_the_old_one() {
    let server = default_app();
    let old = new_id(&get(&server, "/count", ""));
    assert_eq!(get_with(&server, "/count", &old).text(), "n=2");
    let login = get_with(&server, "/login", &old);
    assert_eq!(login.text(), "n=2");
    let new = new_id(&login);
    assert_ne!(new, old);
    assert_eq!(
        set_cookies(&login),
        [format!(
            "iomux-session={new}; Path=/; HttpOnly; SameSite=Lax"
        )]
    );
    // The old id is worthless at once, and cannot be used to get a session back.
    assert_eq!(get_with(&server, "/peek", &old).text(), "none");
    assert_eq!(get_with(&server, "/peek", &new).text(), "n=2");
    assert_eq!(get_with(&server, "/count", &new).text(), "n=3");
    assert_eq!(text(&server, "/len"), "1");
    assert_eq!(text(&server, "/stats"), "created=1 removed=0");
    // Logging in on a request without a session: one is started and regenerated; one cookie.
    let fresh = get(&server, "/login", "");
    assert_eq!(fresh.text(), "n=0");
    let id = new_id(&fresh);
    assert_eq!(get_with(&server, "/peek", &id).text(), "n=0");
}

#[test]
fn remove_clears_the_cookie_and_the_session() {
    let server = default_app();
    let id = new_id(&get(&server, "/count", ""));
    let logout = get_with(&server, "/logout", &id);
    assert_eq!(logout.text(), "removed");
    assert_eq!(
        set_cookies(&logout),
        ["iomux-session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"]
    );
    assert_eq!(get_with(&server, "/peek", &id).text(), "none");
    assert_eq!(text(&server, "/len"), "0");
    assert_eq!(text(&server, "/stats"), "created=1 removed=1");
    // No session: nothing removed, and no cookie is cleared.
    let again = get_with(&server, "/logout", &id);
    assert_eq!(again.text(), "none");
    assert!(set_cookies(&again).is_empty());
    // The old id does not come back.
    let next = get_with(&server, "/count", &id);
    assert_eq!(next.text(), "n=1");
    assert_ne!(new_id(&next), id);
}

#[test]
fn idle_sessions_expire_and_each_access_starts_the_time_again() {
    let config = SessionConfig {
        idle_timeout: Duration::from_millis(1500),
        ..SessionConfig::default()
    };
    let server = app(config, false);
    let id = new_id(&get(&server, "/count", ""));
    // Accesses 700 ms apart: each one is well within the timeout of the one before, so the
    // session outlives its timeout.
    sleep(Duration::from_millis(700));
    assert_eq!(get_with(&server, "/count", &id).text(), "n=2");
    sleep(Duration::from_millis(700));
    assert_eq!(get_with(&server, "/peek", &id).text(), "n=2");
    sleep(Duration::from_millis(700));
    assert_eq!(get_with(&server, "/count", &id).text(), "n=3");
    assert_eq!(text(&server, "/stats"), "created=1 removed=0");
    // Then left alone past the timeout: gone; the request that finds it expired removes it.
    sleep(Duration::from_millis(2000));
    assert_eq!(text(&server, "/len"), "1", "no collector: still stored");
    assert_eq!(get_with(&server, "/peek", &id).text(), "none");
    assert_eq!(text(&server, "/stats"), "created=1 removed=1");
    let next = get_with(&server, "/count", &id);
    assert_eq!(next.text(), "n=1");
    assert_ne!(new_id(&next), id);
}

#[test]
fn the_collector_removes_expired_sessions_and_keeps_used_ones() {
    let config = SessionConfig {
        idle_timeout: Duration::from_millis(800),
        collect_interval: Duration::from_millis(50),
        ..SessionConfig::default()
    };
    let collected = app(config.clone(), true);
    let uncollected = app(config, false);
    let kept = new_id(&get(&collected, "/count", ""));
    for server in [&collected, &uncollected] {
        while text(server, "/len") != "6" {
            get(server, "/count", "");
        }
    }
    // One session is used every 150 ms; the five others are left alone.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        sleep(Duration::from_millis(150));
        assert!(get_with(&collected, "/peek", &kept)
            .text()
            .starts_with("n="));
        if text(&collected, "/len") == "1" {
            break;
        }
    }
    assert_eq!(text(&collected, "/len"), "1", "the collector ran");
    assert_eq!(text(&collected, "/stats"), "created=6 removed=5");
    assert_eq!(get_with(&collected, "/peek", &kept).text(), "n=1");
    // Without a collector, expired sessions stay stored until a request finds them.
    assert_eq!(text(&uncollected, "/len"), "6");
    assert_eq!(text(&uncollected, "/stats"), "created=6 removed=0");
}

#[test]
fn a_session_bound_to_its_user_agent_is_not_found_by_another_agent() {
    let config = SessionConfig {
        bind_user_agent: true,
        ..SessionConfig::default()
    };
    let server = app(config, false);
    let ua =
        |agent: &str, id: &str| format!("User-Agent: {agent}\r\nCookie: iomux-session={id}\r\n");
    let first = get(&server, "/count", "User-Agent: Browser/1\r\n");
    let id = new_id(&first);
    assert_eq!(get(&server, "/count", &ua("Browser/1", &id)).text(), "n=2");
    // Same id, other agent (or none): no session; starting one gives a new id.
    assert_eq!(get(&server, "/peek", &ua("Thief/1", &id)).text(), "none");
    assert_eq!(get_with(&server, "/peek", &id).text(), "none");
    assert_eq!(get(&server, "/logout", &ua("Thief/1", &id)).text(), "none");
    let other = get(&server, "/count", &ua("Thief/1", &id));
    assert_eq!(other.text(), "n=1");
    assert_ne!(new_id(&other), id);
    // The bound session is untouched.
    assert_eq!(get(&server, "/count", &ua("Browser/1", &id)).text(), "n=3");
    assert_eq!(text(&server, "/stats"), "created=2 removed=0");

    // Unbound (the default), the agent does not matter.
    let server = default_app();
    let id = new_id(&get(&server, "/count", "User-Agent: Browser/1\r\n"));
    assert_eq!(get(&server, "/count", &ua("Other/2", &id)).text(), "n=2");
}

#[test]
fn callbacks_run_on_create_and_on_remove() {
    let server = default_app();
    assert_eq!(text(&server, "/stats"), "created=0 removed=0");
    let a = new_id(&get(&server, "/count", ""));
    let b = new_id(&get(&server, "/count", ""));
    assert_eq!(text(&server, "/stats"), "created=2 removed=0");
    // on_create put a value into each new session.
    assert_eq!(get_with(&server, "/greeting", &a).text(), "hello #1");
    assert_eq!(get_with(&server, "/greeting", &b).text(), "hello #2");
    // Finding a session again is no creation; regenerating is neither creation nor removal.
    get_with(&server, "/count", &a);
    let a = new_id(&get_with(&server, "/login", &a));
    assert_eq!(text(&server, "/stats"), "created=2 removed=0");
    get_with(&server, "/logout", &a);
    assert_eq!(text(&server, "/stats"), "created=2 removed=1");
    get_with(&server, "/logout", &b);
    assert_eq!(text(&server, "/stats"), "created=2 removed=2");
}

#[test]
fn set_cookie_attributes_are_exact() {
    let server = default_app();
    let r = get(&server, "/count", "");
    let id = new_id(&r);
    assert_eq!(
        set_cookies(&r),
        [format!(
            "iomux-session={id}; Path=/; HttpOnly; SameSite=Lax"
        )]
    );
    // A cookie the handler sets itself stays beside the session's.
    let r = get(&server, "/other-cookie", "");
    let id = new_id(&r);
    assert_eq!(
        set_cookies(&r),
        [
            "theme=dark".to_string(),
            format!("iomux-session={id}; Path=/; HttpOnly; SameSite=Lax")
        ]
    );

    let config = SessionConfig {
        cookie_name: "__Host-sid".into(),
        secure: true,
        same_site: SameSite::Strict,
        ..SessionConfig::default()
    };
    let server = app(config, false);
    let r = get(&server, "/count", "");
    let cookie = set_cookies(&r)[0].to_string();
    let id = cookie["__Host-sid=".len()..32 + "__Host-sid=".len()].to_string();
    assert_id(&id);
    assert_eq!(
        cookie,
        format!("__Host-sid={id}; Path=/; HttpOnly; SameSite=Strict; Secure")
    );
    let cookie_line = format!("Cookie: __Host-sid={id}\r\n");
    assert_eq!(get(&server, "/count", &cookie_line).text(), "n=2");
    // The default name means nothing to this store.
    assert_eq!(get_with(&server, "/peek", &id).text(), "none");
    let r = get(&server, "/logout", &cookie_line);
    assert_eq!(
        set_cookies(&r),
        ["__Host-sid=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict; Secure"]
    );
}

#[test]
fn an_actor_replying_later_sees_the_session_in_the_restored_context() {
    let server = default_app();
    // The handler starts the session and defers; the actor finds it 300 ms later, and the
    // deferred reply carries the cookie the handler's start() set.
    let r = get(&server, "/later", "");
    assert_eq!(r.text(), "actor n=2");
    let id = new_id(&r);
    assert_eq!(get_with(&server, "/peek", &id).text(), "n=2");
    assert_eq!(get_with(&server, "/later", &id).text(), "actor n=4");

    // The actor starts the session itself: its cookie is in the deferred reply.
    let r = get(&server, "/later-start", "");
    assert_eq!(r.text(), "actor n=1");
    let id = new_id(&r);
    assert_eq!(get_with(&server, "/peek", &id).text(), "n=1");
    let r = get_with(&server, "/later-start", &id);
    assert_eq!(r.text(), "actor n=2");
    assert!(set_cookies(&r).is_empty());

    // Removed (by another request) while the reply was pending: the actor no longer gets it.
    let waiting = server.connect();
    (&waiting)
        .write_all(
            format!("GET /later HTTP/1.1\r\nHost: t\r\nCookie: iomux-session={id}\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    sleep(Duration::from_millis(50));
    assert_eq!(get_with(&server, "/logout", &id).text(), "removed");
    assert_eq!(
        Reader::new(&waiting).response(false).unwrap().text(),
        "actor none"
    );
}

#[test]
fn ids_are_128_random_bits_and_distinct_over_many_sessions() {
    const N: usize = 2000;
    let server = default_app();
    let stream = server.connect();
    let mut reader = Reader::new(&stream);
    let mut ids = HashSet::new();
    let mut ones = [0usize; 128];
    for _ in 0..N {
        (&stream)
            .write_all(b"GET /count HTTP/1.1\r\nHost: test\r\n\r\n")
            .unwrap();
        let id = new_id(&reader.response(false).unwrap());
        for (i, digit) in id.bytes().enumerate() {
            let value = char::from(digit).to_digit(16).unwrap() as usize;
            for bit in 0..4 {
                ones[4 * i + bit] += (value >> bit) & 1;
            }
        }
        assert!(ids.insert(id), "an id came twice");
    }
    assert_eq!(ids.len(), N);
    assert_eq!(text(&server, "/len"), N.to_string());
    // Every one of the 128 bits varies, about half the time (mean 1000, sd 22.4; the bounds
    // are 8 sd away): no bit is fixed, so the ids carry 128 bits, not fewer padded out.
    for (bit, count) in ones.iter().enumerate() {
        assert!(
            (820..=1180).contains(count),
            "bit {bit} was set {count} times in {N}"
        );
    }
}

#[test]
fn max_sessions_refuses_newcomers_and_evicts_nobody() {
    let config = SessionConfig {
        max_sessions: Some(2),
        ..SessionConfig::default()
    };
    let server = app(config, false);
    let a = new_id(&get(&server, "/count", ""));
    let b = new_id(&get(&server, "/count", ""));
    let refused = get(&server, "/count", "");
    assert_eq!(refused.status, 503);
    assert_eq!(refused.text(), "too many sessions (the limit is 2)");
    assert!(set_cookies(&refused).is_empty());
    assert_eq!(get_with(&server, "/count", &a).text(), "n=2");
    assert_eq!(get_with(&server, "/count", &b).text(), "n=2");
    get_with(&server, "/logout", &a);
    assert_eq!(get(&server, "/count", "").text(), "n=1");
}

// ---------------------------------------------------------------------------------------------
// The real curl, with a cookie jar
// ---------------------------------------------------------------------------------------------

/// Whether curl can run; skipping is announced, and under CI it is a failure instead.
fn curl_available() -> bool {
    let ok = Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
        assert!(
            !ci,
            "curl is not on PATH; CI is set, so this is an error\n  fix: apt-get install -y curl"
        );
        eprintln!("SKIPPED: curl is not on PATH (apt-get install -y curl); under CI this fails");
    }
    ok
}

/// A curl client with its own cookie jar file (removed on drop).
struct Curl {
    jar: PathBuf,
    base: String,
}

impl Curl {
    fn new(server: &Server) -> Curl {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let jar = std::env::temp_dir().join(format!(
            "iomux-session-test-{}-{}.jar",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&jar);
        Curl {
            jar,
            base: format!("http://{}", server.addr),
        }
    }

    /// `curl -c jar -b jar` for `path` (with `args`): the response head and body.
    fn get(&self, path: &str, args: &[&str]) -> (String, String) {
        let out = Command::new("curl")
            .args(["-sS", "-i", "--max-time", "10", "-c"])
            .arg(&self.jar)
            .arg("-b")
            .arg(&self.jar)
            .args(args)
            .arg(format!("{}{path}", self.base))
            .output()
            .expect("curl runs");
        assert!(
            out.status.success(),
            "curl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
        (head.to_string(), body.to_string())
    }

    fn body(&self, path: &str) -> String {
        self.get(path, &[]).1
    }

    /// The jar's session cookie line (Netscape format), if it holds one.
    fn jar_cookie(&self) -> Option<Vec<String>> {
        let jar = std::fs::read_to_string(&self.jar).ok()?;
        jar.lines()
            .map(|l| l.split('\t').map(str::to_string).collect::<Vec<_>>())
            .find(|fields| fields.len() == 7 && fields[5] == "iomux-session")
    }
}

impl Drop for Curl {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.jar);
    }
}

#[test]
fn curl_counts_visits_with_its_cookie_jar() {
    if !curl_available() {
        return;
    }
    let server = default_app();
    let alice = Curl::new(&server);
    let (head, body) = alice.get("/count", &[]);
    assert_eq!(body, "n=1");
    assert!(
        head.to_ascii_lowercase()
            .contains("set-cookie: iomux-session="),
        "{head}"
    );
    // The jar keeps it as an HttpOnly session cookie (no expiry) for path /, not secure-only.
    let line = alice.jar_cookie().expect("a session cookie in the jar");
    assert_eq!(line[0], format!("#HttpOnly_{}", server.addr.ip()));
    assert_eq!(&line[2..5], ["/", "FALSE", "0"]);
    assert_id(&line[6]);
    assert_eq!(alice.body("/count"), "n=2");
    assert_eq!(alice.body("/count"), "n=3");
    // Another jar is another client.
    let bob = Curl::new(&server);
    assert_eq!(bob.body("/count"), "n=1");
    assert_eq!(alice.body("/peek"), "n=3");
    assert_eq!(text(&server, "/len"), "2");
}

#[test]
fn curl_forged_cookie_regenerate_and_logout() {
    if !curl_available() {
        return;
    }
    let server = default_app();
    let curl = Curl::new(&server);
    assert_eq!(curl.body("/count"), "n=1");
    assert_eq!(curl.body("/count"), "n=2");
    let id = curl.jar_cookie().unwrap()[6].clone();

    // A forged cookie on the command line (no jar): ignored, the jar's session untouched.
    let forged = format!("iomux-session={}", unknown_id(&id));
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-b", &forged])
        .arg(format!("http://{}/peek", server.addr))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "none");
    assert_eq!(curl.body("/count"), "n=3");

    // Login regenerates: curl's jar follows the new id, the old one is dead.
    let (head, body) = curl.get("/login", &[]);
    assert_eq!(body, "n=3");
    let new = curl.jar_cookie().unwrap()[6].clone();
    assert_ne!(new, id);
    assert!(head.contains(&new));
    assert_eq!(get_with(&server, "/peek", &id).text(), "none");
    assert_eq!(curl.body("/count"), "n=4");

    // Logout: the Max-Age=0 cookie empties the jar; the next visit starts over.
    assert_eq!(curl.body("/logout"), "removed");
    assert_eq!(curl.jar_cookie(), None);
    assert_eq!(curl.body("/peek"), "none");
    assert_eq!(curl.body("/count"), "n=1");
    assert_ne!(curl.jar_cookie().unwrap()[6], new);
}

#[test]
fn curl_with_bindings_to_user_agent_and_address() {
    if !curl_available() {
        return;
    }
    let config = SessionConfig {
        bind_user_agent: true,
        bind_remote_addr: true,
        ..SessionConfig::default()
    };
    let server = app(config, false);
    let curl = Curl::new(&server);
    let agent = ["-A", "Browser/1"];
    assert_eq!(curl.get("/count", &agent).1, "n=1");
    assert_eq!(curl.get("/count", &agent).1, "n=2");
    let id = curl.jar_cookie().unwrap()[6].clone();
    // Same jar (same id) with another agent: no session. (-c is not given a chance to save the
    // new session's cookie: /peek starts none.)
    assert_eq!(curl.get("/peek", &["-A", "Other/9"]).1, "none");
    // Same id and agent from another loopback address: no session either.
    let (_, body) = curl.get("/peek", &["-A", "Browser/1", "--interface", "127.0.0.2"]);
    assert_eq!(body, "none");
    // From where it was created, with its agent: untouched.
    assert_eq!(curl.get("/count", &agent).1, "n=3");
    assert_eq!(curl.jar_cookie().unwrap()[6], id);
}
