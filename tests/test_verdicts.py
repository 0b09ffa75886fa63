"""Verdicts that can fail: strict effect claims, negative controls, deviations tables."""

from __future__ import annotations

import pytest

from mcutils.core import report, stats


@pytest.mark.parametrize("ci,direction,expected", [
    ([0.0, 0.3], ">", "inconclusive"),       # touches the threshold: no effect shown
    ([0.01, 0.3], ">", "reproduced"),
    ([-0.2, 0.0], ">", "not reproduced"),
    ([0.0, 0.0], ">", "not reproduced"),     # a zero effect is no effect
    ([-0.3, 0.0], "<", "inconclusive"),
    ([0.0, 0.2], "<", "not reproduced"),
    ([0.0, 0.3], ">=", "reproduced"),        # a level: the boundary counts
    ([-0.1, -0.01], ">=", "not reproduced"),
    ([0.0, 0.0], "<=", "reproduced"),
])
def test_verdict_strict_for_effects_inclusive_for_levels(ci, direction, expected):
    assert report.verdict(ci, 0.0, direction) == expected


def test_verdict_rejects_unknown_direction():
    with pytest.raises(ValueError):
        report.verdict([0, 1], 0, "=>")


def _chapter(check=True, expected=("c",)):
    return report.ChapterReport("98", expected=list(expected), check=check)


def test_claim_records_method_and_control_verdict():
    ch = _chapter()
    entry = ch.claim("c", "most pairs connect", "paper: 1.0", stats.binomial_interval(40, 40),
                     0.9, ">=", control={"statement": "a planted two-ball region",
                                         "result": stats.binomial_interval(3, 40)})
    assert entry["method"] == "not stated" or entry["method"]
    assert entry["control"]["verdict"] == "not reproduced"
    assert ch.failures() == []
    table = ch.table()
    assert list(table.columns)[-3:] == ["method", "verdict", "control"]
    assert table.loc[0, "control"].startswith("not reproduced")


def test_a_control_that_also_passes_fails_the_check():
    """Negative control of the control mechanism: a check that passes on data where the
    claim is false by construction cannot fail, and the report says so."""
    ch = _chapter()
    ch.claim("c", "most pairs connect", "paper", stats.binomial_interval(40, 40), 0.9, ">=",
             method="exact binomial",
             control={"statement": "shuffled pairs", "result": stats.binomial_interval(40, 40)})
    (msg,) = ch.failures()
    assert "cannot fail" in msg and "shuffled pairs" in msg


def test_control_must_have_statement_and_result():
    with pytest.raises(ValueError):
        _chapter().claim("c", "s", "p", stats.binomial_interval(1, 2), 0.5, ">=",
                         control={"result": stats.binomial_interval(1, 2)})


def test_per_seed_values_are_kept():
    ch = _chapter(check=False, expected=())
    e = ch.claim("asr", "ASR low", "p", stats.seed_rate_interval([1, 2, 0], [50, 50, 50]),
                 0.1, "<=", method="logit t over seeds")
    assert e["per_seed"] == [0.02, 0.04, 0.0] and e["method"] == "logit t over seeds"


def test_deviations_rows_are_checked_and_glued():
    ch = _chapter(check=False, expected=())
    df = ch.deviations([{"setting": "poison rate", "paper": "0.5", "source": "x.py:12",
                         "ours": "0.1", "effect": "fewer poisoned images"}])
    assert df.loc[0, "measured"] == "not measured"
    with pytest.raises(ValueError):
        ch.deviations([{"setting": "poison rate", "paper": "0.5"}])
    with pytest.raises(ValueError):
        ch.deviations([])
    assert ch.deviations([], reason="the chapter runs the paper's code as published").empty


def test_view_marks_and_colours_each_verdict_and_control():
    ch = _chapter(check=True, expected=("a",))
    ch.claim("a", "level", "p", stats.binomial_interval(40, 40), 0.9, ">=",
             control={"statement": "two balls", "result": stats.binomial_interval(0, 40)})
    ch.claim("b", "effect", "p", {"estimate": 0.1, "ci": [0.0, 0.2], "n": 9}, 0.0, ">")
    ch.claim("c", "effect", "p", {"estimate": -0.1, "ci": [-0.2, -0.05], "n": 9}, 0.0, ">")
    html = ch.view().data
    assert html.startswith('<table class="table mcutils-table mcutils-claims">')
    assert "\u2713 reproduced (asserted)" in html and "? inconclusive" in html
    assert "\u2717 not reproduced" in html and "\u2717 not reproduced: two balls" in html
    assert html.count("background:") == 4  # three verdicts and one control


def test_verdict_counts_line():
    ch = _chapter(check=True, expected=("a", "b"))
    ch.claim("a", "s", "p", stats.binomial_interval(40, 40), 0.9, ">=",
             control={"statement": "c", "result": stats.binomial_interval(0, 40)})
    ch.claim("b", "s", "p", {"estimate": 0.1, "ci": [0.0, 0.2], "n": 9}, 0.0, ">")
    ch.claim("c", "s", "p", {"estimate": -0.1, "ci": [-0.2, -0.05], "n": 9}, 0.0, ">")
    assert ch.verdict_counts() == ("1 reproduced, 1 not reproduced, 1 inconclusive; "
                                   "1 of 2 asserted claims with a control")
    assert _chapter(expected=()).verdict_counts() == "no claims; 0 of 0 asserted claims with a control"


def _iv(est, lo, hi, n=3):
    return {"estimate": est, "ci": [lo, hi], "n": n}


def test_budget_curve_reads_the_largest_budget_and_flags_an_unsettled_statistic():
    chapter = report.ChapterReport("99", check=True, expected=["settled", "moving"])
    settled = {300: _iv(0.1, 0.0, 0.2), 1200: _iv(0.35, 0.3, 0.45), 3000: _iv(0.4, 0.33, 0.47)}
    c = chapter.claim("settled", "barrier above 0.1", "paper", settled[3000], 0.1, ">",
                      budgets=settled)
    assert c["verdict"] == "reproduced" and c["settled"] and c["budget"] == 3000
    moving = {300: _iv(0.0, -0.1, 0.1), 1200: _iv(0.2, 0.15, 0.25), 3000: _iv(0.4, 0.35, 0.45)}
    c = chapter.claim("moving", "barrier above 0.1", "paper", moving[3000], 0.1, ">",
                      budgets=moving)
    # the interval alone would say reproduced; the curve has not settled
    assert c["verdict"] == "inconclusive" and c["settled"] is False
    assert "not settled" in chapter.table().set_index("claim")["verdict"].iloc[1]
    assert chapter.failures() == ["ch99_moving: expected reproduced, got inconclusive "
                                  "(0.4 [0.35, 0.45] vs > 0.1)"]


def test_budget_curve_rejects_too_few_or_too_close_budgets_and_another_reading():
    chapter = report.ChapterReport("99")
    two = {300: _iv(0.1, 0, 0.2), 3000: _iv(0.4, 0.3, 0.5)}
    with pytest.raises(ValueError, match="at least 3"):
        chapter.claim("a", "s", "p", two[3000], 0.1, ">", budgets=two)
    close = {1000: _iv(0.1, 0, 0.2), 2000: _iv(0.1, 0, 0.2), 3000: _iv(0.4, 0.3, 0.5)}
    with pytest.raises(ValueError, match="4x"):
        chapter.claim("b", "s", "p", close[3000], 0.1, ">", budgets=close)
    ok = {300: _iv(0.1, 0, 0.2), 1200: _iv(0.1, 0, 0.2), 3000: _iv(0.4, 0.3, 0.5)}
    with pytest.raises(ValueError, match="largest"):
        chapter.claim("c", "s", "p", ok[300], 0.1, ">", budgets=ok)


def _iv(est, lo, hi, n=50):
    return {"estimate": est, "ci": [lo, hi], "n": n}


def test_summary_lists_each_verdict_with_its_reason_and_the_gpu_sentence():
    rep = report.ChapterReport("07")
    rep.claim("a", "A holds:", "paper 1", _iv(0.9, 0.8, 0.95), 0.5, ">=")
    rep.claim("b", "B holds:", "paper 2", _iv(0.1, 0.05, 0.2), 0.5, ">=",
              note="the ends are too far apart")
    rep.claim("c", "C holds:", "paper 3", _iv(0.5, 0.3, 0.7), 0.5, ">=")
    text = rep.summary("more seeds", notes={"c": "too few pairs"})
    assert "**Reproduced** (1 of 3)" in text and "**Not reproduced** (1 of 3)" in text
    assert "**Inconclusive** (1 of 3)" in text
    # each claim sits under its own verdict, with its interval and its reason
    rep_part, rest = text.split("**Not reproduced**")
    assert "A holds: 0.900 [0.800, 0.950]" in rep_part and "B holds" not in rep_part
    assert "*Why:* the ends are too far apart" in rest.split("**Inconclusive**")[0]
    assert "*Why:* too few pairs" in rest.split("**Inconclusive**")[1]
    assert text.rstrip().endswith("**With the gpu profile:** more seeds")
    assert rep.claims["b"]["note"] == "the ends are too far apart"


def test_summary_and_note_reject_bad_input():
    rep = report.ChapterReport("07")
    with pytest.raises(ValueError, match="at least one claim"):
        rep.summary("x")
    with pytest.raises(ValueError, match="one non-empty line"):
        rep.claim("a", "A", "p", _iv(0.9, 0.8, 0.95), 0.5, ">=", note="two\nlines")
    rep.claim("a", "A", "p", _iv(0.9, 0.8, 0.95), 0.5, ">=")
    with pytest.raises(ValueError, match="not added"):
        rep.summary("x", notes={"zz": "?"})
    with pytest.raises(ValueError, match="gpu profile"):
        rep.summary("  ")


def test_summary_notes_are_kept_on_the_claims_for_the_results_page():
    rep = report.ChapterReport("07")
    rep.claim("a", "A", "p", _iv(0.1, 0.05, 0.2), 0.5, ">=")
    rep.summary("x", notes={"a": "too few steps"})
    assert rep.claims["a"]["note"] == "too few steps"
