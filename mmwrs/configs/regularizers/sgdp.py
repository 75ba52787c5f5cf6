# SGDP (Heo et al., ICLR 2021) as an overlay: the stock SGD's param groups, lr,
# momentum, decay and schedule stay; the update rule becomes SGDP's (projection
# of the radial part of the update for scale-invariant weights, decay x wd_ratio).
custom_imports = dict(imports=['mmwrs'], allow_failed_imports=False)
custom_hooks = [
    dict(
        type='ReplaceOptimizerHook',
        optimizer=dict(type='SGDP', eps=1e-8, delta=0.1, wd_ratio=0.1, nesterov=False))
]
