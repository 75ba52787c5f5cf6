"""mmwrs.core.stats against values computed independently (float64, loops)."""
import math

import numpy as np
import pytest
import torch

from mmwrs.core import stats


def _weights(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(8, 3, 3, 3, generator=g), torch.randn(16, 8, 1, 1, generator=g),
            torch.randn(10, 5, generator=g), torch.randn(7, generator=g)]


def test_tensor_and_filter_norms_match_loops():
    weights = _weights()
    expected = [math.sqrt(sum(float(x) ** 2 for x in w.double().flatten())) for w in weights]
    assert stats.tensor_norms(weights).tolist() == pytest.approx(expected, rel=1e-6)
    assert stats.tensor_norms([]).numel() == 0
    w = weights[0]
    per_filter = [float(np.linalg.norm(w[o].double().numpy())) for o in range(w.shape[0])]
    assert stats.filter_norms(w).tolist() == pytest.approx(per_filter, rel=1e-6)
    # Transposed convolutions index output channels on dim 1.
    wt = torch.randn(4, 6, 3, 3, generator=torch.Generator().manual_seed(1))
    per_out = [float(np.linalg.norm(wt[:, o].double().numpy())) for o in range(6)]
    assert stats.filter_norms(wt, out_dim=1).tolist() == pytest.approx(per_out, rel=1e-6)
    summary = stats.filter_norm_stats(w)
    assert summary['mean'] == pytest.approx(np.mean(per_filter), rel=1e-6)
    assert summary['min'] == pytest.approx(min(per_filter), rel=1e-6)
    assert summary['max'] == pytest.approx(max(per_filter), rel=1e-6)
    assert summary['std'] == pytest.approx(np.std(per_filter), rel=1e-5)
    # The norm of the filter norms is the whole-tensor norm (the hook relies on it).
    from_filters = stats.tensor_norms([stats.filter_norms(w)]).item()
    assert from_filters == pytest.approx(expected[0], rel=1e-6)


def test_half_precision_is_measured_in_float32():
    w = torch.full((4096,), 100.0, dtype=torch.float16)  # sum of squares overflows fp16
    assert stats.tensor_norms([w]).item() == pytest.approx(6400.0, rel=1e-3)
    assert stats.angle_deg(w, w * 2) == 0.0


def test_effective_lr():
    assert stats.effective_lr(0.1, 2.0) == pytest.approx(0.025)
    assert stats.effective_lr(0.1, 0.0) == math.inf
    out = stats.effective_lr(torch.tensor([0.1, 0.01]), torch.tensor([2.0, 0.5]))
    assert out.tolist() == pytest.approx([0.025, 0.04])


def _rotated(a, b_dir, theta_deg):
    """``a`` turned by ``theta`` towards ``b_dir`` in their plane, norm 3x."""
    a = a.double()
    u = a / a.norm()
    v = b_dir.double() - (b_dir.double() * u).sum() * u
    v = v / v.norm()
    t = math.radians(theta_deg)
    return 3 * a.norm() * (math.cos(t) * u + math.sin(t) * v)


@pytest.mark.parametrize('theta', [0.0, 1e-3, 0.5, 30.0, 90.0, 150.0, 179.99, 180.0])
def test_angle_of_known_rotations(theta):
    g = torch.Generator().manual_seed(2)
    a, d = torch.randn(64, 3, 3, generator=g, dtype=torch.float64), \
        torch.randn(64, 3, 3, generator=g, dtype=torch.float64)
    b = _rotated(a, d, theta)
    assert stats.angle_deg(a, b) == pytest.approx(theta, abs=1e-9 + 1e-9 * theta)
    # float32 inputs: Kahan's formula keeps small angles accurate; acos of the
    # cosine would return 0 below ~0.02 degrees.
    got32 = stats.angle_deg(a.float(), b.float())
    assert got32 == pytest.approx(theta, abs=2e-5)


def test_angles_vectorised_identical_zero_and_errors():
    before = _weights(3)
    after = [w.clone() for w in before]
    after[1] = after[1] * 2.5 + 0.1 * torch.randn_like(after[1])
    after[3] = torch.zeros_like(after[3])
    got = stats.angles_deg(before, after)
    assert got[0].item() == 0.0 and got[2].item() == 0.0  # identical: exactly 0
    a, b = before[1].double().flatten(), after[1].double().flatten()
    reference = math.degrees(math.acos(float((a @ b) / (a.norm() * b.norm()))))
    assert got[1].item() == pytest.approx(reference, rel=1e-4)
    assert math.isnan(got[3].item())  # a zero tensor has no direction
    assert stats.angles_deg([], []).numel() == 0
    with pytest.raises(ValueError, match='shapes differ'):
        stats.angles_deg([torch.ones(3)], [torch.ones(4)])
    with pytest.raises(ValueError, match='2 tensors before but 1 after'):
        stats.angles_deg([torch.ones(3)] * 2, [torch.ones(3)])


def test_grad_norms_and_summary():
    params = [torch.nn.Parameter(w) for w in _weights(4)]
    params[0].grad = torch.full_like(params[0], 2.0)
    params[2].grad = torch.ones_like(params[2])
    got = stats.grad_norms(params)
    assert got[0].item() == pytest.approx(2.0 * math.sqrt(params[0].numel()))
    assert got[2].item() == pytest.approx(math.sqrt(50))
    assert math.isnan(got[1].item()) and math.isnan(got[3].item())
    summary = stats.summarize(got)
    assert summary['min'] == pytest.approx(math.sqrt(50))
    assert summary['mean'] == pytest.approx((got[0].item() + got[2].item()) / 2)
    assert stats.summarize(torch.tensor([math.nan])) is None


@pytest.mark.parametrize('step', [1e-6, 1e-4, 1e-2])
def test_angle_of_a_small_float32_update_is_accurate(step):
    g = torch.Generator().manual_seed(5)
    a = torch.randn(256, 64, 3, 3, generator=g)
    b = a + step * torch.randn(a.shape, generator=g)  # one small SGD-like update
    # Reference: Kahan's unit-vector formula in float64 (acos of a float64
    # cosine is off by percents at 1e-6 rad: the cosine's rounding is ~1e-14).

    def reference(a, b):
        ua, ub = a.double() / a.double().norm(), b.double() / b.double().norm()
        return math.degrees(2 * math.atan2((ua - ub).norm(), (ua + ub).norm()))
    assert stats.angle_deg(a, b) == pytest.approx(reference(a, b), rel=1e-5)
    # After a rescale (WRS: b scaled by 0.7) the update d = b - a is mostly
    # radial; the error stays at float32 rounding of ||d||, not of the angle.
    rescaled = b * 0.7
    d_rel = ((rescaled - a).double().norm() / a.double().norm()).item()
    assert stats.angle_deg(a, rescaled) == pytest.approx(
        reference(a, rescaled), rel=1e-5, abs=1e-6 * math.degrees(d_rel))
