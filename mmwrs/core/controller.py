"""WRS as a policy over a model and its optimizers: options, discovery, schedule.

Pure PyTorch, written once for both mmengine forms (the hook; the optimizer-wrapper
constructor with its wrappers), which differ only in where they plug in:
:meth:`WRSController.discover` finds the scale-invariant weights from one forward
pass (plus the weights held at a fixed norm by choice); the adapter gives them
param groups with :attr:`group_overrides`; :meth:`WRSController.start` brings
them to target (or restores a resumed state) and hangs the rescale on each
optimizer's own step (:mod:`~mmwrs.core.optimizer_steps`); :meth:`check_` runs the
deferred checks before every checkpoint and at the end of training;
:meth:`state_dict` / :meth:`load_state_dict` carry it across a resume.
"""
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from .discovery import GRANULARITIES
from .optimizer_steps import OptimizerSteps
from .report import format_report
from .rescale import WeightRescaler, validate_target
from .selection import (add_fixed_norm_layers, check_fixed_norm_layers, nothing_invariant_message,
                        warn_unmatched_patterns)
from .target_schedule import TargetSchedule
from .validation import (check_bool, check_check_interval, check_choice, check_positive_int,
                         compile_patterns)

ON_EMPTY = ('error', 'warn')


class WRSController:
    """Hold scale-invariant weights of a model at a target norm.

    Args:
        granularity (str): ``'filter'`` (each output filter its own unit) or
            ``'layer'``. Coarsened automatically where the following norm is
            invariant only per group (GroupNorm) or per layer (LayerNorm).
        target_norm (float | str | dict): Norm of each unit; ``'init'`` holds
            each unit at its norm when training starts (FixNorm); a dict is a
            :class:`~mmwrs.core.target_schedule.TargetSchedule` of the update
            count (e.g. ``dict(type='cosine', start=1.0, end=0.5, end_at=800)``),
            followed by the discovered weights (not ``fixed_norm_layers``).
        interval (int): Rescale after every ``interval`` real updates.
        include (list[str], optional): Regexes; only matching parameter names
            are controlled.
        exclude (list[str], optional): Regexes of parameter names left alone.
        decay_rescaled (bool): Keep the configured weight decay on the rescaled
            weights (off by default: the rescale replaces it).
        rescale_running_stats (bool): Also rescale the running statistics of
            train-mode BatchNorms (eval-mode ones are always compensated).
        fixed_norm_layers (dict, optional): ``{regex: norm}`` of weights that are
            not scale-invariant but whose whole-tensor norm is held fixed
            anyway (FixNorm's classifier), e.g. ``{r'fc_cls\\.weight$': 2.0}``.
        on_empty (str): ``'error'`` (default) or ``'warn'`` when the model has no
            scale-invariant weight.
        check_interval (int | None): Rescales between two host-synchronizing
            checks for zero / non-finite weights (see
            :class:`~mmwrs.core.WeightRescaler`); ``None``: every rescale on
            the CPU, every 50th on GPUs, where the rescale between checks is a
            CUDA-graph replay.
        use_cuda_graph (bool): On GPUs, replay the rescales between checks
            from a CUDA graph (``False``: launch them eagerly each time; the
            checks are the same).
        owner (str): Name used in messages (the config type the user wrote).
    """

    def __init__(self,
                 granularity: str = 'filter',
                 target_norm: Union[float, str, Dict[str, Any]] = 1.0,
                 interval: int = 1,
                 include: Optional[Sequence[str]] = None,
                 exclude: Optional[Sequence[str]] = None,
                 decay_rescaled: bool = False,
                 rescale_running_stats: bool = True,
                 fixed_norm_layers: Optional[Dict[str, Union[float, str]]] = None,
                 on_empty: str = 'error',
                 check_interval: Optional[int] = None,
                 use_cuda_graph: bool = True,
                 owner: str = 'WRS'):
        self.owner = owner
        self.granularity = check_choice(f'{owner}: granularity', granularity, GRANULARITIES)
        self.schedule = (TargetSchedule.from_config(target_norm, f'{owner}.target_norm')
                         if isinstance(target_norm, dict) else None)
        self.target_norm = validate_target(
            self.schedule.initial if self.schedule else target_norm, f'{owner}.target_norm')
        self.interval = check_positive_int(f'{owner}: interval', interval,
                                           '(rescale after every N real updates)')
        self.on_empty = check_choice(f'{owner}: on_empty', on_empty, ON_EMPTY)
        compile_patterns(include, 'include')
        compile_patterns(exclude, 'exclude')
        self.include, self.exclude = list(include or []) or None, list(exclude or []) or None
        self.fixed_norm_layers = check_fixed_norm_layers(fixed_norm_layers)
        self.decay_rescaled = decay_rescaled
        self.rescale_running_stats = rescale_running_stats
        self.check_interval = check_check_interval(f'{owner}: check_interval', check_interval)
        self.use_cuda_graph = check_bool(f'{owner}: use_cuda_graph', use_cuda_graph)
        self.rescaler: Optional[WeightRescaler] = None
        self.scheduled: Tuple[str, ...] = ()  # the discovered weights' names
        # The last checkpoint written (named when a check finds a diverged
        # weight: every save runs the check first, so it is a healthy one).
        self.last_checkpoint: Optional[str] = None
        self._resumed_state: Optional[Dict[str, Any]] = None
        # The step hooks, their parts and counters, once started.
        self.steps: Optional[OptimizerSteps] = None

    @property
    def num_updates(self) -> int:
        """Real updates of all optimizers that own controlled weights."""
        return sum(self.optimizer_updates)

    @property
    def group_overrides(self) -> Dict[str, Any]:
        """Param-group settings of the controlled weights."""
        return {} if self.decay_rescaled else {'weight_decay': 0.0}

    @property
    def params(self) -> List[nn.Parameter]:
        return self.rescaler.params if self.rescaler is not None else []

    # -- discovery -----------------------------------------------------------
    def discover(self, model: nn.Module, forward_fn: Callable[[], Any],
                 warn: Callable[[str], None]) -> bool:
        """Find the weights to control in ``model`` from one call of ``forward_fn``.

        ``forward_fn`` runs in whatever train/eval state ``model`` is in (the
        caller sets it, e.g. ``model.train()`` with mmdet's ``norm_eval``).

        Args:
            model: The unwrapped model.
            forward_fn: Runs one forward pass of ``model`` (see
                :func:`~mmwrs.core.discovery.discover_scale_invariant`).
            warn: Called with each warning (patterns that match nothing, an
                empty result under ``on_empty='warn'``).

        Returns:
            bool: Whether any weight is controlled.

        Raises:
            RuntimeError: Nothing is scale-invariant and ``on_empty='error'``.
        """
        self.rescaler = WeightRescaler.from_model(
            model, forward_fn, granularity=self.granularity, include=self.include,
            exclude=self.exclude, target_norm=self.target_norm,
            rescale_running_stats=self.rescale_running_stats,
            check_interval=self.check_interval, use_cuda_graph=self.use_cuda_graph)
        self.scheduled = tuple(e.name for e in self.rescaler.entries)
        add_fixed_norm_layers(self.rescaler, model, self.fixed_norm_layers)
        warn_unmatched_patterns(model, self.owner, warn, include=self.include,
                                exclude=self.exclude, fixed_norm_layers=self.fixed_norm_layers)
        if len(self.rescaler):
            return True
        message = nothing_invariant_message(self.rescaler, model, self.owner)
        if self.on_empty == 'error':
            raise RuntimeError(message)
        warn(message)
        return False

    # -- training --------------------------------------------------------------
    def start(self, optimizers: Iterable[torch.optim.Optimizer]) -> None:
        """Bring the weights to target (or restore a resumed state); then rescale
        after every ``interval``-th step of ``optimizers``.

        Each optimizer's step rescales only the controlled weights in its own
        param groups, counted by its own update counter (see
        :class:`~mmwrs.core.optimizer_steps.OptimizerSteps`). Call after weight
        initialization and after a resumed state was loaded.
        """
        if not self.params:
            return
        self.stop()
        steps = OptimizerSteps(self.rescaler, optimizers, self.interval, self._guarded,
                               self.schedule, self.scheduled)
        if self._resumed_state is not None:
            # The saved run rescaled after its last update: weights are on target.
            self.rescaler.load_state_dict(self._resumed_state['rescaler'])
            steps.restore_counts(self._resumed_state)
            self._resumed_state = None
        else:
            self.rescaler.capture_targets_()
            self._guarded(self.rescaler.rescale_)
        self.steps = steps
        steps.attach()

    def set_updates_per_epoch(self, updates: float) -> None:
        """Real updates per epoch, for a ``by_epoch`` target schedule (the
        adapter knows the dataloader); nothing for the other settings."""
        if self.schedule is not None:
            self.schedule.set_updates_per_epoch(updates)

    @property
    def optimizer_updates(self) -> List[int]:
        """Real updates of each optimizer that owns controlled weights."""
        return self.steps.counts if self.steps is not None else [0]

    def check_(self, agree_across_ranks: bool = False) -> None:
        """Run the deferred checks now (before a checkpoint, at the end of training).

        ``agree_across_ranks`` where every rank checks together (the end of
        training), not where only the saving rank does (mmengine saves on rank 0).

        Raises:
            FloatingPointError: A controlled weight held inf/NaN since the last
                check; the message names the last checkpoint written before.
            RuntimeError: A controlled parameter object was replaced in the model.
        """
        for part in self._rescalers():
            self._guarded(lambda: part.check_(agree_across_ranks=agree_across_ranks))

    def check_before_save_(self, path: Optional[str]) -> None:
        """Check, then remember ``path`` as the checkpoint now being written.

        Raises:
            FloatingPointError: As :meth:`check_`; nothing should be saved.
        """
        self.check_()
        if path:
            self.last_checkpoint = path

    def _rescalers(self) -> List[WeightRescaler]:
        if self.rescaler is None:
            return []
        parts = self.steps.parts if self.steps is not None else []
        return [self.rescaler] + [p for p in parts if p is not self.rescaler]

    def _guarded(self, call: Callable[[], None]) -> None:
        try:
            call()
        except FloatingPointError as exc:
            path = self.last_checkpoint
            where = (f' The last checkpoint written before it is {path} (each save runs '
                     'this check first).' if path else ' This run wrote no checkpoint before it.')
            raise FloatingPointError(str(exc) + where) from None

    def stop(self) -> None:
        if self.steps is not None:
            self.steps.remove()

    def report(self, model: nn.Module) -> str:
        """The start-up table of controlled and excluded weights."""
        total = sum(p.numel() for p in model.parameters())
        return format_report(self.rescaler, self.owner, total_params=total)

    # -- resume ----------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        if not self.params:
            return {}
        return dict(rescaler=self.rescaler.state_dict(), num_updates=self.num_updates,
                    optimizer_updates=list(self.optimizer_updates))

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Continue a saved run at the next :meth:`start`."""
        if state:
            self._resumed_state = state
