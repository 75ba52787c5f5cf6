"""Real Slurm: a one-node cluster on loopback, srun, and tools/slurm_train.sh."""
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import PYTHONPATH, REPO, SEG_DEMO

CLUSTER = osp.join(REPO, 'tools', 'slurm', 'cluster.sh')


@pytest.fixture(scope='module')
def slurm_env(tmp_path_factory):
    if os.geteuid() != 0 and shutil.which('slurmctld') is None:
        pytest.skip('Slurm is not installed and installing it needs root')
    state = str(tmp_path_factory.mktemp('slurm'))
    env = dict(os.environ, MMWRS_SLURM_DIR=state)
    up = subprocess.run(['bash', CLUSTER, 'up'], env=env, capture_output=True, text=True,
                        timeout=600)
    assert up.returncode == 0, up.stdout + up.stderr
    env['SLURM_CONF'] = osp.join(state, 'slurm.conf')
    yield env
    subprocess.run(['bash', CLUSTER, 'down'], env=env, capture_output=True, timeout=120)


def test_srun_runs_two_tasks(slurm_env):
    result = subprocess.run(['srun', '-n2', sys.executable, '-c',
                             'import os; print(os.environ["SLURM_PROCID"])'],
                            env=slurm_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split()) == ['0', '1']


def test_slurm_train_two_tasks_keep_weights_identical(slurm_env, make_cfg, tmp_path):
    cfg = make_cfg(SEG_DEMO, ['wrs'], iters=3, custom_hooks=[
        dict(type='WRSHook'), dict(type='DumpWeightsHook')],
        custom_imports=dict(imports=['mmwrs', 'register_dump_weights_hook'],
                            allow_failed_imports=False))
    config = str(tmp_path / 'slurm_cfg.py')
    cfg.dump(config)
    work_dir = tmp_path / 'work'
    env = dict(slurm_env, GPUS='2', GPUS_PER_NODE='2', CPUS_PER_TASK='1', USE_GRES='0',
               PYTHON=sys.executable, MASTER_PORT=str(29700 + os.getpid() % 200),
               PYTHONPATH=PYTHONPATH)
    result = subprocess.run(['bash', osp.join(REPO, 'tools', 'slurm_train.sh'), 'debug',
                             'mmwrs-test', config, str(work_dir)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    rank0 = torch.load(work_dir / 'rank0.pth')
    rank1 = torch.load(work_dir / 'rank1.pth')
    params = [n for n in rank0 if not n.endswith(('running_mean', 'running_var',
                                                  'num_batches_tracked'))]
    assert len(params) > 50
    for name in params:
        assert torch.equal(rank0[name], rank1[name]), name
    weight = rank0['decode_head.convs.0.conv.weight']
    assert torch.allclose(weight.flatten(1).norm(dim=1), torch.ones(weight.shape[0]),
                          atol=1e-5)
    assert osp.exists(work_dir / 'iter_3.pth')
