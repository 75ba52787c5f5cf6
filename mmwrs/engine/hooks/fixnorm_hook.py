"""FixNorm (Zhou, Sun, Zhong; arXiv 2103.15345): norms held fixed, no decay."""
from typing import Sequence, Union

from mmengine.registry import HOOKS

from ..runner_utils import optimizers_of
from .wrs_hook import WRSHook

# The class-logit layers of mmdet / mmseg heads (METHODS.md's decision).
CLASSIFIER_PATTERNS = (r'(^|\.)(fc_cls|conv_cls|retina_cls|rpn_cls|conv_seg)\.weight$', )


@HOOKS.register_module()
class FixNormHook(WRSHook):
    """Hold normalization-preceded weights and the classifiers at fixed norms.

    The WRS machinery with FixNorm's policy: each scale-invariant weight is held
    at its initial norm (``target_norm='init'``, whole layer), so the learning
    rate alone sets its effective learning rate; each head's class-logit layer
    is held at ``classifier_norm``; weight decay is 0 for every parameter.

    Args:
        classifier_norm (float | str): Whole-tensor norm of every classifier
            weight; ``'init'`` keeps its initial norm. The tuning tool
            ``tools/analysis/fixnorm_tune.py`` searches (lr, classifier_norm).
        classifier_patterns (list[str]): Regexes naming the classifier weights.
        granularity (str): ``'layer'`` by default; ``'filter'`` also possible.
        target_norm (float | str): ``'init'`` by default.
        **kwargs: Other :class:`WRSHook` options.
    """

    def __init__(self, classifier_norm: Union[float, str] = 'init',
                 classifier_patterns: Sequence[str] = CLASSIFIER_PATTERNS,
                 granularity: str = 'layer', target_norm: Union[float, str] = 'init',
                 **kwargs):
        fixed = dict(kwargs.pop('fixed_norm_layers', None) or {})
        fixed.update({pattern: classifier_norm for pattern in classifier_patterns})
        super().__init__(granularity=granularity, target_norm=target_norm,
                         fixed_norm_layers=fixed, **kwargs)

    def before_run(self, runner) -> None:
        super().before_run(runner)
        for optimizer in optimizers_of(runner).values():
            for group in optimizer.param_groups:
                if 'weight_decay' in group:
                    group['weight_decay'] = 0.0
