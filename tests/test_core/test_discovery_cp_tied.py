"""Discovery under gradient checkpointing, and tied weights (issue 18)."""
import warnings

import pytest
import torch
import torch.utils.checkpoint as torch_checkpoint
from torch import nn
# Bound by name on purpose: discovery must see through this binding too.
from torch.utils.checkpoint import checkpoint

from mmwrs.core import WeightRescaler, discover_scale_invariant
from mmwrs.testing import STOCK_DETECTORS, STOCK_SEGMENTORS, build_stock_model, demo_batch, loss_of


def _controlled(result):
    """What discovery controls, with every norm each weight feeds."""
    return {w.name: (w.granularity, w.num_units, tuple(u.norm_name for u in w.uses),
                     tuple(u.running_stats for u in w.uses), w.bias is not None)
            for w in result.invariant}


def _stock(config, options, with_cp):
    torch.manual_seed(0)
    model = build_stock_model(config, {**options, 'model.backbone.with_cp': with_cp})
    model.train()
    batch = demo_batch(model, num_images=1, size=32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        result = discover_scale_invariant(model, lambda: loss_of(model, batch))
    _assert_nothing_unseen(caught)
    return result


def _assert_nothing_unseen(caught):
    unseen = [str(w.message) for w in caught if 'checkpointing' in str(w.message)]
    assert not unseen, unseen


@pytest.mark.parametrize('key, options', [
    ('faster_rcnn', {}),  # stock: frozen stem and stage 1, eval-mode BN
    ('fcn', {'model.backbone.norm_eval': False, 'model.data_preprocessor.size': (32, 32)}),
])
def test_with_cp_controls_the_same_set(key, options):
    config = {**STOCK_DETECTORS, **STOCK_SEGMENTORS}[key]
    plain = _controlled(_stock(config, options, False))
    assert len(plain) > 20
    assert _controlled(_stock(config, options, True)) == plain
    assert torch_checkpoint.checkpoint is checkpoint  # restored after the trace


class _Block(nn.Module):
    def __init__(self, channels=4):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x))) + x


class _Checkpointed(nn.Module):
    """A plain PyTorch model that checkpoints its own blocks."""

    def __init__(self, mode):
        super().__init__()
        self.mode = mode
        self.blocks = nn.Sequential(_Block(), _Block(), _Block())
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        if self.mode == 'reentrant':
            for block in self.blocks:
                x = torch_checkpoint.checkpoint(block, x, use_reentrant=True)
        elif self.mode == 'non_reentrant':
            for block in self.blocks:
                x = checkpoint(block, x, use_reentrant=False)
        elif self.mode == 'sequential':
            x = torch_checkpoint.checkpoint_sequential(self.blocks, 2, x, use_reentrant=True)
        else:
            x = self.blocks(x)
        return self.head(x)


@pytest.mark.parametrize('mode', ['reentrant', 'non_reentrant', 'sequential', 'mmengine'])
def test_plain_model_calling_checkpoint(mode):
    model = _Checkpointed(mode)
    if mode == 'mmengine':  # mmengine's activation checkpointing: checkpoint bound by name
        from mmengine.runner.activation_checkpointing import turn_on_activation_checkpointing
        turn_on_activation_checkpointing(model, [f'blocks.{i}' for i in range(3)])
    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        result = discover_scale_invariant(model, lambda: model(x).sum())
    _assert_nothing_unseen(caught)
    plain = _Checkpointed('none')
    assert _controlled(result) == _controlled(
        discover_scale_invariant(plain, lambda: plain(x).sum()))
    assert sorted(result.by_name()) == [f'blocks.{i}.conv.weight' for i in range(3)]


def test_checkpoint_restored_on_error():
    def forward():
        raise RuntimeError('boom')
    with pytest.raises(RuntimeError, match='boom'):
        discover_scale_invariant(nn.Conv2d(1, 1, 1), forward)
    assert torch_checkpoint.checkpoint is checkpoint


def test_checkpoint_not_seen_through_warns_and_names_it():
    model = _Checkpointed('none')
    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    # The autograd Function itself, bypassing checkpoint(): cannot be patched.
    function = torch_checkpoint.CheckpointFunction
    with pytest.warns(UserWarning, match='CheckpointFunctionBackward'):
        result = discover_scale_invariant(
            model, lambda: model.head(function.apply(model.blocks, True, x)).sum())
    assert not result.invariant
    reasons = {e.name: e.reason for e in result.excluded}
    assert 'ran without autograd' in reasons['blocks.0.conv.weight']


class _Tied(nn.Module):
    """One Parameter shared by two convs, each feeding its own BN."""

    def __init__(self, second_into_bn=True):
        super().__init__()
        self.conv_a = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.conv_b = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.conv_b.weight = self.conv_a.weight
        self.bn_a, self.bn_b = nn.BatchNorm2d(4), nn.BatchNorm2d(4)
        self.second_into_bn = second_into_bn

    def forward(self, x):
        b = self.conv_b(x)
        return self.bn_a(self.conv_a(x)) * (self.bn_b(b) if self.second_into_bn else b)


def test_tied_weight_is_one_entry_rescaled_once():
    torch.manual_seed(0)
    model = _Tied().double()
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        model.conv_a.weight.mul_(torch.rand(4, 1, 1, 1, dtype=torch.float64) * 5 + 0.1)
        for bn in (model.bn_a, model.bn_b):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
    model.eval()  # eval-mode BN: both running statistics must be compensated
    expected = model(x)
    rescaler = WeightRescaler.from_model(model, lambda: model(x).sum(), target_norm=2.7)
    (entry,) = rescaler.entries
    assert entry.name == 'conv_a.weight'
    assert {id(n) for n in entry.running_stat_norms} == {id(model.bn_a), id(model.bn_b)}
    for _ in range(4):
        rescaler.rescale_()
        norms = model.conv_a.weight.detach().flatten(1).norm(dim=1)
        assert torch.allclose(norms, torch.full_like(norms, 2.7)), norms
        torch.testing.assert_close(model(x), expected)


def test_tied_weight_train_mode_oracle():
    torch.manual_seed(0)
    model = _Tied().double().train()
    for bn in (model.bn_a, model.bn_b):
        bn.eps = 1e-12
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    (weight,) = discover_scale_invariant(model, lambda: model(x).sum()).invariant
    assert weight.num_units == 4 and len(weight.uses) == 2
    expected = model(x)
    with torch.no_grad():
        weight.param.mul_(torch.rand(4, 1, 1, 1, dtype=torch.float64) * 3 + 0.2)
    torch.testing.assert_close(model(x), expected)


def test_tied_weight_with_one_non_invariant_use_is_excluded_naming_both():
    model = _Tied(second_into_bn=False)
    x = torch.randn(2, 3, 5, 5)
    result = discover_scale_invariant(model, lambda: model(x).sum())
    assert not result.invariant
    (excluded,) = result.excluded
    assert excluded.name == 'conv_a.weight'
    assert 'conv_a, conv_b' in excluded.reason and 'in conv_b' in excluded.reason
