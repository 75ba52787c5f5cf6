"""What discovery reports: the invariant weights, their norms, the exclusions."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

GRANULARITIES = ('filter', 'layer')
# Finest to coarsest; a weight gets the coarsest unit any of its norms allows.
_UNIT_ORDER = {'filter': 0, 'group': 1, 'layer': 2}

# Weight standardization re-normalizes the weight inside forward, so the layer is
# already invariant to its scale; rescaling it as well is redundant. Matched by
# class name to keep this module free of mmcv.
WEIGHT_STANDARDIZED_TYPES = ('ConvWS2d', 'ConvAWS2d')


@dataclass
class NormUse:
    """One call of a weight layer whose output went straight into a norm.

    Attributes:
        norm (nn.Module): The normalization module.
        norm_name (str): Its qualified name in the model.
        unit (str): The coarsest unit the norm makes invariant: ``'filter'``,
            ``'group'`` or ``'layer'``.
        num_units (int): How many invariance units the output channels form.
        running_stats (bool): Whether the norm normalized with its running
            statistics in this call (eval-mode BatchNorm, e.g. mmdet's
            ``norm_eval=True``): then a rescale must compensate them.
        note (str): Why the unit is coarser than a filter, if it is.
    """

    norm: nn.Module
    norm_name: str
    unit: str
    num_units: int
    running_stats: bool
    note: str = ''


@dataclass
class InvariantWeight:
    """A weight found scale-invariant, with what rescaling it needs.

    Attributes:
        name (str): Qualified parameter name (``backbone.layer1.0.conv1.weight``).
        param (nn.Parameter): The weight.
        module_type (str): Class name of the layer that owns it.
        out_dim (int): Dimension of ``param`` that indexes output channels.
        granularity (str): ``'filter'``, ``'group'`` or ``'layer'``.
        num_units (int): Number of independently rescaled units.
        uses (list[NormUse]): The norms its output feeds (one per call).
        bias (nn.Parameter, optional): The layer's bias when it must be scaled
            together with the weight (eval-mode BatchNorm compensation).
        note (str): Why the granularity is coarser than asked, if it is.
    """

    name: str
    param: nn.Parameter
    module_type: str
    out_dim: int
    granularity: str
    num_units: int
    uses: List[NormUse] = field(default_factory=list)
    bias: Optional[nn.Parameter] = None
    note: str = ''

    def compensated_norms(self, train_mode_stats: bool = False) -> List[nn.Module]:
        """Norms whose running statistics are rescaled with this weight.

        Those that normalized with their running statistics (eval mode) always;
        with ``train_mode_stats``, also the train-mode ones that keep running
        statistics (so that these stay estimates of the rescaled output).
        Each norm once, in the order of the calls.
        """
        norms = [u.norm for u in self.uses
                 if u.running_stats or (train_mode_stats
                                        and getattr(u.norm, 'running_var', None) is not None)]
        return list({id(n): n for n in norms}.values())

    @property
    def norm_types(self) -> str:
        return ','.join(sorted({type(u.norm).__name__ for u in self.uses}))


@dataclass
class Exclusion:
    """A weight that is not controlled, and why."""

    name: str
    shape: Tuple[int, ...]
    reason: str


@dataclass
class DiscoveryResult:
    """What :func:`discover_scale_invariant` found.

    Attributes:
        invariant (list[InvariantWeight]): The scale-invariant weights.
        excluded (list[Exclusion]): Every other conv/linear-like weight, with the
            reason it was left out.
    """

    invariant: List[InvariantWeight]
    excluded: List[Exclusion]

    def by_name(self) -> Dict[str, InvariantWeight]:
        return {w.name: w for w in self.invariant}


def is_norm(module: nn.Module, extra_norm_types: Sequence[type] = ()) -> bool:
    """Whether ``module`` is a normalization layer discovery understands."""
    return isinstance(module, (_BatchNorm, _InstanceNorm, nn.GroupNorm,
                               nn.LayerNorm, *extra_norm_types))
