"Training loop: exact resume, bad inputs, killed-and-resumed CLI run, and 2-process gloo DDP = 1 process."
import hashlib, json, os, signal, subprocess, sys, tempfile, time
from pathlib import Path
import pytest
import torch
import torch.nn as nn
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import TensorDataset
from advbct.config import profile
from advbct.train import train_old, train_new, load_model, save_model, CHECKPOINT, MODEL, LOG, CONFIG
from advbct.cli import main

ROOT = Path(__file__).resolve().parents[1]
EPS32 = torch.finfo(torch.float32).eps  # 1.19e-7


def toy_set(n=64, classes=8, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.randn(n, 3, size, size, generator=g) * 0.5 + (y.float() / classes)[:, None, None, None]
    return TensorDataset(x, y)


def smoke(out, **kw):
    return profile("smoke", out_dir=str(out), **kw)


def assert_same_weights(a, b, rtol=0.0, atol=0.0):
    "Every state-dict tensor equal: bit for bit by default, else |a - b| <= atol + rtol * |b|."
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        if rtol == atol == 0: assert torch.equal(sa[k], sb[k]), k
        else: assert torch.allclose(sa[k].float(), sb[k].float(), rtol=rtol, atol=atol), (k, (sa[k].float() - sb[k].float()).abs().max())


@pytest.fixture(scope="module")
def old_model(tmp_path_factory):
    return train_old(smoke(tmp_path_factory.mktemp("old"), epochs=1), toy_set(), progress_bar=False)


def sha(path): return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ---------------------------------------------------------------- fast: resume
def test_advbct_resume_is_exact(tmp_path, old_model):
    "1 epoch, stop, resume for the 2nd == 2 uninterrupted epochs, bit for bit (model, discriminator, boundary)."
    cfg = dict(method="advbct", epochs=2, schedule="cosine")
    full = train_new(smoke(tmp_path / "full", **cfg), toy_set(), old_model, progress_bar=False)
    train_new(smoke(tmp_path / "part", **cfg), toy_set(), old_model, stop_after=1, progress_bar=False)
    ck = torch.load(tmp_path / "part" / CHECKPOINT, weights_only=False)
    assert ck["epoch"] == 0 and not (tmp_path / "part" / MODEL).exists()
    resumed = train_new(smoke(tmp_path / "part", **cfg), toy_set(), old_model, resume=True, progress_bar=False)
    assert_same_weights(full, resumed)
    a = torch.load(tmp_path / "full" / CHECKPOINT, weights_only=False)["compat"]
    b = torch.load(tmp_path / "part" / CHECKPOINT, weights_only=False)["compat"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    logs = [[json.loads(l) for l in (tmp_path / r / LOG).read_text().splitlines()] for r in ("full", "part")]
    assert [r["epoch"] for r in logs[1]] == [0, 1]
    for x, y in zip(*logs):
        assert {k: v for k, v in x.items() if k != "seconds"} == {k: v for k, v in y.items() if k != "seconds"}


def test_same_seed_same_weights_other_seed_differs(tmp_path):
    a = train_old(smoke(tmp_path / "a", epochs=1), toy_set(), progress_bar=False)
    b = train_old(smoke(tmp_path / "b", epochs=1), toy_set(), progress_bar=False)
    c = train_old(smoke(tmp_path / "c", epochs=1, seed=1), toy_set(), progress_bar=False)
    assert_same_weights(a, b)
    assert not torch.equal(a.neck.weight, c.neck.weight)


# ---------------------------------------------------------------- fast: bad inputs
def test_old_checkpoint_with_missing_and_extra_keys(tmp_path, old_model):
    cfg = smoke(tmp_path / "old")
    state = old_model.state_dict()
    state.pop("bn.running_mean")
    state["head.extra"] = torch.zeros(2)
    torch.save({"model": state, "config": __import__("dataclasses").asdict(cfg), "num_classes": 8}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"missing keys \['bn.running_mean'\], unexpected keys \['head.extra'\]"):
        load_model(tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="missing keys"):
        main(["train", "--profile", "smoke", "--set", "method=l2", "--set", f"out_dir={tmp_path}/new",
              "--old", str(tmp_path / "bad.pt"), "--no-progress", "--debug"])


def test_embedding_size_mismatch(tmp_path, old_model):
    with pytest.raises(ValueError, match="old embedding size 32 != new embedding size 64"):
        train_new(smoke(tmp_path, method="bct", dim=64), toy_set(), old_model, progress_bar=False)


def test_bad_label_and_nan_do_not_overwrite_a_finished_run(tmp_path, old_model):
    out = tmp_path / "run"
    train_new(smoke(out, method="l2", epochs=1), toy_set(), old_model, progress_bar=False)
    before = {n: sha(out / n) for n in (MODEL, CHECKPOINT, LOG, CONFIG)}
    x, y = toy_set().tensors
    bad = TensorDataset(x, torch.where(torch.arange(64) == 5, 8, y))
    # a resume with epochs=2 is refused (the config changed) ...
    with pytest.raises(ValueError, match=r"epochs: 1 -> 2"):
        train_new(smoke(out, method="l2", epochs=2), toy_set(), old_model, resume=True, progress_bar=False)
    # ... and with resume_changed it would train on: the bad label must stop it before anything is written
    with pytest.raises(ValueError, match=r"label 8 outside the classifier's 8 classes \(epoch 1, batch \d+\)"):
        train_new(smoke(out, method="l2", epochs=2), bad, old_model, num_classes=8, resume_changed=True, progress_bar=False)
    nan = TensorDataset(torch.where(torch.arange(64)[:, None, None, None] == 3, torch.tensor(float("nan")), x), y)
    with pytest.raises(FloatingPointError, match=r"non-finite loss at step \d+ \(epoch 1, batch \d+\): terms \['ce', 'l2', 'total'\]"):
        train_new(smoke(out, method="l2", epochs=2), nan, old_model, resume_changed=True, progress_bar=False)
    with pytest.raises(FileExistsError, match="already holds a run"):
        train_new(smoke(out, method="l2", epochs=1), toy_set(), old_model, progress_bar=False)
    assert before == {n: sha(out / n) for n in (MODEL, CHECKPOINT, LOG, CONFIG)}


def test_config_errors_name_the_key(capsys):
    assert main(["train", "--profile", "smoke", "--set", "learning_rate=0.1"]) == 2
    assert "unknown key 'learning_rate'" in capsys.readouterr().err
    assert main(["train", "--profile", "smoke", "--set", "epochs=many"]) == 2
    assert "epochs='many'" in capsys.readouterr().err


# ---------------------------------------------------------------- slow: a real kill
def cli(out, *extra):
    return [sys.executable, "-m", "advbct.cli", "train", "--profile", "smoke", "--set", f"out_dir={out}",
            "--set", "epochs=4", "--set", "image_size=16", "--no-progress", *extra]


@pytest.mark.slow
def test_killed_cli_run_resumes_to_the_same_weights(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(cli(tmp_path / "full"), check=True, env=env, cwd=ROOT)
    proc = subprocess.Popen(cli(tmp_path / "killed"), env=env, cwd=ROOT)
    ckpt = tmp_path / "killed" / CHECKPOINT
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None: time.sleep(0.05)
    proc.send_signal(signal.SIGKILL); proc.wait()
    if (tmp_path / "killed" / MODEL).exists(): pytest.skip("the run finished before it could be killed")
    assert ckpt.exists()
    subprocess.run(cli(tmp_path / "killed", "--resume"), check=True, env=env, cwd=ROOT)
    assert_same_weights(load_model(tmp_path / "full" / MODEL), load_model(tmp_path / "killed" / MODEL))


# ---------------------------------------------------------------- slow: DDP (gloo, 2 processes) == 1 process
def batch_free(model):
    "Replace every BatchNorm by a per-sample normalisation (GroupNorm / LayerNorm)."
    for name, child in model.named_children():
        if isinstance(child, nn.BatchNorm2d): setattr(model, name, nn.GroupNorm(1, child.num_features))
        elif isinstance(child, nn.BatchNorm1d): setattr(model, name, nn.LayerNorm(child.num_features))
        else: batch_free(child)
    return model


def ddp_worker(rank, world, init_file, out, old_path):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        cfg = smoke(out, method="l2", epochs=2, batch_size=8)
        model = batch_free(__import__("advbct.train", fromlist=["build_model"]).build_model(cfg, 8))
        train_new(cfg, toy_set(), load_model(old_path), model=model, progress_bar=False)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path, old_model):
    """Same global batch (2 x 8 vs 1 x 16), same seeded permutation: the per-sample-mean losses (CE, L2) make the
    DDP-averaged gradient equal to the single-process one up to float32 summation order. BatchNorm is replaced by
    per-sample normalisation because without SyncBN (CUDA only in torch) each process would normalise its own half."""
    from advbct.train import build_model
    save_model(old_model, smoke(tmp_path), 8, tmp_path / "old.pt")
    cfg = smoke(tmp_path / "one", method="l2", epochs=2, batch_size=16)
    one = train_new(cfg, toy_set(), load_model(tmp_path / "old.pt"), model=batch_free(build_model(cfg, 8)), progress_bar=False)
    mp.spawn(ddp_worker, args=(2, str(tmp_path / "rendezvous"), str(tmp_path / "two"), str(tmp_path / "old.pt")), nprocs=2, join=True)
    two = batch_free(build_model(cfg, 8))
    two.load_state_dict(torch.load(tmp_path / "two" / MODEL, weights_only=False)["model"])
    init = batch_free(build_model(cfg, 8)).state_dict()
    moved = max((w - init[k]).abs().max().item() for k, w in one.state_dict().items())
    # only the order of summation differs: forward sums (K = 27, 288, 576, 1152, 256; batches of 8 vs 16) and the weight-gradient sums
    # (K <= 16 x 64 = 1024, split 2 x 8 by DDP). Probabilistic bound 6·sqrt(K)·u per sum (u = eps/2) along the path: 3·(96 + 32)·eps
    # = 384·eps relative per gradient, so after 8 steps |dw| <= 384·eps·moved (the weights' largest total change), plus the weights' own
    # rounding in 8 updates, 8·eps relative
    assert_same_weights(one, two, rtol=8 * EPS32, atol=384 * EPS32 * moved)
    # and not trivially: training moved the weights much more than the tolerance
    assert moved > 1e-2 and (one.neck.weight - init["neck.weight"]).abs().max() > 1e-3


@pytest.mark.slow
def test_torchrun_cli(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533"]
    subprocess.run(torchrun + ["-m", "advbct.cli", "train", "--profile", "smoke", "--set", f"out_dir={tmp_path}/old",
                               "--set", "epochs=1", "--no-progress"], check=True, env=env, cwd=ROOT)
    subprocess.run(torchrun + ["-m", "advbct.cli", "train", "--profile", "smoke", "--set", f"out_dir={tmp_path}/adv",
                               "--set", "epochs=1", "--set", "method=advbct", "--old", f"{tmp_path}/old/model.pt",
                               "--no-progress"], check=True, env=env, cwd=ROOT)
    rec = json.loads((tmp_path / "adv" / LOG).read_text().splitlines()[-1])
    assert rec["epoch"] == 0 and "disc_acc" in rec
