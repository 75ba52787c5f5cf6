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
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import torch


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

    def base_values(scheduler) -> List[Any]:
        key = scheduler.param_name
        return [overrides[key] if is_mine and key in overrides else scheduler.base_values[i]
                for i, is_mine in origin]

    reindex_schedulers_(schedulers, optimizer.param_groups, base_values)
    return moved


def reindex_schedulers_(schedulers: Iterable[Any], param_groups: Sequence[Dict[str, Any]],
                        base_values: Callable[[Any], Optional[List[Any]]]) -> None:
    """Make mmengine param schedulers match param groups rebuilt after them.

    mmengine's schedulers keep one base value and one last value per param
    group, by position; both must follow when groups are split or replaced.

    Args:
        schedulers: The schedulers of the optimizer whose groups changed.
        param_groups: Its new param groups.
        base_values: Gives a scheduler's new ``base_values`` (one per group),
            or None to keep the ones it has.
    """
    for scheduler in schedulers:
        values = base_values(scheduler)
        if values is not None:
            scheduler.base_values = values
        scheduler._last_value = [group[scheduler.param_name] for group in param_groups]
