"""The rescale hung on optimizers' own steps: one part and one counter each.

Hanging on ``optimizer.step`` is what makes gradient-accumulation micro-steps
and AMP steps the grad scaler skipped rescale nothing. With several optimizers
(a GAN's, ``OptimWrapperDict``) each step rescales only the controlled weights
in that optimizer's param groups: rescaling the others' would modify tensors a
pending backward still needs, and count their updates twice.
"""
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import torch

from .rescale import WeightRescaler
from .target_schedule import TargetSchedule


def skipped_by_scaler(optimizer: torch.optim.Optimizer, kwargs: Dict[str, Any]) -> bool:
    """Whether a grad scaler called this (fused) optimizer's step to skip it.

    ``GradScaler`` steps fused optimizers even on inf/NaN gradients and hands
    them ``found_inf`` (an attribute during the step, or a keyword in older
    torch); the step then changes nothing. One host read per step, only under
    AMP with a fused optimizer (the others are never stepped on a skip).
    """
    found_inf = kwargs.get('found_inf', getattr(optimizer, 'found_inf', None))
    return isinstance(found_inf, torch.Tensor) and bool(found_inf.item() != 0)


class OptimizerSteps:
    """Rescale after every ``interval``-th real step of each optimizer.

    Args:
        rescaler: All controlled weights.
        optimizers: The optimizers; those without a controlled weight are left
            alone.
        interval: Real updates of an optimizer between two rescales.
        guard: Runs a rescale (the controller adds to its errors).
        schedule: Targets as a function of the optimizer's update count, set
            on ``scheduled`` entries right before each rescale.
        scheduled: Names of the entries that follow ``schedule``.
    """

    def __init__(self, rescaler: WeightRescaler, optimizers: Iterable[torch.optim.Optimizer],
                 interval: int, guard: Callable[[Callable[[], None]], None],
                 schedule: Optional[TargetSchedule] = None, scheduled: Sequence[str] = ()):
        owned = []
        for optimizer in optimizers:
            ids = {id(p) for group in optimizer.param_groups for p in group['params']}
            entries = [e for e in rescaler.entries if id(e.param) in ids]
            if entries:
                owned.append((optimizer, entries))
        # One optimizer owning everything (the usual case) rescales through the
        # rescaler itself: the same graph, the same bits as before.
        self.parts = [rescaler if len(entries) == len(rescaler.entries)
                      else rescaler.subset(entries) for _, entries in owned]
        self.slots = {id(optimizer): i for i, (optimizer, _) in enumerate(owned)}
        self.counts: List[int] = [0] * max(len(owned), 1)
        self.interval, self.guard = interval, guard
        self.schedule, self.scheduled = schedule, tuple(scheduled)
        # The target each part was last set to: a constant stretch of the
        # schedule costs no target copy.
        self._applied: List[Optional[float]] = [None] * len(self.parts)
        self._optimizers = [optimizer for optimizer, _ in owned]
        self._handles: List[Any] = []

    def attach(self) -> None:
        self._handles = [optimizer.register_step_post_hook(self.after_step)
                         for optimizer in self._optimizers]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def after_step(self, optimizer, args, kwargs) -> None:
        if skipped_by_scaler(optimizer, kwargs):
            return
        slot = self.slots.get(id(optimizer), 0)
        self.counts[slot] += 1
        if self.counts[slot] % self.interval == 0:
            self._follow_schedule(slot)
            self.guard(self.parts[slot].rescale_)

    def _follow_schedule(self, slot: int) -> None:
        if self.schedule is None or not self.scheduled:
            return
        value = self.schedule.value(self.counts[slot])
        if value != self._applied[slot]:
            self.parts[slot].set_targets_({name: value for name in self.scheduled})
            self._applied[slot] = value

    def restore_counts(self, state: Dict[str, Any]) -> None:
        """Counters from a saved controller state (old ones: one shared counter)."""
        counts = state.get('optimizer_updates')
        if counts is not None and len(counts) == len(self.counts):
            self.counts = list(counts)
        else:
            # One shared counter (before per-optimizer counts), bumped by every
            # optimizer's step.
            self.counts = [state['num_updates'] // len(self.counts)] * len(self.counts)
