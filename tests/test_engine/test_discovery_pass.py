"""Discovery on the stock models the zoo table found failing (issue 18): YOLOX-s
(batch augments reading the message hub), DINO (queries picked among encoder
tokens) and RTMDet-Ins (a mask loss in a single-stage head)."""
import random

import numpy as np
import pytest
import torch
from mmengine.logging import MessageHub

from mmwrs.core import discover_scale_invariant
from mmwrs.engine.discovery_pass import discovery_pass, min_image_size
from mmwrs.engine.example_batch import example_loss_forward
from mmwrs.engine.runner_utils import check_image_size, model_forward, train_mode
from mmwrs.testing import build_stock_model, demo_batch

YOLOX = 'mmdet::yolox/yolox_s_8xb8-300e_coco.py'
DINO = 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py'
RTMDET_INS = 'mmdet::rtmdet/rtmdet-ins_tiny_8xb32-300e_coco.py'


def _model(config):
    torch.manual_seed(0)
    return build_stock_model(config)


@pytest.fixture(scope='module')
def yolox():
    return _model(YOLOX)


@pytest.fixture
def fresh_hub():
    """A message hub no loop has written to (as before training starts)."""
    hub = MessageHub.get_instance('test_discovery_pass_' + str(random.random()))
    hub.runtime_info.pop('iter', None)
    return hub


def _discover(model, forward):
    with train_mode(model):
        return discover_scale_invariant(model, forward)


def test_yolox_discovery_before_any_loop_and_no_trace_left(yolox, fresh_hub):
    augment = yolox.data_preprocessor.batch_augments[0]
    attributes = dict(vars(augment))
    random.seed(3)
    py_state, np_state = random.getstate(), np.random.get_state()
    result = _discover(yolox, example_loss_forward(yolox, 'test'))
    assert len(result.invariant) > 50
    assert fresh_hub.get_info('iter') is None  # removed again: the loop sets it
    assert random.getstate() == py_state
    assert np.array_equal(np.random.get_state()[1], np_state[1])
    assert {k: v for k, v in vars(augment).items() if k in attributes} == attributes


def test_batch_augment_draw_is_undone(yolox, fresh_hub):
    """At an iteration where YOLOX's random resize draws a new input size, the
    discovery pass leaves the augment's size and the RNG as they were."""
    augment = yolox.data_preprocessor.batch_augments[0]
    fresh_hub.update_info('iter', augment._interval - 1)  # the draw happens now
    size = augment._input_size
    py_state = random.getstate()
    with torch.no_grad(), discovery_pass(yolox):
        yolox.data_preprocessor(demo_batch(yolox, size=64), True)
        drawn = augment._input_size
    assert drawn != size or random.getstate() != py_state  # the draw did happen
    assert augment._input_size == size
    assert random.getstate() == py_state
    assert fresh_hub.get_info('iter') == augment._interval - 1  # a loop's value stays


def test_min_image_size():
    dino = _model(DINO)
    assert dino.num_queries == 900
    assert min_image_size(dino) == 256  # 8 * sqrt(900) = 240, rounded up to 32
    assert min_image_size(_model('mmdet::retinanet/retinanet_r50_fpn_1x_coco.py')) == 0


def test_dino_example_batch_is_large_enough_and_small_batches_are_named():
    dino = _model(DINO)
    result = _discover(dino, example_loss_forward(dino, 'test'))
    assert len(result.invariant) > 30
    small = demo_batch(dino, size=64)
    with pytest.raises(ValueError, match=r'num_queries=900.*256x256 px.*64x64 px'):
        check_image_size(dino, small)
    check_image_size(dino, demo_batch(dino, size=256))  # large enough: no error


def test_rtmdet_ins_example_batch_has_masks():
    model = _model(RTMDET_INS)
    result = _discover(model, example_loss_forward(model, 'test'))
    assert len(result.invariant) > 50
    # The same head, traced through the hook's path on a batch with masks.
    batch = demo_batch(model, size=64)
    assert 'masks' not in batch['data_samples'][0].gt_instances  # why the old batch failed
    with pytest.raises(AttributeError, match='masks'):
        _discover(model, model_forward(model, batch))
