"""The paper's experiment configs (configs/<model>/, listed in configs/README.md).

Each is a stock config plus one overlay; so every config must give exactly its
stock model, optimizer and schedule plus the regularizer's hooks. Models are
built once per stock config; a detector and a segmentor train one iteration
with each regularizer on the shapes data through the real Runner.
"""
import functools
import glob
import os.path as osp
import time

import pytest
import torch
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.registry import HOOKS
from mmengine.runner import Runner

from mmwrs.launch import register_codebase
from mmwrs.testing import build_model_from_cfg, without_pretrained

from conftest import REPO, load_tool, tiny_options
from experiments import (SETTINGS, experiment_config_text, experiments, final_metrics,
                         primary_metric)

EXPERIMENTS = experiments()
IDS = [osp.basename(e.path)[:-3] for e in EXPERIMENTS]
# The hooks each setting must add to the stock config, in order.
HOOKS_OF = {
    'wd': [],
    'wrs': ['WRSHook'],
    'ws': ['WeightStandardizationHook'],
    'sgdp': ['ReplaceOptimizerHook'],
    'fixnorm': ['FixNormHook'],
    'eps_l2': ['WeightStandardizationHook', 'EpsShiftedL2Hook'],
}
# Keys an overlay may not change: the experiment is the stock one.
STOCK_KEYS = ('model', 'optim_wrapper', 'param_scheduler', 'train_cfg', 'train_dataloader',
              'val_evaluator', 'default_hooks', 'randomness')




@functools.lru_cache(maxsize=None)
def _stock(stock):
    return get_config(stock)


def _unscoped(value):
    """``value`` without the ``_scope_`` keys mmengine adds to dicts that a
    child inherits from a ``mmdet::``/``mmseg::`` base."""
    if isinstance(value, dict):
        return {k: _unscoped(v) for k, v in value.items() if k != '_scope_'}
    if isinstance(value, (list, tuple)):
        return type(value)(_unscoped(v) for v in value)
    return value


def test_files_and_readme_table_match_the_matrix():
    assert set(HOOKS_OF) == set(SETTINGS)
    models = {e.model for e in EXPERIMENTS}
    present = {osp.relpath(p, REPO) for m in models
               for p in glob.glob(osp.join(REPO, 'configs', m, '*.py'))}
    assert present == {e.path for e in EXPERIMENTS}
    assert len(EXPERIMENTS) == 11 * 6
    # Content and table: regenerate and compare (fails when someone edits one).
    assert load_tool('tools/analysis/gen_experiment_configs.py').stale_files() == []
    with open(osp.join(REPO, 'configs', 'README.md')) as f:
        readme = f.read()
    for experiment in EXPERIMENTS:
        assert f'`python tools/train.py {experiment.path}`' in readme
    assert readme.count('| `python tools/train.py configs/') == len(EXPERIMENTS)


@pytest.mark.parametrize('experiment', EXPERIMENTS, ids=IDS)
def test_config_is_its_stock_config_plus_the_regularizer(experiment):
    with open(osp.join(REPO, experiment.path)) as f:
        assert f.read() == experiment_config_text(experiment)
    cfg = Config.fromfile(osp.join(REPO, experiment.path))
    stock = _stock(experiment.stock)
    for key in STOCK_KEYS:
        assert _unscoped(cfg.get(key)) == _unscoped(stock.get(key)), key
    assert cfg.custom_imports.imports == ['mmwrs']
    hooks = cfg.get('custom_hooks', [])
    assert [h['type'] for h in hooks] == HOOKS_OF[experiment.setting]
    import mmwrs  # noqa: F401  (registers the hooks)
    for hook in hooks:
        HOOKS.build(dict(hook))  # options valid


@pytest.mark.parametrize('stock', sorted({e.stock for e in EXPERIMENTS}))
def test_each_distinct_model_builds(stock):
    # Every experiment of this stock config has its model dict (checked above).
    path = next(e.path for e in EXPERIMENTS if e.stock == stock)
    cfg = Config.fromfile(osp.join(REPO, path))
    register_codebase(cfg)
    model = build_model_from_cfg(cfg)
    assert sum(p.numel() for p in model.parameters()) > 20e6  # an R50 model


def _set_num_classes(model_cfg, num_classes):
    """Every head of the model predicts the shapes' classes (CocoMetric
    cannot map a class index beyond the dataset's)."""
    if isinstance(model_cfg, dict):
        for key, value in model_cfg.items():
            if key == 'num_classes':
                model_cfg[key] = num_classes
            else:
                _set_num_classes(value, num_classes)
    elif isinstance(model_cfg, list):
        for value in model_cfg:
            _set_num_classes(value, num_classes)


def _shapes_cfg(path, shapes_root, work_dir):
    """The experiment config with its dataset swapped for the 128 px shapes,
    one iteration of batch 2, no pretrained weights and no checkpoints."""
    cfg = Config.fromfile(osp.join(REPO, path))
    detection = cfg.default_scope == 'mmdet'
    data = Config.fromfile(osp.join(REPO, 'configs/_base_/datasets', 'shapes_detection.py'
                                    if detection else 'shapes_segmentation.py'))
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader', 'val_evaluator',
                'test_evaluator'):
        cfg[key] = data[key]  # replace, not merge: the stock datasets differ in kind
    cfg.train_dataloader.sampler = dict(type='InfiniteSampler', shuffle=True)
    cfg.val_dataloader.dataset.indices = 2  # one validation batch: metric logged, cheaply
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=1, val_interval=1)
    cfg.merge_from_dict(tiny_options(path, shapes_root, iters=1))
    cfg.log_processor = dict(by_epoch=False)
    cfg.default_hooks.checkpoint = None
    cfg.model = without_pretrained(cfg.model)
    _set_num_classes(cfg.model, len(data.metainfo.classes))
    if detection:
        # After one iteration no box clears the stock 0.05 score threshold, and
        # CocoMetric logs no metric for empty results.
        cfg.model.test_cfg.rcnn.score_thr = 0.0
    else:
        cfg.model.data_preprocessor.size = (128, 128)  # stock: the 512x1024 crop
    cfg.work_dir = str(work_dir)
    # mmengine reuses a visualizer of the same name, which writes to the work
    # dir of the first Runner of this process; each run needs its own.
    cfg.visualizer.name = f'visualizer_{osp.basename(str(work_dir))}'
    return cfg


TRAINED = ['faster_rcnn', 'fcn']


@pytest.mark.parametrize('setting', list(SETTINGS))
@pytest.mark.parametrize('model', TRAINED)
def test_experiment_trains_on_shapes(shapes_root, tmp_path, model, setting):
    experiment = next(e for e in EXPERIMENTS if e.model == model and e.setting == setting)
    cfg = _shapes_cfg(experiment.path, shapes_root, tmp_path)
    register_codebase(cfg)
    start = time.time()
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 1
    losses = runner.message_hub.get_scalar('train/loss').data[0]
    assert len(losses) == 1 and torch.isfinite(torch.tensor(losses)).all()
    names = [type(h).__name__ for h in runner.hooks]
    assert all(h in names for h in HOOKS_OF[setting])
    groups = runner.optim_wrapper.optimizer.param_groups
    decays = {g['weight_decay'] for g in groups}
    if setting == 'wd':
        assert decays == {cfg.optim_wrapper.optimizer.weight_decay}
    elif setting in ('wrs', 'eps_l2'):  # 0 on the controlled weights, the rest keep it
        assert decays == {0.0, cfg.optim_wrapper.optimizer.weight_decay}
    elif setting == 'fixnorm':
        assert decays == {0.0}
    elif setting == 'sgdp':
        assert type(runner.optim_wrapper.optimizer).__name__ == 'SGDP'
    if setting in ('ws', 'eps_l2'):
        from mmcv.cnn.bricks import ConvWS2d
        assert any(isinstance(m, ConvWS2d) for m in runner.model.modules())
    # The one validation ran on the swapped data and logged its metric.
    assert primary_metric(final_metrics(str(tmp_path))) == (
        'coco/bbox_mAP' if model == 'faster_rcnn' else 'mIoU')
    print(f'{experiment.path}: {time.time() - start:.1f} s')
