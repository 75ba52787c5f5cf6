from .eps_l2_hook import EpsShiftedL2Hook
from .fixnorm_hook import FixNormHook
from .norm_monitor_hook import NormMonitorHook
from .replace_optimizer_hook import ReplaceOptimizerHook
from .wrs_hook import WRSHook
from .ws_hook import WeightStandardizationHook

__all__ = [
    'WRSHook', 'FixNormHook', 'EpsShiftedL2Hook', 'ReplaceOptimizerHook',
    'WeightStandardizationHook', 'NormMonitorHook'
]
