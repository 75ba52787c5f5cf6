"""Builders of real stock models and small inputs, for tests and benchmarks.

Models come from the stock mmdet / mmseg configs with pretrained weights
switched off (these machines cannot download them). mmengine is imported by the
builders that need it: the plain-torch helpers (:func:`randomize_norm_stats_`,
:func:`conv_norm_pair`) serve the CUDA tests on a machine with torch alone.
"""
import copy
from typing import TYPE_CHECKING, Any, Dict, Optional

import torch

if TYPE_CHECKING:
    from mmengine.config import Config

STOCK_DETECTORS = {
    'faster_rcnn': 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
    'retinanet': 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
    'mask_rcnn': 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
}
STOCK_SEGMENTORS = {
    'fcn': 'mmseg::fcn/fcn_r50-d8_4xb2-40k_cityscapes-512x1024.py',
    'pspnet': 'mmseg::pspnet/pspnet_r50-d8_4xb2-40k_cityscapes-512x1024.py',
    'deeplabv3plus': 'mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb2-40k_cityscapes-512x1024.py',
}


def codebase_of(cfg: 'Config') -> str:
    """'mmdet' or 'mmseg', from the config's default scope."""
    scope = cfg.get('default_scope')
    if scope not in ('mmdet', 'mmseg'):
        raise ValueError(f"default_scope must be 'mmdet' or 'mmseg', got {scope!r}")
    return scope


def without_pretrained(model_cfg: Dict[str, Any]) -> Dict[str, Any]:
    """A copy of a model config that loads no pretrained weights."""
    model_cfg = copy.deepcopy(model_cfg)
    if 'pretrained' in model_cfg:
        model_cfg['pretrained'] = None
    for key in ('backbone', 'neck', 'decode_head', 'auxiliary_head'):
        part = model_cfg.get(key)
        if isinstance(part, dict) and 'init_cfg' in part:
            part['init_cfg'] = None
    return model_cfg


def build_model_from_cfg(cfg: 'Config') -> torch.nn.Module:
    """Build ``cfg.model`` with the registry of the config's codebase."""
    scope = codebase_of(cfg)
    from mmengine.registry import init_default_scope
    init_default_scope(scope)
    if scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    return MODELS.build(without_pretrained(cfg.model))


def build_stock_model(config: str, cfg_options: Optional[dict] = None) -> torch.nn.Module:
    """Build a stock model from ``mmdet::...`` / ``mmseg::...`` config name."""
    from mmengine.config import Config
    from mmengine.hub import get_config
    cfg = get_config(config) if '::' in config else Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    model = build_model_from_cfg(cfg)
    model.cfg = cfg
    return model


def demo_batch(model: torch.nn.Module, num_images: int = 2, size: int = 64,
               num_classes: Optional[int] = None, seed: int = 0) -> Dict[str, Any]:
    """A small random batch in the format ``model.data_preprocessor`` takes."""
    scope = codebase_of(model.cfg)
    generator = torch.Generator().manual_seed(seed)
    if scope == 'mmdet':
        from mmdet.testing import demo_mm_inputs
        with_mask = bool(getattr(model, 'with_mask', False))
        torch.manual_seed(seed)
        return demo_mm_inputs(batch_size=num_images, image_shapes=[(3, size, size)] * num_images,
                              num_items=[3] * num_images,
                              num_classes=num_classes or 3, with_mask=with_mask)
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    classes = num_classes or model.decode_head.num_classes
    inputs, samples = [], []
    for _ in range(num_images):
        inputs.append(torch.randint(0, 256, (3, size, size), generator=generator,
                                    dtype=torch.uint8))
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=torch.randint(
            0, classes, (1, size, size), generator=generator))
        sample.set_metainfo(dict(img_shape=(size, size), ori_shape=(size, size),
                                 pad_shape=(size, size), scale_factor=(1.0, 1.0)))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def loss_of(model: torch.nn.Module, batch: Dict[str, Any]) -> torch.Tensor:
    """Total loss of ``model`` on ``batch`` (train-mode forward)."""
    data = model.data_preprocessor(batch, True)
    losses = model(**data, mode='loss')
    total, _ = model.parse_losses(losses)
    return total


def randomize_norm_stats_(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every norm non-trivial running statistics and affine parameters.

    Fresh norms (mean 0, var 1, gamma 1, beta 0) and ResNet's zero-initialized
    last gamma of each block can hide a wrong rescale; this removes both.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            for name in ('running_mean', 'running_var', 'weight', 'bias'):
                tensor = getattr(module, name, None)
                if not isinstance(tensor, torch.Tensor) or tensor.dim() != 1:
                    continue
                if not isinstance(module, (torch.nn.modules.batchnorm._NormBase,
                                           torch.nn.GroupNorm, torch.nn.LayerNorm)):
                    continue
                noise = torch.rand(tensor.shape, generator=generator, dtype=torch.float64)
                if name == 'running_var':
                    tensor.copy_(0.5 + 2.0 * noise)
                elif name == 'weight':
                    tensor.copy_(0.5 + noise)
                else:
                    tensor.copy_(noise - 0.5)


def conv_norm_pair(norm_eval: bool = True, seed: int = 0) -> torch.nn.Module:
    """Conv -> BatchNorm (eval-mode when ``norm_eval``), conv -> GroupNorm, with
    non-trivial norm statistics: the smallest model with both compensations."""
    nn = torch.nn
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4),
                          nn.Conv2d(4, 6, 1, bias=False), nn.GroupNorm(2, 6))
    randomize_norm_stats_(model)
    model.train()
    if norm_eval:
        model[1].eval()
    return model


def traced_faster_rcnn(device='cpu'):
    """The benchmarks' parameter set: stock Faster R-CNN R50-FPN (nothing
    frozen) on ``device``, a demo batch, and its discovery result."""
    from mmwrs.core import discover_scale_invariant
    model = build_stock_model(STOCK_DETECTORS['faster_rcnn'],
                              {'model.backbone.frozen_stages': -1}).to(device)
    model.train()
    batch = demo_batch(model, num_images=2, size=64)
    return model, batch, discover_scale_invariant(model, lambda: loss_of(model, batch))


def timed(fn, device) -> float:
    """Seconds one call of ``fn`` takes, synchronizing CUDA around it."""
    import time
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize()
    return time.perf_counter() - start
