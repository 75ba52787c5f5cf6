# `make demo`'s segmentor (issue 21): the long-schedule study's tiny FCN
# (configs/study, 1/4-width ResNet-18-D8 at 64 px, data/shapes64) on a schedule
# short enough for the whole demo to fit in minutes on 2 cores, long enough for
# weight decay to move the norms: warm-up to 100, constant lr to 900, x0.1 after.
# Decay acts through wd * sum(lr) / (1 - momentum): 800 constant updates at
# lr 0.2, wd 1e-3 give an exponent of 1.6 (norms x0.2 from decay alone), so
# lr/||w||^2 grows several-fold under weight decay; WRS holds it flat.
_base_ = ['../study/fcn_r18-w16-d8_shapes64.py']
max_iters = 1200
# One validation, at the end: the demo compares final metrics and curves.
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(optimizer=dict(lr=0.2, weight_decay=1e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[max_iters * 3 // 4], gamma=0.1)
]
default_hooks = dict(logger=dict(interval=50, log_metric_by_epoch=False),
                     checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
