"""AdamP: Adam with projection of the radial update component.

Heo et al., ICLR 2021 (see :mod:`mmwrs.optim.projection`). Reproduces
``adamp.AdamP`` of the authors' ``adamp`` 0.3.0 package; pure PyTorch.
"""
import math
from typing import Any, Dict, List, Optional, Tuple

import torch

from mmwrs.core.validation import check_unit_interval

from .base import ParamsT, ProjectionOptimizer
from .projection import (decay_factor, foreach_mul_scalar_, foreach_project_and_step,
                         is_projectable, project_radial, scale_)

__all__ = ['AdamP']


class AdamP(ProjectionOptimizer):
    """Adam with the radial component of scale-invariant updates removed.

    For every parameter with more than one dimension, each step first tests
    whether the weight behaves as scale-invariant, using the raw gradient
    (see :func:`~mmwrs.optim.projection.project_radial`: channel-wise first, then layer-wise). If it
    does, the radial component of the Adam update (not of the moment
    buffers) is removed and the weight decay is multiplied by ``wd_ratio``.
    Weight decay is decoupled (AdamW style):
    ``p *= 1 - lr * weight_decay * ratio`` with ``ratio`` = ``wd_ratio`` for
    projected parameters and 1 otherwise, applied before the step.

    Reproduces ``adamp.AdamP`` (``adamp`` 0.3.0) numerically, including its
    ``nesterov`` variant ``(beta1 * m + (1 - beta1) * g) / denom`` and
    ``denom = sqrt(v) / sqrt(1 - beta2**t) + eps``. Neither path syncs the
    host with the device.

    Args:
        params (iterable): Parameters to optimize, or dicts defining
            parameter groups.
        lr (float): Learning rate, >= 0. Default: 1e-3.
        betas (tuple[float, float]): Decay rates of the first and second
            moment averages, each in [0, 1). Default: (0.9, 0.999).
        eps (float): Added to the denominator, and used in the projection's
            norms, >= 0. Default: 1e-8.
        weight_decay (float): Decoupled weight decay, >= 0. Default: 0.
        delta (float): Threshold of the scale-invariance test, > 0.
            Default: 0.1.
        wd_ratio (float): Multiplier of the weight decay of projected
            parameters, >= 0. Default: 0.1.
        nesterov (bool): Use the Nesterov-style update. Default: False.
        foreach (bool | None): Keyword-only. The multi-tensor step, see
            :class:`~mmwrs.optim.base.ProjectionOptimizer`. Default: None
            (on when all of a group's parameters are on CUDA).

    Raises:
        ValueError: An argument is out of range (see the base class).
    """

    def __init__(self,
                 params: ParamsT,
                 lr: float = 1e-3,
                 betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8,
                 weight_decay: float = 0,
                 delta: float = 0.1,
                 wd_ratio: float = 0.1,
                 nesterov: bool = False,
                 *,
                 foreach: Optional[bool] = None):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, delta=delta,
                        wd_ratio=wd_ratio, nesterov=nesterov, foreach=foreach)
        super().__init__(params, defaults)

    @staticmethod
    def check_group(group: Dict[str, Any]) -> None:
        ProjectionOptimizer.check_group(group)
        betas = group['betas']
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(
                f'betas must be a pair (beta1, beta2), got {betas!r}')
        check_unit_interval('betas[0]', betas[0], high_inclusive=False)
        check_unit_interval('betas[1]', betas[1], high_inclusive=False)

    @staticmethod
    def init_state(p: torch.Tensor) -> Dict[str, Any]:
        return {'step': 0,
                'exp_avg': torch.zeros_like(p, memory_format=torch.preserve_format),
                'exp_avg_sq': torch.zeros_like(p, memory_format=torch.preserve_format)}

    @staticmethod
    def _decays(group: Dict[str, Any]) -> Optional[Tuple[float, float]]:
        """(plain, projected) decay factors, or None without decay."""
        lr, weight_decay = group['lr'], group['weight_decay']
        if weight_decay <= 0:
            return None
        return (1 - lr * weight_decay,
                1 - lr * weight_decay * group['wd_ratio'])

    @staticmethod
    def _step_one(group: Dict[str, Any], p: torch.Tensor, grad: torch.Tensor,
                  state: Dict[str, Any]) -> None:
        """The reference's per-parameter step (same operations, no sync)."""
        beta1, beta2 = group['betas']
        eps = group['eps']
        exp_avg, exp_avg_sq = state['exp_avg'], state['exp_avg_sq']
        state['step'] += 1
        bias_correction1 = 1 - beta1**state['step']
        bias_correction2 = 1 - beta2**state['step']

        exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (exp_avg_sq.sqrt() / math.sqrt(bias_correction2)).add_(eps)
        step_size = group['lr'] / bias_correction1

        if group['nesterov']:
            update = (beta1 * exp_avg + (1 - beta1) * grad) / denom
        else:
            update = exp_avg / denom

        projected = None
        if is_projectable(p):
            # The update is a temporary here: project it in place.
            update, projected = project_radial(p, grad, update,
                                               group['delta'], eps,
                                               inplace=True)
        decays = AdamP._decays(group)
        if decays is not None:
            scale_(p, decay_factor(projected, p, *decays))
        p.add_(update, alpha=-step_size)

    @staticmethod
    def _step_foreach(group: Dict[str, Any], params: List[torch.Tensor],
                      grads: List[torch.Tensor],
                      states: List[Dict[str, Any]]) -> None:
        """Multi-tensor step: same-shaped weights are projected together."""
        beta1, beta2 = group['betas']
        eps = group['eps']
        exp_avgs = [s['exp_avg'] for s in states]
        exp_avg_sqs = [s['exp_avg_sq'] for s in states]
        foreach_mul_scalar_(exp_avgs, beta1)
        torch._foreach_add_(exp_avgs, grads, alpha=1 - beta1)
        foreach_mul_scalar_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)

        # Bias corrections differ between parameters that missed steps.
        by_step: Dict[int, List[int]] = {}
        for i, state in enumerate(states):
            state['step'] += 1
            by_step.setdefault(state['step'], []).append(i)
        for step, idx in by_step.items():
            bias_correction1 = 1 - beta1**step
            bias_correction2 = 1 - beta2**step
            g = [grads[i] for i in idx]
            m = [exp_avgs[i] for i in idx]
            denom = torch._foreach_sqrt([exp_avg_sqs[i] for i in idx])
            torch._foreach_div_(denom, math.sqrt(bias_correction2))
            torch._foreach_add_(denom, eps)
            if group['nesterov']:
                num = torch._foreach_mul(m, beta1)
                torch._foreach_add_(num, torch._foreach_mul(g, 1 - beta1))
            else:
                num = m
            foreach_project_and_step(
                [params[i] for i in idx], g, torch._foreach_div(num, denom),
                delta=group['delta'], eps=eps,
                step_size=group['lr'] / bias_correction1,
                decay=AdamP._decays(group), project_into=None)
