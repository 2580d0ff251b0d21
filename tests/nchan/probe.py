#!/usr/bin/env python3
"""Raw-socket wire probe of an nchan-compatible pub/sub server.

Records exact request bytes and full raw responses (status line, every header
as sent, body, arrival times of stream chunks) for the scenarios listed in
SCENARIOS, and writes a human-readable Markdown transcript (and optionally a
JSON dump for machine comparison between nchan and iomux).

Usage:
    python3 probe.py [--host 127.0.0.1] [--port 18080] [--sub-timeout 2]
                     [--ping 1] [--md out.md] [--json out.json] [--only NAME,...]

The server must expose /pub/{ch} (publisher), /sub/{ch} (long-poll and
EventSource subscriber), /status (stub status), with message buffer length 10,
first message "oldest", subscriber timeout --sub-timeout seconds and
EventSource ping interval --ping seconds (see start-nchan.sh / nginx.conf).
Each run uses fresh channel names (prefixed with a run token), so it can be
re-run against the same server. Only talk to servers on loopback.

No third-party dependencies (Python 3.8+ standard library only).
"""

import argparse
import base64
import hashlib
import json
import re
import select
import socket
import sys
import threading
import time
import email.utils

# --------------------------------------------------------------------------
# Minimal raw HTTP/1.1 client
# --------------------------------------------------------------------------

T0 = time.monotonic()


def now():
    return time.monotonic()


class Response:
    def __init__(self):
        self.status_line = None
        self.status = None
        self.headers = []          # [(name, value)] as received, in order
        self.head_raw = b""
        self.body = b""
        self.chunks = []           # [(t_rel, bytes)] for chunked / close-delimited bodies
        self.framing = None        # 'content-length' | 'chunked' | 'close' | 'none'
        self.t_first = None        # seconds from request sent to first byte
        self.t_done = None         # seconds from request sent to end of body
        self.complete = False      # body fully received per framing
        self.closed = None         # server closed the connection after the response
        self.t_eof = None          # close-delimited body: when the server closed

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]


class Conn:
    """One TCP connection. A background thread records every recv() with its
    arrival time, so reported timings are real arrival times even when the
    probe reads the socket later."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.s = socket.create_connection((host, port), timeout=10)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.s.settimeout(None)
        self.cv = threading.Condition()
        self.segments = []       # [(t_arrival, bytes)] not yet moved into buf
        self.buf = b""
        self.buf_start = 0       # absolute stream offset of buf[0]
        self.arrivals = []       # [(absolute end offset, t_arrival)]
        self.received = 0
        self.eof = False
        self.t_eof = None
        self.t_sent = None
        self.th = threading.Thread(target=self._reader, daemon=True)
        self.th.start()

    def _reader(self):
        while True:
            try:
                data = self.s.recv(65536)
            except OSError:
                data = b""
            t = now()
            with self.cv:
                if not data:
                    self.eof = True
                    self.t_eof = t
                    self.cv.notify_all()
                    return
                self.segments.append((t, data))
                self.cv.notify_all()

    def close(self):
        try:
            self.s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.s.close()
        except OSError:
            pass

    def send(self, raw):
        self.t_sent = now()
        try:
            self.s.sendall(raw)
            return None
        except OSError as e:   # e.g. server answered 413 and closed early
            return repr(e)

    def _take(self):
        for t, data in self.segments:
            self.received += len(data)
            self.arrivals.append((self.received, t))
            self.buf += data
        self.segments = []

    def _fill(self, deadline):
        """Move newly arrived bytes into buf. False on timeout, True if data or EOF."""
        with self.cv:
            while not self.segments and not self.eof:
                remaining = deadline - now()
                if remaining <= 0:
                    return False
                self.cv.wait(remaining)
            had = bool(self.segments)
            self._take()
            return had or self.eof

    def _consume(self, n):
        data, self.buf = self.buf[:n], self.buf[n:]
        self.buf_start += n
        return data

    def arrival(self, abs_end):
        """Arrival time (relative to request sent) of the byte ending at absolute offset abs_end."""
        for end, t in self.arrivals:
            if end >= abs_end:
                return round(t - self.t_sent, 3)
        return None

    def wait_bytes(self, seconds):
        """True if any byte (or EOF) arrives within `seconds` (bytes stay buffered)."""
        if self.buf or self.eof:
            return True
        return self._fill(now() + seconds)

    def read_response(self, timeout=5.0, head_only=False, stream_for=None):
        """Read one response. `stream_for`: for a streaming (chunked/close) body,
        stop after that many seconds even if the body has not ended."""
        resp = Response()
        deadline = now() + timeout
        while b"\r\n\r\n" not in self.buf:
            if self.eof and not self.segments:
                self._fill(now())
                if b"\r\n\r\n" in self.buf:
                    break
                if not self.buf:
                    return None
                resp.head_raw = self._consume(len(self.buf))
                resp.status_line = "(incomplete head, then connection closed)"
                return resp
            if not self._fill(deadline):
                if not self.buf:
                    return None
                resp.head_raw = self._consume(len(self.buf))
                resp.status_line = "(incomplete head)"
                return resp
        resp.t_first = self.arrival(self.buf_start + 1)
        hlen = self.buf.index(b"\r\n\r\n") + 4
        resp.head_raw = self._consume(hlen)
        lines = resp.head_raw[:-4].split(b"\r\n")
        resp.status_line = lines[0].decode("latin-1")
        m = re.match(r"HTTP/\d\.\d (\d{3})", resp.status_line)
        resp.status = int(m.group(1)) if m else None
        for ln in lines[1:]:
            k, _, v = ln.decode("latin-1").partition(":")
            resp.headers.append((k, v.strip()))
        te = (resp.header("Transfer-Encoding") or "").lower()
        cl = resp.header("Content-Length")
        if head_only or resp.status in (204, 304) or (resp.status and resp.status < 200):
            resp.framing = "none"
            resp.complete = True
        elif "chunked" in te:
            resp.framing = "chunked"
            sdeadline = now() + (stream_for if stream_for is not None else timeout)
            while True:
                while b"\r\n" not in self.buf:
                    if self.eof and not self.segments:
                        break
                    if not self._fill(sdeadline):
                        break
                if b"\r\n" not in self.buf:
                    break
                i = self.buf.index(b"\r\n")
                size = int(self.buf[:i].split(b";")[0], 16)
                need = i + 2 + size + 2
                while len(self.buf) < need:
                    if (self.eof and not self.segments) or not self._fill(sdeadline):
                        break
                if len(self.buf) < need:
                    break
                end_abs = self.buf_start + need
                raw = self._consume(need)
                data = raw[i + 2:i + 2 + size]
                if size == 0:
                    resp.complete = True
                    break
                resp.chunks.append((self.arrival(end_abs), data))
                resp.body += data
        elif cl is not None:
            resp.framing = "content-length"
            n = int(cl)
            while len(self.buf) < n:
                if (self.eof and not self.segments) or not self._fill(deadline):
                    break
            resp.body = self._consume(min(n, len(self.buf)))
            resp.complete = len(resp.body) == n
        else:
            resp.framing = "close"
            sdeadline = now() + (stream_for if stream_for is not None else timeout)
            while True:
                if self.buf:
                    # report each recv() segment separately with its arrival time
                    while self.buf:
                        seg_end = None
                        for end, t in self.arrivals:
                            if end > self.buf_start:
                                seg_end = end
                                break
                        n = (seg_end - self.buf_start) if seg_end else len(self.buf)
                        abs_end = self.buf_start + n
                        data = self._consume(n)
                        resp.chunks.append((self.arrival(abs_end), data))
                        resp.body += data
                if self.eof and not self.segments:
                    resp.complete = True
                    break
                if not self._fill(sdeadline):
                    break
            if resp.complete and self.t_eof is not None:
                resp.t_eof = round(self.t_eof - self.t_sent, 3)
        last = self.arrival(self.buf_start) if self.buf_start else None
        resp.t_done = last
        return resp

    def check_closed(self, wait=0.3):
        """After a complete response: did the server close the connection (within `wait` s)?"""
        if self.eof:
            return True
        with self.cv:
            deadline = now() + wait
            while not self.eof:
                remaining = deadline - now()
                if remaining <= 0:
                    break
                self.cv.wait(remaining)
            return self.eof


def build_request(method, path, headers=None, body=None, http="HTTP/1.1", host="x"):
    hdrs = [("Host", host)]
    for k, v in (headers or []):
        hdrs.append((k, v))
    if body is not None and not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in hdrs):
        hdrs.append(("Content-Length", str(len(body))))
    raw = "%s %s %s\r\n" % (method, path, http)
    raw += "".join("%s: %s\r\n" % (k, v) for k, v in hdrs)
    raw += "\r\n"
    raw = raw.encode("latin-1")
    if body is not None:
        raw += body
    return raw


# --------------------------------------------------------------------------
# Recording
# --------------------------------------------------------------------------

class Recorder:
    def __init__(self, args):
        self.args = args
        self.host, self.port = args.host, args.port
        self.hosthdr = "%s:%d" % (args.host, args.port)
        self.sections = []         # [(title, description, [items])]
        self.cur = None
        self.json = []
        self.token = "r%d" % (int(time.time() * 10) % 10_000_000)

    def ch(self, name):
        return "%s_%s" % (self.token, name)

    def section(self, title, desc=""):
        self.cur = {"title": title, "desc": desc, "items": []}
        self.sections.append(self.cur)

    def note(self, text):
        self.cur["items"].append(("note", text))
        print("   NOTE:", text)

    def record(self, label, raw, resp, extra=None, send_err=None, t_rel=None):
        item = {"label": label, "raw": raw, "resp": resp, "extra": extra or {},
                "send_err": send_err}
        self.cur["items"].append(("x", item))
        j = {"section": self.cur["title"], "label": label,
             "request_b64": base64.b64encode(raw).decode(),
             "send_error": send_err, "extra": extra or {}}
        if resp is None:
            j["response"] = None
        else:
            j["response"] = {
                "status_line": resp.status_line, "status": resp.status,
                "headers": resp.headers, "framing": resp.framing,
                "body_b64": base64.b64encode(resp.body).decode(),
                "chunks": [(t, base64.b64encode(c).decode()) for t, c in resp.chunks],
                "t_first": resp.t_first, "t_done": resp.t_done, "t_eof": resp.t_eof,
                "complete": resp.complete, "closed": resp.closed}
        self.json.append(j)
        st = resp.status_line if resp else "(no response)"
        print("  %-60s -> %s" % (label[:60], st))

    # ---- exchange helpers -------------------------------------------------

    def exchange(self, label, method, path, headers=None, body=None, timeout=5.0,
                 check_close=False, stream_for=None, http="HTTP/1.1", conn=None,
                 keep=False):
        c = conn or Conn(self.host, self.port)
        raw = build_request(method, path, headers, body, http=http, host=self.hosthdr)
        err = c.send(raw)
        resp = c.read_response(timeout=timeout, head_only=(method == "HEAD"),
                               stream_for=stream_for)
        if resp is not None and check_close:
            resp.closed = c.check_closed()
        self.record(label, raw, resp, send_err=err)
        if not keep:
            c.close()
            return resp
        return resp, c

    def publish(self, ch, body=b"hello", headers=None, label=None, method="POST", quiet=False):
        path = "/pub/" + ch
        if quiet:
            c = Conn(self.host, self.port)
            c.send(build_request(method, path, headers, body, host=self.hosthdr))
            r = c.read_response()
            c.close()
            return r
        return self.exchange(label or "%s %s" % (method, path), method, path, headers, body)

    def start_sub(self, path, headers=None):
        c = Conn(self.host, self.port)
        raw = build_request("GET", path, headers, host=self.hosthdr)
        c.send(raw)
        return c, raw

    def finish_sub(self, label, c, raw, timeout=5.0, stream_for=None, check_close=True,
                   extra=None):
        resp = c.read_response(timeout=timeout, stream_for=stream_for)
        if resp is not None and check_close and resp.complete:
            resp.closed = c.check_closed()
        self.record(label, raw, resp, extra=extra)
        c.close()
        return resp

    def poll(self, label, ch, headers=None, query="", hold_check=0.4, action=None,
             timeout=None, extra=None):
        """Long-poll: send, check whether it is held for `hold_check` s, optionally
        run action() while held, then read the response."""
        timeout = timeout if timeout is not None else self.args.sub_timeout + 3
        c, raw = self.start_sub("/sub/" + ch + query, headers)
        held = not c.wait_bytes(hold_check)
        ex = dict(extra or {})
        ex["held_at_%.1fs" % hold_check] = held
        if action is not None:
            action()
        resp = c.read_response(timeout=timeout)
        if resp is not None and resp.complete:
            resp.closed = c.check_closed(0.2)
        self.record(label, raw, resp, extra=ex)
        c.close()
        return resp


# --------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------

def esc_text(b):
    out = []
    for ch in b.decode("latin-1"):
        o = ord(ch)
        if ch == "\n":
            out.append("\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif o < 0x20 or 0x7f <= o:
            out.append("\\x%02x" % o)
        else:
            out.append(ch)
    return "".join(out)


def summarize_bytes(b):
    return "%d bytes, sha256 %s, first 32 bytes hex %s" % (
        len(b), hashlib.sha256(b).hexdigest()[:16], b[:32].hex())


def is_texty(b):
    if len(b) > 4096:
        return False
    bad = sum(1 for x in b if (x < 0x20 and x not in (9, 10, 13)) or x >= 0x7f)
    return bad == 0


def render_request(raw):
    if b"\r\n\r\n" in raw:
        head, body = raw.split(b"\r\n\r\n", 1)
    else:
        head, body = raw, b""
    s = head.decode("latin-1").replace("\r\n", "\n") + "\n"
    if body:
        s += "\n" + (esc_text(body) if is_texty(body) else "[body: %s]" % summarize_bytes(body))
        if is_texty(body) and not body.endswith(b"\n"):
            s += "\u23ce(no final newline)"
    return s


def render_response(resp):
    if resp is None:
        return "(no response within the timeout)\n"
    s = resp.head_raw.decode("latin-1").replace("\r\n", "\n")
    if resp.framing in ("chunked", "close") and resp.chunks:
        s += "[body framing: %s; arrivals relative to request sent]\n" % resp.framing
        for t, c in resp.chunks:
            if resp.framing == "chunked":
                s += "--- +%.3fs chunk of %d bytes:\n" % (t, len(c))
            else:
                s += "--- +%.3fs %d bytes:\n" % (t, len(c))
            s += esc_text(c) if is_texty(c) else "[%s]" % summarize_bytes(c)
            if not s.endswith("\n"):
                s += "\u23ce(no final newline)\n"
        if resp.framing == "chunked":
            s += "--- %s\n" % ("0-length last chunk received" if resp.complete else "(stream not ended when we stopped reading)")
        else:
            s += "--- %s\n" % (("connection closed by server at +%.3fs" % resp.t_eof) if resp.complete and resp.t_eof is not None
                               else "connection closed by server" if resp.complete
                               else "(still open when we stopped reading)")
    elif resp.body:
        if is_texty(resp.body):
            s += esc_text(resp.body)
            if not resp.body.endswith(b"\n"):
                s += "\u23ce(no final newline)"
            s += "\n"
        else:
            s += "[body: %s]\n" % summarize_bytes(resp.body)
    return s


def render_md(rec, path):
    a = rec.args
    L = []
    L.append("## Raw transcripts\n")
    L.append("Generated by `probe.py --host %s --port %d --sub-timeout %g --ping %g` "
             "(run token `%s`, %s). Header lines are CRLF-terminated on the wire (shown "
             "as plain line breaks). In bodies, `\\r`, `\\t`, `\\xNN` are escapes; a line "
             "break is a LF; `\u23ce(no final newline)` marks a body without a trailing LF. "
             "Times are seconds after the request was sent.\n"
             % (a.host, a.port, a.sub_timeout, a.ping, rec.token,
                time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())))
    for sec in rec.sections:
        L.append("### %s\n" % sec["title"])
        if sec["desc"]:
            L.append(sec["desc"] + "\n")
        for kind, it in sec["items"]:
            if kind == "note":
                L.append("- *observed:* %s\n" % it)
                continue
            resp = it["resp"]
            meta = []
            if resp is not None:
                if resp.t_first is not None:
                    meta.append("first byte +%.3fs" % resp.t_first)
                if resp.t_done is not None:
                    meta.append("done +%.3fs" % resp.t_done)
                if resp.closed is not None:
                    meta.append("server closed connection after: %s" % ("yes" if resp.closed else "no"))
            for k, v in it["extra"].items():
                meta.append("%s: %s" % (k, v))
            if it["send_err"]:
                meta.append("send error: %s" % it["send_err"])
            L.append("**%s**%s\n" % (it["label"], (" (" + "; ".join(meta) + ")") if meta else ""))
            L.append("```http\n" + render_request(it["raw"]).rstrip("\n") + "\n```\n")
            L.append("```http\n" + render_response(resp).rstrip("\n") + "\n```\n")
    with open(path, "w") as f:
        f.write("\n".join(L))


# --------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------

def wait_second_start(max_frac=0.15):
    """Sleep until just after a wall-clock second boundary."""
    while True:
        f = time.time() % 1.0
        if f < max_frac:
            return
        time.sleep(1.0 - f + 0.01)


def cursor_of(resp):
    """(If-Modified-Since, If-None-Match) headers for re-polling after resp."""
    h = []
    if resp is not None:
        if resp.header("Last-Modified"):
            h.append(("If-Modified-Since", resp.header("Last-Modified")))
        if resp.header("Etag") is not None:
            h.append(("If-None-Match", resp.header("Etag")))
    return h


def msgid_of(resp):
    """time:tag of a long-poll reply (from Last-Modified + Etag)."""
    if resp is None or resp.header("Last-Modified") is None:
        return None
    t = int(email.utils.parsedate_to_datetime(resp.header("Last-Modified")).timestamp())
    return "%d:%s" % (t, resp.header("Etag"))


def sc_publish(r):
    r.section("1. Publishing",
              "POST to a new channel with no subscribers; Accept variants; Content-Type; "
              "X-EventSource-Event; PUT; empty body; publish with a waiting subscriber (201).")
    ch = r.ch("pub1")
    r.exchange("POST /pub new channel, no subscribers, no Content-Type", "POST", "/pub/" + ch,
               [], b"hello")
    r.exchange("POST /pub second message, Accept: application/json", "POST", "/pub/" + ch,
               [("Accept", "application/json")], b"world")
    r.exchange("POST /pub Accept: text/json", "POST", "/pub/" + ch, [("Accept", "text/json")], b"m3")
    r.exchange("POST /pub Accept: text/xml", "POST", "/pub/" + ch, [("Accept", "text/xml")], b"m4")
    r.exchange("POST /pub Accept: text/yaml", "POST", "/pub/" + ch, [("Accept", "text/yaml")], b"m5")
    r.exchange("POST /pub Accept: text/html (unsupported -> ?)", "POST", "/pub/" + ch,
               [("Accept", "text/html")], b"m6")
    r.exchange("POST /pub Accept: application/json;q=0.9, text/plain;q=1", "POST", "/pub/" + ch,
               [("Accept", "text/plain;q=1, application/json;q=0.9")], b"m7")

    ch = r.ch("ctype")
    r.exchange("POST with Content-Type: application/x-thing; charset=utf-8", "POST", "/pub/" + ch,
               [("Content-Type", "application/x-thing; charset=utf-8")], b"typed")
    r.exchange("POST with no Content-Type", "POST", "/pub/" + ch, [], b"untyped")
    r.exchange("POST with Content-Type: text/plain", "POST", "/pub/" + ch,
               [("Content-Type", "text/plain")], b"plain")
    r1 = r.poll("long-poll: 1st message (published with custom Content-Type)", ch)
    r2 = r.poll("long-poll: 2nd message (published without Content-Type)", ch, cursor_of(r1))
    r.poll("long-poll: 3rd message (published as text/plain)", ch, cursor_of(r2))
    r.note("Content-Type of each delivered message: %r, %r" % (
        r1 and r1.header("Content-Type"), r2 and r2.header("Content-Type")))

    ch = r.ch("esevent")
    r.exchange("POST with X-EventSource-Event: foo", "POST", "/pub/" + ch,
               [("X-EventSource-Event", "foo")], b"evdata")
    r.poll("long-poll of the X-EventSource-Event message (event name visible?)", ch)

    ch = r.ch("put")
    r.exchange("PUT /pub/ch on a new channel, with body", "PUT", "/pub/" + ch, [], b"put-body")
    r.exchange("GET /pub/ch after the PUT (was a message stored?)", "GET", "/pub/" + ch)
    ch = r.ch("putempty")
    r.exchange("PUT /pub/ch on a new channel, empty body", "PUT", "/pub/" + ch, [], b"")
    r.exchange("GET /pub/ch after the empty PUT", "GET", "/pub/" + ch)

    ch = r.ch("emptybody")
    r.exchange("POST with empty body (Content-Length: 0)", "POST", "/pub/" + ch, [], b"")
    r.poll("long-poll of the empty message", ch)

    ch = r.ch("chunkpub")
    r.exchange("POST with Transfer-Encoding: chunked body", "POST", "/pub/" + ch,
               [("Transfer-Encoding", "chunked")], b"5\r\nchunk\r\n6\r\ned-pub\r\n0\r\n\r\n")
    r.poll("long-poll of the chunked-published message", ch)

    ch = r.ch("waiting")
    c, raw = r.start_sub("/sub/" + ch)
    c.wait_bytes(0.3)
    r.exchange("POST while one long-poll subscriber waits", "POST", "/pub/" + ch, [], b"for-you")
    r.finish_sub("the waiting subscriber's reply", c, raw)
    c1, raw1 = r.start_sub("/sub/" + ch + "x")
    c2, raw2 = r.start_sub("/sub/" + ch + "x")
    c1.wait_bytes(0.3)
    r.exchange("POST while two long-poll subscribers wait, Accept: application/json", "POST",
               "/pub/" + ch + "x", [("Accept", "application/json")], b"for-both")
    r.finish_sub("waiting subscriber 1", c1, raw1)
    r.finish_sub("waiting subscriber 2", c2, raw2)


def sc_info(r):
    r.section("2. Channel info, DELETE, OPTIONS, other methods")
    ch = r.ch("info")
    r.publish(ch, b"one", quiet=True)
    r.exchange("GET /pub/ch existing", "GET", "/pub/" + ch)
    r.exchange("GET /pub/ch existing, Accept: application/json", "GET", "/pub/" + ch,
               [("Accept", "application/json")])
    r.exchange("HEAD /pub/ch existing (waits 4 s)", "HEAD", "/pub/" + ch, timeout=4)
    r.exchange("GET /pub/never-existing", "GET", "/pub/" + r.ch("never"))
    r.exchange("GET /pub/never-existing, Accept: application/json", "GET", "/pub/" + r.ch("never"),
               [("Accept", "application/json")])
    r.exchange("DELETE /pub/ch existing", "DELETE", "/pub/" + ch)
    r.exchange("GET /pub/ch after DELETE", "GET", "/pub/" + ch)
    r.exchange("DELETE /pub/ch again (already deleted)", "DELETE", "/pub/" + ch)
    r.exchange("DELETE /pub/never-existing", "DELETE", "/pub/" + r.ch("never2"))
    ch2 = r.ch("info2")
    r.publish(ch2, b"x", quiet=True)
    r.exchange("DELETE /pub/ch existing, Accept: application/json", "DELETE", "/pub/" + ch2,
               [("Accept", "application/json")])
    r.exchange("long-poll GET /sub on a deleted channel (new subscriber after DELETE)",
               "GET", "/sub/" + ch2, timeout=r.args.sub_timeout + 3)
    r.exchange("POST /pub to the deleted channel (recreated?)", "POST", "/pub/" + ch2, [], b"again")

    ch3 = r.ch("subonly")
    c, raw = r.start_sub("/sub/" + ch3)
    c.wait_bytes(0.3)
    r.exchange("GET /pub/ch: channel with a waiting subscriber, never published", "GET", "/pub/" + ch3)
    r.finish_sub("(that subscriber's hold timeout)", c, raw, timeout=r.args.sub_timeout + 3)
    r.exchange("GET /pub/ch: same channel after its only subscriber timed out", "GET", "/pub/" + ch3)

    ch = r.ch("opt")
    for path in ("/pub/" + ch, "/sub/" + ch):
        r.exchange("OPTIONS %s without Origin" % path[:4], "OPTIONS", path)
        r.exchange("OPTIONS %s with Origin" % path[:4], "OPTIONS", path,
                   [("Origin", "http://app.example")])
        r.exchange("OPTIONS %s full preflight (Origin, Access-Control-Request-Method/-Headers)" % path[:4],
                   "OPTIONS", path,
                   [("Origin", "http://app.example"),
                    ("Access-Control-Request-Method", "GET" if path.startswith("/sub") else "POST"),
                    ("Access-Control-Request-Headers", "if-none-match, if-modified-since, etag, last-event-id")])

    r.exchange("PATCH /pub/ch (unsupported method)", "PATCH", "/pub/" + ch, [], b"x")
    r.exchange("POST /sub/ch (publish to subscriber location)", "POST", "/sub/" + ch, [], b"x")
    r.exchange("DELETE /sub/ch", "DELETE", "/sub/" + ch)
    r.exchange("HEAD /sub/ch (waits sub-timeout + 2 s)", "HEAD", "/sub/" + ch, timeout=r.args.sub_timeout + 2)
    r.exchange("POST /pub/ch with Origin header", "POST", "/pub/" + ch,
               [("Origin", "http://app.example")], b"cors")
    r.exchange("GET /pub/never-existing with Origin", "GET", "/pub/" + r.ch("never3"),
               [("Origin", "http://app.example")])
    r.exchange("GET /sub/ch malformed cursor with Origin (400)", "GET", "/sub/" + ch,
               [("Origin", "http://app.example"), ("If-None-Match", "abc:def")])
    r.exchange("GET /sub/ch/extra (does not match the location regex)", "GET", "/sub/" + ch + "/extra")


def sc_longpoll(r):
    T = r.args.sub_timeout
    r.section("3. Long-poll basics",
              "Buffered messages, no cursor -> oldest; walk the buffer with the reply's "
              "Last-Modified/Etag; hold; hold timeout; empty channel hold + publish.")
    ch = r.ch("lp")
    r.publish(ch, b"first", quiet=True)
    r.publish(ch, b"second", quiet=True)
    r.publish(ch, b"third", quiet=True)
    a = r.poll("GET /sub/ch, no cursor, 3 buffered messages", ch)
    b = r.poll("re-poll with If-Modified-Since + If-None-Match from the previous reply", ch, cursor_of(a))
    c = r.poll("re-poll with the cursor of the 2nd reply", ch, cursor_of(b))
    d = r.poll("re-poll with the cursor of the 3rd (newest) reply: holds until the timeout",
               ch, cursor_of(c), timeout=T + 3)
    r.poll("re-poll with the 408's headers (Etag only, no Last-Modified)", ch, cursor_of(d))
    r.poll("re-poll with the cursor of the newest message, then publish while held", ch,
           cursor_of(c), action=lambda: r.publish(ch, b"fourth", quiet=True))

    ch = r.ch("empty")
    e = r.poll("GET /sub/ch on an empty (never published) channel; publish after 0.4 s", ch,
               action=lambda: r.publish(ch, b"live message", [("Content-Type", "text/plain")]))
    r.poll("GET /sub/ch on an empty channel with no publish -> hold timeout", r.ch("empty2"),
           timeout=T + 3)

    r.section("4. Cursor forms",
              "Which request headers / query parameters nchan accepts as the cursor.")
    ch = r.ch("cur")
    for i in range(4):
        r.publish(ch, ("msg%d" % i).encode(), quiet=True)
        time.sleep(0.05)
    m = [None] * 4
    m[0] = r.poll("reference: oldest (no cursor)", ch)
    m[1] = r.poll("reference: 2nd", ch, cursor_of(m[0]))
    m[2] = r.poll("reference: 3rd", ch, cursor_of(m[1]))
    m[3] = r.poll("reference: 4th", ch, cursor_of(m[2]))
    id1 = msgid_of(m[1])
    r.note("msg ids: %s" % [msgid_of(x) for x in m])
    r.poll("If-None-Match: time:tag only (id of 2nd)", ch, [("If-None-Match", id1)])
    r.poll("If-None-Match: tag only, no If-Modified-Since", ch, [("If-None-Match", m[1].header("Etag"))])
    r.poll("If-Modified-Since only (Last-Modified of 2nd), no If-None-Match", ch,
           [("If-Modified-Since", m[1].header("Last-Modified"))])
    r.poll("Last-Event-ID: time:tag (id of 2nd)", ch, [("Last-Event-ID", id1)])
    r.poll("?last_event_id=time:tag (id of 2nd)", ch, query="?last_event_id=" + id1)
    r.poll("?last_event_id=time%3Atag (percent-encoded colon)", ch,
           query="?last_event_id=" + id1.replace(":", "%3A"))
    r.poll("Etag: time:tag REQUEST header (NchanSubscriber.js style; id of 2nd)", ch, [("Etag", id1)])
    r.poll("If-None-Match time:tag AND Last-Event-ID (which wins?) INM=2nd LEI=1st", ch,
           [("If-None-Match", id1), ("Last-Event-ID", msgid_of(m[0]))])
    r.poll("If-Modified-Since+If-None-Match (2nd) AND Last-Event-ID (1st)", ch,
           cursor_of(m[1]) + [("Last-Event-ID", msgid_of(m[0]))])
    r.poll("Last-Event-ID header (1st) AND ?last_event_id= (2nd)", ch,
           [("Last-Event-ID", msgid_of(m[0]))], query="?last_event_id=" + id1)

    r.section("5. Malformed and special cursors")
    for val in ["garbage", "1:2:3", "abc:def", "12abc", "1:", ":1", ":", "-1", "-1:0", "0:0", "0",
                "99999999999999999999:0", "1:99999999999999999999", "1795000000:99999",
                "%s:-1" % id1.split(":")[0], " " + id1, id1 + " ", "W/\"%s\"" % id1, "\"%s\"" % id1, "*",
                "1:2,3", "[1:2]"]:
        r.poll("If-None-Match: %s" % val, ch, [("If-None-Match", val)], hold_check=0.3, timeout=T + 3)
    for val in ["garbage", "1:2:3", "abc:def", "0:0", "-1:0"]:
        r.poll("Last-Event-ID: %s" % val, ch, [("Last-Event-ID", val)], hold_check=0.3, timeout=T + 3)
    for val in ["garbage", "abc:def"]:
        r.poll("?last_event_id=%s" % val, ch, query="?last_event_id=" + val, hold_check=0.3,
               timeout=T + 3)
    r.poll("If-Modified-Since: garbage + If-None-Match: 0", ch,
           [("If-Modified-Since", "garbage"), ("If-None-Match", "0")], hold_check=0.3, timeout=T + 3)
    r.poll("If-Modified-Since (valid, of 2nd) + If-None-Match: garbage", ch,
           [("If-Modified-Since", m[1].header("Last-Modified")), ("If-None-Match", "garbage")],
           hold_check=0.3, timeout=T + 3)
    r.poll("If-Modified-Since: Thu, 01 Jan 1970 00:00:01 GMT + If-None-Match: 0 (ancient)", ch,
           [("If-Modified-Since", "Thu, 01 Jan 1970 00:00:01 GMT"), ("If-None-Match", "0")],
           hold_check=0.3, timeout=T + 3)

    r.section("6. Cursor older than the buffer; cursor newer than everything")
    ch = r.ch("old")
    ids = []
    for i in range(12):
        resp = r.publish(ch, ("old%02d" % i).encode(), [("Accept", "application/json")], quiet=True)
        ids.append(json.loads(resp.body)["last_message_id"])
    r.note("published 12 messages (buffer 10): ids %s" % ids)
    r.exchange("GET /pub/ch info after 12 publishes", "GET", "/pub/" + ch)
    r.poll("no cursor after 12 publishes (oldest retained = 3rd published?)", ch)
    r.poll("If-None-Match: id of the 1st (evicted) message", ch, [("If-None-Match", ids[0])])
    r.poll("If-None-Match: id of the 2nd (evicted) message", ch, [("If-None-Match", ids[1])])
    r.poll("If-None-Match: id of the 3rd (oldest retained) message", ch, [("If-None-Match", ids[2])])
    r.poll("If-None-Match: 1:0 (very old)", ch, [("If-None-Match", "1:0")])
    fut = "%d:0" % (int(time.time()) + 1000)
    r.poll("If-None-Match: %s (1000 s in the future) -> hold until timeout" % fut, ch,
           [("If-None-Match", fut)], timeout=T + 3)
    r.poll("If-None-Match: %s (future); publish while held" % fut, ch, [("If-None-Match", fut)],
           action=lambda: r.publish(ch, b"after-future", quiet=True), timeout=T + 3)
    last = ids[-1]
    r.poll("If-None-Match: newest id with tag+5 (%s:%d, same second, not yet existing)" % (
        last.split(":")[0], int(last.split(":")[1]) + 5), ch,
        [("If-None-Match", "%s:%d" % (last.split(":")[0], int(last.split(":")[1]) + 5))],
        timeout=T + 3)


def sc_ids(r):
    r.section("7. Message ids within one second and across seconds")
    ch = r.ch("ids")
    wait_second_start()
    for i in range(3):
        r.exchange("POST #%d within the same second" % i, "POST", "/pub/" + ch,
                   [("Accept", "application/json")], ("same%d" % i).encode())
    a = r.poll("long-poll oldest", ch)
    b = r.poll("next (cursor of previous reply)", ch, cursor_of(a))
    c = r.poll("next (cursor of previous reply)", ch, cursor_of(b))
    r.note("Etags: %r, %r, %r; Last-Modified: %r, %r, %r" % (
        a.header("Etag"), b.header("Etag"), c.header("Etag"),
        a.header("Last-Modified"), b.header("Last-Modified"), c.header("Last-Modified")))
    time.sleep(1.05)
    r.exchange("POST in a later second (tag restarts at 0?)", "POST", "/pub/" + ch,
               [("Accept", "application/json")], b"later")
    r.poll("next after the later-second publish", ch, cursor_of(c))


def sc_eventsource(r):
    T, P = r.args.sub_timeout, r.args.ping
    r.section("8. EventSource",
              "GET /sub/ch with Accept: text/event-stream. Stream read until the server "
              "closes it (the subscriber timeout).")
    ch = r.ch("es")
    r.publish(ch, b"single line", quiet=True)
    r.publish(ch, b"line one\nline two\n\nline four", quiet=True)
    r.publish(ch, b"named", [("X-EventSource-Event", "foo")], quiet=True)
    r.publish(ch, b"crlf one\r\ncrlf two\rcr three", quiet=True)
    r.publish(ch, b"", quiet=True)
    r.publish(ch, b"trailing newline\n", [("Content-Type", "application/json")], quiet=True)
    r.publish(ch, b": looks like a comment\ndata: looks like a field", quiet=True)
    c, raw = r.start_sub("/sub/" + ch, [("Accept", "text/event-stream")])
    es = r.finish_sub("EventSource, no Last-Event-ID, 7 buffered messages (oldest first)", c, raw,
                      timeout=T + 4, stream_for=T + 4)
    ids = re.findall(rb"^id: (\S+)$", es.body if es else b"", re.M)
    r.note("event ids seen: %s" % [i.decode() for i in ids])

    if len(ids) >= 2:
        c, raw = r.start_sub("/sub/" + ch, [("Accept", "text/event-stream"),
                                            ("Last-Event-ID", ids[1].decode())])
        r.finish_sub("EventSource resume with Last-Event-ID: <2nd id>", c, raw, timeout=T + 4,
                     stream_for=T + 4)
        c, raw = r.start_sub("/sub/" + ch + "?last_event_id=" + ids[-2].decode(),
                             [("Accept", "text/event-stream")])
        r.finish_sub("EventSource resume with ?last_event_id=<second-to-last id>", c, raw,
                     timeout=T + 4, stream_for=T + 4)

    c, raw = r.start_sub("/sub/" + ch, [("Accept", "text/event-stream"), ("Last-Event-ID", "abc:def")])
    r.finish_sub("EventSource with malformed Last-Event-ID: abc:def", c, raw, timeout=T + 4,
                 stream_for=T + 4)
    c, raw = r.start_sub("/sub/" + ch, [("Accept", "text/event-stream"), ("Last-Event-ID", "garbage")])
    r.finish_sub("EventSource with unparsable Last-Event-ID: garbage", c, raw, timeout=T + 4,
                 stream_for=T + 4)
    c, raw = r.start_sub("/sub/" + ch, [("Accept", "text/event-stream"),
                                        ("Last-Event-ID", "%d:0" % (int(time.time()) + 1000))])
    r.finish_sub("EventSource with Last-Event-ID in the future", c, raw, timeout=T + 4,
                 stream_for=T + 4)
    c, raw = r.start_sub("/sub/" + ch, [("Accept", "text/event-stream"),
                                        ("If-None-Match", ids[-1].decode() if ids else "0")])
    r.finish_sub("EventSource with If-None-Match: <newest id> (cursor header honoured?)", c, raw,
                 timeout=T + 4, stream_for=T + 4)

    ch = r.ch("eslive")
    c, raw = r.start_sub("/sub/" + ch, [("Accept", "text/event-stream"),
                                        ("Origin", "http://app.example")])
    time.sleep(0.5)
    r.publish(ch, b"live 1", quiet=True)
    time.sleep(0.3)
    r.publish(ch, b"live 2", [("X-EventSource-Event", "bar")], label="POST while an EventSource subscriber is connected")
    r.finish_sub("EventSource on an empty channel with Origin; 2 publishes at +0.5s and +0.8s", c, raw,
                 timeout=T + 4, stream_for=T + 4)

    ch = r.ch("esreset")
    c, raw = r.start_sub("/sub/" + ch, [("Accept", "text/event-stream")])
    for i in range(4):
        time.sleep(0.5 if i == 0 else 1.0)
        r.publish(ch, ("tick %d" % i).encode(), quiet=True)
    r.finish_sub("EventSource; publishes at +0.5, +1.5, +2.5, +3.5 s (does a message restart the hold timer?)",
                 c, raw, timeout=T + 6, stream_for=T + 6)

    ch = r.ch("esdel")
    r.publish(ch, b"before delete", quiet=True)
    c, raw = r.start_sub("/sub/" + ch, [("Accept", "text/event-stream")])
    time.sleep(0.5)
    r.publish(ch, b"", method="DELETE", quiet=True)
    r.finish_sub("EventSource; channel DELETEd at +0.5s", c, raw, timeout=T + 4, stream_for=T + 4)

    c, raw = r.start_sub("/sub/" + r.ch("esaccept"), [("Accept", "text/html, text/event-stream;q=0.5")])
    r.finish_sub("Accept: text/html, text/event-stream;q=0.5 (EventSource detected?)", c, raw,
                 timeout=T + 4, stream_for=T + 4)

    if r.args.long_ping:
        ch = r.ch("esping")
        c, raw = r.start_sub("/sub/" + ch, [("Accept", "text/event-stream")])
        r.finish_sub("EventSource ping timing on an idle channel", c, raw, timeout=T + 4,
                     stream_for=T + 4)


def sc_holds(r):
    T = r.args.sub_timeout
    r.section("9. Hold outcomes: DELETE while waiting (410), Origin / CORS on subscriber replies")
    ch = r.ch("del")
    r.publish(ch, b"m", quiet=True)
    m = r.poll("take the only message", ch)
    r.poll("waiting subscriber (cursor of newest); channel DELETEd while held", ch, cursor_of(m),
           action=lambda: r.publish(ch, b"", method="DELETE"))
    r.poll("waiting subscriber (no cursor) on an empty channel; channel DELETEd while held",
           r.ch("del2"), action=lambda: r.publish(r.ch("del2"), b"", method="DELETE"))

    ch = r.ch("cors")
    r.publish(ch, b"cors msg", quiet=True)
    r.poll("long-poll with Origin: http://app.example", ch, [("Origin", "http://app.example")])
    r.poll("long-poll with Origin: null", ch, [("Origin", "null")])
    r.poll("long-poll with Origin, cursor newest -> 408 with CORS", ch,
           [("Origin", "http://app.example"), ("If-None-Match", "%d:0" % (int(time.time()) + 500))],
           timeout=T + 3)

    r.section("10. Keep-alive and HTTP/1.0")
    ch = r.ch("ka")
    r.publish(ch, b"ka1", quiet=True)
    r.publish(ch, b"ka2", quiet=True)
    resp, c = r.exchange("long-poll #1 on a keep-alive connection", "GET", "/sub/" + ch, keep=True)
    r.exchange("long-poll #2 on the same connection (cursor of #1)", "GET", "/sub/" + ch,
               cursor_of(resp), conn=c, check_close=True)
    r.exchange("HTTP/1.0 long-poll", "GET", "/sub/" + ch, http="HTTP/1.0", check_close=True)
    r.exchange("HTTP/1.0 publish", "POST", "/pub/" + ch, [], b"ka3", http="HTTP/1.0", check_close=True)


def sc_bodies(r):
    r.section("11. Bodies: binary, 64 KiB, over client_max_body_size")
    ch = r.ch("bin")
    data = bytes(range(256))
    r.exchange("POST 256 bytes 0x00..0xff, Content-Type: application/octet-stream", "POST",
               "/pub/" + ch, [("Content-Type", "application/octet-stream")], data)
    got = r.poll("long-poll the binary message", ch)
    r.note("binary round trip identical: %s" % (got is not None and got.body == data))
    c, raw = r.start_sub("/sub/" + ch, [("Accept", "text/event-stream")])
    es = r.finish_sub("EventSource of the binary message (how are CR/LF/NUL sent?)", c, raw,
                      timeout=r.args.sub_timeout + 4, stream_for=r.args.sub_timeout + 4)

    ch = r.ch("big")
    big = bytes((i * 7 + 3) % 256 for i in range(65536))
    r.exchange("POST 64 KiB body", "POST", "/pub/" + ch, [("Content-Type", "application/octet-stream")], big)
    got = r.poll("long-poll the 64 KiB message", ch)
    r.note("64 KiB round trip identical: %s" % (got is not None and got.body == big))

    ch = r.ch("limit")
    one_m = b"a" * (1 << 20)
    r.exchange("POST exactly 1 MiB (1048576 bytes)", "POST", "/pub/" + ch, [], one_m, check_close=True)
    r.exchange("POST 1 MiB + 1 byte", "POST", "/pub/" + ch, [], one_m + b"a", check_close=True)
    r.exchange("POST with Content-Length: 2000000 header, only headers sent first", "POST",
               "/pub/" + ch, [("Content-Length", "2000000")], b"", check_close=True)


def sc_status(r):
    r.section("12. /status (nchan_stub_status)")
    r.exchange("GET /status", "GET", "/status")
    r.exchange("GET /status Accept: application/json", "GET", "/status", [("Accept", "application/json")])


SCENARIOS = [("publish", sc_publish), ("info", sc_info), ("longpoll", sc_longpoll),
             ("ids", sc_ids), ("eventsource", sc_eventsource), ("holds", sc_holds),
             ("bodies", sc_bodies), ("status", sc_status)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=18080)
    ap.add_argument("--sub-timeout", type=float, default=2.0,
                    help="server's subscriber hold timeout in seconds (default 2)")
    ap.add_argument("--ping", type=float, default=1.0,
                    help="server's EventSource ping interval in seconds (default 1)")
    ap.add_argument("--long-ping", action="store_true", help="also record an idle EventSource stream")
    ap.add_argument("--md", default="transcripts.generated.md")
    ap.add_argument("--json", default=None)
    ap.add_argument("--only", default=None, help="comma-separated scenario names: " +
                    ",".join(n for n, _ in SCENARIOS))
    args = ap.parse_args()
    if not (args.host.startswith("127.") or args.host in ("localhost", "::1")):
        sys.exit("refusing to probe a non-loopback host")
    r = Recorder(args)
    only = set(args.only.split(",")) if args.only else None
    for name, fn in SCENARIOS:
        if only and name not in only:
            continue
        print("== %s" % name)
        fn(r)
    render_md(r, args.md)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r.json, f, indent=1)
    print("wrote", args.md, args.json or "")


if __name__ == "__main__":
    main()
