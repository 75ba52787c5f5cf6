"""mmwrs: Weight Rescaling (WRS) and its comparison regularizers for OpenMMLab.

``import mmwrs`` (e.g. through ``custom_imports=dict(imports=['mmwrs'])``)
checks the installed versions (one clear error outside the supported ranges,
see :data:`mmwrs.compat.SUPPORTED`), applies the fixes the installed stack
needs, registers every mmwrs type into mmengine's root registries, where
mmdet- and mmseg-scoped configs find them, and makes the shipped regularizer
overlays reachable as ``mmwrs::regularizers/<name>.py`` in configs read after
it. The algorithms in :mod:`mmwrs.core` and :mod:`mmwrs.optim` need only
PyTorch; the rest is imported when mmengine (and mmdet / mmseg) are installed.
"""
import importlib.util

from . import compat
from .version import __version__

compat.check_versions()

if importlib.util.find_spec('mmengine') is not None:
    compat.apply()
    from . import engine  # noqa: F401  (registers hooks and optimizers)
    from .configs import register_config_scope
    register_config_scope()

__all__ = ['__version__']
