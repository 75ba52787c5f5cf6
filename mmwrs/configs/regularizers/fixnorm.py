# FixNorm (Zhou, Sun, Zhong; arXiv 2103.15345) as an overlay: no weight decay on
# any parameter; normalization-preceded weights held at their initial norm (whole
# layer); each head's class-logit layer (fc_cls, conv_cls, retina_cls, rpn_cls,
# conv_seg) held at classifier_norm. Tune (lr, classifier_norm) together.
custom_imports = dict(imports=['mmwrs'], allow_failed_imports=False)
custom_hooks = [
    dict(
        type='FixNormHook',
        classifier_norm='init',  # a number, or 'init' to keep the initial norm
        granularity='layer',
        target_norm='init',
    )
]
