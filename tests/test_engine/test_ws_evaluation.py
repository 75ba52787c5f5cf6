"""The ws overlay in evaluation runs (tools/test.py on a checkpoint).

The overlay converts the model at start-up; an evaluation run must convert it
the same way before the checkpoint loads. test_experiment_matrix.py checks
this on every ws config with annotated test data; here, test data without
annotations (a test set), where the hook traces the inference forward.
"""
import glob
import os.path as osp

import torch
from mmengine.runner import Runner
from torch.nn.modules.batchnorm import _BatchNorm

from mmwrs.launch import register_codebase

from conftest import SEG_DEMO


def _ws_hook(runner):
    return next(h for h in runner.hooks if type(h).__name__ == 'WeightStandardizationHook')


def test_ws_evaluation_without_annotations_converts_before_loading(make_cfg, tmp_path):
    from mmcv.cnn.bricks import ConvWS2d
    cfg = make_cfg(SEG_DEMO, ['ws'], iters=1, work_dir=tmp_path / 'train')
    register_codebase(cfg)
    trainer = Runner.from_cfg(cfg)
    trainer.train()
    trained = trainer.model.state_dict()
    checkpoint, = glob.glob(osp.join(str(tmp_path / 'train'), '*.pth'))

    cfg = make_cfg(SEG_DEMO, ['ws'], work_dir=tmp_path / 'test')
    # A test set: images only, results written instead of scored.
    cfg.test_dataloader.dataset.pipeline = [dict(type='LoadImageFromFile'),
                                            dict(type='PackSegInputs')]
    cfg.test_evaluator = dict(type='IoUMetric', format_only=True,
                              output_dir=str(tmp_path / 'results'))
    cfg.load_from = checkpoint
    tester = Runner.from_cfg(cfg)
    tester.test()
    assert glob.glob(osp.join(str(tmp_path / 'results'), '*.png'))
    # The inference forward reaches everything but the auxiliary head (used
    # by the training loss only), which stays conv + BN; the rest holds
    # exactly the trained weights.
    model = tester.model
    converted = [set(_ws_hook(r).converted) for r in (trainer, tester)]
    assert converted[0] - converted[1] == {'auxiliary_head.convs.0.conv'}
    assert any(isinstance(m, ConvWS2d) for m in model.modules())
    assert not any(isinstance(m, _BatchNorm) for name, m in model.named_modules()
                   if not name.startswith('auxiliary_head'))
    weights = model.state_dict()
    for name, value in trained.items():
        if not name.startswith('auxiliary_head'):
            assert torch.equal(weights[name], value), name
