"""Registers :class:`DumpWeightsHook` in a training subprocess of a test.

Only for ``custom_imports`` of the configs that tests run with tools/train.py
(their ``PYTHONPATH`` holds this folder); in-process tests use the
``dump_weights_hook`` fixture instead.
"""
from mmengine.registry import HOOKS

from dump_weights_hook import DumpWeightsHook

HOOKS.register_module(module=DumpWeightsHook)
