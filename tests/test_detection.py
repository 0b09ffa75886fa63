"""Tests of mcutils.detection: batched features equal the per-input loop, features mean
what they say, detectors separate separable data, folds respect groups. (The AUROC
statistics are tested in test_stats.py, the detector penalty in test_attacks.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mcutils import detection, inputspace
from mcutils.core import stats
from mcutils.core.checks import ParameterError


def test_reference_indices_pick_distinct_members_of_the_class():
    pool = torch.tensor([0, 1, 0, 2, 1, 0, 2, 0])
    classes = torch.tensor([0, 2, 0, 1])
    idx = detection.reference_indices(pool, classes, 2, torch.Generator().manual_seed(0))
    assert idx.shape == (4, 2)
    for row, c in zip(idx, classes):
        assert (pool[row] == c).all() and len(set(row.tolist())) == 2
    again = detection.reference_indices(pool, classes, 2, torch.Generator().manual_seed(0))
    assert torch.equal(idx, again)
    with pytest.raises(ParameterError, match="fewer"):
        detection.reference_indices(pool, classes, 3)


def test_barrier_features_batched_equals_loop_and_inputspace(toy_classifier):
    model, x, y = toy_classifier
    pred = model(x).argmax(1)
    refs_idx = detection.reference_indices(y, pred, 3, torch.Generator().manual_seed(1))
    refs = x[refs_idx]
    feats = detection.barrier_features(model, x[:12], pred[:12], refs[:12], num_points=17)
    loop = detection.barrier_features_loop(model, x[:12], pred[:12], refs[:12], num_points=17)
    assert feats.profiles.shape == (12, 3, 17)
    for f in ("profiles", "gap", "max", "maxima"):
        assert torch.allclose(getattr(feats, f).float(), getattr(loop, f).float(), atol=1e-5)
    # profile of input 4 to its 2nd reference equals inputspace.loss_profiles directly
    direct = inputspace.loss_profiles(model, x[4:5], refs[4, 1:2], pred[4:5], num_points=17)
    assert torch.allclose(feats.profiles[4, 1], direct[0], atol=1e-6)
    assert torch.allclose(feats.gap, inputspace.barrier(feats.profiles.flatten(0, 1)).view(12, 3))
    assert (feats.gap >= 0).all() and (feats.max >= feats.profiles[..., 0]).all()
    sub = feats.first_references(2)
    assert sub.profiles.shape == (12, 2, 17) and torch.equal(sub.gap, feats.gap[:, :2])
    assert torch.equal(feats.select([0, 2]).gap, feats.gap[[0, 2]])


def test_barrier_features_bad_shapes(toy_classifier):
    model, x, y = toy_classifier
    with pytest.raises(ParameterError, match="references"):
        detection.barrier_features(model, x[:4], y[:4], x[:4])
    with pytest.raises(ParameterError, match="predicted"):
        detection.barrier_features(model, x[:4], y[:3], x[:4, None])


def test_local_maxima_counts_prominent_peaks():
    p = torch.tensor([[0.0, 1.0, 0.0, 2.0, 0.0],       # two peaks
                      [0.0, 0.5, 1.0, 0.5, 0.0],       # one peak
                      [0.0, 0.0005, 0.0, 0.0, 0.0],    # ripple below tol
                      [0.0, 1.0, 2.0, 3.0, 4.0]])      # monotone: none
    assert detection.local_maxima(p, tol=1e-3).tolist() == [2, 1, 0, 0]
    assert detection.local_maxima(p[:, :2]).tolist() == [0, 0, 0, 0]


def test_logit_features(toy_classifier):
    model, x, _ = toy_classifier
    lf = detection.logit_features(model, x)
    logits = model(x).detach()
    assert torch.allclose(lf.msp, logits.softmax(1).amax(1), atol=1e-6)
    top2 = logits.topk(2, dim=1).values
    assert torch.allclose(lf.margin, top2[:, 0] - top2[:, 1], atol=1e-5)
    assert (lf.sorted_logits[:, :-1] >= lf.sorted_logits[:, 1:]).all()
    assert torch.equal(lf.predicted, logits.argmax(1)) and lf.mahalanobis is None


def test_logit_features_restore_the_callers_mode_and_device(toy_classifier):
    model, x, _ = toy_classifier
    # dropout makes train mode visible: features must come from eval mode
    net = nn.Sequential(*model, nn.Dropout(0.9))
    net.train()
    dev = next(net.parameters()).device
    lf = detection.logit_features(net, x[:20])
    assert net.training and all(m.training for m in net.modules())
    assert next(net.parameters()).device == dev
    with torch.no_grad():
        expected = model(x[:20]).sort(1, descending=True).values
    assert torch.allclose(lf.sorted_logits, expected, atol=1e-6)
    feats = detection.penultimate_features(net, x[:20])
    assert net.training and feats.shape == (20, 32)
    with torch.no_grad():
        assert torch.allclose(feats, model[:3](x[:20]), atol=1e-6)
    with pytest.raises(ParameterError, match="Linear"):
        detection.penultimate_features(nn.Sequential(nn.Flatten()), x[:2])


def test_feature_matrix_shapes_and_errors(toy_classifier):
    model, x, y = toy_classifier
    pred = model(x).argmax(1)
    refs = x[detection.reference_indices(y, pred, 2, torch.Generator().manual_seed(0))]
    bf = detection.barrier_features(model, x[:10], pred[:10], refs[:10], num_points=9)
    lf = detection.logit_features(model, x[:10])
    shapes = {d: detection.feature_matrix(d, bf, lf).shape for d in detection.DETECTORS
              if d != "mahalanobis"}
    assert shapes["barrier"] == (10, 1) and shapes["msp"] == (10, 1)
    assert shapes["profile"] == (10, 2 * 9 + 1)
    assert shapes["profile_logits"] == (10, 2 * 9 + 1 + 3)
    assert shapes["logits"] == (10, 3)
    np.testing.assert_allclose(detection.feature_matrix("barrier", bf)[:, 0],
                               bf.gap.mean(1).numpy(), rtol=1e-6)
    with pytest.raises(ParameterError, match="needs logit"):
        detection.feature_matrix("msp", bf)
    with pytest.raises(ParameterError, match="Mahalanobis"):
        detection.feature_matrix("mahalanobis", bf, lf)
    with pytest.raises(ParameterError, match="not known"):
        detection.feature_matrix("lid", bf, lf)


def _separable(n=60, shift=3.0, seed=0):
    rng = np.random.default_rng(seed)
    neg = rng.normal(size=(n, 3))
    pos = rng.normal(size=(n, 3)) + np.array([shift, 0, 0])
    return detection.stack_groups(neg, pos, np.arange(n), np.arange(n))


@pytest.mark.parametrize("method", detection.CLASSIFIERS)
def test_cross_val_scores_detect_separable_and_ignore_noise(method):
    x, y, g = _separable()
    s = detection.cross_val_scores(x, y, g, method=method, folds=5)
    assert stats.auroc(y, s, num_boot=0).auc > 0.9
    # pure noise: no leakage through the folds
    xn, yn, gn = _separable(shift=0.0, seed=1)
    sn = detection.cross_val_scores(xn, yn, gn, method=method, folds=5)
    assert 0.3 < stats.auroc(yn, sn, num_boot=0).auc < 0.7
    # deterministic
    assert np.array_equal(s, detection.cross_val_scores(x, y, g, method=method, folds=5))


def _assert_sources_within_one_fold(fold, groups):
    for g in np.unique(groups):
        assert len(np.unique(fold[groups == g])) == 1, f"source {g} is split across folds"


def test_source_folds_keep_each_source_in_one_fold():
    rng = np.random.default_rng(0)
    # 40 sources: each has a real row, most have one or two adversarial rows
    groups = np.concatenate([np.arange(40), np.arange(30), np.arange(10)])
    labels = np.r_[np.zeros(40, int), np.ones(40, int)]
    rng.shuffle(perm := np.arange(80))
    groups, labels = groups[perm], labels[perm]
    fold = detection.source_folds(labels, groups, folds=5, seed=0)
    _assert_sources_within_one_fold(fold, groups)
    # every fold gets sources and both labels, in similar numbers
    per_fold = np.bincount(fold, minlength=5)
    assert per_fold.min() > 0 and per_fold.max() - per_fold.min() <= 6
    assert all(set(labels[fold == f]) == {0, 1} for f in range(5))
    assert np.array_equal(fold, detection.source_folds(labels, groups, folds=5, seed=0))
    assert not np.array_equal(fold, detection.source_folds(labels, groups, folds=5, seed=1))
    # the check itself fails on a row-wise split, which separates a source's rows
    leaky = np.arange(80) % 5
    with pytest.raises(AssertionError, match="split across folds"):
        _assert_sources_within_one_fold(leaky, groups)
    with pytest.raises(ParameterError, match="folds"):
        detection.source_folds(labels, groups, folds=41)


def test_cross_val_scores_never_trains_on_the_scored_source(monkeypatch):
    """A spy detector records the sources it was fitted on (the source id rides along as
    feature 0) and fails if asked to score one of them."""
    class Spy:
        def fit(self, x, y):
            self.seen = set(x[:, 0].astype(int).tolist())
            return self

        def predict_proba(self, x):
            leaked = self.seen & set(x[:, 0].astype(int).tolist())
            assert not leaked, f"scored sources it was trained on: {sorted(leaked)[:5]}"
            return np.tile([0.5, 0.5], (len(x), 1))

        def get_params(self, deep=False):
            return {}

    monkeypatch.setattr(detection, "make_classifier", lambda method="logistic", seed=0: Spy())
    groups = np.r_[np.arange(30), np.arange(30)]
    labels = np.r_[np.zeros(30, int), np.ones(30, int)]
    x = np.c_[groups, np.random.default_rng(0).normal(size=60)]
    detection.cross_val_scores(x, labels, groups, folds=5)
    # the spy does catch a leak: rows of source 0 on both sides
    spy = Spy().fit(x[1:], labels[1:])
    with pytest.raises(AssertionError, match="trained on"):
        spy.predict_proba(x[:1])


def test_mahalanobis_scores_distance_to_the_nearest_class():
    rng = np.random.default_rng(0)
    means = np.array([[0.0, 0.0], [10.0, 0.0]])
    labels = np.repeat([0, 1], 200)
    cov = np.array([[1.0, 0.0], [0.0, 9.0]])  # elongated along the second axis
    feats = means[labels] + rng.multivariate_normal([0, 0], cov, size=400)
    det = detection.Mahalanobis(ridge=0.0).fit(torch.tensor(feats), torch.tensor(labels))
    probe = torch.tensor([[0.0, 3.0], [3.0, 0.0], [10.0, 0.0], [5.0, 0.0]])
    score = det.score(probe)
    # (0, 3) is 1 sd away along the wide axis, (3, 0) 3 sd along the narrow one
    assert score[0] < score[1]
    assert score[2] < 0.3 and abs(float(score[0]) - 1.0) < 0.2
    assert abs(float(score[3]) - 5.0) < 0.5  # halfway between the means: 5 sd from each
    with pytest.raises(RuntimeError):
        detection.Mahalanobis().score(probe)


def test_fit_detector_transfer():
    x, y, _ = _separable()
    det = detection.fit_detector(x, y)
    x2, y2, _ = _separable(seed=3)
    assert stats.auroc(y2, detection.detector_scores(det, x2), num_boot=0).auc > 0.95


def test_evaluate_detectors_end_to_end(toy_classifier):
    model, x, y = toy_classifier
    pred = model(x).argmax(1)
    gen = torch.Generator().manual_seed(0)
    refs = x[detection.reference_indices(y, pred, 2, gen)]
    # "adversarial" stand-ins: heavy noise, predicted by the model, references of that class
    noisy = (x + 0.8 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    pn = model(noisy).argmax(1)
    refs_n = x[detection.reference_indices(y, pn, 2, gen)]
    bf_r = detection.barrier_features(model, x, pred, refs, num_points=9)
    bf_n = detection.barrier_features(model, noisy, pn, refs_n, num_points=9)
    lf_r, lf_n = detection.logit_features(model, x), detection.logit_features(model, noisy)
    g = np.arange(len(x))
    res = detection.evaluate_detectors(bf_r, lf_r, bf_n, lf_n, g, g,
                                       detectors=("barrier_max", "logits"), folds=3)
    assert set(res) == {"barrier_max", "logits"}
    assert res["logits"].auc > 0.8
    # each AUROC is exactly that of the source-disjoint out-of-fold scores
    xm, ym, gm = detection.stack_groups(detection.feature_matrix("barrier_max", bf_r),
                                        detection.feature_matrix("barrier_max", bf_n), g, g)
    oof = detection.cross_val_scores(xm, ym, gm, folds=3)
    assert res["barrier_max"].auc == stats.auroc(ym, oof, num_boot=0).auc
    # default detectors: mahalanobis only when its score is present
    assert "mahalanobis" not in detection.evaluate_detectors(bf_r, lf_r, bf_n, lf_n, g, g,
                                                             folds=3)


def test_connectivity_features_uses_predicted_class(toy_classifier):
    model, x, y = toy_classifier
    bf, lf, pred = detection.connectivity_features(model, x[:20], x[20:], y[20:], num_refs=2,
                                                   num_points=5, seed=0)
    assert torch.equal(pred, model(x[:20]).argmax(1))
    assert bf.profiles.shape == (20, 2, 5) and len(lf) == 20
    # the profile starts at the loss of the predicted class at the input
    ce = F.cross_entropy(model(x[:20]), pred, reduction="none").detach()
    assert torch.allclose(bf.profiles[:, 0, 0], ce, atol=1e-5)


def test_transfer_matrix_splits_sources():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(60, 2))
    shifted = real + np.array([3.0, 0.0])      # attack A: moves along feature 0
    other = real + np.array([0.0, 3.0])        # attack B: along feature 1
    res = detection.transfer_matrix(real, {"a": (shifted, np.arange(60)),
                                           "b": (other, np.arange(60))}, np.arange(60))
    assert res["a"]["a"] > 0.95 and res["b"]["b"] > 0.95
    assert res["a"]["b"] < 0.8  # a detector of A does not see B
