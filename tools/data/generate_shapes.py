"""Generate the synthetic shapes dataset, in its own layout or a stock one.

    python tools/data/generate_shapes.py --out data/shapes
    python tools/data/generate_shapes.py --layout coco --out data/coco
    python tools/data/generate_shapes.py --layout cityscapes --out data/cityscapes
    python tools/data/generate_shapes.py --layout ade20k --out data/ade/ADEChallengeData2016

``coco``, ``cityscapes`` and ``ade20k`` write the trees that stock mmdet /
mmseg configs read from those default paths (see mmwrs/datasets/shapes_generator.py
and configs/README.md); the folder must be new, empty or written by this tool.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
from mmwrs.datasets.shapes_generator import LAYOUTS, generate_shapes  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='data/shapes')
    parser.add_argument('--layout', choices=LAYOUTS, default='shapes',
                        help='the folder layout and label semantics (default: shapes)')
    parser.add_argument('--num-train', type=int, default=400)
    parser.add_argument('--num-val', type=int, default=100)
    parser.add_argument('--img-size', type=int, default=128,
                        help='image height (cityscapes images are twice as wide)')
    parser.add_argument('--max-objects', type=int, default=3)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    try:
        out = generate_shapes(args.out, num_train=args.num_train, num_val=args.num_val,
                              img_size=args.img_size, max_objects=args.max_objects,
                              seed=args.seed, layout=args.layout)
    except ValueError as error:
        parser.error(str(error))
    print(f'shapes dataset ({args.layout} layout) ready in {out}')


if __name__ == '__main__':
    main()
