# Tiny segmentor for long schedules (issue 14): the demo FCN with a ResNet-18-D8
# at 1/4 width (stem and base_channels 16: stages of 16/32/64/128 channels), on
# 64 px shapes with a fixed 300-image training set and a separate 200-image
# validation set, so that thousands of updates fit in minutes on one core and
# overfitting can show. Data: python tools/data/generate_shapes.py
#   --out data/shapes64 --num-train 300 --num-val 200 --img-size 64
_base_ = ['../demo/fcn_r18-d8_shapes.py']
data_root = 'data/shapes64/'
width = 16
model = dict(
    data_preprocessor=dict(size=(64, 64)),
    backbone=dict(stem_channels=width, base_channels=width),
    decode_head=dict(in_channels=width * 8, channels=32),
    auxiliary_head=dict(in_channels=width * 4, channels=16))
train_dataloader = dict(batch_size=8, dataset=dict(data_root=data_root))
val_dataloader = dict(batch_size=16, dataset=dict(data_root=data_root))
test_dataloader = val_dataloader

# Long schedule: warm-up, constant lr, x0.1 for the last quarter. A constant
# phase is where weight decay's effect on the effective lr (lr/||w||^2) builds.
# 1600 updates (~43 epochs of the 300 images) keep a run near 1.5 minutes on one
# core. Decay acts through the sum of the lrs (warm-up and tail included:
# 1190.5 * lr); at lr 0.1, wd 2e-3 that is wd * sum(lr) = 0.24, and SGD momentum
# multiplies decay's shrinking by 1/(1-momentum): an exponent of 2.4.
max_iters = 1600
train_cfg = dict(max_iters=max_iters, val_interval=400)
optim_wrapper = dict(optimizer=dict(lr=0.1, weight_decay=2e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[max_iters * 3 // 4], gamma=0.1)
]
default_hooks = dict(logger=dict(interval=50),
                     checkpoint=dict(interval=400, max_keep_ckpts=1))
