"""tools/train.py, tools/test.py and tools/dist_train.sh as a user runs them."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from mmwrs.launch import amp_wrapper_type

from conftest import DET_DEMO, PYTHONPATH, REPO, SEG_DEMO


def _run(args, extra_env=None):
    env = dict(os.environ, PYTHONPATH=PYTHONPATH, **(extra_env or {}))
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900)


def _dumped(make_cfg, tmp_path, config, overlays, iters, **extra):
    cfg = make_cfg(config, overlays, iters=iters, **extra)
    path = str(tmp_path / 'run_cfg.py')
    cfg.dump(path)
    return cfg, path


def test_train_then_test_cli_on_the_demo_segmentor_with_wrs(make_cfg, tmp_path):
    cfg, path = _dumped(make_cfg, tmp_path, SEG_DEMO, ['wrs'], 2)
    work_dir = str(tmp_path / 'cli')
    result = _run([sys.executable, 'tools/train.py', path, '--work-dir', work_dir])
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'WRSHook:' in result.stdout + result.stderr
    final = [line for line in (result.stdout + result.stderr).splitlines()
             if 'final metrics: ' in line]
    assert final and 'mIoU=' in final[-1], 'train.py did not print its final metrics'
    checkpoint = osp.join(work_dir, 'iter_2.pth')
    assert osp.exists(checkpoint)
    assert 'wrs' in torch.load(checkpoint)  # safe loading reads it (compat)
    result = _run([sys.executable, 'tools/test.py', path, checkpoint, '--work-dir', work_dir])
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'mIoU=' in result.stdout


def test_resume_cli_continues_from_checkpoint(make_cfg, tmp_path):
    cfg, path = _dumped(make_cfg, tmp_path, DET_DEMO, ['wrs'], 2)
    work_dir = str(tmp_path / 'det')
    assert _run([sys.executable, 'tools/train.py', path, '--work-dir', work_dir]).returncode == 0
    result = _run([sys.executable, 'tools/train.py', path, '--work-dir', work_dir, '--resume',
                   '--cfg-options', 'train_cfg.max_iters=3'])
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert 'resumed epoch: 0, iter: 2' in log
    assert osp.exists(osp.join(work_dir, 'iter_3.pth'))
    assert 'bbox_mAP' in log


def test_amp_on_cpu_is_a_clear_error(make_cfg, tmp_path):
    if torch.cuda.is_available():
        pytest.skip('this machine has CUDA')
    _, path = _dumped(make_cfg, tmp_path, SEG_DEMO, ['wrs'], 1)
    result = _run([sys.executable, 'tools/train.py', path, '--amp',
                   '--work-dir', str(tmp_path / 'amp')])
    assert result.returncode != 0
    assert '--amp needs a CUDA device' in result.stderr


@pytest.mark.parametrize('wrapper, expected', [
    (None, 'AmpOptimWrapper'), ('OptimWrapper', 'AmpOptimWrapper'),
    ('AmpOptimWrapper', 'AmpOptimWrapper')])
def test_amp_keeps_or_maps_wrapper_types(wrapper, expected):
    assert amp_wrapper_type(wrapper) == expected


def test_amp_refuses_to_replace_another_wrapper():
    with pytest.raises(ValueError, match="optim_wrapper.type='ApexOptimWrapper' is not an AMP"):
        amp_wrapper_type('ApexOptimWrapper')


def test_two_process_gloo_training_keeps_ranks_identical(make_cfg, tmp_path):
    cfg, path = _dumped(make_cfg, tmp_path, SEG_DEMO, ['wrs'], 3, custom_hooks=[
        dict(type='WRSHook'), dict(type='DumpWeightsHook')],
        custom_imports=dict(imports=['mmwrs', 'register_dump_weights_hook'],
                            allow_failed_imports=False))
    work_dir = tmp_path / 'dist'
    env = dict(PYTHON=sys.executable, PORT=str(29500 + os.getpid() % 1000))
    result = _run(['bash', 'tools/dist_train.sh', path, '2', '--work-dir', str(work_dir)], env)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = torch.load(work_dir / 'rank0.pth')
    rank1 = torch.load(work_dir / 'rank1.pth')
    assert rank0.keys() == rank1.keys()
    # Parameters; BN running statistics are per rank (mmengine's DDP does not
    # broadcast buffers) and only rank 0's are saved, as on GPUs.
    params = [n for n in rank0 if not n.endswith(('running_mean', 'running_var',
                                                  'num_batches_tracked'))]
    assert len(params) > 50
    for name in params:
        assert torch.equal(rank0[name], rank1[name]), name
    # Checkpoints and logs come from rank 0 only: one run dir, one log file.
    assert osp.exists(work_dir / 'iter_3.pth')
    logs = sorted(work_dir.glob('*/*.log'))
    assert len(logs) == 1, logs
    assert len(list(work_dir.glob('*/vis_data/scalars.json'))) == 1
    weights = rank0['backbone.layer1.0.conv1.weight']
    assert torch.allclose(weights.flatten(1).norm(dim=1), torch.ones(weights.shape[0]),
                          atol=1e-5)


def test_main_job_full_prints_wd_and_wrs_side_by_side(tmp_path):
    """make demo-full (tools/run_demo.py --full), shrunk to two iterations."""
    data_root = tmp_path / 'shapes'
    result = _run([sys.executable, 'tools/run_demo.py', '--full', '--configs', SEG_DEMO,
                   '--iters', '2', '--data-root', str(data_root),
                   '--work-dir-root', str(tmp_path / 'demo'),
                   '--cfg-options', 'train_dataloader.batch_size=2', 'val_dataloader.batch_size=2',
                   'val_dataloader.dataset.indices=4'])
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split() for line in result.stdout.splitlines()
            if line.startswith('fcn_r18-d8_shapes ')]
    assert [row[1] for row in rows] == ['WD', 'WRS'], result.stdout[-2000:]
    assert all('mIoU' in row for row in rows)
    wrs_row = ' '.join(rows[1])
    assert '1.000 [1.000, 1.000]' in wrs_row  # WRS: every controlled filter at norm 1
    assert (data_root / 'manifest.json').exists()
    # It trained on the data it generated, not on the default data/shapes.
    log = next((tmp_path / 'demo' / 'fcn_r18-d8_shapes_wd_seed0').glob('*/*.log')).read_text()
    assert f"data_root='{data_root}/'" in log.replace(' ', '').replace('\n', '')
