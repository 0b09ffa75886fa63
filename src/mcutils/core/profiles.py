"""The papermill parameter profiles, ``profiles/NAME.yaml``.

A profile has a ``defaults`` section (applied to every chapter that declares the
parameter) and a ``chapters`` section with one mapping of parameters per chapter
number. ``extends: BASE`` starts from another profile and sets its own values over it,
key by key; ``download`` lists datasets to fetch before any chapter starts.

Read by the runner (:mod:`mcutils.tooling.runner`), the GPU check
(:mod:`mcutils.tooling.gpucheck`) and the provenance of every chapter
(:func:`mcutils.core.report.provenance`); chapters validate ``profile`` against
:func:`profile_names`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from mcutils.core.checks import ParameterError
from mcutils.core.paths import repo_root

__all__ = ["PROFILE_KEYS", "profile_names", "load_profile", "parse_overrides"]

def profile_names() -> list[str]:
    """Names of the papermill profiles in ``profiles/`` (``smoke``, ``cpu``, ``gpu`` ...)."""
    folder = repo_root() / "profiles"
    return sorted(p.stem for p in folder.glob("*.yaml"))


PROFILE_KEYS = ("defaults", "chapters", "description", "extends", "download")


def load_profile(name: str, root: Path | None = None, _seen: tuple[str, ...] = ()
                 ) -> dict[str, Any]:
    """Read ``profiles/<name>.yaml``; an unknown name lists the valid ones.

    With ``extends: BASE`` the base profile is read first and this one's ``defaults``
    and chapter sections are set over it key by key; ``download`` and ``description``
    are taken from this profile when it sets them. The result records the chain in
    ``extends`` (nearest first).
    """
    root = root or repo_root()
    path = root / "profiles" / f"{name}.yaml"
    if not path.is_file():
        valid = sorted(p.stem for p in (root / "profiles").glob("*.yaml"))
        raise ParameterError(f"profile={name!r} is not known; valid values: {', '.join(valid)}")
    data = yaml.safe_load(path.read_text()) or {}
    unknown = set(data) - set(PROFILE_KEYS)
    if unknown:
        raise ParameterError(f"{path}: unknown top-level keys {sorted(unknown)}; "
                             f"valid: {', '.join(PROFILE_KEYS)}")
    data.setdefault("defaults", {})
    data["defaults"] = dict(data["defaults"] or {})
    data["chapters"] = {str(k).zfill(2): (v or {}) for k, v in (data.get("chapters") or {}).items()}
    base_name = data.pop("extends", None)
    if base_name is None:
        data["extends"] = []
        return data
    if not isinstance(base_name, str):
        raise ParameterError(f"{path}: extends must name one profile, got {base_name!r}")
    if base_name in (*_seen, name):
        raise ParameterError(f"{path}: profiles extend each other in a cycle: "
                             f"{' -> '.join((*_seen, name, base_name))}")
    base = load_profile(base_name, root, (*_seen, name))
    merged = {**base, **{k: v for k, v in data.items() if k not in ("defaults", "chapters")}}
    merged["defaults"] = {**base["defaults"], **data["defaults"]}
    merged["chapters"] = {c: {**base["chapters"].get(c, {}), **data["chapters"].get(c, {})}
                          for c in dict.fromkeys([*base["chapters"], *data["chapters"]])}
    merged["extends"] = [base_name, *base["extends"]]
    return merged


def parse_overrides(pairs: Sequence[Sequence[str]] | None = None,
                    yaml_text: Sequence[str] | None = None) -> dict[str, Any]:
    """Parameter overrides from the command line: ``-p NAME VALUE`` pairs (each VALUE read
    as YAML, so ``"[50, 100]"`` is a list and ``null`` is None) and ``-y`` YAML mappings."""
    out: dict[str, Any] = {}
    for text in yaml_text or []:
        data = yaml.safe_load(text)
        if not isinstance(data, dict):
            raise ParameterError(f"-y expects a YAML mapping, got {text!r}")
        out.update(data)
    for name, value in pairs or []:
        out[name] = yaml.safe_load(value)
    return out
