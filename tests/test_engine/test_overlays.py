"""Every regularizer overlay composes with the stock-based demo configs and trains."""
import pytest
import torch
from mmengine.runner import Runner
from torch.nn.modules.batchnorm import _BatchNorm

from mmwrs.launch import register_codebase
from mmwrs.optim import SGDP, AdamP

from conftest import DET_DEMO, SEG_DEMO

OVERLAYS = ['wd', 'wrs', 'ws', 'sgdp', 'adamp', 'fixnorm', 'eps_l2', 'wrs_adamw']


def _train(make_cfg, config, overlays, iters=2, **extra):
    cfg = make_cfg(config, overlays, iters=iters, **extra)
    register_codebase(cfg)
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


def _hook(runner, name):
    return next(h for h in runner.hooks if type(h).__name__ == name)


@pytest.mark.parametrize('config', [DET_DEMO, SEG_DEMO], ids=['faster_rcnn', 'fcn'])
@pytest.mark.parametrize('overlay', OVERLAYS)
def test_overlay_composes_and_trains(make_cfg, config, overlay):
    runner = _train(make_cfg, config, [overlay])
    assert runner.iter == 2
    losses = runner.message_hub.get_scalar('train/loss').data[0]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    optimizer = runner.optim_wrapper.optimizer
    if overlay == 'sgdp':
        assert isinstance(optimizer, SGDP)
        assert all(g['momentum'] == 0.9 for g in optimizer.param_groups)
    if overlay == 'adamp':
        assert isinstance(optimizer, AdamP)
        assert optimizer.param_groups[0]['initial_lr'] == pytest.approx(1e-4)
    if overlay == 'wrs_adamw':
        assert isinstance(optimizer, torch.optim.AdamW)
        assert len(_hook(runner, 'WRSHook').rescaler) > 10


def test_ws_overlay_builds_convws_and_groupnorm(make_cfg):
    from mmcv.cnn.bricks import ConvWS2d
    runner = _train(make_cfg, SEG_DEMO, ['ws'])
    model = runner.model
    assert isinstance(model.backbone.layer1[0].conv1, ConvWS2d)
    assert isinstance(model.backbone.layer1[0].bn1, torch.nn.GroupNorm)
    assert isinstance(model.decode_head.convs[0].conv, ConvWS2d)
    assert not any(isinstance(m, _BatchNorm) for m in model.modules())
    # Parameters were reused, so every one is still in the optimizer.
    in_optimizer = {id(p) for g in runner.optim_wrapper.optimizer.param_groups
                    for p in g['params']}
    assert all(id(p) in in_optimizer for p in model.parameters() if p.requires_grad)


def test_wrs_on_weight_standardized_layers_is_refused_with_reason(make_cfg):
    # Two overlays would both define custom_hooks (mmengine refuses that among
    # _base_ files), so a config combines hooks in its own body, as here.
    cfg = make_cfg(SEG_DEMO, ['ws'], iters=1)
    cfg.custom_hooks.append(dict(type='WRSHook'))
    register_codebase(cfg)
    runner = Runner.from_cfg(cfg)
    with pytest.raises(RuntimeError, match='weight standardization already makes this '
                       'layer scale-invariant'):
        runner.train()


def test_fixnorm_holds_all_norms_and_no_decay(make_cfg, dump_weights_hook):
    cfg = make_cfg(SEG_DEMO, ['fixnorm'], iters=3)
    cfg.custom_hooks[0]['classifier_norm'] = 2.0
    cfg.custom_hooks.append(dict(type='DumpWeightsHook'))
    register_codebase(cfg)
    runner = Runner.from_cfg(cfg)
    runner.train()
    hook = _hook(runner, 'FixNormHook')
    targets = hook.rescaler.targets()
    assert 'decode_head.conv_seg.weight' in targets
    assert float(targets['decode_head.conv_seg.weight']) == 2.0
    history = _hook(runner, 'DumpWeightsHook').norm_history
    assert len(history) == 3
    for norms in history:
        for name, values in norms.items():
            assert torch.allclose(values, targets[name], rtol=1e-5), name
    for group in runner.optim_wrapper.optimizer.param_groups:
        assert group['weight_decay'] == 0.0


def test_eps_l2_adds_reference_gradient_and_drops_decay(make_cfg):
    from mmwrs.core.penalties import eps_shifted_l2_grad
    from mmwrs.engine.hooks.eps_l2_hook import penalty_step_pre_hook
    runner = _train(make_cfg, SEG_DEMO, ['eps_l2'], iters=1)
    hook = _hook(runner, 'EpsShiftedL2Hook')
    assert len(hook.params) > 20
    controlled = {id(p) for p in hook.params}
    for group in runner.optim_wrapper.optimizer.param_groups:
        ids = {id(p) for p in group['params']}
        assert group['weight_decay'] == (0.0 if ids <= controlled else 5e-4)
    # The step pre-hook adds exactly the penalty gradient.
    optimizer = runner.optim_wrapper.optimizer
    weight = hook.params[0]
    weight.grad = torch.zeros_like(weight)
    expected = eps_shifted_l2_grad(weight.detach(), hook.lam, hook.eps)
    penalty_step_pre_hook(hook.params, hook.lam, hook.eps)(optimizer, (), {})
    assert torch.allclose(weight.grad, expected)
