#!/usr/bin/env python3
"""Writes the golden corpus of HTTP/1.1 wire transcripts that tests/corpus.rs replays.

Run it from anywhere: `python3 tests/corpus/generate.py`. It rewrites every case file in this
folder (and removes case files of cases no longer listed), so the committed bytes always come
from this script: review a change here, then regenerate.

For each case NAME it writes:

* `NAME.request`: the exact bytes the client sends, in one write (any byte: CR, LF, NUL...).
* `NAME.response`: the exact bytes the server must answer, with every Date field value replaced
  by `<DATE>`, followed by one last line: `-- close` if the server must close the connection
  after these bytes, `-- open` if it must keep it open (the test then sends `GET /probe` on the
  same connection and expects its reply).
* `NAME.config` (optional): `key=value` lines overriding the server's `Config` for that case.

Expected answers follow RFC 9112 (HTTP/1.1 message syntax and framing) and RFC 9110 (semantics)
and the issue "Parsing and framing, strictly per RFC 9112", NOT what the server happens to answer:
a case the server gets wrong stays here, failing, until the server is fixed. `INDEX.md` lists every
case with the rule it checks.

The application under test (defined in tests/corpus.rs) answers every request with 200 and a
`text/plain` body echoing it:

    method=GET
    target=/path?query
    version=HTTP/1.1
    body[5]=hello

(`body[N]=` is followed by the N decoded body bytes and a final LF.)
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

CT = b"content-type: text/plain; charset=utf-8\r\n"

REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    413: "Payload Too Large",
    414: "URI Too Long",
    417: "Expectation Failed",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
    505: "HTTP Version Not Supported",
}

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def b(s):
    return s.encode("latin-1") if isinstance(s, str) else s


def echo_body(method, target, body=b"", version="HTTP/1.1"):
    return (
        b(f"method={method}\ntarget={target}\nversion={version}\nbody[{len(body)}]=")
        + b(body)
        + b"\n"
    )


def ok(method, target, body=b"", version="HTTP/1.1", connection=None, head=False):
    """The exact 200 reply of the echo application.

    `connection`: the Connection field the server must add (`close` on the last reply of a
    connection, `keep-alive` on a persistent HTTP/1.0 one). `head`: a HEAD request, so the head
    alone (with the Content-Length the GET body would have).
    """
    text = echo_body(method, target, body, version)
    out = b"HTTP/1.1 200 OK\r\nDate: <DATE>\r\n" + CT + b(f"Content-Length: {len(text)}\r\n")
    if connection:
        out += b(f"Connection: {connection}\r\n")
    out += b"\r\n"
    return out if head else out + text


def error(status):
    """The exact reply the server sends when it refuses a request (it then closes)."""
    text = b(f"{status} {REASONS[status]}\n")
    return (
        b(f"HTTP/1.1 {status} {REASONS[status]}\r\nDate: <DATE>\r\n")
        + CT
        + b(f"Content-Length: {len(text)}\r\nConnection: close\r\n\r\n")
        + text
    )


def get(target="/", host="x", extra=b"", version="HTTP/1.1"):
    return b(f"GET {target} {version}\r\nHost: {host}\r\n") + b(extra) + b"\r\n"


def post(target, body, extra=b""):
    body = b(body)
    return (
        b(f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n")
        + b(extra)
        + b"\r\n"
        + body
    )


def chunked(target, chunks, extra=b""):
    """POST with `Transfer-Encoding: chunked` and the given raw chunked body bytes."""
    return (
        b(f"POST {target} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n")
        + b(extra)
        + b"\r\n"
        + b(chunks)
    )


def with_header(line):
    """A GET whose head carries one extra raw header line (without its CRLF)."""
    return b"GET / HTTP/1.1\r\nHost: x\r\n" + b(line) + b"\r\n\r\n"


CASES = []


def case(name, request, response, marker, why, config=None):
    assert marker in ("open", "close"), name
    assert all(c.isalnum() or c == "-" for c in name), name
    assert not any(c[0] == name for c in CASES), f"duplicate case {name}"
    CASES.append((name, b(request), b(response), marker, why, config))


# ---------------------------------------------------------------------------------------------
# Valid requests
# ---------------------------------------------------------------------------------------------

case("get", get("/hello?x=1", host="example"), ok("GET", "/hello?x=1"), "open",
     "A plain GET: 200, the connection persists (RFC 9112 §9.3).")
case("get-connection-close", get("/bye", extra="Connection: close\r\n"),
     ok("GET", "/bye", connection="close"), "close",
     "`Connection: close` from the client: the reply says so and the server closes (§9.6).")
case("get-http10", b"GET /old HTTP/1.0\r\n\r\n",
     ok("GET", "/old", version="HTTP/1.0", connection="close"), "close",
     "HTTP/1.0 without keep-alive: no Host needed, the connection closes after the reply (§9.3).")
case("get-http10-keep-alive", b"GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
     ok("GET", "/old", version="HTTP/1.0", connection="keep-alive"), "open",
     "HTTP/1.0 with `Connection: keep-alive`: persistent (§9.3, Appendix C.2.2).")
case("get-leading-crlf", b"\r\n" + get("/lead"), ok("GET", "/lead"), "open",
     "An empty line before the request-line is ignored (§2.2: SHOULD ignore at least one).")
case("get-lf-line-endings", b"GET /lf HTTP/1.1\nHost: x\n\n", ok("GET", "/lf"), "open",
     "A bare LF as line terminator MAY be accepted (§2.2); the server accepts it.")
case("get-absolute-form", get("http://example.com/abs?q", host="example.com"),
     ok("GET", "http://example.com/abs?q"), "open",
     "absolute-form request-target (§3.2.2).")
case("options-asterisk", b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", ok("OPTIONS", "*"), "open",
     "asterisk-form request-target (§3.2.4).")
case("header-value-htab-and-obs-text", with_header(b"X-A: a\tb \x80\xff c"), ok("GET", "/"),
     "open",
     "HTAB, SP and obs-text (%x80-FF) are allowed inside a field value (§5, RFC 9110 §5.5).")
case("host-empty", b"GET / HTTP/1.1\r\nHost:\r\n\r\n", ok("GET", "/"), "open",
     "An empty Host is valid when the target has no authority (§3.2).")
case("post-content-length", post("/echo", "hello\r\nworld"), ok("POST", "/echo", "hello\r\nworld"),
     "open", "A Content-Length body, CRLF inside the data (§6.2).")
case("head", b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n", ok("HEAD", "/h", head=True), "open",
     "HEAD: the GET head with its Content-Length, and no body (RFC 9110 §9.3.2, §6.3 item 1).")
case("head-then-get",
     b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n" + get("/g"),
     ok("HEAD", "/h", head=True) + ok("GET", "/g"), "open",
     "No body bytes follow a HEAD reply: the next reply starts right after its head.")

# Pipelining (§9.3.2): all replies, in request order.
case("pipelined-three-gets", get("/1") + get("/2") + get("/3"),
     ok("GET", "/1") + ok("GET", "/2") + ok("GET", "/3"), "open",
     "Three GETs in one write: three replies in order (§9.3.2).")
case("pipelined-mixed-bodies",
     get("/a")
     + post("/b", "hello world")
     + chunked("/c", "4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n")
     + b"HEAD /d HTTP/1.1\r\nHost: x\r\n\r\n"
     + b"PUT /e HTTP/1.1\r\nHost: x\r\ncontent-length: 3\r\n\r\nxyz"
     + get("/f"),
     ok("GET", "/a") + ok("POST", "/b", "hello world") + ok("POST", "/c", "Wikipedia")
     + ok("HEAD", "/d", head=True) + ok("PUT", "/e", "xyz") + ok("GET", "/f"), "open",
     "GET, Content-Length body, chunked body, HEAD, PUT, GET in one write: six replies in order.")

# Versions (§2.3, RFC 9110 §2.5, §15.6.6).
case("version-http12", get("/later", version="HTTP/1.2"), ok("GET", "/later"), "open",
     "HTTP/1.2: a later minor version of 1.x is served as HTTP/1.1 (RFC 9110 §2.5).")
case("version-http20", get(version="HTTP/2.0"), error(505), "close",
     "HTTP/2.0 on an HTTP/1.1 connection: major version not supported, 505 (RFC 9110 §15.6.6).")
case("version-http31", get(version="HTTP/3.1"), error(505), "close",
     "HTTP/3.1: 505.")
case("version-h2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", error(505), "close",
     "The HTTP/2 connection preface (prior knowledge) on an HTTP/1.1 server: 505.")

# Expect: 100-continue (RFC 9110 §10.1.1).
case("expect-100-continue",
     b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
     CONTINUE + error(408), "close",
     "Head alone with `Expect: 100-continue`: the interim 100 comes at once; the body never "
     "does, so after body_timeout a 408 and close.",
     config="body_timeout_ms=100")
case("expect-100-continue-body-included",
     b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
     ok("POST", "/e", "hello"), "open",
     "The body came with the head: the server MAY omit the 100 (RFC 9110 §10.1.1) and does.")
case("expect-100-continue-http10",
     b"POST /e HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
     ok("POST", "/e", "hello", version="HTTP/1.0", connection="close"), "close",
     "A 100-continue expectation in an HTTP/1.0 request MUST be ignored (RFC 9110 §10.1.1).")
case("expect-100-continue-no-body", get("/nb", extra="Expect: 100-continue\r\n"),
     ok("GET", "/nb"), "open",
     "No content: no 100, just the reply.")
case("expect-unknown", post("/e", "hi", extra="Expect: 200-ok\r\n"), error(417), "close",
     "An expectation other than 100-continue: 417 (RFC 9110 §10.1.1).")

# Chunked bodies (§7.1).
case("chunked-extensions-trailers",
     chunked("/c",
             b"4;name=value\r\nWiki\r\n"
             b"5;a;b=\"quoted; string\"\r\npedia\r\n"
             b"E\r\n in\r\n\r\nchunks.\r\n"
             b"0;last\r\nX-Trailer: one\r\nX-Other: two\r\n\r\n"),
     ok("POST", "/c", "Wikipedia in\r\n\r\nchunks."), "open",
     "Chunk extensions (token and quoted-string values) are ignored, trailers read and "
     "discarded, upper-case hex sizes (§7.1.1, §7.1.2).")
case("chunked-bws-before-extension", chunked("/c", b"5 ;a=b\r\nhello\r\n0\r\n\r\n"),
     ok("POST", "/c", "hello"), "open",
     "BWS before `;` is part of the chunk-ext grammar (§7.1.1).")
case("chunked-size-leading-zeros", chunked("/c", b"00000000000000005\r\nhello\r\n0\r\n\r\n"),
     ok("POST", "/c", "hello"), "open",
     "chunk-size = 1*HEXDIG: 17 digits with leading zeros is the valid size 5 (§7.1; only the "
     "value may overflow, not the digit count).")
case("chunked-coding-case-insensitive",
     b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: CHUNKED\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
     ok("POST", "/c", "abc"), "open",
     "Transfer coding names are case-insensitive (RFC 9110 §10.1.4, RFC 9112 §7).")

# Content-Length accepted forms (RFC 9110 §8.6).
case("content-length-leading-zeros", post("/z", "hello").replace(b"Length: 5", b"Length: 005"),
     ok("POST", "/z", "hello"), "open",
     "Content-Length = 1*DIGIT: leading zeros are valid.")
case("content-length-list-same-value",
     b"POST /l HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello",
     ok("POST", "/l", "hello"), "open",
     "The same value repeated as a list MAY be accepted as that value (RFC 9110 §8.6).")
case("content-length-repeated-field-same-value",
     b"POST /l HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
     ok("POST", "/l", "hello"), "open",
     "The same value in two field lines: accepted (RFC 9110 §8.6).")

# Limits at their boundary: accepted.
def padded_head(size):
    """A GET whose head is exactly `size` bytes long."""
    start, end = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ", b"\r\n\r\n"
    return start + b"p" * (size - len(start) - len(end)) + end


case("limit-head-exactly-max", padded_head(256),
     ok("GET", "/"), "open",
     "A head of exactly max_head_size (256) bytes is accepted.",
     config="max_head_size=256")
case("limit-headers-exactly-max",
     b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(7)) + b"\r\n",
     ok("GET", "/"), "open",
     "Exactly max_headers (8) fields are accepted.",
     config="max_headers=8")
case("limit-body-exactly-max", post("/m", "0123456789abcdef"), ok("POST", "/m", "0123456789abcdef"),
     "open", "A body of exactly max_body_size (16) bytes is accepted.",
     config="max_body_size=16")

# ---------------------------------------------------------------------------------------------
# Refusals: each answered with the error reply, then the connection closes
# ---------------------------------------------------------------------------------------------

# Request line (§3).
for name, raw, why in [
    ("garbage", b"GARBAGE\r\n\r\n", "one word"),
    ("missing-version", b"GET /\r\n\r\n", "no HTTP-version (HTTP/0.9 style)"),
    ("space-in-target", b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", "a space inside the target"),
    ("double-space", b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", "two SP between method and target"),
    ("leading-space", b" GET / HTTP/1.1\r\nHost: x\r\n\r\n", "SP before the method"),
    ("bare-cr", b"GET / HTTP/1.1\rHost: x\r\n\r\n", "a bare CR ends the request-line"),
    ("nul-in-target", b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n", "NUL in the target"),
    ("bad-method-char", b"G(ET / HTTP/1.1\r\nHost: x\r\n\r\n", "`(` is not a tchar"),
    ("lowercase-version", b"GET / http/1.1\r\nHost: x\r\n\r\n", "HTTP-name is case-sensitive"),
    ("version-two-digit-minor", b"GET / HTTP/1.10\r\nHost: x\r\n\r\n",
     "HTTP-version is DIGIT.DIGIT"),
    ("trailing-space", b"GET / HTTP/1.1 \r\nHost: x\r\n\r\n", "SP after the version"),
    ("tls-client-hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "TLS on the HTTP port"),
]:
    case("request-line-" + name, raw, error(400), "close",
         f"Invalid request-line ({why}): 400 and close (§3, §2.2).")

# Host (§3.2).
case("host-missing", b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", error(400), "close",
     "HTTP/1.1 without Host: MUST 400 (§3.2).")
case("host-twice", b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", error(400), "close",
     "More than one Host field line: MUST 400 (§3.2).")
case("host-invalid-space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", error(400), "close",
     "A Host value that is not uri-host [\":\" port]: MUST 400 (§3.2).")
case("host-invalid-list", b"GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", error(400), "close",
     "A comma list in Host is an invalid field value: MUST 400 (§3.2).")

# Field syntax (§5).
for name, line, why in [
    ("bare-cr-in-value", b"X-A: a\rb", "a bare CR inside a value (§2.2: MUST reject or replace)"),
    ("bare-cr-before-crlf", b"X-A: a\r", "a CR right before the CRLF"),
    ("nul-in-value", b"X-A: a\x00b", "NUL in a value (RFC 9110 §5.5: MUST reject or replace)"),
    ("ctl-01-in-value", b"X-A: a\x01b", "%x01 in a value is not field-vchar"),
    ("del-in-value", b"X-A: a\x7fb", "DEL (%x7F) in a value is not field-vchar"),
    ("vt-in-value", b"X-A: a\x0bb", "VT (%x0B) in a value is not field-vchar"),
    ("ctl-01-in-name", b"X\x01A: b", "%x01 in a field name is not a tchar"),
    ("del-in-name", b"X\x7fA: b", "DEL in a field name is not a tchar"),
    ("space-before-colon", b"X-A : b", "SP between name and colon: MUST 400 (§5.1)"),
    ("tab-before-colon", b"X-A\t: b", "HTAB between name and colon: MUST 400 (§5.1)"),
    ("empty-name", b": b", "an empty field name"),
    ("no-colon", b"X-A b", "a field line without a colon"),
    ("obs-fold-sp", b"X-A: a\r\n b", "obs-fold with SP (§5.2: 400 or replace by SP; 400 here)"),
    ("obs-fold-htab", b"X-A: a\r\n\tb", "obs-fold with HTAB"),
]:
    case("header-" + name, with_header(line), error(400), "close", f"Invalid field line: {why}.")
case("header-whitespace-after-request-line", b"GET / HTTP/1.1\r\n Host: x\r\n\r\n", error(400),
     "close",
     "Whitespace between the start-line and the first field (§2.2: reject, or ignore that line "
     "and then Host is missing): 400.")

# Limits (RFC 9110 §15.5.15, RFC 6585 §5).
case("limit-head-too-large", padded_head(257),
     error(431), "close",
     "A head one byte over max_head_size (256): 431.", config="max_head_size=256")
case("limit-head-too-large-many-fields",
     b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-F%d: %s\r\n" % (i, b"v" * 40) for i in range(8))
     + b"\r\n",
     error(431), "close", "Small fields adding up past max_head_size (256): 431.",
     config="max_head_size=256")
case("limit-too-many-headers",
     b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(8)) + b"\r\n",
     error(431), "close", "max_headers (8) + 1 fields: 431.", config="max_headers=8")
case("limit-uri-too-long", b"GET /" + b"u" * 300 + b" HTTP/1.1\r\nHost: x\r\n\r\n", error(414),
     "close", "A request-line longer than max_head_size (256): 414 (RFC 9110 §15.5.15).",
     config="max_head_size=256")
case("limit-uri-too-long-default-config", b"GET /" + b"u" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
     error(414), "close",
     "A 9 KB request-line with the default max_head_size (8192), read in several reads: 414.")

# Content-Length (RFC 9112 §6.3 item 5, RFC 9110 §8.6).
for name, value in [
    ("letters", "abc"),
    ("trailing-letter", "5a"),
    ("hex", "0x5"),
    ("plus-sign", "+5"),
    ("minus-sign", "-5"),
    ("overflow", "18446744073709551616"),
    ("overflow-long", "99999999999999999999999999"),
    ("empty", ""),
    ("inner-space", "1 2"),
    ("list-different-values", "5, 6"),
    ("list-empty-element", "5,"),
]:
    case("content-length-" + name,
         b"POST /cl HTTP/1.1\r\nHost: x\r\nContent-Length: " + b(value) + b"\r\n\r\nhello",
         error(400), "close",
         f"Invalid Content-Length `{value}`: 400 and close (§6.3 item 5).")
case("content-length-fields-different-values",
     b"POST /cl HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
     error(400), "close",
     "Two Content-Length field lines with different values: 400 and close (§6.3 item 5).")

# Transfer-Encoding (§6.1, §6.3).
case("te-and-content-length",
     b"POST /t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
     b"0\r\n\r\n" + get("/smuggled"),
     error(400), "close",
     "Transfer-Encoding and Content-Length together: 400 and close (§6.1, §6.3 item 3; this "
     "server rejects rather than ignoring Content-Length); the request behind is never served.")
case("content-length-and-te",
     b"POST /t HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"0\r\n\r\n" + get("/smuggled"),
     error(400), "close",
     "The same, Content-Length first.")
case("te-gzip", b"POST /t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", error(501),
     "close", "An unknown transfer coding: 501 (§6.1: SHOULD 501), then close.")
case("te-gzip-chunked",
     b"POST /t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
     error(501), "close", "gzip before chunked: gzip is not implemented, 501.")
case("te-chunked-gzip",
     b"POST /t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
     error(400), "close", "chunked not the final coding: MUST 400 and close (§6.3 item 4).")
case("te-chunked-twice",
     b"POST /t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked"
     b"\r\n\r\n0\r\n\r\n",
     error(400), "close", "chunked applied twice (§7: MUST NOT): 400.")
case("te-http10", b"POST /t HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", error(400),
     "close", "Transfer-Encoding in HTTP/1.0: faulty framing (§6.1): 400 and close.")

# Chunked framing errors (§7.1).
for name, chunks, why in [
    ("bad-size", b"zz\r\nhello\r\n0\r\n\r\n", "a chunk-size that is not hex"),
    ("negative-size", b"-5\r\nhello\r\n0\r\n\r\n", "a sign before the chunk-size"),
    ("empty-size", b"\r\nhello\r\n0\r\n\r\n", "an empty chunk-size"),
    ("size-overflow", b"10000000000000000\r\nhello\r\n0\r\n\r\n", "a chunk-size of 2^64"),
    ("size-trailing-junk", b"5 x\r\nhello\r\n0\r\n\r\n",
     "junk after the chunk-size that is not BWS \";\" chunk-ext"),
    ("size-bare-lf", b"5\nhello\r\n0\r\n\r\n", "the chunk-size line ended by a bare LF"),
    ("extension-bare-lf", b"5;a\nhello\r\n0\r\n\r\n", "a bare LF inside a chunk extension"),
    ("missing-crlf-after-data", b"5\r\nhelloXX\r\n0\r\n\r\n", "data longer than its size"),
    ("missing-crlf-after-data-next-size", b"5\r\nhello0\r\n\r\n", "no CRLF after the data"),
    ("bare-lf-after-data", b"5\r\nhello\n0\r\n\r\n", "a bare LF after the data"),
    ("trailer-obs-fold", b"5\r\nhello\r\n0\r\nX-T: a\r\n b\r\n\r\n", "obs-fold in the trailer"),
    ("trailer-no-colon", b"5\r\nhello\r\n0\r\nX-T a\r\n\r\n",
     "a trailer line that is not a field-line"),
    ("trailer-ctl-in-value", b"5\r\nhello\r\n0\r\nX-T: a\x01b\r\n\r\n",
     "%x01 in a trailer field value"),
    ("missing-final-crlf-then-request", b"5\r\nhello\r\n0\r\n" + get("/next"),
     "no empty line after the last chunk: the next request's request-line is not a trailer "
     "field-line"),
    ("trailer-space-before-colon", b"5\r\nhello\r\n0\r\nX-T : a\r\n\r\n",
     "SP between a trailer field name and the colon"),
]:
    case("chunked-" + name, chunked("/c", chunks), error(400), "close",
         f"Chunked framing error ({why}): 400 and close (§7.1).")

# Body limits: refused from the head, without reading the body (RFC 9110 §15.5.14).
case("limit-body-declared-too-large",
     b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\n\r\n", error(413), "close",
     "Content-Length over max_body_size (16), body not sent: 413 at once, without waiting.",
     config="max_body_size=16")
case("limit-body-declared-too-large-expect",
     b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\nExpect: 100-continue\r\n\r\n",
     error(413), "close", "The same with Expect: 100-continue: 413 instead of the 100.",
     config="max_body_size=16")
case("limit-body-chunk-too-large", chunked("/big", b"11\r\n"), error(413), "close",
     "A chunk announced larger than max_body_size (16): 413 before its data.",
     config="max_body_size=16")
case("content-length-u64-max",
     b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\n",
     error(413), "close", "The largest u64 is a valid length, over the default limit: 413.")

# Pipelined bytes after a request that closes the connection are never answered.
case("pipelined-after-connection-close",
     get("/first", extra="Connection: close\r\n") + get("/second"),
     ok("GET", "/first", connection="close"), "close",
     "`Connection: close`: later pipelined requests are not served (§9.6).")
case("pipelined-after-connection-close-with-body",
     post("/first", "hello", extra="Connection: close\r\n") + get("/second"),
     ok("POST", "/first", "hello", connection="close"), "close",
     "The same after a Content-Length body.")
case("pipelined-after-http10", b"GET /first HTTP/1.0\r\n\r\n" + get("/second"),
     ok("GET", "/first", version="HTTP/1.0", connection="close"), "close",
     "HTTP/1.0 without keep-alive: later pipelined requests are not served.")
case("pipelined-after-error", b"GARBAGE\r\n\r\n" + get("/second"), error(400), "close",
     "After an error reply nothing else on the connection is served.")
case("pipelined-after-error-valid-first", get("/first") + b"GARBAGE\r\n\r\n" + get("/third"),
     ok("GET", "/first") + error(400), "close",
     "A valid request, a malformed one, a valid one: 200, 400, then close.")
case("pipelined-after-413",
     b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\n\r\n0123456789abcdefg" + get("/next"),
     error(413), "close", "The refused body and the request behind it are not served.",
     config="max_body_size=16")


# ---------------------------------------------------------------------------------------------

SUFFIXES = (".request", ".response", ".config")


def main():
    names = set()
    for name, request, response, marker, why, config in CASES:
        names.add(name)
        with open(os.path.join(HERE, name + ".request"), "wb") as f:
            f.write(request)
        assert response.endswith(b"\n"), name
        with open(os.path.join(HERE, name + ".response"), "wb") as f:
            f.write(response + b"-- " + marker.encode() + b"\n")
        path = os.path.join(HERE, name + ".config")
        if config:
            with open(path, "w") as f:
                f.write(config.replace(" ", "\n") + "\n")
        elif os.path.exists(path):
            os.remove(path)
    for entry in sorted(os.listdir(HERE)):
        stem, ext = os.path.splitext(entry)
        if ext in SUFFIXES and stem not in names:
            os.remove(os.path.join(HERE, entry))
    with open(os.path.join(HERE, "INDEX.md"), "w") as f:
        f.write("# Corpus cases\n\nGenerated by `generate.py` (do not edit): "
                "the case, what the server must answer, and why.\n\n"
                "| case | expected | rule |\n| --- | --- | --- |\n")
        for name, request, response, marker, why, config in sorted(CASES):
            statuses = []
            for line in response.split(b"\n"):
                if line.startswith(b"HTTP/1.1 "):
                    statuses.append(line[9:12].decode())
            cfg = f" ({config})" if config else ""
            f.write(f"| `{name}`{cfg} | {' '.join(statuses)}, {marker} | "
                    f"{why.replace('|', '/')} |\n")
    print(f"{len(CASES)} cases written to {HERE}", file=sys.stderr)


if __name__ == "__main__":
    main()
