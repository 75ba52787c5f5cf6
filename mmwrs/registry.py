"""The ``mmwrs`` scope's registries, children of mmengine's root registries.

Hooks in an overlay read through ``mmwrs::regularizers/<name>.py`` are built in
the ``mmwrs`` scope (mmengine gives a base config's objects the scope of its
package). mmengine then imports ``mmwrs.registry`` and looks for an ``mmwrs``
child of the root registry; these children hold nothing of their own, so every
lookup falls through to the root registry, where :mod:`mmwrs.engine` registered
the mmwrs types, and on to mmengine's own.
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import Registry

# locations: what registers the types (into the root), imported on first use;
# without it mmengine falls back to a `mmwrs.utils.register_all_modules` and warns.
_WHERE = dict(scope='mmwrs', locations=['mmwrs.engine'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, **_WHERE)
OPTIMIZERS = Registry('optimizer', parent=MMENGINE_OPTIMIZERS, **_WHERE)
OPTIM_WRAPPERS = Registry('optim_wrapper', parent=MMENGINE_OPTIM_WRAPPERS, **_WHERE)
OPTIM_WRAPPER_CONSTRUCTORS = Registry('optimizer wrapper constructor',
                                      parent=MMENGINE_CONSTRUCTORS, **_WHERE)
