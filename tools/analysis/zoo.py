"""Stock-zoo check: does WRS fit the stock mmdet / mmseg models users run?

For each stock config (pretrained weights off, small inputs) this measures:

* composes: the WRS config written as the README tells users (:func:`recipe`)
  keeps every base hook, the base optimizer constructor and paramwise_cfg;
* discovery: controlled weights, their share of the parameters, units, the
  exclusion reasons, and the time it takes;
* soundness against a numeric oracle written here (independent of discovery):
  scaling every controlled unit by random positive factors leaves the
  train-mode outputs unchanged (norm eps set to 1e-12, every BatchNorm on batch
  statistics); recall: conv/linear weights that the oracle finds invariant
  (first-order test ``<dL/dw, w> = 0`` for random output weightings, confirmed
  by an actual rescale) but discovery left out;
* eval-BN compensation: after a rescale to random targets, eval-mode outputs
  are unchanged;
* two training iterations of the composed config through the stock dataset
  pipeline on mini COCO / Cityscapes / ADE20K trees, filter norms on target;
* whether ``with_cp=True`` (where the backbone has it) gives the same set.

One JSON per config in ``--out`` (done ones are skipped: rerun to resume), then
``--table`` writes the markdown table::

    OMP_NUM_THREADS=1 python tools/analysis/zoo.py --out docs/zoo --table docs/zoo.md
"""
import argparse
import copy
import inspect
import json
import os
import os.path as osp
import re
import sys
import tempfile
import time
import traceback

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)

# (row name, stock config, mini dataset layout); families interleaved, so that a
# partial run already covers them.
CONFIGS = (
    ('RetinaNet R50', 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', 'coco'),
    ('FCN R50-d8', 'mmseg::fcn/fcn_r50-d8_4xb2-80k_cityscapes-512x1024.py', 'cityscapes'),
    ('RTMDet-tiny', 'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py', 'coco'),
    ('SegFormer MiT-B0', 'mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py',
     'ade20k'),
    ('YOLOX-s', 'mmdet::yolox/yolox_s_8xb8-300e_coco.py', 'coco'),
    ('BiSeNetV2', 'mmseg::bisenetv2/bisenetv2_fcn_4xb4-160k_cityscapes-1024x1024.py',
     'cityscapes'),
    ('DETR R50', 'mmdet::detr/detr_r50_8xb2-150e_coco.py', 'coco'),
    ('STDC1', 'mmseg::stdc/stdc1_4xb12-80k_cityscapes-512x1024.py', 'cityscapes'),
    ('UPerNet Swin-T',
     'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py',
     'ade20k'),
    ('DINO-4scale R50', 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py', 'coco'),
    ('OCRNet HRNetV2-W18s', 'mmseg::ocrnet/ocrnet_hr18s_4xb2-80k_cityscapes-512x1024.py',
     'cityscapes'),
    ('Mask2Former R50', 'mmseg::mask2former/mask2former_r50_8xb2-90k_cityscapes-512x1024.py',
     'cityscapes'),
    ('UPerNet ConvNeXt-T', 'mmseg::convnext/convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py',
     'ade20k'),
    ('Cascade R-CNN R50', 'mmdet::cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py', 'coco'),
    ('Deformable DETR R50', 'mmdet::deformable_detr/deformable-detr_r50_16xb2-50e_coco.py',
     'coco'),
    ('FCOS R50-caffe GN', 'mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py', 'coco'),
    ('PSPNet R50-d8', 'mmseg::pspnet/pspnet_r50-d8_4xb2-80k_cityscapes-512x1024.py',
     'cityscapes'),
    ('ATSS R50', 'mmdet::atss/atss_r50_fpn_1x_coco.py', 'coco'),
    ('DeepLabV3+ R50-d8',
     'mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb2-80k_cityscapes-512x1024.py', 'cityscapes'),
    ('GFL R50', 'mmdet::gfl/gfl_r50_fpn_1x_coco.py', 'coco'),
    ('DeepLabV3 R50-d8', 'mmseg::deeplabv3/deeplabv3_r50-d8_4xb2-80k_cityscapes-512x1024.py',
     'cityscapes'),
    ('UPerNet R50', 'mmseg::upernet/upernet_r50_4xb4-80k_ade20k-512x512.py', 'ade20k'),
    ('RTMDet-Ins-tiny', 'mmdet::rtmdet/rtmdet-ins_tiny_8xb32-300e_coco.py', 'coco'),
    ('FCN R50-d8 ADE', 'mmseg::fcn/fcn_r50-d8_4xb4-80k_ade20k-512x512.py', 'ade20k'),
    ('Faster R-CNN R50', 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', 'coco'),
    ('Mask R-CNN R50', 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py', 'coco'),
    # The rest of the paper's seven (README: "The paper's experiments") on ADE20K.
    ('PSPNet R50-d8 ADE', 'mmseg::pspnet/pspnet_r50-d8_4xb4-80k_ade20k-512x512.py', 'ade20k'),
    ('DeepLabV3 R50-d8 ADE', 'mmseg::deeplabv3/deeplabv3_r50-d8_4xb4-80k_ade20k-512x512.py',
     'ade20k'),
    ('DeepLabV3+ R50-d8 ADE',
     'mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb4-80k_ade20k-512x512.py', 'ade20k'),
)
DATA_ROOT_KEYS = {'coco': 'data/coco/', 'cityscapes': 'data/cityscapes/',
                  'ade20k': 'data/ade/ADEChallengeData2016/'}
TRAIN_SIZE = 96  # longest side of the training crops / resizes
# Smallest crop / resize side: MiT (SegFormer) and Swin patch embeds and their
# stride-32 stages need at least 64 px; a multiple of 32 keeps every stride whole.
MIN_SIDE = 64
TOL = 1e-4  # relative output change counted as "unchanged" by the oracle
# A joint rescale of all controlled units may move the losses a little more:
# two-stage detectors pick proposals by top-k / NMS, which 1e-6-level changes can
# reorder. The first-order test, per weight, is what names an unsound weight.
JOINT_TOL = 1e-3
_IMPORTS = "custom_imports = dict(imports=['mmwrs'], allow_failed_imports=False)\n"
RECIPES = {
    # What README.md tells users to write; switch with --recipe.
    'custom_hooks': _IMPORTS + "custom_hooks = [dict(type='WRSHook')]\n",
    'default_hooks': _IMPORTS + "default_hooks = dict(wrs=dict(type='WRSHook'))\n",
}


def recipe(name='default_hooks'):
    """The lines a user adds under ``_base_`` to train a stock config with WRS."""
    return RECIPES[name]


def slug(stock):
    return re.sub(r'[^A-Za-z0-9]+', '_', stock.split('::')[1][:-3]).strip('_')


# -- config handling -----------------------------------------------------------
def load(stock, extra=''):
    from mmengine.config import Config
    with tempfile.TemporaryDirectory() as tmp:
        path = osp.join(tmp, 'cfg.py')
        with open(path, 'w') as f:
            f.write(f'_base_ = [{stock!r}]\n{extra}')
        return Config.fromfile(path)


def _hook_types(cfg):
    custom = [h.get('type') if isinstance(h, dict) else type(h).__name__
              for h in cfg.get('custom_hooks') or []]
    default = {k: (v or {}).get('type') for k, v in (cfg.get('default_hooks') or {}).items()}
    return custom, default


def composes(stock, recipe_name):
    """Whether the WRS config keeps the base hooks, constructor and paramwise_cfg."""
    base, wrs = load(stock), load(stock, recipe(recipe_name))
    (bc, bd), (wc, wd) = _hook_types(base), _hook_types(wrs)
    lost = [f'custom_hooks {t}' for t in bc if t not in wc]
    lost += [f'default_hooks.{k} ({t})' for k, t in bd.items() if wd.get(k) != t]

    def imports(c):
        found = (c.get('custom_imports') or {}).get('imports') or []
        return [found] if isinstance(found, str) else list(found)
    lost += [f'custom_imports {m}' for m in imports(base) if m not in imports(wrs)]
    for key in ('constructor', 'paramwise_cfg'):
        b, w = base.optim_wrapper.get(key), wrs.optim_wrapper.get(key)
        if b != w:
            lost.append(f'optim_wrapper.{key} {b!r} -> {w!r}')
    if 'WRSHook' not in wc and 'WRSHook' not in wd.values():
        lost.append('WRSHook itself')
    return dict(ok=not lost, lost=lost, base_custom_hooks=bc,
                base_constructor=base.optim_wrapper.get('constructor'),
                base_paramwise=base.optim_wrapper.get('paramwise_cfg') is not None), wrs


def _walk(obj, fn):
    """Call ``fn`` on every dict inside ``obj`` (depth first), in place."""
    if isinstance(obj, dict):
        fn(obj)
        for v in list(obj.values()):
            _walk(v, fn)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _walk(v, fn)


def no_pretrained(model_cfg):
    """Drop every Pretrained init_cfg and ``pretrained`` path; SyncBN -> BN."""
    def fix(d):
        init = d.get('init_cfg')
        inits = init if isinstance(init, list) else [init]
        if any(isinstance(i, dict) and i.get('type') == 'Pretrained' for i in inits):
            d['init_cfg'] = None
        if isinstance(d.get('pretrained'), str):
            d['pretrained'] = None
        if d.get('type') == 'SyncBN':
            d['type'] = 'BN'
    _walk(model_cfg, fix)
    return model_cfg


def _side(v, factor, floor):
    step = min(32, floor)
    return max(floor, int(round(v / factor / step)) * step)


def _shrink(value, factor, floor=MIN_SIDE):
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, int) for v in value):
        return type(value)(_side(v, factor, floor) if v > 0 else -_side(-v, factor, floor)
                           for v in value)
    if isinstance(value, (list, tuple)):
        return type(value)(_shrink(v, factor, floor) for v in value)
    return value


def train_cfg(cfg, layout, data_root, min_side=0):
    """The composed config cut to two iterations on the mini tree, no validation,
    its crops and resizes scaled down to a longest side of ``TRAIN_SIZE``, and no
    side below ``min_side`` (the model's own minimum) or ``MIN_SIDE``."""
    floor = max(MIN_SIDE, min_side)
    train_size = max(TRAIN_SIZE, floor)
    cfg = copy.deepcopy(cfg)
    cfg.model = no_pretrained(cfg.model)
    cfg.load_from, cfg.resume = None, False
    loader = cfg.train_dataloader
    sizes = []

    def scan(d):
        for key in ('scale', 'img_scale', 'crop_size', 'scales'):
            v = d.get(key)
            if isinstance(v, (list, tuple)):
                sizes.extend(x for x in re.findall(r'\d+', str(v)) if int(x) > 1)
    _walk(loader.dataset.get('pipeline', []), scan)
    _walk(loader.dataset, lambda d: d.get('pipeline') and _walk(d['pipeline'], scan))
    factor = max([int(s) for s in sizes] or [train_size]) / train_size

    def fix(d):
        for key in ('scale', 'img_scale', 'crop_size', 'scales', 'border'):
            if key in d and d[key] is not None and not isinstance(d[key], (int, float)):
                # Mosaic's border is minus half the image: no floor of its own.
                d[key] = _shrink(d[key], factor, 16 if key == 'border' else floor)
        if 'data_root' in d:
            d['data_root'] = data_root
        if 'ann_file' in d and 'data_prefix' in d and d.get('type') != 'RepeatDataset':
            d['indices'] = 4
    _walk(loader, fix)
    if cfg.model.get('data_preprocessor', {}).get('size'):
        cfg.model.data_preprocessor.size = _shrink(tuple(cfg.model.data_preprocessor.size),
                                                   factor, floor)
    loader.batch_size, loader.num_workers, loader.persistent_workers = 2, 0, False
    if cfg.train_cfg.get('type', '').startswith('Epoch') or 'max_epochs' in cfg.train_cfg:
        cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1, val_interval=100)
    else:
        cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=100)
    for split in ('val', 'test'):
        cfg[f'{split}_dataloader'] = cfg[f'{split}_cfg'] = cfg[f'{split}_evaluator'] = None
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=10 ** 6,
                                        save_last=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.default_hooks.pop('visualization', None)
    cfg.env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork'),
                       dist_cfg=dict(backend='gloo'))
    cfg.pop('auto_scale_lr', None)
    if cfg.optim_wrapper.get('type') == 'AmpOptimWrapper':
        cfg.optim_wrapper.type = 'OptimWrapper'  # CPU: no AMP
        cfg.optim_wrapper.pop('loss_scale', None)
    return cfg


# -- model and oracle ----------------------------------------------------------
def build(cfg, with_cp=False):
    import importlib

    from mmengine.model import revert_sync_batchnorm
    scope = cfg.default_scope
    importlib.import_module(f'{scope}.utils').register_all_modules()
    MODELS = importlib.import_module(f'{scope}.registry').MODELS
    model_cfg = no_pretrained(copy.deepcopy(cfg.model))
    if with_cp:
        model_cfg.backbone.with_cp = True
    if (model_cfg.get('data_preprocessor') or {}).get('size'):
        # The example batch is padded to this size: the stock crop (512x1024)
        # costs minutes per forward on a CPU, and discovery depends on the
        # structure, not on the size.
        model_cfg.data_preprocessor.size = (64, 64)
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    model.init_weights()
    return revert_sync_batchnorm(model)


def has_with_cp(model):
    """Whether the backbone takes ``with_cp`` (through any class of its MRO)."""
    backbone = getattr(model, 'backbone', None)
    return backbone is not None and (hasattr(backbone, 'with_cp') or any(
        'with_cp' in inspect.signature(cls.__init__).parameters
        for cls in type(backbone).__mro__ if '__init__' in vars(cls)))


def example(model, detection):
    """The loss-mode forward pass on mmwrs' synthetic batch (what WRS traces)."""
    from mmwrs.engine import example_batch

    # 128 px: every stride of a detector's FPN (P7 = /128) keeps a pixel.
    example_batch.EXAMPLE_SIZE = 128 if detection else 64
    return example_batch.example_loss_forward(model, 'zoo')


def eval_forward(model, detection):
    """``f(mode)``: the same kind of synthetic batch, run in ``mode``."""
    from mmwrs.engine import example_batch
    if detection:
        from mmdet.testing import demo_mm_inputs

        from mmwrs.engine.discovery_pass import min_image_size
        size = max(128, min_image_size(model))
        batch = demo_mm_inputs(batch_size=2, image_shapes=(3, size, size), num_items=[3, 3],
                               num_classes=2)
        data = model.data_preprocessor(batch, False)
        if getattr(model, 'with_rpn', False):
            # Two-stage: an untrained RPN scores every anchor ~0.5, so which
            # proposals reach the RoI head flips with 1e-6-level changes; compare
            # the features (backbone and neck: where the BatchNorms are).
            return lambda m: model.extract_feat(data['inputs'])
        return lambda m: model(**data, mode=m)
    cells = [c.cell_contents for c in example_batch._seg_forward(model).__closure__]
    inputs = next(c for c in cells if isinstance(c, torch.Tensor))
    samples = next(c for c in cells if isinstance(c, list))
    return lambda m: model(inputs, samples, mode=m)


def tensors(obj):
    """Every floating tensor in a (nested) output, data samples included."""
    from mmengine.structures import BaseDataElement
    if isinstance(obj, torch.Tensor):
        return [obj] if obj.is_floating_point() else []
    if isinstance(obj, BaseDataElement):
        obj = [obj.get(k) for k in sorted(obj.keys())]
    if isinstance(obj, dict):
        obj = [obj[k] for k in sorted(obj)]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in tensors(v)]
    return []


def rel_change(a, b):
    worst = 0.0
    for x, y in zip(a, b):
        if x.shape != y.shape:
            return float('inf')
        scale = x.detach().abs().max().item() + 1e-6
        worst = max(worst, (x.detach() - y.detach()).abs().max().item() / scale)
    return worst


def run_forward(forward):
    torch.manual_seed(1)  # samplers and dropout draw the same numbers
    return forward()


def generic_norms(model, seed=6):
    """Random affine parameters in every norm.

    Stock inits zero the last BN of each residual block (mmdet's
    ``zero_init_residual``), which cuts the branch off: every weight in it would
    look invariant (zero gradient), and a rescale of it would change nothing.
    """
    from mmwrs.core.discovery import is_norm
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if is_norm(m) and getattr(m, 'weight', None) is not None:
                m.weight.uniform_(0.5, 1.5, generator=gen)
                if getattr(m, 'bias', None) is not None:
                    m.bias.normal_(0, 0.1, generator=gen)


def generic_biases(model, seed=7):
    """Random biases in every conv / linear layer.

    Stock inits zero them, and a weight whose bias is zero is invariant to a
    scale of the whole tensor wherever a norm over its channels follows
    (LayerNorm, GroupNorm): the oracle would call it invariant, yet after the
    first update the bias is not zero, and it is not.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, weight in weight_layers(model).items():
            module = model.get_submodule(name[:-len('.weight')])
            bias = getattr(module, 'bias', None)
            if isinstance(bias, torch.nn.Parameter):
                bias.normal_(0, 0.1, generator=gen)


def oracle_mode(model):
    """Train mode, every BatchNorm on batch statistics, norm eps 1e-12,
    generic norm affine parameters and layer biases."""
    from mmwrs.core.discovery import is_norm
    model.train()
    generic_norms(model)
    generic_biases(model)
    for m in model.modules():
        if is_norm(m):
            m.train()
            if hasattr(m, 'eps'):
                m.eps = 1e-12


def weight_layers(model):
    from mmwrs.core.discovery import is_norm
    return {f'{n}.weight': m._parameters['weight'] for n, m in model.named_modules()
            if not is_norm(m) and isinstance(m._parameters.get('weight'), torch.nn.Parameter)
            and m._parameters['weight'].dim() >= 2}


@torch.no_grad()
def _scale(params_factors):
    for p, f in params_factors:
        p.mul_(f)


def unit_factors(entry, gen):
    """Random positive factors per unit of an InvariantWeight, shaped for its param."""
    f = torch.empty(entry.num_units).uniform_(0.5, 2.0, generator=gen)
    out = entry.param.shape[entry.out_dim]
    f = f.repeat_interleave(out // entry.num_units)
    shape = [1] * entry.param.dim()
    shape[entry.out_dim] = out
    return f.view(shape)


def oracle(model, forward, result):
    """Soundness (joint random rescale of the controlled units) and recall."""
    gen = torch.Generator().manual_seed(2)
    ref = [t.detach().clone() for t in tensors(run_forward(forward))]
    scaled = [(w.param, unit_factors(w, gen)) for w in result.invariant]
    _scale(scaled)
    after = tensors(run_forward(forward))
    _scale([(p, 1 / f) for p, f in scaled])
    joint = rel_change(ref, after)
    # First order: d/dc L(c w) = <dL/dw, w> = 0 for an invariant w, for any L.
    layers = {n: p for n, p in weight_layers(model).items() if p.requires_grad}
    # A zero weight (DETR sampling offsets, zero-init heads) is trivially unchanged
    # by a scale: neither evidence of invariance nor of its absence.
    zero = sorted(n for n, p in layers.items() if p.detach().abs().max() == 0)
    layers = {n: p for n, p in layers.items() if n not in zero}
    cos = {n: [] for n in layers}
    for seed in (3, 4):
        outs = tensors(run_forward(forward))
        r = torch.Generator().manual_seed(seed)
        loss = sum((torch.randn(t.shape, generator=r) * t).sum() for t in outs if t.requires_grad)
        grads = torch.autograd.grad(loss, list(layers.values()), allow_unused=True)
        # A gradient at rounding level (a BN over two values, e.g. of a
        # globally pooled input, outputs +-1 whatever the weight) has no
        # direction to test: count it as no gradient.
        largest = max((g.norm().item() for g in grads if g is not None), default=0.0)
        for (n, p), g in zip(layers.items(), grads):
            if g is None or g.norm().item() <= 1e-7 * largest:
                cos[n].append(None)
            else:
                cos[n].append(((g * p).sum() / (g.norm() * p.norm() + 1e-30)).abs().item())
    unused = sorted(n for n, c in cos.items() if None in c)
    candidates = [n for n, c in cos.items() if None not in c and max(c) < TOL]
    controlled = set(result.by_name())
    missed = []
    for n in candidates:
        if n in controlled:
            continue
        _scale([(layers[n], 1.7)])
        change = rel_change(ref, tensors(run_forward(forward)))
        _scale([(layers[n], 1 / 1.7)])
        if change < TOL:
            missed.append(n)
    unsound = [n for n in controlled if n in cos and None not in cos[n] and max(cos[n]) > 1e-2]
    return dict(joint_rel_change=joint, sound=joint < JOINT_TOL and not unsound,
                unsound_first_order=unsound, oracle_invariant=len(candidates),
                missed=missed, unused=len(unused), zero=len(zero),
                oracle_weights=len(layers) + len(zero))


def eval_check(model, result, detection):
    """Rescale to random targets; eval-mode outputs must not change."""
    from torch.nn.modules.batchnorm import _BatchNorm

    from mmwrs.core import WeightRescaler
    gen = torch.Generator().manual_seed(5)
    generic_norms(model)
    model.eval()
    with torch.no_grad():
        for m in model.modules():  # statistics as after some training
            if isinstance(m, _BatchNorm) and m.running_var is not None:
                m.running_mean.normal_(0, 0.1, generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
    forward = eval_forward(model, detection)
    mode = 'tensor'
    try:
        with torch.no_grad():
            ref = tensors(forward(mode))
    except Exception:  # heads whose tensor mode needs data samples
        mode = 'predict'
        with torch.no_grad():
            ref = tensors(forward(mode))
    rescaler = WeightRescaler(result.invariant, target_norm=1.0)
    for e in rescaler.entries:
        e.target = e.unit_norms() * torch.empty(e.num_units).uniform_(0.5, 2.0, generator=gen)
    rescaler.rescale_()
    with torch.no_grad():
        change = rel_change(ref, tensors(forward(mode)))
    return dict(eval_rel_change=change, eval_ok=change < 1e-3, eval_mode=mode)


def reason_key(reason):
    return re.sub(r'\d+', '#', reason.split(' (call')[0])


def discovery(model, detection):
    from mmwrs.core import discover_scale_invariant
    model.train()
    forward = example(model, detection)
    start = time.perf_counter()
    result = discover_scale_invariant(model, forward)
    seconds = time.perf_counter() - start
    total = sum(p.numel() for p in model.parameters())
    reasons = {}
    for e in result.excluded:
        reasons[reason_key(e.reason)] = reasons.get(reason_key(e.reason), 0) + 1
    return result, forward, dict(
        controlled=len(result.invariant), weights=len(result.invariant) + len(result.excluded),
        share=sum(w.param.numel() for w in result.invariant) / total,
        units=sum(w.num_units for w in result.invariant), reasons=reasons,
        discovery_s=round(seconds, 2))


def train(wrs_cfg, layout, data_dir, work_dir, min_side=0):
    from mmengine.runner import Runner

    from mmwrs.datasets import generate_shapes
    root = generate_shapes(osp.join(data_dir, layout), num_train=8, num_val=2, img_size=64,
                           seed=0, layout=layout) + '/'
    cfg = train_cfg(wrs_cfg, layout, root, min_side)
    # A work dir and experiment name of its own: the visualizer is a global instance.
    cfg.work_dir = work_dir
    cfg.experiment_name = f'{osp.basename(work_dir)}_{time.strftime("%H%M%S")}'
    runner = Runner.from_cfg(cfg)
    runner.train()
    hooks = [h for h in runner.hooks if type(h).__name__ == 'WRSHook']
    if not hooks or hooks[0].rescaler is None:
        return dict(train_ok=False, train_error='no WRSHook in the trained runner')
    rescaler = hooks[0].rescaler
    dev = 0.0
    for name, norm in rescaler.unit_norms().items():
        target = rescaler.targets()[name]
        dev = max(dev, ((norm - target).abs() / target).max().item())
    kept = sorted({type(h).__name__ for h in runner.hooks})
    return dict(train_ok=dev < 1e-3, norm_dev=dev, iters=runner.iter,
                train_controlled=len(rescaler), runner_hooks=kept)


def check(name, stock, layout, recipe_name, data_dir, work_dir):
    import mmwrs.engine  # noqa: F401 (registers WRSHook)
    row = dict(name=name, config=stock, layout=layout, recipe=recipe_name)
    start = time.perf_counter()
    detection = stock.startswith('mmdet')

    def stage(key, fn):
        try:
            out = fn()
            if isinstance(out, dict):
                row.update(out)
            return out
        except Exception as exc:
            row[f'{key}_error'] = f'{type(exc).__name__}: {str(exc)[:300]}'
            row.setdefault('trace', {})[key] = traceback.format_exc()[-1500:]
            return None
    comp = stage('compose', lambda: composes(stock, recipe_name))
    if comp is not None:
        row['compose'] = comp[0]
    base = stage('load', lambda: load(stock))
    model = stage('build', lambda: build(base)) if base is not None else None
    min_side = 0
    if model is not None:
        from mmwrs.engine.discovery_pass import min_image_size
        min_side = min_image_size(model)
        found = stage('discovery', lambda: discovery(model, detection))
        if found is not None:
            result, forward, info = found
            row.update(info)
            if has_with_cp(model):
                def cp():
                    cp_model = build(base, with_cp=True)
                    cp_result, _, _ = discovery(cp_model, detection)
                    names, cp_names = set(result.by_name()), set(cp_result.by_name())
                    return dict(with_cp=dict(same=names == cp_names, controlled=len(cp_names)))
                stage('with_cp', cp)
            else:
                row['with_cp'] = None
            oracle_mode(model)
            stage('oracle', lambda: oracle(model, forward, result))
            fresh = build(base)
            stage('eval', lambda: eval_check(fresh, discovery(fresh, detection)[0], detection))
    if comp is not None and model is not None:
        stage('train', lambda: train(comp[1], layout, data_dir, work_dir, min_side))
    row['seconds'] = round(time.perf_counter() - start, 1)
    return row


# -- table ---------------------------------------------------------------------
def _yes(flag):
    return 'yes' if flag else '**no**'


def row_md(r):
    comp = r.get('compose')
    compose = (f"fails: {r['compose_error']}" if 'compose_error' in r else
               'yes' if comp['ok'] else '**no**: lost ' + '; '.join(comp['lost']))
    if 'controlled' in r:
        disc = (f"{r['controlled']}/{r['weights']} ({100 * r['share']:.0f}% params, "
                f"{r['units']} units)")
        reasons = '; '.join(f'{n} {k}' for k, n in sorted(r['reasons'].items(),
                                                          key=lambda kv: -kv[1]))
        if not r['controlled']:
            disc = f"none scale-invariant (0/{r['weights']})"
    else:
        error = r.get('load_error') or r.get('build_error') or r.get('discovery_error')
        disc, reasons = f'fails: {error}', 'n/a (no discovery)'
    if 'sound' in r:
        ok = r['joint_rel_change'] < JOINT_TOL and not r['unsound_first_order']
        sound = (f"{_yes(ok)} (Δ {r['joint_rel_change']:.0e})"
                 + (f"; first-order fails: {', '.join(r['unsound_first_order'][:3])}"
                    if r['unsound_first_order'] else ''))
        recall = (f"{r['oracle_invariant']} invariant by oracle, missed "
                  f"{len(r['missed'])}" + (f": {', '.join(r['missed'][:4])}"
                                           + (' ...' if len(r['missed']) > 4 else '')
                                           if r['missed'] else ''))
    else:
        sound = recall = f"fails: {r.get('oracle_error', 'not run (no discovery)')}"
    if 'sound' in r and r.get('zero'):
        recall += f" ({r['zero']} zero at init, not testable)"
    ev = (f"{_yes(r['eval_ok'])} (Δ {r['eval_rel_change']:.0e}, {r['eval_mode']})"
          if 'eval_ok' in r else f"fails: {r.get('eval_error', 'not run')}")
    tr = (f"{_yes(r['train_ok'])} ({r['iters']} it, norm dev {r['norm_dev']:.0e})"
          if 'norm_dev' in r else
          f"fails: {r.get('train_error', 'not run (the model does not build)')}")
    if r.get('with_cp') is None:
        cp = f"fails: {r['with_cp_error']}" if 'with_cp_error' in r else 'n/a (no with_cp)'
    else:
        cp = (_yes(r['with_cp']['same']) + f" ({r['with_cp']['controlled']} vs "
              f"{r.get('controlled')})")
    disc_s = f"{r['discovery_s']:.1f}" if 'discovery_s' in r else 'n/a'
    cells = [r['name'], f"`{r['config']}`", compose, disc, reasons, sound, recall, ev, tr, cp,
             disc_s, f"{r['seconds']:.0f}"]
    return '| ' + ' | '.join(str(c).replace('|', '/').replace('\n', ' ') for c in cells) + ' |'


HEADER = ('| model | config | composes | controlled | exclusions | sound | recall | eval-BN | '
          '2 train iters | with_cp same | discovery s | total s |\n'
          '|' + '---|' * 12)


def passes(r):
    """The stages of row ``r`` that did not pass (empty: it passes them all)."""
    failed = []
    if not (r.get('compose') or {}).get('ok'):
        failed.append('composes')
    if 'controlled' not in r:
        failed.append('discovery')
    elif not r['controlled']:
        failed.append('nothing invariant')
    for key, stage in (('sound', 'sound'), ('eval_ok', 'eval-BN'), ('train_ok', 'train')):
        if not r.get(key):
            failed.append(stage)
    if r.get('missed'):
        failed.append(f"recall (missed {len(r['missed'])})")
    if r.get('with_cp') and not r['with_cp']['same']:
        failed.append('with_cp')
    return failed


def summary(rows):
    """One line per outcome, for the reader who wants the verdict first."""
    ok = [r['name'] for r in rows if not passes(r)]
    lines = [f'**{len(ok)} of {len(rows)} configs pass every check.**']
    for r in rows:
        if passes(r):
            lines.append(f"- {r['name']}: {', '.join(passes(r))}")
    return '\n'.join(lines)


def table(rows, recipe_name):
    lines = ['# Stock-zoo check', '',
             'Generated by `OMP_NUM_THREADS=1 python tools/analysis/zoo.py --out docs/zoo '
             '--table docs/zoo.md` (one JSON per config in `docs/zoo/`; rerun to resume; '
             '`--force` to redo). Recipe checked: `' + recipe(recipe_name).strip() + '`.', '',
             'Columns: **composes**: the WRS config keeps every base hook, optimizer '
             'constructor and paramwise_cfg; **controlled**: weights WRS controls / all '
             'conv-linear weights (share of all parameters, rescaling units); **sound**: '
             'rescaling every controlled unit by random factors in [0.5, 2] changes the '
             'train-mode losses by less than 1e-3 relative (Δ: the largest change; norm eps '
             '1e-12, BN on batch stats, random norm affine parameters and layer biases) and '
             'no controlled '
             'weight fails the per-weight first-order test; '
             '**recall**: weights a numeric oracle (<dL/dw, w> = 0 for two random output '
             'weightings, confirmed by a x1.7 rescale) finds invariant, and how many of '
             'them discovery missed; **eval-BN**: eval-mode outputs after a rescale to random '
             'targets; **2 train iters**: the composed config trained 2 iterations through '
             'the stock pipeline on the mini tree, controlled norms on target afterwards; '
             '**with_cp**: discovery with `backbone.with_cp=True` controls the same set.', '',
             summary(rows), '', HEADER]
    lines += [row_md(r) for r in rows]
    return '\n'.join(lines) + '\n'


def _write(path, row):
    with open(path + '.tmp', 'w') as f:
        json.dump(row, f, indent=1, default=str)
    os.replace(path + '.tmp', path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default='docs/zoo', help='folder of per-config JSONs')
    parser.add_argument('--table', help='markdown table to write from the JSONs')
    parser.add_argument('--only', nargs='*', help='row names or config substrings')
    parser.add_argument('--recipe', default='default_hooks', choices=sorted(RECIPES),
                        help="the README's recipe (default_hooks) or the list form, which "
                             "replaces a base config's custom_hooks")
    parser.add_argument('--data', default=osp.join(tempfile.gettempdir(), 'mmwrs_zoo_data'))
    parser.add_argument('--work-dir', default=osp.join(tempfile.gettempdir(), 'mmwrs_zoo_work'),
                        help='training work dirs (logs only: no checkpoints are saved)')
    parser.add_argument('--force', action='store_true', help='redo configs already done')
    parser.add_argument('--recompose', action='store_true',
                        help='redo only the (cheap) composition check of done configs')
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    selected = [c for c in CONFIGS if not args.only
                or any(o == c[0] or o in c[1] for o in args.only)]
    rows = []
    for name, stock, layout in selected:
        path = osp.join(args.out, slug(stock) + '.json')
        if osp.exists(path) and not args.force:
            row = _read(path)
            if args.recompose:
                row['compose'], row['recipe'] = composes(stock, args.recipe)[0], args.recipe
                _write(path, row)
            rows.append(row)
            continue
        print(f'[zoo] {name} ({stock}) ...', flush=True)
        row = check(name, stock, layout, args.recipe, args.data,
                    osp.join(args.work_dir, slug(stock)))
        _write(path, row)
        print(f'[zoo] {name}: {row["seconds"]} s; ' + row_md(row), flush=True)
        rows.append(row)
        if args.table:  # the table as far as it got
            _write_table(args, rows)
    if args.table:
        _write_table(args, rows)
    return rows


def _read(path):
    with open(path) as f:
        return json.load(f)


def _write_table(args, rows):
    """The table of every config with a JSON in ``--out`` (rows just computed
    replace theirs), in ``CONFIGS`` order: a rerun of some rows (``--only``)
    keeps the others."""
    fresh = {r['config']: r for r in rows}
    every = []
    for _, stock, _ in CONFIGS:
        path = osp.join(args.out, slug(stock) + '.json')
        if stock in fresh:
            every.append(fresh[stock])
        elif osp.exists(path):
            every.append(_read(path))
    with open(args.table, 'w') as f:
        f.write(table(every, args.recipe))


if __name__ == '__main__':
    main()
