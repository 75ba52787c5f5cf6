"""Find the weights that are scale-invariant in a model, from its real data flow.

A conv or linear weight ``w`` is scale-invariant when the layer's output feeds
nothing but a normalization layer: ``f(c * w) = f(w)`` for ``c > 0``. Names cannot
tell this (a ``conv`` may feed a residual sum, an FPN conv feeds no norm at all), so
discovery runs one forward pass with hooks on every weight layer and every norm,
then reads the autograd graph to check that each layer output has exactly one
consumer, and that this consumer is the norm.

Gradient checkpointing is seen through (see :mod:`.checkpointing`), and a
parameter shared by several modules (tied weights) is one entry, rescaled once.

Modules: :mod:`.records` (what is reported), :mod:`.trace` (the traced pass),
:mod:`.classify` (one weight from the trace). Pure PyTorch: no mmengine, mmcv,
mmdet or mmseg imports.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from torch import nn

from ..validation import check_choice, compile_patterns
from .classify import _classify, _merge_tied
from .records import (GRANULARITIES, WEIGHT_STANDARDIZED_TYPES, DiscoveryResult, Exclusion,
                      InvariantWeight, NormUse, is_norm)
from .trace import _find_layers, _trace

__all__ = ['GRANULARITIES', 'WEIGHT_STANDARDIZED_TYPES', 'DiscoveryResult', 'Exclusion',
           'InvariantWeight', 'NormUse', 'discover_scale_invariant', 'is_norm']


def discover_scale_invariant(
        model: nn.Module,
        forward_fn: Callable[[], Any],
        granularity: str = 'filter',
        include: Optional[Sequence[str]] = None,
        exclude: Optional[Sequence[str]] = None,
        extra_norm_types: Sequence[type] = ()) -> DiscoveryResult:
    """Trace one forward pass and return the scale-invariant weights.

    The pass is side-effect free for the model: buffers (BatchNorm running
    statistics) and torch's RNG state are restored afterwards. The model is
    traced in whatever train/eval mode it is in, which is what decides whether
    a BatchNorm uses batch statistics or needs running-stat compensation.

    Args:
        model (nn.Module): The model.
        forward_fn (callable): Runs a forward pass of ``model`` under autograd
            and returns its outputs (a tensor, or dicts/lists of tensors, e.g.
            a loss dict). Only what reaches these outputs counts.
        granularity (str): ``'filter'`` (each output filter its own unit) or
            ``'layer'`` (whole tensor). Coarsened per weight where its norm is
            invariant only per group (GroupNorm) or per layer (LayerNorm).
        include (list[str], optional): Regular expressions; when given, only
            parameter names matching one (``re.search``) are controlled.
        exclude (list[str], optional): Regular expressions of parameter names
            never controlled.
        extra_norm_types (tuple[type]): More per-channel normalization classes
            to treat like BatchNorm (e.g. mmcv's ``SyncBatchNorm``).

    Returns:
        DiscoveryResult: Invariant weights and the reasons for the rest.
    """
    check_choice('granularity', granularity, GRANULARITIES)
    include_re = compile_patterns(include, 'include')
    exclude_re = compile_patterns(exclude, 'exclude')
    weight_layers, norms = _find_layers(model, extra_norm_types)
    trace = _trace(model, forward_fn, weight_layers, norms)
    # Tied weights: modules sharing one Parameter are classified together, so
    # that it is one entry (rescaled once), named as named_parameters() names it.
    owners: Dict[int, List[Tuple[nn.Module, str]]] = {}
    for module, module_name in weight_layers.items():
        owners.setdefault(id(module._parameters['weight']), []).append((module, module_name))
    invariant, excluded = [], []
    for sharing in owners.values():
        found = [(module_name, _classify(trace, module, _weight_name(module_name), granularity,
                                         include_re, exclude_re))
                 for module, module_name in sharing]
        result = found[0][1] if len(found) == 1 else _merge_tied(found, granularity)
        if isinstance(result, str):
            param = sharing[0][0]._parameters['weight']
            excluded.append(Exclusion(_weight_name(sharing[0][1]), tuple(param.shape), result))
        else:
            invariant.append(result)
    return DiscoveryResult(invariant=invariant, excluded=excluded)


def _weight_name(module_name: str) -> str:
    return f'{module_name}.weight' if module_name else 'weight'
