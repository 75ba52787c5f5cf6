"""Swap the update rule of the optimizer a stock config built."""
import copy
from typing import Optional

from mmengine.hooks import Hook
from mmengine.registry import HOOKS, OPTIMIZERS
from mmengine.runner import BaseLoop

from ..param_groups import optimizers_of, schedulers_of


@HOOKS.register_module()
class ReplaceOptimizerHook(Hook):
    """Replace the optimizer class while keeping its groups and schedules.

    Overlays compose with stock configs through ``_base_``, where mmengine
    forbids redefining ``optim_wrapper``; this hook is how an overlay turns the
    stock SGD into SGDP (or AdamP). Every param group keeps its parameters and
    settings (lr multipliers from ``paramwise_cfg``, decay, momentum) and gets
    the new optimizer's own options; the LR schedule keeps running, since
    mmengine's schedulers drive the optimizer wrapper, not the optimizer.

    Args:
        optimizer (dict): ``type`` and the options of the new optimizer, e.g.
            ``dict(type='SGDP', delta=0.1, wd_ratio=0.1)``. Group settings it
            names (``weight_decay``, ``betas``...) replace the old ones.
        lr (float, optional): A new base learning rate. Every group's lr (and
            the schedulers' base values) is scaled by ``lr / old base lr``, so
            per-group multipliers survive.
    """

    priority = 'VERY_HIGH'

    def __init__(self, optimizer: dict, lr: Optional[float] = None):
        if not isinstance(optimizer, dict) or 'type' not in optimizer:
            raise ValueError('ReplaceOptimizerHook: optimizer must be a dict with a '
                             f"'type', e.g. dict(type='SGDP'), got {optimizer!r}")
        optimizer_type = optimizer['type']
        if isinstance(optimizer_type, str) and OPTIMIZERS.get(optimizer_type) is None:
            raise ValueError(f'ReplaceOptimizerHook: unknown optimizer type '
                             f'{optimizer_type!r}; registered: see mmengine OPTIMIZERS')
        if lr is not None and not lr > 0:
            raise ValueError(f'ReplaceOptimizerHook: lr must be > 0, got {lr!r}')
        self.optimizer_cfg = copy.deepcopy(optimizer)
        self.lr = lr

    def before_run(self, runner) -> None:
        if not isinstance(getattr(runner, '_train_loop', None), BaseLoop):
            return
        wrapper = runner.optim_wrapper
        wrappers = dict(wrapper.items()) if hasattr(wrapper, 'items') else {'': wrapper}
        for name, old in optimizers_of(runner).items():
            options = {k: v for k, v in self.optimizer_cfg.items() if k != 'type'}
            ratio = self.lr / old.defaults['lr'] if self.lr is not None else 1.0
            groups = []
            for group in old.param_groups:
                group = {**group, **options}
                group['lr'] = group['lr'] * ratio
                if 'initial_lr' in group:
                    group['initial_lr'] = group['initial_lr'] * ratio
                groups.append(group)
            optimizer_cls = OPTIMIZERS.get(self.optimizer_cfg['type'])
            defaults = dict(options, lr=old.defaults['lr'] * ratio)
            new = optimizer_cls(groups, **defaults)
            wrappers[name].optimizer = new
            for scheduler in schedulers_of(runner, name):
                key = 'initial_' + scheduler.param_name
                if all(key in g for g in new.param_groups):
                    scheduler.base_values = [g[key] for g in new.param_groups]
                scheduler._last_value = [g[scheduler.param_name] for g in new.param_groups]
            runner.logger.info(f'ReplaceOptimizerHook: {type(old).__name__} -> '
                               f'{type(new).__name__} ({len(new.param_groups)} param '
                               f'groups kept, options {options}'
                               + (f', base lr x{ratio:g}' if ratio != 1.0 else '') + ')')

