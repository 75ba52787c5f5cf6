"""A small synthetic training batch for a stock mmdet detector or mmseg segmentor.

mmengine's optimizer-wrapper constructors receive the model and nothing else,
while discovery needs one forward pass. Which weights feed only a normalization
layer depends on the model's structure, not on the data, so a synthetic batch in
the codebase's own format does: it runs the same loss-mode forward as training,
through every head (mmseg's auxiliary heads and mmdet's mask heads included).
"""
from typing import Callable

import torch

from .discovery_pass import discovery_pass, min_image_size
from .runner_utils import model_forward

# Small enough to be cheap on CPU for R50-size models, large enough for every
# stride of an FPN / dilated ResNet to keep a spatial extent of at least 2.
EXAMPLE_SIZE = 128


def _seg_forward(model) -> Callable[[], object]:
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    heads = model.decode_head if isinstance(model.decode_head, torch.nn.ModuleList) \
        else [model.decode_head]
    num_classes = min(head.num_classes for head in heads)
    generator = torch.Generator().manual_seed(0)
    # Backbones with a fixed input size (BEiT, ViT: position tables sized by
    # img_size) train at the crop the data preprocessor pads to: use it.
    size = tuple(getattr(model.data_preprocessor, 'size', None) or (EXAMPLE_SIZE, EXAMPLE_SIZE))
    samples = []
    for _ in range(2):
        sample = SegDataSample(metainfo=dict(img_shape=size, ori_shape=size, pad_shape=size,
                                             batch_input_shape=size, padding_size=[0, 0, 0, 0]))
        sample.gt_sem_seg = PixelData(
            data=torch.randint(0, max(num_classes, 1), (1, *size), generator=generator))
        samples.append(sample)
    inputs = torch.randn(2, 3, *size, generator=generator)

    def forward():
        device = next(model.parameters()).device
        with discovery_pass(model):
            return model(inputs.to(device), [s.to(device) for s in samples], mode='loss')
    return forward


def _needs_masks(model) -> bool:
    """Whether the detector's loss reads ground-truth masks: two-stage ones
    with a mask head say so (``with_mask``); single-stage instance heads
    (RTMDet-Ins, SOLO, CondInst) have a mask loss of their own."""
    if getattr(model, 'with_mask', False):
        return True
    head = getattr(model, 'bbox_head', None) or getattr(model, 'mask_head', None)
    return head is not None and any(hasattr(head, name) for name in ('loss_mask', 'loss_dice'))


def _det_forward(model) -> Callable[[], object]:
    from mmdet.testing import demo_mm_inputs
    size = max(EXAMPLE_SIZE, min_image_size(model))
    batch = demo_mm_inputs(batch_size=2, image_shapes=(3, size, size),
                           num_items=[3, 3], num_classes=2, with_mask=_needs_masks(model))
    for sample in batch['data_samples']:
        sample.gt_instances.labels.zero_()  # class 0 exists in every detector
    return model_forward(model, batch)


def example_loss_forward(model: torch.nn.Module, owner: str) -> Callable[[], object]:
    """A function running one loss-mode forward pass of ``model`` on synthetic data.

    Args:
        model: An (unwrapped) mmdet ``BaseDetector`` or mmseg ``BaseSegmentor``.
        owner: Name used in the error message.

    Raises:
        TypeError: ``model`` is neither; names the alternative that works for
            any model (:class:`~mmwrs.engine.WRSHook`, which traces the first
            real training batch).
    """
    try:
        from mmseg.models.segmentors import BaseSegmentor
        if isinstance(model, BaseSegmentor):
            return _seg_forward(model)
    except ImportError:
        pass
    try:
        from mmdet.models.detectors import BaseDetector
        if isinstance(model, BaseDetector):
            return _det_forward(model)
    except ImportError:
        pass
    raise TypeError(
        f'{owner}: cannot make an example batch for {type(model).__name__}: it is '
        'neither an mmdet detector nor an mmseg segmentor. Use '
        "default_hooks=dict(wrs=dict(type='WRSHook')) instead: the hook traces the first "
        'real training batch, for any model.')
