"""WRS in optimizer-wrapper form: ``optim_wrapper=dict(type='WRSOptimWrapper', ...)``.

The wrappers carry a :class:`~mmwrs.core.WRSController` that
:class:`~mmwrs.engine.WRSOptimWrapperConstructor` builds and attaches (it is the
constructor that sees the model); they start it once the Runner has initialized
and possibly resumed the weights, and keep its state in their own state dict,
the way ``AmpOptimWrapper`` keeps its loss scaler.
"""
from typing import Optional

from mmengine.logging import MessageHub, MMLogger
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS
from torch import nn

from mmwrs.core.controller import WRSController

from .runner_utils import unwrap_model

STATE_KEY = 'wrs'


def _last_checkpoint():
    """The path CheckpointHook published for the checkpoint it is writing
    (it publishes before saving), or the one a resumed run came from."""
    return MessageHub.get_current_instance().get_info('last_ckpt')


class WRSWrapperMixin:
    """What both WRS wrappers add to their mmengine base class."""

    wrs: Optional[WRSController] = None
    report: bool = True

    def attach_wrs(self, controller: WRSController, report: bool = True) -> None:
        self.wrs = controller
        self.report = report

    def initialize_count_status(self, model: nn.Module, init_counts: int,
                                max_counts: int) -> None:
        # The Runner calls this once, after weight initialization and resume,
        # right before the first iteration: the moment to go on target.
        super().initialize_count_status(model, init_counts, max_counts)
        if self.wrs is None:
            raise RuntimeError(
                f"{type(self).__name__} was built without a WRS controller: set "
                "optim_wrapper.constructor='WRSOptimWrapperConstructor' (it discovers "
                'the scale-invariant weights and attaches them to the wrapper)')
        self.wrs.last_checkpoint = _last_checkpoint()
        self.wrs.start([self.optimizer])
        if self.report and self.wrs.params:
            MMLogger.get_current_instance().info(
                '\n' + self.wrs.report(unwrap_model(model)))

    def step(self, **kwargs) -> None:
        super().step(**kwargs)
        # The wrapper sees no end-of-training event: its last update is one.
        if self.wrs is not None and 0 < self._max_counts <= self._inner_count:
            self.wrs.check_()

    def state_dict(self) -> dict:
        if self.wrs is not None and self.wrs.params:
            # Check first: a diverged run must never write a healthy-looking
            # checkpoint (the Runner asks for this state only to save it).
            self.wrs.check_before_save_(_last_checkpoint())
        state = super().state_dict()
        if self.wrs is not None and self.wrs.params:
            state[STATE_KEY] = self.wrs.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        wrs_state = state_dict.pop(STATE_KEY, None)
        if wrs_state is not None and self.wrs is not None:
            self.wrs.load_state_dict(wrs_state)
        super().load_state_dict(state_dict)


@OPTIM_WRAPPERS.register_module()
class WRSOptimWrapper(WRSWrapperMixin, OptimWrapper):
    """``OptimWrapper`` with Weight Rescaling after every real update.

    Build it through ``constructor='WRSOptimWrapperConstructor'``; under
    ``--amp`` it becomes :class:`AmpWRSOptimWrapper`.
    """

    amp_type = 'AmpWRSOptimWrapper'


@OPTIM_WRAPPERS.register_module()
class AmpWRSOptimWrapper(WRSWrapperMixin, AmpOptimWrapper):
    """``AmpOptimWrapper`` with Weight Rescaling after every real update.

    A step that the grad scaler skips (inf/NaN gradients) never reaches the
    optimizer's ``step``, so it does not rescale either: the weights did not
    change and are still on target.
    """
