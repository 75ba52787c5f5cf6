"""The targets of a rescaler: captured, set in place, cached flat, saved, restored."""
from typing import Any, Dict, List, Optional, Union

import torch

from .deferred_checks import DeferredChecks
from .rescale_entry import RescaleEntry


class TargetsMixin:
    """Target handling of :class:`~mmwrs.core.WeightRescaler`.

    Uses ``entries`` and keeps ``_targets_cache`` (all targets in one tensor,
    which a captured CUDA graph reads: it is only ever written in place or
    dropped) and ``_units`` (units per entry, the cache's layout).
    """

    entries: List[RescaleEntry]
    _targets_cache: Optional[torch.Tensor]
    _units: List[int]

    @torch.no_grad()
    def capture_targets_(self) -> None:
        """Set every ``'init'`` target to the unit norms the weights have now."""
        for entry in self.entries:
            if isinstance(entry.target, str):
                norms = entry.unit_norms()
                DeferredChecks.check_finite(entry, norms)
                entry.target = norms.clone()
        self._targets_cache = None

    @torch.no_grad()
    def set_targets_(self, value: Union[float, Dict[str, Any]]) -> None:
        """Set targets in place, so that a captured CUDA graph stays valid.

        Args:
            value: One norm for every unit, or ``{name: norm or per-unit
                tensor}`` for some entries.
        """
        for entry in self.entries:
            new = value.get(entry.name) if isinstance(value, dict) else value
            if new is not None:
                entry.set_target_(new)
        if self._targets_cache is not None:
            cache = self._targets_cache
            cache.copy_(torch.cat([e.target_tensor(cache.new_empty(e.num_units))
                                   for e in self.entries]))

    def targets(self) -> Dict[str, torch.Tensor]:
        """Target of every unit, by parameter name."""
        return {e.name: e.target_tensor(e.param.new_empty(e.num_units)) for e in self.entries}

    def _flat_targets(self, like: torch.Tensor) -> torch.Tensor:
        """All targets in one tensor, cached until a target changes."""
        if self._targets_cache is None or self._targets_cache.device != like.device \
                or self._targets_cache.dtype != like.dtype:
            self._units = [entry.num_units for entry in self.entries]
            self._targets_cache = torch.cat([entry.target_tensor(like.new_empty(entry.num_units))
                                             for entry in self.entries])
        return self._targets_cache

    def state_dict(self) -> Dict[str, Any]:
        """Targets by parameter name (captured ``'init'`` targets survive resume)."""
        return targets_state(self.entries)

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore targets saved by :meth:`state_dict`.

        Raises:
            KeyError: If ``state`` was saved for a different set of weights.
        """
        load_targets_(self.entries, state)
        self._targets_cache = None


def targets_state(entries: List[RescaleEntry]) -> Dict[str, Any]:
    """Targets by parameter name (captured ``'init'`` targets survive resume)."""
    return {'targets': {e.name: (e.target.clone() if isinstance(e.target, torch.Tensor)
                                 else e.target) for e in entries}}


def load_targets_(entries: List[RescaleEntry], state: Dict[str, Any]) -> None:
    """Restore targets saved by :func:`targets_state`.

    Raises:
        KeyError: If ``state`` was saved for a different set of weights.
    """
    targets = state.get('targets', {})
    names = {e.name for e in entries}
    if set(targets) != names:
        missing, extra = sorted(names - set(targets)), sorted(set(targets) - names)
        raise KeyError(
            'WRS state does not match the controlled weights: '
            f'missing {missing[:5]}{"..." if len(missing) > 5 else ""}, '
            f'unexpected {extra[:5]}{"..." if len(extra) > 5 else ""}. '
            'Was the checkpoint saved from another model or WRS setting?')
    for entry in entries:
        target = targets[entry.name]
        if isinstance(target, torch.Tensor):
            if target.numel() != entry.num_units:
                raise KeyError(f'WRS state for {entry.name} has {target.numel()} '
                               f'units, the weight has {entry.num_units}')
            target = target.to(entry.param.device)
        entry.target = target
