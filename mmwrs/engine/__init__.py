"""Thin mmengine adapters over :mod:`mmwrs.core` and :mod:`mmwrs.optim`.

Importing this package registers every mmwrs type into mmengine's root
registries, from which the mmdet and mmseg child registries resolve them.
"""
from .hooks import WRSHook
from .param_groups import split_off_params_

__all__ = ['WRSHook', 'split_off_params_']
