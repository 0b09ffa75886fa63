"""Findings of a chapter: glued numbers, claims with computed verdicts, provenance.

A chapter creates one :class:`ChapterReport` before it computes anything, naming the
claims it *expects* to reproduce at its scale. It then records key numbers with
:meth:`ChapterReport.record` (glue names must start with ``chNN_``) and adds each claim
of the papers it tests with :meth:`ChapterReport.claim`: a statistic with its 95%
interval (from :mod:`mcutils.core.stats`), a threshold and a direction. The verdict is
computed from the interval, never typed (:func:`verdict`):

* ``reproduced``: the whole interval lies on the claim's side of the threshold;
* ``not reproduced``: it lies wholly on the other side;
* ``inconclusive``: otherwise (including an interval that could not be formed).

Claims of an effect use strict directions (``>``, ``<``): an interval touching the
threshold is inconclusive. An asserted claim carries a negative control, the same check
on data where the claim is false by construction; a control that is also reproduced
fails the check. :meth:`ChapterReport.deviations` glues the chapter's departures from
the paper's protocol.

:meth:`ChapterReport.finish`, in the last cell, glues ``chNN_claims`` (a dict in the
shape below) and ``chNN_claims_table`` (an HTML table that ``book/results.md`` pastes),
and the last (hidden) cell calls :meth:`ChapterReport.provenance_view`, which glues
``chNN_provenance`` and ``chNN_provenance_table``. With ``check=True`` every expected
claim must be ``reproduced``. A failure never aborts the chapter midway: under the
runner (:mod:`mcutils.tooling.runner`, which sets ``MCUTILS_CLAIMS_DIR``) the failures are written
to a file and the runner exits non-zero after all chapters ran; run by hand, ``finish``
raises at the very end, after every other cell has run.

Claims shape::

    {claim_id: {"statement": str, "paper": str, "estimate": float, "ci": [lo, hi],
                "threshold": float, "direction": ">=", "<=", ">" or "<", "verdict": str,
                "n": int, "expected": bool, "method": str,
                "control": {"statement", "estimate", "ci", "n", "verdict"} (optional),
                "note": str (optional), "per_seed": [float] (optional)}}

Used by every chapter.
"""

from __future__ import annotations

import html
import json
import math
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

__all__ = [
    "VERDICTS",
    "DIRECTIONS",
    "ChapterReport",
    "ClaimsCheckError",
    "plain",
    "format_number",
    "table_view",
    "record",
    "verdict",
    "provenance",
]

VERDICTS = ("reproduced", "not reproduced", "inconclusive")
DIRECTIONS = (">=", "<=", ">", "<")
CLAIMS_DIR_ENV = "MCUTILS_CLAIMS_DIR"


class ClaimsCheckError(AssertionError):
    """Expected claims of a chapter were not reproduced (raised only at the very end)."""


def plain(value: Any, digits: int | None = 4) -> Any:
    """Convert tensors, NumPy values and nested containers to plain Python, rounded; a
    float with an integral value becomes an int (``150528``, never ``150528.0``)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
        value = value.item() if value.ndim == 0 else value.tolist()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, Mapping):
        return {(k if isinstance(k, (str, int)) else str(k)): plain(v, digits)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, digits) for v in value]
    if isinstance(value, float) and np.isfinite(value):
        if value.is_integer() and abs(value) < 2**53:
            return int(value)
        return round(value, digits) if digits is not None else value
    return value


def _glue(name: str, value: Any) -> None:
    try:
        from IPython import get_ipython

        if get_ipython() is not None:
            from myst_nb import glue

            glue(name, value, display=False)
    except ImportError:  # outside the book's environment: values are only returned
        pass


def record(name: str, value: Any, digits: int | None = 4) -> Any:
    """Glue ``value`` (as plain Python) under ``name`` for the book; returns the plain value.

    Outside a notebook kernel (in tests) the value is only converted.
    """
    val = plain(value, digits)
    _glue(name, val)
    return val


def verdict(ci: Sequence[float], threshold: float, direction: str) -> str:
    """The verdict of a claim ``statistic <direction> threshold`` from its interval.

    Claims of a *level* (``>=``, ``<=``: "at least 0.95 connected") are ``reproduced``
    when the whole interval is on the claim's side, boundary included. Claims of an
    *effect* (``>``, ``<``: "a barrier exists", "A above B") are strict: an interval
    that touches the threshold is ``inconclusive``, and one that lies wholly at or
    beyond it on the other side is ``not reproduced``. Anything else, and an interval
    with a NaN end, is ``inconclusive``.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction={direction!r} must be one of {DIRECTIONS}")
    lo, hi = float(ci[0]), float(ci[1])
    if math.isnan(lo) or math.isnan(hi):
        return "inconclusive"
    if lo > hi:
        raise ValueError(f"interval [{lo}, {hi}] has lo > hi")
    if direction == ">=":
        ok, bad = lo >= threshold, hi < threshold
    elif direction == "<=":
        ok, bad = hi <= threshold, lo > threshold
    elif direction == ">":
        ok, bad = lo > threshold, hi <= threshold
    else:
        ok, bad = hi < threshold, lo >= threshold
    return "reproduced" if ok else "not reproduced" if bad else "inconclusive"


def _git_commit(root: Path) -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=root,
                             capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(chapter: str, params: Mapping[str, Any], wall_seconds: float | None = None,
               root: Path | None = None) -> dict[str, Any]:
    """Where a chapter's numbers come from: commit, profile, parameters that differ from
    the profile, device, torch version, threads, seeds and wall time.

    Args:
        chapter: chapter number (``"04"``).
        params: the chapter's parameters (``profile`` names the profile they started from).
        wall_seconds: the chapter's wall time so far.
        root: repository root (default :func:`mcutils.core.paths.repo_root`).
    """
    from mcutils.core.paths import repo_root

    root = root or repo_root()
    profile = params.get("profile")
    overrides: dict[str, Any] = {}
    if profile:
        from mcutils.core.profiles import load_profile

        try:
            prof = load_profile(str(profile), root)
            base = dict(prof["defaults"])
            base.update(prof["chapters"].get(chapter) or {})
            overrides = {k: plain(v) for k, v in params.items()
                         if k in base and plain(base[k]) != plain(v) and k != "profile"}
        except (OSError, ValueError):
            overrides = {"note": f"profile {profile!r} could not be read"}
    seeds = params.get("seeds", params.get("seed"))
    return {
        "chapter": chapter,
        "commit": _git_commit(root),
        "profile": profile,
        "overrides": overrides,
        "device": str(params.get("device", "cpu")),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "seeds": plain(seeds),
        "wall_seconds": None if wall_seconds is None else round(float(wall_seconds), 1),
    }


def _fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return str(int(x))
    x = float(x)
    if x != 0 and (abs(x) >= 1e4 or abs(x) < 1e-3):
        return f"{x:.2e}"
    return f"{x:.3g}" if abs(x) < 1 else f"{x:.3f}".rstrip("0").rstrip(".")


_VERDICT_STYLE = {"reproduced": ("\u2713", "#e6f4ea"), "not reproduced": ("\u2717", "#fce8e6"),
                  "inconclusive": ("?", "#fef7e0")}


def _html_table(rows: list[dict[str, str]], caption: str | None = None) -> str:
    """An HTML table of string cells; a ``verdict`` or ``control`` cell that starts with a
    verdict gets its mark and colour (inline styles, so the offline book shows them)."""
    if not rows:
        return "<p>(no claims)</p>"
    cols = list(rows[0])

    def cell(col: str, value: Any) -> str:
        text = str(value)
        for word, (mark, colour) in _VERDICT_STYLE.items():
            if col in ("verdict", "control") and text.startswith(word):
                return (f'<td style="background:{colour}">{mark} {html.escape(text)}</td>')
        return f"<td>{html.escape(text)}</td>"

    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(cell(c, r[c]) for c in cols) + "</tr>" for r in rows)
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return (f'<table class="table mcutils-table mcutils-claims">{cap}<thead><tr>{head}</tr>'
            f"</thead><tbody>{body}</tbody></table>")


def format_number(value: Any, digits: int = 3) -> str:
    """One number as the book prints it: integers as integers, ``digits`` decimals
    without scientific notation from 0.001 to 1000, one decimal up to a million,
    scientific notation outside, an interval ``{"estimate", "ci"}`` as
    ``"0.830 [0.800, 0.861]"`` (the same decimals for all three)."""
    if isinstance(value, Mapping) and {"estimate", "ci"} <= set(value):
        lo, hi = value["ci"]
        return (f"{format_number(value['estimate'], digits)} [{format_number(lo, digits)}, "
                f"{format_number(hi, digits)}]")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        return str(value)
    x = float(value)
    if not math.isfinite(x):
        return str(x)
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    if 1e-3 <= abs(x) < 1e3:
        return f"{x:.{digits}f}"
    if 1e3 <= abs(x) < 1e6:
        return f"{x:.1f}"
    return f"{x:.{max(digits - 1, 1)}e}"


def table_view(frame: pd.DataFrame, caption: str | None = None, digits: int = 3,
               index: bool = False) -> Any:
    """A DataFrame as the book shows every table: an HTML table whose numbers and
    intervals are formatted by :func:`format_number` (verdict columns marked and
    coloured, as in the claims table), wide tables scrolling instead of cut off."""
    from IPython.display import HTML

    df = frame.reset_index() if index else frame
    rows = [{str(c): format_number(v, digits) for c, v in r.items()}
            for r in df.to_dict("records")]
    if not rows:
        return HTML(f"<p>{html.escape(caption or '(empty table)')}</p>")
    return HTML(_html_table(rows, caption))


def _budget_reading(claim_id: str, result: Mapping[str, Any],
                    budgets: Mapping[Any, Mapping[str, Any]]) -> dict[str, Any]:
    """Check a claim's budget curve and say whether its statistic has settled."""
    if len(budgets) < 3:
        raise ValueError(f"claim {claim_id!r}: a budget curve needs at least 3 budgets, "
                         f"got {len(budgets)}")
    order = sorted(budgets)
    if not float(order[-1]) >= 4 * float(order[0]):
        raise ValueError(f"claim {claim_id!r}: the largest budget ({order[-1]}) must be at "
                         f"least 4x the smallest ({order[0]})")
    last, before = budgets[order[-1]], budgets[order[-2]]
    if [float(v) for v in last["ci"]] != [float(v) for v in result["ci"]]:
        raise ValueError(f"claim {claim_id!r}: the claim must be read at the largest "
                         f"budget ({order[-1]})")
    settled = (float(last["ci"][0]) <= float(before["ci"][1])
               and float(before["ci"][0]) <= float(last["ci"][1]))
    return {"budget": float(order[-1]), "settled": bool(settled)}


class ChapterReport:
    """The findings of one chapter: glued numbers, claims with verdicts, provenance.

    Args:
        chapter: the chapter number, ``"00"`` to ``"99"``; glue names start with
            ``ch<chapter>_``.
        params: the chapter's parameters (for provenance).
        expected: ids of the claims this chapter expects to reproduce at its scale,
            declared before any result is computed; with ``check`` each must be added
            and ``reproduced``.
        check: check the expected claims in :meth:`finish`.
    """

    def __init__(self, chapter: str, params: Mapping[str, Any] | None = None,
                 expected: Sequence[str] = (), check: bool = False):
        chapter = str(chapter).zfill(2)
        if not (len(chapter) == 2 and chapter.isdigit()):
            raise ValueError(f"chapter={chapter!r} must be a two-digit chapter number")
        if isinstance(expected, str):
            raise TypeError("expected must be a sequence of claim ids, not one string")
        self.chapter = chapter
        self.prefix = f"ch{chapter}_"
        self.params = dict(params or {})
        self.expected = list(expected)
        self.check = bool(check)
        self.claims: dict[str, dict[str, Any]] = {}
        self.start = time.perf_counter()
        self.finished = False
        self.provenance: dict[str, Any] | None = None
        self.summary_text: str | None = None

    def record(self, name: str, value: Any, digits: int | None = 4) -> Any:
        """Glue ``value`` under ``name`` (which must start with ``chNN_``); returns it plain."""
        if not name.startswith(self.prefix):
            raise ValueError(f"glue name {name!r} must start with {self.prefix!r}")
        return record(name, value, digits)

    def claim(self, claim_id: str, statement: str, paper: str, result: Mapping[str, Any],
              threshold: float, direction: str, method: str | None = None,
              control: Mapping[str, Any] | None = None,
              budgets: Mapping[Any, Mapping[str, Any]] | None = None,
              note: str | None = None) -> dict[str, Any]:
        """Add one claim and compute its verdict.

        Args:
            claim_id: a short identifier (``"real_pairs_low"``), unique in the chapter.
            statement: the claim as a checkable sentence, with its statistic.
            paper: the paper's number and where it comes from (or what the paper says
                when it gives no number).
            result: an interval ``{"estimate", "ci", "n"}`` from :mod:`mcutils.core.stats`.
            threshold: the value the statistic is compared with.
            direction: ``">="``/``"<="`` for a level, ``">"``/``"<"`` for an effect
                (strict: see :func:`verdict`).
            method: how the interval was formed (``"exact binomial"``, ``"hierarchical
                bootstrap over seeds, classes, pairs"``...); default: the result's
                ``"method"``, else ``"not stated"``.
            control: the same check on data where the claim is false by construction:
                ``{"statement": str, "result": interval}``. Its verdict is computed with
                the same threshold and direction; an expected claim whose control is also
                ``reproduced`` cannot fail, and counts as a failure of the check.
            budgets: for a claim that depends on a training or optimisation budget, its
                statistic at each budget (``{budget: interval}``, at least 3, the largest
                at least 4x the smallest). The claim is then read at the largest budget
                (``result`` must be that interval); when the two largest budgets'
                intervals do not overlap the statistic has not settled, and the verdict
                is ``inconclusive`` whatever the interval says. Glued as
                ``chNN_<claim_id>_vs_budget``.
            note: one line on why the claim came out as it did (what the chapter's controls
                showed), for the chapter's summary and the results page's list of
                failures; the chapter's prose gives the evidence.

        Returns:
            The claim's entry of ``chNN_claims``.
        """
        if claim_id in self.claims:
            raise ValueError(f"claim {claim_id!r} was added twice")
        missing = {"estimate", "ci", "n"} - set(result)
        if missing:
            raise ValueError(f"result must be an interval with estimate, ci and n; missing "
                             f"{sorted(missing)}")
        ci = [float(result["ci"][0]), float(result["ci"][1])]
        entry = {
            "statement": str(statement),
            "paper": str(paper),
            "estimate": float(result["estimate"]),
            "ci": ci,
            "threshold": float(threshold),
            "direction": direction,
            "verdict": verdict(ci, threshold, direction),
            "n": int(result["n"]),
            "expected": claim_id in self.expected,
            "method": str(method or result.get("method") or "not stated"),
        }
        if note is not None:
            if not str(note).strip() or "\n" in str(note):
                raise ValueError(f"claim {claim_id!r}: note must be one non-empty line")
            entry["note"] = str(note).strip()
        if "per_seed" in result:
            entry["per_seed"] = [float(v) for v in result["per_seed"]]
        if control is not None:
            if set(control) != {"statement", "result"}:
                raise ValueError("control must be {'statement': str, 'result': interval}")
            cres = control["result"]
            cci = [float(cres["ci"][0]), float(cres["ci"][1])]
            entry["control"] = {"statement": str(control["statement"]),
                                "estimate": float(cres["estimate"]), "ci": cci,
                                "n": int(cres["n"]), "verdict": verdict(cci, threshold, direction)}
        if budgets is not None:
            entry.update(_budget_reading(claim_id, result, budgets))
            if not entry["settled"]:
                entry["verdict"] = "inconclusive"
            self.record(f"{self.prefix}{claim_id}_vs_budget",
                   {str(b): {"estimate": float(iv["estimate"]),
                             "ci": [float(iv["ci"][0]), float(iv["ci"][1])], "n": int(iv["n"])}
                    for b, iv in sorted(budgets.items())})
        self.claims[claim_id] = entry
        return entry

    def failures(self) -> list[str]:
        """Expected claims that are missing or not ``reproduced``, as messages."""
        out = []
        for cid in self.expected:
            c = self.claims.get(cid)
            if c is None:
                out.append(f"{self.prefix}{cid}: expected, but never computed")
            elif c["verdict"] != "reproduced":
                out.append(f"{self.prefix}{cid}: expected reproduced, got {c['verdict']} "
                           f"({_fmt(c['estimate'])} [{_fmt(c['ci'][0])}, {_fmt(c['ci'][1])}] "
                           f"vs {c['direction']} {_fmt(c['threshold'])})")
            elif c.get("control", {}).get("verdict") == "reproduced":
                out.append(f"{self.prefix}{cid}: its negative control is also reproduced "
                           f"({c['control']['statement']}), so the check cannot fail")
        return out

    def table(self) -> pd.DataFrame:
        """The claims as a DataFrame (statement, paper, ours with interval, verdict)."""
        rows = []
        for cid, c in self.claims.items():
            rows.append({
                "claim": c["statement"],
                "paper": c["paper"],
                "ours [95% CI], n": f"{_fmt(c['estimate'])} [{_fmt(c['ci'][0])}, "
                                    f"{_fmt(c['ci'][1])}], n={c['n']}",
                "test": f"{c['direction']} {_fmt(c['threshold'])}",
                "method": c.get("method", "not stated"),
                "verdict": c["verdict"] + (" (asserted)" if c["expected"] and self.check
                                           else "")
                           + (" (not settled: still moving with the budget)"
                              if c.get("settled") is False else ""),
                "control": (f"{c['control']['verdict']}: {c['control']['statement']}"
                            if "control" in c else "none"),
            })
        return pd.DataFrame(rows, columns=["claim", "paper", "ours [95% CI], n", "test",
                                           "method", "verdict", "control"])

    def deviations(self, rows: Sequence[Mapping[str, Any]], reason: str | None = None
                   ) -> pd.DataFrame:
        """Glue ``chNN_deviations`` (the rows) and ``chNN_deviations_table`` (HTML): each
        setting where the chapter departs from the paper's published protocol or code.

        Each row has ``setting``, ``paper`` (the paper's value), ``source`` (file:line of
        the official code, or the paper's section), ``ours``, ``effect`` (what the
        difference could do to the verdict) and optionally ``measured`` (the measured
        effect, where known). An empty list needs a ``reason``.
        """
        from IPython.display import HTML

        keys = ("setting", "paper", "source", "ours", "effect")
        clean = []
        for row in rows:
            missing = [k for k in keys if not str(row.get(k, "")).strip()]
            if missing:
                raise ValueError(f"deviation row {dict(row)!r} lacks {missing}")
            clean.append({**{k: str(row[k]) for k in keys},
                          "measured": str(row.get("measured") or "not measured")})
        if not clean and not reason:
            raise ValueError("an empty deviations table needs the reason it is empty")
        record(f"{self.prefix}deviations", clean or [{"reason": str(reason)}], digits=None)
        df = pd.DataFrame(clean, columns=[*keys, "measured"])
        _glue(f"{self.prefix}deviations_table",
              HTML(_html_table(df.to_dict("records")) if clean else f"<p>{html.escape(reason)}</p>"))
        return df

    def figure(self, name: str, fig: Any) -> None:
        """Glue a matplotlib figure under ``name`` (``chNN_fig_...``) for a numbered,
        captioned ``{glue:figure}`` in the chapter's prose, and close it, so it is shown
        once, where the caption is (nothing is returned, so a cell that ends with this
        call shows nothing itself)."""
        if not name.startswith(f"{self.prefix}fig_"):
            raise ValueError(f"figure names start with {self.prefix}fig_ (got {name!r})")
        _glue(name, fig)
        try:
            import matplotlib.pyplot as plt

            plt.close(fig)
        except ImportError:  # pragma: no cover - matplotlib is a dependency
            pass

    def verdict_counts(self) -> str:
        """One line for the results page: how many claims got each verdict, and how many
        asserted claims carry a negative control (``"5 reproduced, 1 inconclusive; 1 of
        2 asserted claims with a control"``)."""
        counts = {v: sum(c["verdict"] == v for c in self.claims.values()) for v in VERDICTS}
        text = ", ".join(f"{n} {v}" for v, n in counts.items() if n) or "no claims"
        asserted = [c for c in self.claims.values() if c["expected"]]
        with_control = sum("control" in c for c in asserted)
        return (f"{text}; {with_control} of {len(asserted)} asserted claim"
                f"{'' if len(asserted) == 1 else 's'} with a control")

    def summary(self, gpu: str, notes: Mapping[str, str] | None = None) -> str:
        """Glue ``chNN_summary``, the chapter's closing summary as Markdown (shown with
        ``{glue:md}`` under the chapter's last heading), and return its text.

        The summary is computed from the claims added so far: the reproduced claims, the
        ones not reproduced and the inconclusive ones, each with its estimate, interval
        and test, and with its one-line reason where the chapter gives one (``notes``,
        claim id -> reason, over the claim's own ``note``), then ``gpu``: what the gpu
        profile would change. Call it after the last claim.
        """
        from IPython.display import Markdown

        if not str(gpu).strip():
            raise ValueError("gpu must say what the gpu profile would change")
        notes = dict(notes or {})
        unknown = sorted(set(notes) - set(self.claims))
        if unknown:
            raise ValueError(f"notes name claims that were not added: {unknown}")
        if not self.claims:
            raise ValueError("summary() needs at least one claim; add the claims first")
        for cid, why in notes.items():  # the results page reads the reason from the claim
            if not str(why).strip() or "\n" in str(why):
                raise ValueError(f"claim {cid!r}: note must be one non-empty line")
            self.claims[cid]["note"] = str(why).strip()
        parts = []
        for word, title in (("reproduced", "Reproduced"), ("not reproduced", "Not reproduced"),
                            ("inconclusive", "Inconclusive")):
            ids = [cid for cid, c in self.claims.items() if c["verdict"] == word]
            if not ids:
                continue
            parts.append(f"**{title}** ({len(ids)} of {len(self.claims)}):\n")
            for cid in ids:
                c = self.claims[cid]
                why = c.get("note")
                line = (f"- {c['statement']} {format_number(c['estimate'])} "
                        f"[{format_number(c['ci'][0])}, {format_number(c['ci'][1])}] "
                        f"(n = {c['n']}; test {c['direction']} {format_number(c['threshold'])})")
                if c.get("settled") is False:
                    line += "; not settled: still moving with the budget"
                parts.append(line + (f". *Why:* {why}" if why else "") + "\n")
            parts.append("\n")
        parts.append(f"**With the gpu profile:** {str(gpu).strip()}\n")
        text = "".join(parts)
        self.summary_text = text
        _glue(f"{self.prefix}summary", Markdown(text))
        return text

    def view(self) -> Any:
        """The claims as the HTML table the chapter shows at its end and the results page
        pastes (one renderer for both): verdicts marked and coloured, with the method and
        the negative control's verdict."""
        from IPython.display import HTML

        return HTML(_html_table(self.table().to_dict("records")))

    def finish(self) -> pd.DataFrame:
        """Glue the claims, their table and the provenance; check the expected claims.

        Returns:
            The claims table. Raises :class:`ClaimsCheckError` at the end when checking
            outside the runner and an expected claim failed.
        """
        from IPython.display import HTML

        self.finished = True
        wall = time.perf_counter() - self.start
        prov = provenance(self.chapter, self.params, wall)
        self.provenance = prov
        record(f"{self.prefix}claims", self.claims, digits=None)
        record(f"{self.prefix}verdict_counts", self.verdict_counts(), digits=None)
        df = self.table()
        _glue(f"{self.prefix}claims_table", HTML(_html_table(df.to_dict("records"))))
        failed = self.failures() if self.check else []
        out_dir = os.environ.get(CLAIMS_DIR_ENV)
        if out_dir:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            (Path(out_dir) / f"ch{self.chapter}.json").write_text(json.dumps(
                {"chapter": self.chapter, "checked": self.check, "failed": failed,
                 "claims": self.claims, "provenance": prov}, indent=2))
        if failed:
            print("EXPECTED CLAIMS NOT REPRODUCED:\n  " + "\n  ".join(failed))
            if not out_dir:
                raise ClaimsCheckError("; ".join(failed))
        return df

    def provenance_view(self) -> Any:
        """Glue the provenance recorded by :meth:`finish` (``chNN_provenance`` and
        ``chNN_provenance_table``) and return it as an HTML table, for the chapter's last
        (hidden) cell. It is kept out of the Findings cell because its wall time and
        commit differ between runs, and that cell's output is compared by nbval."""
        from IPython.display import HTML

        if self.provenance is None:
            raise RuntimeError("call finish() first")
        rows = [{"field": k, "value": json.dumps(v) if isinstance(v, (dict, list)) else v}
                for k, v in self.provenance.items()]
        view = HTML(_html_table(rows))
        record(f"{self.prefix}provenance", self.provenance, digits=None)
        _glue(f"{self.prefix}provenance_table", view)
        return view
