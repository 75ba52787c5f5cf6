"""The hook that runs Weight Rescaling inside mmengine's Runner."""
from typing import Optional

from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from mmwrs.core import WeightRescaler
from mmwrs.core.controller import WRSController

from ..base_check import dropped_hooks
from ..runner_utils import (discovery_forward, is_training_run, optim_wrappers_of, optimizers_of,
                            split_off_in_runner_, train_mode, unwrap_model, updates_per_epoch)
from ..unsupported import check_supported_setup


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
    ``configs/_base_/regularizers/wrs.py`` overlay adds this hook. The same
    policy as an optimizer-wrapper constructor:
    :class:`~mmwrs.engine.WRSOptimWrapperConstructor`.

    Args:
        report (bool): Log the table of controlled and excluded weights.
        **kwargs: The options of :class:`~mmwrs.core.WRSController`:
            ``granularity``, ``target_norm``, ``interval``, ``include``,
            ``exclude``, ``decay_rescaled``, ``rescale_running_stats``,
            ``fixed_norm_layers``, ``on_empty``, ``check_interval``,
            ``use_cuda_graph``. ``target_norm`` may be a schedule, e.g.
            ``dict(type='linear', start=1.0, end=0.5, end_at=12, by_epoch=True)``
            (epochs are passes over the train dataloader).
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, report: bool = True, **kwargs):
        self.controller = WRSController(owner=type(self).__name__, **kwargs)
        self.report = report

    @property
    def rescaler(self) -> Optional[WeightRescaler]:
        return self.controller.rescaler

    @property
    def num_updates(self) -> int:
        return self.controller.num_updates

    def before_run(self, runner) -> None:
        """Discover the weights and give them param groups of their own.

        Runs before weight initialization and resume: discovery depends only on
        the model's structure, and the optimizer must have its final groups
        before a saved optimizer state is loaded into it.
        """
        if not is_training_run(runner):
            return
        if any(getattr(w, 'wrs', None) is not None for w in optim_wrappers_of(runner).values()):
            raise RuntimeError(
                f'{type(self).__name__}: the optimizer wrapper already applies WRS '
                "(optim_wrapper.constructor='WRSOptimWrapperConstructor'); use the "
                'hook or the constructor, not both')
        for wrapper in list(optim_wrappers_of(runner).values()) or [None]:
            check_supported_setup(runner.model, wrapper, type(self).__name__)
        dropped = dropped_hooks(runner.cfg)
        if dropped:
            # A list in the config replaces the base's: this is the one place
            # where the loss is still visible (the composed config lost them).
            runner.logger.warning(
                f'{type(self).__name__}: the base config of {runner.cfg.filename} registers '
                f'custom_hooks {dropped}, which this config\'s custom_hooks list replaced, '
                "so they do not run. Keep them: write default_hooks = dict(wrs=dict("
                "type='WRSHook')) instead of custom_hooks (default_hooks is a dict and "
                'merges with the base).')
        model = unwrap_model(runner.model)
        with train_mode(model):
            found = self.controller.discover(model, discovery_forward(runner),
                                             runner.logger.warning)
        if not found:
            return
        split_off_in_runner_(runner, self.controller.params, self.controller.group_overrides)

    def before_train(self, runner) -> None:
        """Bring the weights to their targets (weights are initialized now)."""
        if not self.controller.params:
            return
        # A resumed run's last checkpoint is the one it resumed from.
        self.controller.last_checkpoint = runner.message_hub.get_info('last_ckpt')
        self.controller.set_updates_per_epoch(updates_per_epoch(runner))
        self.controller.start(optimizers_of(runner).values())
        if self.report:
            runner.logger.info('\n' + self.controller.report(unwrap_model(runner.model)))

    def after_train(self, runner) -> None:
        # The last rescales' deferred checks: a run that diverged in its last
        # few updates must not end as if it succeeded.
        try:
            self.controller.check_(agree_across_ranks=True)
        finally:
            self.controller.stop()

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # Check first: a diverged run must never write a healthy-looking
        # checkpoint. CheckpointHook publishes the path before saving.
        self.controller.check_before_save_(runner.message_hub.get_info('last_ckpt'))
        state = self.controller.state_dict()
        if state:
            checkpoint['wrs'] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Only a resumed run continues the saved rescale; load_from starts anew.
        if getattr(runner, '_resume', False) and 'wrs' in checkpoint:
            self.controller.load_state_dict(checkpoint['wrs'])
