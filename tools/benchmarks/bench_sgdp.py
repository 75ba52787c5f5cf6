"""Step time of mmwrs's SGDP vs the reference SGDP (adamp package) vs SGD + WRS.

All three on the Faster R-CNN R50-FPN parameter set, with the same gradients,
timed interleaved in one run.

    python tools/benchmarks/bench_sgdp.py [--repeats 20] [--device cpu]
"""
import argparse
import copy
import os.path as osp
import platform
import statistics
import sys

import adamp
import torch

# The shared environment holds only the stack: import this checkout's mmwrs.
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)
from mmwrs.core import WeightRescaler  # noqa: E402
from mmwrs.optim import SGDP  # noqa: E402
from mmwrs.testing import loss_of, timed, traced_faster_rcnn  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeats', type=int, default=20)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    args = parser.parse_args()
    device = torch.device(args.device)
    model, batch, result = traced_faster_rcnn(device)
    loss_of(model, batch).backward()  # real gradients (orthogonal for invariant weights)
    params = [p for p in model.parameters() if p.requires_grad and p.grad is not None]
    hyper = dict(lr=0.02, momentum=0.9, weight_decay=1e-4)

    def clone():
        copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
        for c, p in zip(copies, params):
            c.grad = p.grad.clone()
        return copies

    ours = SGDP(clone(), **hyper)
    reference = adamp.SGDP(clone(), **hyper)
    wrs_params = clone()
    index = {id(p): i for i, p in enumerate(params)}
    controlled = [wrs_params[index[id(w.param)]] for w in result.invariant]
    controlled_ids = {id(p) for p in controlled}
    sgd = torch.optim.SGD([dict(params=[p for p in wrs_params if id(p) not in controlled_ids]),
                           dict(params=controlled, weight_decay=0.0)], **hyper)
    invariant = [copy.copy(w) for w in result.invariant]
    for w in invariant:
        w.param = wrs_params[index[id(w.param)]]
    rescaler = WeightRescaler(invariant, rescale_running_stats=False)

    def sgd_wrs():
        sgd.step()
        rescaler.rescale_()

    candidates = {'mmwrs SGDP': ours.step, 'reference adamp.SGDP': reference.step,
                  'SGD + WRS rescale': sgd_wrs}
    for step in candidates.values():
        step()  # buffers exist from here on
    times = {name: [] for name in candidates}
    for _ in range(args.repeats):
        for name, step in candidates.items():
            times[name].append(timed(step, device))
    base = statistics.median(times['reference adamp.SGDP'])
    print(f'machine: {platform.machine()}, {torch.get_num_threads()} threads, device '
          f'{device}, torch {torch.__version__}; Faster R-CNN R50-FPN, '
          f'{sum(p.numel() for p in params):,} parameters, {len(controlled)} scale-invariant')
    for name, values in times.items():
        median = statistics.median(values)
        print(f'{name:24s} {1e3 * median:8.2f} ms   x{median / base:.2f} of the reference')


if __name__ == '__main__':
    main()
