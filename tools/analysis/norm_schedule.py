"""A WRS target-norm schedule that follows a weight-decay run's norm curve.

Reads the mean filter norm that ``NormMonitorHook`` logged in a run's work
directory (``mean/filter_norm`` in ``vis_data/scalars.json``) and prints the
``target_norm`` option of ``WRSHook`` / ``WRSOptimWrapperConstructor`` whose
target is ``start * n(k) / n(0)``: a WRS run with it has the effective-LR
growth ``lr / ||w||²`` that weight decay had in that run::

    python tools/analysis/norm_schedule.py work_dirs/study/fcn/wd-5e-4/seed0 \\
        --start 1.0 --points 16 [--key mean/filter_norm]
"""
import argparse
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)
from mmwrs.core.target_schedule import TargetSchedule, points_following  # noqa: E402
from mmwrs.scalars import load_work_dir  # noqa: E402


def schedule_from_run(work_dir: str, start: float = 1.0, num_points: int = 16,
                      key: str = 'mean/filter_norm') -> dict:
    """The ``target_norm`` config dict for a run's logged norm curve."""
    scalars = load_work_dir(work_dir)
    if not scalars.get(key):
        logged = sorted(name for name in scalars if 'norm' in name)
        raise KeyError(f'{work_dir}: no {key!r} in its scalars (logged norm keys: {logged}); '
                       'train it with NormMonitorHook')
    points = points_following(scalars[key], start, num_points, key=key)
    cfg = dict(type='piecewise', points=[(int(x), round(y, 6)) for x, y in points])
    TargetSchedule.from_config(cfg)  # the printed option must be one the hook accepts
    return cfg


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('work_dir', help='work dir of a run trained with NormMonitorHook')
    parser.add_argument('--start', type=float, default=1.0, help='target at the first point')
    parser.add_argument('--points', type=int, default=16, help='number of schedule points')
    parser.add_argument('--key', default='mean/filter_norm', help='scalar to follow')
    args = parser.parse_args()
    cfg = schedule_from_run(args.work_dir, args.start, args.points, args.key)
    print(f'target_norm={cfg!r}')


if __name__ == '__main__':
    main()
