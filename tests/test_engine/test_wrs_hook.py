"""WRSHook through the real mmengine Runner on the demo detector and segmentor."""
import pytest
import torch
from mmengine.runner import Runner

from mmwrs.launch import register_codebase

from conftest import DET_DEMO, DETERMINISTIC_SEG, SEG_DEMO
from dump_weights_hook import DumpWeightsHook

pytestmark = pytest.mark.usefixtures('dump_weights_hook')


def _runner(cfg):
    register_codebase(cfg)
    return Runner.from_cfg(cfg)


def _hook(runner, name='WRSHook'):
    return next(h for h in runner.hooks if type(h).__name__ == name)


def _dump_hook(runner):
    return next(h for h in runner.hooks if isinstance(h, DumpWeightsHook))


def _with_dump(cfg):
    cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [dict(type='DumpWeightsHook')]
    return cfg


@pytest.mark.parametrize('config', [SEG_DEMO, DET_DEMO])
def test_norms_on_target_after_every_update_and_decay_only_elsewhere(make_cfg, config):
    runner = _runner(_with_dump(make_cfg(config, ['wrs'], iters=3)))
    runner.train()
    hook = _hook(runner)
    rescaler = hook.rescaler
    assert len(rescaler) >= 20 and hook.num_updates == 3
    history = _dump_hook(runner).norm_history
    assert len(history) == 3
    for norms in history:
        for name, values in norms.items():
            assert torch.allclose(values, torch.ones_like(values), atol=1e-5), name
    controlled = {id(p) for p in rescaler.params}
    decay = runner.cfg.optim_wrapper.optimizer.weight_decay
    seen_other = False
    for group in runner.optim_wrapper.optimizer.param_groups:
        ids = {id(p) for p in group['params']}
        if ids <= controlled:
            assert group['weight_decay'] == 0.0
        else:
            assert not ids & controlled  # never mixed
            assert group['weight_decay'] == decay
            seen_other = True
    assert seen_other
    # FPN / head layers without a norm are excluded, with a reason.
    excluded = {e.name: e.reason for e in rescaler.discovery.excluded}
    if config == DET_DEMO:
        assert 'normalization' in excluded['neck.fpn_convs.0.conv.weight']


def test_startup_report_lists_controlled_and_excluded(make_cfg, capsys):
    runner = _runner(make_cfg(SEG_DEMO, ['wrs'], iters=1))
    runner.train()
    log = open(runner.logger.log_file).read()
    assert 'WRSHook: ' in log and 'held at their target norm' in log
    assert 'backbone.layer4.1.conv2.weight' in log and 'BatchNorm2d' in log
    assert 'decode_head.conv_seg.weight' in log  # excluded, with its reason
    assert 'left alone' in log


def test_gradient_accumulation_rescales_on_update_iterations_only(make_cfg):
    cfg = _with_dump(make_cfg(SEG_DEMO, ['wrs'], iters=4,
                              **{'optim_wrapper.accumulative_counts': 2}))
    runner = _runner(cfg)
    runner.train()
    hook = _hook(runner)
    assert hook.num_updates == 2  # 4 iterations, an update every 2
    history = _dump_hook(runner).norm_history
    for norms in history:  # micro-steps change nothing: still on target
        for values in norms.values():
            assert torch.allclose(values, torch.ones_like(values), atol=1e-5)


def test_resume_equals_uninterrupted_run(make_cfg, tmp_path):
    full = _runner(_with_dump(make_cfg(SEG_DEMO, ['wrs'], iters=4,
                                       work_dir=tmp_path / 'full', **DETERMINISTIC_SEG)))
    full.train()
    first = make_cfg(SEG_DEMO, ['wrs'], iters=4, work_dir=tmp_path / 'split', **DETERMINISTIC_SEG)
    first.train_cfg.max_iters = 2
    first.default_hooks.checkpoint.interval = 2
    _runner(first).train()
    second = _with_dump(make_cfg(SEG_DEMO, ['wrs'], iters=4, work_dir=tmp_path / 'split',
                                 **DETERMINISTIC_SEG))
    second.resume = True
    resumed = _runner(second)
    resumed.train()
    assert resumed.iter == 4 and _hook(resumed).num_updates == 4
    a = torch.load(tmp_path / 'full' / 'rank0.pth')
    b = torch.load(tmp_path / 'split' / 'rank0.pth')
    for name in a:
        assert torch.allclose(a[name].float(), b[name].float(), rtol=1e-5, atol=1e-6), name


def test_nothing_scale_invariant_is_a_clear_error(make_cfg):
    cfg = make_cfg(SEG_DEMO, ['wrs'], iters=1)
    cfg.custom_hooks[0]['include'] = [r'^no_such_layer']
    runner = _runner(cfg)
    with pytest.raises(RuntimeError, match='found no scale-invariant weight in EncoderDecoder'):
        runner.train()
    log = open(runner.logger.log_file).read()
    assert "include pattern '^no_such_layer' matches no parameter name" in log


def test_amp_skipped_step_leaves_weights_on_target(make_cfg):
    """torch's GradScaler never calls optimizer.step() on an inf gradient, and
    the rescale hangs on that step: a skipped step rescales nothing."""
    runner = _runner(make_cfg(SEG_DEMO, ['wrs'], iters=1))
    runner.train()
    hook = _hook(runner)
    optimizer = runner.optim_wrapper.optimizer
    handle = optimizer.register_step_post_hook(hook.controller.steps.after_step)
    try:
        scaler = torch.amp.GradScaler('cpu')
        scaler.scale(torch.ones(()))  # as a training step would, via the loss
        before = {k: v.clone() for k, v in runner.model.state_dict().items()}
        updates = hook.num_updates
        for p in hook.rescaler.params:
            p.grad = torch.full_like(p, float('inf'))
        scaler.step(optimizer)
        scaler.update()
        assert hook.num_updates == updates
        after = runner.model.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)
        assert scaler.get_scale() < 65536.0  # the scaler did see the inf
        for values in hook.rescaler.unit_norms().values():
            assert torch.allclose(values, torch.ones_like(values), atol=1e-5)
    finally:
        handle.remove()


def test_diverged_run_writes_no_checkpoint_and_names_the_last_healthy_one(make_cfg, tmp_path):
    """Deferred checks (check_interval=50) would let a NaN weight run on for 49
    rescales; the save at iteration 4 runs the check first and refuses."""
    from mmengine.hooks import Hook

    class PoisonHook(Hook):
        priority = 'LOWEST'

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            if batch_idx == 2:  # after iter_2.pth was written
                with torch.no_grad():
                    _hook(runner).rescaler.params[0].fill_(float('nan'))

    cfg = make_cfg(SEG_DEMO, ['wrs'], iters=4, work_dir=tmp_path)
    cfg.default_hooks.checkpoint.interval = 2
    for hook in cfg.custom_hooks:
        if hook['type'] == 'WRSHook':
            hook['check_interval'] = 50
    runner = _runner(cfg)
    runner.register_hook(PoisonHook())
    with pytest.raises(FloatingPointError, match=r'non-finite.*iter_2\.pth'):
        runner.train()
    assert (tmp_path / 'iter_2.pth').exists() and not (tmp_path / 'iter_4.pth').exists()


LINEAR_TARGETS = dict(type='linear', start=1.0, end=0.5, end_at=4)


def test_target_schedule_followed_and_resumed_mid_schedule_as_uninterrupted(make_cfg, tmp_path):
    def cfg(work_dir, iters):
        c = _with_dump(make_cfg(SEG_DEMO, ['wrs'], iters=4, work_dir=work_dir,
                                **DETERMINISTIC_SEG))
        c.custom_hooks[0]['target_norm'] = LINEAR_TARGETS
        c.train_cfg.max_iters = iters
        c.default_hooks.checkpoint.interval = 2
        return c

    full = _runner(cfg(tmp_path / 'full', 4))
    full.train()
    # After update k every controlled unit is at 1 - k / 8 (linear 1 -> 0.5 over 4).
    for update, norms in enumerate(_dump_hook(full).norm_history, start=1):
        for name, values in norms.items():
            expected = torch.full_like(values, 1.0 - update / 8)
            assert torch.allclose(values, expected, atol=1e-5), (update, name)
    _runner(cfg(tmp_path / 'split', 2)).train()
    second = cfg(tmp_path / 'split', 4)
    second.resume = True
    resumed = _runner(second)
    resumed.train()
    assert _hook(resumed).num_updates == 4
    assert [float(v.mean()) for v in _dump_hook(resumed).norm_history[-1].values()][0] == \
        pytest.approx(0.5, abs=1e-5)
    a = torch.load(tmp_path / 'full' / 'rank0.pth')
    b = torch.load(tmp_path / 'split' / 'rank0.pth')
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_target_schedule_by_epoch_counts_passes_over_the_dataloader(make_cfg):
    c = _with_dump(make_cfg(SEG_DEMO, ['wrs'], iters=2))
    c.custom_hooks[0]['target_norm'] = dict(LINEAR_TARGETS, by_epoch=True, end_at=1)
    runner = _runner(c)
    runner.train()
    per_epoch = len(runner.train_dataloader)
    assert _hook(runner).controller.schedule.updates_per_epoch == per_epoch
    last = next(iter(_dump_hook(runner).norm_history[-1].values()))
    assert torch.allclose(last, torch.full_like(last, 1.0 - 0.5 * min(2 / per_epoch, 1)),
                          atol=1e-5)


def test_constructor_refuses_a_by_epoch_schedule_and_says_what_works():
    from mmwrs.engine import WRSOptimWrapperConstructor
    with pytest.raises(ValueError, match=r"counts epochs .*type='WRSHook'"):
        WRSOptimWrapperConstructor(dict(
            type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1),
            wrs=dict(target_norm=dict(LINEAR_TARGETS, by_epoch=True))))
