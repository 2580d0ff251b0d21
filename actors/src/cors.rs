//! CORS headers of the pub/sub replies, by the [`AllowOrigin`] policy (nchan's defaults).

use iomux::http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ALLOW,
};
use iomux::http::{HeaderMap, HeaderValue, StatusCode};
use iomux::{Reply, Request};

use crate::config::AllowOrigin;

/// Headers a subscriber script may read: the cursor of the reply.
const EXPOSE: &str = "Last-Modified, Etag, Content-Type";
/// Request headers a subscriber may send: nchan's list, plus `Etag` (sent by
/// NchanSubscriber.js to resume) and `Last-Event-ID`.
pub(crate) const SUBSCRIBER_HEADERS: &str =
    "If-None-Match, If-Modified-Since, Content-Type, Cache-Control, X-EventSource-Event, Etag, Last-Event-ID";
/// Request headers a publisher may send.
pub(crate) const PUBLISHER_HEADERS: &str = "Content-Type, X-EventSource-Event";

/// The `Access-Control-Allow-Origin` value for this request, if it gets CORS headers at all.
pub(crate) fn allowed_origin(policy: &AllowOrigin, request: &Request) -> Option<HeaderValue> {
    let origin = request.header_bytes("origin")?;
    match policy {
        AllowOrigin::Echo => HeaderValue::from_bytes(origin).ok(),
        AllowOrigin::Only(allowed) if allowed == "*" || allowed.as_bytes() == origin => {
            HeaderValue::from_str(allowed).ok()
        }
        AllowOrigin::Only(_) | AllowOrigin::Never => None,
    }
}

/// Add the CORS headers for `origin` (credentials are allowed except with `*`); with `expose`,
/// also let scripts read the cursor headers.
pub(crate) fn add(headers: &mut HeaderMap, origin: Option<HeaderValue>, expose: bool) {
    let Some(origin) = origin else { return };
    if expose {
        headers.insert(
            ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE),
        );
    }
    if origin != "*" {
        headers.insert(
            ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
}

/// The reply to `OPTIONS`: `Allow`, and the preflight headers when the request has an allowed
/// `Origin`.
pub(crate) fn preflight(
    policy: &AllowOrigin,
    request: &Request,
    methods: &'static str,
    allow_headers: &'static str,
) -> Reply {
    let mut reply = Reply::new(StatusCode::OK).header(ALLOW, HeaderValue::from_static(methods));
    if let Some(origin) = allowed_origin(policy, request) {
        let headers = reply.headers_mut();
        headers.insert(
            ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(allow_headers),
        );
        headers.insert(
            ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(methods),
        );
        add(headers, Some(origin), false);
    }
    reply
}
