"""Train an mmdet or mmseg model (chosen by the config's default_scope).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--cfg-options k=v ...] [--launcher {none,pytorch,slurm}]
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from mmengine.runner import Runner  # noqa: E402

import mmwrs  # noqa: E402,F401  (version check, fixes, registrations, mmwrs:: scope)
from mmwrs import compat  # noqa: E402

compat.apply_tool_fixes()  # kill-safe checkpoints, CPU launchers

from mmwrs.launch import (DictAction, apply_amp, load_config, prepare_launcher,  # noqa: E402
                          register_codebase, set_local_rank)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a detector or segmentor')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true', help='mixed precision (CUDA)')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from CKPT, or from the latest checkpoint '
                        'in the work dir when no path is given')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    set_local_rank(args.local_rank)
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    register_codebase(cfg)
    prepare_launcher(cfg, args.launcher)
    if args.amp:
        apply_amp(cfg)
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    runner = Runner.from_cfg(cfg)
    runner.train()
    # mmengine's RuntimeInfoHook keeps each validation metric as a 'val/<key>'
    # scalar, beside the val loop's own timings.
    metrics = {key[len('val/'):]: buffer.current()
               for key, buffer in runner.message_hub.log_scalars.items()
               if key.startswith('val/') and key not in ('val/time', 'val/data_time')}
    if runner.rank == 0 and metrics:
        runner.logger.info('final metrics: ' + ', '.join(
            f'{k}={v:.4f}' for k, v in sorted(metrics.items())))


if __name__ == '__main__':
    main()
