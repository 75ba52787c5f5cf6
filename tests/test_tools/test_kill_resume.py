"""SIGKILL a WRS training run, resume it, and get the uninterrupted result."""
import glob
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import torch

from conftest import DETERMINISTIC_SEG, PYTHONPATH, REPO, SEG_DEMO

DETERMINISTIC = dict(DETERMINISTIC_SEG, **{'default_hooks.checkpoint.interval': 2})


def _train(config, work_dir, *extra, wait=True):
    env = dict(os.environ, PYTHONPATH=PYTHONPATH)
    command = [sys.executable, 'tools/train.py', config, '--work-dir', str(work_dir), *extra]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    if wait:
        output = process.communicate(timeout=900)[0]
        assert process.returncode == 0, output[-3000:]
    return process


def test_sigkill_then_resume_auto_matches_uninterrupted_run(make_cfg, tmp_path):
    cfg = make_cfg(SEG_DEMO, ['wrs'], iters=8, **DETERMINISTIC)
    cfg.custom_hooks = list(cfg.custom_hooks) + [dict(type='DumpWeightsHook')]
    cfg.custom_imports = dict(imports=['mmwrs', 'register_dump_weights_hook'],
                              allow_failed_imports=False)
    config = str(tmp_path / 'kill_cfg.py')
    cfg.dump(config)

    _train(config, tmp_path / 'full')

    killed_dir = tmp_path / 'killed'
    process = _train(config, killed_dir, wait=False)
    deadline = time.time() + 600
    while not osp.exists(killed_dir / 'last_checkpoint') and time.time() < deadline:
        assert process.poll() is None, process.stdout.read()[-3000:]
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)  # mid-run, after at least one checkpoint
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not osp.exists(killed_dir / 'rank0.pth')  # it really did not finish

    for path in glob.glob(str(killed_dir / 'iter_*.pth')):  # nothing half-written
        assert 'state_dict' in torch.load(path, map_location='cpu')

    _train(config, killed_dir, '--resume')
    full = torch.load(tmp_path / 'full' / 'rank0.pth')
    resumed = torch.load(killed_dir / 'rank0.pth')
    for name in full:
        assert torch.allclose(full[name].float(), resumed[name].float(),
                              rtol=1e-5, atol=1e-6), name
