"""How much the main table moves between two torch builds, next to how much it moves between seeds.

Reads two `tables/main_records.json` of `make reproduce` (A: several seeds on one torch build, B: seed 0, or any
seeds, on another build) and prints Markdown:
1. per test-set variant, per setting and method and test set: the difference B - A of seed 0's self and cross mAP
   (percentage points) beside the standard deviation of A over its seeds;
2. the compatibility verdicts M(n,o) > M(o,o) of seed 0 under both builds, and every cell where they disagree;
3. each setting's P_1 ranking of the compatible-training methods for seed 0 under both builds.
A conclusion about who is compatible or how the methods rank holds across builds only where both agree.

Usage: python benchmarks/compare_torch_builds.py A/tables/main_records.json B/tables/main_records.json [--seed 0] [--out F.md]
"""
import argparse, json
from pathlib import Path
import numpy as np
import pandas as pd
from advbct.report import per_variant, per_seed_scores
from advbct.metrics import compatible


def load(path):
    return json.loads(Path(path).read_text())


def cell_table(a, b, seed):
    "Rows (setting, method, test set): seed's self/cross under A and B, B - A, and A's std over its seeds (points)."
    da, db = pd.DataFrame(a), pd.DataFrame(b)
    keys = ["setting", "method", "test_set"]
    spread = da.groupby(keys, sort=False)[["self", "cross"]].std(ddof=1).mul(100)
    sa = da[da.seed == seed].set_index(keys)[["self", "cross", "old"]].mul(100)
    sb = db[db.seed == seed].set_index(keys)[["self", "cross", "old"]].mul(100)
    t = sa.merge(sb, left_index=True, right_index=True, suffixes=("_a", "_b")).join(spread.add_prefix("std_"))
    t["d_self"], t["d_cross"] = t.self_b - t.self_a, t.cross_b - t.cross_a
    return t


def markdown_cells(t):
    "One row per (setting, method): per test set 'Δself / Δcross (std self / std cross)'."
    sets = list(dict.fromkeys(t.index.get_level_values("test_set")))
    lines = ["| setting | method | " + " | ".join(sets) + " |", "|---|---|" + "---|" * len(sets)]
    for (setting, method), g in t.groupby(level=["setting", "method"], sort=False):
        g = g.droplevel(["setting", "method"])
        cells = []
        for s in sets:
            r = g.loc[s]
            if method == "old": cells.append(f"{r.d_self:+.1f} ({r.std_self:.1f})")
            else: cells.append(f"{r.d_self:+.1f} / {r.d_cross:+.1f} ({r.std_self:.1f} / {r.std_cross:.1f})")
        lines.append(f"| {setting} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdicts(t):
    "Compatibility of seed 0 under A and B per (setting, method, test set), new models only."
    t = t[t.index.get_level_values("method") != "old"]
    va = [compatible(c, o) for c, o in zip(t.cross_a, t.old_a)]
    vb = [compatible(c, o) for c, o in zip(t.cross_b, t.old_b)]
    return pd.DataFrame(dict(a=va, b=vb), index=t.index)


def ranks(records, seed):
    "{setting: methods ordered by P_1, best first} for one seed (phi* and the old model left out)."
    s = per_seed_scores([r for r in records if r["seed"] == seed])
    s = s[s.method != "independent"]
    return {setting: list(g.sort_values("P_1", ascending=False).method) for setting, g in s.groupby("setting", sort=False)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a"); ap.add_argument("b")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="also write the Markdown here")
    args = ap.parse_args()
    a, b = load(args.a), load(args.b)
    out = []
    for (variant, _, ra), (_, _, rb) in zip(per_variant(a, list), per_variant(b, list)):
        t = cell_table(ra, rb, args.seed)
        d = np.abs(t[["d_self", "d_cross"]].to_numpy()).ravel()
        sd = t[["std_self", "std_cross"]].to_numpy().ravel()
        sd = sd[np.isfinite(sd)]
        out += [f"## {variant} test sets", "",
                f"Seed {args.seed}, build B minus build A, in mAP points: Δself / Δcross, and in brackets A's std over its seeds "
                f"(self / cross). |Δ| median {np.nanmedian(d):.2f}, mean {np.nanmean(d):.2f}, max {np.nanmax(d):.2f}; seed std "
                f"median {np.median(sd):.2f}, mean {sd.mean():.2f}; |Δ| above the seed std in {int((np.abs(t[['d_self', 'd_cross']].to_numpy()) > t[['std_self', 'std_cross']].to_numpy()).sum())} "
                f"of {int(np.isfinite(t[['d_self', 'd_cross']].to_numpy()).sum())} cells.", "", markdown_cells(t), ""]
        v = verdicts(t)
        agree = v[v.a == v.b]
        out += [f"Compatibility M(n,o) > M(o,o) of seed {args.seed}: the two builds agree on {len(agree)} of {len(v)} "
                f"(setting, method, test set) cells ({int(agree.a.sum())} compatible under both)."]
        diff = v[v.a != v.b]
        if len(diff):
            out += ["They disagree on: " + "; ".join(f"{s} {m} {ts} (A {'yes' if r.a else 'no'}, B {'yes' if r.b else 'no'})"
                                                     for (s, m, ts), r in diff.iterrows()) + "."]
        out += ["", f"P_1 ranking of seed {args.seed} (best first):", "", "| setting | build A | build B | same order |", "|---|---|---|---|"]
        rk_a, rk_b = ranks(ra, args.seed), ranks(rb, args.seed)
        for setting in rk_a:
            out.append(f"| {setting} | {', '.join(rk_a[setting])} | {', '.join(rk_b.get(setting, []))} | {rk_a[setting] == rk_b.get(setting)} |")
        out.append("")
    text = "\n".join(out)
    print(text)
    if args.out: Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
