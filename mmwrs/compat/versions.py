"""The version policy: the supported ranges and one clear error outside them.

Kept apart from the fixes (:mod:`mmwrs.compat`) so that a fix module can ask
:func:`in_range` without importing the package that applies it (no import cycle).
"""
import importlib.metadata
import importlib.util
import re
from typing import Dict, Optional, Tuple

# Supported ranges, [lowest, highest): what CI tests plus what there is good reason
# to expect (README's compatibility table). Keep them in step with setup.py.
#   torch >= 2.0: WRS rescales in an optimizer step post-hook
#     (Optimizer.register_step_post_hook, new in torch 2.0).
#   mmengine 0.10.x: the hooks' and Runner's interfaces mmwrs adapts, and the
#     versions the mmengine fixes below were written for; mmdet 3.x and
#     mmsegmentation 1.x require mmengine < 1.0 themselves.
#   mmdet 3.x / mmsegmentation 1.x: the data structures discovery feeds models
#     (mmdet.structures, mmseg.structures), both new in those major versions.
SUPPORTED: Dict[str, Tuple[str, Optional[str]]] = {
    'torch': ('2.0.0', None),
    'mmengine': ('0.10.0', '1.0.0'),
    'mmdet': ('3.0.0', '4.0.0'),
    'mmsegmentation': ('1.0.0', '2.0.0'),
}
# Imported as these modules (mmsegmentation is `import mmseg`).
_MODULES = {'torch': 'torch', 'mmengine': 'mmengine', 'mmdet': 'mmdet',
            'mmsegmentation': 'mmseg'}


def version_tuple(version: str) -> Tuple[int, ...]:
    """``'2.1.2+cu121'`` -> ``(2, 1, 2)``; pre-release tags count as the release."""
    match = re.match(r'(\d+(?:\.\d+)*)', version)
    if not match:
        raise ValueError(f'cannot read a version number from {version!r}')
    numbers = tuple(int(part) for part in match.group(1).split('.'))
    return (numbers + (0, 0, 0))[:3]


def in_range(version: str, lowest: str, highest: Optional[str] = None) -> bool:
    """``lowest <= version < highest`` (no upper bound when ``highest`` is None)."""
    v = version_tuple(version)
    return v >= version_tuple(lowest) and (highest is None or v < version_tuple(highest))


def installed_version(package: str) -> Optional[str]:
    """The installed version of ``package`` (a distribution name), or None.

    Read from the package metadata without importing the package (importing
    mmdet or mmseg takes seconds); a module found on ``sys.path`` without
    metadata (a source checkout) is asked for its ``__version__``.
    """
    module = _MODULES.get(package, package)
    if importlib.util.find_spec(module) is None:
        return None
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return getattr(importlib.import_module(module), '__version__', None)


def _describe(lowest: str, highest: Optional[str]) -> str:
    return f'>={lowest}' + (f',<{highest}' if highest else '')


def check_versions() -> None:
    """Stop with one message when an installed version is outside the supported ranges.

    torch is checked always; mmengine, mmdet and mmsegmentation when installed
    (mmwrs.core and mmwrs.optim need only torch).

    Raises:
        ImportError: Naming every installed version out of range and the
            supported ranges.
    """
    from ..version import __version__
    found = {name: installed_version(name) for name in SUPPORTED}
    bad = [name for name, version in found.items()
           if version is not None and not in_range(version, *SUPPORTED[name])]
    if found['torch'] is None:
        raise ImportError(f'mmwrs {__version__} needs PyTorch '
                          f'(torch{_describe(*SUPPORTED["torch"])}); install the build '
                          'for your machine from pytorch.org')
    if bad:
        installed = ', '.join(f'{name} {found[name]}' for name in bad)
        supported = ', '.join(f'{name}{_describe(*SUPPORTED[name])}' for name in SUPPORTED)
        raise ImportError(
            f'mmwrs {__version__} does not support the installed {installed}. '
            f'Supported: {supported}. Install versions in these ranges (the README\'s '
            'compatibility table lists the tested stacks), or an mmwrs release made '
            'for your versions.')
