# Tiny detector for long schedules (issue 14): the demo Faster R-CNN with a
# ResNet-18 at 1/4 width (base_channels=16: stages of 16/32/64/128 channels), on
# 64 px shapes with a fixed 300-image training set and a separate 200-image
# validation set, so that thousands of updates fit in minutes on one core and
# overfitting can show. Data: python tools/data/generate_shapes.py
#   --out data/shapes64 --num-train 300 --num-val 200 --img-size 64
_base_ = ['../demo/faster-rcnn_r18_fpn_shapes.py']
data_root = 'data/shapes64/'
width = 16
model = dict(
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(base_channels=width),
    neck=dict(in_channels=[width, width * 2, width * 4, width * 8], out_channels=32),
    # Shapes are 10-26 px at 64 px: anchors of 12-48 px on the fine levels.
    rpn_head=dict(in_channels=32, feat_channels=32, anchor_generator=dict(scales=[3])),
    roi_head=dict(bbox_roi_extractor=dict(out_channels=32),
                  bbox_head=dict(in_channels=32, fc_out_channels=64)),
    train_cfg=dict(rpn_proposal=dict(nms_pre=200, max_per_img=100),
                   rcnn=dict(sampler=dict(num=32))),
    test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=100)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(batch_size=8, dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(batch_size=16, dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

# Long schedule: warm-up, constant lr, x0.1 for the last quarter. A constant
# phase is where weight decay's effect on the effective lr (lr/||w||^2) builds.
# 800 updates (twice the segmentor's cost per update) keep a run near 1.5
# minutes on one core. The sum of the lrs is 570.5 * lr; at lr 0.05, wd 2e-3,
# wd * sum(lr) = 0.057, x 1/(1-momentum) for SGD momentum: an exponent of 0.57.
max_iters = 800
train_cfg = dict(max_iters=max_iters, val_interval=200)
optim_wrapper = dict(optimizer=dict(lr=0.05, weight_decay=2e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[max_iters * 3 // 4], gamma=0.1)
]
# log_metric_by_epoch=False: validation metrics at their iteration, not at
# "epoch" 0 (the demo detector config leaves mmengine's default, so all of its
# validations land at step 0 of vis_data/scalars.json).
default_hooks = dict(logger=dict(interval=50, log_metric_by_epoch=False),
                     checkpoint=dict(interval=200, max_keep_ckpts=1))
