"""Speed of mcutils.percolation: cluster labelling per site and the threshold table.

Usage: python benchmarks/percolation.py [--quick]

1. Time per labelled site for d = 2..8 at about 2**20 sites (p near p_c(d), free
   boundaries, one lattice), for both back ends, measured side by side (interleaved,
   best of several repeats), with the ratio csgraph / ndimage.
2. Spanning (cylinder boundaries) per site with the default (auto) back end.
3. The whole threshold table (d = 2..8) with the chapter's cpu-profile settings.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from mcutils import percolation as perc


def side(d: int, sites: int = 2**20) -> int:
    """The smallest side with at least ``sites`` sites."""
    L = max(2, round(sites ** (1 / d)))
    while L**d < sites:
        L += 1
    return L


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repeats and dimensions")
    args = parser.parse_args()
    repeats = 2 if args.quick else 3
    dims = [2, 4, 8] if args.quick else list(range(2, 9))
    rng = np.random.default_rng(0)
    print("labelling one lattice of ~2^20 sites at p = p_c(d) (best of", repeats, "repeats)")
    print(f"{'d':>2} {'L':>5} {'sites':>9} {'ndimage ns/site':>16} {'csgraph ns/site':>16} "
          f"{'ratio cs/nd':>12} {'span auto ns/site':>17}")
    rows = []
    for d in dims:
        L = side(d)
        n = L**d
        lat = perc.random_lattice(d, L, perc.PUBLISHED_THRESHOLDS[d][0], rng)
        batch = lat[None]
        t = {m: [] for m in perc.METHODS}
        for _ in range(repeats):  # interleave the back ends so load hits both alike
            for m in perc.METHODS:
                t[m].append(best_time(lambda m=m, lat=lat: perc.clusters(lat, method=m), 1))
        nd, cs = min(t["ndimage"]), min(t["csgraph"])
        span = best_time(lambda batch=batch: perc.spans(batch, "cylinder"), repeats)
        rows.append((d, L, n, nd, cs, span))
        print(f"{d:>2} {L:>5} {n:>9} {1e9 * nd / n:>16.1f} {1e9 * cs / n:>16.1f} "
              f"{cs / nd:>12.2f} {1e9 * span / n:>17.1f}")

    print("\nthreshold table (cpu-profile settings of chapter 02)")
    sizes = {2: [32, 128], 3: [12, 32], 4: [8, 16], 5: [5, 9], 6: [4, 7], 7: [3, 5], 8: [3, 4]}
    trials = 16 if args.quick else 40
    t_all = time.perf_counter()
    for d in dims:
        t0 = time.perf_counter()
        est = perc.estimate_threshold(d, sizes[d], trials, np.random.default_rng([0, d]))
        print(f"d={d} sizes={sizes[d]} trials={trials}: p_c = {est['pc']:.4f} +- {est['err']:.4f} "
              f"(published {perc.PUBLISHED_THRESHOLDS[d][0]:.4f}) "
              f"in {time.perf_counter() - t0:.1f} s")
    print(f"whole table: {time.perf_counter() - t_all:.1f} s")


if __name__ == "__main__":
    main()
