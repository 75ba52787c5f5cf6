"""Target norms that change over training: a pure function of the update count.

Weight decay shrinks scale-invariant weights over the constant-lr phase, so their
effective learning rate ``lr / ||w||**2`` grows (x3-8 on the tiny study models);
WRS at a fixed target has no such growth. A :class:`TargetSchedule` lets the
target follow a curve instead (constant, linear, cosine, or piecewise-linear
points, e.g. a norm curve measured under weight decay), in optimizer updates or
in epochs.

The value depends only on the update count, which is checkpointed with the rest
of the WRS state, so a resumed run follows the same targets as an uninterrupted
one. Pure Python: no torch, no mmengine.
"""
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .validation import check_bool, check_choice, check_non_negative, check_positive

SCHEDULE_TYPES = ('constant', 'linear', 'cosine', 'piecewise')


class TargetSchedule:
    """A target norm as a function of training progress.

    Args:
        type (str): ``'constant'`` (``start`` throughout), ``'linear'`` or
            ``'cosine'`` (from ``start`` at ``begin`` to ``end`` at ``end_at``,
            held outside that span), or ``'piecewise'`` (linear between
            ``points``, held before the first and after the last).
        start (float): Target at ``begin`` (all types but ``'piecewise'``).
        end (float, optional): Target at ``end_at`` (linear / cosine).
        begin (float): Where the change starts, in updates or epochs.
        end_at (float, optional): Where it ends (linear / cosine), > ``begin``.
        points (list[tuple[float, float]], optional): ``(position, target)``
            pairs with strictly increasing positions (``'piecewise'``).
        by_epoch (bool): Positions count epochs of ``updates_per_epoch``
            optimizer updates (set by the adapter) instead of updates.
        key (str): What messages call this option.
    """

    def __init__(self,
                 type: str,
                 start: Optional[float] = None,
                 end: Optional[float] = None,
                 begin: float = 0,
                 end_at: Optional[float] = None,
                 points: Optional[Sequence[Sequence[float]]] = None,
                 by_epoch: bool = False,
                 key: str = 'target_norm'):
        self.key = key
        self.type = check_choice(f'{key}.type', type, SCHEDULE_TYPES)
        self.by_epoch = check_bool(f'{key}.by_epoch', by_epoch)
        self.updates_per_epoch: Optional[int] = None
        if type == 'piecewise':
            self._reject_given(start=start, end=end, end_at=end_at)
            self.points = self._check_points(points)
            return
        self._reject_given(points=points)
        start = check_positive(f'{key}.start', start) if start is not None else None
        if start is None:
            raise ValueError(f"{key}.start is required for type={type!r} (a positive number)")
        begin = check_non_negative(f'{key}.begin', begin)
        if type == 'constant':
            self._reject_given(end=end, end_at=end_at)
            self.points = [(begin, start)]
            return
        if end is None or end_at is None:
            raise ValueError(f'{key}: type={type!r} needs end (the final target) and end_at '
                             f'(where it is reached), got end={end!r}, end_at={end_at!r}')
        end = check_positive(f'{key}.end', end)
        end_at = check_positive(f'{key}.end_at', end_at)
        if end_at <= begin:
            raise ValueError(f'{key}.end_at must be > begin ({begin:g}), got {end_at!r}')
        self.points = [(begin, start), (end_at, end)]

    @classmethod
    def from_config(cls, cfg: Dict[str, Any], key: str = 'target_norm') -> 'TargetSchedule':
        """Build from a config dict, e.g. ``dict(type='cosine', start=1, end=0.5, end_at=800)``."""
        if not isinstance(cfg, dict) or 'type' not in cfg:
            raise ValueError(f"{key} schedule must be a dict with a 'type' in {SCHEDULE_TYPES}, "
                             f'got {cfg!r}')
        allowed = ('type', 'start', 'end', 'begin', 'end_at', 'points', 'by_epoch')
        unknown = sorted(set(cfg) - set(allowed))
        if unknown:
            raise ValueError(f'{key}: unknown schedule key(s) {unknown}; allowed: {allowed}')
        return cls(key=key, **cfg)

    def _reject_given(self, **values: Any) -> None:
        given = sorted(name for name, value in values.items() if value is not None)
        if given:
            raise ValueError(f'{self.key}: {given} do not apply to type={self.type!r}')

    def _check_points(self, points: Optional[Sequence[Sequence[float]]]
                      ) -> List[Tuple[float, float]]:
        if not points:
            raise ValueError(f"{self.key}.points is required for type='piecewise': a list of "
                             f'(position, target) pairs, got {points!r}')
        checked = []
        for index, point in enumerate(points):
            if not isinstance(point, (list, tuple)) or len(point) != 2:
                raise ValueError(f'{self.key}.points[{index}] must be a (position, target) '
                                 f'pair, got {point!r}')
            checked.append((check_non_negative(f'{self.key}.points[{index}][0]', point[0]),
                            check_positive(f'{self.key}.points[{index}][1]', point[1])))
        for (before, _), (after, _) in zip(checked, checked[1:]):
            if after <= before:
                raise ValueError(f'{self.key}.points: positions must increase strictly, '
                                 f'got {before:g} then {after:g}')
        return checked

    @property
    def initial(self) -> float:
        """The target at the start of training (no ``updates_per_epoch`` needed)."""
        return self.points[0][1]

    def set_updates_per_epoch(self, updates: float) -> None:
        """Real updates per epoch (what the adapter reads off the train dataloader);
        only a ``by_epoch`` schedule needs it."""
        if not self.by_epoch:
            return
        if not updates > 0:
            raise ValueError(f'{self.key}: by_epoch=True needs a train dataloader with at '
                             f'least one update, got {updates!r}')
        self.updates_per_epoch = updates

    def value(self, num_updates: int) -> float:
        """The target after ``num_updates`` optimizer updates."""
        position = float(num_updates)
        if self.by_epoch:
            if not self.updates_per_epoch:
                raise RuntimeError(f'{self.key}: by_epoch=True needs updates_per_epoch, which '
                                   'the WRS hook sets from the train dataloader; set it '
                                   'when using the schedule outside the Runner')
            position /= self.updates_per_epoch
        points = self.points
        if position <= points[0][0]:
            return points[0][1]
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            if position <= x1:
                fraction = (position - x0) / (x1 - x0)
                if self.type == 'cosine':
                    fraction = (1 - math.cos(math.pi * fraction)) / 2
                return y0 + (y1 - y0) * fraction
        return points[-1][1]

    def __repr__(self) -> str:
        unit = 'epochs' if self.by_epoch else 'updates'
        body = ', '.join(f'{x:g}: {y:g}' for x, y in self.points)
        return f'TargetSchedule({self.type}, {unit} {{{body}}})'


def points_following(curve: Sequence[Sequence[float]], start: float, num_points: int = 16,
                     key: str = 'curve') -> List[Tuple[float, float]]:
    """``'piecewise'`` points whose target follows a measured norm curve.

    Under weight decay the mean filter norm ``n(k)`` of the scale-invariant
    weights moves over training, and with it their effective learning rate
    ``lr / n(k)**2``. A WRS run whose target is ``start * n(k) / n(0)`` has the
    same effective-LR curve relative to its start. The curve is resampled at
    ``num_points`` positions evenly spread over its span (its first and last
    steps always among them), each value taken at the nearest logged step.

    Args:
        curve (list[tuple[float, float]]): ``(update, norm)`` pairs, e.g. the
            ``mean/filter_norm`` series ``NormMonitorHook`` logs.
        start (float): The target at the curve's first step.
        num_points (int): How many points to keep, >= 2.
        key (str): What messages call the curve.

    Returns:
        list[tuple[float, float]]: ``(update, target)`` pairs, strictly
        increasing in update, for ``TargetSchedule('piecewise', points=...)``.
    """
    start = check_positive('start', start)
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 2:
        raise ValueError(f'num_points must be an integer >= 2, got {num_points!r}')
    steps = sorted((float(x), float(y)) for x, y in curve)
    if len(steps) < 2:
        raise ValueError(f'{key} needs at least two (update, norm) points, got {len(steps)}')
    bad = [(x, y) for x, y in steps if not (y > 0 and math.isfinite(y))]
    if bad:
        raise ValueError(f'{key}: norms must be positive and finite, got {bad[:3]}')
    first, last = steps[0][0], steps[-1][0]
    base = steps[0][1]
    points: List[Tuple[float, float]] = []
    for index in range(num_points):
        wanted = first + (last - first) * index / (num_points - 1)
        x, y = min(steps, key=lambda step: abs(step[0] - wanted))
        if not points or x > points[-1][0]:
            points.append((x, start * y / base))
    return points
