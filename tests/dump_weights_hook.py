"""DumpWeightsHook: a test-only hook that records what training did to the weights.

Registered only where a test needs it: in-process by the ``dump_weights_hook``
fixture (registered for the test, removed after it, as mmengine's own tests do),
and in the training subprocesses some tests launch by
``custom_imports=dict(imports=['mmwrs', 'register_dump_weights_hook'])``.
"""
import os.path as osp

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook


class DumpWeightsHook(Hook):
    """Saves every rank's weights after training (``rank{R}.pth``), and
    records unit norms of the WRS-controlled weights after every iteration."""

    priority = 'LOWEST'

    def __init__(self, out_dir=None):
        self.out_dir = out_dir
        self.norm_history = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        for hook in runner.hooks:
            if getattr(hook, 'rescaler', None) is not None:
                self.norm_history.append({k: v.clone() for k, v in
                                          hook.rescaler.unit_norms().items()})

    def after_train(self, runner):
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()},
                   osp.join(self.out_dir or runner.work_dir, f'rank{get_rank()}.pth'))
