"""Chapter 04, sections 1 and 2: the paper's protocol over seeds and the one-factor-at-a-
time sweeps of the attack and of the network.

* :func:`run_protocol` runs :func:`mcutils.advbarriers.paper_pairs` and
  :func:`mcutils.advbarriers.paired_barriers` for every seed;
* :func:`sweep_settings` and :func:`attack_sweep`: the attack settings of the rho sweep
  (lambda, stopping threshold, step size, over-confident ends) on one set of pairs;
* :func:`network_specs`, :func:`sweep_model` and :func:`model_sweep`: the networks and
  input sizes of the model sweep, each trained (and cached) on images resized with
  :func:`upsample`;
* :func:`extra_protocols`: the protocol on other datasets and models (gpu profile).

Used by chapter 04 (through :mod:`mcutils.chapters.ch04_adversarial`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mcutils import data, zoo
from mcutils.advbarriers import (
    PAPER_ATTACK,
    PairSet,
    paired_barriers,
    paper_pairs,
    predict_classes,
    protocol_summary,
)
from mcutils.core.checks import ParameterError
from mcutils.core.runtime import get_device

__all__ = [
    "attack_sweep",
    "extra_protocols",
    "model_sweep",
    "network_specs",
    "run_protocol",
    "sweep_model",
    "sweep_settings",
    "upsample",
]


def sweep_settings(mse_weights: Sequence[float] = (), stop_scales: Sequence[float] = (),
                   lr_scales: Sequence[float] = (), over_confident: bool = True
                   ) -> dict[str, dict[str, Any]]:
    """The attack settings of chapter 04's sweeps, as overrides of
    :data:`~mcutils.advbarriers.PAPER_ATTACK`: ``"paper"`` first, then one setting per ``mse_weight`` (lambda, normalised units,
    matched-loss stop), one per stop scale ``s`` (stop below ``s * Loss1``), one per
    learning-rate multiple ``m`` (``m`` times the paper's step, matched-loss stop), and
    ``"over-confident"`` (no stop: every step is taken)."""
    out: dict[str, dict[str, Any]] = {"paper": {}}
    for w in mse_weights:
        if w < 0:
            raise ParameterError(f"mse_weight {w!r} must be >= 0")
        if w != PAPER_ATTACK["mse_weight"]:
            out[f"lambda={w:g}"] = {"mse_weight": float(w)}
    for sc in stop_scales:
        if not sc > 0:
            raise ParameterError(f"stop scale {sc!r} must be > 0")
        out[f"stop={sc:g} Loss1"] = {"stop": float(sc)}
    for m in lr_scales:
        if not m > 0:
            raise ParameterError(f"learning-rate multiple {m!r} must be > 0")
        out[f"lr={m:g}x"] = {"lr": PAPER_ATTACK["lr"] * float(m)}
    if over_confident:
        out["over-confident"] = {"stop": None}
    return out


def network_specs(sizes: Sequence[int] = (), networks: Sequence[str] = (),
                  model: str = "small_cnn", native: int = 28) -> dict[str, dict[str, Any]]:
    """The networks of chapter 04's model sweep for :func:`model_sweep`: ``model`` at
    every input size of ``sizes`` (labelled ``"<model> <size>px"``; ``native`` is always
    included, as the reference), then the named variants at the native size: ``wide``
    (``small_cnn`` with 64/128 channels and 256 hidden units), ``mlp``, ``preresnet20``
    and ``untrained`` (``model`` at its random initialisation)."""
    known = {"wide": {"model": "small_cnn", "model_kwargs": {"width": 64, "hidden": 256}},
             "mlp": {"model": "mlp"}, "preresnet20": {"model": "preresnet20"},
             "untrained": {"model": model, "trained": False}}
    out: dict[str, dict[str, Any]] = {}
    for size in sorted({native, *[int(v) for v in sizes]}):
        out[f"{model} {size}px"] = {"model": model, "size": size}
    for name in networks:
        if name not in known:
            raise ParameterError(f"network {name!r} is not known; valid values: {sorted(known)}")
        out[name] = {**known[name], "size": native}
    return out


# ----------------------------------------------------------------------------- runs
def run_protocol(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seeds: Sequence[int],
                 pairs_per_class: int = 7, num_points: int = 250,
                 attack: Mapping[str, Any] | None = None, batch_size: int | None = None,
                 progress: bool = True, return_adversarial: bool = False
                 ) -> pd.DataFrame | tuple[pd.DataFrame, dict[int, torch.Tensor]]:
    """Section 1 of chapter 04: :func:`~mcutils.advbarriers.paper_pairs` and
    :func:`~mcutils.advbarriers.paired_barriers` for every seed (each seed draws its own
    pairs and other classes), rows tagged with ``seed``;
    with ``return_adversarial`` also ``{seed: K' images}``."""
    if not seeds:
        raise ParameterError("seeds must name at least one seed")
    frames, images = [], {}
    for s in tqdm(list(seeds), desc="paper protocol (seeds)", disable=not progress):
        pairs = paper_pairs(x, y, pairs_per_class, seed=int(s))
        df, k_adv = paired_barriers(model, pairs, num_points, attack, batch_size=batch_size,
                                    return_adversarial=True)
        frames.append(df.assign(seed=int(s)))
        images[int(s)] = k_adv
    out = pd.concat(frames, ignore_index=True)
    return (out, images) if return_adversarial else out


def extra_protocols(params: Mapping[str, Any], attack: Mapping[str, Any]
                    ) -> dict[str, dict[str, Any]]:
    """Section 1's protocol on every ``[dataset, model]`` of ``params["extra_datasets"]``
    (the gpu profile's other data): each model trained (or loaded) with the default
    model's settings, its :func:`run_protocol` over the chapter's seeds summarised by
    :func:`~mcutils.advbarriers.protocol_summary`. Keys are ``"dataset/model"``."""
    p = params
    rows = {}
    for extra_dataset, extra_model in p["extra_datasets"]:
        net = zoo.trained_model(dataset=extra_dataset, model=extra_model, epochs=p["num_epochs"],
                                lr=p["lr"], batch_size=p["batch_size"], seed=p["seed"],
                                device=p["device"])
        test = data.load_dataset(extra_dataset, "test")
        df = run_protocol(net.to(get_device(p["device"])), test.x, test.y, p["seeds"],
                          p["pairs_per_class"], p["num_points"], attack)
        rows[f"{extra_dataset}/{extra_model}"] = protocol_summary(
            df, drop=p["drop"], n_boot=p["num_boot"], seed=p["seed"])
    return rows


def attack_sweep(model: nn.Module, pairs: PairSet, settings: Mapping[str, Mapping[str, Any]],
                 num_points: int = 250, batch_size: int | None = None,
                 progress: bool = True) -> pd.DataFrame:
    """One factor at a time on one set of pairs:
    :func:`~mcutils.advbarriers.paired_barriers` for each named attack setting (overrides
    of :data:`~mcutils.advbarriers.PAPER_ATTACK`); the within-class paths are measured
    once. Rows are tagged with ``setting``."""
    if not settings:
        raise ParameterError("settings must name at least one attack setting")
    frames, within = [], None
    for name, attack in tqdm(list(settings.items()), desc="attack settings", disable=not progress):
        df = paired_barriers(model, pairs, num_points, attack, within=within,
                             batch_size=batch_size)
        within = df[df.kind == "within"]
        frames.append(df.assign(setting=name))
    return pd.concat(frames, ignore_index=True)


def upsample(x: torch.Tensor, size: int) -> torch.Tensor:
    """Images resized to ``size x size`` pixels (bilinear, ``align_corners=False``),
    kept in ``[0, 1]``; the identity at the images' own size."""
    if not isinstance(size, int) or size < 4:
        raise ParameterError(f"size={size!r} must be an integer >= 4")
    if x.dim() != 4:
        raise ParameterError("x must be [N, C, H, W]")
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)


def sweep_model(dataset: str = "fashion-mnist", model: str = "small_cnn", size: int | None = None,
                model_kwargs: Mapping[str, Any] | None = None, epochs: int = 2,
                train_subset: int | None = 5000, lr: float = 1e-3, batch_size: int = 128,
                seed: int = 0, trained: bool = True, device: str = "cpu",
                progress: bool = True) -> nn.Module:
    """A network for the sweeps, trained on (a subset of) the training split upsampled
    to ``size`` pixels and cached by :mod:`mcutils.core.store`; ``trained=False`` gives the
    same architecture at its seeded random initialisation (the untrained control).

    Returns:
        The model in eval mode on the CPU.
    """
    from mcutils import training
    from mcutils.core.runtime import seed_everything
    from mcutils.core.store import code_version, load_or_train
    from mcutils.models import build_for_dataset

    info = data.dataset_info(dataset)
    size = size or info.input_size
    kwargs = dict(model_kwargs or {})
    if size != info.input_size:
        kwargs["input_size"] = size

    def build() -> nn.Module:
        seed_everything(seed)
        return build_for_dataset(model, dataset, **kwargs)

    if not trained:
        return build().eval()

    def fit(net: nn.Module) -> None:
        seed_everything(seed)
        ds = data.load_dataset(dataset, "train", subset=train_subset, seed=seed)
        xs = upsample(ds.x, size)
        loader = data.TensorLoader(torch.utils.data.TensorDataset(xs, ds.y), batch_size,
                                   shuffle=True, seed=seed)
        training.train(net, loader, epochs=epochs, lr=lr, device=device, seed=seed,
                       progress=progress, desc=f"train {model} at {size}px")

    config = {"name": f"{dataset}_{model}_{size}px", "dataset": dataset, "model": model,
              "size": size, "model_kwargs": kwargs, "epochs": epochs,
              "train_subset": train_subset, "lr": lr, "batch_size": batch_size, "seed": seed}
    return load_or_train(config, build, fit, code=code_version(training.train, upsample))


def model_sweep(pairs: PairSet, networks: Mapping[str, Mapping[str, Any]],
                dataset: str = "fashion-mnist", epochs: int = 2, train_subset: int | None = 5000,
                seed: int = 0, num_points: int = 250, attack: Mapping[str, Any] | None = None,
                batch_size: int | None = None, eval_set: tuple[torch.Tensor, torch.Tensor] | None = None,
                progress: bool = True) -> tuple[pd.DataFrame, dict[str, nn.Module]]:
    """The paper's statistic on several networks and input sizes, one set of pairs.

    ``networks`` maps a label to :func:`sweep_model` arguments: ``model`` (default
    ``small_cnn``), ``model_kwargs``, ``size`` (the pairs are upsampled to it with
    :func:`upsample`, and the network is trained at that size) and ``trained``. Every
    trained network uses the same subset, epochs and seed.

    Returns:
        ``(rows tagged with network and size, {label: model})``.
    """
    if not networks:
        raise ParameterError("networks must name at least one network")
    frames, nets = [], {}
    for label, spec in tqdm(list(networks.items()), desc="networks", disable=not progress):
        spec = dict(spec)
        unknown = set(spec) - {"model", "model_kwargs", "trained", "size"}
        if unknown:
            raise ParameterError(f"network {label!r}: unknown keys {sorted(unknown)}")
        size = int(spec.get("size") or pairs.a.shape[-1])
        net = sweep_model(dataset, spec.get("model", "small_cnn"), size,
                          spec.get("model_kwargs"), epochs=epochs, train_subset=train_subset,
                          seed=seed, trained=spec.get("trained", True), progress=progress)
        nets[label] = net
        up = pairs.map_images(lambda t, s=size: upsample(t, s))
        df = paired_barriers(net, up, num_points, attack, batch_size=batch_size)
        df = df.assign(network=label, size=size)
        if eval_set is not None:
            ex, ey = eval_set
            pred = predict_classes(net, upsample(ex, size), batch_size)
            df = df.assign(accuracy=float((pred == ey).float().mean()))
        frames.append(df)
    return pd.concat(frames, ignore_index=True), nets
