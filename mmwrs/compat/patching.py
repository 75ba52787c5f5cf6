"""One way to apply a fix to another library: only for the versions it was written for, once.

A fix is a function that installs a patch, decorated with :func:`version_fix`. The
decorated function returns whether the fix is in effect: False where the installed
version is outside the range the fix was written for (or its ``needed`` test says
no), True once installed; a second call installs nothing. Which fixes are installed
is one explicit set in this module, not markers left on patched functions.
"""
import functools
import importlib
from typing import Callable, Optional, Set

from .versions import in_range

# The qualified names of the fixes installed in this process.
installed: Set[str] = set()


def version_fix(module: str, lowest: str, highest: Optional[str] = None, *,
                needed: Optional[Callable[[], bool]] = None):
    """Decorate the function that installs a fix.

    Args:
        module: The module whose ``__version__`` decides (e.g. ``'mmengine'``).
        lowest: The lowest version the fix was written for.
        highest: The first version it was not written for (None: no bound).
        needed: A further test, asked before installing (e.g. whether the
            installed library still has the problem).
    """
    def decorate(install: Callable[[], None]) -> Callable[[], bool]:
        key = f'{install.__module__}.{install.__qualname__}'

        @functools.wraps(install)
        def apply() -> bool:
            version = importlib.import_module(module).__version__
            if not in_range(version, lowest, highest):
                return False
            if key in installed:
                return True
            if needed is not None and not needed():
                return False
            install()
            installed.add(key)
            return True
        return apply
    return decorate
