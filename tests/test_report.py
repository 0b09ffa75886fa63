"""Claims: verdicts from intervals, expected claims checked at the end, never midway."""

import json
import math

import pytest

from mcutils.core import report


def test_verdict_from_the_interval():
    assert report.verdict([0.6, 0.9], 0.5, ">=") == "reproduced"
    assert report.verdict([0.5, 0.9], 0.5, ">=") == "reproduced"      # boundary included
    assert report.verdict([0.1, 0.4], 0.5, ">=") == "not reproduced"
    assert report.verdict([0.4, 0.6], 0.5, ">=") == "inconclusive"
    assert report.verdict([0.1, 0.4], 0.5, "<=") == "reproduced"
    assert report.verdict([0.6, 0.9], 0.5, "<=") == "not reproduced"
    assert report.verdict([math.nan, math.nan], 0.5, "<=") == "inconclusive"
    with pytest.raises(ValueError, match="direction"):
        report.verdict([0, 1], 0.5, "=")
    with pytest.raises(ValueError, match="lo > hi"):
        report.verdict([1, 0], 0.5, ">=")


def _chapter(check=True, expected=("big",)):
    return report.ChapterReport("07", params={"seed": 0, "profile": "cpu"},
                                expected=list(expected), check=check)


def test_claim_entry_shape_and_record_prefix():
    ch = _chapter()
    entry = ch.claim("big", "x is at least 1", "paper: 2.0 (Table 1)",
                     {"estimate": 1.5, "ci": [1.2, 1.8], "n": 30}, 1.0, ">=")
    assert entry == {"statement": "x is at least 1", "paper": "paper: 2.0 (Table 1)",
                     "estimate": 1.5, "ci": [1.2, 1.8], "threshold": 1.0, "direction": ">=",
                     "verdict": "reproduced", "n": 30, "expected": True,
                     "method": "not stated"}
    assert ch.record("ch07_x", 1.23456) == 1.2346
    with pytest.raises(ValueError, match="ch07_"):
        ch.record("ch06_x", 1.0)
    with pytest.raises(ValueError, match="twice"):
        ch.claim("big", "", "", {"estimate": 1, "ci": [1, 1], "n": 1}, 0, ">=")
    with pytest.raises(ValueError, match="interval"):
        ch.claim("other", "", "", {"estimate": 1}, 0, ">=")


def test_expected_claim_that_fails_is_reported_not_raised_under_the_runner(tmp_path,
                                                                            monkeypatch):
    """Negative control of the check itself: contradicting data fail it."""
    monkeypatch.setenv(report.CLAIMS_DIR_ENV, str(tmp_path))
    ch = _chapter()
    ch.claim("big", "x >= 1", "", {"estimate": 0.5, "ci": [0.3, 0.7], "n": 10}, 1.0, ">=")
    df = ch.finish()                      # no exception: the runner reports it
    saved = json.loads((tmp_path / "ch07.json").read_text())
    assert saved["failed"] and "not reproduced" in saved["failed"][0]
    assert list(df["verdict"]) == ["not reproduced (asserted)"]
    assert saved["provenance"]["profile"] == "cpu" and saved["provenance"]["seeds"] == 0


def test_expected_claim_failure_raises_at_the_end_outside_the_runner(monkeypatch):
    monkeypatch.delenv(report.CLAIMS_DIR_ENV, raising=False)
    ch = _chapter()
    ch.claim("big", "x >= 1", "", {"estimate": 1.0, "ci": [0.8, 1.2], "n": 10}, 1.0, ">=")
    with pytest.raises(report.ClaimsCheckError, match="inconclusive"):
        ch.finish()
    # not checking: the same data pass through
    ch = _chapter(check=False)
    ch.claim("big", "x >= 1", "", {"estimate": 1.0, "ci": [0.8, 1.2], "n": 10}, 1.0, ">=")
    ch.finish()


def test_expected_claim_never_computed_is_a_failure():
    ch = _chapter(expected=["big", "missing"])
    ch.claim("big", "x >= 1", "", {"estimate": 2, "ci": [1.5, 2.5], "n": 10}, 1.0, ">=")
    assert ch.failures() == ["ch07_missing: expected, but never computed"]
    with pytest.raises(TypeError):
        report.ChapterReport("07", expected="big")


def test_provenance_lists_parameters_that_differ_from_the_profile(tmp_path):
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "cpu.yaml").write_text(
        "defaults: {seed: 0, lr: 0.1}\nchapters:\n  '07': {num_points: 10}\n")
    prov = report.provenance("07", {"seed": 0, "lr": 0.1, "num_points": 20, "profile": "cpu"},
                             wall_seconds=3.21, root=tmp_path)
    assert prov["overrides"] == {"num_points": 20}
    assert prov["wall_seconds"] == 3.2 and prov["threads"] >= 1 and prov["torch"]


def test_plain_converts_nested_values():
    import numpy as np
    import torch

    out = report.plain({"a": torch.tensor(1.234567), 2: [np.float32(0.5), np.int64(3)]})
    assert out == {"a": 1.2346, 2: [0.5, 3]}


def test_plain_writes_integral_floats_as_integers():
    out = report.plain({"pixels": 150528.0, "zero": 0.0, "near": 0.99999, "nan": float("nan")})
    assert out["pixels"] == 150528 and isinstance(out["pixels"], int)
    assert out["zero"] == 0 and isinstance(out["zero"], int)
    assert out["near"] == 1.0 and isinstance(out["near"], float)  # rounded, not integral
    assert out["nan"] != out["nan"]


def test_format_number_and_table_view():
    f = report.format_number
    assert f(150528.0) == "150528" and f(3) == "3"
    assert f(0.8312) == "0.831" and f(12.3456) == "12.346"
    assert f(0.000012) == "1.20e-05" and f(1234.56) == "1234.6" and f(2.5e7) == "25000000" and f(2.5e17) == "2.50e+17"
    assert f({"estimate": 0.83, "ci": [0.8, 0.861], "n": 9}) == "0.830 [0.800, 0.861]"
    assert f(float("nan")) == "nan" and f(True) == "True" and f("word") == "word"
    import pandas as pd

    view = report.table_view(pd.DataFrame({"method": ["a"], "acc": [0.91234],
                                           "verdict": ["reproduced"]}), caption="cap")
    html = view.data
    assert "<table" in html and "0.912" in html and "<caption>cap</caption>" in html
    assert "background" in html  # the verdict cell is coloured
    assert "(empty" in report.table_view(pd.DataFrame({"a": []})).data


def test_figure_is_glued_under_a_chapter_figure_name_and_closed():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chapter = report.ChapterReport("07")
    fig, _ = plt.subplots()
    assert chapter.figure("ch07_fig_paths", fig) is None  # a cell ending with it shows nothing
    assert not plt.fignum_exists(fig.number)  # closed: shown once, where its caption is
    with pytest.raises(ValueError, match="ch07_fig_"):
        chapter.figure("ch07_paths", plt.figure())
