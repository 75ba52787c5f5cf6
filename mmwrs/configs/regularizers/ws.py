# Weight standardization (Qiao et al.) as an overlay, as mmdet's gn+ws configs:
# every Conv2d feeding a BatchNorm becomes mmcv's ConvWS2d and the BN a
# GroupNorm(32). WS vs WRS is then a one-line change of the overlay.
custom_imports = dict(imports=['mmwrs'], allow_failed_imports=False)
custom_hooks = [dict(type='WeightStandardizationHook', num_groups=32)]
