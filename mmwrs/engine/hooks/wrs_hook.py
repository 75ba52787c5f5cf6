"""The hook that runs Weight Rescaling inside mmengine's Runner."""
import random
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from mmengine.runner import BaseLoop

from mmwrs.core import WeightRescaler, validate_target
from mmwrs.core.discovery import GRANULARITIES, _compile
from mmwrs.core.report import format_report

from ..param_groups import optimizers_of, schedulers_of, split_off_params_

ON_EMPTY = ('error', 'warn')


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if is_model_wrapper(model) else model


def sample_batch(dataloader) -> Any:
    """Collate the first samples of ``dataloader``'s dataset into one batch.

    Reads the dataset directly, leaving the sampler's iteration state alone,
    and restores Python's and numpy's RNGs that random augmentations consume,
    so tracing does not change what training sees.
    """
    dataset = dataloader.dataset
    batch_size = dataloader.batch_size or getattr(dataloader.batch_sampler, 'batch_size', 2)
    # Two samples at least: a train-mode BatchNorm1d needs more than one value.
    count = min(len(dataset), max(2, batch_size or 2))
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        return dataloader.collate_fn([dataset[i] for i in range(count)])
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def loss_forward(model: torch.nn.Module, batch: Any):
    """A forward pass of an mmengine ``BaseModel`` in loss mode."""
    def forward():
        data = model.data_preprocessor(batch, True)
        if isinstance(data, dict):
            return model(**data, mode='loss')
        return model(*data, mode='loss')
    return forward


@HOOKS.register_module()
class WRSHook(Hook):
    """Weight Rescaling: hold scale-invariant weights at a target norm.

    Before training, one forward pass on the first training samples finds every
    weight whose layer output feeds nothing but a normalization layer; those
    weights get ``weight_decay=0`` and are rescaled to ``target_norm`` once, then
    again after every real optimizer update (not after gradient-accumulation
    micro-steps, not after AMP steps the grad scaler skipped: the rescale hangs
    on the optimizer's own step, which those never reach). A table of what is
    controlled and what is left out, with reasons, goes to the log.

    Works with whatever optimizer wrapper, constructor and ``paramwise_cfg``
    the config uses: the controlled weights are moved into param groups of
    their own (see :mod:`mmwrs.engine.param_groups`). The
    ``configs/_base_/regularizers/wrs.py`` overlay adds this hook.

    Args:
        granularity (str): ``'filter'`` (each output filter its own unit) or
            ``'layer'``. Coarsened automatically where the following norm is
            invariant only per group (GroupNorm) or per layer (LayerNorm).
        target_norm (float | str): Norm of each unit; ``'init'`` holds each unit
            at its norm when training starts (FixNorm).
        interval (int): Rescale after every ``interval`` real updates.
        include (list[str], optional): Regexes; only matching parameter names
            are controlled.
        exclude (list[str], optional): Regexes of parameter names left alone.
        decay_rescaled (bool): Keep the config's weight decay on the rescaled
            weights (off by default: the rescale replaces it).
        rescale_running_stats (bool): Also rescale the running statistics of
            train-mode BatchNorms (eval-mode ones are always compensated).
        fixed_norm_layers (dict, optional): ``{regex: norm}`` of weights that are
            not scale-invariant but whose whole-tensor norm is held fixed
            anyway (FixNorm's classifier), e.g. ``{r'fc_cls\\.weight$': 2.0}``.
        on_empty (str): ``'error'`` (default) or ``'warn'`` when the model has no
            scale-invariant weight.
        report (bool): Log the table of controlled and excluded weights.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self,
                 granularity: str = 'filter',
                 target_norm: Union[float, str] = 1.0,
                 interval: int = 1,
                 include: Optional[Sequence[str]] = None,
                 exclude: Optional[Sequence[str]] = None,
                 decay_rescaled: bool = False,
                 rescale_running_stats: bool = True,
                 fixed_norm_layers: Optional[Dict[str, float]] = None,
                 on_empty: str = 'error',
                 report: bool = True):
        if granularity not in GRANULARITIES:
            raise ValueError(f'{type(self).__name__}: granularity must be one '
                             f'of {GRANULARITIES}, got {granularity!r}')
        self.target_norm = validate_target(target_norm, f'{type(self).__name__}.target_norm')
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f'{type(self).__name__}: interval must be a positive '
                             f'integer (rescale after every N real updates), got {interval!r}')
        if on_empty not in ON_EMPTY:
            raise ValueError(f'{type(self).__name__}: on_empty must be one of '
                             f'{ON_EMPTY}, got {on_empty!r}')
        _compile(include, 'include')
        _compile(exclude, 'exclude')
        self.fixed_norm_layers = dict(fixed_norm_layers or {})
        for pattern, norm in self.fixed_norm_layers.items():
            _compile([pattern], 'fixed_norm_layers')
            validate_target(norm, f'fixed_norm_layers[{pattern!r}]')
        self.granularity = granularity
        self.interval = interval
        self.include = list(include) if include else None
        self.exclude = list(exclude) if exclude else None
        self.decay_rescaled = decay_rescaled
        self.rescale_running_stats = rescale_running_stats
        self.on_empty = on_empty
        self.report = report
        self.rescaler: Optional[WeightRescaler] = None
        self.num_updates = 0
        self._resumed_state: Optional[Dict[str, Any]] = None
        self._step_hooks: List[Any] = []

    # -- setup ---------------------------------------------------------------
    def before_run(self, runner) -> None:
        """Discover the weights and give them param groups of their own.

        Runs before weight initialization and resume: discovery depends only on
        the model's structure, and the optimizer must have its final groups
        before a saved optimizer state is loaded into it.
        """
        if not isinstance(getattr(runner, '_train_loop', None), BaseLoop):
            return  # runner.val() / runner.test(): nothing to train
        model = unwrap_model(runner.model)
        batch = sample_batch(runner.train_dataloader)
        was_training = {m: m.training for m in model.modules()}
        model.train()  # what the train loop does; applies e.g. norm_eval
        try:
            self.rescaler = WeightRescaler.from_model(
                model, loss_forward(model, batch), granularity=self.granularity,
                include=self.include, exclude=self.exclude,
                target_norm=self.target_norm,
                rescale_running_stats=self.rescale_running_stats)
        finally:
            for module, mode in was_training.items():
                module.training = mode
        self._add_fixed_norm_layers(model)
        self._check_patterns(runner)
        if not len(self.rescaler):
            self._no_invariant_weights(runner, model)
            return
        overrides = {} if self.decay_rescaled else {'weight_decay': 0.0}
        for name, optimizer in optimizers_of(runner).items():
            split_off_params_(optimizer, self.rescaler.params, overrides,
                              schedulers_of(runner, name))

    def before_train(self, runner) -> None:
        """Bring the weights to their targets (weights are initialized now)."""
        if self.rescaler is None or not len(self.rescaler):
            return
        if self._resumed_state is not None:
            # The saved run rescaled after its last update: weights are on target.
            self.rescaler.load_state_dict(self._resumed_state['rescaler'])
            self.num_updates = self._resumed_state['num_updates']
        else:
            self.rescaler.capture_targets_()
            self.rescaler.rescale_()
        if self.report:
            model = unwrap_model(runner.model)
            total = sum(p.numel() for p in model.parameters())
            runner.logger.info('\n' + format_report(self.rescaler, type(self).__name__,
                                                    total_params=total))
        self._step_hooks = [opt.register_step_post_hook(self._after_step)
                            for opt in optimizers_of(runner).values()]

    def _add_fixed_norm_layers(self, model) -> None:
        controlled = {id(p) for p in self.rescaler.params}
        for pattern, norm in self.fixed_norm_layers.items():
            regex = _compile([pattern], 'fixed_norm_layers')[0]
            for name, param in model.named_parameters():
                if regex.search(name) and param.requires_grad and id(param) not in controlled:
                    self.rescaler.add(name, param, norm, granularity='layer')
                    controlled.add(id(param))

    def _check_patterns(self, runner) -> None:
        names = [name for name, _ in unwrap_model(runner.model).named_parameters()]
        patterns = [('include', p) for p in self.include or ()]
        patterns += [('exclude', p) for p in self.exclude or ()]
        patterns += [('fixed_norm_layers', p) for p in self.fixed_norm_layers]
        for key, pattern in patterns:
            regex = _compile([pattern], key)[0]
            if not any(regex.search(name) for name in names):
                runner.logger.warning(
                    f'{type(self).__name__}: {key} pattern {pattern!r} matches no '
                    f'parameter name of {type(unwrap_model(runner.model)).__name__}; '
                    "names look like 'backbone.layer1.0.conv1.weight'")

    def _no_invariant_weights(self, runner, model) -> None:
        excluded = self.rescaler.discovery.excluded
        reasons = sorted({e.reason.split(' (call')[0] for e in excluded})
        message = (f'{type(self).__name__}: found no scale-invariant weight in '
                   f'{type(model).__name__}: of {len(excluded)} conv/linear weights '
                   'none has an output that feeds only a normalization layer '
                   f'(reasons: {"; ".join(reasons) or "no conv/linear weights"}). '
                   'WRS needs BN/GN/LN/IN after the layers it controls; use weight '
                   "decay for this model, or set on_empty='warn' to train without WRS.")
        if self.on_empty == 'error':
            raise RuntimeError(message)
        runner.logger.warning(message)

    # -- every real update ---------------------------------------------------
    def _after_step(self, optimizer, args, kwargs) -> None:
        self.num_updates += 1
        if self.num_updates % self.interval == 0:
            self.rescaler.rescale_()

    def after_train(self, runner) -> None:
        for handle in self._step_hooks:
            handle.remove()
        self._step_hooks = []

    # -- checkpoints ---------------------------------------------------------
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.rescaler is not None and len(self.rescaler):
            checkpoint['wrs'] = dict(rescaler=self.rescaler.state_dict(),
                                     num_updates=self.num_updates)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Only a resumed run continues the saved rescale; load_from starts anew.
        if getattr(runner, '_resume', False) and 'wrs' in checkpoint:
            self._resumed_state = checkpoint['wrs']
