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
# Final metrics read back from a run; the first present in PRIMARY_METRICS is
# what a sweep or a table reports unless told otherwise.
METRIC_KEYS = ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP', 'mIoU', 'aAcc')
PRIMARY_METRICS = ('mIoU', 'coco/segm_mAP', 'coco/bbox_mAP')


def regularizers() -> List[str]:
    """Names of the regularizer overlays in ``mmwrs/configs/regularizers``."""
    return sorted(osp.splitext(osp.basename(p))[0]
                  for p in glob.glob(osp.join(REGULARIZER_DIR, '*.py')))


def overlay_path(regularizer: str) -> str:
    """Absolute path of a regularizer overlay.

    Raises:
        ValueError: No overlay of that name; the message lists those that exist.
    """
    path = osp.join(REGULARIZER_DIR, f'{regularizer}.py')
    if not osp.isfile(path):
        raise ValueError(f'regularizer {regularizer!r}: no overlay {path}; '
                         f'available: {", ".join(regularizers())}')
    return path


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
             '| model | dataset | regularizer | config | single process | stock GPU count, one machine | Slurm |',
             '|---|---|---|---|---|---|---|']
    for experiment in experiments():
        commands = launch_commands(experiment.path)
        dataset = experiment.stock.rsplit('_', 1)[1][:-3]
        lines.append(
            f'| {experiment.model} | {dataset} | {experiment.setting} | '
            f'[{osp.basename(experiment.path)}]({experiment.path[len("configs/"):]}) | '
            f'`{commands["single"]}` | `{commands["dist"]}` | `{commands["slurm"]}` |')
    lines.append(TABLE_END)
    return '\n'.join(lines) + '\n'
