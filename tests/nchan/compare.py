#!/usr/bin/env python3
"""Compare two probe.py --json dumps (e.g. nchan's and iomux's), record by record.

Usage:
    python3 compare.py nchan.json iomux.json

Prints, for every record whose normalized reply differs, the status, the headers
(names compared case-insensitively; Server, Date, Connection, Content-Length and
Keep-Alive ignored) and the body. Normalized away: message ids (`time:tag`, numbered
in order of appearance within each record, since ids are times and repeat across
channels), bare times, HTTP dates, and the `requested` age of channel information.
Stream chunk timings are not compared, only the concatenated body.

Standard library only.
"""

import base64
import json
import re
import sys

IGNORED = {"server", "date", "connection", "content-length", "keep-alive"}
ID = re.compile(r"\b1[6-9]\d{8}:-?\d+\b")
TIME = re.compile(r"\b1[6-9]\d{8}\b")
DATE = re.compile(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT")


def normalizer():
    ids = {}

    def norm(text):
        def rep(m):
            ids.setdefault(m.group(0), "<id%d>" % (len(ids) + 1))
            return ids[m.group(0)]
        text = ID.sub(rep, text)
        text = TIME.sub("<time>", text)
        text = DATE.sub("<date>", text)
        text = re.sub(r"last requested: \d+ sec", "last requested: N sec", text)
        return re.sub(r'"requested": \d+', '"requested": N', text)
    return norm


def load(path):
    out = []
    for rec in json.load(open(path)):
        norm = normalizer()
        label = ID.sub("<id>", TIME.sub("<time>", rec["label"]))
        label = re.sub(r"\br\d{5,}_", "<run>_", label)  # probe.py's per-run channel prefix
        resp = rec.get("response")
        if resp is None:
            out.append((label, None, {}, "", None))
            continue
        headers = {}
        for name, value in resp["headers"]:
            if name.lower() not in IGNORED:
                headers.setdefault(name.lower(), []).append(norm(value))
        body = base64.b64decode(resp.get("body_b64") or "").decode("latin1")
        out.append((label, resp["status"], headers, norm(body), resp.get("framing")))
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    a, b = load(sys.argv[1]), load(sys.argv[2])
    if len(a) != len(b):
        print("record counts differ: %d vs %d (comparing the common prefix)" % (len(a), len(b)))
    differing = 0
    for x, y in zip(a, b):
        if x[0] != y[0]:
            print("== label mismatch: %r vs %r" % (x[0], y[0]))
            differing += 1
            continue
        diffs = []
        if x[1] != y[1]:
            diffs.append("status: %s | %s" % (x[1], y[1]))
        for name in sorted(set(x[2]) | set(y[2])):
            if x[2].get(name) != y[2].get(name):
                diffs.append("%s: %s | %s" % (name, x[2].get(name), y[2].get(name)))
        if x[3] != y[3]:
            diffs.append("body:\n      %r\n    | %r" % (x[3][:600], y[3][:600]))
        if x[4] != y[4]:
            diffs.append("framing: %s | %s" % (x[4], y[4]))
        if diffs:
            differing += 1
            print("== " + x[0])
            for d in diffs:
                print("    " + d)
    print("%d of %d records differ" % (differing, min(len(a), len(b))))


if __name__ == "__main__":
    main()
