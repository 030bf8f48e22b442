"""The two CPU speed-ups of the `cpu` profile's training step, measured on this machine.

1. EfficientNet-Lite's 1x1 convolutions as one matrix product (`advbct.models.PointwiseConv2d`) against the library's
   convolution: the cpu profile's BCT step from cached trunk features (Lite0 at 64 px, last block and head trained,
   batch 32, random inputs of the real shapes), both models built in one process and timed round-robin so machine load
   affects them alike; median ms per step.
2. Training processes: the same step (with PointwiseConv2d) in one process with all the threads, against two processes
   with one thread each running at once (what `make reproduce WORKERS=2` does); steps per second of the whole machine.

The last line printed is one JSON object.
"""
import argparse, json, os, statistics, subprocess, sys, time
import torch
import torch.nn as nn
from advbct.config import profile
from advbct.losses import make_compat_loss, Progress
from advbct.models import PointwiseConv2d
from advbct.train import build_model, TrainStep, make_optimizer


def make_step(pointwise: bool, seed: int = 0):
    "One training step of the cpu profile's BCT run from cached trunk features (192 x 2 x 2 at 64 px), as train._fit runs it."
    cfg = profile("cpu", method="bct")
    g = torch.Generator().manual_seed(seed)
    n = 2048
    x_all = torch.randn(n, 192, 2, 2, generator=g)
    y_all = torch.randint(0, 200, (n,), generator=g)
    f_old_all = torch.randn(n, 256, generator=g)
    model = build_model(cfg, 200)
    if not pointwise:
        for m in model.modules():
            if type(m) is PointwiseConv2d: m.__class__ = nn.Conv2d  # the library's convolution, same weights
    old = build_model(profile("cpu", seed=1), 200)
    compat = make_compat_loss("bct", old_classifier_weight=old.classifier.weight, num_old_classes=200, new_classifier=model.classifier, dim=256)
    step = TrainStep(model, compat, from_trunk=True).train()
    opt = make_optimizer(cfg, [p for p in step.parameters() if p.requires_grad])
    state = {"i": 0}

    def run():
        i = state["i"]; s = (i * cfg.batch_size) % (n - cfg.batch_size); state["i"] += 1
        x = x_all[s:s + cfg.batch_size].contiguous(memory_format=torch.channels_last)
        _, terms, compat_terms = step(x, f_old_all[s:s + cfg.batch_size], y_all[s:s + cfg.batch_size], Progress(0, 10, i, 1570), False)
        loss = terms["ce"] + cfg.compat_weight * sum(compat_terms.values(), torch.zeros(()))
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    return run


def pointwise_ab(rounds: int, steps: int) -> dict:
    runs = {"convolution": make_step(False), "matrix product": make_step(True)}
    for f in runs.values():
        for _ in range(20): f()
    times = {k: [] for k in runs}
    for _ in range(rounds):
        for k, f in runs.items():
            t = time.perf_counter()
            for _ in range(steps): f()
            times[k].append((time.perf_counter() - t) / steps * 1000)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"threads": torch.get_num_threads(), "ms_per_step": {k: round(v, 2) for k, v in med.items()},
            "speedup": round(med["convolution"] / med["matrix product"], 2)}


def worker(seconds: float) -> None:
    "Child mode: run steps for `seconds` after warm-up and print how many."
    f = make_step(True)
    for _ in range(20): f()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds: f(); n += 1
    print(json.dumps({"steps": n, "seconds": time.perf_counter() - t0}))


def processes(count: int, threads: int, seconds: float) -> float:
    "Steps per second of `count` processes with `threads` threads each, running at once."
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, __file__, "--worker", str(seconds), "--threads", str(threads)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) for _ in range(count)]
    outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    return sum(o["steps"] / o["seconds"] for o in outs)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=8, help="round-robin rounds of the pointwise A/B")
    ap.add_argument("--steps", type=int, default=40, help="steps per model per round")
    ap.add_argument("--seconds", type=float, default=30.0, help="timed seconds of each process layout")
    ap.add_argument("--worker", type=float, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads: torch.set_num_threads(args.threads)
    if args.worker is not None:
        worker(args.worker); sys.exit(0)
    cores = os.cpu_count() or 1
    ab = pointwise_ab(args.rounds, args.steps)
    print(f"1x1 convolutions, {ab['threads']} threads: convolution {ab['ms_per_step']['convolution']} ms/step, "
          f"matrix product {ab['ms_per_step']['matrix product']} ms/step ({ab['speedup']}x)")
    one = processes(1, cores, args.seconds)
    many = processes(cores, 1, args.seconds) if cores > 1 else one
    print(f"training throughput: 1 process x {cores} threads {one:.1f} steps/s, {cores} processes x 1 thread {many:.1f} steps/s "
          f"({many / one:.2f}x)")
    print(json.dumps({"pointwise": ab, "processes": {"cores": cores, "one_process_steps_per_s": round(one, 2),
                                                     "one_per_core_steps_per_s": round(many, 2), "ratio": round(many / one, 2)}}))
