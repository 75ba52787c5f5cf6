# The epsilon-shifted L2 regularizer (Li et al., arXiv 1911.05920) as an overlay:
# every trainable non-depthwise conv gets weight_decay=0 and the reference
# gradient lam * ((1 - eps/sd) * (w - mu) + mu) per filter, in each real step.
# Reference values: lam=1e-4, eps=1e-3 (ResNets); lam=4e-5, eps=1e-8 (mobile nets).
# Meant for weight-standardized networks: compose with ws.py.
custom_imports = dict(imports=['mmwrs'], allow_failed_imports=False)
custom_hooks = [dict(type='EpsShiftedL2Hook', lam=1e-4, eps=1e-3)]
