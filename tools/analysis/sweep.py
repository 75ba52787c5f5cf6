"""Robustness sweep: a config over weight-decay values and seeds, against WRS.

The paper's claim is that weight decay's benefit is very sensitive to its
value, and WRS is not. This trains ``CONFIG`` once per (weight decay, seed) with
the plain ``wd`` overlay and once per seed with each of ``--regularizers``
(default: WRS, which keeps the config's decay on the non-invariant weights),
all on the same schedule, and reports the final metric as mean ± std over
seeds per setting and the spread across the decay values.

Learning rate is the knob WRS changes (it fixes the norm, hence the effective
lr), so a fair comparison tunes it for both: ``--lrs`` sweeps
``optim_wrapper.optimizer.lr`` and ``--optimizers`` (``sgd``, ``adamw``)
replaces the config's optimizer, giving lr x wd x seed for weight decay and
lr x seed for each regularizer, per optimizer; ``--regularizer-lrs`` gives
the regularizers their own lrs (each method's grid should bracket its own
optimum). A value ``adamw:1e-3`` of ``--lrs``, ``--regularizer-lrs`` or
``--decays`` is for that optimizer only. AdamW + WRS is
``--optimizers adamw --regularizers wrs`` (the ``wrs_adamw`` overlay's setting,
with the lr swept). The results then add, per method (optimizer x
regularizer), the best, worst and median setting of its grid, the spread, and
the best-vs-best difference to weight decay with its seed error.

Each run is ``tools/train.py`` on the config composed with the overlay
(``experiments.compose``; with ``--optimizers``, plus that optimizer's
dict), with ``--cfg-options`` for the lr (``optim_wrapper.optimizer.lr``), the
decay (``optim_wrapper.optimizer.weight_decay``), the seed (``randomness.seed``), the
schedule (``--iters``) and yours. Layout of ``--sweep-dir``::

    configs/<run>.py         composed configs
    runs/<run>/              work dir; train.log; done.json once it finished
    slurm/<run>.sh           with --slurm
    results.md results.json results.png

Re-running the same command skips every run with a ``done.json`` (written
atomically after a successful run, with its metrics), and restarts (or, with
``--resume``, resumes from its last checkpoint) every run that was interrupted.

    python tools/analysis/sweep.py CONFIG --sweep-dir DIR [--decays 1e-5 ... 1e-3]
        [--seeds 0 1 2] [--regularizers wrs ...] [--lrs 0.02 sgd:0.05 adamw:1e-3 ...]
        [--regularizer-lrs 0.1 ...] [--optimizers sgd adamw] [--iters N] [--metric mIoU]
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
    decay: Optional[float]  # None: the config's (or the optimizer's) own weight decay
    seed: int
    lr: Optional[float] = None  # None: the config's (or the optimizer's) own lr
    optimizer: Optional[str] = None  # a key of OPTIMIZERS; None: the config's optimizer

    @property
    def setting(self) -> str:
        core = f'wd={self.decay:g}' if self.decay is not None else self.regularizer
        prefix = [self.optimizer] if self.optimizer else []
        prefix += [f'lr={self.lr:g}'] if self.lr is not None else []
        return ' '.join(prefix + [core])

    @property
    def name(self) -> str:
        prefix = f'wd{self.decay:g}' if self.decay is not None else self.regularizer
        if self.lr is not None:
            prefix = f'lr{self.lr:g}_{prefix}'
        if self.optimizer:
            prefix = f'{self.optimizer}_{prefix}'
        return f'{prefix}_seed{self.seed}'

    @property
    def method(self) -> str:
        """What a user picks (optimizer x regularizer); lr and decay are its knobs."""
        regularizer = 'wd' if self.decay is not None else self.regularizer
        return f'{self.optimizer}+{regularizer}' if self.optimizer else regularizer


def plan(decays: Sequence[float], seeds: Sequence[int],
         regularizers: Sequence[str]) -> List[Run]:
    """The runs of the grid: every decay x seed, then every regularizer x seed."""
    runs = [Run('wd', float(d), int(s)) for d in decays for s in seeds]
    runs += [Run(r, None, int(s)) for r in regularizers for s in seeds]
    return runs


# --optimizers: name -> the optimizer dict that replaces the config's
# (``_delete_``: no SGD momentum left in an AdamW dict). ``lr`` and
# ``weight_decay`` missing here are the config's (an SGD config's lr is no
# AdamW lr, hence AdamW's own); the run's --lrs and --decays values override
# both. AdamW's decay is decoupled (lr * wd per step), so its useful values are
# ~100x SGD's; 0.05 is what a WRS run keeps on the weights it does not
# rescale, as configs/_base_/regularizers/wrs_adamw.py does.
OPTIMIZERS = {
    'sgd': dict(type='SGD', momentum=0.9),
    'adamw': dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05),
}


def parse_grid(values: Sequence, optimizers: Sequence[Optional[str]], flag: str
               ) -> Dict[Optional[str], List[float]]:
    """Per-optimizer values of a grid flag (``--lrs``, ``--decays``).

    A bare value (``0.05``) is for every optimizer; ``NAME:VALUE``
    (``adamw:1e-3``) only for that one, since useful learning rates and decays
    differ by orders of magnitude between SGD and AdamW. Order is kept, and a
    value given twice counts once.

    Args:
        values: Floats or strings from the command line.
        optimizers: The swept optimizers (``[None]``: the config's own).
        flag: The flag's name, for error messages.

    Returns:
        dict: optimizer -> its values.

    Raises:
        ValueError: A value that is not a number, a ``NAME:`` that is not
            among ``optimizers``, or a number <= 0 for ``--lrs`` (< 0 for
            ``--decays``).
    """
    grid = {optimizer: [] for optimizer in optimizers}
    for value in values:
        name, text = (None, value)
        if isinstance(value, str) and ':' in value:
            name, text = value.split(':', 1)
            if name not in grid:
                raise ValueError(f'{flag} {value!r}: {name!r} is not a swept optimizer; '
                                 f'--optimizers are {[o for o in optimizers if o]}')
        try:
            number = float(text)
        except (TypeError, ValueError):
            raise ValueError(f'{flag} {value!r}: not a number (give VALUE or '
                             'OPTIMIZER:VALUE, e.g. adamw:1e-3)') from None
        if not (number > 0 if flag.endswith('lrs') else number >= 0) or math.isinf(number):
            allowed = '> 0' if flag.endswith('lrs') else '>= 0'
            raise ValueError(f'{flag} {value!r}: must be a finite number {allowed}')
        for optimizer in ([name] if name is not None else optimizers):
            if number not in grid[optimizer]:
                grid[optimizer].append(number)
    return grid


def plan_grid(decays: Sequence, seeds: Sequence[int], regularizers: Sequence[str],
              lrs: Sequence = (), optimizers: Sequence[str] = (),
              regularizer_lrs: Optional[Sequence] = None) -> List[Run]:
    """The runs of an lr x optimizer grid (:func:`plan` when both are empty).

    Per optimizer (the config's when ``optimizers`` is empty) and per lr (the
    config's when that optimizer has none): every decay x seed, then every
    regularizer x seed. So weight decay is swept over lr x wd x seed and WRS
    over lr x seed.

    Args:
        regularizer_lrs: The regularizers' own lrs (same syntax as ``lrs``),
            for a grid centred where the regularizer's optimum lies: WRS holds
            the norm at 1 where decay lets it shrink, so its best lr is larger.
            None: ``lrs``. An optimizer given none here keeps its ``lrs``.

    Raises:
        ValueError: An unknown optimizer (the message lists OPTIMIZERS), or a
            bad grid value (see :func:`parse_grid`).
    """
    for optimizer in optimizers:
        if optimizer not in OPTIMIZERS:
            raise ValueError(f'--optimizers {optimizer!r}: unknown; available: '
                             f'{", ".join(OPTIMIZERS)}')
    names = list(dict.fromkeys(optimizers)) or [None]
    decay_grid = parse_grid(decays, names, '--decays')
    lr_grid = parse_grid(lrs, names, '--lrs')
    regularizer_grid = dict(lr_grid)
    if regularizer_lrs is not None:
        own = parse_grid(regularizer_lrs, names, '--regularizer-lrs')
        regularizer_grid.update({name: values for name, values in own.items() if values})
    runs = []
    for optimizer in names:
        wd_lrs = lr_grid[optimizer] or [None]
        reg_lrs = regularizer_grid[optimizer] or [None]
        # One pass over the union of lrs, in order, so that a setting's decay
        # and regularizer runs sit together whenever they share an lr.
        for lr in dict.fromkeys(wd_lrs + reg_lrs):
            if lr in wd_lrs:
                runs += [Run('wd', d, int(s), lr, optimizer)
                         for d in decay_grid[optimizer] for s in seeds]
            if lr in reg_lrs:
                runs += [Run(r, None, int(s), lr, optimizer)
                         for r in regularizers for s in seeds]
    return runs


def read_done(work_dir: str) -> Optional[dict]:
    path = osp.join(work_dir, DONE)
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


# What mmdet's CocoMetric logs, and returns no metric, when a detector predicts
# no box on the whole validation set (e.g. a training that collapsed).
NO_PREDICTIONS = 'The testing results of the whole dataset is empty'


def _final_validation_empty(work_dir: str) -> bool:
    """Whether the run's last validation (its train.log's tail) predicted nothing."""
    path = osp.join(work_dir, 'train.log')
    if not osp.isfile(path):
        return False
    with open(path, errors='replace') as f:
        tail = f.readlines()[-20:]
    return any(NO_PREDICTIONS in line for line in tail)


def mark_done(work_dir: str, seconds: Optional[float] = None) -> dict:
    """Record a finished run: its final metrics in ``done.json``.

    A detector whose final validation predicted no box has no metric in its
    log; it is recorded with ``no_predictions`` and counts as 0 (the mAP of
    predicting nothing) in the results, marked there.

    Raises:
        RuntimeError: The work dir holds no logged metric (the run did not
            reach its validation), so it is not marked as finished.
    """
    metrics = final_metrics(work_dir)
    no_predictions = not metrics and _final_validation_empty(work_dir)
    if not metrics and not no_predictions:
        raise RuntimeError(f'{work_dir}: no final metric in any */vis_data/scalars.json; '
                           'did the run reach its validation (train_cfg.val_interval)?')
    record = dict(metrics=metrics, seconds=seconds, finished=time.time())
    if no_predictions:
        record['no_predictions'] = True
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


def _replace_optimizer_hooks(regularizer: str) -> List[dict]:
    """The overlay's ``ReplaceOptimizerHook`` dicts (sgdp, adamp, wrs_adamw)."""
    from mmengine.config import Config
    hooks = Config.fromfile(overlay_path(regularizer)).get('custom_hooks') or []
    return [hook for hook in hooks if hook.get('type') == 'ReplaceOptimizerHook']


def _check_optimizer_overlays(runs: Sequence[Run]) -> None:
    """Refuse overlays that would silently undo a swept optimizer.

    An overlay with a ``ReplaceOptimizerHook`` (sgdp, adamp, wrs_adamw) swaps
    the optimizer after the config is built, so ``--optimizers`` would not
    train what the run's name says. (A hook's own ``lr`` is swept instead:
    :meth:`Sweep.composed`.)

    Raises:
        ValueError: Naming the overlay, what it replaces, and what to use.
    """
    for regularizer in sorted({r.regularizer for r in runs if r.optimizer}):
        for hook in _replace_optimizer_hooks(regularizer):
            raise ValueError(
                f'--regularizers {regularizer}: the overlay replaces the optimizer '
                f"with {hook['optimizer'].get('type')!r} (ReplaceOptimizerHook), which "
                'would undo --optimizers; sweep it without --optimizers, or use '
                '--optimizers adamw --regularizers wrs for AdamW + WRS')


def optimizer_dict(config: str, optimizer: str) -> dict:
    """The optimizer dict of ``--optimizers NAME``, completed from ``config``.

    ``lr`` and ``weight_decay`` that :data:`OPTIMIZERS` does not set are the
    config's, so that a run without ``--lrs`` keeps the config's lr.
    """
    from mmengine.config import Config
    own = Config.fromfile(config).optim_wrapper.get('optimizer') or {}
    out = dict(OPTIMIZERS[optimizer])
    for key in ('lr', 'weight_decay'):
        if key not in out and key in own:
            out[key] = own[key]
    return out


def _sweep_hook_lr(path: str, lr: float) -> None:
    """Give a composed config's ``ReplaceOptimizerHook`` the run's lr.

    Such a hook (adamp, wrs_adamw) sets the base lr of the optimizer it
    builds, which would undo ``optim_wrapper.optimizer.lr``; the run's lr
    goes into the hook instead, so the run trains at the lr its name says.
    """
    from mmengine.config import Config
    hooks = [dict(hook, lr=lr) if hook.get('type') == 'ReplaceOptimizerHook' else hook
             for hook in Config.fromfile(path).to_dict().get('custom_hooks') or []]
    with open(path) as f:
        text = f.read()
    write_atomic(path, text + f'# --lrs: the optimizer hook\'s lr (tools/analysis/sweep.py)\n'
                 f'custom_hooks = {hooks!r}\n')


def _append_optimizer(path: str, config: str, optimizer: str) -> None:
    """Give a composed config the optimizer of ``--optimizers``.

    A child config may redefine what its ``_base_`` files set;
    ``_delete_=True`` replaces the config's optimizer dict instead of merging
    into it (SGD's ``momentum`` would break AdamW). Weight decay stays per
    param group as the overlay's hooks set it, so WRS still zeroes the decay
    of the weights it rescales, whatever the optimizer.
    """
    with open(path) as f:
        text = f.read()
    block = dict(_delete_=True, **optimizer_dict(config, optimizer))
    text += (f'# --optimizers {optimizer} (tools/analysis/sweep.py)\n'
             f'optim_wrapper = dict(optimizer={block!r})\n')
    write_atomic(path, text)


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
        _check_optimizer_overlays(runs)
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
        path = compose(self.config, run.regularizer, osp.join(self.sweep_dir, 'configs'),
                       name=run.name, extra_hooks=self.extra_hooks)
        if run.optimizer:
            _append_optimizer(path, self.config, run.optimizer)
        if run.lr is not None and any(hook.get('lr') is not None
                                      for hook in _replace_optimizer_hooks(run.regularizer)):
            _sweep_hook_lr(path, run.lr)
        return path

    def options(self, run: Run) -> List[str]:
        """The ``--cfg-options`` of a run (the user's last, so they win)."""
        options = [f'randomness.seed={run.seed}']
        if run.lr is not None:
            options.append(f'optim_wrapper.optimizer.lr={run.lr!r}')
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
            text = ('no box predicted, counts as 0' if record.get('no_predictions')
                    else self._metric_text(record['metrics']))
            print(f'{head} ... done {text} ({seconds:.0f} s)', flush=True)
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
                records[run] = done
        metric = self.metric or next(
            (primary_metric(d['metrics']) for d in records.values()
             if primary_metric(d['metrics'])), None)
        settings = {}
        for run in self.runs:
            entry = settings.setdefault(run.setting, dict(
                regularizer=run.regularizer, decay=run.decay, values=[], seeds=[], missing=[],
                lr=run.lr, optimizer=run.optimizer, method=run.method, no_predictions=[]))
            done = records.get(run, {})
            value = done.get('metrics', {}).get(metric) if metric else None
            if done.get('no_predictions') and metric:
                value = 0.0
                entry['no_predictions'].append(run.seed)
            if value is None:
                entry['missing'].append(run.seed)
            else:
                entry['values'].append(float(value))
                entry['seeds'].append(run.seed)
        for entry in settings.values():
            entry['mean'], entry['std'] = mean_std(entry['values'])
        results = dict(config=self.config, metric=metric, settings=settings,
                       done=len(records), total=len(self.runs))
        results['methods'] = method_summary(settings)
        write_atomic(osp.join(self.sweep_dir, 'results.json'), json.dumps(results, indent=1))
        with open(osp.join(self.sweep_dir, 'results.md'), 'w') as f:
            f.write(results_table(results))
        gridded = any(e['lr'] is not None or e['optimizer'] for e in settings.values())
        (plot_grid if gridded else plot)(results, osp.join(self.sweep_dir, 'results.png'))
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


def _default_decay(optimizer: Optional[str]) -> str:
    """The decay a regularizer run keeps on the weights it does not control."""
    decay = OPTIMIZERS.get(optimizer, {}).get('weight_decay')
    return f"{decay:g} ({optimizer}'s)" if decay is not None else "config's"


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
        decay = (f'{entry["decay"]:g}' if entry['decay'] is not None
                 else _default_decay(entry.get('optimizer')))
        seeds = ', '.join(map(str, entry['seeds'])) or '-'
        missing = ', '.join(map(str, entry['missing'])) or '-'
        if entry.get('no_predictions'):
            value += ' (0 = no box predicted: seed ' + ', '.join(
                map(str, entry['no_predictions'])) + ')'
        lines.append(f'| {setting} | {decay} | {value} | {len(entry["values"])} ({seeds}) '
                     f'| {missing} |')
    lines.append('')
    # One method (the config's optimizer, one lr): its decays, then the other
    # regularizers against the best and worst decay. Grids over lr or
    # optimizer get the per-method summary instead.
    if any(e.get('lr') is not None or e.get('optimizer') for e in results['settings'].values()):
        return ('\n'.join(lines) + '\n' + grid_table(results['settings'], metric) + '\n'
                + method_table(results.get('methods') or {}, metric))
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


def grid_table(settings: Dict[str, dict], metric: str) -> str:
    """Markdown, one table per optimizer: a row per lr, a column per decay and regularizer.

    A cell is the mean ± std over seeds (``n/a``: no finished run; ``*``: some
    seed predicted nothing and counts as 0).
    """
    def cell(entry):
        if entry['mean'] is None:
            return 'n/a'
        text = f'{entry["mean"]:.4g}' + (f' ± {entry["std"]:.2g}' if entry['std'] is not None
                                         else ' (1 seed)')
        return text + (' *' if entry.get('no_predictions') else '')

    out = []
    for optimizer in dict.fromkeys(e.get('optimizer') for e in settings.values()):
        cells = {(e['lr'], f'wd {e["decay"]:g}' if e['decay'] is not None
                  else e['regularizer']): cell(e)
                 for e in settings.values() if e.get('optimizer') == optimizer}
        lrs = list(dict.fromkeys(lr for lr, _ in cells))
        columns = list(dict.fromkeys(column for _, column in cells))
        title = optimizer or "the config's optimizer"
        out += [f'### {title}: {metric} by lr (rows) and decay or regularizer (columns)', '',
                '| lr | ' + ' | '.join(columns) + ' |', '|---' * (len(columns) + 1) + '|']
        for lr in lrs:
            name = 'config' if lr is None else f'{lr:g}'
            out.append(f'| {name} | ' + ' | '.join(cells.get((lr, c), '-') for c in columns)
                       + ' |')
        out.append('')
    return '\n'.join(out)


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def method_summary(settings: Dict[str, dict]) -> Dict[str, dict]:
    """Per method (optimizer x regularizer), over the settings of its grid.

    A setting's score is its mean over seeds; settings without a finished run
    are left out (and counted). Per method: ``best`` and ``worst`` (setting
    name, mean, std, seeds), ``median`` of the means, ``spread`` (best -
    worst). Per method other than weight decay, ``vs_wd``: its best minus the
    best weight-decay setting of the same optimizer, with the standard error
    of that difference from the seed spreads, sqrt(s_a²/n_a + s_b²/n_b)
    (None when either best has one seed).

    The best of a grid is biased upwards by seed noise, and more so for a
    larger grid (weight decay's lr x wd against WRS's lr alone), which favours
    weight decay in ``vs_wd``; read it with the seed std.
    """
    methods = {}
    for name, entry in settings.items():
        method = entry.get('method') or ('wd' if entry['decay'] is not None
                                         else entry['regularizer'])
        summary = methods.setdefault(method, dict(
            optimizer=entry.get('optimizer'),
            regularizer='wd' if entry['decay'] is not None else entry['regularizer'],
            settings=[], missing_settings=[]))
        (summary['settings'] if entry['mean'] is not None
         else summary['missing_settings']).append(name)
    for summary in methods.values():
        scored = [(name, settings[name]) for name in summary['settings']]
        if not scored:
            summary.update(best=None, worst=None, median=None, spread=None)
            continue

        def point(item):
            name, entry = item
            return dict(setting=name, mean=entry['mean'], std=entry['std'],
                        seeds=len(entry['values']))

        best = max(scored, key=lambda item: item[1]['mean'])
        worst = min(scored, key=lambda item: item[1]['mean'])
        summary.update(best=point(best), worst=point(worst),
                       median=median([e['mean'] for _, e in scored]),
                       spread=best[1]['mean'] - worst[1]['mean'])
    for summary in methods.values():
        reference = next((m for m in methods.values() if m['regularizer'] == 'wd'
                          and m['optimizer'] == summary['optimizer']), None)
        if summary['regularizer'] == 'wd' or reference is None or not (
                summary['best'] and reference['best']):
            continue
        summary['vs_wd'] = best_vs_best(summary['best'], reference['best'])
    return methods


def best_vs_best(a: dict, b: dict) -> dict:
    """``a``'s mean minus ``b``'s, with the standard error from their seed stds
    (None when either has one seed)."""
    error = (math.sqrt(a['std'] ** 2 / a['seeds'] + b['std'] ** 2 / b['seeds'])
             if a['std'] is not None and b['std'] is not None else None)
    return dict(difference=a['mean'] - b['mean'], error=error)


def method_table(methods: Dict[str, dict], metric: str) -> str:
    """Markdown of :func:`method_summary`."""
    def point(p):
        if p is None:
            return 'n/a'
        std = f' ± {p["std"]:.4f}' if p['std'] is not None else ' (one seed)'
        return f'{p["mean"]:.4f}{std} ({p["setting"]}, {p["seeds"]} seeds)'

    lines = [f'## Per method: {metric} over its grid', '',
             'Each setting scores its mean over seeds (± sample std); median and spread '
             '(best - worst) are over the settings of the method\'s grid.', '',
             '| method | settings (missing) | best | worst | median | spread |',
             '|---|---|---|---|---|---|']
    for name, m in methods.items():
        count = f'{len(m["settings"])} ({len(m["missing_settings"])})'
        med = f'{m["median"]:.4f}' if m['median'] is not None else 'n/a'
        spread = f'{m["spread"]:.4f}' if m['spread'] is not None else 'n/a'
        lines.append(f'| {name} | {count} | {point(m["best"])} | {point(m["worst"])} '
                     f'| {med} | {spread} |')
    lines.append('')
    for name, m in methods.items():
        if 'vs_wd' not in m:
            continue
        reference = f'{m["optimizer"]}+wd' if m['optimizer'] else 'wd'
        versus = m['vs_wd']
        error = (f' ± {versus["error"]:.4f} (standard error from the seed stds)'
                 if versus['error'] is not None else ' (one seed: no error estimate)')
        lines.append(f'Best vs best: {name} - {reference} = {versus["difference"]:+.4f}'
                     f'{error}.')
    if any('vs_wd' in m for m in methods.values()):
        lines.append('')
        lines.append('The best of a grid is biased upwards by seed noise, more for the '
                     'larger grid (weight decay: lr x wd; WRS: lr only).')
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


def plot_grid(results: dict, path: str) -> None:
    """An lr x optimizer grid: one panel per optimizer; per lr (one colour),
    the metric vs weight decay (error bars = std over seeds) and each other
    regularizer at that lr as a dashed horizontal line."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    entries = [e for e in results['settings'].values() if e['mean'] is not None]
    optimizers = list(dict.fromkeys(e['optimizer'] for e in results['settings'].values()))
    fig, axes = plt.subplots(1, len(optimizers), figsize=(6 * len(optimizers), 4),
                             squeeze=False)
    colors = plt.rcParams['axes.prop_cycle'].by_key()['color']
    styles = ('--', ':', '-.')
    for ax, optimizer in zip(axes[0], optimizers):
        mine = [e for e in entries if e['optimizer'] == optimizer]
        lrs = list(dict.fromkeys(e['lr'] for e in results['settings'].values()
                                 if e['optimizer'] == optimizer))
        for index, lr in enumerate(lrs):
            color = colors[index % len(colors)]
            tag = f'lr={lr:g}' if lr is not None else "config's lr"
            decays = sorted((e for e in mine if e['lr'] == lr and e['decay'] is not None),
                            key=lambda e: e['decay'])
            if decays:
                ax.errorbar([e['decay'] for e in decays], [e['mean'] for e in decays],
                            yerr=[e['std'] or 0.0 for e in decays], marker='o', capsize=3,
                            color=color, label=f'wd, {tag}')
                ax.set_xscale('log')
            others = [e for e in mine if e['lr'] == lr and e['decay'] is None]
            for number, entry in enumerate(others):
                ax.axhline(entry['mean'], color=color, linestyle=styles[number % len(styles)],
                           label=f'{entry["regularizer"]}, {tag}'
                           + (f' (±{entry["std"]:.3g})' if entry['std'] else ''))
        ax.set_title(f'{osp.basename(results["config"])}: {optimizer or "config optimizer"}',
                     fontsize=9)
        ax.set_xlabel('weight decay')
        ax.set_ylabel(f"{results['metric'] or 'metric'} (mean over seeds)")
        ax.grid(alpha=0.3)
        if mine:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', nargs='?', help='the config to sweep')
    parser.add_argument('--sweep-dir', help='where runs and results go '
                        '(default: work_dirs/sweep/<config name>)')
    parser.add_argument('--decays', nargs='*', default=list(DECAYS),
                        help='weight-decay values for the wd runs (none: no wd runs); '
                        'OPTIMIZER:VALUE for one optimizer only, e.g. adamw:0.05')
    parser.add_argument('--lrs', nargs='*', default=[],
                        help='values of optim_wrapper.optimizer.lr, each run with every '
                        "decay and regularizer (default: the config's, or the "
                        "optimizer's); OPTIMIZER:VALUE for one optimizer only")
    parser.add_argument('--regularizer-lrs', nargs='*',
                        help='the lrs of the --regularizers runs when they differ from '
                        "--lrs (default: --lrs); WRS's best lr is larger than decay's")
    parser.add_argument('--optimizers', nargs='*', default=[],
                        help=f'optimizers replacing the config\'s ({", ".join(OPTIMIZERS)}); '
                        'each gets the whole lr x decay grid and the regularizers')
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
    runs = plan_grid(args.decays, args.seeds, args.regularizers, args.lrs, args.optimizers,
                     args.regularizer_lrs)
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
