"""Studies the failure model's fit on Vigil's own feature rows (written by
`cargo run --release --example features_dump`): a logistic regression on every training
row's standardized features, for negatives kept per positive and an L2 penalty per fitted
window, scored on the rows after the split. This is how `negatives_per_positive` (50) and
the penalty (0.1 per window) were chosen, on fleet2 seed 1 (#27); report on other seeds.

  cargo run --release --example features_dump -- DIR/metrics.csv DIR/incidents.csv DIR/feat
  python lab.py DIR/feat
"""

import json
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.preprocessing import StandardScaler


def load(prefix):
    meta = json.load(open(prefix + ".json"))
    rows = meta["rows"]
    x = np.fromfile(prefix + ".bin", dtype="<f8").reshape(len(rows), len(meta["columns"]))
    y = np.array([r[2] for r in rows])
    part = np.array([r[3] for r in rows])
    return x, y, part


def main():
    x, y, part = load(sys.argv[1])
    train, test = np.where(part == 0)[0], np.where(part == 1)[0]
    rng = np.random.default_rng(0)
    positives, negatives = train[y[train]], train[~y[train]]
    for ratio in [5, 20, 50]:
        kept = rng.choice(negatives, min(len(negatives), ratio * len(positives)), replace=False)
        rows = np.concatenate([positives, kept])
        scaler = StandardScaler().fit(x[rows])
        for penalty in [1e-3, 1e-2, 0.1, 1.0]:
            # sklearn's C weighs the summed loss against half the squared weights: 1 / alpha.
            model = LogisticRegression(C=1 / (penalty * len(rows)), max_iter=3000)
            model.fit(scaler.transform(x[rows]), y[rows])
            p = model.decision_function(scaler.transform(x[test]))
            print(json.dumps({"negatives_per_positive": ratio, "penalty_per_window": penalty,
                              "auc": round(roc_auc_score(y[test], p), 4),
                              "ap": round(average_precision_score(y[test], p), 4)}))


if __name__ == "__main__":
    main()
