"""The epsilon-shifted L2 regularizer (mmwrs.core.penalties)."""
import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from mmwrs.core.penalties import (add_eps_shifted_l2_grad_, eps_shifted_l2_grad,
                                  eps_shifted_l2_penalty)


def rel_dev(ours, ref):
    scale = ref.abs().max().clamp_min(1e-30)
    return ((ours - ref).abs().max() / scale).item()


def reference_grad_loop(weight, lam, eps):
    """Independent oracle: the reference update transcribed per filter with
    an explicit loop, ``g += lam * ((1 - eps/sd) * (w - mu) + mu)``."""
    out = torch.empty_like(weight)
    for i in range(weight.shape[0]):
        w = weight[i]
        mu = w.mean()
        sd = w.std()
        out[i] = lam * ((1 - eps / sd) * (w - mu) + mu)
    return out


SHAPES = [(8, 4, 3, 3), (16, 3, 1, 1), (6, 10), (3, 1, 5)]


@pytest.mark.parametrize('eps', [1e-3, 0.5, 0.0])
@pytest.mark.parametrize('shape', SHAPES)
def test_grad_equals_autograd_of_penalty(shape, eps):
    gen = torch.Generator().manual_seed(0)
    w = (torch.randn(shape, generator=gen, dtype=torch.float64) *
         0.3).requires_grad_()
    lam = 0.7
    eps_shifted_l2_penalty(w, lam, eps).backward()
    ours = eps_shifted_l2_grad(w, lam, eps)
    assert ours.shape == w.shape and ours.dtype == w.dtype
    assert rel_dev(ours, w.grad) <= 1e-6
    # the eps shift matters: the plain-L2-on-spread gradient (eps = 0)
    # differs whenever eps > 0
    if eps > 0:
        assert rel_dev(eps_shifted_l2_grad(w, lam, 0.0), w.grad) > 1e-4


@pytest.mark.parametrize('shape', SHAPES)
def test_grad_equals_loop_oracle(shape):
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(shape, generator=gen, dtype=torch.float64)
    ours = eps_shifted_l2_grad(w, 1e-2, 0.2)
    assert rel_dev(ours, reference_grad_loop(w, 1e-2, 0.2)) <= 1e-12


def test_sgd_steps_match_reference_update():
    """A few momentum-SGD steps on a real conv+BN loss: the regularizer added
    with add_eps_shifted_l2_grad_ vs the loop oracle added by hand."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False),
                          nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 4, 3, padding=1, bias=False),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten()).double()
    ours, oracle, plain = (copy.deepcopy(model) for _ in range(3))
    lam, eps, lr = 5e-2, 1e-3, 0.1

    def convs(m):
        return [m[0].weight, m[3].weight]

    opts = [torch.optim.SGD(m.parameters(), lr=lr, momentum=0.9)
            for m in (ours, oracle, plain)]
    gen = torch.Generator().manual_seed(3)
    for _ in range(6):
        x = torch.randn(8, 3, 6, 6, generator=gen, dtype=torch.float64)
        y = torch.randint(0, 4, (8, ), generator=gen)
        for m, opt in zip((ours, oracle, plain), opts):
            opt.zero_grad()
            F.cross_entropy(m(x), y).backward()
        assert add_eps_shifted_l2_grad_(convs(ours), lam, eps) == 2
        with torch.no_grad():
            for p in convs(oracle):
                p.grad += reference_grad_loop(p, lam, eps)
        for opt in opts:
            opt.step()
    for p, q, r in zip(convs(ours), convs(oracle), convs(plain)):
        assert rel_dev(p.detach(), q.detach()) <= 1e-6
        # and the regularizer had a visible effect
        assert rel_dev(r.detach(), q.detach()) > 1e-4


def test_descent_on_penalty_drives_filters_to_mean_zero_std_eps():
    gen = torch.Generator().manual_seed(4)
    w = torch.randn(5, 4, 3, 3, generator=gen, dtype=torch.float64) + 0.5
    lam, eps = 1.0, 0.25
    for _ in range(3000):
        w -= 0.02 * eps_shifted_l2_grad(w, lam, eps)
    flat = w.reshape(5, -1)
    torch.testing.assert_close(flat.std(dim=1),
                               torch.full((5, ), eps, dtype=torch.float64),
                               rtol=1e-6, atol=1e-8)
    assert flat.mean(dim=1).abs().max() < 1e-8


def test_constant_filter_is_finite():
    w = torch.randn(4, 9, dtype=torch.float64)
    w[1] = 0.3  # constant filter: sd == 0
    w[2] = 0.0  # all-zero filter
    g = eps_shifted_l2_grad(w, 0.5, 1e-3)
    assert torch.isfinite(g).all()
    torch.testing.assert_close(g[1], torch.full((9, ), 0.5 * 0.3,
                                                dtype=torch.float64))
    assert torch.equal(g[2], torch.zeros(9, dtype=torch.float64))
    # the other filters are unaffected by the special case
    ref = reference_grad_loop(w, 0.5, 1e-3)
    torch.testing.assert_close(g[[0, 3]], ref[[0, 3]], rtol=1e-12, atol=0)


def test_single_element_filters():
    """n == 1: the spread term has weight n - 1 = 0, so the gradient is
    lam * w (and matches autograd of the penalty)."""
    w = torch.randn(6, 1, 1, 1, dtype=torch.float64, requires_grad=True)
    g = eps_shifted_l2_grad(w, 0.3, 1e-3)
    torch.testing.assert_close(g, 0.3 * w.detach())
    eps_shifted_l2_penalty(w, 0.3, 1e-3).backward()
    torch.testing.assert_close(g, w.grad)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_precision(dtype):
    w = torch.randn(8, 4, 3, 3, dtype=torch.float64)
    g = eps_shifted_l2_grad(w.to(dtype), 1e-2, 1e-3)
    assert g.dtype == dtype
    ref = eps_shifted_l2_grad(w.to(dtype).double(), 1e-2, 1e-3)
    assert rel_dev(g.double(), ref) < 1e-2


def test_add_grad_skips_none_and_accepts_single_tensor():
    a = torch.randn(4, 3, 3, 3, requires_grad=True)
    b = torch.randn(4, 3, 3, 3, requires_grad=True)
    a.grad = torch.ones_like(a)
    assert add_eps_shifted_l2_grad_([a, b], 0.1, 1e-3) == 1
    assert b.grad is None
    torch.testing.assert_close(
        a.grad, 1 + eps_shifted_l2_grad(a, 0.1, 1e-3))
    assert add_eps_shifted_l2_grad_(a, 0.1, 1e-3) == 1
    assert a.grad.grad_fn is None  # no autograd graph built


def test_penalty_value():
    w = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 3.0]], dtype=torch.float64)
    lam, eps = 2.0, 0.5
    # filter 0: mu 2, sd 1; filter 1: mu 1, sd sqrt(3)
    expected = lam / 2 * (2 * (1 - eps)**2 + 3 * 2**2 + 2 *
                          (3**0.5 - eps)**2 + 3 * 1**2)
    assert eps_shifted_l2_penalty(w, lam, eps).item() == pytest.approx(
        expected, rel=1e-12)


@pytest.mark.parametrize('fn', [eps_shifted_l2_grad, eps_shifted_l2_penalty])
@pytest.mark.parametrize('weight, lam, eps, message', [
    (torch.zeros(3, 3), -1.0, 1e-3, 'lam must be finite and >= 0, got -1.0'),
    (torch.zeros(3, 3), 1e-4, -1e-3,
     'eps must be finite and >= 0, got -0.001'),
    (torch.zeros(3, 3), 1e-4, float('nan'),
     'eps must be finite and >= 0, got nan'),
    (torch.zeros(3, 3), '1e-4', 1e-3, "lam must be a real number, got '1e-4'"),
    (torch.zeros(5), 1e-4, 1e-3,
     r'weight must have at least 2 dimensions .*got shape \(5,\)'),
    (torch.zeros(3, 3, dtype=torch.int64), 1e-4, 1e-3,
     'weight must be floating point, got dtype torch.int64'),
])
def test_invalid_arguments(fn, weight, lam, eps, message):
    with pytest.raises(ValueError, match=message):
        fn(weight, lam, eps)


def test_add_grad_invalid_arguments():
    p = torch.zeros(3, 3, requires_grad=True)
    with pytest.raises(ValueError, match='lam must be finite and >= 0'):
        add_eps_shifted_l2_grad_([p], -1, 1e-3)
