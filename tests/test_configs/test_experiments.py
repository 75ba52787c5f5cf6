"""The paper's experiment configs (configs/<model>/, listed in configs/README.md).

Each is a stock config plus one overlay; so every config must give exactly its
stock model, optimizer and schedule plus the regularizer's hooks. Models are
built once per stock config. test_experiment_matrix.py trains and validates
every one of them on data in its stock layout.
"""
import functools
import glob
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.registry import HOOKS

from mmwrs.launch import register_codebase
from mmwrs.testing import build_model_from_cfg

from conftest import REPO, load_tool
from experiments import SETTINGS, experiment_config_text, experiments

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
