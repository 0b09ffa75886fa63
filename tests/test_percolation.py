import itertools

import numpy as np
import pytest
import torch
from torch import nn

from mcutils import percolation as perc
from mcutils.runtime import ParameterError


@pytest.mark.parametrize("d", [1, 2, 3, 5])
def test_random_lattice_extremes_and_density(d):
    rng = np.random.default_rng(0)
    assert not perc.random_lattice(d, 6, 0.0, rng).any()
    assert perc.random_lattice(d, 6, 1.0, rng).all()
    lat = perc.random_lattice(d, 6, 0.3, rng, trials=200)
    assert lat.shape == (200,) + (6,) * d and lat.dtype == bool
    assert abs(lat.mean() - 0.3) < 0.05


def test_random_lattice_seeded_and_validated():
    a = perc.random_lattice(3, 8, 0.5, 7)
    b = perc.random_lattice(3, 8, 0.5, np.random.default_rng(7))
    assert np.array_equal(a, b)
    with pytest.raises(ParameterError, match="p="):
        perc.random_lattice(2, 8, 1.5, 0)
    with pytest.raises(ParameterError, match="d="):
        perc.random_lattice(0, 8, 0.5, 0)


HAND = np.array([[1, 1, 0, 0, 1],
                 [0, 1, 0, 1, 1],
                 [0, 0, 0, 0, 0],
                 [1, 0, 1, 1, 0],
                 [1, 0, 0, 1, 1]], dtype=bool)


@pytest.mark.parametrize("method", perc.METHODS)
def test_clusters_hand_made_lattice(method):
    labels, n = perc.clusters(HAND, method=method)
    assert n == 4
    assert (labels > 0).sum() == HAND.sum() and not labels[~HAND].any()
    sizes = sorted(np.bincount(labels.ravel())[1:].tolist())
    assert sizes == [2, 3, 3, 4]
    # diagonal neighbours do not connect: (1,1) and (0,0) join through (0,1) only
    assert labels[0, 0] == labels[1, 1] and labels[0, 4] == labels[1, 3]
    assert labels[3, 0] != labels[3, 2]


@pytest.mark.parametrize("method", perc.METHODS)
def test_clusters_periodic_joins_across_the_boundary(method):
    lat = np.zeros((4, 4), bool)
    lat[1, 0] = lat[1, 3] = True
    assert perc.clusters(lat, method=method)[1] == 2
    labels, n = perc.clusters(lat, periodic=True, method=method)
    assert n == 1 and labels[1, 0] == labels[1, 3]
    labels, n = perc.clusters(lat, periodic=[True, False], method=method)
    assert n == 2


def test_clusters_batched_keeps_trials_apart_and_methods_agree():
    rng = np.random.default_rng(1)
    lat = perc.random_lattice(3, 7, 0.35, rng, trials=5)
    for periodic in (False, True):
        la, na = perc.clusters(lat, periodic=periodic, batched=True, method="ndimage")
        lb, nb = perc.clusters(lat, periodic=periodic, batched=True, method="csgraph")
        assert na == nb
        # same partition: a bijection between labels
        pairs = np.unique(np.stack([la.ravel(), lb.ravel()]), axis=1)
        assert pairs.shape[1] == na + 1
        for t in range(5):  # no cluster is shared by two trials
            others = np.delete(la, t, axis=0)
            assert not np.isin(np.unique(la[t])[1:], others).any()
            single, _ = perc.clusters(lat[t], periodic=periodic)
            assert len(np.unique(single)) == len(np.unique(la[t]))


def test_largest_cluster():
    mask = perc.largest_cluster(perc.clusters(HAND)[0])
    assert mask.sum() == 4 and mask[3, 2] and mask[4, 4] and not mask[0, 4]
    assert not perc.largest_cluster(np.zeros((3, 3), int)).any()


@pytest.mark.parametrize("boundary", perc.BOUNDARIES)
def test_spanning_at_extremes(boundary):
    for d in (1, 2, 4):
        assert perc.spanning_probability(d, 5, 1.0, 6, 0, boundary=boundary) == 1.0
        assert perc.spanning_probability(d, 5, 0.0, 6, 0, boundary=boundary) == 0.0


def test_spanning_of_hand_made_lattices():
    col = np.zeros((1, 5, 5), bool)
    col[0, :, 2] = True
    assert perc.spans(col).tolist() == [True]
    col[0, 2, 2] = False
    assert perc.spans(col).tolist() == [False]
    # a cluster that only spans through the periodic transverse boundary
    snake = np.zeros((1, 3, 4), bool)
    snake[0, 0, 0] = snake[0, 1, 0] = snake[0, 1, 3] = snake[0, 2, 3] = True
    assert perc.spans(snake, boundary="free").tolist() == [False]
    assert perc.spans(snake, boundary="cylinder").tolist() == [True]


def test_spanning_probability_is_monotone_and_vectorised_over_p():
    probs = perc.spanning_probability(2, 16, [0.3, 0.59, 0.9], 40, 0)
    assert probs.shape == (3,) and probs[0] == 0.0 and probs[2] == 1.0
    assert 0.0 < probs[1] < 1.0


def test_connection_probability():
    assert perc.connection_probability(3, 6, 1.0, 2, 0) == 1.0
    low, high = perc.connection_probability(2, 24, [0.3, 0.8], 10, 0)
    assert low < 0.05 and high > 0.9


def test_spanning_thresholds_in_one_dimension_are_the_maximum_uniform():
    # in d = 1 a line spans iff all sites are open: P(p* <= p) = p^L
    thr = perc.spanning_thresholds(1, 10, 400, 0, resolution=1e-3)
    assert abs(thr.mean() - 10 / 11) < 0.015
    assert np.all((thr > 0) & (thr <= 1))


def test_threshold_d1_is_one():
    est = perc.estimate_threshold(1, [8, 64], 200, 0)
    assert est["pc"] > 0.97 and est["pc"] <= 1.0
    assert set(est) >= {"pc", "err", "sizes", "crossings", "mean", "std", "thresholds"}


def test_threshold_d2_near_published():
    est = perc.estimate_threshold(2, [16, 48], 48, 0)
    assert abs(est["pc"] - 0.5927) < 0.03
    assert 0 < est["err"] < 0.05


def test_threshold_validation():
    with pytest.raises(ParameterError, match="sizes"):
        perc.estimate_threshold(2, [16], 10, 0)
    with pytest.raises(ParameterError, match="boundary"):
        perc.spanning_probability(2, 8, 0.5, 2, 0, boundary="torus")


def test_published_and_asymptotic_thresholds():
    assert perc.PUBLISHED_THRESHOLDS[2][0] == pytest.approx(0.592746, abs=1e-6)
    vals = [perc.PUBLISHED_THRESHOLDS[d][0] for d in sorted(perc.PUBLISHED_THRESHOLDS)]
    assert all(a > b for a, b in itertools.pairwise(vals))
    assert perc.bethe_threshold(3) == pytest.approx(0.2)
    # the expansion is close to the simulations where they are precise (d >= 6)
    for d in (6, 7, 8):
        assert perc.asymptotic_threshold(d) == pytest.approx(perc.PUBLISHED_THRESHOLDS[d][0],
                                                             rel=0.02)
    big = perc.asymptotic_threshold(np.array([784, 3072]))
    assert np.all(big > perc.bethe_threshold(np.array([784, 3072])))
    assert big[0] == pytest.approx(1 / 1567, rel=0.01)


def test_anchor_connection_probability():
    shape = (5, 5)
    assert perc.anchor_connection_probability(shape, (0, 0), (4, 4), 1.0, 4, 0) == 1.0
    assert perc.anchor_connection_probability(shape, (0, 0), (4, 4), 0.0, 4, 0) == 0.0
    # adjacent anchors are always connected
    assert perc.anchor_connection_probability(shape, (2, 2), (2, 3), 0.1, 4, 0) == 1.0
    mid = perc.anchor_connection_probability((9, 9), (0, 4), (8, 4), 0.6, 200, 0)
    assert 0.05 < mid < 0.95


class _Halfspace(nn.Module):
    """Class 1 where the first pixel is > 0.5, else class 0."""

    def forward(self, x):
        z = x.flatten(1)[:, :1] - 0.5
        return torch.cat([-z, z], 1)


def test_grid_points_geometry():
    xa, xb = torch.zeros(1, 3, 3), torch.ones(1, 3, 3)
    grid = perc.grid_points(xa, xb, d=3, n=5, generator=torch.Generator().manual_seed(0))
    pts = grid.points()
    assert pts.shape == (125, 1, 3, 3)
    flat = pts.view(5, 5, 5, -1)
    assert torch.allclose(flat[grid.anchor_a], xa.flatten())
    assert torch.allclose(flat[grid.anchor_b], xb.flatten())
    dirs = grid.directions
    gram = dirs @ dirs.T
    assert torch.allclose(gram, gram[0, 0] * torch.eye(3), atol=1e-4)
    with pytest.raises(ParameterError, match="n="):
        perc.grid_points(xa, xb, d=2, n=6)
    small = perc.grid_points(xa, xb, d=2, n=3)  # no margin: x_a and x_b on the faces
    assert small.anchor_a == (0, 1) and small.anchor_b == (2, 1)
    assert torch.allclose(small.points().view(3, 3, -1)[2, 1], xb.flatten())
    assert [perc.grid_size(d, 729) for d in (2, 3, 4, 6)] == [27, 9, 5, 3]


def test_label_grid_and_connectivity_on_a_halfspace_model():
    model = _Halfspace()
    xa = torch.full((1, 2, 2), 0.7)
    xb = torch.full((1, 2, 2), 0.9)
    grid = perc.grid_points(xa, xb, d=2, n=9, generator=torch.Generator().manual_seed(0))
    labels = perc.label_grid(model, grid, batch_size=7)
    assert labels.shape == (9, 9)
    frac, connected = perc.grid_connectivity(labels, 1, grid.anchor_a, grid.anchor_b)
    assert connected and 0 < frac < 1  # a half-space is convex: always connected
    frac0, connected0 = perc.grid_connectivity(labels, 0, grid.anchor_a, grid.anchor_b)
    assert not connected0 and frac0 == pytest.approx(1 - frac)


def test_network_grid_study_and_plane():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x = torch.rand(6, 1, 2, 2)
    pairs = (torch.tensor([0, 1]), torch.tensor([2, 3]))
    df = perc.network_grid_study(model, x, pairs, dims=[2, 3], max_cells=200, seed=0,
                                 random_trials=8)
    assert len(df) == 4
    assert set(df.columns) >= {"pair", "d", "n", "cls", "p", "connected", "random_connect"}
    assert df["p"].between(0, 1).all() and df["random_connect"].between(0, 1).all()
    again = perc.network_grid_study(model, x, pairs, dims=[2, 3], max_cells=200, seed=0,
                                    random_trials=8)
    assert df.equals(again)
    plane = perc.plane_predictions(model, x[0], x[1], x[2], n=11)
    assert plane["labels"].shape == (11, 11)
    assert len(plane["anchors"]) == 3


def test_threshold_table():
    table = perc.threshold_table([1, 2], [[4, 16], [8, 16]], 12, seed=0, )
    assert list(table.index) == [1, 2]
    assert table.loc[2, "published"] == pytest.approx(0.592746)
    assert np.isnan(table.loc[1, "published"]) and table.loc[1, "pc"] > 0.9
    again = perc.threshold_table([2], [[8, 16]], 12, seed=0)
    assert again.loc[2, "pc"] == table.loc[2, "pc"]  # per-dimension seeding
    assert len(table.attrs["thresholds"][2][16]) == 12
    with pytest.raises(ParameterError, match="sizes"):
        perc.threshold_table([2, 3], [[8, 16]], 4)


def test_same_class_pairs():
    x = torch.rand(40, 1, 2, 2)
    y = (x.flatten(1)[:, 0] > 0.5).long()
    i, j = perc.same_class_pairs(_Halfspace(), x, y, num_pairs=5, seed=0)
    assert len(i) == 5 and torch.all(i != j) and torch.all(y[i] == y[j])
    assert set(y[i].tolist()) == {0, 1}  # spread over both classes
    wrong = 1 - y
    assert len(perc.same_class_pairs(_Halfspace(), x, wrong, 3)[0]) == 0
