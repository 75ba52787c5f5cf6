"""What the experiment tools share: composing configs, reading results, the matrix.

``tools/run_demo.py``, ``tools/analysis/sweep.py``,
``tools/analysis/fixnorm_tune.py`` and ``tools/analysis/gen_experiment_configs.py``
use these helpers (with this folder on ``sys.path``). They live with the tools,
not in the installed package, because they work on this repository's
``configs/`` tree. Nothing here imports torch or mmengine at module level, so
emitting Slurm scripts or rendering tables stays cheap.
"""
import glob
import os
import os.path as osp
import re
from typing import Dict, List, NamedTuple, Optional, Sequence

from mmwrs.fileio import write_atomic
from mmwrs.scalars import load_work_dir

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# The overlays ship inside the package (package data); the repo's
# configs/_base_/regularizers links there, so experiment configs name them relatively.
REGULARIZER_DIR = osp.join(REPO, 'mmwrs', 'configs', 'regularizers')
# Overlays of the study only (e.g. a WRS target schedule measured on one of its
# runs): not shipped, since their numbers hold for the study's schedules alone.
STUDY_OVERLAY_DIR = osp.join(REPO, 'configs', 'study', 'overlays')
OVERLAY_DIRS = (REGULARIZER_DIR, STUDY_OVERLAY_DIR)
# Final metrics read back from a run; the first present in PRIMARY_METRICS is
# what a sweep or a table reports unless told otherwise.
METRIC_KEYS = ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP', 'mIoU', 'aAcc')
PRIMARY_METRICS = ('mIoU', 'coco/segm_mAP', 'coco/bbox_mAP')


def regularizers() -> List[str]:
    """Names of the overlays: the shipped ones, then the study's own."""
    return sorted(osp.splitext(osp.basename(p))[0]
                  for folder in OVERLAY_DIRS for p in glob.glob(osp.join(folder, '*.py')))


def overlay_path(regularizer: str) -> str:
    """Absolute path of a regularizer overlay (shipped, or the study's own).

    Raises:
        ValueError: No overlay of that name, or one in both folders; the
            message lists the overlays that exist.
    """
    paths = [osp.join(folder, f'{regularizer}.py') for folder in OVERLAY_DIRS]
    found = [path for path in paths if osp.isfile(path)]
    if len(found) != 1:
        problem = 'no overlay' if not found else 'an overlay in both'
        raise ValueError(f'regularizer {regularizer!r}: {problem} of {paths}; '
                         f'available: {", ".join(regularizers())}')
    return found[0]


def compose(config: str, regularizer: str, out_dir: str, name: Optional[str] = None,
            extra_hooks: Sequence[dict] = ()) -> str:
    """Write a child config: ``config`` plus a regularizer overlay.

    Args:
        config: The config to extend (relative paths are taken from the repo
            root, as the demo's are).
        regularizer: Name of an overlay in ``configs/_base_/regularizers``.
        out_dir: Where the child file goes (created if missing).
        name: File name stem; default ``<config stem>_<regularizer>``.
        extra_hooks: Hook dicts appended to the composed ``custom_hooks``.
            mmengine refuses a key defined in two ``_base_`` files, but the
            child may redefine one, so the child gets the composed config's
            hooks followed by these, written out literally.

    Returns:
        The child config's path.
    """
    os.makedirs(out_dir, exist_ok=True)
    stem = name or f'{osp.splitext(osp.basename(config))[0]}_{regularizer}'
    path = osp.join(out_dir, f'{stem}.py')
    base = config if osp.isabs(config) else osp.join(REPO, config)
    bases = [base, overlay_path(regularizer)]
    text = f'_base_ = {bases!r}\n'
    write_atomic(path, text)
    if extra_hooks:
        from mmengine.config import Config
        hooks = Config.fromfile(path).to_dict().get('custom_hooks') or []
        hooks = list(hooks) + [dict(h) for h in extra_hooks]
        write_atomic(path, text + f'custom_hooks = {hooks!r}\n')
    return path


def data_root_options(data_root: str, detection: bool) -> Dict[str, str]:
    """cfg-options that point a shapes config's dataloaders at ``data_root``.

    The COCO evaluator of a detection config names its annotation file
    itself; segmentation evaluators take no file.
    """
    root = data_root.rstrip('/') + '/'
    options = {f'{split}_dataloader.dataset.data_root': root
               for split in ('train', 'val', 'test')}
    if detection:
        for split in ('val', 'test'):
            options[f'{split}_evaluator.ann_file'] = root + 'annotations/instances_val.json'
    return options


def final_metrics(work_dir: str) -> Dict[str, float]:
    """The last value of each of :data:`METRIC_KEYS` logged in ``work_dir``.

    Reads the newest ``<timestamp>/vis_data/scalars.json`` (a resumed run
    writes a new timestamp directory; its log holds the final validation);
    empty when the run logged none.
    """
    try:
        scalars = load_work_dir(work_dir)
    except FileNotFoundError:
        return {}
    return {key: series[-1][1] for key, series in scalars.items() if key in METRIC_KEYS}


def primary_metric(metrics: Dict[str, float], metric: Optional[str] = None) -> Optional[str]:
    """``metric`` if given, else the first of :data:`PRIMARY_METRICS` present."""
    if metric:
        return metric
    return next((k for k in PRIMARY_METRICS if k in metrics), None)


# ---------------------------------------------------------------------------
# The paper's experiment matrix (configs/<model>/..., listed in configs/README.md)
# ---------------------------------------------------------------------------

class Experiment(NamedTuple):
    """One experiment config: a stock config plus one regularizer setting."""
    path: str  # relative to the repo root
    stock: str  # mmdet::... / mmseg::...
    setting: str  # key of SETTINGS
    overlay: str  # overlay file name stem in configs/_base_/regularizers

    @property
    def model(self) -> str:
        return self.path.split('/')[1]


# The regularizer settings of the matrix: name -> (overlay, file-name variant).
# The variant goes before the schedule in the file name, mmdet style
# (faster-rcnn_r50_fpn_gn-ws-all_1x_coco.py); '-' inside a variant since '_'
# separates the fields of OpenMMLab names.
SETTINGS = {
    'wd': ('wd', 'wd'),
    'wrs': ('wrs', 'wrs'),
    'ws': ('ws', 'ws'),
    'sgdp': ('sgdp', 'sgdp'),
    'fixnorm': ('fixnorm', 'fixnorm'),
    # The eps-shifted L2 penalty is meant for weight-standardized networks.
    'eps_l2': ('ws_eps_l2', 'ws-eps-l2'),
}
# (model directory, stock config); the paper's detection and segmentation models.
STOCK_CONFIGS = (
    ('faster_rcnn', 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'),
    ('retinanet', 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'),
    ('mask_rcnn', 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'),
    ('fcn', 'mmseg::fcn/fcn_r50-d8_4xb2-80k_cityscapes-512x1024.py'),
    ('fcn', 'mmseg::fcn/fcn_r50-d8_4xb4-80k_ade20k-512x512.py'),
    ('pspnet', 'mmseg::pspnet/pspnet_r50-d8_4xb2-80k_cityscapes-512x1024.py'),
    ('pspnet', 'mmseg::pspnet/pspnet_r50-d8_4xb4-80k_ade20k-512x512.py'),
    ('deeplabv3', 'mmseg::deeplabv3/deeplabv3_r50-d8_4xb2-80k_cityscapes-512x1024.py'),
    ('deeplabv3', 'mmseg::deeplabv3/deeplabv3_r50-d8_4xb4-80k_ade20k-512x512.py'),
    ('deeplabv3plus', 'mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb2-80k_cityscapes-512x1024.py'),
    ('deeplabv3plus', 'mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb4-80k_ade20k-512x512.py'),
)
# The schedule part of a stock name, before which the variant is inserted.
_SCHEDULE = re.compile(r'_(1x_coco|4xb\d+-\d+k_[a-z0-9]+-\d+x\d+)\.py$')


def experiment_name(stock: str, setting: str) -> str:
    """``faster-rcnn_r50_fpn_1x_coco.py`` + wrs -> ``faster-rcnn_r50_fpn_wrs_1x_coco.py``."""
    stock_file = stock.split('::', 1)[1].rsplit('/', 1)[1]
    match = _SCHEDULE.search(stock_file)
    if match is None:
        raise ValueError(f'{stock}: no schedule suffix to put the variant before')
    return f'{stock_file[:match.start()]}_{SETTINGS[setting][1]}{stock_file[match.start():]}'


def experiments() -> List[Experiment]:
    """Every experiment config of the matrix, in table order."""
    out = []
    for model, stock in STOCK_CONFIGS:
        for setting, (overlay, _) in SETTINGS.items():
            path = f'configs/{model}/{experiment_name(stock, setting)}'
            out.append(Experiment(path, stock, setting, overlay))
    return out


def experiment_config_text(experiment: Experiment) -> str:
    """The content of an experiment config file."""
    return (f'# {experiment.setting}: the stock config + regularizers/{experiment.overlay}.py\n'
            '# (generated by tools/analysis/gen_experiment_configs.py)\n'
            f"_base_ = [\n    '{experiment.stock}',\n"
            f"    '../_base_/regularizers/{experiment.overlay}.py',\n]\n")


def stock_gpus(path: str) -> int:
    """Processes the stock schedule assumes: ``4xb2`` -> 4; mmdet's 1x: 8 (x2)."""
    match = re.search(r'_(\d+)xb\d+-', osp.basename(path))
    return int(match.group(1)) if match else 8


def launch_commands(path: str) -> Dict[str, str]:
    """How configs/README.md tells to launch an experiment config."""
    stem = osp.splitext(osp.basename(path))[0]
    gpus = stock_gpus(path)
    return {
        'single': f'python tools/train.py {path}',
        'dist': f'tools/dist_train.sh {path} {gpus}',
        'slurm': f'GPUS={gpus} tools/slurm_train.sh PARTITION {stem} {path} work_dirs/{stem}',
    }


TABLE_BEGIN = '<!-- experiment table: generated by tools/analysis/gen_experiment_configs.py -->'
TABLE_END = '<!-- end of experiment table -->'


def experiment_table() -> str:
    """The markdown table of every experiment config and its launch commands."""
    lines = [TABLE_BEGIN,
             '| model | dataset | regularizer | config | single process '
             '| stock GPU count, one machine | Slurm |',
             '|---|---|---|---|---|---|---|']
    for experiment in experiments():
        commands = launch_commands(experiment.path)
        dataset = experiment.stock.rsplit('_', 1)[1][:-3]
        # The dataset links to its smoke-data section (layout, test command).
        dataset = f'[{dataset}](#smoke-data-{smoke_dataset(experiment)})'
        lines.append(
            f'| {experiment.model} | {dataset} | {experiment.setting} | '
            f'[{osp.basename(experiment.path)}]({experiment.path[len("configs/"):]}) | '
            f'`{commands["single"]}` | `{commands["dist"]}` | `{commands["slurm"]}` |')
    lines += ['', SMOKE_INTRO, '', smoke_sections(), TABLE_END]
    return '\n'.join(lines) + '\n'


# ---------------------------------------------------------------------------
# Smoke runs: every experiment config, as shipped, for two iterations and one
# validation on mini datasets in its stock layout (tools/data/generate_shapes.py
# --layout ...); tests/test_configs/test_experiment_matrix.py runs them and
# configs/README.md shows the commands.
# ---------------------------------------------------------------------------

class SmokeData(NamedTuple):
    """A stock dataset family and how the smoke runs shrink it."""
    layout: str  # generate_shapes(layout=...)
    data_root: str  # where the stock configs look for it
    models: str  # the experiment models using it (for the README)
    # cfg-options shrinking that family's stock pipelines and loaders
    options: Dict[str, object]


# Images the generator writes for the smoke runs (height; Cityscapes: 2:1).
SMOKE_IMG_SIZE = 64
SMOKE_NUM_TRAIN, SMOKE_NUM_VAL = 24, 8
# What every smoke run changes: no DataLoader worker processes (2-core CI), one
# validation image. Pipeline entries are addressed by index (mmengine's
# `pipeline.2.scale=...` syntax); the test checks they are the transforms named.
_LOADERS = {
    'train_dataloader.num_workers': 0,
    'train_dataloader.persistent_workers': False,
    'val_dataloader.num_workers': 0,
    'val_dataloader.persistent_workers': False,
    'val_dataloader.dataset.indices': 1,
}
SMOKE_DATA = {
    'coco': SmokeData(
        layout='coco', data_root='data/coco/', models='faster_rcnn, retinanet, mask_rcnn',
        options={
            # One epoch of two single-image batches; the stock 1333x800 scale shrunk.
            'train_dataloader.batch_size': 1,
            'train_dataloader.dataset.indices': 2,
            'train_cfg.max_epochs': 1,
            'train_dataloader.dataset.pipeline.2.scale': (96, 64),  # Resize
            'val_dataloader.dataset.pipeline.1.scale': (96, 64),  # Resize
            **_LOADERS,
        }),
    'cityscapes': SmokeData(
        layout='cityscapes', data_root='data/cityscapes/',
        models='fcn, pspnet, deeplabv3, deeplabv3plus',
        options={
            # Batch 2: PSPNet's and ASPP's pooled 1x1 BatchNorms need 2 values.
            'train_dataloader.batch_size': 2,
            'train_cfg.max_iters': 2,
            'train_cfg.val_interval': 2,
            # The stock 2048x1024 scale and 512x1024 crop, divided by 32.
            'train_dataloader.dataset.pipeline.2.scale': (64, 32),  # RandomResize
            'train_dataloader.dataset.pipeline.3.crop_size': (32, 64),  # RandomCrop
            'val_dataloader.dataset.pipeline.1.scale': (64, 32),  # Resize
            'model.data_preprocessor.size': (32, 64),  # pads to the crop
            **_LOADERS,
        }),
    'ade20k': SmokeData(
        layout='ade20k', data_root='data/ade/ADEChallengeData2016/',
        models='fcn, pspnet, deeplabv3, deeplabv3plus',
        options={
            'train_dataloader.batch_size': 2,
            'train_cfg.max_iters': 2,
            'train_cfg.val_interval': 2,
            # The stock 2048x512 scale and 512x512 crop, divided by 16.
            'train_dataloader.dataset.pipeline.2.scale': (128, 32),  # RandomResize
            'train_dataloader.dataset.pipeline.3.crop_size': (32, 32),  # RandomCrop
            'val_dataloader.dataset.pipeline.1.scale': (128, 32),  # Resize
            'model.data_preprocessor.size': (32, 32),
            **_LOADERS,
        }),
}
# The transform each indexed pipeline entry above must be (checked by the test).
SMOKE_TRANSFORMS = {
    'coco': {'train_dataloader.dataset.pipeline.2': 'Resize',
             'val_dataloader.dataset.pipeline.1': 'Resize'},
    'cityscapes': {'train_dataloader.dataset.pipeline.2': 'RandomResize',
                   'train_dataloader.dataset.pipeline.3': 'RandomCrop',
                   'val_dataloader.dataset.pipeline.1': 'Resize'},
}
SMOKE_TRANSFORMS['ade20k'] = SMOKE_TRANSFORMS['cityscapes']


SMOKE_INTRO = f"""\
### Every config runs: smoke tests on generated data

`tests/test_configs/test_experiment_matrix.py` trains each of the 66 configs
above and validates it, through the real Runner with everything the config
ships: the stock dataset class reading its stock folder layout, the stock
train and test pipelines, the stock evaluator (`coco/bbox_mAP`, plus
`coco/segm_mAP` for Mask R-CNN; `mIoU`), the stock hooks (checkpointing,
visualization) beside the overlay's, and SyncBN (reverted to BN in a single
process, as mmengine does). Each test asserts that the regularizer acted
(WRS: controlled weights at unit filter norm after each step; SGDP: the
optimizer is mmwrs' `SGDP` and stepped; ws: ConvWS2d + GroupNorm for every
conv+BN pair, frozen stages included; fixnorm: classifier norms held at their
start values while the weights move; ws-eps-l2: ConvWS2d and the penalty's
gradient added in each step) and that the evaluator logged its keys. For ws
and ws-eps-l2, whose model is converted at start-up, the test also evaluates
the saved checkpoint with `tools/test.py` and checks that the evaluated model
holds exactly the trained weights and reproduces the validation metrics.
The data is a few dozen synthetic images per dataset
(`tools/data/generate_shapes.py --layout coco|cityscapes|ade20k`) in the real
layout and label semantics (COCO's 80 categories; Cityscapes' 19
train ids with 255 = ignore; ADE20K's 150 classes with 0 = other, ignored
under `reduce_zero_label`).

What the smoke runs change, all through `--cfg-options`, so that the 66 runs
fit CI on 2 cores: the data root; {SMOKE_IMG_SIZE}-pixel-high images, and the
pipelines' `Resize`/`RandomResize` scales and `RandomCrop` sizes shrunk to
32-128 pixels (with mmseg's `data_preprocessor.size`, which pads to the crop;
the options address the transforms by their index in the stock pipeline,
mmengine's `pipeline.2.scale=...` syntax); batch 1 (detection;
one epoch of 2 images) or 2 (segmentation; 2 iterations); one validation
image; no DataLoader worker processes; no pretrained download
(`model.backbone.init_cfg=None` / `model.pretrained=None`); and for the
detectors `score_thr=0.0`, since no box of a 2-iteration detector clears the
stock 0.05 and CocoMetric logs nothing without boxes. Nothing else differs
from the config as shipped. To run one by hand, generate its data where the
stock config looks for it and copy its command:"""


def smoke_dataset(experiment: Experiment) -> str:
    """'coco', 'cityscapes' or 'ade20k': the stock dataset of an experiment."""
    for name in SMOKE_DATA:
        if name in osp.basename(experiment.stock):
            return name
    raise ValueError(f'{experiment.stock}: no smoke dataset for it; known: {list(SMOKE_DATA)}')


def smoke_options(experiment: Experiment, data_root: Optional[str] = None) -> Dict[str, object]:
    """The cfg-options of an experiment's smoke run.

    Data root (default: the stock one), the family's sizes, no pretrained
    download, and for detectors a score threshold of 0: after two iterations
    no box clears the stock 0.05, and CocoMetric logs no metric for no boxes.
    """
    data = SMOKE_DATA[smoke_dataset(experiment)]
    root = (data_root or data.data_root).rstrip('/') + '/'
    options: Dict[str, object] = {
        'train_dataloader.dataset.data_root': root,
        'val_dataloader.dataset.data_root': root,
    }
    if data.layout == 'coco':
        options['val_evaluator.ann_file'] = root + 'annotations/instances_val2017.json'
        options['model.backbone.init_cfg'] = None
        one_stage = experiment.model == 'retinanet'
        options['model.test_cfg.score_thr' if one_stage else 'model.test_cfg.rcnn.score_thr'] = 0.0
    else:
        options['model.pretrained'] = None
    options.update(data.options)
    return options


def cli_options(options: Dict[str, object]) -> List[str]:
    """``key=value`` strings that ``--cfg-options`` (mmengine's DictAction)
    parses back into ``options``."""
    def text(value):
        if isinstance(value, tuple):
            return '(' + ','.join(text(v) for v in value) + ')'
        return str(value)
    return [f'{key}={text(value)}' for key, value in options.items()]


def smoke_command(experiment: Experiment, data_root: Optional[str] = None,
                  work_dir: str = 'work_dirs/smoke', multiline: bool = False) -> str:
    """The tools/train.py command line of an experiment's smoke run (quoted
    for a POSIX shell; ``multiline``: one option per line)."""
    return _shell(['python', 'tools/train.py', experiment.path, '--work-dir', work_dir,
                   '--cfg-options'], cli_options(smoke_options(experiment, data_root)),
                  multiline)


def _shell(head: List[str], options: List[str], multiline: bool) -> str:
    """``head`` and ``options`` quoted for a POSIX shell; ``multiline``: each
    option on a line of its own."""
    import shlex
    head, options = [shlex.quote(w) for w in head], [shlex.quote(w) for w in options]
    if not multiline:
        return ' '.join(head + options)
    return ' \\\n    '.join([' '.join(head)] + options)


def smoke_test_options(experiment: Experiment,
                       data_root: Optional[str] = None) -> Dict[str, object]:
    """The cfg-options of ``tools/test.py`` on a smoke run's checkpoint: the
    smoke run's validation options, applied to the test loader and evaluator."""
    options = {}
    for key, value in smoke_options(experiment, data_root).items():
        if key.startswith('val_'):
            options['test_' + key[len('val_'):]] = value
        elif key.startswith('model.'):
            options[key] = value
    return options


def smoke_checkpoint(experiment: Experiment) -> str:
    """The checkpoint the stock checkpoint hook writes at the end of a smoke run."""
    return 'epoch_1.pth' if smoke_dataset(experiment) == 'coco' else 'iter_2.pth'


def smoke_test_command(experiment: Experiment, data_root: Optional[str] = None,
                       work_dir: str = 'work_dirs/smoke', multiline: bool = False) -> str:
    """The tools/test.py command line evaluating a smoke run's checkpoint."""
    return _shell(['python', 'tools/test.py', experiment.path,
                   f'{work_dir}/{smoke_checkpoint(experiment)}', '--work-dir',
                   f'{work_dir}/test', '--cfg-options'],
                  cli_options(smoke_test_options(experiment, data_root)), multiline)


def smoke_generate_command(dataset: str, out: Optional[str] = None) -> str:
    """The generator command writing a smoke dataset where the configs look."""
    data = SMOKE_DATA[dataset]
    return (f'python tools/data/generate_shapes.py --layout {data.layout} '
            f'--out {(out or data.data_root).rstrip("/")} --num-train {SMOKE_NUM_TRAIN} '
            f'--num-val {SMOKE_NUM_VAL} --img-size {SMOKE_IMG_SIZE}')


def _tree(root: str, label: str, shown: int = 2) -> List[str]:
    """A listing of ``root`` (a few files per folder), named ``label``."""
    lines = [label.rstrip('/') + '/']
    for folder, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        depth = osp.relpath(folder, root).count(os.sep) + 1 if folder != root else 0
        if folder != root:
            lines.append('    ' * depth + osp.basename(folder) + '/')
        files = sorted(f for f in files if f != 'manifest.json' or folder != root)
        for name in files[:shown]:
            lines.append('    ' * (depth + 1) + name)
        if len(files) > shown:
            lines.append('    ' * (depth + 1) + f'... ({len(files)} files in all)')
    return lines


def smoke_sections() -> str:
    """configs/README.md's part on the smoke runs: per dataset family, the
    generated tree, the commands and the options (generated here, so that
    the README shows what the test runs)."""
    import tempfile

    from mmwrs.datasets import generate_shapes
    by_dataset: Dict[str, List[Experiment]] = {}
    for experiment in experiments():
        by_dataset.setdefault(smoke_dataset(experiment), []).append(experiment)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for dataset, data in SMOKE_DATA.items():
            root = generate_shapes(osp.join(tmp, dataset), num_train=SMOKE_NUM_TRAIN,
                                   num_val=SMOKE_NUM_VAL, img_size=SMOKE_IMG_SIZE,
                                   layout=data.layout)
            first = by_dataset[dataset][0]
            out += [f'### Smoke data: {dataset}', '',
                    f'Used by: {data.models} ({len(by_dataset[dataset])} configs). The stock '
                    f'configs read `{data.data_root}`; the generated tree:', '',
                    '```', *_tree(root, data.data_root), '```', '',
                    'Generate it, then train any of these configs as the test does '
                    f'(`{osp.basename(first.path)}` shown; the others differ only in the '
                    'config path' + (', and RetinaNet reads `model.test_cfg.score_thr`'
                                     if dataset == 'coco' else '') + '):', '',
                    '```bash', smoke_generate_command(dataset),
                    smoke_command(first, multiline=True), '```', '',
                    'and evaluate its checkpoint (the test does so for the ws and ws-eps-l2 '
                    'configs, whose model is converted at start-up):', '',
                    '```bash', smoke_test_command(first, multiline=True), '```', '']
    return '\n'.join(out)
