"""Write the experiment configs of the paper's matrix and their table.

The matrix (models x regularizer settings) is defined once, in
``tools/analysis/experiments.py``; this writes ``configs/<model>/<name>.py`` for
each entry and, between the markers in ``configs/README.md``, the table and the
smoke-run sections (each dataset's generated tree and the command the matrix
test runs), so the files, the table and the tests cannot drift apart.

    python tools/analysis/gen_experiment_configs.py          # write
    python tools/analysis/gen_experiment_configs.py --check  # exit 1 if stale
"""
import argparse
import os
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# This checkout's mmwrs, and experiments.py beside this file.
sys.path[:0] = [REPO, osp.dirname(osp.abspath(__file__))]
from experiments import (TABLE_BEGIN, TABLE_END, experiment_config_text,  # noqa: E402
                         experiment_table, experiments)

README = osp.join(REPO, 'configs', 'README.md')


def expected_files():
    """``{absolute path: content}`` of every generated file."""
    files = {osp.join(REPO, e.path): experiment_config_text(e) for e in experiments()}
    with open(README) as f:
        readme = f.read()
    start, end = readme.find(TABLE_BEGIN), readme.find(TABLE_END)
    if start < 0 or end < start:
        raise ValueError(f'{README}: the table markers {TABLE_BEGIN!r} and {TABLE_END!r} '
                         'are missing; put them where the table belongs')
    files[README] = readme[:start] + experiment_table() + readme[end + len(TABLE_END) + 1:]
    return files


def stale_files():
    """Paths whose content differs from what the matrix generates."""
    stale = []
    for path, text in expected_files().items():
        if not osp.isfile(path):
            stale.append(path)
            continue
        with open(path) as f:
            if f.read() != text:
                stale.append(path)
    return stale


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--check', action='store_true',
                        help='only check that the files are up to date')
    args = parser.parse_args(argv)
    stale = stale_files()
    if args.check:
        for path in stale:
            print(f'stale: {osp.relpath(path, REPO)}')
        return 1 if stale else 0
    for path, text in expected_files().items():
        if path in stale:
            os.makedirs(osp.dirname(path), exist_ok=True)
            with open(path, 'w') as f:
                f.write(text)
            print(f'wrote {osp.relpath(path, REPO)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
