"""WRS in optimizer-wrapper form: the constructor, the wrappers, --amp mapping, resume."""
import pytest
import torch
from mmengine.runner import Runner

from mmwrs.engine import WRSOptimWrapper, WRSOptimWrapperConstructor
from mmwrs.launch import amp_wrapper_type, register_codebase

from conftest import DET_DEMO, DETERMINISTIC_SEG, SEG_DEMO


def wrs_optim_wrapper(weight_decay=1e-4, **wrs):
    return dict(type='OptimWrapper', constructor='WRSOptimWrapperConstructor',
                optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=weight_decay),
                paramwise_cfg=dict(norm_decay_mult=0.0, custom_keys={
                    'backbone.layer4': dict(lr_mult=0.5)}),
                wrs=dict(**wrs))


class RecordNorms:
    """Records the controlled unit norms after every iteration."""

    def __init__(self):
        self.history = []

    def __call__(self, runner):
        rescaler = runner.optim_wrapper.wrs.rescaler
        self.history.append({name: norms.clone()
                             for name, norms in rescaler.unit_norms().items()})


def train(cfg, after_iter=None):
    register_codebase(cfg)
    runner = Runner.from_cfg(cfg)
    if after_iter is not None:
        from mmengine.hooks import Hook

        class Probe(Hook):
            def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
                after_iter(runner)
        runner.register_hook(Probe(), priority='LOWEST')
    runner.train()
    return runner


@pytest.mark.parametrize('config', [DET_DEMO, SEG_DEMO], ids=['faster-rcnn', 'fcn'])
def test_constructor_groups_decay_and_rescales_every_update(make_cfg, config):
    record = RecordNorms()
    cfg = make_cfg(config, iters=3, optim_wrapper=wrs_optim_wrapper())
    runner = train(cfg, record)
    wrapper = runner.optim_wrapper
    assert type(wrapper) is WRSOptimWrapper
    controlled = {id(p) for p in wrapper.wrs.params}
    assert controlled, 'nothing was controlled'
    names = {id(p): n for n, p in runner.model.named_parameters()}
    norm_params = {id(p) for m in runner.model.modules()
                   if isinstance(m, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.GroupNorm))
                   for p in m.parameters(recurse=False)}
    for group in wrapper.optimizer.param_groups:
        ids = [id(p) for p in group['params']]
        mine = [i in controlled for i in ids]
        assert all(mine) or not any(mine), 'a group mixes controlled and other params'
        custom = names[ids[0]].startswith('backbone.layer4')
        # The inner constructor's paramwise_cfg survives the split: custom_keys'
        # lr_mult everywhere, norm_decay_mult=0 where no custom key overrides it.
        assert group['lr'] == pytest.approx(0.01 * (0.5 if custom else 1.0))
        is_norm = ids[0] in norm_params
        expected = 0.0 if all(mine) or (is_norm and not custom) else 1e-4
        assert group['weight_decay'] == pytest.approx(expected), names[ids[0]]
    assert len(record.history) == 3
    for norms in record.history:
        for name, value in norms.items():
            torch.testing.assert_close(value, torch.ones_like(value), atol=1e-5, rtol=0,
                                       msg=name)


def test_constructor_finds_what_the_hook_finds_on_real_data(make_cfg):
    """Synthetic-batch discovery (constructor) == first-real-batch discovery (hook)."""
    cfg = make_cfg(DET_DEMO, iters=1, optim_wrapper=wrs_optim_wrapper())
    by_constructor = train(cfg).optim_wrapper.wrs.rescaler
    hook_cfg = make_cfg(DET_DEMO, iters=1, custom_hooks=[dict(type='WRSHook')])
    runner = train(hook_cfg)
    by_hook = next(h for h in runner.hooks if type(h).__name__ == 'WRSHook').rescaler
    assert [e.name for e in by_constructor.entries] == [e.name for e in by_hook.entries]
    assert [e.num_units for e in by_constructor.entries] == \
        [e.num_units for e in by_hook.entries]
    assert [len(e.running_stat_norms) for e in by_constructor.entries] == \
        [len(e.running_stat_norms) for e in by_hook.entries]


def test_wrapper_resume_equals_uninterrupted_run(make_cfg, tmp_path):
    # 'init' targets live only in the wrapper's state: a resume that lost them
    # would re-capture drifted norms and diverge.
    wrapper = wrs_optim_wrapper(target_norm='init', interval=2)
    full = train(make_cfg(SEG_DEMO, iters=4, work_dir=tmp_path / 'full',
                          optim_wrapper=wrapper, **DETERMINISTIC_SEG))
    half = make_cfg(SEG_DEMO, iters=2, work_dir=tmp_path / 'resumed', optim_wrapper=wrapper,
                    **DETERMINISTIC_SEG)
    train(half)
    checkpoint = torch.load(tmp_path / 'resumed' / 'iter_2.pth', map_location='cpu',
                            weights_only=False)
    assert checkpoint['optimizer']['wrs']['num_updates'] == 2
    again = make_cfg(SEG_DEMO, iters=4, work_dir=tmp_path / 'resumed', optim_wrapper=wrapper,
                     **DETERMINISTIC_SEG)
    again.resume = True
    resumed = train(again)
    assert resumed.optim_wrapper.wrs.num_updates == 4
    expected = full.model.state_dict()
    for name, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, expected[name], msg=name)


def test_amp_keeps_wrs():
    assert amp_wrapper_type('WRSOptimWrapper') == 'AmpWRSOptimWrapper'
    assert amp_wrapper_type('AmpWRSOptimWrapper') == 'AmpWRSOptimWrapper'
    # mmdet's train.py --amp writes 'AmpOptimWrapper'; mmseg's asserts
    # 'OptimWrapper' first: the constructor turns both into the WRS forms.
    for written, built in [('AmpOptimWrapper', 'AmpWRSOptimWrapper'),
                           ('OptimWrapper', 'WRSOptimWrapper')]:
        constructor = WRSOptimWrapperConstructor(
            dict(type=written, optimizer=dict(type='SGD', lr=0.1)))
        assert constructor.inner.optim_wrapper_cfg['type'] == built


@pytest.mark.parametrize('optim_wrapper, message', [
    (dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1),
          wrs=dict(granularity='channel')), "granularity must be one of"),
    (dict(type='ApexOptimWrapper', optimizer=dict(type='SGD', lr=0.1)),
     "optim_wrapper.type='ApexOptimWrapper' has no WRS form"),
    (dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1),
          inner_constructor='WRSOptimWrapperConstructor'), 'cannot be'),
])
def test_constructor_bad_options(optim_wrapper, message):
    with pytest.raises(ValueError, match=message):
        WRSOptimWrapperConstructor(optim_wrapper)


def test_wrapper_without_constructor_and_both_forms_are_errors(make_cfg):
    plain = make_cfg(SEG_DEMO, iters=1, optim_wrapper=dict(
        type='WRSOptimWrapper', optimizer=dict(type='SGD', lr=0.01)))
    with pytest.raises(RuntimeError, match="constructor='WRSOptimWrapperConstructor'"):
        train(plain)
    both = make_cfg(SEG_DEMO, iters=1, optim_wrapper=wrs_optim_wrapper(),
                    custom_hooks=[dict(type='WRSHook')])
    with pytest.raises(RuntimeError, match='not both'):
        train(both)


def test_constructor_refuses_models_it_cannot_feed():
    from mmengine.model import BaseModel

    class Plain(BaseModel):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.bn = torch.nn.BatchNorm2d(4)

        def forward(self, inputs, data_samples=None, mode='tensor'):
            return self.bn(self.conv(inputs))

    constructor = WRSOptimWrapperConstructor(
        dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1)))
    with pytest.raises(TypeError, match="neither an mmdet detector nor an mmseg segmentor"):
        constructor(Plain())


def test_eps_l2_constructor_trains_exactly_as_the_hook(make_cfg, tmp_path):
    """The optimizer-wrapper form of the epsilon-shifted L2 == its overlay (hook) form."""
    eps_l2 = dict(lam=1e-3, eps=1e-3)  # strong enough to matter in 3 steps
    by_hook = make_cfg(SEG_DEMO, ['eps_l2'], iters=3, work_dir=tmp_path / 'hook',
                       **DETERMINISTIC_SEG)
    by_hook.custom_hooks[0].update(eps_l2)
    hook_runner = train(by_hook)
    by_constructor = make_cfg(SEG_DEMO, iters=3, work_dir=tmp_path / 'constructor',
                              optim_wrapper=dict(constructor='EpsShiftedL2OptimWrapperConstructor',
                                                 eps_l2=eps_l2), **DETERMINISTIC_SEG)
    runner = train(by_constructor)
    hook = next(h for h in hook_runner.hooks if type(h).__name__ == 'EpsShiftedL2Hook')
    # Two models: the hook's conv weights, by name, in the constructor's run.
    convs = {name for name, p in hook_runner.model.named_parameters()
             if any(p is q for q in hook.params)}
    assert len(convs) > 20
    names = {id(p): n for n, p in runner.model.named_parameters()}
    for group in runner.optim_wrapper.optimizer.param_groups:
        in_convs = {names[id(p)] in convs for p in group['params']}
        assert len(in_convs) == 1
        assert group['weight_decay'] == (0.0 if in_convs.pop() else 5e-4)
    expected = hook_runner.model.state_dict()
    for name, value in runner.model.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=0, msg=name)


def test_eps_l2_constructor_bad_options():
    from mmwrs.engine import EpsShiftedL2OptimWrapperConstructor
    base = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1))
    with pytest.raises(ValueError, match=r"unknown eps_l2 option\(s\) \['lambda'\]"):
        EpsShiftedL2OptimWrapperConstructor(dict(base, eps_l2={'lambda': 1e-4}))
    with pytest.raises(ValueError, match='lam'):
        EpsShiftedL2OptimWrapperConstructor(dict(base, eps_l2=dict(lam=-1.0)))
