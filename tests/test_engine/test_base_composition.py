"""The README's WRS recipe over stock configs that have their own hooks and constructor.

RTMDet-tiny registers EMAHook and PipelineSwitchHook in ``custom_hooks``; BEiT's
UPerNet builds its optimizer with mmseg's ``LayerDecayOptimizerConstructor``.
The recipe must keep both (mmengine replaces a base's lists and a base's
``constructor`` key), composed and when trained with mmdet's / mmseg's own
``train.py``.
"""
import importlib.util
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner, get_priority

from conftest import DET_DEMO, PYTHONPATH, REPO

RTMDET = 'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py'
BEIT = 'mmseg::beit/beit-base_upernet_8xb2-160k_ade20k-640x640.py'
# RTMDet-tiny at 64x64, two iterations of one epoch, no pretrained backbone.
RTMDET_SMALL = {
    'model.backbone.init_cfg': None,
    'train_dataloader.batch_size': 2, 'train_dataloader.dataset.indices': 4,
    'train_dataloader.num_workers': 0, 'train_dataloader.persistent_workers': False,
    'val_dataloader.num_workers': 0, 'val_dataloader.persistent_workers': False,
    'train_cfg.max_epochs': 1,
    'train_dataloader.dataset.pipeline.2.img_scale': (64, 64),  # CachedMosaic
    'train_dataloader.dataset.pipeline.3.scale': (128, 128),  # RandomResize
    'train_dataloader.dataset.pipeline.4.crop_size': (64, 64),  # RandomCrop
    'train_dataloader.dataset.pipeline.7.size': (64, 64),  # Pad
    'train_dataloader.dataset.pipeline.8.img_scale': (64, 64),  # CachedMixUp
}
# BEiT with 4 narrow layers on 32x32 crops (its position bias is sized by
# img_size), the layer decay over those 4 layers, two iterations.
BEIT_SMALL = {
    'model.pretrained': None, 'model.backbone.img_size': (32, 32),
    'model.backbone.embed_dims': 64, 'model.backbone.num_heads': 2,
    'model.backbone.num_layers': 4, 'model.backbone.out_indices': (0, 1, 2, 3),
    'model.neck.embed_dim': 64, 'model.decode_head.in_channels': [64, 64, 64, 64],
    'model.decode_head.channels': 32, 'model.auxiliary_head.in_channels': 64,
    'model.auxiliary_head.channels': 16, 'model.data_preprocessor.size': (32, 32),
    'optim_wrapper.paramwise_cfg.num_layers': 4,
    'train_dataloader.batch_size': 2, 'train_dataloader.num_workers': 0,
    'train_dataloader.persistent_workers': False, 'val_dataloader.num_workers': 0,
    'val_dataloader.persistent_workers': False,
    'train_cfg.max_iters': 2,
    'train_dataloader.dataset.pipeline.2.scale': (128, 32),  # RandomResize
    'train_dataloader.dataset.pipeline.3.crop_size': (32, 32),  # RandomCrop
    # mmengine validates after the last iteration: one image, whole, at 32x32.
    'val_dataloader.dataset.indices': 1, 'model.test_cfg.mode': 'whole',
    'val_dataloader.dataset.pipeline.1.scale': (32, 32),  # Resize (square images)
}


def readme_recipe(base: str) -> str:
    """The README's first WRS config, over ``base`` instead of Faster R-CNN."""
    with open(osp.join(REPO, 'README.md')) as f:
        block = re.search(r'```python\n(# my_faster_rcnn_wrs\.py\n.*?)```', f.read(), re.S)
    text = block.group(1)
    stock = re.search(r"_base_ = \['([^']+)'\]", text).group(1)
    return text.replace(stock, base)


def _write(tmp_path, text, name='my_wrs.py'):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _runner(path, tmp_path, **options):
    cfg = Config.fromfile(path)
    cfg.merge_from_dict(dict(options, work_dir=str(tmp_path / 'work_dir')))
    return Runner.from_cfg(cfg)


def test_readme_recipe_keeps_rtmdet_hooks_at_their_priorities(tmp_path):
    runner = _runner(_write(tmp_path, readme_recipe(RTMDET)), tmp_path,
                     **{'model.backbone.init_cfg': None})
    priorities = {type(h).__name__: get_priority(h.priority) for h in runner.hooks}
    assert {'EMAHook', 'PipelineSwitchHook', 'WRSHook'} <= set(priorities), priorities
    assert priorities['WRSHook'] == 40  # its class priority, ABOVE_NORMAL
    assert priorities['EMAHook'] == 49  # the base's own setting


def test_readme_recipe_keeps_layer_decay_constructor_and_paramwise(tmp_path):
    base = Config.fromfile(Config._get_cfg_path(BEIT, '.')[0]).optim_wrapper
    cfg = Config.fromfile(_write(tmp_path, readme_recipe(BEIT)))
    assert cfg.optim_wrapper.constructor == 'LayerDecayOptimizerConstructor'
    assert cfg.optim_wrapper.paramwise_cfg == base.paramwise_cfg
    assert {k: v for k, v in cfg.optim_wrapper.items() if k != '_scope_'} == base.to_dict()


def test_base_hooks_a_custom_hooks_list_replaced_are_named(tmp_path):
    path = _write(tmp_path, readme_recipe(RTMDET).replace(
        "default_hooks = dict(wrs=dict(type='WRSHook'))", "custom_hooks = [dict(type='WRSHook')]"))
    from mmwrs.engine.base_check import dropped_hooks
    assert dropped_hooks(Config.fromfile(path)) == ['EMAHook', 'PipelineSwitchHook']


def _layer_decay_scales(groups):
    """Whether the groups carry BEiT's layer decay: 0.9 ** k for the embeddings,
    the 4 layers and the head (k = 5 .. 0), as its paramwise_cfg sets."""
    scales = sorted({round(g['lr_scale'], 6) for g in groups})
    return scales == sorted(round(0.9 ** k, 6) for k in range(4 + 2))


def _constructor_form(inner=''):
    return (f"_base_ = ['{BEIT}']\n"
            "custom_imports = dict(imports=['mmwrs'], allow_failed_imports=False)\n"
            "optim_wrapper = dict(constructor='WRSOptimWrapperConstructor'"
            f"{inner}, wrs=dict(report=False))\n")


def test_wrs_constructor_that_replaced_the_base_constructor_stops(tmp_path):
    runner = _runner(_write(tmp_path, _constructor_form()), tmp_path, **BEIT_SMALL)
    with pytest.raises(ValueError, match=r"constructor='LayerDecayOptimizerConstructor'.*"
                       r"inner_constructor='LayerDecayOptimizerConstructor'"):
        runner.build_optim_wrapper(runner.optim_wrapper)


def test_wrs_constructor_naming_the_base_constructor_keeps_layer_decay(tmp_path):
    runner = _runner(_write(tmp_path, _constructor_form(
        ", inner_constructor='LayerDecayOptimizerConstructor'")), tmp_path, **BEIT_SMALL)
    wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    groups = wrapper.optimizer.param_groups
    assert _layer_decay_scales(groups)
    controlled = {id(p) for p in wrapper.wrs.params}
    assert controlled and all(g['weight_decay'] == 0 for g in groups
                              if any(id(p) in controlled for p in g['params']))


def _own_train_py(package):
    return osp.join(osp.dirname(importlib.util.find_spec(package).origin), '.mim', 'tools',
                    'train.py')


def _train(package, config, options, cwd):
    cli = [f'{k}={v!r}'.replace(' ', '') for k, v in options.items()]
    result = subprocess.run(
        [sys.executable, _own_train_py(package), config, '--work-dir', 'work_dir',
         '--cfg-options', *cli], cwd=str(cwd), capture_output=True, text=True, timeout=900,
        env=dict(os.environ, PYTHONPATH=PYTHONPATH, OMP_NUM_THREADS='1'))
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    return log


def _unit_filter_norms(checkpoint):
    """The controlled weights, and whether every filter of each has norm 1.

    A filter is an output channel: dim 0, or dim 1 for the transposed convs of
    BEiT's Feature2Pyramid neck (``neck.upsample_*``).
    """
    names = sorted(checkpoint['wrs']['rescaler']['targets'])

    def unit(name):
        weight = checkpoint['state_dict'][name]
        if name.startswith('neck.upsample'):
            weight = weight.transpose(0, 1)
        norms = weight.flatten(1).norm(dim=1)
        return torch.allclose(norms, torch.ones_like(norms), atol=1e-4)

    return names, all(unit(n) for n in names)


def _hook_order(log):
    return log[log.index('Hooks will be executed in the following order'):]


def test_rtmdet_tiny_trains_with_wrs_and_its_hooks_through_mmdet_train_py(tmp_path):
    from mmwrs.datasets import generate_shapes
    generate_shapes(str(tmp_path / 'data' / 'coco'), num_train=4, num_val=2, img_size=64,
                    layout='coco')
    log = _train('mmdet', _write(tmp_path, readme_recipe(RTMDET)), RTMDET_SMALL, tmp_path)
    order = _hook_order(log)
    assert 'EMAHook' in order and 'PipelineSwitchHook' in order and 'WRSHook' in order
    assert re.search(r'WRSHook: \d+ weights .* held at their target norm', log), log[-3000:]
    checkpoint = torch.load(tmp_path / 'work_dir' / 'epoch_1.pth', map_location='cpu',
                            weights_only=False)
    assert int(checkpoint['ema_state_dict']['steps']) == 2  # EMAHook averaged both steps
    names, unit = _unit_filter_norms(checkpoint)
    assert len(names) >= 20 and unit


def test_beit_trains_with_wrs_and_layer_decay_through_mmseg_train_py(tmp_path):
    from mmwrs.datasets import generate_shapes
    generate_shapes(str(tmp_path / 'data' / 'ade' / 'ADEChallengeData2016'), num_train=4,
                    num_val=2, img_size=64, layout='ade20k')
    log = _train('mmseg', _write(tmp_path, readme_recipe(BEIT)), BEIT_SMALL, tmp_path)
    assert 'WRSHook' in _hook_order(log)
    assert re.search(r'WRSHook: \d+ weights .* held at their target norm', log), log[-3000:]
    checkpoint = torch.load(tmp_path / 'work_dir' / 'iter_2.pth', map_location='cpu',
                            weights_only=False)
    groups = checkpoint['optimizer']['param_groups']
    assert _layer_decay_scales(groups)
    names, unit = _unit_filter_norms(checkpoint)
    assert names and unit


def test_wrs_hook_warns_when_its_list_replaced_the_base_hooks(make_cfg, tmp_path):
    """The trap the README warns about, on the demo detector given a base hook."""
    _write(tmp_path, f"_base_ = ['{DET_DEMO}']\n"
           "custom_hooks = [dict(type='EMAHook')]\n", 'faster-rcnn_base_with_ema.py')
    child = _write(tmp_path, "_base_ = ['./faster-rcnn_base_with_ema.py']\n"
                   "custom_imports = dict(imports=['mmwrs'], allow_failed_imports=False)\n"
                   "custom_hooks = [dict(type='WRSHook', report=False)]\n", 'faster-rcnn_wrs.py')
    runner = Runner.from_cfg(make_cfg(child, iters=1))
    runner.train()
    with open(runner.logger.log_file) as f:
        log = f.read()
    assert "registers custom_hooks ['EMAHook'], which this config's custom_hooks list " \
           'replaced' in log
    assert "default_hooks = dict(wrs=dict(type='WRSHook'))" in log
