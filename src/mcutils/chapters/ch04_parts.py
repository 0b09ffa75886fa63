"""Chapter 04's expensive, independent pieces of work, cached so that the book's worker
pool can run them side by side before the notebook starts (issue 26's pool parts).

Each seed of section 1's protocol (:func:`protocol_part`), the attacks of section 3 on
the chapter's sources (:func:`attack_part`) and each weight of the adaptive attack
(:func:`adaptive_part`) is one part; :func:`pool_parts` lists them for the runner. The
notebook calls the same functions through :func:`cached_protocol`, :func:`cached_attacks`
and :func:`cached_adaptive`, with the same keys, so a run with or without the pool computes
every number once and gets the same numbers. Results are stored as tensors under
``$MCUTILS_CACHE`` (:func:`cached_tensors`), keyed by the model's weights, the sources,
the settings and the code that produces them.

Used by chapter 04 (through :mod:`mcutils.chapters.ch04_adversarial`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from filelock import FileLock
from torch import nn

import numpy as np
import pandas as pd

from mcutils import adaptive, attacks, data, detection, zoo
from mcutils import detection_baselines as baselines
from mcutils.chapters import ch04_adaptive, ch04_detectors, ch04_sweep
from mcutils.core import stats
from mcutils.core.runtime import get_device
from mcutils.core.store import (checkpoint_paths, code_version, config_hash, fingerprint,
                                load_state, save_state)

__all__ = [
    "PART_MIN_INPUTS",
    "adaptive_inputs",
    "adaptive_part",
    "adaptive_section",
    "detection_intervals",
    "attack_part",
    "cached_adaptive",
    "cached_attacks",
    "cached_protocol",
    "cached_tensors",
    "paper_attack",
    "pool_parts",
    "protocol_part",
    "section3",
    "section3_setup",
    "setup_model",
]


def cached_tensors(config: Mapping[str, Any], compute: Callable[[], dict[str, torch.Tensor]]
                   ) -> dict[str, torch.Tensor]:
    """``compute()`` stored under the hash of ``config``, or what an earlier call stored.
    A file lock per key makes a second process wait for the first instead of computing
    twice; writes are atomic."""
    pt, _ = checkpoint_paths(config)
    if pt.is_file():
        return load_state(pt)
    with FileLock(str(pt) + ".lock"):
        if pt.is_file():
            return load_state(pt)
        out = compute()
        save_state(pt, out)
        return out


def setup_model(params: Mapping[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    """The chapter's network, the default model (chapter 00's checkpoint, loaded from the
    cache or trained), on the chapter's device, and its training info."""
    net, info = zoo.trained_model(
        dataset=params["dataset"], model=params["model"], epochs=params["num_epochs"],
        lr=params["lr"], batch_size=params["batch_size"], train_subset=params["train_subset"],
        seed=params["seed"], device=params["device"], return_info=True)
    return net.to(get_device(params["device"])), info


def paper_attack(params: Mapping[str, Any]) -> dict[str, Any]:
    """The paper's attack settings (normalised input units) from the chapter's parameters."""
    return dict(steps=params["attack_steps"], lr=params["attack_lr"],
                mse_weight=params["mse_weight"], hf_weight=params["hf_weight"],
                warmup=params["warmup"])


def section3_setup(params: Mapping[str, Any]) -> dict[str, Any]:
    """What section 3 starts from, from the chapter's parameters alone: the model, the
    test set, the defender's and the attacker's halves of the reference pool, the sources,
    the attacks' specs."""
    p = params
    net, _ = setup_model(p)
    test = data.load_dataset(p["dataset"], "test")
    pool = data.load_dataset(p["dataset"], "train", subset=p["ref_pool"], seed=p["seed"] + 1)
    half = len(pool.y) // 2
    sources = ch04_detectors.select_sources(net, test.x, test.y, p["num_inputs"], seed=p["seed"])
    return dict(net=net, test=test, defender=(pool.x[:half], pool.y[:half]),
                attacker=(pool.x[half:], pool.y[half:]), sources=sources,
                specs=ch04_detectors.attack_specs(p, paper_attack(p)))


def _key(kind: str, net: nn.Module, sources: ch04_detectors.Sources, **settings: Any
         ) -> dict[str, Any]:
    return dict(name=f"ch04_{kind}", model=fingerprint(net),
                sources=config_hash({"index": sources.index.tolist()}), **settings)


_ATTACK_CODE = (attacks.optimization_attack, attacks.pgd, attacks.cw_l2, attacks.fgsm,
                ch04_detectors._one_attack)


def cached_attacks(net: nn.Module, sources: ch04_detectors.Sources,
                   specs: Mapping[str, Mapping[str, Any]], seed: int = 0, progress: bool = True
                   ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """:func:`mcutils.chapters.ch04_detectors.attack_suite`, one cached result per attack."""
    out = {}
    for name, spec in specs.items():
        key = _key("attack", net, sources, attack=name, spec=dict(spec), seed=seed,
                   code=code_version(*_ATTACK_CODE))
        got = cached_tensors(key, lambda name=name, spec=spec: dict(zip(
            ("adv", "ok"), ch04_detectors.attack_suite(net, sources, {name: spec}, seed=seed,
                                                       progress=progress)[name])))
        out[name] = (got["adv"], got["ok"])
    return out


def attack_part(params: Mapping[str, Any], attacks: list[str] | None = None) -> None:
    """Pool part: attacks of section 3 (``None``: all, the paper's attack first) on the
    chapter's sources, each stored in the cache."""
    s = section3_setup(params)
    names = attacks if attacks is not None else _attack_order(s["specs"])
    cached_attacks(s["net"], s["sources"], {n: s["specs"][n] for n in names},
                   seed=params["seed"], progress=False)


def _attack_order(specs: Mapping[str, Any]) -> list[str]:
    return ["paper (matched)"] + [n for n in specs if n != "paper (matched)"]


def cached_adaptive(net: nn.Module, sources: ch04_detectors.Sources,
                    dep: ch04_adaptive.Deployment, penalty: float,
                    attacker: tuple[torch.Tensor, torch.Tensor], draws: int,
                    attack: Mapping[str, Any], seed: int = 0) -> torch.Tensor:
    """:func:`mcutils.chapters.ch04_adaptive.adaptive_examples`, cached."""
    coef = dep.detector.named_steps["logisticregression"].coef_.tolist()
    key = _key("adaptive", net, sources, penalty=float(penalty), draws=draws,
               attack=dict(attack), seed=seed, detector=dep.kind, coef=coef,
               refs=dep.settings["num_refs"], points=dep.settings["num_points"],
               attacker=fingerprint(attacker[0]),
               code=code_version(ch04_adaptive.adaptive_examples, adaptive.DetectorPenalty,
                                 attacks.optimization_attack))
    return cached_tensors(key, lambda: {"adv": ch04_adaptive.adaptive_examples(
        net, sources, dep, penalty, attacker, draws=draws, attack=attack, seed=seed)})["adv"]


def adaptive_inputs(params: Mapping[str, Any], s: Mapping[str, Any]):
    """The adaptive study's sources, their paper-attack examples and the deployment."""
    p = params
    rows = range(p["adaptive_inputs"])
    srcs = s["sources"].select(rows)
    plain = cached_attacks(s["net"], s["sources"], {"paper (matched)":
                                                    s["specs"]["paper (matched)"]},
                           seed=p["seed"], progress=False)["paper (matched)"][0][:len(rows)]
    dep = ch04_adaptive.deploy(s["net"], srcs, plain, s["defender"],
                               detector=p["adaptive_detector"], num_refs=p["num_refs"],
                               num_points=p["det_points"], seed=p["seed"])
    attack = {**paper_attack(p), "steps": p["adaptive_steps"]}
    return srcs, plain, dep, attack


def adaptive_part(params: Mapping[str, Any], penalty: float) -> None:
    """Pool part: the adaptive attack at one weight, stored in the cache."""
    s = section3_setup(params)
    srcs, _, dep, attack = adaptive_inputs(params, s)
    cached_adaptive(s["net"], srcs, dep, penalty, s["attacker"], params["eot_draws"], attack,
                    seed=params["seed"])


def _plain(v: Any) -> Any:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (float, np.floating)) and np.isnan(v):
        return None
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v)
    return str(v)


def _pack(frame: pd.DataFrame) -> dict[str, Any]:
    """A DataFrame as tensors (numeric columns) and lists of plain values (the others:
    strings, booleans, missing values as ``None``), which the cache stores safely."""
    out: dict[str, Any] = {"columns": list(frame.columns)}
    for c in frame.columns:
        col = frame[c]
        out[f"col:{c}"] = (torch.from_numpy(col.to_numpy().copy()) if col.dtype.kind in "biuf"
                           else [_plain(v) for v in col])
    return out


def _unpack(packed: Mapping[str, Any]) -> pd.DataFrame:
    cols = {}
    for c in packed["columns"]:
        v = packed[f"col:{c}"]
        cols[c] = (v.numpy() if isinstance(v, torch.Tensor)
                   else pd.Series([np.nan if e is None else e for e in v], dtype=object))
    return pd.DataFrame(cols)


def cached_protocol(net: nn.Module, x: torch.Tensor, y: torch.Tensor, seeds: Sequence[int],
                    pairs_per_class: int, num_points: int, attack: Mapping[str, Any],
                    progress: bool = True) -> tuple[pd.DataFrame, dict[int, torch.Tensor]]:
    """:func:`mcutils.chapters.ch04_sweep.run_protocol` with ``return_adversarial``, one
    cached result per seed (a seed's pairs and attacks do not depend on the others)."""
    frames, images = [], {}
    for s in seeds:
        key = dict(name="ch04_protocol", model=fingerprint(net), data=fingerprint(x, y),
                   seed=int(s), pairs=pairs_per_class, points=num_points, attack=dict(attack),
                   code=code_version(ch04_sweep.run_protocol, *_ATTACK_CODE))

        def compute(s=s):
            df, k_adv = ch04_sweep.run_protocol(net, x, y, [int(s)], pairs_per_class,
                                                num_points, attack, progress=progress,
                                                return_adversarial=True)
            return {"frame": _pack(df), "k_adv": k_adv[int(s)]}

        got = cached_tensors(key, compute)
        frames.append(_unpack(got["frame"]))
        images[int(s)] = got["k_adv"]
    return pd.concat(frames, ignore_index=True), images


def protocol_part(params: Mapping[str, Any], seed: int) -> None:
    """Pool part: section 1's protocol for one seed, stored in the cache."""
    p = params
    net, _ = setup_model(p)
    test = data.load_dataset(p["dataset"], "test")
    cached_protocol(net, test.x, test.y, [seed], p["pairs_per_class"], p["num_points"],
                    paper_attack(p), progress=False)


#: Below this many sources the chapter declares no parts: a worker's start-up (loading
#: the libraries, the model and the data) would cost more than the work it takes over
#: (the smoke profile); the notebook then computes the same cached pieces itself.
PART_MIN_INPUTS = 100


def pool_parts(params: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """The runner's parts: every attack of section 3 in one part (the paper's attack
    first: the adaptive parts start from it and wait for it), one part per seed of
    section 1's protocol, and one part per adaptive weight; none below
    :data:`PART_MIN_INPUTS` sources. Fewer, larger parts keep the start-up cost of a
    worker small beside the work."""
    p = dict(params)
    if p["num_inputs"] < PART_MIN_INPUTS:
        return []
    parts = [("04 attacks", "attack_part", {"params": p, "attacks": None})]
    parts += [(f"04 protocol seed {s}", "protocol_part", {"params": p, "seed": int(s)})
              for s in p["seeds"]]
    parts += [(f"04 adaptive w={w:g}", "adaptive_part", {"params": p, "penalty": float(w)})
              for w in p["adaptive_penalties"] if w > 0]
    return parts


def section3(params: Mapping[str, Any], progress: bool = True) -> dict[str, Any]:
    """Section 3 from the chapter's parameters: the sources, every attack (cached), the
    defender's features and the established detectors' grids (all from the defender's
    half of the pool: the last-layer Mahalanobis detector and the layer ensemble are
    fitted on it), and the cross-validated detector table.

    Returns:
        :func:`section3_setup`'s entries plus ``adversarial``, ``real_feats``,
        ``adv_feats``, ``grids``, ``ensemble``, ``table``, ``scores`` and
        ``attack_table`` (:func:`~mcutils.chapters.ch04_detectors.attack_summary`).
    """
    p = params
    s = section3_setup(p)
    net, sources, defender = s["net"], s["sources"], s["defender"]
    adversarial = cached_attacks(net, sources, s["specs"], seed=p["seed"], progress=progress)
    maha = detection.Mahalanobis().fit(detection.penultimate_features(net, defender[0]),
                                       defender[1])
    ensemble = baselines.MahalanobisEnsemble().fit(net, *defender)
    real_feats, adv_feats = ch04_detectors.defender_features(
        net, sources, adversarial, defender, p["num_refs"], p["det_points"], seed=p["seed"],
        mahalanobis=maha)
    grids = ch04_detectors.baseline_grids(net, sources, adversarial, defender, ensemble,
                                          lid_refs=p["lid_refs"], mc_samples=p["mc_samples"],
                                          seed=p["seed"])
    table, scores = ch04_detectors.detector_table(
        real_feats, adv_feats, list(ch04_detectors.DETECTORS), folds=p["folds"],
        seed=p["seed"], n_boot=p["num_boot"], fpr=p["fpr"], grids=grids)
    attack_table = ch04_detectors.attack_summary(sources, adversarial, n_boot=p["num_boot"],
                                                 seed=p["seed"])
    return dict(s, adversarial=adversarial, maha=maha, ensemble=ensemble,
                real_feats=real_feats, adv_feats=adv_feats, grids=grids, table=table,
                scores=scores, attack_table=attack_table)


#: The attack the detection claims are read on.
PAPER_NAME = "paper (matched)"


def detection_intervals(table: pd.DataFrame, scores: Mapping[str, Mapping[str, np.ndarray]],
                        attack: str = PAPER_NAME, n_boot: int = 1000, seed: int = 0
                        ) -> dict[str, dict[str, Any]]:
    """The detection claims' intervals on one ``attack`` of a
    :func:`~mcutils.chapters.ch04_detectors.detector_table`: the barrier detector's and
    the Mahalanobis ensemble's AUROC, and the paired AUROC differences of profile+logits
    against the logits and against the ensemble (empty intervals when the attack had
    too few successes)."""
    s = scores.get(attack)
    empty = stats.interval(np.nan, np.nan, np.nan, 0)

    def diff(a: str, b: str) -> dict[str, Any]:
        if s is None:
            return empty
        return stats.auroc_difference(s["labels"], s[a], s[b], s["groups"], n_boot=n_boot,
                                      seed=seed)

    return {"barrier_detects": ch04_detectors.table_entry(table, attack, "barrier"),
            "profile_adds": diff("profile_logits", "logits"),
            "ensemble_detects": ch04_detectors.table_entry(table, attack,
                                                           "mahalanobis_ensemble"),
            "profile_beats_ensemble": diff("profile_logits", "mahalanobis_ensemble")}


def adaptive_section(params: Mapping[str, Any], s: Mapping[str, Any], progress: bool = True
                     ) -> pd.DataFrame:
    """The adaptive study (:func:`mcutils.chapters.ch04_adaptive.adaptive_study`) on the
    first ``adaptive_inputs`` sources of :func:`section3` ``s``, every weight's examples
    cached (:func:`adaptive_part` computes the same ones in the pool)."""
    p = params
    srcs, plain, dep, attack = adaptive_inputs(p, s)
    examples = {float(w): cached_adaptive(s["net"], srcs, dep, w, s["attacker"],
                                          p["eot_draws"], attack, seed=p["seed"])
                for w in p["adaptive_penalties"] if w > 0}
    return ch04_adaptive.adaptive_study(s["net"], srcs, plain, dep, examples, seed=p["seed"],
                                        n_boot=p["num_boot"], progress=progress)
