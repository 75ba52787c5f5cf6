"""Target-norm schedules: values at given updates, epochs, and bad input."""
import math

import pytest

from mmwrs.core.target_schedule import TargetSchedule


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
