"""Let torch's safe loading (torch >= 2.6) read mmengine 0.10's own checkpoints."""
import inspect

from .patching import version_fix
from .versions import in_range


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


def _mmengine_loader_needs_it() -> bool:
    import torch
    from mmengine.runner import checkpoint
    try:
        source = inspect.getsource(checkpoint.load_from_local)
    except (OSError, TypeError):  # no source (e.g. a zipped install): assume it needs it
        source = ''
    return needs_checkpoint_allow_list(torch.__version__, source)


@version_fix('torch', '2.6.0', needed=_mmengine_loader_needs_it)
def allow_mmengine_checkpoints() -> None:
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
    """
    import torch
    from mmengine.logging import HistoryBuffer
    torch.serialization.add_safe_globals([HistoryBuffer, *_numpy_checkpoint_globals()])
