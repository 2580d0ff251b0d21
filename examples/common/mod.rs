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
