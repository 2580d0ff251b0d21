//! `testsite`: one page per Hunchentoot-style feature, in the spirit of Hunchentoot's own test
//! site.
//!
//! Shows: the router, request data (parameters, headers, cookies, uploads), cookies, sessions,
//! redirects, Basic authentication, a static file, UTF-8 and Latin-1 parameters.
//!
//! Run:
//!
//! ```sh
//! cargo run --example testsite -- --listen 127.0.0.1:8080
//! ```
//!
//! Then open http://127.0.0.1:8080/ (an index of the pages), or from a second terminal:
//!
//! ```sh
//! curl 'http://127.0.0.1:8080/info?a=1&a=2' -d 'b=3'         # JSON: method, path, parameters, headers, cookies
//! curl -c jar -b jar http://127.0.0.1:8080/session           # "visits: 1", then 2, 3... with the jar
//! curl -i 'http://127.0.0.1:8080/cookie?name=flavour&value=oat'   # Set-Cookie: flavour=oat; Path=/
//! curl -i http://127.0.0.1:8080/redirect                     # 302 to /info?from=redirect
//! curl -i http://127.0.0.1:8080/auth                         # 401; with -u iomux:secret: 200
//! curl -F 'file=@Cargo.toml' http://127.0.0.1:8080/upload    # lists the uploaded file and its size
//! curl --range 0-99 -o /dev/null -w '%{http_code}\n' http://127.0.0.1:8080/image   # 206
//! curl 'http://127.0.0.1:8080/utf8?text=%C3%A9t%C3%A9'       # été
//! curl 'http://127.0.0.1:8080/latin1?text=%E9t%E9'           # été, read as ISO-8859-1
//! ```

mod common;

use iomux::cookie::Cookie;
use iomux::http::StatusCode;
use iomux::router::Router;
use iomux::session::{SessionConfig, Sessions};
use iomux::static_files::StaticFile;
use iomux::{Acceptor, Handled, Reply, Request};

/// The user and password of the `/auth` page.
const USER: (&str, &str) = ("iomux", "secret");

fn main() -> std::io::Result<()> {
    let addr = common::listen_addr("usage: testsite [--listen HOST:PORT]");
    let sessions = Sessions::new(SessionConfig::default()).expect("default session config");
    let image = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/demo.png");
    let router = Router::new()
        .get("/", |_: &Request| Reply::html(INDEX))
        .exact("/info", info)
        .get("/cookie", cookie)
        .get("/session", move |_: &Request| session_counter(&sessions))
        .get("/redirect", |_: &Request| -> Handled {
            match Reply::redirect(StatusCode::FOUND, "info?from=redirect") {
                Ok(reply) => reply.into(),
                Err(e) => Reply::text(format!("{e}\n"))
                    .with_status(StatusCode::BAD_REQUEST)
                    .into(),
            }
        })
        .get("/auth", auth)
        .get("/upload", |_: &Request| Reply::html(UPLOAD_FORM))
        .post("/upload", upload)
        .get("/image", StaticFile::new(image))
        .get("/utf8", |req: &Request| {
            parameter_page("UTF-8", req.get_parameter("text").unwrap_or(""))
        })
        .get("/latin1", |req: &Request| {
            parameter_page("ISO-8859-1", &latin1_parameter(req, "text"))
        });
    let acceptor = Acceptor::bind(addr, router)?;
    common::announce(&acceptor);
    acceptor.run()
}

const INDEX: &str = r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>iomux test site</title></head>
<body><h1>iomux test site</h1><ul>
<li><a href="/info?a=1&amp;a=2">/info</a>: method, path, parameters, headers and cookies as JSON</li>
<li><a href="/cookie?name=flavour&amp;value=oat">/cookie</a>: sets a cookie, shows the cookies sent</li>
<li><a href="/session">/session</a>: a per-session visit counter</li>
<li><a href="/redirect">/redirect</a>: 302 to /info</li>
<li><a href="/auth">/auth</a>: Basic authentication (iomux / secret)</li>
<li><a href="/upload">/upload</a>: upload files, see their sizes</li>
<li><a href="/image">/image</a>: a static file with ranges and validators</li>
<li><a href="/utf8?text=%C3%A9t%C3%A9">/utf8</a> and <a href="/latin1?text=%E9t%E9">/latin1</a>: parameters in two charsets</li>
</ul></body></html>"#;

const UPLOAD_FORM: &str = r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>upload</title></head>
<body><form method="post" enctype="multipart/form-data">
<input type="file" name="file" multiple> <input name="note" placeholder="a note"> <button>Upload</button>
</form></body></html>"#;

/// Everything the request says, as JSON.
fn info(req: &Request) -> Reply {
    let pairs = |list: &[(String, String)]| -> String {
        let items: Vec<String> = list
            .iter()
            .map(|(n, v)| format!("[{}, {}]", json(n), json(v)))
            .collect();
        format!("[{}]", items.join(", "))
    };
    let headers: Vec<(String, String)> = req
        .headers()
        .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v).into_owned()))
        .collect();
    let body = format!(
        "{{\"method\": {}, \"path\": {}, \"query\": {}, \"get\": {}, \"post\": {}, \"headers\": {}, \"cookies\": {}}}\n",
        json(req.method()),
        json(&req.path()),
        json(req.query().unwrap_or("")),
        pairs(req.get_parameters()),
        pairs(req.post_parameters()),
        pairs(&headers),
        pairs(req.cookies()),
    );
    Reply::with_type("application/json", body)
}

/// Set the cookie named by `?name=&value=`, and show the cookies the browser sent.
fn cookie(req: &Request) -> Reply {
    let sent: Vec<String> = req
        .cookies()
        .iter()
        .map(|(n, v)| format!("{n} = {v}\n"))
        .collect();
    let mut reply = Reply::text(format!("cookies sent:\n{}", sent.concat()));
    if let (Some(name), Some(value)) = (req.get_parameter("name"), req.get_parameter("value")) {
        match Cookie::new(name, value).and_then(|c| c.path("/")) {
            Ok(cookie) => reply = reply.set_cookie(&cookie),
            Err(e) => return Reply::text(format!("{e}\n")).with_status(StatusCode::BAD_REQUEST),
        }
    }
    reply
}

fn session_counter(sessions: &Sessions) -> Reply {
    match sessions.start() {
        Ok(session) => {
            let visits = session.get::<u64>("visits").unwrap_or(0) + 1;
            session.set("visits", visits);
            Reply::text(format!("visits: {visits}\n"))
        }
        Err(e) => Reply::text(format!("{e}\n")).with_status(StatusCode::SERVICE_UNAVAILABLE),
    }
}

fn auth(req: &Request) -> Reply {
    match req.authorization() {
        Some((user, password)) if (user.as_str(), password.as_str()) == USER => {
            Reply::text(format!("welcome, {user}\n"))
        }
        _ => iomux::require_authorization("iomux test site"),
    }
}

fn upload(req: &Request) -> Reply {
    if let Err(e) = req.check_form() {
        return e.into();
    }
    let files: Vec<String> = req
        .uploads()
        .iter()
        .map(|u| {
            format!(
                "{}: {} ({}, {} bytes)\n",
                u.field(),
                u.filename(),
                u.content_type(),
                u.size()
            )
        })
        .collect();
    Reply::text(format!("{} file(s)\n{}", files.len(), files.concat()))
}

fn parameter_page(charset: &str, text: &str) -> Reply {
    Reply::text(format!("{charset} parameter: {text}\n"))
}

/// A query parameter whose bytes are ISO-8859-1 (each byte one character), as a form with
/// `accept-charset="ISO-8859-1"` sends it.
fn latin1_parameter(req: &Request, name: &str) -> String {
    let query = req.query().unwrap_or("");
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| {
            let value = value.replace('+', " ");
            percent_encoding::percent_decode_str(&value)
                .map(char::from)
                .collect()
        })
        .unwrap_or_default()
}

/// A JSON string literal.
fn json(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
