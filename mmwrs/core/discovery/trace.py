"""Trace one forward pass: every weight layer's outputs, every norm's inputs."""
from __future__ import annotations

import contextlib
import warnings
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from .checkpointing import checkpoint_as_plain_call, checkpoint_nodes
from .records import is_norm


def _uses_running_stats(norm: nn.Module) -> bool:
    return (isinstance(norm, (_BatchNorm, _InstanceNorm))
            and not norm.training and norm.track_running_stats
            and norm.running_mean is not None)


def _iter_tensors(obj: Any) -> Iterable[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _iter_tensors(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _iter_tensors(value)


def _consumers(roots: Iterable[torch.Tensor]) -> Dict[Any, List[Any]]:
    """Map every autograd node reachable from ``roots`` to the nodes using it."""
    consumers: Dict[Any, List[Any]] = defaultdict(list)
    stack = [t.grad_fn for t in roots if t.grad_fn is not None]
    seen = set()
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        for child, _ in node.next_functions:
            if child is not None:
                consumers[child].append(node)
                stack.append(child)
    return consumers


class _NormCall(NamedTuple):
    """One call of a norm: its input, and the autograd nodes around it."""

    norm: nn.Module
    inp: Optional[torch.Tensor]
    inp_fn: Any
    out_fn: Any
    running: bool


@dataclass
class _Trace:
    """What one traced forward pass recorded.

    The traced tensors are kept alive (in ``layer_calls`` and the norm calls)
    so that their ids stay unique while the weights are classified.
    """

    norm_names: Dict[nn.Module, str]
    layer_calls: Dict[nn.Module, List[Tuple[Optional[torch.Tensor], Any]]]
    norm_by_input: Dict[int, _NormCall]
    consumers: Dict[Any, List[Any]]


def _find_layers(model: nn.Module, extra_norm_types: Sequence[type]
                 ) -> Tuple[Dict[nn.Module, str], Dict[nn.Module, str]]:
    """The weight layers and the norms of ``model``, each with its name."""
    weight_layers: Dict[nn.Module, str] = {}
    norms: Dict[nn.Module, str] = {}
    for name, module in model.named_modules():
        if is_norm(module, extra_norm_types):
            norms[module] = name
        elif isinstance(module._parameters.get('weight'), nn.Parameter):
            weight_layers[module] = name
    return weight_layers, norms


@contextlib.contextmanager
def _restored_state(model: nn.Module):
    """Restore the model's buffers (BN running statistics) and torch's RNGs."""
    buffers = {name: buf.detach().clone() for name, buf in model.named_buffers()}
    rng = torch.random.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        with torch.no_grad():
            for name, buf in model.named_buffers():
                if name in buffers:
                    buf.copy_(buffers[name])
        torch.random.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


def _trace(model: nn.Module, forward_fn: Callable[[], Any],
           weight_layers: Dict[nn.Module, str], norms: Dict[nn.Module, str]) -> _Trace:
    """Run ``forward_fn`` once with hooks on every weight layer and norm."""
    layer_calls: Dict[nn.Module, List[Tuple[Optional[torch.Tensor], Any]]] = defaultdict(list)
    norm_calls: List[_NormCall] = []

    def on_layer(module, args, output):
        if isinstance(output, torch.Tensor):
            layer_calls[module].append((output, output.grad_fn))
        else:
            layer_calls[module].append((None, None))

    def on_norm(module, args, output):
        inp = args[0] if args and isinstance(args[0], torch.Tensor) else None
        # grad_fns are read now: an in-place op later (ReLU(inplace=True))
        # gives the same tensor object a new one.
        norm_calls.append(_NormCall(module, inp, getattr(inp, 'grad_fn', None),
                                    getattr(output, 'grad_fn', None),
                                    _uses_running_stats(module)))

    handles = [m.register_forward_hook(on_layer) for m in weight_layers]
    handles += [m.register_forward_hook(on_norm) for m in norms]
    try:
        with _restored_state(model), torch.enable_grad(), checkpoint_as_plain_call():
            outputs = forward_fn()
    finally:
        for handle in handles:
            handle.remove()
    # Which norm call consumed which tensor, by the identity of its grad_fn.
    norm_by_input = {id(call.inp): call for call in norm_calls
                     if call.inp is not None and call.inp_fn is not None}
    consumers = _consumers(_iter_tensors(outputs))
    unseen = checkpoint_nodes([*consumers, *(n for users in consumers.values() for n in users)])
    if unseen:
        # Never silent: the weights inside are excluded, and this says why.
        warnings.warn(
            f'discovery could not see through gradient checkpointing ({", ".join(unseen)} '
            'in the traced graph): weights whose forward ran inside it are excluded as '
            '"ran without autograd". Turn the checkpointing off (e.g. with_cp=False) for '
            'the discovery forward, or call it via torch.utils.checkpoint.checkpoint.',
            stacklevel=3)
    return _Trace(norms, layer_calls, norm_by_input, consumers)
