"""Rescale discovered weights to a target norm, exactly and without per-filter loops.

Pure PyTorch: no mmengine, mmcv, mmdet or mmseg imports. The parts:
:mod:`~mmwrs.core.rescale_math` (norms, scales, compensation),
:mod:`~mmwrs.core.rescale_entry` (one weight, its target, where it lives),
:mod:`~mmwrs.core.deferred_checks` (flags and messages between checks) and
:mod:`~mmwrs.core.graphed_call` (the CUDA-graph replay); this module decides
which runs when.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from . import rescale_math as rm
from .check_verdict import raise_if_off_target, run_check
from .deferred_checks import DeferredChecks
from .discovery import GRANULARITIES, DiscoveryResult, InvariantWeight, discover_scale_invariant
from .graphed_call import GraphedCall
from .rescale_entry import TARGET_POLICIES, ParamOwners, RescaleEntry, validate_target
from .rescale_pass import graph_inputs, report_flags, rescale_pass
from .rescale_targets import TargetsMixin
from .validation import check_check_interval, check_choice

ZERO_NORM = rm.ZERO_NORM
# Rescales between two host-synchronizing checks on accelerators (check_interval=None).
DEFERRED_CHECK_INTERVAL = 50

__all__ = ['DEFERRED_CHECK_INTERVAL', 'TARGET_POLICIES', 'ZERO_NORM', 'RescaleEntry',
           'WeightRescaler', 'validate_target']


class WeightRescaler(TargetsMixin):
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
            train-mode BatchNorms fed by a controlled weight (eval-mode norms
            are always compensated: without it the function would change).
        check_interval (int | None): Verify the norms (non-finite weights,
            zero units, negative compensated variances, replaced parameters)
            with a host synchronization every ``check_interval``-th
            :meth:`rescale_`, and at every :meth:`check_`. In between, the
            rescale runs branch-free on the device (zero and non-finite units
            are left as they are, negative variances clamped to 0) and records
            what it met; the check raises or warns exactly as an immediate
            check would, naming the weights. ``None`` (default): 1 for weights
            on the CPU, :data:`DEFERRED_CHECK_INTERVAL` on accelerators.
        use_cuda_graph (bool): Replay deferred CUDA rescales from a CUDA graph.
    """

    def __init__(self,
                 weights: Sequence[InvariantWeight] = (),
                 target_norm: Union[float, str] = 1.0,
                 rescale_running_stats: bool = True,
                 check_interval: Optional[int] = None,
                 use_cuda_graph: bool = True):
        self.target_norm = validate_target(target_norm)
        self.rescale_running_stats = bool(rescale_running_stats)
        self.check_interval = check_check_interval('check_interval', check_interval)
        self._unchecked = 0
        self.checks = DeferredChecks()
        self.graphed = GraphedCall(lambda: self._rescale_body(deferred=True),
                                   lambda: graph_inputs(self.entries, self._targets_cache,
                                                        self.checks.pending),
                                   'rescale', use_cuda_graph)
        self._stat_owners: List[Tuple[RescaleEntry, nn.Module]] = []
        self.param_owners = ParamOwners()  # filled by bind_model
        self.entries = [RescaleEntry.of_invariant(weight, self.target_norm, rescale_running_stats)
                        for weight in weights]
        self.discovery: Optional[DiscoveryResult] = None
        self._targets_cache: Optional[torch.Tensor] = None
        self._units: List[int] = []

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
                   check_interval: Optional[int] = None,
                   use_cuda_graph: bool = True) -> 'WeightRescaler':
        """Discover the scale-invariant weights of ``model`` and control them.

        See :func:`~mmwrs.core.discovery.discover_scale_invariant` for
        ``forward_fn``, ``granularity``, ``include``, ``exclude`` and
        ``extra_norm_types``, and the class for the other arguments. The
        discovery result is kept as ``.discovery``; the model is bound (see
        :meth:`bind_model`).
        """
        validate_target(target_norm)
        result = discover_scale_invariant(
            model, forward_fn, granularity=granularity, include=include,
            exclude=exclude, extra_norm_types=extra_norm_types)
        rescaler = cls(result.invariant, target_norm, rescale_running_stats, check_interval,
                       use_cuda_graph)
        rescaler.discovery = result
        rescaler.bind_model(model)
        return rescaler

    @property
    def use_cuda_graph(self) -> bool:
        return self.graphed.enabled

    @use_cuda_graph.setter
    def use_cuda_graph(self, value: bool) -> None:
        self.graphed.enabled = bool(value)

    def bind_model(self, model: nn.Module) -> None:
        """Remember where in ``model`` each controlled parameter lives.

        Every check then verifies that the model still holds the very parameter
        objects the entries rescale: ``load_state_dict(assign=True)``, FSDP
        flattening or a master-weight copy replaces them, and rescaling the
        orphaned tensors would do nothing to the model.
        """
        self.param_owners = ParamOwners(model, self.entries)

    def verify_params_(self) -> None:
        """Raise ``RuntimeError`` naming a controlled parameter the model replaced."""
        self.param_owners.verify()

    def subset(self, entries: Sequence[RescaleEntry]) -> 'WeightRescaler':
        """A rescaler of some of these entries (the same objects: same targets).

        Several optimizers each rescale their own weights through one each.
        """
        part = type(self)((), self.target_norm, self.rescale_running_stats,
                          self.check_interval, self.use_cuda_graph)
        part.entries = list(entries)
        part.param_owners = self.param_owners.subset(part.entries)
        part.checks = DeferredChecks(self.checks.warned_zero, self.checks.warned_clamp)
        return part

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
        self.checks.reset()
        entry = RescaleEntry.held(name, param, target_norm, granularity, out_dim)
        self.entries.append(entry)
        self.param_owners.add([entry])
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

    def unit_norms(self) -> Dict[str, torch.Tensor]:
        """Current norm of every unit, by parameter name."""
        with torch.no_grad():
            return {e.name: e.unit_norms() for e in self.entries}

    @torch.no_grad()
    def rescale_(self) -> None:
        """Rescale every controlled unit to its target norm, in place.

        Per weight: one norm pass and one in-place multiply; the scales of all
        weights are computed together. Zero and non-finite norms are checked
        once for all weights, right away or (see ``check_interval``) at the
        next check. Deferred-check rescales of CUDA weights replay a CUDA graph
        of themselves (see :class:`~mmwrs.core.graphed_call.GraphedCall`).

        Raises:
            FloatingPointError: If a controlled weight holds inf or NaN.
            RuntimeError: If a target is still ``'init'``, or the model replaced
                a controlled parameter.
        """
        if not self.entries:
            return
        device = self.entries[0].param.device
        interval = self.check_interval or (1 if device.type == 'cpu' else DEFERRED_CHECK_INTERVAL)
        if interval == 1:
            self.verify_params_()
            self._rescale_body(deferred=False)
            return
        if device.type == 'cuda':
            self.graphed(device)
            self.checks.dirty = True
        else:
            self._rescale_body(deferred=True)
        self._unchecked += 1
        if self._unchecked >= interval:  # every rank counts the same rescales
            self.check_(agree_across_ranks=True, after_rescale=True)

    def _rescale_body(self, deferred: bool) -> None:
        self._stat_owners = rescale_pass(self.entries, self._flat_targets, self.checks,
                                         deferred)

    @torch.no_grad()
    def check_(self, agree_across_ranks: bool = False, after_rescale: bool = False) -> None:
        """Report what the deferred rescales met since the last check.

        One host synchronization (none when nothing was deferred); also
        verifies the parameter objects. Raises and warns as an immediate check
        in :meth:`rescale_` would have.

        Args:
            agree_across_ranks (bool): All ranks of the process group call this
                check together; one all-reduce makes them all raise if one does.
            after_rescale (bool): Called right after a rescale: also verify that
                every usable unit is at its target (a replay that did nothing).

        Raises:
            FloatingPointError: If a controlled weight held inf or NaN.
            RuntimeError: If the model replaced a controlled parameter, the
                rescale did not reach its targets, or another rank's check failed.
        """
        self._unchecked = 0
        verify_targets = after_rescale and self.checks.dirty and self._targets_cache is not None

        def check():
            self.verify_params_()
            report_flags(self.checks.collect(), self.entries, self._units, self._stat_owners,
                         self.checks)
            if verify_targets:
                raise_if_off_target(self.entries, self._targets_cache)

        if self.entries:
            run_check(check, agree_across_ranks, self.entries[0].param.device)
