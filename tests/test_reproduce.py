"The experiment notebooks under papermill with the smoke profile: every table and figure written, numbers sane."
import json, math, os, sys
from pathlib import Path
import pandas as pd
import pytest
from advbct.experiments import MAIN_ROWS, SETTINGS, TRAINING_FREE_ROWS

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / "nbs"
MAIN_METHODS = ["old", *MAIN_ROWS]  # the trained rows
TABLE_METHODS = [*MAIN_METHODS, *TRAINING_FREE_ROWS]  # then the training-free rows (maps fitted on phi*, no run)


def run(nb, out, **parameters):
    pm = pytest.importorskip("papermill")
    # the kernel must import this checkout's advbct
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    (out / "nb").mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(nb), str(out / "nb" / nb.name), parameters={"profile": "smoke", "out_dir": str(out), **parameters},
                        kernel_name="python3", cwd=str(out), progress_bar=False)


def numbers(text):
    "Every number in a table cell like '85.59', '90.05 / 39.37' or '1.0 ± 0.2'."
    out = []
    for part in str(text).replace("±", "/").split("/"):
        part = part.strip()
        if part and part.lstrip("-").replace(".", "", 1).isdigit(): out.append(float(part))
    return out


def check_main_table(out):
    tables = out / "tables"
    for stem in ("main_table", "compatibility_summary"):
        for suffix in (".md", ".csv", ".tex"): assert (tables / f"{stem}{suffix}").is_file(), f"{stem}{suffix} missing"
    df = pd.read_csv(tables / "main_table.csv")
    for setting in SETTINGS:
        assert list(df[df.setting == setting].method) == TABLE_METHODS, setting
    value_cols = [c for c in df.columns if c not in ("setting", "method")]
    for _, row in df.iterrows():
        for c in value_cols:
            if row.method == "old" and c.startswith("P_"): continue
            vals = numbers(row[c])
            assert vals, (row.setting, row.method, c, row[c])
            assert all(0 <= v <= 100 and not math.isnan(v) for v in vals), (row.setting, row.method, c, row[c])
    records = json.loads((tables / "main_records.json").read_text())
    assert all(0 <= r[k] <= 1 for r in records for k in ("self", "cross", "old"))
    assert set(pd.read_csv(tables / "compatibility_summary.csv").setting) == set(SETTINGS)


def check_backfilling_order(tables):
    "The three backfilling orders per method: areas and negative flip rates in [0, 100], the oracle never below random."
    for suffix in (".md", ".csv", ".tex"): assert (tables / f"backfilling_order{suffix}").is_file()
    df = pd.read_csv(tables / "backfilling_order.csv")
    assert set(df.method) == set(MAIN_ROWS) and set(df.order) == {"random", "disagreement", "oracle"}, df
    values = df.drop(columns=["method", "order"])
    assert values.map(lambda v: 0 <= v <= 100).all().all(), df
    areas = [c for c in values.columns if "area" in c]
    for method in MAIN_ROWS:
        rows = df[df.method == method].set_index("order")
        assert (rows.loc["oracle", areas] >= rows.loc["random", areas] - 1e-9).all(), (method, rows)


def check_index_compatibility(tables, test_sets, distractors):
    "The index table: every model through exact search and the three indexes, mAP and recall in [0, 100], exact = the main table's."
    for suffix in (".md", ".csv", ".tex"): assert (tables / f"index_compatibility{suffix}").is_file()
    df = pd.read_csv(tables / "index_compatibility.csv")
    searches = ["exact", "ivf_flat", "ivf_pq", "hnsw"]
    assert list(df.model) == [m for m in MAIN_METHODS for _ in searches] and list(df.search) == searches * len(MAIN_METHODS)
    for _, row in df.iterrows():
        for t in test_sets:
            vals = numbers(row[t])
            assert len(vals) == 2 and all(0 <= v <= 100 for v in vals), (row.model, row.search, t, row[t])
            if row.search == "exact": assert vals[1] == 100.0, (row.model, t, row[t])
    records = json.loads((tables / "index_compatibility_records.json").read_text())
    assert all(0 <= r["map"] <= 1 for r in records)
    assert all((r["n_distractors"] > 0) == distractors for r in records)
    # without distractors, exact search gives the main table's own numbers: M(o,o) for the old model, M(n,o) for a new one
    main = {(r["method"], r["test_set"]): r for r in json.loads((tables / "main_records.json").read_text())
            if r["setting"] == "extended_data" and r["seed"] == 0}
    for r in records:
        if r["search"] == "exact_no_distractors":
            want = main[("old" if r["model"] == "old" else r["model"], r["test_set"])]["old" if r["model"] == "old" else "cross"]
            assert abs(r["map"] - want) < 1e-12, r


@pytest.mark.slow  # the whole reproduction below covers it; kept to debug the main table alone
def test_main_table_smoke(tmp_path):
    run(NBS / "experiments" / "main_table.ipynb", tmp_path)
    check_main_table(tmp_path)


def test_reproduce_smoke(tmp_path):
    "reproduce.ipynb with the smoke profile (about 3 minutes on 2 cores): every table and figure, sane values."
    # overrides as one string, the way `make reproduce OVERRIDES="..."` passes them (values the smoke runs have anyway)
    run(NBS / "reproduce.ipynb", tmp_path, overrides="epochs=1 batch_size=32")
    check_main_table(tmp_path)
    assert json.loads((tmp_path / "timings.json").read_text())["overrides"] == ["epochs=1", "batch_size=32"]
    tables, figures = tmp_path / "tables", tmp_path / "figures"
    for stem in ("ablations", "backfilling", "sequential_ac", "embedding_radii"):
        for suffix in (".md", ".csv", ".tex"): assert (tables / f"{stem}{suffix}").is_file(), f"{stem}{suffix} missing"
    for name in ("ablation_T_sweep.csv", "backfilling_curves.json", "sequential_matrices.json", "training_log.csv", "ablation_records.json"):
        assert (tables / name).is_file(), name
    for stem in ("ablation_T_sweep", "backfilling", "sequential_matrices", "embeddings_pca", "training_curves"):
        for suffix in (".png", ".pdf"):
            f = figures / f"{stem}{suffix}"
            assert f.is_file() and f.stat().st_size > 1000, f
    abl = pd.read_csv(tables / "ablations.csv")
    assert list(abl.method) == ["old", "independent", "p2s_fixed", "p2s_fixed_min", "p2s_elastic", "adv_only", "advbct",
                                "advbct_joint_disc", "advbct_T0.5", "advbct_T1.5"]
    back = pd.read_csv(tables / "backfilling.csv")
    assert len(back) == 7 and back.drop(columns=["method"]).map(lambda v: 0 <= v <= 100).all().all()
    for c in json.loads((tables / "backfilling_curves.json").read_text()):
        assert len(c["map"]) == 11 and all(0 <= v <= 1 for v in c["map"] + c["negative_flip_rate"])
    seq = pd.read_csv(tables / "sequential_ac.csv")
    assert list(seq.method) == ["bct", "advbct"] and seq.drop(columns=["method"]).map(lambda v: 0 <= v <= 100).all().all()
    for r in json.loads((tables / "sequential_matrices.json").read_text()):
        assert len(r["matrix"]) == 3 and all(0 <= v <= 1 for row in r["matrix"] for v in row)
    radii = pd.read_csv(tables / "embedding_radii.csv")
    assert set(radii.method) == {"independent", "bct", "advbct"} and radii[["inside_r_max", "inside_r_e"]].le(100).all().all()
    log = pd.read_csv(tables / "training_log.csv")
    assert {"ce", "total", "epoch"} <= set(log.columns) and log[["ce", "total"]].notna().all().all()
    timings = json.loads((tmp_path / "timings.json").read_text())
    assert set(timings["notebooks"]) == {"main_table", "ablations", "backfilling", "index_compatibility", "training_curves", "embeddings", "sequential"}
    summary = (tmp_path / "summary.md").read_text()
    assert "main_table" in summary and "figures/backfilling.png" in summary
    # the executed notebooks are kept
    assert len(list((tmp_path / "notebooks").glob("*.ipynb"))) == 7
    check_backfilling_order(tables)
    check_index_compatibility(tables, ["synthetic_a", "synthetic_b"], distractors=True)
    # one progress line per run, printed by the main-table notebook and passed on by reproduce.ipynb (what `make reproduce` shows)
    texts = {}
    for nb in (tmp_path / "notebooks" / "main_table.ipynb", tmp_path / "nb" / "reproduce.ipynb"):
        cells = json.loads(nb.read_text())["cells"]
        texts[nb.name] = text = "".join("".join(o.get("text", "")) for c in cells for o in c.get("outputs", []) if o.get("name") == "stdout")
        for setting in SETTINGS:
            for method in TABLE_METHODS:
                assert f"{setting} | {method} | seed 0 | " in text, (nb.name, setting, method)
    # every run trained first, in reproduce.ipynb's one pool: the main table's notebook found each one finished
    lines = [l for l in texts["main_table.ipynb"].splitlines() if " | seed 0 | " in l]
    trained = [l for l in lines if l.split(" | ")[1] in MAIN_METHODS]
    assert len(trained) == len(SETTINGS) * len(MAIN_METHODS) and all("(cached)" in l for l in trained), lines
    # the training-free rows fit their maps in the notebook: one line each, nothing trained
    assert len(lines) - len(trained) == len(SETTINGS) * len(TRAINING_FREE_ROWS) and all("no training" in l for l in lines if l not in trained), lines
    pool_lines = [l for l in texts["reproduce.ipynb"].splitlines() if l.endswith("trained in the pool")]
    # (the smoke profile's backbone settings are its data and class runs: each run is trained once)
    assert {l.split(" | ")[1] for l in pool_lines if l.split(" | ")[0] in SETTINGS} >= set(MAIN_ROWS), pool_lines
    assert any(l.startswith("sequential bct | seed 0") for l in pool_lines), pool_lines
    assert timings["training_seconds"] < timings["total_seconds"]


# the paper's data layout at a small scale: GLDv2-clean CSV and image folders, rparis6k/ and roxford5k/ with their gnd
# pickles, gldv2_retrieval/ (built from an embedded landmarks build by `paper_layout_of`)
PAPER_BUILD = dict(size=32, seed=1, train_classes=20, train_images=120, revisited_queries=4, revisited_gallery=40,
                   gldv2_places=10, gldv2_index=40, gldv2_queries=10)
# ImageNet weights the offline way the README documents: state-dict files under the names the paper profile asks for,
# in the torch hub cache that TORCH_HOME points to (random weights: the test checks the path, not the numbers)
HUB_FILES = {"resnet18": "resnet18-f37072fd.pth", "resnet50": "resnet50_a1_0-14fe96d1.pth"}
# small and fast: 32 px, one epoch, small batches, on the CPU; amp=false because float16 convolutions have no fast CPU
# kernel (the AMP branch itself runs on the CPU in nbs/08_train.ipynb's tests)
PAPER_OVERRIDES = ["image_size=32", "epochs=1", "batch_size=16", "num_workers=0", "milestones=[1]", "amp=false"]
# one run at a time in each notebook's kernel, so that no training pool is started in each of the six notebooks
# (the pool itself is tested in nbs/11_experiments.ipynb and by the smoke reproduction)
WORKERS = 1
PAPERMILL_PARAMETERS = {"profile", "seeds", "data_root", "out_dir", "device", "workers", "overrides"}


def test_parameters_parse():
    "papermill reads every parameter of reproduce.ipynb and of each experiment notebook (a line it cannot parse is dropped)."
    pm = pytest.importorskip("papermill")
    for nb in [NBS / "reproduce.ipynb", *sorted((NBS / "experiments").glob("*.ipynb"))]:
        assert set(pm.inspect_notebook(str(nb))) == PAPERMILL_PARAMETERS, nb.name


def paper_layout(root):
    from advbct.landmarks import build_landmarks
    from advbct.datasets import paper_layout_of
    lm = build_landmarks(root / "lm", progress=False, **PAPER_BUILD)
    return paper_layout_of(lm, root / "data")


def hub_cache(torch_home):
    import torch, torchvision
    folder = torch_home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    for name, file in HUB_FILES.items():
        torch.manual_seed(0)
        torch.save(getattr(torchvision.models, name)().state_dict(), folder / file)
    return torch_home


def test_reproduce_paper_layout(tmp_path, monkeypatch):
    "reproduce.ipynb with the paper profile on a small build in the paper's data layout: every table and figure, both protocols labelled."
    data = paper_layout(tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(hub_cache(tmp_path / "torch")))
    out = tmp_path / "out"
    run(NBS / "reproduce.ipynb", out, profile="paper", data_root=str(data), device="cpu", workers=WORKERS, overrides=PAPER_OVERRIDES)
    tables, figures = out / "tables", out / "figures"
    for stem in ("main_table", "compatibility_summary", "ablations", "backfilling", "sequential_ac", "embedding_radii"):
        for suffix in (".md", ".csv", ".tex"): assert (tables / f"{stem}{suffix}").is_file(), f"{stem}{suffix} missing"
    for stem in ("ablation_T_sweep", "backfilling", "sequential_matrices", "embeddings_pca", "training_curves"):
        assert (figures / f"{stem}.png").is_file() and (figures / f"{stem}.png").stat().st_size > 1000, stem
    # both ROxford/RParis query protocols, labelled, in the main table and the summary
    for stem in ("main_table", "compatibility_summary"):
        text = (tables / f"{stem}.md").read_text()
        assert "uncropped (paper)" in text and "cropped (revisitop)" in text, (stem, text[:500])
    df = pd.read_csv(tables / "main_table.csv")
    assert set(df.setting) == set(SETTINGS) and set(df.method) == set(TABLE_METHODS)
    check_backfilling_order(tables)
    check_index_compatibility(tables, ["rparis6k", "roxford5k", "rparis6k-uncropped", "roxford5k-uncropped", "gldv2"],
                              distractors=False)
    for col in ("rparis6k", "roxford5k", "gldv2"):
        for cell in df[col]:
            vals = numbers(cell)
            assert vals and all(0 <= v <= 100 for v in vals), (col, cell)
    records = json.loads((tables / "main_records.json").read_text())
    assert {r["test_set"] for r in records} == {"rparis6k", "roxford5k", "rparis6k-uncropped", "roxford5k-uncropped", "gldv2"}
    assert all(0 <= r[k] <= 1 for r in records for k in ("self", "cross", "old"))
    # the overrides reached every run, and every run records the torch that trained it
    import yaml, torch
    runs = [p for p in (out / "runs").iterdir() if (p / "done.json").is_file()]
    assert len(runs) >= 2 * 1 + 4 * 7
    for p in runs:
        cfg = yaml.safe_load((p / "config.yaml").read_text())
        assert (cfg["image_size"], cfg["epochs"], cfg["batch_size"], cfg["amp"], cfg["dataset"], cfg["pretrained"]) == (32, 1, 16, False, "gldv2", "imagenet"), p
        assert json.loads((p / "done.json").read_text())["torch"] == torch.__version__
    seq = pd.read_csv(tables / "sequential_ac.csv")
    assert list(seq.method) == ["bct", "advbct"]
