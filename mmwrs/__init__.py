"""mmwrs: Weight Rescaling (WRS) and its comparison regularizers for OpenMMLab.

``import mmwrs`` (e.g. through ``custom_imports=dict(imports=['mmwrs'])``)
applies the fixes for the pinned stack and registers every mmwrs type into
mmengine's root registries, where mmdet- and mmseg-scoped configs find them.
The algorithms in :mod:`mmwrs.core` and :mod:`mmwrs.optim` need only PyTorch;
the rest is imported when mmengine (and mmdet / mmseg) are installed.
"""
import importlib.util

from .version import __version__

if importlib.util.find_spec('mmengine') is not None:
    from . import compat
    compat.apply()
    from . import engine  # noqa: F401  (registers hooks and optimizers)

__all__ = ['__version__']
