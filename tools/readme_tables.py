"""Print the README's benchmark blocks from a `make reproduce` output folder (default: outputs/).

The main tables and the compatibility summaries are the notebooks' own Markdown files; the per-set counts (in how many
seeds each method meets M(n,o) > M(o,o) on each test set) are computed here from `tables/main_records.json`.
Usage: python tools/readme_tables.py [OUT_DIR]
"""
import json, sys
from pathlib import Path
import pandas as pd
from advbct.report import per_variant
from advbct.metrics import compatible


def counts(records) -> str:
    "Markdown: per method (rows) and setting (columns), seeds with M(n,o) > M(o,o) on each test set, 'a / b / c'."
    df = pd.DataFrame(records)
    df = df[df.method != "old"]
    df["ok"] = [compatible(c, o) for c, o in zip(df.cross, df.old)]
    sets, settings = list(dict.fromkeys(df.test_set)), list(dict.fromkeys(df.setting))
    lines = ["| method | " + " | ".join(settings) + " |", "|---|" + "---|" * len(settings)]
    for method in dict.fromkeys(df.method):
        cells = []
        for s in settings:
            g = df[(df.method == method) & (df.setting == s)]
            cells.append(" / ".join(str(int(g[g.test_set == t].ok.sum())) for t in sets))
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return f"Test sets: {' / '.join(sets)}\n\n" + "\n".join(lines)


def main(out=Path("outputs")):
    tables = Path(out) / "tables"
    records = json.loads((tables / "main_records.json").read_text())
    for variant, suffix, rs in per_variant(records, list):
        print(f"## {variant}: main_table{suffix}.md\n")
        print((tables / f"main_table{suffix}.md").read_text())
        print(f"## {variant}: counts of seeds ({len(set(r['seed'] for r in rs))}) with M(n,o) > M(o,o)\n")
        print(counts(rs) + "\n")
        print(f"## {variant}: compatibility_summary{suffix}.md\n")
        print((tables / f"compatibility_summary{suffix}.md").read_text())
    for name in ("ablations.md", "ablation_T_sweep.csv", "sequential_ac.md", "backfilling.md"):
        if (tables / name).is_file(): print(f"## {name}\n\n" + (tables / name).read_text())


if __name__ == "__main__":
    main(*sys.argv[1:])
