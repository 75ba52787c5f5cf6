"""Few-trial tuning of FixNorm's (learning rate, classifier norm) pair.

FixNorm (Zhou, Sun, Zhong; arXiv 2103.15345) has two hyperparameters that
matter: the learning rate (which alone sets the effective learning rate of the
norm-fixed weights) and the norm the class-logit layers are held at. The paper
tunes them "in a few trials"; its exact procedure is not in the material this
project has (METHODS.md: abstract only). What this tool implements is OUR
READING, a two-stage coordinate search:

1. **lr stage**: one short training per learning rate in ``--lrs`` (default:
   the config's lr x 0.5, 1, 2), all at ``--base-classifier-norm``.
2. **classifier-norm stage**: at the best lr of stage 1, one short training per
   classifier norm in ``--classifier-norms`` (the stage-1 pair is reused, not
   trained again).

The best pair is the trial with the highest final metric over both stages
(first trial wins a tie). Each trial is a ``tools/train.py`` subprocess of the
config composed with ``configs/_base_/regularizers/fixnorm.py`` (or of the
config as is, when its ``custom_hooks`` already hold a ``FixNormHook``), with
``--cfg-options optim_wrapper.optimizer.lr=LR custom_hooks.I.classifier_norm=NORM``
plus your own options (e.g. a short ``train_cfg.max_iters``). Trials are
recorded in ``WORK_DIR_ROOT/fixnorm_tune.json``; running the same command again
skips every trial that already finished with the same command line, so an
interrupted tuning resumes where it stopped.

    python tools/analysis/fixnorm_tune.py CONFIG [--lrs 0.01 0.02 0.04]
        [--base-classifier-norm 1] [--classifier-norms 0.5 2 4]
        [--metric mIoU] [--work-dir-root work_dirs/fixnorm_tune/NAME]
        [--cfg-options train_cfg.max_iters=500 ...]
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# This checkout's mmwrs, and experiments.py beside this file.
sys.path[:0] = [REPO, osp.dirname(osp.abspath(__file__))]
from experiments import METRIC_KEYS, compose, final_metrics  # noqa: E402

RESULTS = 'fixnorm_tune.json'
LR_FACTORS = (0.5, 1.0, 2.0)
# Our defaults, in absolute units (the classifier's whole-tensor norm). The
# stock heads' normal(std=0.01) init gives norms of 0.1-0.5 on the demos.
BASE_CLASSIFIER_NORM = 1.0
CLASSIFIER_NORMS = (0.5, 2.0, 4.0)


def _positive_floats(values: Sequence, option: str) -> List[float]:
    out = []
    for value in values:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float('nan')
        if not number > 0 or number == float('inf'):
            raise ValueError(f'{option}: every value must be a positive number, got {value!r}')
        out.append(number)
    if not out:
        raise ValueError(f'{option}: give at least one value')
    return out


def _fixnorm_index(hooks) -> Optional[int]:
    for index, hook in enumerate(hooks or []):
        hook_type = hook.get('type') if isinstance(hook, dict) else None
        if hook_type == 'FixNormHook' or getattr(hook_type, '__name__', None) == 'FixNormHook':
            return index
    return None


def prepare_config(config: str, out_dir: str):
    """The config to train and the index of its FixNormHook in ``custom_hooks``.

    A config without a FixNormHook is composed with the fixnorm overlay (the
    experiments.compose way); one whose ``custom_hooks`` already hold one is used as is.

    Raises:
        FileNotFoundError: ``config`` does not exist.
        ValueError: The config has its own ``custom_hooks`` but no FixNormHook
            (mmengine forbids the overlay redefining them).
    """
    from mmengine.config import Config
    if not osp.isfile(config):
        raise FileNotFoundError(f'config file not found: {config}')
    cfg = Config.fromfile(config)
    index = _fixnorm_index(cfg.get('custom_hooks'))
    if index is not None:
        return osp.abspath(config), index
    if cfg.get('custom_hooks'):
        raise ValueError(
            f'{config} defines custom_hooks '
            f'{[h.get("type") for h in cfg.custom_hooks]} without a FixNormHook, so '
            "the fixnorm overlay cannot be added (mmengine refuses a key in two _base_ "
            "files); append dict(type='FixNormHook') to its custom_hooks instead")
    composed = compose(osp.abspath(config), 'fixnorm', out_dir)
    index = _fixnorm_index(Config.fromfile(composed).get('custom_hooks'))
    return composed, index


def base_lr(config: str) -> float:
    from mmengine.config import Config
    lr = Config.fromfile(config).get('optim_wrapper', {}).get('optimizer', {}).get('lr')
    if not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f'{config}: optim_wrapper.optimizer.lr must be a positive number '
                         f'to derive default --lrs, got {lr!r}; pass --lrs')
    return float(lr)


def trial_name(lr: float, norm: float) -> str:
    return f'lr{lr:g}_cn{norm:g}'


def pick_metric(metrics: Dict[str, float], metric: Optional[str]) -> Optional[str]:
    if metric:
        return metric
    return next((k for k in ('coco/bbox_mAP', 'mIoU') if k in metrics), None)


class Tuner:
    """Runs and records the trials; see the module docstring."""

    def __init__(self, config: str, work_dir_root: str, cfg_options: Sequence[str] = (),
                 metric: Optional[str] = None, python: str = sys.executable):
        self.work_dir_root = osp.abspath(work_dir_root)
        os.makedirs(self.work_dir_root, exist_ok=True)
        self.config, self.hook_index = prepare_config(
            config, osp.join(self.work_dir_root, 'configs'))
        self.cfg_options = list(cfg_options)
        self.metric = metric
        self.python = python
        self.results_path = osp.join(self.work_dir_root, RESULTS)
        self.records: Dict[str, dict] = {}
        if osp.exists(self.results_path):
            with open(self.results_path) as f:
                self.records = json.load(f)
        self.trials: List[dict] = []  # this invocation's, in run order

    def _save(self) -> None:
        tmp = self.results_path + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(self.records, f, indent=1)
        os.replace(tmp, self.results_path)  # a killed tuner leaves a readable file

    def run(self, stage: str, lr: float, norm: float) -> dict:
        name = trial_name(lr, norm)
        work_dir = osp.join(self.work_dir_root, name)
        command = [self.python, osp.join(REPO, 'tools/train.py'), self.config,
                   '--work-dir', work_dir, '--cfg-options',
                   f'optim_wrapper.optimizer.lr={lr!r}',
                   f'custom_hooks.{self.hook_index}.classifier_norm={norm!r}',
                   *self.cfg_options]
        record = self.records.get(name)
        if record and record['status'] == 'done' and record['command'] == command:
            print(f'[fixnorm_tune] {name}: done before, reused ({work_dir})', flush=True)
        else:
            print(f'[fixnorm_tune] {stage} stage: training {name} -> {work_dir}', flush=True)
            os.makedirs(work_dir, exist_ok=True)
            start = time.time()
            with open(osp.join(work_dir, 'fixnorm_tune_trial.log'), 'w') as log:
                result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
            record = dict(lr=lr, classifier_norm=norm, command=command, work_dir=work_dir,
                          seconds=time.time() - start,
                          status='done' if result.returncode == 0 else
                          f'failed (exit {result.returncode}, see {log.name})',
                          metrics=final_metrics(work_dir) if result.returncode == 0 else {})
            self.records[name] = record
            self._save()
        trial = dict(record, stage=stage, name=name)
        self.trials.append(trial)
        return trial

    def score(self, trial: dict) -> Optional[float]:
        key = pick_metric(trial['metrics'], self.metric)
        value = trial['metrics'].get(key) if key else None
        if value is None or value != value:  # missing or NaN (a diverged run)
            return None
        return float(value)

    def best(self, trials: Sequence[dict]) -> Optional[dict]:
        scored = [t for t in trials if self.score(t) is not None]
        return max(scored, key=self.score) if scored else None


def tune(config: str, work_dir_root: str, lrs: Optional[Sequence[float]] = None,
         base_classifier_norm: float = BASE_CLASSIFIER_NORM,
         classifier_norms: Sequence[float] = CLASSIFIER_NORMS,
         metric: Optional[str] = None, cfg_options: Sequence[str] = ()) -> dict:
    """Run the two stages; returns the best pair, its metric and every trial.

    Raises:
        ValueError: Bad lrs / norms / metric.
        RuntimeError: No trial of a stage produced the metric.
    """
    if metric is not None and metric not in METRIC_KEYS:
        raise ValueError(f'--metric must be one of {METRIC_KEYS}, got {metric!r}')
    base_classifier_norm = _positive_floats([base_classifier_norm],
                                            '--base-classifier-norm')[0]
    classifier_norms = _positive_floats(classifier_norms, '--classifier-norms')
    if lrs is not None:
        lrs = _positive_floats(lrs, '--lrs')
    tuner = Tuner(config, work_dir_root, cfg_options, metric)
    if lrs is None:
        lr = base_lr(tuner.config)
        lrs = [lr * f for f in LR_FACTORS]

    stage1 = [tuner.run('lr', lr, base_classifier_norm) for lr in lrs]
    best_lr = tuner.best(stage1)
    if best_lr is None:
        raise RuntimeError('fixnorm_tune: no lr-stage trial produced a final metric '
                           f'({metric or "coco/bbox_mAP or mIoU"}); see the logs in '
                           + ', '.join(t['work_dir'] for t in stage1))
    for norm in classifier_norms:
        if norm != base_classifier_norm:
            tuner.run('norm', best_lr['lr'], norm)
    best = tuner.best(tuner.trials)
    key = pick_metric(best['metrics'], metric)
    print_table(tuner.trials, key, best)
    return dict(lr=best['lr'], classifier_norm=best['classifier_norm'], metric=key,
                value=tuner.score(best), trials=tuner.trials,
                results=tuner.results_path)


def print_table(trials: Sequence[dict], key: str, best: dict) -> None:
    print(f'\n[fixnorm_tune] {len(trials)} trials (metric: {key})')
    header = f'{"stage":6s} {"lr":>10s} {"classifier norm":>16s} {key:>14s} {"time":>7s}  work dir'
    print(header)
    print('-' * len(header))
    for t in trials:
        value = t['metrics'].get(key)
        text = f'{value:14.4f}' if isinstance(value, (int, float)) else f'{t["status"][:14]:>14s}'
        mark = '  <- best' if t is best else ''
        print(f'{t["stage"]:6s} {t["lr"]:10.4g} {t["classifier_norm"]:16.4g} {text} '
              f'{t["seconds"]:6.0f}s  {t["work_dir"]}{mark}')
    print(f'[fixnorm_tune] best: lr={best["lr"]:g}, classifier_norm='
          f'{best["classifier_norm"]:g} ({key}={best["metrics"][key]:.4f})')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='an mmdet/mmseg config (without or with FixNormHook)')
    parser.add_argument('--lrs', nargs='+', type=float,
                        help=f'stage-1 learning rates (default: config lr x {LR_FACTORS})')
    parser.add_argument('--base-classifier-norm', type=float, default=BASE_CLASSIFIER_NORM,
                        help='classifier norm of the lr stage (default %(default)s)')
    parser.add_argument('--classifier-norms', nargs='+', type=float,
                        default=list(CLASSIFIER_NORMS),
                        help='stage-2 classifier norms at the best lr (default %(default)s)')
    parser.add_argument('--metric', choices=METRIC_KEYS,
                        help='final metric to maximise (default: coco/bbox_mAP, else mIoU)')
    parser.add_argument('--work-dir-root',
                        help='trials and fixnorm_tune.json (default work_dirs/fixnorm_tune/'
                        'CONFIG_NAME); rerunning resumes')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='key=value options passed to every trial')
    args = parser.parse_args(argv)
    if args.work_dir_root is None:
        args.work_dir_root = osp.join('work_dirs', 'fixnorm_tune',
                                      osp.splitext(osp.basename(args.config))[0])
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    return tune(args.config, args.work_dir_root, args.lrs, args.base_classifier_norm,
                args.classifier_norms, args.metric, args.cfg_options)


if __name__ == '__main__':
    main()
