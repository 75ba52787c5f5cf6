"""The rescaler: exact, function-preserving, and loud about bad weights."""
import math

import pytest
import torch
from torch import nn

from mmwrs.core import WeightRescaler
from mmwrs.testing import conv_norm_pair, randomize_norm_stats_


def _resnet18(norm_eval):
    from mmdet.models.backbones import ResNet
    torch.manual_seed(0)
    model = ResNet(depth=18, norm_eval=norm_eval, frozen_stages=-1)
    model.init_weights()
    randomize_norm_stats_(model)  # no zero gammas, no mean-0/var-1 statistics
    model.train()
    return model


def _rescaler(model, x, **kwargs):
    return WeightRescaler.from_model(model, lambda: model(x), **kwargs)


@pytest.mark.parametrize('granularity', ['filter', 'layer'])
def test_eval_mode_bn_is_compensated_exactly(granularity):
    model = _resnet18(norm_eval=True).double()  # BNs in eval mode while training
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    rescaler = _rescaler(model, x, granularity=granularity)
    assert len(rescaler) == 20  # every conv of ResNet-18, downsample included
    assert all(e.running_stat_norms for e in rescaler.entries)
    before = [f.clone() for f in model(x)]
    with torch.no_grad():  # move norms far from the target first
        for entry in rescaler.entries:
            entry.param.mul_(3.7)
            for bn in entry.running_stat_norms:
                bn.running_mean.mul_(3.7)
                bn.running_var.add_(bn.eps).mul_(3.7 ** 2).sub_(bn.eps)
    rescaler.rescale_()
    after = model(x)
    for b, a in zip(before, after):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-10)
    for norms in rescaler.unit_norms().values():
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-12)


def test_plain_variance_scaling_would_be_visible():
    """The eps term matters: s**2 * running_var alone is off by ~eps/var."""
    bn = nn.BatchNorm2d(4, eps=1e-3).eval()
    bn.running_var.fill_(0.01)
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    bn.double()
    s = 0.25
    exact = bn.running_var.clone().add(bn.eps).mul(s * s).sub(bn.eps)
    naive = bn.running_var.clone().mul(s * s)
    outs = []
    for var in (exact, naive):
        bn.running_var.copy_(var)
        outs.append(bn(s * x))
    bn.running_var.fill_(0.01)
    reference = bn(x)
    assert torch.allclose(outs[0], reference, atol=1e-12)
    assert (outs[1] - reference).abs().max() > 1e-4


def test_train_mode_bn_running_stats_follow_the_rescale():
    model = _resnet18(norm_eval=False).double()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    rescaler = _rescaler(model, x)
    model.eval()
    before = [f.clone() for f in model(x)]
    rescaler.rescale_()
    after = model(x)  # eval mode uses the (compensated) running statistics
    for b, a in zip(before, after):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-9)


def test_init_target_policy_and_state_dict():
    model = _resnet18(norm_eval=False)
    x = torch.randn(2, 3, 32, 32)
    rescaler = _rescaler(model, x, target_norm='init', granularity='layer')
    with pytest.raises(RuntimeError, match='capture_targets_'):
        rescaler.rescale_()
    rescaler.capture_targets_()
    initial = rescaler.unit_norms()
    with torch.no_grad():
        for p in rescaler.params:
            p.mul_(1.5)
    rescaler.rescale_()
    for name, norms in rescaler.unit_norms().items():
        assert torch.allclose(norms, initial[name], rtol=1e-5)
    state = rescaler.state_dict()
    fresh = _rescaler(model, x, target_norm='init', granularity='layer')
    fresh.load_state_dict(state)
    assert all(torch.equal(fresh.targets()[n], rescaler.targets()[n]) for n in initial)
    other = WeightRescaler.from_model(nn.Sequential(nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2)),
                                      lambda: None)
    with pytest.raises(KeyError, match='another model'):
        other.load_state_dict(state)


def test_zero_filter_is_left_alone_with_a_warning():
    model = nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), nn.BatchNorm2d(4))
    x = torch.randn(2, 3, 4, 4)
    rescaler = _rescaler(model, x)
    with torch.no_grad():
        model[0].weight[1].zero_()
    with pytest.warns(RuntimeWarning, match=r'1 of 4 filter unit\(s\) of 0.weight have zero norm'):
        rescaler.rescale_()
    norms = rescaler.unit_norms()['0.weight']
    assert torch.isfinite(model[0].weight).all()
    assert norms[1] == 0 and torch.allclose(norms[[0, 2, 3]], torch.ones(3))


def test_non_finite_weight_is_an_error_naming_it():
    model = nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), nn.BatchNorm2d(4))
    x = torch.randn(2, 3, 4, 4)
    rescaler = _rescaler(model, x)
    with torch.no_grad():
        model[0].weight[2, 0, 0, 0] = math.nan
    with pytest.raises(FloatingPointError, match=r'0\.weight holds non-finite values'):
        rescaler.rescale_()


@pytest.mark.parametrize('target, error', [
    (0, 'positive finite number, got 0'), (-1.0, 'got -1.0'),
    (math.nan, 'got nan'), (math.inf, 'got inf'), ('unit', "one of \\('init',\\), got 'unit'"),
    (True, 'got True')])
def test_bad_target_norm_is_named(target, error):
    with pytest.raises((ValueError, TypeError), match=r'target_norm must be .*' + error):
        WeightRescaler([], target_norm=target)


def test_fixed_norm_entry_for_non_invariant_weight():
    model = nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), nn.BatchNorm2d(4),
                          nn.Flatten(), nn.Linear(16, 5))
    x = torch.randn(2, 3, 2, 2)
    rescaler = _rescaler(model, x)
    rescaler.add('3.weight', model[3].weight, 2.5)
    with pytest.raises(ValueError, match='already controlled'):
        rescaler.add('3.weight', model[3].weight, 2.5)
    rescaler.rescale_()
    assert torch.isclose(model[3].weight.norm(), torch.tensor(2.5))


def test_deferred_checks_rescale_bit_identically():
    """Between checks the branch-free form gives the same bits as the checked one."""
    x = torch.randn(2, 3, 6, 6)
    models = [conv_norm_pair(), conv_norm_pair()]
    rescalers = [_rescaler(models[0], x, check_interval=1),
                 _rescaler(models[1], x, check_interval=4)]
    assert rescalers[0].entries[0].running_stat_norms  # eval BN: compensated
    for step in range(6):
        for model, rescaler in zip(models, rescalers):
            with torch.no_grad():
                torch.manual_seed(step)
                for p in rescaler.params:
                    p.add_(0.05 * torch.randn_like(p))
            rescaler.rescale_()
    for a, b in zip(models[0].state_dict().values(), models[1].state_dict().values()):
        assert torch.equal(a, b)


def test_deferred_check_reports_at_the_check_as_an_immediate_one_would():
    x = torch.randn(2, 3, 6, 6)
    model = conv_norm_pair()
    rescaler = _rescaler(model, x, check_interval=3)
    with torch.no_grad():
        model[0].weight[1].zero_()
        model[2].weight.mul_(10.0)
        model[1].running_var.fill_(1e-7)  # s**2 * (var + eps) - eps < 0 below
        model[0].weight.mul_(1e3)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # nothing is reported before the check
        rescaler.rescale_()
        rescaler.rescale_()
    assert torch.isfinite(model[1].running_var).all() and (model[1].running_var >= 0).all()
    with pytest.warns(RuntimeWarning) as caught:
        rescaler.rescale_()  # the third: the check
    messages = ' '.join(str(w.message) for w in caught)
    assert '1 of 4 filter unit(s) of 0.weight have zero norm' in messages
    assert 'rescaling 0.weight would need a negative running_var in BatchNorm2d' in messages
    with torch.no_grad():
        model[2].weight[0, 0] = math.nan
    rescaler.rescale_()  # deferred: weights already hold NaN, nothing new is lost
    with pytest.raises(FloatingPointError, match=r'2\.weight holds non-finite values \(1 of 2'):
        rescaler.check_()
    rescaler.check_()  # reported once; nothing pending


@pytest.mark.parametrize('value', [0, -2, 1.5, True, 'auto'])
def test_bad_check_interval_is_named(value):
    with pytest.raises(ValueError, match=r'check_interval must be a positive integer or None'):
        WeightRescaler([], check_interval=value)


def test_set_targets_writes_in_place():
    """A target schedule updates the targets without reallocating what a
    captured CUDA graph reads (the flat target cache keeps its storage)."""
    x = torch.randn(2, 3, 6, 6)
    model = conv_norm_pair()
    rescaler = _rescaler(model, x, check_interval=3)
    rescaler.rescale_()
    cache = rescaler._targets_cache
    rescaler.set_targets_(2.0)
    rescaler.set_targets_({'2.weight': torch.full((1,), 0.5)})
    assert rescaler._targets_cache is cache
    rescaler.rescale_()
    norms = rescaler.unit_norms()
    assert torch.allclose(norms['0.weight'], torch.full((4,), 2.0))
    assert torch.allclose(norms['2.weight'], torch.full_like(norms['2.weight'], 0.5))
    with pytest.raises(ValueError, match='has 3 values'):
        rescaler.set_targets_({'0.weight': torch.ones(3)})


def test_cuda_graph_can_be_switched_off():
    rescaler = WeightRescaler([], use_cuda_graph=False)
    assert not rescaler.use_cuda_graph and rescaler.graphed.graph is None
