"""Shared fixtures: a tiny shapes dataset and tiny Runner configs of the demos."""
import os
import os.path as osp
import sys

import pytest

TESTS = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(TESTS)
# The cached environment is shared by every checkout (mmwrs is installed there
# editable from whichever ran set-up last): test this checkout's code. The
# experiment helpers live with the tools that use them.
sys.path[:0] = [REPO, osp.join(REPO, 'tools', 'analysis')]
# For training subprocesses: this checkout's mmwrs, and this folder for
# custom_imports=['register_dump_weights_hook'].
PYTHONPATH = os.pathsep.join([REPO, TESTS])
DET_DEMO = osp.join(REPO, 'configs/demo/faster-rcnn_r18_fpn_shapes.py')
SEG_DEMO = osp.join(REPO, 'configs/demo/fcn_r18-d8_shapes.py')
# The demo segmentor without random flips or dropout, so that two runs can be
# compared weight by weight (e.g. resumed vs uninterrupted).
DETERMINISTIC_SEG = {
    'train_dataloader.dataset.pipeline': [
        dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
        dict(type='PackSegInputs')],
    'model.decode_head.dropout_ratio': 0.0,
    'model.auxiliary_head.dropout_ratio': 0.0,
}


def load_tool(relative_path):
    """Import a script of tools/ (not a package) as a module."""
    import importlib.util
    name = osp.splitext(osp.basename(relative_path))[0]
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO, relative_path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def dump_weights_hook():
    """Registers the test-only :class:`DumpWeightsHook` for one test."""
    from mmengine.registry import HOOKS

    from dump_weights_hook import DumpWeightsHook
    HOOKS.register_module(module=DumpWeightsHook)
    yield DumpWeightsHook
    HOOKS._module_dict.pop('DumpWeightsHook', None)


@pytest.fixture(scope='session')
def shapes_root(tmp_path_factory):
    from mmwrs.datasets import generate_shapes
    return generate_shapes(str(tmp_path_factory.mktemp('shapes')), num_train=8,
                           num_val=4, img_size=128, seed=0) + '/'


def tiny_options(config, data_root, iters=2, batch_size=2):
    """cfg-options that shrink a demo config to a few quick iterations."""
    from experiments import data_root_options
    detection = 'faster-rcnn' in config or 'mask' in config or 'retina' in config
    options = {
        **data_root_options(data_root, detection),
        'train_dataloader.batch_size': batch_size,
        'val_dataloader.batch_size': batch_size,
        'test_dataloader.batch_size': batch_size,
        'train_cfg.max_iters': iters,
        'train_cfg.val_interval': iters,
        'default_hooks.logger.interval': 1,
        'default_hooks.checkpoint.interval': iters,
        'param_scheduler': [dict(type='ConstantLR', factor=1.0, by_epoch=False)],
    }
    return options


@pytest.fixture
def make_cfg(shapes_root, tmp_path):
    """Load a config, overlay regularizer files, shrink it; returns a Config."""
    from mmengine.config import Config

    def make(config, overlays=(), iters=2, work_dir=None, **extra):
        options = tiny_options(config, shapes_root, iters)
        if overlays:
            child = tmp_path / f'composed_{len(list(tmp_path.iterdir()))}.py'
            bases = [config] + [osp.join(REPO, 'configs/_base_/regularizers', f'{o}.py')
                                for o in overlays]
            child.write_text(f'_base_ = {bases!r}\n')
            config = str(child)
        cfg = Config.fromfile(config)
        cfg.merge_from_dict(options)
        cfg.merge_from_dict(extra)
        cfg.work_dir = str(work_dir or tmp_path / 'work_dir')
        return cfg

    return make
