"Run-folder locks between real processes: a simultaneous race, and take-over after `kill -9`."
import json, os, signal, subprocess, sys, time
from pathlib import Path

# Waits for `go` to appear, tries the lock once, prints one JSON line with the outcome, and (if it got
# the lock) holds it until its stdin closes.
CHILD = r"""
import json, os, sys, time, warnings
from pathlib import Path
from advbct.files import RunLock, RunFolderBusy
folder, go = sys.argv[1], Path(sys.argv[2])
print(json.dumps(dict(ready=True)), flush=True)
while not go.exists(): time.sleep(0.001)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try: lock = RunLock(folder, "test").acquire()
    except RunFolderBusy as e:
        print(json.dumps(dict(pid=os.getpid(), outcome="busy", message=str(e))), flush=True)
        sys.exit()
print(json.dumps(dict(pid=os.getpid(), outcome="locked", nested=lock.nested, took_over=lock.took_over,
                      warnings=[str(w.message) for w in caught])), flush=True)
sys.stdin.read()
lock.release()
"""


def start(folder, go):
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(folder), str(go)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert json.loads(p.stdout.readline()) == dict(ready=True)
    return p


def outcome(p):
    line = p.stdout.readline()
    assert line, f"child {p.pid} printed nothing"
    return json.loads(line)


def stop(*procs):
    for p in procs:
        if p.poll() is None:
            p.stdin.close()
            try: p.wait(timeout=10)
            except subprocess.TimeoutExpired: p.kill(); p.wait()
        p.stdout.close()


def test_race(tmp_path):
    "Two processes try to lock one folder at the same moment: exactly one gets it, the other is told who has it."
    folder, go = tmp_path / "run", tmp_path / "go"
    procs = [start(folder, go), start(folder, go)]
    try:
        go.touch()
        results = sorted((outcome(p) for p in procs), key=lambda r: r["outcome"])
        assert [r["outcome"] for r in results] == ["busy", "locked"], results
        busy, locked = results
        assert not locked["nested"] and locked["took_over"] is None and locked["warnings"] == []
        assert f"run folder {folder} is in use by process {locked['pid']} " in busy["message"]
        assert json.loads((folder / ".lock").read_text())["pid"] == locked["pid"]
    finally: stop(*procs)
    assert (folder / ".lock").read_text() == ""


def test_kill9_takeover(tmp_path):
    "A lock whose holder was killed with SIGKILL is taken over by the next process, with a warning."
    folder, go = tmp_path / "run", tmp_path / "go"
    go.touch()
    first = start(folder, go)
    try:
        assert outcome(first)["outcome"] == "locked"
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    finally: stop(first)
    assert json.loads((folder / ".lock").read_text())["pid"] == first.pid  # the dead holder's record is still there
    second = start(folder, go)
    try:
        result = outcome(second)
        assert result["outcome"] == "locked", result
        assert result["took_over"]["pid"] == first.pid
        assert len(result["warnings"]) == 1 and f"lock of process {first.pid} " in result["warnings"][0]
        assert "was stale and is taken over" in result["warnings"][0]
    finally: stop(second)
