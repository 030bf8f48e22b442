"The checks that `make test` relies on must themselves catch what they claim to catch."
import json, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import readme  # noqa: E402


def write_nb(path, cells):
    nb = dict(cells=[dict(cell_type=t, metadata={}, source=s, **({} if t == "markdown" else dict(outputs=[], execution_count=None)))
                     for t, s in cells], metadata={}, nbformat=4, nbformat_minor=5)
    path.write_text(json.dumps(nb))


def test_readme_render(tmp_path):
    nb = tmp_path / "index.ipynb"
    write_nb(nb, [("markdown", "# Title"), ("code", "#| hide\nsecret = 1"), ("code", "#| eval: false\nx = 2"),
                  ("markdown", "text")])
    out = readme.render(nb)
    assert "secret" not in out and "#|" not in out
    assert "# Title\n\n```python\nx = 2\n```\n\ntext\n" in out


def test_readme_is_current():
    assert (ROOT / "README.md").read_text(encoding="utf-8") == readme.render(), "run `make sync`"


@pytest.fixture
def clone(tmp_path):
    d = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(d)], check=True)
    return d


def run_check(repo):
    return subprocess.run([sys.executable, str(repo / "tools" / "check_sync.py")], cwd=repo, capture_output=True, text=True)


def test_check_sync_passes_on_clean_clone(clone):
    r = run_check(clone)
    assert r.returncode == 0, r.stdout + r.stderr


def test_check_sync_catches_hand_edit(clone):
    mod = clone / "advbct" / "search.py"
    mod.write_text(mod.read_text() + "\nHAND_EDIT = 1\n")
    r = run_check(clone)
    assert r.returncode != 0 and "out of sync" in r.stderr and "advbct/search.py" in r.stderr


def test_check_sync_catches_unclean_notebook(clone):
    nb = clone / "nbs" / "00_search.ipynb"
    data = json.loads(nb.read_text())
    data["cells"][0]["execution_count"] = 7  # what a run in JupyterLab leaves behind
    nb.write_text(json.dumps(data))
    r = run_check(clone)
    assert r.returncode != 0 and "notebooks were not clean" in r.stderr
