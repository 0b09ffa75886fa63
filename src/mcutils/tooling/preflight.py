"""The checks made before any chapter starts, by both runners.

A profile that asks for CUDA on a machine without it stops at once; the datasets the
chapters name are on disk, or are downloaded (when the profile lists them under
``download``) with checksums verified (:func:`mcutils.data.download.ensure_datasets`);
ImageNet-pretrained torchvision weights are where torchvision looks for them
(:func:`mcutils.data.download.pretrained_weights_file`); image folders exist.

Run before the chapters, not by the chapters.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mcutils.core.checks import ParameterError

__all__ = ["cuda_chapters", "check_cuda", "check_data", "preflight"]


def cuda_chapters(plan: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The chapters of a plan (chapter -> parameters) whose ``device`` asks for CUDA."""
    return [c for c, p in plan.items() if str(p.get("device", "")).startswith("cuda")]


def check_cuda(plan: Mapping[str, Mapping[str, Any]], profile: str) -> None:
    """Stop at once when a chapter asks for CUDA and the machine has none.

    Raises:
        ParameterError: with a message about CUDA that says how to proceed.
    """
    wanted = cuda_chapters(plan)
    if not wanted:
        return
    import torch

    if torch.cuda.is_available():
        return
    why = (f"PyTorch {torch.__version__} is built with CUDA {torch.version.cuda} but sees no "
           "GPU (no NVIDIA driver or device, or CUDA_VISIBLE_DEVICES hides them)"
           if torch.version.cuda else f"PyTorch {torch.__version__} is a CPU-only build")
    raise ParameterError(
        f"profile {profile!r} runs chapter(s) {', '.join(wanted)} on device 'cuda', but CUDA "
        f"is not available on this machine: {why}. "
        "Run it on a machine with an NVIDIA GPU and a CUDA build of PyTorch, or run the same "
        "sizes on the CPU with `-p device cpu` (python -m mcutils.book) or `--device cpu` "
        "(python -m mcutils.gpucheck)."
    )


def check_data(profile: Mapping[str, Any], plan: Mapping[str, Mapping[str, Any]],
               timeout: float = 10.0) -> None:
    """Make sure every dataset, set of pretrained weights and image folder the chapters
    name is there, downloading those the profile lists under ``download``.

    Raises:
        DatasetNotFoundError: one message naming every missing folder and file.
        ParameterError: an ``image_folder`` that is not a folder.
    """
    from mcutils import data

    download = list(profile.get("download") or [])
    problems: list[str] = []
    names = [p["dataset"] for p in plan.values() if isinstance(p.get("dataset"), str)]
    try:
        data.ensure_datasets(download, download=True, timeout=timeout)
    except data.DatasetNotFoundError as exc:
        problems.append(str(exc))
    rest = [n for n in dict.fromkeys(names) if n not in download and n in data.DATASETS]
    try:
        data.ensure_datasets(rest, download=False)
    except data.DatasetNotFoundError as exc:
        problems.append(str(exc))
    for chapter, p in plan.items():
        model = p.get("model")
        if isinstance(model, str) and model.startswith("torchvision:") and p.get("pretrained"):
            try:
                data.pretrained_weights_file(model.split(":", 1)[1], download=bool(download),
                                             timeout=timeout)
            except data.DatasetNotFoundError as exc:
                problems.append(f"chapter {chapter}: {exc}")
        folder = p.get("image_folder")
        if folder is not None and not Path(folder).is_dir():
            problems.append(f"chapter {chapter}: image_folder={str(folder)!r} is not a folder; "
                            "it must hold one sub-folder of images per class")
    if problems:
        raise data.DatasetNotFoundError("\n".join(problems))


def preflight(profile: Mapping[str, Any], plan: Mapping[str, Mapping[str, Any]],
              profile_name: str, notebooks: Mapping[str, Path] | None = None) -> None:
    """The checks before any chapter starts: CUDA first (seconds), then data and weights.

    Args:
        profile: the loaded profile (its ``download`` list).
        plan: chapter -> the parameters the profile sets.
        profile_name: for messages.
        notebooks: chapter -> notebook; the notebooks' own defaults then fill in what the
            profile leaves unset (what the chapter will really use).
    """
    if notebooks is not None:
        from mcutils.tooling.notebooks import notebook_defaults

        plan = {c: {**notebook_defaults(notebooks[c]), **p} for c, p in plan.items()}
    check_cuda(plan, profile_name)
    check_data(profile, plan)
