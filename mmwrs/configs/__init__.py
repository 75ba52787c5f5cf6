"""The regularizer overlays shipped inside the mmwrs package.

``mmwrs/configs/regularizers/<name>.py`` (``wd``, ``wrs``, ``fixnorm``, ``sgdp``,
``adamp``, ``ws``, ``eps_l2``, ``ws_eps_l2``, ``wrs_adamw``) are package data, so
a pip-installed mmwrs has them. A config reaches them:

* as ``'mmwrs::regularizers/wrs.py'`` in ``_base_`` when mmwrs is imported before
  the config is read (mmwrs's ``tools/train.py``/``test.py``, or your own script
  doing ``import mmwrs`` first): :func:`register_config_scope` adds the scope to
  mmengine's ``MODULE2PACKAGE``, which resolves it to ``mmwrs/.mim/configs``
  exactly as it resolves ``mmdet::``;
* by file path anywhere else (mmdet's or mmseg's own ``tools/train.py`` read the
  config before anything imports mmwrs): ``python -m mmwrs.configs wrs`` prints
  it.

Neither is needed for the self-contained form (``custom_imports`` +
``custom_hooks`` in your own config), the README's first example.
"""
import os.path as osp
import sys
from typing import List

REGULARIZERS = osp.join(osp.dirname(osp.abspath(__file__)), 'regularizers')


def overlays() -> List[str]:
    """Names of the shipped overlays (``'wrs'``, ``'wd'``, ...)."""
    import glob
    return sorted(osp.splitext(osp.basename(p))[0]
                  for p in glob.glob(osp.join(REGULARIZERS, '*.py')))


def overlay_path(name: str) -> str:
    """Absolute path of the shipped overlay ``name`` (e.g. ``'wrs'``).

    Raises:
        ValueError: ``name`` is not a shipped overlay (the message lists them).
    """
    path = osp.join(REGULARIZERS, f'{name}.py')
    if not osp.isfile(path):
        raise ValueError(f'no regularizer overlay named {name!r}; shipped: {overlays()}')
    return path


def register_config_scope() -> None:
    """Let ``_base_`` name the overlays as ``mmwrs::regularizers/<name>.py``.

    mmengine resolves ``<scope>::<path>`` only for the packages in its
    ``MODULE2PACKAGE`` table (OpenMMLab's own), looking under the package's
    ``.mim/configs``; mmwrs ships that folder and adds itself to the table.
    The overlays' hooks are then built in the ``mmwrs`` scope, whose registry
    (:mod:`mmwrs.registry`) resolves them from mmengine's root registry.
    """
    from mmengine.config import utils
    utils.MODULE2PACKAGE.setdefault('mmwrs', 'mmwrs')
    from .. import registry  # noqa: F401  (the mmwrs scope's child registries)


def main(argv=None) -> int:
    names = sys.argv[1:] if argv is None else argv
    if not names:
        print('usage: python -m mmwrs.configs NAME...  (prints each overlay\'s path); '
              f'shipped: {" ".join(overlays())}', file=sys.stderr)
        return 1
    try:
        for name in names:
            print(overlay_path(name))
    except ValueError as error:
        print(error, file=sys.stderr)
        return 1
    return 0
