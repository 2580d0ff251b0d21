//! Static files over real TCP (literal request bytes) and with the real `curl`: content types,
//! validators and 304s, single and multiple byte ranges, 416, If-Range, HEAD, a 20 MiB file
//! streamed byte-exact while other clients are served, directory listing, and every way of
//! asking for a path outside the root.

mod curl;
mod support;

use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use iomux::router::Router;
use iomux::static_files::{StaticFile, StaticFiles};
use support::{request, Reader, Response, Server};

/// A folder in the system's temporary directory, removed on drop:
///
/// ```text
/// DIR/outside/secret.txt          "TOP SECRET"
/// DIR/root/hello.txt, page.html, style.css, app.js, data.json, pixel.png, blob.bin, noext
/// DIR/root/digits.txt             1000 bytes: "0000\n0001\n…0199\n"
/// DIR/root/sub/inner.txt
/// DIR/root/escape      -> ../outside/secret.txt   (a link out of the root)
/// DIR/root/escape_dir  -> ../outside
/// DIR/root/abs_escape  -> DIR/outside/secret.txt  (absolute)
/// DIR/root/inside      -> hello.txt               (a link within the root)
/// DIR/root/pipe        a FIFO (never opened)
/// ```
struct Tree {
    dir: PathBuf,
}

impl Tree {
    fn new(name: &str) -> Tree {
        let dir = std::env::temp_dir().join(format!("iomux-static-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let root = dir.join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(dir.join("outside")).unwrap();
        std::fs::write(dir.join("outside/secret.txt"), "TOP SECRET\n").unwrap();
        for (name, body) in [
            ("hello.txt", &b"Hello, static world!\n"[..]),
            ("page.html", b"<p>hi</p>\n"),
            ("style.css", b"p { color: red }\n"),
            ("app.js", b"console.log(1)\n"),
            ("data.json", b"{\"a\":1}\n"),
            ("pixel.png", b"\x89PNG\r\n\x1a\n"),
            ("blob.bin", b"\x00\x01\x02"),
            ("noext", b"plain\n"),
            ("sub/inner.txt", b"inner\n"),
        ] {
            std::fs::write(root.join(name), body).unwrap();
        }
        std::fs::write(root.join("digits.txt"), digits()).unwrap();
        std::os::unix::fs::symlink("../outside/secret.txt", root.join("escape")).unwrap();
        std::os::unix::fs::symlink("../outside", root.join("escape_dir")).unwrap();
        std::os::unix::fs::symlink(dir.join("outside/secret.txt"), root.join("abs_escape"))
            .unwrap();
        std::os::unix::fs::symlink("hello.txt", root.join("inside")).unwrap();
        let fifo = std::process::Command::new("mkfifo")
            .arg(root.join("pipe"))
            .status();
        assert!(fifo.is_ok_and(|s| s.success()), "mkfifo failed");
        Tree { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.join("root")
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// 1000 bytes: the numbers 0000 to 0199, one per line.
fn digits() -> Vec<u8> {
    (0..200)
        .flat_map(|i| format!("{i:04}\n").into_bytes())
        .collect()
}

/// `/static/`: the root; `/stream/`: the same, every body streamed (nothing buffered);
/// `/list/`: with directory listing; `/one`: a single file; `/bare` a folder handler that is
/// mounted with a regex route.
fn serve(tree: &Tree) -> Server {
    let root = tree.root();
    Server::start(move |_| {
        Router::new()
            .prefix("/static/", StaticFiles::new(&root))
            .prefix("/stream/", StaticFiles::new(&root).max_buffered(0))
            .prefix("/list/", StaticFiles::new(&root).listing(true))
            .get("/one", StaticFile::new(root.join("hello.txt")))
            .get(
                "/typed",
                StaticFile::new(root.join("noext")).content_type("text/x-custom"),
            )
            .regex(r"^/re/\d+", StaticFiles::new(&root))
            .unwrap()
    })
}

fn raw(server: &Server, method: &str, target: &str, fields: &[(&str, &str)]) -> Response {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
    for (name, value) in fields {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    request(server, &head)
}

fn get(server: &Server, target: &str) -> Response {
    raw(server, "GET", target, &[])
}

fn mtime_text(path: &Path) -> String {
    httpdate::fmt_http_date(std::fs::metadata(path).unwrap().modified().unwrap())
}

fn expected_multipart(
    boundary: &str,
    ctype: &str,
    parts: &[(usize, usize)],
    file: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, &(a, b)) in parts.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Type: {ctype}\r\nContent-Range: bytes {a}-{b}/{}\r\n\r\n",
                file.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(&file[a..=b]);
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

fn boundary_of(r: &Response) -> String {
    let ctype = r.header("content-type").unwrap();
    ctype
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("not multipart: {ctype}"))
        .to_string()
}

#[test]
fn content_types_validators_and_bodies() {
    let tree = Tree::new("types");
    let server = serve(&tree);
    for (name, ctype) in [
        ("hello.txt", "text/plain; charset=utf-8"),
        ("page.html", "text/html; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("app.js", "text/javascript; charset=utf-8"),
        ("data.json", "application/json"),
        ("pixel.png", "image/png"),
        ("blob.bin", "application/octet-stream"),
        ("noext", "application/octet-stream"),
        ("sub/inner.txt", "text/plain; charset=utf-8"),
        ("inside", "application/octet-stream"), // typed by the requested name
    ] {
        let path = tree.root().join(name);
        let r = get(&server, &format!("/static/{name}"));
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        assert_eq!(r.header("content-type"), Some(ctype), "{name}");
        assert_eq!(r.body, std::fs::read(&path).unwrap(), "{name}");
        assert_eq!(
            r.header("content-length"),
            Some(r.body.len().to_string().as_str())
        );
        assert_eq!(r.header("last-modified"), Some(mtime_text(&path).as_str()));
        assert_eq!(r.header("accept-ranges"), Some("bytes"));
        let etag = r.header("etag").unwrap();
        assert!(
            etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2,
            "{etag}"
        );
    }
    // Distinct files, distinct tags; the same file, the same tag.
    let a = get(&server, "/static/hello.txt");
    let b = get(&server, "/static/noext");
    let a2 = get(&server, "/one");
    assert_ne!(a.header("etag"), b.header("etag"));
    assert_eq!(a.header("etag"), a2.header("etag"));
    assert_eq!(a2.body, b"Hello, static world!\n");
    let t = get(&server, "/typed");
    assert_eq!(
        (t.header("content-type"), t.text().as_str()),
        (Some("text/x-custom"), "plain\n")
    );
    // Mounted on a regex route: the rest after the match.
    assert_eq!(
        get(&server, "/re/42/hello.txt").text(),
        "Hello, static world!\n"
    );
    // A changed file gets a new tag.
    let path = tree.root().join("noext");
    std::fs::write(&path, "plain, longer\n").unwrap();
    assert_ne!(
        get(&server, "/static/noext").header("etag"),
        b.header("etag")
    );
}

#[test]
fn not_found_methods_and_odd_files() {
    let tree = Tree::new("misc");
    let server = serve(&tree);
    for target in [
        "/static/nope.txt",
        "/static/hello.txt/",
        "/static/sub/nope",
        "/static/pipe",
    ] {
        let r = get(&server, target);
        assert_eq!(
            (r.status, r.text().as_str()),
            (404, "404 Not Found\n"),
            "{target}"
        );
    }
    let r = raw(
        &server,
        "POST",
        "/static/hello.txt",
        &[("Content-Length", "0")],
    );
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    let r = raw(&server, "DELETE", "/one", &[]);
    assert_eq!(r.status, 405);
    // Directories without listing.
    for target in ["/static/", "/static/sub", "/static/sub/"] {
        assert_eq!(get(&server, target).status, 403, "{target}");
    }
}

#[test]
fn not_modified_by_etag_and_by_date() {
    let tree = Tree::new("cond");
    let server = serve(&tree);
    let first = get(&server, "/static/hello.txt");
    let etag = first.header("etag").unwrap().to_string();
    let date = first.header("last-modified").unwrap().to_string();

    for fields in [
        vec![("If-None-Match", etag.as_str())],
        vec![("If-None-Match", "\"other\", *")],
        vec![("If-None-Match", &*format!("\"x\", W/{etag}"))],
        vec![("If-Modified-Since", date.as_str())],
        vec![("If-Modified-Since", "Fri, 31 Dec 2100 23:59:59 GMT")],
    ] {
        let r = raw(&server, "GET", "/static/hello.txt", &fields);
        assert_eq!(r.status, 304, "{fields:?}");
        assert!(r.body.is_empty());
        assert_eq!(r.header("etag"), Some(etag.as_str()));
        assert_eq!(r.header("last-modified"), Some(date.as_str()));
        assert_eq!(r.header("content-length"), None);
    }
    for fields in [
        vec![("If-None-Match", "\"other\"")],
        vec![("If-Modified-Since", "Sat, 01 Jan 2000 00:00:00 GMT")],
        vec![("If-Modified-Since", "not a date")],
        // If-None-Match takes precedence over If-Modified-Since.
        vec![
            ("If-None-Match", "\"other\""),
            ("If-Modified-Since", date.as_str()),
        ],
    ] {
        let r = raw(&server, "GET", "/static/hello.txt", &fields);
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "Hello, static world!\n"),
            "{fields:?}"
        );
    }
    // HEAD too, and failed If-Match → 412.
    let r = raw(
        &server,
        "HEAD",
        "/static/hello.txt",
        &[("If-None-Match", &etag)],
    );
    assert_eq!(r.status, 304);
    let r = raw(
        &server,
        "GET",
        "/static/hello.txt",
        &[("If-Match", "\"other\"")],
    );
    assert_eq!(r.status, 412);
    let r = raw(&server, "GET", "/static/hello.txt", &[("If-Match", &etag)]);
    assert_eq!(r.status, 200);
}

#[test]
fn single_ranges_and_if_range() {
    let tree = Tree::new("range");
    let server = serve(&tree);
    let file = digits();
    for mount in ["/static", "/stream"] {
        let target = format!("{mount}/digits.txt");
        for (range, a, b) in [
            ("bytes=0-99", 0, 99),
            ("bytes=990-", 990, 999),
            ("bytes=-7", 993, 999),
            ("bytes=995-5000", 995, 999),
            ("bytes=0-0", 0, 0),
        ] {
            let r = raw(&server, "GET", &target, &[("Range", range)]);
            assert_eq!(r.status, 206, "{mount} {range}");
            assert_eq!(
                r.header("content-range"),
                Some(format!("bytes {a}-{b}/1000").as_str())
            );
            assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
            assert_eq!(r.body, &file[a..=b], "{mount} {range}");
        }
        // Unsatisfiable: 416 with the length.
        for range in ["bytes=1000-", "bytes=5000-6000", "bytes=-0"] {
            let r = raw(&server, "GET", &target, &[("Range", range)]);
            assert_eq!(r.status, 416, "{range}");
            assert_eq!(r.header("content-range"), Some("bytes */1000"));
        }
        // Invalid ranges and HEAD ignore Range.
        for range in ["bytes=9-1", "pages=1-2", "bytes=x"] {
            let r = raw(&server, "GET", &target, &[("Range", range)]);
            assert_eq!((r.status, r.body.len()), (200, 1000), "{range}");
        }
        let r = raw(&server, "HEAD", &target, &[("Range", "bytes=0-9")]);
        assert_eq!(r.status, 200);
    }
    // If-Range with the current tag or date: the range; with another: the whole file.
    let full = get(&server, "/static/digits.txt");
    let etag = full.header("etag").unwrap();
    let date = full.header("last-modified").unwrap();
    for (if_range, status) in [
        (etag, 206),
        (date, 206),
        ("\"stale\"", 200),
        ("Sat, 01 Jan 2000 00:00:00 GMT", 200),
    ] {
        let r = raw(
            &server,
            "GET",
            "/static/digits.txt",
            &[("Range", "bytes=10-19"), ("If-Range", if_range)],
        );
        assert_eq!(r.status, status, "{if_range}");
        let want: &[u8] = if status == 206 { &file[10..20] } else { &file };
        assert_eq!(r.body, want);
    }
}

#[test]
fn multiple_ranges_are_multipart_byteranges_framed_exactly() {
    let tree = Tree::new("multi");
    let server = serve(&tree);
    let file = digits();
    let parts = [(0, 9), (20, 29), (995, 999)];
    let mut boundaries = Vec::new();
    for mount in ["/static", "/stream"] {
        let r = raw(
            &server,
            "GET",
            &format!("{mount}/digits.txt"),
            &[("Range", "bytes=0-9, 20-29,-5")],
        );
        assert_eq!(r.status, 206);
        assert_eq!(r.header("content-range"), None);
        let boundary = boundary_of(&r);
        assert!(boundary.len() >= 20, "{boundary}");
        let want = expected_multipart(&boundary, "text/plain; charset=utf-8", &parts, &file);
        assert_eq!(
            String::from_utf8_lossy(&r.body),
            String::from_utf8_lossy(&want),
            "{mount}"
        );
        if mount == "/static" {
            assert_eq!(
                r.header("content-length"),
                Some(want.len().to_string().as_str())
            );
        } else {
            assert_eq!(r.header("transfer-encoding"), Some("chunked"));
        }
        boundaries.push(boundary);
    }
    assert_ne!(boundaries[0], boundaries[1], "boundaries are fresh");
    // Overlapping ranges adding up to more than the file: the whole file.
    let r = raw(
        &server,
        "GET",
        "/static/digits.txt",
        &[("Range", "bytes=0-,0-")],
    );
    assert_eq!((r.status, r.body.len()), (200, 1000));
}

#[test]
fn head_is_the_get_without_its_body() {
    let tree = Tree::new("head");
    let server = serve(&tree);
    // On one keep-alive connection: HEAD, then GET; nothing of a body follows the HEAD.
    let stream = server.connect();
    let mut reader = Reader::new(&stream);
    for mount in ["/static", "/stream"] {
        support::write(
            &stream,
            &format!("HEAD {mount}/digits.txt HTTP/1.1\r\nHost: t\r\n\r\n"),
        );
        let head = reader.response(true).unwrap();
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
        if mount == "/static" {
            assert_eq!(head.header("content-length"), Some("1000"));
        } else {
            assert_eq!(head.header("transfer-encoding"), Some("chunked"));
        }
        assert!(head.header("etag").is_some() && head.header("last-modified").is_some());
        support::write(&stream, &support::get(&format!("{mount}/digits.txt")));
        let get = reader.response(false).unwrap();
        assert_eq!(get.body, digits());
        assert_eq!(get.header("etag"), head.header("etag"));
    }
    assert!(reader.leftover().is_empty());
}

#[test]
fn traversal_attempts_are_refused() {
    let tree = Tree::new("traversal");
    let server = serve(&tree);
    // Refused by shape: 403, whatever is on disk.
    for target in [
        "/static/../outside/secret.txt",
        "/static/../../../../etc/passwd",
        "/static/sub/../../outside/secret.txt",
        "/static/%2e%2e/outside/secret.txt",
        "/static/%2E%2E/outside/secret.txt",
        "/static/.%2e/outside/secret.txt",
        "/static/sub/%2e%2e/hello.txt",
        "/static/..%2foutside%2fsecret.txt",
        "/static/%2e%2e%2foutside%2fsecret.txt",
        "/static/sub%2f..%2f..%2foutside%2fsecret.txt",
        "/static/..\\outside\\secret.txt",
        "/static/%5c..%5coutside%5csecret.txt",
        "/static/hello.txt%00.png",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "/static/%c0%ae%c0%ae/outside/secret.txt",
        "/static/./hello.txt",
    ] {
        let r = get(&server, target);
        assert_eq!(r.status, 403, "{target}: {}", r.text());
        assert!(!r.text().contains("SECRET"), "{target}");
    }
    // Links leading out of the root: 404, as if absent.
    for target in [
        "/static/escape",
        "/static/abs_escape",
        "/static/escape_dir/secret.txt",
        "/list/escape_dir/",
    ] {
        let r = get(&server, target);
        assert_eq!(r.status, 404, "{target}: {}", r.text());
        assert!(!r.text().contains("SECRET"), "{target}");
    }
    // A link within the root is served.
    assert_eq!(
        get(&server, "/static/inside").text(),
        "Hello, static world!\n"
    );
    // An absolute-form target is a path like any other.
    let r = get(&server, "http://t/static/../outside/secret.txt");
    assert_eq!(r.status, 403);

    if curl::available() {
        let base = format!("http://{}", server.addr);
        for path in [
            "/static/../outside/secret.txt",
            "/static/%2e%2e/outside/secret.txt",
            "/static/..%2foutside%2fsecret.txt",
            "/static/escape",
        ] {
            let r = curl::include(&["--path-as-is", &format!("{base}{path}")]);
            assert!(matches!(r.status, 403 | 404), "{path}: {}", r.status);
            assert!(!r.text().contains("SECRET"), "{path}");
        }
    }
}

#[test]
fn directory_listing_when_enabled() {
    let tree = Tree::new("listing");
    let server = serve(&tree);
    let r = get(&server, "/list/sub");
    assert_eq!((r.status, r.header("location")), (301, Some("/list/sub/")));
    let r = get(&server, "/list/sub/");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let page = r.text();
    assert!(
        page.contains("<title>Index of /list/sub/</title>"),
        "{page}"
    );
    assert!(page.contains("<a href=\"../\">../</a>"));
    assert!(page.contains("<a href=\"inner.txt\">inner.txt</a>"));
    let top = get(&server, "/list/").text();
    assert!(top.contains("<a href=\"sub/\">sub/</a>"), "{top}");
    assert!(top.contains("<a href=\"hello.txt\">hello.txt</a>"));
    assert!(top.contains("<a href=\"inside\">inside</a>"));
    assert!(!top.contains("../"), "no parent above the mount");
    for hidden in ["escape", "abs_escape", "escape_dir"] {
        assert!(
            !top.contains(&format!("\"{hidden}")),
            "{hidden} listed: {top}"
        );
    }
    // The files themselves are served as usual.
    assert_eq!(get(&server, "/list/sub/inner.txt").text(), "inner\n");
}

/// A 20 MiB file of a pseudo-random pattern.
fn big_file(tree: &Tree) -> Vec<u8> {
    let mut data = Vec::with_capacity(20 << 20);
    let mut x: u32 = 0x1234_5678;
    while data.len() < 20 << 20 {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        data.extend_from_slice(&x.to_le_bytes());
    }
    let mut out = BufWriter::new(std::fs::File::create(tree.root().join("big.bin")).unwrap());
    out.write_all(&data).unwrap();
    out.flush().unwrap();
    data
}

#[test]
fn large_file_streams_byte_exact_while_others_are_served() {
    let tree = Tree::new("large");
    let data = big_file(&tree);
    let server = serve(&tree);

    // A client that reads the head and 1 MiB, then stops reading: the server is held back by
    // the socket and the stream's bounded queue, and serves someone else meanwhile.
    let slow = server.connect();
    let mut reader = Reader::new(&slow);
    support::write(&slow, &support::get("/static/big.bin"));
    let head = reader.head().unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    assert_eq!(
        head.header("content-type"),
        Some("application/octet-stream")
    );
    let mut body = Vec::new();
    while body.len() < 1 << 20 {
        body.extend(reader.chunk().unwrap().expect("more chunks"));
    }
    let started = Instant::now();
    let other = get(&server, "/static/hello.txt");
    let waited = started.elapsed();
    assert_eq!(other.text(), "Hello, static world!\n");
    assert!(
        waited < Duration::from_millis(500),
        "second client waited {waited:?}"
    );
    // The transfer resumes and ends byte-exact; the connection stays usable.
    while let Some(chunk) = reader.chunk().unwrap() {
        body.extend(chunk);
    }
    assert_eq!(body.len(), data.len());
    assert!(body == data, "the streamed body differs from the file");
    support::write(&slow, &support::get("/static/hello.txt"));
    assert_eq!(
        reader.response(false).unwrap().text(),
        "Hello, static world!\n"
    );

    // While a transfer runs at full speed, small requests stay prompt.
    let addr = server.addr;
    let fast = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /static/big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        all
    });
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let t = Instant::now();
        assert_eq!(get(&server, "/static/hello.txt").status, 200);
        slowest = slowest.max(t.elapsed());
    }
    assert!(
        slowest < Duration::from_millis(500),
        "slowest small reply {slowest:?}"
    );
    let all = fast.join().unwrap();
    let parsed = support::parse_all(&all);
    assert_eq!(parsed.len(), 1);
    assert!(parsed[0].body == data);

    // A range of it, streamed: exact bytes.
    let r = raw(
        &server,
        "GET",
        "/static/big.bin",
        &[("Range", "bytes=1000000-3999999")],
    );
    assert_eq!(r.status, 206);
    assert!(r.body == data[1_000_000..4_000_000]);

    // And curl.
    if curl::available() {
        let out = tree.dir.join("curl-big.bin");
        let url = format!("http://{}/static/big.bin", server.addr);
        curl::run(&["--output", out.to_str().unwrap(), &url]);
        assert!(std::fs::read(&out).unwrap() == data, "curl got other bytes");
        let r = curl::include(&["--range", "20971000-", &url]);
        assert_eq!(r.status, 206);
        assert_eq!(r.body, &data[20_971_000..]);
    }
}

#[test]
fn the_same_over_curl() {
    if !curl::available() {
        return;
    }
    let tree = Tree::new("curl");
    let server = serve(&tree);
    let base = format!("http://{}", server.addr);
    let url = format!("{base}/static/digits.txt");
    let file = digits();

    let r = curl::include(&[&url]);
    assert_eq!(
        (r.status, r.header("content-type")),
        (200, Some("text/plain; charset=utf-8"))
    );
    assert_eq!(r.body, file);
    let date = r.header("last-modified").unwrap().to_string();
    let etag = r.header("etag").unwrap().to_string();
    assert_eq!(date, mtime_text(&tree.root().join("digits.txt")));

    // -z DATE: If-Modified-Since.
    let r = curl::include(&["-z", &date, &url]);
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    let r = curl::include(&["-z", "Sat, 01 Jan 2000 00:00:00 GMT", &url]);
    assert_eq!(r.status, 200);
    // -z with a file: its modification time (here the served file itself).
    let stamp = tree.dir.join("stamp");
    std::fs::write(&stamp, "").unwrap();
    let later = SystemTime::now() + Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&stamp)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let r = curl::include(&["-z", stamp.to_str().unwrap(), &url]);
    assert_eq!(r.status, 304);
    // If-None-Match.
    let r = curl::include(&["-H", &format!("If-None-Match: {etag}"), &url]);
    assert_eq!(r.status, 304);

    // --range 0-99.
    let r = curl::include(&["--range", "0-99", &url]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 0-99/1000"));
    assert_eq!(r.body, &file[..100]);
    // Several ranges: multipart/byteranges, framed exactly.
    let r = curl::include(&["--range", "0-9,20-29,995-", &url]);
    assert_eq!(r.status, 206);
    let want = expected_multipart(
        &boundary_of_printed(r.header("content-type").unwrap()),
        "text/plain; charset=utf-8",
        &[(0, 9), (20, 29), (995, 999)],
        &file,
    );
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        String::from_utf8_lossy(&want)
    );
    // Unsatisfiable.
    let r = curl::include(&["--range", "5000-6000", &url]);
    assert_eq!(
        (r.status, r.header("content-range")),
        (416, Some("bytes */1000"))
    );
    // HEAD.
    let r = curl::include(&["--head", &url]);
    assert_eq!((r.status, r.header("content-length")), (200, Some("1000")));
    assert!(r.body.is_empty());
    // MIME of another type.
    let r = curl::include(&[&format!("{base}/static/pixel.png")]);
    assert_eq!(r.header("content-type"), Some("image/png"));
}

fn boundary_of_printed(ctype: &str) -> String {
    ctype
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("not multipart: {ctype}"))
        .to_string()
}
