"""Prove that `nbdev_test` really executes cells: a notebook that must fail has to make it fail."""
import subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
nb = ROOT / "tests" / "canary" / "must_fail.ipynb"
r = subprocess.run([str(Path(sys.executable).parent / "nbdev_test"), "--path", str(nb)], cwd=ROOT,
                   capture_output=True, text=True)
out = r.stdout + r.stderr
if r.returncode == 0 or "CANARY" not in out:
    sys.exit(f"canary: nbdev_test did not fail on {nb} (exit {r.returncode}); the notebook test runner "
             f"is not executing cells.\n{out[-2000:]}")
print("canary: nbdev_test failed on the deliberately failing notebook, as it must")
