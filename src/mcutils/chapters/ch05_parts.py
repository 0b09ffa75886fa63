"""Chapter 05's pool parts: its independent trainings, run side by side in the book
runner's worker pool before the notebook (:func:`mcutils.chapters.pool_parts`).

* :func:`parts`: the list ``(label, "run_part", kwargs)`` (none for tiny runs, see
  :data:`MIN_STEPS_PER_PART`): the ends, then what explains the result (the curves'
  learning rates at the largest size, the sweep's curves there, the midpoint controls),
  then the rest of the sweep, the variant set-up's repair and the budget curve;
* :func:`run_part`: computes one part with the functions the notebook calls, with the same
  arguments, so the notebook loads each result from the checkpoint cache and its numbers
  are those of a one-process run.

A part that needs a learning rate runs the search itself
(:func:`mcutils.chapters.ch05_midpoints.tuned_lr`): its runs are cache entries under a
per-key lock, so a run another worker is training is waited for, never trained twice.
:mod:`mcutils.chapters.ch05_protocol` exposes both functions. Used by chapter 05.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcutils.chapters.ch05_midpoints import (chapter_data, clean_pair, curve_middle,
                                             tampered_pair, tuned_lr)
from mcutils.chapters.ch05_runs import METHODS, run_repair
from mcutils.chapters.ch05_study import repair_setup
from mcutils.core.checks import ParameterError

__all__ = ["MIN_STEPS_PER_PART", "parts", "run_part"]


def parts(params: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Chapter 05's pool parts for the validated ``params``: ``(label, "run_part",
    {"kind", "params", ...})``."""
    p = dict(params)
    large = max(p["bonafide_sizes"])
    trained = [m for m in METHODS if m != "noise"]
    tune_seed = p["seeds"][0]
    out: list[tuple[str, dict[str, Any]]] = []
    # the explanations first (the ends, the curves' learning rates, the sweep's own curves
    # at the largest n, the midpoint controls), then the rest of the sweep, the variant
    # and the budget curve
    for place in ["corner", *[q for q in p["control_places"] if q != "corner"]]:
        out += [(f"end-{place}-{i}", dict(kind="end", place=place, index=i)) for i in (0, 1)]
    curves_first = [m for m in trained if m in p["control_curves"]]
    out += [(f"tune-{m}-{large}", dict(kind="tune", method=m, n=large)) for m in curves_first
            if large in p["tune_sizes"]]
    out += [(f"repair-{m}-{large}-{s}", dict(kind="repair", method=m, n=large, seed=s))
            for m in curves_first for s in p["seeds"] if s != tune_seed]
    for place in p["control_places"]:
        for curve in p["control_curves"]:
            for init in p["control_inits"]:
                if place == "corner" and init == "segment":
                    continue  # the sweep's own runs at the largest n
                out += [(f"control-{curve}-{place}-{init}-{s}",
                         dict(kind="control", curve=curve, place=place, init=init, seed=s))
                        for s in p["seeds"]]
    if p["variant_setup"]:
        out += [(f"end-variant-{i}", dict(kind="end", place="corner", variant=True, index=i))
                for i in (0, 1)]
    out += [(f"clean-{i}", dict(kind="clean", index=i)) for i in (0, 1)]
    done = {label for label, _ in out}
    out += [(f"tune-{m}-{n}", dict(kind="tune", method=m, n=n))
            for n in sorted(p["tune_sizes"], reverse=True) for m in trained
            if f"tune-{m}-{n}" not in done]
    for n in sorted(p["bonafide_sizes"], reverse=True):
        for s in [*p["seeds"], *([] if n != large else p["extra_curve_seeds"])]:
            for m in trained:
                if (s == tune_seed and n in p["tune_sizes"]) or (
                        s in p["extra_curve_seeds"] and m != "bezier"):
                    continue
                if f"repair-{m}-{n}-{s}" not in done:
                    out.append((f"repair-{m}-{n}-{s}", dict(kind="repair", method=m, n=n,
                                                            seed=s)))
    if p["variant_setup"]:
        out += [(f"variant-{s}", dict(kind="variant", seed=s)) for s in p["seeds"]]
    sweep_steps = _sweep_steps(p, large)
    for steps in sorted(p["budget_steps"]):
        if steps != sweep_steps:
            out += [(f"budget-{steps}-{s}", dict(kind="budget", steps=steps, seed=s))
                    for s in p["seeds"]]
    steps = [_steps(p, kw) for _, kw in out]
    if sum(steps) < MIN_STEPS_PER_PART * len(steps):
        return []  # tiny runs (the smoke profile): a worker's start-up would cost more
    return [(label, "run_part", {**kw, "params": p}) for label, kw in out]


#: Parts are worth a worker only when they train this many steps on average; below it
#: (the smoke profile) :func:`parts` gives none and the notebook trains everything itself.
MIN_STEPS_PER_PART = 100


def _steps(p: Mapping[str, Any], kw: Mapping[str, Any]) -> int:
    """A part's training steps, roughly (its cost)."""
    import math

    kind, large = kw["kind"], max(p["bonafide_sizes"])
    if kind in ("end", "clean"):
        s = {**p, **(p["variant_setup"] if kw.get("variant") else {})}
        subset = s["backdoor_subset"] or 60_000
        return s["end_epochs"] * math.ceil(subset / p["batch_size"])
    if kind == "tune":
        return len(p["lrs"]) * _sweep_steps(p, kw["n"])
    if kind == "budget":
        return kw["steps"]
    return _sweep_steps(p, kw.get("n", large))


def _sweep_steps(p: Mapping[str, Any], n: int) -> int:
    from mcutils.chapters.ch05_runs import repair_budget

    return repair_budget(n, p["repair_epochs"], p["repair_batch"], p["repair_max_steps"],
                         p["repair_epoch_size"])[0]


def run_part(kind: str, params: Mapping[str, Any], **kw: Any) -> None:
    """Compute (and cache) one part of :func:`parts`; returns nothing, the cache holds it.

    Kinds: ``"end"`` (``place``, ``index``, ``variant``), ``"clean"`` (``index``),
    ``"tune"`` (``method``, ``n``), ``"repair"`` (``method``, ``n``, ``seed``),
    ``"control"`` (``curve``, ``place``, ``init``, ``seed``), ``"budget"`` (``steps``,
    ``seed``) and ``"variant"`` (``seed``).
    """
    p = params
    if kind == "end":
        tampered_pair(p, kw["place"], kw.get("variant", False), which=(kw["index"],))
        return
    if kind == "clean":
        clean_pair(p, which=(kw["index"],))
        return
    split = chapter_data(p)
    setup = repair_setup(p, tampered_pair(p, "corner"), split)
    large = max(p["bonafide_sizes"])
    if kind == "tune":
        tuned_lr(p, kw["method"], kw["n"], setup, split)
    elif kind == "repair":
        lr = tuned_lr(p, kw["method"], kw["n"], setup, split)
        run_repair(kw["method"], setup, split.bonafide(kw["n"], kw["seed"]), lr, seed=kw["seed"])
    elif kind == "control":
        lr = tuned_lr(p, kw["curve"], large, setup, split)
        s = setup.replace(ends=tampered_pair(p, kw["place"]))
        curve_middle(s, split.bonafide(large, kw["seed"]), lr, kw["curve"], kw["seed"],
                     kw["init"])
    elif kind == "budget":
        lr = tuned_lr(p, "bezier", large, setup, split)
        curve_middle(setup, split.bonafide(large, kw["seed"]), lr, "bezier", kw["seed"],
                     "segment", kw["steps"])
    elif kind == "variant":
        lr = tuned_lr(p, "bezier", large, setup, split)
        s = setup.replace(ends=tampered_pair(p, "corner", variant=True))
        run_repair("bezier", s, split.bonafide(large, kw["seed"]), lr, seed=kw["seed"])
    else:
        raise ParameterError(f"kind={kind!r} is not known; valid values: end, clean, tune, "
                             "repair, control, budget, variant")
