"""Chapter 00's claim, its negative control and its deviations table."""

from __future__ import annotations

import pytest
import torch

from mcutils.chapters import ch00_preliminaries as ch00
from mcutils.core.report import ChapterReport


def _data(n=400):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 8, 8, generator=gen)
    y = torch.randint(0, 10, (n,), generator=gen)
    return x, y


def test_control_is_an_untrained_network_near_chance_and_leaves_global_rng_alone():
    x, y = _data()
    torch.manual_seed(5)
    before = torch.rand(1)
    torch.manual_seed(5)
    iv = ch00.accuracy_control("mlp", "digits", x, y, seed=3)
    assert torch.equal(torch.rand(1), before)  # the global random state is untouched
    assert iv["n"] == len(x) and 0 <= iv["ci"][0] <= iv["estimate"] <= iv["ci"][1] <= 1
    assert iv["ci"][1] < ch00.ACCURACY_TARGET  # an untrained net cannot pass the target
    assert iv == ch00.accuracy_control("mlp", "digits", x, y, seed=3)


def test_findings_claim_has_exact_interval_control_and_deviations():
    x, y = _data()
    params = {**ch00.PARAMETERS.defaults(), "seed": 0}
    chapter = ChapterReport("00", params=params, expected=ch00.EXPECTED, check=True)
    control = ch00.accuracy_control("mlp", "digits", x, y)
    good = y.clone()
    good[:10] = (good[:10] + 1) % 10  # 390 of 400 right
    acc = ch00.findings(chapter, params, good, y, 1.0, control)
    claim = chapter.claims["accuracy"]
    assert acc["estimate"] == pytest.approx(390 / 400)
    assert claim["verdict"] == "reproduced" and claim["control"]["verdict"] == "not reproduced"
    assert claim["method"].startswith("exact binomial")
    assert chapter.failures() == []
    # all right still has a lower bound below 1 (exact, never [1, 1])
    chapter2 = ChapterReport("00", params=params, expected=ch00.EXPECTED, check=True)
    ch00.findings(chapter2, params, y, y, 1.0, control)
    assert chapter2.claims["accuracy"]["ci"][0] < 1
    # a model at chance fails the claim
    chapter3 = ChapterReport("00", params=params, expected=ch00.EXPECTED, check=True)
    ch00.findings(chapter3, params, (y + 1) % 10, y, 1.0, control)
    assert chapter3.claims["accuracy"]["verdict"] == "not reproduced"
    assert chapter3.failures()
    with pytest.raises(ValueError, match="shape"):
        ch00.findings(chapter3, params, y[:5], y, 1.0, control)


def test_deviation_rows_are_complete():
    for row in ch00.DEVIATIONS:
        assert all(str(row[k]).strip() for k in ("setting", "paper", "source", "ours", "effect"))


def test_setup_view_shows_sizes_shape_parameters_and_cache_state():
    from types import SimpleNamespace

    x, y = _data(40)
    split = SimpleNamespace(x=x, y=y, classes=[str(c) for c in range(10)])
    net = torch.nn.Linear(64, 10)  # 650 parameters
    html = ch00.setup_view(split, SimpleNamespace(x=x[:10], y=y[:10], classes=split.classes),
                           net, {"cached": True}).data
    for text in ("<td>40</td>", "<td>10</td>", "1 x 8 x 8", "<td>650</td>", "<td>yes</td>"):
        assert text in html, text
    with pytest.raises(ValueError, match="both splits"):
        ch00.setup_view(SimpleNamespace(x=x[:0]), split, net, {})


def test_summary_names_the_failed_accuracy_claim_and_the_gpu_profile():
    x, y = _data()
    params = {**ch00.PARAMETERS.defaults(), "seed": 0}
    chapter = ChapterReport("00", params=params, expected=ch00.EXPECTED)
    ch00.findings(chapter, params, (y + 1) % 10, y, 1.0, ch00.accuracy_control("mlp", "digits", x, y))
    text = chapter.summary_text
    assert "**Not reproduced** (1 of 1)" in text and "*Why:* two epochs" in text
    assert text.rstrip().endswith(ch00.GPU_NOTE)
