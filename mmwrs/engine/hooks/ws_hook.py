"""Turn a model's conv + BatchNorm pairs into weight-standardized conv + GroupNorm."""
import math

from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmwrs.core import discover_scale_invariant
from mmwrs.core.validation import check_positive_int

from ..runner_utils import (built_loop, is_training_run, model_forward, sample_batch, train_mode,
                            unwrap_model)


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition('.')
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def group_norm_like(bn: _BatchNorm, num_groups: int) -> nn.GroupNorm:
    """A GroupNorm over the BN's channels that reuses its affine parameters."""
    channels = bn.num_features
    groups = math.gcd(channels, num_groups)
    gn = nn.GroupNorm(groups, channels, eps=bn.eps, affine=bn.affine)
    if bn.affine:
        gn.weight, gn.bias = bn.weight, bn.bias  # same Parameters: optimizer unchanged
    return gn


def conv_ws_like(conv: nn.Conv2d) -> nn.Module:
    """mmcv's ConvWS2d with the conv's geometry, reusing its Parameters."""
    from mmcv.cnn.bricks import ConvWS2d
    ws = ConvWS2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                  conv.padding, conv.dilation, conv.groups, bias=conv.bias is not None)
    ws.weight, ws.bias = conv.weight, conv.bias
    return ws


@HOOKS.register_module()
class WeightStandardizationHook(Hook):
    """The weight standardization baseline (Qiao et al.) as an overlay.

    Like mmdet's ``gn+ws`` configs: every Conv2d whose output feeds a
    BatchNorm (found from the real data flow, as WRS finds them) becomes mmcv's
    ``ConvWS2d`` and that BatchNorm becomes ``GroupNorm(num_groups)``. The
    modules keep their Parameter objects, so the optimizer, its groups and the
    schedulers built before are untouched. Runs in ``before_run``, before
    weight initialization and resume, ahead of the other mmwrs hooks.

    Args:
        num_groups (int): GroupNorm groups (the gcd with the channel count
            where it does not divide it). 32 as in mmdet's gn+ws configs.
    """

    priority = 'VERY_HIGH'

    def __init__(self, num_groups: int = 32):
        self.num_groups = check_positive_int('WeightStandardizationHook: num_groups',
                                             num_groups)
        self.converted = []

    @staticmethod
    def _discover(model, batch, training: bool, logger):
        """Trace a loss pass: on training samples, or on the evaluation ones,
        which carry annotations in the stock test pipelines (the loss pass
        also reaches layers only training uses, e.g. auxiliary heads, so the
        model matches the trained one). Evaluation data without annotations:
        the inference forward."""
        try:
            return discover_scale_invariant(model, model_forward(model, batch))
        except Exception as error:  # noqa: BLE001  (no annotations: any codebase's error)
            if training:
                raise
            logger.info(f'WeightStandardizationHook: no loss on the evaluation samples '
                        f'({type(error).__name__}: {error}); tracing the inference '
                        'forward (layers only training uses stay unconverted)')
            return discover_scale_invariant(model, model_forward(model, batch, 'tensor'))

    def before_run(self, runner) -> None:
        """Convert the model; in training runs, and in ``runner.val()`` /
        ``runner.test()`` (``tools/test.py``), whose checkpoint was saved from
        the converted model and loads after ``before_run``."""
        loop = built_loop(runner)
        if loop is None:
            return
        model = unwrap_model(runner.model)
        batch = sample_batch(loop.dataloader)
        # Frozen stages (mmdet's frozen_stages=1: stem and layer1) are converted
        # too, as in mmdet's gn+ws configs; otherwise a WS+GN checkpoint would
        # load into plain convs before BNs with default statistics. Discovery
        # skips frozen weights and autograd does not trace them: unfreeze them
        # for the pass (their Parameters keep requires_grad=False after).
        frozen = [p for p in model.parameters() if not p.requires_grad]
        # The mode the loop runs in (which conv feeds which norm does not
        # depend on it); evaluation batches may hold one image, too few for a
        # train-mode BN after global pooling (PSPNet, ASPP).
        training = is_training_run(runner)
        with train_mode(model, training):
            try:
                for param in frozen:
                    param.requires_grad_(True)
                found = self._discover(model, batch, training, runner.logger)
            finally:
                for param in frozen:
                    param.requires_grad_(False)
        modules = {id(m): n for n, m in model.named_modules()}
        layer_of = {id(p): n.rpartition('.')[0] for n, p in model.named_parameters()}
        norms_done = set()
        for weight in found.invariant:
            conv_name = layer_of[id(weight.param)]
            conv = model.get_submodule(conv_name)
            bns = [u.norm for u in weight.uses if isinstance(u.norm, _BatchNorm)]
            if type(conv) is not nn.Conv2d or len(bns) != len(weight.uses):
                continue
            _set_module(model, conv_name, conv_ws_like(conv).to(conv.weight.device))
            for bn in bns:
                if id(bn) not in norms_done:
                    norms_done.add(id(bn))
                    _set_module(model, modules[id(bn)],
                                group_norm_like(bn, self.num_groups).to(conv.weight.device))
            self.converted.append(conv_name)
        if not self.converted:
            raise RuntimeError('WeightStandardizationHook: no Conv2d feeding a BatchNorm '
                               f'in {type(model).__name__}; nothing to standardize')
        runner.logger.info(
            f'WeightStandardizationHook: {len(self.converted)} conv+BN pairs -> '
            f'ConvWS2d + GroupNorm({self.num_groups}) '
            f'(e.g. {", ".join(self.converted[:3])})')
