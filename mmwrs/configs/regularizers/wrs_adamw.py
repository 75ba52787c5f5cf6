# WRS with an adaptive optimizer (the paper also studies Adam-type optimizers):
# AdamW (lr 1e-4, decoupled decay 0.05 on the other parameters) and WRS on the
# scale-invariant weights, whose decay is 0.
custom_imports = dict(imports=['mmwrs'], allow_failed_imports=False)
custom_hooks = [
    dict(type='ReplaceOptimizerHook', lr=1e-4,
         optimizer=dict(type='AdamW', betas=(0.9, 0.999), weight_decay=0.05)),
    dict(type='WRSHook', granularity='filter', target_norm=1.0),
]
