"Integration: the default cache location and the atomic build, in a fresh process."
import json, os, subprocess, sys
from pathlib import Path

TINY = dict(train_classes=20, train_images=120, revisited_queries=4, revisited_gallery=60, gldv2_places=10, gldv2_index=60, gldv2_queries=12)
SCRIPT = f"""
from advbct.landmarks import load_landmarks
d = load_landmarks(size=16, seed=1, progress=False, **{TINY!r})
print(d.root, len(d.train), len(d.test_sets['gldv2_mini'].gallery))
"""

def test_build_in_default_root(tmp_path):
    env = {**os.environ, "ADVBCT_DATA": str(tmp_path), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True).stdout.split()
    root = Path(out[0])
    assert root.parent == tmp_path and root.name.startswith("landmarks-16-1-")
    assert out[1:] == ["120", "60"]
    assert json.loads((root/"manifest.json").read_text())["seed"] == 1
    assert [p.name for p in tmp_path.iterdir()] == [root.name]  # the temp folder was renamed, nothing left over
    # a second run reuses the cache
    again = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True).stdout.split()
    assert again == out
