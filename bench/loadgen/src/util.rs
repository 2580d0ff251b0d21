//! /proc figures, the open-file limit, percentiles and a small JSON writer (adapted from the
//! shared bench harness, lpbench).

use std::fmt::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};

/// Memory, threads and open fds summed over a set of processes.
#[derive(Default, Clone, Copy)]
pub struct Mem {
    pub pss_kb: u64,
    pub rss_kb: u64,
    pub alive: usize,
    pub threads: u64,
    pub fds: u64,
}

/// `Pss` and `Rss` from `/proc/PID/smaps_rollup`, `Threads` from `/proc/PID/status` and the
/// open fds, summed over `pids` (those still alive).
pub fn read_mem(pids: &[u32]) -> Mem {
    let mut m = Mem::default();
    for pid in pids {
        let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
            continue;
        };
        m.alive += 1;
        for line in s.lines() {
            let mut it = line.split_whitespace();
            let (Some(k), Some(v)) = (it.next(), it.next()) else {
                continue;
            };
            let v: u64 = v.parse().unwrap_or(0);
            match k {
                "Pss:" => m.pss_kb += v,
                "Rss:" => m.rss_kb += v,
                _ => {}
            }
        }
        let (threads, fds) = threads_fds(*pid);
        m.threads += threads;
        m.fds += fds;
    }
    m
}

/// Threads and open fds of one process (0 if it is gone).
pub fn threads_fds(pid: u32) -> (u64, u64) {
    let mut threads = 0;
    if let Ok(st) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
        if let Some(l) = st.lines().find(|l| l.starts_with("Threads:")) {
            threads = l[8..].trim().parse::<u64>().unwrap_or(0);
        }
    }
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64);
    (threads, fds)
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime+stime (all threads) in ms, summed over `pids`.
pub fn cpu_ms(pids: &[u32]) -> f64 {
    let mut ticks = 0u64;
    for pid in pids {
        let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = s.rfind(')').map(|i| &s[i + 2..]) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        // after "pid (comm) ": field 3 (state) is index 0; utime (field 14) is index 11
        if f.len() > 12 {
            ticks += f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0);
        }
    }
    ticks as f64 * 1000.0 / clk_tck()
}

/// Time on CPU (nanoseconds, from `/proc/PID/task/TID/schedstat`) and times put on a CPU
/// (voluntary + involuntary context switches, from `/proc/PID/task/TID/status`), summed over
/// every thread of the processes: finer than `cpu_ms`'s clock ticks, for the idle window.
pub fn cpu_ns_and_switches(pids: &[u32]) -> (u64, u64) {
    let (mut ns, mut switches) = (0u64, 0u64);
    for pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let dir = task.path();
            if let Ok(s) = std::fs::read_to_string(dir.join("schedstat")) {
                ns += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
            if let Ok(s) = std::fs::read_to_string(dir.join("status")) {
                for line in s.lines() {
                    if line.starts_with("voluntary_ctxt_switches:")
                        || line.starts_with("nonvoluntary_ctxt_switches:")
                    {
                        switches += line
                            .split_whitespace()
                            .nth(1)
                            .and_then(|v| v.parse::<u64>().ok())
                            .unwrap_or(0);
                    }
                }
            }
        }
    }
    (ns, switches)
}

/// Busy time of the whole machine (all CPUs, incl. irq/softirq/steal), ms.
pub fn machine_busy_ms() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(l) = s.lines().next() else {
        return 0.0;
    };
    let v: Vec<u64> = l
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy: u64 = v
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, x)| *x)
        .sum();
    busy as f64 * 1000.0 / clk_tck()
}

/// This process's own CPU time, ms.
pub fn self_cpu_ms() -> f64 {
    cpu_ms(&[std::process::id()])
}

/// TcpExt ListenOverflows + ListenDrops of this network namespace.
pub fn listen_overflows() -> (u64, u64) {
    let Ok(s) = std::fs::read_to_string("/proc/net/netstat") else {
        return (0, 0);
    };
    let lines: Vec<&str> = s.lines().collect();
    for w in lines.windows(2) {
        if w[0].starts_with("TcpExt:") && w[1].starts_with("TcpExt:") {
            let k: Vec<&str> = w[0].split_whitespace().collect();
            let v: Vec<&str> = w[1].split_whitespace().collect();
            let get = |name: &str| {
                k.iter()
                    .position(|x| *x == name)
                    .and_then(|i| v.get(i))
                    .and_then(|x| x.parse().ok())
                    .unwrap_or(0)
            };
            return (get("ListenOverflows"), get("ListenDrops"));
        }
    }
    (0, 0)
}

/// Raise the soft open-file limit to the hard one (15,000 subscribers need more than 1024).
pub fn raise_open_file_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        let mut limit = std::mem::zeroed::<libc::rlimit>();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        }
        limit.rlim_cur as u64
    }
}

/// The p-th percentile of sorted microsecond samples, in ms (-1 when there are none).
pub fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return -1.0;
    }
    let idx = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64 / 1000.0
}

pub fn parse_addr(v: &str) -> Option<SocketAddr> {
    v.to_socket_addrs().ok().and_then(|mut it| it.next())
}

pub fn parse_pids(v: &str) -> Option<Vec<u32>> {
    v.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().ok())
        .collect()
}

/// A JSON string literal.
pub fn jstr(s: &str) -> String {
    let mut o = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// The reply errors every mode counts: a status or body other than expected, a reply that does
/// not parse, a read or write error, a connection the server closed.
#[derive(Default)]
pub struct ReplyErrors {
    pub bad_status: u64,
    pub bad_body: u64,
    pub parse_errors: u64,
    pub io_errors: u64,
    pub closed_by_server: u64,
}

impl ReplyErrors {
    pub fn total(&self) -> u64 {
        self.bad_status + self.bad_body + self.parse_errors + self.io_errors + self.closed_by_server
    }

    /// These counts as fields of an `error_counts` object.
    pub fn fields(&self, obj: Obj) -> Obj {
        obj.int("bad_status", self.bad_status)
            .int("bad_body", self.bad_body)
            .int("parse", self.parse_errors)
            .int("io", self.io_errors)
            .int("closed_by_server", self.closed_by_server)
    }
}

/// A JSON object written field by field: `Obj::new().str("a", "x").num("b", 1.5).end()`.
pub struct Obj(String);

impl Obj {
    pub fn new() -> Obj {
        Obj(String::from("{"))
    }

    fn key(&mut self, k: &str) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push_str(&jstr(k));
        self.0.push(':');
    }

    /// A string field.
    pub fn str(mut self, k: &str, v: &str) -> Obj {
        self.key(k);
        self.0.push_str(&jstr(v));
        self
    }

    /// A number with 3 decimals (non-finite numbers become -1).
    pub fn num(mut self, k: &str, v: f64) -> Obj {
        self.key(k);
        let v = if v.is_finite() { v } else { -1.0 };
        let _ = write!(self.0, "{v:.3}");
        self
    }

    /// An integer field.
    pub fn int(mut self, k: &str, v: impl Into<i128>) -> Obj {
        self.key(k);
        let _ = write!(self.0, "{}", v.into());
        self
    }

    /// A field whose value is already JSON.
    pub fn raw(mut self, k: &str, json: &str) -> Obj {
        self.key(k);
        self.0.push_str(json);
        self
    }

    pub fn end(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

/// A JSON array of already-encoded values.
pub fn jarr<I: IntoIterator<Item = String>>(items: I) -> String {
    let v: Vec<String> = items.into_iter().collect();
    format!("[{}]", v.join(","))
}

/// Error samples as a JSON object, most frequent first, at most 10.
pub fn samples_json(samples: &std::collections::HashMap<String, usize>) -> String {
    let mut errs: Vec<_> = samples.iter().collect();
    errs.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let fields: Vec<String> = errs
        .iter()
        .take(10)
        .map(|(k, v)| format!("{}:{}", jstr(k), v))
        .collect();
    format!("{{{}}}", fields.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_object() {
        let o = Obj::new()
            .str("a", "x\"y")
            .num("b", 1.5)
            .int("c", 7u64)
            .raw("d", "[1]")
            .end();
        assert_eq!(o, r#"{"a":"x\"y","b":1.500,"c":7,"d":[1]}"#);
    }

    #[test]
    fn percentiles() {
        let v: Vec<u64> = (1..=100).map(|x| x * 1000).collect();
        assert_eq!(pct(&v, 50.0), 51.0);
        assert_eq!(pct(&v, 99.0), 99.0);
        assert_eq!(pct(&v, 100.0), 100.0);
        assert_eq!(pct(&[], 50.0), -1.0);
    }
}
