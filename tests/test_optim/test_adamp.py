"""AdamP against the reference implementation (``adamp`` 0.3.0)."""
import copy

import adamp
import pytest
import torch

from mmwrs.optim import AdamP, project_radial

from optim_testing import (RAW_CASES, RTOL, STEPS, batches, cfg_id, channel_cos, make_model,
                           model_step, raw_run, rel_dev, synthetic_grad, train_with_reference)

ADAMP_CONFIGS = [
    dict(lr=1e-2, nesterov=False, weight_decay=0),
    dict(lr=1e-2, nesterov=False, weight_decay=1e-1),
    dict(lr=1e-2, nesterov=True, weight_decay=0),
    dict(lr=1e-2, nesterov=True, weight_decay=1e-1),
    dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=5e-2,
         delta=0.2, wd_ratio=0.5),
]


# ---------------------------------------------------------------------------
# Agreement with the reference
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('foreach', [False, True])
@pytest.mark.parametrize('cfg', ADAMP_CONFIGS, ids=cfg_id)
def test_matches_reference_on_conv_bn_model(cfg, foreach):
    model, ours, ref, opt_ours, opt_ref = train_with_reference(AdamP, adamp.AdamP, cfg, foreach)
    for (name, po), pr, p0 in zip(ours.named_parameters(), ref.parameters(),
                                  model.parameters()):
        assert rel_dev(po.detach(), pr.detach()) <= RTOL, name
        assert not torch.equal(pr, p0), name
        so, sr = opt_ours.state[po], opt_ref.state[pr]
        assert so['step'] == sr['step'] == STEPS
        assert rel_dev(so['exp_avg'], sr['exp_avg']) <= RTOL, name
        assert rel_dev(so['exp_avg_sq'], sr['exp_avg_sq']) <= RTOL, name


@pytest.mark.parametrize('foreach', [False, True])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('cfg', ADAMP_CONFIGS, ids=cfg_id)
def test_matches_reference_on_raw_tensors(cfg, dtype, foreach):
    # foreach=True stacks the three (6, 20) and the three (8, 4, 3, 3)
    # weights, each trio with a channel-wise, a layer-wise and a
    # non-projected member, so one batch takes all three branches.
    ours, _, _ = raw_run(AdamP, dict(cfg, foreach=foreach), dtype,
                         check_branches=True)
    ref, _, _ = raw_run(adamp.AdamP, cfg, dtype)
    for p_o, p_r, (name, *_) in zip(ours, ref, RAW_CASES):
        assert rel_dev(p_o.detach(), p_r.detach()) <= RTOL, name


def test_wd_ratio_applies_only_to_projected_params():
    """First step, checked against the formulas (float64)."""
    lr, wd, ratio, eps = 1e-2, 0.2, 0.3, 1e-8
    gen = torch.Generator().manual_seed(4)
    w = torch.randn(6, 20, generator=gen, dtype=torch.float64)
    v = torch.randn(6, 20, generator=gen, dtype=torch.float64)
    g_w = synthetic_grad(w, torch.randn(6, 20, generator=gen,
                                        dtype=torch.float64), 'channel')
    g_v = synthetic_grad(v, torch.randn(6, 20, generator=gen,
                                        dtype=torch.float64), 'none')
    pw, pv = w.clone().requires_grad_(), v.clone().requires_grad_()
    pw.grad, pv.grad = g_w.clone(), g_v.clone()
    AdamP([pw, pv], lr=lr, weight_decay=wd, wd_ratio=ratio, eps=eps).step()
    # step 1: m = 0.1 g, sqrt(v)/sqrt(bc2) = |g|, step size = lr / 0.1
    u_w = 0.1 * g_w / (g_w.abs() + eps)
    u_v = 0.1 * g_v / (g_v.abs() + eps)
    w_hat = w / (w.norm(dim=1, keepdim=True) + eps)
    u_w = u_w - w_hat * (w_hat * u_w).sum(1, keepdim=True)
    exp_w = w * (1 - lr * wd * ratio) - lr / 0.1 * u_w
    exp_v = v * (1 - lr * wd) - lr / 0.1 * u_v
    torch.testing.assert_close(pw.detach(), exp_w, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(pv.detach(), exp_v, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------
# The projection is really exercised
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('foreach', [False, True])
@pytest.mark.parametrize('nesterov', [False, True])
def test_update_of_scale_invariant_weight_is_orthogonal(nesterov, foreach):
    """Adam's elementwise scaling gives the update of a scale-invariant
    weight a radial part (see plain Adam); AdamP removes it."""
    model = make_model()
    ours, plain = copy.deepcopy(model), copy.deepcopy(model)
    opt = AdamP(ours.parameters(), lr=1e-2, nesterov=nesterov,
                foreach=foreach)
    opt_plain = torch.optim.Adam(plain.parameters(), lr=1e-2)
    for x, y in batches(5, seed=5):
        snap = [m.weight.detach().clone() for m in (ours[0], ours[3])]
        snap_plain = [m.weight.detach().clone() for m in (plain[0], plain[3])]
        model_step(ours, opt, x, y)
        model_step(plain, opt_plain, x, y)
        for m, m_plain, w0, wp0 in zip((ours[0], ours[3]),
                                       (plain[0], plain[3]), snap,
                                       snap_plain):
            assert channel_cos(m.weight.detach() - w0, w0) < 1e-4
            assert channel_cos(m_plain.weight.detach() - wp0, wp0) > 1e-2
    # the (non-invariant) classifier weight is left alone: not orthogonal
    w0 = ours[8].weight.detach().clone()
    model_step(ours, opt, x, y)
    assert channel_cos(ours[8].weight.detach() - w0, w0) > 1e-2


def test_project_radial_branches():
    gen = torch.Generator().manual_seed(6)
    w = torch.randn(5, 3, 2, 2, generator=gen, dtype=torch.float64)
    u = torch.randn(5, 3, 2, 2, generator=gen, dtype=torch.float64)
    u0 = u.clone()
    for mode, want in (('channel', 'channel'), ('layer', 'layer'),
                       ('none', 'none')):
        g = synthetic_grad(w, torch.randn(w.shape, generator=gen,
                                          dtype=torch.float64), mode)
        out, projected = project_radial(w, g, u, delta=0.1, eps=1e-8)
        assert bool(projected) == (want != 'none')
        rows = 5 if want == 'channel' else 1
        radial = (out * w).reshape(rows, -1).sum(1)
        if want == 'none':
            assert torch.equal(out, u)
        else:
            # not exactly 0: the reference normalises by ||w|| + eps
            assert radial.abs().max() < 1e-6
            assert (u * w).reshape(rows, -1).sum(1).abs().max() > 1e-3
    assert torch.equal(u, u0)  # the input update is not modified in place


# ---------------------------------------------------------------------------
# Argument validation
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('kwargs, message', [
    (dict(lr=-1e-3), 'lr must be >= 0, got -0.001'),
    (dict(betas=(1.0, 0.999)), r'betas\[0\] must be in \[0, 1\), got 1.0'),
    (dict(betas=(0.9, -0.1)), r'betas\[1\] must be in \[0, 1\), got -0.1'),
    (dict(betas=0.9), r'betas must be a pair \(beta1, beta2\), got 0.9'),
    (dict(eps=-1.0), 'eps must be >= 0, got -1.0'),
    (dict(weight_decay=-1), 'weight_decay must be >= 0, got -1'),
    (dict(delta=-1), 'delta must be > 0, got -1'),
    (dict(wd_ratio=-0.1), 'wd_ratio must be >= 0, got -0.1'),
    (dict(nesterov=None), 'nesterov must be True or False, got None'),
    (dict(delta=float('inf')), 'delta must be finite, got inf'),
    (dict(foreach=1), 'foreach must be True, False or None, got 1'),
])
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AdamP([torch.zeros(2, 2, requires_grad=True)], **kwargs)


def test_invalid_param_group_override():
    good = torch.zeros(2, 2, requires_grad=True)
    bad = torch.zeros(2, 2, requires_grad=True)
    with pytest.raises(ValueError, match='wd_ratio must be >= 0, got -2'):
        AdamP([{'params': [good]}, {'params': [bad], 'wd_ratio': -2}])
