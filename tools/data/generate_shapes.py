"""Generate the bundled synthetic shapes dataset (COCO + mmseg layouts).

    python tools/data/generate_shapes.py --out data/shapes
"""
import argparse

from mmwrs.datasets import generate_shapes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='data/shapes')
    parser.add_argument('--num-train', type=int, default=400)
    parser.add_argument('--num-val', type=int, default=100)
    parser.add_argument('--img-size', type=int, default=128)
    parser.add_argument('--max-objects', type=int, default=3)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    out = generate_shapes(args.out, num_train=args.num_train, num_val=args.num_val,
                          img_size=args.img_size, max_objects=args.max_objects,
                          seed=args.seed)
    print(f'shapes dataset ready in {out}')


if __name__ == '__main__':
    main()
