//! Shared by tests/router.rs and tests/static_files.rs: run the real `curl` command-line client
//! against a test server. Without curl the calling test is skipped with a note, except under
//! `CI=true`, where a missing curl fails it (install it with `apt-get install curl`).
#![allow(dead_code)]

use std::process::{Command, Output};

/// Is `curl` runnable? Panics under `CI` when it is not.
pub fn available() -> bool {
    let found = Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
        assert!(
            !ci,
            "curl is not installed (apt-get install curl); CI is set, so this is an error"
        );
        eprintln!("curl is not installed (apt-get install curl): skipping the curl checks");
    }
    found
}

/// Run `curl --silent --show-error --max-time 30 ARGS...` and return its output; panics if it
/// cannot be started or exits with an error.
pub fn run(args: &[&str]) -> Output {
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "30"])
        .args(args)
        .output()
        .expect("curl could not be started");
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// What `curl --include` printed: status, header fields (names lowercased) and body.
#[derive(Debug)]
pub struct Printed {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Printed {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Run curl with `--include` and split what it printed into head and body.
pub fn include(args: &[&str]) -> Printed {
    let mut all = vec!["--include"];
    all.extend_from_slice(args);
    let out = run(&all).stdout;
    let end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("curl printed no head");
    let head = String::from_utf8_lossy(&out[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Printed {
        status,
        headers,
        body: out[end + 4..].to_vec(),
    }
}
