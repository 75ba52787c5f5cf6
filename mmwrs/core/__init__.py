"""Framework-free WRS algorithms: pure PyTorch, usable without mmengine."""
from .controller import WRSController
from .discovery import (DiscoveryResult, Exclusion, InvariantWeight, NormUse,
                        discover_scale_invariant, is_norm)
from .rescale import RescaleEntry, WeightRescaler, validate_target

__all__ = [
    'DiscoveryResult', 'Exclusion', 'InvariantWeight', 'NormUse',
    'discover_scale_invariant', 'is_norm', 'RescaleEntry', 'WeightRescaler',
    'validate_target', 'WRSController'
]
