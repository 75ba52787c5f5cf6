"""Time WRS's rescale against one SGD-momentum step, side by side in one run.

The parameter set is stock Faster R-CNN R50-FPN's (mmdet config, no pretrained
weights). Both are timed on the same parameters and gradients, interleaved, on
the same threads; the ratio is what the target speaks of (rescale <= 0.25 of
an SGD step on CPU).

    python tools/benchmarks/bench_rescale.py [--repeats 30] [--device cpu]
"""
import argparse
import os.path as osp
import platform
import statistics
import sys

import torch

# The shared environment holds only the stack: import this checkout's mmwrs.
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)
from mmwrs.core import WeightRescaler  # noqa: E402
from mmwrs.testing import timed, traced_faster_rcnn  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeats', type=int, default=30)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    model, batch, result = traced_faster_rcnn(device)
    rescaler = WeightRescaler(result.invariant)
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    controlled = rescaler.params
    controlled_ids = {id(p) for p in controlled}
    rest = [p for p in params if id(p) not in controlled_ids]
    # The optimizer WRS training uses: rescaled weights without decay.
    sgd = torch.optim.SGD([dict(params=rest), dict(params=controlled, weight_decay=0.0)],
                          lr=0.02, momentum=0.9, weight_decay=1e-4)
    sgd.step()  # momentum buffers exist from here on
    rescaler.rescale_()

    sgd_times, rescale_times = [], []
    for _ in range(args.repeats):
        sgd_times.append(timed(sgd.step, device))
        rescale_times.append(timed(rescaler.rescale_, device))
    sgd_t, rescale_t = statistics.median(sgd_times), statistics.median(rescale_times)
    total = sum(p.numel() for p in params)
    print(f'machine: {platform.processor() or platform.machine()}, '
          f'{torch.get_num_threads()} threads, device {device}, torch {torch.__version__}')
    print(f'parameter set: Faster R-CNN R50-FPN, {total:,} trainable parameters, '
          f'{len(controlled)} rescaled weights ({rescaler.num_params:,} parameters)')
    print(f'SGD-momentum step (all parameters): {1e3 * sgd_t:8.2f} ms (median of {args.repeats})')
    print(f'WRS rescale (controlled weights):    {1e3 * rescale_t:8.2f} ms '
          f'(median of {args.repeats})')
    print(f'ratio rescale / SGD step:           {rescale_t / sgd_t:8.3f}  (target <= 0.25)')


if __name__ == '__main__':
    main()
