"""One discovery forward pass of an mmengine model, leaving no trace training sees.

Discovery runs the model's loss-mode forward once, before training starts
(before the Runner's loops have published anything). Stock models read and
write state on that path that training owns:

* mmdet's ``BatchSyncRandomResize`` (YOLOX, RTMDet batch augments) reads the
  message hub's ``iter``, which no loop has set yet, and draws a new input size
  from Python's ``random`` on its schedule;
* random augmentations in data preprocessors draw from ``random`` / numpy.

:func:`discovery_pass` gives such code the iteration a run starts at and puts
back everything it may change. :func:`min_image_size` is the smallest image
side a model's loss forward accepts, where a model has one.
"""
import contextlib
import math
import random

import numpy as np
import torch
from mmengine.logging import MessageHub


def _batch_augments(model: torch.nn.Module):
    preprocessor = getattr(model, 'data_preprocessor', None)
    return list(getattr(preprocessor, 'batch_augments', None) or [])


@contextlib.contextmanager
def discovery_pass(model: torch.nn.Module):
    """Context for one forward pass of ``model`` before training.

    Sets the message hub's ``iter`` to 0 if no loop has set it (and removes it
    afterwards), and restores the plain attributes of the data preprocessor's
    batch augments and the Python and numpy RNG states on exit.
    """
    hub = MessageHub.get_current_instance()
    set_iter = hub.get_info('iter') is None
    if set_iter:
        hub.update_info('iter', 0)
    saved = [(augment, dict(vars(augment))) for augment in _batch_augments(model)]
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        for augment, attributes in saved:
            vars(augment).update(attributes)
        if set_iter:
            hub.runtime_info.pop('iter', None)


def min_image_size(model: torch.nn.Module) -> int:
    """The smallest image side (px) the loss forward of ``model`` accepts; 0: any.

    DETR-family detectors that pick their queries among the encoder's tokens
    (DINO, two-stage Deformable DETR) need at least ``num_queries`` tokens; the
    finest level of their multi-scale encoder has stride 8, and all levels
    together hold about 4/3 of it, so a side of ``8 * sqrt(num_queries)``
    rounded up to 32 px is enough.
    """
    num_queries = getattr(model, 'num_queries', None)
    picks_from_tokens = type(model).__name__ == 'DINO' or getattr(model, 'as_two_stage', False)
    if not num_queries or not picks_from_tokens:
        return 0
    return int(math.ceil(8 * math.sqrt(num_queries) / 32) * 32)
