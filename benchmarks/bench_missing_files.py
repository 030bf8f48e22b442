"""Time the pre-flight check that every training image is there (`advbct.data.missing_files`) on N empty files in
the GLDv2 layout (train/a/b/c/<id>.jpg), against one `Path.exists` per file.

    python benchmarks/bench_missing_files.py [--n 1500000] [--dir /tmp]

Prints one JSON line: n, folders, seconds of missing_files (cold-ish: first call after creating the files; then warm),
seconds of per-file exists, and how many files each found missing (one is deleted, so both must say 1)."""
import argparse, json, os, shutil, sys, tempfile, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from advbct.data import gldv2_image_path, missing_files


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_500_000, help="files (GLDv2 train: about 1.58 M)")
    ap.add_argument("--dir", default=None, help="where the temporary tree goes (default: the system temp folder)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(dir=args.dir)) / "train"
    try:
        ids = [f"{i:016x}"[::-1] for i in range(args.n)]  # reversed hex: the first three characters spread over 4096 folders
        paths = [gldv2_image_path(root, i) for i in ids]
        for folder in {p.parent for p in paths}: folder.mkdir(parents=True, exist_ok=True)
        for p in paths: open(p, "wb").close()
        paths[len(paths) // 2].unlink()
        t0 = time.perf_counter(); first = missing_files(paths); t_first = time.perf_counter() - t0
        t0 = time.perf_counter(); again = missing_files(paths); t_warm = time.perf_counter() - t0
        t0 = time.perf_counter(); per_file = [p for p in paths if not p.exists()]; t_exists = time.perf_counter() - t0
        print(json.dumps(dict(n=args.n, folders=len({p.parent for p in paths}), missing_files_s=round(t_first, 2),
                              missing_files_warm_s=round(t_warm, 2), per_file_exists_s=round(t_exists, 2),
                              found=[len(first), len(again), len(per_file)])))
    finally:
        shutil.rmtree(root.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
