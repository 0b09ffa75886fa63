"""Chapter 03's study settings and the pieces its studies share: the settings every study
uses (:class:`StudySettings`, :func:`study_settings`, :func:`scaled_settings`), the untrained
networks (:func:`build_untrained`), the straight-path statistics of a set of pairs, and
:func:`cached`, which computes one study part once and keeps it in the checkpoint cache.

Used by chapter 03 (:mod:`mcutils.chapters.ch03_untrained`,
:mod:`mcutils.chapters.ch03_evolution`); tested in ``tests/test_ch03_untrained.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from mcutils.chapters.ch01_input_space import PairSet
from mcutils.core.checks import ParameterError
from mcutils.data import DatasetInfo, dataset_info
from mcutils.inputspace.paths import barrier, loss_profiles

__all__ = ["StudySettings", "study_settings", "scaled_settings", "build_untrained", "cached",
           "study_code_version"]


def _profile_stats(model: nn.Module, ps: PairSet, num_points: int) -> dict[str, list[float]]:
    prof = loss_profiles(model, ps.a, ps.c, ps.targets, num_points=num_points)
    end = torch.maximum(prof[:, 0], prof[:, -1])
    return dict(end_loss=end.tolist(), peak=barrier(prof, "max").tolist(),
                gap=barrier(prof, "gap").tolist())


def build_untrained(name: str, dataset: str, seed: int, **kwargs: Any) -> nn.Module:
    """A randomly initialised network of a registered architecture, in eval mode.

    Seeds everything with ``seed`` first (:func:`mcutils.core.runtime.seed_everything`), as
    :func:`mcutils.zoo.trained_model` does, so seed ``s`` gives the initialisation
    from which the cached model of that seed was trained.
    """
    from mcutils.core.runtime import seed_everything
    from mcutils.models import build_for_dataset

    seed_everything(seed)
    return build_for_dataset(name, dataset, **kwargs).eval()


@dataclass(frozen=True)
class StudySettings:
    """What every study of chapter 03 shares: the dataset's facts, the classes used, and
    the keyword arguments of the synthesis (``synth``) and of the bypass (``connect``)."""

    info: DatasetInfo
    classes: list[int]
    synth: dict[str, Any]
    connect: dict[str, Any]


def study_settings(params: Mapping[str, Any]) -> StudySettings:
    """The chapter's :class:`StudySettings` from its validated parameters: the paper's
    feature visualisation and free bypass in normalised units (no hyperplane, no deviation
    penalty; every segment bypassed in every round with ``bypass_all``), inside
    ``pixel_box`` when it is set."""
    p = params
    info = dataset_info(p["dataset"])
    box = tuple(p["pixel_box"]) if p["pixel_box"] else None
    synth = dict(steps=p["synth_steps"], lr=p["synth_lr"], stop_loss=p["synth_stop_loss"],
                 init_std=p["synth_init_std"], weight_decay=p["synth_weight_decay"],
                 tv_weight=p["synth_tv_weight"], tv_reduction="sum", space="normalized",
                 box=box)
    connect = dict(max_rounds=p["max_rounds"], steps=p["bypass_steps"], lr=p["bypass_lr"],
                   deviation_weight=0.0, tv_weight=0.0, weight_decay=p["bypass_weight_decay"],
                   stop_loss=p["bypass_stop_loss"], constrain=False, space="normalized",
                   box=box, num_points=None, bypass_all=p["bypass_all"])
    return StudySettings(info, list(range(p["num_classes_used"] or info.num_classes)),
                         synth, connect)


def scaled_settings(cfg: StudySettings, factor: float = 1.0,
                    lr: float | None = None, steps: int | None = None) -> StudySettings:
    """``cfg`` with both step budgets multiplied by ``factor`` (at least 1 step), or set to
    ``steps``, and with both learning rates set to ``lr`` when given."""
    if not factor > 0:
        raise ParameterError(f"factor={factor!r} must be positive")
    synth, conn = dict(cfg.synth), dict(cfg.connect)
    for d in (synth, conn):
        d["steps"] = int(steps) if steps is not None else max(1, int(round(d["steps"] * factor)))
        if lr is not None:
            d["lr"] = float(lr)
    return replace(cfg, synth=synth, connect=conn)


#: The numerical modules under every cached study (synthesis, bypass and barrier search,
#: models, training, speed plan): their whole source enters the cache key beside the
#: functions a caller names, so a change to a helper they call invalidates the entry.
#: Closed under their mcutils imports except :data:`KEY_EXEMPT` (checked by the tests).
ALGORITHM_MODULES = ("mcutils.inputspace._common", "mcutils.inputspace.bypass",
                     "mcutils.inputspace.geometry", "mcutils.inputspace.paths",
                     "mcutils.inputspace.synthesis", "mcutils.models", "mcutils.training",
                     "mcutils.core.runtime", "mcutils.core.tensors")
#: Imported by those modules but without effect on a computed value (argument checks,
#: folders, checkpoint files; ``mcutils.data`` only for a model's dataset statistics).
KEY_EXEMPT = ("mcutils.core.checks", "mcutils.core.paths", "mcutils.core.store",
              "mcutils.data")


def study_code_version(code: Sequence[Any]) -> str:
    """:func:`~mcutils.core.store.code_version` of ``code`` and of every module of
    :data:`ALGORITHM_MODULES`."""
    import importlib

    from mcutils.core.store import code_version

    return code_version(*code, *(importlib.import_module(m) for m in ALGORITHM_MODULES))


def cached(config: Mapping[str, Any], code: Sequence[Any],
           compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``compute()`` once per ``config`` and code version, kept in the checkpoint cache.

    The result (a dict of tensors, lists, numbers and strings) is stored under
    :func:`mcutils.core.store.checkpoint_paths` of ``config`` joined with
    :func:`study_code_version` of ``code`` (the functions that produce it, and the
    numerical modules they call),
    under a file lock, so a second process waits and then loads instead of computing
    twice. What is returned is always the stored copy, so a run that computes it and a
    run that loads it get identical values.
    """
    from filelock import FileLock

    from mcutils.core.store import checkpoint_paths, load_state, save_state

    key = dict(config, name="ch03-study", code=study_code_version(code))
    pt, _ = checkpoint_paths(key)
    pt.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(pt.with_suffix(".lock"))):
        if not pt.exists():
            save_state(pt, compute())
        return load_state(pt)
