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


def apply_amp(cfg: Config) -> None:
    """Turn on mixed precision without replacing another wrapper type.

    ``OptimWrapper`` (or none) becomes ``AmpOptimWrapper`` with dynamic loss
    scaling; an AMP-capable wrapper is kept; any other type is an error
    naming it, instead of being silently overwritten (mmdet's behaviour).
    The mmwrs regularizers are hooks on the optimizer, so they work with it.

    Raises:
        RuntimeError: No CUDA device (mmengine's AmpOptimWrapper needs one).
        ValueError: The config's wrapper type cannot do AMP.
    """
    if not torch.cuda.is_available():
        raise RuntimeError('--amp needs a CUDA device: mmengine 0.10.7\'s '
                           'AmpOptimWrapper uses torch.cuda.amp and refuses to run '
                           'on CPU. Drop --amp to train in float32 on this machine.')
    from mmengine.optim import AmpOptimWrapper
    wrapper = cfg.optim_wrapper
    wrapper_type = wrapper.get('type', 'OptimWrapper')
    if wrapper_type == 'OptimWrapper':
        wrapper.type = 'AmpOptimWrapper'
        wrapper.setdefault('loss_scale', 'dynamic')
        return
    cls = OPTIM_WRAPPERS.get(wrapper_type) if isinstance(wrapper_type, str) else wrapper_type
    if cls is not None and issubclass(cls, AmpOptimWrapper):
        warnings.warn(f'--amp: optim_wrapper.type is already {wrapper_type}; kept as is')
        return
    raise ValueError(f'--amp: optim_wrapper.type={wrapper_type!r} is not an AMP '
                     "wrapper and would be replaced; use 'OptimWrapper' (it becomes "
                     "'AmpOptimWrapper') or an AmpOptimWrapper subclass")


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


def set_local_rank(local_rank: int) -> None:
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(local_rank)
