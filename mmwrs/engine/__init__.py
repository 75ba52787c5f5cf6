"""Thin mmengine adapters over :mod:`mmwrs.core` and :mod:`mmwrs.optim`.

Importing this package registers every mmwrs type into mmengine's root
registries, from which the mmdet and mmseg child registries resolve them.
"""
from . import registry  # noqa: F401  (SGDP, AdamP into OPTIMIZERS)
from .constructors import EpsShiftedL2OptimWrapperConstructor, WRSOptimWrapperConstructor
from .hooks import (EpsShiftedL2Hook, FixNormHook, NormMonitorHook, ReplaceOptimizerHook,
                    WeightStandardizationHook, WRSHook)
from .optim_wrappers import AmpWRSOptimWrapper, WRSOptimWrapper
from .param_groups import split_off_params_

__all__ = [
    'WRSHook', 'FixNormHook', 'EpsShiftedL2Hook', 'ReplaceOptimizerHook', 'NormMonitorHook',
    'WeightStandardizationHook', 'split_off_params_', 'WRSOptimWrapperConstructor',
    'WRSOptimWrapper', 'AmpWRSOptimWrapper', 'EpsShiftedL2OptimWrapperConstructor'
]
