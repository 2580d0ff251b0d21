//! `multipart/form-data` uploads over real TCP: fields and files, in memory and spilled to
//! temporary files; the files exist while the request lives (also while its reply is deferred
//! to an actor) and are gone once it ends; and the real `curl` client's `-F` uploads.

mod support;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use iomux::params::{Upload, UploadData};
use iomux::{
    context, with_restored_context, with_saved_context, Config, Handled, Mailbox, Reply, Request,
    SavedContext,
};
use support::{Reader, Response, Server};

/// Uploads larger than this are spilled in these tests.
const MEMORY_LIMIT: usize = 1024;

/// A directory of its own for one test's spilled uploads, removed with its content at the end.
struct UploadDir(PathBuf);

impl UploadDir {
    fn new(test: &str) -> UploadDir {
        let dir = std::env::temp_dir().join(format!("iomux-test-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        UploadDir(dir)
    }

    fn config(&self) -> Config {
        Config {
            upload_memory_limit: MEMORY_LIMIT,
            upload_dir: self.0.clone(),
            ..Config::default()
        }
    }

    fn entries(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }
}

impl Drop for UploadDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// FNV-1a, 64 bits: a fingerprint of content, computed alike on both sides.
fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Bytes that are not text, with CR, LF and dashes among them.
fn binary(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|i| match i % 97 {
            0 => b'\r',
            1 => b'\n',
            2 | 3 => b'-',
            _ => {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            }
        })
        .collect()
}

/// One line per upload: where it is, whether its file exists, and its content's fingerprint.
fn describe_upload(u: &Upload) -> String {
    let content = u.content().expect("the upload's content");
    assert_eq!(content.len() as u64, u.size());
    let place = match u.data() {
        UploadData::Memory(_) => "memory".to_string(),
        UploadData::File(file) => format!(
            "file exists={} private={}",
            file.path().exists(),
            owner_only(file.path())
        ),
    };
    format!(
        "upload {:?} filename={:?} type={:?} size={} fnv={:016x} {place}",
        u.field(),
        u.filename(),
        u.content_type(),
        u.size(),
        fnv(&content)
    )
}

#[cfg(unix)]
fn owner_only(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o077 == 0
}

#[cfg(not(unix))]
fn owner_only(_: &Path) -> bool {
    true
}

/// Fields, then uploads, then the paths of spilled files (`path ...` lines).
fn report(req: &Request) -> String {
    let mut out = String::new();
    if let Err(e) = req.check_form() {
        writeln!(out, "form error: {e}").unwrap();
    }
    for (name, value) in req.post_parameters() {
        writeln!(out, "field {name:?}={value:?}").unwrap();
    }
    for upload in req.uploads() {
        writeln!(out, "{}", describe_upload(upload)).unwrap();
    }
    for path in req.uploads().iter().filter_map(Upload::path) {
        writeln!(out, "path {}", path.display()).unwrap();
    }
    out
}

fn paths(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|l| l.strip_prefix("path "))
        .map(PathBuf::from)
        .collect()
}

/// A multipart body from `(disposition parameters, extra header lines, content)` parts.
fn multipart(boundary: &str, parts: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (disposition, headers, content) in parts {
        write!(
            body,
            "--{boundary}\r\nContent-Disposition: form-data; {disposition}\r\n{headers}\r\n"
        )
        .unwrap();
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    write!(body, "--{boundary}--\r\n").unwrap();
    body
}

fn post(server: &Server, path: &str, boundary: &str, body: &[u8]) -> Response {
    let mut raw = format!(
        "POST {path} HTTP/1.1\r\nHost: h\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    let mut stream = server.connect();
    stream.write_all(&raw).unwrap();
    Reader::new(stream).response(false).unwrap()
}

#[test]
fn fields_and_files_in_memory_and_spilled() {
    let dir = UploadDir::new("fields-and-files");
    let server = Server::start_with("127.0.0.1:0", dir.config(), |_| {
        |req: &Request| {
            if req.path() == "/untouched" {
                return Reply::text("not read\n");
            }
            Reply::text(report(req))
        }
    });
    let big = binary(5000, 7);
    let exact = binary(MEMORY_LIMIT, 8);
    let boundary = "----iomuxBoundary7MA4YWxkTrZu0gW";
    let body = multipart(
        boundary,
        &[
            ("name=\"title\"", "", "héllo wörld".as_bytes()),
            (
                "name=\"latin\"",
                "Content-Type: text/plain; charset=ISO-8859-1\r\n",
                b"caf\xe9",
            ),
            (
                "name=\"small\"; filename=\"notes.txt\"",
                "Content-Type: text/plain\r\n",
                b"ten bytes!",
            ),
            (
                "name=\"big\"; filename=\"data.bin\"",
                "Content-Type: application/octet-stream\r\n",
                &big,
            ),
            ("name=\"exact\"; filename=\"limit.bin\"", "", &exact),
            (
                "name=\"empty\"; filename=\"\"",
                "Content-Type: application/octet-stream\r\n",
                b"",
            ),
            ("name=\"title\"", "", b"second"),
        ],
    );
    let r = post(&server, "/", boundary, &body);
    assert_eq!(r.status, 200, "{r:?}");
    let text = r.text();
    let lines: Vec<&str> = text.lines().collect();
    let want = [
        r#"field "title"="héllo wörld""#.to_string(),
        r#"field "latin"="café""#.to_string(),
        r#"field "title"="second""#.to_string(),
        format!(
            r#"upload "small" filename="notes.txt" type="text/plain" size=10 fnv={:016x} memory"#,
            fnv(b"ten bytes!")
        ),
        format!(
            r#"upload "big" filename="data.bin" type="application/octet-stream" size=5000 fnv={:016x} file exists=true private=true"#,
            fnv(&big)
        ),
        format!(
            r#"upload "exact" filename="limit.bin" type="text/plain" size={MEMORY_LIMIT} fnv={:016x} memory"#,
            fnv(&exact)
        ),
        format!(
            r#"upload "empty" filename="" type="application/octet-stream" size=0 fnv={:016x} memory"#,
            fnv(b"")
        ),
    ];
    assert_eq!(lines[..want.len()], want);
    let spilled = paths(&text);
    assert_eq!(spilled.len(), 1, "{text}");
    assert!(spilled[0].starts_with(&dir.0), "{spilled:?}");
    // The request is over: its file is gone.
    assert!(!spilled[0].exists(), "{} still there", spilled[0].display());
    assert!(dir.entries().is_empty(), "{:?}", dir.entries());

    // Parsing is lazy: a handler that never reads the form spills nothing.
    let r = post(&server, "/untouched", boundary, &body);
    assert_eq!(r.text(), "not read\n");
    assert!(dir.entries().is_empty(), "{:?}", dir.entries());
}

#[test]
fn a_spilled_upload_lives_until_the_deferred_reply_is_sent() {
    let dir = UploadDir::new("deferred");
    let (path_tx, path_rx) = mpsc::channel::<PathBuf>();
    let (go_tx, go_rx) = async_channel::unbounded::<()>();
    let server = Server::start_with("127.0.0.1:0", dir.config(), move |ex| {
        let actor = iomux::spawn_actor_task(
            ex,
            8,
            move |mut mailbox: Mailbox<SavedContext>| async move {
                while let Some(ctx) = mailbox.recv().await {
                    // Wait for the test's word, then answer from the restored context.
                    go_rx.recv().await.unwrap();
                    with_restored_context!(ctx, {
                        let req = context::request();
                        let upload = req.upload("file").expect("the upload");
                        let line = describe_upload(upload);
                        context::send_body(format!("{line}\n")).unwrap();
                    });
                }
            },
        );
        move |req: &Request| {
            let path = req
                .upload("file")
                .and_then(Upload::path)
                .map(Path::to_path_buf);
            path_tx.send(path.expect("a spilled upload")).unwrap();
            actor.do_send(with_saved_context!());
            Handled::Deferred
        }
    });

    let content = binary(40_000, 3);
    let body = multipart(
        "b0und",
        &[(
            "name=\"file\"; filename=\"photo.jpg\"",
            "Content-Type: image/jpeg\r\n",
            &content,
        )],
    );
    let client = {
        let addr = server.addr;
        std::thread::spawn(move || {
            let stream = std::net::TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut raw = format!(
                "POST /up HTTP/1.1\r\nHost: h\r\nContent-Type: multipart/form-data; boundary=b0und\r\n\
                 Content-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            raw.extend_from_slice(&body);
            (&stream).write_all(&raw).unwrap();
            Reader::new(stream).response(false).unwrap()
        })
    };
    let path = path_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(path.exists(), "spilled file missing while the handler ran");
    assert_eq!(std::fs::read(&path).unwrap(), content);
    // The handler has returned; the context waits in the actor, and so does the file.
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        path.exists(),
        "spilled file removed while the reply was deferred"
    );

    go_tx.send_blocking(()).unwrap();
    let r = client.join().unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.text(),
        format!(
            "upload \"file\" filename=\"photo.jpg\" type=\"image/jpeg\" size=40000 fnv={:016x} file exists=true private=true\n",
            fnv(&content)
        )
    );
    assert!(!path.exists(), "spilled file left after the deferred reply");
    assert!(dir.entries().is_empty(), "{:?}", dir.entries());
}

#[test]
fn a_spilled_upload_is_removed_when_the_waiting_client_hangs_up() {
    let dir = UploadDir::new("hangup");
    let (path_tx, path_rx) = mpsc::channel::<PathBuf>();
    let server = Server::start_with("127.0.0.1:0", dir.config(), move |ex| {
        let actor =
            iomux::spawn_actor_task(ex, 8, |mut mailbox: Mailbox<SavedContext>| async move {
                while let Some(ctx) = mailbox.recv().await {
                    // Keep the context until the client leaves, then drop it unanswered.
                    ctx.closed().await;
                }
            });
        move |req: &Request| {
            let path = req
                .upload("f")
                .and_then(Upload::path)
                .map(Path::to_path_buf);
            path_tx.send(path.expect("a spilled upload")).unwrap();
            actor.do_send(with_saved_context!());
            Handled::Deferred
        }
    });
    let body = multipart(
        "xyz",
        &[("name=\"f\"; filename=\"f.bin\"", "", &binary(4096, 5))],
    );
    let mut raw = format!(
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Type: multipart/form-data; boundary=xyz\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    let mut stream = server.connect();
    stream.write_all(&raw).unwrap();
    let path = path_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(path.exists());
    drop(stream);
    let start = Instant::now();
    while path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "spilled file left after the client hung up"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(dir.entries().is_empty(), "{:?}", dir.entries());
}

#[test]
fn a_storage_failure_is_a_500() {
    let dir = UploadDir::new("storage");
    let config = Config {
        upload_dir: dir.0.join("does-not-exist"),
        ..dir.config()
    };
    let server = Server::start_with("127.0.0.1:0", config, |_| {
        |req: &Request| -> Result<Reply, iomux::params::ParamError> {
            req.check_form()?;
            Ok(Reply::text("stored\n"))
        }
    });
    let body = multipart("b", &[("name=\"f\"; filename=\"x\"", "", &binary(2048, 1))]);
    let r = post(&server, "/", "b", &body);
    assert_eq!(r.status, 500, "{r:?}");
    // The reason is logged, not sent.
    assert_eq!(r.text(), "500 Internal Server Error\n");
}

// ---------------------------------------------------------------------------------------------
// The real curl client
// ---------------------------------------------------------------------------------------------

/// The `curl` command, installed with apt-get when missing (as script/test installs the
/// other tools). Missing all the same: the test fails under `CI`, and is skipped (with a
/// message) elsewhere.
fn curl() -> Option<&'static str> {
    static FOUND: OnceLock<bool> = OnceLock::new();
    let found = *FOUND.get_or_init(|| {
        let works = || {
            Command::new("curl")
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if works() {
            return true;
        }
        let apt = |args: &[&str]| {
            let _ = Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdin(Stdio::null())
                .status();
        };
        apt(&["install", "-y", "-qq", "--no-install-recommends", "curl"]);
        if !works() {
            apt(&["update", "-qq"]);
            apt(&["install", "-y", "-qq", "--no-install-recommends", "curl"]);
        }
        works()
    });
    if found {
        return Some("curl");
    }
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
    assert!(
        !ci,
        "curl is missing and `apt-get install -y curl` did not install it; CI is set, so this \
         test fails rather than skip"
    );
    eprintln!("SKIPPED: curl is missing (apt-get install -y curl)");
    None
}

#[test]
fn curl_multipart_uploads() {
    let Some(curl) = curl() else { return };
    let dir = UploadDir::new("curl");
    let server = Server::start_with("127.0.0.1:0", dir.config(), |_| {
        |req: &Request| {
            let mut out = report(req);
            writeln!(
                out,
                "user-agent {:?}",
                req.user_agent().map(|ua| ua.starts_with("curl/"))
            )
            .unwrap();
            Reply::text(out)
        }
    });
    // Files to send, outside the upload directory.
    let files = UploadDir::new("curl-sources");
    let big = binary(200_000, 11);
    let big_path = files.0.join("big data.bin");
    std::fs::write(&big_path, &big).unwrap();
    let small_path = files.0.join("small.txt");
    std::fs::write(&small_path, "small file\n").unwrap();

    let output = Command::new(curl)
        .args(["-sS", "--fail-with-body", "--max-time", "20"])
        .arg("-F")
        .arg("name=x")
        .arg("-F")
        .arg(format!(
            "file=@{};type=application/octet-stream",
            big_path.display()
        ))
        .arg("-F")
        .arg(format!("small=@{}", small_path.display()))
        .arg("-F")
        .arg("note=héllo wörld")
        .arg(format!("http://{}/upload", server.addr))
        .stdin(Stdio::null())
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "curl failed: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    let want = [
        r#"field "name"="x""#.to_string(),
        r#"field "note"="héllo wörld""#.to_string(),
        format!(
            r#"upload "file" filename="big data.bin" type="application/octet-stream" size=200000 fnv={:016x} file exists=true private=true"#,
            fnv(&big)
        ),
        format!(
            r#"upload "small" filename="small.txt" type="text/plain" size=11 fnv={:016x} memory"#,
            fnv(b"small file\n")
        ),
    ];
    assert_eq!(lines[..want.len()], want, "{text}");
    assert!(text.contains("user-agent Some(true)"), "{text}");
    let spilled = paths(&text);
    assert_eq!(spilled.len(), 1, "{text}");
    assert!(
        !spilled[0].exists(),
        "{} left after the request",
        spilled[0].display()
    );
    assert!(dir.entries().is_empty(), "{:?}", dir.entries());
}

#[test]
fn curl_query_and_urlencoded_parameters() {
    let Some(curl) = curl() else { return };
    let server = Server::start(|_| {
        |req: &Request| {
            Reply::text(format!(
                "get {:?}\npost {:?}\n",
                req.get_parameters(),
                req.post_parameters()
            ))
        }
    });
    let output = Command::new(curl)
        .args(["-sS", "--fail-with-body", "--max-time", "20"])
        .args(["--data-urlencode", "q=a b&c=d"])
        .args(["--data-urlencode", "q=€"])
        .arg(format!("http://{}/form?x=1+2&y=%C3%A9", server.addr))
        .stdin(Stdio::null())
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{text}");
    assert_eq!(
        text,
        "get [(\"x\", \"1 2\"), (\"y\", \"é\")]\npost [(\"q\", \"a b&c=d\"), (\"q\", \"€\")]\n"
    );
}
