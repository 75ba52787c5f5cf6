"""Framework-free optimizers (pure PyTorch, one module per optimizer).

:class:`SGDP` and :class:`AdamP` reproduce the reference ``adamp`` 0.3.0
numerics (Heo et al., ICLR 2021).
"""
from .adamp import AdamP, project_radial
from .sgdp import SGDP

__all__ = ['AdamP', 'SGDP', 'project_radial']
