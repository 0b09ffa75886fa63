"""Chapter 05's explanations: the random bend start, fine-pruning's stopping rule, the
learning-rate search that extends its grid, the factor effects of the midpoint controls
and the verdict of where a curve removes the backdoor."""

import pandas as pd
import pytest
import torch
from torch import nn

from mcutils import curves, pruning
from mcutils.chapters import ch05_controls, ch05_midpoints, ch05_runs
from mcutils.core.checks import ParameterError
from mcutils.core.stats import binomial_interval


def _net(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


def test_random_bend_start_is_seeded_and_off_the_segment():
    a, b = _net(0), _net(1)
    lin = curves.CurveModel(a, a, b, "bezier", init="linear")
    r1 = curves.CurveModel(a, a, b, "bezier", init="random", init_seed=5)
    r2 = curves.CurveModel(a, a, b, "bezier", init="random", init_seed=5)
    r3 = curves.CurveModel(a, a, b, "bezier", init="random", init_seed=6)
    mid = {k: (a.state_dict()[k] + b.state_dict()[k]) / 2 for k in a.state_dict()}
    assert all(torch.allclose(lin.bend_state(1)[k], mid[k]) for k in mid)
    assert all(torch.equal(r1.bend_state(1)[k], r2.bend_state(1)[k]) for k in mid)
    assert not torch.equal(r1.bend_state(1)["0.weight"], r3.bend_state(1)["0.weight"])
    assert not torch.allclose(r1.bend_state(1)["0.weight"], mid["0.weight"])
    # the ends stay the tampered models
    assert torch.equal(r1.state_at(0.0)["0.weight"], a.state_dict()["0.weight"])
    state = torch.random.get_rng_state()
    curves.CurveModel(a, a, b, "bezier", init="random", init_seed=7)
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is untouched
    with pytest.raises(ParameterError):
        curves.CurveModel(a, a, b, "bezier", init="zeros")


def test_prune_until_stops_where_validation_accuracy_drops():
    torch.manual_seed(0)
    x = torch.rand(60, 1, 8, 8)
    y = (x[:, 0, :4].mean((1, 2)) > x[:, 0, 4:].mean((1, 2))).long()
    net = _net(0)
    loader, val = [(x[:30], y[:30]), (x[30:], y[30:])], [(x, y)]
    loose = pruning.prune_until(net, loader, val, tolerance=1.0, step=0.25)
    assert loose["fraction"] == 0.75 and [f for f, _ in loose["tried"]] == [0.25, 0.5, 0.75]
    strict = pruning.prune_until(net, loader, val, tolerance=0.0, step=0.25)
    for f, acc in strict["tried"][:-1]:
        assert acc >= strict["base_accuracy"]
    assert strict["fraction"] <= loose["fraction"]
    if strict["fraction"] < 0.75:  # it stopped at the first share below the level
        assert strict["tried"][-1][1] < strict["base_accuracy"]
    with pytest.raises(ParameterError):
        pruning.prune_until(net, loader, val, step=1.5)


def test_tune_lr_extends_the_grid_until_the_best_rate_is_inside():
    peak = 0.003
    tried = []

    def crit(lr):
        tried.append(lr)
        return -abs(torch.log(torch.tensor(lr / peak))).item()

    best, rows, inside = ch05_runs.tune_lr(crit, [0.01, 0.03, 0.1], extend=2)
    assert best == 0.003 and inside and [lr for lr, _ in rows] == tried
    assert set(tried) == {0.01, 0.03, 0.1, 0.003, 0.001}
    best, _, inside = ch05_runs.tune_lr(crit, [0.01, 0.03, 0.1], extend=0)
    assert best == 0.01 and not inside  # no extension: on the edge, and said so
    best, _, inside = ch05_runs.tune_lr(lambda lr: 1.0, [0.01, 0.03], extend=3)
    assert best == 0.0003 and not inside  # ties: the smaller rate; 3 extensions, then stop
    with pytest.raises(ParameterError):
        ch05_runs.tune_lr(crit, [], 1)


def _rows(place_effect, init_effect, seeds=(0, 1, 2)):
    rows = []
    for s in seeds:
        for curve in ("bezier", "polychain"):
            for place in ("corner", "centre"):
                for init in ("segment", "random"):
                    asr = (0.1 + place_effect * (place == "corner")
                           + init_effect * (init == "segment") + 0.01 * s)
                    rows.append(dict(seed=s, curve=curve, place=place, init=init, asr=asr))
    return pd.DataFrame(rows)


def test_factor_effects_find_the_planted_factor_and_not_the_absent_one():
    eff = ch05_midpoints.factor_effects(_rows(0.6, 0.0))
    assert eff["place"]["estimate"] == pytest.approx(0.6)
    assert eff["init"]["estimate"] == pytest.approx(0.0, abs=1e-12)
    text = ch05_midpoints.factor_reading({"place": {**eff["place"], "ci": [0.5, 0.7]},
                                          "init": {**eff["init"], "ci": [-0.1, 0.1]}})
    assert text.startswith("the trigger's placement keeps the backdoor alive")
    assert "neither" in ch05_midpoints.factor_reading(
        {"place": {"estimate": 0.0, "ci": [-0.1, 0.1]}})
    both = ch05_midpoints.factor_reading({"place": {"estimate": 0.2, "ci": [0.1, 0.3]},
                                          "init": {"estimate": 0.5, "ci": [0.4, 0.6]}})
    assert both.startswith("both") and both.index("bend") < both.index("placement")


def test_repair_verdicts_read_both_intervals():
    iv = binomial_interval
    table = ch05_midpoints.repair_verdicts({
        "clean repair": {"asr": iv(20, 1000), "acc": iv(850, 1000), "end_acc": 0.86},
        "backdoor kept": {"asr": iv(500, 1000), "acc": iv(850, 1000), "end_acc": 0.86},
        "accuracy lost": {"asr": iv(20, 1000), "acc": iv(500, 1000), "end_acc": 0.86},
        "borderline": {"asr": iv(100, 1000), "acc": iv(850, 1000), "end_acc": 0.86},
    }, asr_max=0.1, max_drop=0.05)
    assert list(table.verdict) == ["removed", "kept", "removed at a loss of accuracy",
                                   "undecided"]


def test_deviations_fill_the_measured_column_and_reject_unknown_settings():
    rows = ch05_controls.deviations({"repair budget": "ASR 0.5 after 200 steps"})
    assert len(rows) == len(ch05_controls.DEVIATIONS)
    got = {r["setting"]: r.get("measured") for r in rows}
    assert got["repair budget"] == "ASR 0.5 after 200 steps" and got["poisoning"] is None
    assert all(":" in r["source"] for r in rows)
    with pytest.raises(ValueError):
        ch05_controls.deviations({"magic": "x"})
