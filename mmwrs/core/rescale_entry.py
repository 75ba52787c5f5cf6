"""One controlled parameter, where it lives in the model, and its targets."""
import numbers
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from . import rescale_math
from .validation import check_positive

TARGET_POLICIES = ('init',)


def validate_target(target: Union[float, str], key: str = 'target_norm') -> Union[float, str]:
    """Check a target norm option: a positive finite number, or ``'init'``."""
    allowed = f'a positive number or one of {TARGET_POLICIES}'
    if isinstance(target, str):
        if target not in TARGET_POLICIES:
            raise ValueError(f'{key} must be {allowed}, got {target!r}')
        return target
    if isinstance(target, bool) or not isinstance(target, numbers.Real):
        raise TypeError(f'{key} must be {allowed}, got {target!r}')
    return check_positive(key, target)


@dataclass
class RescaleEntry:
    """One controlled parameter and everything its rescale touches.

    Attributes:
        name (str): Qualified parameter name.
        param (nn.Parameter): The weight.
        out_dim (int): Dimension indexing output channels.
        granularity (str): ``'filter'``, ``'group'`` or ``'layer'``.
        num_units (int): Number of units rescaled independently.
        target (Tensor | float | str): Target norm per unit, a scalar, or
            ``'init'`` until :meth:`WeightRescaler.capture_targets_` runs.
        running_stat_norms (list[nn.Module]): Norms whose running statistics
            are compensated.
        bias (nn.Parameter, optional): Bias scaled together with the weight.
    """

    name: str
    param: nn.Parameter
    out_dim: int
    granularity: str
    num_units: int
    target: Any
    running_stat_norms: List[nn.Module] = field(default_factory=list)
    bias: Optional[nn.Parameter] = None

    @classmethod
    def of_invariant(cls, weight, target: Any, rescale_running_stats: bool) -> 'RescaleEntry':
        """The entry of a discovered :class:`~mmwrs.core.discovery.InvariantWeight`."""
        return cls(name=weight.name, param=weight.param, out_dim=weight.out_dim,
                   granularity=weight.granularity, num_units=weight.num_units, target=target,
                   running_stat_norms=weight.compensated_norms(rescale_running_stats),
                   bias=weight.bias)

    @classmethod
    def held(cls, name: str, param: nn.Parameter, target: Any, granularity: str,
             out_dim: int) -> 'RescaleEntry':
        """A weight held at a norm by choice (nothing compensated: FixNorm's classifier)."""
        units = param.shape[out_dim] if granularity == 'filter' else 1
        return cls(name, param, out_dim, granularity, units, validate_target(target))

    @property
    def out_channels(self) -> int:
        return self.param.shape[self.out_dim]

    def channel_norms(self) -> torch.Tensor:
        """L2 norm of each output channel's slice of the weight, shape (O,)."""
        return rescale_math.channel_norms(self.param, self.out_dim)

    def unit_norms(self, channel_norms: Optional[torch.Tensor] = None) -> torch.Tensor:
        """L2 norm of each rescaling unit, shape (num_units,)."""
        norms = self.channel_norms() if channel_norms is None else channel_norms
        return rescale_math.unit_norms(norms, self.num_units)

    def to_channels(self, per_unit: torch.Tensor) -> torch.Tensor:
        """Expand a per-unit tensor to one value per output channel."""
        return rescale_math.to_channels(per_unit, self.num_units, self.out_channels)

    def target_tensor(self, like: torch.Tensor) -> torch.Tensor:
        """The per-unit target, on ``like``'s device and dtype."""
        if isinstance(self.target, torch.Tensor):
            return self.target.to(like.device, like.dtype)
        if isinstance(self.target, str):
            raise RuntimeError(f'the target of {self.name} is {self.target!r}: '
                               'call capture_targets_() before rescaling')
        return torch.full_like(like, self.target)

    @torch.no_grad()
    def set_target_(self, value: Union[float, torch.Tensor]) -> None:
        """Set the target, in place where it is a tensor already."""
        if isinstance(value, torch.Tensor):
            if value.numel() not in (1, self.num_units):
                raise ValueError(f'WRS: target for {self.name} has {value.numel()} values, '
                                 f'the weight has {self.num_units} unit(s) (or give one)')
        else:
            value = validate_target(value, f'target of {self.name}')
            if isinstance(value, str):
                raise ValueError(f'WRS: target of {self.name} must be a number here, '
                                 f'got {value!r}')
        if isinstance(self.target, torch.Tensor):
            self.target.copy_(torch.as_tensor(value).expand_as(self.target))
        elif isinstance(value, torch.Tensor):
            self.target = value.detach().reshape(-1).expand(self.num_units).clone()
        else:
            self.target = float(value)


def find_owners(model: nn.Module, entries: List[RescaleEntry]
                ) -> List[Tuple[RescaleEntry, torch.Tensor, nn.Module, str]]:
    """``(entry, tensor, module, attribute)`` of each controlled weight and bias.

    Raises:
        ValueError: If a controlled tensor is not a parameter of ``model``.
    """
    names = {id(p): n for n, p in model.named_parameters()}
    owners = []
    for entry in entries:
        for tensor in (entry.param, entry.bias):
            if tensor is None:
                continue
            if id(tensor) not in names:
                raise ValueError(f'WRS: {entry.name} is not a parameter of '
                                 f'{type(model).__name__}')
            module_name, _, attr = names[id(tensor)].rpartition('.')
            owners.append((entry, tensor, model.get_submodule(module_name), attr))
    return owners


def verify_owners(owners) -> None:
    """Raise if a model no longer holds a controlled parameter object.

    Raises:
        RuntimeError: Naming the first replaced parameter.
    """
    for entry, tensor, module, attr in owners:
        if module._parameters.get(attr) is not tensor:
            raise RuntimeError(
                f"WRS: the model's parameter {entry.name}"
                f'{"" if tensor is entry.param else " (its bias)"} is no longer the '
                'tensor WRS rescales: it was replaced (load_state_dict(assign=True), '
                'FSDP, DeepSpeed or apex O2 master weights), so the rescale would not '
                'reach the model. Build WRS after the parameters are final; FSDP, '
                'DeepSpeed and apex O2 are not supported.')


class ParamOwners:
    """Where in a model each controlled weight (and bias) lives, verified at checks.

    Args:
        model (nn.Module, optional): The model the entries' parameters belong
            to; without one nothing is verified.
        entries (list[RescaleEntry]): The controlled weights.
    """

    def __init__(self, model: Optional[nn.Module] = None, entries: Sequence[RescaleEntry] = ()):
        self.model = model
        self.owners = find_owners(model, list(entries)) if model is not None else []

    def add(self, entries: Sequence[RescaleEntry]) -> None:
        if self.model is not None:
            self.owners += find_owners(self.model, list(entries))

    def subset(self, entries: Sequence[RescaleEntry]) -> 'ParamOwners':
        chosen = {id(entry) for entry in entries}
        part = ParamOwners()
        part.model = self.model
        part.owners = [owner for owner in self.owners if id(owner[0]) in chosen]
        return part

    def verify(self) -> None:
        """Raise ``RuntimeError`` naming a controlled parameter the model replaced."""
        verify_owners(self.owners)
