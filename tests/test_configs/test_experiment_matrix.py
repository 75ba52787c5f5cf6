"""Every experiment config of the paper's matrix trains and validates as shipped.

Each of the 66 configs in configs/<model>/ runs through ``tools/train.py``'s own
steps (argument parsing with ``--cfg-options``, config loading, the real
mmengine Runner) on mini datasets that ``tools/data/generate_shapes.py`` writes
in the stock COCO, Cityscapes and ADE20K layouts: the stock dataset classes,
pipelines, evaluators, hooks and checkpointing. The only changes are the
``--cfg-options`` of ``experiments.smoke_options`` (tools/analysis) (data root, sizes,
batch, iterations, no pretrained download), the same that configs/README.md
prints. Each test asserts what its regularizer did during the two steps and
that the evaluator logged its metric keys.
"""
import gc
import glob
import math
import os
import os.path as osp
import shlex
import shutil
import tempfile
import time

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner

from mmwrs.launch import load_config, prepare_launcher, register_codebase

from conftest import REPO, load_tool
from experiments import (SMOKE_DATA, SMOKE_IMG_SIZE, SMOKE_NUM_TRAIN, SMOKE_NUM_VAL,
                         SMOKE_TRANSFORMS, experiments, smoke_checkpoint, smoke_command,
                         smoke_dataset, smoke_options, smoke_test_command)

EXPERIMENTS = experiments()
IDS = [osp.basename(e.path)[:-3] for e in EXPERIMENTS]
# What the stock evaluator of each model must log.
METRIC_KEYS = {'faster_rcnn': {'coco/bbox_mAP'}, 'retinanet': {'coco/bbox_mAP'},
               'mask_rcnn': {'coco/bbox_mAP', 'coco/segm_mAP'}}
SEG_METRIC_KEYS = {'mIoU', 'aAcc'}
STOCK_DECAY = {'coco': 1e-4, 'cityscapes': 5e-4, 'ade20k': 5e-4}
# Rescaled weights are at their target up to float32 rounding of the norm.
NORM_TOLERANCE = 1e-4
# FixNorm's class-logit layers (its hook's default patterns).
CLASSIFIER = ('fc_cls', 'conv_cls', 'retina_cls', 'rpn_cls', 'conv_seg')
# How many of the eps-L2 hook's weights the probe checks the gradient of.
PENALTY_SAMPLE = 4


@pytest.fixture(scope='session')
def smoke_roots(tmp_path_factory):
    """The three mini datasets, generated once per session (well under 1 s)."""
    from mmwrs.datasets import generate_shapes
    base = tmp_path_factory.mktemp('smoke_data')
    return {name: generate_shapes(str(base / name), num_train=SMOKE_NUM_TRAIN,
                                  num_val=SMOKE_NUM_VAL, img_size=SMOKE_IMG_SIZE,
                                  layout=data.layout)
            for name, data in SMOKE_DATA.items()}


@pytest.fixture(scope='module')
def train_tool():
    return load_tool('tools/train.py')


@pytest.fixture(scope='module')
def test_tool():
    return load_tool('tools/test.py')


@pytest.fixture(scope='module', autouse=True)
def memoized_pretty_text():
    """mmengine formats the whole config with yapf each time a run logs, dumps
    or checkpoints it (5 times a run, ~1 s each on 2 busy cores): the same
    config gives the same text, so compute it once per config content."""
    from mmengine.config import Config
    original = Config.pretty_text.fget
    cache = {}

    def pretty_text(self):
        key = (self.filename, repr(self._cfg_dict.to_dict()))
        if key not in cache:
            cache[key] = original(self)
        return cache[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Config, 'pretty_text', property(pretty_text))
        yield


@pytest.fixture
def work_dir(tmp_path):
    """The run's work dir: in memory where there is room (the stock checkpoint
    hook writes ~0.3 GB of weights and momentum, with an fsync), else tmp_path;
    the checkpoint is deleted after the test either way."""
    shm = '/dev/shm'
    if osp.isdir(shm) and shutil.disk_usage(shm).free > 4 << 30:
        path = tempfile.mkdtemp(prefix='mmwrs-matrix-', dir=shm)
        yield path
        shutil.rmtree(path, ignore_errors=True)
    else:
        yield str(tmp_path)
        for checkpoint in glob.glob(osp.join(str(tmp_path), '*.pth')):
            os.remove(checkpoint)


def _hook(runner, *names):
    return next((h for h in runner.hooks if type(h).__name__ in names), None)


def _optimizers(runner):
    wrapper = runner.optim_wrapper
    wrappers = dict(wrapper.items()) if hasattr(wrapper, 'items') else {'': wrapper}
    return [w.optimizer for w in wrappers.values()]


class RegularizerProbe(Hook):
    """Watches what the overlay's hook does in each real training step.

    Registered after the config's hooks with the lowest priority, so its
    ``before_train`` runs after theirs (WRS targets captured, the eps-L2
    step pre-hook registered) and ``after_train_iter`` after the step.
    """

    priority = 'LOWEST'

    def __init__(self, setting):
        self.setting = setting
        self.iters = 0
        self.controlled = 0
        self.norm_errors = []  # per step: max |unit norm - target| of controlled weights
        self.classifiers = {}  # fixnorm: name -> (norm at start, weight at start)
        self.classifier_errors = []  # per step: max relative change of a classifier norm
        self.penalty_errors = []  # per step: max |grad added - eps-L2 gradient|
        self.penalty_sizes = []  # per step: max |grad added|
        self.penalized = []  # eps_l2: the weights whose gradient is checked
        self._grads = []

    def before_run(self, runner):
        if self.setting == 'eps_l2':
            # Registered now, before the eps-L2 hook registers its own pre-hook
            # (in before_train): sees the gradients without the penalty.
            for optimizer in _optimizers(runner):
                optimizer.register_step_pre_hook(self._snapshot)

    def before_train(self, runner):
        hook = _hook(runner, 'WRSHook', 'FixNormHook')
        if hook is not None and hook.rescaler is not None:
            self.controlled = len(hook.rescaler)
            for entry in hook.rescaler.entries:
                if entry.name.split('.')[-2] in CLASSIFIER:
                    self.classifiers[entry.name] = (float(entry.param.norm()),
                                                    entry.param.detach().clone())
        if self.setting == 'eps_l2':
            hook = _hook(runner, 'EpsShiftedL2Hook')
            self.penalized = hook.params[:PENALTY_SAMPLE - 1] + hook.params[-1:]
            for optimizer in _optimizers(runner):
                optimizer.register_step_pre_hook(self._check_penalty_of(hook))

    def _snapshot(self, optimizer, args, kwargs):
        self._grads = [(p, p.grad.detach().clone()) for p in self.penalized
                       if p.grad is not None]

    def _check_penalty_of(self, hook):
        from mmwrs.core.penalties import eps_shifted_l2_grad

        def check(optimizer, args, kwargs):
            errors, sizes = [], []
            for param, before in self._grads:
                added = param.grad - before
                expected = eps_shifted_l2_grad(param.detach(), hook.lam, hook.eps)
                errors.append(float((added - expected).abs().max()))
                sizes.append(float(added.abs().max()))
            self.penalty_errors.append(max(errors))
            self.penalty_sizes.append(max(sizes))
        return check

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.iters += 1
        hook = _hook(runner, 'WRSHook', 'FixNormHook')
        if hook is None or hook.rescaler is None:
            return
        norms, targets = hook.rescaler.unit_norms(), hook.rescaler.targets()
        self.norm_errors.append(max(float((norms[k] - targets[k]).abs().max())
                                    for k in norms))
        if self.classifiers:
            self.classifier_errors.append(max(
                abs(float(norms[name].item()) / start - 1)
                for name, (start, _) in self.classifiers.items()))


def _entry(cfg, dotted):
    node = cfg
    for part in dotted.split('.'):
        node = node[int(part)] if part.isdigit() else node[part]
    return node


def _release(runner):
    """Drop the visualizer of a finished run: mmengine keeps visualizers by
    name, and the stock configs all call theirs 'visualizer', so the next
    Runner of this process would reuse it, writing into this run's folder."""
    visualizer = runner.visualizer
    type(visualizer)._instance_dict.pop(visualizer.instance_name, None)


def _evaluate_checkpoint(test_tool, experiment, data_root, work_dir):
    """What tools/test.py's main() does with the command configs/README.md
    shows for the smoke run's checkpoint; returns the Runner and its metrics."""
    argv = shlex.split(smoke_test_command(experiment, data_root, work_dir))
    assert argv[:3] == ['python', 'tools/test.py', experiment.path]
    args = test_tool.parse_args([osp.join(REPO, experiment.path)] + argv[3:])
    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    register_codebase(cfg)
    prepare_launcher(cfg, args.launcher)
    cfg.load_from = args.checkpoint
    runner = Runner.from_cfg(cfg)
    try:
        return runner, runner.test()
    finally:
        _release(runner)


@pytest.mark.parametrize('experiment', EXPERIMENTS, ids=IDS)
def test_experiment_trains_and_validates(experiment, smoke_roots, train_tool, test_tool,
                                         work_dir):
    dataset = smoke_dataset(experiment)
    # The command line configs/README.md shows, through what tools/train.py's
    # main() does with it (parsed as the shell would split it).
    argv = shlex.split(smoke_command(experiment, smoke_roots[dataset], work_dir))
    assert argv[:3] == ['python', 'tools/train.py', experiment.path]
    args = train_tool.parse_args([osp.join(REPO, experiment.path)] + argv[3:])
    assert args.cfg_options == smoke_options(experiment, smoke_roots[dataset])
    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    register_codebase(cfg)
    prepare_launcher(cfg, args.launcher)
    for key, transform in SMOKE_TRANSFORMS[dataset].items():
        assert _entry(cfg, key)['type'] == transform, (key, 'the stock pipeline changed')
    start, cpu = time.time(), time.process_time()
    runner = Runner.from_cfg(cfg)
    probe = RegularizerProbe(experiment.setting)
    runner.register_hook(probe)
    try:
        runner.train()
    finally:
        _release(runner)

    # Two real steps with finite losses, then the stock checkpoint hook saved.
    assert runner.iter == probe.iters == 2
    losses = runner.message_hub.get_scalar('train/loss').data[0]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    assert [osp.basename(p) for p in glob.glob(osp.join(work_dir, '*.pth'))] == [
        smoke_checkpoint(experiment)]

    optimizer = runner.optim_wrapper.optimizer
    decays = {g['weight_decay'] for g in optimizer.param_groups}
    stock_decay = STOCK_DECAY[dataset]
    setting = experiment.setting
    if setting != 'sgdp':
        assert type(optimizer) is torch.optim.SGD
    if setting in ('wd', 'ws'):
        assert decays == {stock_decay}
    if setting in ('wrs', 'fixnorm'):
        # Controlled weights: trained by the optimizer (in its groups, with
        # decay 0), and at their target norm after each of the 2 steps.
        assert probe.controlled > 0
        hook = _hook(runner, 'WRSHook', 'FixNormHook')
        group_decay = {id(p): g['weight_decay'] for g in optimizer.param_groups
                       for p in g['params']}
        assert all(group_decay.get(id(p)) == 0.0 for p in hook.rescaler.params)
        assert len(probe.norm_errors) == 2 and max(probe.norm_errors) < NORM_TOLERANCE
        assert hook.num_updates == 2
    if setting == 'wrs':
        assert decays == {0.0, stock_decay}
        targets = hook.rescaler.targets()
        assert all(bool((t == 1.0).all()) for t in targets.values())  # unit filter norms
    if setting == 'fixnorm':
        assert decays == {0.0}
        # Every head's class-logit layer is held at its start norm while it
        # trains (they have gradients from the first step, unlike the backbone
        # convs behind ResNet's zero-initialized last BN of each block).
        assert probe.classifiers, 'no classifier layer is held by FixNorm'
        assert max(probe.classifier_errors) < NORM_TOLERANCE
        params = dict(runner.model.named_parameters())
        for name, (_, before) in probe.classifiers.items():
            assert not torch.equal(params[name].detach(), before), name
    if setting == 'sgdp':
        from mmwrs.optim import SGDP
        assert type(optimizer) is SGDP
        assert decays == {stock_decay} and optimizer.state  # it stepped
    if setting in ('ws', 'eps_l2'):
        from mmcv.cnn.bricks import ConvWS2d
        ws = [m for m in runner.model.modules() if isinstance(m, ConvWS2d)]
        converted = _hook(runner, 'WeightStandardizationHook').converted
        assert len(ws) == len(converted) > 0
        # Every conv+BN pair, frozen stages included (mmdet's frozen_stages=1).
        assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                       for m in runner.model.modules())
        if dataset == 'coco':  # the frozen stem stays frozen
            assert not runner.model.backbone.conv1.weight.requires_grad
    if setting == 'eps_l2':
        # Conv weights: decay 0 and, in each of the 2 steps, the eps-L2
        # gradient added (checked on a few of them).
        assert decays == {0.0, stock_decay}
        assert len(probe.penalty_errors) == 2
        assert max(probe.penalty_errors) < 1e-7 and min(probe.penalty_sizes) > 0

    # The one validation ran the stock evaluator, which logged its keys.
    logged = {key[len('val/'):]: buffer.current()
              for key, buffer in runner.message_hub.log_scalars.items()
              if key.startswith('val/')}
    expected = METRIC_KEYS.get(experiment.model, SEG_METRIC_KEYS)
    assert expected <= set(logged), sorted(logged)
    assert all(math.isfinite(logged[k]) for k in expected)

    if setting in ('ws', 'eps_l2'):
        # The model is converted at start-up, so evaluating the checkpoint
        # (tools/test.py) must convert it the same way before loading: then
        # it holds exactly the trained weights, and the test on the
        # validation image gives the validation's metrics.
        trained = runner.model.state_dict()
        tested, metrics = _evaluate_checkpoint(test_tool, experiment, smoke_roots[dataset],
                                               work_dir)
        weights = tested.model.state_dict()
        assert weights.keys() == trained.keys()
        assert all(torch.equal(weights[k], trained[k]) for k in trained)
        assert {k: metrics[k] for k in expected} == {k: logged[k] for k in expected}
        del tested
    print(f'{experiment.path}: {time.time() - start:.1f} s '
          f'({time.process_time() - cpu:.1f} s CPU)')
    del runner
    gc.collect()
