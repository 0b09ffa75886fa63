"""Chapter 04's expensive, independent pieces of work, cached so that the book's worker
pool can run them side by side before the notebook starts (issue 26's pool parts).

Each attack of section 3 on the chapter's sources (:func:`attack_part`) and each weight of
the adaptive attack (:func:`adaptive_part`) is one part; :func:`pool_parts` lists them for
the runner. The notebook calls the same functions through :func:`cached_attacks` and
:func:`cached_adaptive`, with the same keys, so a run with or without the pool computes
every number once and gets the same numbers. Results are stored as tensors under
``$MCUTILS_CACHE`` (:func:`cached_tensors`), keyed by the model's weights, the sources,
the settings and the code that produces them.

Used by chapter 04 (through :mod:`mcutils.chapters.ch04_adversarial`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from filelock import FileLock
from torch import nn

from mcutils import attacks, data
from mcutils.chapters import ch04_adaptive, ch04_detectors
from mcutils.core.store import (checkpoint_paths, code_version, config_hash, fingerprint,
                                load_state, save_state)

__all__ = [
    "adaptive_part",
    "attack_part",
    "cached_adaptive",
    "cached_attacks",
    "cached_tensors",
    "pool_parts",
    "section3_setup",
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


def section3_setup(params: Mapping[str, Any]) -> dict[str, Any]:
    """What section 3 starts from, from the chapter's parameters alone: the model, the
    test set, the defender's and the attacker's halves of the reference pool, the sources,
    the attacks' specs."""
    from mcutils.chapters import ch04_adversarial as ch04

    p = params
    net, _ = ch04.setup_model(p)
    test = data.load_dataset(p["dataset"], "test")
    pool = data.load_dataset(p["dataset"], "train", subset=p["ref_pool"], seed=p["seed"] + 1)
    half = len(pool.y) // 2
    sources = ch04_detectors.select_sources(net, test.x, test.y, p["num_inputs"], seed=p["seed"])
    return dict(net=net, test=test, defender=(pool.x[:half], pool.y[:half]),
                attacker=(pool.x[half:], pool.y[half:]), sources=sources,
                specs=ch04_detectors.attack_specs(p, ch04.paper_attack(p)))


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


def attack_part(params: Mapping[str, Any], attack: str) -> None:
    """Pool part: one attack of section 3 on the chapter's sources, stored in the cache."""
    s = section3_setup(params)
    cached_attacks(s["net"], s["sources"], {attack: s["specs"][attack]}, seed=params["seed"],
                   progress=False)


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
               code=code_version(ch04_adaptive.adaptive_examples, attacks.DetectorPenalty,
                                 attacks.optimization_attack))
    return cached_tensors(key, lambda: {"adv": ch04_adaptive.adaptive_examples(
        net, sources, dep, penalty, attacker, draws=draws, attack=attack, seed=seed)})["adv"]


def _adaptive_inputs(params: Mapping[str, Any], s: Mapping[str, Any]):
    """The adaptive study's sources, their paper-attack examples and the deployment."""
    from mcutils.chapters import ch04_adversarial as ch04

    p = params
    rows = range(p["adaptive_inputs"])
    srcs = s["sources"].select(rows)
    plain = cached_attacks(s["net"], s["sources"], {"paper (matched)":
                                                    s["specs"]["paper (matched)"]},
                           seed=p["seed"], progress=False)["paper (matched)"][0][:len(rows)]
    dep = ch04_adaptive.deploy(s["net"], srcs, plain, s["defender"],
                               detector=p["adaptive_detector"], num_refs=p["num_refs"],
                               num_points=p["det_points"], seed=p["seed"])
    attack = {**ch04.paper_attack(p), "steps": p["adaptive_steps"]}
    return srcs, plain, dep, attack


def adaptive_part(params: Mapping[str, Any], penalty: float) -> None:
    """Pool part: the adaptive attack at one weight, stored in the cache."""
    s = section3_setup(params)
    srcs, _, dep, attack = _adaptive_inputs(params, s)
    cached_adaptive(s["net"], srcs, dep, penalty, s["attacker"], params["eot_draws"], attack,
                    seed=params["seed"])


def pool_parts(params: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """The runner's parts: the paper's attack first (the adaptive parts start from it),
    then the adaptive weights (the longest), then the other attacks."""
    p = dict(params)
    names = ["paper (matched)"] + [n for n in ch04_detectors.attack_specs(p, {})
                                   if n != "paper (matched)"]
    parts = [(f"04 attack {names[0]}", "attack_part", {"params": p, "attack": names[0]})]
    parts += [(f"04 adaptive w={w:g}", "adaptive_part", {"params": p, "penalty": float(w)})
              for w in p["adaptive_penalties"] if w > 0]
    parts += [(f"04 attack {n}", "attack_part", {"params": p, "attack": n}) for n in names[1:]]
    return parts
