"""Which mmcv ops ``tools/setup_env.sh`` may build on this machine, and a check of them.

mmcv's ``setup.py`` compiles its CUDA ops whenever torch sees a GPU, whatever
``FORCE_CUDA`` says, and that needs an ``nvcc`` whose CUDA major version matches
the one torch was built with (torch's ``cpp_extension`` refuses a different
major, and only warns about a different minor). Without one the compiler fails
after minutes; with CPU ops only, a detector training on the GPU fails later at
RoIAlign. So the set-up decides first, from what is found here:

    python tools/env_check.py decide      # prints cuda|cpu; exit 2: stop (reason on stderr)
    python tools/env_check.py verify-ops cuda|cpu   # runs mmcv's RoIAlign on the device

:func:`decide` holds the rules and takes the facts as arguments, so that it is
tested on machines without a GPU; :func:`probe` gathers the facts.
"""
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
from typing import NamedTuple, Optional

README_HINT = ("or install mmwrs into an OpenMMLab environment you already have "
               "(README: 'Use mmwrs in your existing OpenMMLab environment': "
               "pip install 'mmwrs[det]' or 'mmwrs[seg]')")


class Decision(NamedTuple):
    """What to build: ``action`` is ``'cuda'``, ``'cpu'`` or ``'stop'``."""

    action: str
    message: str


def nvcc_release(nvcc_output: Optional[str]) -> Optional[str]:
    """The ``major.minor`` release in ``nvcc --version`` output, or None."""
    if not nvcc_output:
        return None
    match = re.search(r'release (\d+)\.(\d+)', nvcc_output)
    return f'{match.group(1)}.{match.group(2)}' if match else None


def decide(gpu_listed: bool, cuda_available: bool, torch_version: str,
           torch_cuda: Optional[str], nvcc_output: Optional[str],
           nvcc_path: Optional[str] = None) -> Decision:
    """Decide which mmcv ops to build.

    Args:
        gpu_listed: ``nvidia-smi -L`` lists at least one GPU.
        cuda_available: ``torch.cuda.is_available()`` in the new environment.
        torch_version: ``torch.__version__``.
        torch_cuda: ``torch.version.cuda`` (None for a CPU or ROCm build).
        nvcc_output: What ``nvcc --version`` printed, or None when no nvcc
            was found.
        nvcc_path: Where that nvcc is (for the messages).

    Returns:
        ``Decision('cuda', ...)`` to build CUDA ops, ``Decision('cpu', ...)``
        to build CPU ops (the demo then trains on the CPU, where torch sees no
        GPU), or ``Decision('stop', ...)`` with what is missing and what to do.
    """
    if not cuda_available:
        if gpu_listed and torch_cuda:
            return Decision('stop', (
                f'nvidia-smi lists a GPU, but torch {torch_version} (built for CUDA '
                f'{torch_cuda}) cannot use it: torch.cuda.is_available() is False, '
                f'usually an NVIDIA driver older than CUDA {torch_cuda} needs. mmcv '
                'with CPU ops would leave an environment that cannot train on that GPU. '
                f'Update the driver (nvidia-smi shows the CUDA version it supports), '
                f'or hide the GPU on purpose with CUDA_VISIBLE_DEVICES= for a CPU-only '
                f'environment, {README_HINT}.'))
        note = ''
        if gpu_listed:
            note = (f' nvidia-smi lists a GPU, but torch {torch_version} is a CPU build: '
                    'this stack trains on the CPU; for the GPU use a CUDA build of torch '
                    f'(STACK=classic), {README_HINT}.')
        return Decision('cpu', 'torch sees no GPU: building mmcv with CPU ops; the '
                        'demo trains on the CPU.' + note)
    if not torch_cuda:
        return Decision('stop', (
            f'torch {torch_version} sees a GPU but is not a CUDA build (ROCm?): '
            f'tools/setup_env.sh builds mmcv for CUDA or CPU only; {README_HINT}.'))
    need = torch_cuda.split('.')[0]
    release = nvcc_release(nvcc_output)
    if release is None:
        found = (f'{nvcc_path} printed no CUDA release' if nvcc_output is not None
                 else 'no nvcc was found (CUDA_HOME, CUDA_PATH, PATH, /usr/local/cuda)')
        return Decision('stop', (
            f'torch {torch_version} sees a GPU, so mmcv\'s setup.py compiles CUDA ops, '
            f'which needs nvcc from a CUDA {torch_cuda} toolkit (any {need}.x); {found}. '
            f'Install the CUDA {torch_cuda} toolkit and put its bin/ on PATH or set '
            f'CUDA_HOME, then rerun; {README_HINT}. Nothing was compiled.'))
    if release.split('.')[0] != need:
        return Decision('stop', (
            f'torch {torch_version} was built for CUDA {torch_cuda}, but {nvcc_path or "nvcc"} '
            f'is CUDA {release}: torch refuses to compile extensions across CUDA major '
            f'versions. Install a CUDA {need}.x toolkit (ideally {torch_cuda}) and point '
            f'CUDA_HOME at it, then rerun; {README_HINT}. Nothing was compiled.'))
    note = '' if release == torch_cuda else (
        f' (nvcc {release} vs torch\'s {torch_cuda}: same major, which torch accepts)')
    return Decision('cuda', f'torch sees a GPU: building mmcv with CUDA ops using '
                    f'{nvcc_path or "nvcc"} (CUDA {release}){note}; the demo trains on '
                    'the GPU.')


def find_nvcc() -> Optional[str]:
    """nvcc where torch's ``cpp_extension`` looks for CUDA_HOME."""
    for home in (os.environ.get('CUDA_HOME'), os.environ.get('CUDA_PATH')):
        if home and osp.isfile(osp.join(home, 'bin', 'nvcc')):
            return osp.join(home, 'bin', 'nvcc')
    found = shutil.which('nvcc')
    if found:
        return found
    default = '/usr/local/cuda/bin/nvcc'
    return default if osp.isfile(default) else None


def _run(command) -> Optional[str]:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout if result.returncode == 0 else None


def probe() -> dict:
    """The facts :func:`decide` needs, read off this machine and this torch."""
    import torch
    listed = _run(['nvidia-smi', '-L']) if shutil.which('nvidia-smi') else None
    nvcc = find_nvcc()
    return dict(gpu_listed=bool(listed and 'GPU' in listed),
                cuda_available=torch.cuda.is_available(),
                torch_version=torch.__version__, torch_cuda=torch.version.cuda,
                nvcc_output=_run([nvcc, '--version']) if nvcc else None, nvcc_path=nvcc)


def verify_ops(device: str) -> str:
    """Run mmcv's compiled RoIAlign on ``device``; raise if the ops lack it."""
    import torch
    from mmcv.ops import roi_align
    features = torch.arange(16.0, device=device).reshape(1, 1, 4, 4)
    rois = torch.tensor([[0.0, 0.0, 0.0, 3.0, 3.0]], device=device)
    out = roi_align(features, rois, (2, 2), 1.0, 2, 'avg', True)
    if out.shape != (1, 1, 2, 2) or not torch.isfinite(out).all():
        raise RuntimeError(f'mmcv RoIAlign on {device} returned {out}')
    return f'mmcv ops run on {device}'


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ['decide']:
        decision = decide(**probe())
        print(f'[env_check] {decision.message}', file=sys.stderr)
        if decision.action == 'stop':
            return 2
        print(decision.action)
        return 0
    if argv[:1] == ['verify-ops'] and len(argv) == 2 and argv[1] in ('cpu', 'cuda'):
        print(f'[env_check] {verify_ops(argv[1])}', file=sys.stderr)
        return 0
    print(__doc__, file=sys.stderr)
    return 1


if __name__ == '__main__':
    sys.exit(main())
