"""FSDP, DeepSpeed and apex O2 keep the weights where the rescale cannot reach: error at start.

The FSDP cases wrap real modules with torch's FSDP (both APIs) in a one-process
gloo group on the CPU; apex and DeepSpeed are not installed here, so their
mmengine wrapper classes are tested as objects (the check reads the class and
``opt_level`` only).
"""
import os
import socket

import pytest
import torch
import torch.distributed as dist
from mmengine.runner import Runner
from torch import nn

from mmwrs.engine.constructors import WRSOptimWrapperConstructor
from mmwrs.engine.unsupported import check_supported_setup, unsupported_setup
from mmwrs.launch import register_codebase

from conftest import SEG_DEMO


@pytest.fixture
def gloo_group():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=0, world_size=1)
    yield torch.distributed.device_mesh.DeviceMesh('cpu', [0])
    dist.destroy_process_group()


def _conv_bn():
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())


def test_fsdp_wrapped_model_is_refused_by_the_constructor(gloo_group):
    from torch.distributed.fsdp import FullyShardedDataParallel
    model = FullyShardedDataParallel(_conv_bn(), device_id=torch.device('cpu'))
    constructor = WRSOptimWrapperConstructor(dict(optimizer=dict(type='SGD', lr=0.1)))
    with pytest.raises(RuntimeError, match=r'WRSOptimWrapperConstructor: FSDP '
                       r'\(FullyShardedDataParallel wraps FullyShardedDataParallel\) is not '
                       r'supported.*Use DDP'):
        constructor(model)


def test_fully_shard_and_dtensor_parameters_are_named(gloo_group):
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import Shard, distribute_tensor
    sharded = nn.Sequential(nn.Linear(3, 4))
    fully_shard(sharded, mesh=gloo_group)
    assert unsupported_setup(sharded).startswith('FSDP (fully_shard)')
    plain = nn.Linear(3, 8)
    plain.weight = nn.Parameter(distribute_tensor(torch.randn(8, 3), gloo_group, [Shard(0)]))
    assert unsupported_setup(plain) == ('sharded DTensor parameters (FSDP fully_shard / '
                                        'tensor parallel: weight)')


def test_master_weight_wrappers_are_refused_and_apex_o1_is_not():
    from mmengine.optim import ApexOptimWrapper, OptimWrapper
    apex = object.__new__(ApexOptimWrapper)  # apex itself is not installed here
    apex.opt_level = 'O2'
    with pytest.raises(RuntimeError, match=r"WRSHook: apex AMP master weights "
                       r"\(ApexOptimWrapper, opt_level='O2'\) is not supported"):
        check_supported_setup(_conv_bn(), apex, 'WRSHook')
    apex.opt_level = 'O1'
    assert unsupported_setup(_conv_bn(), apex) is None
    plain = OptimWrapper(torch.optim.SGD(_conv_bn().parameters(), lr=0.1))
    assert unsupported_setup(_conv_bn(), plain) is None


def test_the_hook_refuses_a_runner_whose_model_holds_fsdp(make_cfg, gloo_group):
    from torch.distributed.fsdp import FullyShardedDataParallel
    cfg = make_cfg(SEG_DEMO, ['wrs'], iters=1)
    register_codebase(cfg)
    runner = Runner.from_cfg(cfg)
    runner.model.backbone = FullyShardedDataParallel(runner.model.backbone,
                                                     device_id=torch.device('cpu'))
    with pytest.raises(RuntimeError, match=r'WRSHook: FSDP .* is not supported'):
        runner.train()
