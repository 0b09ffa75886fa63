import pytest
import torch

from _repaircases import _loader, _model, _preresnet
from mcutils import curves, pruning, repair
from mcutils.core.checks import ParameterError


def test_prune_filters_zeroes_and_keeps_zero_through_fine_tuning():
    loader = _loader()
    m = _model()
    assert pruning.prunable_convs(m) == ["1.features.0", "1.features.3"]
    pruned = pruning.prune_filters(m, loader, fraction=0.5)
    conv = pruned[1].features[3]
    dead = (conv.weight.flatten(1).abs().sum(1) == 0)
    assert int(dead.sum()) == conv.out_channels // 2
    tuned = repair.fine_tune(pruned, loader, steps=20, lr=0.05, weight_decay=1e-3)
    conv2 = tuned[1].features[3]
    assert (conv2.weight[dead] == 0).all() and (conv2.bias[dead] == 0).all()
    assert (conv2.weight[~dead] != conv.weight[~dead]).any()
    with pytest.raises(ParameterError):
        pruning.prune_filters(m, loader, fraction=1.0)


def test_fine_pruning_of_a_residual_net_prunes_channels_the_shortcut_cannot_restore():
    """preresnet20 at a tiny size: only the inner conv of a block may be pruned (conv2 and
    the shortcut feed the residual addition), and a pruned channel is silent after its
    BatchNorm, whatever the statistics, before and after fine-tuning."""
    m = _preresnet()
    convs = pruning.prunable_convs(m)
    assert convs and all(c.endswith(".conv1") for c in convs)
    assert "1.blocks.8.conv2" not in convs and "1.conv" not in convs
    loader = _loader()
    with pytest.raises(ParameterError, match="residual"):
        pruning.prune_filters(m, loader, layer="1.blocks.8.conv2")
    pruned = pruning.prune_filters(m, loader, fraction=0.5)
    block = pruned[1].blocks[8]
    dead = ~block.conv1._prune_mask
    assert int(dead.sum()) == block.conv1.out_channels // 2

    def inner(net):  # what conv2 of the last block receives
        seen = {}
        h = net[1].blocks[8].conv2.register_forward_hook(lambda _m, i, _o: seen.update(x=i[0]))
        net(torch.rand(16, 1, 8, 8))
        h.remove()
        return seen["x"]

    tuned = repair.fine_tune(pruned, loader, steps=10, lr=0.05, weight_decay=1e-3)
    for net in (pruned, curves.recompute_bn(tuned, loader)):
        x = inner(net)
        assert (x[:, dead] == 0).all() and (x[:, ~dead] != 0).any()


def test_masked_grad_hooks_zero_the_gradient_of_pruned_channels_only():
    m = _model()
    pruned = pruning.prune_filters(m, _loader(), fraction=0.5)
    assert pruning.masked_grad_hooks(m) == []  # nothing pruned, nothing hooked
    conv = pruned[1].features[3]
    dead = ~conv._prune_mask
    handles = pruning.masked_grad_hooks(pruned)
    assert len(handles) == 2  # the conv's weight and bias (no BatchNorm in small_cnn)
    x, y = next(iter(_loader()))
    torch.nn.functional.cross_entropy(pruned(x), y).backward()
    assert (conv.weight.grad[dead] == 0).all() and (conv.bias.grad[dead] == 0).all()
    assert (conv.weight.grad[~dead] != 0).any()
    for h in handles:
        h.remove()
    pruned.zero_grad()
    conv.weight.data[dead] = 1.0  # without hooks the silenced channels get gradients again
    torch.nn.functional.cross_entropy(pruned(x), y).backward()
    assert (conv.weight.grad[dead] != 0).any()
