"""tools/analysis/norm_schedule.py on a work dir laid out as mmengine writes it."""
import json

import pytest

from mmwrs.core.target_schedule import TargetSchedule

from conftest import load_tool


def _work_dir(root, norms, run='20260101_000000'):
    vis = root / run / 'vis_data'
    vis.mkdir(parents=True)
    lines = [json.dumps({'mean/filter_norm': n, 'lr': 0.1, 'step': step, 'iter': step})
             for step, n in norms.items()]
    (vis / 'scalars.json').write_text('\n'.join(lines) + '\n')


def test_schedule_follows_the_logged_norm_and_is_accepted(tmp_path):
    _work_dir(tmp_path, {k: 1.5 - k / 800 for k in range(0, 401, 50)})
    tool = load_tool('tools/analysis/norm_schedule.py')
    cfg = tool.schedule_from_run(str(tmp_path), start=1.0, num_points=3)
    assert cfg == dict(type='piecewise', points=[(0, 1.0), (200, 0.833333), (400, 0.666667)])
    assert TargetSchedule.from_config(cfg).value(300) == pytest.approx(0.75, abs=1e-6)


def test_a_run_without_the_monitor_names_the_key(tmp_path):
    vis = tmp_path / '20260101_000000' / 'vis_data'
    vis.mkdir(parents=True)
    (vis / 'scalars.json').write_text(json.dumps({'loss': 1.0, 'step': 1}) + '\n')
    tool = load_tool('tools/analysis/norm_schedule.py')
    with pytest.raises(KeyError, match="no 'mean/filter_norm'.*NormMonitorHook"):
        tool.schedule_from_run(str(tmp_path))


def test_measured_start_and_the_overlay_the_sweep_composes(tmp_path, monkeypatch):
    """--start measured keeps the run's own norms; the written overlay is one WRSHook."""
    from mmengine.config import Config
    _work_dir(tmp_path, {k: 1.5 - k / 800 for k in range(0, 401, 50)})
    tool = load_tool('tools/analysis/norm_schedule.py')
    cfg = tool.schedule_from_run(str(tmp_path), start='measured', num_points=3)
    assert cfg['points'] == [(0, 1.5), (200, 1.25), (400, 1.0)]
    path = tmp_path / 'wrs_curve.py'
    tool.write_overlay(str(path), cfg, 'RUN --start measured')
    hooks = Config.fromfile(str(path)).custom_hooks
    assert [h['type'] for h in hooks] == ['WRSHook']
    assert TargetSchedule.from_config(hooks[0]['target_norm']).value(300) == pytest.approx(1.125)
    # The sweep finds the study's own overlays beside the shipped ones.
    experiments = load_tool('tools/analysis/experiments.py')
    monkeypatch.setattr(experiments, 'OVERLAY_DIRS',
                        (experiments.REGULARIZER_DIR, str(tmp_path)))
    assert experiments.overlay_path('wrs_curve') == str(path)
    assert 'wrs_curve' in experiments.regularizers() and 'wrs' in experiments.regularizers()
    (tmp_path / 'wrs.py').write_text('')
    with pytest.raises(ValueError, match="regularizer 'wrs': an overlay in both"):
        experiments.overlay_path('wrs')
