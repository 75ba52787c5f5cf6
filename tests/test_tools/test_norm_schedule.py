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
