"""What a check concludes beyond the flags: did the rescale happen, and do all ranks agree.

Two guards for the deferred (and CUDA-graph) rescale, where nothing is looked
at between checks:

* :func:`off_target_message`: right after a rescale every usable unit must sit
  at its target. A replay that did nothing (an empty graph captured on another
  device, orphaned tensors) leaves the units where the optimizer put them; the
  periodic check measures ``max |norm / target - 1|`` and turns that into an
  error instead of a silence.
* :func:`agreed_failure`: under ``torch.distributed`` a check that raises on one
  rank only would leave the others waiting in their next collective until the
  timeout; one tiny all-reduce (MAX) per check makes every rank raise together.

Pure PyTorch (``torch.distributed`` only).
"""
from typing import Callable, List, Optional

import torch
import torch.distributed as dist

from .rescale_entry import RescaleEntry
from .rescale_math import ZERO_NORM

# Relative tolerance of a unit norm just after its rescale. fp32/fp64: the
# multiply and the norm's reduction round at ~1e-7, so 1e-4 leaves room for
# huge units yet sees an optimizer step that was not rescaled. Half types round
# the multiply itself at 5e-4 (fp16) / 4e-3 (bf16).
TOLERANCE = {torch.float16: 1e-2, torch.bfloat16: 2e-2}
DEFAULT_TOLERANCE = 1e-4


def max_target_deviation(norms: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``max |norm / target - 1|`` over the usable units (0-dim tensor, on the device).

    Zero and non-finite units are left out: the rescale leaves them as they are
    and the flags report them.
    """
    usable = torch.isfinite(norms) & (norms > ZERO_NORM)
    deviation = (norms / targets - 1).abs()
    return torch.where(usable, deviation, torch.zeros_like(deviation)).max()


def raise_if_off_target(entries: List[RescaleEntry], targets: torch.Tensor) -> None:
    """Raise ``RuntimeError`` when the last rescale did not reach its targets.

    One host synchronization. ``targets`` are all units' targets in entry order.
    """
    per_entry = targets.split([entry.num_units for entry in entries])
    worst = torch.stack([max_target_deviation(entry.unit_norms().to(t.dtype), t)
                         for entry, t in zip(entries, per_entry)])
    tolerances = [TOLERANCE.get(entry.param.dtype, DEFAULT_TOLERANCE) for entry in entries]
    off = [(entry.name, float(value)) for entry, value, tol in
           zip(entries, worst.tolist(), tolerances) if value > tol]
    if not off:
        return
    listed = ', '.join(f'{name} ({value:.3g})' for name, value in off[:5])
    more = f' and {len(off) - 5} more' if len(off) > 5 else ''
    raise RuntimeError(
        f'WRS: the last rescale did not reach its targets: max |norm/target - 1| of '
        f'{listed}{more}. Nothing rescaled those weights (a CUDA graph captured on '
        'another device than the weights replays nothing; a parameter the model '
        'replaced is no longer the one rescaled). Set torch.cuda.set_device to the '
        "weights' device before training, or use_cuda_graph=False.")


def agreed_failure(failure: Optional[BaseException], device: torch.device
                   ) -> Optional[BaseException]:
    """This rank's failure, or one standing for another rank's; ``None`` if all passed.

    Every rank of an initialized process group must call it at the same check
    (the periodic checks are: they count the same rescales). Without a group,
    or with one process, it returns ``failure`` and communicates nothing.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return failure
    on = device if dist.get_backend() != 'gloo' else torch.device('cpu')
    verdict = torch.tensor([0 if failure is None else 1 + dist.get_rank()],
                           dtype=torch.int64, device=on)
    dist.all_reduce(verdict, op=dist.ReduceOp.MAX)
    failed = int(verdict.item())
    if failure is not None or not failed:
        return failure
    return RuntimeError(f'WRS: the check failed on rank {failed - 1} (its log names the '
                        'weight); this rank stops too, so that no rank waits in a '
                        'collective for the failed one.')


def run_check(check: Callable[[], None], agree_across_ranks: bool, device: torch.device) -> None:
    """Run ``check``; with ``agree_across_ranks``, every rank raises if any rank does.

    Raises:
        FloatingPointError: What ``check`` raised on this rank.
        RuntimeError: What ``check`` raised here, or standing for another rank's failure.
    """
    failure = None
    try:
        check()
    except (FloatingPointError, RuntimeError) as exc:
        failure = exc
    if agree_across_ranks:
        failure = agreed_failure(failure, device)
    if failure is not None:
        raise failure
