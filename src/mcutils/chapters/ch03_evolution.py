"""Chapter 03's barrier evolution during the first training batches (the paper's appendix
F.1), with both protocols: pairs synthesised anew for the current network at every
checkpoint (the paper's), and pairs fixed at initialisation.

* :func:`barrier_evolution`: the loss profiles of both protocols along a short training run;
* :func:`evolution_part`: one seed's run for the chapter, cached, so that the runner's
  worker pool can compute the seeds side by side (:func:`track_training` then loads them);
* :func:`evolution_summary` and :func:`evolution_changes`: means with intervals over runs.

Used by chapter 03; tested in ``tests/test_inputspace_studies.py`` and
``tests/test_ch03_untrained.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn

from mcutils.chapters.ch01_input_space import PairSet
from mcutils.chapters.ch03_study import (StudySettings, _profile_stats, build_untrained, cached,
                                         study_settings)
from mcutils.core import stats
from mcutils.core.checks import ParameterError
from mcutils.data import load_dataset
from mcutils.inputspace.synthesis import synthetic_pairs

__all__ = ["barrier_evolution", "evolution_part", "track_training", "evolution_summary",
           "evolution_changes"]


def barrier_evolution(arch: str, dataset: str, train_set: Any, seeds: Sequence[int],
                      num_batches: int, every: int, batch_size: int, lr: float,
                      classes: Sequence[int], shape: Sequence[int], pairs_per_class: int,
                      synth: Mapping, num_points: int = 200, device: str = "cpu",
                      model_kwargs: Mapping[str, Any] | None = None,
                      progress: bool = False) -> pd.DataFrame:
    """Barrier evolution during the first training batches, as in the paper's appendix F.1.

    For each seed: a fresh network (:func:`build_untrained`) is trained with Adam
    (learning rate ``lr``) on ``num_batches`` batches of ``batch_size`` drawn from
    ``train_set`` (a random subset, shuffled with the seed). Before the first batch and
    after every ``every``-th batch (and the last) the straight-path loss profile
    (``num_points`` points) is measured for two sets of pairs:

    * ``re-synthesised``: new pairs made by :func:`~mcutils.inputspace.synthetic_pairs` (with ``synth``)
      for the *current* network, ``pairs_per_class`` per class (the paper's protocol);
    * ``fixed at init``: the pairs synthesised for the initial network, kept fixed
      (their barrier also moves because their endpoints stop being confident).

    Returns:
        Rows ``(seed, step, protocol, pair, target, max_loss, gap, end_loss)``:
        ``max_loss`` is the highest loss on the path (the paper's metric), ``gap`` the
        barrier over the worse endpoint, ``end_loss`` the worse endpoint's loss.
    """
    from mcutils.data import TensorLoader
    from mcutils.training import train

    if not isinstance(every, int) or every < 1:
        raise ParameterError(f"every={every!r} must be a positive integer")
    if not isinstance(num_batches, int) or num_batches < 1:
        raise ParameterError(f"num_batches={num_batches!r} must be a positive integer")
    targets = torch.tensor(list(classes)).repeat_interleave(pairs_per_class)
    rows: list[dict[str, Any]] = []
    tx, ty = train_set.tensors[0], train_set.tensors[1]
    for s in seeds:
        net = build_untrained(arch, dataset, s, **(model_kwargs or {}))
        fixed: list[PairSet] = []

        def measure(step: int, model: nn.Module, s: int = s, fixed: list = fixed) -> None:
            if (step % every and step != num_batches) or step > num_batches:
                return
            gen = torch.Generator().manual_seed(1_000_003 * s + step)
            syn = synthetic_pairs(model, targets, shape, generator=gen, **synth)
            fresh = PairSet(syn.a, syn.c, syn.targets)
            if not fixed:
                fixed.append(fresh)
            for name, ps in (("re-synthesised", fresh), ("fixed at init", fixed[0])):
                st = _profile_stats(model, ps, num_points)
                for p in range(len(ps)):
                    rows.append(dict(seed=s, step=step, protocol=name, pair=p,
                                     target=int(ps.targets[p]), max_loss=st["peak"][p],
                                     gap=st["gap"][p], end_loss=st["end_loss"][p]))

        measure(0, net)
        gen = torch.Generator().manual_seed(s)
        idx = torch.randperm(len(tx), generator=gen)[:num_batches * batch_size]
        sub = torch.utils.data.TensorDataset(tx[idx], ty[idx])
        loader = TensorLoader(sub, batch_size, shuffle=False, seed=s)
        train(net, loader, epochs=1, lr=lr, device=device, callback=measure, seed=s,
              progress=progress, desc=f"evolution seed {s}")
    return pd.DataFrame(rows)


def _track_config(params: Mapping[str, Any], cfg: StudySettings) -> dict[str, Any]:
    p = params
    synth = dict(cfg.synth, steps=p["track_synth_steps"], lr=p["track_synth_lr"],
                 stop_loss=p["track_synth_stop_loss"])
    return dict(arch=p["model"], dataset=p["dataset"], train_subset=p["train_subset"],
                data_seed=p["seed"], num_batches=p["track_batches"], every=p["track_every"],
                batch_size=p["track_batch_size"], lr=p["track_lr"], classes=cfg.classes,
                shape=list(cfg.info.shape), pairs_per_class=p["pairs_per_class"], synth=synth,
                num_points=p["track_points"], device=p["device"])


def evolution_part(params: Mapping[str, Any], seed: int) -> pd.DataFrame:
    """One seed's :func:`barrier_evolution` with the chapter's ``track_*`` parameters (its
    pairs synthesised with ``track_synth_steps`` and ``track_synth_stop_loss``), computed
    once and cached (:func:`~mcutils.chapters.ch03_study.cached`): the runner's pool
    part and :func:`track_training` call it with the same arguments."""
    p = dict(params)
    conf = _track_config(p, study_settings(p))

    def compute() -> dict[str, Any]:
        train_set = load_dataset(conf["dataset"], "train", subset=conf["train_subset"],
                                 seed=conf["data_seed"])
        df = barrier_evolution(conf["arch"], conf["dataset"], train_set, [seed],
                               conf["num_batches"], conf["every"], conf["batch_size"],
                               conf["lr"], conf["classes"], conf["shape"],
                               conf["pairs_per_class"], conf["synth"],
                               num_points=conf["num_points"], device=conf["device"])
        return {"table": df.to_dict("list")}

    out = cached(dict(conf, kind="evolution", seed=seed),
                 [barrier_evolution, evolution_part, _track_config], compute)
    return pd.DataFrame(out["table"])


def track_training(params: Mapping[str, Any], cfg: StudySettings | None = None) -> pd.DataFrame:
    """:func:`evolution_part` for every seed of ``seeds``, concatenated (``cfg`` is kept for
    callers: the settings are derived from ``params``)."""
    return pd.concat([evolution_part(params, s) for s in params["seeds"]], ignore_index=True)


def evolution_summary(df: pd.DataFrame, metric: str = "max_loss") -> pd.DataFrame:
    """Per protocol and step: the mean of ``metric`` over pairs in each seed, then a
    Student-t interval over seeds (:func:`mcutils.core.stats.seed_interval`)."""
    rows = []
    per_seed = df.groupby(["protocol", "step", "seed"], as_index=False)[metric].mean()
    for (proto, step), sub in per_seed.groupby(["protocol", "step"], sort=True):
        iv = stats.seed_interval(sub[metric].to_numpy())
        rows.append(dict(protocol=proto, step=int(step), estimate=iv["estimate"],
                         lo=iv["ci"][0], hi=iv["ci"][1], n=iv["n"]))
    return pd.DataFrame(rows)


def evolution_changes(evolution: pd.DataFrame) -> dict[str, Any]:
    """Per protocol of a :func:`barrier_evolution`: the change of the pairs' mean highest
    loss (``max_loss``) and of their mean barrier over the worse endpoint (``gap``) from
    the first to the last step, with a Student-t interval over runs.

    Returns:
        ``{"first", "last", "max_loss": {protocol: interval}, "gap": {protocol: interval}}``.
    """
    per_run = evolution.groupby(["protocol", "seed", "step"], as_index=False)[
        ["max_loss", "gap", "end_loss"]].mean()
    first, last = per_run["step"].min(), per_run["step"].max()
    out: dict[str, Any] = dict(first=first, last=last, max_loss={}, gap={})
    for proto, sub in per_run.groupby("protocol"):
        for metric in ("max_loss", "gap"):
            wide = sub.pivot_table(index="seed", columns="step", values=metric)
            out[metric][proto] = stats.seed_interval((wide[last] - wide[first]).to_numpy())
    return out
