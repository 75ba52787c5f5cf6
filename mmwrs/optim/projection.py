"""The projection of SGDP and AdamP, and their multi-tensor step.

Heo et al., "AdamP: Slowing Down the Slowdown for Momentum Optimizers on
Scale-invariant Weights", ICLR 2021. :func:`project_radial` removes the radial
component of an update when the weight looks scale-invariant, with the test and
the numerics of the authors' reference (the ``adamp`` 0.3.0 package), and
without host-device synchronisation; :func:`foreach_project_and_step` does the
projection, the decoupled decay and the step of many parameters at once.
The numerics follow the reference exactly; this is a clean rewrite whose
projection test runs without host-device synchronisation. Pure PyTorch.
"""
import math
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import torch

__all__ = [
    'project_radial', 'project_stacked', 'project_branching', 'foreach_project_and_step',
    'decay_factor', 'scale_', 'foreach_mul_scalar_', 'is_projectable', 'use_foreach',
    'MAX_STACK_NUMEL'
]


def _max_abs_cos(x: torch.Tensor, w: torch.Tensor, w_norm: torch.Tensor,
                 eps: float) -> torch.Tensor:
    """``F.cosine_similarity(x, w, dim=-1, eps=eps).abs().amax(-1)`` with the
    rows' norms of ``w`` given: the operations of PyTorch's implementation
    (hence the same bits), minus its two clones."""
    x_norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min_(eps)
    cos = ((x / x_norm) * (w / w_norm.clamp_min(eps))).sum(dim=-1)
    return cos.abs_().amax(dim=-1)


def project_stacked(params: torch.Tensor, grads: torch.Tensor,
                    updates: torch.Tensor, delta: float,
                    eps: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`project_radial` for ``B`` same-shaped weights stacked on a
    new leading dim; returns the ``(B, ...)`` updates and ``(B,)`` flags."""
    batch, rows = params.shape[0], params.shape[1]
    expand = (batch, -1) + (1, ) * (params.dim() - 2)
    flag_shape = (batch, ) + (1, ) * (params.dim() - 1)
    w_chan, g_chan = (params.reshape(batch, rows, -1),
                      grads.reshape(batch, rows, -1))
    w_layer, g_layer = (params.reshape(batch, 1, -1),
                        grads.reshape(batch, 1, -1))

    # Row norms of the weights, shared by the cosine tests and the projection.
    wn_chan = torch.linalg.vector_norm(w_chan, dim=-1, keepdim=True)
    wn_layer = torch.linalg.vector_norm(w_layer, dim=-1, keepdim=True)
    use_chan = _max_abs_cos(g_chan, w_chan, wn_chan, eps) < (
        delta / math.sqrt(w_chan.shape[-1]))
    use_layer = _max_abs_cos(g_layer, w_layer, wn_layer, eps) < (
        delta / math.sqrt(w_layer.shape[-1]))
    projected = use_chan | use_layer
    use_chan_b = use_chan.view(flag_shape)

    # Unit rows of the branch taken, as in the reference: the norms
    # broadcast as (rows, 1, ...) or (1, 1, ...) per weight.
    norm = torch.where(use_chan_b, (wn_chan + eps).view(expand),
                       (wn_layer + eps).view(expand))
    w_hat = params / norm
    prod = w_hat * updates
    radial = torch.where(
        use_chan_b,
        prod.reshape(batch, rows, -1).sum(dim=-1).view(expand),
        prod.reshape(batch, 1, -1).sum(dim=-1).view(expand))
    out = torch.where(
        projected.view(flag_shape), updates - w_hat * radial, updates)
    return out, projected


def project_radial(param: torch.Tensor, grad: torch.Tensor,
                   update: torch.Tensor, delta: float, eps: float, *,
                   inplace: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
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

    On accelerators both tests are evaluated as device tensors and the branch
    is chosen with :func:`torch.where`, so there is no host-device
    synchronisation. On CPU, where reading a test result costs nothing, the
    reference's control flow is used instead (the layer-wise test only when
    the channel-wise one fails, one projection, no full-size selects): the
    branch-free form did ~1.5x the reference's memory traffic there. Either
    way the values are those the reference computes for the branch it takes.

    Args:
        param (Tensor): The weight, at least 2-D; dim 0 indexes channels.
        grad (Tensor): The raw gradient of ``param`` (used for the test).
        update (Tensor): The step direction to project, shaped like
            ``param``. It is not modified unless ``inplace``.
        delta (float): Threshold of the cosine test (before the
            ``1/sqrt(dim)`` scaling).
        eps (float): Added to the row norms, and the lower clamp of the
            norms inside the cosine similarity.
        inplace (bool): Keyword-only. Write the result into ``update`` (as
            the reference does with its ``perturb``), sparing a full-size
            allocation and copy on large weights.

    Returns:
        tuple[Tensor, Tensor]: The (possibly) projected update (a new tensor
        shaped like ``param``, or ``update`` itself when ``inplace``) and a
        0-dim bool tensor that is True when a projection was applied.
    """
    if param.device.type == 'cpu':
        return project_branching(param, grad, update, delta, eps, inplace)
    out, projected = project_stacked(
        param.unsqueeze(0), grad.unsqueeze(0), update.unsqueeze(0), delta,
        eps)
    if inplace:
        return update.copy_(out[0]), projected[0]
    return out[0], projected[0]


def project_branching(param: torch.Tensor, grad: torch.Tensor,
                      update: torch.Tensor, delta: float, eps: float,
                      inplace: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`project_radial` with the reference's Python branches (CPU)."""
    rows = param.shape[0]
    expand = (-1, ) + (1, ) * (param.dim() - 1)
    for w, g in ((param.reshape(rows, -1), grad.reshape(rows, -1)),
                 (param.reshape(1, -1), grad.reshape(1, -1))):
        w_norm = torch.linalg.vector_norm(w, dim=-1, keepdim=True)
        if _max_abs_cos(g, w, w_norm, eps) < delta / math.sqrt(w.shape[-1]):
            w_hat = param / (w_norm + eps).view(expand)
            radial = (w_hat * update).reshape(w.shape[0], -1).sum(dim=-1)
            correction = w_hat.mul_(radial.view(expand))
            out = update.sub_(correction) if inplace else update - correction
            return out, torch.ones((), dtype=torch.bool)
    return (update if inplace else update.clone()), torch.zeros((), dtype=torch.bool)


def decay_factor(projected: Optional[torch.Tensor], like: torch.Tensor,
                 plain: float, reduced: float) -> Union[float, torch.Tensor]:
    """``reduced`` where a projection happened, else ``plain`` (no sync).

    ``projected`` is None (not projectable: ``plain``) or a bool tensor; the
    result then has its shape, ``like``'s device, and the dtype that
    PyTorch computes ``like * python_float`` in (float32 for half
    precision, so that the factor is not rounded to it).
    """
    if projected is None:
        return plain
    dtype = torch.promote_types(like.dtype, torch.float32)
    return torch.where(projected,
                       torch.full((), reduced, dtype=dtype,
                                  device=like.device), plain)


def scale_(tensor: torch.Tensor, factor: Union[float,
                                               torch.Tensor]) -> None:
    """``tensor.mul_(factor)``, computed as for a Python-float factor."""
    if isinstance(factor, torch.Tensor) and factor.dtype != tensor.dtype:
        tensor.copy_(tensor.to(factor.dtype) * factor)
    else:
        tensor.mul_(factor)


def foreach_mul_scalar_(tensors: List[torch.Tensor], scalar: float) -> None:
    """``torch._foreach_mul_(tensors, scalar)``; on CPU, half-precision
    tensors are multiplied one by one, since that in-place foreach op rounds
    the scalar to half precision there (``Tensor.mul_`` does not)."""
    if any(t.device.type == 'cpu' and t.dtype in (torch.float16,
                                                  torch.bfloat16)
           for t in tensors):
        for t in tensors:
            t.mul_(scalar)
    else:
        torch._foreach_mul_(tensors, scalar)


def is_projectable(p: torch.Tensor) -> bool:
    return p.dim() > 1 and p.numel() > 0


def use_foreach(foreach: Optional[bool],
                params: List[torch.Tensor]) -> bool:
    if foreach is not None:
        return foreach
    return all(p.is_cuda for p in params)


# Most elements stacked at once (per stacked tensor) by the multi-tensor path;
# larger sets of same-shaped weights are processed in several batches, which
# bounds the transient memory to a few times this many elements.
MAX_STACK_NUMEL = 1 << 24


def _chunks(buckets: Iterable[List[int]],
            params: List[torch.Tensor]) -> Iterable[List[int]]:
    for idx in buckets:
        per_batch = max(1, MAX_STACK_NUMEL // params[idx[0]].numel())
        for start in range(0, len(idx), per_batch):
            yield idx[start:start + per_batch]


def foreach_project_and_step(params: List[torch.Tensor],
                             grads: List[torch.Tensor],
                             updates: List[torch.Tensor], *, delta: float,
                             eps: float, step_size: float,
                             decay: Optional[Tuple[float, float]],
                             project_into: Optional[List[torch.Tensor]]
                             ) -> None:
    """Projection, decoupled decay and step for many parameters at once.

    Weights of the same shape, dtype and device are stacked (in batches of
    at most ``MAX_STACK_NUMEL`` elements) and tested and projected together
    (:func:`project_stacked`); the other parameters are decayed and stepped
    with ``torch._foreach_*`` ops. The values agree with the per-parameter
    path up to rounding: batched reductions may sum in another order, so
    the last bits can differ.

    Args:
        params, grads, updates: Parallel lists (``updates`` are not
            modified, except where they are ``project_into``'s tensors).
        delta, eps: Projection arguments.
        step_size (float): ``p -= step_size * update``.
        decay (tuple[float, float] | None): ``(plain, reduced)`` factors that
            multiply non-projected and projected parameters before the step;
            None for no decay.
        project_into (list[Tensor] | None): Where given, the (possibly)
            projected update of each projectable parameter is copied into it.
    """
    buckets: Dict[Tuple[Any, ...], List[int]] = {}
    plain_idx = []
    for i, p in enumerate(params):
        if is_projectable(p):
            buckets.setdefault((p.shape, p.dtype, p.device), []).append(i)
        else:
            plain_idx.append(i)

    for idx in _chunks(buckets.values(), params):
        stacked = torch.stack([params[i] for i in idx])
        out, projected = project_stacked(stacked,
                                         torch.stack([grads[i] for i in idx]),
                                         torch.stack([updates[i]
                                                      for i in idx]),
                                         delta, eps)
        if project_into is not None:
            torch._foreach_copy_([project_into[i] for i in idx],
                                 list(out.unbind(0)))
        if decay is not None:
            factor = decay_factor(projected, stacked, *decay)
            scale_(stacked,
                   factor.view((-1, ) + (1, ) * (stacked.dim() - 1)))
        stacked.add_(out, alpha=-step_size)
        torch._foreach_copy_([params[i] for i in idx],
                             list(stacked.unbind(0)))

    if plain_idx:
        plain_params = [params[i] for i in plain_idx]
        if decay is not None:
            foreach_mul_scalar_(plain_params, decay[0])
        torch._foreach_add_(plain_params, [updates[i] for i in plain_idx],
                            alpha=-step_size)
