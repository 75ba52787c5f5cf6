"""One rescale pass over all controlled weights and its report.

:func:`rescale_pass` computes every unit's scale together and applies them with
one multi-tensor op each for the weights and the running statistics; checked
(``deferred=False``) it raises and warns right away, deferred it records flags
for :func:`report_flags`, which raises and warns the same way later.
"""
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from . import rescale_math as rm
from .deferred_checks import DeferredChecks, nonfinite_message
from .rescale_entry import RescaleEntry

StatOwners = List[Tuple[RescaleEntry, nn.Module]]


def rescale_pass(entries: List[RescaleEntry], flat_targets: Callable[[torch.Tensor], torch.Tensor],
                 checks: DeferredChecks, deferred: bool) -> StatOwners:
    """Rescale every unit of ``entries`` to its target, in place.

    Args:
        entries: The controlled weights.
        flat_targets: Given the flat unit norms, all targets in one tensor.
        checks: Where flags are recorded and warnings deduplicated.
        deferred: Branch-free (no host read); otherwise checked right away.

    Returns:
        list: ``(entry, norm)`` of each compensated norm, in flag order.
    """
    channel_norms = [entry.channel_norms() for entry in entries]
    unit_norms = [entry.unit_norms(norms) for entry, norms in zip(entries, channel_norms)]
    flat = torch.cat(unit_norms)
    targets = flat_targets(flat)
    units = [entry.num_units for entry in entries]
    if deferred:
        scales, nonfinite, zero = rm.branch_free_scales(flat, targets)
        checks.record('nonfinite', nonfinite)
        checks.record('zero', zero)
    elif bool(((flat <= rm.ZERO_NORM) | ~torch.isfinite(flat)).any()):
        for entry, norms in zip(entries, unit_norms):
            DeferredChecks.check_finite(entry, norms)
        checks.warn_zero(entries, units, flat > rm.ZERO_NORM)
        scales = rm.guarded_scales(flat, targets)
    else:
        scales = targets / flat
    tensors, factors = [], []
    means, variances, stat_scales, eps = [], [], [], []
    stat_owners: StatOwners = []
    for entry, scale in zip(entries, scales.split(units)):
        per_channel = entry.to_channels(scale)
        view = [1] * entry.param.dim()
        view[entry.out_dim] = -1
        tensors.append(entry.param)
        factors.append(per_channel.view(view))
        if entry.bias is not None:
            tensors.append(entry.bias)
            factors.append(per_channel)
        for norm in entry.running_stat_norms:
            means.append(norm.running_mean)
            variances.append(norm.running_var)
            stat_scales.append(per_channel.to(norm.running_var.dtype))
            eps.append(norm.eps)
            stat_owners.append((entry, norm))
    torch._foreach_mul_(tensors, factors)
    if means:
        rm.compensate_(means, variances, stat_scales, eps)
        _after_compensation(variances, stat_owners, checks, deferred)
    return stat_owners


def _after_compensation(variances: List[torch.Tensor], stat_owners: StatOwners,
                        checks: DeferredChecks, deferred: bool) -> None:
    if deferred:
        checks.record('negative', torch.cat(variances) < 0)
        rm.clamp_negative_(variances)
    elif bool(torch.cat(variances).min() < 0):
        # s**2 * (var + eps) < eps: no variance reproduces the old function.
        for entry, norm in stat_owners:
            negative = norm.running_var < 0
            if bool(negative.any()):
                norm.running_var.clamp_(min=0)
                checks.warn_clamped(entry, norm, int(negative.sum()))


def report_flags(flags: Dict[str, torch.Tensor], entries: List[RescaleEntry],
                 units: List[int], stat_owners: StatOwners, checks: DeferredChecks) -> None:
    """Raise or warn about collected flags as the checked pass would have.

    Raises:
        FloatingPointError: If a controlled weight held inf or NaN.
    """
    if 'nonfinite' in flags:
        for entry, bad in zip(entries, flags['nonfinite'].split(units)):
            if bool(bad.any()):
                raise FloatingPointError(nonfinite_message(entry, int(bad.sum())))
    if 'zero' in flags:
        checks.warn_zero(entries, units, ~flags['zero'])
    if 'negative' in flags:
        sizes = [norm.running_var.numel() for _, norm in stat_owners]
        for (entry, norm), negative in zip(stat_owners, flags['negative'].split(sizes)):
            count = int(negative.sum())
            if count:
                checks.warn_clamped(entry, norm, count)


def graph_inputs(entries: List[RescaleEntry], targets: Optional[torch.Tensor],
                 pending: Dict[str, torch.Tensor]) -> Tuple[int, ...]:
    """Addresses of every tensor a captured rescale reads or writes (its graph key)."""
    tensors = [targets, *pending.values()]
    for entry in entries:
        tensors += [entry.param, entry.bias]
        for norm in entry.running_stat_norms:
            tensors += [norm.running_mean, norm.running_var]
    return tuple(0 if t is None else t.data_ptr() for t in tensors)
