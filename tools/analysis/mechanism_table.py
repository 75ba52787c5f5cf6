"""How norms, effective LR and gradient norms moved in a sweep's runs.

The paper's mechanism claim is about the constant-lr phase: under SGD with
momentum and weight decay the norms of scale-invariant weights shrink towards
an equilibrium, so the effective learning rate ``lr/||w||²`` keeps growing and
the gradients grow as ``1/||w||``; under WRS all three stay put. This reads the
``NormMonitorHook`` scalars of every finished run of a
``tools/analysis/sweep.py`` directory and prints, per setting (mean ± std over
its seeds), each quantity at ``--late`` divided by its value at ``--early``::

    python tools/analysis/mechanism_table.py work_dirs/study/fcn --early 250 --late 1100 \\
        --window 100

Quantities (means over the monitored weights): ``mean/filter_norm`` (output
filters), ``mean/eff_lr`` (whole tensor), ``mean/grad_norm``; and the mean
angular update per step (degrees) at ``--late``. Pick both steps (and their
``--window``) inside the constant-lr phase, so the lr schedule divides out of
the effective-LR ratio.
"""
import argparse
import json
import os
import os.path as osp
import re
import sys
from typing import Dict, List, Optional

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path[:0] = [REPO, osp.dirname(osp.abspath(__file__))]
from sweep import DONE, mean_std  # noqa: E402

from mmwrs.scalars import Series, load_work_dir  # noqa: E402

RATIOS = (('filter norm', 'mean/filter_norm'), ('lr/‖w‖²', 'mean/eff_lr'),
          ('grad norm', 'mean/grad_norm'))
ANGLE = 'mean/angle_deg'


def value_at(series: Series, step: int, window: int = 0) -> Optional[float]:
    """The mean of the values logged within ``window`` steps of ``step``.

    With no value there (or ``window`` 0): the value at the nearest logged
    step. None: an empty series.
    """
    if not series:
        return None
    near = [value for at, value in series if abs(at - step) <= window]
    if near:
        return sum(near) / len(near)
    return min(series, key=lambda point: (abs(point[0] - step), point[0]))[1]


def run_row(scalars: Dict[str, Series], early: int, late: int,
            window: int = 0) -> Dict[str, float]:
    """late / early of each ratio quantity, and the angle at ``late``, of one run."""
    row = {}
    for name, key in RATIOS:
        series = scalars.get(key, [])
        first, last = value_at(series, early, window), value_at(series, late, window)
        if first and last is not None:
            row[name] = last / first
    angle = value_at(scalars.get(ANGLE, []), late, window)
    if angle is not None:
        row['angle (deg)'] = angle
    return row


def collect(sweep_dir: str, early: int, late: int, pattern: str = '',
            window: int = 0) -> Dict[str, dict]:
    """Setting -> {quantity: (mean, std)} and its seeds, over finished runs.

    Raises:
        FileNotFoundError: ``sweep_dir`` has no ``runs/``.
        ValueError: ``late`` is not after ``early``.
    """
    if late <= early:
        raise ValueError(f'--late {late} must come after --early {early}')
    runs_dir = osp.join(sweep_dir, 'runs')
    if not osp.isdir(runs_dir):
        raise FileNotFoundError(f'{sweep_dir}: no runs/ (a tools/analysis/sweep.py --sweep-dir?)')
    per_setting: Dict[str, List[Dict[str, float]]] = {}
    for name in sorted(os.listdir(runs_dir)):
        work_dir = osp.join(runs_dir, name)
        match = re.fullmatch(r'(.+)_seed(\d+)', name)
        if not match or not re.search(pattern, name) or not osp.isfile(osp.join(work_dir, DONE)):
            continue
        per_setting.setdefault(match.group(1), []).append(
            run_row(load_work_dir(work_dir), early, late, window))
    table = {}
    for setting, rows in per_setting.items():
        keys = [k for k in [name for name, _ in RATIOS] + ['angle (deg)']
                if all(k in row for row in rows)]
        table[setting] = dict(seeds=len(rows),
                              **{k: mean_std([row[k] for row in rows]) for k in keys})
    return table


def markdown(table: Dict[str, dict], early: int, late: int) -> str:
    columns = [f'{name}, {late} / {early}' for name, _ in RATIOS] + [f'angle (deg) at {late}']
    keys = [name for name, _ in RATIOS] + ['angle (deg)']
    lines = ['| setting | seeds | ' + ' | '.join(columns) + ' |',
             '|---' * (len(columns) + 2) + '|']
    for setting, entry in table.items():
        cells = []
        for key in keys:
            mean, std = entry.get(key, (None, None))
            cells.append('n/a' if mean is None else
                         f'{mean:.3g}' + (f' ± {std:.2g}' if std is not None else ''))
        lines.append(f'| {setting} | {entry["seeds"]} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('sweep_dir')
    parser.add_argument('--early', type=int, required=True, help='iteration of the first value')
    parser.add_argument('--late', type=int, required=True, help='iteration of the second value')
    parser.add_argument('--runs', default='', help='regular expression the run names must '
                        'contain (e.g. ^sgd_lr0.1_)')
    parser.add_argument('--window', type=int, default=0, help='average the values logged '
                        'within this many iterations of --early and --late (the gradient '
                        'norm of a single iteration is noisy)')
    parser.add_argument('--json', help='also write the table here')
    args = parser.parse_args(argv)
    try:
        table = collect(args.sweep_dir, args.early, args.late, args.runs, args.window)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f'mechanism_table: {exc}')
    if not table:
        raise SystemExit(f'mechanism_table: no finished run in {args.sweep_dir}/runs '
                         f'matches {args.runs!r}')
    print(markdown(table, args.early, args.late))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(table, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
