"""Target-norm schedules: values at given updates, epochs, bad input, and the
schedule followed by WRSController (resumed bit-identically)."""
import copy
import math

import pytest
import torch
from torch import nn

from mmwrs.core.controller import WRSController
from mmwrs.core.target_schedule import TargetSchedule, points_following


def test_constant_holds_its_value():
    schedule = TargetSchedule.from_config(dict(type='constant', start=0.7))
    assert [schedule.value(k) for k in (0, 10, 10_000)] == [0.7, 0.7, 0.7]


def test_linear_between_begin_and_end_held_outside():
    schedule = TargetSchedule.from_config(dict(type='linear', start=1.0, end=0.5,
                                               begin=100, end_at=300))
    assert schedule.value(0) == 1.0
    assert schedule.value(100) == 1.0
    assert schedule.value(200) == pytest.approx(0.75)
    assert schedule.value(250) == pytest.approx(0.625)
    assert schedule.value(300) == pytest.approx(0.5)
    assert schedule.value(1000) == 0.5


def test_cosine_is_half_way_at_the_middle_and_flat_at_the_ends():
    schedule = TargetSchedule(type='cosine', start=2.0, end=1.0, end_at=400)
    assert schedule.initial == 2.0
    assert schedule.value(200) == pytest.approx(1.5)
    assert schedule.value(100) == pytest.approx(1.5 + 0.5 * math.cos(math.pi / 4))
    assert schedule.value(400) == pytest.approx(1.0)


def test_piecewise_interpolates_between_points():
    schedule = TargetSchedule(type='piecewise', points=[(0, 1.0), (100, 0.8), (300, 0.4)])
    assert schedule.value(50) == pytest.approx(0.9)
    assert schedule.value(200) == pytest.approx(0.6)
    assert schedule.value(999) == pytest.approx(0.4)


def test_by_epoch_counts_epochs_of_updates():
    schedule = TargetSchedule(type='linear', start=1.0, end=0.5, end_at=2, by_epoch=True)
    with pytest.raises(RuntimeError, match='updates_per_epoch'):
        schedule.value(1)
    schedule.updates_per_epoch = 50
    assert schedule.value(50) == pytest.approx(0.75)
    assert schedule.value(100) == pytest.approx(0.5)


@pytest.mark.parametrize('cfg, match', [
    (dict(type='exp', start=1.0), "target_norm.type must be one of"),
    (dict(type='linear', start=1.0, end=0.5), 'needs end .* and end_at'),
    (dict(type='linear', start=1.0, end=0.5, begin=10, end_at=5), r'end_at must be > begin'),
    (dict(type='linear', start=-1.0, end=0.5, end_at=5), 'target_norm.start must be a positive'),
    (dict(type='constant'), 'start is required'),
    (dict(type='constant', start=1.0, end=2.0), r"\['end'\] do not apply"),
    (dict(type='piecewise', points=[(0, 1.0), (0, 0.5)]), 'increase strictly'),
    (dict(type='piecewise', points=[(0, 1.0), (5,)]), r'points\[1\] must be a \(position'),
    (dict(type='piecewise', start=1.0, points=[(0, 1.0)]), r"\['start'\] do not apply"),
    (dict(type='linear', start=1.0, end=0.5, end_at=5, warmup=3), 'unknown schedule key'),
    ('cosine', "must be a dict with a 'type'"),
])
def test_bad_schedules_name_the_key(cfg, match):
    with pytest.raises(ValueError, match=match):
        TargetSchedule.from_config(cfg)


def test_points_following_a_norm_curve_keep_its_ratios():
    # A weight-decay norm curve falling from 2.0 to 1.0 over 1000 updates.
    curve = [(k, 2.0 - k / 1000) for k in range(0, 1001, 10)]
    points = points_following(curve, start=1.0, num_points=5)
    assert [x for x, _ in points] == [0, 250, 500, 750, 1000]
    assert [y for _, y in points] == pytest.approx([1.0, 0.875, 0.75, 0.625, 0.5])
    schedule = TargetSchedule(type='piecewise', points=points)
    assert schedule.value(500) == pytest.approx(0.75)


def test_points_following_snap_to_logged_steps_and_stay_increasing():
    curve = [(0, 1.0), (7, 0.9), (8, 0.8), (100, 0.5)]
    points = points_following(curve, start=2.0, num_points=8)
    positions = [x for x, _ in points]
    assert positions == sorted(set(positions)) and positions[0] == 0 and positions[-1] == 100
    assert set(positions) <= {0, 7, 8, 100}
    assert dict(points)[100] == pytest.approx(1.0)


@pytest.mark.parametrize('curve, num_points, match', [
    ([(0, 1.0)], 4, 'at least two'),
    ([(0, 1.0), (5, 0.0)], 4, 'positive and finite'),
    ([(0, 1.0), (5, math.nan)], 4, 'positive and finite'),
    ([(0, 1.0), (5, 0.5)], 1, 'num_points must be an integer >= 2'),
])
def test_points_following_bad_curves(curve, num_points, match):
    with pytest.raises(ValueError, match=match):
        points_following(curve, start=1.0, num_points=num_points)


# -- the schedule in WRSController ------------------------------------------------
def _model_and_batch():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Conv2d(4, 5, 3, bias=False), nn.BatchNorm2d(5),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 2))
    return model, torch.randn(4, 3, 8, 8)


def _train(controller, model, batch, optimizer, steps):
    for _ in range(steps):
        optimizer.zero_grad()
        model(batch).square().mean().backward()
        optimizer.step()


LINEAR = dict(type='linear', start=1.0, end=0.5, end_at=4)


@pytest.mark.parametrize('interval', [1, 2])
def test_controller_follows_the_schedule_at_each_rescale(interval):
    model, batch = _model_and_batch()
    controller = WRSController(target_norm=LINEAR, interval=interval,
                               fixed_norm_layers={r'^7\.weight$': 2.0})
    assert controller.discover(model, lambda: model(batch), warn=pytest.fail)
    assert controller.scheduled == ('0.weight', '3.weight')
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    controller.start([optimizer])
    schedule = TargetSchedule.from_config(LINEAR)
    for update in range(1, 7):
        _train(controller, model, batch, optimizer, 1)
        norms = controller.rescaler.unit_norms()
        if update % interval:
            continue
        for name in controller.scheduled:
            assert torch.allclose(norms[name], torch.full_like(norms[name],
                                  schedule.value(update)), atol=1e-6), (update, name)
        # The fixed-norm classifier keeps its own target, not the schedule's.
        assert float(norms['7.weight']) == pytest.approx(2.0, abs=1e-6)
    assert controller.num_updates == 6


def _discovered(batch, **options):
    """A fresh model (same init) under a discovered controller, and its SGD."""
    model, _ = _model_and_batch()
    controller = WRSController(**options)
    controller.discover(model, lambda: model(batch), warn=pytest.fail)
    return model, controller, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def test_controller_resumed_mid_schedule_is_bit_identical():
    _, batch = _model_and_batch()
    model, full, optimizer = _discovered(batch, target_norm=LINEAR)
    full.start([optimizer])
    _train(full, model, batch, optimizer, 6)

    model2, first, optimizer2 = _discovered(batch, target_norm=LINEAR)
    first.start([optimizer2])
    _train(first, model2, batch, optimizer2, 2)
    saved = copy.deepcopy((model2.state_dict(), optimizer2.state_dict(), first.state_dict()))
    first.stop()

    model3, resumed, optimizer3 = _discovered(batch, target_norm=LINEAR)
    model3.load_state_dict(saved[0])
    optimizer3.load_state_dict(saved[1])
    resumed.load_state_dict(saved[2])
    resumed.start([optimizer3])
    _train(resumed, model3, batch, optimizer3, 4)
    assert resumed.num_updates == 6
    for (name, a), b in zip(model.state_dict().items(), model3.state_dict().values()):
        assert torch.equal(a, b), name


def test_by_epoch_schedule_needs_updates_per_epoch_from_the_adapter():
    model, batch = _model_and_batch()
    controller = WRSController(target_norm=dict(LINEAR, by_epoch=True, end_at=2))
    controller.discover(model, lambda: model(batch), warn=pytest.fail)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    controller.start([optimizer])  # the start needs only the initial target
    with pytest.raises(RuntimeError, match='updates_per_epoch'):
        _train(controller, model, batch, optimizer, 1)
    controller.set_updates_per_epoch(2)
    _train(controller, model, batch, optimizer, 1)  # update 2: one epoch, half-way
    norms = controller.rescaler.unit_norms()['0.weight']
    assert torch.allclose(norms, torch.full_like(norms, 0.75), atol=1e-6)
    with pytest.raises(ValueError, match='by_epoch=True needs a train dataloader'):
        controller.set_updates_per_epoch(0)


def test_schedule_with_a_bad_key_names_the_owner_and_the_key():
    with pytest.raises(ValueError, match=r"WRSHook.target_norm: unknown schedule key\(s\) "
                                         r"\['stop'\]"):
        WRSController(target_norm=dict(type='linear', start=1, stop=2), owner='WRSHook')
