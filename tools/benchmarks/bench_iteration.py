"""Training-iteration time with WRS vs weight decay, side by side in one run.

Runs the demo config with each overlay in alternation (WD, WRS, WD, WRS, ...),
each run a fresh Runner, and compares the median per-iteration time mmengine's
IterTimerHook records, after the first iterations (warm-up) of each run.
Target: ratio WRS / WD <= 1.01.

    python tools/benchmarks/bench_iteration.py [--config configs/demo/fcn_r18-d8_shapes.py]
        [--iters 12] [--rounds 2]
"""
import argparse
import os.path as osp
import platform
import statistics
import sys
import tempfile

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)
from mmengine.config import Config  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import mmwrs  # noqa: E402,F401
from mmwrs.datasets import generate_shapes  # noqa: E402
from mmwrs.launch import register_codebase  # noqa: E402


def iteration_times(config, overlay, iters, work_dir, data_root):
    child = osp.join(work_dir, f'{overlay}.py')
    with open(child, 'w') as f:
        f.write(f"_base_ = [{config!r}, "
                f"{osp.join(REPO, 'configs/_base_/regularizers', overlay + '.py')!r}]\n")
    cfg = Config.fromfile(child)
    cfg.merge_from_dict({
        'train_dataloader.dataset.data_root': data_root,
        'val_dataloader.dataset.data_root': data_root,
        'test_dataloader.dataset.data_root': data_root,
        'train_cfg.max_iters': iters, 'train_cfg.val_interval': 10 ** 6,
        'default_hooks.checkpoint.interval': 10 ** 6,
        'default_hooks.logger.interval': 10 ** 6,
        'log_level': 'WARNING'})
    cfg.work_dir = osp.join(work_dir, overlay)
    register_codebase(cfg)
    runner = Runner.from_cfg(cfg)
    runner.train()
    times = runner.message_hub.get_scalar('train/time').data[0]
    return list(times)[3:]  # the first iterations warm up caches and allocators


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=osp.join(REPO, 'configs/demo/fcn_r18-d8_shapes.py'))
    parser.add_argument('--iters', type=int, default=12)
    parser.add_argument('--rounds', type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work_dir:
        data_root = generate_shapes(osp.join(work_dir, 'shapes'), num_train=64,
                                    num_val=8) + '/'
        times = {'wd': [], 'wrs': []}
        for _ in range(args.rounds):
            for overlay in ('wd', 'wrs'):
                times[overlay] += iteration_times(args.config, overlay, args.iters,
                                                  work_dir, data_root)
    wd, wrs = statistics.median(times['wd']), statistics.median(times['wrs'])
    print(f'machine: {platform.machine()}, {torch.get_num_threads()} threads, '
          f'torch {torch.__version__}; config {osp.basename(args.config)}')
    print(f'median iteration, weight decay: {1e3 * wd:8.1f} ms ({len(times["wd"])} iterations)')
    print(f'median iteration, WRS:          {1e3 * wrs:8.1f} ms ({len(times["wrs"])} iterations)')
    print(f'ratio WRS / WD:                 {wrs / wd:8.3f}  (target <= 1.01)')


if __name__ == '__main__':
    main()
