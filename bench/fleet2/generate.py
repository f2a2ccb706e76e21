"""A second fleet generator, built apart from make_data.py and `vigil simulate`, for
evaluating how Vigil's failure model holds on a fleet nobody tuned it on (#27).

Its design was fixed before any Vigil result on it was looked at:

- Three asset classes with their own metric names and sets: `db` (qps, p99_ms, conn_used,
  repl_lag_s, disk_used_pct), `cache` (hit_ratio, evictions_per_s, rss_mb, net_out_mbps)
  and `worker` (queue_depth, jobs_per_s, heap_mb, gc_pause_ms, threads, open_fds, cpu_pct).
  Each asset drops one optional metric with probability 0.4, so assets report 4 to 7.
- Every asset has its own levels (log-uniform over a decade or more), its own daily cycle
  (amplitude and phase) and AR(1) noise; nothing is comparable across assets in absolute
  units.
- Timestamps are irregular: a nominal 60 s step with +-20 s jitter, 2% of samples dropped,
  and one to three outages of 10 to 40 minutes per asset (no sample at all).
- Level changes that persist (deploys): one to four per asset, a step of 15 to 60% in one to
  three metrics, kept for the rest of the data.
- Benign events that look like failures and are not followed by one: traffic bursts (qps or
  jobs up 2 to 3x, latency and cpu up, 20 to 60 min), nightly batch jobs on workers (queue
  depth and heap up for an hour), cache flushes (hit ratio dips, evictions spike, recovering
  in 30 min), and slow leaks that stop on their own (a connection or fd climb that levels off
  and falls back).
- Failure kinds and precursors that neither existing simulator has, drawn from public
  postmortems: `connection_leak` (db: connections climb linearly for 2 to 6 h to the pool
  limit), `replication_stall` (db: lag saw-tooth whose amplitude grows for 30 to 120 min),
  `fd_exhaustion` (worker: open fds climb in stairs for 1 to 4 h), `gc_spiral` (worker: heap
  creeps up and gc pauses grow super-linearly while throughput falls, 30 to 90 min),
  `herd` (cache: evictions and hit ratio become erratic, variance rising, 20 to 60 min), and
  `sudden` (any class: no precursor at all, about a fifth of the failures).
- A failure lasts 10 to 40 minutes (no samples of the failed metrics' usual shape: values
  drop to a floor), then the asset recovers to its levels.

Writes `metrics.csv` (asset,metric,ts,value), `incidents.csv` (asset,kind,started_at,
resolved_at) and `assets.csv` (asset,class) to --out; timestamps are Unix seconds, the data
ending at --end (default: the last midnight UTC).

  python generate.py --seed 1 --assets 40 --days 10 --out /tmp/fleet2-1
"""

import argparse
import csv
import math
import os
import time

import numpy as np

CLASSES = {
    # metric: (low, high) of the asset's level, daily amplitude share, noise share, optional
    "db": {
        "qps": (50, 5000, 0.5, 0.08, False),
        "p99_ms": (5, 200, 0.2, 0.10, False),
        "conn_used": (20, 400, 0.3, 0.05, False),
        "repl_lag_s": (0.05, 2.0, 0.1, 0.30, True),
        "disk_used_pct": (20, 80, 0.0, 0.002, True),
    },
    "cache": {
        "hit_ratio": (0.80, 0.99, 0.02, 0.005, False),
        "evictions_per_s": (1, 500, 0.4, 0.15, False),
        "rss_mb": (500, 30000, 0.05, 0.01, False),
        "net_out_mbps": (10, 2000, 0.5, 0.08, True),
    },
    "worker": {
        "queue_depth": (0, 200, 0.5, 0.25, False),
        "jobs_per_s": (5, 800, 0.5, 0.08, False),
        "heap_mb": (200, 8000, 0.05, 0.02, False),
        "gc_pause_ms": (2, 60, 0.1, 0.15, True),
        "threads": (20, 400, 0.05, 0.01, True),
        "open_fds": (100, 5000, 0.1, 0.02, False),
        "cpu_pct": (5, 70, 0.4, 0.06, True),
    },
}

KINDS = {
    "db": ["connection_leak", "replication_stall"],
    "cache": ["herd"],
    "worker": ["fd_exhaustion", "gc_spiral"],
}

# The metric each kind's precursor shows in; an asset without it fails without one.
PRECURSOR_METRIC = {
    "connection_leak": "conn_used",
    "replication_stall": "repl_lag_s",
    "fd_exhaustion": "open_fds",
    "gc_spiral": "heap_mb",
    "herd": "evictions_per_s",
}

STEP = 60
DAY = 86400


def has_precursor(kind, metrics):
    """Whether a failure of `kind` on an asset reporting `metrics` has a precursor."""
    return PRECURSOR_METRIC.get(kind) in metrics


def loguniform(rng, low, high):
    low = max(low, 1e-3)
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def ar1(rng, n, phi=0.9):
    e = rng.standard_normal(n)
    out = np.empty(n)
    acc = 0.0
    for i in range(n):
        acc = phi * acc + e[i]
        out[i] = acc
    return out * math.sqrt(1 - phi * phi)


def ramp(n, start, length, shape="linear"):
    """0 before start, rising to 1 over length points, 1 after (until the caller cuts)."""
    x = np.zeros(n)
    idx = np.arange(n)
    inside = (idx >= start) & (idx < start + length)
    t = (idx[inside] - start) / max(length, 1)
    if shape == "linear":
        x[inside] = t
    elif shape == "convex":
        x[inside] = t**3
    elif shape == "stairs":
        x[inside] = np.floor(t * 6) / 6
    x[idx >= start + length] = 1.0
    return x


def asset_series(rng, cls, n, t0):
    """The asset's normal metrics (minute grid), its levels, and the metrics it reports."""
    metrics = {}
    minutes = np.arange(n)
    tod = ((t0 + minutes * STEP) % DAY) / DAY
    reported = []
    for name, (low, high, amp, noise, optional) in CLASSES[cls].items():
        if optional and rng.random() < 0.4:
            continue
        reported.append(name)
        if name == "hit_ratio":
            level = rng.uniform(low, high)
        else:
            level = loguniform(rng, low, high)
        phase = rng.uniform(0, 1)
        a = amp * rng.uniform(0.5, 1.5)
        daily = 1 + a * np.sin(2 * math.pi * (tod - phase))
        values = level * daily * (1 + noise * rng.uniform(0.5, 1.5) * ar1(rng, n, rng.uniform(0.6, 0.95)))
        metrics[name] = values
    return metrics, reported


def clip(name, v):
    if name == "hit_ratio":
        return np.clip(v, 0.0, 0.999)
    if name in ("disk_used_pct", "cpu_pct"):
        return np.clip(v, 0.0, 100.0)
    return np.maximum(v, 0.0)


def apply_deploys(rng, m, n):
    for _ in range(rng.integers(1, 5)):
        at = int(rng.integers(n // 10, n))
        for name in rng.choice(list(m), size=min(len(m), int(rng.integers(1, 4))), replace=False):
            factor = 1 + rng.choice([-1, 1]) * rng.uniform(0.15, 0.6)
            if name == "hit_ratio":
                m[name][at:] = 1 - (1 - m[name][at:]) * factor
            else:
                m[name][at:] *= factor


def apply_benign(rng, cls, m, n):
    events = int(rng.integers(3, 9)) * max(1, n // (7 * 1440))
    for _ in range(events):
        at = int(rng.integers(0, n - 120))
        what = rng.choice(["burst", "batch", "flush", "stopped_leak"])
        length = int(rng.integers(20, 61))
        bump = np.zeros(n)
        bump[at : at + length] = np.sin(np.linspace(0, math.pi, length)) if length else 0
        if what == "burst":
            k = rng.uniform(1.0, 2.0)
            for name in ("qps", "jobs_per_s", "net_out_mbps", "evictions_per_s"):
                if name in m:
                    m[name] *= 1 + k * bump
            for name in ("p99_ms", "cpu_pct", "queue_depth", "gc_pause_ms"):
                if name in m:
                    m[name] *= 1 + 0.6 * k * bump
        elif what == "batch" and cls == "worker":
            hour = np.zeros(n)
            hour[at : at + 60] = 1
            for name, k in (("queue_depth", 3.0), ("heap_mb", 0.3), ("cpu_pct", 0.5)):
                if name in m:
                    m[name] *= 1 + k * hour[: n]
        elif what == "flush" and cls == "cache":
            rec = np.zeros(n)
            rec[at : at + 30] = np.linspace(1, 0, 30)[: max(0, min(30, n - at))]
            m["hit_ratio"] *= 1 - 0.3 * rec
            m["evictions_per_s"] *= 1 + 4 * rec
        elif what == "stopped_leak":
            name = {"db": "conn_used", "worker": "open_fds", "cache": "rss_mb"}[cls]
            if name in m:
                climb = int(rng.integers(60, 180))
                shape = ramp(n, at, climb) - ramp(n, at + climb + 60, climb)
                m[name] *= 1 + rng.uniform(0.3, 0.8) * np.clip(shape, 0, 1)


def apply_failure(rng, cls, m, n, at, kind):
    """The precursor of `kind` ending at minute `at`; returns the failure's length."""
    if kind == "connection_leak" and has_precursor(kind, m):
        length = int(rng.integers(120, 361))
        s = max(0, at - length)
        m["conn_used"] *= 1 + rng.uniform(1.0, 2.5) * ramp(n, s, at - s)
        if "p99_ms" in m:
            m["p99_ms"] *= 1 + 0.8 * ramp(n, at - 20, 20, "convex")
    elif kind == "replication_stall" and has_precursor(kind, m):
        length = int(rng.integers(30, 121))
        s = max(0, at - length)
        grow = ramp(n, s, at - s)
        saw = (np.arange(n) % int(rng.integers(5, 15))) / 10.0
        m["repl_lag_s"] *= 1 + 8 * grow * saw
    elif kind == "fd_exhaustion" and has_precursor(kind, m):
        length = int(rng.integers(60, 241))
        s = max(0, at - length)
        m["open_fds"] *= 1 + rng.uniform(0.8, 2.0) * ramp(n, s, at - s, "stairs")
    elif kind == "gc_spiral":
        length = int(rng.integers(30, 91))
        s = max(0, at - length)
        c = ramp(n, s, at - s, "convex")
        m["heap_mb"] *= 1 + 0.5 * ramp(n, s, at - s)
        if "gc_pause_ms" in m:
            m["gc_pause_ms"] *= 1 + 15 * c
        m["jobs_per_s"] *= 1 - 0.6 * c
    elif kind == "herd":
        length = int(rng.integers(20, 61))
        s = max(0, at - length)
        grow = ramp(n, s, at - s)
        wobble = rng.standard_normal(n)
        m["evictions_per_s"] *= np.maximum(0.05, 1 + 2.5 * grow * wobble)
        m["hit_ratio"] *= 1 - 0.08 * grow * np.abs(rng.standard_normal(n))
    # `sudden`, or a kind whose metric the asset lacks: no precursor.
    return int(rng.integers(10, 41))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--assets", type=int, default=40)
    p.add_argument("--days", type=float, default=10)
    p.add_argument("--failures-per-week", type=float, default=2.0, help="per asset")
    p.add_argument("--end", type=int, default=None, help="Unix seconds of the last minute (default: the last midnight UTC)")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    rng = np.random.default_rng(a.seed)
    # Ending at a whole UTC day keeps every run's hours and days aligned alike (the features
    # cut the past in whole hours and days), so that a seed gives the same figures every day.
    end = a.end or int(time.time()) // 86400 * 86400
    end = end // 60 * 60
    n = int(a.days * 1440)
    t0 = end - (n - 1) * STEP
    os.makedirs(a.out, exist_ok=True)
    classes = list(CLASSES)
    with open(os.path.join(a.out, "metrics.csv"), "w", newline="") as fm, open(
        os.path.join(a.out, "incidents.csv"), "w", newline=""
    ) as fi, open(os.path.join(a.out, "assets.csv"), "w", newline="") as fa:
        wm, wi, wa = (csv.writer(f, lineterminator="\n") for f in (fm, fi, fa))
        wm.writerow(["asset", "metric", "ts", "value"])
        wi.writerow(["asset", "kind", "started_at", "resolved_at"])
        wa.writerow(["asset", "class"])
        for i in range(a.assets):
            cls = classes[i % len(classes)]
            name = f"{cls}-{a.seed}-{i:02d}"
            wa.writerow([name, cls])
            m, reported = asset_series(rng, cls, n, t0)
            apply_deploys(rng, m, n)
            apply_benign(rng, cls, m, n)
            down = np.zeros(n, dtype=bool)
            count = rng.poisson(a.failures_per_week * a.days / 7)
            starts = sorted(int(x) for x in rng.integers(400, n - 60, size=count))
            last_end = -1
            for at in starts:
                if at <= last_end + 480:
                    continue
                kind = "sudden" if rng.random() < 0.2 else str(rng.choice(KINDS[cls]))
                length = apply_failure(rng, cls, m, n, at, kind)
                down[at : at + length] = True
                last_end = at + length
                wi.writerow([name, kind, t0 + at * STEP, t0 + (at + length) * STEP])
            for k in m:
                m[k] = clip(k, m[k])
                # Failed: the metric sits at a floor.
                m[k][down] = m[k][down] * 0.05
            # Irregular timestamps: jitter, dropped samples, outages.
            keep = rng.random(n) > 0.02
            for _ in range(rng.integers(1, 4)):
                s = int(rng.integers(0, n - 40))
                keep[s : s + int(rng.integers(10, 41))] = False
            jitter = rng.integers(-20, 21, size=n)
            ts = t0 + np.arange(n) * STEP + jitter
            for k in reported:
                v = m[k]
                for j in np.nonzero(keep)[0]:
                    wm.writerow([name, k, int(ts[j]), f"{v[j]:.6g}"])


if __name__ == "__main__":
    main()
