"""What the rescale met between two checks, and the messages that report it.

A deferred rescale ORs per-unit flags (non-finite weight, zero unit, negative
compensated variance) into persistent device buffers; :meth:`collect` reads
them with one host synchronization and clears them in place (a captured CUDA
graph keeps writing to the same buffers). The messages are the same whether a
problem is found right away or at the next check.
"""
import warnings
from typing import Dict, List, Optional

import torch
from torch import nn


class DeferredChecks:
    """Flag buffers and the deduplicated warnings about them.

    Args:
        warned_zero (set, optional): Names already warned about for zero units
            (shared between rescalers of one model: one warning per weight).
        warned_clamp (set, optional): Names already warned about for clamped
            variances.
    """

    def __init__(self, warned_zero: Optional[set] = None, warned_clamp: Optional[set] = None):
        self.pending: Dict[str, torch.Tensor] = {}
        self.dirty = False
        self.warned_zero = set() if warned_zero is None else warned_zero
        self.warned_clamp = set() if warned_clamp is None else warned_clamp

    def record(self, key: str, flags: torch.Tensor) -> None:
        """OR ``flags`` into a persistent buffer (in place: a CUDA graph replays it)."""
        seen = self.pending.get(key)
        if seen is None or seen.shape != flags.shape or seen.device != flags.device:
            seen = self.pending[key] = torch.zeros_like(flags)
        seen.logical_or_(flags)
        self.dirty = True

    def reset(self) -> None:
        """Forget the buffers (the unit layout they follow changes)."""
        self.pending = {}

    def collect(self) -> Dict[str, torch.Tensor]:
        """The flag buffers that hold a problem, on the CPU; then clear them all."""
        if not self.dirty:
            return {}
        self.dirty = False
        keys = list(self.pending)
        found = dict(zip(keys, torch.stack([self.pending[k].any() for k in keys]).tolist()))
        flags = {k: self.pending[k].to('cpu', copy=True) for k in keys if found[k]}
        for buffer in self.pending.values():
            buffer.zero_()  # in place: a captured graph keeps writing to these
        return flags

    def warn_zero(self, entries: List, units: List[int], usable: torch.Tensor) -> None:
        for entry, ok in zip(entries, usable.split(units)):
            if entry.name not in self.warned_zero and not bool(ok.all()):
                self.warned_zero.add(entry.name)
                warnings.warn(
                    f'WRS: {int((~ok).sum())} of {entry.num_units} '
                    f'{entry.granularity} unit(s) of {entry.name} have zero norm '
                    f'and are left as they are (a zero filter has no direction '
                    f'to rescale).', RuntimeWarning, stacklevel=4)

    def warn_clamped(self, entry, norm: nn.Module, count: int) -> None:
        if entry.name not in self.warned_clamp:
            self.warned_clamp.add(entry.name)
            warnings.warn(
                f'WRS: rescaling {entry.name} would need a negative '
                f'running_var in {type(norm).__name__} for '
                f'{count} channel(s); clamped to 0, so the '
                'eval-mode output of those channels changes slightly.',
                RuntimeWarning, stacklevel=5)

    @staticmethod
    def check_finite(entry, norms: torch.Tensor) -> None:
        """Raise the divergence error if ``norms`` of ``entry`` are not all finite."""
        if not bool(torch.isfinite(norms).all()):
            raise FloatingPointError(
                nonfinite_message(entry, int((~torch.isfinite(norms)).sum())))


def nonfinite_message(entry, bad: int) -> str:
    return (f'WRS: {entry.name} holds non-finite values ({bad} of '
            f'{entry.num_units} {entry.granularity} unit(s)); training has '
            'diverged and the weight cannot be rescaled. Lower the learning '
            'rate or enable gradient clipping, then resume from the last '
            'checkpoint.')
