# AdamP (Heo et al., ICLR 2021) as an overlay over a stock SGD config: param
# groups and the schedule stay, the base lr becomes 1e-4 (per-group multipliers
# kept) and the update rule AdamP's, with the reference defaults.
custom_imports = dict(imports=['mmwrs'], allow_failed_imports=False)
custom_hooks = [
    dict(
        type='ReplaceOptimizerHook',
        lr=1e-4,
        optimizer=dict(
            type='AdamP', betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-4,
            delta=0.1, wd_ratio=0.1, nesterov=False))
]
