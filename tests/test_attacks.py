"""Tests of mcutils.attacks on tiny models: the loss rises, balls and box are respected,
targeted attacks reach their targets, adversarial training transforms work."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mcutils import attacks, inputspace
from mcutils.runtime import ParameterError


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


def test_optimization_attack_reaches_target_and_stops(toy):
    model, x, y = toy
    target = (y + 1) % 3
    x_adv = attacks.optimization_attack(model, x, target, steps=300, lr=0.02)
    assert attacks.success_rate(model, x_adv, target, targeted=True) > 0.95
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    # stopping rule: stop as soon as target CE < 0.5; the result is less confident
    # (and closer to the source) than running all steps
    x_stop = attacks.optimization_attack(model, x, target, steps=300, lr=0.02, stop_loss=0.5)
    ce_stop = _loss(model, x_stop, target)
    assert (ce_stop < 0.6).float().mean() > 0.9
    assert ce_stop.mean() > _loss(model, x_adv, target).mean()
    assert (attacks.perturbation_norms(x, x_stop)["l2"].mean()
            < attacks.perturbation_norms(x, x_adv)["l2"].mean())
    # a per-sample threshold of +inf freezes everything immediately
    x_none = attacks.optimization_attack(model, x, target, steps=10,
                                         stop_loss=torch.full((len(x),), float("inf")))
    assert torch.equal(x_none, x)


def test_optimization_attack_mse_weight_and_tv(toy):
    model, x, y = toy
    target = (y + 1) % 3
    loose = attacks.optimization_attack(model, x, target, steps=100, lr=0.02, mse_weight=0.0)
    tight = attacks.optimization_attack(model, x, target, steps=100, lr=0.02, mse_weight=50.0)
    def d(a):
        return attacks.perturbation_norms(x, a)["l2"].mean()
    assert d(tight) < d(loose)
    smooth = attacks.optimization_attack(model, x, target, steps=100, lr=0.02, tv_weight=5.0)
    assert inputspace.total_variation(smooth).mean() < inputspace.total_variation(loose).mean()


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


def test_barrier_attack_lowers_path_loss(toy):
    model, x, y = toy
    target = (y + 1) % 3
    # references: 2 real images of each target class
    refs = torch.stack([x[(y == int(t)).nonzero().flatten()[:2]] for t in target])
    t = torch.tensor([0.25, 0.5, 0.75])

    def path_loss(xa):
        pts = xa[:, None, None] + t.view(1, 1, -1, 1, 1, 1) * (refs[:, :, None] - xa[:, None, None])
        tg = target.view(-1, 1, 1).expand(-1, 2, 3).reshape(-1)
        return _loss(model, pts.reshape(-1, 1, 6, 6), tg).mean()

    # without the path term it is exactly the optimisation attack
    plain = attacks.optimization_attack(model, x, target, steps=20, lr=0.02)
    same = attacks.barrier_attack(model, x, target, refs, steps=20, lr=0.02, path_weight=0.0)
    assert torch.allclose(plain, same, atol=1e-6)
    # the path term alone (no target CE pressure beyond it) flattens the paths
    adaptive = attacks.barrier_attack(model, x, target, refs, steps=40, lr=0.02,
                                      path_weight=10.0, num_points=3)
    assert path_loss(adaptive) < 0.1 * path_loss(x)
    assert attacks.success_rate(model, adaptive, target, targeted=True) > 0.9
    assert adaptive.min() >= 0 and adaptive.max() <= 1
    with pytest.raises(ParameterError, match="references"):
        attacks.barrier_attack(model, x, target, refs[:, 0])
