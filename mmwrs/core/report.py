"""Human-readable summary of what WRS controls and what it leaves alone."""
from collections import Counter
from typing import List, Optional

from .discovery import DiscoveryResult
from .rescale import WeightRescaler


def _table(header: List[str], rows: List[List[str]]) -> List[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    fmt = '  '.join('{:<%d}' % w for w in widths)
    lines = [fmt.format(*header), fmt.format(*['-' * w for w in widths])]
    lines += [fmt.format(*map(str, row)) for row in rows]
    return lines


def format_report(rescaler: WeightRescaler, title: str = 'WRS',
                  discovery: Optional[DiscoveryResult] = None,
                  total_params: Optional[int] = None) -> str:
    """A table of controlled weights, excluded weights with reasons, and totals."""
    discovery = discovery or rescaler.discovery
    by_name = discovery.by_name() if discovery else {}
    rows = []
    for entry in rescaler.entries:
        weight = by_name.get(entry.name)
        target = entry.target
        target = ('init' if isinstance(target, str) else
                  f'{float(target):g}' if not hasattr(target, 'numel') else
                  f'init ({float(target.min()):.3g}..{float(target.max()):.3g})')
        compensation = ','.join(type(n).__name__ + ('(eval)' if not n.training else '')
                                for n in entry.running_stat_norms) or '-'
        if entry.bias is not None:
            compensation += '+bias'
        rows.append([entry.name, 'x'.join(map(str, entry.param.shape)),
                     f'{entry.granularity}[{entry.num_units}]',
                     weight.norm_types if weight else '(fixed norm)', target,
                     compensation, weight.note if weight else ''])
    lines = [f'{title}: {len(rescaler)} weights ({rescaler.num_params:,} parameters'
             + (f', {100.0 * rescaler.num_params / total_params:.1f}% of the model'
                if total_params else '') + ') held at their target norm']
    lines += _table(['weight', 'shape', 'granularity', 'norm', 'target',
                     'running-stat compensation', 'note'], rows)
    if discovery and discovery.excluded:
        lines.append(f'{title}: {len(discovery.excluded)} conv/linear weights '
                     'left alone:')
        lines += _table(['weight', 'shape', 'reason'],
                        [[e.name, 'x'.join(map(str, e.shape)), e.reason]
                         for e in discovery.excluded])
        counts = Counter(e.reason.split(' (call')[0] for e in discovery.excluded)
        lines.append(f'{title}: excluded by reason: ' + '; '.join(
            f'{n} x {reason}' for reason, n in counts.most_common()))
    return '\n'.join(lines)
