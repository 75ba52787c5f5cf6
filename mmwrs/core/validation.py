"""Checks of user options, written once, with messages naming key, value and what is allowed.

Pure Python (no torch, no mmengine): the optimizers, the penalties, the
rescaler, the controller and the mmengine adapters all check their options
here. ``name`` is what the message calls the option, with its owner where that
helps (``'NormMonitorHook: interval'``, ``'WRSHook.include'``).
"""
import math
import numbers
import re
from typing import Any, List, Optional, Sequence


def _require_real(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f'{name} must be a real number, got {value!r}')


def check_real(name: str, value: Any) -> float:
    """A finite real number (not a bool), as a float."""
    _require_real(name, value)
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f'{name} must be finite, got {value!r}')
    return result


def check_min(name: str, value: Any, low: float, inclusive: bool = True) -> float:
    """A finite real number ``>= low`` (``> low`` unless ``inclusive``)."""
    result = check_real(name, value)
    if (result < low) if inclusive else (result <= low):
        op = '>=' if inclusive else '>'
        raise ValueError(f'{name} must be {op} {low:g}, got {value!r}')
    return result


def check_non_negative(name: str, value: Any) -> float:
    """A finite real number ``>= 0``; one message for both failures."""
    _require_real(name, value)
    if not math.isfinite(float(value)) or value < 0:
        raise ValueError(f'{name} must be finite and >= 0, got {value!r}')
    return float(value)


def check_positive(name: str, value: Any) -> float:
    """A finite real number ``> 0``."""
    _require_real(name, value)
    if not math.isfinite(float(value)) or value <= 0:
        raise ValueError(f'{name} must be a positive finite number, got {value!r}')
    return float(value)


def check_unit_interval(name: str, value: Any, *, high_inclusive: bool) -> float:
    """A real number in ``[0, 1]`` (``[0, 1)`` unless ``high_inclusive``)."""
    result = check_real(name, value)
    ok = 0.0 <= result <= 1.0 if high_inclusive else 0.0 <= result < 1.0
    if not ok:
        interval = '[0, 1]' if high_inclusive else '[0, 1)'
        raise ValueError(f'{name} must be in {interval}, got {value!r}')
    return result


def check_positive_int(name: str, value: Any, meaning: str = '') -> int:
    """An int ``>= 1`` (not a bool); ``meaning`` is said in the message."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        meaning = f' {meaning}' if meaning else ''
        raise ValueError(f'{name} must be a positive integer{meaning}, got {value!r}')
    return value


def check_check_interval(name: str, value: Any) -> Optional[int]:
    """WRS's ``check_interval``: a positive int, or None for the device default."""
    if value is None:
        return None
    return check_positive_int(name, value, 'or None (None: every rescale on the CPU, '
                              'every 50th on GPUs)')


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f'{name} must be True or False, got {value!r}')
    return value


def check_optional_bool(name: str, value: Any) -> Optional[bool]:
    if value is not None and not isinstance(value, bool):
        raise ValueError(f'{name} must be True, False or None, got {value!r}')
    return value


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """One of ``choices`` (a granularity, an ``on_empty`` policy...)."""
    if value not in choices:
        raise ValueError(f'{name} must be one of {choices}, got {value!r}')
    return value


def compile_patterns(patterns: Optional[Sequence[str]], key: str) -> List[re.Pattern]:
    """Compile regular expressions of parameter names (None: none)."""
    compiled = []
    for pattern in patterns or ():
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise ValueError(f'{key}: {pattern!r} is not a valid regular '
                             f'expression ({exc})') from None
    return compiled


def matches(name: str, include: Sequence[re.Pattern], exclude: Sequence[re.Pattern]) -> bool:
    """Whether ``name`` passes include/exclude patterns (no include: all do)."""
    if any(p.search(name) for p in exclude):
        return False
    return not include or any(p.search(name) for p in include)
