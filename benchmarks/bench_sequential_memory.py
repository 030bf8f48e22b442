"""Peak memory of the sequential experiment on real-layout data (not held in memory); prints one JSON object as its last line.

For each size a small landmarks build is laid out as the paper's data (`datasets.paper_layout_of`:
GLDv2-clean CSV and image folders, rparis6k/, roxford5k/, gldv2_retrieval/), then `experiments.sequential_upgrades`
trains phi_1 -> phi_2 -> phi_3 on 30% / 60% / 100% of it (dataset "gldv2", smoke-sized CNN, one epoch per stage)
in a process of its own, which reports its peak resident memory (VmHWM) and how much of it lies above the
imports (torch, torchvision and the package take about 0.9 GB with a CUDA build of torch). The stages are index subsets read through the loader,
so the peak must not grow with the number of training images. For contrast, `--in-memory` decodes every stage's
images into tensors first (what the embedded benchmark does), and its peak grows with the data.

Usage: python benchmarks/bench_sequential_memory.py [--images 120 1200] [--size 64] [--in-memory]
The default sizes are the real-layout reproduce test's build (120 training images) and ten times that.
"""
import argparse, json, resource, subprocess, sys, tempfile, time
from pathlib import Path


def build(folder: Path, images: int, size: int) -> Path:
    "A landmarks build of `images` training images, laid out as the paper's data (made in the parent: its memory is not measured)."
    from advbct.landmarks import build_landmarks
    from advbct.datasets import paper_layout_of
    lm = build_landmarks(folder / "lm", size=size, seed=1, progress=False, train_classes=max(20, images // 8), train_images=images,
                         revisited_queries=4, revisited_gallery=40, gldv2_places=10, gldv2_index=40, gldv2_queries=10)
    return paper_layout_of(lm, folder / "data")


def peak_rss() -> int:
    "This process's peak resident memory in bytes: VmHWM of its own address space (ru_maxrss would carry the parent's over fork and exec)."
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"): return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # not Linux: the closest there is


def child(data: str, size: int, in_memory: bool) -> dict:
    "Runs in its own process: train the three stages on the layout at `data`, report the peak RSS."
    import contextlib, io
    import advbct.experiments as ex
    imported = peak_rss()  # torch, torchvision and the package: the floor
    if in_memory:  # the contrast: the same stages, decoded into tensors as the embedded benchmark's are
        ex.IN_MEMORY_DATASETS = ("landmarks", "synthetic", "gldv2")
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            seq = ex.sequential_upgrades("smoke", "bct", (0.3, 0.6, 1.0), 0, Path(d) / "runs", progress=False, dataset="gldv2",
                                         root=data, image_size=size, batch_size=16, epochs=1)
        seconds = time.perf_counter() - t0
    peak = peak_rss()
    return dict(in_memory=in_memory, stage_images=[len(s) for s in seq["stage_sets"]], peak_rss_mb=round(peak / 2**20, 1),
                after_imports_mb=round(imported / 2**20, 1), training_mb=round((peak - imported) / 2**20, 1), seconds=round(seconds, 1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, nargs="+", default=[120, 1200], help="training images of each build")
    ap.add_argument("--size", type=int, default=64, help="image side in pixels")
    ap.add_argument("--in-memory", action="store_true", help="also run each size with the stages decoded into memory")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # data folder, size, in-memory flag
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.child[2] == "1")))
        return
    results = []
    with tempfile.TemporaryDirectory() as d:
        for images in args.images:
            data = build(Path(d) / str(images), images, args.size)
            for mem in ([False, True] if args.in_memory else [False]):
                out = subprocess.run([sys.executable, __file__, "--child", str(data), str(args.size), "1" if mem else "0"],
                                     capture_output=True, text=True)
                if out.returncode: raise RuntimeError(f"the training process failed:\n{out.stderr[-3000:]}")
                r = dict(images=images, size=args.size, image_mb=round(images * 3 * args.size ** 2 * 4 / 2**20, 1),
                         **json.loads(out.stdout.strip().splitlines()[-1]))
                results.append(r)
                print(f"{images:>6} training images ({r['image_mb']} MB decoded), stages {r['stage_images']}, "
                      f"{'in memory' if mem else 'streamed '}: peak RSS {r['peak_rss_mb']} MB, of which {r['training_mb']} MB above the "
                      f"{r['after_imports_mb']} MB after the imports; {r['seconds']} s", flush=True)
    print(json.dumps(dict(sequential_peak_rss=results)))


if __name__ == "__main__":
    main()
