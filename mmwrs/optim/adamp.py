"""AdamP: Adam with projection of the radial update component.

Heo et al., "AdamP: Slowing Down the Slowdown for Momentum Optimizers on
Scale-invariant Weights", ICLR 2021. The numerics follow the authors'
reference implementation, the ``adamp`` package 0.3.0 on PyPI, exactly; this
is a clean rewrite whose per-parameter projection test runs without
host-device synchronisation.

This module needs only PyTorch. It also holds the projection and the argument
checks shared with :mod:`mmwrs.optim.sgdp`.
"""
import math
import numbers
from typing import Any, Callable, Dict, Iterable, Optional, Tuple, Union

import torch

__all__ = ['AdamP', 'project_radial']

ParamsT = Union[Iterable[torch.Tensor], Iterable[Dict[str, Any]]]


# --------------------------------------------------------------------------
# Argument checks (shared with SGDP)
# --------------------------------------------------------------------------
def _check_real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f'{name} must be a real number, got {value!r}')
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f'{name} must be finite, got {value!r}')
    return value


def _check_min(name: str, value: Any, low: float, inclusive: bool) -> None:
    v = _check_real(name, value)
    if (v < low) if inclusive else (v <= low):
        op = '>=' if inclusive else '>'
        raise ValueError(f'{name} must be {op} {low:g}, got {value!r}')


def _check_unit_interval(name: str, value: Any, *,
                         high_inclusive: bool) -> None:
    v = _check_real(name, value)
    ok = 0.0 <= v <= 1.0 if high_inclusive else 0.0 <= v < 1.0
    if not ok:
        rng = '[0, 1]' if high_inclusive else '[0, 1)'
        raise ValueError(f'{name} must be in {rng}, got {value!r}')


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f'{name} must be True or False, got {value!r}')


def _check_projection_args(group: Dict[str, Any]) -> None:
    """Checks the arguments common to SGDP and AdamP."""
    _check_min('lr', group['lr'], 0.0, inclusive=True)
    _check_min('weight_decay', group['weight_decay'], 0.0, inclusive=True)
    _check_min('eps', group['eps'], 0.0, inclusive=True)
    _check_min('delta', group['delta'], 0.0, inclusive=False)
    _check_min('wd_ratio', group['wd_ratio'], 0.0, inclusive=True)
    _check_bool('nesterov', group['nesterov'])


# --------------------------------------------------------------------------
# Projection (shared with SGDP)
# --------------------------------------------------------------------------
def _max_abs_cos(x: torch.Tensor, w: torch.Tensor, w_norm: torch.Tensor,
                 eps: float) -> torch.Tensor:
    """``F.cosine_similarity(x, w, dim=1, eps=eps).abs().max()`` with the
    rows' norms of ``w`` given; the same operations as PyTorch's
    implementation, hence the same bits, minus its two clones."""
    x_norm = torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min_(eps)
    cos = ((x / x_norm) * (w / w_norm.clamp_min(eps))).sum(dim=1)
    return cos.abs_().max()


def project_radial(param: torch.Tensor, grad: torch.Tensor,
                   update: torch.Tensor, delta: float,
                   eps: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Removes the radial component of ``update`` if ``param`` looks
    scale-invariant.

    The test and the projection are those of the reference (``adamp`` 0.3.0):
    with ``param`` viewed as ``(C, d)`` (one row per output channel), the
    weight is taken as channel-wise scale-invariant when
    ``max_c |cos(grad_c, param_c)| < delta / sqrt(d)``; failing that, as
    layer-wise scale-invariant when ``|cos(grad, param)| < delta /
    sqrt(numel)`` (the whole tensor as one row). In the first case of these
    that holds, ``update_r -= w_r * <w_r, update_r>`` for every row ``r``,
    where ``w_r = param_r / (||param_r|| + eps)``; if neither holds,
    ``update`` is returned unchanged.

    Both tests are evaluated as device tensors and the branch is chosen with
    :func:`torch.where`, so there is no host-device synchronisation. The
    values are those the reference computes for the branch it takes.

    Args:
        param (Tensor): The weight, at least 2-D; dim 0 indexes channels.
        grad (Tensor): The raw gradient of ``param`` (used for the test).
        update (Tensor): The step direction to project, shaped like
            ``param``. It is not modified.
        delta (float): Threshold of the cosine test (before the
            ``1/sqrt(dim)`` scaling).
        eps (float): Added to the row norms, and the lower clamp of the
            norms inside the cosine similarity.

    Returns:
        tuple[Tensor, Tensor]: The (possibly) projected update, a new tensor
        shaped like ``param``, and a 0-dim bool tensor that is True when a
        projection was applied.
    """
    rows = param.shape[0]
    expand = (-1, ) + (1, ) * (param.dim() - 1)
    w_chan, g_chan = param.reshape(rows, -1), grad.reshape(rows, -1)
    w_layer, g_layer = param.reshape(1, -1), grad.reshape(1, -1)

    # Row norms of the weight, shared by the cosine tests and the projection.
    wn_chan = torch.linalg.vector_norm(w_chan, dim=1, keepdim=True)
    wn_layer = torch.linalg.vector_norm(w_layer, dim=1, keepdim=True)
    use_chan = _max_abs_cos(g_chan, w_chan, wn_chan, eps) < (
        delta / math.sqrt(w_chan.shape[1]))
    use_layer = _max_abs_cos(g_layer, w_layer, wn_layer, eps) < (
        delta / math.sqrt(w_layer.shape[1]))
    projected = use_chan | use_layer

    # Unit rows of the branch taken: norms broadcast as (rows, 1, ...) or
    # (1, 1, ...), as in the reference.
    norm = torch.where(use_chan, (wn_chan + eps).view(expand),
                       (wn_layer + eps).view(expand))
    w_hat = param / norm
    prod = w_hat * update
    radial = torch.where(use_chan,
                         prod.reshape(rows, -1).sum(dim=1).view(expand),
                         prod.reshape(1, -1).sum(dim=1).view(expand))
    out = torch.where(projected, update - w_hat * radial, update)
    return out, projected


def _decay_factor(projected: Optional[torch.Tensor], param: torch.Tensor,
                  plain: float, reduced: float) -> Union[float, torch.Tensor]:
    """``reduced`` where a projection happened, else ``plain`` (no sync)."""
    if projected is None:
        return plain
    return torch.where(
        projected,
        torch.full((), reduced, dtype=param.dtype, device=param.device),
        plain)


# --------------------------------------------------------------------------
# AdamP
# --------------------------------------------------------------------------
class AdamP(torch.optim.Optimizer):
    """Adam with the radial component of scale-invariant updates removed.

    For every parameter with more than one dimension, each step first tests
    whether the weight behaves as scale-invariant, using the raw gradient
    (see :func:`project_radial`: channel-wise first, then layer-wise). If it
    does, the radial component of the Adam update (not of the moment
    buffers) is removed and the weight decay is multiplied by ``wd_ratio``.
    Weight decay is decoupled (AdamW style):
    ``p *= 1 - lr * weight_decay * ratio`` with ``ratio`` = ``wd_ratio`` for
    projected parameters and 1 otherwise, applied before the step.

    Reproduces ``adamp.AdamP`` (``adamp`` 0.3.0) numerically, including its
    ``nesterov`` variant ``(beta1 * m + (1 - beta1) * g) / denom`` and
    ``denom = sqrt(v) / sqrt(1 - beta2**t) + eps``.

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

    Raises:
        ValueError: If an argument (in the defaults or in a parameter group)
            is out of range; the message names the argument and the value.
    """

    def __init__(self,
                 params: ParamsT,
                 lr: float = 1e-3,
                 betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8,
                 weight_decay: float = 0,
                 delta: float = 0.1,
                 wd_ratio: float = 0.1,
                 nesterov: bool = False):
        defaults = dict(lr=lr, betas=betas, eps=eps,
                        weight_decay=weight_decay, delta=delta,
                        wd_ratio=wd_ratio, nesterov=nesterov)
        self._check_group(defaults)
        super().__init__(params, defaults)

    @staticmethod
    def _check_group(group: Dict[str, Any]) -> None:
        _check_projection_args(group)
        betas = group['betas']
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(
                f'betas must be a pair (beta1, beta2), got {betas!r}')
        _check_unit_interval('betas[0]', betas[0], high_inclusive=False)
        _check_unit_interval('betas[1]', betas[1], high_inclusive=False)

    def add_param_group(self, param_group: Dict[str, Any]) -> None:
        """Adds a parameter group after checking its (merged) arguments."""
        merged = {k: v for k, v in self.defaults.items()}
        merged.update({k: v for k, v in param_group.items() if k != 'params'})
        self._check_group(merged)
        super().add_param_group(param_group)

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], Any]] = None) -> Any:
        """Performs a single optimization step.

        Args:
            closure (callable, optional): Re-evaluates the model and returns
                the loss.

        Returns:
            The closure's loss, or None.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        for group in self.param_groups:
            beta1, beta2 = group['betas']
            lr = group['lr']
            eps = group['eps']
            weight_decay = group['weight_decay']
            for p in group['params']:
                if p.grad is None:
                    continue
                grad = p.grad
                if grad.is_sparse:
                    raise RuntimeError('AdamP does not support sparse '
                                       'gradients')
                state = self.state[p]
                if len(state) == 0:
                    state['step'] = 0
                    state['exp_avg'] = torch.zeros_like(
                        p, memory_format=torch.preserve_format)
                    state['exp_avg_sq'] = torch.zeros_like(
                        p, memory_format=torch.preserve_format)
                exp_avg, exp_avg_sq = state['exp_avg'], state['exp_avg_sq']

                state['step'] += 1
                bias_correction1 = 1 - beta1**state['step']
                bias_correction2 = 1 - beta2**state['step']

                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = (exp_avg_sq.sqrt() /
                         math.sqrt(bias_correction2)).add_(eps)
                step_size = lr / bias_correction1

                if group['nesterov']:
                    update = (beta1 * exp_avg + (1 - beta1) * grad) / denom
                else:
                    update = exp_avg / denom

                projected = None
                if p.dim() > 1 and p.numel() > 0:
                    update, projected = project_radial(
                        p, grad, update, group['delta'], eps)

                if weight_decay > 0:
                    p.mul_(
                        _decay_factor(
                            projected, p, 1 - lr * weight_decay,
                            1 - lr * weight_decay * group['wd_ratio']))

                p.add_(update, alpha=-step_size)

        return loss
