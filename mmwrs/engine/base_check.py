"""What a config's own keys dropped from its ``_base_`` files.

mmengine merges dicts across ``_base_`` files but replaces lists, and a child
config's ``optim_wrapper.constructor`` overwrites the base's. So
``custom_hooks = [dict(type='WRSHook')]`` over a base with its own hooks (RTMDet:
EMAHook, PipelineSwitchHook) drops them, and
``optim_wrapper = dict(constructor='WRSOptimWrapperConstructor')`` over a base
with its own constructor (BEiT, ConvNeXt: a layer-decay constructor) replaces it.
The composed config no longer shows either, so this module composes the config's
``_base_`` files on their own and compares.
"""
import inspect
import os.path as osp
from typing import List, Optional

from mmengine.config import Config

WRS_CONSTRUCTORS = ('WRSOptimWrapperConstructor', 'EpsShiftedL2OptimWrapperConstructor')


def base_config(filename: Optional[str]) -> Optional[dict]:
    """The config's ``_base_`` files composed without the config's own keys.

    Args:
        filename: Path of the config file (``Config.filename``); None for a
            config built in memory.

    Returns:
        dict or None: Every key the ``_base_`` files define (later files
        override earlier ones, as mmengine does), or None when there is no file
        or it has no ``_base_``.
    """
    if not filename or not osp.isfile(filename):
        return None
    merged = {}
    for base in Config._get_base_files(filename):
        path, _scope = Config._get_cfg_path(base, filename)
        merged.update(Config.fromfile(path).to_dict())
    return merged or None


def _types(hooks) -> List[str]:
    return [h.get('type') if isinstance(h, dict) else type(h).__name__ for h in hooks or []]


def dropped_hooks(cfg) -> List[str]:
    """Types of the base's ``custom_hooks`` the composed config no longer has.

    Args:
        cfg: The composed config (with its ``filename``).

    Returns:
        list[str]: Hook types listed by the ``_base_`` files' ``custom_hooks``
        and absent from the config's ``custom_hooks`` and ``default_hooks``.
    """
    base = base_config(getattr(cfg, 'filename', None))
    if base is None:
        return []
    kept = set(_types(cfg.get('custom_hooks'))) | set(
        _types((cfg.get('default_hooks') or {}).values()))
    return [t for t in _types(base.get('custom_hooks')) if t not in kept]


def check_constructor_kept(filename: Optional[str], optim_wrapper_cfg: dict, owner: str) -> None:
    """Stop when a WRS constructor replaced the base config's own constructor.

    Args:
        filename: Path of the config file; None skips the check.
        optim_wrapper_cfg: The composed ``optim_wrapper`` config.
        owner: The constructor's name, for the message.

    Raises:
        ValueError: The ``_base_`` files set ``optim_wrapper.constructor`` to
            another constructor and ``inner_constructor`` does not name it.
    """
    base = base_config(filename)
    if base is None:
        return
    own = (base.get('optim_wrapper') or {}).get('constructor')
    if own in (None, owner, *WRS_CONSTRUCTORS):
        return
    inner = optim_wrapper_cfg.get('inner_constructor', 'DefaultOptimWrapperConstructor')
    if inner != own:
        raise ValueError(
            f'{owner}: the base config of {filename} builds its optimizer with '
            f'optim_wrapper.constructor={own!r}, which constructor={owner!r} replaced '
            f'(inner_constructor={inner!r}). Keep it: add '
            f"inner_constructor='{own}' to optim_wrapper, or apply WRS as a hook, "
            "default_hooks = dict(wrs=dict(type='WRSHook')), which keeps the constructor.")


def runner_config_filename() -> Optional[str]:
    """The config file of the Runner that is building the optimizer wrapper.

    mmengine hands an optimizer-wrapper constructor only the ``optim_wrapper``
    config, not the config file it came from; the Runner calling it is on the
    stack (``Runner.build_optim_wrapper``), so its ``cfg.filename`` is read
    from there. None when no Runner is building it (a direct call).
    """
    from mmengine.runner import Runner
    frame = inspect.currentframe()
    while frame is not None:
        owner = frame.f_locals.get('self')
        if isinstance(owner, Runner):
            return getattr(owner.cfg, 'filename', None)
        frame = frame.f_back
    return None
