"""Scores a generated fleet's test period with Vigil (through its HTTP API) and with the
reference of #27 (per metric: z-scores of the window's last, mean, min and max against the
asset's own 24 hours before the window, the slope in those units, the log of the window's
spread over the day's, a presence flag; then an L2 logistic regression fitted on the
training period), on the same windows, and prints both.

  python evaluate.py split --data DIR --test-days 3      # writes DIR/train_*.csv, test_*.csv
  python evaluate.py stream --data DIR --url http://127.0.0.1:PORT   # test samples, scored on ingest
  python evaluate.py score --data DIR --url http://127.0.0.1:PORT --test-days 3 [--ingest-scores F]

Windows (by default; --step, --window, --max-fill, --horizon and --stride change them): 60
one-minute grid points (each point the last sample at or before it, carried at most 10
points, as Vigil puts samples on its grid), ending every 5 minutes. A window is
positive when a failure of its asset starts within 30 minutes after its end; windows that
overlap a failure are left out. Test windows end after the cut and at least a horizon
before the data's end; the reference trains on windows ending before the cut minus a
horizon. A failure is predictable when it has a precursor (not `sudden`, and its asset reports
the metric its kind shows in: generate.py's PRECURSOR_METRIC); it is
caught when a window ending within the horizon before it alerts (Vigil: at the threshold its
answer names; the reference: at its best-F1 threshold on the test windows, which flatters
it), and its lead is from the first alerting window in the four horizons before it.
`vigil_alerts` counts the alerts scoring on ingest opened (after `scoring.fire_windows`
windows in a row at the threshold), dated by the window that opened them: a failure is
caught when one opened in the horizon before it (strict: an alert opened earlier and still
open is not counted); `open_in_horizon` also counts those. `auc_predictable` leaves out the
windows before failures without a precursor; `auc_ceiling` is the AUC of a ranking perfect on
the others and at chance on those (no method can score above it on these windows).
"""

import argparse
import json
import os
import sys
import time
import urllib.request

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score
from sklearn.preprocessing import StandardScaler

from generate import PRECURSOR_METRIC

STEP, WINDOW, MAX_FILL, HORIZON, STRIDE = 60, 60, 10, 1800, 5
DAY_POINTS = 1440


def configure(args):
    """The grid and windows from the command line (defaults: fleet2's minute grid)."""
    global STEP, WINDOW, MAX_FILL, HORIZON, STRIDE, DAY_POINTS
    STEP, WINDOW, MAX_FILL, HORIZON, STRIDE = args.step, args.window, args.max_fill, args.horizon, args.stride
    DAY_POINTS = 86400 // STEP


def load(data):
    m = pd.read_csv(f"{data}/metrics.csv")
    inc = pd.read_csv(f"{data}/incidents.csv")
    assets = pd.read_csv(f"{data}/assets.csv")
    return m, inc, assets


def split(args):
    m, inc, _ = load(args.data)
    end = int(m.ts.max())
    cut = end - args.test_days * 86400
    m[m.ts < cut].to_csv(f"{args.data}/train_metrics.csv", index=False)
    m[m.ts >= cut].to_csv(f"{args.data}/test_metrics.csv", index=False)
    inc[inc.started_at < cut].to_csv(f"{args.data}/train_incidents.csv", index=False)
    print(json.dumps({"cut": cut, "train_rows": int((m.ts < cut).sum()), "test_rows": int((m.ts >= cut).sum())}))


def grids(m):
    """Per asset: (start, {metric: values on the minute grid, NaN where unfilled})."""
    out = {}
    for asset, g in m.groupby("asset"):
        t0 = (int(g.ts.min()) + STEP - 1) // STEP * STEP
        t1 = int(g.ts.max()) // STEP * STEP
        points = t0 + STEP * np.arange((t1 - t0) // STEP + 1)
        per = {}
        for metric, s in g.groupby("metric"):
            s = s.sort_values("ts")
            ts, v = s.ts.to_numpy(), s.value.to_numpy(dtype=float)
            i = np.searchsorted(ts, points, side="right") - 1
            ok = (i >= 0) & (points - ts[np.maximum(i, 0)] <= MAX_FILL * STEP)
            per[metric] = np.where(ok, v[np.maximum(i, 0)], np.nan)
        out[asset] = (t0, per)
    return out


def predictable(kind, metrics):
    """A failure with a precursor: not `sudden`, and (for fleet2's kinds) on an asset that
    reports the metric its kind shows in; other sources' kinds all count."""
    return kind != "sudden" and (kind not in PRECURSOR_METRIC or PRECURSOR_METRIC[kind] in metrics)


def failure_after(inc, asset, end):
    """The first failure of `asset` within the horizon after `end`."""
    f = inc[(inc.asset == asset) & (inc.started_at > end) & (inc.started_at <= end + HORIZON)]
    return f.sort_values("started_at").iloc[0]


def windows(grid, inc, lo, hi):
    """(asset, end, last point, label) of windows ending every STRIDE minutes in [lo, hi]."""
    rows = []
    for asset, (t0, per) in grid.items():
        n = len(next(iter(per.values())))
        fails = inc[inc.asset == asset][["started_at", "resolved_at"]].to_numpy()
        for k in range(WINDOW - 1, n, STRIDE):
            end = t0 + k * STEP
            if end < lo or end > hi:
                continue
            start = end - (WINDOW - 1) * STEP
            if any(s <= end and r >= start for s, r in fails):
                continue
            y = any(end < s <= end + HORIZON for s, _ in fails)
            rows.append((asset, end, k, y))
    return rows


def reference_features(grid, rows, metrics):
    x = np.zeros((len(rows), len(metrics) * 8))
    # Rolling day sums per asset and metric, over finite points.
    sums = {}
    for asset, (_, per) in grid.items():
        for metric, v in per.items():
            f = np.isfinite(v)
            z = np.where(f, v, 0.0)
            sums[(asset, metric)] = (
                np.concatenate([[0], np.cumsum(f)]),
                np.concatenate([[0], np.cumsum(z)]),
                np.concatenate([[0], np.cumsum(z * z)]),
            )
    t = np.arange(WINDOW) - (WINDOW - 1) / 2
    for r, (asset, _, k, _) in enumerate(rows):
        per = grid[asset][1]
        first = k - WINDOW + 1
        for j, metric in enumerate(metrics):
            v = per.get(metric)
            if v is None:
                continue
            w = v[first : k + 1]
            if not np.isfinite(w).all():
                continue
            c, s1, s2 = sums[(asset, metric)]
            a, b = max(0, first - DAY_POINTS), first
            n = c[b] - c[a]
            if n < max(DAY_POINTS // 24, 12):  # an hour of points (at least 12)
                continue
            mean = (s1[b] - s1[a]) / n
            sd = max(np.sqrt(max((s2[b] - s2[a]) / n - mean * mean, 0.0)), 1e-6 + 1e-3 * abs(mean))
            slope = float(np.dot(t, w - w.mean()) / np.dot(t, t))
            x[r, j * 8 : j * 8 + 8] = [
                (w[-1] - mean) / sd,
                (w.mean() - mean) / sd,
                (w.min() - mean) / sd,
                (w.max() - mean) / sd,
                slope * WINDOW / sd,
                np.log((w.std() + 1e-9) / sd),
                1.0,
                0.0,
            ]
    return np.clip(x, -50, 50)


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.loads(r.read())


def vigil_scores(url, grid, rows):
    probs, thresholds, contexts = np.full(len(rows), np.nan), np.full(len(rows), np.nan), {}
    for i in range(0, len(rows), 500):
        chunk = rows[i : i + 500]
        body = []
        for asset, end, k, _ in chunk:
            per = grid[asset][1]
            window = {}
            for metric, v in per.items():
                w = v[k - WINDOW + 1 : k + 1]
                if np.isfinite(w).all():
                    window[metric] = [float(x) for x in w]
            body.append({"asset": asset, "window": window, "timestamps": [int(end)]})
        answer = post(f"{url}/v1/score/batch", {"windows": body})
        for j, item in enumerate(answer["scores"]):
            if "probability" in item:
                probs[i + j] = item["probability"]
                thresholds[i + j] = item["threshold"]
                contexts[item.get("context")] = contexts.get(item.get("context"), 0) + 1
    return probs, thresholds, contexts


def stream(args):
    """Posts the test period's samples to POST /v1/samples in batches of --batch-minutes (all
    assets, in time order), as collectors would, at --speed times real time, then waits until
    scoring on ingest is idle."""
    m = pd.read_csv(f"{args.data}/test_metrics.csv").sort_values(["ts", "asset", "metric"])
    first = int(m.ts.min()) // 60 * 60
    batches, started = 0, time.monotonic()
    for _, g in m.groupby((m.ts - first) // (60 * args.batch_minutes)):
        series = [{"asset": a, "metric": k, "timestamps": s.ts.astype(int).tolist(), "values": s.value.tolist()}
                  for (a, k), s in g.groupby(["asset", "metric"])]
        post(f"{args.url}/v1/samples", {"series": series})
        batches += 1
        ahead = started + batches * 60 * args.batch_minutes / args.speed - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    seconds = time.monotonic() - started
    # Idle: the queue empty and the count of scores still for two seconds.
    last, still = None, 0
    while still < 4:
        time.sleep(0.5)
        text = urllib.request.urlopen(f"{args.url}/metrics", timeout=30).read().decode()
        queue = scores = skipped = 0.0
        for line in text.splitlines():
            if line.startswith("vigil_scoring_on_ingest_queue "):
                queue = float(line.split()[-1])
            elif line.startswith("vigil_scoring_on_ingest_skipped_total "):
                skipped = float(line.split()[-1])
            elif line.startswith("vigil_scores_total{"):
                scores += float(line.split()[-1])
        still = still + 1 if (queue == 0 and scores == last) else 0
        last = scores
    print(json.dumps({"streamed_rows": len(m), "batches": batches, "batch_minutes": args.batch_minutes,
                      "speed": round((m.ts.max() - m.ts.min()) / seconds, 1),
                      "skipped_on_ingest": skipped}), file=sys.stderr)


def tested_failures(rows, inc, grid):
    """The predictable failures whose horizon the test windows `rows` cover."""
    lo, hi = min(r[1] for r in rows), max(r[1] for r in rows)
    return [f for f in inc.itertuples()
            if predictable(f.kind, grid[f.asset][1]) and lo + HORIZON <= f.started_at <= hi + HORIZON]


def caught(rows, scores, threshold, inc, grid):
    """Share of predictable test failures caught, and the median lead in minutes."""
    by_asset = {}
    for (asset, end, _, _), p in zip(rows, scores):
        by_asset.setdefault(asset, []).append((end, p))
    hits, leads, total = 0, [], 0
    for f in tested_failures(rows, inc, grid):
        total += 1
        th = threshold if np.isscalar(threshold) else threshold.get(f.asset, 0.5)
        ends = [(e, p) for e, p in by_asset.get(f.asset, []) if f.started_at - 4 * HORIZON <= e < f.started_at]
        if any(p >= th for e, p in ends if e >= f.started_at - HORIZON):
            hits += 1
            first = min(e for e, p in ends if p >= th)
            leads.append((f.started_at - first) / 60)
    return hits / max(total, 1), float(np.median(leads)) if leads else 0.0, total


def alerted(rows, alerts, inc, grid):
    """The alerts opened on ingest against the predictable test failures: the share of those
    with an alert opened in the horizon before them, the share with one open at some time in
    that horizon, the median lead of the first alert opened in the four horizons before each
    caught one, the alerts opened in the test period, and the share of those followed by a
    failure of the asset (while open, or within the horizon after opening)."""
    lo, hi = min(r[1] for r in rows), max(r[1] for r in rows)
    spans = {}
    for a, opened, cleared in alerts.itertuples(index=False):
        cleared = np.inf if pd.isna(cleared) else int(cleared)
        spans.setdefault(a, []).append((int(opened), cleared))
    starts = {}
    for f in inc.itertuples():
        starts.setdefault(f.asset, []).append(f.started_at)
    hits, open_hits, leads, total = 0, 0, [], 0
    for f in tested_failures(rows, inc, grid):
        total += 1
        near = f.started_at - HORIZON
        ours = spans.get(f.asset, [])
        before = [o for o, _ in ours if f.started_at - 4 * HORIZON <= o < f.started_at]
        if any(o >= near for o in before):
            hits += 1
            leads.append((f.started_at - min(before)) / 60)
        open_hits += any(o < f.started_at and c >= near for o, c in ours)
    tested = [(a, o, c) for a, v in spans.items() for o, c in v if lo <= o <= hi + HORIZON]
    true = sum(any(o < s <= max(c, o + HORIZON) for s in starts.get(a, [])) for a, o, c in tested)
    n = len(tested)
    return (hits / max(total, 1), open_hits / max(total, 1),
            float(np.median(leads)) if leads else 0.0, total, n, true / max(n, 1))


def measures(y, p, unpredictable):
    """AUC, AP, windows scored, and the AUC without the windows before failures that have
    no precursor."""
    keep = np.isfinite(p)
    fair = keep & ~unpredictable
    return (float(roc_auc_score(y[keep], p[keep])), float(average_precision_score(y[keep], p[keep])),
            int(keep.sum()), float(roc_auc_score(y[fair], p[fair])))


def score(args):
    m, inc, assets = load(args.data)
    end = int(m.ts.max())
    cut = end - args.test_days * 86400
    grid = grids(m)
    metrics = sorted(m.metric.unique())
    test = windows(grid, inc, cut + WINDOW * STEP, end - HORIZON)
    train = windows(grid, inc, 0, cut - HORIZON)
    y_test = np.array([r[3] for r in test])
    y_train = np.array([r[3] for r in train])
    unpredictable = np.array([y and not predictable(failure_after(inc, a, e).kind, grid[a][1])
                              for a, e, _, y in test])
    ceiling = 1 - unpredictable.sum() / max(y_test.sum(), 1) / 2
    print(json.dumps({"train_windows": len(train), "train_positives": int(y_train.sum()),
                      "test_windows": len(test), "test_positives": int(y_test.sum()),
                      "before_failures_without_precursor": int(unpredictable.sum())}), file=sys.stderr)

    xs = StandardScaler().fit(reference_features(grid, train, metrics))
    lr = LogisticRegression(C=1.0, max_iter=2000).fit(xs.transform(reference_features(grid, train, metrics)), y_train)
    p_ref = lr.predict_proba(xs.transform(reference_features(grid, test, metrics)))[:, 1]
    prec, rec, th = precision_recall_curve(y_test, p_ref)
    f1 = 2 * prec * rec / np.maximum(prec + rec, 1e-12)
    ref_th = float(th[np.argmax(f1[:-1])]) if len(th) else 0.5
    auc, ap, n, fair = measures(y_test, p_ref, unpredictable)
    share, lead, total = caught(test, p_ref, ref_th, inc, grid)
    print(json.dumps({"method": "reference", "auc": round(auc, 4), "ap": round(ap, 4), "windows": n,
                      "auc_ceiling": round(ceiling, 4), "auc_predictable": round(fair, 4),
                      "caught": round(share, 3), "median_lead_min": lead, "failures": total,
                      "threshold": "best F1 on the test windows"}))

    p_vigil, thresholds, contexts = vigil_scores(args.url, grid, test)
    if os.environ.get("DUMP_SCORES"):
        # For offline study (run.sh's DUMP_SCORES): <data dir's name>-<training seed>.npz.
        name = f'{os.path.basename(args.data.rstrip("/"))}-{os.environ.get("VIGIL_TRAINING__SEED", "0")}'
        np.savez(os.path.join(os.environ["DUMP_SCORES"], name),
                 p=np.asarray(p_vigil, dtype=float), y=y_test, unpredictable=unpredictable,
                 asset=np.array([r[0] for r in test]))
    auc, ap, n, fair = measures(y_test, p_vigil, unpredictable)
    per_asset = {}
    for (asset, *_), t in zip(test, thresholds):
        if np.isfinite(t):
            per_asset[asset] = t
    share, lead, total = caught(test, np.nan_to_num(p_vigil), per_asset, inc, grid)
    print(json.dumps({"method": "vigil", "auc": round(auc, 4), "ap": round(ap, 4), "windows": n,
                      "auc_predictable": round(fair, 4),
                      "caught": round(share, 3), "median_lead_min": lead, "failures": total,
                      "threshold": "its own", "contexts": contexts}))

    if args.ingest_scores:
        # Scores stored by scoring on ingest while the test period was streamed in: the same
        # windows, looked up by asset and window end.
        stored = pd.read_csv(args.ingest_scores, names=["asset", "end", "probability", "threshold"])
        by_key = {(a, int(e)): (p, t) for a, e, p, t in stored.itertuples(index=False)}
        found = [by_key.get((asset, int(end))) for asset, end, _, _ in test]
        p_ingest = np.array([f[0] if f else np.nan for f in found], dtype=float)
        per_asset = {asset: f[1] for (asset, *_), f in zip(test, found) if f}
        auc, ap, n, fair = measures(y_test, p_ingest, unpredictable)
        share, lead, total = caught(test, np.nan_to_num(p_ingest), per_asset, inc, grid)
        print(json.dumps({"method": "vigil_on_ingest", "auc": round(auc, 4), "ap": round(ap, 4), "windows": n,
                          "auc_predictable": round(fair, 4),
                          "unscored": round(1 - n / len(test), 4), "caught": round(share, 3),
                          "median_lead_min": lead, "failures": total, "threshold": "its own"}))
    if args.ingest_alerts:
        alerts = pd.read_csv(args.ingest_alerts, names=["asset", "opened", "cleared"])
        share, open_share, lead, total, n, precision = alerted(test, alerts, inc, grid)
        days = (max(r[1] for r in test) - min(r[1] for r in test)) / 86400
        print(json.dumps({"method": "vigil_alerts", "caught": round(share, 3),
                          "open_in_horizon": round(open_share, 3), "median_lead_min": lead,
                          "failures": total, "alerts": n, "alerts_followed_by_failure": round(precision, 3),
                          "alerts_per_asset_day": round(n / max(len({r[0] for r in test}) * days, 1e-9), 3)}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["split", "stream", "score"])
    p.add_argument("--data", required=True)
    p.add_argument("--url")
    p.add_argument("--test-days", type=float, default=3)
    p.add_argument("--batch-minutes", type=int, default=5, help="stream: minutes of samples per POST")
    p.add_argument("--speed", type=float, default=1000, help="stream: at most this many times real time")
    p.add_argument("--ingest-scores", help="score: CSV (asset,window end,probability,threshold) stored on ingest")
    p.add_argument("--ingest-alerts", help="score: CSV (asset,opened) of the alerts scoring on ingest opened")
    p.add_argument("--step", type=int, default=60, help="grid step, seconds")
    p.add_argument("--window", type=int, default=60, help="grid points per window")
    p.add_argument("--max-fill", type=int, default=10, help="grid points a value is carried")
    p.add_argument("--horizon", type=int, default=1800, help="seconds after a window a failure makes it positive")
    p.add_argument("--stride", type=int, default=5, help="grid points between scored window ends")
    a = p.parse_args()
    configure(a)
    {"split": split, "stream": stream, "score": score}[a.command](a)


if __name__ == "__main__":
    main()
