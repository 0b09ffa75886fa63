"""Tests of the established detectors (Lee, Ma, Feinman) on data with a known answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mcutils import detection_baselines as db
from mcutils.core import stats
from mcutils.core.checks import ParameterError
from mcutils.detection import source_folds


def _identity_net(d: int = 4, classes: int = 2) -> nn.Module:
    """Flatten -> identity Linear -> ReLU -> Linear(classes): the ReLU's output is the
    input itself for positive inputs, so every score has a closed form."""
    first = nn.Linear(d, d)
    with torch.no_grad():
        first.weight.copy_(torch.eye(d))
        first.bias.zero_()
    return nn.Sequential(nn.Flatten(), first, nn.ReLU(), nn.Linear(d, classes)).eval()


def _two_gaussians(n: int = 200, d: int = 4, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    centre = torch.where(y[:, None] == 0, torch.full((n, d), 3.0), torch.full((n, d), 6.0))
    x = centre + 0.5 * torch.randn(n, d, generator=gen)
    return x.clamp_min(0.01).view(n, 1, 1, d), y


def test_default_layers_are_the_relus_or_resnet_stages():
    net = _identity_net()
    assert db.default_layers(net) == ["2"]
    import torchvision

    res = torchvision.models.resnet18(weights=None, num_classes=3)
    assert db.default_layers(res) == ["layer1", "layer2", "layer3", "layer4"]
    with pytest.raises(ParameterError, match="layers="):
        db.default_layers(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))


def test_layer_activations_pool_conv_maps_over_space():
    conv = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(3 * 16, 2)).eval()
    x = torch.rand(5, 1, 4, 4)
    pooled = db.layer_activations(conv, x, ["1"])[0]
    flat = db.layer_activations(conv, x, ["1"], pooled=False)[0]
    assert pooled.shape == (5, 3) and flat.shape == (5, 48)
    assert torch.allclose(pooled, flat.view(5, 3, 16).mean(2))


def test_a_layer_run_twice_per_forward_is_refused():
    relu = nn.ReLU()
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 4), relu, nn.Linear(4, 4), relu,
                        nn.Linear(4, 2))
    with pytest.raises(ParameterError, match="run"):
        db.layer_activations(net, torch.rand(3, 1, 1, 4), ["2"])


def test_mahalanobis_without_noise_is_the_closed_form_distance():
    x, y = _two_gaussians()
    net = _identity_net()
    maha = db.MahalanobisEnsemble(ridge=0.0).fit(net, x, y)
    f = x.view(len(x), -1).double()
    means = torch.stack([f[y == c].mean(0) for c in (0, 1)])
    centred = f - means[y]
    prec = torch.linalg.inv(centred.T @ centred / len(f))
    probe = torch.tensor([[3.0, 3, 3, 3], [4.5, 4.5, 4.5, 4.5], [9.0, 0.5, 9, 0.5]])
    d = probe.double()[:, None] - means[None]
    want = torch.einsum("ncd,de,nce->nc", d, prec, d).min(1).values.sqrt()
    got = maha.score_grid(net, probe.view(3, 1, 1, 4), noises=[0.0])
    assert got.shape == (3, 1, 1)
    assert np.allclose(got[:, 0, 0], want.numpy(), rtol=1e-6)
    assert got[2, 0, 0] > got[1, 0, 0] > got[0, 0, 0]  # off-distribution scores highest


def test_mahalanobis_preprocessing_moves_towards_the_closest_class():
    x, y = _two_gaussians()
    net = _identity_net()
    maha = db.MahalanobisEnsemble().fit(net, x, y)
    probe = torch.tensor([[3.5, 2.5, 3.2, 2.9], [6.4, 5.5, 6.1, 6.6]]).view(2, 1, 1, 4)
    grid = maha.score_grid(net, probe, noises=[0.0, 0.01, 0.05])
    assert grid.shape == (2, 1, 3)
    assert (np.diff(grid[:, 0, :], axis=1) < 0).all()  # a larger step: a smaller distance


def test_mahalanobis_errors():
    with pytest.raises(ParameterError):
        db.MahalanobisEnsemble(ridge=-1)
    with pytest.raises(RuntimeError, match="fit"):
        db.MahalanobisEnsemble().score_grid(_identity_net(), torch.rand(2, 1, 1, 4))
    x, y = _two_gaussians(20)
    maha = db.MahalanobisEnsemble().fit(_identity_net(), x, y)
    with pytest.raises(ParameterError, match="noises"):
        maha.score_grid(_identity_net(), x, noises=[-0.1])


@pytest.mark.parametrize("dim", [2, 8])
def test_lid_recovers_the_dimension_of_a_flat_subspace(dim):
    gen = torch.Generator().manual_seed(dim)
    basis = torch.linalg.qr(torch.randn(30, dim, generator=gen)).Q  # [30, dim]
    ref = torch.rand(2000, dim, generator=gen) @ basis.T
    probe = (0.25 + 0.5 * torch.rand(200, dim, generator=gen)) @ basis.T
    lid = db.lid_estimates(probe, ref, k=20)
    assert abs(float(lid.median()) - dim) < 0.35 * dim


def test_lid_skips_the_input_itself_and_checks_k():
    ref = torch.rand(50, 3)
    with_self = db.lid_estimates(ref[:5], ref, 10)
    assert torch.isfinite(with_self).all()
    with pytest.raises(ParameterError, match="k="):
        db.lid_estimates(ref, ref, 50)


def test_lid_grid_shape_and_off_manifold_inputs():
    gen = torch.Generator().manual_seed(0)
    net = _identity_net(d=6)
    on = torch.rand(300, 6, generator=gen) * torch.tensor([1.0, 1, 0.01, 0.01, 0.01, 0.01]) + 0.01
    ref = on[:200].view(200, 1, 1, 6)
    probe = on[200:].view(100, 1, 1, 6)
    off = (torch.rand(100, 6, generator=gen) + 0.01).view(100, 1, 1, 6)
    g_on = db.lid_grid(net, probe, ref, ks=[10, 20])
    g_off = db.lid_grid(net, off, ref, ks=[10, 20])
    assert g_on.shape == (100, 1, 2)
    assert np.median(g_off[:, 0, 1]) > np.median(g_on[:, 0, 1])


def test_kd_is_high_near_the_pool_and_bu_vanishes_without_weights():
    x, y = _two_gaussians(200)
    net = _identity_net()
    near = x[:10]
    far = torch.full((10, 1, 1, 4), 20.0)
    g_near = db.kd_bu_grid(net, near, x, y, scales=[0.5, 1.0], mc_samples=10)
    g_far = db.kd_bu_grid(net, far, x, y, scales=[0.5, 1.0], mc_samples=10)
    assert g_near.shape == (10, 2, 2)
    assert (g_near[:, 0] > g_far[:, 0].max()).all()
    assert (g_near[:, 1] >= -1e-12).all()
    assert np.allclose(g_near[:, 1, 0], g_near[:, 1, 1])  # BU does not depend on the scale
    with torch.no_grad():
        net[3].weight.zero_()
    flat = db.kd_bu_grid(net, near, x, y, scales=[1.0], mc_samples=10)
    assert np.allclose(flat[:, 1, 0], 0.0, atol=1e-12)
    with pytest.raises(ParameterError):
        db.kd_bu_grid(net, near, x, y, dropout=1.5)


def _planted_grid(n: int = 160, informative: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], n // 2)
    groups = np.concatenate([np.arange(n // 2), np.arange(n // 2)])
    grid = rng.normal(size=(n, 2, 4))
    grid[:, 0, informative] += 2.0 * labels
    return grid, labels, groups


def test_tuning_finds_the_informative_slice_and_fails_on_shuffled_labels():
    grid, labels, groups = _planted_grid()
    scores, chosen = db.tuned_cross_val_scores(grid, labels, groups, folds=4, seed=0)
    assert chosen == [2, 2, 2, 2]
    assert stats.auroc(labels, scores, num_boot=0).auc > 0.85
    shuffled = np.random.default_rng(1).permutation(labels)
    s2, _ = db.tuned_cross_val_scores(grid, shuffled, groups, folds=4, seed=0)
    assert abs(stats.auroc(shuffled, s2, num_boot=0).auc - 0.5) < 0.15


def test_tuning_never_sees_the_scored_fold():
    grid, labels, groups = _planted_grid()
    _, chosen = db.tuned_cross_val_scores(grid, labels, groups, folds=4, seed=0)
    fold = source_folds(labels, groups, 4, 0)
    poisoned = grid.copy()
    # make slice 0 perfect on fold 0's rows only: fold 0's choice must not move
    poisoned[fold == 0, 0, 0] = 100.0 * labels[fold == 0]
    _, chosen2 = db.tuned_cross_val_scores(poisoned, labels, groups, folds=4, seed=0)
    assert chosen2[0] == chosen[0] == 2


def test_tuned_fit_and_grid_errors():
    grid, labels, groups = _planted_grid()
    det = db.tuned_fit(grid, labels, groups)
    assert det.index == 2 and len(det.validation) == 4
    assert det.scores(grid).shape == (len(labels),)
    with pytest.raises(ParameterError, match="grid"):
        db.tuned_fit(grid[:, :, 0], labels, groups)
    with pytest.raises(ParameterError, match="both classes"):
        db.tuned_fit(grid, np.zeros(len(labels), int), groups)
