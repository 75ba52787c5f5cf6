"""Gradient checkpointing as a plain call while discovery traces a forward.

Reentrant ``torch.utils.checkpoint`` runs the wrapped forward without autograd,
so the trace would not see which conv feeds which norm (mmdet's ResNet with
``with_cp=True`` loses 38 of its 42 invariant weights). The values a
checkpointed forward computes are the same as a plain call's, so for the trace
``checkpoint`` is replaced by a plain call: in ``torch.utils.checkpoint`` (which
covers ``cp.checkpoint(...)``, mmdet/mmseg/mmcv's form, and
``checkpoint_sequential``) and under every name a loaded module imported it as
(``from torch.utils.checkpoint import checkpoint``, e.g. mmengine's
activation checkpointing). Anything still checkpointed (an autograd node of a
checkpoint kind in the traced graph, e.g. fairscale's own implementation) is
reported by :func:`checkpoint_nodes`.
"""
from __future__ import annotations

import contextlib
import sys
import types
from typing import Any, Iterable, List

import torch.utils.checkpoint as torch_checkpoint

# Options of torch.utils.checkpoint.checkpoint (torch 2.1 to 2.13): everything
# else in the call goes to the wrapped function, as checkpoint itself does.
_CHECKPOINT_OPTIONS = ('use_reentrant', 'preserve_rng_state', 'context_fn',
                       'determinism_check', 'debug')


def _plain_checkpoint(function, *args, **kwargs):
    """``checkpoint(function, *args, **kwargs)`` without the checkpointing."""
    for key in _CHECKPOINT_OPTIONS:
        kwargs.pop(key, None)
    return function(*args, **kwargs)


def _bindings_of(original: Any) -> List[tuple]:
    """Every ``(module, attribute)`` of a loaded module bound to ``original``."""
    found = []
    for module in list(sys.modules.values()):
        if not isinstance(module, types.ModuleType):
            continue
        try:
            names = [k for k, v in vars(module).items() if v is original]
        except Exception:  # a lazy or proxy module that refuses vars(): skip it
            continue
        found += [(module, name) for name in names]
    return found


@contextlib.contextmanager
def checkpoint_as_plain_call():
    """Make ``torch.utils.checkpoint.checkpoint`` a plain call, restored on exit."""
    original = torch_checkpoint.checkpoint
    bindings = _bindings_of(original)
    if not any(m is torch_checkpoint and n == 'checkpoint' for m, n in bindings):
        bindings.append((torch_checkpoint, 'checkpoint'))
    try:
        for module, name in bindings:
            setattr(module, name, _plain_checkpoint)
        yield
    finally:
        for module, name in bindings:
            setattr(module, name, original)


def checkpoint_nodes(nodes: Iterable[Any]) -> List[str]:
    """Names of the autograd node types in ``nodes`` that come from checkpointing."""
    return sorted({type(n).__name__ for n in nodes if 'checkpoint' in type(n).__name__.lower()})
