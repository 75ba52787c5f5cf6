"""One table with every method as a row, from several sweeps' results (issue 20).

Each sweep of the study (``tools/analysis/sweep.py ... --collect``) writes a
``results.json`` for its own grid; the paper's comparison wants them side by
side. This merges them and prints, per method, the best / worst / median over
its grid, the spread (best - worst) and its best against the best of weight
decay with the same optimizer, with the standard error from the two cells'
seed stds (:func:`sweep.method_summary`)::

    python tools/analysis/methods_table.py \\
        work_dirs/study/det/results_sgd.json work_dirs/study/det/results_sgd_methods.json \\
        work_dirs/study/det/results_sgdp.json \\
        'work_dirs/study/det_eps_lam/lam1e-5/results_lam.json:sgd+ws_eps_l2 (lam 1e-5)' \\
        --reference sgdp=sgd+wd

``PATH:LABEL`` names every method of that file ``LABEL`` (sweeps of one method
under different fixed options). A method that brings its own optimizer (SGDP,
AdamP) has no weight-decay twin of its own: ``--reference METHOD=REF`` names
the weight-decay method it is compared with.
"""
import argparse
import json
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from sweep import best_vs_best, method_summary  # noqa: E402


def parse_source(text: str) -> Tuple[str, Optional[str]]:
    """``PATH`` or ``PATH:LABEL``."""
    path, _, label = text.partition(':')
    return path, (label or None)


def merge(sources: Sequence[Tuple[dict, Optional[str]]]) -> Tuple[Dict[str, dict], str]:
    """The settings of several results, labelled, and their (single) metric."""
    metrics = {results['metric'] for results, _ in sources if results.get('metric')}
    if len(metrics) > 1:
        raise ValueError(f'the results compare different metrics: {sorted(metrics)}')
    settings = {}
    for results, label in sources:
        for name, entry in results['settings'].items():
            entry = dict(entry)
            if label:
                entry['method'] = label
                name = f'{label}: {name}'
            if name in settings and settings[name]['values'] != entry['values']:
                raise ValueError(f"setting '{name}' is in two results with different values: "
                                 'label one of them (PATH:LABEL)')
            settings[name] = entry
    return settings, (metrics.pop() if metrics else 'metric')


def compare(methods: Dict[str, dict], references: Dict[str, str]) -> Dict[str, dict]:
    """``vs_wd`` for the methods named in ``references`` (METHOD -> weight-decay method)."""
    for name, reference in references.items():
        if name not in methods:
            continue
        if reference not in methods:
            raise ValueError(f"--reference {name}={reference}: no method '{reference}' in "
                             f'the results (there are: {", ".join(methods)})')
        a, b = methods[name]['best'], methods[reference]['best']
        if a is None or b is None:
            continue
        methods[name]['vs_wd'] = dict(best_vs_best(a, b), reference=reference)
    return methods


def table(methods: Dict[str, dict], metric: str, digits: int = 2) -> str:
    """Markdown: one row per method."""
    def value(mean, std=None):
        return f'{mean:.{digits}f}' + (f' ± {std:.{digits}f}' if std is not None else '')

    def point(p):
        if p is None:
            return 'n/a'
        seeds = '' if p['seeds'] == 3 else f', {p["seeds"]} seed(s)'
        return f'{value(p["mean"], p["std"])} ({p["setting"].split(": ")[-1]}{seeds})'

    lines = [f'| method | cells | best ({metric}) | worst | median | spread | best vs weight '
             'decay\'s best |', '|---|---|---|---|---|---|---|']
    for name, m in methods.items():
        cells = f'{len(m["settings"])}' + (f' ({len(m["missing_settings"])} missing)'
                                           if m['missing_settings'] else '')
        versus = m.get('vs_wd')
        if versus is None:
            versus_text = '(reference)' if m['regularizer'] == 'wd' else 'n/a'
        else:
            error = (f' ± {versus["error"]:.{digits}f}' if versus['error'] is not None
                     else ' (no seed error)')
            versus_text = f'{versus["difference"]:+.{digits}f}{error}'
        median = value(m['median']) if m['median'] is not None else 'n/a'
        spread = value(m['spread']) if m['spread'] is not None else 'n/a'
        lines.append(f'| {name} | {cells} | {point(m["best"])} | {point(m["worst"])} '
                     f'| {median} | {spread} | {versus_text} |')
    return '\n'.join(lines) + '\n'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('results', nargs='+', help='results.json of a sweep, or PATH:LABEL')
    parser.add_argument('--reference', nargs='*', default=[], metavar='METHOD=REF',
                        help='compare METHOD with the weight-decay method REF')
    parser.add_argument('--digits', type=int, default=2)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    references: Dict[str, str] = {}
    for item in args.reference:
        name, sep, reference = item.partition('=')
        if not sep or not name or not reference:
            raise SystemExit(f"--reference: expected METHOD=REF (e.g. sgdp=sgd+wd), got '{item}'")
        references[name] = reference
    sources: List[Tuple[dict, Optional[str]]] = []
    for text in args.results:
        path, label = parse_source(text)
        if not osp.isfile(path):
            raise SystemExit(f'no results file {path} (run the sweep with --collect first)')
        with open(path) as f:
            sources.append((json.load(f), label))
    settings, metric = merge(sources)
    methods = compare(method_summary(settings), references)
    print(table(methods, metric, args.digits), end='')
    return 0


if __name__ == '__main__':
    sys.exit(main())
