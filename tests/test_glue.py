"""Reading glued values back from executed notebooks: comparison and verdict totals."""

from __future__ import annotations

import json

from mcutils.tooling import runner
from mcutils.tooling.glue import compare, glued, totals_markdown, verdict_totals


def _nb(path, values):
    outputs = [{"output_type": "display_data", "data": {"text/plain": repr(v)},
                "metadata": {"scrapbook": {"name": k, "mime_prefix": ""}}}
               for k, v in values.items()]
    path.write_text(json.dumps({"cells": [{"cell_type": "code", "source": "", "outputs": outputs,
                                           "metadata": {}}]}))
    return path


def _claim(verdict, expected=False, control=False):
    c = {"verdict": verdict, "expected": expected, "estimate": float("nan"), "ci": [0.1, 0.9]}
    if control:
        c["control"] = {"verdict": "not reproduced"}
    return c


def test_glued_and_compare(tmp_path):
    a = glued(_nb(tmp_path / "a.ipynb", {"ch01_x": 1.5, "ch01_word": "larger",
                                          "ch01_seconds": 3.0, "ch01_only_a": 1}))
    b = glued(_nb(tmp_path / "b.ipynb", {"ch01_x": 1.75, "ch01_word": "smaller",
                                          "ch01_seconds": 9.0}))
    assert a["ch01_x"] == "1.5"
    r = compare(a, b)
    assert r["same"] == 0 and r["compared"] == 2 and r["worst"] == 0.25
    assert r["words"] == ["ch01_word"] and r["only_before"] == ["ch01_only_a"]
    assert compare(a, a)["same"] == 3


def test_verdict_totals_count_verdicts_and_controls(tmp_path):
    _nb(tmp_path / "01_a.ipynb", {"ch01_claims": {
        "x": _claim("reproduced", expected=True, control=True),
        "y": _claim("inconclusive", expected=True),
        "z": _claim("not reproduced")}})
    _nb(tmp_path / "02_b.ipynb", {"ch02_other": 1})  # no claims: skipped
    totals = verdict_totals(tmp_path)
    assert totals == {"01": {"reproduced": 1, "not reproduced": 1, "inconclusive": 1,
                             "asserted": 2, "asserted with a control": 1}}
    md = totals_markdown(totals)
    assert "| 01 | 1 | 1 | 1 | 2 | 1 |" in md and "| **all** |" in md
    assert "No executed chapter" in totals_markdown({})


def test_totals_command_writes_the_include(tmp_path):
    _nb(tmp_path / "01_a.ipynb", {"ch01_claims": {"x": _claim("reproduced")}})
    out = tmp_path / "gen" / "t.md"
    assert runner.main(["totals", "--chapters-dir", str(tmp_path), "--output", str(out)]) == 0
    assert "| 01 {doc}`Chapter 01 <chapters/01_a>` | 1 | 0 | 0 | 0 | 0 |" in out.read_text()
    assert "No claim was found" in (out.parent / "results_failures.md").read_text()


def test_page_checks_find_plumbing_missing_captions_and_unbounded_rates(tmp_path):
    import pytest

    from mcutils.core.checks import ParameterError
    from mcutils.tooling.pagecheck import bounded_interval_problems, chapter_page_problems

    with pytest.raises(ParameterError, match="make book"):
        chapter_page_problems(tmp_path)
    pages = tmp_path / "book" / "chapters"
    pages.mkdir(parents=True)
    (pages / "01_a.html").write_text('<figure><figcaption>Fig 1</figcaption></figure>'
                                     '<table class="mcutils-claims"></table>')
    (pages / "02_b.html").write_text("chapter.record('x', 1) NBVAL_CHECK_OUTPUT")
    problems = chapter_page_problems(tmp_path)
    assert not [p for p in problems if p.startswith("01_a")]
    assert len([p for p in problems if p.startswith("02_b")]) == 4
    assert len(chapter_page_problems(tmp_path, figures=False)) == 3
    _nb(tmp_path / "01_a.ipynb", {"ch01_claims": {
        "asr": {"statement": "ASR below 0.1", "method": "t over seeds", "estimate": 0.06,
                "ci": [-0.04, 0.16], "verdict": "inconclusive"},
        "gap": {"statement": "gap above 0", "method": "bootstrap", "estimate": 2.0,
                "ci": [1.0, 3.0], "verdict": "reproduced"},
        "acc": {"statement": "accuracy at least 0.9", "method": "exact binomial",
                "estimate": 0.95, "ci": [0.9, 0.97], "verdict": "reproduced"},
        "gain": {"statement": "paired AUROC difference > 0", "method": "paired bootstrap",
                 "estimate": -0.02, "ci": [-0.1, 0.1], "verdict": "inconclusive"},
        "wide": {"statement": "ASR lower than fine-tuning (paired difference)", "method": "t",
                 "estimate": 0.5, "ci": [-1.2, 1.4], "verdict": "inconclusive"}}})
    bad = bounded_interval_problems(tmp_path)
    assert len(bad) == 2 and "asr" in bad[0] and "wide" in bad[1] and "[-1, 1]" in bad[1]


def _titled(path, chapter, claims, label=False):
    """An executed-notebook stand-in with a title cell (and a summary label) and claims."""
    _nb(path, {f"ch{chapter}_claims": claims})
    nb = json.loads(path.read_text())
    text = "# The title\n\nIntro." + (f"\n\n(ch{chapter}-summary)=\n## Summary" if label else "")
    nb["cells"].insert(0, {"cell_type": "markdown", "source": text, "metadata": {}})
    path.write_text(json.dumps(nb))


def test_headline_failures_list_claims_not_reproduced_with_reason_and_link(tmp_path):
    from mcutils.tooling.glue import chapter_links, failures_markdown, headline_failures

    bad = {**_claim("not reproduced"), "statement": "ASR falls:", "estimate": 0.48,
           "ci": [0.41, 0.54], "direction": "<=", "threshold": 0.1, "note": "the corner"}
    other = {**bad, "note": None, "statement": "B:"}
    del other["note"]
    _titled(tmp_path / "05_repair.ipynb", "05", {"asr": bad, "ok": _claim("reproduced")},
            label=True)
    _titled(tmp_path / "06_hess.ipynb", "06", {"b": other, "c": _claim("inconclusive")})
    links = chapter_links(tmp_path)
    assert links["05"]["title"] == "The title"
    assert links["05"]["summary"] == "{ref}`summary <ch05-summary>`"
    assert links["06"]["summary"] == "{doc}`chapter <chapters/06_hess>`"  # no label there
    fails = headline_failures(tmp_path)
    assert [(f["chapter"], f["claim"]) for f in fails] == [("05", "asr"), ("06", "b")]
    md = failures_markdown(fails, links)
    first, second = md.strip().splitlines()
    assert "`asr`: ASR falls: 0.480 [0.410, 0.540] against <= 0.100" in first
    assert "*Why:* the corner" in first and "ch05-summary" in first
    assert "no one-line reason" in second
    assert "No claim" in failures_markdown([])
    assert "| 05 {doc}`The title <chapters/05_repair>` | 1 | 1 | 0 |" in totals_markdown(
        verdict_totals(tmp_path), links)
