//! The `multipart/form-data` body format (RFC 7578 over RFC 2046 §5.1): a complete body, already
//! in memory, split into its parts. What the parts become (fields, uploads) is
//! [`params`](crate::params)'s business.
//!
//! Tolerant where clients differ, strict where the format leaves no doubt: the preamble and the
//! epilogue are ignored; lines end with CRLF, or with LF alone if the first delimiter line does
//! (then the whole body is read that way); a candidate delimiter followed by anything but `--`,
//! or transport padding and a line break, is part content. Nothing here panics on any input,
//! and the work is linear in the body's size: delimiters are searched for with their line break
//! in front, so two candidates never overlap.

use std::borrow::Cow;
use std::ops::Range;

use crate::request::{decode_text, split_unquoted, unquote};

/// Longest boundary accepted, in bytes (RFC 2046 allows 70; some clients go beyond).
pub(crate) const MAX_BOUNDARY: usize = 200;

/// One part of a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Part {
    /// The `name` of its `Content-Disposition: form-data`; `None` without one (the part is
    /// then not a form field, and is skipped).
    pub(crate) name: Option<String>,
    /// The `filename` (or `filename*`) of its `Content-Disposition`: the part is a file.
    pub(crate) filename: Option<String>,
    /// Its `Content-Type` field, if any.
    pub(crate) content_type: Option<String>,
    /// Where its content is in the body.
    pub(crate) content: Range<usize>,
}

/// Why a body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Error {
    /// More parts than allowed.
    TooManyParts,
    /// Not a multipart body with this boundary; the reason.
    Malformed(&'static str),
}

/// Where a candidate delimiter leads.
enum After {
    /// The close delimiter (`--boundary--`): the body is over.
    Close,
    /// A part starts at this offset; its delimiter line ended with CRLF (`true`) or LF.
    Part(usize, bool),
}

/// Split `body` into its parts, refusing more than `max_parts`.
pub(crate) fn parse(body: &[u8], boundary: &[u8], max_parts: usize) -> Result<Vec<Part>, Error> {
    if boundary.is_empty() || boundary.len() > MAX_BOUNDARY {
        return Err(Error::Malformed("boundary empty or too long"));
    }
    let dash_boundary = [b"--", boundary].concat();
    // The first delimiter: at the start of the body, or of a line after a preamble.
    let first = if body.starts_with(&dash_boundary) {
        after_delimiter(body, dash_boundary.len())
    } else {
        None
    };
    let (mut next, crlf) = match first {
        Some(After::Close) => return Ok(Vec::new()),
        Some(After::Part(start, crlf)) => (start, crlf),
        None => {
            let line_start = [&b"\n"[..], &dash_boundary].concat();
            let mut from = 0;
            loop {
                let at = find(body, &line_start, from).ok_or(Error::Malformed("no delimiter"))?;
                match after_delimiter(body, at + line_start.len()) {
                    Some(After::Close) => return Ok(Vec::new()),
                    Some(After::Part(start, crlf)) => break (start, crlf),
                    None => from = at + 1,
                }
            }
        }
    };
    let delimiter = [if crlf { &b"\r\n"[..] } else { b"\n" }, &dash_boundary].concat();
    let mut parts = Vec::new();
    loop {
        if parts.len() == max_parts {
            return Err(Error::TooManyParts);
        }
        let (mut part, content_start) = part_head(body, next)?;
        // The content ends at the next delimiter that is one.
        let mut from = content_start;
        let after = loop {
            let at = find(body, &delimiter, from).ok_or(Error::Malformed("no close delimiter"))?;
            if let Some(after) = after_delimiter(body, at + delimiter.len()) {
                part.content = content_start..at;
                break after;
            }
            from = at + 1;
        };
        parts.push(part);
        match after {
            After::Close => return Ok(parts),
            After::Part(start, _) => next = start,
        }
    }
}

/// What follows `--boundary` ending at `at`: `--`, or transport padding and a line break.
fn after_delimiter(body: &[u8], at: usize) -> Option<After> {
    let rest = body.get(at..)?;
    if rest.starts_with(b"--") {
        return Some(After::Close);
    }
    let padding = rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    match &rest[padding..] {
        [b'\r', b'\n', ..] => Some(After::Part(at + padding + 2, true)),
        [b'\n', ..] => Some(After::Part(at + padding + 1, false)),
        _ => None,
    }
}

/// Read a part's header fields from `start` up to the empty line; the part (its content not
/// yet known) and where its content starts.
fn part_head(body: &[u8], start: usize) -> Result<(Part, usize), Error> {
    let mut part = Part {
        name: None,
        filename: None,
        content_type: None,
        content: 0..0,
    };
    let mut pos = start;
    loop {
        let rest = &body[pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(Error::Malformed("part head without an end"))?;
        let line = rest[..end].strip_suffix(b"\r").unwrap_or(&rest[..end]);
        pos += end + 1;
        if line.is_empty() {
            return Ok((part, pos));
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(Error::Malformed("part header field without a colon"));
        };
        let name = line[..colon].trim_ascii();
        let value = String::from_utf8_lossy(line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-disposition") {
            disposition(&value, &mut part);
        } else if name.eq_ignore_ascii_case(b"content-type") {
            part.content_type = Some(value.into_owned());
        }
    }
}

/// Read `form-data; name="field"; filename="file.txt"` into `part`.
fn disposition(value: &str, part: &mut Part) {
    let mut params = split_unquoted(value, ';');
    if !params
        .next()
        .is_some_and(|kind| kind.trim().eq_ignore_ascii_case("form-data"))
    {
        return;
    }
    let mut extended = None;
    for param in params {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("name") {
            part.name = Some(unquote(value).into_owned());
        } else if name.eq_ignore_ascii_case("filename") {
            part.filename = Some(unquote(value).into_owned());
        } else if name.eq_ignore_ascii_case("filename*") {
            extended = ext_value(value);
        }
    }
    // RFC 6266 §4.3: `filename*` wins where both are given.
    if let Some(filename) = extended {
        part.filename = Some(filename);
    }
}

/// An RFC 8187 `ext-value` (`UTF-8''%e2%82%ac.txt`) in UTF-8 or ISO-8859-1; `None` otherwise.
fn ext_value(value: &str) -> Option<String> {
    let mut fields = value.splitn(3, '\'');
    let (charset, _language, encoded) = (fields.next()?, fields.next()?, fields.next()?);
    let bytes: Cow<'_, [u8]> = percent_encoding::percent_decode_str(encoded).into();
    let charset = if charset.eq_ignore_ascii_case("utf-8") {
        None
    } else if charset.eq_ignore_ascii_case("iso-8859-1") {
        Some("iso-8859-1")
    } else {
        return None;
    };
    Some(decode_text(&bytes, charset).into_owned())
}

/// The first occurrence of `needle` (not empty) in `hay` at or after `from`.
fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let (&first, tail) = needle.split_first()?;
    let mut at = from;
    while at + needle.len() <= hay.len() {
        let skip = hay[at..=hay.len() - needle.len()]
            .iter()
            .position(|&b| b == first)?;
        at += skip;
        if hay[at + 1..at + needle.len()] == *tail {
            return Some(at);
        }
        at += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(body: &[u8], boundary: &str) -> Result<Vec<(String, String)>, Error> {
        Ok(parse(body, boundary.as_bytes(), 100)?
            .into_iter()
            .map(|p| {
                let content = String::from_utf8_lossy(&body[p.content]).into_owned();
                (p.name.unwrap_or_else(|| "?".into()), content)
            })
            .collect())
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, c)| (n.to_string(), c.to_string()))
            .collect()
    }

    #[test]
    fn fields_files_preamble_epilogue() {
        let body = b"preamble\r\n--XyZ\r\n\
            Content-Disposition: form-data; name=\"a\"\r\n\r\n\
            one\r\n--XyZ  \r\n\
            content-disposition: FORM-DATA; name=b; filename=\"C:\\dir\\f \\\"q\\\".txt\"\r\n\
            Content-Type: image/png\r\n\r\n\
            \x00\r\n--XyZnot-a-delimiter\r\n\r\n--XyZ\r\n\
            Content-Disposition: form-data; name=\"c\"\r\n\r\n\
            \r\n--XyZ--\r\nepilogue";
        let parts = parse(body, b"XyZ", 10).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[1].filename.as_deref(), Some(r#"C:\dir\f "q".txt"#));
        assert_eq!(parts[1].content_type.as_deref(), Some("image/png"));
        assert_eq!(
            names(body, "XyZ").unwrap(),
            pairs(&[
                ("a", "one"),
                ("b", "\0\r\n--XyZnot-a-delimiter\r\n"),
                ("c", "")
            ])
        );
    }

    #[test]
    fn lf_only_bodies() {
        let body = b"--b\nContent-Disposition: form-data; name=x\n\nv\n--b--\n";
        assert_eq!(names(body, "b").unwrap(), pairs(&[("x", "v")]));
    }

    #[test]
    fn extended_filename_wins() {
        let body = b"--b\r\nContent-Disposition: form-data; name=f; filename=\"plain.txt\"; \
            filename*=UTF-8''%E2%82%AC%20rates.txt\r\n\r\nx\r\n--b--";
        let parts = parse(body, b"b", 10).unwrap();
        assert_eq!(parts[0].filename.as_deref(), Some("€ rates.txt"));
    }

    #[test]
    fn parts_without_form_data_name() {
        let body =
            b"--b\r\nContent-Disposition: attachment; name=x\r\n\r\nv\r\n--b\r\n\r\nw\r\n--b--";
        assert_eq!(names(body, "b").unwrap(), pairs(&[("?", "v"), ("?", "w")]));
    }

    #[test]
    fn refusals() {
        let malformed = |body: &[u8]| match parse(body, b"b", 10) {
            Err(Error::Malformed(_)) => {}
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(body)),
        };
        malformed(b"");
        malformed(b"no delimiter at all");
        malformed(b"--b\r\nContent-Disposition: form-data; name=x\r\n\r\nv"); // no close
        malformed(b"--b\r\nContent-Disposition: form-data; name=x\r\n"); // head not ended
        malformed(b"--b\r\nno colon\r\n\r\nv\r\n--b--");
        malformed(b"x--b\r\n\r\nv\r\n"); // a delimiter only at the start of a line
        assert_eq!(parse(b"--b--", b"b", 10), Ok(Vec::new()));
        // All preamble, then the close delimiter.
        assert_eq!(parse(b"x--b\r\n\r\nv\r\n--b--", b"b", 10), Ok(Vec::new()));
        assert!(matches!(
            parse(b"--\r\n", b"", 10),
            Err(Error::Malformed(_))
        ));
        let long = vec![b'b'; MAX_BOUNDARY + 1];
        assert!(matches!(parse(b"", &long, 10), Err(Error::Malformed(_))));
        let three = b"--b\r\n\r\n1\r\n--b\r\n\r\n2\r\n--b\r\n\r\n3\r\n--b--";
        assert_eq!(parse(three, b"b", 3).map(|p| p.len()), Ok(3));
        assert_eq!(parse(three, b"b", 2), Err(Error::TooManyParts));
        assert_eq!(parse(three, b"b", 0), Err(Error::TooManyParts));
    }

    #[test]
    fn preambles_and_dash_heavy_bodies() {
        let body = b"pre--b\r\n--b-x\r\n--b\r\n\r\nv\r\n--b--";
        assert_eq!(names(body, "b").unwrap(), pairs(&[("?", "v")]));
        // Boundaries and bodies made of dashes: refused, after one linear pass.
        let dashes = "-".repeat(MAX_BOUNDARY);
        let mut body = b"x".to_vec();
        body.resize(1 << 20, b'-');
        assert!(matches!(
            parse(&body, dashes.as_bytes(), 10),
            Err(Error::Malformed(_))
        ));
        let mut body = format!("--{dashes}\r\n\r\n").into_bytes();
        for _ in 0..4096 {
            body.extend_from_slice(format!("\r\n--{dashes}x").as_bytes());
        }
        assert!(matches!(
            parse(&body, dashes.as_bytes(), 10),
            Err(Error::Malformed("no close delimiter"))
        ));
    }

    #[test]
    fn find_needles() {
        assert_eq!(find(b"abcabd", b"abd", 0), Some(3));
        assert_eq!(find(b"abcabd", b"ab", 1), Some(3));
        assert_eq!(find(b"ab", b"abc", 0), None);
        assert_eq!(find(b"abc", b"c", 3), None);
        assert_eq!(find(b"abc", b"", 0), None);
        assert_eq!(find(b"abc", b"c", 9), None);
    }

    proptest::proptest! {
        #[test]
        fn any_body_parses_or_is_refused(
            body in proptest::collection::vec(
                proptest::sample::select(b"-b\r\n:;=\" xform-datanme".to_vec()), 0..200),
            max in 0usize..4,
        ) {
            if let Ok(parts) = parse(&body, b"b", max) {
                proptest::prop_assert!(parts.len() <= max);
                for part in parts {
                    proptest::prop_assert!(part.content.start <= part.content.end);
                    proptest::prop_assert!(part.content.end <= body.len());
                }
            }
        }
    }
}
