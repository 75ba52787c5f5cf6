"""What a WRS policy adds to a discovery and what it says about it.

Discovery finds the scale-invariant weights; the policy also holds weights at a
fixed norm by choice (``fixed_norm_layers``), warns about name patterns that
match nothing (a typo would otherwise silently control more or fewer weights),
and explains an empty result.
"""
from typing import Callable, Dict, Optional, Sequence, Union

from torch import nn

from .rescale import WeightRescaler, validate_target
from .validation import compile_patterns


def check_fixed_norm_layers(fixed_norm_layers: Optional[Dict[str, Union[float, str]]]
                            ) -> Dict[str, Union[float, str]]:
    """``{regex: norm}`` checked: each pattern compiles and each norm is a valid target."""
    checked = dict(fixed_norm_layers or {})
    for pattern, norm in checked.items():
        compile_patterns([pattern], 'fixed_norm_layers')
        validate_target(norm, f'fixed_norm_layers[{pattern!r}]')
    return checked


def add_fixed_norm_layers(rescaler: WeightRescaler, model: nn.Module,
                          fixed_norm_layers: Dict[str, Union[float, str]]) -> None:
    """Add every trainable weight matching a pattern, held at its whole-tensor norm."""
    controlled = {id(p) for p in rescaler.params}
    for pattern, norm in fixed_norm_layers.items():
        regex = compile_patterns([pattern], 'fixed_norm_layers')[0]
        for name, param in model.named_parameters():
            if regex.search(name) and param.requires_grad and id(param) not in controlled:
                rescaler.add(name, param, norm, granularity='layer')
                controlled.add(id(param))


def warn_unmatched_patterns(model: nn.Module, owner: str, warn: Callable[[str], None],
                            include: Optional[Sequence[str]] = None,
                            exclude: Optional[Sequence[str]] = None,
                            fixed_norm_layers: Optional[Dict[str, object]] = None) -> None:
    """Warn, naming the option, about each pattern no parameter name matches."""
    names = [name for name, _ in model.named_parameters()]
    patterns = [('include', p) for p in include or ()]
    patterns += [('exclude', p) for p in exclude or ()]
    patterns += [('fixed_norm_layers', p) for p in fixed_norm_layers or {}]
    for key, pattern in patterns:
        regex = compile_patterns([pattern], key)[0]
        if not any(regex.search(name) for name in names):
            warn(f'{owner}: {key} pattern {pattern!r} matches no parameter '
                 f'name of {type(model).__name__}; names look like '
                 "'backbone.layer1.0.conv1.weight'")


def nothing_invariant_message(rescaler: WeightRescaler, model: nn.Module, owner: str) -> str:
    """Why nothing is controlled, with the exclusion reasons and what to do."""
    excluded = rescaler.discovery.excluded
    reasons = sorted({e.reason.split(' (call')[0] for e in excluded})
    return (f'{owner}: found no scale-invariant weight in '
            f'{type(model).__name__}: of {len(excluded)} conv/linear weights none '
            'has an output that feeds only a normalization layer (reasons: '
            f'{"; ".join(reasons) or "no conv/linear weights"}). WRS needs '
            'BN/GN/LN/IN after the layers it controls; use weight decay for this '
            "model, or set on_empty='warn' to train without WRS.")
