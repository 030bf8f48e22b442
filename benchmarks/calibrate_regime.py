"""Calibrate the embedded benchmark's regime with the oldest baselines only (old model, phi*, L2, BCT).

The regime is right when, over the seeds, on each of the three *seen* test sets:
  (a) phi* beats the old model by at least 3 mAP points (the upgrade is worth making),
  (b) phi*'s cross-test is below 10% of M(o,o) (a new model is not compatible by accident),
  (c) BCT meets M(n,o) > M(o,o).
No other method is run here. Each candidate is a set of TrainConfig changes on top of a profile (the same for every
method, including `compat_weight`) and optional landmark build parameters. Prints one line per (candidate, seed,
method) as runs finish (advbct.experiments.run_line), then per candidate the criteria, and finally one JSON object.

    python benchmarks/calibrate_regime.py --candidates '{"b15_e20": {"trainable_from": 15, "epochs": 20, "lr": 0.05}}' --seeds 0 1 2
"""
import argparse, json, time
from pathlib import Path
import numpy as np
from advbct.experiments import run_setting
from advbct.landmarks import build_landmarks, default_landmarks_root

METHODS = ["independent", "l2", "bct"]


def evaluate_candidate(name, changes, build, args):
    changes = dict(changes)
    changes.setdefault("test_variants", ["seen", "clean"])  # the criteria are read on the seen sets; the clean ones are reported beside them
    if build:  # a non-default build lives in its own folder (default_landmarks_root hashes the changed parameters)
        size = changes.get("image_size", 64)
        changes["root"] = str(build_landmarks(default_landmarks_root(size, 0, build), size=size, progress=False, **build))
    records = []
    for seed in args.seeds:
        t = time.time()
        # run_setting prints one line per run (setting | method | seed | seconds | self/cross per test set)
        records += run_setting(args.profile, args.setting, METHODS, seed, Path(args.runs)/name, progress=False, **changes)
        print(f"{name} seed {seed}: {time.time() - t:.0f} s", flush=True)
    return records


def criteria(records, seeds):
    "Per seen test set and seed: (a) phi* - old >= 3, (b) phi* cross < 0.1 old, (c) BCT cross > old; plus the means."
    out = {}
    sets = sorted({r["test_set"] for r in records if r.get("variant", "clean") == "seen"})
    for t in sets:
        rows = {}
        for s in seeds:
            by = {r["method"]: r for r in records if r["test_set"] == t and r["seed"] == s}
            old = by["old"]["old"]
            rows[s] = dict(old=100 * old, star_self=100 * by["independent"]["self"], star_cross=100 * by["independent"]["cross"],
                           l2_cross=100 * by["l2"]["cross"], bct_cross=100 * by["bct"]["cross"],
                           a=by["independent"]["self"] - old >= 0.03, b=by["independent"]["cross"] < 0.1 * old,
                           c=by["bct"]["cross"] > old)
        out[t] = dict(per_seed=rows, **{k: all(r[k] for r in rows.values()) for k in "abc"},
                      **{f"mean_{k}": round(float(np.mean([r[k] for r in rows.values()])), 2)
                         for k in ("old", "star_self", "star_cross", "l2_cross", "bct_cross")})
    return out



def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--candidates", required=True, help='JSON {name: {TrainConfig changes, optional "build": {landmark params}}}')
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--profile", default="lite"); ap.add_argument("--setting", default="extended_data")
    ap.add_argument("--runs", default="runs/calibration")
    args = ap.parse_args(argv)
    result = {}
    for name, changes in json.loads(args.candidates).items():
        changes = dict(changes); build = changes.pop("build", None)
        t = time.time()
        records = evaluate_candidate(name, changes, build, args)
        crit = criteria(records, args.seeds)
        ok = all(v[k] for v in crit.values() for k in "abc") and bool(crit)
        print(f"== {name}: {'MEETS' if ok else 'misses'} the criteria ({time.time() - t:.0f} s)")
        for t_set, v in crit.items():
            print(f"   {t_set}: old {v['mean_old']}, phi* {v['mean_star_self']} / {v['mean_star_cross']}, "
                  f"L2 cross {v['mean_l2_cross']}, BCT cross {v['mean_bct_cross']}  (a) {v['a']} (b) {v['b']} (c) {v['c']}")
        result[name] = dict(changes=changes, build=build, meets=ok, criteria=crit)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
