"Integration: the default cache location and the atomic build, in a fresh process."
import json, os, subprocess, sys
from pathlib import Path

TINY = dict(train_classes=20, train_images=120, revisited_queries=4, revisited_gallery=60, gldv2_places=10, gldv2_index=60, gldv2_queries=12)
SCRIPT = f"""
from advbct.landmarks import load_landmarks
d = load_landmarks(size=16, seed=1, progress=False, **{TINY!r})
print(d.root, len(d.train), len(d.test_sets['gldv2_mini'].gallery), len(d.test_sets['gldv2_mini-seen'].gallery))
print(*[f"{{name}}:{{ds.variant}}" for name, ds in d.test_sets.items()])
"""
SETS = ["rparis_mini-seen:seen", "roxford_mini-seen:seen", "gldv2_mini-seen:seen", "rparis_mini:clean", "roxford_mini:clean", "gldv2_mini:clean"]

def test_build_in_default_root(tmp_path):
    env = {**os.environ, "ADVBCT_DATA": str(tmp_path), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True).stdout.split("\n")
    first = out[0].split()
    root = Path(first[0])
    assert root.parent == tmp_path and root.name.startswith("landmarks-16-1-v2-")  # format 2 in the name: a format-1 folder is never found
    assert first[1:] == ["120", "60", "60"]
    assert out[1].split() == SETS
    manifest = json.loads((root/"manifest.json").read_text())
    assert manifest["seed"] == 1 and manifest["format"] == 2
    assert {p.name for p in root.iterdir() if p.is_dir()} == {"train", *[s.split(":")[0] for s in SETS]}
    assert [p.name for p in tmp_path.iterdir()] == [root.name]  # the temp folder was renamed, nothing left over
    # a second run reuses the cache
    again = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True).stdout.split("\n")
    assert again == out
