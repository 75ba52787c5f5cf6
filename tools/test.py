"""Evaluate a checkpoint of an mmdet or mmseg model.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--cfg-options ...]
        [--launcher {none,pytorch,slurm}]
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from mmengine.runner import Runner  # noqa: E402

import mmwrs  # noqa: E402,F401  (version check, fixes, registrations, mmwrs:: scope)
from mmwrs import compat  # noqa: E402

compat.apply_tool_fixes()  # kill-safe checkpoints, CPU launchers

from mmwrs.launch import (DictAction, load_config, prepare_launcher,  # noqa: E402
                          register_codebase, set_local_rank)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and eval) a model')
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--work-dir')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    set_local_rank(args.local_rank)
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    register_codebase(cfg)
    prepare_launcher(cfg, args.launcher)
    cfg.load_from = args.checkpoint
    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    if runner.rank == 0:
        print('metrics: ' + ', '.join(f'{k}={v}' for k, v in metrics.items()))
    return metrics


if __name__ == '__main__':
    main()
