"""Move chosen parameters into param groups of their own, after the fact.

Overlays compose with stock configs through ``_base_``, and mmengine rejects a
key defined in two bases, so an overlay cannot touch ``optim_wrapper``. The
regularizer hooks therefore reshape the optimizer the stock config built: each
group that holds chosen parameters is split in two (the rest keep the group's
settings; the chosen ones get overrides such as ``weight_decay=0``), and the LR
and momentum schedulers, which were built earlier and index groups by position,
are re-indexed to match. Runs in ``before_run``: before the first step and
before a resumed optimizer state is loaded, so the saved state matches.
"""
from typing import Any, Dict, Iterable, List, Sequence

import torch
from mmengine.optim import OptimWrapperDict


def optimizers_of(runner, wrappers: bool = False) -> Dict[str, Any]:
    """The runner's torch optimizers (or, with ``wrappers``, their mmengine
    wrappers) by name ('' when there is only one)."""
    wrapper = runner.optim_wrapper
    found = dict(wrapper.items()) if isinstance(wrapper, OptimWrapperDict) else {'': wrapper}
    return found if wrappers else {name: w.optimizer for name, w in found.items()}


def schedulers_of(runner, name: str) -> List[Any]:
    schedulers = getattr(runner, 'param_schedulers', None) or []
    if isinstance(schedulers, dict):
        schedulers = schedulers.get(name, [])
    return list(schedulers)


def split_off_params_(optimizer: torch.optim.Optimizer,
                      chosen: Iterable[torch.nn.Parameter],
                      overrides: Dict[str, Any],
                      schedulers: Sequence[Any] = ()) -> int:
    """Give ``chosen`` parameters groups of their own with ``overrides`` applied.

    Args:
        optimizer: The optimizer; must not have stepped yet.
        chosen: Parameters to move.
        overrides: Group settings for the moved parameters, e.g.
            ``{'weight_decay': 0.0}``; keys the group lacks are left out.
        schedulers: mmengine param schedulers of this optimizer, re-indexed.

    Returns:
        int: How many parameters were moved.
    """
    if optimizer.state:
        raise RuntimeError('param groups can only be changed before the first '
                           'optimizer step')
    chosen_ids = {id(p) for p in chosen}
    new_groups, origin, moved = [], [], 0
    for index, group in enumerate(optimizer.param_groups):
        mine = [p for p in group['params'] if id(p) in chosen_ids]
        rest = [p for p in group['params'] if id(p) not in chosen_ids]
        if rest:
            new_groups.append({**group, 'params': rest})
            origin.append((index, False))
        if mine:
            applied = {k: v for k, v in overrides.items() if k in group}
            new_groups.append({**group, **applied, 'params': mine})
            origin.append((index, True))
            moved += len(mine)
    optimizer.param_groups.clear()
    for group in new_groups:
        optimizer.add_param_group(group)
    for scheduler in schedulers:
        name = scheduler.param_name
        scheduler.base_values = [
            overrides[name] if is_mine and name in overrides else scheduler.base_values[i]
            for i, is_mine in origin]
        scheduler._last_value = [g[name] for g in optimizer.param_groups]
    return moved
