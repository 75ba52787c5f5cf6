"""tools/analysis/plot_curves.py on a real short run, and mmwrs.scalars."""
import importlib.util
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
from mmengine.runner import Runner

from mmwrs.launch import register_codebase
from mmwrs.scalars import find_scalars_files, load_work_dir, read_scalars

from conftest import REPO, SEG_DEMO

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def _plot_in_process(*args):
    """main() of the tool, imported from its file; returns the SystemExit message."""
    spec = importlib.util.spec_from_file_location(
        'plot_curves', osp.join(REPO, 'tools', 'analysis', 'plot_curves.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as exc:
        module.main([str(a) for a in args])
    return str(exc.value)


def _plot(*args):
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run([sys.executable, 'tools/analysis/plot_curves.py', *map(str, args)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_plots_of_a_real_run(make_cfg, tmp_path):
    cfg = make_cfg(SEG_DEMO, ['wrs'], iters=3, work_dir=tmp_path / 'wrs')
    cfg.custom_hooks = list(cfg.custom_hooks) + [dict(type='NormMonitorHook', interval=1)]
    # A visualizer of its own: mmengine reuses an instance of the same name
    # (another test's runner in this process) with that run's log dir.
    cfg.visualizer.name = f'visualizer_plot_curves_{id(cfg)}'
    register_codebase(cfg)
    Runner.from_cfg(cfg).train()
    scalars = load_work_dir(str(tmp_path / 'wrs'))
    assert [step for step, _ in scalars['mean/eff_lr']] == [1, 2, 3]
    assert 'mIoU' in scalars
    # A second run dir (a copy) for a second line.
    shutil.copytree(tmp_path / 'wrs', tmp_path / 'copy')
    out = tmp_path / 'plots'
    result = _plot(tmp_path / 'wrs', tmp_path / 'copy', '--out-dir', out,
                   '--labels', 'WRS', 'WRS again', '--train-keys', 'loss',
                   'decode.acc_seg:aAcc', 'not_logged')
    assert result.returncode == 0, result.stderr[-3000:]
    expected = {'eff_lr.png', 'norm.png', 'filter_norm.png', 'angle_deg.png',
                'grad_norm.png', 'metric_mIoU.png', 'train_loss.png',
                'train_decode.acc_seg.png'}
    assert expected <= set(os.listdir(out))
    assert not (out / 'train_not_logged.png').exists()  # a key no run logged
    for name in expected:
        data = (out / name).read_bytes()
        assert data[:8] == PNG_MAGIC, name
        assert len(data) > 10_000, (name, len(data))  # axes, lines and text drawn


def test_clear_errors(tmp_path):
    empty = tmp_path / 'empty'
    empty.mkdir()
    message = _plot_in_process(empty, '--out-dir', tmp_path / 'out')
    assert f'{empty}: no */vis_data/scalars.json' in message
    # A run that logged neither the monitor's keys nor a metric.
    vis = tmp_path / 'bare' / '20260101_000000' / 'vis_data'
    vis.mkdir(parents=True)
    (vis / 'scalars.json').write_text(json.dumps({'loss': 1.0, 'lr': 0.1, 'step': 1}) + '\n')
    message = _plot_in_process(tmp_path / 'bare', '--out-dir', tmp_path / 'out')
    assert 'none of mean/eff_lr' in message and '(it has: loss, lr)' in message
    message = _plot_in_process(tmp_path / 'bare', '--out-dir', tmp_path / 'out',
                               '--labels', 'a', 'b')
    assert '--labels: 2 labels for 1 work dirs' in message
    assert not (tmp_path / 'out').exists()


def test_read_scalars_dirs_and_merging(tmp_path):
    for stamp, value in (('20260101_000000', 1.0), ('20260102_000000', 2.0)):
        vis = tmp_path / stamp / 'vis_data'
        vis.mkdir(parents=True)
        lines = [{'loss': value, 'iter': 2, 'step': 2}, {'norm/a.weight': 3.0, 'step': 2},
                 {'loss': value + 1, 'step': 1}, {'loss': value + 5, 'step': 2},
                 {'name': 'text', 'flag': True, 'step': 3}]
        (vis / 'scalars.json').write_text('\n'.join(json.dumps(x) for x in lines) + '\n')
    paths = find_scalars_files(str(tmp_path))
    assert ['20260101_000000' in paths[0], '20260102_000000' in paths[1]] == [True, True]
    path = paths[-1]
    scalars = read_scalars(path)
    assert scalars == {'loss': [(1, 3.0), (2, 7.0)], 'norm/a.weight': [(2, 3.0)]}
    (tmp_path / '20260102_000000' / 'vis_data' / 'scalars.json').write_text('{"loss": 1}\n')
    with pytest.raises(ValueError, match='scalars.json:1: not a scalars record with a step'):
        read_scalars(path)


def test_resumed_run_keeps_the_history_before_its_checkpoint(tmp_path):
    """A run killed at step 3 and resumed from step 2 logs 3..4 again in a new dir."""
    for stamp, steps, value in (('20260101_000000', (1, 2, 3), 1.0),
                                ('20260102_000000', (3, 4), 2.0)):
        vis = tmp_path / stamp / 'vis_data'
        vis.mkdir(parents=True)
        (vis / 'scalars.json').write_text(
            ''.join(json.dumps({'loss': value, 'step': s}) + '\n' for s in steps))
    assert load_work_dir(str(tmp_path)) == {'loss': [(1, 1.0), (2, 1.0), (3, 2.0), (4, 2.0)]}


def test_plot_grid_one_figure(tmp_path):
    """A row per group, a column per curve, in one PNG; an unknown curve is named."""
    from plot_curves import plot_grid
    run = {'mean/filter_norm': [(1, 1.2), (2, 1.1)], 'min/filter_norm': [(1, 0.5), (2, 0.4)],
           'max/filter_norm': [(1, 2.0), (2, 1.9)], 'mean/eff_lr': [(1, 1e-3), (2, 2e-3)]}
    wrs = {'mean/filter_norm': [(1, 1.0), (2, 1.0)], 'mean/eff_lr': [(1, 1e-3), (2, 1e-3)]}
    path = plot_grid({'det': {'WD': run, 'WRS': wrs}, 'seg': {'WD': run}},
                     ('filter_norm', 'eff_lr'), str(tmp_path / 'grid.png'))
    with open(path, 'rb') as f:
        assert f.read(8) == PNG_MAGIC
    with pytest.raises(ValueError, match="'loss'.*filter_norm"):
        plot_grid({'det': {'WD': run}}, ('loss',), str(tmp_path / 'bad.png'))
