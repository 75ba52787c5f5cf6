"""The GPU check's CPU smoke form: the script that runs on a lent GPU cannot rot."""
import json
import math
import os.path as osp
import subprocess
import sys

from conftest import REPO

SCRIPT = osp.join(REPO, 'tools/benchmarks/gpu_check.py')


def test_tiny_run_writes_every_section(tmp_path):
    out = tmp_path / 'gpu'
    proc = subprocess.run([sys.executable, SCRIPT, '--tiny', '--out', str(out)],
                          capture_output=True, text=True, timeout=600,
                          env={'OMP_NUM_THREADS': '1', 'PATH': '/usr/bin:/bin'})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / 'gpu_check.json').read_text())
    markdown = (out / 'gpu_check.md').read_text()
    env = report['environment']
    assert env['size'] == 'tiny' and env['device'] == 'cpu' and env['torch']
    sections = report['sections']
    assert list(sections) == ['rescale_vs_step', 'iteration', 'host_syncs', 'projection',
                              'amp_skip', 'cuda_tests']
    for name, section in sections.items():
        assert section['status'] in ('ran', 'skipped'), (name, section)
        if section['status'] == 'skipped':
            assert section['reason'], name
        assert f'## {name}: {section["status"]}' in markdown
    # Without CUDA exactly the CUDA-only parts say why they did not run.
    assert 'CUDA' in sections['host_syncs']['reason']
    assert 'CUDA' in sections['amp_skip']['reason']
    # The suite's CUDA tests are collected (they import with torch alone) and skip here.
    cuda_tests = sections['cuda_tests']
    assert cuda_tests['skipped'] >= 6 and cuda_tests['failed'] == 0
    assert 'test_a_replay_that_does_nothing_is_an_error_at_the_next_check' in cuda_tests['tests']
    assert all(o.startswith('skipped: needs') for o in cuda_tests['tests'].values())

    rescale = sections['rescale_vs_step']
    assert rescale['rescaled_weights'] > 0 and rescale['compensated_norms'] > 0
    assert 0 < rescale['ratio'] < math.inf and rescale['target'] == 0.25
    assert rescale['deferred_vs_immediate_max_rel_diff'] == 0  # same ops on the CPU
    iteration = sections['iteration']
    for dtype in ('fp32', 'bf16'):
        assert iteration[dtype]['wd_ms'] > 0 and iteration[dtype]['ratio_wrs'] > 0
    projection = sections['projection']
    for kind in ('sgdp', 'adamp'):
        row = projection[kind]
        assert row['per_param_ms'] > 0 and row['multi_tensor_ms'] > 0
        # The test stack carries the reference: both paths agree with it to rounding.
        assert row['speedup_vs'] == 'reference'
        assert row['max_rel_diff_per_param'] < 1e-5
        assert row['max_rel_diff_multi_tensor'] < 1e-5


def test_sections_can_be_selected(tmp_path):
    proc = subprocess.run([sys.executable, SCRIPT, '--tiny', '--out', str(tmp_path),
                           '--sections', 'host_syncs'], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sections = json.loads((tmp_path / 'gpu_check.json').read_text())['sections']
    assert sections['rescale_vs_step'] == {'status': 'skipped',
                                           'reason': 'not selected (--sections)'}


def test_cuda_tests_need_torch_and_pytest_only():
    """The GPU machine has no OpenMMLab stack: the CUDA test file must import without it."""
    blocked = ['mmengine', 'mmcv', 'mmdet', 'mmseg']
    code = ('import sys\n'
            f'for name in {blocked!r}: sys.modules[name] = None\n'
            'import pytest\n'
            "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', "
            "'tests/test_core/test_rescale_cuda.py']))\n")
    proc = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'skipped' in proc.stdout or 'passed' in proc.stdout
