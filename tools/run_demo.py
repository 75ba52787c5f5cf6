"""The README's main job: WRS vs weight decay on the demo detector and segmentor.

Generates the bundled shapes data if needed (no downloads), trains each demo
config twice with the same seed and schedule - once with the stock weight decay
and once with WRS - and prints final metrics and weight-norm statistics side by
side.

    python tools/run_demo.py [--configs ...] [--regularizers wd wrs]
        [--work-dir-root work_dirs/demo] [--cfg-options k=v ...]
"""
import argparse
import os
import os.path as osp
import subprocess
import sys
import time

import torch
from mmengine.config import Config

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
# This checkout's mmwrs, and the experiment helpers beside the analysis tools.
sys.path[:0] = [REPO, osp.join(REPO, 'tools', 'analysis')]
DEMOS = ['configs/demo/faster-rcnn_r18_fpn_shapes.py', 'configs/demo/fcn_r18-d8_shapes.py']
from experiments import compose, data_root_options, final_metrics  # noqa: E402


def controlled_names(work_dir):
    """Names of the weights WRS controlled (from a WRS run's checkpoint)."""
    checkpoint = torch.load(osp.join(work_dir, 'latest_ckpt.pth'), map_location='cpu')
    return sorted(checkpoint['wrs']['rescaler']['targets'])


def norm_stats(work_dir, names):
    """Filter norms of ``names`` in the run's last checkpoint."""
    checkpoint = torch.load(osp.join(work_dir, 'latest_ckpt.pth'), map_location='cpu')
    state = checkpoint['state_dict']
    norms = torch.cat([state[n].flatten(1).norm(dim=1) for n in names if n in state])
    return dict(mean=float(norms.mean()), min=float(norms.min()), max=float(norms.max()))


def link_latest(work_dir):
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        latest = f.read().strip()
    link = osp.join(work_dir, 'latest_ckpt.pth')
    if osp.lexists(link):
        os.remove(link)
    os.symlink(latest, link)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--configs', nargs='+', default=DEMOS)
    parser.add_argument('--regularizers', nargs='+', default=['wd', 'wrs'])
    parser.add_argument('--work-dir-root', default='work_dirs/demo')
    parser.add_argument('--data-root', default='data/shapes')
    parser.add_argument('--cfg-options', nargs='+', default=[])
    args = parser.parse_args()

    from mmengine.device import get_device
    device = get_device()  # what mmengine's Runner in each training run will use
    detail = (f'{torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}'
              if device == 'cuda' else
              f'{torch.get_num_threads()} thread{"s" if torch.get_num_threads() > 1 else ""}')
    print(f'[demo] training on {device} ({detail}; torch {torch.__version__})', flush=True)
    from mmwrs.datasets import generate_shapes
    print(f'[demo] shapes data in {generate_shapes(args.data_root)}', flush=True)
    rows = []
    for config in args.configs:
        runs = {}
        for regularizer in args.regularizers:
            name = f'{osp.splitext(osp.basename(config))[0]}_{regularizer}'
            work_dir = osp.join(args.work_dir_root, name)
            composed = compose(config, regularizer, osp.join(args.work_dir_root, 'configs'))
            detection = Config.fromfile(composed).get('default_scope') == 'mmdet'
            data_options = data_root_options(args.data_root, detection)
            command = [sys.executable, osp.join(REPO, 'tools/train.py'), composed,
                       '--work-dir', work_dir, '--cfg-options',
                       *[f'{k}={v}' for k, v in data_options.items()], *args.cfg_options]
            print(f'[demo] training {name} -> {work_dir}', flush=True)
            start = time.time()
            subprocess.run(command, check=True)
            link_latest(work_dir)
            runs[regularizer] = (work_dir, time.time() - start)
        names = next((controlled_names(w) for r, (w, _) in runs.items() if r == 'wrs'), None)
        for regularizer, (work_dir, seconds) in runs.items():
            stats = norm_stats(work_dir, names) if names else {}
            rows.append((osp.basename(config), regularizer, final_metrics(work_dir),
                         stats, seconds))

    print('\n[demo] results (same seed and schedule; norms: filters of the '
          'scale-invariant weights WRS controls)')
    header = (f'{"config":34s} {"reg":4s} {"metrics":48s} '
              f'{"filter norm mean [min, max]":30s} {"time":>6s}')
    print(header)
    print('-' * len(header))
    for config, regularizer, metrics, stats, seconds in rows:
        text = ', '.join(f'{k.split("/")[-1]}={v:.3f}' for k, v in metrics.items()) or 'n/a'
        norms = (f'{stats["mean"]:.3f} [{stats["min"]:.3f}, {stats["max"]:.3f}]'
                 if stats else 'n/a')
        print(f'{config:34s} {regularizer:4s} {text:48s} {norms:30s} {seconds:5.0f}s')


if __name__ == '__main__':
    main()
