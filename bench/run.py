#!/usr/bin/env python3
"""iomux benchmark driver, side by side with its peers (Python 3 standard library only).

Adapted from the shared bench harness (run.py).

    python3 bench/run.py --servers iomux,hyper,nchan --n 1000,10000,15000 --rounds 3

It builds the load generator and the servers (cargo build --release), then:

  for each N, for each server: wait for a quiet machine, start the server pinned to CPU 0
      (taskset) on a free loopback port, wait until GET /hello answers, run
      `iomux-loadgen fanout` pinned to CPU 1 (memory per waiting subscriber, idle CPU,
      fan-out latency, loss/dup), stop the server (by its PIDs: SIGTERM, then SIGKILL);
  then once per server (fresh start): `iomux-loadgen hello` with pipelining 1 and 16
      (64 keep-alive connections, 10 s each), and `iomux-loadgen throughput` (100 subscribers on
      10 channels re-polling continuously, publishers as fast as the server accepts).

It writes bench/results/<stem>.json (raw) and <stem>.md (tables), draws <stem>.svg with
chart.py, and prints the tables. See bench/README.md for the columns.
"""
import argparse
import datetime
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)  # the cargo workspace

# ----------------------------------------------------------------------------
# The servers. One entry each:
#   crate:   cargo package to build (release), or None
#   start:   command template; {bin} = cargo's release dir, {port} = loopback port,
#            {rundir} = private scratch dir. Must stay in the foreground.
#   check:   command (list) that exits 0 when the server can run here, or None
#   version: shell command whose output is recorded in the results
#   note:    one line shown under the tables
# Commands run with cwd = bench/.
# ----------------------------------------------------------------------------
SERVERS = {
    "iomux": dict(
        crate="iomux-bench-peer",
        start=["{bin}/iomux-bench-peer", "{port}"],
        version="git -C .. describe --always --dirty 2>/dev/null | sed 's/^/iomux /'",
        note="iomux Acceptor + iomux-actors PubSub (buffer 10), one LocalExecutor, default Config",
    ),
    "hyper": dict(
        crate="iomux-hyper-peer",
        start=["{bin}/iomux-hyper-peer", "{port}"],
        version="grep -A1 -E '^name = \"(hyper|tokio)\"$' ../Cargo.lock | grep -o '[0-9][0-9.]*' "
                "| paste -sd' ' | sed 's/^/hyper tokio /'",
        note="hyper 1.x http1 (pipeline_flush), tokio current_thread + LocalSet, watch + ring buffer of 10",
    ),
    "nchan": dict(
        crate=None,
        start=["sh", "nchan/run.sh", "{port}", "{rundir}/nginx"],
        check=["sh", "nchan/run.sh", "--check"],
        version="nginx -v 2>&1; dpkg-query -W -f='nchan ${Version}\\n' libnginx-mod-nchan 2>/dev/null",
        note="nginx + nchan (Debian packages), worker_processes 1, buffer 10; master + worker Pss summed",
    ),
}

LOADGEN_CRATE = "iomux-loadgen"

_current = {}  # label -> Popen of the server running now (for cleanup on a signal)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children_of(pid):
    """All descendants of pid (from /proc/*/stat ppid)."""
    parent = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
            parent[int(d)] = int(s[s.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    out, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out.extend(kids)
        frontier.extend(kids)
    return out


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours still "exists"
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def http_get(port, path, timeout=2.0):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def start_server(label, spec, port, rundir, args, logf):
    cmd = [a.format(port=port, rundir=rundir, bin=args.bin) for a in spec["start"]]
    full = ["taskset", "-c", str(args.server_cpu)] + cmd
    log(f"{label}: start {' '.join(cmd)} (port {port}, cpu {args.server_cpu})")
    proc = subprocess.Popen(full, cwd=BENCH, stdout=logf, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    _current[label] = proc
    deadline = time.time() + spec.get("ready_timeout", 30)
    last = None
    while time.time() < deadline:
        if proc.poll() is not None:
            _current.pop(label, None)
            raise RuntimeError(f"exited with code {proc.returncode} before ready (see {logf.name})")
        try:
            st, body = http_get(port, "/hello", timeout=1.0)
            if st == 200 and body.strip() == b"Hello, world!":
                time.sleep(0.3)  # let nginx finish forking its worker
                return proc
            last = f"status {st} body {body[:40]!r}"
        except OSError as e:
            last = str(e)
        time.sleep(0.2)
    stop_server(label, proc)
    raise RuntimeError(f"not ready after {spec.get('ready_timeout', 30)} s ({last})")


def stop_server(label, proc, timeout=10):
    """SIGTERM the server's processes (by PID: the one we started and its descendants),
    SIGKILL what is left after `timeout` s."""
    if proc is None:
        return
    pids = [proc.pid] + children_of(proc.pid)
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.time() + timeout
    while time.time() < deadline:
        proc.poll()
        if not any(alive(p) for p in pids):
            break
        time.sleep(0.1)
    for p in pids:
        if alive(p):
            log(f"{label}: pid {p} ignored SIGTERM, sending SIGKILL")
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    _current.pop(label, None)


def run_loadgen(label, mode, port, pids, args, extra, budget):
    cmd = ["taskset", "-c", str(args.client_cpu), os.path.join(args.bin, "iomux-loadgen"), mode,
           "--addr", f"127.0.0.1:{port}", "--pids", ",".join(map(str, pids)), "--label", label] + extra
    log(f"{label}: loadgen {mode} {' '.join(extra)}")
    try:
        p = subprocess.run(cmd, cwd=BENCH, capture_output=True, text=True, timeout=budget)
    except subprocess.TimeoutExpired:
        return {"fatal": f"loadgen {mode} timed out after {budget:.0f} s"}
    for line in reversed(p.stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                break
    return {"fatal": f"loadgen {mode} rc={p.returncode}: {(p.stderr or p.stdout)[-300:]}"}


UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def run_wrk(label, port, args):
    """Optional cross-check with wrk (P=1 only)."""
    url = f"http://127.0.0.1:{port}/hello"
    cmd = ["taskset", "-c", str(args.client_cpu), "wrk", "-t1", f"-c{args.hello_conns}",
           f"-d{args.hello_duration}s", "--latency", url]
    log(f"{label}: wrk -c{args.hello_conns} -d{args.hello_duration}s")
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.hello_duration + 30)
    except (subprocess.TimeoutExpired, OSError) as e:
        return {"fatal": f"wrk: {e}"}
    out = p.stdout
    res = {"raw": out[-1500:]}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["rps"] = float(m.group(1)) if m else None
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
        res[f"p{pct}_ms"] = float(m.group(1)) * UNIT[m.group(2)] if m else None
    if p.returncode != 0 or res["rps"] is None:
        res["fatal"] = f"wrk rc={p.returncode}: {(p.stderr or out)[-300:]}"
    return res


def machine_busy(interval=1.0):
    """Fraction of all CPUs busy over `interval` seconds (from /proc/stat)."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        return sum(v), v[3] + v[4]
    t0, i0 = snap()
    time.sleep(interval)
    t1, i1 = snap()
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def wait_quiet(max_wait, threshold=0.10):
    """Wait (up to max_wait s) until the machine is idle; returns the last busy fraction seen."""
    deadline = time.time() + max_wait
    busy = machine_busy()
    while busy > threshold and time.time() < deadline:
        log(f"machine busy {busy:.0%} (other processes); waiting for quiet")
        busy = machine_busy(2.0)
    return busy


def sh(cmd, timeout=30):
    try:
        return subprocess.run(cmd, shell=True, cwd=BENCH, capture_output=True, text=True,
                              timeout=timeout).stdout.strip()
    except Exception as e:  # noqa: BLE001 - informational only
        return f"? ({e})"


def cargo_target_dir():
    if os.environ.get("CARGO_TARGET_DIR"):
        return os.path.abspath(os.environ["CARGO_TARGET_DIR"])
    try:
        out = subprocess.run(["cargo", "metadata", "--no-deps", "--format-version", "1"], cwd=ROOT,
                             capture_output=True, text=True, timeout=120).stdout
        return json.loads(out)["target_directory"]
    except (OSError, ValueError, KeyError, subprocess.TimeoutExpired):
        return os.path.join(ROOT, "target")


# ----------------------------------------------------------------------------
# report

def fmt(x, nd=1, unit=""):
    if x is None or (isinstance(x, (int, float)) and x < 0):
        return "–"
    if isinstance(x, float):
        return f"{x:,.{nd}f}{unit}"
    return f"{x:,}{unit}"


def kib(b):
    return "–" if b is None or b < 0 else f"{b / 1024:,.2f} KiB"


def ok(d):
    return d if isinstance(d, dict) and "fatal" not in d else {}


def fanout_of(results, server, n):
    for r in results["fanout"]:
        if r["server"] == server and r["n"] == n:
            return r
    return None


def extras_of(results, server):
    for r in results["extras"]:
        if r["server"] == server:
            return r
    return None


def idle_cell(lp):
    """Idle CPU (µs, from schedstat) and wake-ups of the server in the idle window."""
    if not lp or lp.get("idle_cpu_us") is None:
        return "–"
    return f"{lp['idle_cpu_us']:,} µs, {lp.get('idle_wakeups', 0):,} w"


def issue_table(results, servers, ns):
    """The issue's table, iomux beside the peers."""
    hdr = (["server"] + [f"Pss / waiting sub, N={n:,}" for n in ns]
           + [f"fan-out p50/p99/max ms, N={n:,}" for n in ns]
           + ["idle CPU µs / wake-ups in 10 s (" + " / ".join(f"{n:,}" for n in ns) + ")",
              "/hello req/s (p99 ms), 64 conns", "/hello pipelined ×16 req/s (p99 ms per batch)",
              "throughput msgs/s (p50/p99 ms)"])
    rows = ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    for s in servers:
        cells = [s]
        fos = [ok((fanout_of(results, s, n) or {}).get("loadgen")) for n in ns]
        for lp in fos:
            cells.append(kib(lp.get("pss_per_conn_bytes")) if lp else "–")
        for lp in fos:
            if lp and lp.get("fanout_samples"):
                bad = "" if (lp.get("lost") == 0 and lp.get("dup") == 0 and lp.get("errors") == 0) else " ⚠"
                cells.append(f"{fmt(lp['fanout_p50_ms'])} / {fmt(lp['fanout_p99_ms'])} / "
                             f"{fmt(lp['fanout_max_ms'])}{bad}")
            else:
                cells.append("–")
        cells.append(" / ".join(idle_cell(lp) for lp in fos))
        ex = extras_of(results, s) or {}
        h1, h16, tp = ok(ex.get("hello1")), ok(ex.get("hello_pipelined")), ok(ex.get("throughput"))
        cells.append(f"{fmt(h1.get('rps'), 0)} ({fmt(h1.get('p99_ms'), 2)})" if h1 else "–")
        cells.append(f"{fmt(h16.get('rps'), 0)} ({fmt(h16.get('p99_ms'), 2)})" if h16 else "–")
        cells.append(f"{fmt(tp.get('delivered_per_s'), 0)} ({fmt(tp.get('latency_p50_ms'), 2)}/"
                     f"{fmt(tp.get('latency_p99_ms'), 2)})" if tp else "–")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def fanout_table(results, servers, ns):
    hdr = ["N", "server", "waiting conns reached", "bytes / waiting conn (Pss)", "RSS / waiting conn",
           "idle CPU ms / 10 s", "fan-out p50 ms", "fan-out p99 ms", "fan-out max ms",
           "lost / dup msgs", "errors", "listen overflows"]
    rows = ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    for n in ns:
        for s in servers:
            r = fanout_of(results, s, n)
            if r is None:
                continue
            lp = r.get("loadgen") or {}
            if r.get("fatal") and not ok(lp):
                rows.append(f"| {n:,} | {s} | failed: {r['fatal'][:80]} |" + " |" * (len(hdr) - 3))
                continue
            if "fatal" in lp:
                rows.append(f"| {n:,} | {s} | loadgen failed: {lp['fatal'][:80]} |" + " |" * (len(hdr) - 3))
                continue
            reached = f"{fmt(lp.get('waiting'), 0)} / {fmt(lp.get('n'), 0)}"
            crash = crashed_phase(lp)
            if crash:
                reached += f" (server died {crash})"
            rows.append("| " + " | ".join([
                f"{n:,}", s, reached,
                f"{fmt(lp.get('pss_per_conn_bytes'), 0)} B",
                f"{fmt(lp.get('rss_per_conn_bytes'), 0)} B",
                fmt(lp.get("idle_cpu_ms"), 0),
                fmt(lp.get("fanout_p50_ms"), 1),
                fmt(lp.get("fanout_p99_ms"), 1),
                fmt(lp.get("fanout_max_ms"), 1),
                f"{lp.get('lost', '–')} / {lp.get('dup', '–')}",
                fmt(lp.get("errors"), 0),
                fmt(lp.get("listen_overflows"), 0),
            ]) + " |")
    return "\n".join(rows)


def extras_table(results, servers, args):
    hdr = ["server", "/hello req/s", "p50 / p99 ms", f"/hello ×{args.pipeline} req/s",
           "p50 / p99 ms per batch", "wrk req/s (p99 ms)", "throughput delivered msgs/s",
           "publishes/s", "delivery p50 / p99 ms", "lost / out of buffer / uncertain / dup", "errors"]
    rows = ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    for s in servers:
        ex = extras_of(results, s)
        if ex is None:
            continue
        if ex.get("fatal") and not any(ok(ex.get(k)) for k in ("hello1", "hello_pipelined", "throughput")):
            rows.append(f"| {s} | failed: {ex['fatal'][:80]} |" + " |" * (len(hdr) - 2))
            continue
        h1, h16, tp, wrk = (ok(ex.get(k)) for k in ("hello1", "hello_pipelined", "throughput", "wrk"))
        errs = sum(x.get("errors", 0) for x in (h1, h16, tp))
        rows.append("| " + " | ".join([
            s,
            fmt(h1.get("rps"), 0), f"{fmt(h1.get('p50_ms'), 2)} / {fmt(h1.get('p99_ms'), 2)}",
            fmt(h16.get("rps"), 0), f"{fmt(h16.get('p50_ms'), 2)} / {fmt(h16.get('p99_ms'), 2)}",
            f"{fmt(wrk.get('rps'), 0)} ({fmt(wrk.get('p99_ms'), 2)})" if wrk else "–",
            fmt(tp.get("delivered_per_s"), 0), fmt(tp.get("published_per_s"), 0),
            f"{fmt(tp.get('latency_p50_ms'), 2)} / {fmt(tp.get('latency_p99_ms'), 2)}",
            (f"{tp.get('lost')} / {tp.get('out_of_buffer')} / {tp.get('gap_uncertain')} / {tp.get('dup')}"
             if tp else "–"),
            fmt(errs, 0),
        ]) + " |")
    return "\n".join(rows)


def best_peer(values, lower_is_better):
    """(server, value) of the best peer, from {server: value} (None values skipped)."""
    vals = [(s, v) for s, v in values.items() if s != "iomux" and v is not None and v >= 0]
    if not vals:
        return None, None
    return (min if lower_is_better else max)(vals, key=lambda sv: sv[1])


def ratio_rows(results, servers, ns):
    """[(column, iomux, best peer, ratio, target, met)] as strings."""
    rows = []
    if "iomux" not in servers:
        return rows

    def fo(s, n, key):
        lp = ok((fanout_of(results, s, n) or {}).get("loadgen"))
        v = lp.get(key)
        return v if isinstance(v, (int, float)) and v >= 0 and lp.get("waiting") else None

    def ex(s, which, key):
        v = ok((extras_of(results, s) or {}).get(which)).get(key)
        return v if isinstance(v, (int, float)) and v >= 0 else None

    def ratio(a, b):
        return a / b if a is not None and b not in (None, 0) else None

    def yes(cond):
        return "–" if cond is None else ("met" if cond else "**not met**")

    for n in ns:
        vals = {s: fo(s, n, "pss_per_conn_bytes") for s in servers}
        ps, pv = best_peer(vals, True)
        io = vals.get("iomux")
        rows.append((f"memory per waiting subscriber (Pss), N={n:,}", kib(io),
                     f"{kib(pv)} ({ps})" if ps else "–", fmt(ratio(io, pv), 3, "×"),
                     "≤ 1 KiB (absolute)", yes(None if io is None else io <= 1024)))
    for n in ns:
        vals = {s: fo(s, n, "fanout_p99_ms") for s in servers}
        ps, pv = best_peer(vals, True)
        io = vals.get("iomux")
        r = ratio(io, pv)
        lp = ok((fanout_of(results, "iomux", n) or {}).get("loadgen"))
        clean = lp.get("lost") == 0 and lp.get("dup") == 0 and lp.get("errors") == 0
        rows.append((f"fan-out p99, N={n:,}", fmt(io, 1, " ms"), f"{fmt(pv, 1, ' ms')} ({ps})" if ps else "–",
                     fmt(r, 2, "×"), "≤ 0.5× best peer, no loss/dup",
                     yes(None if r is None else (r <= 0.5 and clean))))
    for n in ns:
        # schedstat nanoseconds, not clock ticks: "zero" is under 100 µs of CPU per second
        # (0.01 %), with wake-ups that do not grow with N (no per-connection timers).
        io = fo("iomux", n, "idle_cpu_us")
        vals = {s: fo(s, n, "idle_cpu_us") for s in servers}
        ps, pv = best_peer(vals, True)
        wall = fo("iomux", n, "idle_wall_s") or 10
        rows.append((f"idle CPU with N={n:,} waiting", fmt(io, 0, " µs") + f", {fo('iomux', n, 'idle_wakeups')} wake-ups",
                     f"{fmt(pv, 0, ' µs')} ({ps})" if ps else "–", "–",
                     "≈ 0 (< 100 µs/s)", yes(None if io is None else io / wall < 100)))
    for which, label, target in (("hello1", "GET /hello req/s, 64 conns", 1.25),
                                 ("hello_pipelined", "GET /hello req/s, pipelined ×16", 2.0)):
        vals = {s: ex(s, which, "rps") for s in servers}
        ps, pv = best_peer(vals, False)
        io = vals.get("iomux")
        r = ratio(io, pv)
        rows.append((label, fmt(io, 0), f"{fmt(pv, 0)} ({ps})" if ps else "–", fmt(r, 2, "×"),
                     f"≥ {target}× best peer", yes(None if r is None else r >= target)))
        iop = ex("iomux", which, "p99_ms")
        pp = ex(ps, which, "p99_ms") if ps else None
        r = ratio(iop, pp)
        rows.append((label.replace("req/s", "p99"), fmt(iop, 2, " ms"),
                     f"{fmt(pp, 2, ' ms')} ({ps})" if ps else "–", fmt(r, 2, "×"),
                     "≤ 1× (best peer's p99)", yes(None if r is None else r <= 1.0)))
    vals = {s: ex(s, "throughput", "delivered_per_s") for s in servers}
    io = vals.get("iomux")
    if vals.get("nchan") is not None:
        ps, pv = "nchan", vals["nchan"]
    else:
        ps, pv = best_peer(vals, False)
    r = ratio(io, pv)
    tp = ok((extras_of(results, "iomux") or {}).get("throughput"))
    clean = tp.get("lost") == 0 and tp.get("dup") == 0 and tp.get("errors") == 0
    rows.append(("publish throughput, msgs/s delivered (100 subs, 10 channels)", fmt(io, 0),
                 f"{fmt(pv, 0)} ({ps})" if ps else "–", fmt(r, 2, "×"),
                 "≥ 1× nchan, no loss/dup" if ps == "nchan" else "≥ 1× (nchan not run)",
                 yes(None if r is None else (r >= 1.0 and clean))))
    return rows


def ratio_table(results, servers, ns):
    rows = ratio_rows(results, servers, ns)
    if not rows:
        return "(iomux not in this run: no ratios)"
    out = ["| column | iomux | best peer | iomux ÷ best peer | target | |", "|---|---|---|---|---|---|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def crashed_phase(lp):
    alive_ph = lp.get("server_procs_alive_phases")
    if not alive_ph or alive_ph[0] == 0:
        return None
    phases = ["while connecting", "during the idle window", "during the rounds"]
    for i in range(1, 4):
        if alive_ph[i] < alive_ph[0]:
            return phases[i - 1]
    return None


def notes(results, servers, ns):
    out = []
    for s in servers:
        bits = []
        meta = results["servers"].get(s, {})
        if meta.get("version"):
            bits.append(meta["version"].replace("\n", "; "))
        if meta.get("skipped"):
            bits.append(f"**skipped**: {meta['skipped']}")
        for n in ns:
            r = fanout_of(results, s, n)
            if r is None:
                continue
            lp = r.get("loadgen") or {}
            nb = []
            if r.get("fatal"):
                nb.append(f"**failure**: {r['fatal']}")
            if lp.get("fatal"):
                nb.append(f"**loadgen**: {lp['fatal']}")
            if ok(lp):
                if lp.get("errors"):
                    ec = {k: v for k, v in (lp.get("error_counts") or {}).items() if v}
                    nb.append(f"errors {ec}; samples {lp.get('error_samples')}")
                if crashed_phase(lp):
                    nb.append(f"**server died {crashed_phase(lp)}** (see its log)")
                if lp.get("listen_overflows") or lp.get("listen_drops"):
                    nb.append(f"listen queue overflows/drops while connecting: {lp['listen_overflows']}/"
                              f"{lp['listen_drops']} (per network namespace: other processes count too)")
                th, fd = lp.get("server_threads"), lp.get("server_fds")
                if th and fd:
                    nb.append(f"threads/fds {th[0]}/{fd[0]} before, {th[1]}/{fd[1]} with N waiting")
                rd = lp.get("round_details") or []
                if rd:
                    nb.append("rounds p50/p99/max ms " + ", ".join(
                        f"{x['p50_ms']:.1f}/{x['p99_ms']:.1f}/{x['max_ms']:.1f}" for x in rd))
                    nb.append("per fan-out CPU ms server " + ", ".join(f"{x['server_cpu_ms']:.0f}" for x in rd)
                              + " / loadgen " + ", ".join(f"{x['client_cpu_ms']:.0f}" for x in rd)
                              + " / other " + ", ".join(f"{x.get('other_cpu_ms', -1):.0f}" for x in rd)
                              + " (done in " + ", ".join(f"{x['done_ms']:.0f}" for x in rd) + " ms)")
                    if any(x["done_ms"] >= 50 and x["client_cpu_ms"] >= 0.8 * x["done_ms"] for x in rd):
                        nb.append("**loadgen CPU near the fan-out time: the client may be the bottleneck**")
                if lp.get("idle_other_cpu_ms") is not None:
                    other = lp["idle_other_cpu_ms"]
                    noisy = " (**noisy**)" if other > 0.3 * 1000 * (lp.get("idle_wall_s") or 10) else ""
                    nb.append(f"other machine CPU in the idle window {other:.0f} ms{noisy}")
                bc = lp.get("buffer_check")
                if bc:
                    nb.append(f"buffer check {bc.get('got_both')}/{bc.get('subscribers')} got both "
                              f"(lost {bc.get('lost')}, dup {bc.get('dup')})")
                nb.append(f"Pss/conn after the rounds {kib(lp.get('end_pss_per_conn_bytes'))}; baseline Pss "
                          f"{lp.get('baseline_pss_kb', 0) / 1024:.1f} MiB, loaded {lp.get('loaded_pss_kb', 0) / 1024:.1f} MiB")
            if r.get("machine_busy_before") is not None and r["machine_busy_before"] > 0.10:
                nb.append(f"**machine {r['machine_busy_before']:.0%} busy with other processes before the start** (noisy)")
            if nb:
                bits.append(f"N={n:,}: " + "; ".join(nb))
        ex = extras_of(results, s)
        if ex:
            nb = []
            if ex.get("fatal"):
                nb.append(f"**failure**: {ex['fatal']}")
            for k in ("hello1", "hello_pipelined", "throughput", "wrk"):
                d = ex.get(k)
                if not d:
                    continue
                if d.get("fatal"):
                    nb.append(f"**{k}**: {d['fatal']}")
                    continue
                if k == "wrk":
                    continue
                wall = (d.get("cpu_wall_s") or d.get("duration_s") or 0) * 1000
                if wall > 0:
                    nb.append(f"{k}: CPU server {d.get('server_cpu_ms', 0) / wall:.0%}, loadgen "
                              f"{d.get('client_cpu_ms', 0) / wall:.0%}, other {max(0, d.get('other_cpu_ms', 0)) / wall:.0%} of a core")
                    if d.get("other_cpu_ms", 0) >= 0.3 * wall:
                        nb.append(f"**{k}: other processes used {d['other_cpu_ms'] / wall:.0%} of a core (noisy)**")
                    if d.get("client_cpu_ms", 0) >= 0.9 * wall:
                        nb.append(f"**{k}: loadgen saturated its core: the client may be the bottleneck**")
                if d.get("errors"):
                    nb.append(f"{k} errors {d.get('error_counts')} {d.get('error_samples')}")
            tp = ok(ex.get("throughput"))
            if tp:
                nb.append(f"throughput: {tp.get('subscribers_alive')}/{tp.get('subscribers')} subscribers alive, "
                          f"caught up at the end: {tp.get('caught_up')} (stalled {tp.get('stalled_subscribers')})")
            if ex.get("machine_busy_before") is not None and ex["machine_busy_before"] > 0.10:
                nb.append(f"**machine {ex['machine_busy_before']:.0%} busy before the start** (noisy)")
            if nb:
                bits.append("rate runs: " + "; ".join(nb))
        out.append(f"- **{s}** ({SERVERS[s].get('note', '')}):\n  " + "\n  ".join(bits))
    return "\n".join(out)


def report(results, args, env):
    servers = [s for s in args.server_list if not results["servers"].get(s, {}).get("skipped")]
    ns = args.n_list
    md = [f"# iomux benchmark, N = {', '.join(f'{n:,}' for n in ns)}, {args.rounds} rounds ({env['date']})", "",
          f"Command: `{env['command']}`", "",
          f"Machine: {env['cpu']}, {env['ncpu']} CPUs, kernel {env['kernel']}, open-file limit {env['nofile']}; "
          f"{env['rustc']}. Servers pinned to CPU {args.server_cpu}, iomux-loadgen to CPU {args.client_cpu}. "
          f"Load average at the start: {' '.join(env['loadavg'])}.", ""]
    for s, meta in results["servers"].items():
        if meta.get("skipped"):
            md += [f"**{s} skipped**: {meta['skipped']}", ""]
    md += ["## The issue's table", "", issue_table(results, servers, ns), "",
           "Memory = (Pss with N long-polls waiting − Pss before) ÷ N. Fan-out = publish sent → the "
           "subscriber's whole reply read, pooled over all rounds (⚠ = loss, duplicate or error). Idle CPU = "
           "server utime+stime over 10 s with N waiting. /hello: iomux-loadgen, 64 keep-alive connections, "
           f"{args.hello_duration} s. Throughput: messages delivered per second to {args.tp_subs} subscribers on "
           f"{args.tp_channels} channels re-polling continuously, {args.tp_duration} s.", "",
           "## Ratios against the best peer of this run", "", ratio_table(results, servers, ns), "",
           "## Long-poll fan-out, every run", "", fanout_table(results, servers, ns), "",
           "## Request rate and publish throughput", "", extras_table(results, servers, args), "",
           "Columns: see bench/README.md.", "",
           "## Notes per server", "", notes(results, servers, ns), ""]
    return "\n".join(md)


def write_outputs(stem, results, args, env):
    with open(stem + ".json", "w") as f:
        json.dump({"env": env, "args": {k: v for k, v in vars(args).items()}, **results}, f, indent=1)
    text = report(results, args, env)
    with open(stem + ".md", "w") as f:
        f.write(text)
    return text


# ----------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default="iomux,hyper,nchan", help="comma list from: " + ",".join(SERVERS))
    ap.add_argument("--n", default="1000,10000,15000", help="comma list of waiting subscriber counts (each ≤ 15000)")
    ap.add_argument("--rounds", type=int, default=3, help="publish rounds per fan-out run")
    ap.add_argument("--idle", type=float, default=10.0, help="idle CPU window, s")
    ap.add_argument("--round-timeout", type=float, default=30.0, help="max wait for one fan-out, s")
    ap.add_argument("--hello-duration", type=int, default=10, help="s per /hello run")
    ap.add_argument("--hello-conns", type=int, default=64)
    ap.add_argument("--pipeline", type=int, default=16, help="depth of the pipelined /hello run")
    ap.add_argument("--tp-duration", type=float, default=10.0, help="s of the throughput run")
    ap.add_argument("--tp-channels", type=int, default=10)
    ap.add_argument("--tp-subs", type=int, default=100)
    ap.add_argument("--tp-publishers", type=int, default=5)
    ap.add_argument("--no-hello", action="store_true", help="skip the /hello runs")
    ap.add_argument("--no-throughput", action="store_true", help="skip the throughput run")
    ap.add_argument("--wrk", action="store_true", help="also run wrk on /hello (P=1) as a cross-check")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--require", default="", help="comma list of servers whose absence is an error (e.g. nchan)")
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--quiet-wait", type=float, default=60,
                    help="before each server start, wait up to this many s for the machine to be idle (0 = off)")
    ap.add_argument("--loadgen-arg", action="append", default=[],
                    help="extra fanout argument (repeatable), e.g. --loadgen-arg=--repoll --loadgen-arg=immediate")
    ap.add_argument("--out", default=None, help="results file stem (default results/<date>-<time>)")
    args = ap.parse_args()

    args.server_list = [s.strip() for s in args.servers.split(",") if s.strip()]
    for s in args.server_list:
        if s not in SERVERS:
            ap.error(f"unknown server {s!r}; known: {', '.join(SERVERS)}")
    try:
        args.n_list = [int(x) for x in args.n.split(",") if x.strip()]
    except ValueError:
        ap.error("--n: comma list of integers")
    if not args.n_list or max(args.n_list) > 15000 or min(args.n_list) < 1:
        ap.error("--n: 1 ≤ N ≤ 15000 (the open-file limit is 20000 per process)")
    required = {s.strip() for s in args.require.split(",") if s.strip()}

    def on_signal(sig, _frm):
        for label, pr in list(_current.items()):
            stop_server(label, pr, timeout=5)
        sys.exit(128 + sig)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    now = datetime.datetime.now()
    stem = args.out or os.path.join("results", now.strftime("%Y-%m-%d-%H%M%S"))
    stem = stem if os.path.isabs(stem) else os.path.join(BENCH, stem)
    os.makedirs(os.path.dirname(stem), exist_ok=True)
    scratch = os.path.join(os.path.dirname(stem), "run-" + os.path.basename(stem))
    os.makedirs(scratch, exist_ok=True)
    args.bin = os.path.join(cargo_target_dir(), "release")

    env = {
        "date": now.isoformat(timespec="seconds"),
        "command": "python3 bench/run.py " + " ".join(sys.argv[1:]),
        "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip(),
        "ncpu": os.cpu_count(), "kernel": os.uname().release,
        "nofile": sh("ulimit -n"), "loadavg": open("/proc/loadavg").read().split()[:3],
        "rustc": sh("rustc --version"), "iomux_commit": sh("git -C .. describe --always --dirty"),
        "bin": args.bin,
    }
    results = {"servers": {}, "fanout": [], "extras": []}

    # ---- availability
    for s in args.server_list:
        spec = SERVERS[s]
        meta = {"note": spec.get("note", "")}
        results["servers"][s] = meta
        if spec.get("check"):
            r = subprocess.run(spec["check"], cwd=BENCH, capture_output=True, text=True)
            if r.returncode != 0:
                why = (r.stderr or r.stdout).strip() or f"check failed ({r.returncode})"
                if s in required:
                    sys.exit(f"run.py: {s} is required but cannot run: {why}")
                meta["skipped"] = why
                log(f"{s}: SKIPPED: {why}")
                print(f"NOTE: {s} skipped: {why}", flush=True)
                continue
        if spec.get("version"):
            meta["version"] = sh(spec["version"])
    runnable = [s for s in args.server_list if not results["servers"][s].get("skipped")]

    # ---- build
    if not args.no_build:
        crates = [LOADGEN_CRATE] + [SERVERS[s]["crate"] for s in runnable if SERVERS[s].get("crate")]
        cmd = ["cargo", "build", "--release"] + [a for c in crates for a in ("-p", c)]
        log(f"build: {' '.join(cmd)} (target {os.path.dirname(args.bin)})")
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=3600)
        if r.returncode != 0:
            sys.exit(f"build failed ({r.returncode}):\n{r.stderr[-3000:]}")
    for c in [LOADGEN_CRATE] + [SERVERS[s]["crate"] for s in runnable if SERVERS[s].get("crate")]:
        if not os.path.exists(os.path.join(args.bin, c)):
            sys.exit(f"{os.path.join(args.bin, c)} missing; build it first (or drop --no-build)")

    def one_server(label, s, body):
        """Start server s fresh, run body(res, port, pids), stop it; res is appended to results[kind]."""
        spec = SERVERS[s]
        busy = wait_quiet(args.quiet_wait) if args.quiet_wait > 0 else None
        res = {"server": s, "loadavg_before": open("/proc/loadavg").read().split()[:3],
               "machine_busy_before": round(busy, 3) if busy is not None else None}
        rundir = os.path.join(scratch, label)
        shutil.rmtree(rundir, ignore_errors=True)
        os.makedirs(rundir)
        proc = None
        with open(os.path.join(rundir, "server.log"), "ab") as logf:
            try:
                port = free_port()
                proc = start_server(label, spec, port, rundir, args, logf)
                pids = [proc.pid] + children_of(proc.pid)
                res["pids"] = pids
                body(res, port, pids, proc)
            except Exception as e:  # noqa: BLE001 - keep going with the next run
                res["fatal"] = f"{type(e).__name__}: {e}"
                log(f"{label}: {res['fatal']}")
            finally:
                stop_server(label, proc)
        if proc is not None and proc.returncode not in (0, -signal.SIGTERM, 128 + signal.SIGTERM, None):
            res["exit_code"] = proc.returncode
        return res

    # ---- fan-out: for each N, each server
    fan_budget = lambda n: 60 + 35 + args.idle + (args.rounds + 1) * (2 * args.round_timeout + 5) + 60  # noqa: E731
    for n in args.n_list:
        for s in runnable:
            def body(res, port, pids, proc, n=n, s=s):
                chan = re.sub(r"\W", "", f"{s}{int(time.time())}n{n}")
                lp = run_loadgen(s, "fanout", port, pids, args,
                                 ["--n", str(n), "--rounds", str(args.rounds), "--chan", chan,
                                  "--idle", str(args.idle), "--timeout", str(args.round_timeout)]
                                 + args.loadgen_arg, fan_budget(n))
                res["loadgen"] = lp
                if "fatal" in lp:
                    log(f"{s}: fanout: {lp['fatal']}")
                else:
                    log(f"{s}: N={n} waiting={lp['waiting']} Pss/conn={lp['pss_per_conn_bytes']:.0f} B "
                        f"idle={lp['idle_cpu_ms']:.0f} ms fan-out p50/p99/max={lp['fanout_p50_ms']:.1f}/"
                        f"{lp['fanout_p99_ms']:.1f}/{lp['fanout_max_ms']:.1f} ms lost={lp['lost']} "
                        f"dup={lp['dup']} errors={lp['errors']}")
            res = one_server(f"{s}-n{n}", s, body)
            res["n"] = n
            results["fanout"].append(res)
            write_outputs(stem, results, args, env)
            time.sleep(1)

    # ---- request rate and throughput: once per server
    if not (args.no_hello and args.no_throughput and not args.wrk):
        for s in runnable:
            def body(res, port, pids, proc, s=s):
                if not args.no_hello:
                    for key, depth in (("hello1", 1), ("hello_pipelined", args.pipeline)):
                        h = run_loadgen(s, "hello", port, pids, args,
                                        ["--conns", str(args.hello_conns), "--pipeline", str(depth),
                                         "--duration", str(args.hello_duration)],
                                        args.hello_duration + 60)
                        res[key] = h
                        log(f"{s}: hello ×{depth}: {h.get('rps', 0):,.0f} req/s p99 {h.get('p99_ms')} ms"
                            if "fatal" not in h else f"{s}: hello: {h['fatal']}")
                if args.wrk and shutil.which("wrk"):
                    res["wrk"] = run_wrk(s, port, args)
                if not args.no_throughput:
                    if proc.poll() is not None:
                        raise RuntimeError("server died during the /hello runs")
                    t = run_loadgen(s, "throughput", port, pids, args,
                                    ["--channels", str(args.tp_channels), "--subs", str(args.tp_subs),
                                     "--publishers", str(args.tp_publishers),
                                     "--duration", str(args.tp_duration)],
                                    args.tp_duration + 60)
                    res["throughput"] = t
                    log(f"{s}: throughput {t.get('delivered_per_s', 0):,.0f} msgs/s delivered, "
                        f"{t.get('published_per_s', 0):,.0f} publishes/s, p99 {t.get('latency_p99_ms')} ms, "
                        f"lost {t.get('lost')} out-of-buffer {t.get('out_of_buffer')} dup {t.get('dup')}"
                        if "fatal" not in t else f"{s}: throughput: {t['fatal']}")
            res = one_server(f"{s}-rates", s, body)
            results["extras"].append(res)
            write_outputs(stem, results, args, env)
            time.sleep(1)

    text = write_outputs(stem, results, args, env)
    chart = subprocess.run([sys.executable, os.path.join(BENCH, "chart.py"), stem + ".json",
                            "-o", stem + ".svg"], capture_output=True, text=True)
    if chart.returncode != 0:
        log(f"chart.py failed: {chart.stderr[-500:]}")
    rel = os.path.relpath(stem, os.getcwd())
    log(f"wrote {rel}.md, {rel}.json" + (f", {rel}.svg" if chart.returncode == 0 else ""))
    print(text)


if __name__ == "__main__":
    main()
