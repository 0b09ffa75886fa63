"""Weight matching (mcutils.alignment): exact recovery of a planted permutation, an
unchanged function, BatchNorm entries that follow their units, refusals, and a lower
straight-path loss barrier between two independently trained tiny CNNs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mcutils import alignment
from mcutils.core.checks import ParameterError
from mcutils.models import Normalize, build_model


def _tiny_cnn(seed: int, bn: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    layers = [Normalize([0.5], [0.25]), nn.Conv2d(1, 6, 3, padding=1)]
    layers += [nn.BatchNorm2d(6)] if bn else []
    layers += [nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 8, 3, padding=1)]
    layers += [nn.BatchNorm2d(8)] if bn else []
    layers += [nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 2 * 2, 12), nn.ReLU(),
               nn.Linear(12, 10)]
    return nn.Sequential(*layers).eval()


@pytest.mark.parametrize("bn", [False, True])
def test_a_permuted_copy_is_matched_exactly(bn):
    a = _tiny_cnn(0, bn)
    if bn:  # non-trivial running statistics that must follow their units
        for m in a.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.data.uniform_(0.5, 1.5)
    planted = alignment.random_permutation(a, seed=3)
    b = alignment.permute(a, planted)
    x = torch.rand(5, 1, 8, 8)
    assert torch.allclose(a(x), b(x), atol=1e-5)  # the function is unchanged
    assert any(not torch.equal(p, torch.arange(len(p))) for p in planted.values())
    assert not torch.equal(a[1].weight, b[1].weight)
    perms = alignment.weight_matching(a, b)
    inverse = {g: torch.argsort(p) for g, p in planted.items()}
    for g in planted:
        assert torch.equal(perms[g], inverse[g]), g  # the permutation is recovered
    back = alignment.permute(b, perms)
    for k, v in a.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k
    assert torch.allclose(alignment.align(a, b)(x), a(x), atol=1e-5)


def test_registry_models_have_their_hidden_layers_as_groups():
    spec = alignment.permutation_spec(build_model("small_cnn", input_size=28))
    assert sorted(spec.groups.values()) == [32, 64, 128]
    flat = [a for a in spec.axes if a.expand > 1]
    assert len(flat) == 1 and flat[0].expand == 49  # the linear layer after the flatten
    assert sorted(alignment.permutation_spec(build_model("mlp", input_size=8)).groups.values()) \
        == [256, 256]
    vgg = alignment.permutation_spec(build_model("vgg16", in_channels=3, input_size=32))
    assert len(vgg.groups) == 15  # 13 convolutions and 2 hidden linear layers


def test_matching_a_registry_model_to_its_permutation_keeps_its_outputs():
    a = build_model("small_cnn", input_size=28).eval()
    b = alignment.permute(a, alignment.random_permutation(a, seed=1))
    x = torch.rand(4, 1, 28, 28)
    assert torch.allclose(alignment.align(a, b)(x), a(x), atol=1e-5)


def _randomise_norms(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm entries, so that running statistics must follow their units."""
    gen = torch.Generator().manual_seed(7)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) * 2 - 1)
            m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=gen) - 0.5)
    return model.eval()


@pytest.mark.parametrize("name,groups", [("preresnet20", {"stream": 3, "inner": 9}),
                                         ("resnet18_cifar", {"stream": 4, "inner": 8})])
def test_residual_nets_are_matched_exactly_with_one_permutation_per_stream(name, groups):
    torch.manual_seed(0)
    a = _randomise_norms(build_model(name, in_channels=3, input_size=32, width=4))
    spec = alignment.permutation_spec(a)
    assert sum("stream" in g for g in spec.groups) == groups["stream"]  # one per stage
    assert sum("conv1" in g for g in spec.groups) == groups["inner"]  # one per block
    # the stem, every block's last conv and the classifier share their stage's stream
    stream0 = {ax.name for ax in spec.axes_of("P_stream0")}
    assert {"1.fc.weight"} & stream0 == set()  # fc reads the last stage's stream
    assert "1.fc.weight" in {ax.name for ax in spec.axes_of(max(
        (g for g in spec.groups if "stream" in g), key=lambda g: int(g[8:])))}
    planted = alignment.random_permutation(a, seed=3)
    b = alignment.permute(a, planted)
    x = torch.rand(3, 3, 32, 32)
    assert torch.allclose(a(x), b(x), atol=1e-4)  # the function is unchanged
    assert any(not torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
    perms = alignment.weight_matching(a, b)
    for g, p in planted.items():
        assert torch.equal(perms[g], torch.argsort(p)), g  # the permutation is recovered
    back = alignment.permute(b, perms)
    for k, v in a.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k


def test_a_wrong_stream_permutation_changes_a_residual_function():
    """The control for the residual spec: permuting a block's output units without the
    stream they are added to breaks the function, so sharing the stream group matters."""
    torch.manual_seed(0)
    a = _randomise_norms(build_model("preresnet20", in_channels=3, input_size=32, width=4))
    spec = alignment.permutation_spec(a)
    perm = torch.tensor([1, 0, 2, 3])
    state = dict(a.state_dict())
    state["1.blocks.0.conv2.weight"] = state["1.blocks.0.conv2.weight"][perm]  # alone
    broken = build_model("preresnet20", in_channels=3, input_size=32, width=4).eval()
    broken.load_state_dict(state)
    x = torch.rand(3, 3, 32, 32)
    assert not torch.allclose(a(x), broken(x), atol=1e-3)
    assert "1.blocks.0.conv2.weight" in {ax.name for ax in spec.axes_of("P_stream0")}


def test_networks_with_unknown_skip_connections_and_bad_input_are_refused():
    class Skip(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
            self.head = nn.Linear(4, 10)

        def forward(self, x):
            return self.head((self.body(x) + x).mean((2, 3)))

    with pytest.raises(ParameterError, match="skip connections"):
        alignment.permutation_spec(Skip())
    a = _tiny_cnn(0)
    with pytest.raises(ParameterError, match="same architecture"):
        alignment.weight_matching(a, build_model("mlp", input_size=8))
    with pytest.raises(ParameterError, match="not a permutation"):
        alignment.permute(a, {g: torch.zeros(n, dtype=torch.long)
                              for g, n in alignment.permutation_spec(a).groups.items()})
    with pytest.raises(ParameterError, match="max_iter"):
        alignment.weight_matching(a, a, max_iter=0)


def _train_digits(seed: int, x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    net = _tiny_cnn(seed)
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(300):
        idx = torch.randint(len(x), (64,), generator=gen)
        loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def _barrier(a: nn.Module, b: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    from mcutils.curves import evaluate_curve, linear_path

    loader = [(x, y)]
    prof = evaluate_curve(linear_path(a, b), 11, loader)
    return float(prof["loss"].max() - prof["loss"].iloc[[0, -1]].max())


def test_matching_two_trained_tiny_cnns_lowers_the_straight_path_barrier():
    from mcutils.data import load_dataset

    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    a = _train_digits(0, train.x, train.y)
    b = _train_digits(1, train.x, train.y)
    before = _barrier(a, b, test.x, test.y)
    after = _barrier(a, alignment.align(a, b), test.x, test.y)
    assert before > 0.1  # independently trained: a barrier on the straight path
    assert after < 0.5 * before
    # a random re-ordering is no alignment: its barrier is not lower than matching's
    shuffled = alignment.permute(b, alignment.random_permutation(b, seed=5))
    assert _barrier(a, shuffled, test.x, test.y) > after
