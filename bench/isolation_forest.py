"""Isolation-forest benchmark, the scikit-learn side: fits IsolationForest(n_estimators=100,
max_samples=256, random_state=0) on the same train windows Vigil used (train.npy) and scores
the validation windows, best of 3, printing one JSON line like examples/if_bench.rs."""
import json
import sys
import time

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score

out = sys.argv[1]
train = np.load(f"{out}/train.npy")
validation = np.load(f"{out}/validation.npy")
labels = np.load(f"{out}/validation_labels.npy").ravel()
best = None
for _ in range(3):
    t0 = time.perf_counter()
    forest = IsolationForest(n_estimators=100, max_samples=256, random_state=0).fit(train)
    fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores = -forest.score_samples(validation)
    score = time.perf_counter() - t0
    if best is None or fit + score < best[0] + best[1]:
        best = (fit, score)
print(json.dumps({
    "impl": "scikit-learn", "train_rows": len(train), "validation_rows": len(validation),
    "features": train.shape[1], "fit_secs": round(best[0], 4), "score_secs": round(best[1], 4),
    "roc_auc": round(roc_auc_score(labels, scores), 4),
    "avg_precision": round(average_precision_score(labels, scores), 4),
}))
