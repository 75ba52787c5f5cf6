"""The epsilon-shifted L2 regularizer (Li et al., arXiv 1911.05920) as a hook."""
from typing import List, Optional, Sequence

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from torch.nn.modules.conv import _ConvNd

from mmwrs.core.penalties import add_eps_shifted_l2_grad_, check_hparams
from mmwrs.core.validation import compile_patterns, matches

from ..runner_utils import is_training_run, optimizers_of, split_off_in_runner_, unwrap_model


def eps_l2_targets(model: torch.nn.Module, include=None, exclude=None):
    """``(name, weight)`` of every trainable, non-depthwise, non-transposed conv."""
    include_re = compile_patterns(include, 'include')
    exclude_re = compile_patterns(exclude, 'exclude')
    targets = []
    for module_name, module in model.named_modules():
        if not isinstance(module, _ConvNd) or module.transposed:
            continue
        weight = module.weight
        name = f'{module_name}.weight'
        depthwise = module.groups > 1 and module.groups == module.in_channels
        if depthwise or not weight.requires_grad:
            continue
        if not matches(name, include_re, exclude_re):
            continue
        targets.append((name, weight))
    return targets


def penalty_step_pre_hook(params: Sequence[torch.nn.Parameter], lam: float, eps: float):
    """A torch optimizer step pre-hook adding the penalty's gradient to ``params``.

    A pre-hook runs inside the real step only: after AMP unscaling, never on a
    step the grad scaler skips or on a gradient-accumulation micro-step.
    """
    def add_penalty_grad(optimizer, args, kwargs) -> None:
        add_eps_shifted_l2_grad_(params, lam, eps)
    return add_penalty_grad


def select_targets(model: torch.nn.Module, include, exclude, owner: str):
    """:func:`eps_l2_targets`, or a clear error naming ``owner`` when there are none."""
    targets = eps_l2_targets(model, include, exclude)
    if not targets:
        raise RuntimeError(f'{owner}: the model has no trainable non-depthwise conv '
                           f'weight to regularize (include={include}, exclude={exclude})')
    return [weight for _, weight in targets]


def describe(owner: str, lam: float, eps: float, params) -> str:
    return (f'{owner}: lam={lam:g}, eps={eps:g} on {len(params)} conv weights '
            f'({sum(p.numel() for p in params):,} parameters; their weight decay is 0)')


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
        check_hparams(lam, eps)
        compile_patterns(include, 'include')
        compile_patterns(exclude, 'exclude')
        self.lam, self.eps = lam, eps
        self.include, self.exclude = include, exclude
        self.params: List[torch.nn.Parameter] = []
        self._handles = []

    def before_run(self, runner) -> None:
        if not is_training_run(runner):
            return
        self.params = select_targets(unwrap_model(runner.model), self.include,
                                     self.exclude, type(self).__name__)
        split_off_in_runner_(runner, self.params, {'weight_decay': 0.0})
        runner.logger.info(describe(type(self).__name__, self.lam, self.eps, self.params))

    def before_train(self, runner) -> None:
        step_hook = penalty_step_pre_hook(self.params, self.lam, self.eps)
        self._handles = [opt.register_step_pre_hook(step_hook)
                         for opt in optimizers_of(runner).values()]

    def after_train(self, runner) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
