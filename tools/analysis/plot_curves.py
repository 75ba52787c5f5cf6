"""Plot effective LR, weight norm, angular update and validation metrics of runs.

Reads each work dir's newest ``*/vis_data/scalars.json`` (the aggregates
:class:`~mmwrs.engine.NormMonitorHook` logs, and the LoggerHook's validation
metrics) and writes one PNG per quantity, one line per work dir::

    python tools/analysis/plot_curves.py work_dirs/fcn_wd work_dirs/fcn_wrs \\
        --out-dir plots --labels WD WRS

Writes ``eff_lr.png`` (log scale), ``norm.png``, ``angle_deg.png``,
``grad_norm.png`` and ``metric_<key>.png`` for each of ``coco/bbox_mAP``,
``coco/segm_mAP``, ``mIoU``, ... that some run logged; a quantity no run logged
is skipped. Shaded bands are the min..max over the monitored weights.

``--train-keys loss decode.acc_seg:aAcc`` adds ``train_<key>.png`` for each
training scalar the LoggerHook logged (the mean over its logging interval);
with ``KEY:VAL_KEY`` the same axes carry the validation ``VAL_KEY`` dashed, so
the gap between training and validation shows (mmseg's ``decode.acc_seg`` and
``aAcc`` are both pixel accuracy in %, on augmented training batches and on
the validation set).
"""
import argparse
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)
from mmwrs.scalars import Series, load_work_dir, present  # noqa: E402

# (file stem, title, y label, key of the line, band keys, log y)
CURVES = (
    ('eff_lr', 'Effective learning rate lr/||w||² (mean over weights)', 'lr / ||w||²',
     'mean/eff_lr', ('min/eff_lr', 'max/eff_lr'), True),
    ('norm', 'Weight norm ||w|| (mean over weights)', '||w||',
     'mean/norm', ('min/norm', 'max/norm'), False),
    ('filter_norm', 'Filter norm (mean over all filters)', 'filter norm',
     'mean/filter_norm', ('min/filter_norm', 'max/filter_norm'), False),
    ('angle_deg', 'Angular update per step (mean over weights)', 'degrees',
     'mean/angle_deg', None, True),
    ('grad_norm', 'Gradient norm ||∇w|| (mean over weights)', '||∇w||',
     'mean/grad_norm', None, True),
)
METRICS = ('coco/bbox_mAP', 'coco/segm_mAP', 'coco/bbox_mAP_50', 'mIoU', 'mAcc', 'aAcc')
MONITOR_KEYS = tuple(curve[3] for curve in CURVES)


def load_runs(work_dirs: Sequence[str], labels: Optional[Sequence[str]] = None
              ) -> Dict[str, Dict[str, Series]]:
    """Scalars of each work dir by label (default: the work dir's name).

    Raises:
        ValueError: Label count mismatch, duplicate labels, or a work dir that
            logged none of the plotted keys (the message lists what it has).
        FileNotFoundError: A work dir without ``*/vis_data/scalars.json``.
    """
    if labels is not None and len(labels) != len(work_dirs):
        raise ValueError(f'--labels: {len(labels)} labels for {len(work_dirs)} work dirs')
    labels = list(labels) if labels else [osp.basename(osp.normpath(w)) for w in work_dirs]
    if len(set(labels)) != len(labels):
        raise ValueError(f'labels must be distinct, got {labels} (pass --labels)')
    runs = {}
    for label, work_dir in zip(labels, work_dirs):
        scalars = load_work_dir(work_dir)
        if not present(scalars, MONITOR_KEYS + METRICS):
            raise ValueError(
                f'{work_dir}: its scalars have none of {", ".join(MONITOR_KEYS + METRICS)} '
                f'(it has: {", ".join(sorted(scalars)) or "nothing"}); add '
                "dict(type='NormMonitorHook') to custom_hooks for the norm curves")
        runs[label] = scalars
    return runs


def _axes(title: str, ylabel: str, log: bool):
    import matplotlib
    matplotlib.use('Agg')  # files only, no display
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.set_title(title)
    ax.set_xlabel('iteration')
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale('log')
    ax.grid(True, alpha=0.3)
    return fig, ax


def _save(fig, path: str) -> str:
    import matplotlib.pyplot as plt
    fig.axes[0].legend(fontsize='small')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def draw_curve(ax, runs: Dict[str, Dict[str, Series]], key: str,
               band: Optional[Sequence[str]], log: bool) -> None:
    """One line per run that logged ``key`` on ``ax``, with its min..max band."""
    for label, scalars in runs.items():
        if not scalars.get(key):
            continue
        steps, values = zip(*scalars[key])
        if log:  # a 0 (e.g. the angle of a step that did not update) has no log
            points = [(s, v) for s, v in zip(steps, values) if v > 0]
            steps, values = zip(*points) if points else ((), ())
        line, = ax.plot(steps, values, label=label)
        if band and all(scalars.get(k) for k in band):
            low, high = dict(scalars[band[0]]), dict(scalars[band[1]])
            common = [s for s in steps if s in low and s in high]
            ax.fill_between(common, [low[s] for s in common], [high[s] for s in common],
                            color=line.get_color(), alpha=0.15, linewidth=0)


def plot_runs(runs: Dict[str, Dict[str, Series]], out_dir: str) -> List[str]:
    """Write the PNGs; returns their paths (a quantity no run has is skipped)."""
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for stem, title, ylabel, key, band, log in CURVES:
        if not any(s.get(key) for s in runs.values()):
            continue
        fig, ax = _axes(title, ylabel, log)
        draw_curve(ax, runs, key, band, log)
        written.append(_save(fig, osp.join(out_dir, f'{stem}.png')))
    for metric in METRICS:
        having = {label: s for label, s in runs.items() if s.get(metric)}
        if not having:
            continue
        fig, ax = _axes(f'Validation {metric}', metric, False)
        ax.set_xlabel('step of the validation (iteration, or epoch for epoch-based logs)')
        for label, scalars in having.items():
            steps, values = zip(*scalars[metric])
            ax.plot(steps, values, marker='o', label=label)
        written.append(_save(fig, osp.join(out_dir, f'metric_{metric.replace("/", "_")}.png')))
    return written


def plot_grid(groups: Dict[str, Dict[str, Dict[str, Series]]], stems: Sequence[str],
              path: str) -> str:
    """One figure: a row per group of runs (e.g. per model), a column per curve.

    Args:
        groups: Row title -> runs by label (as :func:`load_runs` gives).
        stems: File stems of :data:`CURVES` to draw, one column each
            (e.g. ``('filter_norm', 'eff_lr')``).
        path: The PNG to write.

    Returns:
        ``path``.

    Raises:
        ValueError: A stem that is not one of :data:`CURVES`.
    """
    curves = {curve[0]: curve for curve in CURVES}
    unknown = [s for s in stems if s not in curves]
    if unknown:
        raise ValueError(f'curves {unknown}: not among {", ".join(curves)}')
    import matplotlib
    matplotlib.use('Agg')  # files only, no display
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(groups), len(stems), squeeze=False,
                             figsize=(5.5 * len(stems), 3.6 * len(groups)))
    for row, (group, runs) in zip(axes, groups.items()):
        for ax, stem in zip(row, stems):
            _, title, ylabel, key, band, log = curves[stem]
            ax.set_title(f'{group}: {ylabel}', fontsize='medium')
            ax.set_xlabel('iteration')
            ax.set_ylabel(ylabel)
            if log:
                ax.set_yscale('log')
            ax.grid(True, alpha=0.3)
            draw_curve(ax, runs, key, band, log)
            if ax.lines:
                ax.legend(fontsize='small')
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_training(runs: Dict[str, Dict[str, Series]], train_keys: Sequence[str],
                  out_dir: str) -> List[str]:
    """``train_<key>.png`` per ``KEY[:VAL_KEY]`` that some run logged."""
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for spec in train_keys:
        key, _, val_key = spec.partition(':')
        having = {label: s for label, s in runs.items() if s.get(key)}
        if not having:
            continue
        title = f'Training {key}' + (f' (solid) vs validation {val_key} (dashed)'
                                     if val_key else '')
        fig, ax = _axes(title, key, key.startswith('loss'))
        for label, scalars in having.items():
            line, = ax.plot(*zip(*scalars[key]), label=label)
            if scalars.get(val_key):
                ax.plot(*zip(*scalars[val_key]), linestyle='--', marker='o',
                        color=line.get_color())
        written.append(_save(fig, osp.join(out_dir, f'train_{key.replace("/", "_")}.png')))
    return written


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('work_dirs', nargs='+', metavar='WORK_DIR',
                        help="mmengine work dirs (each with */vis_data/scalars.json)")
    parser.add_argument('--out-dir', required=True, help='where the PNG files go')
    parser.add_argument('--labels', nargs='+', help='legend label per work dir '
                        '(default: the work dir names)')
    parser.add_argument('--train-keys', nargs='*', default=[], metavar='KEY[:VAL_KEY]',
                        help='training scalars to plot (e.g. loss decode.acc_seg:aAcc); '
                        'with :VAL_KEY, that validation metric on the same axes')
    return parser.parse_args(argv)


def main(argv=None) -> List[str]:
    args = parse_args(argv)
    try:
        runs = load_runs(args.work_dirs, args.labels)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f'plot_curves: {exc}')
    written = plot_runs(runs, args.out_dir) + plot_training(runs, args.train_keys,
                                                            args.out_dir)
    for path in written:
        print(path)
    return written


if __name__ == '__main__':
    main()
