"""The hook that runs Weight Rescaling inside mmengine's Runner."""
import contextlib
import random
from typing import Any, Optional

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from mmengine.runner import BaseLoop

from mmwrs.core import WeightRescaler
from mmwrs.core.controller import WRSController

from ..param_groups import optimizers_of, schedulers_of, split_off_params_


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


@contextlib.contextmanager
def train_mode(model: torch.nn.Module):
    """Put ``model`` in training mode for a discovery pass, then restore each
    module's own mode.

    Training mode is what the train loop uses (it applies e.g. mmdet's
    ``norm_eval``, which decides whether a BN needs running-stat compensation).
    """
    was_training = {m: m.training for m in model.modules()}
    model.train()
    try:
        yield model
    finally:
        for module, mode in was_training.items():
            module.training = mode


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
            ``fixed_norm_layers``, ``on_empty``.
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
        if not isinstance(getattr(runner, '_train_loop', None), BaseLoop):
            return  # runner.val() / runner.test(): nothing to train
        wrappers = optimizers_of(runner, wrappers=True).values()
        if any(getattr(w, 'wrs', None) is not None for w in wrappers):
            raise RuntimeError(
                f'{type(self).__name__}: the optimizer wrapper already applies WRS '
                "(optim_wrapper.constructor='WRSOptimWrapperConstructor'); use the "
                'hook or the constructor, not both')
        model = unwrap_model(runner.model)
        batch = sample_batch(runner.train_dataloader)
        with train_mode(model):
            found = self.controller.discover(model, loss_forward(model, batch),
                                             runner.logger.warning)
        if not found:
            return
        for name, optimizer in optimizers_of(runner).items():
            split_off_params_(optimizer, self.controller.params,
                              self.controller.group_overrides,
                              schedulers_of(runner, name))

    def before_train(self, runner) -> None:
        """Bring the weights to their targets (weights are initialized now)."""
        if not self.controller.params:
            return
        self.controller.start(optimizers_of(runner).values())
        if self.report:
            runner.logger.info('\n' + self.controller.report(unwrap_model(runner.model)))

    def after_train(self, runner) -> None:
        self.controller.stop()

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = self.controller.state_dict()
        if state:
            checkpoint['wrs'] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Only a resumed run continues the saved rescale; load_from starts anew.
        if getattr(runner, '_resume', False) and 'wrs' in checkpoint:
            self.controller.load_state_dict(checkpoint['wrs'])
