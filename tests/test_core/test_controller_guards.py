"""The controller's guards: checks before saves, replaced parameters, several
optimizers, fused-optimizer AMP skips (issue 19), on the CPU."""
import inspect
import os.path as osp
import re

import pytest
import torch
from torch import nn

from mmwrs.core import WRSController


def _branch(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv2d(4, 6, 1, bias=False), nn.BatchNorm2d(6))


def _controller(model, x, **kwargs):
    controller = WRSController(**kwargs)
    assert controller.discover(model, lambda: model(x), warn=print)
    return controller


def test_check_names_the_last_checkpoint_and_guards_saves():
    """A deferred non-finite weight is reported by check_() (as a save runs it),
    naming the last checkpoint written, not left for the 50th rescale."""
    model, x = _branch(0), torch.randn(2, 3, 8, 8)
    controller = _controller(model, x, check_interval=50)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    controller.start([optimizer])
    controller.check_before_save_('work_dirs/iter_10.pth')  # healthy: written
    with torch.no_grad():
        model[0].weight[0, 0, 0, 0] = float('nan')
    optimizer.step()  # deferred: no error yet
    with pytest.raises(FloatingPointError, match=r'0\.weight.*iter_10\.pth'):
        controller.check_before_save_('work_dirs/iter_20.pth')
    assert controller.last_checkpoint == 'work_dirs/iter_10.pth'


def test_replaced_parameter_is_an_error_naming_it():
    model, x = _branch(0), torch.randn(2, 3, 8, 8)
    controller = _controller(model, x, check_interval=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    controller.start([optimizer])
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(state, assign=True)  # new parameter objects
    with pytest.raises(RuntimeError, match=r'3\.weight|0\.weight'):
        optimizer.step()
    other = _branch(1)
    deferred = _controller(other, x, check_interval=5)
    deferred.start([torch.optim.SGD(deferred.params, lr=0.1)])
    other[0].weight = nn.Parameter(other[0].weight.detach().clone())  # e.g. a master copy
    with pytest.raises(RuntimeError, match='0.weight is no longer the tensor'):
        deferred.check_()


def test_each_optimizer_rescales_only_its_own_weights_with_its_own_count():
    """Two optimizers (e.g. a GAN's): stepping one must not touch the other's
    weights, whose saved activations a later backward still needs."""
    a, b, x = _branch(0), _branch(1), torch.randn(2, 3, 8, 8)
    model = nn.ModuleDict(dict(a=a, b=b))
    controller = WRSController(check_interval=1)
    assert controller.discover(model, lambda: (a(x), b(x)), warn=print)
    opt_a = torch.optim.SGD(a.parameters(), lr=0.5)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.5)
    controller.start([opt_a, opt_b])
    loss_a, loss_b = a(x).square().mean(), b(x).pow(3).mean()
    loss_a.backward()
    opt_a.step()
    before = [p.detach().clone() for p in b.parameters()]
    loss_b.backward()  # b's weights untouched by a's step: no inplace error
    assert all(torch.equal(p, q) for p, q in zip(before, b.parameters()))
    opt_b.step()
    assert controller.optimizer_updates == [1, 1] and controller.num_updates == 2
    for values in controller.rescaler.unit_norms().values():
        assert torch.allclose(values, torch.ones_like(values), atol=1e-5)
    state = controller.state_dict()
    assert state['optimizer_updates'] == [1, 1]
    resumed = WRSController(check_interval=1)
    resumed.discover(model, lambda: (a(x), b(x)), warn=print)
    resumed.load_state_dict({'rescaler': state['rescaler'], 'num_updates': 4})  # old form
    resumed.start([opt_a, opt_b])
    assert resumed.optimizer_updates == [2, 2]


def test_fused_optimizer_amp_skip_neither_rescales_nor_counts():
    scaler_type = getattr(getattr(torch, 'amp', None), 'GradScaler', None)
    try:
        scaler = scaler_type('cpu')
        model, x = _branch(0), torch.randn(2, 3, 8, 8)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, fused=True)
    except (TypeError, RuntimeError, ValueError) as exc:
        pytest.skip(f'no fused CPU SGD / CPU GradScaler in torch {torch.__version__}: {exc}')
    controller = _controller(model, x, check_interval=1, interval=1)
    controller.start([optimizer])
    model(x).mean().backward()
    with torch.no_grad():
        for p in controller.params:
            p.grad.fill_(float('inf'))
        # Off target: a rescale would show.
        model[0].weight.mul_(3.0)
    before = model[0].weight.detach().clone()
    scaler.scale(torch.ones(()))
    scaler.step(optimizer)
    scaler.update()
    assert scaler.get_scale() < 65536.0  # the scaler saw the inf
    assert controller.num_updates == 0
    assert torch.equal(model[0].weight, before)


def test_use_cuda_graph_reaches_the_rescaler_and_is_validated():
    """The off switch of the graph replay: a config option, not only a
    WeightRescaler argument (the off-target error tells users to set it)."""
    model, x = _branch(0), torch.randn(2, 3, 8, 8)
    assert _controller(model, x).rescaler.use_cuda_graph
    assert not _controller(model, x, use_cuda_graph=False).rescaler.use_cuda_graph
    with pytest.raises(ValueError, match=r"use_cuda_graph must be True or False, got 'no'"):
        WRSController(use_cuda_graph='no')


def test_every_option_has_a_row_in_the_readme_options_table():
    """A new option of the hook and the constructor is documented where users look."""
    readme = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'README.md')
    with open(readme) as f:
        first_cells = re.findall(r'^\| ([^|]+) \|', f.read(), re.M)
    documented = {name for cell in first_cells for name in re.findall(r'`(\w+)`', cell)}
    options = set(inspect.signature(WRSController.__init__).parameters) - {'self', 'owner'}
    assert options - documented == set()
