"""The epsilon-shifted L2 regularizer (Li et al., arXiv 1911.05920) as a hook."""
from typing import List, Optional, Sequence

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import BaseLoop
from torch.nn.modules.conv import _ConvNd

from mmwrs.core.discovery import _compile
from mmwrs.core.penalties import _check_hparams, add_eps_shifted_l2_grad_

from ..param_groups import optimizers_of, schedulers_of, split_off_params_
from .wrs_hook import unwrap_model


def eps_l2_targets(model: torch.nn.Module, include=None, exclude=None):
    """``(name, weight)`` of every trainable, non-depthwise, non-transposed conv."""
    include_re, exclude_re = _compile(include, 'include'), _compile(exclude, 'exclude')
    targets = []
    for module_name, module in model.named_modules():
        if not isinstance(module, _ConvNd) or module.transposed:
            continue
        weight = module.weight
        name = f'{module_name}.weight'
        depthwise = module.groups > 1 and module.groups == module.in_channels
        if depthwise or not weight.requires_grad:
            continue
        if include_re and not any(p.search(name) for p in include_re):
            continue
        if exclude_re and any(p.search(name) for p in exclude_re):
            continue
        targets.append((name, weight))
    return targets


@HOOKS.register_module()
class EpsShiftedL2Hook(Hook):
    """Replace weight decay on conv weights by the epsilon-shifted L2 penalty.

    Every trainable, non-depthwise conv weight gets ``weight_decay=0`` and, in
    each real optimizer step (after AMP unscaling, never on skipped steps or
    accumulation micro-steps), the reference gradient added per filter::

        g += lam * ((1 - eps / sd) * (w - mu) + mu)

    All other parameters keep the config's weight decay.

    Args:
        lam (float): Strength; 1e-4 for ResNets, 4e-5 for mobile nets in the
            reference.
        eps (float): The filter standard deviation the penalty pulls towards;
            1e-3 (ResNets) or 1e-8 (mobile nets) in the reference.
        include (list[str], optional): Regexes: only these conv weights.
        exclude (list[str], optional): Regexes of conv weights left alone.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, lam: float = 1e-4, eps: float = 1e-3,
                 include: Optional[Sequence[str]] = None,
                 exclude: Optional[Sequence[str]] = None):
        _check_hparams(lam, eps)
        _compile(include, 'include')
        _compile(exclude, 'exclude')
        self.lam, self.eps = lam, eps
        self.include, self.exclude = include, exclude
        self.params: List[torch.nn.Parameter] = []
        self._handles = []

    def before_run(self, runner) -> None:
        if not isinstance(getattr(runner, '_train_loop', None), BaseLoop):
            return
        targets = eps_l2_targets(unwrap_model(runner.model), self.include, self.exclude)
        if not targets:
            raise RuntimeError('EpsShiftedL2Hook: the model has no trainable '
                               'non-depthwise conv weight to regularize '
                               f'(include={self.include}, exclude={self.exclude})')
        self.params = [weight for _, weight in targets]
        for name, optimizer in optimizers_of(runner).items():
            split_off_params_(optimizer, self.params, {'weight_decay': 0.0},
                              schedulers_of(runner, name))
        runner.logger.info(
            f'EpsShiftedL2Hook: lam={self.lam:g}, eps={self.eps:g} on {len(targets)} '
            f'conv weights ({sum(p.numel() for p in self.params):,} parameters; '
            'their weight decay is 0)')

    def before_train(self, runner) -> None:
        self._handles = [opt.register_step_pre_hook(self._add_penalty_grad)
                         for opt in optimizers_of(runner).values()]

    def _add_penalty_grad(self, optimizer, args, kwargs) -> None:
        add_eps_shifted_l2_grad_(self.params, self.lam, self.eps)

    def after_train(self, runner) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
