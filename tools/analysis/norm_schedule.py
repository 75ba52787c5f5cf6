"""A WRS target-norm schedule that follows a weight-decay run's norm curve.

Reads the mean filter norm that ``NormMonitorHook`` logged in a run's work
directory (``mean/filter_norm`` in ``vis_data/scalars.json``) and prints the
``target_norm`` option of ``WRSHook`` / ``WRSOptimWrapperConstructor`` whose
target is ``start * n(k) / n(0)``: a WRS run with it has the effective-LR
growth ``lr / ||w||²`` that weight decay had in that run (``--start
measured``: the run's own norms, so the same effective LR, not only its
growth). ``--overlay PATH`` writes a WRS overlay with it (a regularizer
config for ``tools/analysis/sweep.py``)::

    python tools/analysis/norm_schedule.py work_dirs/study/fcn/runs/sgd_lr0.2_wd0.0005_seed0 \\
        --start measured --points 16 [--key mean/filter_norm] [--overlay PATH]
"""
import argparse
import os.path as osp
import pprint
import sys
import textwrap
from typing import Union

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)
from mmwrs.core.target_schedule import TargetSchedule, points_following  # noqa: E402
from mmwrs.fileio import write_atomic  # noqa: E402
from mmwrs.scalars import load_work_dir  # noqa: E402


def schedule_from_run(work_dir: str, start: Union[float, str] = 1.0, num_points: int = 16,
                      key: str = 'mean/filter_norm') -> dict:
    """The ``target_norm`` config dict for a run's logged norm curve.

    ``start='measured'`` starts at the curve's own first value (the run's norms).
    """
    scalars = load_work_dir(work_dir)
    if not scalars.get(key):
        logged = sorted(name for name in scalars if 'norm' in name)
        raise KeyError(f'{work_dir}: no {key!r} in its scalars (logged norm keys: {logged}); '
                       'train it with NormMonitorHook')
    if start == 'measured':
        start = min(scalars[key])[1]
    points = points_following(scalars[key], float(start), num_points, key=key)
    cfg = dict(type='piecewise', points=[(int(x), round(y, 6)) for x, y in points])
    TargetSchedule.from_config(cfg)  # the printed option must be one the hook accepts
    return cfg


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('work_dir', help='work dir of a run trained with NormMonitorHook')
    parser.add_argument('--start', default='1.0',
                        help="target at the first point, or 'measured': the run's own norm")
    parser.add_argument('--points', type=int, default=16, help='number of schedule points')
    parser.add_argument('--key', default='mean/filter_norm', help='scalar to follow')
    parser.add_argument('--overlay', help='also write a WRSHook overlay with it to this path')
    args = parser.parse_args()
    start = args.start if args.start == 'measured' else float(args.start)
    cfg = schedule_from_run(args.work_dir, start, args.points, args.key)
    print(f'target_norm={cfg!r}')
    if args.overlay:
        write_overlay(args.overlay, cfg, ' '.join(sys.argv[1:]))
        print(f'wrote {args.overlay}')


def write_overlay(path: str, target_norm: dict, command: str) -> None:
    """A regularizer overlay: the wrs overlay's WRSHook on this schedule."""
    hook_indent = ' ' * len('custom_hooks = [dict(')
    value_indent = hook_indent + ' ' * len('target_norm=')
    # pprint wraps the points list so the file stays within the linted line length.
    schedule = pprint.pformat(target_norm, width=99 - len(value_indent),
                              sort_dicts=False)
    command_lines = textwrap.wrap(f'python tools/analysis/norm_schedule.py {command}', 90,
                                  break_on_hyphens=False)
    value = schedule.replace('\n', '\n' + value_indent)
    text = ('# WRS with a target-norm schedule measured on a weight-decay run; written by\n'
            + ''.join(f'#   {line}\n' for line in command_lines)
            + "custom_imports = dict(imports=['mmwrs'], allow_failed_imports=False)\n"
            "custom_hooks = [dict(type='WRSHook', granularity='filter',\n"
            f'{hook_indent}target_norm={value})]\n')
    write_atomic(path, text)


if __name__ == '__main__':
    main()
