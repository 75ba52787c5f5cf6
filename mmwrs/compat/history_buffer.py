"""Keep function references out of the message hub that mmengine 0.10 checkpoints."""
from .patching import version_fix

_BUILTIN_STATISTICS = ('min', 'max', 'current', 'mean')


def getstate_without_builtin_statistics(self) -> dict:
    """``HistoryBuffer.__getstate__`` without the built-in statistic methods."""
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)
    custom = {name: method for name, method in self._statistics_methods.items()
              if name not in _BUILTIN_STATISTICS}
    if custom:
        state['statistics_methods'] = custom
    return state


@version_fix('mmengine', '0.10.0', '0.11.0')
def picklable_history_buffers() -> None:
    """Keep function references out of the message hub in checkpoints.

    Why: mmengine 0.10.x's ``HistoryBuffer.__getstate__`` stores the class's
    statistic methods (``HistoryBuffer.min`` ...) in every buffer, which
    pickles as ``getattr(HistoryBuffer, 'min')``; loading that in torch >= 2.6's
    safe mode would need ``getattr`` allow-listed, which would make safe mode
    unsafe. Its ``__setstate__`` restores the built-in methods anyway, so they
    are left out (custom registered methods are still saved, as before).
    Versions: mmengine 0.10.x (written for 0.10.7's ``__getstate__``, the same
    in 0.10.3); applied on any torch, because a checkpoint written on torch
    2.1 may be resumed on torch >= 2.6.
    """
    from mmengine.logging import HistoryBuffer
    HistoryBuffer.__getstate__ = getstate_without_builtin_statistics
