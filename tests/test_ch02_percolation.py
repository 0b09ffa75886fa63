"""Tests of chapter 02's modules (mcutils.chapters.ch02_percolation and
ch02_percolation_figures) at tiny sizes: the parameter schema and its cross-checks, the
section steps, the findings and the figures."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch
from torch import nn

from mcutils import percolation as perc
from mcutils.chapters import ch02_percolation as ch02
from mcutils.chapters import ch02_percolation_views as views
from mcutils.chapters import ch02_percolation_figures as fig02
from mcutils.core import report
from mcutils.core.checks import ParameterError
from _toy_models import Halfspace

matplotlib.use("Agg")


def _scope(**changes):
    return {**ch02.PARAMETERS.defaults(), **changes}


# ------------------------------------------------------------------- parameters


def test_schema_defaults_pass_and_expected_claims():
    assert ch02.PARAMETERS.validate(_scope())["threshold_dims"] == [2, 3, 4, 5, 6, 7, 8]
    assert ch02.EXPECTED == [f"pc_d{d}" for d in range(2, 9)] + ["pc_falls"]
    assert ch02.expected_claims([2, 3]) == ["pc_d2", "pc_d3", "pc_falls"]
    assert ch02.expected_claims([2]) == ["pc_d2"]
    assert ch02.expected_claims([2, 12]) == ["pc_d2", "pc_falls"]  # no published p_c(12)


def test_schema_rejects_bad_values_and_estimators():
    with pytest.raises(ParameterError) as err:
        ch02.PARAMETERS.validate(_scope(threshold_estimators="guess", slice_points=5,
                                        growth_runs=1, lattice_side=4, profile_dims=[1, 2]))
    msg = str(err.value)
    for part in ("threshold_estimators='guess'", "slice_points=5", "growth_runs=1",
                 "lattice_side=4", "profile_dims=1"):
        assert part in msg
    ch02.PARAMETERS.validate(_scope(threshold_estimators=["growth", "spanning"] * 3
                                    + ["growth"]))


def test_cross_checks_name_every_per_dimension_list_of_the_wrong_length():
    assert ch02.check_threshold_lists(_scope()) is None
    assert ch02.check_slice_lists(_scope()) is None
    assert ch02.check_threshold_lists(_scope(growth_clusters=100, growth_tmax=64)) is None
    bad = _scope(threshold_dims=[2, 3], growth_tmax=[64])
    msg = ch02.check_threshold_lists(bad)
    assert "growth_clusters has 7 entries for 2 dimensions" in msg
    assert "growth_tmax has 1 entries" in msg and "spanning_sizes has 7" in msg
    with pytest.raises(ParameterError, match="anchored_slices has 4 entries for 2"):
        ch02.PARAMETERS.validate(_scope(slice_dims=[1, 2]))
    # the smoke profile's lists fit its dimensions
    smoke = _scope(slice_dims=[1, 2], anchored_slices=[3, 3], random_slices=[2, 2],
                   null_count=[20, 20], threshold_dims=[2, 3], growth_clusters=[20, 20],
                   growth_tmax=[32, 32], spanning_sizes=[[8, 16], [4, 8]])
    ch02.PARAMETERS.validate(smoke)


# ------------------------------------------------------------------- sections


def test_published_connection_and_extrapolation():
    chapter = report.ChapterReport("02")
    published = ch02.record_published(chapter, [2, 3, 12])
    assert published[2] == pytest.approx(0.592746, abs=1e-6)
    assert ch02.reference_threshold(12, published) == perc.asymptotic_threshold(12)
    connection = ch02.connection_study([2], published, 1024, 1, seed=0)
    assert np.isclose(connection.p_rel, 1.1).sum() == 1 and len(connection) == 14
    above = ch02.record_connection(chapter, connection)
    assert list(above.index) == [2] and 0 <= above.iloc[0] <= 1
    ext = ch02.extrapolated_thresholds()
    assert list(ext.index) == list(ch02.INPUT_DIMS)
    assert ext.loc["Fashion-MNIST 28x28x1", "series"] > ext.loc["Fashion-MNIST 28x28x1",
                                                                 "bethe"]
    fig = fig02.plot_connection_curves(connection)
    assert len(fig.axes) == 2
    fig = fig02.plot_lattices(16, published[2], seed=0)
    assert len(fig.axes) == 3
    fig = fig02.plot_growth_profiles([2], published, clusters=5, t_max=16, seed=0)
    assert fig.axes[0].get_title() == "d = 2"
    matplotlib.pyplot.close("all")




@pytest.fixture(scope="module")
def tiny():
    """A tiny threshold table, slice study and trio study."""
    torch.manual_seed(0)
    x = torch.rand(60, 1, 2, 2)
    y = (x.flatten(1)[:, 0] > 0.5).long()
    nets = {"trained": Halfspace(),
            "untrained": nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(),
                                       nn.Linear(8, 2))}
    table = perc.threshold_table([2, 3], runs=3, clusters=[10, 20], t_max=[16, 16], seed=0)
    study = ch02.slices_vs_nulls(nets, x, y, dims=[1, 2], anchored=[3, 3], unanchored=[0, 2],
                                 null_count=[10, 10], seed=0, min_units=2)
    trios, planes = perc.trio_study(nets["trained"], x, y, num_trios=2, n=9, margin=1.0, seed=0)
    return table, study, trios, planes


def test_findings_records_every_number_and_claim(tiny):
    table, study, trios, _ = tiny
    chapter = report.ChapterReport("02", expected=ch02.expected_claims([2, 3]))
    params = {"seed": 0, "growth_runs": 3, "growth_clusters": [10, 20],
              "growth_tmax": [16, 16], "plane_points": 9, "plane_margin": 1.0}
    one_patch = ch02.findings(chapter, params, table=table, study=study, trios=trios)
    assert one_patch["estimate"] == 1.0  # a half-space is convex: one patch always
    assert one_patch["ci"][0] < 1.0  # exact: 2 of 2 planes is not [1, 1]
    for cid in ("pc_d2", "pc_d3", "pc_falls", "one_patch"):  # every claim's control fails
        assert chapter.claims[cid]["control"]["verdict"] != "reproduced", cid
        assert chapter.claims[cid]["method"] != "not stated", cid
    assert not chapter.failures() or all("control" not in f for f in chapter.failures())
    assert {"pc_d2", "pc_d3", "pc_falls", "percolation_trained", "null_onset_falls",
            "one_patch"} <= set(chapter.claims)
    assert chapter.claims["one_patch"]["statement"] == ch02.ONE_PATCH_CLAIM["statement"]
    assert chapter.claims["pc_d2"]["expected"] and not chapter.claims["one_patch"]["expected"]
    assert "correlated_trained" in chapter.claims  # the decisive comparison
    assert "random field with the network's own correlation" in \
        chapter.claims["correlated_trained"]["statement"]
    assert chapter.summary_text.startswith("**") and "gpu profile" in chapter.summary_text
    view = views.threshold_view(table)
    assert list(view["d"]) == [2, 3] and view.loc[0, "relative deviation"].endswith("%")
    assert set(view.loc[0, "estimate [95% interval]"]) == {"estimate", "ci"}


def test_slice_tables_and_figures(tiny):
    table, study, trios, planes = tiny
    lengths = ch02.matched_length_summary(study)
    assert len(views.matched_length_view(study)) == len(lengths)
    onsets = views.onset_view(study)
    assert {"d = 1", "d = 2"} <= set(onsets.columns) and len(onsets) >= 3
    match = views.match_view(study)
    assert (match["closest"] == "yes").sum() == len(study["match"])
    ext = views.extrapolated_view()
    assert list(ext["dimension d"]) == list(ch02.INPUT_DIMS.values())
    assert lengths and all(isinstance(v, tuple) and len(v) == 2 for v in lengths.values())
    assert any(k.startswith("trained anchored d=") for k in lengths)
    published = {d: v for d, (v, _) in perc.PUBLISHED_THRESHOLDS.items()}
    fig = fig02.plot_thresholds(table, published, max_dim=6)
    assert fig.axes[0].get_yscale() == "log"
    fig = fig02.plot_onsets(study)
    assert [ax.get_title() for ax in fig.axes] == ["onset: anchors join",
                                                  "onset: unanchored slice spans"]
    fig = fig02.plot_slice_fields(study)
    assert len(fig.axes) >= 1
    fig = fig02.plot_trio_plane(planes[0], trios.iloc[0], ["zero", "one"])
    assert "one patch" in fig.axes[0].get_title()
    matplotlib.pyplot.close("all")


def test_setup_networks_on_digits():
    params = {**ch02.PARAMETERS.defaults(), "dataset": "digits", "model": "mlp",
              "num_epochs": 1, "train_subset": 200, "eval_subset": 50}
    networks, test_set = ch02.setup_networks(params)
    assert set(networks) == {"trained", "untrained"} and len(test_set.y) == 50
    trained, untrained = (list(networks[k].parameters())[-1] for k in ("trained", "untrained"))
    assert trained.shape == untrained.shape and not torch.equal(trained, untrained)
    again, _ = ch02.setup_networks(params)  # the untrained one is reseeded: the same again
    assert all(torch.equal(a, b) for a, b in zip(networks["untrained"].state_dict().values(),
                                                 again["untrained"].state_dict().values()))
    assert torch.isfinite(trained.detach()).all()


def test_controls_fail_where_the_claims_cannot_hold():
    from mcutils.chapters import ch02_percolation_checks as checks
    from mcutils.core.report import verdict

    ctl = checks.trio_control(6, n=21, margin=1.0, seed=0)  # two disjoint balls
    assert ctl["estimate"] == 0.0 and ctl["n"] == 6
    assert verdict(ctl["ci"], ch02.ONE_PATCH_CLAIM["threshold"], ">=") == "not reproduced"
    table = perc.threshold_table([3], runs=3, clusters=200, t_max=32, seed=0)
    tree = checks.threshold_controls(table, {"growth_runs": 3, "growth_clusters": 200,
                                             "growth_tmax": 32, "seed": 0})
    dev = perc.deviation_interval(tree[3], perc.PUBLISHED_THRESHOLDS[3][0])
    assert verdict(dev["ci"], 0.01, "<=") == "not reproduced"


def test_deviations_table_rows_are_complete():
    from mcutils.chapters import ch02_percolation_checks as checks

    chapter = report.ChapterReport("02")
    df = checks.deviations(chapter)
    assert len(df) == len(checks.DEVIATIONS) >= 1
    assert all(df.source.str.contains("JVrabel/input_space_mode_connectivity"))
