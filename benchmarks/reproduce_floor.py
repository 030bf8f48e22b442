"""How close a finished `make reproduce` came to the arithmetic of its training steps.

    python benchmarks/reproduce_floor.py OUT [--workers 2] [--steps 20]

OUT is a finished reproduction's output folder (`timings.json` and `runs/`). For every finished run it reads the
config and the log, counts its optimiser steps (the log's `steps` per epoch, or for older logs the training-set size
its config selects // batch size x epochs), and times one training step of that configuration: the same model,
compatibility loss, optimiser and input shapes (trunk features when the run trained from the cached trunk), random
values, with this machine's threads shared out among `--workers` processes as `make reproduce` does. Steps of one
configuration are timed once.

They are timed twice: in `--workers` processes stepping at the same moment, as the reproduction's training processes
do (they share the caches and memory bandwidth of one CPU), and in one process alone while the others wait, which is
faster per step and so a lower bound that the workers cannot reach together.

The last line printed is one JSON object: floor_s (steps x step time of the processes stepping together, summed over
the runs, divided by the workers), floor_alone_s (likewise with the step time of one process alone), train_s (the
runs' own logged epoch seconds, likewise), wall_s (timings.json), ratio = wall_s / floor_s and
ratio_alone = wall_s / floor_alone_s.
"""
import argparse, json, multiprocessing, statistics, sys, time
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


def step_seconds(config: TrainConfig, num_classes: int, num_old: int, steps: int, rounds: int = 3, barrier=None) -> float:
    "Median seconds of one training step of `config` (random inputs of the shapes its loop sees); each round starts at `barrier` when given."
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
        if barrier is not None: barrier.wait()  # every timing process steps at the same moment
        t = time.perf_counter()
        for i in range(steps): one(i)
        times.append((time.perf_counter() - t) / steps)
    return statistics.median(times)


def _timer(jobs, steps: int, threads: int, barrier, results, index: int):
    "One of the processes that time every configuration together (`timed_together`)."
    torch.set_num_threads(threads)
    results.put((index, [step_seconds(*job, steps, barrier=barrier) for job in jobs]))


def timed_together(jobs: list, steps: int, workers: int, threads: int) -> list:
    "Step seconds of each (config, num_classes, num_old) job, the mean over `workers` processes that step at the same moment."
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_timer, args=(jobs, steps, threads, barrier, results, i)) for i in range(workers)]
    for p in procs: p.start()
    got = dict(results.get() for _ in procs)
    for p in procs: p.join()
    return [statistics.mean(got[i][j] for i in range(workers)) for j in range(len(jobs))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="a finished reproduction's output folder (timings.json, runs/)")
    ap.add_argument("--workers", type=int, default=2, help="training processes the reproduction used (make reproduce: 2 on a CPU)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per configuration and round")
    args = ap.parse_args()
    out = Path(args.out)
    timings = json.loads((out / "timings.json").read_text())
    threads = max(1, torch.get_num_threads() // args.workers)
    torch.set_num_threads(threads)
    found, sizes, jobs = [], {}, {}
    for folder in sorted((out / "runs").glob("*-*")):
        if not (folder / "done.json").is_file(): continue
        config, num_classes, log = read_run(folder)
        num_old = num_classes
        if config.old_checkpoint:
            num_old = read_run(Path(config.old_checkpoint).parent)[1] if Path(config.old_checkpoint).is_file() else num_classes
        key = tuple(getattr(config, f) for f in STEP_FIELDS) + (num_classes, num_old)
        jobs.setdefault(key, (config, num_classes, num_old))
        found.append((folder.name, key, steps_of(config, log, sizes), sum(r.get("seconds", 0) for r in log)))
    keys = list(jobs)
    print(f"timing {len(keys)} configurations: {args.workers} processes together, then one alone", flush=True)
    together = dict(zip(keys, timed_together([jobs[k] for k in keys], args.steps, args.workers, threads)))
    alone = {k: step_seconds(*jobs[k], args.steps) for k in keys}
    runs = []
    for name, key, steps, train_s in found:
        runs.append(dict(steps=steps, floor_s=steps * together[key], floor_alone_s=steps * alone[key], train_s=train_s))
        print(f"{name}: {steps} steps x {1000 * together[key]:.2f} ms = {runs[-1]['floor_s']:.1f} s "
              f"(alone {1000 * alone[key]:.2f} ms; logged {train_s:.1f} s)", flush=True)
    floor, floor_alone, train = (sum(r[k] for r in runs) / args.workers for k in ("floor_s", "floor_alone_s", "train_s"))
    wall = float(timings["total_seconds"])
    print(json.dumps(dict(runs=len(runs), workers=args.workers, threads=threads, steps=sum(r["steps"] for r in runs),
                          configurations=len(keys), floor_s=round(floor, 1), floor_alone_s=round(floor_alone, 1),
                          train_s=round(train, 1), wall_s=wall, ratio=round(wall / floor, 2),
                          ratio_alone=round(wall / floor_alone, 2))))


if __name__ == "__main__":
    main()
