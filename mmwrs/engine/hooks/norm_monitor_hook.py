"""Log norms, effective learning rates, angular updates and gradient norms."""
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.hooks import Hook, LoggerHook
from mmengine.registry import HOOKS

from mmwrs.core import WeightRescaler, discover_scale_invariant, stats
from mmwrs.core.validation import check_positive_int, compile_patterns, matches

from ..runner_utils import (discovery_forward, optim_wrappers_of, optimizers_of, train_mode,
                            unwrap_model)

# Aggregate statistics per quantity, pushed to the message hub as 'train/<stat>/<quantity>'.
AGGREGATES = {
    'norm': ('mean', 'min', 'max'),
    'filter_norm': ('mean', 'min', 'max'),
    'eff_lr': ('mean', 'min', 'max'),
    'angle_deg': ('mean', 'max'),
    'grad_norm': ('mean', 'max'),
}
PER_LAYER = ('norm', 'eff_lr', 'angle_deg', 'grad_norm')


@HOOKS.register_module()
class NormMonitorHook(Hook):
    """Log what happens to the scale-invariant weights during training.

    Monitors the weights a WRS controller holds (a :class:`WRSHook` or
    :class:`FixNormHook` in ``custom_hooks``, or WRS applied by the optimizer
    wrapper constructor), all of them, fixed-norm classifiers included.
    Without one it finds the scale-invariant weights itself, with WRSHook's own
    discovery on the first training samples, so that a weight-decay run logs
    the same weights as a WRS run. Every ``interval`` iterations it logs, per
    weight and aggregated over the weights:

    - ``norm``: whole-tensor L2 norm ``||w||`` after the iteration (after the
      optimizer step and any rescale).
    - ``filter_norm``: norms of the output filters (aggregates only).
    - ``eff_lr``: ``lr / ||w||²`` with the ``lr`` of the param group that holds
      the weight, read when the optimizer steps.
    - ``angle_deg``: the angle between the weight just before this iteration's
      update and just after it, the rescale that follows included. 0 when the
      iteration did not update (gradient-accumulation micro-step, AMP step
      skipped for inf/NaN gradients).
    - ``grad_norm``: ``||∇w||`` when the optimizer steps (after AMP unscaling,
      gradient clipping and DDP all-reduce); absent when no step happened.

    Keys (stable; the message hub's ``train/`` prefix is dropped in the logs):

    - aggregates, in the text log and ``vis_data/scalars.json``:
      ``train/<stat>/<quantity>``, i.e. ``mean|min|max/norm``,
      ``mean|min|max/filter_norm``, ``mean|min|max/eff_lr``,
      ``mean|max/angle_deg``, ``mean|max/grad_norm``. The statistic comes
      first so that the effective-LR keys end in ``lr``: mmengine prints those
      in scientific notation instead of rounding them to 4 decimals.
    - per weight (``per_layer=True``), in ``vis_data/scalars.json`` and
      TensorBoard/W&B when configured, never in the text log:
      ``norm/<param name>``, ``eff_lr/<param name>``, ``angle_deg/<param
      name>``, ``grad_norm/<param name>``, e.g. ``norm/backbone.conv1.weight``.

    Every logged value is that of the iteration it is logged at. The
    aggregates are removed from the message hub before every iteration, so
    the LoggerHook (which prints what the hub holds at its own interval)
    never shows a value of an earlier iteration, nor averages one in (it
    smooths keys matching ``grad_norm`` over 10 entries); with ``interval``
    dividing ``default_hooks.logger.interval`` every logger line has them, else
    only lines at common multiples (a warning says so). Iterations are counted
    like the LoggerHook does (within the epoch for epoch-based loops).

    Example overlay (``custom_hooks`` cannot come from two ``_base_`` files, so
    with a regularizer overlay redefine the list in the child config)::

        _base_ = ['mmseg::fcn/fcn_r50-d8_4xb2-40k_cityscapes-512x1024.py',
                  'path/to/configs/_base_/regularizers/wrs.py']
        custom_hooks = [dict(type='WRSHook'),
                        dict(type='NormMonitorHook', interval=50)]

    ``tools/analysis/plot_curves.py WORK_DIR ...`` plots the aggregates.

    Args:
        interval (int): Log every ``interval`` iterations.
        per_layer (bool): Also log each weight's values.
        include (list[str], optional): Regexes; only matching parameter names
            are monitored.
        exclude (list[str], optional): Regexes of parameter names not monitored.
    """

    # After WRSHook (ABOVE_NORMAL) in before_run/before_train, before the
    # LoggerHook (BELOW_NORMAL) in after_train_iter.
    priority = 'NORMAL'

    def __init__(self,
                 interval: int = 50,
                 per_layer: bool = True,
                 include: Optional[Sequence[str]] = None,
                 exclude: Optional[Sequence[str]] = None):
        owner = type(self).__name__
        self.interval = check_positive_int(f'{owner}: interval', interval,
                                           '(log every N iterations)')
        self.per_layer = bool(per_layer)
        self.include = compile_patterns(include, f'{owner}.include')
        self.exclude = compile_patterns(exclude, f'{owner}.exclude')
        self.names: List[str] = []
        self.params: List[torch.nn.Parameter] = []
        self.out_dims: List[int] = []
        self.source = ''
        self._index: Dict[int, int] = {}
        self._handles: List[Any] = []
        self._active = False
        self._before: Optional[List[torch.Tensor]] = None
        self._lrs: Dict[int, float] = {}
        self._grads: Dict[int, float] = {}
        self._keys = [f'train/{stat}/{quantity}'
                      for quantity, stat_names in AGGREGATES.items() for stat in stat_names]

    # -- which weights -------------------------------------------------------
    def _controlled(self, runner) -> Optional[Tuple[str, WeightRescaler]]:
        """The WRS rescaler of a hook or of an optimizer wrapper, if any."""
        for hook in runner.hooks:
            rescaler = getattr(hook, 'rescaler', None)
            if isinstance(rescaler, WeightRescaler) and len(rescaler):
                return type(hook).__name__, rescaler
        for wrapper in optim_wrappers_of(runner).values():
            rescaler = getattr(getattr(wrapper, 'wrs', None), 'rescaler', None)
            if isinstance(rescaler, WeightRescaler) and len(rescaler):
                return type(wrapper).__name__, rescaler
        return None

    def _discover(self, runner) -> List[Tuple[str, torch.nn.Parameter, int]]:
        model = unwrap_model(runner.model)
        with train_mode(model):  # as WRSHook traces: norm_eval decides what is invariant
            result = discover_scale_invariant(model, discovery_forward(runner))
        return [(w.name, w.param, w.out_dim) for w in result.invariant]

    def before_train(self, runner) -> None:
        """Choose the weights (WRSHook discovered its own in ``before_run``)."""
        found = self._controlled(runner)
        if found is not None:
            self.source, rescaler = found
            weights = [(e.name, e.param, e.out_dim) for e in rescaler.entries]
        else:
            self.source = 'discovery'
            weights = self._discover(runner)
        weights = [w for w in weights if matches(w[0], self.include, self.exclude)]
        self.names = [w[0] for w in weights]
        self.params = [w[1] for w in weights]
        self.out_dims = [w[2] for w in weights]
        self._index = {id(p): i for i, p in enumerate(self.params)}
        name = type(self).__name__
        if not self.params:
            runner.logger.warning(f'{name}: no scale-invariant weight to monitor '
                                  f'(source: {self.source}, include/exclude applied); '
                                  'nothing is logged')
            return
        self._handles = [opt.register_step_pre_hook(self._before_step)
                         for opt in optimizers_of(runner).values()]
        runner.logger.info(f'{name}: monitoring {len(self.params)} weights '
                           f'(from {self.source}) every {self.interval} iterations')
        logger_hook = next((h for h in runner.hooks if isinstance(h, LoggerHook)), None)
        if logger_hook is not None and logger_hook.interval % self.interval:
            runner.logger.warning(
                f'{name}: interval={self.interval} does not divide the LoggerHook '
                f'interval={logger_hook.interval}: the text log shows the aggregates '
                'only at iterations that are multiples of both (scalars.json gets '
                'the per-weight values at every monitored iteration)')

    def after_train(self, runner) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._before = None

    # -- every iteration -----------------------------------------------------
    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        scalars = runner.message_hub.log_scalars
        for key in self._keys:
            scalars.pop(key, None)  # a stale value must not reach the LoggerHook
        self._active = bool(self.params) and self.every_n_inner_iters(batch_idx, self.interval)
        self._lrs, self._grads = {}, {}
        if self._active:
            with torch.no_grad():
                self._before = [p.detach().clone() for p in self.params]

    def _before_step(self, optimizer, args, kwargs) -> None:
        if not self._active:
            return
        found = []
        for group in optimizer.param_groups:
            for param in group['params']:
                if id(param) in self._index:
                    self._lrs[id(param)] = float(group['lr'])
                    found.append(param)
        norms = stats.grad_norms(found).tolist()
        for param, norm in zip(found, norms):
            self._grads[id(param)] = norm

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not self._active:
            return
        self._active = False
        values = self._compute(runner)
        self._before = None
        for quantity, stat_names in AGGREGATES.items():
            summary = stats.summarize(values[quantity])
            if summary is None:
                continue
            for stat in stat_names:
                runner.message_hub.update_scalar(f'train/{stat}/{quantity}', summary[stat])
        if self.per_layer:
            per_layer = {f'{quantity}/{name}': value
                         for quantity in PER_LAYER
                         for name, value in zip(self.names, values[quantity].tolist())
                         if value == value}  # NaN: undefined, left out
            runner.visualizer.add_scalars(per_layer, step=runner.iter + 1)

    @torch.no_grad()
    def _compute(self, runner) -> Dict[str, torch.Tensor]:
        filter_norms = [stats.filter_norms(p, d) for p, d in zip(self.params, self.out_dims)]
        # The norm of the filter norms is the whole-tensor norm: no second pass.
        norms = stats.tensor_norms(filter_norms).cpu()
        if not self._lrs:  # no step this iteration: the groups' current lr
            for optimizer in optimizers_of(runner).values():
                for group in optimizer.param_groups:
                    for param in group['params']:
                        if id(param) in self._index:
                            self._lrs[id(param)] = float(group['lr'])
        nan = float('nan')
        lrs = torch.tensor([self._lrs.get(id(p), nan) for p in self.params], dtype=torch.float64)
        return dict(
            norm=norms,
            filter_norm=torch.cat(filter_norms).to(torch.float64).cpu(),
            eff_lr=stats.effective_lr(lrs, norms),
            angle_deg=stats.angles_deg(self._before, self.params).cpu(),
            grad_norm=torch.tensor([self._grads.get(id(p), nan) for p in self.params],
                                   dtype=torch.float64))
