"""The two forms of the SGDP/AdamP projection agree: the reference's branches
(used on CPU) and the branch-free, sync-free form (used on accelerators and by
the multi-tensor path)."""
import pytest
import torch

from mmwrs.optim.projection import project_branching, project_stacked

from optim_testing import RAW_CASES, branch_of, synthetic_grad


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('name, shape, mode, expected',
                         [c for c in RAW_CASES if c[3] is not None],
                         ids=[c[0] for c in RAW_CASES if c[3] is not None])
def test_branching_form_equals_branch_free_form(name, shape, mode, expected, dtype):
    gen = torch.Generator().manual_seed(7)
    w = torch.randn(shape, generator=gen, dtype=dtype)
    g = synthetic_grad(w, torch.randn(shape, generator=gen, dtype=dtype), mode)
    u = torch.randn(shape, generator=gen, dtype=dtype)
    assert branch_of(w, g) == expected
    out, projected = project_branching(w, g, u, 0.1, 1e-8)
    out_free, projected_free = project_stacked(w[None], g[None], u[None], 0.1, 1e-8)
    assert bool(projected) == bool(projected_free[0]) == (expected != 'none')
    assert torch.equal(out, out_free[0])
    assert out is not u
    # In place (what the optimizers do with temporaries): the same bits, in u.
    target = u.clone()
    out_inplace, _ = project_branching(w, g, target, 0.1, 1e-8, inplace=True)
    assert out_inplace is target and torch.equal(target, out)
