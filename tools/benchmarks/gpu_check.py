"""The GPU check: WRS measured where it will be used, in one prepared command.

Writes ``gpu_check.json`` and ``gpu_check.md`` to ``--out``. Needs only torch
(torchvision for the real Faster R-CNN; without it a plain-torch ResNet-50-FPN
detector stands in); the parts that need ``adamp`` or mmengine run when those
import and are reported as skipped otherwise. Every comparison is timed in one
run, interleaved, with CUDA-synchronised timers, warm-up excluded, medians.

Sections:
    rescale_vs_step  WRS ``rescale_()`` vs a foreach SGD-momentum step on the
                     Faster R-CNN R50-FPN parameter set (target <= 0.25)
    iteration        a whole training iteration, WRS vs weight decay, fp32 and
                     bf16 autocast, batch 2 at 800x1333 (target <= 1.02)
    host_syncs       host synchronisations per ``rescale_()`` (CUDA only)
    projection       SGDP / AdamP step: mmwrs per-parameter, mmwrs
                     multi-tensor, the ``adamp`` reference; agreement with it
    amp_skip         mmengine's GradScaler path with the WRS optimizer wrapper:
                     an inf gradient skips the step and the rescale, a finite
                     one rescales (CUDA + mmengine)
    cuda_tests       the suite's CUDA tests (tests/test_core/test_rescale_cuda.py:
                     graph follows updates, bit-identical to eager, an empty
                     replay is an error, recapture cap, fused-AMP skip, capture
                     pinned to the weights' device on two GPUs where present);
                     needs pytest (pure Python: carry its wheel)

    python tools/benchmarks/gpu_check.py --out DIR            # on the GPU, < 8 min
    python tools/benchmarks/gpu_check.py --tiny --out DIR     # CPU smoke run, seconds
"""
import argparse
import datetime
import importlib.util
import json
import os
import os.path as osp
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
import xml.etree.ElementTree as ElementTree
from contextlib import nullcontext
from typing import Any, Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

# Runs from a checkout without installing mmwrs (the GPU machine has no stack).
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)
from mmwrs.core import WeightRescaler, discover_scale_invariant  # noqa: E402
from mmwrs.core.rescale import DEFERRED_CHECK_INTERVAL  # noqa: E402
from mmwrs.optim import SGDP, AdamP  # noqa: E402

SECTIONS = ('rescale_vs_step', 'iteration', 'host_syncs', 'projection', 'amp_skip', 'cuda_tests')
CUDA_TESTS = 'tests/test_core/test_rescale_cuda.py'
TARGETS = {'rescale_vs_step': 0.25, 'iteration': 1.02, 'projection_speedup': 2.0}
# Image size, batch, timed repeats, warm-up, agreement steps and model per size.
SIZES = {
    'full': dict(height=800, width=1333, batch=2, repeats=30, warmup=5, steps=20,
                 model='auto', width_mult=64),
    'tiny': dict(height=64, width=96, batch=1, repeats=3, warmup=1, steps=3,
                 model='plain', width_mult=8),
}
# mmdet's Faster R-CNN schedule, lr scaled to the batch (0.02 for 16 images).
SGD_HPARAMS = dict(lr=0.02, momentum=0.9, weight_decay=1e-4)
REFERENCE_BATCH = 16
ADAM_HPARAMS = dict(lr=1e-3, betas=(0.9, 0.999), weight_decay=1e-2)
NUM_CLASSES = 81


# -- timing -------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds of one call, the device queue drained before and after."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def interleaved(candidates: Dict[str, Callable[[], Any]], device: torch.device,
                repeats: int, warmup: int) -> Dict[str, float]:
    """Median seconds per candidate, the candidates taking turns each round."""
    times: Dict[str, List[float]] = {name: [] for name in candidates}
    for round_ in range(warmup + repeats):
        for name, fn in candidates.items():
            elapsed = timed(fn, device)
            if round_ >= warmup:
                times[name].append(elapsed)
    return {name: statistics.median(values) for name, values in times.items()}


# -- the detector ---------------------------------------------------------------
class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        width = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, width, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.downsample = None
        if stride != 1 or inplanes != width:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, width, 1, stride, bias=False),
                                            nn.BatchNorm2d(width))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class PlainFasterRCNN(nn.Module):
    """A ResNet-50-FPN two-stage detector in plain torch, for machines without
    torchvision and for the ``--tiny`` smoke run (``width=8``): at ``width=64``
    the same backbone, neck and head parameter set as Faster R-CNN (RPN on every
    level, 2fc box head), with dense stand-in losses instead of box sampling."""

    def __init__(self, num_classes: int = NUM_CLASSES, width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers, inplanes = [], width
        for scale, blocks, stride in ((1, 3, 1), (2, 4, 2), (4, 6, 2), (8, 3, 2)):
            planes = width * scale
            stage = [Bottleneck(inplanes, planes, stride)]
            inplanes = planes * Bottleneck.expansion
            stage += [Bottleneck(inplanes, planes) for _ in range(blocks - 1)]
            layers.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        neck, fc = 4 * width, 16 * width
        self.lateral = nn.ModuleList(nn.Conv2d(width * 4 * s, neck, 1) for s in (1, 2, 4, 8))
        self.fpn_out = nn.ModuleList(nn.Conv2d(neck, neck, 3, padding=1) for _ in range(4))
        self.rpn_conv = nn.Conv2d(neck, neck, 3, padding=1)
        self.rpn_cls = nn.Conv2d(neck, 3, 1)
        self.rpn_reg = nn.Conv2d(neck, 12, 1)
        self.fc6 = nn.Linear(neck * 7 * 7, fc)
        self.fc7 = nn.Linear(fc, fc)
        self.fc_cls = nn.Linear(fc, num_classes)
        self.fc_reg = nn.Linear(fc, 4 * (num_classes - 1))

    def backbone_modules(self):
        return [self.conv1, self.bn1, self.layer1, self.layer2, self.layer3, self.layer4]

    def forward(self, images: List[torch.Tensor], targets: List[Dict[str, torch.Tensor]]):
        x = torch.stack(images)
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        feats = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            feats.append(x)
        laterals = [conv(f) for conv, f in zip(self.lateral, feats)]
        for i in range(len(laterals) - 1, 0, -1):
            upsampled = F.interpolate(laterals[i], laterals[i - 1].shape[-2:])
            laterals[i - 1] = laterals[i - 1] + upsampled
        pyramid = [conv(f) for conv, f in zip(self.fpn_out, laterals)]
        rpn_cls, rpn_reg = 0, 0
        for level in pyramid:
            hidden = F.relu(self.rpn_conv(level))
            logits = self.rpn_cls(hidden)
            pseudo_labels = (logits.detach() > 0).float()
            rpn_cls = rpn_cls + F.binary_cross_entropy_with_logits(logits, pseudo_labels)
            rpn_reg = rpn_reg + self.rpn_reg(hidden).abs().mean()
        rois = F.adaptive_avg_pool2d(pyramid[0], 7).flatten(1)
        hidden = F.relu(self.fc7(F.relu(self.fc6(rois))))
        labels = torch.stack([t['labels'][0] for t in targets])
        return {'loss_rpn_cls': rpn_cls, 'loss_rpn_reg': rpn_reg,
                'loss_cls': F.cross_entropy(self.fc_cls(hidden), labels),
                'loss_box': self.fc_reg(hidden).abs().mean()}


def build_detector(device: torch.device, size: Dict[str, Any], batch, seed: int = 0) -> nn.Module:
    """Faster R-CNN R50-FPN with BatchNorm2d, set up as mmdet's config trains it:
    stem and first stage frozen (``frozen_stages=1``), backbone norms in eval mode
    (``norm_eval=True``); torchvision's when it imports (and the size asks for
    it), else the stand-in."""
    torch.manual_seed(seed)
    try:
        if size['model'] != 'auto':
            raise ImportError(f"size {size['name']!r} uses the stand-in")
        from torchvision.models.detection import fasterrcnn_resnet50_fpn
    except Exception as exc:  # noqa: BLE001 (any import failure means: stand in)
        model = PlainFasterRCNN(width=size['width_mult'])
        model.source = (f"plain-torch ResNet-50-FPN stand-in, width {size['width_mult']} "
                        f'({exc!s:.80})')
        frozen = [model.conv1, model.bn1, model.layer1]
        backbone = model.backbone_modules()
    else:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # "falling back to trainable layers" without weights
            model = fasterrcnn_resnet50_fpn(
                weights=None, weights_backbone=None, num_classes=NUM_CLASSES,
                min_size=size['height'], max_size=size['width'])
        body = model.backbone.body
        model.source = 'torchvision fasterrcnn_resnet50_fpn (nn.BatchNorm2d, no pretrained weights)'
        frozen = [body.conv1, body.bn1, body.layer1]
        backbone = [body]
    for module in frozen:
        for param in module.parameters():
            param.requires_grad_(False)
    model.to(device).train()
    calibrate_frozen_norms_(model, backbone, batch)
    return model


@torch.no_grad()
def calibrate_frozen_norms_(model: nn.Module, backbone: List[nn.Module], batch) -> None:
    """Give the backbone's eval-mode norms the statistics of the data, then
    freeze them: ``norm_eval`` assumes pretrained statistics, and a ResNet-50
    from scratch whose norms normalize with mean 0 / var 1 diverges within a
    few updates, which would time NaN arithmetic."""
    norms = [m for part in backbone for m in part.modules() if isinstance(m, nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the calibration passes
    for _ in range(2):
        total_loss(model, batch)
    for norm in norms:
        norm.momentum = 0.1
        norm.eval()


def synthetic_batch(device: torch.device, size: Dict[str, int], seed: int = 0):
    """Images in [0, 1] and 5 random boxes per image with labels."""
    generator = torch.Generator().manual_seed(seed)
    height, width = size['height'], size['width']
    images, targets = [], []
    for _ in range(size['batch']):
        images.append(torch.rand(3, height, width, generator=generator).to(device))
        xy = torch.rand(5, 2, generator=generator) * torch.tensor([width * 0.7, height * 0.7])
        wh = (0.1 + 0.2 * torch.rand(5, 2, generator=generator)) * torch.tensor([width, height])
        labels = torch.randint(1, NUM_CLASSES, (5,), generator=generator)
        targets.append({'boxes': torch.cat([xy, xy + wh], 1).to(device),
                        'labels': labels.to(device)})
    return images, targets


def total_loss(model: nn.Module, batch) -> torch.Tensor:
    return sum(model(*batch).values())


def controlled_sgd(model: nn.Module, controlled: List[nn.Parameter], wrs: bool, batch: int):
    """SGD with momentum over the trainable parameters; under WRS the rescaled
    weights have their own group without decay (what WRSHook builds)."""
    ids = {id(p) for p in controlled}
    trainable = [p for p in model.parameters() if p.requires_grad]
    hparams = dict(SGD_HPARAMS, lr=SGD_HPARAMS['lr'] * batch / REFERENCE_BATCH)
    if not wrs:
        return torch.optim.SGD(trainable, foreach=True, **hparams)
    return torch.optim.SGD([dict(params=[p for p in trainable if id(p) not in ids]),
                            dict(params=controlled, weight_decay=0.0)], foreach=True, **hparams)


def traced(device: torch.device, size: Dict[str, int]):
    batch = synthetic_batch(device, size)
    model = build_detector(device, size, batch)
    result = discover_scale_invariant(model, lambda: total_loss(model, batch))
    return model, batch, result


# -- sections -------------------------------------------------------------------
def section_rescale_vs_step(device, size, ctx):
    model, batch, result = ctx['traced']
    immediate = WeightRescaler(result.invariant, check_interval=1)
    deferred = WeightRescaler(result.invariant, check_interval=DEFERRED_CHECK_INTERVAL)
    total_loss(model, batch).backward()
    sgd = controlled_sgd(model, immediate.params, True, size['batch'])
    sgd.step()
    immediate.rescale_()
    medians = interleaved({'sgd_step': sgd.step, 'rescale_immediate': immediate.rescale_,
                           'rescale_deferred': deferred.rescale_},
                          device, size['repeats'] * 2, size['warmup'])
    trainable = [p for p in model.parameters() if p.requires_grad]
    compensated = {id(n) for e in immediate.entries for n in e.running_stat_norms}
    counts = {}
    for name, fn in (('sgd_step', sgd.step), ('rescale', immediate.rescale_),
                     ('rescale_deferred_check', deferred.rescale_)):
        counted = launches(fn, device)
        if counted:
            counts[f'{name}_kernels'] = counted['kernels']
    return {
        **counts,
        **deferred_agreement(device, size),
        'model': model.source,
        'trainable_params': sum(p.numel() for p in trainable),
        'rescaled_weights': len(immediate), 'rescaled_params': immediate.num_params,
        'compensated_norms': len(compensated),
        'sgd_step_ms': 1e3 * medians['sgd_step'],
        'rescale_ms': 1e3 * medians['rescale_immediate'],
        'rescale_deferred_check_ms': 1e3 * medians['rescale_deferred'],
        'ratio': medians['rescale_immediate'] / medians['sgd_step'],
        'ratio_deferred_check': medians['rescale_deferred'] / medians['sgd_step'],
        'target': TARGETS['rescale_vs_step'],
    }


def deferred_agreement(device, size) -> Dict[str, Any]:
    """The deferred-check rescale (a CUDA graph replay on CUDA) against the
    immediate one, on two identical models driven by the same updates."""
    pairs = []
    for interval in (1, DEFERRED_CHECK_INTERVAL):
        model, _, result = traced(device, size)
        pairs.append((model, WeightRescaler(result.invariant, check_interval=interval)))
    for step in range(5):
        for model, rescaler in pairs:
            generator = torch.Generator(device).manual_seed(step)
            with torch.no_grad():
                for param in rescaler.params:  # an update that moves the norms
                    param.mul_(1.3).add_(torch.randn(param.shape, generator=generator,
                                                     device=device), alpha=1e-3)
            rescaler.rescale_()
    pairs[1][1].check_()
    worst = 0.0
    for (name, a), b in zip(pairs[0][0].state_dict().items(), pairs[1][0].state_dict().values()):
        if a.is_floating_point():
            worst = max(worst, float((a - b).abs().max() / a.abs().max().clamp_min(1e-30)))
    graphed = pairs[1][1].graphed.graph is not None
    return {'deferred_uses_cuda_graph': graphed, 'deferred_vs_immediate_max_rel_diff': worst}


def section_iteration(device, size, ctx):
    variants = {'wd': None, 'wrs': 1}
    if device.type != 'cpu':
        variants['wrs_deferred_check'] = DEFERRED_CHECK_INTERVAL
    dtypes = {'fp32': None}
    if device.type == 'cpu' or torch.cuda.is_bf16_supported():
        dtypes['bf16'] = torch.bfloat16
    out: Dict[str, Any] = {'batch': size['batch'], 'image': f"{size['height']}x{size['width']}",
                           'loss_item_per_iteration': True}
    for dtype_name, dtype in dtypes.items():
        steps = {}
        for name, interval in variants.items():
            # Each variant its own model, built from the same seed.
            model, batch, result = traced(device, size)
            rescaler = None
            if interval is not None:
                rescaler = WeightRescaler(result.invariant, check_interval=interval)
                rescaler.rescale_()
            optimizer = controlled_sgd(model, rescaler.params if rescaler else [],
                                       rescaler is not None, size['batch'])
            steps[name] = make_iteration(model, batch, optimizer, rescaler, device, dtype)
        medians = interleaved(steps, device, size['repeats'], size['warmup'])
        row = {f'{name}_ms': 1e3 * value for name, value in medians.items()}
        for name in variants:
            if name != 'wd':
                row[f'ratio_{name}'] = medians[name] / medians['wd']
        out[dtype_name] = row
        del steps
    out['target'] = TARGETS['iteration']
    return out


def make_iteration(model, batch, optimizer, rescaler, device, dtype):
    """One training iteration; ``dtype`` set: forward under autocast to it."""
    def iteration():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext():
            loss = total_loss(model, batch)
        loss.backward()
        optimizer.step()
        if rescaler is not None:
            rescaler.rescale_()
        return loss.item()  # what a logger reads every iteration

    return iteration


def launches(fn: Callable[[], Any], device: torch.device) -> Optional[Dict[str, int]]:
    """Kernels and host synchronisations of one call of ``fn`` (CUDA only)."""
    if device.type != 'cuda':
        return None
    from torch.profiler import ProfilerActivity, profile
    synchronize(device)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        synchronize(device)
    kernels = sum(1 for e in prof.events()
                  if e.device_type == torch.autograd.DeviceType.CUDA)
    return {'kernels': kernels, 'syncs': count_syncs(fn, 1)[0]}


def count_syncs(fn: Callable[[], Any], calls: int) -> List[int]:
    """Host synchronisations of each of ``calls`` calls of ``fn``."""
    counts = []
    previous = torch.cuda.get_sync_debug_mode()
    try:
        for _ in range(calls):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter('always')
                torch.cuda.set_sync_debug_mode('warn')
                fn()
                torch.cuda.set_sync_debug_mode(previous)
            counts.append(sum('synchroniz' in str(w.message) for w in caught))
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    return counts


def section_host_syncs(device, size, ctx):
    if device.type != 'cuda':
        return skipped('counting host synchronisations needs CUDA '
                       '(torch.cuda.set_sync_debug_mode)')
    model, _, result = ctx['traced']
    immediate = WeightRescaler(result.invariant, check_interval=1)
    deferred = WeightRescaler(result.invariant, check_interval=DEFERRED_CHECK_INTERVAL)
    immediate.rescale_()
    deferred.rescale_()
    deferred.rescale_()  # captured from here on (CUDA graph)
    deferred.check_()
    immediate_counts = count_syncs(immediate.rescale_, 5)
    deferred_counts = count_syncs(deferred.rescale_, DEFERRED_CHECK_INTERVAL)
    return {
        'immediate_check_per_rescale': immediate_counts,
        'deferred_check_interval': DEFERRED_CHECK_INTERVAL,
        'deferred_steady_state_max': max(deferred_counts[:-1]),
        'deferred_at_check': deferred_counts[-1],
    }


def projection_candidates(params: List[nn.Parameter], kind: str):
    """The optimizers to compare, each on its own copy of the same parameters."""
    def clone():
        copies = [nn.Parameter(p.detach().clone()) for p in params]
        for c, p in zip(copies, params):
            c.grad = p.grad.clone()
        return copies

    ours = SGDP if kind == 'sgdp' else AdamP
    hyper = dict(SGD_HPARAMS) if kind == 'sgdp' else dict(ADAM_HPARAMS)
    candidates = {'per_param': ours(clone(), foreach=False, **hyper),
                  'multi_tensor': ours(clone(), foreach=True, **hyper)}
    try:
        import adamp
    except ImportError as exc:
        return candidates, f'reference adamp not importable ({exc})'
    reference = adamp.SGDP if kind == 'sgdp' else adamp.AdamP
    candidates['reference'] = reference(clone(), **hyper)
    return candidates, None


def max_relative_difference(ours: torch.optim.Optimizer, reference: torch.optim.Optimizer) -> float:
    worst = 0.0
    for a, b in zip(ours.param_groups[0]['params'], reference.param_groups[0]['params']):
        scale = b.detach().abs().max().clamp_min(1e-30)
        worst = max(worst, float((a.detach() - b.detach()).abs().max() / scale))
    return worst


def section_projection(device, size, ctx):
    model, batch, _ = ctx['traced']
    model.zero_grad(set_to_none=True)
    total_loss(model, batch).backward()
    params = [p for p in model.parameters() if p.requires_grad and p.grad is not None]
    out: Dict[str, Any] = {'params': len(params), 'elements': sum(p.numel() for p in params),
                           'agreement_steps': size['steps'],
                           'target_speedup': TARGETS['projection_speedup']}
    for kind in ('sgdp', 'adamp'):
        # Agreement first, from identical states, then timing on the same copies.
        candidates, missing = projection_candidates(params, kind)
        row: Dict[str, Any] = {}
        if missing:
            row['reference_skipped'] = missing
        for _ in range(size['steps']):
            for optimizer in candidates.values():
                optimizer.step()
        if 'reference' in candidates:
            for name in ('per_param', 'multi_tensor'):
                row[f'max_rel_diff_{name}'] = max_relative_difference(
                    candidates[name], candidates['reference'])
        medians = interleaved({name: opt.step for name, opt in candidates.items()},
                              device, size['repeats'] * 2, size['warmup'])
        for name, optimizer in candidates.items():
            counted = launches(optimizer.step, device)
            if counted:
                row[f'{name}_kernels'], row[f'{name}_syncs'] = counted['kernels'], counted['syncs']
        row.update({f'{name}_ms': 1e3 * value for name, value in medians.items()})
        base = medians.get('reference', medians['per_param'])
        row['speedup_multi_tensor'] = base / medians['multi_tensor']
        row['speedup_vs'] = 'reference' if 'reference' in medians else 'per_param'
        out[kind] = row
    return out


def section_amp_skip(device, size, ctx):
    if device.type != 'cuda':
        return skipped("needs CUDA: mmengine's AmpOptimWrapper asserts it")
    try:
        from mmwrs.core import WRSController
        from mmwrs.engine.optim_wrappers import AmpWRSOptimWrapper
    except ImportError as exc:
        return skipped(f'mmengine not importable ({exc})')
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3),
                          nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 4)).to(device)
    x = torch.randn(4, 3, 16, 16, device=device)
    controller = WRSController()
    controller.discover(model, lambda: model(x).sum(), warn=lambda message: None)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    wrapper = AmpWRSOptimWrapper(optimizer=optimizer)
    wrapper.attach_wrs(controller, report=False)
    wrapper.initialize_count_status(model, 0, 10)
    controlled = controller.params

    def snapshot():
        return [p.detach().clone() for p in controlled]

    def max_norm_error():
        return max(float((p.detach().flatten(1).norm(dim=1) - 1).abs().max()) for p in controlled)

    before, scale_before = snapshot(), wrapper.loss_scaler.get_scale()
    with wrapper.optim_context(model):
        loss = model(x).sum() * float('inf')
    wrapper.update_params(loss)
    unchanged = all(torch.equal(a, b) for a, b in zip(before, snapshot()))
    skipped_updates = controller.num_updates
    with wrapper.optim_context(model):
        loss = model(x).square().mean()
    wrapper.update_params(loss)
    changed = not all(torch.equal(a, b) for a, b in zip(before, snapshot()))
    controller.rescaler.check_()
    return {
        'controlled_weights': len(controlled),
        'inf_step_weights_unchanged': unchanged,
        'inf_step_updates_counted': skipped_updates,
        'loss_scale_before_after_inf': [scale_before, wrapper.loss_scaler.get_scale()],
        'finite_step_weights_changed': changed,
        'finite_step_updates_counted': controller.num_updates,
        'finite_step_max_filter_norm_error': max_norm_error(),
        'passed': unchanged and skipped_updates == 0 and changed
        and controller.num_updates == 1 and max_norm_error() < 1e-4,
    }


def junit_outcomes(path: str) -> Dict[str, str]:
    """``{test name: 'passed' | 'failed: ...' | 'skipped: reason'}`` from pytest's JUnit XML."""
    outcomes = {}
    for case in ElementTree.parse(path).iter('testcase'):
        outcome = 'passed'
        for child in case:
            if child.tag in ('failure', 'error', 'skipped'):
                kind = 'skipped' if child.tag == 'skipped' else 'failed'
                outcome = f"{kind}: {(child.get('message') or '').strip()[:300]}"
        outcomes[case.get('name')] = outcome
    return outcomes


def section_cuda_tests(device, size, ctx):
    """Run the suite's CUDA tests here: CI has no GPU, so this is where they pass or fail."""
    if importlib.util.find_spec('pytest') is None:
        return skipped('pytest is not installed (pure Python: carry its wheel to the GPU machine)')
    with tempfile.TemporaryDirectory() as tmp:
        xml = osp.join(tmp, 'cuda_tests.xml')
        proc = subprocess.run(
            [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', f'--junitxml={xml}',
             CUDA_TESTS], cwd=REPO, capture_output=True, text=True, timeout=540)
        if not osp.isfile(xml):
            raise RuntimeError(f'pytest wrote no report (exit {proc.returncode}): '
                               f'{(proc.stdout + proc.stderr)[-1500:]}')
        outcomes = junit_outcomes(xml)
    counts = {kind: sum(o.split(':')[0] == kind for o in outcomes.values())
              for kind in ('passed', 'failed', 'skipped')}
    result = {'file': CUDA_TESTS, 'cuda_devices': torch.cuda.device_count(), **counts,
              'tests': outcomes}
    if counts['failed'] or not outcomes:
        failed = [name for name, o in outcomes.items() if o.startswith('failed')]
        result.update(status='failed', reason=f'failed: {", ".join(failed) or "no test ran"}')
    elif device.type != 'cuda':
        # Collected and imported (the file cannot rot), each skipped: say so.
        result.update(status='skipped', reason=f'needs CUDA: the {len(outcomes)} tests of '
                      f'{CUDA_TESTS} were collected and each skipped on the CPU')
    return result


SECTION_FUNCTIONS = {
    'rescale_vs_step': section_rescale_vs_step,
    'iteration': section_iteration,
    'host_syncs': section_host_syncs,
    'projection': section_projection,
    'amp_skip': section_amp_skip,
    'cuda_tests': section_cuda_tests,
}


def skipped(reason: str) -> Dict[str, Any]:
    return {'status': 'skipped', 'reason': reason}


# -- report -----------------------------------------------------------------------
def environment(device: torch.device, tiny: bool) -> Dict[str, Any]:
    env = {'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
           'command': ' '.join([osp.relpath(sys.argv[0], REPO)] + sys.argv[1:]),
           'size': 'tiny' if tiny else 'full', 'python': platform.python_version(),
           'torch': torch.__version__, 'cuda': torch.version.cuda, 'device': str(device),
           'device_name': (torch.cuda.get_device_name(device) if device.type == 'cuda'
                           else platform.processor() or platform.machine()),
           'threads': torch.get_num_threads()}
    from importlib import metadata
    for name in ('torchvision', 'mmengine', 'adamp'):
        try:
            __import__(name)
            env[name] = metadata.version(name)
        except Exception as exc:  # noqa: BLE001
            env[name] = f'not importable ({type(exc).__name__})'
    return env


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f'{value:.3g}' if abs(value) < 1e4 else f'{value:,.0f}'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'{value:,}'
    return str(value)


def to_markdown(report: Dict[str, Any]) -> str:
    env = report['environment']
    lines = ['# GPU check', '',
             f"{env['device_name']} ({env['device']}), torch {env['torch']}, CUDA {env['cuda']}, "
             f"torchvision {env['torchvision']}, mmengine {env['mmengine']}, adamp {env['adamp']}, "
             f"Python {env['python']}, {env['date']}, size `{env['size']}`", '',
             f"Command: `{env['command']}`", '']
    for name in SECTIONS:
        if name not in report['sections']:
            lines += [f'## {name}: not reached', '']
            continue
        section = report['sections'][name]
        lines.append(f'## {name}: {section["status"]}')
        lines.append('')
        if section['status'] != 'ran':
            lines += [section.get('reason', ''), '']
            continue
        lines += ['| key | value |', '|---|---|']
        for key, value in section.items():
            if key in ('status', 'seconds'):
                continue
            if isinstance(value, dict):
                for sub, inner in value.items():
                    lines.append(f'| {key}.{sub} | {fmt(inner)} |')
            else:
                lines.append(f'| {key} | {fmt(value)} |')
        lines += [f"({section['seconds']:.1f} s)", '']
    return '\n'.join(lines) + '\n'


def run(args, on_section: Callable[[Dict[str, Any]], Any] = lambda report: None) -> Dict[str, Any]:
    device = torch.device(args.device)
    name = 'tiny' if args.tiny else 'full'
    size = dict(SIZES[name], name=name)
    if args.model:
        size['model'] = args.model
    if args.repeats:
        size['repeats'] = args.repeats
    if args.threads:
        torch.set_num_threads(args.threads)
    report = {'environment': environment(device, args.tiny), 'sections': {}}
    ctx: Dict[str, Any] = {}
    start = time.perf_counter()
    ctx['traced'] = traced(device, size)
    report['trace_seconds'] = time.perf_counter() - start
    for name in SECTIONS:
        if args.sections and name not in args.sections:
            report['sections'][name] = skipped('not selected (--sections)')
            continue
        began = time.perf_counter()
        print(f'[gpu_check] {name} ...', flush=True)
        try:
            result = SECTION_FUNCTIONS[name](device, size, ctx)
            result.setdefault('status', 'ran')
        except Exception as exc:  # noqa: BLE001 (one failing part must not lose the rest)
            result = {'status': 'failed', 'reason': f'{type(exc).__name__}: {exc}',
                      'traceback': traceback.format_exc(limit=6)}
        result['seconds'] = time.perf_counter() - began
        report['sections'][name] = result
        on_section(report)
        print(f'[gpu_check] {name}: {result["status"]} ({result["seconds"]:.1f} s) '
              f'{result.get("reason", "")}', flush=True)
    report['total_seconds'] = time.perf_counter() - start
    return report


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', required=True, help='directory for gpu_check.json and .md')
    parser.add_argument('--tiny', action='store_true', help='small sizes: a CPU smoke run')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--repeats', type=int, default=None, help='timed repeats per candidate')
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--model', choices=('auto', 'plain'), default=None,
                        help='auto: torchvision if it imports; plain: the stand-in '
                        '(default: auto, plain with --tiny)')
    parser.add_argument('--sections', nargs='+', choices=SECTIONS, default=None)
    return parser.parse_args(argv)


def write(report: Dict[str, Any], out: str) -> str:
    """Both files, rewritten after every section so a killed run keeps its parts."""
    os.makedirs(out, exist_ok=True)
    with open(osp.join(out, 'gpu_check.json'), 'w') as f:
        json.dump(report, f, indent=2, default=str)
    markdown = to_markdown(report)
    with open(osp.join(out, 'gpu_check.md'), 'w') as f:
        f.write(markdown)
    return markdown


def main(argv=None) -> int:
    args = parse_args(argv)
    report = run(args, on_section=lambda report: write(report, args.out))
    print(write(report, args.out))
    failed = [name for name, s in report['sections'].items() if s['status'] == 'failed']
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
