"""Scale-invariance discovery on real stock mmdet / mmseg models."""
import re

import pytest
import torch
from torch import nn

from mmwrs.core import WeightRescaler, discover_scale_invariant
from mmwrs.testing import STOCK_DETECTORS, STOCK_SEGMENTORS, build_stock_model, demo_batch, loss_of

# Train-mode norms everywhere and nothing frozen: then every conv that feeds a
# BN is invariant on its own, which is what the orthogonality check needs.
TRAIN_MODE = {
    'mmdet': {'model.backbone.norm_eval': False, 'model.backbone.frozen_stages': -1},
    # The Cityscapes preprocessor pads every input to 512x1024; keep them tiny.
    'mmseg': {'model.backbone.norm_eval': False, 'model.data_preprocessor.size': (64, 64)},
}

# Weights the stock architectures make invariant, by name, and ones they don't.
MUST_FIND = {
    'faster_rcnn': [r'^backbone\.conv1\.weight$', r'^backbone\.layer\d\.\d+\.conv[123]\.weight$',
                    r'^backbone\.layer\d\.0\.downsample\.0\.weight$'],
    'retinanet': [r'^backbone\.layer\d\.\d+\.conv[123]\.weight$'],
    'mask_rcnn': [r'^backbone\.layer\d\.\d+\.conv[123]\.weight$'],
    'fcn': [r'^backbone\.stem\.[036]\.weight$', r'^backbone\.layer\d\.\d+\.conv[123]\.weight$',
            r'^decode_head\.convs\.\d\.conv\.weight$', r'^decode_head\.conv_cat\.conv\.weight$',
            r'^auxiliary_head\.convs\.0\.conv\.weight$'],
    'pspnet': [r'^decode_head\.psp_modules\.\d\.1\.conv\.weight$',
               r'^decode_head\.bottleneck\.conv\.weight$'],
    'deeplabv3plus': [
        r'^decode_head\.aspp_modules\.\d\.(depthwise|pointwise)_conv\.conv\.weight$',
        r'^decode_head\.sep_bottleneck\.\d\.(depthwise|pointwise)_conv\.conv\.weight$',
        r'^decode_head\.c1_bottleneck\.conv\.weight$',
        r'^decode_head\.image_pool\.1\.conv\.weight$'],
}
MUST_EXCLUDE = {
    'faster_rcnn': [r'^neck\.(lateral|fpn)_convs\.\d\.conv\.weight$',
                    r'^roi_head\.bbox_head\.(fc_cls|fc_reg|shared_fcs\.\d)\.weight$',
                    r'^rpn_head\.rpn_(cls|reg)\.weight$'],
    'retinanet': [r'^neck\.(lateral|fpn)_convs\.\d\.conv\.weight$',
                  r'^bbox_head\.(retina_cls|retina_reg)\.weight$'],
    'mask_rcnn': [r'^neck\.fpn_convs\.\d\.conv\.weight$',
                  r'^roi_head\.mask_head\.conv_logits\.weight$'],
    'fcn': [r'^decode_head\.conv_seg\.weight$'],
    'pspnet': [r'^decode_head\.conv_seg\.weight$'],
    'deeplabv3plus': [r'^decode_head\.conv_seg\.weight$'],
}

ALL_MODELS = {**STOCK_DETECTORS, **STOCK_SEGMENTORS}


def _build(key):
    config = ALL_MODELS[key]
    # float64 makes the checks sharp; mmcv's CPU NMS (detectors) is float32 only.
    double = config.startswith('mmseg')
    model = build_stock_model(config, TRAIN_MODE[config.split('::')[0]])
    model.train()
    if double:
        model.double()
        model.data_preprocessor.double()
    return model


def _batch(model):
    return demo_batch(model, num_images=2, size=64)


def _without_norm_eps(model):
    """Invariance is exact only where batch variance >> eps; with default init
    (and ASPP's large dilations on tiny maps) some channels have variances near
    1e-5 or below, so eps is taken out to test the structural property."""
    for module in model.modules():
        if hasattr(module, 'eps') and isinstance(module, (nn.modules.batchnorm._NormBase,
                                                          nn.GroupNorm, nn.LayerNorm)):
            module.eps = 1e-10


@pytest.fixture(scope='module', params=sorted(ALL_MODELS))
def traced(request):
    torch.manual_seed(0)
    model = _build(request.param)
    _without_norm_eps(model)
    batch = _batch(model)
    if next(model.parameters()).dtype == torch.float64:
        batch['inputs'] = [x.double() for x in batch['inputs']]
    result = discover_scale_invariant(model, lambda: loss_of(model, batch))
    return request.param, model, batch, result


def test_finds_every_known_invariant_weight(traced):
    key, model, _, result = traced
    found = set(result.by_name())
    names = [n for n, p in model.named_parameters() if n.endswith('weight')]
    for pattern in MUST_FIND[key]:
        matching = [n for n in names if re.search(pattern, n)]
        assert matching, f'{key}: pattern {pattern} matches no parameter'
        missing = [n for n in matching if n not in found]
        assert not missing, f'{key}: invariant weights not found: {missing[:5]}'
    excluded = {e.name: e.reason for e in result.excluded}
    for pattern in MUST_EXCLUDE[key]:
        matching = [n for n in names if re.search(pattern, n)]
        assert matching, f'{key}: pattern {pattern} matches no parameter'
        wrongly = [n for n in matching if n in found]
        assert not wrongly, f'{key}: not invariant but found: {wrongly}'
        assert all(excluded.get(n) for n in matching)


def test_gradient_is_orthogonal_to_every_found_weight(traced):
    key, model, batch, result = traced
    assert len(result.invariant) > 20
    model.zero_grad()
    torch.manual_seed(1)
    loss_of(model, batch).backward()
    worst = 0.0
    for weight in result.invariant:
        w = weight.param.detach().flatten().double()
        g = weight.param.grad.flatten().double()
        if g.norm() == 0:
            continue
        cos = (w @ g).abs() / (w.norm() * g.norm())
        worst = max(worst, float(cos))
    assert worst < 2e-5, f'{key}: max |cos(grad, w)| = {worst:.2e}'


def test_rescale_leaves_train_mode_outputs_unchanged(traced):
    key, model, batch, result = traced
    rescaler = WeightRescaler(result.invariant, target_norm=1.0)
    with torch.no_grad():
        for weight in result.invariant:  # far from unit norm, per filter
            weight.param.mul_(torch.rand(weight.param.shape[0], *[1] * (weight.param.dim() - 1),
                                         dtype=weight.param.dtype) * 3 + 0.2)
    buffers = {n: b.clone() for n, b in model.named_buffers()}

    def outputs():
        with torch.no_grad():
            for name, buf in model.named_buffers():
                buf.copy_(buffers[name])
        torch.manual_seed(2)
        if key in STOCK_DETECTORS:
            # The continuous path: proposal NMS and sampling in the loss turn
            # float32 rounding into different proposals.
            data = model.data_preprocessor(batch, True)
            return torch.cat([f.flatten() for f in model.extract_feat(data['inputs'])]).detach()
        return loss_of(model, batch).detach()

    before = outputs()
    rescaler.rescale_()
    after = outputs()
    # float64: exact up to what eps leaves in ASPP's near-constant channels;
    # float32: rounding grows through 50 BN layers (~2e-6 at stage 1, ~3e-4 at 4).
    tolerance = 1e-5 if before.dtype == torch.float64 else 1e-3
    error = float((before - after).abs().max() / before.abs().max())
    assert error < tolerance, f'{key}: relative change {error:.2e}'
    for name, norms in rescaler.unit_norms().items():
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5), name


def test_frozen_stages_and_norm_eval_of_stock_detector():
    model = build_stock_model(STOCK_DETECTORS['faster_rcnn'])  # frozen_stages=1, norm_eval
    model.train()
    batch = demo_batch(model, num_images=2, size=64)
    result = discover_scale_invariant(model, lambda: loss_of(model, batch))
    found, excluded = result.by_name(), {e.name: e.reason for e in result.excluded}
    assert 'frozen' in excluded['backbone.conv1.weight']
    assert 'frozen' in excluded['backbone.layer1.0.conv1.weight']
    conv = found['backbone.layer2.0.conv1.weight']
    assert [u.running_stats for u in conv.uses] == [True]  # eval-mode BN: compensated
    assert all(w.param is not None and w.param.requires_grad for w in result.invariant)


class _Shared(nn.Module):
    """One conv called twice: once into a BN, once into a residual sum."""

    def __init__(self, residual):
        super().__init__()
        self.residual = residual
        self.conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn1, self.bn2 = nn.BatchNorm2d(4), nn.BatchNorm2d(4)

    def forward(self, x):
        a = self.bn1(self.conv(x))
        b = self.conv(a)
        return (b + a) if self.residual else self.bn2(b)


@pytest.mark.parametrize('residual', [False, True])
def test_weight_shared_between_calls(residual):
    model = _Shared(residual)
    x = torch.randn(2, 4, 6, 6)
    result = discover_scale_invariant(model, lambda: model(x).sum())
    if residual:
        assert not result.invariant
        assert 'call 2 of 2' in result.excluded[0].reason
    else:
        (weight,) = result.invariant
        assert [u.norm_name for u in weight.uses] == ['bn1', 'bn2']


def test_group_and_layer_norm_coarsen_granularity():
    model = nn.Sequential(nn.Conv2d(3, 8, 1, bias=False), nn.GroupNorm(4, 8),
                          nn.Conv2d(8, 8, 1, bias=False), nn.GroupNorm(8, 8),
                          nn.Flatten(), nn.Linear(8 * 9, 6, bias=False), nn.LayerNorm(6))
    x = torch.randn(2, 3, 3, 3)
    result = discover_scale_invariant(model, lambda: model(x).sum())
    by_name = result.by_name()
    assert (by_name['0.weight'].granularity, by_name['0.weight'].num_units) == ('group', 4)
    assert 'per group of 2 filters' in by_name['0.weight'].note
    assert by_name['2.weight'].granularity == 'filter'  # GN with a group per channel
    assert by_name['5.weight'].granularity == 'layer'
    layer = discover_scale_invariant(model, lambda: model(x).sum(), granularity='layer')
    assert {w.granularity for w in layer.invariant} == {'layer'}


def test_bad_options_are_named():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError,
                       match=r"granularity must be one of \('filter', 'layer'\), got 'channel'"):
        discover_scale_invariant(model, lambda: model(x).sum(), granularity='channel')
    with pytest.raises(ValueError, match=r"include: '\(' is not a valid regular expression"):
        discover_scale_invariant(model, lambda: model(x).sum(), include=['('])


def test_weight_standardized_conv_is_excluded_with_reason():
    from mmcv.cnn.bricks import ConvWS2d
    model = nn.Sequential(ConvWS2d(3, 4, 3, bias=False), nn.GroupNorm(2, 4))
    x = torch.randn(2, 3, 5, 5)
    result = discover_scale_invariant(model, lambda: model(x).sum())
    assert not result.invariant
    assert 'weight standardization' in result.excluded[0].reason
