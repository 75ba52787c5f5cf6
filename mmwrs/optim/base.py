"""What SGDP and AdamP share as torch optimizers: argument checks, state
initialization, gathering the parameters to step, and the step loop.

Pure PyTorch. Each optimizer says what its state holds
(:meth:`ProjectionOptimizer.init_state`) and how one parameter, or a list of
them at once, takes a step; the projection itself is
:mod:`mmwrs.optim.projection`.
"""
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

import torch

from mmwrs.core.validation import check_bool, check_min, check_optional_bool

from .projection import use_foreach

ParamsT = Union[Iterable[torch.Tensor], Iterable[Dict[str, Any]]]


class ProjectionOptimizer(torch.optim.Optimizer):
    """Base of the optimizers that project scale-invariant updates.

    Every group's options (the defaults merged with what the group sets) are
    checked when the optimizer is built and when a group is added, so an
    out-of-range value is named before the first step.

    ``foreach`` (an option of every group): True: the multi-tensor step
    (``torch._foreach_*`` ops; weights of the same shape, dtype and device are
    tested and projected together), far fewer kernel launches; it agrees with
    the reference up to rounding, not bit for bit (batched reductions may sum
    in another order). False: the reference's per-parameter operations,
    bit-identical to it. None (default): True when all of a group's
    parameters are on CUDA, else False.

    Subclasses define :meth:`check_group` (calling this one),
    :meth:`init_state`, ``_step_one`` (one parameter, the reference's
    operations) and ``_step_foreach`` (a list at once), and list in
    :attr:`LATER_OPTIONS` the options added after the first release, which a
    state dict saved before them lacks.
    """

    LATER_OPTIONS: Dict[str, Any] = {'foreach': None}

    def __init__(self, params: ParamsT, defaults: Dict[str, Any]):
        self.check_group(defaults)
        super().__init__(params, defaults)

    def __setstate__(self, state: Dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            for key, value in self.LATER_OPTIONS.items():
                group.setdefault(key, value)

    @staticmethod
    def check_group(group: Dict[str, Any]) -> None:
        """Check the options SGDP and AdamP share.

        Raises:
            ValueError: An option is out of range; the message names it and
                its value.
        """
        check_min('lr', group['lr'], 0.0)
        check_min('weight_decay', group['weight_decay'], 0.0)
        check_min('eps', group['eps'], 0.0)
        check_min('delta', group['delta'], 0.0, inclusive=False)
        check_min('wd_ratio', group['wd_ratio'], 0.0)
        check_bool('nesterov', group['nesterov'])
        check_optional_bool('foreach', group['foreach'])

    def add_param_group(self, param_group: Dict[str, Any]) -> None:
        """Adds a parameter group after checking its (merged) arguments."""
        merged = dict(self.defaults)
        merged.update({k: v for k, v in param_group.items() if k != 'params'})
        self.check_group(merged)
        super().add_param_group(param_group)

    @staticmethod
    def init_state(p: torch.Tensor) -> Dict[str, Any]:
        """The state of a parameter before its first step."""
        raise NotImplementedError

    def gather(self, group: Dict[str, Any]
               ) -> Tuple[List[torch.Tensor], List[torch.Tensor], List[Dict[str, Any]]]:
        """The group's parameters that have a gradient, their gradients and
        their states (initialized on first use)."""
        params, grads, states = [], [], []
        for p in group['params']:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError(f'{type(self).__name__} does not support sparse gradients')
            state = self.state[p]
            if len(state) == 0:
                state.update(self.init_state(p))
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
            params, grads, states = self.gather(group)
            if not params:
                continue
            if use_foreach(group['foreach'], params):
                self._step_foreach(group, params, grads, states)
            else:
                for p, grad, state in zip(params, grads, states):
                    self._step_one(group, p, grad, state)
        return loss
