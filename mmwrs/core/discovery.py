"""Find the weights that are scale-invariant in a model, from its real data flow.

A conv or linear weight ``w`` is scale-invariant when the layer's output feeds
nothing but a normalization layer: ``f(c * w) = f(w)`` for ``c > 0``. Names cannot
tell this (a ``conv`` may feed a residual sum, an FPN conv feeds no norm at all), so
discovery runs one forward pass with hooks on every weight layer and every norm,
then reads the autograd graph to check that each layer output has exactly one
consumer, and that this consumer is the norm.

Pure PyTorch: no mmengine, mmcv, mmdet or mmseg imports.
"""
from __future__ import annotations

import contextlib
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.instancenorm import _InstanceNorm

from .validation import check_choice, compile_patterns

GRANULARITIES = ('filter', 'layer')
# Finest to coarsest; a weight gets the coarsest unit any of its norms allows.
_UNIT_ORDER = {'filter': 0, 'group': 1, 'layer': 2}

# Weight standardization re-normalizes the weight inside forward, so the layer is
# already invariant to its scale; rescaling it as well is redundant. Matched by
# class name to keep this module free of mmcv.
WEIGHT_STANDARDIZED_TYPES = ('ConvWS2d', 'ConvAWS2d')


@dataclass
class NormUse:
    """One call of a weight layer whose output went straight into a norm.

    Attributes:
        norm (nn.Module): The normalization module.
        norm_name (str): Its qualified name in the model.
        unit (str): The coarsest unit the norm makes invariant: ``'filter'``,
            ``'group'`` or ``'layer'``.
        num_units (int): How many invariance units the output channels form.
        running_stats (bool): Whether the norm normalized with its running
            statistics in this call (eval-mode BatchNorm, e.g. mmdet's
            ``norm_eval=True``): then a rescale must compensate them.
        note (str): Why the unit is coarser than a filter, if it is.
    """

    norm: nn.Module
    norm_name: str
    unit: str
    num_units: int
    running_stats: bool
    note: str = ''


@dataclass
class InvariantWeight:
    """A weight found scale-invariant, with what rescaling it needs.

    Attributes:
        name (str): Qualified parameter name (``backbone.layer1.0.conv1.weight``).
        param (nn.Parameter): The weight.
        module_type (str): Class name of the layer that owns it.
        out_dim (int): Dimension of ``param`` that indexes output channels.
        granularity (str): ``'filter'``, ``'group'`` or ``'layer'``.
        num_units (int): Number of independently rescaled units.
        uses (list[NormUse]): The norms its output feeds (one per call).
        bias (nn.Parameter, optional): The layer's bias when it must be scaled
            together with the weight (eval-mode BatchNorm compensation).
        note (str): Why the granularity is coarser than asked, if it is.
    """

    name: str
    param: nn.Parameter
    module_type: str
    out_dim: int
    granularity: str
    num_units: int
    uses: List[NormUse] = field(default_factory=list)
    bias: Optional[nn.Parameter] = None
    note: str = ''

    def compensated_norms(self, train_mode_stats: bool = False) -> List[nn.Module]:
        """Norms whose running statistics are rescaled with this weight.

        Those that normalized with their running statistics (eval mode) always;
        with ``train_mode_stats``, also the train-mode ones that keep running
        statistics (so that these stay estimates of the rescaled output).
        Each norm once, in the order of the calls.
        """
        norms = [u.norm for u in self.uses
                 if u.running_stats or (train_mode_stats
                                        and getattr(u.norm, 'running_var', None) is not None)]
        return list({id(n): n for n in norms}.values())

    @property
    def norm_types(self) -> str:
        return ','.join(sorted({type(u.norm).__name__ for u in self.uses}))


@dataclass
class Exclusion:
    """A weight that is not controlled, and why."""

    name: str
    shape: Tuple[int, ...]
    reason: str


@dataclass
class DiscoveryResult:
    """What :func:`discover_scale_invariant` found.

    Attributes:
        invariant (list[InvariantWeight]): The scale-invariant weights.
        excluded (list[Exclusion]): Every other conv/linear-like weight, with the
            reason it was left out.
    """

    invariant: List[InvariantWeight]
    excluded: List[Exclusion]

    def by_name(self) -> Dict[str, InvariantWeight]:
        return {w.name: w for w in self.invariant}


def is_norm(module: nn.Module, extra_norm_types: Sequence[type] = ()) -> bool:
    """Whether ``module`` is a normalization layer discovery understands."""
    return isinstance(module, (_BatchNorm, _InstanceNorm, nn.GroupNorm,
                               nn.LayerNorm, *extra_norm_types))


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


def _uses_running_stats(norm: nn.Module) -> bool:
    return (isinstance(norm, (_BatchNorm, _InstanceNorm))
            and not norm.training and norm.track_running_stats
            and norm.running_mean is not None)


def _iter_tensors(obj: Any) -> Iterable[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _iter_tensors(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _iter_tensors(value)


def _consumers(roots: Iterable[torch.Tensor]) -> Dict[Any, List[Any]]:
    """Map every autograd node reachable from ``roots`` to the nodes using it."""
    consumers: Dict[Any, List[Any]] = defaultdict(list)
    stack = [t.grad_fn for t in roots if t.grad_fn is not None]
    seen = set()
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        for child, _ in node.next_functions:
            if child is not None:
                consumers[child].append(node)
                stack.append(child)
    return consumers


class _NormCall(NamedTuple):
    """One call of a norm: its input, and the autograd nodes around it."""

    norm: nn.Module
    inp: Optional[torch.Tensor]
    inp_fn: Any
    out_fn: Any
    running: bool


@dataclass
class _Trace:
    """What one traced forward pass recorded.

    The traced tensors are kept alive (in ``layer_calls`` and the norm calls)
    so that their ids stay unique while the weights are classified.
    """

    norm_names: Dict[nn.Module, str]
    layer_calls: Dict[nn.Module, List[Tuple[Optional[torch.Tensor], Any]]]
    norm_by_input: Dict[int, _NormCall]
    consumers: Dict[Any, List[Any]]


def _find_layers(model: nn.Module, extra_norm_types: Sequence[type]
                 ) -> Tuple[Dict[nn.Module, str], Dict[nn.Module, str]]:
    """The weight layers and the norms of ``model``, each with its name."""
    weight_layers: Dict[nn.Module, str] = {}
    norms: Dict[nn.Module, str] = {}
    for name, module in model.named_modules():
        if is_norm(module, extra_norm_types):
            norms[module] = name
        elif isinstance(module._parameters.get('weight'), nn.Parameter):
            weight_layers[module] = name
    return weight_layers, norms


@contextlib.contextmanager
def _restored_state(model: nn.Module):
    """Restore the model's buffers (BN running statistics) and torch's RNGs."""
    buffers = {name: buf.detach().clone() for name, buf in model.named_buffers()}
    rng = torch.random.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        with torch.no_grad():
            for name, buf in model.named_buffers():
                if name in buffers:
                    buf.copy_(buffers[name])
        torch.random.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


def _trace(model: nn.Module, forward_fn: Callable[[], Any],
           weight_layers: Dict[nn.Module, str], norms: Dict[nn.Module, str]) -> _Trace:
    """Run ``forward_fn`` once with hooks on every weight layer and norm."""
    layer_calls: Dict[nn.Module, List[Tuple[Optional[torch.Tensor], Any]]] = defaultdict(list)
    norm_calls: List[_NormCall] = []

    def on_layer(module, args, output):
        if isinstance(output, torch.Tensor):
            layer_calls[module].append((output, output.grad_fn))
        else:
            layer_calls[module].append((None, None))

    def on_norm(module, args, output):
        inp = args[0] if args and isinstance(args[0], torch.Tensor) else None
        # grad_fns are read now: an in-place op later (ReLU(inplace=True))
        # gives the same tensor object a new one.
        norm_calls.append(_NormCall(module, inp, getattr(inp, 'grad_fn', None),
                                    getattr(output, 'grad_fn', None),
                                    _uses_running_stats(module)))

    handles = [m.register_forward_hook(on_layer) for m in weight_layers]
    handles += [m.register_forward_hook(on_norm) for m in norms]
    try:
        with _restored_state(model), torch.enable_grad():
            outputs = forward_fn()
    finally:
        for handle in handles:
            handle.remove()
    # Which norm call consumed which tensor, by the identity of its grad_fn.
    norm_by_input = {id(call.inp): call for call in norm_calls
                     if call.inp is not None and call.inp_fn is not None}
    return _Trace(norms, layer_calls, norm_by_input, _consumers(_iter_tensors(outputs)))


def _norm_use(trace: _Trace, out: Optional[torch.Tensor], out_fn: Any, channel_axis: str,
              out_channels: int, bias: Optional[nn.Parameter]) -> Union[NormUse, str]:
    """How one call's output feeds a norm, or why it does not feed only one."""
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
    invariant, excluded = [], []
    for module, module_name in weight_layers.items():
        name = f'{module_name}.weight' if module_name else 'weight'
        found = _classify(trace, module, name, granularity, include_re, exclude_re)
        if isinstance(found, str):
            excluded.append(Exclusion(name, tuple(module._parameters['weight'].shape), found))
        else:
            invariant.append(found)
    return DiscoveryResult(invariant=invariant, excluded=excluded)
