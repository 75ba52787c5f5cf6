"""What SGDP and AdamP must both do, each against its reference (``adamp``
0.3.0): skip parameters without gradients, round-trip their state, handle
missing gradients, mixed and half precision, and choose their step path."""
import copy
from typing import Any, NamedTuple

import adamp
import pytest
import torch

from mmwrs.optim import SGDP, AdamP

from optim_testing import RAW_CASES, RTOL, make_model, model_step, raw_run, rel_dev, synthetic_grad


class Case(NamedTuple):
    """An optimizer, its reference, and the options each test uses."""

    ours: Any
    reference: Any
    closure: dict
    round_trip: dict
    mixed: dict
    half: dict
    buckets: dict


CASES = [
    Case(SGDP, adamp.SGDP,
         closure=dict(lr=0.1, momentum=0.9),
         round_trip=dict(lr=0.1, momentum=0.9, weight_decay=1e-3),
         mixed=dict(lr=0.1, momentum=0.9, weight_decay=1e-2),
         half=dict(lr=0.1, momentum=0.9, weight_decay=5e-2),
         buckets=dict(lr=0.1, momentum=0.9, weight_decay=5e-2)),
    Case(AdamP, adamp.AdamP,
         closure=dict(),
         round_trip=dict(lr=1e-2, weight_decay=1e-2),
         mixed=dict(lr=1e-2, weight_decay=1e-1),
         half=dict(lr=1e-2, weight_decay=0.5, eps=1e-3),  # eps=1e-8 underflows fp16
         buckets=dict(lr=1e-2, weight_decay=0.5)),
]
IDS = [case.ours.__name__ for case in CASES]


@pytest.mark.parametrize('case', CASES, ids=IDS)
def test_skips_params_without_grad_and_returns_closure_loss(case):
    a = torch.randn(4, 3, requires_grad=True)
    b = torch.randn(4, 3, requires_grad=True)
    opt = case.ours([a, b], **case.closure)
    b_before = b.detach().clone()

    def closure():
        opt.zero_grad()
        loss = (a * torch.arange(12.).view(4, 3)).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert isinstance(loss, torch.Tensor)
    assert torch.equal(b.detach(), b_before)
    assert b not in opt.state and a in opt.state


@pytest.mark.parametrize('case', CASES, ids=IDS)
def test_state_dict_round_trip(case):
    model = make_model()
    opt = case.ours(model.parameters(), **case.round_trip)
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 5, (4, ))
    model_step(model, opt, x, y)
    clone = copy.deepcopy(model)
    opt2 = case.ours(clone.parameters(), **case.round_trip)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    model_step(model, opt, x, y)
    model_step(clone, opt2, x, y)
    for p, q in zip(model.parameters(), clone.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize('case', CASES, ids=IDS)
@pytest.mark.parametrize('foreach', [False, True])
def test_missing_grads_and_mixed_dtypes_match_reference(foreach, case):
    """Parameters that skip steps (so their step counts differ), same shapes
    with different dtypes, and a 1-D parameter, in one group."""
    cfg = case.mixed
    gen = torch.Generator().manual_seed(7)
    init = [torch.randn(6, 20, generator=gen) for _ in range(3)]
    init += [torch.randn(6, generator=gen)]
    dtypes = [torch.float32, torch.float32, torch.float64, torch.float32]

    def run(opt_cls, **extra):
        params = [t.to(dt, copy=True).requires_grad_()
                  for t, dt in zip(init, dtypes)]
        opt = opt_cls(params, **cfg, **extra)
        g = torch.Generator().manual_seed(8)
        for step in range(12):
            for i, p in enumerate(params):
                noise = torch.randn(p.shape, generator=g).to(p.dtype)
                skip = i == 1 and step in (0, 1, 5)
                p.grad = None if skip else synthetic_grad(
                    p.detach(), noise, 'channel' if p.dim() > 1 else 'any')
            opt.step()
        return params

    for p_o, p_r in zip(run(case.ours, foreach=foreach), run(case.reference)):
        assert p_o.dtype == p_r.dtype
        assert rel_dev(p_o.detach(), p_r.detach()) <= RTOL


@pytest.mark.parametrize('case', CASES, ids=IDS)
@pytest.mark.parametrize('foreach', [False, True])
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_half_precision_params_match_reference(dtype, foreach, case):
    """The decay factor (e.g. 0.995) is applied in float32, as the
    reference's Python-float multiply does, not rounded to half first: the
    per-parameter path is bit-identical; the multi-tensor path's stacked
    half-precision reductions round differently, within a few ulps."""
    cfg = case.half
    ours, _, _ = raw_run(case.ours, dict(cfg, foreach=foreach), dtype, steps=10)
    ref, _, _ = raw_run(case.reference, cfg, dtype, steps=10)
    for p_o, p_r, (name, *_) in zip(ours, ref, RAW_CASES):
        assert p_o.dtype == dtype
        if foreach:
            tol = 8 * torch.finfo(dtype).eps
            assert rel_dev(p_o.detach().double(), p_r.detach().double()) <= tol
        else:
            assert torch.equal(p_o, p_r), name


@pytest.mark.parametrize('case', CASES, ids=IDS)
def test_foreach_batches_large_buckets(monkeypatch, case):
    """Same results when same-shaped weights are split into several
    stacked batches."""
    from mmwrs.optim import projection
    monkeypatch.setattr(projection, 'MAX_STACK_NUMEL', 150)
    cfg = case.buckets
    ours, _, _ = raw_run(case.ours, dict(cfg, foreach=True), torch.float64)
    ref, _, _ = raw_run(case.reference, cfg, torch.float64)
    for p_o, p_r, (name, *_) in zip(ours, ref, RAW_CASES):
        assert rel_dev(p_o.detach(), p_r.detach()) <= RTOL, name


@pytest.mark.parametrize('case', CASES, ids=IDS)
def test_foreach_default_is_per_parameter_on_cpu(monkeypatch, case):
    calls = []
    monkeypatch.setattr(case.ours, '_step_foreach',
                        staticmethod(lambda *a: calls.append('foreach')))
    p = torch.randn(3, 4, requires_grad=True)
    p.grad = torch.randn(3, 4)
    case.ours([p], lr=0.1).step()
    assert calls == []
    case.ours([p], lr=0.1, foreach=True).step()
    assert calls == ['foreach']
