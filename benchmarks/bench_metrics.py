"Time the vectorised metrics against their per-query references at the paper's test-set sizes."
import time
import numpy as np
from advbct.metrics import revisited_map, reference_revisited_map, gldv2_map, reference_gldv2_map

def revisited_case(rng, n_queries, n_gallery):
    "Random full rankings and disjoint easy/hard/junk lists of revisitop-like sizes."
    ranks = np.argsort(rng.random((n_queries, n_gallery)), axis=1)
    gnd = []
    for _ in range(n_queries):
        order = rng.permutation(n_gallery)
        n_easy, n_hard, n_junk = rng.integers(5, 120, size=3)
        gnd.append({"easy": order[:n_easy], "hard": order[n_easy:n_easy + n_hard],
                    "junk": order[n_easy + n_hard:n_easy + n_hard + n_junk]})
    return ranks, gnd

def best_of(f, repeats=3):
    "Fastest wall time of a few calls, and the last result."
    times = []
    for _ in range(repeats):
        start = time.perf_counter(); result = f(); times.append(time.perf_counter() - start)
    return min(times), result

if __name__ == "__main__":
    rng = np.random.default_rng(0)
    for name, n_queries, n_gallery in [("ROxford5k", 70, 4993), ("RParis6k", 70, 6322), ("ROxford+100k", 70, 105_000)]:
        ranks, gnd = revisited_case(rng, n_queries, n_gallery)
        fast, a = best_of(lambda: revisited_map(ranks, gnd))
        slow, b = best_of(lambda: reference_revisited_map(ranks, gnd), repeats=1)
        assert all(abs(a[p][m] - b[p][m]) < 1e-12 for p in a for m in a[p])
        print(f"revisited_map {name:>13} ({n_queries} x {n_gallery}): {fast * 1e3:8.1f} ms  reference {slow * 1e3:9.1f} ms  x{slow / fast:.0f}")
    n_queries, n_gallery = 1129, 762_000   # GLDv2 private queries x index
    ranks = np.stack([rng.choice(n_gallery, 100, replace=False) for _ in range(n_queries)])
    positives = [np.concatenate([rng.choice(ranks[q], rng.integers(0, 10), replace=False),
                                 rng.choice(n_gallery, rng.integers(0, 20), replace=False)]) for q in range(n_queries)]
    positives = [np.unique(p) for p in positives]
    fast, a = best_of(lambda: gldv2_map(ranks, positives))
    slow, b = best_of(lambda: reference_gldv2_map(ranks, positives), repeats=1)
    assert abs(a - b) < 1e-12
    print(f"gldv2_map     GLDv2 ({n_queries} x top-100 of {n_gallery}): {fast * 1e3:8.1f} ms  reference {slow * 1e3:9.1f} ms  x{slow / fast:.0f}")
