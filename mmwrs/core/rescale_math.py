"""The rescale's arithmetic, as pure functions of tensors.

Norms per output channel and per unit, scales to a target, and the
running-statistics compensation that keeps an eval-mode norm's function
unchanged. No state, no checks: :mod:`mmwrs.core.rescale` decides when these
run and what is verified.
"""
from typing import List, Sequence, Tuple

import torch

# Norms at or below this are treated as zero: a unit with no direction cannot be
# rescaled, and dividing by it would only spread inf/NaN.
ZERO_NORM = 1e-12


def channel_norms(param: torch.Tensor, out_dim: int) -> torch.Tensor:
    """L2 norm of each output channel's slice of ``param``, shape (O,)."""
    w = param.detach()
    if out_dim != 0:
        w = w.transpose(0, out_dim)
    return torch.linalg.vector_norm(w.reshape(w.shape[0], -1), dim=1)


def unit_norms(channel: torch.Tensor, num_units: int) -> torch.Tensor:
    """L2 norm of each of ``num_units`` equal groups of channels."""
    if num_units == channel.numel():
        return channel
    return torch.linalg.vector_norm(channel.view(num_units, -1), dim=1)


def to_channels(per_unit: torch.Tensor, num_units: int, out_channels: int) -> torch.Tensor:
    """Expand a per-unit tensor to one value per output channel."""
    if num_units == out_channels:
        return per_unit
    # expand, not repeat_interleave: no output-size round trip to the host.
    return per_unit.unsqueeze(1).expand(-1, out_channels // num_units).reshape(-1)


def guarded_scales(norms: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``target / norm``, and 1 where the norm is zero (a checked path's form)."""
    usable = norms > ZERO_NORM
    return torch.where(usable, targets / norms.clamp_min(ZERO_NORM), torch.ones_like(norms))


def branch_free_scales(norms: torch.Tensor, targets: torch.Tensor
                       ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scales with no host round trip: 1 for zero and non-finite units.

    Returns:
        tuple: ``(scales, nonfinite, zero)``, the last two per-unit flags.
    """
    nonfinite = ~torch.isfinite(norms)
    zero = norms <= ZERO_NORM
    scales = torch.where(zero | nonfinite, torch.ones_like(norms),
                         targets / norms.clamp_min(ZERO_NORM))
    return scales, nonfinite, zero


def compensate_(means: List[torch.Tensor], variances: List[torch.Tensor],
                scales: List[torch.Tensor], eps: Sequence[float]) -> None:
    """running_mean *= s; running_var = s**2 * (running_var + eps) - eps (in place)."""
    torch._foreach_mul_(means, scales)
    torch._foreach_add_(variances, eps)
    torch._foreach_mul_(variances, torch._foreach_mul(scales, scales))
    torch._foreach_sub_(variances, eps)


def clamp_negative_(tensors: List[torch.Tensor]) -> None:
    """Clamp every tensor to >= 0 in place (one multi-tensor op where available)."""
    clamp_min_ = getattr(torch, '_foreach_clamp_min_', None)  # torch >= 2.0
    if clamp_min_ is not None:
        clamp_min_(tensors, 0.0)
    else:
        for tensor in tensors:
            tensor.clamp_(min=0)
