"""The versions mmwrs supports, and each fix it applies, only where it is needed.

``import mmwrs`` calls :func:`check_versions` (one clear error outside the
supported ranges) and :func:`apply` (the fixes a user's own runs need, e.g.
mmdet's ``tools/train.py`` with ``custom_imports=['mmwrs']``). mmwrs's own
``tools/train.py`` and ``tools/test.py`` also call :func:`apply_tool_fixes`
(fixes for what those tools promise: kill-safe checkpoints, CPU launchers).

Every fix states why and for which versions; a fix applies only when the
installed version is one it was written for (and, where it can be told, one
that still needs it). Tested stacks: torch 2.13.0 + mmengine 0.10.7 (pinned)
and torch 2.1.2 + mmengine 0.10.3 (classic), both with mmcv 2.1.0, mmdet 3.3.0
and mmsegmentation 1.2.2.
"""
import contextlib
import functools
import glob
import inspect
import os.path as osp
import re

from ..fileio import write_atomic
from .versions import (SUPPORTED, check_versions, in_range,  # noqa: F401  (public names)
                       installed_version, version_tuple)

_applied = False
_tool_fixes_applied = False


# ---------------------------------------------------------------------------
# Fixes applied by `import mmwrs`
# ---------------------------------------------------------------------------

def _numpy_checkpoint_globals():
    """numpy types mmengine's checkpoints pickle (meta, message hub)."""
    import numpy as np
    core = getattr(np, '_core', None) or np.core  # numpy 2.x / 1.x
    types = [core.multiarray._reconstruct, core.multiarray.scalar, np.ndarray, np.dtype]
    dtypes = getattr(np, 'dtypes', None)  # the dtype classes of numpy >= 1.25
    if dtypes is not None:
        types += [getattr(dtypes, name) for name in dir(dtypes) if name.endswith('DType')]
    return types


def needs_checkpoint_allow_list(torch_version: str, mmengine_loader_source: str) -> bool:
    """Whether torch's safe loading will meet mmengine's checkpoints.

    True for torch >= 2.6 (``torch.load`` defaults to ``weights_only=True``)
    with an mmengine whose loader calls ``torch.load`` without saying
    ``weights_only`` (mmengine 0.10.x up to at least 0.10.7).
    """
    return in_range(torch_version, '2.6.0') and 'weights_only' not in mmengine_loader_source


def allow_mmengine_checkpoints() -> bool:
    """Let ``torch.load``'s safe mode read mmengine's own checkpoints.

    Why: torch >= 2.6 loads with ``weights_only=True`` by default, and
    mmengine 0.10.7 calls ``torch.load`` without the argument, so resuming
    fails on the ``HistoryBuffer`` and numpy arrays/scalars its checkpoints
    hold (message hub, meta). Found by loading a real Runner checkpoint.
    Instead of turning safe loading off (which would run arbitrary code from
    untrusted files), exactly these data types are allow-listed: a file that
    asks for anything else is still refused.
    Versions: applied only where :func:`needs_checkpoint_allow_list` says so;
    on torch < 2.6 (no safe default; ``add_safe_globals`` is missing before
    2.4) nothing is done.

    Returns:
        Whether the allow-list was applied.
    """
    import torch
    from mmengine.runner import checkpoint
    try:
        source = inspect.getsource(checkpoint.load_from_local)
    except (OSError, TypeError):  # no source (e.g. a zipped install): assume it needs it
        source = ''
    if not needs_checkpoint_allow_list(torch.__version__, source):
        return False
    from mmengine.logging import HistoryBuffer
    torch.serialization.add_safe_globals([HistoryBuffer, *_numpy_checkpoint_globals()])
    return True


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


def picklable_history_buffers() -> bool:
    """Keep function references out of the message hub in checkpoints.

    Why: mmengine 0.10.x's ``HistoryBuffer.__getstate__`` stores the class's
    statistic methods (``HistoryBuffer.min`` ...) in every buffer, which
    pickles as ``getattr(HistoryBuffer, 'min')``; loading that in torch >= 2.6's
    safe mode would need ``getattr`` allow-listed, which would make safe mode
    unsafe. Its ``__setstate__`` restores the built-in methods anyway, so they
    are left out (custom registered methods are still saved, as before).
    Versions: mmengine 0.10.x (written for 0.10.7's ``__getstate__``, the same
    in 0.10.3); applied on any torch, because a checkpoint written on torch
    2.1 may be resumed on torch >= 2.6.

    Returns:
        Whether the fix was applied.
    """
    import mmengine
    if not in_range(mmengine.__version__, '0.10.0', '0.11.0'):
        return False
    from mmengine.logging import HistoryBuffer
    HistoryBuffer.__getstate__ = _history_buffer_getstate
    return True


def apply() -> None:
    """Apply the fixes every run with mmwrs needs (``import mmwrs`` calls this), once."""
    global _applied
    if _applied:
        return
    allow_mmengine_checkpoints()
    picklable_history_buffers()
    from ..resume_guard import guard_resume
    guard_resume()
    _applied = True


# ---------------------------------------------------------------------------
# Fixes applied by mmwrs's own tools (tools/train.py, tools/test.py)
# ---------------------------------------------------------------------------

@contextlib.contextmanager
def _without_cuda_set_device():
    import torch
    set_device = torch.cuda.set_device
    torch.cuda.set_device = lambda device: None
    try:
        yield
    finally:
        torch.cuda.set_device = set_device


def _cpu_safe(init_fn):
    @functools.wraps(init_fn)
    def init(*args, **kwargs):
        import torch
        if torch.cuda.is_available():
            return init_fn(*args, **kwargs)
        with _without_cuda_set_device():
            return init_fn(*args, **kwargs)
    return init


def cpu_distributed_init() -> bool:
    """Let ``--launcher pytorch|slurm`` start on machines without CUDA (gloo).

    Why: mmengine 0.10.x's ``_init_dist_pytorch`` / ``_init_dist_slurm`` call
    ``torch.cuda.set_device(local_rank)`` unconditionally, which fails on a
    CPU build of torch before ``init_process_group`` is reached. Only during
    those two calls, and only without CUDA, ``set_device`` is a no-op.
    Versions: mmengine 0.10.x. Applied by mmwrs's tools (``tools/dist_train.sh``,
    ``tools/slurm_train.sh`` on CPU machines), not by ``import mmwrs``.
    """
    import mmengine
    if not in_range(mmengine.__version__, '0.10.0', '0.11.0'):
        return False
    from mmengine.dist import utils
    for name in ('_init_dist_pytorch', '_init_dist_slurm'):
        fn = getattr(utils, name)
        if not getattr(fn, '_mmwrs_cpu_safe', False):
            wrapped = _cpu_safe(fn)
            wrapped._mmwrs_cpu_safe = True
            setattr(utils, name, wrapped)
    return True


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


def kill_safe_checkpoints() -> bool:
    """A SIGKILL during a save must not cost the run its checkpoints.

    Why: mmengine 0.10.x writes checkpoints (``LocalBackend.put``) in place, so
    a kill mid-write leaves a truncated ``iter_N.pth``; and ``last_checkpoint``
    is written in place too, so a kill there leaves it empty, and ``--resume
    auto`` then fails (or points at a file that is gone). Checkpoint files are
    now written to a temporary name and renamed (atomic on POSIX), and the
    latest checkpoint falls back to the highest-numbered complete one when
    ``last_checkpoint`` is empty or dangling.
    Versions: mmengine 0.10.x. Applied by mmwrs's tools (what the resumable
    sweeps and Slurm scripts rely on), not by ``import mmwrs``.
    """
    import mmengine
    if not in_range(mmengine.__version__, '0.10.0', '0.11.0'):
        return False
    from mmengine.fileio.backends import local_backend
    from mmengine.runner import checkpoint, runner
    local_backend.LocalBackend.put = _atomic_put
    if not getattr(checkpoint.find_latest_checkpoint, '_mmwrs', False):
        robust = _robust_find_latest(checkpoint.find_latest_checkpoint)
        checkpoint.find_latest_checkpoint = robust
        runner.find_latest_checkpoint = robust
    return True


def apply_tool_fixes() -> None:
    """The fixes mmwrs's own tools need on top of :func:`apply`, once."""
    global _tool_fixes_applied
    apply()
    if _tool_fixes_applied:
        return
    cpu_distributed_init()
    kill_safe_checkpoints()
    _tool_fixes_applied = True
