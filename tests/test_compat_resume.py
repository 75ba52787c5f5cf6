"""Resuming under another regularizer stops with a clear message (mmwrs.compat.resume_guard)."""
import pytest
import torch
from mmengine.runner import Runner

from mmwrs.compat.resume_guard import check_same_regularizer, regularizers_in
from mmwrs.launch import register_codebase

from conftest import SEG_DEMO


def _train(cfg):
    register_codebase(cfg)
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


def test_regularizers_named_in_a_config():
    assert regularizers_in("custom_hooks = [dict(type='WRSHook', granularity='filter')]") \
        == {'WRSHook'}
    assert regularizers_in("{'custom_hooks': [{'type': 'NormMonitorHook'}]}") == frozenset()
    assert regularizers_in("optim_wrapper=dict(type='AmpWRSOptimWrapper')") \
        == regularizers_in("optim_wrapper=dict(type='WRSOptimWrapper')")
    check_same_regularizer("type='WRSHook'", "{'type': 'WRSHook'}", 'x.pth')  # no error
    with pytest.raises(RuntimeError, match=r"trained with plain weight decay .* uses WRSHook"):
        check_same_regularizer('', "{'type': 'WRSHook'}", 'x.pth')


@pytest.mark.parametrize('first, then', [('wrs', 'wd'), ('wd', 'wrs')])
def test_resume_under_another_regularizer_is_refused(make_cfg, tmp_path, first, then):
    work_dir = tmp_path / 'run'
    _train(make_cfg(SEG_DEMO, [first], iters=2, work_dir=work_dir))
    checkpoint = torch.load(work_dir / 'iter_2.pth', map_location='cpu', weights_only=False)
    assert ('wrs' in checkpoint) == (first == 'wrs')
    again = make_cfg(SEG_DEMO, [then], iters=3, work_dir=work_dir)
    again.resume = True
    register_codebase(again)
    runner = Runner.from_cfg(again)
    names = {'wrs': 'WRSHook', 'wd': 'plain weight decay'}
    with pytest.raises(RuntimeError, match=(
            rf"cannot resume .*iter_2.pth: it was trained with {names[first]}.*, but this "
            rf"run uses {names[then]}.*load_from=.*resume=False")):
        runner.train()
    # Refused right after the checkpoint was read: nothing resumed, no step taken.
    assert runner.iter == 0
    # Starting anew from the weights (load_from, no resume) is how to switch.
    fresh = make_cfg(SEG_DEMO, [then], iters=1, work_dir=tmp_path / 'fresh',
                     load_from=str(work_dir / 'iter_2.pth'))
    assert _train(fresh).iter == 1
