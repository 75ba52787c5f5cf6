"""SGDP: SGD (with momentum) with projection of the radial update component.

Heo et al., ICLR 2021 (see :mod:`mmwrs.optim.projection`). Reproduces
``adamp.SGDP`` of the authors' ``adamp`` 0.3.0 package; pure PyTorch.
"""
from typing import Any, Dict, List, Optional, Tuple

import torch

from mmwrs.core.validation import check_bool, check_unit_interval

from .base import ParamsT, ProjectionOptimizer
from .projection import (decay_factor, foreach_mul_scalar_, foreach_project_and_step,
                         is_projectable, project_radial, scale_)

__all__ = ['SGDP']


class SGDP(ProjectionOptimizer):
    """SGD with the radial component of scale-invariant updates removed.

    Each step, for every parameter ``p`` with gradient ``g``:

    1. ``buf = momentum * buf + (1 - dampening) * g`` (``buf`` starts at 0,
       so unlike :class:`torch.optim.SGD` the first step is damped too);
       ``d = g + momentum * buf`` if ``nesterov`` else ``d = buf``.
    2. If ``p`` has more than one dimension and behaves as scale-invariant
       (see :func:`mmwrs.optim.projection.project_radial`: channel-wise, then
       layer-wise cosine test with the raw gradient), the radial component
       of ``d`` is removed and the weight decay is multiplied by
       ``wd_ratio``.
    3. Decoupled weight decay, when ``weight_decay > 0``:
       ``p *= 1 - lr * weight_decay * ratio / (1 - momentum)`` with
       ``ratio`` = ``wd_ratio`` for projected parameters and 1 otherwise
       (also for 1-D parameters; with ``momentum == 0`` the divisor is 1).
    4. ``p -= lr * d``.

    This reproduces ``adamp.SGDP`` (``adamp`` 0.3.0) numerically. Note one
    property of the reference: with ``nesterov=False`` its update *is* the
    momentum buffer, and the projection is done in place, so the buffer of a
    projected parameter is stored projected (with ``nesterov=True`` the
    buffer is never projected). ``project_buffer=True`` (default) keeps that
    behaviour; ``project_buffer=False`` leaves the buffer unprojected in all
    cases (only the update is projected, as in Algorithm 1 of the paper).

    Args:
        params (iterable): Parameters to optimize, or dicts defining
            parameter groups.
        lr (float): Learning rate, >= 0 (required).
        momentum (float): Momentum factor, in [0, 1) (the decay divides by
            ``1 - momentum``). Default: 0.
        dampening (float): Dampening of the gradient added to the momentum
            buffer, in [0, 1]. Default: 0.
        weight_decay (float): Decoupled weight decay, >= 0. Default: 0.
        nesterov (bool): Use Nesterov momentum. Default: False.
        eps (float): Used in the projection's norms, >= 0. Default: 1e-8.
        delta (float): Threshold of the scale-invariance test, > 0.
            Default: 0.1.
        wd_ratio (float): Multiplier of the weight decay of projected
            parameters, >= 0. Default: 0.1.
        project_buffer (bool): Keyword-only. With ``nesterov=False``, store
            the projected update as the momentum buffer, as the reference
            does. Default: True.
        foreach (bool | None): Keyword-only. The multi-tensor step, see
            :class:`~mmwrs.optim.base.ProjectionOptimizer`. Default: None
            (on when all of a group's parameters are on CUDA).

    Raises:
        ValueError: An argument is out of range (see the base class).
    """

    LATER_OPTIONS = {'project_buffer': True, 'foreach': None}

    def __init__(self,
                 params: ParamsT,
                 lr: float,
                 momentum: float = 0,
                 dampening: float = 0,
                 weight_decay: float = 0,
                 nesterov: bool = False,
                 eps: float = 1e-8,
                 delta: float = 0.1,
                 wd_ratio: float = 0.1,
                 *,
                 project_buffer: bool = True,
                 foreach: Optional[bool] = None):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, eps=eps, delta=delta, wd_ratio=wd_ratio,
                        project_buffer=project_buffer, foreach=foreach)
        super().__init__(params, defaults)

    @staticmethod
    def check_group(group: Dict[str, Any]) -> None:
        ProjectionOptimizer.check_group(group)
        check_unit_interval('momentum', group['momentum'], high_inclusive=False)
        check_unit_interval('dampening', group['dampening'], high_inclusive=True)
        check_bool('project_buffer', group['project_buffer'])

    @staticmethod
    def init_state(p: torch.Tensor) -> Dict[str, Any]:
        return {'momentum': torch.zeros_like(p, memory_format=torch.preserve_format)}

    @staticmethod
    def _decays(group: Dict[str, Any]) -> Optional[Tuple[float, float]]:
        """(plain, projected) decay factors, or None without decay."""
        lr, weight_decay = group['lr'], group['weight_decay']
        if weight_decay <= 0:
            return None
        momentum = group['momentum']
        return (1 - lr * weight_decay / (1 - momentum),
                1 - lr * weight_decay * group['wd_ratio'] / (1 - momentum))

    @staticmethod
    def _step_one(group: Dict[str, Any], p: torch.Tensor, grad: torch.Tensor,
                  state: Dict[str, Any]) -> None:
        """The reference's per-parameter step (same operations, no sync)."""
        momentum, nesterov = group['momentum'], group['nesterov']
        buf = state['momentum']
        buf.mul_(momentum).add_(grad, alpha=1 - group['dampening'])
        update = grad + momentum * buf if nesterov else buf

        projected = None
        if is_projectable(p):
            # In place when the update is a temporary (nesterov) or the buffer
            # the reference projects in place; a copy when the buffer stays.
            update, projected = project_radial(
                p, grad, update, group['delta'], group['eps'],
                inplace=nesterov or group['project_buffer'])
        decays = SGDP._decays(group)
        if decays is not None:
            scale_(p, decay_factor(projected, p, *decays))
        p.add_(update, alpha=-group['lr'])

    @staticmethod
    def _step_foreach(group: Dict[str, Any], params: List[torch.Tensor],
                      grads: List[torch.Tensor], states: List[Dict[str, Any]]) -> None:
        """Multi-tensor step: same-shaped weights are projected together."""
        momentum, nesterov = group['momentum'], group['nesterov']
        bufs = [state['momentum'] for state in states]
        foreach_mul_scalar_(bufs, momentum)
        torch._foreach_add_(bufs, grads, alpha=1 - group['dampening'])
        if nesterov:
            updates = torch._foreach_add(grads,
                                         torch._foreach_mul(bufs, momentum))
        else:
            updates = bufs
        foreach_project_and_step(
            params, grads, updates, delta=group['delta'], eps=group['eps'],
            step_size=group['lr'], decay=SGDP._decays(group),
            project_into=bufs if not nesterov and group['project_buffer']
            else None)
