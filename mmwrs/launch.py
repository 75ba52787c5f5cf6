"""What tools/train.py and tools/test.py share: config loading and checks."""
import os
import os.path as osp
import warnings
from typing import Optional

import torch
from mmengine.config import Config, DictAction  # noqa: F401  (re-exported for the CLIs)
from mmengine.registry import OPTIM_WRAPPERS

CODEBASES = ('mmdet', 'mmseg')


def register_codebase(cfg: Config) -> str:
    """Register mmdet's or mmseg's modules, chosen by the config's default scope."""
    scope = cfg.get('default_scope')
    if scope not in CODEBASES:
        raise ValueError(f"default_scope must be one of {CODEBASES} (inherit a stock "
                         f"mmdet:: or mmseg:: config), got {scope!r}")
    if scope == 'mmdet':
        from mmdet.utils import register_all_modules
    else:
        from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    return scope


def amp_wrapper_type(wrapper_type) -> str:
    """The optimizer-wrapper type to use under ``--amp``.

    ``OptimWrapper`` (or none) becomes ``AmpOptimWrapper``; an AMP-capable
    wrapper is kept; any other type is an error naming it, instead of being
    silently overwritten (what mmdet's train.py does); a wrapper naming its
    AMP form in ``amp_type`` (``WRSOptimWrapper``) becomes that form.

    Raises:
        ValueError: The wrapper type cannot do AMP.
    """
    from mmengine.optim import AmpOptimWrapper
    if wrapper_type in (None, 'OptimWrapper'):
        return 'AmpOptimWrapper'
    cls = OPTIM_WRAPPERS.get(wrapper_type) if isinstance(wrapper_type, str) else wrapper_type
    if isinstance(cls, type) and issubclass(cls, AmpOptimWrapper):
        return wrapper_type
    if getattr(cls, 'amp_type', None):  # e.g. WRSOptimWrapper -> AmpWRSOptimWrapper
        return cls.amp_type
    raise ValueError(f'--amp: optim_wrapper.type={wrapper_type!r} is not an AMP '
                     "wrapper and would be replaced; use 'OptimWrapper' (it becomes "
                     "'AmpOptimWrapper') or an AmpOptimWrapper subclass")


def apply_amp(cfg: Config) -> None:
    """Turn on mixed precision (dynamic loss scaling) for ``cfg``.

    Raises:
        RuntimeError: No CUDA device (mmengine's AmpOptimWrapper needs one).
        ValueError: See :func:`amp_wrapper_type`.
    """
    if not torch.cuda.is_available():
        raise RuntimeError('--amp needs a CUDA device: mmengine 0.10.7\'s '
                           'AmpOptimWrapper uses torch.cuda.amp and refuses to run '
                           'on CPU. Drop --amp to train in float32 on this machine.')
    wrapper = cfg.optim_wrapper
    old = wrapper.get('type', 'OptimWrapper')
    wrapper.type = amp_wrapper_type(old)
    if wrapper.type != old:
        wrapper.setdefault('loss_scale', 'dynamic')
    else:
        warnings.warn(f'--amp: optim_wrapper.type is already {old}; kept as is')


def load_config(path: str, cfg_options: Optional[dict], work_dir: Optional[str]) -> Config:
    """Load a config, apply ``--cfg-options`` and pick the work dir."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file not found: {path}')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(path))[0])
    return cfg


def prepare_launcher(cfg: Config, launcher: str) -> None:
    """Set the launcher; on machines without CUDA, wrap DDP for CPU modules.

    mmengine gives its DDP wrapper ``device_ids=[LOCAL_RANK]`` unless the
    config names them, and DDP refuses device ids for CPU modules.
    """
    cfg.launcher = launcher
    if launcher != 'none' and not torch.cuda.is_available() \
            and cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None,
                                     broadcast_buffers=False)


def set_local_rank(local_rank: int) -> None:
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(local_rank)
