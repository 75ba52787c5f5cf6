# The epsilon-shifted L2 regularizer on a weight-standardized network, the
# setting it was designed for (Li et al., arXiv 1911.05920): ws.py's conversion
# (conv+BN -> ConvWS2d+GroupNorm) plus eps_l2.py's penalty. The two overlays
# cannot both be _base_ files (both define custom_hooks), so this one inherits
# eps_l2.py and prepends the WS hook (order is irrelevant: the WS hook has the
# higher priority and converts the model first).
_base_ = ['./eps_l2.py']
custom_hooks = [dict(type='WeightStandardizationHook', num_groups=32)] + _base_.custom_hooks
