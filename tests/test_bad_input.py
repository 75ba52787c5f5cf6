"""Malformed or hostile input: each gets a clear message naming what is wrong."""
import math
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import HOOKS

import mmwrs  # noqa: F401  (registrations)
from mmwrs.launch import load_config, register_codebase

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
WRS = osp.join(REPO, 'configs/_base_/regularizers/wrs.py')

HOOK_CASES = [
    (dict(type='WRSHook', granularity='channel'),
     ValueError, r"granularity must be one of \('filter', 'layer'\), got 'channel'"),
    (dict(type='WRSHook', granularity='group'),
     ValueError, r"granularity must be one of \('filter', 'layer'\), got 'group'"),
    (dict(type='WRSHook', target_norm=0), ValueError,
     r'WRSHook.target_norm must be a positive finite number, got 0'),
    (dict(type='WRSHook', target_norm=-1.0), ValueError,
     r'target_norm must be a positive finite number, got -1.0'),
    (dict(type='WRSHook', target_norm=math.nan), ValueError,
     r'target_norm must be a positive finite number, got nan'),
    (dict(type='WRSHook', target_norm='unit'), ValueError,
     r"target_norm must be a positive number or one of \('init',\), got 'unit'"),
    (dict(type='WRSHook', interval=0), ValueError,
     r'interval must be a positive integer .*got 0'),
    (dict(type='WRSHook', interval=1.5), ValueError,
     r'interval must be a positive integer .*got 1.5'),
    (dict(type='WRSHook', check_interval=0), ValueError,
     r'WRSHook: check_interval must be a positive integer or None .*got 0'),
    (dict(type='WRSHook', on_empty='ignore'), ValueError,
     r"on_empty must be one of \('error', 'warn'\), got 'ignore'"),
    (dict(type='WRSHook', include=['conv[']), ValueError,
     r"include: 'conv\[' is not a valid regular expression"),
    (dict(type='WRSHook', fixed_norm_layers={'fc_cls': -2}), ValueError,
     r"fixed_norm_layers\['fc_cls'\] must be a positive finite number, got -2"),
    (dict(type='FixNormHook', classifier_norm=0.0), ValueError,
     r'must be a positive finite number, got 0.0'),
    (dict(type='EpsShiftedL2Hook', lam=-1e-4), ValueError, r'lam'),
    (dict(type='ReplaceOptimizerHook', optimizer=dict(type='NoSuchOpt')), ValueError,
     r"unknown optimizer type 'NoSuchOpt'"),
    (dict(type='ReplaceOptimizerHook', optimizer='SGDP'), ValueError,
     r"optimizer must be a dict with a 'type'"),
    (dict(type='WeightStandardizationHook', num_groups=0), ValueError,
     r'num_groups must be a positive integer, got 0'),
]


@pytest.mark.parametrize('cfg, error, message', HOOK_CASES,
                         ids=[f'{c["type"]}-{i}' for i, (c, _, _) in enumerate(HOOK_CASES)])
def test_bad_hook_options_are_named(cfg, error, message):
    with pytest.raises(error, match=message):
        HOOKS.build(cfg)


def test_overlay_applied_twice_is_refused(tmp_path):
    child = tmp_path / 'twice.py'
    child.write_text(f"_base_ = ['mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', "
                     f"{WRS!r}, {WRS!r}]\n")
    with pytest.raises(KeyError, match='Duplicate key is not allowed among bases'):
        Config.fromfile(str(child))


def test_config_of_another_codebase_is_named(tmp_path):
    path = tmp_path / 'cls.py'
    path.write_text("default_scope = 'mmpretrain'\n")
    cfg = load_config(str(path), None, None)
    with pytest.raises(ValueError, match=r"default_scope must be one of \('mmdet', 'mmseg'\)"):
        register_codebase(cfg)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='config file not found: .*nope.py'):
        load_config(str(tmp_path / 'nope.py'), None, None)


def test_truncated_checkpoint_fails_loudly_and_is_left_alone(tmp_path):
    path = tmp_path / 'iter_2.pth'
    torch.save({'state_dict': {'w': torch.ones(1000)}, 'meta': {}}, path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    from mmengine.runner.checkpoint import _load_checkpoint
    with pytest.raises(RuntimeError):
        _load_checkpoint(str(path), map_location='cpu')
    assert path.read_bytes() == data[:len(data) // 2]  # nothing rewrote it


def test_untrusted_pickle_is_still_refused(tmp_path):
    """compat allow-lists data types only: code in a checkpoint is not run."""
    path = tmp_path / 'evil.pth'
    torch.save({'payload': print}, path)
    with pytest.raises(Exception, match='Weights only load failed'):
        torch.load(path)
