//! The session cookie on the wire: finding it in `Cookie` request fields, and the `Set-Cookie`
//! field that gives it to (or takes it from) the client.

use http::header::{HeaderMap, HeaderValue, SET_COOKIE};

use super::config::SessionConfig;

/// The values of every cookie called `name` in the `Cookie` field values `fields`, in order.
///
/// Tolerant, as browsers and old clients differ: pairs split at `;` or `,`, blanks around
/// names and values are ignored, a value in double quotes is unquoted, pairs without `=` and
/// bytes that are not text are skipped over. The name matches exactly (cookie names are
/// case-sensitive).
pub(crate) fn cookie_values<'a>(
    fields: impl Iterator<Item = &'a [u8]> + 'a,
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    fields
        .flat_map(|field| field.split(|&b| b == b';' || b == b','))
        .filter_map(move |pair| {
            let eq = pair.iter().position(|&b| b == b'=')?;
            let (key, value) = (trim(&pair[..eq]), trim(&pair[eq + 1..]));
            (key == name.as_bytes()).then(|| unquote(value))
        })
}

fn trim(bytes: &[u8]) -> &[u8] {
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !blank(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !blank(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

fn unquote(value: &[u8]) -> &[u8] {
    match value {
        [b'"', inner @ .., b'"'] => inner,
        _ => value,
    }
}

/// The `Set-Cookie` value giving the client the session `id`, or (`None`) deleting its cookie.
pub(crate) fn set_cookie(config: &SessionConfig, id: Option<&str>) -> Option<HeaderValue> {
    let mut text = format!("{}={}; Path=/", config.cookie_name, id.unwrap_or(""));
    if id.is_none() {
        text.push_str("; Max-Age=0");
    }
    text.push_str("; HttpOnly; SameSite=");
    text.push_str(config.same_site.as_str());
    if config.secure {
        text.push_str("; Secure");
    }
    // The name is a checked token and an id is hex, so this holds; no panic if it ever did not.
    HeaderValue::try_from(text)
        .inspect_err(|e| log::error!("iomux: session cookie not set: {e}"))
        .ok()
}

/// Put `value` in `headers` as the one `Set-Cookie` field for the cookie `name`, replacing an
/// earlier one for it (the last of several would win in a browser anyway) and keeping the
/// fields of other cookies in their order.
pub(crate) fn replace_set_cookie(headers: &mut HeaderMap, name: &str, value: HeaderValue) {
    let ours = |v: &HeaderValue| {
        let bytes = v.as_bytes();
        bytes.len() > name.len() && bytes.starts_with(name.as_bytes()) && bytes[name.len()] == b'='
    };
    if headers.get_all(SET_COOKIE).iter().any(ours) {
        let others: Vec<HeaderValue> = headers
            .get_all(SET_COOKIE)
            .iter()
            .filter(|v| !ours(v))
            .cloned()
            .collect();
        headers.remove(SET_COOKIE);
        for other in others {
            headers.append(SET_COOKIE, other);
        }
    }
    headers.append(SET_COOKIE, value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::SameSite;

    fn values<'a>(fields: &'a [&'a str], name: &'a str) -> Vec<&'a str> {
        cookie_values(fields.iter().map(|f| f.as_bytes()), name)
            .map(|v| std::str::from_utf8(v).unwrap())
            .collect()
    }

    #[test]
    fn finds_the_cookie_however_it_is_written() {
        assert_eq!(values(&["sid=abc"], "sid"), ["abc"]);
        assert_eq!(values(&["a=1; sid=abc; b=2"], "sid"), ["abc"]);
        assert_eq!(values(&["a=1;sid=abc;b=2"], "sid"), ["abc"]);
        assert_eq!(values(&["  sid \t=  abc  ;"], "sid"), ["abc"]);
        assert_eq!(values(&["sid=\"abc\""], "sid"), ["abc"]);
        assert_eq!(values(&["$Version=1, sid=abc, $Path=/"], "sid"), ["abc"]);
        assert_eq!(values(&["sid=a", "x=1; sid=b"], "sid"), ["a", "b"]);
        assert_eq!(values(&["sid=a=b"], "sid"), ["a=b"]);
        assert_eq!(values(&["sid="], "sid"), [""]);
        assert_eq!(
            values(&["SID=abc; sidx=1; xsid=2; sid"], "sid"),
            Vec::<&str>::new()
        );
        assert_eq!(values(&["", ";;;", "=", "=sid"], "sid"), Vec::<&str>::new());
        assert_eq!(values(&["\""], "sid"), Vec::<&str>::new());
        assert_eq!(values(&["sid=\""], "sid"), ["\""]);
    }

    #[test]
    fn set_cookie_attributes() {
        let mut config = SessionConfig::default();
        assert_eq!(
            set_cookie(&config, Some("0f")).unwrap(),
            "iomux-session=0f; Path=/; HttpOnly; SameSite=Lax"
        );
        assert_eq!(
            set_cookie(&config, None).unwrap(),
            "iomux-session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"
        );
        config.secure = true;
        config.same_site = SameSite::Strict;
        config.cookie_name = "sid".into();
        assert_eq!(
            set_cookie(&config, Some("0f")).unwrap(),
            "sid=0f; Path=/; HttpOnly; SameSite=Strict; Secure"
        );
    }

    #[test]
    fn replacing_keeps_other_cookies_in_order() {
        let mut headers = HeaderMap::new();
        let v = HeaderValue::from_static;
        headers.append(SET_COOKIE, v("a=1"));
        headers.append(SET_COOKIE, v("sid=old"));
        headers.append(SET_COOKIE, v("sidx=2"));
        replace_set_cookie(&mut headers, "sid", v("sid=new"));
        let all: Vec<_> = headers.get_all(SET_COOKIE).iter().collect();
        assert_eq!(all, ["a=1", "sidx=2", "sid=new"]);
        replace_set_cookie(&mut headers, "sid", v("sid=newer"));
        let all: Vec<_> = headers.get_all(SET_COOKIE).iter().collect();
        assert_eq!(all, ["a=1", "sidx=2", "sid=newer"]);
    }
}
