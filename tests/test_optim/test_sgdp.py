"""SGDP against the reference implementation (``adamp`` 0.3.0)."""
import copy

import adamp
import pytest
import torch

from mmwrs.optim import SGDP

from optim_testing import (RAW_CASES, RTOL, batches, cfg_id, channel_cos, make_model, model_step,
                           raw_run, rel_dev, synthetic_grad, train_with_reference)

SGDP_CONFIGS = [
    dict(lr=0.1, momentum=0.9, nesterov=False, weight_decay=0),
    dict(lr=0.1, momentum=0.9, nesterov=False, weight_decay=1e-2),
    dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0),
    dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2),
    dict(lr=0.1, momentum=0.0, nesterov=False, weight_decay=0),
    dict(lr=0.1, momentum=0.0, nesterov=False, weight_decay=1e-2),
    dict(lr=0.1, momentum=0.0, nesterov=True, weight_decay=1e-2),
    dict(lr=0.05, momentum=0.8, dampening=0.2, weight_decay=5e-2,
         wd_ratio=0.3, delta=0.2),
]


# ---------------------------------------------------------------------------
# Agreement with the reference
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('foreach', [False, True])
@pytest.mark.parametrize('cfg', SGDP_CONFIGS, ids=cfg_id)
def test_matches_reference_on_conv_bn_model(cfg, foreach):
    model, ours, ref, opt_ours, opt_ref = train_with_reference(SGDP, adamp.SGDP, cfg, foreach)
    moved = 0
    for (name, po), (_, pr), p0 in zip(ours.named_parameters(),
                                       ref.named_parameters(),
                                       model.parameters()):
        assert rel_dev(po.detach(), pr.detach()) <= RTOL, name
        moved += int(not torch.equal(pr, p0))
    assert moved == len(list(model.parameters()))


@pytest.mark.parametrize('foreach', [False, True])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('cfg', SGDP_CONFIGS, ids=cfg_id)
def test_matches_reference_on_raw_tensors(cfg, dtype, foreach):
    # foreach=True stacks the three (6, 20) and the three (8, 4, 3, 3)
    # weights, each trio with a channel-wise, a layer-wise and a
    # non-projected member, so one batch takes all three branches.
    ours, opt_ours, _ = raw_run(SGDP, dict(cfg, foreach=foreach), dtype,
                                check_branches=True)
    ref, opt_ref, _ = raw_run(adamp.SGDP, cfg, dtype)
    for p_o, p_r, (name, *_) in zip(ours, ref, RAW_CASES):
        assert rel_dev(p_o.detach(), p_r.detach()) <= RTOL, name
        # Momentum buffers agree too (the reference projects its buffer in
        # place when nesterov=False; so do we by default).
        buf_o = opt_ours.state[p_o]['momentum']
        buf_r = opt_ref.state[p_r]['momentum']
        assert rel_dev(buf_o, buf_r) <= RTOL, name


def test_wd_ratio_and_decay_form():
    """One step from zero momentum, checked against the formulas."""
    lr, wd, mom, ratio = 0.1, 0.05, 0.9, 0.3
    gen = torch.Generator().manual_seed(4)
    w = torch.randn(6, 20, generator=gen, dtype=torch.float64)
    b = torch.randn(6, generator=gen, dtype=torch.float64)
    g_w = synthetic_grad(w, torch.randn(6, 20, generator=gen,
                                        dtype=torch.float64), 'channel')
    g_b = torch.randn(6, generator=gen, dtype=torch.float64)
    pw, pb = w.clone().requires_grad_(), b.clone().requires_grad_()
    pw.grad, pb.grad = g_w.clone(), g_b.clone()
    SGDP([pw, pb], lr=lr, momentum=mom, weight_decay=wd,
         wd_ratio=ratio).step()
    w_hat = w / (w.norm(dim=1, keepdim=True) + 1e-8)
    d = g_w - w_hat * (w_hat * g_w).sum(1, keepdim=True)
    exp_w = w * (1 - lr * wd * ratio / (1 - mom)) - lr * d
    exp_b = b * (1 - lr * wd / (1 - mom)) - lr * g_b
    torch.testing.assert_close(pw.detach(), exp_w, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(pb.detach(), exp_b, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------
# The projection is really exercised
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('foreach', [False, True])
@pytest.mark.parametrize('nesterov', [False, True])
def test_update_of_scale_invariant_weight_is_orthogonal(nesterov, foreach):
    """With momentum, the buffer holds gradients of earlier weights and has a
    radial part; plain SGD keeps it, SGDP removes it from the update."""
    model = make_model()
    ours, plain = copy.deepcopy(model), copy.deepcopy(model)
    opt = SGDP(ours.parameters(), lr=0.2, momentum=0.9, nesterov=nesterov,
               foreach=foreach)
    opt_plain = torch.optim.SGD(plain.parameters(), lr=0.2, momentum=0.9,
                                nesterov=nesterov)
    for step, (x, y) in enumerate(batches(8, seed=5)):
        w_before = ours[0].weight.detach().clone()
        wp_before = plain[0].weight.detach().clone()
        model_step(ours, opt, x, y)
        model_step(plain, opt_plain, x, y)
        if step >= 3:
            cos_ours = channel_cos(ours[0].weight.detach() - w_before,
                                   w_before)
            cos_plain = channel_cos(plain[0].weight.detach() - wp_before,
                                    wp_before)
            assert cos_ours < 1e-4
            assert cos_plain > 1e-2


@pytest.mark.parametrize('foreach', [False, True])
def test_buffer_not_projected_when_asked(foreach):
    """project_buffer=False keeps the momentum buffer as the plain momentum
    of the raw gradients, and then deviates from the reference."""
    cfg = dict(lr=0.1, momentum=0.9)
    ours, opt, history = raw_run(
        SGDP, dict(cfg, project_buffer=False, foreach=foreach), torch.float64,
        steps=5)
    ref, opt_ref, _ = raw_run(adamp.SGDP, cfg, torch.float64, steps=5)
    for i, (name, _, _, expected) in enumerate(RAW_CASES):
        buf = torch.zeros_like(ours[i])
        for grads in history:
            buf = 0.9 * buf + grads[i]
        torch.testing.assert_close(opt.state[ours[i]]['momentum'], buf,
                                   rtol=1e-12, atol=1e-12)
        if expected in ('channel', 'layer'):
            # the reference's buffer is projected, so the runs deviate
            assert not torch.allclose(opt_ref.state[ref[i]]['momentum'],
                                      buf), name
            assert rel_dev(ours[i].detach(), ref[i].detach()) > 1e-6, name


# ---------------------------------------------------------------------------
# Argument validation
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('kwargs, message', [
    (dict(lr=-1), 'lr must be >= 0, got -1'),
    (dict(lr=float('nan')), 'lr must be finite, got nan'),
    (dict(lr='0.1'), "lr must be a real number, got '0.1'"),
    (dict(momentum=1.0), r'momentum must be in \[0, 1\), got 1.0'),
    (dict(momentum=-0.1), r'momentum must be in \[0, 1\), got -0.1'),
    (dict(dampening=1.5), r'dampening must be in \[0, 1\], got 1.5'),
    (dict(weight_decay=-1e-4), 'weight_decay must be >= 0, got -0.0001'),
    (dict(eps=-1e-8), 'eps must be >= 0, got -1e-08'),
    (dict(delta=-1), 'delta must be > 0, got -1'),
    (dict(delta=0), 'delta must be > 0, got 0'),
    (dict(wd_ratio=-0.5), 'wd_ratio must be >= 0, got -0.5'),
    (dict(nesterov='yes'), "nesterov must be True or False, got 'yes'"),
    (dict(project_buffer=1), 'project_buffer must be True or False, got 1'),
    (dict(foreach='yes'), "foreach must be True, False or None, got 'yes'"),
])
def test_invalid_arguments(kwargs, message):
    kwargs = dict(dict(lr=0.1), **kwargs)
    with pytest.raises(ValueError, match=message):
        SGDP([torch.zeros(2, 2, requires_grad=True)], **kwargs)


def test_invalid_param_group_override():
    good = torch.zeros(2, 2, requires_grad=True)
    bad = torch.zeros(2, 2, requires_grad=True)
    with pytest.raises(ValueError, match='delta must be > 0, got -1'):
        SGDP([{'params': [good]}, {'params': [bad], 'delta': -1}], lr=0.1)
    opt = SGDP([good], lr=0.1)
    with pytest.raises(ValueError, match=r'momentum must be in \[0, 1\)'):
        opt.add_param_group({'params': [bad], 'momentum': 1})
    assert len(opt.param_groups) == 1


def test_lr_is_required():
    with pytest.raises(TypeError):
        SGDP([torch.zeros(2, requires_grad=True)])
