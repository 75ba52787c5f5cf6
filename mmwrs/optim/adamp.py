"""AdamP: Adam with projection of the radial update component.

Heo et al., "AdamP: Slowing Down the Slowdown for Momentum Optimizers on
Scale-invariant Weights", ICLR 2021. The numerics follow the authors'
reference implementation, the ``adamp`` package 0.3.0 on PyPI, exactly; this
is a clean rewrite whose projection test runs without host-device
synchronisation, with an optional multi-tensor path.

This module needs only PyTorch. It also holds the projection, the
multi-tensor step and the argument checks shared with :mod:`mmwrs.optim.sgdp`.
"""
import math
import numbers
from typing import (Any, Callable, Dict, Iterable, List, Optional, Tuple,
                    Union)

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


def _check_optional_bool(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, bool):
        raise ValueError(
            f'{name} must be True, False or None, got {value!r}')


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
    """``F.cosine_similarity(x, w, dim=-1, eps=eps).abs().amax(-1)`` with the
    rows' norms of ``w`` given: the operations of PyTorch's implementation
    (hence the same bits), minus its two clones."""
    x_norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min_(eps)
    cos = ((x / x_norm) * (w / w_norm.clamp_min(eps))).sum(dim=-1)
    return cos.abs_().amax(dim=-1)


def _project_stacked(params: torch.Tensor, grads: torch.Tensor,
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
        return _project_branching(param, grad, update, delta, eps, inplace)
    out, projected = _project_stacked(
        param.unsqueeze(0), grad.unsqueeze(0), update.unsqueeze(0), delta,
        eps)
    if inplace:
        return update.copy_(out[0]), projected[0]
    return out[0], projected[0]


def _project_branching(param: torch.Tensor, grad: torch.Tensor,
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


def _decay_factor(projected: Optional[torch.Tensor], like: torch.Tensor,
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


def _scale_(tensor: torch.Tensor, factor: Union[float,
                                                torch.Tensor]) -> None:
    """``tensor.mul_(factor)``, computed as for a Python-float factor."""
    if isinstance(factor, torch.Tensor) and factor.dtype != tensor.dtype:
        tensor.copy_(tensor.to(factor.dtype) * factor)
    else:
        tensor.mul_(factor)


def _foreach_mul_scalar_(tensors: List[torch.Tensor], scalar: float) -> None:
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


def _projectable(p: torch.Tensor) -> bool:
    return p.dim() > 1 and p.numel() > 0


def _use_foreach(foreach: Optional[bool],
                 params: List[torch.Tensor]) -> bool:
    if foreach is not None:
        return foreach
    return all(p.is_cuda for p in params)


# Most elements stacked at once (per stacked tensor) by the multi-tensor path;
# larger sets of same-shaped weights are processed in several batches, which
# bounds the transient memory to a few times this many elements.
_MAX_STACK_NUMEL = 1 << 24


def _chunks(buckets: Iterable[List[int]],
            params: List[torch.Tensor]) -> Iterable[List[int]]:
    for idx in buckets:
        per_batch = max(1, _MAX_STACK_NUMEL // params[idx[0]].numel())
        for start in range(0, len(idx), per_batch):
            yield idx[start:start + per_batch]


def _foreach_project_and_step(params: List[torch.Tensor],
                              grads: List[torch.Tensor],
                              updates: List[torch.Tensor], *, delta: float,
                              eps: float, step_size: float,
                              decay: Optional[Tuple[float, float]],
                              project_into: Optional[List[torch.Tensor]]
                              ) -> None:
    """Projection, decoupled decay and step for many parameters at once.

    Weights of the same shape, dtype and device are stacked (in batches of
    at most ``_MAX_STACK_NUMEL`` elements) and tested and projected together
    (:func:`_project_stacked`); the other parameters are decayed and stepped
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
        if _projectable(p):
            buckets.setdefault((p.shape, p.dtype, p.device), []).append(i)
        else:
            plain_idx.append(i)

    for idx in _chunks(buckets.values(), params):
        stacked = torch.stack([params[i] for i in idx])
        out, projected = _project_stacked(stacked,
                                          torch.stack([grads[i] for i in idx]),
                                          torch.stack([updates[i]
                                                       for i in idx]),
                                          delta, eps)
        if project_into is not None:
            torch._foreach_copy_([project_into[i] for i in idx],
                                 list(out.unbind(0)))
        if decay is not None:
            factor = _decay_factor(projected, stacked, *decay)
            _scale_(stacked,
                    factor.view((-1, ) + (1, ) * (stacked.dim() - 1)))
        stacked.add_(out, alpha=-step_size)
        torch._foreach_copy_([params[i] for i in idx],
                             list(stacked.unbind(0)))

    if plain_idx:
        plain_params = [params[i] for i in plain_idx]
        if decay is not None:
            _foreach_mul_scalar_(plain_params, decay[0])
        torch._foreach_add_(plain_params, [updates[i] for i in plain_idx],
                            alpha=-step_size)


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
        foreach (bool | None): Keyword-only. True: the multi-tensor step
            (``torch._foreach_*`` ops; weights of the same shape, dtype and
            device are tested and projected together), far fewer kernel
            launches; it agrees with the reference up to rounding, not bit
            for bit (batched reductions may sum in another order). False: the
            reference's per-parameter operations, bit-identical to it.
            None (default): True when all of a group's parameters are on
            CUDA, else False.

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
                 nesterov: bool = False,
                 *,
                 foreach: Optional[bool] = None):
        defaults = dict(lr=lr, betas=betas, eps=eps,
                        weight_decay=weight_decay, delta=delta,
                        wd_ratio=wd_ratio, nesterov=nesterov,
                        foreach=foreach)
        self._check_group(defaults)
        super().__init__(params, defaults)

    def __setstate__(self, state: Dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault('foreach', None)

    @staticmethod
    def _check_group(group: Dict[str, Any]) -> None:
        _check_projection_args(group)
        betas = group['betas']
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(
                f'betas must be a pair (beta1, beta2), got {betas!r}')
        _check_unit_interval('betas[0]', betas[0], high_inclusive=False)
        _check_unit_interval('betas[1]', betas[1], high_inclusive=False)
        _check_optional_bool('foreach', group['foreach'])

    def add_param_group(self, param_group: Dict[str, Any]) -> None:
        """Adds a parameter group after checking its (merged) arguments."""
        merged = {k: v for k, v in self.defaults.items()}
        merged.update({k: v for k, v in param_group.items() if k != 'params'})
        self._check_group(merged)
        super().add_param_group(param_group)

    def _gather(self, group: Dict[str, Any]) -> Tuple[List[torch.Tensor], ...]:
        params, grads, states = [], [], []
        for p in group['params']:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError('AdamP does not support sparse gradients')
            state = self.state[p]
            if len(state) == 0:
                state['step'] = 0
                state['exp_avg'] = torch.zeros_like(
                    p, memory_format=torch.preserve_format)
                state['exp_avg_sq'] = torch.zeros_like(
                    p, memory_format=torch.preserve_format)
            params.append(p)
            grads.append(p.grad)
            states.append(state)
        return params, grads, states

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
            params, grads, states = self._gather(group)
            if not params:
                continue
            if _use_foreach(group['foreach'], params):
                self._step_foreach(group, params, grads, states)
            else:
                for p, grad, state in zip(params, grads, states):
                    self._step_one(group, p, grad, state)
        return loss

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
        if _projectable(p):
            # The update is a temporary here: project it in place.
            update, projected = project_radial(p, grad, update,
                                               group['delta'], eps,
                                               inplace=True)
        decays = AdamP._decays(group)
        if decays is not None:
            _scale_(p, _decay_factor(projected, p, *decays))
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
        _foreach_mul_scalar_(exp_avgs, beta1)
        torch._foreach_add_(exp_avgs, grads, alpha=1 - beta1)
        _foreach_mul_scalar_(exp_avg_sqs, beta2)
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
            _foreach_project_and_step(
                [params[i] for i in idx], g, torch._foreach_div(num, denom),
                delta=group['delta'], eps=eps,
                step_size=group['lr'] / bias_correction1,
                decay=AdamP._decays(group), project_into=None)
