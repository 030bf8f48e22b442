"""How close a finished `make reproduce` came to the arithmetic of its training steps.

    python benchmarks/reproduce_floor.py OUT [--workers 2] [--steps 20]

OUT is a finished reproduction's output folder (`timings.json` and `runs/`). For every finished run it reads the
config and the log, counts its optimiser steps (the log's `steps` per epoch, or for older logs the training-set size
its config selects // batch size x epochs), and times one training step of that configuration alone: the same model,
compatibility loss, optimiser and input shapes (trunk features when the run trained from the cached trunk), random
values, with this machine's threads shared out among `--workers` processes as `make reproduce` does. Steps of one
configuration are timed once.

The last line printed is one JSON object: floor_s (steps x step time, summed over the runs, divided by the workers),
train_s (the runs' own logged epoch seconds, likewise), wall_s (timings.json) and ratio = wall_s / floor_s.
"""
import argparse, json, statistics, sys, time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch
from advbct.boundary import class_stats_from_embeddings
from advbct.config import TrainConfig, yaml_fields
from advbct.datasets import training_data
from advbct.losses import Independent, Progress, make_compat_loss
from advbct.train import NEEDS_STATS, TrainStep, build_model, data_tag, make_optimizer

# fields that change what one training step computes (the rest: where it runs, the data order, the schedule)
STEP_FIELDS = ("backbone", "dim", "small_input", "classifier", "pretrained", "trainable_from", "batch_size", "optimizer",
               "method", "boundary", "adversarial", "discriminator_batches", "compat_weight", "cache_trunk",
               "cache_old_embeddings", "image_size", "amp", "channels_last")


def read_run(folder: Path):
    "(config, num_classes, log records) of a finished run folder."
    config = TrainConfig(**yaml_fields((folder / "config.yaml").read_text(), str(folder / "config.yaml")))
    import yaml
    run = (yaml.safe_load((folder / "config.yaml").read_text()) or {}).get("run", {})
    log = [json.loads(l) for l in (folder / "log.jsonl").read_text().splitlines() if l.strip()]
    return config, run.get("num_classes"), [r for r in log if "event" not in r]


def steps_of(config: TrainConfig, log: list, sizes: dict) -> int:
    "Optimiser steps a run took: its log's `steps`, or (logs written before they counted them) its training set's size // batch x epochs."
    if log and all("steps" in r for r in log): return sum(r["steps"] for r in log)
    key = (data_tag(config), config.is_old)
    if key not in sizes:
        data = training_data(config, progress=False)
        sizes[key] = len(data.old if config.is_old else data.new)
    return sizes[key] // config.batch_size * config.epochs


def step_seconds(config: TrainConfig, num_classes: int, num_old: int, steps: int, rounds: int = 3) -> float:
    "Median seconds of one training step of `config` (random inputs of the shapes its loop sees)."
    g = torch.Generator().manual_seed(0)
    model = build_model(config, num_classes)
    size = config.image_size
    shape = (3, size, size)
    if config.cache_trunk:
        with torch.no_grad(): shape = tuple(model.forward_trunk(torch.zeros(2, 3, size, size)).shape[1:])
    b, n = config.batch_size, 8 * config.batch_size
    x_all = torch.randn(n, *shape, generator=g)
    y_all = torch.randint(0, num_classes, (n,), generator=g)
    f_old_all = torch.randn(n, config.dim, generator=g)
    if config.method == "old": compat = Independent()
    else:
        stats = None
        if config.method in NEEDS_STATS:
            emb = torch.randn(num_old * 8, config.dim, generator=g)
            stats = class_stats_from_embeddings(emb, torch.arange(num_old * 8) % num_old, num_old)
        compat = make_compat_loss(config.method, old_classifier_weight=torch.randn(num_old, config.dim, generator=g),
                                  num_old_classes=num_old, stats=stats, new_classifier=model.classifier, dim=config.dim,
                                  boundary=config.boundary, adversarial=config.adversarial, T=config.T, seed=config.seed,
                                  discriminator_batches=config.discriminator_batches)
    if config.channels_last: model.to(memory_format=torch.channels_last)
    step = TrainStep(model, compat, from_trunk=config.cache_trunk).train()
    opt = make_optimizer(config, [p for p in step.parameters() if p.requires_grad])
    total = max(1, steps)

    def one(i):
        s = (i * b) % (n - b)
        x = x_all[s:s + b]
        if config.channels_last and x.dim() == 4: x = x.contiguous(memory_format=torch.channels_last)
        f_old = f_old_all[s:s + b] if config.method != "old" else None
        _, terms, compat_terms = step(x, f_old, y_all[s:s + b], Progress(0, config.epochs, i, total), None)
        loss = terms["ce"] + config.compat_weight * sum(compat_terms.values(), torch.zeros(()))
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()

    for i in range(5): one(i)
    times = []
    for r in range(rounds):
        t = time.perf_counter()
        for i in range(steps): one(i)
        times.append((time.perf_counter() - t) / steps)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="a finished reproduction's output folder (timings.json, runs/)")
    ap.add_argument("--workers", type=int, default=2, help="training processes the reproduction used (make reproduce: 2 on a CPU)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per configuration and round")
    args = ap.parse_args()
    out = Path(args.out)
    timings = json.loads((out / "timings.json").read_text())
    torch.set_num_threads(max(1, torch.get_num_threads() // args.workers))
    runs, sizes, step_time = [], {}, {}
    for folder in sorted((out / "runs").glob("*-*")):
        if not (folder / "done.json").is_file(): continue
        config, num_classes, log = read_run(folder)
        num_old = num_classes
        if config.old_checkpoint:
            num_old = read_run(Path(config.old_checkpoint).parent)[1] if Path(config.old_checkpoint).is_file() else num_classes
        key = tuple(getattr(config, f) for f in STEP_FIELDS) + (num_classes, num_old)
        if key not in step_time:
            step_time[key] = step_seconds(config, num_classes, num_old, args.steps)
        steps = steps_of(config, log, sizes)
        runs.append(dict(run=folder.name, steps=steps, step_ms=round(1000 * step_time[key], 3),
                         floor_s=steps * step_time[key], train_s=sum(r.get("seconds", 0) for r in log)))
        print(f"{folder.name}: {steps} steps x {1000 * step_time[key]:.2f} ms = {steps * step_time[key]:.1f} s "
              f"(logged {runs[-1]['train_s']:.1f} s)", flush=True)
    floor = sum(r["floor_s"] for r in runs) / args.workers
    train = sum(r["train_s"] for r in runs) / args.workers
    wall = float(timings["total_seconds"])
    print(json.dumps(dict(runs=len(runs), workers=args.workers, threads=torch.get_num_threads(), steps=sum(r["steps"] for r in runs),
                          configurations=len(step_time), floor_s=round(floor, 1), train_s=round(train, 1), wall_s=wall,
                          ratio=round(wall / floor, 2))))


if __name__ == "__main__":
    main()
