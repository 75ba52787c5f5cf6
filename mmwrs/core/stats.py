"""Norm, effective-LR, angular-update and gradient statistics of weights.

Pure PyTorch (no mmengine): what :class:`~mmwrs.engine.NormMonitorHook` logs,
usable on any model. Functions over many tensors use multi-tensor
(``torch._foreach_*``) kernels where they are exact enough (elementwise ops
everywhere, norms on CUDA); sums are accumulated in float64, and inputs are
taken in float32 at least (float64 stays float64), so half-precision weights
give meaningful statistics. Results are float64.

Undefined values are NaN, never a silent 0: the angle to a zero tensor (it has
no direction), the gradient norm of a parameter without a gradient.
:func:`summarize` ignores NaN.
"""
import math
from typing import Dict, List, Optional, Sequence, Union

import torch

Number = Union[float, torch.Tensor]


def _stat_dtype(tensor: torch.Tensor) -> torch.dtype:
    return torch.float64 if tensor.dtype == torch.float64 else torch.float32


def _as_stat(tensors: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    return [t.detach().to(_stat_dtype(t)) for t in tensors]


def tensor_norms(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Whole-tensor L2 norm of each tensor, shape ``(len(tensors),)``, float64.

    On CUDA one multi-tensor ``_foreach_norm``. On CPU, where the norm kernels
    accumulate in float32 one element after another (relative error ~4e-5 at
    2M elements), a sum of squares with float64 accumulation per tensor.
    """
    if not tensors:
        return torch.empty(0, dtype=torch.float64)
    with torch.no_grad():
        tensors = _as_stat(tensors)
        if all(t.is_cuda for t in tensors):
            return torch.stack(torch._foreach_norm(tensors)).to(torch.float64)
        return torch.stack([t.square().sum(dtype=torch.float64).to(tensors[0].device)
                            for t in tensors]).sqrt()


def _dots(xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor]) -> torch.Tensor:
    """``x·y`` per pair, accumulated in float64 (there is no multi-tensor dot)."""
    return torch.stack([(x * y).sum(dtype=torch.float64).to(xs[0].device)
                        for x, y in zip(xs, ys)])


def filter_norms(weight: torch.Tensor, out_dim: int = 0) -> torch.Tensor:
    """L2 norm of each output filter (the slice at each index of ``out_dim``).

    Args:
        weight (Tensor): A conv / linear weight, e.g. ``(O, I, kH, kW)``.
        out_dim (int): Dimension indexing output channels (1 for transposed
            convolutions).

    Returns:
        Tensor: Shape ``(weight.shape[out_dim],)``.
    """
    with torch.no_grad():
        w = weight.detach().to(_stat_dtype(weight))
        if w.dim() == 0:
            return w.abs().reshape(1)
        if out_dim != 0:
            w = w.transpose(0, out_dim)
        return torch.linalg.vector_norm(w.reshape(w.shape[0], -1), dim=1)


def filter_norm_stats(weight: torch.Tensor, out_dim: int = 0) -> Dict[str, float]:
    """Mean, min, max and standard deviation of a weight's filter norms."""
    norms = filter_norms(weight, out_dim).to(torch.float64)
    return dict(mean=norms.mean().item(), min=norms.min().item(), max=norms.max().item(),
                std=norms.std(unbiased=False).item())


def effective_lr(lr: Number, norm: Number) -> Number:
    """``lr / norm**2``: the step size a scale-invariant weight really takes.

    For ``f(c·w) = f(w)`` the gradient scales as ``1/||w||`` and an SGD step
    of ``lr`` turns the direction ``w/||w||`` by about ``lr·||∇||/||w||²``.
    A zero norm gives ``inf``.
    """
    if isinstance(norm, torch.Tensor) or isinstance(lr, torch.Tensor):
        return torch.as_tensor(lr, dtype=torch.float64) / torch.as_tensor(
            norm, dtype=torch.float64).square()
    return lr / norm ** 2 if norm != 0 else math.inf


def angles_deg(before: Sequence[torch.Tensor], after: Sequence[torch.Tensor]) -> torch.Tensor:
    """Angle in degrees between each pair of tensors, shape ``(len(before),)``.

    Computed from the update ``d = b − a`` rather than from the cosine: with
    ``â = a/||a||``, ``b`` has the component ``||a|| + d·â`` along ``â`` and
    ``d − (d·â)â`` across it, and the angle is the ``atan2`` of the two. Rounding
    errors are then relative to ``||d||``, so the tiny angle of one training
    step is accurate to a few float32 ulps (``acos`` of the cosine is not: a
    float32 cosine of 1 hides any angle below 0.02°, and unit-vector formulas
    err by ~1e-7 rad whatever the angle). Equal tensors give exactly 0, and
    opposite ones 180. NaN where either tensor is zero or non-finite.
    """
    if len(before) != len(after):
        raise ValueError(f'angles_deg: {len(before)} tensors before but {len(after)} after')
    if not before:
        return torch.empty(0, dtype=torch.float64)
    with torch.no_grad():
        a, b = _as_stat(before), _as_stat(after)
        for x, y in zip(a, b):
            if x.shape != y.shape:
                raise ValueError(f'angles_deg: shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}')
        b = [y.to(x.dtype) for x, y in zip(a, b)]
        d = torch._foreach_sub(b, a)
        norm_a, norm_b = tensor_norms(a), tensor_norms(b)
        safe_a = norm_a.clamp_min(torch.finfo(torch.float64).tiny)
        along = _dots(d, a) / safe_a  # d·â
        coefs = [c.to(x.dtype) for c, x in zip((along / safe_a).unbind(), a)]
        across = tensor_norms(torch._foreach_sub(d, torch._foreach_mul(a, coefs)))
        angles = torch.rad2deg(torch.atan2(across, norm_a + along))
        norms = torch.stack([norm_a, norm_b])
        undefined = ((norms == 0) | ~torch.isfinite(norms)).any(dim=0)
        return torch.where(undefined, torch.full_like(angles, math.nan), angles)


def angle_deg(before: torch.Tensor, after: torch.Tensor) -> float:
    """Angle in degrees between two tensors seen as vectors (see :func:`angles_deg`)."""
    return angles_deg([before], [after])[0].item()


def grad_norms(params: Sequence[torch.Tensor]) -> torch.Tensor:
    """L2 norm of each parameter's ``.grad``; NaN where it has none."""
    out = torch.full((len(params),), math.nan, dtype=torch.float64)
    present = [i for i, p in enumerate(params) if p.grad is not None]
    if present:
        norms = tensor_norms([params[i].grad for i in present])
        out[torch.tensor(present, dtype=torch.long)] = norms.cpu()
    return out


def summarize(values: torch.Tensor) -> Optional[Dict[str, float]]:
    """Mean, min and max of the finite entries; None when there are none."""
    values = values.detach().to(torch.float64).flatten()
    values = values[torch.isfinite(values)]
    if not values.numel():
        return None
    return dict(mean=values.mean().item(), min=values.min().item(), max=values.max().item())
