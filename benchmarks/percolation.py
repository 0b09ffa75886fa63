"""Speed of mcutils.percolation: labelling, cluster growth, the threshold table, onsets.

Usage: python benchmarks/percolation.py [--quick]

1. Cluster labelling per site for d = 2..8 at about 2**20 sites (p = p_c(d), one
   lattice), both back ends measured side by side (interleaved, best of several
   repeats), with the ratio csgraph / ndimage.
2. Cluster growth at p = p_c(d): CPU time per grown site, and the ratio of the
   cache-blocked neighbour step used by the library to the same computation on whole
   arrays (identical output, measured side by side).
3. The threshold table with the chapter's cpu-profile settings, with 1 and 2 worker
   threads (wall and CPU time, ratio).
4. Exact onsets (minimum spanning tree) per field on the chapter's 9-point grids.

All times are CPU seconds (``time.process_time``) unless marked wall; quote the load
(``uptime``) with them, as the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from mcutils import percolation as perc
from mcutils.percolation import growth as growth_mod

CPU_CLUSTERS = [160, 100, 400, 400, 400, 300, 300]
CPU_TMAX = [128, 128, 64, 64, 64, 64, 64]


def side(d: int, sites: int = 2**20) -> int:
    """The smallest side with at least ``sites`` sites."""
    L = max(2, round(sites ** (1 / d)))
    while L**d < sites:
        L += 1
    return L


def cpu_best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


def whole_array_neighbours(front, offsets, salt, thr):
    """The library's neighbour step without cache blocking (for the ratio)."""
    with np.errstate(over="ignore"):
        cand = (front[:, None] + offsets[None, :]).ravel()
        keep = growth_mod._mix(cand ^ salt) < thr[(cand & growth_mod._LOW).astype(np.intp)]
    return cand[keep]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repeats and dimensions")
    args = parser.parse_args()
    repeats = 2 if args.quick else 3
    dims = [2, 5, 8] if args.quick else list(range(2, 9))
    print("load:", " ".join(f"{v:.1f}" for v in os.getloadavg()))
    pub = {d: v for d, (v, _) in perc.PUBLISHED_THRESHOLDS.items()}
    rng = np.random.default_rng(0)

    print("\n1. labelling one lattice of ~2^20 sites at p = p_c(d), CPU ns per site")
    print(f"{'d':>2} {'L':>5} {'ndimage':>9} {'csgraph':>9} {'cs/nd':>7}")
    for d in dims:
        L = side(d)
        lat = perc.random_lattice(d, L, pub[d], rng)
        t = {m: [] for m in perc.METHODS}
        for _ in range(repeats):  # interleaved so that load hits both alike
            for m in perc.METHODS:
                t[m].append(cpu_best(lambda m=m, lat=lat: perc.clusters(lat, method=m), 1))
        nd, cs = min(t["ndimage"]), min(t["csgraph"])
        print(f"{d:>2} {L:>5} {1e9 * nd / L**d:>9.0f} {1e9 * cs / L**d:>9.0f} {cs / nd:>7.2f}")

    print("\n2. growth at p = p_c(d), 8 runs x cpu-profile clusters and t_max")
    print(f"{'d':>2} {'sites':>9} {'ns/site':>8} {'blocked/whole':>14}")
    for d in dims:
        k = d - 2
        lat = growth_mod.hypercubic(d)
        sites = [0.0]

        def grow(lat=lat, d=d, k=k, sites=sites):
            n, _ = growth_mod._grow(lat, np.full(8, pub[d]), CPU_CLUSTERS[k], CPU_TMAX[k],
                                    [0, d], 8.0)
            sites[0] = float(np.nansum(n) * CPU_CLUSTERS[k])

        tg = cpu_best(grow, repeats)
        front = np.sort(rng.integers(0, 2**63, 200_000, dtype=np.uint64))
        steps = growth_mod._odd_constants(rng, d)
        offsets = np.concatenate([steps, np.uint64(0) - steps])
        thr = growth_mod._thresholds(np.full(8, pub[d]))
        salt = np.uint64(12345)
        args = (front, offsets, salt, thr)
        tb, tw = [], []
        for _ in range(repeats):
            tb.append(cpu_best(lambda args=args: growth_mod._open_neighbours(*args), 1))
            tw.append(cpu_best(lambda args=args: whole_array_neighbours(*args), 1))
        a = growth_mod._open_neighbours(front, offsets, salt, thr)
        b = whole_array_neighbours(front, offsets, salt, thr)
        assert np.array_equal(np.sort(a), np.sort(b))
        print(f"{d:>2} {sites[0]:>9.0f} {1e9 * tg / sites[0]:>8.0f} {min(tb) / min(tw):>14.2f}")

    print("\n3. threshold table, cpu-profile settings (10 runs per dimension)")
    walls = {}
    for workers in (1, 2):
        w0, c0 = time.perf_counter(), time.process_time()
        table = perc.threshold_table(dims, runs=10, clusters=[CPU_CLUSTERS[d - 2] for d in dims],
                                     t_max=[CPU_TMAX[d - 2] for d in dims], seed=0,
                                     workers=workers)
        walls[workers] = time.perf_counter() - w0
        print(f"workers={workers}: wall {walls[workers]:.1f} s, CPU {time.process_time() - c0:.1f} s")
    for d, r in table.iterrows():
        print(f"  d={d}: {r.estimate:.5f} [{r.ci_lo:.5f}, {r.ci_hi:.5f}] published "
              f"{r.published:.7f} ({r.rel_dev:+.2%}), {r.seconds:.1f} s wall")
    print(f"wall ratio 2 workers / 1 worker: {walls[2] / walls[1]:.2f}")

    print("\n4. exact onsets per field on 9-point grids (anchors + spanning), CPU ms")
    for d in (2, 3, 4, 5):
        shape = (9,) * d
        anchors = ((2,) + (4,) * (d - 1), (6,) + (4,) * (d - 1))
        count = 40 if d < 5 else 8
        f = perc.null_fields("independent", shape, count, 0)
        t = cpu_best(lambda f=f, anchors=anchors: perc.onsets(f, anchors), 1)
        print(f"  d={d}: {1e3 * t / count:.1f} ms per field")
    print("load:", " ".join(f"{v:.1f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
