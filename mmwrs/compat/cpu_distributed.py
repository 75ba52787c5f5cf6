"""Let mmengine 0.10's ``--launcher pytorch|slurm`` start on machines without CUDA (gloo)."""
import contextlib
import functools

from .patching import version_fix


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


@version_fix('mmengine', '0.10.0', '0.11.0')
def cpu_distributed_init() -> None:
    """Let ``--launcher pytorch|slurm`` start on machines without CUDA (gloo).

    Why: mmengine 0.10.x's ``_init_dist_pytorch`` / ``_init_dist_slurm`` call
    ``torch.cuda.set_device(local_rank)`` unconditionally, which fails on a
    CPU build of torch before ``init_process_group`` is reached. Only during
    those two calls, and only without CUDA, ``set_device`` is a no-op.
    Versions: mmengine 0.10.x. Applied by mmwrs's tools (``tools/dist_train.sh``,
    ``tools/slurm_train.sh`` on CPU machines), not by ``import mmwrs``.
    """
    from mmengine.dist import utils
    for name in ('_init_dist_pytorch', '_init_dist_slurm'):
        setattr(utils, name, _cpu_safe(getattr(utils, name)))
