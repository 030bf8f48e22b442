"""The `advbct` command as a user meets it, through real processes: one-line errors and exit codes, locked run folders,
resume that checks its config, label spaces that must agree, unreadable images caught before training, file modes."""
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
SMOKE = ["--profile", "smoke", "--no-progress"]


def advbct(*args, umask=None, **kw):
    "Run `python -m advbct.cli ARGS`: the CompletedProcess (text)."
    pre = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.run([sys.executable, "-m", "advbct.cli", *map(str, args)], capture_output=True, text=True, env=ENV,
                          cwd=ROOT, preexec_fn=pre, timeout=300, **kw)


def assert_error(proc, *fragments):
    "Exit status 2, nothing on stdout, and exactly one line on stderr: `advbct: error: ...` holding every fragment."
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout == "", proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("advbct: error: "), proc.stderr[-2000:]
    for f in fragments: assert str(f) in lines[0], (f, lines[0])


def test_one_line_errors_and_exit_codes(tmp_path):
    assert_error(advbct("train", *SMOKE, "--set", "learning_rate=0.1"), "unknown key 'learning_rate'")
    assert_error(advbct("train", *SMOKE, "--set", "epochs=2.5"), "epochs='2.5'")
    (tmp_path / "bad.yaml").write_text("epochs: 2\nlr: [0.1\n")
    assert_error(advbct("train", *SMOKE, "--config", tmp_path / "bad.yaml"), f"{tmp_path / 'bad.yaml'} line 3, column 1: not valid YAML")
    assert_error(advbct("train", *SMOKE, "--set", "method=bct", "--set", f"out_dir={tmp_path}/x"), "needs --old PATH")
    assert_error(advbct("train", *SMOKE, "--set", "method=bct", "--old", tmp_path / "missing.pt", "--set", f"out_dir={tmp_path}/x"),
                 f"no model checkpoint {tmp_path / 'missing.pt'}")
    (tmp_path / "empty.pt").write_bytes(b"")
    assert_error(advbct("train", *SMOKE, "--set", "method=bct", "--old", tmp_path / "empty.pt", "--set", f"out_dir={tmp_path}/x"),
                 f"{tmp_path / 'empty.pt'} is not a readable model checkpoint")
    # --debug: the traceback, and Python's own exit status
    debug = advbct("train", *SMOKE, "--set", "learning_rate=0.1", "--debug")
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "unknown key 'learning_rate'" in debug.stderr
    # success says where the model and the log are
    ok = advbct("train", *SMOKE, "--set", "epochs=1", "--set", f"out_dir={tmp_path}/old")
    assert (ok.returncode, ok.stderr) == (0, ""), ok.stderr
    assert ok.stdout == f"advbct: model {tmp_path}/old/model.pt, log {tmp_path}/old/log.jsonl\n"


def test_resume_checks_the_config(tmp_path):
    out = tmp_path / "run"
    assert advbct("train", *SMOKE, "--set", "epochs=1", "--set", f"out_dir={out}").returncode == 0
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    # a changed lr and epochs: refused, nothing written
    assert_error(advbct("train", *SMOKE, "--set", "epochs=3", "--set", "lr=0.5", "--set", f"out_dir={out}", "--resume"),
                 "epochs: 1 -> 3, lr: 0.05 -> 0.5", "--resume-changed")
    # the same config on the finished run: said, nothing written
    same = advbct("train", *SMOKE, "--set", "epochs=1", "--set", f"out_dir={out}", "--resume")
    assert same.returncode == 0 and same.stderr.startswith("advbct: warning: ") and "nothing trained, nothing written" in same.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files
    # --resume-changed: two more epochs at the new lr, recorded in config.yaml and the log
    changed = advbct("train", *SMOKE, "--set", "epochs=3", "--set", "lr=0.5", "--set", f"out_dir={out}", "--resume-changed")
    assert changed.returncode == 0, changed.stderr
    log = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines()]
    assert [r.get("event") for r in log] == [None, "config_changed", None, None]
    assert log[1]["changes"] == {"epochs": [1, 3], "lr": [0.05, 0.5]}
    assert "lr: 0.5" in (out / "config.yaml").read_text()
    # --resume on an empty folder says it starts from scratch
    fresh = advbct("train", *SMOKE, "--set", "epochs=1", "--set", f"out_dir={tmp_path}/fresh", "--resume")
    assert fresh.returncode == 0 and "starting from scratch" in fresh.stderr


def test_two_processes_racing_for_one_folder_and_a_killed_holder(tmp_path):
    out = tmp_path / "run"
    long = ["train", *SMOKE, "--set", "epochs=500", "--set", f"out_dir={out}"]
    first = subprocess.Popen([sys.executable, "-m", "advbct.cli", *long], env=ENV, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not ((out / ".lock").is_file() and (out / ".lock").read_text().strip()): time.sleep(0.05)
        assert json.loads((out / ".lock").read_text())["pid"] == first.pid
        assert_error(advbct(*long), f"run folder {out} is in use by process {first.pid}")
    finally:
        first.send_signal(signal.SIGKILL); first.wait(); first.stdout.close(); first.stderr.close()
    # the killed holder's lock is taken over
    again = advbct("train", *SMOKE, "--set", "epochs=1", "--set", f"out_dir={out}", "--overwrite")
    assert again.returncode == 0, again.stderr
    assert f"the lock of process {first.pid}" in again.stderr and "was stale and is taken over" in again.stderr
    assert (out / "model.pt").is_file()


def test_label_spaces_must_agree(tmp_path):
    assert advbct("train", *SMOKE, "--set", "epochs=1", "--set", f"out_dir={tmp_path}/old").returncode == 0
    assert_error(advbct("train", *SMOKE, "--set", "epochs=1", "--set", "method=bct", "--set", "setting=extended_class",
                        "--old", tmp_path / "old" / "model.pt", "--set", f"out_dir={tmp_path}/new"),
                 "label spaces differ: the old classifier's row 0 is class 0", "setting=extended_data", "setting=extended_class")
    assert not (tmp_path / "new" / "log.jsonl").exists()


@pytest.fixture(scope="module")
def paper_layout(tmp_path_factory):
    "A small copy of the embedded benchmark in GLDv2 / revisitop layout (120 training images, 16 px)."
    from advbct.landmarks import build_landmarks
    from advbct.datasets import paper_layout_of
    base = tmp_path_factory.mktemp("data")
    lm = build_landmarks(base / "lm", size=16, seed=1, progress=False, train_classes=20, train_images=120,
                         revisited_queries=4, revisited_gallery=60, gldv2_places=10, gldv2_index=60, gldv2_queries=12)
    return paper_layout_of(lm, base / "real")


def test_a_corrupt_jpeg_in_the_new_only_part_is_caught_before_training(tmp_path, paper_layout):
    from advbct.config import profile
    from advbct.datasets import training_data
    data = ["--set", "dataset=gldv2", "--set", f"root={paper_layout}", "--set", "image_size=16", "--set", "epochs=1"]
    d = training_data(profile("smoke", dataset="gldv2", root=str(paper_layout), image_size=16), progress=False)
    new_only = sorted(set(d.split.new_indices.tolist()) - set(d.split.old_indices.tolist()))
    corrupt = d.full.paths[new_only[0]]
    corrupt.write_bytes(corrupt.read_bytes()[:200])  # a JPEG cut short
    # the decode pass names it before any training
    assert_error(advbct("check-data", *SMOKE, *data), "1 of ", "images cannot be read", str(corrupt), "on_bad_image=skip")
    # the old model never reads it; the new model trains without it and records the skip
    assert advbct("train", *SMOKE, *data, "--set", f"out_dir={tmp_path}/old").returncode == 0
    new = advbct("train", *SMOKE, *data, "--set", "method=bct", "--set", "on_bad_image=skip", "--old", tmp_path / "old" / "model.pt",
                 "--set", f"out_dir={tmp_path}/new")
    assert new.returncode == 0, new.stderr
    events = [json.loads(l) for l in (tmp_path / "new" / "log.jsonl").read_text().splitlines() if '"event"' in l]
    assert events == [{"event": "skipped_images", "count": 1, "images": [str(corrupt)]}]
    # a missing image stops `advbct train` before anything is written
    corrupt.unlink()
    assert_error(advbct("train", *SMOKE, *data, "--set", f"out_dir={tmp_path}/old2"), "training images of dataset 'gldv2'", "are missing", str(corrupt))
    assert not (tmp_path / "old2").exists()


def test_a_bad_csv_row_is_named(tmp_path, paper_layout):
    import shutil
    root = tmp_path / "gldv2"
    shutil.copytree(paper_layout / "train", root / "train")
    lines = (paper_layout / "train_clean.csv").read_text().splitlines()
    lines[2] = "twenty-two," + lines[2].split(",", 1)[1]
    (root / "train_clean.csv").write_text("\n".join(lines) + "\n")
    assert_error(advbct("train", *SMOKE, "--set", "dataset=gldv2", "--set", f"root={root}", "--set", f"out_dir={tmp_path}/run"),
                 f"{root / 'train_clean.csv'} line 3, column landmark_id: 'twenty-two' is not an integer")


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    assert advbct("train", *SMOKE, "--set", "epochs=1", "--set", f"out_dir={tmp_path}/run", umask=umask).returncode == 0
    for name in ("model.pt", "checkpoint.pt", "config.yaml", "log.jsonl"):
        assert (tmp_path / "run" / name).stat().st_mode & 0o777 == mode, name
