"""Registers the framework-free optimizers of :mod:`mmwrs.optim` into mmengine."""
from mmengine.registry import OPTIMIZERS

from mmwrs.optim import SGDP, AdamP

for _optimizer in (SGDP, AdamP):
    OPTIMIZERS.register_module(module=_optimizer)
