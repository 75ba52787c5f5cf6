# Weight Rescaling (Liu et al., arXiv 2102.03497) as an overlay:
#   _base_ = ['mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
#             'path/to/configs/_base_/regularizers/wrs.py']
# Every conv/linear weight whose output feeds only a normalization layer (found
# by tracing the model) gets weight_decay=0 and is rescaled to unit norm after
# every optimizer update; all other parameters keep the config's weight decay.
# Only keys the stock configs do not define are set here (mmengine forbids a key
# in two _base_ files); if your config has its own custom_hooks, append this hook.
custom_imports = dict(imports=['mmwrs'], allow_failed_imports=False)
custom_hooks = [
    dict(
        type='WRSHook',
        granularity='filter',  # or 'layer'; coarsened per GroupNorm/LayerNorm
        target_norm=1.0,  # or 'init': keep each unit at its initial norm
        interval=1,  # rescale after every N real optimizer updates
        include=None,  # regexes of parameter names to control (default: all)
        exclude=None,  # regexes of parameter names to leave alone
        decay_rescaled=False,  # True keeps weight decay on rescaled weights
        rescale_running_stats=True,  # keep train-mode BN running stats in step
        on_empty='error',  # or 'warn' when nothing is scale-invariant
    )
]
