#!/usr/bin/env python3
"""Draw the bench chart from a results JSON (standard library only, hand-written SVG).

    python3 bench/chart.py bench/results/<stem>.json [-o bench/results/<stem>.svg]

Two panels: memory per waiting long-poll subscriber (Pss, KiB) vs N, and fan-out p99 (ms)
vs N; one line per server. run.py calls it at the end of a run.
"""
import argparse
import json
import math
import os
import sys
from xml.sax.saxutils import escape

COLORS = {"iomux": "#d62728", "hyper": "#1f77b4", "nchan": "#2ca02c"}
OTHER_COLORS = ["#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f"]


def nice_step(span, ticks=5):
    raw = span / max(1, ticks)
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def fmt_tick(v):
    if v >= 1000 and v % 1000 == 0:
        return f"{int(v / 1000)}k"
    if v == int(v):
        return f"{int(v):,}"
    return f"{v:g}"


def series(data, key, scale):
    """{server: [(n, value)]} from the fan-out runs."""
    out = {}
    for r in data.get("fanout", []):
        lp = r.get("loadgen") or {}
        if "fatal" in lp or not lp.get("waiting"):
            continue
        v = lp.get(key)
        if not isinstance(v, (int, float)) or v < 0:
            continue
        out.setdefault(r["server"], []).append((r["n"], v * scale))
    for s in out:
        out[s].sort()
    return out


def panel(x0, y0, w, h, title, ylabel, data, colors):
    """SVG elements of one panel at (x0, y0), size w×h (plot area inside margins)."""
    ml, mr, mt, mb = 64, 44, 34, 46
    px0, py0, pw, ph = x0 + ml, y0 + mt, w - ml - mr, h - mt - mb
    ns = sorted({n for pts in data.values() for n, _ in pts}) or [1]
    vals = [v for pts in data.values() for _, v in pts] or [1]
    xmax = max(ns)
    xstep = nice_step(xmax, 5)
    xmax = math.ceil(xmax / xstep) * xstep
    ymax = max(vals) * 1.1 or 1
    ystep = nice_step(ymax, 5)
    ymax = math.ceil(ymax / ystep) * ystep

    def X(n):
        return px0 + pw * n / xmax

    def Y(v):
        return py0 + ph - ph * v / ymax

    el = [f'<text x="{x0 + w / 2:.1f}" y="{y0 + 20}" text-anchor="middle" font-size="15" '
          f'font-weight="bold">{escape(title)}</text>']
    # grid and ticks
    v = 0.0
    while v <= ymax + 1e-9:
        y = Y(v)
        el.append(f'<line x1="{px0}" y1="{y:.1f}" x2="{px0 + pw}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        el.append(f'<text x="{px0 - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{fmt_tick(round(v, 6))}</text>')
        v += ystep
    n = 0.0
    while n <= xmax + 1e-9:
        x = X(n)
        el.append(f'<line x1="{x:.1f}" y1="{py0 + ph}" x2="{x:.1f}" y2="{py0 + ph + 5}" stroke="#333"/>')
        el.append(f'<text x="{x:.1f}" y="{py0 + ph + 18}" text-anchor="middle" font-size="11">{fmt_tick(n)}</text>')
        n += xstep
    # axes
    el.append(f'<line x1="{px0}" y1="{py0}" x2="{px0}" y2="{py0 + ph}" stroke="#333"/>')
    el.append(f'<line x1="{px0}" y1="{py0 + ph}" x2="{px0 + pw}" y2="{py0 + ph}" stroke="#333"/>')
    el.append(f'<text x="{px0 + pw / 2:.1f}" y="{py0 + ph + 36}" text-anchor="middle" font-size="12">'
              f'N waiting subscribers</text>')
    el.append(f'<text x="{x0 + 16}" y="{py0 + ph / 2:.1f}" text-anchor="middle" font-size="12" '
              f'transform="rotate(-90 {x0 + 16} {py0 + ph / 2:.1f})">{escape(ylabel)}</text>')
    # lines; value labels nudged up when they would overlap one already drawn at the same N
    used = {}
    for s, pts in data.items():
        c = colors[s]
        path = " ".join(f"{X(n):.1f},{Y(v):.1f}" for n, v in pts)
        el.append(f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="2"/>')
        for n, v in pts:
            el.append(f'<circle cx="{X(n):.1f}" cy="{Y(v):.1f}" r="3.5" fill="{c}">'
                      f'<title>{escape(s)} N={n:,}: {v:,.2f}</title></circle>')
            ly = Y(v) - 6
            while any(abs(ly - u) < 11 for u in used.get(n, [])):
                ly -= 11
            used.setdefault(n, []).append(ly)
            el.append(f'<text x="{X(n) + 5:.1f}" y="{ly:.1f}" font-size="10" fill="{c}">{v:,.1f}</text>')
    return el


def draw(data):
    mem = series(data, "pss_per_conn_bytes", 1 / 1024)
    p99 = series(data, "fanout_p99_ms", 1)
    servers = list(dict.fromkeys(list(mem) + list(p99)))
    colors, k = {}, 0
    for s in servers:
        if s in COLORS:
            colors[s] = COLORS[s]
        else:
            colors[s] = OTHER_COLORS[k % len(OTHER_COLORS)]
            k += 1
    W, H, PW = 980, 440, 480
    env = data.get("env", {})
    el = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
          f'font-family="Helvetica, Arial, sans-serif">',
          f'<rect width="{W}" height="{H}" fill="white"/>']
    el += panel(0, 0, PW, H - 40, "Memory per waiting subscriber (Pss)", "KiB per subscriber", mem, colors)
    el += panel(PW + 10, 0, PW, H - 40, "Fan-out of one publish, p99", "ms", p99, colors)
    # legend
    x = 80
    for s in servers:
        el.append(f'<line x1="{x}" y1="{H - 18}" x2="{x + 24}" y2="{H - 18}" stroke="{colors[s]}" stroke-width="3"/>')
        el.append(f'<text x="{x + 30}" y="{H - 14}" font-size="12">{escape(s)}</text>')
        x += 40 + 8 * len(s) + 30
    note = f"{env.get('date', '')} · {env.get('cpu', '')} · server on 1 core, load generator on another"
    el.append(f'<text x="{W - 10}" y="{H - 14}" text-anchor="end" font-size="10" fill="#666">{escape(note)}</text>')
    el.append("</svg>")
    return "\n".join(el) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json")
    ap.add_argument("-o", "--out", default=None, help="SVG path (default: the JSON's path with .svg)")
    args = ap.parse_args()
    with open(args.json) as f:
        data = json.load(f)
    out = args.out or os.path.splitext(args.json)[0] + ".svg"
    with open(out, "w") as f:
        f.write(draw(data))
    print(out, file=sys.stderr)


if __name__ == "__main__":
    main()
