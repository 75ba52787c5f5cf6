"""Swap the update rule of the optimizer a stock config built."""
import copy
from typing import Optional

from mmengine.hooks import Hook
from mmengine.registry import HOOKS, OPTIMIZERS

from mmwrs.core.validation import check_min

from ..param_groups import reindex_schedulers_
from ..runner_utils import is_training_run, optim_wrappers_of, schedulers_of


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
        if lr is not None:
            check_min('ReplaceOptimizerHook: lr', lr, 0.0, inclusive=False)
        self.optimizer_cfg = copy.deepcopy(optimizer)
        self.lr = lr

    def before_run(self, runner) -> None:
        if not is_training_run(runner):
            return
        for name, wrapper in optim_wrappers_of(runner).items():
            old = wrapper.optimizer
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
            wrapper.optimizer = new
            reindex_schedulers_(schedulers_of(runner, name), new.param_groups,
                                lambda scheduler: _initial_values(scheduler, new.param_groups))
            runner.logger.info(f'ReplaceOptimizerHook: {type(old).__name__} -> '
                               f'{type(new).__name__} ({len(new.param_groups)} param '
                               f'groups kept, options {options}'
                               + (f', base lr x{ratio:g}' if ratio != 1.0 else '') + ')')


def _initial_values(scheduler, param_groups) -> Optional[list]:
    """The schedule's base values of the rebuilt groups: their ``initial_*``
    values, when every group has one (mmengine sets them at scheduler build)."""
    key = 'initial_' + scheduler.param_name
    if all(key in group for group in param_groups):
        return [group[key] for group in param_groups]
    return None
