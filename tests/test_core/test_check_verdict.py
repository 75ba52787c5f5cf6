"""The periodic check verifies the rescale itself, and all ranks reach one verdict (issue 19)."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from mmwrs.core import WeightRescaler
from mmwrs.core.check_verdict import max_target_deviation


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 4, 3), nn.BatchNorm2d(4))


def _rescaler(model, **kwargs):
    x = torch.randn(2, 3, 8, 8)
    return WeightRescaler.from_model(model, lambda: model(x), **kwargs)


def _step_(rescaler, factor=1.1):
    """What an optimizer update does to the norms between two rescales."""
    with torch.no_grad():
        for p in rescaler.params:
            p.mul_(factor)


def test_deviation_leaves_out_zero_and_nonfinite_units():
    norms = torch.tensor([1.0, 0.0, float('nan'), 1.5])
    assert float(max_target_deviation(norms, torch.ones(4))) == pytest.approx(0.5)
    assert float(max_target_deviation(torch.zeros(3), torch.ones(3))) == 0.0


def test_a_healthy_deferred_rescale_passes_its_self_check():
    rescaler = _rescaler(_model(), check_interval=3)
    for _ in range(7):
        _step_(rescaler)
        rescaler.rescale_()  # checks (and verifies the targets) at rescales 3 and 6
    for norms in rescaler.unit_norms().values():
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-6)


def test_a_rescale_that_did_nothing_is_an_error_at_the_next_check():
    """What an empty CUDA graph does (a replay on another device): nothing, silently."""
    rescaler = _rescaler(_model(), check_interval=2)
    rescaler.rescale_()
    rescaler.rescale_()  # healthy: checked, on target
    body = rescaler._rescale_body

    def replay_of_an_empty_graph(deferred):
        rescaler.checks.dirty = True  # it ran, as far as the caller can tell

    rescaler._rescale_body = replay_of_an_empty_graph
    _step_(rescaler)
    rescaler.rescale_()
    with pytest.raises(RuntimeError, match=r'did not reach its targets: max \|norm/target - 1\| '
                       r'of 0\.weight \(0\.1\), 3\.weight \(0\.1\)'):
        rescaler.rescale_()
    rescaler._rescale_body = body
    rescaler.rescale_()
    rescaler.rescale_()  # a working rescale passes again


def test_a_check_between_rescales_does_not_verify_targets():
    """A checkpoint save may come after an update that is not yet rescaled (interval > 1)."""
    rescaler = _rescaler(_model(), check_interval=4)
    rescaler.rescale_()
    _step_(rescaler)
    rescaler.check_()  # no error: norms are off target, legitimately


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _rank_worker(rank, world_size, port, results):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), OMP_NUM_THREADS='1')
    torch.distributed.init_process_group('gloo', rank=rank, world_size=world_size)
    try:
        rescaler = _rescaler(_model(), check_interval=2)
        rescaler.rescale_()
        if rank == 1:  # diverged here only
            with torch.no_grad():
                rescaler.params[0][0, 0, 0, 0] = float('nan')
        try:
            rescaler.rescale_()  # the periodic check, on both ranks
            results.put((rank, 'passed', ''))
        except (FloatingPointError, RuntimeError) as exc:
            results.put((rank, type(exc).__name__, str(exc)))
    finally:
        torch.distributed.destroy_process_group()


def test_every_rank_raises_when_one_rank_check_fails():
    """Without the agreement rank 0 passes and trains on into its next collective."""
    context = mp.get_context('spawn')
    results = context.SimpleQueue()
    mp.start_processes(_rank_worker, args=(2, _free_port(), results), nprocs=2,
                       start_method='spawn')
    outcome = {}
    while not results.empty():
        rank, kind, message = results.get()
        outcome[rank] = (kind, message)
    assert outcome[1][0] == 'FloatingPointError' and '0.weight holds non-finite' in outcome[1][1]
    assert outcome[0][0] == 'RuntimeError'
    assert 'the check failed on rank 1' in outcome[0][1]
