//! What every example shares: the `--listen HOST:PORT` flag and the "listening on" line.

use std::process::exit;

/// The address from `--listen HOST:PORT` (or `--listen=HOST:PORT`), default `127.0.0.1:8080`.
/// `--help` prints `usage` and exits; an unknown flag exits with status 2.
pub fn listen_addr(usage: &str) -> String {
    let mut addr = String::from("127.0.0.1:8080");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => match args.next() {
                Some(value) => addr = value,
                None => fail("--listen needs HOST:PORT", usage),
            },
            "-h" | "--help" => {
                println!("{usage}\n\n  --listen HOST:PORT   address to listen on (default 127.0.0.1:8080; port 0 picks one)");
                exit(0);
            }
            other => match other.strip_prefix("--listen=") {
                Some(value) => addr = value.to_string(),
                None => fail(&format!("unknown argument {other:?}"), usage),
            },
        }
    }
    addr
}

fn fail(message: &str, usage: &str) -> ! {
    eprintln!("error: {message}\n{usage}\n(try --help)");
    exit(2)
}

/// Print the line that tells a user (and the tests) where the server listens.
pub fn announce(acceptor: &iomux::Acceptor) {
    println!("listening on http://{}", acceptor.local_addr());
}

/// The value of the query parameter `name` (`?name=value&...`), as sent (not percent-decoded).
#[allow(dead_code)] // not every example takes parameters
pub fn query_param<'a>(request: &'a iomux::Request, name: &str) -> Option<&'a str> {
    request.query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
}

/// The query parameter `name` as a whole number: `default` when absent, at most `max`. When it
/// is not a number, the `Err` is the `400 Bad Request` reply to send.
#[allow(dead_code)] // not every example takes parameters
pub fn number_param(
    request: &iomux::Request,
    name: &str,
    default: u64,
    max: u64,
) -> Result<u64, iomux::Reply> {
    match query_param(request, name) {
        None => Ok(default),
        Some(text) => text.parse::<u64>().map(|n| n.min(max)).map_err(|_| {
            iomux::Reply::text(format!("{name} must be a whole number, not {text:?}\n"))
                .with_status(iomux::http::StatusCode::BAD_REQUEST)
        }),
    }
}
