"""SGDP / AdamP as mmengine optimizers: registered types with the reference defaults."""
import inspect

import adamp
import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import OPTIMIZERS

import mmwrs  # noqa: F401  (registers them)
from mmwrs.optim import SGDP, AdamP


def _defaults(cls):
    return {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty}


@pytest.mark.parametrize('ours, reference', [(SGDP, adamp.SGDP), (AdamP, adamp.AdamP)],
                         ids=['SGDP', 'AdamP'])
def test_registered_and_defaults_equal_the_reference(ours, reference):
    assert OPTIMIZERS.get(ours.__name__) is ours
    ref_defaults = _defaults(reference)
    our_defaults = _defaults(ours)
    assert set(ref_defaults) - {'lr'} <= set(our_defaults)
    for name, value in ref_defaults.items():
        if name == 'lr' and ours is SGDP:
            continue  # torch's SGD and ours require lr; the reference has a sentinel
        assert our_defaults[name] == value, name
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    wrapper = build_optim_wrapper(model, dict(optimizer=dict(type=ours.__name__, lr=0.1)))
    assert type(wrapper.optimizer) is ours
    group = wrapper.optimizer.param_groups[0]
    for name in ('delta', 'wd_ratio', 'nesterov', 'eps', 'weight_decay'):
        assert group[name] == ref_defaults[name], name
