# `make demo`'s detector (issue 21): the long-schedule study's tiny Faster R-CNN
# (configs/study, 1/4-width ResNet-18 FPN at 64 px, data/shapes64) on a schedule
# short enough for the whole demo to fit in minutes on 2 cores: warm-up to 100,
# constant lr to 450, x0.1 after. An update costs about twice the segmentor's,
# so the schedule is half as long and the decay larger: 350 constant updates at
# lr 0.025, wd 2e-2 give wd * sum(lr) / (1 - momentum) = 1.75 (the study's
# lr 0.025, wd 2e-2 runs: lr/||w||^2 x17 over 350 updates of its 800).
_base_ = ['../study/faster-rcnn_r18-w16_fpn_shapes64.py']
max_iters = 600
# One validation, at the end: the demo compares final metrics and curves.
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(optimizer=dict(lr=0.025, weight_decay=2e-2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[max_iters * 3 // 4], gamma=0.1)
]
default_hooks = dict(logger=dict(interval=50, log_metric_by_epoch=False),
                     checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
