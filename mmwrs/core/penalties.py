"""The epsilon-shifted L2 regularizer (framework-free math, pure PyTorch).

Li, Chen, Xia, Yang, "Understanding the Disharmony between Weight
Normalization Family and Weight Decay: epsilon-shifted L2 Regularizer"
(arXiv 1911.05920; reference code in implus/PytorchInsight).

A weight is viewed as ``(O, n)``: one row ("filter") per output channel.
With ``mu`` the filter mean and ``sd`` the unbiased filter standard deviation,
the penalty is::

    P(w) = lam / 2 * sum_filters[(n - 1) * (sd - eps)**2 + n * mu**2]

and its gradient, which the reference adds to the gradient before the
momentum update, is::

    dP/dw = lam * ((1 - eps / sd) * (w - mu) + mu)

It pulls each filter's mean to 0 and its spread to ``eps`` (not to 0, as plain
L2 would), so weight-standardized convolutions keep a bounded gradient.

Degenerate filters: where ``sd == 0`` (a constant filter) ``sd`` is not
differentiable and ``eps / sd`` is infinite, but ``w - mu`` is 0; the
``(1 - eps / sd) * (w - mu)`` term is then taken as 0, so the gradient of such
a filter is ``lam * mu`` (finite, no NaN/inf). With ``n == 1`` the spread term
carries the weight ``n - 1 = 0`` and vanishes, so the gradient is
``lam * w``. Half-precision weights are computed in float32 and the result is
cast back to the weight's dtype.
"""
from typing import Iterable, Union

import torch

from .validation import check_non_negative

__all__ = [
    'eps_shifted_l2_grad', 'add_eps_shifted_l2_grad_', 'eps_shifted_l2_penalty',
    'check_hparams'
]


def check_hparams(lam: float, eps: float) -> None:
    """Check the penalty's strength and target spread (both finite, >= 0)."""
    check_non_negative('lam', lam)
    check_non_negative('eps', eps)


def _check_weight(weight: torch.Tensor) -> None:
    if not isinstance(weight, torch.Tensor):
        raise ValueError(
            f'weight must be a torch.Tensor, got {type(weight).__name__}')
    if weight.dim() < 2:
        raise ValueError('weight must have at least 2 dimensions (out '
                         f'channels first), got shape {tuple(weight.shape)}')
    if not weight.is_floating_point():
        raise ValueError(
            f'weight must be floating point, got dtype {weight.dtype}')


def _as_filters(weight: torch.Tensor) -> torch.Tensor:
    w = weight.reshape(weight.shape[0], -1)
    if w.dtype in (torch.float16, torch.bfloat16):
        w = w.float()
    return w


def eps_shifted_l2_grad(weight: torch.Tensor, lam: float,
                        eps: float) -> torch.Tensor:
    """Gradient of the epsilon-shifted L2 penalty w.r.t. ``weight``.

    Computes ``lam * ((1 - eps / sd) * (w - mu) + mu)`` for all filters at
    once (see the module docstring, also for constant filters). No autograd
    graph is built.

    Args:
        weight (Tensor): A weight with at least 2 dimensions, output channels
            first (e.g. a conv weight ``(O, I, kh, kw)`` or a linear weight
            ``(O, I)``).
        lam (float): Strength of the regularizer, >= 0.
        eps (float): Target filter standard deviation, >= 0.

    Returns:
        Tensor: The gradient, with the shape and dtype of ``weight``.

    Raises:
        ValueError: If ``weight`` is not a floating tensor with at least 2
            dimensions, or ``lam``/``eps`` is negative or not finite.
    """
    check_hparams(lam, eps)
    _check_weight(weight)
    with torch.no_grad():
        w = _as_filters(weight.detach())
        n = w.shape[1]
        mu = w.mean(dim=1, keepdim=True)
        if n > 1:
            centered = w - mu
            sd = w.std(dim=1, keepdim=True)
            positive = sd > 0
            safe_sd = torch.where(positive, sd, torch.ones_like(sd))
            coef = torch.where(positive, 1 - eps / safe_sd,
                               torch.zeros_like(sd))
            grad = lam * (coef * centered + mu)
        else:
            grad = lam * w
        return grad.reshape(weight.shape).to(weight.dtype)


def eps_shifted_l2_penalty(weight: torch.Tensor, lam: float,
                           eps: float) -> torch.Tensor:
    """The epsilon-shifted L2 penalty, differentiable with autograd.

    ``lam / 2 * sum_filters[(n - 1) * (sd - eps)**2 + n * mu**2]``. Meant for
    checks and for users who prefer adding it to the loss. Autograd's
    gradient of it is NaN for a constant filter (``std`` is not
    differentiable at 0); :func:`eps_shifted_l2_grad` handles that case.

    Args:
        weight (Tensor): A weight with at least 2 dimensions, output channels
            first.
        lam (float): Strength of the regularizer, >= 0.
        eps (float): Target filter standard deviation, >= 0.

    Returns:
        Tensor: A 0-dim tensor (float32 for half-precision weights, else the
        weight's dtype).

    Raises:
        ValueError: As :func:`eps_shifted_l2_grad`.
    """
    check_hparams(lam, eps)
    _check_weight(weight)
    w = _as_filters(weight)
    n = w.shape[1]
    mu = w.mean(dim=1)
    per_filter = n * mu.square()
    if n > 1:
        per_filter = per_filter + (n - 1) * (w.std(dim=1) - eps).square()
    return lam / 2 * per_filter.sum()


def add_eps_shifted_l2_grad_(params: Union[torch.Tensor,
                                           Iterable[torch.Tensor]],
                             lam: float, eps: float) -> int:
    """Adds the epsilon-shifted L2 gradient to each parameter's ``.grad``.

    Call it after ``backward()`` and before the optimizer step (the reference
    adds it before the momentum update). Parameters whose ``.grad`` is None
    are skipped.

    Args:
        params (Tensor | iterable[Tensor]): The weights to regularize, each
            with at least 2 dimensions, output channels first.
        lam (float): Strength of the regularizer, >= 0.
        eps (float): Target filter standard deviation, >= 0.

    Returns:
        int: How many gradients were updated.

    Raises:
        ValueError: As :func:`eps_shifted_l2_grad`, or for a sparse gradient.
    """
    check_hparams(lam, eps)
    if isinstance(params, torch.Tensor):
        params = [params]
    count = 0
    with torch.no_grad():
        for p in params:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise ValueError('add_eps_shifted_l2_grad_ does not support '
                                 f'sparse gradients (param shape '
                                 f'{tuple(p.shape)})')
            p.grad.add_(eps_shifted_l2_grad(p, lam, eps))
            count += 1
    return count
