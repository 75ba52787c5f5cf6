"""The CUDA-graph rescale on a GPU: it follows the weights, verifies itself, and
caps its recaptures (issue 19). Skipped without CUDA; needs torch and pytest only,
so that ``tools/benchmarks/gpu_check.py`` (section ``cuda_tests``) runs this file
on a lent GPU machine without the OpenMMLab stack."""
import pytest
import torch

from mmwrs.core import WeightRescaler, WRSController
from mmwrs.testing import conv_norm_pair

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')


def _rescaler(model, x, **kwargs):
    return WeightRescaler.from_model(model, lambda: model(x), **kwargs)


def _on_target(rescaler, atol=1e-5):
    return all(torch.allclose(norms, torch.ones_like(norms), atol=atol)
               for norms in rescaler.unit_norms().values())


def _perturb_(rescaler, factor=2.0):
    with torch.no_grad():
        for p in rescaler.params:
            p.mul_(factor).add_(0.01)


def test_cuda_graph_rescale_follows_in_place_updates():
    """The replayed graph reads the weights' current values, and a reallocated
    weight is recaptured instead of written through a stale address."""
    x = torch.randn(2, 3, 6, 6, device='cuda')
    model = conv_norm_pair().cuda()
    rescaler = _rescaler(model, x, check_interval=10)
    for _ in range(3):
        _perturb_(rescaler)
        rescaler.rescale_()
        assert _on_target(rescaler)
    assert rescaler.graphed.graph is not None
    model[0].weight.data = model[0].weight.data * 3.0  # a new tensor
    rescaler.rescale_()
    assert torch.allclose(rescaler.unit_norms()['0.weight'], torch.ones(4, device='cuda'))


def test_graph_replay_is_bit_identical_to_the_eager_deferred_rescale():
    x = torch.randn(2, 3, 6, 6, device='cuda')
    models = [conv_norm_pair().cuda(), conv_norm_pair().cuda()]
    graphed, eager = (_rescaler(m, x, check_interval=10, use_cuda_graph=flag)
                      for m, flag in zip(models, (True, False)))
    for _ in range(4):
        for rescaler in (graphed, eager):
            _perturb_(rescaler, 1.7)
            rescaler.rescale_()
    assert graphed.graphed.graph is not None and eager.graphed.graph is None
    for (name, a), b in zip(models[0].state_dict().items(), models[1].state_dict().values()):
        assert torch.equal(a, b), name


def test_a_replay_that_does_nothing_is_an_error_at_the_next_check():
    """What an empty capture (another device current, no set_device) would do:
    the replays leave the weights where the optimizer put them."""
    x = torch.randn(2, 3, 6, 6, device='cuda')
    rescaler = _rescaler(conv_norm_pair().cuda(), x, check_interval=3)
    rescaler.rescale_()
    rescaler.rescale_()  # captured
    assert rescaler.graphed.graph is not None
    empty = torch.cuda.CUDAGraph()
    with pytest.warns(UserWarning), torch.cuda.graph(empty):
        pass
    rescaler.graphed.graph = empty
    _perturb_(rescaler, 3.0)
    with pytest.raises(RuntimeError, match='did not reach its targets'):
        for _ in range(3):
            rescaler.rescale_()
        rescaler.check_()


def test_recapture_is_capped_then_eager_with_one_warning():
    """A norm that rebinds running_var on every call would recapture forever."""
    from mmwrs.core.graphed_call import MAX_CAPTURES
    x = torch.randn(2, 3, 6, 6, device='cuda')
    model = conv_norm_pair().cuda()
    rescaler = _rescaler(model, x, check_interval=100)
    with pytest.warns(RuntimeWarning, match='reallocated') as record:
        for _ in range(MAX_CAPTURES + 3):
            model[1].running_var = model[1].running_var.clone()
            rescaler.rescale_()
    assert sum('CUDA graph' in str(w.message) for w in record) == 1
    assert not rescaler.use_cuda_graph
    assert _on_target(rescaler)


def test_fused_cuda_optimizer_amp_skip_neither_rescales_nor_counts():
    """GradScaler calls a fused optimizer's step() on a skipped step too."""
    model = conv_norm_pair(norm_eval=False).cuda()
    x = torch.randn(2, 3, 6, 6, device='cuda')
    controller = WRSController(check_interval=10)
    assert controller.discover(model, lambda: model(x), warn=print)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, fused=True)
    scaler = torch.amp.GradScaler('cuda')
    controller.start([optimizer])
    model(x).mean().backward()
    with torch.no_grad():
        for p in controller.params:
            p.grad.fill_(float('inf'))
        model[0].weight.mul_(3.0)  # off target: a rescale would show
    before = model[0].weight.detach().clone()
    scaler.scale(torch.ones((), device='cuda'))
    scaler.step(optimizer)
    scaler.update()
    assert scaler.get_scale() < 65536.0
    assert controller.num_updates == 0
    assert torch.equal(model[0].weight, before)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason='needs two CUDA devices')
def test_capture_is_pinned_to_the_weights_device():
    """Weights on cuda:1 while cuda:0 is current (a DDP script without
    set_device): the graph must rescale them, not replay an empty capture."""
    x = torch.randn(2, 3, 6, 6, device='cuda:1')
    rescaler = _rescaler(conv_norm_pair().to('cuda:1'), x, check_interval=10)
    with torch.cuda.device(0):
        for _ in range(4):
            _perturb_(rescaler)
            rescaler.rescale_()
            assert _on_target(rescaler)
        rescaler.check_()
    assert rescaler.graphed.graph is not None
