"""Classify one weight from a trace: invariant (with its unit), or why not."""
from __future__ import annotations

import re
from typing import Any, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.instancenorm import _InstanceNorm

from .records import _UNIT_ORDER, WEIGHT_STANDARDIZED_TYPES, InvariantWeight, NormUse
from .trace import _Trace


def _weight_layout(module: nn.Module) -> Tuple[Optional[int], str]:
    """Where output channels sit in the weight and in the output.

    Returns ``(out_dim, channel_axis)`` where ``channel_axis`` is ``'first'``
    (dim 1 of the output, convs) or ``'last'`` (linear), or ``(None, reason)``
    for layers whose output is not known to be linear in the weight.
    """
    if type(module).__name__ in WEIGHT_STANDARDIZED_TYPES:
        return None, ('weight standardization already makes this layer '
                      'scale-invariant; rescaling it too is redundant')
    if isinstance(module, nn.Linear):
        return 0, 'last'
    if isinstance(module, _ConvNd):
        if not module.transposed:
            return 0, 'first'
        if module.groups == 1:
            return 1, 'first'
        return None, 'grouped transposed convolution is not supported'
    # Deformable and other custom convs (e.g. mmcv's DeformConv2d) keep the
    # (out, in/groups, k, k) layout and announce out_channels.
    weight = module._parameters.get('weight')
    if (getattr(module, 'out_channels', None) == weight.shape[0]
            and weight.dim() >= 3):
        return 0, 'first'
    return None, f'{type(module).__name__} is not known to be linear in its weight'


def _norm_unit(norm: nn.Module, inp: torch.Tensor, channel_axis: str,
               out_channels: int) -> Tuple[Optional[str], int, str]:
    """The coarsest invariance unit ``norm`` gives a layer with these outputs.

    Returns ``(unit, num_units, note)`` or ``(None, 0, reason)``.
    """
    name = type(norm).__name__
    if isinstance(norm, (_BatchNorm, _InstanceNorm)) or not isinstance(
            norm, (nn.GroupNorm, nn.LayerNorm)):
        # Per-channel statistics: each output filter is its own unit. The norm
        # normalizes dim 1, so a linear layer qualifies only on (N, C) inputs.
        if channel_axis == 'last' and inp.dim() != 2:
            return None, 0, f'{name} normalizes dim 1, not the linear features'
        if inp.shape[1] != out_channels:
            return None, 0, f'{name} sees {inp.shape[1]} channels, layer has {out_channels}'
        return 'filter', out_channels, ''
    if isinstance(norm, nn.GroupNorm):
        if channel_axis == 'last' or inp.shape[1] != out_channels:
            return None, 0, f'{name} does not normalize this layer\'s channels'
        groups = norm.num_groups
        if groups == out_channels:
            return 'filter', out_channels, ''
        if groups == 1:
            return 'layer', 1, f'{name}(1 group) is invariant per layer only'
        return 'group', groups, (f'{name}({groups} groups) is invariant per group '
                                 f'of {out_channels // groups} filters only')
    # LayerNorm over the trailing dims: invariant per layer when the channels are
    # among them, per filter when it only normalizes within each channel.
    normalized = len(norm.normalized_shape)
    channel_dim = inp.dim() - 1 if channel_axis == 'last' else 1
    if channel_dim >= inp.dim() - normalized:
        return 'layer', 1, f'{name} normalizes across channels: invariant per layer only'
    if channel_axis == 'first' and inp.shape[1] == out_channels:
        return 'filter', out_channels, ''
    return None, 0, f'{name} does not normalize this layer\'s channels'


def _norm_use(trace: _Trace, out: Optional[torch.Tensor], out_fn: Any, channel_axis: str,
              out_channels: int, bias: Optional[nn.Parameter]) -> Union[NormUse, str]:
    """How one call's output feeds a norm, or why it does not feed only one."""
    if out is not None and out_fn is None:
        # The weight requires grad, so autograd was off around this call.
        return ('ran without autograd (inside torch.no_grad() or a gradient checkpoint '
                'discovery could not see through), so where its output goes is unknown')
    call = trace.norm_by_input.get(id(out)) if out is not None else None
    if call is None or call.inp_fn is not out_fn:
        return 'output does not go straight into a normalization layer'
    users = trace.consumers.get(out_fn, [])
    if len(users) != 1 or call.out_fn is None or users[0] is not call.out_fn:
        if not users:
            return 'output does not reach the traced outputs'
        return (f'output feeds {len(users)} operations besides/other than '
                f'{trace.norm_names[call.norm]}')
    unit, num_units, note = _norm_unit(call.norm, call.inp, channel_axis, out_channels)
    if unit is None:
        return note
    # Per-channel mean subtraction removes a bias; group/layer statistics do
    # not, and eval-mode BN is handled by scaling the bias too.
    group_or_layer = isinstance(call.norm, (nn.GroupNorm, nn.LayerNorm))
    if bias is not None and not call.running and group_or_layer:
        return (f'has a bias that {type(call.norm).__name__} does not cancel, '
                'so the weight alone is not scale-invariant')
    return NormUse(call.norm, trace.norm_names[call.norm], unit, num_units, call.running, note)


def _norm_uses(trace: _Trace, module: nn.Module, channel_axis: str, out_channels: int
               ) -> Union[List[NormUse], str]:
    """The norm each traced call of ``module`` feeds, or why one call fails."""
    calls = trace.layer_calls.get(module, [])
    if not calls:
        return 'not used in the traced forward pass'
    bias = module._parameters.get('bias')
    uses = []
    for index, (out, out_fn) in enumerate(calls):
        use = _norm_use(trace, out, out_fn, channel_axis, out_channels, bias)
        if isinstance(use, str):
            where = f' (call {index + 1} of {len(calls)})' if len(calls) > 1 else ''
            return use + where
        uses.append(use)
    return uses


def _choose_unit(granularity: str, out_channels: int,
                 uses: Sequence[NormUse]) -> Tuple[str, int, str]:
    """The unit asked for, coarsened to the coarsest one a norm allows."""
    unit, num_units, note = granularity, (out_channels if granularity == 'filter' else 1), ''
    for use in uses:
        if use.unit == unit == 'group' and use.num_units != num_units:
            unit, num_units = 'layer', 1
            note = 'norms with different group counts: invariant per layer only'
        elif _UNIT_ORDER[use.unit] > _UNIT_ORDER[unit]:
            unit, num_units, note = use.unit, use.num_units, use.note
    return unit, num_units, note


def _classify(trace: _Trace, module: nn.Module, name: str, granularity: str,
              include: Sequence[re.Pattern], exclude: Sequence[re.Pattern]
              ) -> Union[InvariantWeight, str]:
    """``module``'s weight as an :class:`InvariantWeight`, or why it is not one."""
    param = module._parameters['weight']
    if any(p.search(name) for p in exclude):
        return 'matches an exclude pattern'
    if include and not any(p.search(name) for p in include):
        return 'matches no include pattern'
    if not param.requires_grad:
        return 'frozen (requires_grad=False)'
    out_dim, channel_axis = _weight_layout(module)
    if out_dim is None:
        return channel_axis
    out_channels = param.shape[out_dim]
    uses = _norm_uses(trace, module, channel_axis, out_channels)
    if isinstance(uses, str):
        return uses
    unit, num_units, note = _choose_unit(granularity, out_channels, uses)
    bias = module._parameters.get('bias')
    needs_bias = bias is not None and any(u.running_stats for u in uses)
    return InvariantWeight(
        name=name, param=param, module_type=type(module).__name__, out_dim=out_dim,
        granularity=unit, num_units=num_units, uses=uses,
        bias=bias if needs_bias else None, note=note)


def _merge_tied(found: Sequence[Tuple[str, Union[InvariantWeight, str]]], granularity: str
                ) -> Union[InvariantWeight, str]:
    """One parameter shared by several modules (tied weights) as one unit set.

    ``found`` holds each sharing module's name and its own classification. The
    parameter is invariant only if every use is, with the same output layout;
    then it is rescaled once, with every norm it feeds compensated.
    """
    names = ', '.join(name or '<root>' for name, _ in found)
    for name, result in found:
        if isinstance(result, str):
            return f'tied weight shared by {names}; in {name or "<root>"}: {result}'
    weights = [result for _, result in found]
    first = weights[0]
    if any(w.out_dim != first.out_dim for w in weights):
        return f'tied weight shared by {names} with different output-channel layouts'
    biases = list({id(w.bias): w.bias for w in weights if w.bias is not None}.values())
    if len(biases) > 1:
        return (f'tied weight shared by {names}, each with its own bias that eval-mode '
                'normalization needs scaled with it; only one can be')
    uses = [use for w in weights for use in w.uses]
    unit, num_units, note = _choose_unit(granularity, first.param.shape[first.out_dim], uses)
    return InvariantWeight(
        name=first.name, param=first.param, module_type=first.module_type,
        out_dim=first.out_dim, granularity=unit, num_units=num_units, uses=uses,
        bias=biases[0] if biases else None, note=note)
