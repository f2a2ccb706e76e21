"""Writes the Azure predictive-maintenance subset (../shared/datasets/azure_pdm, 20 machines,
90 days of hourly telemetry) in the layout generate.py writes, so that run.sh evaluates Vigil
and the reference on it with the same protocol (#27): metrics.csv (asset,metric,ts,value:
volt, rotate, pressure, vibration, and errors, the machine's error records in the hour),
incidents.csv (asset,kind,started_at,resolved_at: each component failure, lasting an hour)
and assets.csv (asset,class: the machine's model). Timestamps are shifted by whole days so
that the data ends at the last midnight UTC (retention would drop 2015's samples).

  python azure.py --src ../shared/datasets/azure_pdm/subset_20machines_90days --out DIR
"""

import argparse
import os
import time

import pandas as pd


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    tel = pd.read_csv(f"{a.src}/PdM_telemetry.csv", parse_dates=["datetime"])
    err = pd.read_csv(f"{a.src}/PdM_errors.csv", parse_dates=["datetime"])
    fail = pd.read_csv(f"{a.src}/PdM_failures.csv", parse_dates=["datetime"])
    machines = pd.read_csv(f"{a.src}/PdM_machines.csv")
    secs = lambda s: (s - pd.Timestamp("1970-01-01")) // pd.Timedelta(seconds=1)
    last = int(secs(tel.datetime).max())
    shift = (int(time.time()) // 86400 * 86400 - 3600) - last
    shift -= shift % 86400
    name = lambda m: "machine-" + m.astype(str)
    long = tel.melt(id_vars=["datetime", "machineID"], var_name="metric", value_name="value")
    errors = err.groupby(["datetime", "machineID"]).size().rename("value").reset_index()
    errors = tel[["datetime", "machineID"]].merge(errors, how="left").fillna({"value": 0})
    errors["metric"] = "errors"
    rows = pd.concat([long, errors[["datetime", "machineID", "metric", "value"]]])
    os.makedirs(a.out, exist_ok=True)
    pd.DataFrame({"asset": name(rows.machineID), "metric": rows.metric,
                  "ts": secs(rows.datetime) + shift, "value": rows.value}) \
        .sort_values(["ts", "asset", "metric"]).to_csv(f"{a.out}/metrics.csv", index=False, lineterminator="\n")
    started = secs(fail.datetime) + shift
    pd.DataFrame({"asset": name(fail.machineID), "kind": fail.failure, "started_at": started,
                  "resolved_at": started + 3600}) \
        .to_csv(f"{a.out}/incidents.csv", index=False, lineterminator="\n")
    pd.DataFrame({"asset": name(machines.machineID), "class": machines.model}) \
        .to_csv(f"{a.out}/assets.csv", index=False, lineterminator="\n")


if __name__ == "__main__":
    main()
