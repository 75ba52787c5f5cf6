"""Every fix mmwrs needs for its pinned stack, each with the reason.

Pinned: torch 2.13.0, mmcv 2.1.0, mmengine 0.10.7, mmdet 3.3.0, mmseg 1.2.2.
:func:`apply` is idempotent and runs on ``import mmwrs``.
"""
import contextlib
import functools
import glob
import os.path as osp
import re

import numpy as np
import torch

from .fileio import write_atomic

_applied = False


def _numpy_checkpoint_globals():
    """numpy types mmengine's checkpoints pickle (meta, message hub)."""
    core = getattr(np, '_core', None) or np.core  # numpy 2.x / 1.x
    types = [core.multiarray._reconstruct, core.multiarray.scalar, np.ndarray, np.dtype]
    dtypes = getattr(np, 'dtypes', None)  # the dtype classes of numpy >= 1.25
    if dtypes is not None:
        types += [getattr(dtypes, name) for name in dir(dtypes) if name.endswith('DType')]
    return types


def allow_mmengine_checkpoints() -> None:
    """Let ``torch.load``'s safe mode read mmengine's own checkpoints.

    Why: torch >= 2.6 loads with ``weights_only=True`` by default, and
    mmengine 0.10.7 calls ``torch.load`` without the argument, so resuming
    fails on the ``HistoryBuffer`` and numpy arrays/scalars its checkpoints
    hold (message hub, meta). Found by loading a real Runner checkpoint.
    Instead of turning safe loading off (which would run arbitrary code from
    untrusted files), exactly these data types are allow-listed: a file that
    asks for anything else is still refused.
    """
    from mmengine.logging import HistoryBuffer
    torch.serialization.add_safe_globals([HistoryBuffer, *_numpy_checkpoint_globals()])


_BUILTIN_STATISTICS = ('min', 'max', 'current', 'mean')


def _history_buffer_getstate(self) -> dict:
    """``HistoryBuffer.__getstate__`` without the built-in statistic methods."""
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)
    custom = {name: method for name, method in self._statistics_methods.items()
              if name not in _BUILTIN_STATISTICS}
    if custom:
        state['statistics_methods'] = custom
    return state


def picklable_history_buffers() -> None:
    """Keep function references out of the message hub in checkpoints.

    Why: mmengine 0.10.7's ``HistoryBuffer.__getstate__`` stores the class's
    statistic methods (``HistoryBuffer.min`` ...) in every buffer, which
    pickles as ``getattr(HistoryBuffer, 'min')``; loading that in safe mode
    would need ``getattr`` allow-listed, which would make safe mode unsafe.
    Its ``__setstate__`` restores the built-in methods anyway, so they are left
    out (custom registered methods are still saved, as before).
    """
    from mmengine.logging import HistoryBuffer
    HistoryBuffer.__getstate__ = _history_buffer_getstate


@contextlib.contextmanager
def _without_cuda_set_device():
    set_device = torch.cuda.set_device
    torch.cuda.set_device = lambda device: None
    try:
        yield
    finally:
        torch.cuda.set_device = set_device


def _cpu_safe(init_fn):
    @functools.wraps(init_fn)
    def init(*args, **kwargs):
        if torch.cuda.is_available():
            return init_fn(*args, **kwargs)
        with _without_cuda_set_device():
            return init_fn(*args, **kwargs)
    return init


def cpu_distributed_init() -> None:
    """Let ``--launcher pytorch|slurm`` start on machines without CUDA (gloo).

    Why: mmengine 0.10.7's ``_init_dist_pytorch`` / ``_init_dist_slurm`` call
    ``torch.cuda.set_device(local_rank)`` unconditionally, which fails on a
    CPU build of torch before ``init_process_group`` is reached. Only during
    those two calls, and only without CUDA, ``set_device`` is a no-op.
    """
    from mmengine.dist import utils
    for name in ('_init_dist_pytorch', '_init_dist_slurm'):
        fn = getattr(utils, name)
        if not getattr(fn, '_mmwrs_cpu_safe', False):
            wrapped = _cpu_safe(fn)
            wrapped._mmwrs_cpu_safe = True
            setattr(utils, name, wrapped)


def _atomic_put(self, obj: bytes, filepath) -> None:
    """LocalBackend.put that never leaves a partly written file behind."""
    write_atomic(filepath, obj)


def _numbered_checkpoints(path: str):
    found = []
    for name in glob.glob(osp.join(path, '*.pth')):
        match = re.fullmatch(r'(?:iter|epoch)_(\d+)\.pth', osp.basename(name))
        if match:
            found.append((int(match.group(1)), name))
    return [name for _, name in sorted(found, reverse=True)]


def _robust_find_latest(original):
    @functools.wraps(original)
    def find_latest_checkpoint(path):
        latest = original(path)
        if latest and osp.isfile(latest):
            return latest
        checkpoints = _numbered_checkpoints(path)
        return checkpoints[0] if checkpoints else None
    find_latest_checkpoint._mmwrs = True
    return find_latest_checkpoint


def kill_safe_checkpoints() -> None:
    """A SIGKILL during a save must not cost the run its checkpoints.

    Why: mmengine 0.10.7 writes checkpoints (``LocalBackend.put``) in place, so
    a kill mid-write leaves a truncated ``iter_N.pth``; and ``last_checkpoint``
    is written in place too, so a kill there leaves it empty, and ``--resume
    auto`` then fails (or points at a file that is gone). Checkpoint files are
    now written to a temporary name and renamed (atomic on POSIX), and the
    latest checkpoint falls back to the highest-numbered complete one when
    ``last_checkpoint`` is empty or dangling.
    """
    from mmengine.fileio.backends import local_backend
    from mmengine.runner import checkpoint, runner
    local_backend.LocalBackend.put = _atomic_put
    if not getattr(checkpoint.find_latest_checkpoint, '_mmwrs', False):
        robust = _robust_find_latest(checkpoint.find_latest_checkpoint)
        checkpoint.find_latest_checkpoint = robust
        runner.find_latest_checkpoint = robust


def apply() -> None:
    """Apply every fix once."""
    global _applied
    if _applied:
        return
    allow_mmengine_checkpoints()
    picklable_history_buffers()
    cpu_distributed_init()
    kill_safe_checkpoints()
    _applied = True
