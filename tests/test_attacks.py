"""Tests of mcutils.attacks on tiny models: the loss rises, balls and box are respected,
targeted attacks reach their targets, adversarial training transforms work, and the
adaptive attacker's detector penalty recomputes the detector's own features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mcutils import adaptive, attacks, detection
from mcutils.core.checks import ParameterError


def _toy(seed: int = 0, classes: int = 3):
    """A small trained MLP on separable 1x6x6 'images' in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.rand(classes, 1, 6, 6, generator=g)
    y = torch.arange(classes).repeat_interleave(40)
    x = (centers[y] + 0.15 * torch.randn(len(y), 1, 6, 6, generator=g)).clamp(0, 1)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 32), nn.ReLU(), nn.Linear(32, classes))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    return model, x, y


@pytest.fixture(scope="module")
def toy():
    return _toy()


def _loss(model, x, y):
    with torch.no_grad():
        return F.cross_entropy(model(x), y, reduction="none")


@pytest.mark.parametrize("norm,eps", [("linf", 0.05), ("l2", 0.5)])
def test_pgd_raises_loss_and_respects_ball_and_box(toy, norm, eps):
    model, x, y = toy
    g = torch.Generator().manual_seed(1)
    x_adv = attacks.pgd(model, x, y, eps=eps, steps=10, norm=norm, generator=g)
    d = attacks.perturbation_norms(x, x_adv)[norm]
    assert (d <= eps + 1e-5).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert _loss(model, x_adv, y).mean() > 5 * _loss(model, x, y).mean()
    # more steps, no weaker than FGSM-sized single step
    x_f = attacks.fgsm(model, x, y, eps=0.05) if norm == "linf" else None
    if x_f is not None:
        assert _loss(model, x_adv, y).mean() >= _loss(model, x_f, y).mean() - 1e-4


def test_pgd_is_batched_consistently(toy):
    model, x, y = toy
    a = attacks.pgd(model, x, y, eps=0.05, steps=5, random_start=False)
    b = attacks.pgd(model, x, y, eps=0.05, steps=5, random_start=False, batch_size=7)
    assert torch.allclose(a, b, atol=1e-6)


def test_pgd_random_start_is_seeded(toy):
    model, x, y = toy
    a = attacks.pgd(model, x, y, 0.05, 3, generator=torch.Generator().manual_seed(3))
    b = attacks.pgd(model, x, y, 0.05, 3, generator=torch.Generator().manual_seed(3))
    c = attacks.pgd(model, x, y, 0.05, 3, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("norm,eps", [("linf", 0.6), ("l2", 6.0)])
def test_targeted_pgd_reaches_target(toy, norm, eps):
    model, x, y = toy
    target = (y + 1) % 3
    x_adv = attacks.pgd(model, x, target, eps=eps, steps=40, norm=norm, targeted=True)
    assert attacks.success_rate(model, x_adv, target, targeted=True) > 0.95
    assert _loss(model, x_adv, target).mean() < _loss(model, x, target).mean()


def test_fgsm_ball_box_and_loss(toy):
    model, x, y = toy
    x_adv = attacks.fgsm(model, x, y, eps=0.1)
    assert (attacks.perturbation_norms(x, x_adv)["linf"] <= 0.1 + 1e-6).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert _loss(model, x_adv, y).mean() > _loss(model, x, y).mean()
    x_rs = attacks.fgsm(model, x, y, eps=0.1, random_start=True,
                        generator=torch.Generator().manual_seed(0))
    assert (attacks.perturbation_norms(x, x_rs)["linf"] <= 0.1 + 1e-6).all()


def test_cw_l2_finds_small_successful_perturbations(toy):
    model, x, y = toy
    x_adv = attacks.cw_l2(model, x, y, c=5.0, steps=150, lr=0.05, binary_search_steps=2)
    pred = model(x_adv).argmax(1)
    ok = pred != y
    assert ok.float().mean() > 0.9
    l2 = attacks.perturbation_norms(x, x_adv)["l2"]
    # unsuccessful samples stay clean; successful ones are no farther than a big PGD-L2
    assert torch.all(l2[~ok] == 0)
    big = attacks.pgd(model, x, y, eps=6.0, steps=40, norm="l2", random_start=False)
    assert l2[ok].median() < attacks.perturbation_norms(x, big)["l2"].median()
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_cw_targeted(toy):
    model, x, y = toy
    target = (y + 2) % 3
    x_adv = attacks.cw_l2(model, x, target, c=10.0, steps=200, lr=0.05, targeted=True)
    assert attacks.success_rate(model, x_adv, target, targeted=True) > 0.9


def _normalized_toy(seed: int = 0):
    """The toy problem with a Normalize first layer (the paper's attack works in its units)."""
    from mcutils.models import Normalize

    mlp, x, y = _toy(seed)
    model = nn.Sequential(Normalize([0.3], [0.35]), mlp).eval()
    # fold the normalisation into the first linear layer so the model computes the same
    # function of x as the toy MLP: Linear((x - m) / s) == Linear'(x)
    lin = mlp[1]
    with torch.no_grad():
        lin.bias += (lin.weight * 0.3).sum(1)
        lin.weight *= 0.35
    return model, x, y


@pytest.fixture(scope="module")
def ntoy():
    return _normalized_toy()


def _paper_reference(model, src, target, steps, lr, mse_weight, hf_weight, stop, warmup,
                     mean=0.3, std=0.35):
    """One image at a time with torch.optim.Adam, written from the paper's description:
    Adam on the normalised input, CE + lambda * mean((x - carrier)^2) + w * HF(x - carrier),
    break after the update at step i once i > warmup and the pre-update CE < stop."""
    outs, taken = [], []
    for k in range(len(src)):
        carrier = (src[k:k + 1] - mean) / std
        z = carrier.clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=lr)
        t = target[k:k + 1]
        n = 0
        for i in range(steps):
            opt.zero_grad()
            ce = F.cross_entropy(model(z * std + mean), t)
            d = z - carrier
            hf = ((d[..., :, 1:] - d[..., :, :-1]).abs().sum()
                  + (d[..., 1:, :] - d[..., :-1, :]).abs().sum())
            (ce + mse_weight * d.pow(2).mean() + hf_weight * hf).backward()
            opt.step()
            n += 1
            if stop is not None and i > warmup and ce.item() < float(stop[k]):
                break
        outs.append(z.detach() * std + mean)
        taken.append(n)
    return torch.cat(outs), torch.tensor(taken)


def test_optimization_attack_equals_the_paper_loop_per_image(ntoy):
    model, x, y = ntoy
    for p in model.parameters():
        p.requires_grad_(False)
    target = (y + 1) % 3
    src, tg = x[::8], target[::8]
    # per-sample stopping losses spread so that samples stop at different steps
    stop = torch.linspace(0.05, 1.5, len(src))
    ref, ref_steps = _paper_reference(model, src, tg, 120, 0.01, 0.1, 1e-3, stop, 5)
    for p in model.parameters():
        p.requires_grad_(True)
        p.grad = None
    adv, steps = attacks.optimization_attack(model, src, tg, steps=120, lr=0.01, mse_weight=0.1,
                                             hf_weight=1e-3, stop_loss=stop, warmup=5,
                                             return_steps=True)
    assert torch.equal(steps, ref_steps)
    assert len(set(steps.tolist())) > 3  # the rule really stopped samples at different steps
    # float32 rounding differs between a batch and a single image; Adam divides by
    # sqrt(v), so near-zero gradients amplify it on a few pixels, never systematically
    diff = (adv - ref).abs()
    assert diff.max() < 1e-3 and diff.mean() < 1e-5
    # chunked: same result
    adv2 = attacks.optimization_attack(model, src, tg, steps=120, lr=0.01, mse_weight=0.1,
                                       hf_weight=1e-3, stop_loss=stop, warmup=5, batch_size=4)
    assert (adv - adv2).abs().max() < 1e-3
    # the caller's model: parameters keep requires_grad and get no gradient
    assert all(p.requires_grad and p.grad is None for p in model.parameters())


def test_optimization_attack_stop_rule_and_warmup(ntoy):
    model, x, y = ntoy
    target = (y + 1) % 3
    # stop at +inf: every sample stops right after the first step past the warm-up
    _, steps = attacks.optimization_attack(model, x, target, steps=100, warmup=32,
                                           stop_loss=float("inf"), return_steps=True)
    assert (steps == 34).all()
    _, steps = attacks.optimization_attack(model, x, target, steps=100, warmup=0,
                                           stop_loss=float("inf"), return_steps=True)
    assert (steps == 2).all()
    # no stop: all steps; a stop at -inf never fires
    _, steps = attacks.optimization_attack(model, x, target, steps=40, stop_loss=-1.0,
                                           return_steps=True)
    assert (steps == 40).all()
    # a matched-loss stop leaves the target loss just under the threshold, while running
    # all steps over-shoots it (over-confident) with a larger perturbation
    stop = 0.3
    matched = attacks.optimization_attack(model, x, target, steps=400, lr=0.01, stop_loss=stop,
                                          warmup=2)
    full = attacks.optimization_attack(model, x, target, steps=400, lr=0.01)
    ce_m, ce_f = _loss(model, matched, target), _loss(model, full, target)
    assert (ce_m < stop + 0.2).float().mean() > 0.9
    assert ce_f.median() < 0.5 * ce_m.median()
    def l2(a):
        return attacks.perturbation_norms(x, a)["l2"].median()
    assert l2(matched) < l2(full)


def test_optimization_attack_units_convert_exactly(ntoy):
    model, x, y = ntoy
    target = (y + 1) % 3
    conv = attacks.pixel_units(0.35, lr=0.01, mse_weight=0.1, hf_weight=1e-3)
    assert conv["lr"] == pytest.approx(0.0035) and conv["mse_weight"] == pytest.approx(0.1 / 0.35**2)
    assert conv["hf_weight"] == pytest.approx(1e-3 / 0.35)
    norm = attacks.optimization_attack(model, x, target, steps=60, lr=0.01, mse_weight=0.1,
                                       hf_weight=1e-3)
    pix = attacks.optimization_attack(model, x, target, steps=60, units="pixel", **conv)
    # Adam's eps is the only part that does not convert: agreement to ~1e-3 pixel
    assert (norm - pix).abs().max() < 5e-3 and (norm - pix).abs().mean() < 1e-4
    # the same settings *read as* pixel units are a different (much larger-step) attack
    other = attacks.optimization_attack(model, x, target, steps=60, lr=0.01, mse_weight=0.1,
                                        hf_weight=1e-3, units="pixel")
    assert (norm - other).abs().max() > 1e-2
    with pytest.raises(ParameterError, match="Normalize"):
        attacks.optimization_attack(_toy()[0], x, target, steps=2)


def test_optimization_attack_penalties_box_and_mode(ntoy):
    model, x, y = ntoy
    target = (y + 1) % 3
    loose = attacks.optimization_attack(model, x, target, steps=100, lr=0.05, mse_weight=0.0)
    tight = attacks.optimization_attack(model, x, target, steps=100, lr=0.05, mse_weight=50.0)
    def d(a):
        return attacks.perturbation_norms(x, a)["l2"].mean()
    assert d(tight) < 0.5 * d(loose)
    def hf(a):
        return attacks.high_frequency_penalty(a - x).mean()
    smooth = attacks.optimization_attack(model, x, target, steps=100, lr=0.05, mse_weight=0.0,
                                         hf_weight=1.0)
    assert hf(smooth) < 0.5 * hf(loose)
    # like the paper's, the attack leaves the pixel box unless clip=True
    assert loose.min() < 0 or loose.max() > 1
    boxed = attacks.optimization_attack(model, x, target, steps=100, lr=0.05, mse_weight=0.0,
                                        clip=True)
    assert boxed.min() >= -1e-6 and boxed.max() <= 1 + 1e-6
    # a differentiable penalty on the pixel input pulls the result towards its minimum
    seen = []

    def towards_grey(xa, rows):
        seen.append(rows.clone())
        return (xa - 0.5).flatten(1).pow(2).sum(1)

    grey = attacks.optimization_attack(model, x, target, steps=50, lr=0.05, penalty=towards_grey,
                                       penalty_weight=5.0)
    assert (grey - 0.5).abs().mean() < (loose - 0.5).abs().mean()
    assert torch.equal(seen[0], torch.arange(len(x)))
    # the caller's mode is restored
    model.train()
    attacks.optimization_attack(model, x[:3], target[:3], steps=2)
    assert model.training
    model.eval()
    with pytest.raises(ParameterError, match="penalty"):
        attacks.optimization_attack(model, x, target, steps=2, penalty_weight=1.0)
    h = attacks.high_frequency_penalty(torch.tensor([[[[0.0, 1.0], [0.0, 0.0]]]]))
    assert h.tolist() == [2.0]


def test_run_attack_dispatch(toy):
    model, x, y = toy
    for name in ("fgsm", "pgd_linf", "pgd_l2"):
        kw = {"eps": 0.1} if name != "pgd_l2" else {"eps": 1.0, "steps": 3}
        out = attacks.run_attack(name, model, x[:5], y[:5], **kw)
        assert out.shape == x[:5].shape
    with pytest.raises(ParameterError):
        attacks.run_attack("deepfool", model, x, y)


def test_bad_inputs_fail_clearly(toy):
    model, x, y = toy
    with pytest.raises(ParameterError, match="norm"):
        attacks.pgd(model, x, y, eps=0.1, norm="l1")
    with pytest.raises(ParameterError, match="eps"):
        attacks.pgd(model, x, y, eps=-1)
    with pytest.raises(ParameterError, match="pixel space"):
        attacks.fgsm(model, x * 3, y, eps=0.1)
    with pytest.raises(ParameterError, match="labels|label"):
        attacks.fgsm(model, x, y[:3], eps=0.1)
    with pytest.raises(ParameterError, match="method"):
        attacks.adversarial_transform(method="trades")


@pytest.mark.parametrize("method", ["pgd", "fgsm"])
def test_adversarial_transform_in_training(method):
    from mcutils.training import train

    model, x, y = _toy(seed=1)
    model.zero_grad(set_to_none=True)
    tf = attacks.adversarial_transform(method=method, eps=0.1, steps=3, step_size=0.05)
    x_adv, y_adv = tf(model, x, y)
    assert torch.equal(y_adv, y) and x_adv.shape == x.shape
    assert (attacks.perturbation_norms(x, x_adv)["linf"] <= 0.1 + 1e-6).all()
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())
    before = _loss(model, attacks.pgd(model, x, y, 0.1, 10), y).mean()
    loader = [(x[i:i + 30], y[i:i + 30]) for i in range(0, len(x), 30)]
    train(model, loader, epochs=15, lr=0.01, transform=tf, progress=False)
    after = _loss(model, attacks.pgd(model, x, y, 0.1, 10), y).mean()
    assert after < before  # adversarial training lowers the robust loss


def test_pgd_agrees_with_foolbox(toy):
    fb = pytest.importorskip("foolbox")
    model, x, y = toy
    fmodel = fb.PyTorchModel(model, bounds=(0, 1))
    attack = fb.attacks.LinfPGD(steps=20, rel_stepsize=2.5 / 20, random_start=False)
    _, fb_adv, _ = attack(fmodel, x, y, epsilons=0.05)
    ours = attacks.pgd(model, x, y, eps=0.05, steps=20, random_start=False)
    # both reach a comparable robust loss (same algorithm, different implementations)
    lo, lf = _loss(model, ours, y).mean(), _loss(model, fb_adv, y).mean()
    assert abs(float(lo - lf)) < 0.1 * float(lf) + 0.05


# ----------------------------------------------------------------------------- adaptive attack
@pytest.mark.parametrize("kind", adaptive.DetectorPenalty.KINDS)
def test_detector_penalty_recomputes_the_detectors_own_features(toy_classifier, kind):
    model, x, y = toy_classifier
    pred = model(x).argmax(1).detach()
    gen = torch.Generator().manual_seed(0)
    idx = detection.reference_indices(y, pred, 3, gen)
    refs = x[idx]
    bf = detection.barrier_features(model, x, pred, refs, num_points=7)
    lf = detection.logit_features(model, x)
    det_kind = kind
    feats = detection.feature_matrix(det_kind, bf, lf)
    labels = (torch.arange(len(x)) % 2).numpy()  # any labels: we test the arithmetic
    clf = detection.fit_detector(feats, labels)
    pen = adaptive.DetectorPenalty(model, clf, kind, x, y, pred, num_refs=3, num_points=7)
    with torch.no_grad():
        mine = pen.features(x, pred, refs)
    np.testing.assert_allclose(mine.numpy(), feats, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(pen.decision(mine).numpy(), clf.decision_function(feats),
                               rtol=1e-3, atol=1e-3)
    # differentiable in x (except the local-maxima count), and EOT draws give values
    xx = x[:4].clone().requires_grad_(True)
    val = pen(xx, torch.arange(4))
    (g,) = torch.autograd.grad(val.sum(), xx)
    assert val.shape == (4,)
    if kind != "barrier":  # the gap of these toy paths is 0 (flat): no gradient there
        assert g.abs().sum() > 0


def test_detector_penalty_checks_its_inputs(toy_classifier):
    model, x, y = toy_classifier
    with pytest.raises(ParameterError, match="kind"):
        adaptive.DetectorPenalty(model, None, "lid", x, y, y, 2, 5)
    with pytest.raises(ParameterError, match="pipeline"):
        adaptive.DetectorPenalty(model, object(), "logits", x, y, y, 2, 5)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_bounded_optimization_attack_stays_in_its_pixel_ball(ntoy, norm):
    model, x, y = ntoy
    target = (y + 1) % 3
    free = attacks.optimization_attack(model, x, target, steps=60, lr=0.05)
    size = attacks.perturbation_norms(x, free)[norm]
    radius = float(size.median()) / 2
    bounded = attacks.optimization_attack(model, x, target, steps=60, lr=0.05,
                                          max_norm=radius, norm=norm)
    got = attacks.perturbation_norms(x, bounded)[norm]
    assert (got <= radius * (1 + 1e-4) + 1e-6).all()
    assert (size > radius).any() and torch.isclose(got.max(), torch.tensor(radius), rtol=1e-3)
    with pytest.raises(ParameterError):
        attacks.optimization_attack(model, x, target, steps=2, max_norm=-1.0)
    with pytest.raises(ParameterError):
        attacks.optimization_attack(model, x, target, steps=2, max_norm=1.0, norm="l3")


def _conv_toy(seed: int = 0):
    """A briefly trained small CNN on 1x8x8 inputs (conv nets get the planned layout)."""
    from mcutils.models import SmallCNN

    g = torch.Generator().manual_seed(seed)
    x = torch.rand(48, 1, 8, 8, generator=g)
    y = (x[:, 0, :4].mean((1, 2)) > x[:, 0, 4:].mean((1, 2))).long()
    torch.manual_seed(seed)
    model = SmallCNN(num_classes=2, input_size=8, width=4, hidden=16)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(60):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    return model, x, y


def _run(name, model, x, y, **kw):
    if name == "pgd":
        return attacks.pgd(model, x, y, eps=0.1, steps=5,
                           generator=torch.Generator().manual_seed(0), **kw)
    if name == "fgsm":
        return attacks.fgsm(model, x, y, eps=0.1, **kw)
    return attacks.cw_l2(model, x, y, steps=20, lr=0.05, **kw)


@pytest.mark.parametrize("name", ["pgd", "fgsm", "cw"])
def test_attacks_run_conv_nets_in_the_planned_layout_and_change_rounding_only(monkeypatch, name):
    """The norm-bounded attacks run the weights in the plan's memory format (here the
    fixed plan: channels_last for conv nets), give the model back exactly as it was, return
    standard strides, and agree with the same attack in the standard layout up to rounding."""
    monkeypatch.setenv("MCUTILS_CALIBRATE", "0")
    model, x, y = _conv_toy()
    model.train()
    strides = [p.stride() for p in model.parameters()]
    seen = []
    hook = model.features[3].register_forward_pre_hook(
        lambda m, inp: seen.append(m.weight.is_contiguous(memory_format=torch.channels_last)
                                   and not m.weight.is_contiguous()))
    planned = _run(name, model, x, y)
    hook.remove()
    assert seen and all(seen)  # the second convolution ran with NHWC weights
    assert [p.stride() for p in model.parameters()] == strides
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())  # no gradient left on the model
    assert planned.stride() == x.stride() and planned.shape == x.shape
    seen.clear()
    hook = model.features[3].register_forward_pre_hook(
        lambda m, inp: seen.append(m.weight.is_contiguous()))
    standard = _run(name, model, x, y, channels_last=False)  # the caller's choice wins
    hook.remove()
    assert seen and all(seen)
    differ = ((planned - standard).abs() > 1e-4).float().mean()
    assert differ < 0.01  # a sign flipped at rounding level, at most, for a few pixels
    assert not torch.equal(planned, x)


def test_attacks_keep_the_standard_layout_for_a_model_with_layout_hazards(monkeypatch):
    from mcutils.models import build_model

    monkeypatch.setenv("MCUTILS_CALIBRATE", "0")
    net = build_model("preresnet20", in_channels=1, input_size=8, width=4).eval()
    plans = []
    real = attacks._prepared
    monkeypatch.setattr(attacks, "_prepared", lambda m, plan: plans.append(plan) or real(m, plan))
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    attacks.pgd(net, x, y, eps=0.05, steps=2)
    attacks.fgsm(net, x, y, eps=0.05)
    assert len(plans) == 2 and not any(p.channels_last for p in plans)
    plans.clear()
    model, xs, ys = _conv_toy()
    attacks.pgd(model, xs, ys, eps=0.05, steps=2)
    assert plans[0].channels_last  # the same fixed plan chooses NHWC for a safe conv net


def test_optimization_attack_chunks_by_the_plan_and_keeps_each_trajectory(monkeypatch):
    """Without a penalty, ``batch_size=None`` runs the samples in chunks of the speed plan's
    inference batch (one thread is faster on cache-sized batches); each sample's trajectory
    is its own, so the result equals the one-batch run. With a penalty (whose random draws
    are per call) the default stays one batch, so the draws do not depend on the plan."""
    monkeypatch.setenv("MCUTILS_CALIBRATE", "0")
    model, x, _ = _conv_toy()
    x = torch.cat([x] * 6)[:260]                 # more samples than the fixed plan's 128
    target = torch.randint(0, 2, (len(x),), generator=torch.Generator().manual_seed(1))
    sizes = []
    real = model.forward
    monkeypatch.setattr(model, "forward", lambda t: sizes.append(len(t)) or real(t))
    planned, steps = attacks.optimization_attack(model, x, target, steps=40, warmup=2,
                                                 stop_loss=0.3, return_steps=True,
                                                 units="pixel")
    assert max(sizes) == 128                     # chunks of the plan's batch, not 260
    sizes.clear()
    whole, whole_steps = attacks.optimization_attack(model, x, target, steps=40, warmup=2,
                                                     stop_loss=0.3, return_steps=True,
                                                     batch_size=len(x), units="pixel")
    assert max(sizes) == len(x)
    assert torch.equal(steps, whole_steps)
    assert torch.allclose(planned, whole, atol=1e-5)
    assert len(set(steps.tolist())) > 1          # the stop rule acted, per sample
    calls = []

    def penalty(xp, rows):
        calls.append(len(rows))
        return xp.flatten(1).mean(1)

    attacks.optimization_attack(model, x, target, steps=2, penalty=penalty, penalty_weight=0.1,
                                units="pixel")
    assert calls[0] == len(x)                    # one batch: the draws do not depend on the plan
