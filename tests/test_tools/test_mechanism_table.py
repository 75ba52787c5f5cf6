"""tools/analysis/mechanism_table.py on sweep directories laid out as sweep.py writes them."""
import importlib.util
import json
import os.path as osp

import pytest

from conftest import REPO


@pytest.fixture(scope='module')
def tool():
    spec = importlib.util.spec_from_file_location(
        'mechanism_table', osp.join(REPO, 'tools', 'analysis', 'mechanism_table.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(sweep_dir, name, points, done=True):
    """A run dir with NormMonitorHook-style scalars: {step: (filter_norm, eff_lr, grad)}."""
    vis = sweep_dir / 'runs' / name / '20260101_000000' / 'vis_data'
    vis.mkdir(parents=True)
    lines = [json.dumps({'mean/filter_norm': f, 'mean/eff_lr': e, 'mean/grad_norm': g,
                         'mean/angle_deg': 0.5, 'lr': 0.1, 'step': step, 'iter': step})
             for step, (f, e, g) in points.items()]
    lines.append(json.dumps({'mIoU': 50.0, 'step': 400}))  # a validation line
    (vis / 'scalars.json').write_text('\n'.join(lines) + '\n')
    if done:
        (sweep_dir / 'runs' / name / 'done.json').write_text('{}')


def test_ratios_per_setting_over_seeds(tool, tmp_path, capsys):
    # Decay: norms halve, eff lr x4, grads x2 (seed 0) and x4 (seed 1).
    _run(tmp_path, 'sgd_lr0.1_wd0.002_seed0', {200: (1.0, 0.1, 1.0), 1150: (0.5, 0.4, 2.0)})
    _run(tmp_path, 'sgd_lr0.1_wd0.002_seed1', {200: (1.0, 0.1, 1.0), 1150: (0.5, 0.4, 4.0)})
    # WRS: flat; the late value is taken at the nearest logged step (1100).
    _run(tmp_path, 'sgd_lr0.1_wrs_seed0', {200: (1.0, 0.1, 1.0), 1100: (1.0, 0.1, 1.0)})
    _run(tmp_path, 'sgd_lr0.2_wrs_seed0', {200: (1.0, 0.1, 1.0)}, done=False)  # unfinished
    table = tool.collect(str(tmp_path), 200, 1150)
    assert set(table) == {'sgd_lr0.1_wd0.002', 'sgd_lr0.1_wrs'}
    decay = table['sgd_lr0.1_wd0.002']
    assert decay['seeds'] == 2
    assert decay['filter norm'] == (0.5, 0.0)
    assert decay['lr/‖w‖²'] == (4.0, 0.0)
    assert decay['grad norm'][0] == 3.0 and decay['grad norm'][1] == pytest.approx(2 ** 0.5)
    assert table['sgd_lr0.1_wrs']['lr/‖w‖²'] == (1.0, None)  # one seed: no std
    # --window averages the values logged near each step: (1 + 3) / 2 at 1150.
    _run(tmp_path, 'sgd_lr0.4_wrs_seed0', {200: (1.0, 0.1, 1.0), 1100: (1.0, 0.1, 1.0),
                                           1150: (1.0, 0.1, 3.0), 1400: (1.0, 0.1, 9.0)})
    windowed = tool.collect(str(tmp_path), 200, 1150, 'lr0.4', window=50)
    assert windowed['sgd_lr0.4_wrs']['grad norm'] == (2.0, None)
    assert tool.collect(str(tmp_path), 200, 1150, 'lr0.4')['sgd_lr0.4_wrs']['grad norm'] == (
        3.0, None)
    assert tool.main([str(tmp_path), '--early', '200', '--late', '1150', '--runs', 'wrs']) == 0
    out = capsys.readouterr().out
    assert '| sgd_lr0.1_wrs | 1 | 1 | 1 | 1 | 0.5 |' in out and 'wd0.002' not in out


def test_clear_errors(tool, tmp_path):
    with pytest.raises(SystemExit, match='no runs/'):
        tool.main([str(tmp_path), '--early', '200', '--late', '1150'])
    with pytest.raises(SystemExit, match='--late 100 must come after --early 200'):
        tool.main([str(tmp_path), '--early', '200', '--late', '100'])
    (tmp_path / 'runs').mkdir()
    with pytest.raises(SystemExit, match="no finished run .* matches 'wrs'"):
        tool.main([str(tmp_path), '--early', '200', '--late', '1150', '--runs', 'wrs'])
