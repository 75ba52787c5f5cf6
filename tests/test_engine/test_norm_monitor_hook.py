"""NormMonitorHook through the real Runner on the demo segmentor.

A test-only hook records, independently of the monitor, each monitored weight
before and after every iteration, the lr of its param group for that
iteration, and its gradient when the optimizer steps; the numbers the monitor
wrote to ``vis_data/scalars.json`` and the text log are checked against them.
"""
import glob
import json
import math
import os.path as osp

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import Runner

from mmwrs.engine import NormMonitorHook
from mmwrs.launch import register_codebase

from conftest import SEG_DEMO

ITERS = 4
AGGREGATE_KEYS = ('mean/norm', 'min/norm', 'max/norm', 'mean/filter_norm', 'min/filter_norm',
                  'max/filter_norm', 'mean/eff_lr', 'min/eff_lr', 'max/eff_lr',
                  'mean/angle_deg', 'max/angle_deg', 'mean/grad_norm', 'max/grad_norm')
# Several param groups with different lrs (WRSHook splits them once more), and
# an lr that changes every iteration: the monitor must use the lr of the step.
OPTIONS = {
    'optim_wrapper.paramwise_cfg': dict(custom_keys={'backbone.layer4': dict(lr_mult=0.1)}),
    'param_scheduler': [dict(type='LinearLR', start_factor=0.25, by_epoch=False,
                             begin=0, end=ITERS)],
}


class RecordMonitoredHook(Hook):
    """Records the monitored weights, their group lr and gradient, per iteration."""

    priority = 'LOWEST'

    def __init__(self):
        self.before, self.after, self.lrs, self.grads = [], [], [], []

    def _monitor(self, runner):
        return next(h for h in runner.hooks if isinstance(h, NormMonitorHook))

    def _named(self, runner):
        monitor = self._monitor(runner)
        return dict(zip(monitor.names, monitor.params))

    def before_train(self, runner):
        def record_grads(optimizer, args, kwargs):
            self.grads[-1].update({n: p.grad.double().norm().item()
                                   for n, p in self._named(runner).items() if p.grad is not None})
        for optimizer in [runner.optim_wrapper.optimizer]:
            optimizer.register_step_pre_hook(record_grads)

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        named = self._named(runner)
        self.before.append({n: p.detach().double().clone() for n, p in named.items()})
        lrs = {}
        for group in runner.optim_wrapper.optimizer.param_groups:
            for p in group['params']:
                lrs[id(p)] = group['lr']
        self.lrs.append({n: lrs[id(p)] for n, p in named.items()})
        self.grads.append({})

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.after.append({n: p.detach().double().clone()
                           for n, p in self._named(runner).items()})


@pytest.fixture(autouse=True)
def test_hooks(dump_weights_hook):
    """The test-only hooks, registered for each test and removed after it."""
    HOOKS.register_module(module=RecordMonitoredHook)
    yield
    HOOKS._module_dict.pop('RecordMonitoredHook', None)


def _run(make_cfg, overlay, hooks, work_dir, **options):
    cfg = make_cfg(SEG_DEMO, [overlay], iters=ITERS, work_dir=work_dir, **{**OPTIONS, **options})
    cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + hooks
    # mmseg names its visualizer 'visualizer', and mmengine reuses an instance
    # of that name: without a name of its own this run would log into the last one's dir.
    cfg.visualizer.name = f'visualizer_{osp.basename(str(work_dir))}_{id(cfg)}'
    register_codebase(cfg)
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


def _scalar_lines(runner):
    path, = glob.glob(osp.join(runner.log_dir, 'vis_data', 'scalars.json'))
    with open(path) as f:
        return [json.loads(line) for line in f]


def _angle(a, b):
    """Kahan's formula on float64 unit vectors (acos of the cosine is too coarse)."""
    ua, ub = a / a.norm(), b / b.norm()
    return math.degrees(2 * math.atan2((ua - ub).norm(), (ua + ub).norm()))


def _check_against_record(runner, interval):
    monitor = next(h for h in runner.hooks if isinstance(h, NormMonitorHook))
    record = next(h for h in runner.hooks if isinstance(h, RecordMonitoredHook))
    lines = _scalar_lines(runner)
    per_layer = {line['step']: line for line in lines if f'norm/{monitor.names[0]}' in line}
    aggregates = {line['step']: line for line in lines if 'mean/norm' in line}
    logged = [i for i in range(ITERS) if (i + 1) % interval == 0]
    assert sorted(per_layer) == [i + 1 for i in logged]
    # Aggregates appear only at the iterations the monitor computed them at:
    # never a stale value on a LoggerHook line of another iteration.
    assert sorted(aggregates) == [i + 1 for i in logged]
    lrs_seen = set()
    for i in logged:
        layer, agg = per_layer[i + 1], aggregates[i + 1]
        norms, eff_lrs, angles, grads, filters = [], [], [], [], []
        for name in monitor.names:
            before, after = record.before[i][name], record.after[i][name]
            norm = after.norm().item()
            lr = record.lrs[i][name]
            lrs_seen.add(round(lr, 12))
            assert layer[f'norm/{name}'] == pytest.approx(norm, rel=1e-5), name
            assert layer[f'eff_lr/{name}'] == pytest.approx(lr / norm ** 2, rel=1e-5), name
            assert layer[f'angle_deg/{name}'] == pytest.approx(_angle(before, after),
                                                               rel=1e-4), name
            assert layer[f'grad_norm/{name}'] == pytest.approx(record.grads[i][name],
                                                               rel=1e-5), name
            norms.append(norm)
            eff_lrs.append(lr / norm ** 2)
            angles.append(_angle(before, after))
            grads.append(record.grads[i][name])
            filters += after.flatten(1).norm(dim=1).tolist()
        assert agg['mean/norm'] == pytest.approx(sum(norms) / len(norms), rel=1e-5)
        assert agg['min/norm'] == pytest.approx(min(norms), rel=1e-5)
        assert agg['max/norm'] == pytest.approx(max(norms), rel=1e-5)
        assert agg['mean/eff_lr'] == pytest.approx(sum(eff_lrs) / len(eff_lrs), rel=1e-5)
        assert agg['min/eff_lr'] == pytest.approx(min(eff_lrs), rel=1e-5)
        assert agg['max/eff_lr'] == pytest.approx(max(eff_lrs), rel=1e-5)
        assert agg['mean/angle_deg'] == pytest.approx(sum(angles) / len(angles), rel=1e-4)
        assert agg['max/angle_deg'] == pytest.approx(max(angles), rel=1e-4)
        assert agg['mean/grad_norm'] == pytest.approx(sum(grads) / len(grads), rel=1e-5)
        assert agg['max/grad_norm'] == pytest.approx(max(grads), rel=1e-5)
        assert agg['mean/filter_norm'] == pytest.approx(sum(filters) / len(filters), rel=1e-5)
        assert agg['min/filter_norm'] == pytest.approx(min(filters), rel=1e-5)
        assert agg['max/filter_norm'] == pytest.approx(max(filters), rel=1e-5)
        assert min(angles) > 0  # every logged iteration did update
    # Two lr_mult groups times a changing schedule: the lr really varied.
    assert len(lrs_seen) >= 2 * len(logged)
    log = open(runner.logger.log_file).read()
    assert 'mean/eff_lr: ' in log and 'e-0' in log.split('mean/eff_lr: ')[1][:12]
    assert 'mean/angle_deg: ' in log and 'max/grad_norm: ' in log
    assert f'norm/{monitor.names[0]}' not in log  # per-layer keys stay out of the text log
    return monitor, per_layer, aggregates


def test_values_match_the_weights_under_wrs_and_weight_decay(make_cfg, tmp_path):
    # WRS, monitor at every iteration: numbers, and the norms on target.
    runner = _run(make_cfg, 'wrs', [dict(type='NormMonitorHook', interval=1),
                                    dict(type='RecordMonitoredHook')], tmp_path / 'wrs')
    monitor, per_layer, aggregates = _check_against_record(runner, interval=1)
    wrs = next(h for h in runner.hooks if type(h).__name__ == 'WRSHook')
    assert monitor.source == 'WRSHook'
    wrs_names = [e.name for e in wrs.rescaler.entries]
    assert monitor.names == wrs_names and len(wrs_names) >= 20
    for step, agg in aggregates.items():  # unit filter norms: WRS on target
        assert agg['min/filter_norm'] == pytest.approx(1.0, abs=1e-5)
        assert agg['max/filter_norm'] == pytest.approx(1.0, abs=1e-5)
        for entry in wrs.rescaler.entries:
            assert per_layer[step][f'norm/{entry.name}'] == pytest.approx(
                math.sqrt(entry.param.shape[0]), rel=1e-5)

    # Weight decay, monitor every 2nd iteration: it finds the same weights itself.
    hooks = [dict(type='NormMonitorHook', interval=2), dict(type='RecordMonitoredHook'),
             dict(type='DumpWeightsHook')]
    runner = _run(make_cfg, 'wd', hooks, tmp_path / 'wd')
    monitor, per_layer, aggregates = _check_against_record(runner, interval=2)
    assert monitor.source == 'discovery'
    assert monitor.names == wrs_names
    # Not WRS: filter norms are far from 1 (Kaiming init gives about sqrt(2)).
    assert max(a['max/filter_norm'] for a in aggregates.values()) > 1.1

    # Monitoring changes nothing: without it the run ends with the same weights.
    plain = _run(make_cfg, 'wd', [dict(type='DumpWeightsHook')], tmp_path / 'plain')
    with_monitor = torch.load(osp.join(runner.work_dir, 'rank0.pth'))
    without = torch.load(osp.join(plain.work_dir, 'rank0.pth'))
    assert with_monitor.keys() == without.keys()
    for key in without:
        assert torch.equal(with_monitor[key], without[key]), key


def test_options_are_checked():
    with pytest.raises(ValueError, match='interval must be a positive integer'):
        NormMonitorHook(interval=0)
    with pytest.raises(ValueError, match=r"NormMonitorHook.include: '\(' is not a valid"):
        NormMonitorHook(include=['('])


def test_wrs_constructor_weights_and_accumulation_micro_steps(make_cfg, tmp_path):
    """WRS applied by the optimizer-wrapper constructor is found too; with
    gradient accumulation, micro-step iterations turn nothing and have no
    gradient norm (grads are only read when the optimizer steps)."""
    optim_wrapper = dict(type='OptimWrapper', constructor='WRSOptimWrapperConstructor',
                         accumulative_counts=2, wrs=dict(),
                         optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4))
    runner = _run(make_cfg, 'wd', [dict(type='NormMonitorHook', interval=1)], tmp_path / 'ctor',
                  optim_wrapper=optim_wrapper)
    monitor = next(h for h in runner.hooks if isinstance(h, NormMonitorHook))
    assert monitor.source == 'WRSOptimWrapper'
    assert monitor.names == [e.name for e in runner.optim_wrapper.wrs.rescaler.entries]
    aggregates = {line['step']: line for line in _scalar_lines(runner) if 'mean/norm' in line}
    assert sorted(aggregates) == [1, 2, 3, 4]
    for step in (1, 3):  # accumulation micro-steps
        assert aggregates[step]['max/angle_deg'] == 0.0
        assert 'mean/grad_norm' not in aggregates[step]
    for step in (2, 4):  # real updates
        assert aggregates[step]['mean/angle_deg'] > 0 and aggregates[step]['mean/grad_norm'] > 0
        assert aggregates[step]['max/filter_norm'] == pytest.approx(1.0, abs=1e-5)
