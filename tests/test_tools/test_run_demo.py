"""tools/run_demo.py (``make demo``) end to end on a few updates of the tiny models."""
import re
import subprocess
import sys

import pytest

from mmwrs.datasets import generate_shapes

from conftest import REPO, load_tool

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
TINY = ('faster-rcnn_r18-w16_fpn_shapes64_demo', 'fcn_r18-w16-d8_shapes64_demo')


def test_demo_end_to_end(tmp_path):
    data = generate_shapes(str(tmp_path / 'data'), num_train=8, num_val=4, img_size=64)
    figure = tmp_path / 'figure.png'
    result = subprocess.run(
        [sys.executable, 'tools/run_demo.py', '--iters', '4', '--data-root', data,
         '--work-dir-root', str(tmp_path / 'demo'), '--figure', str(figure)],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    runs = [f'{stem}_{reg}_seed0' for stem in TINY for reg in ('wd', 'wrs')]
    for run in runs:
        # One progress line per update the run's log reports, the last at 4/4.
        progress = re.findall(rf'^\[demo\] {run}: iter (\d+)/4, \d+:\d\d elapsed, (.*)$',
                              out, re.M)
        assert progress and progress[-1] == ('4', 'done'), (run, out)
        # mmengine's own log stays in the work dir.
        log = (tmp_path / 'demo' / run / 'demo_train.log').read_text()
        assert 'Iter(train)' in log
    assert 'Iter(train)' not in out
    # The side-by-side table: the metric, filter norms and the effective-LR growth.
    assert re.search(r'config\s+reg\s+metric\s+filter norm mean \[min, max\]\s+'
                     r'lr/\|w\|\^2 late/early', out)
    rows = {(m.group(1), m.group(2)): m.group(0) for m in re.finditer(
        r'^(\S+_demo)\s+(WD [\d.e-]+|WRS)\s+.*$', out, re.M)}
    assert sorted(rows) == [(TINY[0], 'WD 0.02'), (TINY[0], 'WRS'),
                            (TINY[1], 'WD 0.001'), (TINY[1], 'WRS')], out
    assert 'bbox_mAP' in rows[TINY[0], 'WRS'] and 'mIoU' in rows[TINY[1], 'WRS']
    for model in TINY:
        # WRS holds every controlled filter at unit norm.
        assert '1.000 [1.000, 1.000]' in rows[model, 'WRS']
        assert re.search(r'x\d+\.\d\d \(\d+/\d+\)', rows[model, 'WD ' + (
            '0.02' if 'rcnn' in model else '0.001')])
    assert 'one seed, tiny models' in out and 'docs/results.md' in out
    assert f'[demo] figure: {figure}' in out
    assert figure.read_bytes()[:8] == PNG_MAGIC


def test_options_checked():
    demo = load_tool('tools/run_demo.py')
    for argv in (['--seeds', '0'], ['--jobs', '0'], ['--iters', '-1']):
        with pytest.raises(SystemExit):
            demo.parse_args(argv)
    args = demo.parse_args(['--full'])
    assert args.configs == demo.FULL and args.data_root == 'data/shapes'
    assert args.work_dir_root == 'work_dirs/demo_full'
    args = demo.parse_args([])
    assert args.configs == demo.TINY and args.data_root == 'data/shapes64' and args.generate
