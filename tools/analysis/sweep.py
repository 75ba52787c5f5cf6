"""Robustness sweep: a config over weight-decay values and seeds, against WRS.

The paper's claim is that weight decay's benefit is very sensitive to its
value, and WRS is not. This trains ``CONFIG`` once per (weight decay, seed) with
the plain ``wd`` overlay and once per seed with each of ``--regularizers``
(default: WRS, which keeps the config's decay on the non-invariant weights),
all on the same schedule, and reports the final metric as mean ± std over
seeds per setting and the spread across the decay values.

Each run is ``tools/train.py`` on the config composed with the overlay
(``experiments.compose``), with ``--cfg-options`` for the decay
(``optim_wrapper.optimizer.weight_decay``), the seed (``randomness.seed``), the
schedule (``--iters``) and yours. Layout of ``--sweep-dir``::

    configs/<run>.py         composed configs
    runs/<run>/              work dir; train.log; done.json once it finished
    slurm/<run>.sh           with --slurm
    results.md results.json results.png

Re-running the same command skips every run with a ``done.json`` (written
atomically after a successful run, with its metrics), and restarts (or, with
``--resume``, resumes from its last checkpoint) every run that was interrupted.

    python tools/analysis/sweep.py CONFIG --sweep-dir DIR [--decays 1e-5 ... 1e-3]
        [--seeds 0 1 2] [--regularizers wrs ...] [--iters N] [--metric mIoU]
        [--monitor-interval N] [--resume] [--cfg-options k=v ...]
    python tools/analysis/sweep.py CONFIG --sweep-dir DIR --slurm PARTITION [--submit]
    python tools/analysis/sweep.py CONFIG --sweep-dir DIR --collect
"""
import argparse
import json
import math
import os
import os.path as osp
import shlex
import shutil
import subprocess
import sys
import time
from typing import Dict, List, NamedTuple, Optional, Sequence

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# This checkout's mmwrs, and experiments.py beside this file (also when the
# file is loaded by path, as the tests do, not run as a script).
sys.path[:0] = [REPO, osp.dirname(osp.abspath(__file__))]
from mmwrs.fileio import write_atomic  # noqa: E402

from experiments import compose, final_metrics, overlay_path, primary_metric  # noqa: E402

DECAYS = (1e-5, 5e-5, 1e-4, 5e-4, 1e-3)
DONE = 'done.json'


class Run(NamedTuple):
    """One training of the grid."""
    regularizer: str
    decay: Optional[float]  # None: the config's own weight decay
    seed: int

    @property
    def setting(self) -> str:
        return f'wd={self.decay:g}' if self.decay is not None else self.regularizer

    @property
    def name(self) -> str:
        prefix = f'wd{self.decay:g}' if self.decay is not None else self.regularizer
        return f'{prefix}_seed{self.seed}'


def plan(decays: Sequence[float], seeds: Sequence[int],
         regularizers: Sequence[str]) -> List[Run]:
    """The runs of the grid: every decay x seed, then every regularizer x seed."""
    runs = [Run('wd', float(d), int(s)) for d in decays for s in seeds]
    runs += [Run(r, None, int(s)) for r in regularizers for s in seeds]
    return runs


def read_done(work_dir: str) -> Optional[dict]:
    path = osp.join(work_dir, DONE)
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def mark_done(work_dir: str, seconds: Optional[float] = None) -> dict:
    """Record a finished run: its final metrics in ``done.json``.

    Raises:
        RuntimeError: The work dir holds no logged metric (the run did not
            reach its validation), so it is not marked as finished.
    """
    metrics = final_metrics(work_dir)
    if not metrics:
        raise RuntimeError(f'{work_dir}: no final metric in any */vis_data/scalars.json; '
                           'did the run reach its validation (train_cfg.val_interval)?')
    record = dict(metrics=metrics, seconds=seconds, finished=time.time())
    write_atomic(osp.join(work_dir, DONE), json.dumps(record, indent=1))
    return record


def _check_iters(config: str, iters: int) -> None:
    """``--iters`` sets ``train_cfg.max_iters``: only for iteration-based loops.

    Raises:
        ValueError: ``iters`` < 1, or the config trains by epochs.
    """
    if iters < 1:
        raise ValueError(f'--iters must be a positive integer, got {iters}')
    from mmengine.config import Config
    train_cfg = Config.fromfile(config).get('train_cfg') or {}
    if 'max_iters' not in train_cfg:
        raise ValueError(
            f'--iters: {config} has no train_cfg.max_iters (train_cfg.type='
            f"{train_cfg.get('type')!r}); set an epoch schedule with "
            '--cfg-options train_cfg.max_epochs=N instead')


class Sweep:
    """The grid of one config; see the module docstring."""

    def __init__(self, config: str, sweep_dir: str, runs: Sequence[Run],
                 iters: Optional[int] = None, cfg_options: Sequence[str] = (),
                 monitor_interval: int = 0, metric: Optional[str] = None,
                 python: str = sys.executable):
        if not osp.isfile(config):
            raise FileNotFoundError(f'config file not found: {config}')
        if iters is not None:
            _check_iters(config, iters)
        if monitor_interval < 0:
            raise ValueError(f'--monitor-interval must be >= 0 (0 = off), got {monitor_interval}')
        for regularizer in {r.regularizer for r in runs}:
            overlay_path(regularizer)  # fails early, naming the overlays that exist
        self.config = osp.abspath(config)
        self.sweep_dir = osp.abspath(sweep_dir)
        self.runs = list(runs)
        self.iters = iters
        self.cfg_options = list(cfg_options)
        self.extra_hooks = ([dict(type='NormMonitorHook', interval=monitor_interval)]
                            if monitor_interval else [])
        self.metric = metric
        self.python = python

    def work_dir(self, run: Run) -> str:
        return osp.join(self.sweep_dir, 'runs', run.name)

    def composed(self, run: Run) -> str:
        return compose(self.config, run.regularizer, osp.join(self.sweep_dir, 'configs'),
                       name=run.name, extra_hooks=self.extra_hooks)

    def options(self, run: Run) -> List[str]:
        """The ``--cfg-options`` of a run (the user's last, so they win)."""
        options = [f'randomness.seed={run.seed}']
        if run.decay is not None:
            options.append(f'optim_wrapper.optimizer.weight_decay={run.decay!r}')
        if self.iters is not None:
            options += [f'train_cfg.max_iters={self.iters}',
                        f'train_cfg.val_interval={self.iters}']
        return options + self.cfg_options

    def train_args(self, run: Run, resume: bool) -> List[str]:
        args = [self.composed(run), '--work-dir', self.work_dir(run)]
        if resume:
            args.append('--resume')
        return args + ['--cfg-options', *self.options(run)]

    # -- local runs ---------------------------------------------------------

    def run_all(self, resume: bool = False) -> List[Run]:
        """Train every run not yet done, in order; returns the failed ones."""
        failed = []
        total = len(self.runs)
        for index, run in enumerate(self.runs, 1):
            head = f'[sweep] {index}/{total} {run.setting} seed={run.seed}'
            work_dir = self.work_dir(run)
            done = read_done(work_dir)
            if done is not None:
                print(f'{head} ... already done {self._metric_text(done["metrics"])}',
                      flush=True)
                continue
            interrupted = osp.isdir(work_dir)
            if interrupted and not resume:
                shutil.rmtree(work_dir)  # a fresh start must not mix two runs' logs
            os.makedirs(work_dir, exist_ok=True)
            command = [self.python, osp.join(REPO, 'tools', 'train.py'),
                       *self.train_args(run, resume=interrupted and resume)]
            what = ('resuming' if interrupted and resume
                    else 'restarting' if interrupted else 'training')
            print(f'{head} ... {what} -> {osp.relpath(work_dir, self.sweep_dir)}', flush=True)
            start = time.time()
            with open(osp.join(work_dir, 'train.log'), 'a') as log:
                log.write(f'$ {shlex.join(command)}\n')
                log.flush()
                # In the caller's directory: relative paths in the config (data
                # roots) mean what they mean for tools/train.py run from there.
                returncode = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT)
            seconds = time.time() - start
            if returncode != 0:
                failed.append(run)
                print(f'{head} ... FAILED (exit {returncode}, {seconds:.0f} s); see '
                      f'{osp.join(work_dir, "train.log")}', flush=True)
                continue
            try:
                record = mark_done(work_dir, seconds)
            except RuntimeError as error:
                failed.append(run)
                print(f'{head} ... FAILED: {error}', flush=True)
                continue
            print(f'{head} ... done {self._metric_text(record["metrics"])} ({seconds:.0f} s)',
                  flush=True)
        return failed

    def _metric_text(self, metrics: Dict[str, float]) -> str:
        key = primary_metric(metrics, self.metric)
        if key is None or key not in metrics:
            return f'(no {self.metric or "metric"} logged)'
        return f'{key.split("/")[-1]}={metrics[key]:.4g}'

    # -- Slurm ----------------------------------------------------------------

    def slurm_script(self, run: Run, partition: str, gpus: int, gpus_per_node: int,
                     cpus_per_task: int, srun_args: str = '') -> str:
        """An sbatch script: ``tools/slurm_train.sh`` then the done marker."""
        work_dir = self.work_dir(run)
        job = f'sweep-{run.name}'
        # gpus_per_node=0: a CPU partition, no GPUs requested ("GPUS" counts processes).
        use_gres = 1 if gpus_per_node > 0 else 0
        per_node = min(gpus, gpus_per_node) if gpus_per_node else gpus
        nodes = math.ceil(gpus / per_node)
        directives = [f'#SBATCH --job-name={job}', f'#SBATCH --partition={partition}',
                      f'#SBATCH --nodes={nodes}', f'#SBATCH --ntasks={gpus}',
                      f'#SBATCH --ntasks-per-node={per_node}',
                      f'#SBATCH --cpus-per-task={cpus_per_task}',
                      f'#SBATCH --output={osp.join(work_dir, "slurm-%j.out")}']
        if use_gres:
            directives.append(f'#SBATCH --gres=gpu:{per_node}')
        # --resume: a requeued or resubmitted job continues from its last
        # checkpoint (and starts fresh when there is none).
        train = [osp.join(REPO, 'tools', 'slurm_train.sh'), partition, job,
                 self.composed(run), work_dir, '--resume',
                 '--cfg-options', *self.options(run)]
        env = (f'GPUS={gpus} GPUS_PER_NODE={per_node} '
               f'CPUS_PER_TASK={cpus_per_task} USE_GRES={use_gres} '
               f'PYTHON={shlex.quote(self.python)} SRUN_ARGS={shlex.quote(srun_args)}')
        mark = [self.python, osp.join(REPO, 'tools', 'analysis', 'sweep.py'),
                '--mark-done', work_dir, '--seconds']
        return '\n'.join([
            '#!/usr/bin/env bash',
            *directives,
            f'# {run.setting} seed={run.seed}: generated by tools/analysis/sweep.py',
            'set -euo pipefail',
            f'mkdir -p {shlex.quote(work_dir)}',
            f'cd {shlex.quote(os.getcwd())}',  # where relative config paths resolve
            '# Jobs of one sweep often share a node: one rendezvous port per job.',
            'export MASTER_PORT=${MASTER_PORT:-$((20000 + SLURM_JOB_ID % 20000))}',
            f'{env} {shlex.join(train)}',
            f'{shlex.join(mark)} "$SECONDS"',
            '',
        ])

    def emit_slurm(self, partition: str, submit: bool = False, **resources) -> List[str]:
        """Write ``slurm/<run>.sh`` for every run not done; ``sbatch`` them if asked."""
        slurm_dir = osp.join(self.sweep_dir, 'slurm')
        os.makedirs(slurm_dir, exist_ok=True)
        scripts = []
        for run in self.runs:
            if read_done(self.work_dir(run)) is not None:
                print(f'[sweep] {run.setting} seed={run.seed} ... already done', flush=True)
                continue
            path = osp.join(slurm_dir, f'{run.name}.sh')
            # Slurm opens the job's output file (in the work dir) before the
            # script runs, so the directory must exist already.
            os.makedirs(self.work_dir(run), exist_ok=True)
            with open(path, 'w') as f:
                f.write(self.slurm_script(run, partition, **resources))
            os.chmod(path, 0o755)
            scripts.append(path)
            if submit:
                output = subprocess.run(['sbatch', path], check=True, capture_output=True,
                                        text=True).stdout.strip()
                print(f'[sweep] {run.setting} seed={run.seed} ... {output}', flush=True)
            else:
                print(f'[sweep] {run.setting} seed={run.seed} ... wrote '
                      f'{osp.relpath(path, self.sweep_dir)}', flush=True)
        return scripts

    # -- results --------------------------------------------------------------

    def collect(self) -> dict:
        """Metrics of the finished runs, per setting; writes results.{json,md,png}."""
        records = {}
        for run in self.runs:
            done = read_done(self.work_dir(run))
            if done is not None:
                records[run] = done['metrics']
        metric = self.metric or next(
            (primary_metric(m) for m in records.values() if primary_metric(m)), None)
        settings = {}
        for run in self.runs:
            entry = settings.setdefault(run.setting, dict(
                regularizer=run.regularizer, decay=run.decay, values=[], seeds=[], missing=[]))
            value = records.get(run, {}).get(metric) if metric else None
            if value is None:
                entry['missing'].append(run.seed)
            else:
                entry['values'].append(float(value))
                entry['seeds'].append(run.seed)
        for entry in settings.values():
            entry['mean'], entry['std'] = mean_std(entry['values'])
        results = dict(config=self.config, metric=metric, settings=settings,
                       done=len(records), total=len(self.runs))
        write_atomic(osp.join(self.sweep_dir, 'results.json'), json.dumps(results, indent=1))
        with open(osp.join(self.sweep_dir, 'results.md'), 'w') as f:
            f.write(results_table(results))
        plot(results, osp.join(self.sweep_dir, 'results.png'))
        return results


def mean_std(values: Sequence[float]):
    """Mean and sample standard deviation (std None for one value; both None for none)."""
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, None  # one seed says nothing about the spread
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def format_mean_std(entry: dict) -> str:
    if entry['mean'] is None:
        return 'n/a'
    if entry['std'] is None:
        return f'{entry["mean"]:.4f} (one seed)'
    return f'{entry["mean"]:.4f} ± {entry["std"]:.4f}'


def results_table(results: dict) -> str:
    """Markdown: mean ± std per setting, then the spread across settings."""
    metric = results['metric'] or 'metric'
    lines = [f'# Sweep of `{osp.basename(results["config"])}`', '',
             f'{results["done"]}/{results["total"]} runs finished; {metric}, '
             'mean ± std over seeds (sample std).', '',
             f'| setting | weight decay | {metric} | runs (seeds) | missing seeds |',
             '|---|---|---|---|---|']
    for setting, entry in results['settings'].items():
        value = format_mean_std(entry)
        decay = f'{entry["decay"]:g}' if entry['decay'] is not None else "config's"
        seeds = ', '.join(map(str, entry['seeds'])) or '-'
        missing = ', '.join(map(str, entry['missing'])) or '-'
        lines.append(f'| {setting} | {decay} | {value} | {len(entry["values"])} ({seeds}) '
                     f'| {missing} |')
    lines.append('')
    decays = {s: e for s, e in results['settings'].items()
              if e['decay'] is not None and e['mean'] is not None}
    if decays:
        best = max(decays, key=lambda s: decays[s]['mean'])
        worst = min(decays, key=lambda s: decays[s]['mean'])
        lines.append(f'Across weight-decay values: best {best} ({decays[best]["mean"]:.4f}), '
                     f'worst {worst} ({decays[worst]["mean"]:.4f}), spread (max - min of '
                     f'the means) {decays[best]["mean"] - decays[worst]["mean"]:.4f}.')
    for setting, entry in results['settings'].items():
        if entry['decay'] is None and entry['mean'] is not None:
            text = f'{setting}: {format_mean_std(entry)}'
            if decays:
                text += (f' ({entry["mean"] - decays[best]["mean"]:+.4f} vs the best decay, '
                         f'{entry["mean"] - decays[worst]["mean"]:+.4f} vs the worst)')
            lines.append(text + '.')
    return '\n'.join(lines) + '\n'


def plot(results: dict, path: str) -> None:
    """Metric vs weight decay (log x, error bars = std over seeds); other
    regularizers as horizontal lines with a ±std band."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    decay_entries = sorted((e for e in results['settings'].values()
                            if e['decay'] is not None and e['mean'] is not None),
                           key=lambda e: e['decay'])
    if decay_entries:
        ax.errorbar([e['decay'] for e in decay_entries], [e['mean'] for e in decay_entries],
                    yerr=[e['std'] or 0.0 for e in decay_entries], marker='o', capsize=4,
                    label='weight decay')
        ax.set_xscale('log')
    colors = plt.rcParams['axes.prop_cycle'].by_key()['color'][1:]
    others = [(s, e) for s, e in results['settings'].items()
              if e['decay'] is None and e['mean'] is not None]
    for (setting, entry), color in zip(others, colors * (len(others) // len(colors) + 1)):
        ax.axhline(entry['mean'], color=color, label=setting)
        if entry['std']:
            ax.axhspan(entry['mean'] - entry['std'], entry['mean'] + entry['std'],
                       color=color, alpha=0.2)
    ax.set_xlabel('weight decay')
    ax.set_ylabel(f"{results['metric'] or 'metric'} (mean ± std over seeds)")
    ax.set_title(osp.basename(results['config']))
    ax.grid(alpha=0.3)
    if decay_entries or others:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', nargs='?', help='the config to sweep')
    parser.add_argument('--sweep-dir', help='where runs and results go '
                        '(default: work_dirs/sweep/<config name>)')
    parser.add_argument('--decays', nargs='*', type=float, default=list(DECAYS),
                        help='weight-decay values for the wd runs (none: no wd runs)')
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    parser.add_argument('--regularizers', nargs='*', default=['wrs'],
                        help="overlays run with the config's own decay, once per seed")
    parser.add_argument('--iters', type=int, help='train_cfg.max_iters (and val_interval) '
                        'of every run, for iteration-based configs; the param_scheduler '
                        'is yours to match (--cfg-options)')
    parser.add_argument('--metric', help='the metric to report (default: mIoU, '
                        'coco/segm_mAP or coco/bbox_mAP, the first logged)')
    parser.add_argument('--monitor-interval', type=int, default=0,
                        help="add dict(type='NormMonitorHook', interval=N) to every "
                        'run (0: off)')
    parser.add_argument('--resume', action='store_true',
                        help='resume interrupted runs from their last checkpoint '
                        '(default: restart them)')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='key=value overrides for every run')
    parser.add_argument('--collect', action='store_true',
                        help='only build the results from the finished runs')
    parser.add_argument('--slurm', metavar='PARTITION',
                        help='write sbatch scripts (slurm/<run>.sh) instead of training')
    parser.add_argument('--submit', action='store_true', help='with --slurm: sbatch them')
    parser.add_argument('--gpus', type=int, default=8, help='--slurm: processes per run')
    parser.add_argument('--gpus-per-node', type=int, default=8,
                        help='--slurm: 0 requests no GPUs (CPU partitions)')
    parser.add_argument('--cpus-per-task', type=int, default=5)
    parser.add_argument('--srun-args', default='', help='--slurm: extra srun arguments')
    parser.add_argument('--mark-done', metavar='WORK_DIR', help=argparse.SUPPRESS)
    parser.add_argument('--seconds', type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mark_done is None and args.config is None:
        parser.error('the config to sweep is required')
    if args.submit and not args.slurm:
        parser.error('--submit needs --slurm PARTITION')
    if not args.decays and not args.regularizers:
        parser.error('nothing to run: give --decays and/or --regularizers')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.mark_done is not None:  # the last line of an emitted Slurm script
        mark_done(args.mark_done, args.seconds)
        return 0
    sweep_dir = args.sweep_dir or osp.join(
        'work_dirs', 'sweep', osp.splitext(osp.basename(args.config))[0])
    runs = plan(args.decays, args.seeds, args.regularizers)
    sweep = Sweep(args.config, sweep_dir, runs, iters=args.iters,
                  cfg_options=args.cfg_options, monitor_interval=args.monitor_interval,
                  metric=args.metric)
    failed = []
    if args.slurm:
        sweep.emit_slurm(args.slurm, submit=args.submit, gpus=args.gpus,
                         gpus_per_node=args.gpus_per_node, cpus_per_task=args.cpus_per_task,
                         srun_args=args.srun_args)
        if not args.collect:
            return 0
    elif not args.collect:
        failed = sweep.run_all(resume=args.resume)
    results = sweep.collect()
    print(f'[sweep] {results["done"]}/{results["total"]} runs done; results in '
          f'{osp.join(sweep.sweep_dir, "results.md")} and results.png', flush=True)
    with open(osp.join(sweep.sweep_dir, 'results.md')) as f:
        print(f.read())
    if failed:
        print(f'[sweep] {len(failed)} run(s) failed: {", ".join(r.name for r in failed)}',
              flush=True)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
