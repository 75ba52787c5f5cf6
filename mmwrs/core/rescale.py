"""Rescale discovered weights to a target norm, exactly and without per-filter loops.

Pure PyTorch: no mmengine, mmcv, mmdet or mmseg imports.
"""
from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from .discovery import GRANULARITIES, DiscoveryResult, InvariantWeight, discover_scale_invariant
from .validation import check_check_interval, check_choice, check_positive

TARGET_POLICIES = ('init',)
# Norms at or below this are treated as zero: a unit with no direction cannot be
# rescaled, and dividing by it would only spread inf/NaN.
ZERO_NORM = 1e-12
# Rescales between two host-synchronizing checks on accelerators (check_interval=None).
DEFERRED_CHECK_INTERVAL = 50


def validate_target(target: Union[float, str], key: str = 'target_norm') -> Union[float, str]:
    """Check a target norm option: a positive finite number, or ``'init'``."""
    allowed = f'a positive number or one of {TARGET_POLICIES}'
    if isinstance(target, str):
        if target not in TARGET_POLICIES:
            raise ValueError(f'{key} must be {allowed}, got {target!r}')
        return target
    if isinstance(target, bool) or not isinstance(target, numbers.Real):
        raise TypeError(f'{key} must be {allowed}, got {target!r}')
    return check_positive(key, target)


@dataclass
class RescaleEntry:
    """One controlled parameter and everything its rescale touches.

    Attributes:
        name (str): Qualified parameter name.
        param (nn.Parameter): The weight.
        out_dim (int): Dimension indexing output channels.
        granularity (str): ``'filter'``, ``'group'`` or ``'layer'``.
        num_units (int): Number of units rescaled independently.
        target (Tensor | float | str): Target norm per unit, a scalar, or
            ``'init'`` until :meth:`WeightRescaler.capture_targets_` runs.
        running_stat_norms (list[nn.Module]): Norms whose running statistics
            are compensated.
        bias (nn.Parameter, optional): Bias scaled together with the weight.
    """

    name: str
    param: nn.Parameter
    out_dim: int
    granularity: str
    num_units: int
    target: Any
    running_stat_norms: List[nn.Module] = field(default_factory=list)
    bias: Optional[nn.Parameter] = None

    @property
    def out_channels(self) -> int:
        return self.param.shape[self.out_dim]

    def channel_norms(self) -> torch.Tensor:
        """L2 norm of each output channel's slice of the weight, shape (O,)."""
        w = self.param.detach()
        if self.out_dim != 0:
            w = w.transpose(0, self.out_dim)
        return torch.linalg.vector_norm(w.reshape(w.shape[0], -1), dim=1)

    def unit_norms(self, channel_norms: Optional[torch.Tensor] = None) -> torch.Tensor:
        """L2 norm of each rescaling unit, shape (num_units,)."""
        norms = self.channel_norms() if channel_norms is None else channel_norms
        if self.num_units == norms.numel():
            return norms
        return torch.linalg.vector_norm(norms.view(self.num_units, -1), dim=1)

    def to_channels(self, per_unit: torch.Tensor) -> torch.Tensor:
        """Expand a per-unit tensor to one value per output channel."""
        if self.num_units == self.out_channels:
            return per_unit
        # expand, not repeat_interleave: no output-size round trip to the host.
        return per_unit.unsqueeze(1).expand(-1, self.out_channels // self.num_units).reshape(-1)


class WeightRescaler:
    """Holds scale-invariant weights at a target norm.

    Build it from a model with :meth:`from_model` (which traces one forward pass
    to find the weights), then call :meth:`rescale_` after every optimizer
    update. Each unit (a filter, a GroupNorm group, or the whole layer) is
    multiplied by ``target / norm``. For norms that normalize with running
    statistics (eval-mode BatchNorm), the statistics are rescaled so that the
    model's function is unchanged::

        running_mean <- s * running_mean
        running_var  <- s**2 * (running_var + eps) - eps

    Args:
        weights (list[InvariantWeight]): From discovery.
        target_norm (float | str): Norm each unit is held at; ``'init'`` holds
            each unit at its norm when :meth:`capture_targets_` is called.
        rescale_running_stats (bool): Also rescale the running statistics of
            train-mode BatchNorms fed by a controlled weight, so that they stay
            estimates of the rescaled layer's output (they are what eval uses).
            Eval-mode norms are always compensated: without it the function
            would change.
        check_interval (int | None): Verify the norms (non-finite weights,
            zero units, negative compensated variances) with a host
            synchronization every ``check_interval``-th :meth:`rescale_`. In
            between, the rescale runs branch-free on the device (zero and
            non-finite units are left as they are, negative variances clamped
            to 0) and records what it met, and the check raises or warns about
            it exactly as an immediate check would, naming the weights. ``None``
            (default): 1 for weights on the CPU, where a check costs nothing,
            and :data:`DEFERRED_CHECK_INTERVAL` on accelerators, where each
            check stalls the host until the device has caught up.
    """

    def __init__(self,
                 weights: Sequence[InvariantWeight] = (),
                 target_norm: Union[float, str] = 1.0,
                 rescale_running_stats: bool = True,
                 check_interval: Optional[int] = None):
        self.target_norm = validate_target(target_norm)
        self.rescale_running_stats = bool(rescale_running_stats)
        self.check_interval = check_check_interval('check_interval', check_interval)
        self._unchecked = 0
        self._dirty = False
        self._pending: Dict[str, torch.Tensor] = {}
        self.use_cuda_graph = True
        self._graph: Optional[Any] = None
        self._graph_key: Optional[Tuple[int, ...]] = None
        self._stat_owners: List[Tuple[RescaleEntry, nn.Module]] = []
        self.entries: List[RescaleEntry] = []
        self.discovery: Optional[DiscoveryResult] = None
        self._targets_cache: Optional[torch.Tensor] = None
        self._units: List[int] = []
        self._warned_zero: set = set()
        self._warned_clamp: set = set()
        # (entry, module, attribute) of each weight and bias, once bind_model ran.
        self._owners: List[Tuple[RescaleEntry, torch.Tensor, nn.Module, str]] = []
        self._model: Optional[nn.Module] = None
        for weight in weights:
            self.entries.append(RescaleEntry(
                name=weight.name, param=weight.param, out_dim=weight.out_dim,
                granularity=weight.granularity, num_units=weight.num_units,
                target=self.target_norm,
                running_stat_norms=weight.compensated_norms(self.rescale_running_stats),
                bias=weight.bias))

    @classmethod
    def from_model(cls,
                   model: nn.Module,
                   forward_fn: Callable[[], Any],
                   granularity: str = 'filter',
                   include: Optional[Sequence[str]] = None,
                   exclude: Optional[Sequence[str]] = None,
                   target_norm: Union[float, str] = 1.0,
                   rescale_running_stats: bool = True,
                   extra_norm_types: Sequence[type] = (),
                   check_interval: Optional[int] = None) -> 'WeightRescaler':
        """Discover the scale-invariant weights of ``model`` and control them.

        See :func:`~mmwrs.core.discovery.discover_scale_invariant` for
        ``forward_fn``, ``granularity``, ``include``, ``exclude`` and
        ``extra_norm_types``, and the class for the other arguments. The
        discovery result is kept as ``.discovery``.
        """
        validate_target(target_norm)
        result = discover_scale_invariant(
            model, forward_fn, granularity=granularity, include=include,
            exclude=exclude, extra_norm_types=extra_norm_types)
        rescaler = cls(result.invariant, target_norm, rescale_running_stats, check_interval)
        rescaler.discovery = result
        rescaler.bind_model(model)
        return rescaler

    def bind_model(self, model: nn.Module) -> None:
        """Remember where in ``model`` each controlled parameter lives.

        Every check then verifies that the model still holds the very
        parameter objects the entries rescale: ``load_state_dict(assign=True)``,
        FSDP flattening or a master-weight copy replaces them, and rescaling the
        orphaned tensors would do nothing to the model.
        """
        self._model = model
        self._owners = []
        for entry in self.entries:
            self._bind_entry(entry)

    def _bind_entry(self, entry: RescaleEntry) -> None:
        names = {id(p): n for n, p in self._model.named_parameters()}
        for tensor in (entry.param, entry.bias):
            if tensor is None:
                continue
            if id(tensor) not in names:
                raise ValueError(f'WRS: {entry.name} is not a parameter of '
                                 f'{type(self._model).__name__}')
            module_name, _, attr = names[id(tensor)].rpartition('.')
            self._owners.append((entry, tensor, self._model.get_submodule(module_name), attr))

    def verify_params_(self) -> None:
        """Raise if the bound model no longer holds a controlled parameter object.

        Raises:
            RuntimeError: Naming the first replaced parameter.
        """
        for entry, tensor, module, attr in self._owners:
            if module._parameters.get(attr) is not tensor:
                raise RuntimeError(
                    f'WRS: the model\'s parameter {entry.name}'
                    f'{"" if tensor is entry.param else " (its bias)"} is no longer the '
                    'tensor WRS rescales: it was replaced (load_state_dict(assign=True), '
                    'FSDP, DeepSpeed or apex O2 master weights), so the rescale would not '
                    'reach the model. Build WRS after the parameters are final; FSDP, '
                    'DeepSpeed and apex O2 are not supported.')

    def subset(self, entries: Sequence[RescaleEntry]) -> 'WeightRescaler':
        """A rescaler of some of these entries (shared objects: same targets).

        Used when several optimizers each own part of the weights: each
        optimizer's step rescales only its own.
        """
        part = type(self)((), self.target_norm, self.rescale_running_stats, self.check_interval)
        part.entries = list(entries)
        chosen = {id(e) for e in part.entries}
        part._model = self._model
        part._owners = [o for o in self._owners if id(o[0]) in chosen]
        part._warned_zero, part._warned_clamp = self._warned_zero, self._warned_clamp
        return part

    @torch.no_grad()
    def set_targets_(self, value: Union[float, Dict[str, Any]]) -> None:
        """Set targets in place: a CUDA graph captured on them stays valid.

        Args:
            value: One norm for every unit, or ``{name: norm or per-unit tensor}``
                for some entries.
        """
        for entry in self.entries:
            new = value.get(entry.name) if isinstance(value, dict) else value
            if new is None:
                continue
            if isinstance(new, torch.Tensor) and new.numel() not in (1, entry.num_units):
                raise ValueError(f'WRS: target for {entry.name} has {new.numel()} values, '
                                 f'the weight has {entry.num_units} unit(s) (or give one)')
            if not isinstance(new, torch.Tensor):
                validate_target(float(new), f'target of {entry.name}')
            if isinstance(entry.target, torch.Tensor):
                entry.target.copy_(torch.as_tensor(new).expand_as(entry.target))
            else:
                entry.target = (float(new) if not isinstance(new, torch.Tensor)
                                else new.detach().clone().expand(entry.num_units).clone())
        if self._targets_cache is not None:
            self._targets_cache.copy_(torch.cat([
                self._target_tensor(e, self._targets_cache.new_empty(e.num_units))
                for e in self.entries]))

    def add(self, name: str, param: nn.Parameter, target_norm: Union[float, str],
            granularity: str = 'layer', out_dim: int = 0) -> RescaleEntry:
        """Control one more parameter that is not scale-invariant.

        Used for weights whose norm is held by choice, not by invariance (e.g.
        FixNorm's classifier): nothing is compensated, the function changes.
        """
        check_choice('granularity', granularity, GRANULARITIES)
        if any(entry.param is param for entry in self.entries):
            raise ValueError(f'{name} is already controlled')
        self.check_()  # recorded flags follow the unit layout, which changes here
        self._pending = {}
        units = param.shape[out_dim] if granularity == 'filter' else 1
        entry = RescaleEntry(name, param, out_dim, granularity, units,
                             validate_target(target_norm))
        self.entries.append(entry)
        if self._model is not None:
            self._bind_entry(entry)
        self._targets_cache = None
        return entry

    @property
    def params(self) -> List[nn.Parameter]:
        return [entry.param for entry in self.entries]

    @property
    def num_params(self) -> int:
        return sum(entry.param.numel() for entry in self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    @torch.no_grad()
    def capture_targets_(self) -> None:
        """Set every ``'init'`` target to the unit norms the weights have now."""
        for entry in self.entries:
            if isinstance(entry.target, str):
                norms = entry.unit_norms()
                self._check_finite(entry, norms)
                entry.target = norms.clone()
        self._targets_cache = None

    def unit_norms(self) -> Dict[str, torch.Tensor]:
        """Current norm of every unit, by parameter name."""
        with torch.no_grad():
            return {e.name: e.unit_norms() for e in self.entries}

    def targets(self) -> Dict[str, torch.Tensor]:
        """Target of every unit, by parameter name."""
        return {e.name: self._target_tensor(e, e.param.new_empty(e.num_units))
                for e in self.entries}

    @torch.no_grad()
    def rescale_(self) -> None:
        """Rescale every controlled unit to its target norm, in place.

        Per weight: one norm pass and one in-place multiply; the scales of all
        weights are computed together. Zero and non-finite norms are checked
        once for all weights, right away or (see ``check_interval``) at the
        next check. Deferred-check rescales of CUDA weights replay a CUDA graph
        of themselves (captured on the second call, recaptured when a weight,
        statistic or target is reallocated): one launch instead of a few
        hundred, which is what the rescale's time on a GPU is made of.

        Raises:
            FloatingPointError: If a controlled weight holds inf or NaN.
            RuntimeError: If a target is still ``'init'`` (capture it first).
        """
        if not self.entries:
            return
        device = self.entries[0].param.device
        interval = self._check_interval_for(device)
        if interval == 1:
            self.verify_params_()
            self._rescale_body(deferred=False)
            return
        if device.type == 'cuda' and self.use_cuda_graph:
            self._rescale_with_graph()
        else:
            self._rescale_body(deferred=True)
        self._unchecked += 1
        if self._unchecked >= interval:
            self.check_()

    def _rescale_body(self, deferred: bool) -> None:
        channel_norms = [entry.channel_norms() for entry in self.entries]
        unit_norms = [entry.unit_norms(norms)
                      for entry, norms in zip(self.entries, channel_norms)]
        flat = torch.cat(unit_norms)
        targets = self._flat_targets(flat)
        if deferred:
            scales = self._deferred_scales(flat, targets)
        elif bool(((flat <= ZERO_NORM) | ~torch.isfinite(flat)).any()):
            for entry, norms in zip(self.entries, unit_norms):
                self._check_finite(entry, norms)
            usable = flat > ZERO_NORM
            self._warn_zero(usable)
            scales = torch.where(usable, targets / flat.clamp_min(ZERO_NORM),
                                 torch.ones_like(flat))
        else:
            scales = targets / flat
        # One multi-tensor op each for the weights and the running statistics.
        tensors, factors = [], []
        means, variances, stat_scales, eps = [], [], [], []
        self._stat_owners = []
        for entry, scale in zip(self.entries, scales.split(self._units)):
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
                self._stat_owners.append((entry, norm))
        torch._foreach_mul_(tensors, factors)
        if means:
            self._compensate(means, variances, stat_scales, eps, deferred)

    def _check_interval_for(self, device: torch.device) -> int:
        if self.check_interval is not None:
            return self.check_interval
        return 1 if device.type == 'cpu' else DEFERRED_CHECK_INTERVAL

    def _deferred_scales(self, flat: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Scales without a host round trip; records what :meth:`check_` reports."""
        nonfinite = ~torch.isfinite(flat)
        zero = flat <= ZERO_NORM
        self._record('nonfinite', nonfinite)
        self._record('zero', zero)
        return torch.where(zero | nonfinite, torch.ones_like(flat),
                           targets / flat.clamp_min(ZERO_NORM))

    def _record(self, key: str, flags: torch.Tensor) -> None:
        """OR ``flags`` into a persistent buffer (in place: a CUDA graph replays it)."""
        seen = self._pending.get(key)
        if seen is None or seen.shape != flags.shape or seen.device != flags.device:
            seen = self._pending[key] = torch.zeros_like(flags)
        seen.logical_or_(flags)
        self._dirty = True

    def _graph_inputs(self) -> Tuple[int, ...]:
        """Addresses of every tensor a captured rescale reads or writes."""
        tensors = [self._targets_cache, *self._pending.values()]
        for entry in self.entries:
            tensors += [entry.param, entry.bias]
            for norm in entry.running_stat_norms:
                tensors += [norm.running_mean, norm.running_var]
        return tuple(0 if t is None else t.data_ptr() for t in tensors)

    def _rescale_with_graph(self) -> None:
        if self._graph is not None and self._graph_inputs() == self._graph_key:
            self._graph.replay()
            self._dirty = True
            return
        # This call rescales eagerly (creating the targets and flag buffers the
        # graph will read), then records the same work for the next calls.
        self._rescale_body(deferred=True)
        self._graph, self._graph_key = None, None
        graph = torch.cuda.CUDAGraph()
        try:
            # thread_local: other threads' CUDA calls (a dataloader's pin-memory
            # thread) are none of this capture's business.
            with torch.cuda.graph(graph, capture_error_mode='thread_local'):
                self._rescale_body(deferred=True)
        except Exception as exc:  # noqa: BLE001 (an uncapturable op: stay eager)
            self.use_cuda_graph = False
            warnings.warn(f'WRS: capturing the rescale in a CUDA graph failed ({exc}); '
                          'rescaling without one from now on.', RuntimeWarning, stacklevel=3)
            return
        self._graph, self._graph_key = graph, self._graph_inputs()

    @torch.no_grad()
    def check_(self) -> None:
        """Report what the deferred rescales met since the last check.

        One host synchronization. Raises and warns as an immediate check in
        :meth:`rescale_` would have; a no-op when nothing was deferred.

        Raises:
            FloatingPointError: If a controlled weight held inf or NaN.
        """
        self._unchecked = 0
        self.verify_params_()
        if not self._dirty:
            return
        self._dirty = False
        keys = list(self._pending)
        found = dict(zip(keys, torch.stack([self._pending[k].any() for k in keys]).tolist()))
        flags = {k: self._pending[k].to('cpu', copy=True) for k in keys if found[k]}
        for buffer in self._pending.values():
            buffer.zero_()  # in place: a captured graph keeps writing to these
        if 'nonfinite' in flags:
            for entry, bad in zip(self.entries, flags['nonfinite'].split(self._units)):
                if bool(bad.any()):
                    raise FloatingPointError(self._nonfinite_message(entry, int(bad.sum())))
        if 'zero' in flags:
            self._warn_zero(~flags['zero'])
        if 'negative' in flags:
            sizes = [norm.running_var.numel() for _, norm in self._stat_owners]
            for (entry, norm), negative in zip(self._stat_owners, flags['negative'].split(sizes)):
                count = int(negative.sum())
                if count:
                    self._warn_clamped(entry, norm, count)

    def _flat_targets(self, like: torch.Tensor) -> torch.Tensor:
        """All targets in one tensor, cached until a target changes."""
        if self._targets_cache is None or self._targets_cache.device != like.device \
                or self._targets_cache.dtype != like.dtype:
            self._units = [entry.num_units for entry in self.entries]
            self._targets_cache = torch.cat([
                self._target_tensor(entry, like.new_empty(entry.num_units))
                for entry in self.entries])
        return self._targets_cache

    def _warn_zero(self, usable: torch.Tensor) -> None:
        for entry, ok in zip(self.entries, usable.split(self._units)):
            if entry.name not in self._warned_zero and not bool(ok.all()):
                self._warned_zero.add(entry.name)
                warnings.warn(
                    f'WRS: {int((~ok).sum())} of {entry.num_units} '
                    f'{entry.granularity} unit(s) of {entry.name} have zero norm '
                    f'and are left as they are (a zero filter has no direction '
                    f'to rescale).', RuntimeWarning, stacklevel=3)

    def _target_tensor(self, entry: RescaleEntry, like: torch.Tensor) -> torch.Tensor:
        if isinstance(entry.target, torch.Tensor):
            return entry.target.to(like.device, like.dtype)
        if isinstance(entry.target, str):
            raise RuntimeError(f'the target of {entry.name} is {entry.target!r}: '
                               'call capture_targets_() before rescaling')
        return torch.full_like(like, entry.target)

    @classmethod
    def _check_finite(cls, entry: RescaleEntry, norms: torch.Tensor) -> None:
        if not bool(torch.isfinite(norms).all()):
            raise FloatingPointError(
                cls._nonfinite_message(entry, int((~torch.isfinite(norms)).sum())))

    @staticmethod
    def _nonfinite_message(entry: RescaleEntry, bad: int) -> str:
        return (f'WRS: {entry.name} holds non-finite values ({bad} of '
                f'{entry.num_units} {entry.granularity} unit(s)); training has '
                'diverged and the weight cannot be rescaled. Lower the learning '
                'rate or enable gradient clipping, then resume from the last '
                'checkpoint.')

    def _compensate(self, means, variances, scales, eps, deferred: bool = False) -> None:
        """running_mean *= s; running_var = s**2 * (running_var + eps) - eps."""
        torch._foreach_mul_(means, scales)
        torch._foreach_add_(variances, eps)
        torch._foreach_mul_(variances, torch._foreach_mul(scales, scales))
        torch._foreach_sub_(variances, eps)
        if deferred:
            self._record('negative', torch.cat(variances) < 0)
            clamp_min_ = getattr(torch, '_foreach_clamp_min_', None)  # torch >= 2.0
            if clamp_min_ is not None:
                clamp_min_(variances, 0.0)
            else:
                for variance in variances:
                    variance.clamp_(min=0)
            return
        if bool(torch.cat(variances).min() < 0):
            # s**2 * (var + eps) < eps: no variance reproduces the old function.
            for entry, norm in self._stat_owners:
                negative = norm.running_var < 0
                if bool(negative.any()):
                    norm.running_var.clamp_(min=0)
                    self._warn_clamped(entry, norm, int(negative.sum()))

    def _warn_clamped(self, entry: RescaleEntry, norm: nn.Module, count: int) -> None:
        if entry.name not in self._warned_clamp:
            self._warned_clamp.add(entry.name)
            warnings.warn(
                f'WRS: rescaling {entry.name} would need a negative '
                f'running_var in {type(norm).__name__} for '
                f'{count} channel(s); clamped to 0, so the '
                'eval-mode output of those channels changes slightly.',
                RuntimeWarning, stacklevel=4)

    def state_dict(self) -> Dict[str, Any]:
        """Targets by parameter name (captured ``'init'`` targets survive resume)."""
        return {'targets': {e.name: (e.target.clone() if isinstance(e.target, torch.Tensor)
                                     else e.target) for e in self.entries}}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore targets saved by :meth:`state_dict`.

        Raises:
            KeyError: If ``state`` was saved for a different set of weights.
        """
        targets = state.get('targets', {})
        names = {e.name for e in self.entries}
        if set(targets) != names:
            missing, extra = sorted(names - set(targets)), sorted(set(targets) - names)
            raise KeyError(
                'WRS state does not match the controlled weights: '
                f'missing {missing[:5]}{"..." if len(missing) > 5 else ""}, '
                f'unexpected {extra[:5]}{"..." if len(extra) > 5 else ""}. '
                'Was the checkpoint saved from another model or WRS setting?')
        for entry in self.entries:
            target = targets[entry.name]
            if isinstance(target, torch.Tensor):
                if target.numel() != entry.num_units:
                    raise KeyError(f'WRS state for {entry.name} has {target.numel()} '
                                   f'units, the weight has {entry.num_units}')
                target = target.to(entry.param.device)
            entry.target = target
        self._targets_cache = None
