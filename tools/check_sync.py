"""Fail when `nbdev_clean` or `nbdev_export` would change anything, or README.md is stale.

Compares `git status --porcelain` (untracked files included) and the content of every file under
nbs/, advbct/ and README.md before and after each step, so it works in a dirty checkout too."""
import hashlib, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def snapshot():
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    files = [p for d in ("nbs", "advbct") for p in (ROOT / d).rglob("*")
             if p.is_file() and "__pycache__" not in p.parts and ".ipynb_checkpoints" not in p.parts]
    return status, {str(p.relative_to(ROOT)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def changed(before, after):
    (s0, f0), (s1, f1) = before, after
    diff = sorted(k for k in f0.keys() | f1.keys() if f0.get(k) != f1.get(k))
    if s0 != s1 and not diff: diff = ["git status changed:\n" + s1]
    return diff


def step(cmd, what):
    before = snapshot()
    subprocess.run([str(BIN / cmd)], cwd=ROOT, check=True)
    diff = changed(before, snapshot())
    if diff:
        sys.exit(f"{cmd} changed {len(diff)} file(s): {what}. Commit the result.\n  " + "\n  ".join(diff))


step("nbdev_clean", "notebooks were not clean")
step("nbdev_export", "advbct/ is out of sync with the notebooks")
subprocess.run([sys.executable, str(ROOT / "tools" / "readme.py"), "--check"], check=True)
print("check_sync: notebooks clean, advbct/ in sync, README.md current")
