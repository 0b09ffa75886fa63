"""Chapter 07, weight space: straight paths and repaired curves between aligned and
unaligned ends, on chapter 05's backdoored models and chapter 06's regular and robust ones.

* :func:`ch05_params`, :func:`ch06_params`: the parameters of chapters 05 and 06 that
  build their models, filled from chapter 07's (so the checkpoints are the same cached
  ones);
* :func:`backdoored_model`, :func:`clean_model`, :func:`regular_model`,
  :func:`robust_model`: public wrappers that train or load those models (chapter 05's
  :class:`~mcutils.chapters.ch05_study.TamperedEnds` builds them inside one function);
* :func:`variants`: the second end as it is, aligned to the first by weight matching
  (:func:`mcutils.alignment.align`), and randomly re-ordered (the control);
* :func:`path_profile`: loss and accuracy along the straight path, with its barrier;
* :func:`backdoor_study`, :func:`robust_study`: per pair seed and variant, the straight
  path's barrier and the midpoint's attack success rate, or robustness loss;
* :func:`repair_study`: chapter 05's curve repair (:func:`mcutils.chapters.ch05_protocol.repair_sweep`,
  its protocol, learning-rate grid and validation choice of ``t``) between unaligned and
  aligned ends;
* :func:`plot_barriers`: the loss along the straight paths, unaligned beside aligned.

Used by chapter 07 (:mod:`mcutils.chapters.ch07_learned_curves`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

__all__ = ["VARIANTS", "backdoor_study", "backdoored_model", "ch05_params", "ch06_params",
           "clean_model", "path_profile", "plot_barriers", "regular_model", "repair_study",
           "robust_model", "robust_study", "trigger_and_split", "variants"]

#: The second end as trained, aligned to the first, and randomly re-ordered (control).
VARIANTS = ("unaligned", "aligned", "random")

_SHARED = ("dataset", "model", "num_epochs", "lr", "batch_size", "train_subset", "seed",
           "device")


def ch05_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Chapter 05's parameters (its defaults) with chapter 07's model settings, poisoning
    and repair protocol."""
    from mcutils.chapters import ch05_protocol

    p = dict(ch05_protocol.PARAMETERS.defaults())
    p.update({k: params[k] for k in _SHARED})
    p.update({k: params[k] for k in ("end_optimizer", "end_lr", "end_epochs",
                                     "end_weight_decay", "end_schedule")})
    p.update(backdoor_subset=params["backdoor_subset"], poison_rate=params["poison_rate"],
             target_class=params["target_class"], trigger_size=params["trigger_size"],
             bonafide_sizes=list(params["repair_sizes"]), val_size=params["val_size"],
             eval_size=params["eval_size"], repair_max_steps=params["repair_max_steps"],
             num_ts=params["num_ts"])
    return p


def ch06_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Chapter 06's parameters (its defaults) with chapter 07's model and PGD settings."""
    from mcutils.chapters import ch06_robust_path

    p = dict(ch06_robust_path.PARAMETERS.defaults())
    p.update({k: params[k] for k in _SHARED})
    p.update({k: params[k] for k in ("regular_optimizer", "regular_weight_decay",
                                     "regular_augment")})
    p.update(adv_protocol=params["adv_protocol"], adv_eps=params["adv_eps"], adv_steps=params["adv_steps"],
             adv_step_size=params["adv_step_size"], adv_epochs=params["adv_epochs"],
             adv_subset=params["adv_subset"])
    return p


def trigger_and_split(params: Mapping[str, Any]):
    """Chapter 05's trigger and defender split (:func:`mcutils.chapters.ch05_study.defender_data`)."""
    from mcutils.chapters import ch05_study

    return ch05_study.defender_data(ch05_params(params))


def backdoored_model(params: Mapping[str, Any], seed: int) -> nn.Module:
    """Chapter 05's backdoored model of ``seed``
    (:func:`mcutils.chapters.ch05_midpoints.tampered_pair`, its end settings; trained or
    loaded from the cache)."""
    from mcutils.chapters.ch05_midpoints import tampered_pair

    return tampered_pair(dict(ch05_params(params), seed=int(seed)), "corner", which=(0,))[0]


def clean_model(params: Mapping[str, Any], seed: int) -> nn.Module:
    """Chapter 05's clean model of ``seed`` (:func:`mcutils.chapters.ch05_midpoints.clean_pair`:
    same training subset, no poisoning)."""
    from mcutils.chapters.ch05_midpoints import clean_pair

    return clean_pair(dict(ch05_params(params), seed=int(seed)), which=(0,))[0]


def regular_model(params: Mapping[str, Any]) -> nn.Module:
    """Chapter 06's regular end (chapter 00's model)."""
    from mcutils.chapters import ch06_robust_path

    return ch06_robust_path.regular_end(ch06_params(params))[0]


def robust_model(params: Mapping[str, Any], seed: int) -> nn.Module:
    """Chapter 06's adversarially trained end (its ``adv_protocol``), initialised and
    shuffled by ``seed``."""
    from mcutils.chapters import ch06_robust_path

    return ch06_robust_path.robust_end(ch06_params(params), seed=int(seed))[0]


def variants(a: nn.Module, b: nn.Module, seed: int = 0) -> dict[str, nn.Module]:
    """``b`` as trained, aligned to ``a`` (:func:`mcutils.alignment.align`) and with its
    hidden units randomly re-ordered (:func:`mcutils.alignment.random_permutation`)."""
    from mcutils import alignment

    return {"unaligned": b, "aligned": alignment.align(a, b, seed=seed),
            "random": alignment.permute(b, alignment.random_permutation(b, seed=seed))}


def path_profile(a: nn.Module, b: nn.Module, data: Any, num_points: int,
                 bn_data: Any = None, batch_size: int = 500) -> pd.DataFrame:
    """Test loss and accuracy along the straight path ``a -> b`` at ``num_points`` equally
    spaced ``t`` (BatchNorm statistics recomputed on ``bn_data`` at each ``t`` where the
    model has BatchNorm)."""
    from mcutils.curves import evaluate_curve, linear_path
    from mcutils.data import TensorLoader

    bn = TensorLoader(bn_data, batch_size) if bn_data is not None else None
    return evaluate_curve(linear_path(a, b), num_points, TensorLoader(data, batch_size),
                          bn_loader=bn)


def barrier_of(profile: pd.DataFrame, column: str = "loss") -> float:
    """The largest value inside the path minus the worse end (nats for the loss)."""
    v = profile[column].to_numpy(float)
    return float(max(v[1:-1].max() - max(v[0], v[-1]), 0.0)) if len(v) > 2 else 0.0


def _midpoint(a: nn.Module, b: nn.Module, bn_data: Any = None) -> nn.Module:
    from mcutils.curves import linear_path
    from mcutils.data import TensorLoader

    bn = TensorLoader(bn_data, 500) if bn_data is not None else None
    return linear_path(a, b).model_at(0.5, bn)


def backdoor_study(params: Mapping[str, Any], progress: bool = False
                   ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Per pair seed ``s`` of ``pair_seeds`` (ends: backdoored models ``s`` and ``s + 1``)
    and variant (:data:`VARIANTS`): the straight path's test loss barrier and its midpoint's
    accuracy and attack success on chapter 05's held-out test images; and the same for the
    aligned midpoint of two clean models (seeds ``seed``, ``seed + 1``: the control).

    Returns:
        ``(rows, profiles, control)``: rows with ``pair_seed, variant, barrier, accuracy,
        asr, asr_hits, asr_total``; the loss along every path; the control's row.
    """
    from mcutils.chapters.ch05_protocol import Scorer

    p = params
    trigger, split = trigger_and_split(p)
    scorer = Scorer(split.test, target=p["target_class"], trigger=trigger)
    total = scorer.totals["asr"]
    rows, profiles = [], []
    for s in p["pair_seeds"]:
        a, b = backdoored_model(p, s), backdoored_model(p, s + 1)
        for name, v in variants(a, b, seed=s).items():
            prof = path_profile(a, v, split.test, p["path_points"])
            score = scorer(_midpoint(a, v))
            rows.append(dict(pair_seed=s, variant=name, barrier=barrier_of(prof),
                             accuracy=score["accuracy"], asr=score["asr"],
                             asr_hits=int(round(score["asr"] * total)), asr_total=total))
            profiles.append(prof.assign(pair_seed=s, variant=name))
    ca, cb = clean_model(p, p["seed"]), clean_model(p, p["seed"] + 1)
    score = scorer(_midpoint(ca, variants(ca, cb, seed=p["seed"])["aligned"]))
    control = dict(accuracy=score["accuracy"], asr=score["asr"],
                   asr_hits=int(round(score["asr"] * total)), asr_total=total)
    return pd.DataFrame(rows), pd.concat(profiles, ignore_index=True), control


def _robustness(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int,
                seed: int) -> tuple[float, float]:
    """Mean cross-entropy and accuracy at PGD examples (L-inf ``eps``, ``steps`` steps)."""
    import torch.nn.functional as F

    from mcutils import attacks
    from mcutils.training import predict

    x_adv = attacks.pgd(model, x, y, eps=eps, steps=steps,
                        generator=torch.Generator().manual_seed(seed), batch_size=500)
    logits = predict(model, x_adv)
    return (float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean()))


def robust_study(params: Mapping[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per robust seed of ``robust_seeds`` (ends: chapter 06's regular model and the
    adversarially trained model of that seed) and variant: the straight path's clean test loss
    barrier and the midpoint's robustness loss (mean cross-entropy at PGD examples of the
    first ``robust_eval_size`` evaluation images, ``attack_steps`` steps of radius
    ``adv_eps``) and robust accuracy, with the same at the two ends."""
    p = params
    _, split = trigger_and_split(p)
    data = split.test
    x, y = data.x[:p["robust_eval_size"]], data.y[:p["robust_eval_size"]]
    a = regular_model(p)
    reg_loss, reg_acc = _robustness(a, x, y, p["adv_eps"], p["pgd_steps"], p["seed"])
    rows, profiles = [], []
    for s in p["robust_seeds"]:
        b = robust_model(p, s)
        rob_loss, rob_acc = _robustness(b, x, y, p["adv_eps"], p["pgd_steps"], p["seed"])
        for name, v in variants(a, b, seed=s).items():
            prof = path_profile(a, v, data, p["path_points"])
            loss, acc = _robustness(_midpoint(a, v), x, y, p["adv_eps"], p["pgd_steps"],
                                    p["seed"])
            rows.append(dict(robust_seed=s, variant=name, barrier=barrier_of(prof),
                             mid_accuracy=float(prof["accuracy"].iloc[len(prof) // 2]),
                             robust_loss=loss, robust_accuracy=acc,
                             end_robust_loss=max(reg_loss, rob_loss),
                             regular_robust_accuracy=reg_acc, robust_robust_accuracy=rob_acc))
            profiles.append(prof.assign(robust_seed=s, variant=name))
    return pd.DataFrame(rows), pd.concat(profiles, ignore_index=True)


def repair_study(params: Mapping[str, Any], progress: bool = False) -> pd.DataFrame:
    """Chapter 05's Bezier repair between the backdoored ends of every pair seed, unaligned
    and aligned, at every bonafide size of ``repair_sizes`` (the pair seed draws the
    bonafide images and seeds the training; the learning rate is chosen from
    ``repair_lrs`` on the defender's validation split at each size, for each pair and
    variant alike). Rows of :attr:`mcutils.chapters.ch05_protocol.SweepResult.rows` with
    ``pair_seed`` and ``variant``; ``method`` is ``"bezier"`` (the chosen ``t``) or
    ``"bezier (middle)"`` (``t = 0.5``)."""
    from mcutils.chapters import ch05_study
    from mcutils.chapters.ch05_protocol import Scorer, repair_sweep

    p = params
    p5 = ch05_params(p)
    trigger, split = trigger_and_split(p)
    scorer = Scorer(split.test, target=p["target_class"], trigger=trigger)
    frames = []
    for s in p["pair_seeds"]:
        a, b = backdoored_model(p, s), backdoored_model(p, s + 1)
        ends = variants(a, b, seed=s)
        for name in ("unaligned", "aligned"):
            setup = ch05_study.repair_setup(p5, (a, ends[name]), split)
            res = repair_sweep(setup, split, scorer, methods=["bezier"],
                               sizes=list(p["repair_sizes"]), seeds=[s], lrs=p["repair_lrs"],
                               tune_sizes=list(p["repair_sizes"]), tune_seed=s,
                               progress=progress)
            frames.append(res.rows.assign(pair_seed=s, variant=name,
                                          asr_total=scorer.totals["asr"]))
    return pd.concat(frames, ignore_index=True)


def plot_barriers(backdoor_profiles: pd.DataFrame, robust_profiles: pd.DataFrame):
    """Test loss along the straight paths, unaligned (solid) beside aligned (dashed), one
    line per pair: chapter 05's backdoored ends (left) and chapter 06's regular and robust
    ends (right)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from mcutils import plotting

    fig, axes = plt.subplots(1, 2, figsize=(plotting.MAX_WIDTH, 3.2))
    styles = {"unaligned": "-", "aligned": "--"}
    for ax, df, key, title in ((axes[0], backdoor_profiles, "pair_seed", "backdoored ends"),
                               (axes[1], robust_profiles, "robust_seed",
                                "regular and robust ends")):
        seeds = sorted(df[key].unique())
        colours = dict(zip(seeds, sns.color_palette(plotting.PALETTE, len(seeds))))
        for (seed, variant), g in df[df.variant.isin(styles)].groupby([key, "variant"]):
            ax.plot(g["t"], g["loss"], styles[variant], color=colours.get(seed),
                    label=f"{variant}, seed {seed}")
        ax.set_title(title)
        ax.set_xlabel("position on the straight path (t)")
        ax.set_ylabel("test cross-entropy (nats)")
    axes[1].legend(fontsize="x-small", ncol=2)
    fig.tight_layout()
    return fig


def seed_values(rows: pd.DataFrame, key: str, column: str, variant: str,
                against: str | None = None) -> np.ndarray:
    """Per seed (``key``): ``column`` of ``variant``, minus that of ``against`` if given."""
    piv = rows.pivot(index=key, columns="variant", values=column)
    out = piv[variant]
    if against is not None:
        out = out - piv[against]
    return out.to_numpy(float)

