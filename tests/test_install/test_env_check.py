"""tools/env_check.py: which mmcv ops tools/setup_env.sh builds, with faked machine facts.

No GPU is lent to CI, so the decision is tested at its function boundary: the
facts a GPU machine would report are passed in.
"""
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, load_tool

env_check = load_tool('tools/env_check.py')
NVCC_121 = ('nvcc: NVIDIA (R) Cuda compiler driver\nCuda compilation tools, '
            'release 12.1, V12.1.105\nBuild cuda_12.1.r12.1/compiler.32688072_0\n')
NVCC_118 = NVCC_121.replace('12.1', '11.8')
NVCC_124 = NVCC_121.replace('12.1', '12.4')


def decide(**facts):
    args = dict(gpu_listed=False, cuda_available=False, torch_version='2.1.2+cu121',
                torch_cuda='12.1', nvcc_output=None, nvcc_path=None)
    args.update(facts)
    return env_check.decide(**args)


def test_cpu_machine_builds_cpu_ops():
    # This machine: a CUDA build of torch (classic) or a CPU build (pinned), no GPU.
    assert decide().action == 'cpu'
    assert decide(torch_version='2.13.0+cpu', torch_cuda=None).action == 'cpu'
    # nvcc being installed does not matter when torch sees no GPU.
    assert decide(nvcc_output=NVCC_121, nvcc_path='/usr/bin/nvcc').action == 'cpu'


def test_gpu_with_matching_nvcc_builds_cuda_ops():
    decision = decide(gpu_listed=True, cuda_available=True, nvcc_output=NVCC_121,
                      nvcc_path='/usr/local/cuda-12.1/bin/nvcc')
    assert decision.action == 'cuda'
    assert '/usr/local/cuda-12.1/bin/nvcc' in decision.message
    # Same major, other minor: torch's cpp_extension accepts it (with a warning).
    decision = decide(gpu_listed=True, cuda_available=True, nvcc_output=NVCC_124)
    assert decision.action == 'cuda' and 'same major' in decision.message


def test_gpu_without_nvcc_stops_before_compiling():
    decision = decide(gpu_listed=True, cuda_available=True)
    assert decision.action == 'stop'
    for words in ('no nvcc was found', 'CUDA 12.1 toolkit', 'CUDA_HOME',
                  'existing OpenMMLab environment', 'Nothing was compiled'):
        assert words in decision.message


def test_gpu_with_other_cuda_major_stops():
    decision = decide(gpu_listed=True, cuda_available=True, nvcc_output=NVCC_118,
                      nvcc_path='/usr/local/cuda-11.8/bin/nvcc')
    assert decision.action == 'stop'
    assert 'CUDA 11.8' in decision.message and 'CUDA 12.x' in decision.message
    # An nvcc that prints no release is no usable nvcc either.
    assert decide(gpu_listed=True, cuda_available=True, nvcc_output='garbage',
                  nvcc_path='/x/nvcc').action == 'stop'


def test_gpu_torch_cannot_use_stops():
    # A CUDA torch with a driver too old: CPU ops would strand the GPU.
    decision = decide(gpu_listed=True, cuda_available=False)
    assert decision.action == 'stop' and 'driver' in decision.message
    # A CPU build of torch on a GPU machine trains on the CPU, and says so.
    decision = decide(gpu_listed=True, torch_version='2.13.0+cpu', torch_cuda=None)
    assert decision.action == 'cpu' and 'CPU build' in decision.message
    # ROCm: torch sees a GPU but has no CUDA version.
    assert decide(cuda_available=True, torch_cuda=None).action == 'stop'


def test_nvcc_release_parsing():
    assert env_check.nvcc_release(NVCC_121) == '12.1'
    assert env_check.nvcc_release('Build cuda_13.0.r13.0/compiler release 13.0, V13.0.48') == '13.0'
    assert env_check.nvcc_release(None) is None


def test_cli_on_this_machine_and_ops_check():
    """The real probe here (no GPU lent to CI) says cpu, and mmcv's ops run on the CPU."""
    tool = osp.join(REPO, 'tools/env_check.py')
    out = subprocess.run([sys.executable, tool, 'decide'], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    import torch
    expected = 'cuda' if torch.cuda.is_available() else 'cpu'
    assert out.stdout.strip() == expected and '[env_check]' in out.stderr
    out = subprocess.run([sys.executable, tool, 'verify-ops', expected],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert f'mmcv ops run on {expected}' in out.stderr


def test_gpu_machines_get_their_own_cached_environment(tmp_path):
    """A cache shared with CPU machines never hands a GPU machine CPU-only ops."""
    if shutil.which('nvidia-smi'):
        pytest.skip('this machine has nvidia-smi: no CPU-machine key to compare with')
    fake = tmp_path / 'bin'
    fake.mkdir()
    (fake / 'nvidia-smi').write_text('#!/bin/sh\necho "GPU 0: NVIDIA H200 (UUID: GPU-0)"\n')
    (fake / 'nvidia-smi').chmod(0o755)

    def env_path(stack, path):
        env = dict(os.environ, PATH=path, MMWRS_ENV_CACHE=str(tmp_path / 'cache'))
        out = subprocess.run(['bash', osp.join(REPO, 'tools/setup_env.sh'), stack, '--print-env'],
                             env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    plain = os.environ['PATH']
    for stack in ('pinned', 'classic'):
        cpu, gpu = env_path(stack, plain), env_path(stack, f'{fake}:{plain}')
        assert cpu != gpu and cpu.startswith(str(tmp_path / 'cache' / 'env-'))
    assert env_path('pinned', plain) != env_path('classic', plain)
