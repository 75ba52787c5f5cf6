"""Framework-free optimizers (pure PyTorch, one module per optimizer).

:class:`SGDP` and :class:`AdamP` reproduce the reference ``adamp`` 0.3.0
numerics (Heo et al., ICLR 2021); the projection they share is
:mod:`mmwrs.optim.projection`.
"""
from .adamp import AdamP
from .projection import project_radial
from .sgdp import SGDP

__all__ = ['AdamP', 'SGDP', 'project_radial']
