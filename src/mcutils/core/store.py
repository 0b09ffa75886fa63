"""Load-or-train cache of checkpoints, keyed by a stable hash of a config.

A checkpoint is two files under ``$MCUTILS_CACHE`` (default ``.cache/mcutils`` in the
repository): ``<hash>.pt`` (a state dict) and ``<hash>.json`` (the config, metrics,
training time and the SHA-256 of the ``.pt``). Writes are atomic (temporary file in
the same folder, then :func:`os.replace`), loads use ``torch.load(weights_only=True)``,
a corrupted or truncated checkpoint is removed and retrained with a warning, and a
per-key file lock makes a second process wait for the first instead of training twice.

Only finished models are stored under a key's ``<hash>.pt``. A long run that checkpoints
every epoch (:func:`mcutils.training.train` with ``checkpoint=``) writes to
:func:`partial_path` (``<hash>.partial.pt``), which is never served as a trained model;
:func:`load_or_train` removes it once the finished model is stored.

The key also holds :func:`code_version` of the code that produces the checkpoint, so a
change to the training code trains a new model instead of serving an old one.

Used by every chapter through :func:`mcutils.zoo.trained_model` (00-06), and by the
repair and implant caches of chapter 05 (:mod:`mcutils.repair`, :mod:`mcutils.backdoor`,
:mod:`mcutils.faults`, keyed with :func:`fingerprint` of their input models).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import inspect
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from torch import nn

from mcutils.core.paths import cache_dir

__all__ = [
    "config_hash",
    "code_version",
    "fingerprint",
    "load_or_train",
    "checkpoint_paths",
    "partial_path",
    "save_state",
    "load_state",
    "CacheInfo",
]

CacheInfo = dict[str, Any]


def _canonical(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, float) and obj.is_integer():
        return obj  # keep 1.0 distinct from 1 only through type: json writes 1.0
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    raise TypeError(f"config values must be JSON-like, got {type(obj).__name__}: {obj!r}")


def config_hash(config: Mapping[str, Any]) -> str:
    """A stable 16-hex-digit hash of a JSON-like config (key order does not matter)."""
    text = json.dumps(_canonical(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def code_version(*objs: Any) -> str:
    """A 12-hex-digit hash of the source code of functions, classes or modules.

    Pass the functions that produce a checkpoint (the training loop, the model
    builder ...); a change to any of them changes the hash, and so the cache key.
    """
    h = hashlib.sha256()
    for obj in objs:
        try:
            src = inspect.getsource(obj)
        except (OSError, TypeError) as exc:
            raise TypeError(f"cannot read the source of {obj!r} for a code version") from exc
        h.update(getattr(obj, "__qualname__", getattr(obj, "__name__", "")).encode())
        h.update(src.encode())
    return h.hexdigest()[:12]


def fingerprint(*objs: nn.Module | torch.Tensor) -> str:
    """A short SHA-256 of models' state dicts and tensors (for cache keys of derived models)."""
    h = hashlib.sha256()
    for obj in objs:
        tensors = (list(obj.state_dict().items()) if isinstance(obj, nn.Module)
                   else [("", obj)])
        for k, v in tensors:
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def checkpoint_paths(config: Mapping[str, Any], folder: Path | None = None) -> tuple[Path, Path]:
    """The ``(.pt, .json)`` paths of a config's checkpoint."""
    folder = folder or cache_dir()
    prefix = str(config.get("name", "model")).replace("/", "_").replace(":", "_")
    stem = f"{prefix}-{config_hash(config)}"
    return folder / f"{stem}.pt", folder / f"{stem}.json"


def partial_path(config: Mapping[str, Any], code: str | None = None,
                 folder: Path | None = None) -> Path:
    """Where a resumable run of ``config`` keeps its latest per-epoch checkpoint.

    ``<name>-<hash>.partial.pt`` beside the final checkpoint, with the same key as
    :func:`load_or_train` (``code`` joins the config as there). It is never read as a
    finished model.
    """
    if code is not None:
        config = dict(config, code=code)
    pt, _ = checkpoint_paths(config, folder)
    return pt.with_name(pt.stem + ".partial.pt")


def save_state(path: str | Path, state: Any) -> None:
    """``torch.save`` written atomically (a temporary file in the same folder, then
    :func:`os.replace`), so a reader sees the old file or the new one, never half of one."""
    path = Path(path)
    _atomic_write(path, lambda f: torch.save(state, f))


def load_state(path: str | Path) -> Any:
    """Load what :func:`save_state` wrote, with ``torch.load(weights_only=True)`` on the CPU."""
    return torch.load(Path(path), map_location="cpu", weights_only=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _file_mode(folder: Path) -> int:
    """The folder's read/write permission bits, as a file mode (no execute bits)."""
    return folder.stat().st_mode & 0o666


def _atomic_write(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode(path.parent))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_suffix(".lock"))):
        yield


def _try_load(pt: Path, meta_path: Path, model: nn.Module, remove: bool) -> CacheInfo | None:
    """Load a checkpoint into ``model``; None when absent or unusable.

    Only a caller holding the key's lock passes ``remove=True``: without the lock a
    checkpoint may be half written by another process (its ``.json`` comes last).
    """
    if not pt.exists() and not meta_path.exists():
        return None
    if not remove and not (pt.exists() and meta_path.exists()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("sha256") != _sha256(pt):
            raise ValueError("checksum mismatch (truncated or modified file)")
        state = torch.load(pt, map_location="cpu", weights_only=True)
        expected = model.state_dict()
        if set(state) != set(expected) or any(
                state[k].shape != expected[k].shape for k in expected):
            raise ValueError("state dict does not match the model built for this config")
        model.load_state_dict(state)
        return meta
    except Exception as exc:  # any failure means: not a usable checkpoint
        if not remove:
            return None
        warnings.warn(f"removing unusable checkpoint {pt.name} ({exc}); retraining",
                      RuntimeWarning, stacklevel=3)
        for p in (pt, meta_path):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        return None


def load_or_train(
    key_config: Mapping[str, Any],
    build: Callable[[], nn.Module],
    train: Callable[[nn.Module], nn.Module | None],
    evaluate: Callable[[nn.Module], Mapping[str, Any]] | None = None,
    return_info: bool = False,
    folder: str | Path | None = None,
    code: str | None = None,
) -> nn.Module | tuple[nn.Module, CacheInfo]:
    """Return the trained model for ``key_config``, training it only on a cache miss.

    Args:
        key_config: everything that determines the trained weights (dataset, model,
            epochs, lr, seed ...); JSON-like values. Its hash names the checkpoint; an
            optional ``name`` key gives a readable prefix.
        build: makes the untrained module (the skeleton the state dict is loaded into).
        train: trains the module in place (returning None) or returns the trained module.
        evaluate: optional; its metrics dict is stored beside the checkpoint on a miss.
        return_info: also return the stored metadata (``cached``, ``train_seconds``,
            ``metrics``, ``path`` ...).
        folder: cache folder (default :func:`~mcutils.core.paths.cache_dir`).
        code: the :func:`code_version` of the code that trains the model; it joins the
            key, so a change to that code trains a new checkpoint.

    Returns:
        The trained model (in eval mode, on the CPU), and the info dict if asked.
    """
    if code is not None:
        key_config = dict(key_config, code=code)
    pt, meta_path = checkpoint_paths(key_config, Path(folder) if folder else None)
    model = build()
    meta = _try_load(pt, meta_path, model, remove=False)
    cached = meta is not None
    if meta is None:
        with _locked(pt):
            meta = _try_load(pt, meta_path, model, remove=True)  # another process may have finished
            cached = meta is not None
            if meta is None:
                start = time.perf_counter()
                result = train(model)
                seconds = time.perf_counter() - start
                if result is not None:
                    model = result
                model = model.cpu().eval()
                metrics = dict(evaluate(model)) if evaluate is not None else {}
                state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
                _atomic_write(pt, lambda f: torch.save(state, f))
                meta = {
                    "config": _canonical(key_config),
                    "hash": config_hash(key_config),
                    "train_seconds": seconds,
                    "metrics": metrics,
                    "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    "torch": torch.__version__,
                    "sha256": _sha256(pt),
                }
                _atomic_write(meta_path, lambda f: json.dump(meta, f, indent=2), mode="w")
                with contextlib.suppress(FileNotFoundError):  # the finished model replaces it
                    partial_path(key_config, folder=Path(folder) if folder else None).unlink()
    model = model.cpu().eval()
    if not return_info:
        return model
    info = dict(meta)
    info.update(cached=cached, path=str(pt))
    return model, info
