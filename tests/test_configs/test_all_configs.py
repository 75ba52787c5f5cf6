"""Every config parses and builds its model; overlays compose with stock configs."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

from mmwrs.launch import register_codebase
from mmwrs.testing import build_model_from_cfg

from experiments import experiments

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# The experiment matrix (configs/<model>/) is covered by test_experiments.py,
# which builds each of its stock models once instead of 66 times.
EXPERIMENT_CONFIGS = {osp.join(REPO, e.path) for e in experiments()}
# Overlays (the shipped regularizers and the study's own) have no model of
# their own: they are tested composed with stock configs below.
OVERLAYS = sorted(glob.glob(osp.join(REPO, 'configs', '_base_', 'regularizers', '*.py'))
                  + glob.glob(osp.join(REPO, 'configs', 'study', 'overlays', '*.py')))
CONFIGS = sorted(p for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
                 if '/_base_/' not in p and p not in EXPERIMENT_CONFIGS and p not in OVERLAYS)
STOCK = ['mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
         'mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb4-80k_ade20k-512x512.py']


@pytest.mark.parametrize('path', CONFIGS, ids=[osp.relpath(p, REPO) for p in CONFIGS])
def test_config_parses_and_builds_its_model(path):
    cfg = Config.fromfile(path)
    register_codebase(cfg)
    model = build_model_from_cfg(cfg)
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize('stock', STOCK)
@pytest.mark.parametrize('overlay', OVERLAYS, ids=[osp.basename(p) for p in OVERLAYS])
def test_overlay_composes_with_a_stock_config(tmp_path, stock, overlay):
    child = tmp_path / 'child.py'
    child.write_text(f'_base_ = [{stock!r}, {overlay!r}]\n')
    cfg = Config.fromfile(str(child))  # mmengine refuses keys defined in two bases
    assert cfg.custom_imports.imports == ['mmwrs']
    assert cfg.optim_wrapper.optimizer.type == 'SGD'  # the stock optimizer is kept
    from mmengine.registry import HOOKS

    import mmwrs  # noqa: F401
    for hook in cfg.get('custom_hooks', []):
        HOOKS.build(dict(hook))  # options valid, types registered
