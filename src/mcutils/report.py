"""Findings helpers shared by every chapter: gluing key numbers and the claims table.

Chapters record key numbers with :func:`record` (a thin wrapper over
``myst_nb.glue`` that turns tensors and NumPy scalars into plain Python numbers),
and end with :func:`claims_table`, which lists each claim of a paper, our number
and a verdict derived from the data, and, with ``check=True``, asserts the claims
the chapter expects to reproduce at this scale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

__all__ = ["plain", "record", "claim", "claims_table", "VERDICTS"]

VERDICTS = ("reproduced", "partly", "not at this scale")


def plain(value: Any, digits: int | None = 4) -> Any:
    """Convert tensors, NumPy values and nested containers to plain Python, rounded."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
        value = value.item() if value.ndim == 0 else value.tolist()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, Mapping):
        return {(k if isinstance(k, str) else str(k)): plain(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, digits) for v in value]
    if isinstance(value, float) and digits is not None and np.isfinite(value):
        return round(value, digits)
    return value


def record(name: str, value: Any, digits: int | None = 4) -> Any:
    """Glue ``value`` (as plain Python) under ``name`` for the book; returns the plain value.

    Outside a notebook kernel (in tests) the value is only converted.
    """
    val = plain(value, digits)
    try:
        from IPython import get_ipython

        if get_ipython() is not None:
            from myst_nb import glue

            glue(name, val, display=False)
    except ImportError:  # pragma: no cover - myst_nb is a dependency
        pass
    return val


def claim(claim: str, paper: str, ours: str, holds: bool, partly: bool = False,
          expected: bool = False) -> dict[str, Any]:
    """One row of a claims table.

    Args:
        claim: the paper's claim, in a few words.
        paper: the paper's evidence (setting and number).
        ours: our number(s), formatted.
        holds: whether our data support the claim (computed, never typed).
        partly: whether they support a weaker form when ``holds`` is false.
        expected: the chapter states this claim as reproduced at this scale, so
            :func:`claims_table` asserts ``holds`` when checking.
    """
    verdict = VERDICTS[0] if holds else (VERDICTS[1] if partly else VERDICTS[2])
    return dict(claim=claim, paper=paper, ours=ours, verdict=verdict, holds=bool(holds),
                expected=bool(expected))


def claims_table(claims: Sequence[Mapping[str, Any]], check: bool = False) -> pd.DataFrame:
    """The claims table as a DataFrame; with ``check`` assert every expected claim holds.

    Raises:
        AssertionError: listing each expected claim the data do not support.
    """
    df = pd.DataFrame([{k: c[k] for k in ("claim", "paper", "ours", "verdict")} for c in claims])
    if check:
        failed = [c["claim"] for c in claims if c["expected"] and not c["holds"]]
        if failed:
            raise AssertionError("claims stated as reproduced do not hold: " + "; ".join(failed))
    return df
