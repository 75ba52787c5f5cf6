# Plain weight decay: the stock configs' own regularizer, as an overlay so that
# experiment configs name their regularizer explicitly in every case:
#   _base_ = ['mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
#             'path/to/configs/_base_/regularizers/wd.py']
# Nothing changes: the optimizer's weight_decay applies to every parameter.
custom_imports = dict(imports=['mmwrs'], allow_failed_imports=False)
