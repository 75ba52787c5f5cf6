"""WRS as an optimizer-wrapper constructor, wrapping the constructor a config uses."""
import copy
from typing import Optional

from mmengine.logging import MMLogger
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn

from mmwrs.core.controller import WRSController
from mmwrs.core.penalties import check_hparams
from mmwrs.core.validation import compile_patterns

from .base_check import check_constructor_kept, runner_config_filename
from .example_batch import example_loss_forward
from .hooks.eps_l2_hook import describe, penalty_step_pre_hook, select_targets
from .optim_wrappers import WRSWrapperMixin
from .param_groups import split_off_params_
from .runner_utils import train_mode, unwrap_model
from .unsupported import check_supported_setup

# The wrapper type each stock type becomes, so that mmdet's ``train.py --amp``
# (which sets 'AmpOptimWrapper') and mmseg's (which asserts 'OptimWrapper'
# before doing so) both keep WRS.
WRS_WRAPPER_OF = {
    'OptimWrapper': 'WRSOptimWrapper',
    'AmpOptimWrapper': 'AmpWRSOptimWrapper',
    'WRSOptimWrapper': 'WRSOptimWrapper',
    'AmpWRSOptimWrapper': 'AmpWRSOptimWrapper',
}


def build_inner_constructor(owner: str, optim_wrapper_cfg: dict,
                            paramwise_cfg: Optional[dict]):
    """The constructor a regularizing constructor wraps: ``inner_constructor``
    from ``optim_wrapper_cfg`` (``DefaultOptimWrapperConstructor`` by default)."""
    inner = optim_wrapper_cfg.pop('inner_constructor', 'DefaultOptimWrapperConstructor')
    if inner == owner:
        raise ValueError(f'{owner}: inner_constructor cannot be {owner} itself')
    return OPTIM_WRAPPER_CONSTRUCTORS.build(
        dict(type=inner, optim_wrapper_cfg=optim_wrapper_cfg, paramwise_cfg=paramwise_cfg))


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class WRSOptimWrapperConstructor:
    """Build the config's optimizer wrapper, then apply Weight Rescaling to it.

    The inner constructor (``DefaultOptimWrapperConstructor`` unless the config
    names another, e.g. a layer-decay constructor) builds the param groups from
    ``paramwise_cfg`` as usual. Then the scale-invariant weights are found with
    one loss-mode forward pass on a synthetic batch (the constructor sees the
    model only; see :mod:`mmwrs.engine.example_batch`), moved into param groups
    of their own with ``weight_decay=0`` (every other parameter keeps the decay
    its group had), and handed to the wrapper, which rescales them to their
    target after every real optimizer update and checkpoints the state::

        optim_wrapper = dict(
            type='OptimWrapper',  # becomes WRSOptimWrapper (AMP: AmpWRSOptimWrapper)
            constructor='WRSOptimWrapperConstructor',
            optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4),
            paramwise_cfg=dict(norm_decay_mult=0.),  # passed to the inner constructor
            inner_constructor='DefaultOptimWrapperConstructor',
            wrs=dict(granularity='filter', target_norm=1.0))

    The same policy as a hook, for configs that cannot touch ``optim_wrapper``
    (overlays): :class:`~mmwrs.engine.WRSHook`. Use one of the two, not both.

    Args:
        optim_wrapper_cfg (dict): The ``optim_wrapper`` config; mmwrs reads and
            removes ``wrs`` (options of :class:`~mmwrs.core.WRSController`,
            plus ``report``) and ``inner_constructor``.
        paramwise_cfg (dict, optional): Passed to the inner constructor.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None):
        owner = type(self).__name__
        cfg = copy.deepcopy(dict(optim_wrapper_cfg))
        wrs_cfg = dict(cfg.pop('wrs', None) or {})
        self.report = wrs_cfg.pop('report', True)
        self.controller = WRSController(owner=owner, **wrs_cfg)
        if self.controller.schedule is not None and self.controller.schedule.by_epoch:
            # The wrapper never sees the dataloader, so it cannot count epochs.
            raise ValueError(
                f'{owner}: wrs.target_norm={wrs_cfg["target_norm"]!r} counts epochs '
                '(by_epoch=True), which the optimizer wrapper cannot see; give its positions '
                "in optimizer updates (by_epoch=False), or use default_hooks=dict(wrs=dict("
                "type='WRSHook', target_norm=...)), which knows the train dataloader")
        wrapper_type = cfg.get('type', 'OptimWrapper')
        if wrapper_type not in WRS_WRAPPER_OF:
            raise ValueError(
                f'{owner}: optim_wrapper.type={wrapper_type!r} has no WRS form; allowed: '
                f'{sorted(WRS_WRAPPER_OF)}. For other wrappers use '
                "default_hooks=dict(wrs=dict(type='WRSHook')), which works with any wrapper.")
        cfg['type'] = WRS_WRAPPER_OF[wrapper_type]
        check_constructor_kept(runner_config_filename(), cfg, owner)
        self.inner = build_inner_constructor(owner, cfg, paramwise_cfg)

    def __call__(self, model: nn.Module) -> WRSWrapperMixin:
        check_supported_setup(model, owner=type(self).__name__)
        wrapper = self.inner(model)
        if not isinstance(wrapper, WRSWrapperMixin):
            raise TypeError(
                f'{type(self).__name__}: the inner constructor built '
                f'{type(wrapper).__name__}, not one of {sorted(set(WRS_WRAPPER_OF.values()))}; '
                'with that inner constructor use '
                "default_hooks=dict(wrs=dict(type='WRSHook')) instead")
        module = unwrap_model(model)
        logger = MMLogger.get_current_instance()
        with train_mode(module):
            found = self.controller.discover(
                module, example_loss_forward(module, type(self).__name__), logger.warning)
        if found:
            # Runs before the Runner builds its param schedulers, so they see
            # the final groups and need no re-indexing.
            split_off_params_(wrapper.optimizer, self.controller.params,
                              self.controller.group_overrides)
        wrapper.attach_wrs(self.controller, self.report)
        return wrapper


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class EpsShiftedL2OptimWrapperConstructor:
    """The epsilon-shifted L2 regularizer (Li et al., arXiv 1911.05920) as an
    optimizer-wrapper constructor.

    The inner constructor builds the wrapper from ``paramwise_cfg`` as usual;
    then every trainable, non-depthwise conv weight gets a param group with
    ``weight_decay=0`` (every other parameter keeps its decay), and the torch
    optimizer gets a step pre-hook adding the reference gradient per filter,
    ``lam * ((1 - eps / sd) * (w - mu) + mu)``, before the update (after AMP
    unscaling; never on skipped steps or accumulation micro-steps)::

        optim_wrapper = dict(
            type='OptimWrapper',
            constructor='EpsShiftedL2OptimWrapperConstructor',
            optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4),
            eps_l2=dict(lam=1e-4, eps=1e-3))

    The same as :class:`~mmwrs.engine.EpsShiftedL2Hook` (the overlay form).

    Args:
        optim_wrapper_cfg (dict): The ``optim_wrapper`` config; mmwrs reads and
            removes ``eps_l2`` (``lam``, ``eps``, ``include``, ``exclude``) and
            ``inner_constructor``.
        paramwise_cfg (dict, optional): Passed to the inner constructor.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None):
        owner = type(self).__name__
        cfg = copy.deepcopy(dict(optim_wrapper_cfg))
        options = dict(cfg.pop('eps_l2', None) or {})
        unknown = set(options) - {'lam', 'eps', 'include', 'exclude'}
        if unknown:
            raise ValueError(f'{owner}: unknown eps_l2 option(s) {sorted(unknown)}; allowed: '
                             "['eps', 'exclude', 'include', 'lam']")
        self.lam, self.eps = options.get('lam', 1e-4), options.get('eps', 1e-3)
        self.include, self.exclude = options.get('include'), options.get('exclude')
        check_hparams(self.lam, self.eps)
        check_constructor_kept(runner_config_filename(), cfg, owner)
        compile_patterns(self.include, 'include')
        compile_patterns(self.exclude, 'exclude')
        self.inner = build_inner_constructor(owner, cfg, paramwise_cfg)

    def __call__(self, model: nn.Module):
        wrapper = self.inner(model)
        owner = type(self).__name__
        params = select_targets(unwrap_model(model), self.include, self.exclude, owner)
        split_off_params_(wrapper.optimizer, params, {'weight_decay': 0.0})
        wrapper.optimizer.register_step_pre_hook(
            penalty_step_pre_hook(params, self.lam, self.eps))
        MMLogger.get_current_instance().info(describe(owner, self.lam, self.eps, params))
        return wrapper
