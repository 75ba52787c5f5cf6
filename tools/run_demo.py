"""The README's main job: WRS vs weight decay on a tiny detector and segmentor.

Generates the bundled shapes data if needed (no downloads), trains each demo
config with the same seed and schedule - once with weight decay and once with
WRS - two runs at a time (one thread each, mmengine's logs in the work dirs),
printing one progress line per run as it advances. At the end it prints the
final metric, the filter norms of the scale-invariant weights and the growth of
the effective learning rate ``lr/||w||^2`` through the constant-lr phase side
by side, and writes one figure of the norm and effective-LR curves.

    python tools/run_demo.py [--full] [--seeds N] [--jobs 2] [--iters N]
        [--configs ...] [--regularizers wd wrs] [--work-dir-root DIR]
        [--data-root DIR] [--figure PNG] [--cfg-options k=v ...]

Default: the long-schedule study's tiny models (``configs/demo/*_shapes64_demo.py``,
1/4-width ResNet-18 at 64 px). ``--full``: the 128-px demo configs
(``configs/demo/faster-rcnn_r18_fpn_shapes.py``, ``fcn_r18-d8_shapes.py``).
``--iters N`` shortens every run to N updates (for tests).
"""
import argparse
import os
import os.path as osp
import re
import subprocess
import sys
import time
import warnings

# mmengine's import of pkg_resources warns once per config read; the runs' own
# logs keep every warning.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
# This checkout's mmwrs, and the experiment helpers beside the analysis tools.
sys.path[:0] = [REPO, osp.join(REPO, 'tools', 'analysis')]
from mechanism_table import run_row  # noqa: E402
from plot_curves import plot_grid  # noqa: E402
from sweep import mean_std  # noqa: E402

from mmwrs.scalars import load_work_dir  # noqa: E402

from experiments import compose, data_root_options, final_metrics, primary_metric  # noqa: E402

TINY = ['configs/demo/faster-rcnn_r18-w16_fpn_shapes64_demo.py',
        'configs/demo/fcn_r18-w16-d8_shapes64_demo.py']
FULL = ['configs/demo/faster-rcnn_r18_fpn_shapes.py', 'configs/demo/fcn_r18-d8_shapes.py']
# (data root, generate_shapes arguments) of each mode: the tiny configs read the
# study's 300 / 200 images of 64 px, the 128-px configs the generator's default.
DATA = {'tiny': ('data/shapes64', dict(num_train=300, num_val=200, img_size=64)),
        'full': ('data/shapes', {})}
MONITOR_INTERVAL = 50  # the configs' logger interval: every logged line has the norms
# mmengine's log line of a training iteration, with its own time left (from the
# measured iteration times, so the runs' start-up does not distort it).
PROGRESS = re.compile(r'Iter\(train\)\s*\[\s*(\d+)/\d+\](?:.*?eta: ([\d:]+))?')
EFF_LR = 'lr/‖w‖²'  # mechanism_table's name of the effective-LR ratio


def clock(seconds: float) -> str:
    return f'{int(seconds) // 60}:{int(seconds) % 60:02d}'


class Run:
    """One training subprocess: a config, a regularizer and a seed."""

    def __init__(self, config, regularizer, seed, args):
        from mmengine.config import Config
        stem = osp.splitext(osp.basename(config))[0]
        self.config, self.regularizer, self.seed = config, regularizer, seed
        self.name = f'{stem}_{regularizer}_seed{seed}'
        self.work_dir = osp.join(args.work_dir_root, self.name)
        interval = max(1, args.iters // 2) if args.iters else MONITOR_INTERVAL
        composed = compose(config, regularizer, osp.join(args.work_dir_root, 'configs'),
                           name=self.name,
                           extra_hooks=[dict(type='NormMonitorHook', interval=interval)])
        cfg = Config.fromfile(composed)
        self.max_iters = args.iters or cfg.train_cfg.max_iters
        self.weight_decay = cfg.optim_wrapper.optimizer.get('weight_decay', 0)
        options = data_root_options(args.data_root, cfg.get('default_scope') == 'mmdet')
        options['randomness.seed'] = seed
        if args.iters:
            options.update({'train_cfg.max_iters': args.iters,
                            'train_cfg.val_interval': args.iters,
                            'default_hooks.logger.interval': interval,
                            'default_hooks.checkpoint.interval': args.iters})
        self.command = [sys.executable, osp.join(REPO, 'tools/train.py'), composed,
                        '--work-dir', self.work_dir, '--cfg-options',
                        *[f'{k}={v}' for k, v in options.items()], *args.cfg_options]
        self.log = osp.join(self.work_dir, 'demo_train.log')
        self.process = None
        self.start = self.seconds = None
        self.iteration = -1

    def launch(self):
        os.makedirs(self.work_dir, exist_ok=True)
        # One thread per run: two runs share the 2 cores without oversubscribing.
        env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
                   PYTHONWARNINGS='ignore')
        self.start = time.time()
        with open(self.log, 'w') as log:
            self.process = subprocess.Popen(self.command, stdout=log,
                                            stderr=subprocess.STDOUT, env=env, cwd=REPO)

    def progress(self):
        """The latest ``Iter(train) [i/n]`` of the run's log and its eta, or None."""
        with open(self.log, errors='replace') as f:
            found = PROGRESS.findall(f.read())
        return (int(found[-1][0]), found[-1][1]) if found else None

    def report(self, done=False):
        """Print a progress line when the run advanced (or finished)."""
        iteration, eta = (self.max_iters, '') if done else (self.progress() or (None, ''))
        if not done and (iteration is None or iteration == self.iteration):
            return
        self.iteration = iteration
        left = 'done' if done else f'~{eta} left' if eta else ''
        print(f'[demo] {self.name}: iter {iteration}/{self.max_iters}, '
              f'{clock(time.time() - self.start)} elapsed, {left}', flush=True)


def train_all(runs, jobs):
    """Run ``runs`` ``jobs`` at a time, printing progress; stop at a failure."""
    pending, running = list(runs), []
    while pending or running:
        while pending and len(running) < jobs:
            run = pending.pop(0)
            print(f'[demo] training {run.name} -> {run.work_dir} (log: {run.log})', flush=True)
            run.launch()
            running.append(run)
        time.sleep(1)
        for run in list(running):
            code = run.process.poll()
            if code is None:
                run.report()
                continue
            running.remove(run)
            if code:
                for other in running:
                    other.process.terminate()
                with open(run.log, errors='replace') as f:
                    tail = f.read()[-3000:]
                raise SystemExit(f'[demo] {run.name} failed (exit {code}); '
                                 f'end of {run.log}:\n{tail}')
            run.seconds = time.time() - run.start
            run.report(done=True)


def summarize(run):
    """Final metric, filter norms and effective-LR growth of a finished run.

    The growth is ``lr/||w||^2`` at 70% of the schedule over its value at 20%
    (averaged over 5% of the schedule around each): both points inside the tiny
    configs' constant-lr phase (warm-up to 100, x0.1 at 75%), so the lr divides
    out and what is left is the norms' doing.
    """
    scalars = load_work_dir(run.work_dir)
    metrics = final_metrics(run.work_dir)
    key = primary_metric(metrics)
    norms = {stat: scalars[f'{stat}/filter_norm'][-1][1]
             for stat in ('mean', 'min', 'max') if scalars.get(f'{stat}/filter_norm')}
    early, late = run.max_iters // 5, run.max_iters * 7 // 10
    growth = run_row(scalars, early, late, run.max_iters // 20).get(EFF_LR)
    return dict(metric=key, value=metrics.get(key), norms=norms, growth=growth,
                early=early, late=late, scalars=scalars)


def spread(values, digits):
    mean, std = mean_std([v for v in values if v is not None])
    if mean is None:
        return 'n/a'
    return f'{mean:.{digits}f}' + (f' ± {std:.{digits}f}' if std is not None else '')


def table(groups, seeds):
    """The side-by-side table: one row per (config, regularizer)."""
    lines = []
    header = (f'{"config":40s} {"reg":10s} {"metric":24s} {"filter norm mean [min, max]":30s} '
              f'{"lr/|w|^2 late/early":22s} {"time":>6s}')
    lines += [header, '-' * len(header)]
    for config, by_reg in groups.items():
        for label, runs in by_reg.items():
            stats = [summarize(r) for r in runs]
            key = next((s['metric'] for s in stats if s['metric']), None)
            metric = f'{key.split("/")[-1]} {spread([s["value"] for s in stats], 3)}' \
                if key else 'n/a'
            have = [s['norms'] for s in stats if len(s['norms']) == 3]
            norms = (f'{spread([n["mean"] for n in have], 3)} '
                     f'[{min(n["min"] for n in have):.3f}, {max(n["max"] for n in have):.3f}]'
                     if have else 'n/a')
            growth = spread([s['growth'] for s in stats], 2)
            window = f' ({stats[0]["late"]}/{stats[0]["early"]})'
            seconds = sum(r.seconds for r in runs) / len(runs)
            lines.append(f'{config:40s} {label:10s} {metric:24s} {norms:30s} '
                         f'{"x" + growth + window:22s} {seconds:5.0f}s')
    what = f'{seeds} seeds, mean ± std' if seeds > 1 else 'one seed'
    lines.append(f'[demo] {what}, tiny models, short schedules: this shows the mechanism '
                 '(norms and lr/|w|^2 under weight decay vs WRS), not which method is better; '
                 'the full comparison (lr x wd grids, 3 seeds) is in docs/results.md.')
    return '\n'.join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--full', action='store_true',
                        help='the 128-px demo configs (about 35 minutes on 2 cores)')
    parser.add_argument('--configs', nargs='+', help='default: the tiny (or --full) configs')
    parser.add_argument('--regularizers', nargs='+', default=['wd', 'wrs'])
    parser.add_argument('--seeds', type=int, default=1, help='seeds 0..N-1: mean ± std')
    parser.add_argument('--jobs', type=int, default=2, help='runs at a time (one thread each)')
    parser.add_argument('--iters', type=int, default=0,
                        help='train every run for this many updates instead (tests)')
    parser.add_argument('--work-dir-root', help='default: work_dirs/demo (or demo_full)')
    parser.add_argument('--data-root', help="default: the mode's (data/shapes64, or "
                        'data/shapes with --full); generated when it has no manifest.json')
    parser.add_argument('--figure', help='default: <work-dir-root>/demo.png')
    parser.add_argument('--cfg-options', nargs='+', default=[])
    args = parser.parse_args(argv)
    for name in ('seeds', 'jobs'):
        if getattr(args, name) < 1:
            parser.error(f'--{name} must be >= 1, got {getattr(args, name)}')
    if args.iters < 0:
        parser.error(f'--iters must be >= 1 (or 0: the configs\' schedules), got {args.iters}')
    mode = 'full' if args.full else 'tiny'
    args.configs = args.configs or (FULL if args.full else TINY)
    args.work_dir_root = args.work_dir_root or f'work_dirs/demo{"_full" if args.full else ""}'
    args.figure = args.figure or osp.join(args.work_dir_root, 'demo.png')
    args.generate = args.data_root is None
    args.data_root = args.data_root or DATA[mode][0]
    args.data_kwargs = DATA[mode][1]
    return args


def main(argv=None):
    args = parse_args(argv)
    import torch
    from mmengine.device import get_device
    device = get_device()  # what mmengine's Runner in each training run will use
    detail = f'{torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}' \
        if device == 'cuda' else 'one thread per run'
    print(f'[demo] training on {device} ({detail}; torch {torch.__version__}), '
          f'{args.jobs} run(s) at a time', flush=True)
    # A data set the generator wrote is used as it is when named (a test's
    # smaller one); the mode's own is checked (and rewritten if its parameters differ).
    if args.generate or not osp.isfile(osp.join(args.data_root, 'manifest.json')):
        from mmwrs.datasets import generate_shapes
        generate_shapes(args.data_root, **args.data_kwargs)
    print(f'[demo] shapes data in {args.data_root}', flush=True)
    runs = [Run(c, r, s, args) for c in args.configs for s in range(args.seeds)
            for r in args.regularizers]
    start = time.time()
    train_all(runs, args.jobs)
    groups = {}  # config -> regularizer label -> runs (over seeds)
    for run in runs:
        label = f'WD {run.weight_decay:g}' if run.regularizer == 'wd' else run.regularizer.upper()
        stem = osp.splitext(osp.basename(run.config))[0]
        groups.setdefault(stem, {}).setdefault(label, []).append(run)
    print(f'\n[demo] results after {clock(time.time() - start)} (same seed and schedule; '
          'filter norms of the scale-invariant weights WRS controls, at the end; '
          'lr/|w|^2 growth through the constant-lr phase, iterations late/early)')
    print(table(groups, args.seeds))
    # The figure: seed 0 of each regularizer, one row per config.
    curves = {f'{stem} (seed 0)': {label: load_work_dir(runs[0].work_dir)
                                   for label, runs in by_reg.items()}
              for stem, by_reg in groups.items()}
    figure = plot_grid(curves, ('filter_norm', 'eff_lr'), args.figure)
    print(f'[demo] figure: {figure}', flush=True)


if __name__ == '__main__':
    main()
