"""What the SGDP and AdamP tests share: a small conv+BN model, raw tensors whose
gradients hit each branch of the projection, and the comparison with the
reference (``adamp`` 0.3.0)."""
import copy
import math

import torch
from torch import nn
from torch.nn import functional as F

STEPS = 25
RTOL = 1e-6


def rel_dev(ours, ref):
    """max |ours - ref| / max |ref| (per tensor)."""
    scale = ref.abs().max().clamp_min(1e-30)
    return ((ours - ref).abs().max() / scale).item()


def make_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
        nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16),
        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))


def batches(steps, seed):
    """``steps`` random ``(x, y)`` batches for :func:`make_model`."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        yield (torch.randn(8, 3, 8, 8, generator=gen),
               torch.randint(0, 5, (8, ), generator=gen))


def channel_cos(delta_w, w):
    """The largest |cos| between a row of ``delta_w`` and the row of ``w``."""
    d, wc = delta_w.reshape(w.shape[0], -1), w.reshape(w.shape[0], -1)
    return ((d * wc).sum(1) / (d.norm(dim=1) * wc.norm(dim=1))).abs().max()


def model_step(model, opt, x, y):
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()


def train_with_reference(opt_cls, ref_cls, cfg, foreach, steps=STEPS):
    """Train two copies of :func:`make_model`, with ``opt_cls`` and with its
    reference; returns the untrained model, both models and both optimizers."""
    model = make_model()
    ours, ref = copy.deepcopy(model), copy.deepcopy(model)
    opt_ours = opt_cls(ours.parameters(), foreach=foreach, **cfg)
    opt_ref = ref_cls(ref.parameters(), **cfg)
    for x, y in batches(steps, seed=3):
        model_step(ours, opt_ours, x, y)
        model_step(ref, opt_ref, x, y)
    return model, ours, ref, opt_ours, opt_ref


def branch_of(w, g, delta=0.1):
    """Independent classification of the reference's projection branch."""
    wc, gc = w.reshape(w.shape[0], -1), g.reshape(w.shape[0], -1)
    cos_c = ((wc * gc).sum(1) / (wc.norm(dim=1) * gc.norm(dim=1))).abs()
    if cos_c.max() < delta / math.sqrt(wc.shape[1]):
        return 'channel'
    cos_l = (w * g).sum().abs() / (w.norm() * g.norm())
    if cos_l < delta / math.sqrt(w.numel()):
        return 'layer'
    return 'none'


def synthetic_grad(w, noise, mode):
    """A gradient for ``w`` that hits a given projection branch.

    ``channel``: each row orthogonal to w's row; ``layer``: orthogonal to w
    as a whole only; ``none``: with a large radial part; ``any``: noise.
    """
    if mode == 'channel':
        wc, nc = w.reshape(w.shape[0], -1), noise.reshape(w.shape[0], -1)
        coef = (wc * nc).sum(1, keepdim=True) / (wc * wc).sum(1, keepdim=True)
        return (nc - coef * wc).reshape(w.shape)
    if mode == 'layer':
        return noise - (w * noise).sum() / (w * w).sum() * w
    if mode == 'none':
        return noise + w * (noise.norm() / w.norm())
    return noise


# (name, shape, gradient mode, expected branch or None for 1-D)
RAW_CASES = [
    ('chan2d', (6, 20), 'channel', 'channel'),
    ('chan4d', (8, 4, 3, 3), 'channel', 'channel'),
    ('layer2d', (6, 20), 'layer', 'layer'),
    ('layer4d', (8, 4, 3, 3), 'layer', 'layer'),
    ('none2d', (6, 20), 'none', 'none'),
    ('none4d', (8, 4, 3, 3), 'none', 'none'),
    ('bias', (8, ), 'any', None),
]


def make_raw_params(dtype):
    gen = torch.Generator().manual_seed(1)
    return [
        torch.randn(shape, generator=gen, dtype=dtype).requires_grad_()
        for _, shape, _, _ in RAW_CASES
    ]


def raw_run(opt_cls, kwargs, dtype, steps=STEPS, check_branches=False):
    """Steps ``opt_cls`` on RAW_CASES; returns params, optimizer, grads."""
    params = make_raw_params(dtype)
    opt = opt_cls(params, **kwargs)
    gen = torch.Generator().manual_seed(2)
    history = []
    for _ in range(steps):
        for p, (_, shape, mode, expected) in zip(params, RAW_CASES):
            noise = torch.randn(shape, generator=gen, dtype=dtype)
            p.grad = synthetic_grad(p.detach(), noise, mode)
            if check_branches and expected is not None:
                assert branch_of(p.detach(), p.grad) == expected
        history.append([p.grad.clone() for p in params])
        opt.step()
    return params, opt, history


def cfg_id(cfg):
    return ','.join(f'{k}={v}' for k, v in cfg.items())
