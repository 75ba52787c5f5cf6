"""Set-ups where WRS cannot reach the weights it rescales: a clear error at start.

WRS multiplies the model's parameter tensors in place after each update. Three
common large-model set-ups keep the weights that matter somewhere else, so the
rescale would be lost without a sound:

* FSDP (torch's ``FullyShardedDataParallel``, mmengine's
  ``MMFullyShardedDataParallel``, ``fully_shard``'s DTensor parameters): the
  parameters are flattened and sharded; each rank holds a slice of a flat
  buffer, not the filters whose norms WRS holds.
* DeepSpeed (``MMDeepSpeedEngineWrapper``, ``DeepSpeedOptimWrapper``): the
  engine owns fp32 master weights (ZeRO partitions them) and copies them back
  into the model after each step, over the rescale.
* apex AMP O2/O3 (``ApexOptimWrapper``): the optimizer steps fp32 master copies
  and copies them into the fp16 model weights, over the rescale. O1 patches
  functions only and leaves the parameters alone.
"""
from typing import Iterable, Optional

from torch import nn

# By class name: importing FSDP, DeepSpeed or apex just to test for them would
# cost start-up time or fail where they are not installed.
SHARDED_MODEL_TYPES = {
    'FullyShardedDataParallel': 'FSDP', 'MMFullyShardedDataParallel': 'FSDP',
    'FSDPModule': 'FSDP (fully_shard)', 'MMDeepSpeedEngineWrapper': 'DeepSpeed',
    'DeepSpeedEngine': 'DeepSpeed'}
MASTER_WEIGHT_WRAPPERS = {'DeepSpeedOptimWrapper': 'DeepSpeed', 'ApexOptimWrapper': 'apex AMP'}
APEX_SAFE_LEVELS = ('O0', 'O1')


def _class_names(obj) -> Iterable[str]:
    return (cls.__name__ for cls in type(obj).__mro__)


def unsupported_setup(model: nn.Module, optim_wrapper=None) -> Optional[str]:
    """What about this model / optimizer wrapper WRS cannot work with, or ``None``."""
    for module in model.modules():
        for name in _class_names(module):
            if name in SHARDED_MODEL_TYPES:
                return f'{SHARDED_MODEL_TYPES[name]} ({name} wraps {type(module).__name__})'
    for name, param in model.named_parameters():
        if any(cls == 'DTensor' for cls in _class_names(param)):
            return f'sharded DTensor parameters (FSDP fully_shard / tensor parallel: {name})'
    for name in _class_names(optim_wrapper) if optim_wrapper is not None else ():
        if name not in MASTER_WEIGHT_WRAPPERS:
            continue
        level = getattr(optim_wrapper, 'opt_level', None)
        if name == 'ApexOptimWrapper' and level in APEX_SAFE_LEVELS:
            return None
        return (f'{MASTER_WEIGHT_WRAPPERS[name]} master weights '
                f"({name}{f', opt_level={level!r}' if level else ''})")
    return None


def check_supported_setup(model: nn.Module, optim_wrapper=None, owner: str = 'WRS') -> None:
    """Raise ``RuntimeError`` at start for a set-up the rescale would not reach.

    Raises:
        RuntimeError: Naming the set-up, why, and what works instead.
    """
    found = unsupported_setup(model, optim_wrapper)
    if found:
        raise RuntimeError(
            f'{owner}: {found} is not supported: WRS rescales the model\'s parameter '
            'tensors in place, and this set-up keeps the weights elsewhere (sharded flat '
            'buffers or master copies written back after each step), so the rescale '
            'would be lost silently. Use DDP (MMDistributedDataParallel) with '
            "AmpOptimWrapper (or optim_wrapper.type='AmpWRSOptimWrapper') for mixed "
            'precision, or apex opt_level O1.')
