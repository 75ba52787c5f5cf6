"""What the mmwrs hooks, constructors and wrappers need from mmengine's Runner.

One place for the small questions every adapter asks: is this a training run,
which model is inside the DDP wrapper, which optimizers and schedulers does the
runner hold, and how to run one discovery forward pass on the first training
samples without disturbing what training will see.
"""
import contextlib
import random
from typing import Any, Callable, Dict, Iterable, List, Optional

import numpy as np
import torch
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapperDict
from mmengine.runner import BaseLoop

from .discovery_pass import discovery_pass, min_image_size
from .param_groups import split_off_params_


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DDP-style wrapper, or ``model`` itself."""
    return model.module if is_model_wrapper(model) else model


def is_training_run(runner) -> bool:
    """Whether ``runner`` was built to train.

    ``runner.val()`` / ``runner.test()`` runners have no train loop: the
    regularizer hooks have nothing to do there (and no optimizer to reshape).
    ``runner.train()`` builds the loop before ``before_run``; the private
    attribute is read because in a val/test run the ``train_loop`` property
    would build the loop, and its dataloader, only to answer.
    """
    return isinstance(getattr(runner, '_train_loop', None), BaseLoop)


def built_loop(runner) -> Optional[BaseLoop]:
    """The loop ``runner`` was built to run: train, else test, else val; None
    before any is built. Private attributes, as in :func:`is_training_run`."""
    for kind in ('train', 'test', 'val'):
        loop = getattr(runner, f'_{kind}_loop', None)
        if isinstance(loop, BaseLoop):
            return loop
    return None


def optim_wrappers_of(runner) -> Dict[str, Any]:
    """The runner's optimizer wrappers by name ('' when there is only one)."""
    wrapper = runner.optim_wrapper
    if isinstance(wrapper, OptimWrapperDict):
        return dict(wrapper.items())
    return {'': wrapper}


def optimizers_of(runner) -> Dict[str, torch.optim.Optimizer]:
    """The runner's torch optimizers, by the names of their wrappers."""
    return {name: w.optimizer for name, w in optim_wrappers_of(runner).items()}


def updates_per_epoch(runner) -> float:
    """Optimizer updates in one pass over the train dataloader (fewer under
    gradient accumulation: one every ``accumulative_counts`` iterations)."""
    counts = [getattr(w, '_accumulative_counts', 1) for w in optim_wrappers_of(runner).values()]
    return len(runner.train_dataloader) / max(counts)


def schedulers_of(runner, name: str) -> List[Any]:
    """The param schedulers of the optimizer wrapper called ``name``."""
    schedulers = getattr(runner, 'param_schedulers', None) or []
    if isinstance(schedulers, dict):
        schedulers = schedulers.get(name, [])
    return list(schedulers)


def split_off_in_runner_(runner, chosen: Iterable[torch.nn.Parameter],
                         overrides: Dict[str, Any]) -> None:
    """:func:`~mmwrs.engine.param_groups.split_off_params_` on every optimizer of
    ``runner``, re-indexing its param schedulers."""
    for name, optimizer in optimizers_of(runner).items():
        split_off_params_(optimizer, chosen, overrides, schedulers_of(runner, name))


def sample_batch(dataloader) -> Any:
    """Collate the first samples of ``dataloader``'s dataset into one batch.

    Reads the dataset directly, leaving the sampler's iteration state alone,
    and restores Python's and numpy's RNGs that random augmentations consume,
    so tracing does not change what training sees.
    """
    dataset = dataloader.dataset
    batch_size = dataloader.batch_size or getattr(dataloader.batch_sampler, 'batch_size', 2)
    # Two samples at least: a train-mode BatchNorm1d needs more than one value.
    count = min(len(dataset), max(2, batch_size or 2))
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        return dataloader.collate_fn([dataset[i] for i in range(count)])
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def model_forward(model: torch.nn.Module, batch: Any, mode: str = 'loss') -> Callable[[], Any]:
    """A forward pass of an mmengine ``BaseModel`` in loss mode (or
    ``mode='tensor'``: the inference forward, for data without annotations),
    run in a :func:`~mmwrs.engine.discovery_pass.discovery_pass`."""
    def forward():
        with discovery_pass(model):
            data = model.data_preprocessor(batch, mode == 'loss')
            if isinstance(data, dict):
                return model(**data, mode=mode)
            return model(*data, mode=mode)
    return forward


@contextlib.contextmanager
def train_mode(model: torch.nn.Module, mode: bool = True):
    """Put ``model`` in training mode (or eval mode, ``mode=False``) for a
    discovery pass, then restore each module's own mode.

    Training mode is what the train loop uses (it applies e.g. mmdet's
    ``norm_eval``, which decides whether a BN needs running-stat compensation).
    """
    was_training = {m: m.training for m in model.modules()}
    model.train(mode)
    try:
        yield model
    finally:
        for module, mode in was_training.items():
            module.training = mode


def discovery_forward(runner) -> Callable[[], Any]:
    """One loss-mode forward pass of the runner's model on the first samples
    of its training set (what :class:`~mmwrs.engine.WRSHook` traces).

    Raises:
        ValueError: The images are smaller than the model's loss forward
            accepts (:func:`~mmwrs.engine.discovery_pass.min_image_size`).
    """
    model = unwrap_model(runner.model)
    batch = sample_batch(runner.train_dataloader)
    check_image_size(model, batch)
    return model_forward(model, batch)


def check_image_size(model: torch.nn.Module, batch: Any) -> None:
    """Raise a clear error where the batch's (padded) images are smaller than
    :func:`~mmwrs.engine.discovery_pass.min_image_size` of ``model``."""
    needed = min_image_size(model)
    images = batch.get('inputs') if isinstance(batch, dict) else None
    if not needed or not isinstance(images, (list, tuple)) or not images:
        return
    height = max(image.shape[-2] for image in images)
    width = max(image.shape[-1] for image in images)
    if min(height, width) < needed:
        raise ValueError(
            f'{type(model).__name__} picks its num_queries={model.num_queries} queries among '
            f'the encoder tokens, which needs images of at least {needed}x{needed} px; the '
            f'first training batch is {height}x{width} px. Train at a larger scale (the '
            'train pipeline\'s Resize / RandomResize scale), or lower model.num_queries.')
