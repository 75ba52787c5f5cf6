# WRS with a target-norm schedule measured on a weight-decay run; written by
#   python tools/analysis/norm_schedule.py work_dirs/study/fcn/runs/sgd_lr0.2_wd0.0005_seed0
#   --start measured --points 16 --overlay configs/study/overlays/wrs_wd_curve.py
custom_imports = dict(imports=['mmwrs'], allow_failed_imports=False)
custom_hooks = [dict(type='WRSHook', granularity='filter',
                     target_norm={'type': 'piecewise',
                                  'points': [(50, 1.344545),
                                             (150, 1.242264),
                                             (250, 1.129816),
                                             (350, 1.024575),
                                             (450, 0.930542),
                                             (550, 0.846604),
                                             (650, 0.771768),
                                             (750, 0.706546),
                                             (900, 0.630465),
                                             (1000, 0.584448),
                                             (1100, 0.546423),
                                             (1200, 0.514175),
                                             (1300, 0.509284),
                                             (1400, 0.50428),
                                             (1500, 0.499313),
                                             (1600, 0.494386)]})]
