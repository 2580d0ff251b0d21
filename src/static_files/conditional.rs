//! Conditional and range requests for files (RFC 9110 §13 and §14): the file's validators
//! (`ETag`, `Last-Modified`), the `If-*` preconditions, and the `Range` / `If-Range` fields.

use std::fs::Metadata;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::request::Request;

/// Most ranges served from one `Range` field; a field with more is ignored (the whole file is
/// sent), as is one whose ranges add up to more than the file (overlaps).
pub(crate) const MAX_RANGES: usize = 32;

/// A file's validators: a strong entity tag from its size and modification time, and the
/// modification time to the second.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Validators {
    /// The `ETag` value, quotes included.
    pub(crate) etag: String,
    /// Modification time, truncated to whole seconds; `None` where the platform has none.
    pub(crate) modified: Option<SystemTime>,
}

impl Validators {
    pub(crate) fn of(meta: &Metadata) -> Validators {
        let since_epoch = meta
            .modified()
            .ok()
            .and_then(|m| m.duration_since(UNIX_EPOCH).ok());
        let etag = match since_epoch {
            Some(d) => format!(
                "\"{:x}-{:x}.{:x}\"",
                meta.len(),
                d.as_secs(),
                d.subsec_nanos()
            ),
            None => format!("\"{:x}\"", meta.len()),
        };
        Validators {
            etag,
            modified: since_epoch.map(|d| UNIX_EPOCH + Duration::from_secs(d.as_secs())),
        }
    }

    /// The `Last-Modified` value.
    pub(crate) fn last_modified(&self) -> Option<String> {
        self.modified.map(httpdate::fmt_http_date)
    }
}

/// The request fields that decide what part of the file is sent, copied out of the request so
/// that the decision can be made off the event loop.
#[derive(Debug, Clone, Default)]
pub(crate) struct Conditions {
    if_match: Option<String>,
    if_none_match: Option<String>,
    if_modified_since: Option<String>,
    if_unmodified_since: Option<String>,
    range: Option<String>,
    if_range: Option<String>,
    /// Only `GET` has ranges (a `HEAD` is answered as the `GET` without `Range` would be).
    is_get: bool,
}

impl Conditions {
    pub(crate) fn of(request: &Request) -> Conditions {
        let all = |name: &str| {
            let values: Vec<&str> = request
                .header_all(name)
                .filter_map(|v| std::str::from_utf8(v).ok())
                .collect();
            (!values.is_empty()).then(|| values.join(", "))
        };
        let one = |name: &str| request.header(name).map(str::to_owned);
        Conditions {
            if_match: all("if-match"),
            if_none_match: all("if-none-match"),
            if_modified_since: one("if-modified-since"),
            if_unmodified_since: one("if-unmodified-since"),
            range: one("range"),
            if_range: one("if-range"),
            is_get: request.method() == "GET",
        }
    }
}

/// The outcome of the preconditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Precondition {
    /// Serve the file.
    Proceed,
    /// `304 Not Modified`: the client's copy is current.
    NotModified,
    /// `412 Precondition Failed`.
    Failed,
}

/// Evaluate `If-Match`, `If-Unmodified-Since`, `If-None-Match` and `If-Modified-Since` in the
/// order of RFC 9110 §13.2.2 (for `GET` and `HEAD`, the only methods served).
pub(crate) fn precondition(c: &Conditions, v: &Validators) -> Precondition {
    if let Some(list) = &c.if_match {
        if !tag_list_matches(list, &v.etag, Compare::Strong) {
            return Precondition::Failed;
        }
    } else if let Some(date) = c.if_unmodified_since.as_deref().and_then(parse_date) {
        if v.modified.is_some_and(|m| m > date) {
            return Precondition::Failed;
        }
    }
    if let Some(list) = &c.if_none_match {
        if tag_list_matches(list, &v.etag, Compare::Weak) {
            return Precondition::NotModified;
        }
    } else if let Some(date) = c.if_modified_since.as_deref().and_then(parse_date) {
        if v.modified.is_some_and(|m| m <= date) {
            return Precondition::NotModified;
        }
    }
    Precondition::Proceed
}

#[derive(Clone, Copy)]
enum Compare {
    Strong,
    Weak,
}

/// Does a list of entity tags (or `*`) match `etag`?
fn tag_list_matches(list: &str, etag: &str, compare: Compare) -> bool {
    list.split(',').map(str::trim).any(|tag| {
        if tag == "*" {
            return true;
        }
        match (tag.strip_prefix("W/"), compare) {
            (Some(_), Compare::Strong) => false,
            (Some(weak), Compare::Weak) => weak == etag,
            (None, _) => tag == etag,
        }
    })
}

fn parse_date(s: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(s.trim()).ok()
}

/// What to send of a file of `len` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ranges {
    /// The whole file (`200`).
    Full,
    /// These ranges, inclusive, in the order asked (`206`).
    Partial(Vec<(u64, u64)>),
    /// None of the ranges is in the file (`416`).
    Unsatisfiable,
}

/// Which ranges to send: the `Range` field of a `GET`, unless `If-Range` names another version
/// of the file. A field that is not a valid `bytes` range set is ignored (RFC 9110 §14.2).
pub(crate) fn ranges(c: &Conditions, v: &Validators, len: u64) -> Ranges {
    let Some(range) = c.range.as_deref().filter(|_| c.is_get) else {
        return Ranges::Full;
    };
    if let Some(if_range) = c.if_range.as_deref().map(str::trim) {
        let current = if if_range.starts_with('"') || if_range.starts_with("W/") {
            if_range == v.etag
        } else {
            // A date validates only if it is exactly the file's modification time.
            parse_date(if_range).is_some_and(|d| v.modified == Some(d))
        };
        if !current {
            return Ranges::Full;
        }
    }
    parse_ranges(range, len)
}

/// Parse a `Range` field against a file of `len` bytes.
pub(crate) fn parse_ranges(field: &str, len: u64) -> Ranges {
    let field = field.trim();
    let Some((unit, set)) = field.split_once('=') else {
        return Ranges::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Ranges::Full;
    }
    let mut out = Vec::new();
    let mut specs = 0;
    for spec in set.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        specs += 1;
        if specs > MAX_RANGES {
            return Ranges::Full;
        }
        let Some((first, last)) = spec.split_once('-') else {
            return Ranges::Full;
        };
        let (first, last) = (first.trim(), last.trim());
        let range = match (number(first), number(last)) {
            // `-N`: the last N bytes.
            (None, Some(n)) if first.is_empty() => {
                (n > 0 && len > 0).then(|| (len.saturating_sub(n), len - 1))
            }
            // `A-`: from A to the end.
            (Some(a), None) if last.is_empty() => (a < len).then(|| (a, len - 1)),
            (Some(a), Some(b)) if a <= b => (a < len).then(|| (a, b.min(len - 1))),
            _ => return Ranges::Full,
        };
        out.extend(range);
    }
    if specs == 0 {
        return Ranges::Full;
    }
    if out.is_empty() {
        return Ranges::Unsatisfiable;
    }
    let total = out
        .iter()
        .fold(0u64, |sum, (a, b)| sum.saturating_add(b - a + 1));
    if out.len() > 1 && total > len {
        return Ranges::Full;
    }
    Ranges::Partial(out)
}

/// A decimal number (saturating at `u64::MAX`); `None` if empty or not all digits.
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_sets() {
        use Ranges::*;
        let p = |s| parse_ranges(s, 1000);
        assert_eq!(p("bytes=0-99"), Partial(vec![(0, 99)]));
        assert_eq!(p("bytes=-100"), Partial(vec![(900, 999)]));
        assert_eq!(p("bytes=990-"), Partial(vec![(990, 999)]));
        assert_eq!(p("bytes=990-5000"), Partial(vec![(990, 999)]));
        assert_eq!(p("BYTES = 0-0 , -1"), Partial(vec![(0, 0), (999, 999)]));
        assert_eq!(p("bytes=-5000"), Partial(vec![(0, 999)]));
        assert_eq!(p("bytes=0-1,,5-6"), Partial(vec![(0, 1), (5, 6)]));
        assert_eq!(p("bytes=99999999999999999999999-"), Unsatisfiable);
        assert_eq!(p("bytes=1000-"), Unsatisfiable);
        assert_eq!(p("bytes=-0"), Unsatisfiable);
        assert_eq!(p("bytes=1000-2000,5000-"), Unsatisfiable);
        assert_eq!(p("bytes=1000-2000,5-6"), Partial(vec![(5, 6)]));
        // Invalid fields are ignored.
        for field in [
            "bytes=5-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=1",
            "items=0-1",
            "bytes",
            "bytes=",
            "bytes=+1-2",
            "bytes=0-1-2",
        ] {
            assert_eq!(p(field), Full, "{field}");
        }
        // Overlapping ranges adding up to more than the file, or too many: the whole file.
        assert_eq!(p("bytes=0-,0-"), Full);
        let many = vec!["0-0"; MAX_RANGES + 1].join(",");
        assert_eq!(p(&format!("bytes={many}")), Full);
        assert_eq!(parse_ranges("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse_ranges("bytes=-1", 0), Unsatisfiable);
    }

    fn validators() -> Validators {
        Validators {
            etag: "\"a-1.0\"".into(),
            modified: Some(UNIX_EPOCH + Duration::from_secs(1_000_000_000)),
        }
    }

    fn conditions(fields: &[(&str, &str)]) -> Conditions {
        let mut c = Conditions {
            is_get: true,
            ..Conditions::default()
        };
        for (name, value) in fields {
            let v = Some(value.to_string());
            match *name {
                "if-match" => c.if_match = v,
                "if-none-match" => c.if_none_match = v,
                "if-modified-since" => c.if_modified_since = v,
                "if-unmodified-since" => c.if_unmodified_since = v,
                "range" => c.range = v,
                "if-range" => c.if_range = v,
                _ => unreachable!(),
            }
        }
        c
    }

    #[test]
    fn preconditions_in_order() {
        use Precondition::*;
        let v = validators();
        let lm = v.last_modified().unwrap();
        let earlier = httpdate::fmt_http_date(v.modified.unwrap() - Duration::from_secs(1));
        let check = |fields: &[(&str, &str)]| precondition(&conditions(fields), &v);
        assert_eq!(check(&[]), Proceed);
        assert_eq!(
            check(&[("if-none-match", "\"x\", W/\"a-1.0\"")]),
            NotModified
        );
        assert_eq!(check(&[("if-none-match", "*")]), NotModified);
        assert_eq!(check(&[("if-none-match", "\"x\"")]), Proceed);
        // If-None-Match wins over If-Modified-Since.
        assert_eq!(
            check(&[("if-none-match", "\"x\""), ("if-modified-since", &lm)]),
            Proceed
        );
        assert_eq!(check(&[("if-modified-since", &lm)]), NotModified);
        assert_eq!(check(&[("if-modified-since", &earlier)]), Proceed);
        assert_eq!(check(&[("if-modified-since", "yesterday")]), Proceed);
        assert_eq!(check(&[("if-match", "\"a-1.0\"")]), Proceed);
        assert_eq!(check(&[("if-match", "W/\"a-1.0\"")]), Failed);
        assert_eq!(check(&[("if-unmodified-since", &earlier)]), Failed);
        assert_eq!(check(&[("if-unmodified-since", &lm)]), Proceed);
    }

    #[test]
    fn if_range_names_the_current_version_or_the_whole_file_is_sent() {
        let v = validators();
        let lm = v.last_modified().unwrap();
        let r = |fields: &[(&str, &str)]| ranges(&conditions(fields), &v, 100);
        let part = Ranges::Partial(vec![(0, 9)]);
        assert_eq!(r(&[("range", "bytes=0-9")]), part);
        assert_eq!(
            r(&[("range", "bytes=0-9"), ("if-range", "\"a-1.0\"")]),
            part
        );
        assert_eq!(r(&[("range", "bytes=0-9"), ("if-range", &lm)]), part);
        for stale in [
            "\"b\"",
            "W/\"a-1.0\"",
            "Sat, 01 Jan 2000 00:00:00 GMT",
            "junk",
        ] {
            assert_eq!(
                r(&[("range", "bytes=0-9"), ("if-range", stale)]),
                Ranges::Full
            );
        }
        let mut head = conditions(&[("range", "bytes=0-9")]);
        head.is_get = false;
        assert_eq!(ranges(&head, &v, 100), Ranges::Full);
    }
}
