"""Refuse to resume a run under another regularizer than the one it was trained with.

WRS (and FixNorm, SGDP, ...) give the optimizer other param groups than plain
weight decay: the controlled weights get groups of their own with
``weight_decay=0``. Resuming a WRS checkpoint with the ``wd`` overlay (or a
weight-decay checkpoint with ``wrs``) therefore either fails deep in torch
(``loaded state dict has a different number of parameter groups``) or, when the
group shapes happen to agree, silently takes over the saved groups' settings.
mmwrs compares the regularizers named in the checkpoint's config (mmengine
saves it in ``meta['cfg']``) with the running config before the optimizer
state is loaded, and stops with a message that says what to do.

A run started from a checkpoint's weights (``load_from`` without ``resume``)
is not a resume and is not checked: that is how to change regularizer.
"""
import functools
import re
from typing import FrozenSet

from .patching import version_fix

# The config types that change what the optimizer does to the weights. The monitor
# (NormMonitorHook) is left out: it leaves training bit-identical.
REGULARIZER_TYPES = frozenset({
    'WRSHook', 'FixNormHook', 'EpsShiftedL2Hook', 'ReplaceOptimizerHook',
    'WeightStandardizationHook', 'WRSOptimWrapperConstructor', 'WRSOptimWrapper',
    'AmpWRSOptimWrapper', 'EpsShiftedL2OptimWrapperConstructor', 'SGDP', 'AdamP'})
# Forms of one regularizer that resume into each other's state.
_SAME = {'AmpWRSOptimWrapper': 'WRSOptimWrapper'}


def regularizers_in(config_text: str) -> FrozenSet[str]:
    """The mmwrs regularizer types a config (its text or repr) names."""
    names = set(re.findall(r'''['"](\w+)['"]''', config_text)) & REGULARIZER_TYPES
    return frozenset(_SAME.get(name, name) for name in names)


def describe(regularizers: FrozenSet[str]) -> str:
    if not regularizers:
        return 'plain weight decay (no mmwrs regularizer)'
    return ' + '.join(sorted(regularizers))


def check_same_regularizer(saved_config: str, current_config: str, filename: str) -> None:
    """Raise when the checkpoint's config names other regularizers than the run's.

    Raises:
        RuntimeError: Naming both and what to do instead.
    """
    saved, current = regularizers_in(saved_config), regularizers_in(current_config)
    if saved == current:
        return
    raise RuntimeError(
        f'cannot resume {filename}: it was trained with {describe(saved)}, but this run '
        f'uses {describe(current)}. A regularizer cannot change within a run: they give '
        'the optimizer different param groups (WRS, FixNorm, SGDP/AdamP and the '
        'ε-shifted L2 give the weights they control groups of their own), so the saved '
        "optimizer state does not fit this run's optimizer. Resume with the config the "
        'checkpoint was trained with, or start a new run from its weights with '
        f"load_from='{filename}' and resume=False.")


@version_fix('mmengine', '0.10.0', '0.11.0')
def guard_resume() -> None:
    """Check the regularizer when mmengine's Runner resumes (``resume=True``).

    Versions: mmengine 0.10.x, whose ``Runner.resume`` loads the checkpoint with
    ``Runner.load_checkpoint`` (which runs the hooks' ``after_load_checkpoint``)
    before it loads the optimizer state, and whose checkpoints keep the config
    text in ``meta['cfg']``.
    """
    from mmengine.runner import Runner
    original_resume, original_load = Runner.resume, Runner.load_checkpoint

    @functools.wraps(original_resume)
    def resume(self, filename, *args, **kwargs):
        self._mmwrs_resuming = True
        try:
            return original_resume(self, filename, *args, **kwargs)
        finally:
            self._mmwrs_resuming = False

    @functools.wraps(original_load)
    def load_checkpoint(self, filename, *args, **kwargs):
        checkpoint = original_load(self, filename, *args, **kwargs)
        saved = checkpoint.get('meta', {}).get('cfg') if isinstance(checkpoint, dict) else None
        if getattr(self, '_mmwrs_resuming', False) and isinstance(saved, str):
            check_same_regularizer(saved, repr(self.cfg._cfg_dict.to_dict()), filename)
        return checkpoint

    Runner.resume, Runner.load_checkpoint = resume, load_checkpoint
