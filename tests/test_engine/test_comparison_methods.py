"""Issue 4's comparison methods in real Runner trainings, checked from the outside.

Each test watches the real model and optimizer with its own hook (norms
computed here from the parameters, gradients captured around the real step)
instead of trusting the state the mmwrs hooks report about themselves.
"""
import re

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner
from torch.nn.modules.batchnorm import _BatchNorm

from mmwrs.core.penalties import eps_shifted_l2_grad
from mmwrs.launch import register_codebase

from conftest import DET_DEMO, SEG_DEMO

CLASSIFIERS = {DET_DEMO: ('rpn_head.rpn_cls.weight', 'roi_head.bbox_head.fc_cls.weight'),
               SEG_DEMO: ('decode_head.conv_seg.weight', 'auxiliary_head.conv_seg.weight')}


def _runner(make_cfg, config, overlays, iters, **hook_options):
    cfg = make_cfg(config, overlays, iters=iters)
    cfg.custom_hooks[0].update(hook_options)
    register_codebase(cfg)
    return Runner.from_cfg(cfg)


def _close(ours, expected, scale, rtol=1e-4):
    """max |ours - expected| <= rtol * max |expected| + float32 rounding of ``scale``."""
    error = (ours.double() - expected.double()).abs().max()
    bound = rtol * expected.double().abs().max() + 4e-7 * scale.double().abs().max()
    return bool(error <= bound)


def _hook(runner, name):
    return next(h for h in runner.hooks if type(h).__name__ == name)


class NormWatcher(Hook):
    """Records whole-tensor norms of named parameters at the start of training
    and after every iteration (i.e. after each optimizer update and rescale)."""

    def __init__(self, names):
        self.names, self.start, self.history = names, None, []

    def _norms(self, runner):
        params = dict(runner.model.named_parameters())
        return {n: float(params[n].detach().double().norm()) for n in self.names()}

    def before_train(self, runner):
        self.start = self._norms(runner)
        self.initial = {n: p.detach().clone() for n, p in runner.model.named_parameters()}

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.history.append(self._norms(runner))


@pytest.mark.parametrize('config', [DET_DEMO, SEG_DEMO], ids=['faster_rcnn', 'fcn'])
def test_fixnorm_holds_every_controlled_norm_and_the_classifier_norm(make_cfg, config):
    classifier_norm = 3.0
    runner = _runner(make_cfg, config, ['fixnorm'], iters=3, classifier_norm=classifier_norm)
    fixnorm = _hook(runner, 'FixNormHook')
    watcher = NormWatcher(lambda: sorted(fixnorm.rescaler.targets()))
    runner.register_hook(watcher, priority='LOWEST')
    runner.train()

    controlled = sorted(fixnorm.rescaler.targets())
    classifiers = CLASSIFIERS[config]
    assert set(classifiers) <= set(controlled)
    # Besides the classifiers: the normalization-preceded backbone weights.
    assert len(controlled) > 15
    assert 'backbone.layer1.0.conv1.weight' in controlled
    assert len(watcher.history) == 3
    params = dict(runner.model.named_parameters())
    for norms in watcher.history:
        for name in controlled:
            # Classifiers at the configured norm, the others at their norm when
            # training started ('init' target, whole-layer granularity).
            expected = classifier_norm if name in classifiers else watcher.start[name]
            assert norms[name] == pytest.approx(expected, rel=1e-5), name
    for name in controlled:  # the updates did move them: the check is not vacuous
        assert not torch.allclose(params[name].detach(), watcher.initial[name]), name
    groups = runner.optim_wrapper.optimizer.param_groups
    assert all(g['weight_decay'] == 0.0 for g in groups)
    in_groups = sum(p.numel() for g in groups for p in g['params'])
    assert in_groups == sum(p.numel() for p in runner.model.parameters() if p.requires_grad)


class GradWatcher(Hook):
    """Around the real optimizer step: the raw gradient and weight before it
    (a step pre-hook registered before the EpsShiftedL2Hook's) and the
    gradient the optimizer used (read after the step)."""

    priority = 'VERY_HIGH'

    def __init__(self):
        self.raw, self.before, self.used = {}, {}, {}

    def before_train(self, runner):
        names = {id(p): n for n, p in runner.model.named_parameters()}

        def pre(optimizer, args, kwargs):
            for group in optimizer.param_groups:
                for p in group['params']:
                    if p.grad is not None and names[id(p)] not in self.raw:
                        self.raw[names[id(p)]] = p.grad.detach().clone()
                        self.before[names[id(p)]] = p.detach().clone()

        def post(optimizer, args, kwargs):
            for group in optimizer.param_groups:
                for p in group['params']:
                    if p.grad is not None and names[id(p)] not in self.used:
                        self.used[names[id(p)]] = p.grad.detach().clone()

        runner.optim_wrapper.optimizer.register_step_pre_hook(pre)
        runner.optim_wrapper.optimizer.register_step_post_hook(post)


def test_eps_l2_gradient_goes_into_the_real_step_before_momentum(make_cfg):
    runner = _runner(make_cfg, SEG_DEMO, ['eps_l2'], iters=1)
    watcher = GradWatcher()
    runner.register_hook(watcher)
    runner.train()
    hook = _hook(runner, 'EpsShiftedL2Hook')
    names = {id(p): n for n, p in runner.model.named_parameters()}
    controlled = [names[id(p)] for p in hook.params]
    assert len(controlled) > 20
    params = dict(runner.model.named_parameters())
    lr = runner.optim_wrapper.optimizer.param_groups[0]['lr']
    for name in controlled:
        penalty = eps_shifted_l2_grad(watcher.before[name].double(), hook.lam, hook.eps)
        added = (watcher.used[name] - watcher.raw[name]).double()
        assert _close(added, penalty, watcher.raw[name], rtol=1e-3), name
        # First SGD step: the momentum buffer is the gradient itself and the
        # conv has no plain decay, so the weight moved by exactly lr * (g + penalty).
        step = (watcher.before[name] - params[name].detach()).double()
        assert _close(step, lr * watcher.used[name], watcher.before[name]), name
    # A parameter that is not a conv weight (a BN scale, 1 at init) keeps the
    # plain decay in its step.
    bias = 'decode_head.convs.0.bn.weight'
    assert bias not in controlled
    step = watcher.before[bias] - params[bias].detach()
    expected = lr * (watcher.raw[bias] + 5e-4 * watcher.before[bias])
    assert _close(step, expected, watcher.before[bias])
    assert not _close(step, lr * watcher.raw[bias], watcher.before[bias])  # decay visible


def _conv_of(bn_name):
    """The conv that feeds a BN in mmdet/mmseg ResNets, ConvModules and stems."""
    prefix, _, last = bn_name.rpartition('.')
    if re.fullmatch(r'bn\d*', last):
        return f'{prefix}.conv{last[2:]}'
    if last.isdigit():  # Sequential(conv, bn, ...) as in downsample and the deep stem
        return f'{prefix}.{int(last) - 1}'
    raise AssertionError(f'no conv naming rule for {bn_name}')


@pytest.mark.parametrize('config', [DET_DEMO, SEG_DEMO], ids=['faster_rcnn', 'fcn'])
def test_ws_overlay_turns_every_stock_conv_bn_pair_into_convws_gn(make_cfg, config):
    from mmcv.cnn.bricks import ConvWS2d
    runner = _runner(make_cfg, config, ['ws'], iters=2)
    stock = dict(runner.model.named_modules())  # before the hook runs
    bns = {n: m for n, m in stock.items() if isinstance(m, _BatchNorm)}
    pairs = {_conv_of(n): n for n in bns}
    assert len(pairs) > 15
    assert all(type(stock[c]) is torch.nn.Conv2d for c in pairs)
    weights = {c: stock[c].weight for c in pairs}
    runner.train()

    built = dict(runner.model.named_modules())
    for conv, bn in pairs.items():
        assert isinstance(built[conv], ConvWS2d), conv
        assert built[conv].weight is weights[conv]  # the optimizer's Parameter
        assert isinstance(built[bn], torch.nn.GroupNorm), bn
        assert built[bn].num_channels == bns[bn].num_features
    assert not any(isinstance(m, _BatchNorm) for m in runner.model.modules())
    losses = runner.message_hub.get_scalar('train/loss').data[0]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
